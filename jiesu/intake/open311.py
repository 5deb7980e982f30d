"""Open311 GeoReport v2 (http://wiki.open311.org/GeoReport_v2): services are the complaint
categories, service requests are cases. This is the service under ``/open311/v2/``
(api/open311.py speaks the protocol: formats, parameters, errors).

- A request is filed through :mod:`jiesu.intake.filing` like any report (repeat reports
  merge, 并单), channel ``app``; its point or address is kept in ``open311_requests``.
- A point (lat/long, WGS 84) is placed in the grid whose boundary contains it
  (:mod:`jiesu.geo`). ``address_id`` is a grid id. An ``address_string`` alone is placed in
  the deepest area whose Chinese name it contains — a grid, or else the first grid of the
  community or township named (routing rules of that area and above then apply exactly).
- The public list shows what a 12345 hotline may publish: category, status, the department
  in charge, times and, for requests filed through Open311, where — the grid's name and the
  point to three decimals (~100 m), not the address or the exact point given, which are often
  the citizen's home — never the description, its ``media_url`` (the report's photo:
  content, as the description) or the citizen (12345 reports routinely carry names, phone
  numbers, homes).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from temporalio.client import Client

from jiesu.access.citizen_tokens import digest
from jiesu.case.domain import INPUT, Actor, Channel, Citizen, ComplaintIntake, Status
from jiesu.config import Settings
from jiesu.geo import GridIndex, load_grid_index
from jiesu.intake import filing
from jiesu.intake.errors import IntakeRefused

MAX_SPAN = timedelta(days=90)  # the spec's default window and widest range
MAX_RESULTS = 1000
# service_code values one GET requests may name (after removing repeats). Each is compared
# with every case of the window (PostgreSQL's generic plan scans the array row by row): 7,000
# codes cost ~0.9 s of PostgreSQL per anonymous request on 12,000 cases (docs/security.md).
MAX_CODES = 100
TITLE_CHARS = 40
ANONYMOUS = "Open311 诉求人"


class NotFound(LookupError):
    """A service code, jurisdiction, request or token that does not exist (the spec's 404)."""


@dataclass(frozen=True)
class Report:
    """A POST requests's arguments, as the spec names them."""

    service_code: str
    lat: float | None = None
    long: float | None = None
    address_string: str = ""
    address_id: str = ""
    description: str = ""
    first_name: str = ""
    last_name: str = ""
    phone: str = ""
    email: str = ""
    media_url: str = ""


# --- services ------------------------------------------------------------------------------


async def check_jurisdiction(db: asyncpg.Pool, jurisdiction_id: str | None) -> None:
    """One jurisdiction per installation: a county's area id, or none given."""
    if jurisdiction_id and not await db.fetchval(
        "SELECT 1 FROM areas WHERE id = $1 AND kind = 'county'", jurisdiction_id
    ):
        raise NotFound(f"jurisdiction_id {jurisdiction_id!r} not found")


async def services(db: asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await db.fetch("SELECT id, name, description FROM categories ORDER BY id")
    return [
        {"service_code": r["id"], "service_name": r["name"],
         "description": r["description"] or r["name"], "metadata": False, "type": "realtime",
         "keywords": "", "group": ""}
        for r in rows
    ]  # fmt: skip


async def service_definition(db: asyncpg.Pool, service_code: str) -> dict[str, Any]:
    if not await db.fetchval("SELECT 1 FROM categories WHERE id = $1", service_code):
        raise NotFound(f"service_code {service_code!r} not found")
    return {"service_code": service_code, "attributes": []}  # metadata false: none asked


# --- placing a report -----------------------------------------------------------------------


def _chinese(name: str) -> str:
    return name.split(" (", 1)[0].strip()


async def _named_area(db: asyncpg.Pool, address: str) -> str | None:
    """The grid of the deepest area named in ``address`` (longest name first)."""
    rows = await db.fetch(
        "SELECT a.id, a.name, a.kind,"
        " (WITH RECURSIVE below(id, kind) AS ("
        "   SELECT a.id, a.kind UNION ALL"
        "   SELECT c.id, c.kind FROM areas c JOIN below b ON c.parent_id = b.id)"
        "  SELECT min(id) FROM below WHERE kind = 'grid') AS first_grid"
        " FROM areas a WHERE a.kind <> 'county'"
    )
    depth = {"grid": 3, "community": 2, "township": 1}
    named = [r for r in rows if _chinese(r["name"]) and _chinese(r["name"]) in address]
    named.sort(key=lambda r: (depth[r["kind"]], len(_chinese(r["name"]))), reverse=True)
    return named[0]["first_grid"] if named else None


# Building the index of a large county takes a while (bench/grid_lookup.py: ~1 s for 10,000
# grids), so each process keeps it until the grids change: every change through the admin
# API or CLI is logged, and the demo loader only fills boundaries that are missing.
_STAMP = (
    "SELECT (SELECT count(*) FROM areas WHERE kind = 'grid' AND boundary IS NOT NULL),"
    " (SELECT coalesce(max(id), 0) FROM admin_changes WHERE entity = 'area')"
)
_cached: tuple[tuple[int, int], GridIndex] | None = None


async def grid_index(db: asyncpg.Pool) -> GridIndex:
    global _cached
    row = await db.fetchrow(_STAMP)
    stamp = (row[0], row[1])
    if _cached is None or _cached[0] != stamp:
        _cached = (stamp, await load_grid_index(db))
    return _cached[1]


async def place(db: asyncpg.Pool, report: Report) -> str:
    """The grid a report belongs to; IntakeRefused when it cannot be placed."""
    if report.lat is not None and report.long is not None:
        grid = (await grid_index(db)).locate(report.long, report.lat)
        if grid is None:
            raise IntakeRefused("outside_grids", "lat/long lies outside every grid we serve")
        return grid
    if report.address_id:
        if not await db.fetchval(
            "SELECT 1 FROM areas WHERE id = $1 AND kind = 'grid'", report.address_id
        ):
            raise IntakeRefused("unknown_address_id", "address_id is not a grid id we know")
        return report.address_id
    if report.address_string:
        grid = await _named_area(db, report.address_string)
        if grid is None:
            raise IntakeRefused("address_not_placed", "address_string names no street, "
                                "community or grid we serve: send lat/long or address_id")
        return grid
    raise IntakeRefused("no_location", "send lat and long, address_string or address_id")


def _name(report: Report) -> str:
    """姓 + 名 without a space in Chinese; "first last" in the Latin alphabet."""
    if all(c.isascii() for c in report.first_name + report.last_name):
        return f"{report.first_name} {report.last_name}".strip()
    return f"{report.last_name}{report.first_name}".strip()


def to_intake(report: Report, grid_id: str, service_name: str) -> ComplaintIntake:
    """The report as Jiesu's intake; pydantic's ValidationError when it does not fit."""
    text = report.description.strip() or service_name
    if report.media_url:
        text = f"{text}\n附件 (media_url): {report.media_url}"
    where = report.address_string or (
        f"{report.lat:.6f},{report.long:.6f}" if report.lat is not None else ""
    )
    name = _name(report) or report.email or ANONYMOUS
    return ComplaintIntake(
        title=(report.description.strip().splitlines() or [service_name])[0][:TITLE_CHARS]
        or service_name,
        description=text, category_id=report.service_code, grid_id=grid_id,
        address=where[:300], channel=Channel.APP,
        # as new input (INPUT): one e-mail address, "a@b.cn,c@d.cn" is a 400 (docs/open311.md)
        citizen=Citizen.model_validate({"name": name[:100], "phone": report.phone or None,
                                        "email": report.email or None}, context=INPUT),
    )  # fmt: skip


async def file_report(
    pool: asyncpg.Pool, client: Client, settings: Settings, report: Report, actor: Actor,
    idempotency_key: str | None,
) -> filing.Filing:
    """File through jiesu.intake (IntakeError as it raises them) and keep the location."""
    name = await pool.fetchval("SELECT name FROM categories WHERE id = $1", report.service_code)
    if name is None:
        raise NotFound(f"service_code {report.service_code!r} not found")
    grid = await place(pool, report)
    filed = await filing.register(
        pool, client, settings, to_intake(report, grid, name), actor, idempotency_key
    )
    # On a retry too (once per report, migration 0027): the first attempt may have filed the
    # case and died before keeping the location.
    await pool.execute(
        "INSERT INTO open311_requests"
        " (case_id, report_id, service_code, lat, long, address, media_url)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (case_id, report_id) WHERE report_id IS NOT NULL DO NOTHING",
        filed.case_id, filed.report_id or 0, report.service_code, report.lat, report.long,
        report.address_string, report.media_url or None,
    )  # fmt: skip
    return filed


# --- requests --------------------------------------------------------------------------------

_REQUESTS = """
SELECT c.case_id, c.status, c.resolution, c.category_id, cat.name AS service_name,
       d.name AS agency, c.received_at, c.updated_at, c.closed_at, c.finish_deadline,
       o.lat, o.long, o.case_id IS NOT NULL AS located, grid.name AS place
FROM cases c
LEFT JOIN categories cat ON cat.id = c.category_id
LEFT JOIN areas grid ON grid.id = c.grid_id
LEFT JOIN departments d ON d.id = c.department_id
LEFT JOIN LATERAL (SELECT * FROM open311_requests r WHERE r.case_id = c.case_id
                   ORDER BY r.id LIMIT 1) o ON true
"""


def _w3(at: datetime | None, settings: Settings) -> str | None:
    """The spec's w3 datetime, in the hotline's time zone (e.g. 2026-11-22T09:30:00+08:00)."""
    if at is None:
        return None
    return at.astimezone(ZoneInfo(settings.timezone)).isoformat(timespec="seconds")


# Decimals of a published point: 0.001° is ~110 m north-south (~90 m east-west here), a block,
# not a door. The exact point a citizen sends is often their home, as is the address string.
PUBLISHED_DECIMALS = 3


def _coarse(degrees: float | None) -> float | None:
    return None if degrees is None else round(degrees, PUBLISHED_DECIMALS)


def _request(row: asyncpg.Record, settings: Settings) -> dict[str, Any]:
    closed = row["status"] == Status.CLOSED
    return {
        "service_request_id": row["case_id"],
        "status": "closed" if closed else "open",
        "status_notes": row["resolution"] if closed else None,
        "service_name": row["service_name"],
        "service_code": row["category_id"],
        "description": None,  # not published: see the module's docstring
        "agency_responsible": row["agency"],
        "service_notice": None,
        "requested_datetime": _w3(row["received_at"], settings),
        "updated_datetime": _w3(row["closed_at"] if closed else row["updated_at"], settings),
        "expected_datetime": _w3(row["finish_deadline"], settings),
        "address": row["place"] if row["located"] else None,
        "address_id": None,
        "zipcode": None,
        "lat": _coarse(row["lat"]),
        "long": _coarse(row["long"]),
        "media_url": None,  # the report's photo: its content, quoted in the description
    }


@dataclass(frozen=True)
class Query:
    """GET requests's filters; ``ids`` overrides every other one (the spec's rule)."""

    ids: list[str]
    service_codes: list[str]
    statuses: list[str]
    start: datetime | None
    end: datetime | None


def window(query: Query) -> tuple[datetime, datetime]:
    """The requested_datetime range: at most 90 days, the last 90 by default."""
    end = query.end or (query.start + MAX_SPAN if query.start else datetime.now(UTC))
    start = query.start or end - MAX_SPAN
    if end < start:
        raise ValueError("end_date is before start_date")
    if end - start > MAX_SPAN:
        raise ValueError("start_date to end_date may not span more than 90 days")
    return start, end


async def requests(pool: asyncpg.Pool, settings: Settings, query: Query) -> list[dict[str, Any]]:
    if query.ids:
        rows = await pool.fetch(
            f"{_REQUESTS} WHERE c.case_id = ANY($1::text[]) ORDER BY c.received_at DESC",
            query.ids[:MAX_RESULTS],
        )
        return [_request(r, settings) for r in rows]
    codes = list(dict.fromkeys(query.service_codes))
    if len(codes) > MAX_CODES:
        raise ValueError(f"at most {MAX_CODES} service_code values (comma delimited)")
    start, end = window(query)
    # Open311's two statuses: closed is our closed, open is every other status. Asked for
    # one of them, $4 says which (True: closed); for both or neither, NULL.
    only_closed = None if len(set(query.statuses)) != 1 else query.statuses[0] == "closed"
    rows = await pool.fetch(
        f"{_REQUESTS} WHERE c.received_at BETWEEN $1 AND $2"
        " AND (cardinality($3::text[]) = 0 OR c.category_id = ANY($3::text[]))"
        " AND ($4::boolean IS NULL OR (c.status = $5) = $4)"
        " ORDER BY c.received_at DESC LIMIT $6",
        start, end, codes, only_closed, Status.CLOSED.value, MAX_RESULTS,
    )  # fmt: skip
    return [_request(r, settings) for r in rows]


async def request(pool: asyncpg.Pool, settings: Settings, case_id: str) -> dict[str, Any]:
    row = await pool.fetchrow(f"{_REQUESTS} WHERE c.case_id = $1", case_id)
    if row is None:
        raise NotFound(f"service_request_id {case_id!r} not found")
    return _request(row, settings)


async def token_request(pool: asyncpg.Pool, token: str) -> str:
    """The service_request_id of a report's citizen token (the follow-up link's token)."""
    case_id = await pool.fetchval(
        "SELECT case_id FROM intakes WHERE token_hash = $1 AND state = 'started'"
        " UNION ALL SELECT case_id FROM repeat_reports WHERE token_hash = $1"
        " AND state = 'started' LIMIT 1",
        digest(token),
    )
    if case_id is None:
        raise NotFound("token not found")
    return str(case_id)
