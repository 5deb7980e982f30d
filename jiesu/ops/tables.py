"""Plain-text tables for the ``jiesu`` commands, aligned as a terminal shows them: a CJK
character (a person's name, 李娜 (话务员)) takes two columns, so widths are counted in columns,
not characters."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence


def columns(text: str) -> int:
    """How many terminal columns ``text`` takes (East Asian wide and full-width: two)."""
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


def plain_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """``header``, a line of dashes, then ``rows``; two spaces between columns."""
    table = [list(header), *(list(r) for r in rows)]
    widths = [max(columns(row[i]) for row in table) for i in range(len(header))]
    lines = [
        "  ".join(c + " " * (w - columns(c)) for c, w in zip(row, widths, strict=True))
        for row in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)
