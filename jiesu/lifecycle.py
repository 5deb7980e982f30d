"""Lifecycle rules: may this actor take this action on this case now?

Each check returns ``None`` when the action is allowed, or a :class:`Refusal` saying why not.
The API runs the same checks before signalling (to answer 403/409 at once) and the workflow
runs them again when the signal arrives (it is the final judge, and records a refusal).
"""

from __future__ import annotations

from dataclasses import dataclass

from jiesu.domain import (
    AcceptAction,
    Actor,
    CaseState,
    ContactAction,
    DispatchAction,
    RatingAction,
    ReplyAction,
    ReplyOutcome,
    Role,
    Status,
)

DISPATCHER_ROLES = frozenset({Role.SUPERVISOR, Role.ADMIN})


@dataclass(frozen=True)
class Refusal:
    code: str  # machine-readable: wrong_status, not_assigned, forbidden, invalid
    reason: str
    forbidden: bool = False  # True → the actor may never do this (403), else 409


def _status_is(state: CaseState, *allowed: Status) -> Refusal | None:
    if state.status in allowed:
        return None
    wanted = " or ".join(s.value for s in allowed)
    return Refusal("wrong_status", f"case {state.case_id} is {state.status.value}, not {wanted}")


def _is_assigned_department(state: CaseState, actor: Actor) -> Refusal | None:
    if actor.role is Role.ADMIN:
        return None
    if actor.role is not Role.DEPARTMENT:
        return Refusal("forbidden", f"role {actor.role.value} cannot act for a department", True)
    if actor.department_id != state.department_id:
        return Refusal(
            "not_assigned",
            f"case {state.case_id} is assigned to {state.department_id}, "
            f"not {actor.department_id}",
            True,
        )
    return None


def check_accept(state: CaseState, action: AcceptAction) -> Refusal | None:
    return _is_assigned_department(state, action.actor) or _status_is(state, Status.ASSIGNED)


def check_contact(state: CaseState, action: ContactAction) -> Refusal | None:
    refusal = _is_assigned_department(state, action.actor) or _status_is(state, Status.HANDLING)
    if refusal is None and state.contacted_at is not None:
        return Refusal("already_done", f"the citizen of {state.case_id} was already contacted")
    return refusal


def check_reply(state: CaseState, action: ReplyAction) -> Refusal | None:
    refusal = _is_assigned_department(state, action.actor) or _status_is(state, Status.HANDLING)
    if refusal:
        return refusal
    if state.contacted_at is None:
        return Refusal("not_contacted", "contact the citizen before replying")
    if action.outcome is ReplyOutcome.EXPLAINED and not action.evidence:
        # Jinxiang rule: an unreasonable claim is answered with explanation plus evidence.
        return Refusal("evidence_required", "an 'explained' reply needs at least one evidence link")
    return None


def check_dispatch(state: CaseState, action: DispatchAction) -> Refusal | None:
    if action.actor.role not in DISPATCHER_ROLES:
        return Refusal("forbidden", "only the hotline centre's dispatchers can dispatch", True)
    return _status_is(state, Status.DISPATCHING)


def check_rating(state: CaseState, action: RatingAction) -> Refusal | None:
    if action.actor.role not in {Role.CITIZEN, Role.ADMIN}:
        return Refusal("forbidden", "only the citizen rates a case", True)
    return _status_is(state, Status.REPLIED)
