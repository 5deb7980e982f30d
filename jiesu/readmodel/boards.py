"""A board: a list of the supervisors' console (派单督办) that lists at most a fixed number of
rows, and says how many its rule finds in all.

Before, each board's heading counted the rows it listed: "200 件" however many cases waited
or were late. A :class:`Board` is written once — its rule (``source``: the FROM and WHERE), its
order and the columns it lists — and gives both the list and the count of that same rule,
read in one snapshot so that the heading and the rows agree (a case that changes between
the two statements is not counted in one and listed in the other)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

BOARD_ROWS = 200
"""The rows a board lists (its first, by its own order); its count is of every row."""


@dataclass(frozen=True)
class Board:
    """``source``: ``FROM … WHERE …`` with ``arity`` placeholders ($1…); the list's limit is
    the next one."""

    columns: str
    source: str
    order: str
    arity: int = 0

    @property
    def rows_sql(self) -> str:
        return f"SELECT {self.columns} {self.source} ORDER BY {self.order} LIMIT ${self.arity + 1}"

    @property
    def count_sql(self) -> str:
        return f"SELECT count(*) {self.source}"


@dataclass(frozen=True)
class Listed:
    """What a board shows: its first ``rows`` and how many its rule finds (``total``)."""

    rows: list[Any]
    total: int

    @property
    def cut(self) -> bool:
        """More rows than listed: the heading says which it lists."""
        return self.total > len(self.rows)


async def read(
    pool: asyncpg.Pool, board: Board, *args: Any, limit: int = BOARD_ROWS,
    shape: Callable[[asyncpg.Record], Any] = dict,
) -> Listed:  # fmt: skip
    """The board's first ``limit`` rows (each through ``shape``) and its count, in one
    snapshot (repeatable read, read only)."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read",
                                                        readonly=True):  # fmt: skip
        rows = await conn.fetch(board.rows_sql, *args, limit)
        total = await conn.fetchval(board.count_sql, *args)
    return Listed([shape(r) for r in rows], total)
