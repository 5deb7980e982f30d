"""One way to declare an action endpoint: ``POST /complaints/{case_id}/<action>``.

Every action endpoint does the same thing: authenticate the caller, find the case they may
see, build the action from the body (the actor comes from the credential), check it, signal
it and wait for the workflow. Only the names differ, so each endpoint is one
:class:`ActionSpec` in its router's table, and :func:`add_actions` builds one OpenAPI
operation per spec. Who may call is the spec's :class:`Caller`: staff with an API key of a
role group (:class:`StaffCaller`), or the citizen with the case's token (api/routers/citizen.py).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol

import asyncpg
from fastapi import APIRouter, Header, Response
from pydantic import BaseModel
from temporalio.client import Client

from api import cases
from api.deps import AppServices, CaseId, Principal, Services
from api.errors import ACTION_ERRORS
from api.refusals import refusal_codes
from api.schemas import ActionResult, CitizenActionResult, answer
from jiesu.case.domain import CaseState
from jiesu.case.lifecycle import Refusal
from jiesu.config import Settings
from jiesu.readmodel.changes import ProjectionFeed

Prepare = Callable[[asyncpg.Pool, dict[str, Any]], Awaitable[dict[str, Any]]]
Check = Callable[[CaseState, Any], Refusal | None]
Answer = ActionResult | CitizenActionResult
"""What an action answers: the case after it, as the caller may receive it (a citizen gets
jiesu.access.citizen_view's projection, :class:`CitizenActionResult`)."""

IdempotencyKey = Annotated[
    str | None,
    Header(
        min_length=1,
        max_length=200,
        description="Send the same key when retrying (after a timeout, a 5xx or a 202): the "
        "action is applied at most once and the retry gets the original answer (200 with the "
        "case, or the same 409). A key belongs to the caller, the case and the action.",
    ),
]


NOT_YET = (
    "Accepted, not applied yet (applied: false): the case's workflow has not processed the "
    "action within the wait (its worker is busy or down). It will, or will refuse it; read "
    "the case, or retry with the same Idempotency-Key to get the outcome"
)
"""The 202 an action answers (api.schemas.answer) when the workflow has not applied it in time."""


@dataclass(frozen=True)
class Call:
    """One request to an action endpoint, as FastAPI resolved it."""

    case_id: str
    name: str  # the action's name in its request id: the path below the case, filled in
    fields: dict[str, Any]  # the body's and the path's fields (after ``prepare``)
    credential: Any  # what the caller's dependency gave: a Principal, an AuthAttempt...
    pool: asyncpg.Pool
    client: Client
    settings: Settings
    idempotency_key: str | None
    feed: ProjectionFeed | None = None  # how the answer learns the outcome (api/cases.py act)
    # when the request came in: the action's time (Actor.sent_at, lean-case-v12), taken before
    # the reads that may wait for a silent workflow (the query's timeout) — not after them
    arrived: datetime = field(default_factory=lambda: datetime.now(UTC))


class Caller(Protocol):
    """Who may call an action endpoint and how the action is performed on their behalf."""

    @property
    def dependency(self) -> Any:
        """The FastAPI dependency (an ``Annotated`` type) that authenticates the caller."""
        ...

    async def perform(self, spec: ActionSpec, call: Call) -> Answer: ...


@dataclass(frozen=True)
class StaffCaller:
    """An API-key holder admitted by ``dependency`` (one of api.deps' role-group callers)."""

    dependency: Any

    async def perform(self, spec: ActionSpec, call: Call) -> ActionResult:
        principal: Principal = call.credential
        return await cases.perform(
            call.client, call.pool, call.case_id, principal, spec.signal,
            lambda state: spec.action(
                actor=principal.actor_on(state, co_handling=spec.co_handling), **call.fields
            ),
            spec.check,
            spec.target, action_name=call.name, idempotency_key=call.idempotency_key,
            rpc_seconds=call.settings.query_timeout_seconds, feed=call.feed,
            sent_at=call.arrived,
        )  # fmt: skip


@dataclass(frozen=True)
class ActionSpec:
    """``POST {path}``: the ``body`` fields and the ``path_fields`` (turned by
    ``prepare(pool, fields)`` into the action's fields where reference data is needed) and the
    caller's actor make the ``action`` signalled to the case (or to ``target(state)``, one of
    its children)."""

    path: str
    summary: str
    caller: Caller
    signal: Callable[..., Any]
    action: type[BaseModel]
    check: Check
    body: type[BaseModel] | None = None
    optional_body: bool = False  # no body at all means the body's defaults
    prepare: Prepare | None = None
    target: Callable[[CaseState], str] | None = None
    path_fields: Mapping[str, Any] = field(default_factory=dict)  # name → annotated type
    name: str = ""  # the endpoint's (operation's) name; derived from the path by default
    # what the endpoint answers (its OpenAPI response): the caller's view of the case after it
    result: type[BaseModel] = ActionResult
    # a co-handler's action (协办意见): a grid worker acts for their co-handling unit, not the
    # lead unit (jiesu.access.grids.GridScope.unit_for)
    co_handling: bool = False

    @property
    def endpoint_name(self) -> str:
        if self.name:
            return self.name
        words = self.path.strip("/").replace("{", "").replace("}", "")
        return words.replace("/", "_").replace("-", "_")


def _signature(spec: ActionSpec) -> inspect.Signature:
    """The endpoint's parameters as FastAPI reads them (one body model per spec)."""

    def param(name: str, annotation: Any, default: Any = inspect.Parameter.empty) -> Any:
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                 annotation=annotation)  # fmt: skip

    params = [param("case_id", CaseId)]
    params += [param(name, annotation) for name, annotation in spec.path_fields.items()]
    if spec.body is not None:
        optional = spec.optional_body
        params.append(param("data", spec.body | None if optional else spec.body,
                            None if optional else inspect.Parameter.empty))  # fmt: skip
    params += [
        param("credential", spec.caller.dependency),
        param("services", AppServices),
        param("response", Response),
        param("idempotency_key", IdempotencyKey, None),
    ]
    return inspect.Signature(params, return_annotation=spec.result)


