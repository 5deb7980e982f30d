"""The plans of the dispatcher's by-id statements (the marks, the heartbeat, the hand-back) as
asyncpg runs them — prepared, so after five executions PostgreSQL may settle on a generic
plan — on a large outbox working through a backlog, the old statements against today's.

    .venv/bin/python -m bench.outbox_mark_plan [--rows 2000000] [--backlog 10000] [--rounds 2]
        [--dsn URL]

Starts its own embedded PostgreSQL (bench.harness.bench_database) unless ``--dsn`` names a
database, migrates it and writes ``--rows`` notices as ``bench.outbox_failed_plan`` does (all
``sent`` but one in 2,000 ``failed``, one in 10,000 ``pending``, one in 4,002 ``skipped``),
then ``VACUUM ANALYZE``. Each round, for each statement set (``old``: the statements before the
twenty-second session, kept here; ``today``: ``jiesu.notify.outbox``'s) and each
``plan_cache_mode`` (``auto``, PostgreSQL's default, and ``force_generic_plan``), on a fresh
``VACUUM ANALYZE``: writes ``--backlog`` pending notices with the projection's statement (an
outbox catching up after a mail server's outage; far below autovacuum's thresholds on a table
this size, so no vacuum runs meanwhile) and delivers them as the dispatcher does — ``_EXPIRE``,
``_CLAIM`` of 50, then for each notice the heartbeat ``_RENEW`` and its mark: ``_SENT``, one in
ten ``_FAILED_ATTEMPT`` (its back-off an hour: it stays pending), one in 25 ``_SKIPPED``; the
last two of every tenth batch handed back (``_HAND_BACK``). Every execution of those statements
is recorded by ``auto_explain`` (``log_analyze``, ``log_buffers``, at NOTICE level to this
client): the index it read, its shared buffers (hit + read) and its execution time. Reports
per set, mode and statement: the indexes read (how many executions each), buffers median and
max, ms median and p95 and the total. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg

from bench.harness import bench_database
from bench.outbox_failed_plan import _FILL
from jiesu import db
from jiesu.notify import outbox
from jiesu.readmodel import projection

# The by-id statements before the twenty-second session: the fence ``status = 'sending'`` let
# the planner read the notice through 0004's notifications_due or 0042's notifications_unsent.
OLD = {
    "_SENT": """
UPDATE notifications
SET status = 'sent', sent_at = now(), lease_until = NULL, last_error = NULL, channel = $3
WHERE id = $1 AND status = 'sending' AND attempts = $2
""",
    "_FAILED_ATTEMPT": """
UPDATE notifications
SET status = CASE WHEN attempts >= $3 THEN 'failed' ELSE 'pending' END,
    last_error = $4, lease_until = NULL, not_before = now() + $5::interval, channel = $6
WHERE id = $1 AND status = 'sending' AND attempts = $2
""",
    "_SKIPPED": """
UPDATE notifications SET status = 'skipped', lease_until = NULL, last_error = $3
WHERE id = $1 AND status = 'sending' AND attempts = $2
""",
    "_RENEW": """
UPDATE notifications n SET lease_until = now() + $3::interval
FROM unnest($1::bigint[], $2::int[]) AS held(id, attempts)
WHERE n.id = held.id AND n.attempts = held.attempts AND n.status = 'sending'
RETURNING n.id
""",
    "_HAND_BACK": """
