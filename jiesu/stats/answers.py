"""Statistics answers kept until the figures move (统计结果缓存), in each API process.

Every statistics answer is a function of its request's parameters and of what it reads: the
rollups (jiesu.stats.rollup, people_rollup), and for the ranking and the per-person figures the
departments' names and levels, the scoring rules and the accountability records (问责). The
rollups change only by a refresh, which moves ``as_of`` in the same transaction; the others
are few rows, stamped here in one cheap query. So an answer computed in a snapshot is the
answer to every equal request for as long as the stamp read in that same snapshot stays the
same: it is kept under (request, stamp), and a refresh, a rule change, a new or completed
accountability record or a renamed department makes the next request compute afresh. Nothing
is kept before the first build (``as_of`` null), and nothing here ever refreshes.

Honest, not stale: the key holds ``as_of``, which every answer shows, and an answer is only
ever served for the stamp it was computed under. What it saves is the repeated work of equal
requests between two refreshes (a dashboard polled by many people, a ranking opened by every
supervisor): a ranking scores and encodes ~360 departments on every request otherwise.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from datetime import date, datetime
from typing import Any, TypeVar

import asyncpg

from jiesu.stats import queries

T = TypeVar("T")

# The accountability records by the transactions that wrote them (xmin: every write of a row
# gives it its writer's), not by count and latest times: a completion is stamped with its
# transaction's start, so one that began first and committed last moved neither
# (test_a_completion_that_commits_late_is_not_hidden_by_a_kept_answer). ~1.5 ms at 10,000.
_STAMP = """
SELECT (SELECT refreshed_at FROM case_stats_refresh WHERE timezone = $1) AS as_of,
    (SELECT updated_at FROM evaluation_rules WHERE id = 'default') AS rules,
    (SELECT count(*) || '/' || coalesce(sum(hashint8(xmin::text::bigint)), 0)
     FROM accountability_records) AS accountability,
    (SELECT md5(string_agg(id || '/' || name || '/' || level, ',' ORDER BY id))
     FROM departments) AS departments
"""


@asynccontextmanager
async def snapshot(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """One read-only snapshot: the stamp and the figures are read as of the same instant
    (a refresh committing in between would otherwise be in the figures, not in the stamp)."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read",
                                                        readonly=True):  # fmt: skip
        yield conn


async def stamp(conn: asyncpg.Connection, timezone: str) -> tuple[Any, ...]:
    """What every statistics answer depends on besides its parameters; ``as_of`` first."""
    return tuple(await conn.fetchrow(_STAMP, timezone))


class Answers:
    """A bounded least-recently-used store of answers by key."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._kept: OrderedDict[Hashable, Any] = OrderedDict()
        self.hits = self.misses = 0

    async def get(
        self, key: tuple[Hashable, ...], as_of: Any, compute: Callable[[], Awaitable[Any]]
    ) -> Any:
        """The answer kept under ``key`` (which must hold the stamp), or ``compute()``'s,
        kept when the rollups have been built (``as_of`` not None)."""
        if key in self._kept:
            self.hits += 1
            self._kept.move_to_end(key)
            return self._kept[key]
        self.misses += 1
        answer = await compute()
        if as_of is not None:
            self._kept[key] = answer
            while len(self._kept) > self.size:
                self._kept.popitem(last=False)
        return answer

    def clear(self) -> None:
        self._kept.clear()


# --- the answers of the statistics endpoints (API and console) --------------------------------


async def kept(
    pool: asyncpg.Pool,
    answers: Answers,
    timezone: str,
    key: tuple[Hashable, ...],
    compute: Callable[[asyncpg.Connection, datetime | None], Awaitable[T]],
) -> T:
    """The answer to ``key`` (the request: endpoint, format, parameters) for the figures as
    they stand: kept, or ``compute(conn, as_of)`` in the snapshot the stamp was read in."""
    async with snapshot(pool) as conn:
        stamped = await stamp(conn, timezone)
        as_of = stamped[0]
        return await answers.get((*key, stamped), as_of, lambda: compute(conn, as_of))


async def indicators(
    pool: asyncpg.Pool, answers: Answers, timezone: str, query: queries.IndicatorQuery
) -> tuple[datetime | None, dict[str, Any]]:
    """(as_of, the indicators table) from the rollup as it stands."""

    async def compute(conn: asyncpg.Connection, as_of: datetime | None) -> Any:
        return as_of, await queries.indicators(conn, query)

    key = ("indicators", query.start, query.end, query.group_by, filter_key(query))
    return await kept(pool, answers, timezone, key, compute)


async def ranking(
    pool: asyncpg.Pool, answers: Answers, timezone: str, start: date, end: date
) -> tuple[datetime | None, dict[str, Any]]:
    """(as_of, the department ranking) from the rollup as it stands."""

    async def compute(conn: asyncpg.Connection, as_of: datetime | None) -> Any:
        return as_of, await queries.ranking(conn, start, end, timezone=timezone)

    return await kept(pool, answers, timezone, ("ranking", start, end), compute)


def filter_key(query: queries.IndicatorQuery) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((f.value, v) for f, v in query.equal.items()))
