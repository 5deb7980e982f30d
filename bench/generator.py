"""Fill the read model with realistic generated cases (工单), fast (COPY).

The generated county ``GX`` is shaped like Suining's (964 grids): 25 townships/streets, 13
villages/communities each, 3 grids each (975 grids), one government per township and one
committee per village, plus the demo county's bureaus and categories. Cases follow:

- volume: weekday/weekend and seasonal swings, daytime peaks, busier urban grids;
- routing by category: village committees and township governments for neighbourhood
  problems (garbage, property, vendors, ...), county bureaus for utilities and regulation;
- outcomes: ~95-98 % of responses and replies on time, ~80 % rated, ~95 % of verdicts
  satisfied or basically satisfied, a few percent returned, extended or reported again;
  recent cases still in progress, a small share of older ones overdue and open;
- fair attribution (承办记录, ``case_handlings``): one handling per department that held the
  case, with the person who accepted and replied (a few people per department); a returned
  case (退单) is first held by a department that returns it (its ``returned`` event names the
  person), then by the one that handles it.

Deterministic for a seed. Used by ``python -m bench.stats`` and by the tests (small N).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

COUNTY = "GX"
TOWNSHIPS = 25
VILLAGES_PER_TOWNSHIP = 13
GRIDS_PER_VILLAGE = 3
URBAN_TOWNSHIPS = 5  # the first ones: streets of the county town, three times busier

# category → [(share, level or county department id)]; level "village"/"township" means the
# committee / government of the case's grid.
ROUTES: dict[str, list[tuple[float, str]]] = {
    "garbage": [(0.7, "village"), (0.3, "township")],
    "property_management": [(1.0, "village")],
    "street_vendor": [(0.5, "village"), (0.5, "urban-management")],
    "stray_animals": [(1.0, "village")],
    "old_compound": [(1.0, "township")],
    "illegal_building": [(0.6, "township"), (0.4, "urban-management")],
    "road_damage": [(0.5, "township"), (0.5, "transport")],
    "public_toilet": [(1.0, "township")],
    "heating": [(1.0, "housing")],
    "noise_commercial": [(1.0, "urban-management")],
    "noise_construction": [(1.0, "housing")],
    "sewer_blockage": [(1.0, "water")],
    "water_outage": [(1.0, "water")],
    "power_outage": [(1.0, "power-supply")],
    "odour_pollution": [(1.0, "ecology")],
    "wage_arrears": [(1.0, "hrss")],
    "enterprise_request": [(1.0, "business-env")],
    "food_safety": [(1.0, "market")],
    "street_light": [(1.0, "urban-management")],
    "traffic_signal": [(1.0, "police")],
}
CATEGORY_WEIGHTS: dict[str, float] = {
    "garbage": 14, "property_management": 12, "noise_commercial": 8, "street_vendor": 8,
    "road_damage": 6, "old_compound": 6, "sewer_blockage": 5, "water_outage": 5,
    "street_light": 5, "illegal_building": 4, "wage_arrears": 4, "heating": 4,
    "power_outage": 3, "odour_pollution": 3, "noise_construction": 3, "food_safety": 2,
    "enterprise_request": 2, "stray_animals": 2, "traffic_signal": 2, "public_toilet": 2,
}  # fmt: skip
URGENT_CATEGORIES = frozenset(
    {"noise_construction", "sewer_blockage", "water_outage", "power_outage", "food_safety",
     "heating"}
)  # fmt: skip
CHANNEL_WEIGHTS: dict[str, float] = {
    "hotline": 40, "wechat": 20, "app": 12, "grid_worker": 10, "web": 5, "service_hall": 4,
    "sms": 3, "grid_mailbox": 2, "email": 2, "enterprise_port": 2,
}  # fmt: skip
HOUR_WEIGHTS = [1, 0.5, 0.3, 0.3, 0.3, 0.6, 1.5, 3, 6, 8, 8, 7, 5, 5, 7, 7, 6, 5, 4, 3, 3, 2.5,
                2, 1.5]  # fmt: skip
WEEKDAY_FACTOR = [1.15, 1.05, 1.05, 1.0, 1.0, 0.8, 0.75]
COUNTY_LEVEL = {"urban-management", "housing", "transport", "water", "power-supply", "ecology",
                "hrss", "business-env", "market", "police"}  # fmt: skip

CASE_COLUMNS = (
    "case_id", "version", "status", "title", "category_id", "grid_id", "channel", "urgency",
    "department_id", "received_at", "accept_deadline", "contact_deadline", "finish_deadline",
    "accepted_at", "contacted_at", "replied_at", "closed_at", "rating", "resolution",
    "breaches", "state", "updated_at", "repeat_count", "return_count", "extension_count",
    "rehandle_count", "escalation_level", "handled_level", "resolved", "ladder_active",
)  # fmt: skip


HANDLING_COLUMNS = (
    "case_id", "department_id", "first_round", "last_round", "assigned_at", "released_at",
    "accept_deadline", "contact_deadline", "finish_deadline", "accepted_at", "contacted_at",
    "replied_at", "rating", "resolved", "handled_level", "breaches", "repeat_count",
    "return_count", "extension_count", "replied_by", "accepted_by",
)  # fmt: skip
EVENT_COLUMNS = ("case_id", "seq", "kind", "at", "actor", "data")
PEOPLE_PER_DEPARTMENT = 4
RETURN_SHARE = 0.03


@dataclass
class Rows:
    """One batch for COPY: cases, their handlings and the events the statistics read."""

    cases: list[tuple[Any, ...]]
    handlings: list[tuple[Any, ...]]
    events: list[tuple[Any, ...]]


def township_id(t: int) -> str:
    return f"{COUNTY}-{t:02d}"


def village_id(t: int, v: int) -> str:
    return f"{COUNTY}-{t:02d}-{v:02d}"


def grid_ids() -> list[str]:
    return [
        f"G-{village_id(t, v)}-{g}"
        for t in range(1, TOWNSHIPS + 1)
        for v in range(1, VILLAGES_PER_TOWNSHIP + 1)
        for g in range(1, GRIDS_PER_VILLAGE + 1)
    ]


def department_for(level_or_id: str, grid: str) -> tuple[str, str]:
    """(department id, level) for a route target and the case's grid ``G-GX-tt-vv-g``."""
    _, _, t, v, _ = grid.split("-")
    if level_or_id == "village":
        return f"gx-vil-{t}-{v}", "village"
    if level_or_id == "township":
        return f"gx-twp-{t}", "township"
    return level_or_id, "county"