def _fields(spec: ActionSpec, values: dict[str, Any]) -> dict[str, Any]:
    data = values.get("data")
    if data is None and spec.body is not None:
        data = spec.body()  # an optional body left out: its defaults
    fields = data.model_dump() if data is not None else {}
    return {**fields, **{name: values[name] for name in spec.path_fields}}


async def run(
    spec: ActionSpec,
    *,
    case_id: str,
    fields: dict[str, Any],
    path_values: Mapping[str, Any],
    credential: Any,
    pool: asyncpg.Pool,
    client: Client,
    settings: Settings,
    idempotency_key: str | None,
    feed: ProjectionFeed | None = None,
) -> Answer:
    """Perform one action of ``spec`` for ``credential``: what every action endpoint does,
    and what the console does for its forms (the same services, never around them)."""
    arrived = datetime.now(UTC)  # before prepare's reads, the case's reads and the query
    if spec.prepare is not None:
        fields = await spec.prepare(pool, fields)
    call = Call(
        case_id=case_id,
        name=spec.path.strip("/").format(**path_values),
        fields=fields,
        credential=credential,
        pool=pool,
        client=client,
        settings=settings,
        idempotency_key=idempotency_key,
        feed=feed,
        arrived=arrived,
    )
    return await spec.caller.perform(spec, call)


def _endpoint(spec: ActionSpec) -> Callable[..., Awaitable[Answer]]:
    async def endpoint(**values: Any) -> Answer:
        services: Services = values["services"]
        result = await run(
            spec,
            case_id=values["case_id"],
            fields=_fields(spec, values),
            path_values={n: values[n] for n in spec.path_fields},
            credential=values["credential"],
            pool=services.pool,
            client=services.client,
            settings=services.settings,
            idempotency_key=values["idempotency_key"],
            feed=services.feed,
        )
        if isinstance(result, ActionResult):  # staff: masked, and a view of what it shows
            result = await cases.shown_to(services.pool, values["credential"], result)
        return answer(values["response"], result)

    endpoint.__signature__ = _signature(spec)  # what FastAPI reads instead of **values
    endpoint.__name__ = endpoint.__qualname__ = spec.endpoint_name
    endpoint.__doc__ = spec.summary
    return endpoint


# Answers of any action, whatever its check: the case closed or changed under it (api.cases
# _ended_answer), a keyed retry of a case passed on (case_moved_on), a refusal the workflow
# recorded without a code (rejected).
_ANY_ACTION_CONFLICTS = ("case_changed", "case_closed", "case_moved_on", "rejected")


def responses(spec: ActionSpec) -> dict[int | str, dict[str, Any]]:
    """What ``spec``'s operation documents: the action errors, the 202 of an action not yet
    applied, and the 409 and 403 naming the codes its check (and its caller) refuse with."""
    codes = refusal_codes(spec.check)
    conflict = ", ".join(sorted({*codes.conflict, *_ANY_ACTION_CONFLICTS}))
    answers: dict[int | str, dict[str, Any]] = {
        **ACTION_ERRORS,
        202: {"model": spec.result, "description": NOT_YET},
        409: {**ACTION_ERRORS[409], "description": "The case cannot take this action now: "
              f"error.code is one of {conflict}"},
    }  # fmt: skip
    forbidden = {*codes.forbidden, *getattr(spec.caller, "forbidden_codes", ())}
    if isinstance(spec.caller, StaffCaller):  # api.deps: the role group, a session's request
        forbidden |= {"forbidden", "csrf_failed", "cross_site"}
    else:  # the citizen's token is in the body: a wrong one is the 404 of no such case
        del answers[401]
        answers[404] = {**ACTION_ERRORS[404], "description": "No such case, or the token is "
                        "not one of its reports' (case_not_found)"}  # fmt: skip
    if forbidden:
        answers[403] = {
            **ACTION_ERRORS[403],
            "description": "You may not do this: error.code is one of "
            + ", ".join(sorted(forbidden)),
        }
    else:
        del answers[403]
    return answers


def add_actions(router: APIRouter, specs: Iterable[ActionSpec]) -> None:
    """Declare one ``POST`` operation per spec on ``router``."""
    for spec in specs:
        router.post(spec.path, response_model=spec.result, responses=responses(spec),
                    summary=spec.summary)(_endpoint(spec))  # fmt: skip
