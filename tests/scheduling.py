"""The order in which the two test processes take the files: the slowest first.

`make test` shares whole files among the pytest-xdist processes (``--dist loadfile``), and a
process asks for the next file when it is done with one. xdist hands the files out in the
collection's order when ``--no-loadscope-reorder`` is given (the Makefile gives it; otherwise
it sorts them by their number of tests, which says little of their time: a browser file of 10
tests takes longer than a file of 60 small checks). So this plugin sorts the collected files
by the seconds they took in a recorded run (``file_seconds.json``), longest first — the
classic longest-processing-time rule — so that the processes finish close together instead
of one running the last slow file alone. A file's own tests keep their order. A file missing
from the record (a new one) counts the median file's seconds.

It also prints, at the end of a distributed run, when each process finished, so the tail is
measured, not guessed (docs/testing.md, "Two sessions at once").

Refresh the record after a run with ``--junitxml``::

    make test PYTEST_ARGS="--junitxml=/tmp/junit.xml"
    .venv/bin/python tests/scheduling.py /tmp/junit.xml > tests/file_seconds.json
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

RECORD = Path(__file__).with_name("file_seconds.json")


def _recorded_seconds() -> dict[str, float]:
    try:
        return {str(k): float(v) for k, v in json.loads(RECORD.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def _file_of(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]


def slowest_first(items: list[pytest.Item], seconds: dict[str, float]) -> list[pytest.Item]:
    """``items`` with their files ordered by ``seconds`` (longest first, then by name); each
    file's items in their own order. The same on every process, as xdist requires."""
    default = statistics.median(seconds.values()) if seconds else 0.0
    by_file: dict[str, list[pytest.Item]] = defaultdict(list)
    for item in items:
        by_file[_file_of(item)].append(item)
    files = sorted(by_file, key=lambda f: (-seconds.get(Path(f).name, default), f))
    return [item for f in files for item in by_file[f]]


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    items[:] = slowest_first(items, _recorded_seconds())


_started = time.monotonic()
_finished: dict[str, float] = {}


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    _finished[str(node.gateway.id)] = time.monotonic() - _started


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if len(_finished) > 1:
        ends = ", ".join(f"{name} {secs:.0f} s" for name, secs in sorted(_finished.items()))
        spread = max(_finished.values()) - min(_finished.values())
        terminalreporter.write_line(f"test processes finished: {ends} (apart: {spread:.0f} s)")


def file_seconds(junit_xml: Path) -> dict[str, float]:
    """Seconds per test file in a ``--junitxml`` report (the sum of its tests' times)."""
    totals: dict[str, float] = defaultdict(float)
    for case in ET.parse(junit_xml).getroot().iter("testcase"):
        module = case.get("classname", "").split(".")
        name = next((part for part in module if part.startswith("test_")), None)
        if name:
            totals[f"{name}.py"] += float(case.get("time") or 0)
    return {name: round(secs, 1) for name, secs in sorted(totals.items())}


if __name__ == "__main__":
    json.dump(file_seconds(Path(sys.argv[1])), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
