"""Issue 14's rules, pure: the supervision order's fields per form, when a case may be taken
away (二次交办), return decisions and the extension cap (jiesu/case/lifecycle.py), and the
auditor's timeline words for the new paths (jiesu/audit/timeline.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from helpers import HISTORIES
from pydantic import ValidationError
from temporalio.client import WorkflowHistory

from jiesu.audit.timeline import decode_history
from jiesu.case import lifecycle
from jiesu.case.domain import (
    Actor,
    CaseEvent,
    CaseState,
    Channel,
    DeadlineKind,
    Deadlines,
    DispatchAction,
    EventKind,
    ExtensionAction,
    PendingReassignment,
    Rating,
    ReassignChoice,
    ReassignReason,
    ReturnDecisionInput,
    Role,
    SecondAssignmentAction,
    Status,
    SupervisionAction,
    SupervisionInput,
    Urgency,
)

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SUPERVISOR = Actor(role=Role.SUPERVISOR, name="centre")
DEPARTMENT = Actor(role=Role.DEPARTMENT, name="desk", department_id="urban-management")


def _case(status: Status = Status.ASSIGNED, **deadlines: Any) -> CaseState:
    return CaseState(
        case_id="JS1", status=status, title="t", category_id="c", grid_id="g", address="",
        channel=Channel.HOTLINE, urgency=Urgency.GENERAL, received_at=NOW,
        assignment={"department_id": "urban-management", "department_name": "U",  # type: ignore[arg-type]
                    "assigned_at": NOW, "by_rule": True},
        deadlines=Deadlines(accept=NOW + timedelta(hours=2), finish=NOW + timedelta(days=2),
                            rating_window_hours=72, **deadlines),
    )  # fmt: skip


@pytest.mark.parametrize(
    "body",
    [
        {"form": "joint_handling"},  # 会办 without departments
        {"form": "urge", "department_ids": ["police"]},  # departments without 会办
        {"form": "urge", "contribution_due": "2026-03-03T09:00:00+00:00"},
        {"form": "accountability", "note": "ignored", "decision": "criticism"},  # no persons
        {"form": "accountability", "note": "ignored", "persons": ["Li"]},  # no decision
        {"form": "accountability", "persons": ["Li"], "decision": "criticism"},  # no reason
        {"form": "remind", "persons": ["Li"]},
    ],
)
def test_a_form_needs_its_own_fields_and_no_others(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        SupervisionInput.model_validate(body)


def test_an_old_supervision_message_still_decodes_as_a_reminder() -> None:
    """Histories recorded before the forms carry {note, actor} only."""
    old = SupervisionAction.model_validate({"note": "hurry", "actor": SUPERVISOR.model_dump()})
    assert old.form.level == 1 and old.due is None


def test_a_supervision_deadline_must_be_ahead() -> None:
    order = SupervisionAction(actor=SUPERVISOR, form="urge", due=NOW - timedelta(minutes=1))
    refusal = lifecycle.check_supervision(_case(), order, NOW)
    assert refusal is not None and refusal.code == "invalid_due"
    ahead = order.model_copy(update={"due": NOW + timedelta(hours=1)})
    assert lifecycle.check_supervision(_case(), ahead, NOW) is None


def test_a_case_is_taken_away_only_when_overdue_or_on_review() -> None:
    order = SecondAssignmentAction(actor=SUPERVISOR, reason="too slow")
    on_time = lifecycle.check_second_assignment(_case(), order, NOW)
    assert on_time is not None and on_time.code == "not_overdue"
    late = NOW + timedelta(hours=3)  # the 2-hour accept deadline passed, not accepted
    assert lifecycle.overdue_steps(_case(), late) == [DeadlineKind.ACCEPT]
    assert lifecycle.check_second_assignment(_case(), order, late) is None
    replied = _case(Status.REPLIED)
    assert lifecycle.check_second_assignment(replied, order, NOW) is None
    rated = replied.model_copy(update={"rating": Rating.UNSATISFIED})
    assert lifecycle.check_second_assignment(rated, order, NOW) is not None
    by_department = order.model_copy(update={"actor": DEPARTMENT})
    refusal = lifecycle.check_second_assignment(_case(), by_department, late)
    assert refusal is not None and refusal.forbidden


def test_rejecting_a_return_needs_the_reason() -> None:
    with pytest.raises(ValidationError):
        ReturnDecisionInput(upheld=False)
    assert ReturnDecisionInput(upheld=True).note == ""


def test_the_extension_cap_counts_approved_extensions() -> None:
    ask = ExtensionAction(actor=DEPARTMENT, reasons="rain", measures="pumps",
                          promised_finish=NOW + timedelta(days=3))  # fmt: skip
    capped = _case(Status.HANDLING, max_extensions=1).model_copy(update={"extension_count": 1})
    refusal = lifecycle.check_extension(capped, ask, NOW)
    assert refusal is not None and refusal.code == "extension_cap"
    before_the_cap = _case(Status.HANDLING).model_copy(update={"extension_count": 5})
    assert lifecycle.check_extension(before_the_cap, ask, NOW) is None  # recorded: no cap


@pytest.mark.parametrize(
    ("history", "words"),
    [
        ("second_assignment_overdue", "taken from water and assigned again (二次交办) to ecology"),
        ("return_approval", "return by urban-management rejected, the case stays"),
        ("supervision_accountability_form", "accountability (问责) for urban-management: "
                                            "persons 李明, 赵强"),
        ("extension_decision_overdue", "no extension decision by"),
        ("co_handler_contribution_overdue", "co-handler market missed its contribution deadline"),
    ],
)
def test_the_timeline_tells_the_new_paths_in_words(history: str, words: str) -> None:
    recorded = WorkflowHistory.from_json(
        history, (HISTORIES / f"{history}.json").read_text(encoding="utf-8")
    )
    assert any(words in entry.summary for entry in decode_history(recorded).entries)


@pytest.mark.parametrize(
    ("reason", "named", "refusal"),
    [
        (ReassignReason.RETURN, None, None),
        (ReassignReason.REHANDLE, None, None),
        (ReassignReason.SECOND_ASSIGNMENT, None, None),  # 二次交办 naming none: the window
        (ReassignReason.SECOND_ASSIGNMENT, "police", "reassignment_not_chosen"),
        (ReassignReason.RAISE_LEVEL, None, "reassignment_not_chosen"),
    ],
)
def test_a_reassignment_choice_only_where_the_reassignment_takes_one(
    reason: ReassignReason, named: str | None, refusal: str | None
) -> None:
    """改派's choice went to a 提级办's or a named 二次交办's child too, which keeps the signal
    and ignores it: the dispatcher was answered 409 after a 5 s wait, or 202 and the choice
    lost. Now it is refused at once where the reassignment takes no choice."""
    case = _case(Status.REASSIGNING)
    case.reassignment = PendingReassignment(n=1, reason=reason, child_id="JS1-reassign-1",
                                            started_at=NOW)  # fmt: skip
    if reason is ReassignReason.SECOND_ASSIGNMENT:
        case.events = [CaseEvent(seq=1, kind=EventKind.SECOND_ASSIGNMENT_ORDERED, at=NOW,
                                 actor=SUPERVISOR, data={"to_department_id": named})]  # fmt: skip
    choice = ReassignChoice(actor=SUPERVISOR, department_id="market")
    found = lifecycle.check_reassign_choice(case, choice)
    assert (found.code if found else None) == refusal


def _event(kind: EventKind, unit: str, **data: Any) -> tuple[EventKind, dict[str, Any]]:
    return kind, {"department_id": unit, **data}


_HELD_BY_U = _event(EventKind.ROUTED, "urban-management")
_QUEUED = _event(EventKind.REASSIGNED, "centre")


@pytest.mark.parametrize(
    ("story", "unit", "refusal"),
    [
        # returned (no approval needed), the choice refused or never made: the queue decides
        ([_HELD_BY_U, _event(EventKind.RETURNED, "urban-management"), _QUEUED],
         "urban-management", "returned_by_this_unit"),
        ([_HELD_BY_U, _event(EventKind.RETURNED, "urban-management"), _QUEUED], "police", None),
        # upheld by the centre, then the bound: straight to the queue
        ([_HELD_BY_U, _event(EventKind.RETURNED, "urban-management", awaiting_approval=True),
          _event(EventKind.RETURN_UPHELD, "urban-management"),
          _event(EventKind.QUEUED, "centre")], "urban-management", "returned_by_this_unit"),
        # a return the centre rejected is not a return taken
        ([_HELD_BY_U, _event(EventKind.RETURNED, "urban-management", awaiting_approval=True),
          _event(EventKind.RETURN_REJECTED, "urban-management"), _QUEUED],
         "urban-management", None),
        # another unit held the case since the return: the queue may send it back
        ([_HELD_BY_U, _event(EventKind.RETURNED, "urban-management"),
          _event(EventKind.REASSIGNED, "police"), _QUEUED], "urban-management", None),
        ([_event(EventKind.QUEUED, "centre")], "urban-management", None),  # never routed
    ],
)  # fmt: skip
def test_the_queue_does_not_dispatch_to_the_unit_whose_return_sent_it_there(
    story: list[tuple[EventKind, dict[str, Any]]], unit: str, refusal: str | None
) -> None:
    """lifecycle.returned_into_the_queue (lean-case-v37): the 派单 of the centre's queue is
    refused for the unit whose upheld 退单 sent the case there while no unit has held it since;
    before, the queue took it without a word (tests/test_v33_attacks.py)."""
    case = _case(Status.DISPATCHING)
    case.events = [CaseEvent(seq=n, kind=kind, at=NOW, actor=SUPERVISOR, data=data)
                   for n, (kind, data) in enumerate(story, 1)]  # fmt: skip
    found = lifecycle.check_dispatch(case, DispatchAction(actor=SUPERVISOR, department_id=unit,
                                                          department_name="U"))  # fmt: skip
    assert (found.code if found else None) == refusal
    if found is not None:
        assert found.since == lifecycle.QUEUE_NOT_TO_RETURNER  # a case from before takes it
