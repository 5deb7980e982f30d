"""The people rollup (``case_people_stats``, migration 0019): what /api/v1/stats/people reports,
summed per local day of receipt, department and person, and per calendar month.

Without it a year's per-person figures joined every handling of the year to its case and
scanned the events for returns (seconds at 1,000,000 cases); with it they sum ~12 month rows
and the days of the partial months at the ends per person. Refreshed with the daily rollup
(jiesu.stats.rollup), in the same transaction, for the same days: the figures are as of the
same ``as_of``. The conditions are those of jiesu/stats/people.py (the measures of
jiesu/stats/indicators.py, applied to handling rows).
"""

from __future__ import annotations

from jiesu.stats.indicators import FINISHED_ON_TIME, RATED, SATISFIED

MONTH = 10
"""A calendar-month row's grain is its day grain's + MONTH, here and in case_daily_stats."""
DAY_GRAIN = 0
MONTH_GRAIN = DAY_GRAIN + MONTH
PEOPLE_SUMS = ("cases", "handled", "on_time", "rated", "satisfied", "returns")

# {where} restricts the cases ``c`` (a join, as jiesu.stats.rollup's), $1 is the time zone.
# Handlings: the person is who gave the department's last reply (NULL: nobody replied yet).
_HANDLED = f"""
SELECT (c.received_at AT TIME ZONE $1)::date AS day, c.department_id, c.replied_by AS person,
    count(*) AS cases,
    count(*) FILTER (WHERE c.replied_at IS NOT NULL) AS handled,
    count(*) FILTER (WHERE {FINISHED_ON_TIME.sql}) AS on_time,
    count(*) FILTER (WHERE {RATED.sql}) AS rated,
    count(*) FILTER (WHERE {SATISFIED.sql}) AS satisfied,
    0 AS returns
FROM (SELECT c.received_at, c.status, h.* FROM cases c {{where}}
      JOIN case_handlings h ON h.case_id = c.case_id) c
GROUP BY 1, 2, 3
"""
# 退单: the actor of each return, charged to the department that returned (and held the case).
_RETURNED = """
SELECT (c.received_at AT TIME ZONE $1)::date AS day, h.department_id,
    e.actor ->> 'name' AS person, 0, 0, 0, 0, 0, count(*)
FROM cases c {where}
JOIN case_events e ON e.case_id = c.case_id AND e.kind = 'returned'
JOIN case_handlings h ON h.case_id = c.case_id AND h.department_id = e.data ->> 'department_id'
GROUP BY 1, 2, 3
"""


def days_insert(where: str) -> str:
    """Insert the day rows of the cases ``where`` selects (all cases when empty)."""
    sums = ", ".join(f"sum({s})" for s in PEOPLE_SUMS)
    return f"""
INSERT INTO case_people_stats (grain, day, department_id, person, {", ".join(PEOPLE_SUMS)})
SELECT {DAY_GRAIN}, day, department_id, person, {sums}
FROM ({_HANDLED.format(where=where)} UNION ALL {_RETURNED.format(where=where)}) x
GROUP BY day, department_id, person
ORDER BY day
"""


def months_insert(where: str) -> str:
    """Insert the month rows summed from the day rows ``where`` selects (alias ``s``)."""
    sums = ", ".join(f"sum(s.{s})" for s in PEOPLE_SUMS)
    return f"""
INSERT INTO case_people_stats (grain, day, department_id, person, {", ".join(PEOPLE_SUMS)})
SELECT {MONTH_GRAIN}, date_trunc('month', s.day)::date, s.department_id, s.person, {sums}
FROM case_people_stats s {where} AND s.grain = {DAY_GRAIN}
GROUP BY 2, 3, 4
ORDER BY 2
"""