def first_holder(department: str, level: str, grid: str) -> tuple[str, str]:
    """The department a returned case went to first (the wrong one, that returned it): the
    grid's township government for a village committee or a bureau, else the village's."""
    if level == "township":
        return department_for("village", grid)
    return department_for("township", grid)


async def ensure_world(conn: asyncpg.Connection) -> None:
    """Areas and departments of the generated county (idempotent; the demo data must be
    loaded for the county bureaus and the categories)."""
    areas = [(COUNTY, "广县 (Guang County, generated)", "county", None)]
    departments = []
    for t in range(1, TOWNSHIPS + 1):
        areas.append((township_id(t), f"第{t}乡镇 (Township {t})", "township", COUNTY))
        departments.append(
            (f"gx-twp-{t:02d}", f"第{t}乡镇人民政府", "township", None, township_id(t))
        )
        for v in range(1, VILLAGES_PER_TOWNSHIP + 1):
            vid = village_id(t, v)
            areas.append((vid, f"第{t}乡镇第{v}村 (Village {t}-{v})", "community", township_id(t)))
            departments.append(
                (f"gx-vil-{t:02d}-{v:02d}", f"第{t}乡镇第{v}村委会", "village",
                 f"gx-twp-{t:02d}", vid)
            )  # fmt: skip
            for g in range(1, GRIDS_PER_VILLAGE + 1):
                areas.append((f"G-{vid}-{g}", f"第{t}乡镇第{v}村第{g}网格", "grid", vid))
    await conn.executemany(
        "INSERT INTO areas (id, name, kind, parent_id) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (id) DO NOTHING",
        areas,
    )
    await conn.executemany(
        "INSERT INTO departments (id, name, level, parent_id, area_id) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (id) DO NOTHING",
        departments,
    )


@dataclass(frozen=True)
class Plan:
    cases: int
    end: date  # last day with cases (local)
    days: int = 365
    seed: int = 12345
    timezone: str = "Asia/Shanghai"
    prefix: str = "GX"


def _daily_counts(plan: Plan) -> list[tuple[date, int]]:
    first = plan.end - timedelta(days=plan.days - 1)
    weights = []
    for i in range(plan.days):
        day = first + timedelta(days=i)
        season = 1 + 0.2 * math.sin(2 * math.pi * (day.timetuple().tm_yday - 100) / 365)
        weights.append(WEEKDAY_FACTOR[day.weekday()] * season)
    total = sum(weights)
    counts = [int(plan.cases * w / total) for w in weights]
    counts[-1] += plan.cases - sum(counts)
    return [(first + timedelta(days=i), n) for i, n in enumerate(counts)]