UPDATE notifications n SET status = 'pending', lease_until = NULL, attempts = n.attempts - 1
FROM unnest($1::bigint[], $2::int[]) AS held(id, attempts)
WHERE n.id = held.id AND n.status = 'sending' AND n.attempts = held.attempts
""",
}
TODAY = {name: getattr(outbox, name) for name in OLD}
SETS = {"old": OLD, "today": TODAY}
MODES = ("auto", "force_generic_plan")
LEASE = timedelta(seconds=30)
MAX_ATTEMPTS = 10
BATCH = 50


@dataclass
class Runs:
    """What auto_explain said of each execution of one statement."""

    reads: Counter[str] = field(default_factory=Counter)
    buffers: list[int] = field(default_factory=list)  # the whole statement's
    read_buffers: list[int] = field(default_factory=list)  # its scan of the outbox's alone
    ms: list[float] = field(default_factory=list)


def _scans(node: dict[str, Any]) -> list[tuple[str, int]]:
    """The scans of the outbox in a plan, as ('Index Scan using notifications_pkey', buffers)."""
    found = []
    if node.get("Node Type", "").endswith("Scan") and node.get("Relation Name") == "notifications":
        found.append((f"{node['Node Type']}"
                      + (f" using {node['Index Name']}" if "Index Name" in node
                         else " on notifications"), _buffers(node)))  # fmt: skip
    for child in node.get("Plans", []):
        found += _scans(child)
    return found


class Recorder:
    """Collects auto_explain's notices of the statements named in ``names`` (by their text)."""

    def __init__(self, statements: dict[str, str]) -> None:
        self.by_text = {" ".join(sql.split()): name for name, sql in statements.items()}
        self.runs: dict[str, Runs] = {name: Runs() for name in statements}

    def __call__(self, _conn: object, message: asyncpg.PostgresLogMessage) -> None:
        text = message.message
        if not text.startswith("duration:"):
            return
        ms = float(re.match(r"duration: ([0-9.]+) ms", text).group(1))  # type: ignore[union-attr]
        explained = json.loads(text[text.index("{"):])
        name = self.by_text.get(" ".join(explained["Query Text"].split()))
        if name is None:
            return
        plan = explained["Plan"]
        runs = self.runs[name]
        scans = _scans(plan)
        runs.reads["; ".join(scan for scan, _ in scans) or "?"] += 1
        runs.buffers.append(_buffers(plan))
        runs.read_buffers.append(sum(buffers for _, buffers in scans))
        runs.ms.append(ms)


def _buffers(node: dict[str, Any]) -> int:
    """Shared buffers hit and read by the whole statement (the top node counts its children)."""
    return int(node.get("Shared Hit Blocks", 0)) + int(node.get("Shared Read Blocks", 0))


async def one_round(conn: asyncpg.Connection, statements: dict[str, str], mode: str,
                    backlog: int, tag: str) -> dict[str, Runs]:  # fmt: skip
    """Write ``backlog`` pending notices and deliver them with ``statements``' marks."""
    await conn.execute("VACUUM ANALYZE notifications")
    await conn.executemany(projection._INSERT_NOTICE, [
        (f"{tag}:{i}", f"JSB{tag}-{i // 8}", i % 8, "routed", "department", f"dept-{i % 40}",
         "email", "subject", "body text of a notice") for i in range(backlog)])  # fmt: skip
    recorder = Recorder(statements)
    await conn.execute(f"SET plan_cache_mode = {mode}")
    conn.add_log_listener(recorder)
    try:
        batches = 0
        while True:
            await conn.execute(outbox._EXPIRE, MAX_ATTEMPTS)
            rows = await conn.fetch(outbox._CLAIM, BATCH, LEASE, MAX_ATTEMPTS)
            if not rows:
                break
            batches += 1
            hand_back = rows[-2:] if batches % 10 == 0 else []
            for i, row in enumerate(rows[: len(rows) - len(hand_back)]):
                await conn.fetch(statements["_RENEW"], [row["id"]], [row["attempts"]], LEASE)
                if i % 10 == 9:
                    await conn.execute(statements["_FAILED_ATTEMPT"], row["id"],
                                       row["attempts"], MAX_ATTEMPTS, "bench: refused",
                                       timedelta(hours=1), row["channel"])  # fmt: skip
                elif i % 25 == 24:
                    await conn.execute(statements["_SKIPPED"], row["id"], row["attempts"],
                                       "bench: skipped")  # fmt: skip
                else:
                    await conn.execute(statements["_SENT"], row["id"], row["attempts"],
                                       row["channel"])  # fmt: skip
            if hand_back:
                await conn.execute(statements["_HAND_BACK"], [r["id"] for r in hand_back],
                                   [r["attempts"] for r in hand_back])  # fmt: skip
    finally:
        conn.remove_log_listener(recorder)
        await conn.execute("RESET plan_cache_mode")
    # the round's failed attempts wait an hour: send them now, out of the record
    await conn.execute("UPDATE notifications SET status = 'sent', sent_at = now()"
                       " WHERE key LIKE $1 AND status <> 'sent'", f"{tag}:%")  # fmt: skip
    return recorder.runs


