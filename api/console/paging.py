"""A search of the console a page at a time (工单查询, 审计查询): how many it finds in all, which
of them a page lists, and the links to the previous and the next page of the same search.

Before, each search listed its newest rows and said there were more, with no total and no way
to the rest. The pieces are here once: the page number a search takes (1–LAST_PAGE, else 422),
the offset of a page, and :class:`Paged` (the template's ``pager`` macro, _macros.html).

审计查询 pages by keyset too (:func:`by_position`): its 下一页 is the page after the last row
listed (``after``, the case list API's cursor, api.cases.encode_cursor) and its 上一页 the page
before the first (``before``), so a deep page reads its own rows only, where an offset reads
every row above it; the page says its rows' place (第 a–b 件) by counting the rows above it.
工单查询 pages so too, by the same pieces: the ``page``/``after``/``before`` a search's address
takes (:func:`position`), a page's rows with its place and its total read in one snapshot
(:func:`read`: :func:`counted` by an index, or counted with its rows' reading once, as
工单查询's phone is), and its links (:func:`links`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Protocol
from urllib.parse import urlencode

import asyncpg
from fastapi import Query

from api.cases import Position, decode_cursor, encode_cursor, position_of

SHOWN = 50
"""Rows a page of a search lists."""
LAST_PAGE = 10_000
"""No search has more pages than this (a page beyond the last is an empty page)."""
PageNumber = Annotated[int, Query(alias="page", ge=1, le=LAST_PAGE)]
"""The ``page`` of a search's address: 1 when not given; 0, -1, "x" or beyond LAST_PAGE: 422."""
Cursor = Annotated[str | None, Query(max_length=200)]
"""``after`` / ``before`` of a search by keyset: a row's position (api.cases.decode_cursor)."""


def offset(page_number: int, shown: int = SHOWN) -> int:
    """The rows before page ``page_number``."""
    return (page_number - 1) * shown


@dataclass(frozen=True)
class Paged:
    """``total``: rows the search finds; ``first``: the number of the page's first row;
    ``previous`` / ``next``: the addresses of those pages of the same search (None: none)."""

    total: int
    first: int
    previous: str | None
    next: str | None


def _link(path: str, search: dict[str, str | None], **where: str | int) -> str:
    """The address of the search ``search`` (blanks left out) at ``path``, at ``where``."""
    return f"{path}?{urlencode({**{k: v for k, v in search.items() if v}, **where})}"


def by_position(
    path: str, search: dict[str, str | None], first: int, listed: int, total: int,
    cursors: tuple[str, str] | None,
) -> Paged:  # fmt: skip
    """A page of ``listed`` rows, the first of them the ``first`` of the ``total`` the search
    finds; ``cursors``: the positions of its first and last rows (None: it lists none)."""
    if cursors is None:  # nothing at this position (past the end): back to the start
        return Paged(total, first, _link(path, search, page=1) if total else None, None)
    return Paged(
        total=total, first=first,
        previous=_link(path, search, before=cursors[0]) if first > 1 else None,
        next=_link(path, search, after=cursors[1]) if first + listed - 1 < total else None,
    )  # fmt: skip


