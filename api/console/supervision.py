"""派单 / 督办: the hotline centre's dispatch queue, the extension requests waiting for a
decision, the accountability records to complete (问责待完善), the overdue board, the cases on
the supervision ladder, and the indicators and rankings as charts (jiesu.stats)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from api.console import event_words
from api.console.actions import lines
from api.console.queue import from_dispatch_sql
from api.console.web import (
    PREFIX,
    error_page,
    form_of,
    page,
    redirect,
    require_roles,
    validation_message,
)
from api.deps import AppSettings, Pool, StatAnswers
from api.routers.oversight import AccountabilityCompletion
from jiesu.admin.departments import IN_SERVICE
from jiesu.case.domain import DISPATCHER_ROLES, OVERSEER_ROLES, Status, sql_status
from jiesu.case.lifecycle import WITH_DEPARTMENT
from jiesu.case.sla import late_sql, late_steps
from jiesu.readmodel import accountability, boards, oversight
from jiesu.readmodel.boards import BOARD_ROWS as BOARD_ROWS  # how many a board lists
from jiesu.readmodel.boards import Board
from jiesu.stats import answers as stat_answers
from jiesu.stats import queries
from jiesu.stats.indicators import INDICATORS

router = APIRouter()
Dispatcher = require_roles(*DISPATCHER_ROLES)
Overseer = require_roles(*OVERSEER_ROLES)

_COLUMNS = (
    "case_id, status, title, category_id, grid_id, urgency, department_id, received_at, "
    "accept_deadline, finish_deadline, breaches, escalation_level, " + from_dispatch_sql()
)
# Each board lists its first rows (BOARD_ROWS) by its order and says how many its rule finds in
# all (jiesu.readmodel.boards): before, each heading counted the rows listed ("200 件").
QUEUE = Board(  # 待派单队列: the oldest first
    _COLUMNS,
    f"FROM cases WHERE status IN ({sql_status(Status.DISPATCHING, Status.REASSIGNING)})",
    "received_at",
)
# 超时工单: open cases late now (jiesu.case.sla.late_sql), whenever received — not the
# statistic 超时量 (jiesu.stats.indicators.OVERDUE); the page says which is which. Due first.
OVERDUE = Board(
    f"{_COLUMNS}, contact_deadline, accepted_at, contacted_at",
    f"FROM cases WHERE status <> {sql_status(Status.CLOSED)} AND {late_sql('$1')}",
    "finish_deadline NULLS LAST", arity=1,
)  # fmt: skip
# 督办中的工单: open cases whose ladder climbs now, the highest level first (a stopped
# ladder's level stays on the case, not on this board: migration 0050)
LADDER = Board(
    _COLUMNS,
    f"FROM cases WHERE status <> {sql_status(Status.CLOSED)} AND ladder_active",
    "escalation_level DESC, received_at",
)
# 待移交: open cases held by a unit out of service (停用), that 移交 can give to its successor
# (assigned or handling: lifecycle.check_handover); a replied one waits for its rating
HANDOVER = Board(
    _COLUMNS,
    f"FROM cases WHERE status IN ({sql_status(*WITH_DEPARTMENT)})"
    f" AND department_id IN (SELECT d.id FROM departments d WHERE NOT {IN_SERVICE})",
    "received_at",
)
# 问责待完善: records without persons or decision (the ladder's own), newest first
INCOMPLETE = Board(
    "case_id, seq, department_id, reason, persons, decision, recorded_at",
    "FROM accountability_records WHERE cardinality(persons) = 0 OR decision = ''",
    "recorded_at DESC, case_id, seq",
)
FIGURE_DAYS = 30


@router.get("/supervision", response_class=HTMLResponse)
async def supervision(request: Request, pool: Pool, session: Dispatcher) -> Response:
    return await _page(request, pool, session)


# the record just completed, to say what was saved (it leaves the 问责待完善 list)
_SAVED = """
SELECT case_id, seq, department_id, persons, decision FROM accountability_records
WHERE case_id = $1 AND seq = $2
"""


async def _saved(pool: Pool, request: Request) -> Any:
    query = request.query_params
    if query.get("done") != "accountability" or not query.get("seq", "").isdigit():
        return None
    return await pool.fetchrow(_SAVED, query.get("case", ""), int(query["seq"]))


async def _overdue(pool: Pool, now: datetime) -> boards.Listed:
    """超时工单, each with what it is late with (超时环节) and that step's deadline."""
    listed = await boards.read(pool, OVERDUE, now)
    for row in listed.rows:
        row["late_steps"] = late_steps(row, now)
    return listed


