"""``jiesu backfill-handlings [--all]``: rebuild the handlings (承办记录, fair attribution) of
cases written before they existed (jiesu/readmodel/backfill.py). Idempotent; safe beside a
running worker."""

from __future__ import annotations

import argparse
import asyncio

from jiesu.config import get_settings
from jiesu.db import create_pool
from jiesu.readmodel.backfill import Backfilled, rebuild_handlings


async def _backfill(every: bool) -> Backfilled:
    pool = await create_pool(get_settings().database_url, min_size=1, max_size=2)
    try:
        return await rebuild_handlings(pool, every=every)
    finally:
        await pool.close()


def cmd_backfill_handlings(args: argparse.Namespace) -> int:
    """Rebuild case_handlings from case_events for cases without them (--all: every case)."""
    done = asyncio.run(_backfill(args.all))
    print(f"handlings rebuilt for {done.cases} cases ({done.handlings} rows).")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    doc = cmd_backfill_handlings.__doc__
    p = sub.add_parser("backfill-handlings", help=doc, description=doc)
    p.add_argument("--all", action="store_true",
                   help="rebuild every case's handlings, not only the missing ones")  # fmt: skip
    p.set_defaults(func=cmd_backfill_handlings)
