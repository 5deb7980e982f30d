"""What the write-cost benches share (bench/outbox_write_cost.py, bench/intake_write_cost.py):
the WAL position, the machine's load, a spread of rounds and the summary's lines."""

from __future__ import annotations

import os
import statistics
from typing import Any

import asyncpg


async def wal_position(conn: asyncpg.Connection) -> int:
    """The WAL position, in bytes (asyncpg reads a pg_lsn as an int)."""
    return int(await conn.fetchval("SELECT pg_current_wal_lsn()"))


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summary_lines(summary: dict[str, dict[str, Any]], unit: str, width: int) -> list[str]:
    """One line per schema: each ``*_ms`` figure and the WAL bytes per ``unit``, median
    (min–max) of the rounds."""
    lines = []
    for schema, s in summary.items():
        cells = [f"{k.removesuffix('_ms')} {v['median']:.1f} ({v['min']:.1f}–{v['max']:.1f}) ms"
                 for k, v in s.items() if k.endswith("_ms")]  # fmt: skip
        wal = s[f"wal_bytes_per_{unit}"]
        lines.append(f"  {schema:{width}} " + ", ".join(cells) + f"; WAL {wal['median']:.0f}"
                     f" ({wal['min']:.0f}–{wal['max']:.0f}) B/{unit}")  # fmt: skip
    return lines
