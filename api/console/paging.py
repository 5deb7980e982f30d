"""A search of the console a page at a time (工单查询, 审计查询): how many it finds in all, which
of them a page lists, and the links to the previous and the next page of the same search.

Before, each search listed its newest rows and said there were more, with no total and no way
to the rest. The pieces are here once: the page number a search takes (1–LAST_PAGE, else 422),
the offset of a page, and :class:`Paged` (the template's ``pager`` macro, _macros.html).

审计查询 pages by keyset too (:func:`by_position`): its 下一页 is the page after the last row
listed (``after``, the case list API's cursor, api.cases.encode_cursor) and its 上一页 the page
before the first (``before``), so a deep page reads its own rows only, where an offset reads
every row above it; the page says its rows' place (第 a–b 件) by counting the rows above it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlencode

from fastapi import Query

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