def accountability_form(case_id: str, seq: int) -> str:
    """The name of a 问责待完善 record's form on the page (web.typed: the one refused)."""
    return f"{case_id}/{seq}"


async def _page(
    request: Request, pool: Pool, session: Any, error: str | None = None, status_code: int = 200,
    *, failed: str | None = None, posted: FormData | None = None,
) -> Response:  # fmt: skip
    """``failed``: the 问责 form refused, shown again with what was ``posted`` and why."""
    now = datetime.now(UTC)
    context = {
        "saved": await _saved(pool, request),  # 问责 saved: what
        "session": session,
        # each board: its first rows and how many in all (boards.Listed)
        "queue": await boards.read(pool, QUEUE),
        "overdue": await _overdue(pool, now),
        "ladder": await boards.read(pool, LADDER),
        "handover": await boards.read(pool, HANDOVER),  # 待移交
        "extensions": await oversight.extensions_board(pool, None),  # 延期待审
        "incomplete": await boards.read(pool, INCOMPLETE),  # 问责待完善
        "departments": dict(await pool.fetch("SELECT id, name FROM departments")),
        "error": error, "failed": failed, "posted": posted,
        "form_of": accountability_form,
        "note": event_words.note,  # 问责事由: a ladder's own English reason in Chinese
    }
    return page(request, "supervision.html", context, status_code)


@router.post("/accountability/{case_id}/{seq}", response_class=HTMLResponse)
async def complete_accountability(
    request: Request, case_id: str, seq: int, pool: Pool, session: Dispatcher
) -> Response:
    """问责: the persons (one a line) and the decision of a record, through the same service
    as ``PUT /api/v1/accountability/{case}/{seq}`` (recorded in the change log)."""
    form = await form_of(request, session)
    try:
        body = AccountabilityCompletion(
            persons=lines(form.get("persons")), decision=str(form.get("decision") or "").strip()
        )
        await accountability.complete(
            pool, case_id, seq, body.persons, body.decision, session.principal.actor
        )
    except ValidationError as err:
        return await _page(request, pool, session, validation_message(err), 422,
                           failed=accountability_form(case_id, seq), posted=form)
    except accountability.NoSuchRecord:
        return error_page(request, 404, f"没有问责记录 {case_id}/{seq}")
    target = urlencode({"done": "accountability", "case": case_id, "seq": seq})
    return redirect(f"{PREFIX}/supervision?{target}#accountability-saved")


def _chart_data(table: dict[str, Any], ranking: dict[str, Any]) -> dict[str, Any]:
    """What static/charts.js draws: daily counts, the rates, the ranking."""
    counts = [i for i in INDICATORS if not i.is_rate]
    rates = [i for i in INDICATORS if i.is_rate]
    return {
        "days": [p["period"].isoformat() for p in table["periods"]],
        "counts": [{"name": i.zh, "data": [p[i.name] for p in table["periods"]]}
                   for i in counts],
        "rates": [{"name": i.zh, "value": table["totals"][i.name]["value"]} for i in rates],
        "ranking": [{"name": e["department_name"], "score": e["score"]}
                    for e in ranking["entries"]],
    }  # fmt: skip


@router.get("/figures", response_class=HTMLResponse)
async def figures(
    request: Request, pool: Pool, settings: AppSettings, answers: StatAnswers, session: Overseer
) -> Response:
    """统计指标 and 考评排名 of the last 30 days (local days), as charts and as tables."""
    end = datetime.now(ZoneInfo(settings.timezone)).date()
    start = end - timedelta(days=FIGURE_DAYS - 1)
    # read only, never a refresh; kept until the figures move (jiesu.stats.answers)
    as_of, table = await stat_answers.indicators(
        pool, answers, settings.timezone, queries.IndicatorQuery(start, end)
    )
    _, ranking = await stat_answers.ranking(pool, answers, settings.timezone, start, end)
    context = {
        "session": session, "start": start, "end": end, "as_of": as_of,
        "indicators": INDICATORS, "totals": table["totals"], "ranking": ranking["entries"],
        "chart": _chart_data(table, ranking),
    }  # fmt: skip
    return page(request, "figures.html", context)
