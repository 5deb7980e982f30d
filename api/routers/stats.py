"""/api/v1/stats and /api/v1/reports: indicators, department evaluation and periodic reports.

Access: supervisors, auditors and admins see everything. Department staff see the indicators
of their own department only (the department filter is set to theirs; asking for another is
403); the ranking, the scoring rules and the reports compare departments and are not theirs
to see. Changing the scoring rules is for admins. The figures (indicators, per-person,
ranking, a report) answer JSON, or CSV with ``?format=csv`` or ``Accept: text/csv``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import asyncpg
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, create_model

from api.deps import (
    Admin,
    AppSettings,
    Overseer,
    Pool,
    StatAnswers,
    Supervisor,
    Temporal,
    Viewer,
)
from api.errors import ApiError, ErrorResponse
from jiesu.case.domain import Channel, Day, Line, Role, Urgency
from jiesu.stats import answers as stat_answers
from jiesu.stats import people, queries
from jiesu.stats.evaluation import ScoringRules
from jiesu.stats.indicators import INDICATORS, Filter, GroupBy
from jiesu.stats.reports import ReportKind, ReportSummary, period_containing, unreportable
from workflows.reports import run_manual_report

router = APIRouter(tags=["statistics"])

MAX_PERIODS = 400
REPORT_RETRY_AFTER_SECONDS = 30
DEFAULT_DAYS = 30

Level = Literal["city", "centre", "county", "township", "village"]
FilterValue = Annotated[Line | None, Query(max_length=100)]

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "No or unknown API key"},
    403: {"model": ErrorResponse, "description": "Your role may not see this"},
    422: {
        "model": ErrorResponse,
        "description": "Invalid input (days must lie in the supported years, see Day)",
    },
}
_CSV = {"content": {"text/csv": {}}, "description": "JSON, or CSV with ?format=csv"}


class Format(StrEnum):
    JSON = "json"
    CSV = "csv"


FormatParam = Annotated[
    Format | None, Query(description="json (default) or csv; or send Accept: text/csv")
]


# --- response models (built from jiesu.stats.indicators, the one source of the definitions) -------


class Ratio(BaseModel):
    numerator: int
    denominator: int
    value: float | None = Field(description="numerator / denominator; null when it is 0")


IndicatorValues: type[BaseModel] = create_model(
    "IndicatorValues",
    **{
        i.name: (Ratio if i.is_rate else int, Field(description=f"{i.zh}. {i.doc}"))
        for i in INDICATORS
    },  # type: ignore[call-overload]
)
PeriodValues: type[BaseModel] = create_model(
    "PeriodIndicators",
    __base__=IndicatorValues,
    period=(date, Field(description="First day of the period")),
)


AS_OF = (
    "The figures include every change until then (the rollup is refreshed in the background, "
    "every JIESU_STATS_REFRESH_SECONDS); null: not built yet, the worker is building it"
)


class IndicatorTable(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    date_from: date = Field(alias="from")
    date_to: date = Field(alias="to")
    group_by: GroupBy
    timezone: str
    filters: dict[str, str]
    as_of: datetime | None = Field(description=AS_OF)
    totals: IndicatorValues  # type: ignore[valid-type]
    periods: list[PeriodValues]  # type: ignore[valid-type]


class Definition(BaseModel):
    name: str
    zh: str
    kind: Literal["count", "rate"]
    numerator: str
    denominator: str | None
    definition: str


class AccountabilityItem(BaseModel):
    """One 问责 record of the department in the period (GET /api/v1/accountability)."""

    case_id: str
    seq: int
    persons: list[str] = Field(description="Empty until the centre completes the record")
    reason: str
    decision: str
    ordered: bool
    recorded_at: datetime


class RankingEntry(BaseModel):
    rank: int | None = Field(description="null: below the minimum volume, not ranked")
    unranked_reason: str | None
    department_id: str
    department_name: str
    level: str
    received: int
    accountability_records: int = Field(
        default=0, description="问责 records of the department dated in the period"
    )
    accountability: list[AccountabilityItem] = Field(
        default_factory=list, description="Those records: persons, reason, decision"
    )
    score: float
    stages: list[dict[str, Any]] = Field(description="Points per stage and per rule")


class Ranking(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    date_from: date = Field(alias="from")
    date_to: date = Field(alias="to")
    level: str | None
    min_cases: int
    rules: ScoringRules
    entries: list[RankingEntry]
    as_of: datetime | None = Field(default=None, description=AS_OF)


class ReportListItem(ReportSummary):
    url: str


class PersonFigures(BaseModel):
    handled: int = Field(description="办结: cases whose last reply (of the unit's) this was")
    on_time_rate: Ratio = Field(description="Of those, replied within the finish deadline")
    satisfaction_rate: Ratio = Field(description="Verdicts on those replies: satisfied / rated")
    returns: int = Field(description="退单 made")


class Person(PersonFigures):
    person: str = Field(description="The actor: a staff login, or an API key's name")


class UnitFigures(PersonFigures):
    cases: int = Field(description="Cases the unit held (handlings)")


class UnitPeople(BaseModel):
    department_id: str
    department_name: str | None
    unit: UnitFigures
    people: list[Person]


class PeopleFigures(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    date_from: date = Field(alias="from")
    date_to: date = Field(alias="to")
    units: list[UnitPeople]
    as_of: datetime | None = Field(default=None, description=AS_OF)


# --- helpers ----------------------------------------------------------------------------------


def _wants_csv(request: Request, format_: Format | None) -> bool:
    """``?format=`` decides; else the Accept header: CSV when it takes text/csv at least as
    gladly as JSON (its q-values: ``text/csv;q=0`` is a refusal, not a request)."""
    if format_ is not None:
        return format_ is Format.CSV
    weights = _accept_weights(request.headers.get("accept", ""))
    csv = weights.get("text/csv", 0.0)
    json = max((weights.get(m, 0.0) for m in ("application/json", "application/*", "*/*")),
               default=0.0)  # fmt: skip
    return csv > 0 and csv >= json


def _accept_weights(header: str) -> dict[str, float]:
    """Each media range of an Accept header and its q-value (1 when none; 0 when unreadable)."""
    weights: dict[str, float] = {}
    for part in header.split(",")[:50]:
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    number = float(value)
                except ValueError:
                    number = 0.0
                q = number if 0.0 <= number <= 1.0 else float(number > 1.0)  # NaN: 0
        if media:
            weights[media.lower()] = max(q, weights.get(media.lower(), 0.0))
    return weights


# What a spreadsheet reads as a formula at a cell's start. A report's overdue cases carry
# their titles — a citizen's words, from the app, an SMS or a mail — and a supervisor opens the
# CSV in Excel or WPS, which would run "=HYPERLINK(…)" or "@SUM(…)". Such a text cell starts
# with ' instead (OWASP, "CSV injection"), which the spreadsheet shows as text.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _csv_text(rows: Iterable[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in rows:
        writer.writerow([_cell(v) for v in row])
    return out.getvalue()


def _csv_response(rows: Iterable[Sequence[Any]], filename: str) -> Response:
    return _csv_file(_csv_text(rows), filename)


def _csv_file(text: str, filename: str) -> Response:
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _json(model: type[BaseModel], payload: dict[str, Any]) -> bytes:
    """The body FastAPI would send for ``payload`` as ``model`` (by alias), encoded once so
    that a kept answer (jiesu.stats.answers) is sent as it is: a ranking's ~360 departments
    cost more to validate and encode than to compute."""
    return model.model_validate(payload).model_dump_json(by_alias=True).encode()


def _answer(body: str | bytes, csv_file: str | None) -> Response:
    if csv_file is not None:
        return _csv_file(str(body), csv_file)
    return Response(body, media_type="application/json")


def _today(timezone: str) -> date:
    return datetime.now(ZoneInfo(timezone)).date()


def _period(date_from: date | None, date_to: date | None, timezone: str) -> tuple[date, date]:
    end = date_to or _today(timezone)
    start = date_from or end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        raise ApiError(422, "invalid_period", f"'from' ({start}) is after 'to' ({end})")
    return start, end


def indicator_header() -> list[str]:
    header = ["period"]
    for i in INDICATORS:
        header += [f"{i.name}_numerator", f"{i.name}_denominator", i.name] if i.is_rate else [
            i.name
        ]
    return header


def indicator_row(label: Any, values: dict[str, Any]) -> list[Any]:
    row = [label]
    for i in INDICATORS:
        v = values[i.name]
        row += [v["numerator"], v["denominator"], v["value"]] if i.is_rate else [v]
    return row


def indicator_rows(table: dict[str, Any]) -> list[list[Any]]:
    rows = [indicator_header()]
    rows += [indicator_row(p["period"], p) for p in table["periods"]]
    rows.append(indicator_row("total", table["totals"]))
    return rows


def people_rows(units: list[dict[str, Any]]) -> list[list[Any]]:
    """Per unit, its own row (person empty) and then one per person."""
    rows: list[list[Any]] = [[
        "department_id", "department_name", "person", "cases", "handled",
        "on_time_numerator", "on_time_denominator", "on_time_rate",
        "satisfaction_numerator", "satisfaction_denominator", "satisfaction_rate", "returns",
    ]]  # fmt: skip
    for unit in units:
        for person, figures in [(None, unit["unit"]),
                                *((p["person"], p) for p in unit["people"])]:  # fmt: skip
            on_time, satisfied = figures["on_time_rate"], figures["satisfaction_rate"]
            rows.append([
                unit["department_id"], unit["department_name"], person, figures.get("cases"),
                figures["handled"], on_time["numerator"], on_time["denominator"],
                on_time["value"], satisfied["numerator"], satisfied["denominator"],
                satisfied["value"], figures["returns"],
            ])  # fmt: skip
    return rows


def ranking_rows(entries: list[dict[str, Any]]) -> list[list[Any]]:
    rule_names = [r["indicator"] for s in (entries[0]["stages"] if entries else []) for r in
                  s["rules"]]
    stages = [s["stage"] for s in (entries[0]["stages"] if entries else [])]
    rows: list[list[Any]] = [[
        "rank", "department_id", "department_name", "level", "received", "score",
        *(f"{s}_points" for s in stages), *rule_names, "unranked_reason",
    ]]  # fmt: skip
    for e in entries:
        rules = [r["value"] for s in e["stages"] for r in s["rules"]]
        rows.append([
            e["rank"], e["department_id"], e["department_name"], e["level"], e["received"],
            e["score"], *(s["points"] for s in e["stages"]), *rules, e["unranked_reason"],
        ])  # fmt: skip
    return rows


# --- indicators -------------------------------------------------------------------------------


@router.get(
    "/stats/definitions",
    response_model=list[Definition],
    responses=_ERRORS,
    summary="指标口径 How every indicator is defined",
)
async def definitions(principal: Viewer) -> list[Definition]:
    return [
        Definition(
            name=i.name, zh=i.zh, kind="rate" if i.is_rate else "count",
            numerator=i.numerator.name,
            denominator=i.denominator.name if i.denominator else None, definition=i.doc,
        )
        for i in INDICATORS
    ]


@router.get(
    "/stats/indicators",
    response_model=IndicatorTable,
    response_model_by_alias=True,
    responses={**_ERRORS, 200: _CSV},
    summary="统计指标 Indicators for a period, filtered, by day, week or month",
)
async def get_indicators(
    request: Request,
    principal: Viewer,
    pool: Pool,
    settings: AppSettings,
    answers: StatAnswers,
    date_from: Annotated[
        Day | None, Query(alias="from", description="First day (local); default: 30 days ago")
    ] = None,
    date_to: Annotated[
        Day | None, Query(alias="to", description="Last day (local); default: today")
    ] = None,
    group_by: GroupBy = GroupBy.DAY,
    department_id: FilterValue = None,
    category_id: FilterValue = None,
    grid_id: FilterValue = None,
    channel: Channel | None = None,
    level: Level | None = None,
    urgency: Urgency | None = None,
    format_: Annotated[FormatParam, Query(alias="format")] = None,
) -> Any:
    if principal.role is Role.DEPARTMENT:
        if department_id not in (None, principal.department_id):
            raise ApiError(403, "forbidden", "you can see only your own department's figures")
        department_id = principal.department_id
    start, end = _period(date_from, date_to, settings.timezone)
    if len(queries.period_starts(start, end, group_by)) > MAX_PERIODS:
        raise ApiError(
            422, "too_many_periods", f"more than {MAX_PERIODS} periods: group by week or month"
        )
    given = {
        Filter.DEPARTMENT: department_id, Filter.CATEGORY: category_id, Filter.GRID: grid_id,
        Filter.CHANNEL: channel, Filter.LEVEL: level, Filter.URGENCY: urgency,
    }  # fmt: skip
    filters = {f: str(v) for f, v in given.items() if v is not None}
    query = queries.IndicatorQuery(start, end, group_by, filters)
    csv_file = f"indicators-{start}-{end}.csv" if _wants_csv(request, format_) else None

    async def render(conn: asyncpg.Connection, as_of: datetime | None) -> str | bytes:
        table = await queries.indicators(conn, query)
        if csv_file is not None:
            return _csv_text(indicator_rows(table))
        return _json(IndicatorTable, {
            "from": start, "to": end, "group_by": group_by, "timezone": settings.timezone,
            "filters": {f.value: v for f, v in filters.items()}, "as_of": as_of, **table,
        })  # fmt: skip

    key = ("indicators", csv_file, start, end, group_by, stat_answers.filter_key(query))
    return _answer(await stat_answers.kept(pool, answers, settings.timezone, key, render),
                   csv_file)  # fmt: skip


@router.get(
    "/stats/people",
    response_model=PeopleFigures,
    response_model_by_alias=True,
    responses={**_ERRORS, 200: _CSV},
    summary="个人绩效 Per-person figures next to the unit's (fair attribution by round)",
)
async def get_people(
    request: Request,
    principal: Viewer,
    pool: Pool,
    settings: AppSettings,
    answers: StatAnswers,
    date_from: Annotated[Day | None, Query(alias="from")] = None,
    date_to: Annotated[Day | None, Query(alias="to")] = None,
    department_id: FilterValue = None,
    format_: Annotated[FormatParam, Query(alias="format")] = None,
) -> Any:
    if principal.role is Role.DEPARTMENT:
        if department_id not in (None, principal.department_id):
            raise ApiError(403, "forbidden", "you can see only your own department's figures")
        department_id = principal.department_id
    start, end = _period(date_from, date_to, settings.timezone)
    csv_file = f"people-{start}-{end}.csv" if _wants_csv(request, format_) else None

    async def render(conn: asyncpg.Connection, as_of: datetime | None) -> str | bytes:
        units = await people.people(conn, start, end, department_id)
        if csv_file is not None:
            return _csv_text(people_rows(units))
        return _json(PeopleFigures, {"from": start, "to": end, "as_of": as_of, "units": units})

    key = ("people", csv_file, start, end, department_id)
    return _answer(await stat_answers.kept(pool, answers, settings.timezone, key, render),
                   csv_file)  # fmt: skip


# --- evaluation (考评) -------------------------------------------------------------------------


@router.get(
    "/stats/ranking",
    response_model=Ranking,
    response_model_by_alias=True,
    responses={**_ERRORS, 200: _CSV},
    summary="考评排名 Department evaluation: scores, breakdown and ranking",
)
async def get_ranking(
    request: Request,
    principal: Overseer,
    pool: Pool,
    settings: AppSettings,
    answers: StatAnswers,
    date_from: Annotated[Day | None, Query(alias="from")] = None,
    date_to: Annotated[Day | None, Query(alias="to")] = None,
    level: Annotated[Level | None, Query(description="Rank departments of one level")] = None,
    min_cases: Annotated[
        int | None, Query(ge=0, le=1_000_000_000, description="Override the rules' minimum volume")
    ] = None,
    format_: Annotated[FormatParam, Query(alias="format")] = None,
) -> Any:
    start, end = _period(date_from, date_to, settings.timezone)
    csv_file = f"ranking-{start}-{end}.csv" if _wants_csv(request, format_) else None

    async def render(conn: asyncpg.Connection, as_of: datetime | None) -> str | bytes:
        result = await queries.ranking(conn, start, end, level=level, min_cases=min_cases,
                                       timezone=settings.timezone)  # fmt: skip
        if csv_file is not None:
            return _csv_text(ranking_rows(result["entries"]))
        return _json(Ranking, {"from": start, "to": end, "level": level, "as_of": as_of,
                               **result})  # fmt: skip

    key = ("ranking", csv_file, start, end, level, min_cases)
    return _answer(await stat_answers.kept(pool, answers, settings.timezone, key, render),
                   csv_file)  # fmt: skip


@router.get(
    "/stats/scoring-rules",
    response_model=ScoringRules,
    responses=_ERRORS,
    summary="考评规则 The scoring rules in force",
)
async def get_scoring_rules(principal: Overseer, pool: Pool) -> ScoringRules:
    return await queries.load_rules(pool)


@router.put(
    "/stats/scoring-rules",
    response_model=ScoringRules,
    responses=_ERRORS,
    summary="考评规则 Replace the scoring rules (admin)",
)
async def put_scoring_rules(body: ScoringRules, principal: Admin, pool: Pool) -> ScoringRules:
    await queries.save_rules(pool, body, principal.name)
    return body


# --- reports (定期报告) ------------------------------------------------------------------------


def _report_url(kind: str, start: date) -> str:
    return f"/api/v1/reports/{kind}/{start.isoformat()}"


@router.get(
    "/reports",
    response_model=list[ReportListItem],
    responses=_ERRORS,
    summary="定期报告 The stored report snapshots, newest first",
)
async def list_reports(
    principal: Overseer,
    pool: Pool,
    kind: ReportKind | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[ReportListItem]:
    rows = await pool.fetch(
        "SELECT kind, period_start, period_end, generated_at, generation FROM report_snapshots"
        " WHERE $1::text IS NULL OR kind = $1 ORDER BY period_start DESC, kind LIMIT $2",
        kind,
        limit,
    )
    return [ReportListItem(**r, url=_report_url(r["kind"], r["period_start"])) for r in rows]


@router.get(
    "/reports/{kind}/{period_start}",
    responses={**_ERRORS, 404: {"model": ErrorResponse}, 200: _CSV},
    summary="定期报告 One report snapshot (JSON or CSV)",
)
async def get_report(
    kind: ReportKind,
    period_start: Day,
    request: Request,
    principal: Overseer,
    pool: Pool,
    answers: StatAnswers,
    format_: Annotated[FormatParam, Query(alias="format")] = None,
) -> Any:
    start = period_containing(kind, period_start)[0]
    wants_csv = _wants_csv(request, format_)
    async with stat_answers.snapshot(pool) as conn:
        row = await conn.fetchrow(
            "SELECT generated_at, generation FROM report_snapshots"
            " WHERE kind = $1 AND period_start = $2",
            kind.value, start,
        )  # fmt: skip
        if row is None:
            raise ApiError(404, "report_not_found", f"no {kind.value} report for {period_start}")

        async def render() -> str | bytes:
            # a month's snapshot holds a ranking of ~360 departments (0.5 MB): the JSON is
            # PostgreSQL's own text of the stored document, never decoded and encoded again
            # here; the CSV needs the values. Either is kept per generation of the row.
            stamp = {"generated_at": row["generated_at"].isoformat(),
                     "generation": row["generation"]}  # fmt: skip
            if not wants_csv:
                text = await conn.fetchval(_REPORT_TEXT, kind.value, start, stamp)
                return text.encode()
            content = await conn.fetchval(
                "SELECT content FROM report_snapshots WHERE kind = $1 AND period_start = $2",
                kind.value, start,
            )  # fmt: skip
            return _csv_text(report_rows({**content, **stamp}))

        key = ("report", kind, start, wants_csv, row["generation"], row["generated_at"])
        body = await answers.get(key, row["generated_at"], render)
    return _answer(body, f"report-{kind.value}-{start}.csv" if wants_csv else None)


@router.post(
    "/reports/{kind}/{period_start}",
    response_model=ReportSummary,
    responses=_ERRORS,
    summary="定期报告 Produce (or re-produce) a period's report now",
)
async def run_report(
    kind: ReportKind,
    period_start: Day,
    principal: Supervisor,
    client: Temporal,
    settings: AppSettings,
) -> ReportSummary:
    refused = unreportable(kind, period_start, _today(settings.timezone))
    if refused is not None:
        raise ApiError(422, "invalid_period", refused)
    start, _ = period_containing(kind, period_start)
    wait = settings.report_wait_seconds
    try:
        return await run_manual_report(client, kind, start, settings.task_queue, wait)
    except TimeoutError:
        raise ApiError(
            503, "report_pending",
            f"the {kind.value} report of {start} was not produced within {wait:g} s (is a"
            f" worker running?); its run goes on: retry, or read {_report_url(kind.value, start)}",
            headers={"Retry-After": str(REPORT_RETRY_AFTER_SECONDS)},
        ) from None  # fmt: skip


_REPORT_TEXT = """
SELECT (content || $3::jsonb)::text FROM report_snapshots WHERE kind = $1 AND period_start = $2
"""


def report_rows(report: dict[str, Any]) -> list[list[Any]]:
    """A report as CSV: sections, each introduced by a '# section' row."""
    rows: list[list[Any]] = [["# section", "summary"]]
    rows += [[k, report[k]] for k in ("kind", "period_start", "period_end", "timezone",
                                      "generated_at", "generation")]  # fmt: skip
    rows += [[], ["# section", "indicators"], *indicator_rows(report["indicators"])]
    for section, columns in (
        ("top_categories", ("category_id", "name", "received", "overdue")),
        ("top_places", ("grid_id", "name", "received", "overdue")),
    ):
        rows += [[], ["# section", section], list(columns)]
        rows += [[item[c] for c in columns] for item in report[section]]
    overdue_columns = ("case_id", "title", "status", "department_id", "category_id", "grid_id",
                       "received_at", "finish_deadline", "replied_at")  # fmt: skip
    overdue = report["overdue_cases"]
    # the list stops at 100: its heading says so (before, 100 rows under a 超时量 of 101)
    rows += [[], ["# section", "overdue_cases", "count", overdue["count"],
                  "listed", len(overdue["listed"])], list(overdue_columns)]  # fmt: skip
    rows += [[c[k] for k in overdue_columns] for c in overdue["listed"]]
    rows += [[], ["# section", "ranking"], *ranking_rows(report["ranking"])]
    return rows
