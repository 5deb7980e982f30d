"""What an admin's deletion of a category or grid pays to find reports not yet cases
(jiesu.admin.reference.UNPROJECTED_INTAKE), at ``--intakes`` reports of which ``--unprojected``
have no case row yet, against the plain anti-join that reads every report's payload.

    python -m bench.unprojected_check [--intakes 1000000] [--unprojected 5] [--dsn URL]

Synthetic tables of the two columns the check reads (``intakes``: case id and a ~1.3 kB
payload; ``cases``: case id), in an embedded PostgreSQL of its own unless ``--dsn``; prints
best and median of 5 per form and value, and each form's plan with its buffers."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import asyncpg

from bench.harness import bench_database
from jiesu.admin.reference import UNPROJECTED_INTAKE

PLAIN = ("SELECT 1 FROM intakes i WHERE i.payload #>> $2 = $1"
         " AND NOT EXISTS (SELECT 1 FROM cases c WHERE c.case_id = i.case_id) LIMIT 1")
FORMS = {"plain anti-join": PLAIN, "Jiesu's (ids first)": UNPROJECTED_INTAKE}
PATH = ["intake", "category_id"]


async def _fill(conn: asyncpg.Connection, intakes: int, unprojected: int) -> None:
    await conn.execute("DROP TABLE IF EXISTS intakes, cases")
    await conn.execute("CREATE TABLE intakes (case_id text PRIMARY KEY, payload jsonb NOT NULL)")
    await conn.execute("CREATE TABLE cases (case_id text PRIMARY KEY)")
    await conn.execute(
        "INSERT INTO intakes SELECT 'C' || g, jsonb_build_object('intake', jsonb_build_object("
        "'category_id', 'cat' || (g % 40), 'grid_id', 'G' || (g % 300),"
        " 'title', repeat('x', 200), 'description', repeat('y', 900)))"
        " FROM generate_series(1, $1) g", intakes)  # fmt: skip
    await conn.execute("INSERT INTO cases SELECT 'C' || g FROM generate_series(1, $1) g",
                       intakes - unprojected)  # fmt: skip
    await conn.execute("VACUUM ANALYZE intakes")
    await conn.execute("VACUUM ANALYZE cases")


async def _measure(dsn: str, intakes: int, unprojected: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        started = time.monotonic()
        await _fill(conn, intakes, unprojected)
        size = await conn.fetchval("SELECT pg_size_pretty(pg_total_relation_size('intakes'))")
        print(f"{intakes:,} reports ({size}), {unprojected} without a case row,"
              f" filled in {time.monotonic() - started:.0f} s")
        for name, sql in FORMS.items():
            for value in ("cat7", "absent"):  # a used category, one nothing names
                times = []
                for _ in range(5):
                    t = time.monotonic()
                    await conn.fetchval(sql, value, PATH)
                    times.append((time.monotonic() - t) * 1000)
                print(f"{name}, {value}: best {min(times):.1f} ms,"
                      f" median {statistics.median(times):.1f} ms")
            plan = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", "absent", PATH)
            print("\n".join(f"    {r[0]}" for r in plan))
    finally:
        await conn.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--intakes", type=int, default=1_000_000)
    p.add_argument("--unprojected", type=int, default=5)
    p.add_argument("--dsn", default=None, help="a PostgreSQL to fill (its tables are replaced)")
    args = p.parse_args()
    with bench_database(args.dsn, "postgres", prefix="jiesu-bench-check-") as dsn:
        asyncio.run(_measure(dsn, args.intakes, args.unprojected))


if __name__ == "__main__":
    main()
