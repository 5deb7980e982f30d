"""A grid worker's reach (网格员): the grids they are bound to (``grid_workers``) and the grids'
handling units — the departments whose area is one of those grids (docs/grid.md).

A grid worker sees the cases of their grids and of their grids' units, and handles (accepts,
contacts, replies...) the cases a routing rule sent to one of those units, like a department's
clerk: :class:`GridScope` is what the API's caller (api.deps.Principal) carries for that.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from jiesu.case.domain import CaseState

Db = asyncpg.Connection | asyncpg.Pool

_SCOPE_SQL = """
SELECT w.grid_id, d.id AS unit_id
FROM grid_workers w
LEFT JOIN departments d ON d.area_id = w.grid_id
WHERE w.worker = $1
"""


@dataclass(frozen=True)
class GridScope:
    """The grids a worker patrols and the handling units of those grids."""

    grids: frozenset[str] = frozenset()
    units: frozenset[str] = frozenset()

    def sees(self, state: CaseState) -> bool:
        """A case in one of the grids, or held (主办 / 协办) by one of the grids' units."""
        return state.grid_id in self.grids or any(state.involves(u) for u in self.units)

    def unit_for(self, state: CaseState, *, co_handling: bool = False) -> str | None:
        """The unit a worker acts for on ``state``: the lead unit if it is one of theirs,
        else one of theirs among the co-handlers (会办), else None (no handling right).
        ``co_handling`` (a contribution, 协办意见): one of theirs among the co-handlers first —
        one still owing it before one that gave it or was waived — else as above. A worker's
        grids are often neighbours: a case one of their units leads may convene another of
        theirs, whose contribution was otherwise sent as the lead's (403 not_co_handler) and
        the lead's reply waited for it until a supervisor waived it."""
        if co_handling:
            theirs = [c for c in state.co_handlers if c.department_id in self.units]
            owing = [c for c in theirs if not c.done]
            if owing or theirs:
                return (owing or theirs)[0].department_id
        if state.department_id in self.units:
            return state.department_id
        return next((c.department_id for c in state.co_handlers if c.department_id in self.units),
                    None)  # fmt: skip


async def grid_scope(db: Db, worker: str) -> GridScope:
    """The scope of the worker named ``worker`` (an API key's name or a staff login)."""
    rows = await db.fetch(_SCOPE_SQL, worker)
    return GridScope(
        grids=frozenset(r["grid_id"] for r in rows),
        units=frozenset(r["unit_id"] for r in rows if r["unit_id"] is not None),
    )


_FILED_BY_GRID_WORKER = """
SELECT payload -> 'registered_by' ->> 'name' FROM intakes
WHERE case_id = $1 AND payload -> 'registered_by' ->> 'role' = 'grid_worker'
"""


async def rates_own_unit(db: Db, state: CaseState) -> str | None:
    """The grid worker whose patrol report (主动发现) opened ``state``'s case when one of their
    units leads or co-handles it (会办) — the worker is the report's reporter, and its token
    (or the rating SMS from their phone) would let them rate their own unit's work —
    else None. Their units are read now, as for every action of theirs (a binding changed by
    an admin counts at once)."""
    worker = await db.fetchval(_FILED_BY_GRID_WORKER, state.case_id)
    if worker is None:
        return None
    units = (await grid_scope(db, worker)).units
    return worker if any(state.involves(u) for u in units) else None
