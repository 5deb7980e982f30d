"""What a citizen receives about a case (诉求人视图): the one projection of a case for the
holder of a report's token — the case's own citizen, or the citizen of a repeat report linked
to it (并单) — on every path that answers one: the answers to the citizen's actions
(``POST /complaints/{id}/rating|supplement|withdraw``, api/routers/citizen.py; the SMS rating
goes through them), and the citizen's page ``/my/<token>`` (api/console/citizen.py).

A case (``CaseState``) carries the government's internals: who of the staff did what (their
logins, request ids), notes among staff (the contact note, a dispatcher's note), returns and
their reasons, extension requests, supervision and accountability, co-handling, refused
actions, routing rules, the policy numbers. A citizen gets :class:`CitizenCase`:

- the steps of the case (:data:`CASE_STEPS`): received, assigned to which department (by
  name), accepted, contacted (without the clerk's note), replied (the reply's text and
  evidence), handled again, an approved extension's new deadline, withdrawn, closed;
- of the citizens' own steps (:data:`OWN_STEPS`) only this reporter's: their own supplement,
  their own repeat report and, when it reached the case after its close, the case it was
  filed again as (并单转立: the new case's own SMS carries its link); the rating (评价, or
  回访 taken by phone) is the case's citizen's,
  so a repeat reporter does not get it — not as "their" rating, not at all;
- who took each step as a role and a department's name (:class:`CitizenActor`): never a
  login, a person, a request id;
- none of the words the events carry from other citizens or from themselves (descriptions,
  supplements, rating comments, the withdrawal's reason), as :data:`content.CITIZEN_VIEW`
  says: the reply's evidence is the only content shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from jiesu.access.content import CITIZEN_VIEW, ContentField
from jiesu.case.domain import (
    CASE_CITIZEN_NAME,
    CENTRE_NAME,
    CENTRE_ROLES,
    Actor,
    CaseEvent,
    CaseState,
    EventKind,
    Rating,
    ReplyOutcome,
    Resolution,
    Role,
    Status,
    repeat_reporter_name,
)

CASE_STEPS = frozenset({
    EventKind.RECEIVED, EventKind.ROUTED, EventKind.DISPATCHED, EventKind.REASSIGNED,
    EventKind.ACCEPTED, EventKind.CONTACTED, EventKind.REPLIED, EventKind.ANSWERED_DIRECTLY,
    EventKind.SOLVED_ON_THE_SPOT, EventKind.REHANDLE_STARTED, EventKind.EXTENSION_DECIDED,
    EventKind.WITHDRAWN, EventKind.CLOSED,
})  # fmt: skip
"""The steps of the case every reporter of it sees (an extension only once approved)."""

OWN_STEPS = frozenset({
    EventKind.SUPPLEMENTED, EventKind.REPEAT_REPORTED, EventKind.REPEAT_REFILED,
    EventKind.RATED, EventKind.CALLBACK,
})  # fmt: skip
"""A citizen's own steps: shown only to the reporter whose they are (:meth:`Reporter.made`)."""

CITIZEN_EVENTS = CASE_STEPS | OWN_STEPS
"""Every kind a citizen's timeline can show; the rest are the centre's internals (rule
numbers, refusals, returns, extension requests, ladder steps, co-handling, 问责)."""

_ASSIGNING = (EventKind.ROUTED, EventKind.DISPATCHED, EventKind.REASSIGNED)
_REPLYING = (EventKind.REPLIED, EventKind.ANSWERED_DIRECTLY, EventKind.SOLVED_ON_THE_SPOT)
_RATING = (EventKind.RATED, EventKind.CALLBACK)


