"""A search of the console a page at a time (工单查询, 审计查询): how many it finds in all, which
of them a page lists, and the links to the previous and the next page of the same search.

Before, each search listed its newest rows and said there were more, with no total and no way
to the rest. The pieces are here once: the page number a search takes (1–LAST_PAGE, else 422),
the offset of a page, and :class:`Paged` (the template's ``pager`` macro, _macros.html)."""

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


def paged(
    path: str, search: dict[str, str | None], page_number: int, total: int, shown: int = SHOWN
) -> Paged:
    """Page ``page_number`` of the search ``search`` (its address's query, blanks left out)
    at ``path``, which found ``total`` rows."""
    kept = {k: v for k, v in search.items() if v}

    def link(n: int) -> str:
        return f"{path}?{urlencode({**kept, 'page': n})}"

    last = max(1, -(-total // shown))
    return Paged(
        total=total,
        first=offset(page_number, shown) + 1,
        # from beyond the last page, back to the last one
        previous=link(min(page_number, last + 1) - 1) if page_number > 1 else None,
        next=link(page_number + 1) if page_number < last else None,
    )