def paged(
    path: str, search: dict[str, str | None], page_number: int, total: int, shown: int = SHOWN
) -> Paged:
    """Page ``page_number`` of the search ``search`` (its address's query, blanks left out)
    at ``path``, which found ``total`` rows."""

    def link(n: int) -> str:
        return _link(path, search, page=n)

    last = max(1, -(-total // shown))
    return Paged(
        total=total,
        first=offset(page_number, shown) + 1,
        # from beyond the last page, back to the last one
        previous=link(min(page_number, last + 1) - 1) if page_number > 1 else None,
        next=link(page_number + 1) if page_number < last else None,
    )


class BadPosition(ValueError):
    """A search's address with two of ``page``/``after``/``before``, or a cursor that is not
    one: the page says so (422) and reads nothing."""


def position(
    query: Mapping[str, str], after: str | None, before: str | None
) -> dict[str, Position]:
    """The ``after`` / ``before`` position a search's address asks for (none: a page by
    offset, ``page``); :class:`BadPosition` for two of page/after/before or a cursor that is
    not one (api.cases.decode_cursor)."""
    given = [k for k in ("page", "after", "before") if k in query]
    if len(given) > 1:
        raise BadPosition(f"翻页参数只能给一个：{'、'.join(given)}")
    try:
        return {k: decode_cursor(v)
                for k, v in (("after", after), ("before", before)) if v is not None}  # fmt: skip
    except ValueError:
        raise BadPosition("翻页位置无效：请从查询结果的上一页、下一页进入") from None


class Rows(Protocol):
    """A search's rows in the case list's order (api.cases.search's shape): ``limit`` of them
    from ``offset``, or after / just before a position."""

    def __call__(
        self, conn: asyncpg.Connection, *, limit: int, offset: int = 0,
        after: Position | None = None, before: Position | None = None,
    ) -> Awaitable[list[dict[str, Any]]]: ...  # fmt: skip


class Count(Protocol):
    """How many rows the search finds (api.cases.count's shape); ``before``: only those above
    this position."""

    def __call__(
        self, conn: asyncpg.Connection, *, before: Position | None = None
    ) -> Awaitable[int]: ...


class Counts(Protocol):
    """How many rows of the search are above ``before`` (0 for None) and how many it finds in
    all: a search that must read its rows to count them (工单查询's phone) counts both in one
    statement; :func:`counted` makes this of a :class:`Count`."""

    def __call__(
        self, conn: asyncpg.Connection, before: Position | None = None
    ) -> Awaitable[tuple[int, int]]: ...


def counted(count: Count) -> Counts:
    """:class:`Counts` by two of ``count`` (an index counts each cheaply: 审计查询's)."""

    async def counts(conn: asyncpg.Connection, before: Position | None = None) -> tuple[int, int]:
        above = 0 if before is None else await count(conn, before=before)
        return above, await count(conn)

    return counts


@asynccontextmanager
async def snapshot(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """One connection in a read-only repeatable-read transaction, as the boards read
    (jiesu.readmodel.boards): what its statements read is of one moment."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read",
                                                        readonly=True):  # fmt: skip
        yield conn


async def read(
    pool: asyncpg.Pool, rows: Rows, counts: Counts, page_number: int, shown: int = SHOWN,
    after: Position | None = None, before: Position | None = None,
) -> tuple[list[dict[str, Any]], int, int]:  # fmt: skip
    """A page's rows, the place of its first row among the search's (1 = the newest) and how
    many the search finds — read in one snapshot, so that 共 N 件 and 第 a–b 件 are of the
    rows listed (two statements counted a row filed between them and did not list it). By
    position the page reads its own rows only, and its place is the count of the rows above
    its first; without one, page ``page_number`` by offset."""
    async with snapshot(pool) as conn:
        if after is None and before is None:
            above = offset(page_number, shown)
            found = await rows(conn, limit=shown, offset=above)
            _, total = await counts(conn)
        else:
            found = await rows(conn, limit=shown, after=after, before=before)
            above, total = await counts(conn, position_of(found[0]) if found else after or before)
    return found, above + 1, total


def links(
    path: str, search: dict[str, str | None], query: Mapping[str, str],
    rows: list[dict[str, Any]], first: int, total: int, page_number: int, shown: int = SHOWN,
) -> Paged:  # fmt: skip
    """The page's place and links (:class:`Paged`) for the rows :func:`read` read for the
    address's ``query``: 下一页 and 上一页 by the positions of its last and first rows; a page
    by offset (``page``) beyond the last: back to the last page, by offset."""
    if not rows and "page" in query:  # (``page`` comes alone: :func:`position`)
        return paged(path, search, page_number, total, shown)
    ends = (rows[0], rows[-1]) if rows else None
    cursors = ends and (encode_cursor(*position_of(ends[0])), encode_cursor(*position_of(ends[1])))
    return by_position(path, search, first, len(rows), total, cursors)