@dataclass(frozen=True)
class Reporter:
    """Who holds the token: the case's own citizen (``report_id`` None) or the citizen of the
    repeat report ``report_id`` (并单)."""

    report_id: int | None = None

    @property
    def own(self) -> bool:
        """The case's own citizen: the one who rates and withdraws."""
        return self.report_id is None

    @property
    def actor(self) -> Actor:
        """Who this reporter's actions are recorded as."""
        if self.report_id is None:
            return Actor(role=Role.CITIZEN, name=CASE_CITIZEN_NAME)
        return Actor(role=Role.CITIZEN, name=repeat_reporter_name(self.report_id))

    def made(self, event: CaseEvent) -> bool:
        """Whether ``event`` is this reporter's own step: their supplement, their repeat
        report; the rating, a callback's verdict and the withdrawal are the case's citizen's."""
        if event.kind is EventKind.SUPPLEMENTED:
            return event.actor.role is Role.CITIZEN and event.actor.name == self.actor.name
        if event.kind in (EventKind.REPEAT_REPORTED, EventKind.REPEAT_REFILED):
            report_id = event.data.get("report_id")
            return self.report_id is not None and str(report_id) == str(self.report_id)
        if event.kind in (*_RATING, EventKind.WITHDRAWN):
            return self.own
        return False


CASE_CITIZEN = Reporter()
"""The case's own citizen (the intake's token; the phone answering the SMS rating prompt)."""


class CitizenActor(BaseModel):
    """Who took a step, as a citizen is told: a role and, for staff, the department's name
    (12345热线中心 for the centre's staff). Never a staff member's login or a request id."""

    role: Role
    department_name: str | None = Field(
        default=None, description="The department's name (staff); None for citizens, system"
    )


class CitizenEvent(BaseModel):
    """One step of the case in a citizen's timeline. Only the fields of its kind are set."""

    seq: int
    kind: EventKind
    at: datetime
    by: CitizenActor
    yours: bool = Field(
        description="This reporter's own step (their supplement, their repeat report; the "
        "case's citizen's rating and withdrawal)"
    )
    department_name: str | None = Field(
        default=None, description="routed, dispatched, reassigned: the department it went to"
    )
    outcome: ReplyOutcome | None = Field(default=None, description="replied: the outcome")
    text: str | None = Field(
        default=None, description="replied, answered_directly, solved_on_the_spot: the reply"
    )
    evidence: list[str] = Field(default_factory=list, description="The reply's evidence links")
    rating: Rating | None = Field(default=None, description="rated, callback: your rating")
    resolution: Resolution | None = Field(default=None, description="closed: how it ended")
    new_deadline: datetime | None = Field(
        default=None, description="extension_decided (approved): the new finish deadline"
    )
    refiled_as: str | None = Field(
        default=None,
        description="repeat_refiled: the case your report was filed again as, having reached "
        "this one after its close (None: it could not be filed; call the hotline)",
    )
    merged: bool | None = Field(
        default=None,
        description="repeat_refiled: merged into another open case of the same problem "
        "(else a new case)",
    )


class CitizenReply(BaseModel):
    """The reply (办结答复) as the citizen reads it."""

    outcome: ReplyOutcome
    text: str
    evidence: list[str]
    at: datetime
    by: CitizenActor


class CitizenDeadlines(BaseModel):
    contact: datetime | None = Field(description="Urgent cases: contact by then")
    finish: datetime = Field(description="Replied by then (an approved extension moves it)")


class CitizenCase(BaseModel):
    """A case as a citizen holding one of its reports' tokens receives it
    (jiesu.access.citizen_view): its status, deadlines, the department handling it, the reply,
    their own rating and the steps of the case — no staff, no internals, no other citizen's
    steps or words."""

    case_id: str
    reporter: Literal["citizen", "repeat_report"] = Field(
        description="Whose token: the case's own citizen, or a repeat report's (并单)"
    )
    status: Status
    title: str
    received_at: datetime
    department_name: str | None = Field(description="The department handling the case now")
    deadlines: CitizenDeadlines | None
    accepted_at: datetime | None
    contacted_at: datetime | None
    reply: CitizenReply | None
    rating: Rating | None = Field(
        description="Your rating: the case's own citizen only (None for a repeat report's)"
    )
    resolution: Resolution | None
    closed_at: datetime | None
    events: list[CitizenEvent]


