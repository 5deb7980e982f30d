"""One way to declare an action endpoint: ``POST /complaints/{case_id}/<action>``.

Every action endpoint does the same thing: authenticate the caller, find the case they may
see, build the action from the body (the actor comes from the API key), check it, signal it
and wait for the workflow. Only the names differ, so they are declared, not written out.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the endpoint's annotations,
# which name the body model and the caller's dependency given to the factory.

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Response

from api import cases
from api.deps import AppSettings, CaseId, Pool, Principal, Temporal
from api.errors import ACTION_ERRORS
from api.schemas import ActionResult, answer
from jiesu.case.domain import CaseState
from jiesu.case.lifecycle import Refusal

Prepare = Callable[[Any, dict[str, Any]], Awaitable[dict[str, Any]]]

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


def add_action(
    router: APIRouter,
    path: str,
    *,
    summary: str,
    caller: Any,
    signal: Callable[..., Any],
    action: type,
    check: Callable[[CaseState, Any], Refusal | None],
    body: type | None = None,
    optional_body: bool = False,
    prepare: Prepare | None = None,
    target: Callable[[CaseState], str] | None = None,
) -> None:
    """Declare ``POST {path}``: the ``body`` fields (turned by ``prepare(pool, fields)`` into
    the action's fields where reference data is needed) and the caller's actor make the
    ``action`` signalled to the case (or to ``target(state)``, one of its children)."""

    name = path.strip("/")

    async def run(
        case_id: str, principal: Principal, pool: Any, client: Any, settings: Any,
        response: Response, key: str | None, fields: dict[str, Any],
    ) -> ActionResult:
        if prepare is not None:
            fields = await prepare(pool, fields)
        result = await cases.perform(
            client, pool, case_id, principal, signal,
            lambda _: action(actor=principal.actor, **fields), check, target,
            action_name=name, idempotency_key=key, rpc_seconds=settings.query_timeout_seconds,
        )
        return answer(response, result)

    if body is None:

        async def endpoint(
            case_id: CaseId, principal: caller, pool: Pool, client: Temporal,
            settings: AppSettings, response: Response, idempotency_key: IdempotencyKey = None,
        ) -> ActionResult:
            return await run(
                case_id, principal, pool, client, settings, response, idempotency_key, {}
            )

    elif optional_body:

        async def endpoint(  # type: ignore[misc]
            case_id: CaseId, principal: caller, pool: Pool, client: Temporal,
            settings: AppSettings, response: Response,
            data: body | None = None,  # type: ignore[valid-type]
            idempotency_key: IdempotencyKey = None,
        ) -> ActionResult:
            fields = (data or body()).model_dump()
            return await run(
                case_id, principal, pool, client, settings, response, idempotency_key, fields
            )

    else:

        async def endpoint(  # type: ignore[misc]
            case_id: CaseId, data: body, principal: caller, pool: Pool,  # type: ignore[valid-type]
            client: Temporal, settings: AppSettings, response: Response,
            idempotency_key: IdempotencyKey = None,
        ) -> ActionResult:
            fields = data.model_dump()
            return await run(
                case_id, principal, pool, client, settings, response, idempotency_key, fields
            )

    endpoint.__name__ = path.strip("/").replace("/", "_").replace("-", "_").replace("{", "")
    endpoint.__name__ = endpoint.__name__.replace("}", "")
    endpoint.__doc__ = summary
    router.post(path, response_model=ActionResult, responses=ACTION_ERRORS, summary=summary)(
        endpoint
    )
