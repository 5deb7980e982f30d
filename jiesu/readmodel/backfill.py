"""Backfill (补建承办记录): the handlings (``case_handlings``, fair attribution) of cases whose
rows were written before migration 0014 added them, rebuilt from their events
(``case_events``) exactly as the projection writes them (:func:`write_handlings`).

Idempotent: a case's handlings are replaced, never added to, so a second run writes the same
rows; a case without events (a row made by hand) is left as it is. ``every`` rebuilds all
cases (after a change in how events are attributed). Each batch is one transaction that locks
its cases' rows (as the projection does), so it runs safely beside a live worker; the rebuilt
cases are marked changed (an update of their rows, which records its transaction in
``changed_xid``, migration 0028) so the statistics' refresher recounts their days.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from jiesu.case.domain import Status
from jiesu.readmodel.projection import write_handlings

BATCH = 500

_MISSING = """
SELECT case_id, status FROM cases c
WHERE case_id > $1 AND NOT EXISTS (SELECT 1 FROM case_handlings h WHERE h.case_id = c.case_id)
ORDER BY case_id LIMIT $2 FOR UPDATE
"""
_EVERY = "SELECT case_id, status FROM cases WHERE case_id > $1 ORDER BY case_id LIMIT $2 FOR UPDATE"


@dataclass(frozen=True)
class Backfilled:
    cases: int  # cases whose handlings were rebuilt
    handlings: int  # handling rows written


async def rebuild_handlings(
    pool: asyncpg.Pool, *, every: bool = False, batch: int = BATCH
) -> Backfilled:
    """Rebuild the handlings of the cases that have none (``every``: of all cases)."""
    cases = written = 0
    last = ""
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_EVERY if every else _MISSING, last, batch)
            if not rows:
                return Backfilled(cases, written)
            rebuilt = []
            for r in rows:
                n = await write_handlings(conn, r["case_id"], Status(r["status"]))
                if n is not None:
                    rebuilt.append(r["case_id"])
                    written += n
            await conn.execute(
                "UPDATE cases SET updated_at = now() WHERE case_id = ANY($1)", rebuilt
            )
        cases += len(rebuilt)
        last = rows[-1]["case_id"]
