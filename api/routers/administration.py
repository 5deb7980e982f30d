"""/api/v1/admin/...: reference data, the routing catalogue, calendar overrides, policy values,
notification templates and the change log. Admins only; the service is jiesu.admin (the
``jiesu admin`` commands call the same functions). A refused change is a 4xx and changes
nothing; every change is in ``GET /api/v1/admin/changes``."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Header, Path, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from api.actions import IdempotencyKey
from api.deps import Admin, AppSettings, Pool, Temporal
from api.errors import ERRORS, ApiError, ErrorResponse
from jiesu.admin import (
    calendar,
    changes,
    departments,
    handover,
    policy,
    reference,
    routing,
    templates,
)
from jiesu.admin.errors import AdminRefused
from jiesu.case.domain import EventKind, Instant, Line
from jiesu.notify.notices import RecipientKind

router = APIRouter(prefix="/admin", tags=["administration"])

# The status of each kind of refusal; the console's forms answer the same.
REFUSAL_STATUS = {"invalid": 422, "not_found": 404, "conflict": 409}
_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    403: {"model": ErrorResponse, "description": "Admins only"},
    404: {"model": ErrorResponse, "description": "No such record"},
    409: {"model": ErrorResponse, "description": "The change conflicts with the current data"},
}
# A read (or a change no rule refuses): no record named that may be missing or in conflict.
_READ_ERRORS = {s: r for s, r in _ERRORS.items() if s not in (404, 409)}
RecordId = Annotated[str, Path(pattern=reference.ID_PATTERN)]
T = TypeVar("T")


async def _refusing(work: Awaitable[T]) -> T:
    try:
        return await work
    except AdminRefused as exc:
        raise ApiError(REFUSAL_STATUS[exc.kind], exc.code, exc.message) from exc


# --- the change log ---------------------------------------------------------------------


@router.get("/changes", response_model=list[changes.Change], responses=_READ_ERRORS,
            summary="Every administrative change, newest first (who, when, before, after)")
async def list_changes(
    _: Admin, pool: Pool,
    entity: Annotated[Line | None, Query(max_length=64)] = None,
    entity_id: Annotated[Line | None, Query(max_length=200)] = None,
    before_id: Annotated[int | None, Query(ge=1, lt=2**63)] = None,
    limit: Annotated[int, Query(ge=1, le=changes.MAX_LIMIT)] = 100,
) -> list[changes.Change]:
    return await changes.list_changes(
        pool, entity=entity, entity_id=entity_id, before_id=before_id, limit=limit
    )


# --- departments, areas (grids), categories ----------------------------------------------


class _Versioned(BaseModel):
    id: str
    version: str = Field(description="A digest of the record: send it as If-Match to change "
                         "or delete only this version (409 version_conflict otherwise)")


class Department(reference.DepartmentIn, _Versioned):
    retired_at: datetime | None = Field(
        default=None, description="Out of service (停用) from then on; none: in service. Set by "
        "…/retire and …/reinstate, never by PUT.")


class Area(reference.AreaIn, _Versioned):
    pass


class Category(reference.CategoryIn, _Versioned):
    pass


IfMatch = Annotated[str | None, Header(max_length=80, description=(
    "The record's `version` (quoted or not): change only that version, 409 otherwise"))]


def _if_version(if_match: str | None) -> str | None:
    """``If-Match: "<version>"`` → the version; none → unconditional."""
    if if_match is None:
        return None
    text = if_match.strip().removeprefix("W/").strip('"')
    if not text or len(text) > 64 or not all(c in "0123456789abcdef" for c in text):
        raise ApiError(422, "invalid_request", "If-Match is the record's version, e.g. "
                       '"3f9a0c1d2e4b5a68"')
    return text


def _reference_routes(
    table: reference.Table, path: str, body_model: type[BaseModel], out: type[BaseModel]
) -> None:
    """GET list, GET one, PUT (create or replace), DELETE for one kind of record."""
    noun = table.entity

    async def list_all(_: Admin, pool: Pool) -> list[Any]:
        return [out.model_validate(r) for r in await reference.list_records(pool, table)]

    async def get_one(record_id: RecordId, _: Admin, pool: Pool) -> Any:
        return out.model_validate(
            await _refusing(reference.get_record(pool, table, record_id))
        )

    async def put(
        record_id: RecordId, body: BaseModel, principal: Admin, pool: Pool,
        if_match: IfMatch = None,
    ) -> Any:  # fmt: skip
        record, _ = await _refusing(reference.put_record(
            pool, principal.actor, table, record_id, body, if_version=_if_version(if_match)
        ))  # fmt: skip
        return out.model_validate(record)

    put.__annotations__["body"] = body_model  # the body FastAPI validates: this table's model

    async def delete(
        record_id: RecordId, principal: Admin, pool: Pool, if_match: IfMatch = None
    ) -> Response:
        await _refusing(reference.delete_record(
            pool, principal.actor, table, record_id, if_version=_if_version(if_match)
        ))  # fmt: skip
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    router.add_api_route(path, list_all, methods=["GET"], response_model=list[out],
                         responses=_READ_ERRORS, summary=f"List the {noun} records",
                         name=f"list_{noun}")
    item = f"{path}/{{record_id}}"
    router.add_api_route(item, get_one, methods=["GET"], response_model=out, responses=_ERRORS,
                         summary=f"One {noun}", name=f"get_{noun}")
    router.add_api_route(item, put, methods=["PUT"], response_model=out, responses=_ERRORS,
                         summary=f"Create or replace a {noun} (logged; If-Match: that version)",
                         name=f"put_{noun}")
    router.add_api_route(item, delete, methods=["DELETE"], status_code=204,
                         response_class=Response, responses=_ERRORS,
                         summary=f"Delete a {noun} nothing refers to (logged; If-Match)",
                         name=f"delete_{noun}")


_reference_routes(reference.DEPARTMENTS, "/departments", reference.DepartmentIn, Department)
_reference_routes(reference.AREAS, "/areas", reference.AreaIn, Area)
_reference_routes(reference.CATEGORIES, "/categories", reference.CategoryIn, Category)


class DepartmentService(departments.ServiceChange):
    """A department after its retirement or reinstatement, and what still points at it."""

    department: Department  # typed here: the service answers the record as a dict


def _service(change: departments.ServiceChange) -> DepartmentService:
    return DepartmentService.model_validate(change.model_dump())


@router.post("/departments/{record_id}/retire", response_model=DepartmentService,
             responses=_ERRORS, summary="Retire a department (停用) from a moment (default now)")
async def retire_department(
    record_id: RecordId, body: departments.Retirement, principal: Admin, pool: Pool,
    if_match: IfMatch = None,
) -> DepartmentService:
    """From then on routing passes over its rules, nobody can give it a case or make it a
    co-handler, and no account is opened in it; the cases it holds stay its own. Retiring it
    again at the same moment (a retry) answers it as it is."""
    return _service(await _refusing(departments.retire(
        pool, principal.actor, record_id, body, if_version=_if_version(if_match)
    )))  # fmt: skip


@router.post("/departments/{record_id}/reinstate", response_model=DepartmentService,
             responses=_ERRORS, summary="Put a retired department back in service (恢复启用)")
async def reinstate_department(
    record_id: RecordId, principal: Admin, pool: Pool, if_match: IfMatch = None
) -> DepartmentService:
    return _service(await _refusing(departments.reinstate(
        pool, principal.actor, record_id, if_version=_if_version(if_match)
    )))  # fmt: skip


@router.post("/departments/{record_id}/hand-over", response_model=handover.HandoverSent,
             responses=_ERRORS, summary="移交 Hand a retired department's open cases to the unit "
             "that takes over its work")
async def hand_over_cases(
    record_id: RecordId, body: handover.Handover, principal: Admin, pool: Pool, client: Temporal,
    idempotency_key: IdempotencyKey = None,
) -> handover.HandoverSent:
    """Each case it holds (assigned, handling), oldest first, is told to go to
    ``department_id``: it starts a round there with fresh deadlines, carried out by the case in
    a moment (its 办理经过 says 移交). A replied case waits for its rating and is listed in
    ``left``, with a case where the unit still owes a co-handler's contribution. Retried with
    the same Idempotency-Key, no case is told twice; call again with ``after`` = ``next`` while
    ``remaining`` > 0."""
    return await _refusing(handover.hand_over(pool, client, principal.actor, record_id, body,
                                              key=idempotency_key))  # fmt: skip


# --- the routing catalogue -----------------------------------------------------------------

RuleId = Annotated[int, Path(ge=1, lt=2**31)]


@router.get("/routing-rules", response_model=list[routing.Rule], responses=_READ_ERRORS,
            summary="The routing catalogue (派单目录) in force at a moment, or every version")
async def list_rules(
    _: Admin, pool: Pool,
    as_of: Annotated[Instant | None, Query(description="Default: now")] = None,
    every_version: bool = False,
    category_id: Annotated[str | None, Query(pattern=reference.ID_PATTERN)] = None,
) -> list[routing.Rule]:
    return await routing.list_rules(
        pool, as_of=as_of, every_version=every_version, category_id=category_id
    )


@router.post("/routing-rules", status_code=201, response_model=routing.Rule,
             responses={**_ERRORS, 200: {"model": routing.Rule,
                                         "description": "The same rule exists (a retry)"}},
             summary="Add a routing rule in force from valid_from (default now)")
async def add_rule(
    body: routing.RuleIn, principal: Admin, pool: Pool, response: Response
) -> routing.Rule:
    rule, added = await _refusing(routing.add_rule(pool, principal.actor, body))
    if not added:
        response.status_code = status.HTTP_200_OK
    return rule


@router.get("/routing-rules/{rule_id}/history", response_model=list[changes.Change],
            responses=_READ_ERRORS, summary="A rule's changes, newest first")
async def rule_history(rule_id: RuleId, _: Admin, pool: Pool) -> list[changes.Change]:
    return await changes.list_changes(pool, entity=routing.ENTITY, entity_id=str(rule_id))


@router.post("/routing-rules/{rule_id}/retire", response_model=routing.Rule, responses=_ERRORS,
             summary="Put a rule out of force from a moment (default now)")
async def retire_rule(
    rule_id: RuleId, body: routing.Retirement, principal: Admin, pool: Pool
) -> routing.Rule:
    return await _refusing(routing.retire_rule(pool, principal.actor, rule_id, body))


class Replaced(BaseModel):
    retired: routing.Rule
    successor: routing.Rule


@router.post("/routing-rules/{rule_id}/replace", response_model=Replaced, responses=_ERRORS,
             summary="Retire a rule and put its successor in force from the same moment")
async def replace_rule(
    rule_id: RuleId, body: routing.Replacement, principal: Admin, pool: Pool
) -> Replaced:
    old, new = await _refusing(routing.replace_rule(pool, principal.actor, rule_id, body))
    return Replaced(retired=old, successor=new)


# --- calendar overrides ----------------------------------------------------------------------

Year = Annotated[int, Path(ge=2000, le=2100)]


class CalendarDays(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days: list[calendar.CalendarDay] = Field(max_length=calendar.MAX_DAYS)


@router.get("/calendar/{year}", response_model=list[calendar.CalendarDay],
            responses=_READ_ERRORS,
            summary="A year's calendar overrides (holidays and adjusted working days)")
async def calendar_days(year: Year, _: Admin, pool: Pool) -> list[calendar.CalendarDay]:
    return await calendar.list_days(pool, year)


@router.put("/calendar/{year}", response_model=calendar.CalendarDiff, responses=_ERRORS,
            summary="Load the year's holiday notice: the diff, applied unless dry_run")
async def load_calendar(
    year: Year, body: CalendarDays, principal: Admin, pool: Pool, dry_run: bool = False
) -> calendar.CalendarDiff:
    notice = calendar.Notice(year=year, days=body.days)
    return await _refusing(calendar.load(pool, principal.actor, notice, apply=not dry_run))


# --- policy values ---------------------------------------------------------------------------

PolicyName = Annotated[str, Path(max_length=64)]


class PolicyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: float = Field(allow_inf_nan=False)


@router.get("/policy", response_model=list[policy.PolicyValue], responses=_READ_ERRORS,
            summary="The run-time policy values in force, with their defaults")
async def policy_values(_: Admin, pool: Pool, settings: AppSettings) -> list[policy.PolicyValue]:
    return await policy.list_values(pool, settings)


@router.put("/policy/{name}", response_model=policy.PolicyValue, responses=_ERRORS,
            summary="Set a policy value for deadlines computed from now on")
async def set_policy(
    name: PolicyName, body: PolicyIn, principal: Admin, pool: Pool, settings: AppSettings
) -> policy.PolicyValue:
    return await _refusing(policy.set_value(pool, principal.actor, settings, name, body.value))


@router.delete("/policy/{name}", response_model=policy.PolicyValue, responses=_ERRORS,
               summary="Return a policy value to its default")
async def reset_policy(
    name: PolicyName, principal: Admin, pool: Pool, settings: AppSettings
) -> policy.PolicyValue:
    return await _refusing(policy.set_value(pool, principal.actor, settings, name, None))


# --- notification templates ------------------------------------------------------------------


@router.get("/notification-templates", response_model=list[templates.NotificationTemplate],
            responses=_READ_ERRORS,
            summary="The notification templates that replace built-in texts")
async def list_templates(_: Admin, pool: Pool) -> list[templates.NotificationTemplate]:
    return await templates.list_templates(pool)


@router.put("/notification-templates/{event_kind}/{recipient_kind}",
            response_model=templates.NotificationTemplate, responses=_READ_ERRORS,
            summary="Set the wording of one kind of notice ($case_id, $subject, $body, ...)")
async def put_template(
    event_kind: EventKind, recipient_kind: RecipientKind, body: templates.TemplateIn,
    principal: Admin, pool: Pool,
) -> templates.NotificationTemplate:
    return await templates.put_template(pool, principal.actor, event_kind, recipient_kind, body)


@router.delete("/notification-templates/{event_kind}/{recipient_kind}", status_code=204,
               response_class=Response, responses=_ERRORS,
               summary="Back to the built-in wording")
async def delete_template(
    event_kind: EventKind, recipient_kind: RecipientKind, principal: Admin, pool: Pool
) -> Response:
    await _refusing(templates.delete_template(pool, principal.actor, event_kind, recipient_kind))
    return Response(status_code=status.HTTP_204_NO_CONTENT)