def citizen_case(state: CaseState, reporter: Reporter) -> CitizenCase:
    """The case as ``reporter`` receives it (see the module)."""
    names = _department_names(state)
    evidence_shown = ContentField.EVIDENCE in CITIZEN_VIEW
    reply = state.reply
    return CitizenCase(
        case_id=state.case_id,
        reporter="citizen" if reporter.own else "repeat_report",
        status=state.status,
        title=state.title,
        received_at=state.received_at,
        department_name=state.assignment.department_name if state.assignment else None,
        deadlines=None if state.deadlines is None else CitizenDeadlines(
            contact=state.deadlines.contact, finish=state.deadlines.finish
        ),
        accepted_at=state.accepted_at,
        contacted_at=state.contacted_at,
        reply=None if reply is None else CitizenReply(
            outcome=reply.outcome, text=reply.text,
            evidence=list(reply.evidence) if evidence_shown else [], at=reply.at,
            by=_by(reply.by, names),
        ),
        rating=state.rating if reporter.own else None,
        resolution=state.resolution,
        closed_at=state.closed_at,
        events=[
            _event(e, reporter, names, evidence_shown) for e in state.events
            if _shown(e, reporter)
        ],
    )  # fmt: skip


def _shown(event: CaseEvent, reporter: Reporter) -> bool:
    if event.kind in OWN_STEPS:
        return reporter.made(event)
    if event.kind is EventKind.EXTENSION_DECIDED:
        return bool(event.data.get("approved"))  # a refused one: the department's request
    return event.kind in CASE_STEPS


def _event(
    event: CaseEvent, reporter: Reporter, names: dict[str, str], evidence_shown: bool
) -> CitizenEvent:
    data, kind = event.data, event.kind
    fields: dict[str, Any] = {}
    if kind in _ASSIGNING:
        fields["department_name"] = data.get("department_name")
    elif kind in _REPLYING:
        fields["text"] = data.get("text")
        if kind is EventKind.REPLIED:
            fields["outcome"] = data.get("outcome")
        if evidence_shown:
            fields["evidence"] = [str(url) for url in data.get("evidence") or []]
    elif kind in _RATING:
        fields["rating"] = data.get("rating")
    elif kind is EventKind.CLOSED:
        fields["resolution"] = data.get("resolution")
    elif kind is EventKind.EXTENSION_DECIDED:
        fields["new_deadline"] = data.get("new_deadline")
    elif kind is EventKind.REPEAT_REFILED:  # never the reason: it may name internals
        fields["refiled_as"] = data.get("refiled_as") or None
        fields["merged"] = bool(data.get("merged"))
    return CitizenEvent(
        seq=event.seq, kind=kind, at=event.at, by=_by(event.actor, names),
        yours=reporter.made(event), **fields,
    )  # fmt: skip


def _by(actor: Actor, names: dict[str, str]) -> CitizenActor:
    """A role and a department's name: what a citizen learns of who acted."""
    if actor.role in (Role.CITIZEN, Role.SYSTEM):
        return CitizenActor(role=actor.role)
    if actor.department_id is not None:
        return CitizenActor(role=actor.role, department_name=names.get(actor.department_id))
    centre = actor.role in CENTRE_ROLES
    return CitizenActor(role=actor.role, department_name=CENTRE_NAME if centre else None)


def _department_names(state: CaseState) -> dict[str, str]:
    """The names of the departments the case has been with (its assignments, co-handlers)."""
    names: dict[str, str] = {}
    for e in state.events:
        if e.kind in _ASSIGNING and e.data.get("department_id") and e.data.get("department_name"):
            names[str(e.data["department_id"])] = str(e.data["department_name"])
    for co in state.co_handlers:
        names[co.department_id] = co.department_name
    if state.assignment is not None:
        names[state.assignment.department_id] = state.assignment.department_name
    return names