class _Maker:
    def __init__(self, plan: Plan, now: datetime) -> None:
        self.plan = plan
        self.now = now
        self.tz = ZoneInfo(plan.timezone)
        self.rnd = random.Random(plan.seed)
        grids = grid_ids()
        self.grids = grids
        self.grid_weights = [
            3.0 if int(g.split("-")[2]) <= URBAN_TOWNSHIPS else 1.0 for g in grids
        ]
        self.categories = list(CATEGORY_WEIGHTS)
        self.category_weights = list(CATEGORY_WEIGHTS.values())
        self.channels = list(CHANNEL_WEIGHTS)
        self.channel_weights = list(CHANNEL_WEIGHTS.values())
        self.seq = 0

    def pick(self, values: list[str], weights: list[float], k: int) -> list[str]:
        return self.rnd.choices(values, weights, k=k)

    def day(self, day: date, n: int, out: Rows) -> None:
        rnd = self.rnd
        hours = rnd.choices(range(24), HOUR_WEIGHTS, k=n)
        grids = self.pick(self.grids, self.grid_weights, n)
        categories = self.pick(self.categories, self.category_weights, n)
        channels = self.pick(self.channels, self.channel_weights, n)
        midnight = datetime.combine(day, time(), self.tz).astimezone(UTC)
        for i in range(n):
            start = midnight + timedelta(seconds=hours[i] * 3600 + rnd.randrange(3600))
            self.case(start, grids[i], categories[i], channels[i], out)

    def case(self, received: datetime, grid: str, category: str, channel: str,
             out: Rows) -> None:  # fmt: skip
        rnd = self.rnd
        self.seq += 1
        case_id = f"{self.plan.prefix}{received:%Y%m%d}-{self.seq:07d}"
        urgent = category in URGENT_CATEGORIES or rnd.random() < 0.03
        route = ROUTES[category]
        target = route[0][1] if len(route) == 1 or rnd.random() < route[0][0] else route[1][1]
        department, level = department_for(target, grid)
        accept_dl = received + (_HALF_HOUR if urgent else _FOUR_HOURS)
        contact_dl = received + _HOUR if urgent else None
        extended = rnd.random() < 0.04
        finish_dl = received + (_DAY if urgent else _TWO_DAYS)
        if extended:
            finish_dl += _THREE_DAYS
        accepted = received + timedelta(minutes=rnd.expovariate(1 / (8 if urgent else 50)))
        contacted = (
            received + timedelta(minutes=rnd.expovariate(1 / 20))
            if urgent else accepted + timedelta(minutes=rnd.expovariate(1 / 120))
        )  # fmt: skip
        replied: datetime | None = None
        closed: datetime | None = None
        rated = rnd.random() < 0.8
        if rnd.random() > 0.015:  # 1.5 % are stuck: never replied
            replied = accepted + timedelta(hours=rnd.expovariate(1 / (7 if urgent else 13)))
            rating_at = replied + timedelta(hours=rnd.expovariate(1 / 10))
            closed = rating_at if rated else replied + _THREE_DAYS
        now = self.now
        accepted_at = accepted if accepted <= now else None
        contacted_at = contacted if contacted <= now else None
        replied_at = replied if replied is not None and replied <= now else None
        closed_at = closed if closed is not None and closed <= now else None
        rating = None
        if closed_at is not None and rated:
            r = rnd.random()
            rating = "satisfied" if r < 0.72 else "basically_satisfied" if r < 0.95 else \
                "unsatisfied"  # fmt: skip
        breaches = []
        if accept_dl < now and (accepted_at is None or accepted_at > accept_dl):
            breaches.append("accept")
        if contact_dl is not None and contact_dl < now and (
            contacted_at is None or contacted_at > contact_dl
        ):
            breaches.append("contact")
        if finish_dl < now and (replied_at is None or replied_at > finish_dl):
            breaches.append("finish")
        status = (
            "closed" if closed_at else "replied" if replied_at else "handling" if accepted_at
            else "assigned"
        )  # fmt: skip
        outcome_resolved = rnd.random() < 0.93
        resolved = (outcome_resolved and rating != "unsatisfied") if closed_at else None
        urgency = "urgent" if urgent else "general"
        reply = (
            '{"outcome": "%s", "text": "已现场处置，问题已解决。"}'
            % ("resolved" if outcome_resolved else "explained") if replied_at else "null"
        )  # fmt: skip
        # The state as JSON text, written out by hand: every value is a vocabulary word or an
        # id (no quotes to escape), and json.dumps was a fifth of the generation time.
        state = (
            f'{{"case_id": "{case_id}", "status": "{status}", "title": "{category} report", '
            f'"category_id": "{category}", "grid_id": "{grid}", "channel": "{channel}", '
            f'"urgency": "{urgency}", "address": "{grid} 门牌{rnd.randrange(1, 300)}号", '
            f'"assignment": {{"department_id": "{department}", "by_rule": true}}, '
            f'"reply": {reply}}}'
        )
        repeats = rnd.choice((1, 1, 2, 3)) if rnd.random() < 0.05 else 0
        returned = rnd.random() < RETURN_SHARE
        person = f"{department}-p{rnd.randrange(PEOPLE_PER_DEPARTMENT)}"
        out.cases.append((
            case_id, 7 if closed_at else 4, status, f"{category} report", category, grid,
            channel, urgency, department, received, accept_dl, contact_dl, finish_dl,
            accepted_at, contacted_at, replied_at, closed_at, rating,
            ("rated" if rating else "not_rated") if closed_at else None, breaches, state,
            closed_at or replied_at or received, repeats, 1 if returned else 0,
            1 if extended else 0,
            1 if rating == "unsatisfied" and rnd.random() < 0.5 else 0,
            escalated := 1 if rnd.random() < 0.01 else 0,
            level if replied_at else None,
            resolved,
            bool(escalated) and closed_at is None,  # its ladder climbing (migration 0050)
        ))  # fmt: skip
        round_ = 1
        assigned = received
        if returned:  # held first by a department that returned it within half an hour
            wrong, _ = first_holder(department, level, grid)
            assigned = received + timedelta(minutes=rnd.uniform(1, 30))
            returner = f"{wrong}-p{rnd.randrange(PEOPLE_PER_DEPARTMENT)}"
            out.handlings.append((
                case_id, wrong, 1, 1, received, assigned, accept_dl, contact_dl, finish_dl,
                None, None, None, None, None, None, [], 0, 1, 0, None, None,
            ))  # fmt: skip
            out.events.append((
                case_id, 1, "returned", assigned, f'{{"name": "{returner}"}}',
                f'{{"department_id": "{wrong}", "reason": "not ours"}}',
            ))  # fmt: skip
            round_ = 2
        out.handlings.append((
            case_id, department, round_, round_, assigned, None, accept_dl, contact_dl,
            finish_dl, accepted_at, contacted_at, replied_at, rating,
            resolved if replied_at else None, level if replied_at else None, breaches, repeats,
            0, 1 if extended else 0, person if replied_at else None,
            person if accepted_at else None,
        ))  # fmt: skip