async def run(url: str, args: argparse.Namespace) -> dict[str, dict[str, Runs]]:
    await db.ensure_database(url)
    conn = await asyncpg.connect(url)
    try:
        await db.migrate(conn)
        if not await conn.fetchval("SELECT count(*) > 0 FROM notifications"):
            started = time.monotonic()
            await conn.execute(_FILL, args.rows)
            print(f"{args.rows:,} notices written in {time.monotonic() - started:.1f} s")
        size = await conn.fetchval("SELECT pg_size_pretty(pg_total_relation_size('notifications'))")
        count = await conn.fetchval("SELECT count(*) FROM notifications")
        print(f"PostgreSQL {await conn.fetchval('SHOW server_version')}; {count:,} notices,"
              f" {size}; backlog {args.backlog:,} per round; load average at start {_load()}")
        await conn.execute("LOAD 'auto_explain'")
        for setting in ("log_min_duration = 0", "log_analyze = on", "log_buffers = on",
                        "log_format = json", "log_level = notice"):  # fmt: skip
            await conn.execute(f"SET auto_explain.{setting}")
        results: dict[str, dict[str, Runs]] = {}
        for r in range(args.rounds):
            order = [(s, m) for s in SETS for m in MODES]
            for set_name, mode in order if r % 2 == 0 else reversed(order):
                tag = f"r{r}{set_name}{mode}"
                runs = await one_round(conn, SETS[set_name], mode, args.backlog, tag)
                merged = results.setdefault(f"{set_name} / {mode}", {})
                for name, got in runs.items():
                    into = merged.setdefault(name, Runs())
                    into.reads.update(got.reads)
                    into.buffers += got.buffers
                    into.read_buffers += got.read_buffers
                    into.ms += got.ms
                print(f"round {r + 1} {set_name} / {mode} done, load {_load()}")
        return results
    finally:
        await conn.close()


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def report(results: dict[str, dict[str, Runs]]) -> str:
    lines = []
    for label, by_name in results.items():
        lines.append(f"--- {label}")
        for name, runs in by_name.items():
            if not runs.ms:
                continue
            p95 = statistics.quantiles(runs.ms, n=20)[-1] if len(runs.ms) > 1 else runs.ms[0]
            reads = ", ".join(f"{read} ×{n:,}" for read, n in runs.reads.most_common())
            lines.append(
                f"{name:16} {len(runs.ms):6,} runs  buffers median"
                f" {statistics.median(runs.buffers):.0f}"
                f" max {max(runs.buffers):,} total {sum(runs.buffers):,} (of which reading the"
                f" notice: median {statistics.median(runs.read_buffers):.0f}"
                f" max {max(runs.read_buffers):,})"
                f"  ms median {statistics.median(runs.ms):.3f} p95 {p95:.3f}"
                f" total {sum(runs.ms):.0f}  reads: {reads}")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="notices (default 2,000,000)")
    parser.add_argument("--backlog", type=int, default=10_000,
                        help="pending notices delivered per round (default 10,000)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=2, help="rounds (default 2)")
    parser.add_argument("--dsn", help="a database to use instead of an embedded server's")
    args = parser.parse_args()
    with bench_database(args.dsn, "outbox_mark_plan") as url:
        results = asyncio.run(run(url, args))
    print(report(results))
    print(f"load average at end {_load()}")


if __name__ == "__main__":
    main()
