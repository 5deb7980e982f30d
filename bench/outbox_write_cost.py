"""What the outbox's partial indexes cost each notice written: the outbox's own statements on
two (or more) copies of ``notifications`` that differ only in their indexes, in the same run.

    .venv/bin/python -m bench.outbox_write_cost [--notices 5000] [--rounds 7] [--prefill 500000]

Starts its own embedded PostgreSQL (bench.harness.bench_database), migrates it and makes one
copy of the outbox per index set (``SETS``) in a schema of its own, each with ``--prefill``
``sent`` notices first (an outbox in use: its primary key, key and case indexes are deep).
Then, in each round and for each set (the order turned round every other round), writes
``--notices`` notices as the projection does (``projection._INSERT_NOTICE``, one statement
each, pipelined), then delivers them as the dispatcher does, batch after batch until none is
left: ``outbox._EXPIRE`` and ``outbox._CLAIM`` of 50 (pending → sending), then ``outbox._SENT``
of each (sending → sent; pipelined, without the send itself). Reports per set the
milliseconds of each phase and of the whole, the index each statement's plan reads after
the round, and the WAL bytes written per notice
(``pg_current_wal_lsn``: what the writes cost, whatever else the machine is doing), median
(min–max) over the rounds, and the load average. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from datetime import timedelta
from typing import Any

import asyncpg

from bench.harness import bench_database
from bench.write_cost import load_average as _load
from bench.write_cost import spread, summary_lines, wal_position
from jiesu import db
from jiesu.notify import outbox
from jiesu.readmodel import projection

# 0004's indexes besides the keys, which every set has.
_BASE = (
    "CREATE INDEX ON {s}.notifications (id) WHERE status IN ('pending', 'sending')",
    "CREATE INDEX ON {s}.notifications (case_id, id)",
)
_UNSENT = "CREATE INDEX ON {s}.notifications (status) WHERE status <> 'sent'"
SETS: dict[str, tuple[str, ...]] = {
    # today: 0004 + 0041 + 0042 + 0044
    "today": (*_BASE, _UNSENT,
              "CREATE INDEX ON {s}.notifications (created_at) WHERE status = 'failed'",
              "CREATE INDEX ON {s}.notifications (created_at)"
              " WHERE status = 'skipped' AND recipient_kind = 'citizen'"),
    # 0041's and 0044's dropped, 0042's on (status, created_at)
    "folded": (*_BASE,
               "CREATE INDEX ON {s}.notifications (status, created_at) WHERE status <> 'sent'"),
    # 0041's and 0044's dropped, 0042's as it is
    "without_both": (*_BASE, _UNSENT),
}  # fmt: skip

_PREFILL = """
INSERT INTO {s}.notifications (key, case_id, event_seq, event_kind, recipient_kind,
    recipient_id, channel, subject, body, created_at, status, attempts, sent_at)
SELECT 'p' || g, 'JS' || (g / 8), g % 8, 'routed', 'department', 'dept-' || (g % 40), 'email',
       'subject', 'body text of a notice', now() - make_interval(secs => g * 15), 'sent', 1, now()