_HOUR = timedelta(hours=1)
_HALF_HOUR, _FOUR_HOURS, _DAY = _HOUR / 2, 4 * _HOUR, 24 * _HOUR
_TWO_DAYS, _THREE_DAYS = 48 * _HOUR, 72 * _HOUR


def generate(plan: Plan, now: datetime | None = None) -> Iterator[Rows]:
    """Batches of rows (CASE_COLUMNS, HANDLING_COLUMNS, EVENT_COLUMNS order), one per day."""
    end_of_plan = datetime.combine(plan.end + timedelta(days=1), time(), ZoneInfo(plan.timezone))
    maker = _Maker(plan, min(now or end_of_plan, end_of_plan))
    for day, n in _daily_counts(plan):
        rows = Rows([], [], [])
        maker.day(day, n, rows)
        yield rows


async def _copy(conn: asyncpg.Connection, rows: Rows) -> None:
    await conn.copy_records_to_table("cases", records=rows.cases, columns=CASE_COLUMNS)
    await conn.copy_records_to_table(
        "case_handlings", records=rows.handlings, columns=HANDLING_COLUMNS
    )
    await conn.copy_records_to_table("case_events", records=rows.events, columns=EVENT_COLUMNS)


async def fill(dsn: str, plan: Plan, now: datetime | None = None, batch: int = 50_000) -> int:
    """Insert the plan's cases, their handlings and return events with COPY; returns the
    number of cases inserted."""
    conn = await asyncpg.connect(dsn)  # no jsonb codec: the state goes in as JSON text
    try:
        await ensure_world(conn)
        pending = Rows([], [], [])
        done = 0
        for rows in generate(plan, now):
            pending.cases += rows.cases
            pending.handlings += rows.handlings
            pending.events += rows.events
            if len(pending.cases) >= batch:
                await _copy(conn, pending)
                done += len(pending.cases)
                pending = Rows([], [], [])
        if pending.cases:
            await _copy(conn, pending)
            done += len(pending.cases)
        await conn.execute("ANALYZE cases")
        await conn.execute("ANALYZE case_handlings")
        return done
    finally:
        await conn.close()
