"""/api/v1/complaints/{case_id}/history...: the auditor's view of a case's Temporal history.

Read from Temporal while it keeps the history, from the archive afterwards (same answers).
Auditors and admins only.
"""

from __future__ import annotations

from dataclasses import asdict
from functools import cache
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from temporalio.worker import Replayer

from api.cases import viewer_of
from api.deps import Auditor, CaseId, Pool, Principal, Temporal
from api.errors import ApiError, ErrorResponse
from jiesu.access.content import history_fields, record_view
from jiesu.audit import histories as audit
from jiesu.audit import replay as audit_replay
from jiesu.audit.timeline import Timeline, decode_payloads
from workflows import ALL_WORKFLOWS


@cache
def replayer() -> Replayer:
    """One replay worker for the API process, with the workflow code the workers run."""
    return audit_replay.make_replayer(ALL_WORKFLOWS)


router = APIRouter(prefix="/complaints", tags=["audit"])


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "No or unknown API key"},
    403: {"model": ErrorResponse, "description": "Auditors and admins only"},
    404: {"model": ErrorResponse, "description": "No history for this case"},
    422: {"model": ErrorResponse, "description": "Invalid input"},
}


def _no_history(case_id: CaseId) -> ApiError:
    return ApiError(404, "history_not_found", f"no history for case {case_id}")


def start_input(timeline: Timeline) -> Any:
    """The case's start input (its first argument, decoded), as its timeline's first entry
    shows it."""
    first = timeline.entries[0] if timeline.entries else None
    args = first.details.get("input") if first is not None and first.kind == "started" else None
    return args[0] if isinstance(args, list) and args else None


async def record_history_read(
    pool: Pool, principal: Principal, case_id: str, start: Any
) -> None:
    """A case's history shows the content it carries (its address, every supplement and
    repeat report as it arrived, the evidence: jiesu.access.content.history_fields) in full:
    reading it is a recorded view, before it is answered, as every other view of the content."""
    await record_view(pool, case_id, viewer_of(principal), history_fields(start))


@router.get(
    "/{case_id}/history",
    response_model=Timeline,
    responses=_ERRORS,
    summary="审计 The case's timeline, decoded from its Temporal history",
)
async def history(
    case_id: CaseId, principal: Auditor, pool: Pool, client: Temporal
) -> Timeline:
    try:
        timeline = await audit.case_timeline(client, pool, case_id)
    except audit.HistoryNotFound as err:
        raise _no_history(case_id) from err
    await record_history_read(pool, principal, case_id, start_input(timeline))
    return timeline


@router.get(
    "/{case_id}/history/raw",
    responses=_ERRORS,
    summary="The raw history in Temporal's JSON (as `temporal workflow show --output json`)",
)
async def raw_history(
    case_id: CaseId, principal: Auditor, pool: Pool, client: Temporal
) -> JSONResponse:
    try:
        loaded = await audit.load_history(client, pool, case_id)
    except audit.HistoryNotFound as err:
        raise _no_history(case_id) from err
    first = loaded.events[0] if loaded.events else None
    args = decode_payloads(first.workflow_execution_started_event_attributes.input) if first else []
    await record_history_read(pool, principal, case_id, args[0] if args else None)
    return JSONResponse(loaded.to_json_dict())


@router.get(
    "/{case_id}/history/bundle",
    responses=_ERRORS,
    summary="Timeline plus the raw histories of the case and its children, as one file",
)
async def bundle(
    case_id: CaseId, principal: Auditor, pool: Pool, client: Temporal
) -> JSONResponse:
    try:
        document = await audit.case_bundle(client, pool, case_id)
    except audit.HistoryNotFound as err:
        raise _no_history(case_id) from err
    timeline = Timeline.model_validate(document["timeline"])
    await record_history_read(pool, principal, case_id, start_input(timeline))
    disposition = f'attachment; filename="{case_id}-bundle.json"'
    return JSONResponse(document, headers={"Content-Disposition": disposition})


@router.post(
    "/{case_id}/replay",
    responses=_ERRORS,
    summary="Replay the case (and its children) against the current workflow code",
)
async def replay(case_id: CaseId, _: Auditor, pool: Pool, client: Temporal) -> dict[str, Any]:
    verdict = await audit_replay.replay_case(client, pool, case_id, replayer())
    if verdict.verdict == audit_replay.MISSING and not verdict.histories:
        raise _no_history(case_id)  # (a lost child's case is answered: "missing", not ok)
    return {**asdict(verdict), "ok": verdict.ok}