FROM generate_series(1, $1::int) g
"""
LEASE = timedelta(seconds=30)
MAX_ATTEMPTS = 10
BATCH = 50


async def make_copy(conn: asyncpg.Connection, schema: str, creates: tuple[str, ...],
                    prefill: int) -> None:  # fmt: skip
    await conn.execute(f"CREATE SCHEMA {schema}")
    await conn.execute(f"CREATE TABLE {schema}.notifications (LIKE public.notifications"
                       " INCLUDING ALL EXCLUDING INDEXES)")  # fmt: skip
    await conn.execute(f"ALTER TABLE {schema}.notifications ADD PRIMARY KEY (id),"
                       " ADD UNIQUE (key)")  # fmt: skip
    for create in creates:
        await conn.execute(create.format(s=schema))
    await conn.execute(_PREFILL.format(s=schema), prefill)
    await conn.execute(f"VACUUM ANALYZE {schema}.notifications")



async def one_round(conn: asyncpg.Connection, schema: str, n: int, tag: str) -> dict[str, float]:
    """Insert ``n`` notices, claim them all (pending → sending), mark them sent."""
    await conn.execute(f"SET search_path = {schema}, public")
    notices = [(f"{tag}:{i}", f"JSW{tag}-{i // 8}", i % 8, "routed",
                "citizen" if i % 3 == 0 else "department",
                f"JSW{tag}-{i // 8}" if i % 3 == 0 else f"dept-{i % 40}", "email",
                "subject", "body text of a notice") for i in range(n)]  # fmt: skip
    wal_start = await wal_position(conn)
    t0 = time.perf_counter()
    await conn.executemany(projection._INSERT_NOTICE, notices)
    inserted = time.perf_counter()
    expire = claim = sent = 0.0
    claimed = 0
    while True:  # as the dispatcher does: claim a batch, send it, mark each sent, claim again
        t = time.perf_counter()
        await conn.execute(outbox._EXPIRE, MAX_ATTEMPTS)
        expire += time.perf_counter() - t
        t = time.perf_counter()
        rows = await conn.fetch(outbox._CLAIM, BATCH, LEASE, MAX_ATTEMPTS)
        claim += time.perf_counter() - t
        t = time.perf_counter()
        await conn.executemany(outbox._SENT, [(r["id"], r["attempts"], r["channel"]) for r in rows])
        sent += time.perf_counter() - t
        claimed += len(rows)
        if len(rows) < BATCH:
            break
    total = time.perf_counter() - t0
    wal = await wal_position(conn) - wal_start
    plans = {name: await _reads(conn, sql, *args) for name, sql, args in (
        ("expire", outbox._EXPIRE, (MAX_ATTEMPTS,)),
        ("claim", outbox._CLAIM, (BATCH, LEASE, MAX_ATTEMPTS)),
        ("sent", outbox._SENT, (0, 1, "email")))}  # fmt: skip
    if claimed != n:
        raise RuntimeError(f"{schema}: claimed {claimed} of {n}")
    await conn.execute("RESET search_path")
    print(f"  {schema} plans after the round: {plans}")
    return {"insert_ms": (inserted - t0) * 1000, "expire_ms": expire * 1000,
            "claim_ms": claim * 1000,
            "sent_ms": sent * 1000, "total_ms": total * 1000,
            "wal_bytes_per_notice": float(wal) / n}  # fmt: skip


async def _reads(conn: asyncpg.Connection, sql: str, *args: object) -> str:
    """The index a statement's plan reads (EXPLAIN only: nothing runs)."""
    plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + sql, *args))
    return ", ".join(re.findall(r"(?:Index|Index Only) Scan(?: Backward)? using (\w+)", plan)[:1])



async def run(url: str, args: argparse.Namespace) -> dict[str, Any]:
    await db.ensure_database(url)
    conn = await asyncpg.connect(url)
    try:
        await db.migrate(conn)
        for schema, creates in SETS.items():
            await make_copy(conn, schema, creates, args.prefill)
        print(f"PostgreSQL {await conn.fetchval('SHOW server_version')}; {len(SETS)} copies of"
              f" {args.prefill:,} sent notices; load average at start {_load()}")  # fmt: skip
        rounds: dict[str, list[dict[str, float]]] = {s: [] for s in SETS}
        for r in range(args.rounds):
            order = list(SETS) if r % 2 == 0 else list(reversed(SETS))
            for schema in order:
                m = await one_round(conn, schema, args.notices, f"r{r}")
                rounds[schema].append(m)
                print(f"round {r + 1} {schema:13} total {m['total_ms']:7.1f} ms (insert"
                      f" {m['insert_ms']:.1f}, expire {m['expire_ms']:.1f}, claim"
                      f" {m['claim_ms']:.1f}, sent"
                      f" {m['sent_ms']:.1f}), WAL {m['wal_bytes_per_notice']:.0f} B/notice"
                      f"  load {_load()}")  # fmt: skip
        sizes = {s: await conn.fetch(
            "SELECT indexrelname, pg_relation_size(indexrelid) AS bytes FROM pg_stat_user_indexes"
            " WHERE schemaname = $1 ORDER BY 1", s) for s in SETS}  # fmt: skip
    finally:
        await conn.close()
    summary = {s: {k: spread([m[k] for m in ms]) for k in ms[0]} for s, ms in rounds.items()}
    return {"summary": summary, "sizes": {s: {r["indexrelname"]: r["bytes"] for r in rows}
                                          for s, rows in sizes.items()}}  # fmt: skip



def report(results: dict[str, Any], n: int) -> str:
    lines = [f"per round of {n:,} notices, median (min–max):"]
    lines += summary_lines(results["summary"], "notice", 13)
    for schema, sizes in results["sizes"].items():
        lines.append(f"  {schema} indexes after: " + ", ".join(
            f"{name} {size // 1024} kB" for name, size in sizes.items()))  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notices", type=int, default=5000, help="notices per round and set")
    parser.add_argument("--rounds", type=int, default=7, help="rounds (default 7)")
    parser.add_argument("--prefill", type=int, default=500_000,
                        help="sent notices in each copy before the rounds (default 500,000)")
    args = parser.parse_args()
    with bench_database(None, "outbox_write_cost") as url:  # its folder deleted after
        results = asyncio.run(run(url, args))
    print(report(results, args.notices))
    print(f"load average at end {_load()}")


if __name__ == "__main__":
    main()
