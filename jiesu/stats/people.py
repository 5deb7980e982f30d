"""Per-person figures (个人绩效): what each person of a unit did with the cases, next to the
unit's own figures.

Read from the handlings (jiesu/stats/attribution.py: the case as each department that held it
saw it), so a person is charged with what they did in their department's round: the cases
whose last reply they gave (办结), how many of those within the finish deadline in force, the
citizens' verdicts on those replies (评价), and the returns (退单) they made. A person is the
actor's name: the staff login for a person in a session, the key's name for an API key.

The conditions are the indicator measures of jiesu/stats/indicators.py, applied to handling
rows: one definition of "on time" and "satisfied" for units and people alike.

Requests read the people rollup (jiesu/stats/people_rollup.py), refreshed in the background
with the daily rollup, so the figures are as of its ``as_of``; ``from_handlings`` computes the
same figures from the handlings and events themselves (the tests' and benchmark's cross-check).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

import asyncpg

from jiesu.stats.indicators import FINISHED_ON_TIME, RATED, SATISFIED, ratio
from jiesu.stats.people_rollup import DAY_GRAIN, PEOPLE_SUMS
from jiesu.stats.queries import Args
from jiesu.stats.rollup import covering_rows

# The handlings of cases received in [$1, $2] (local days in time zone $3), as rows `c` with
# the case's status and the handling's columns; $4: one department or all.
_HANDLINGS = """
SELECT c.status, c.received_at, h.*
FROM case_handlings h JOIN cases c ON c.case_id = h.case_id
WHERE c.received_at >= ($1::date::timestamp AT TIME ZONE $3)
  AND c.received_at < (($2::date + 1)::timestamp AT TIME ZONE $3)
  AND ($4::text IS NULL OR h.department_id = $4)
"""

_FIGURES = f"""
SELECT c.department_id, d.name AS department_name, c.replied_by AS person,
    GROUPING(c.replied_by) = 1 AS whole_unit, count(*) AS cases,
    count(*) FILTER (WHERE c.replied_at IS NOT NULL) AS handled,
    count(*) FILTER (WHERE {FINISHED_ON_TIME.sql}) AS on_time,
    count(*) FILTER (WHERE {RATED.sql}) AS rated,
    count(*) FILTER (WHERE {SATISFIED.sql}) AS satisfied
FROM ({_HANDLINGS}) c LEFT JOIN departments d ON d.id = c.department_id
GROUP BY GROUPING SETS ((c.department_id, d.name), (c.department_id, d.name, c.replied_by))
"""

# 退单 by person: the actor of each return, charged to the department that returned.
_RETURNS = f"""
SELECT e.data ->> 'department_id' AS department_id, e.actor ->> 'name' AS person,
    count(*) AS returns
FROM case_events e JOIN ({_HANDLINGS}) c
    ON c.case_id = e.case_id AND c.department_id = e.data ->> 'department_id'
WHERE e.kind = 'returned'
GROUP BY 1, 2
"""


def _figures(row: Mapping[str, Any], returns: int) -> dict[str, Any]:
    return {
        "handled": row["handled"],
        "on_time_rate": {"numerator": row["on_time"], "denominator": row["handled"],
                         "value": ratio(row["on_time"], row["handled"])},
        "satisfaction_rate": {"numerator": row["satisfied"], "denominator": row["rated"],
                              "value": ratio(row["satisfied"], row["rated"])},
        "returns": returns,
    }  # fmt: skip


_NOTHING = {"handled": 0, "on_time": 0, "rated": 0, "satisfied": 0}


def rollup_sql(start: date, end: date, department_id: str | None) -> tuple[str, list[Any]]:
    """Per department and person (NULL: handlings nobody replied to yet), from the people
    rollup: whole months from its month rows, the other days from its day rows. Summed by
    hash, once; the units' totals are the sums of their rows (``people``)."""
    arg = Args()
    rows = covering_rows("case_people_stats", DAY_GRAIN, start, end, arg, months=True)
    sums = ", ".join(f"sum(s.{m})::int AS {m}" for m in PEOPLE_SUMS)
    department = arg(department_id)
    sql = f"""
SELECT p.*, d.name AS department_name
FROM (SELECT s.department_id, s.person, {sums} FROM ({rows}) s
      WHERE {department}::text IS NULL OR s.department_id = {department}
      GROUP BY s.department_id, s.person) p
LEFT JOIN departments d ON d.id = p.department_id
"""
    return sql, arg.values


async def people(
    conn: asyncpg.Connection | asyncpg.Pool,
    start: date,
    end: date,
    department_id: str | None = None,
) -> list[dict[str, Any]]:
    """Per department that held cases received in [start, end]: the unit's figures (all its
    handlings) and each person's (who replied or returned), people by cases handled; from the
    people rollup as it stands (never refreshed here)."""
    sql, args = rollup_sql(start, end, department_id)
    rows = [{**r, "whole_unit": False} for r in await conn.fetch(sql, *args)]
    totals: dict[str, dict[str, Any]] = {}
    for r in rows:
        unit = totals.setdefault(r["department_id"], {
            "department_id": r["department_id"], "department_name": r["department_name"],
            "person": None, "whole_unit": True, **dict.fromkeys(PEOPLE_SUMS, 0),
        })  # fmt: skip
        for m in PEOPLE_SUMS:
            unit[m] += r[m]
    returns = {
        (r["department_id"], r["person"]): r["returns"]
        for r in rows
        if r["person"] is not None and r["returns"]
    }
    return _units([*totals.values(), *rows], returns)


async def from_handlings(
    conn: asyncpg.Connection | asyncpg.Pool,
    start: date,
    end: date,
    timezone: str,
    department_id: str | None = None,
) -> list[dict[str, Any]]:
    """``people``, computed from the handlings and events themselves (no rollup)."""
    args = (start, end, timezone, department_id)
    returns = {
        (r["department_id"], r["person"]): int(r["returns"])
        for r in await conn.fetch(_RETURNS, *args)
    }
    return _units(await conn.fetch(_FIGURES, *args), returns)


def _units(
    rows: Iterable[Mapping[str, Any]], returns: dict[tuple[str, str], int]
) -> list[dict[str, Any]]:
    units: dict[str, dict[str, Any]] = {}
    for r in rows:
        dept = r["department_id"]
        unit = units.setdefault(dept, {"department_id": dept,
                                       "department_name": r["department_name"], "people": []})
        if r["whole_unit"]:
            unit_returns = sum(n for (d, _), n in returns.items() if d == dept)
            unit["unit"] = {"cases": r["cases"], **_figures(r, unit_returns)}
        elif r["person"] is not None:
            unit["people"].append({"person": r["person"],
                                   **_figures(r, returns.get((dept, r["person"]), 0))})
    for (dept, person), count in returns.items():  # people who returned, never replied
        if dept in units and all(p["person"] != person for p in units[dept]["people"]):
            units[dept]["people"].append({"person": person, **_figures(_NOTHING, count)})
    for unit in units.values():
        unit["people"].sort(key=lambda p: (-p["handled"], p["person"]))
    return [units[d] for d in sorted(units)]
