"""Lifecycle rules: may this actor take this action on this case now?

Each check returns ``None`` when the action is allowed, or a :class:`Refusal` saying why not.
The API runs the same checks before signalling (to answer 403/409 at once) and the workflow
runs them again when the signal arrives (it is the final judge, and records a refusal).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from jiesu.case.domain import (
    CASE_CITIZEN_NAME,
    CENTRE_ID,
    CENTRE_ROLES,
    DISPATCHER_ROLES,
    HANDLER_ROLES,
    AcceptAction,
    Actor,
    CallbackAction,
    CaseSignal,
    CaseState,
    CoHandler,
    CoHandlersAction,
    ContactAction,
    ContributionAction,
    DeadlineKind,
    Deadlines,
    DepartmentRef,
    DispatchAction,
    Escalation,
    EscalationLevel,
    EscalationStep,
    EscalationTrigger,
    EventKind,
    ExtensionAction,
    ExtensionDecisionAction,
    HandoverAction,
    RaiseLevelAction,
    RatingAction,
    ReassignChoice,
    ReassignReason,
    RepeatReport,
    ReplyAction,
    ReplyOutcome,
    ReturnAction,
    ReturnDecisionAction,
    Role,
    SecondAssignmentAction,
    Status,
    SupervisionAction,
    SupervisionForm,
    SupplementAction,
    WaiveAction,
    WithdrawAction,
    visible_length,
)

WITH_DEPARTMENT = (Status.ASSIGNED, Status.HANDLING)
BEFORE_REPLY = (Status.REGISTERED, Status.DISPATCHING, Status.REASSIGNING, *WITH_DEPARTMENT)


@dataclass(frozen=True)
class Refusal:
    code: str  # machine-readable: wrong_status, not_assigned, forbidden, invalid
    reason: str
    forbidden: bool = False  # True → the actor may never do this (403), else 409
    # A rule added while cases were running: the ``workflow.patched`` id under which the case
    # workflow applies it (a case from before replays as it ran). Each check evaluates such
    # rules after its older ones, so that one of them refuses only what the old rules allowed.
    since: str | None = None
    # What a case from before ``since`` answered instead (None: it allowed the action) — for a
    # rule that words an old refusal anew rather than refusing something new.
    before: Refusal | None = None


# Rules added while cases were running (see Refusal.since); the ids are the workflow's patches.
DISTINCT_CO_HANDLERS = "distinct-co-handlers-v1"  # 会办 names each department once
ONE_REASSIGNMENT_AT_A_TIME = "one-reassignment-at-a-time-v1"  # see reassignment_pending
LADDER_STEPS_ONCE = "ladder-steps-once-v1"  # see check_escalation_step
VERDICT_OVERTAKEN = "verdict-overtaken-v1"  # see verdict_overtaken
SUPPLEMENTS_BOUNDED = "supplements-bounded-v1"  # see check_supplement
SUPPLEMENTS_SHARED_FAIRLY = "supplements-shared-fairly-v1"  # see check_supplement
REJECTIONS_BOUNDED = "rejections-bounded-v1"  # see MAX_RECORDED_REJECTIONS
SUPERVISION_ORDERS_BOUNDED = "supervision-orders-bounded-v1"  # see check_supervision
EXTENSION_REQUESTS_BOUNDED = "extension-requests-bounded-v1"  # see check_extension
REPEAT_REPORTS_BOUNDED = "repeat-reports-bounded-v1"  # see check_repeat_report
CO_HANDLERS_BOUNDED = "co-handlers-bounded-v1"  # see MAX_CO_HANDLERS
RETURNS_BOUNDED = "returns-bounded-v1"  # see check_return
# Brought by the epoch lean-case-v4 (workflows/patches.py): decided in a case's first task.
CENTRE_NOT_CO_HANDLER = "centre-not-co-handler-v1"  # see _centre_convened
# Brought by the epoch lean-case-v7.
SUPERVISION_DUE_BOUNDED = "supervision-due-bounded-v1"  # see _due_within_bound
# Brought by the epoch lean-case-v8.
CO_HANDLER_RELEASED = "co-handler-released-v1"  # see check_contribution
RECONVENE_RELEASED = "reconvene-released-v1"  # see involved_now, involved_by_its_rule
# Brought by the epoch lean-case-v9.
QUEUED_LADDER_CEILING = "queued-ladder-ceiling-v1"  # see _centre_supervised (workflows/ladder.py)
# Brought by the epoch lean-case-v10.
UNROUTED_NOT_ACCOUNTABLE = "unrouted-not-accountable-v1"  # see _centre_supervised
QUEUED_STEPS_HELD = "queued-steps-held-v1"  # see check_escalation_step
CENTRE_NOT_DISPATCHED = "centre-not-dispatched-v1"  # see check_dispatch
# Brought by the epoch lean-case-v11.
DEADLINES_END_AT_REASSIGNMENT = "deadlines-end-at-reassignment-v1"  # see deadline_owed
# Brought by the epoch lean-case-v12.
ACTIONS_TIMED_WHEN_SENT = "actions-timed-when-sent-v1"  # see deadline_owed, CaseRecord.time_of
# Brought by the epoch lean-case-v13.
LATE_ACTIONS_JUDGED = "late-actions-judged-v1"  # see deadline_met_in_time, verdict_too_late
# Brought by the epoch lean-case-v14.
MOVED_DEADLINE_JUDGED = "moved-deadline-judged-v1"  # see breached_before
# Brought by the epoch lean-case-v15.
CONTRIBUTION_DUE_JUDGED = "contribution-due-judged-v1"  # see CaseWorkflow._contribution_due
# Brought by the epoch lean-case-v16.
LAPSES_TIMED_AT_THEIR_DUE = "lapses-timed-at-their-due-v1"  # see CaseWorkflow._lapse_actor
ONE_BREACH_PER_WATCH = "one-breach-per-watch-v1"  # see breach_recorded_since
WATCH_SETTLES_FIRST = "watch-settles-first-v1"  # see workflows.deadline_watch.watch_deadline
# Brought by the epoch lean-case-v17.
LATE_RETURN_AT_THE_BOUND = "late-return-at-the-bound-v1"  # see CaseWorkflow._reassign
LATE_WAIVER_NEEDS_THE_UNIT = "late-waiver-needs-the-unit-v1"  # see CaseWorkflow._waived_late
# Brought by the epoch lean-case-v18.
LAPSES_BEFORE_LATER_ACTIONS = "lapses-before-later-actions-v1"  # see CaseWorkflow._lapses_before
# Brought by the epoch lean-case-v19.
PROMISE_WATCHED = "promise-watched-v1"  # see CaseWorkflow._on_decide_extension
# Brought by the epoch lean-case-v20.
CLOSED_NOT_REASSIGNED = "closed-case-not-reassigned-v1"  # see CaseWorkflow._reassign
JUDGED_AS_REASSIGNING = "judged-as-reassigning-v1"  # see CaseWorkflow._judged_state
LAPSE_RECHECKED = "lapse-rechecked-v1"  # see CaseWorkflow._return_decision_due
# Brought by the epoch lean-case-v21.
MESSAGES_AFTER_DECISIONS = "messages-after-decisions-v1"  # see CaseWorkflow._waits_for_loop
# Brought by the epoch lean-case-v22.
MESSAGES_AFTER_LAPSES = "messages-after-lapses-v1"  # see CaseWorkflow._waits_for_loop
# Brought by the epoch lean-case-v23.
REPEATS_AFTER_CLOSE_REFILED = "repeats-after-close-refiled-v1"  # see CaseWorkflow._refile_late
# Late repeat reports one closed case files again (a client flooding a closed case with report
# ids runs no more activities than this; the intake's own reports are far fewer).
MAX_REFILED_REPORTS = 20
# Brought by the epoch lean-case-v24.
MESSAGES_AFTER_DISPATCH = "messages-after-dispatch-v1"  # see CaseWorkflow._waits_for_dispatch
QUEUE_LADDER_AFTER_THE_UNITS = "queue-ladder-after-the-units-v1"  # see CaseWorkflow._reassign
# Brought by the epoch lean-case-v25.
LATE_REPORTS_BATCHED = "late-reports-batched-v1"  # see CaseWorkflow._refile_late_batches
# Brought by the epoch lean-case-v26.
NOT_SUPERVISED_WHILE_REASSIGNED = "not-supervised-while-reassigned-v1"  # see check_supervision
REASSIGN_CHOICE_JUDGED = "reassign-choice-judged-v1"  # see CaseWorkflow._judged_choice
# Brought by the epoch lean-case-v27.
REHANDLE_LADDER_AFTER_THE_OTHER = "rehandle-ladder-after-the-other-v1"  # see CaseWorkflow._rehandle
SUPERVISION_AFTER_DISPATCH = "supervision-after-dispatch-v1"  # see CaseWorkflow._receive
# Brought by the epoch lean-case-v28.
REHANDLE_LADDER_HELD_IN_QUEUE = "rehandle-ladder-held-in-queue-v1"  # see Ladder.escalate
LADDER_OUTCOME_JUDGED = "ladder-outcome-judged-v1"  # see Ladder._stopped_record
# Brought by the epoch lean-case-v29.
CHOSEN_UNIT_CHECKED = "chosen-unit-checked-v1"  # see CaseWorkflow._judged_choice
# Brought by the epoch lean-case-v30.
LADDER_ORDERS_SIGNED = "ladder-orders-signed-v1"  # see Ladder._order
# Brought by the epoch lean-case-v31.
LADDER_STEPS_SIGNED = "ladder-steps-signed-v1"  # see check_escalation_step, CaseWorkflow._check
# Brought by the epoch lean-case-v32.
HANDOVER = "handover-v1"  # see check_handover, CaseWorkflow._hand_over
# Brought by the epoch lean-case-v33.
RETURNER_NOT_CHOSEN = "returner-not-chosen-v1"  # see returned_it_last, CaseWorkflow._judged_choice
# Brought by the epoch lean-case-v34.
LADDER_SIGNED_FROM_ITS_START = "ladder-signed-from-its-start-v1"  # see Ladder.escalate
# Brought by the epoch lean-case-v35.
HANDOVER_AFTER_DECISIONS = "handover-after-decisions-v1"  # see check_handover, _waits_for_loop
# Brought by the epoch lean-case-v36.
NO_STEPS_AFTER_CLOSE = "no-steps-after-close-v1"  # see check_escalation_step
# Brought by the epoch lean-case-v37.
UNITS_LOOKED_UP = "units-looked-up-v1"  # see CaseWorkflow._dispatch_looked_up, _convene_looked_up
QUEUE_NOT_TO_RETURNER = "queue-not-to-returner-v1"  # see returned_into_the_queue
# Brought by the epoch lean-case-v38.
LADDER_ORDERS_BEFORE_PROJECTION = "ladder-orders-before-projection-v1"  # see Ladder.owes_an_order
# Brought by the epoch lean-case-v39.
LOOKED_UP_IN_ORDER = "looked-up-in-order-v1"  # see CaseWorkflow._looked_up_first
# Brought by the epoch lean-case-v40.
NO_LADDER_AFTER_CLOSE = "no-ladder-after-close-v1"  # see Ladder._closed_first
STEPS_END_WITH_THE_DUTY = "steps-end-with-the-duty-v1"  # see Ladder.duty_done, CaseWorkflow._check
# Brought by the epoch lean-case-v41.
LOOKUPS_RECORDED = "lookups-recorded-v1"  # see CaseWorkflow._look_up

# 补充诉求 a case takes at most. A case holds its whole story, and Temporal refuses a payload
# over 2 MB and ends a workflow whose history passes 50 MB: a reporter's script adding a
# 5,000-character supplement again and again must not be able to break the case for everyone
# (tests/test_case_size.py). Twenty is more than any caller needs; more goes to the hotline.
MAX_SUPPLEMENTS = 20
# Of those, the citizens of the case's repeat reports (并单) add at most so many together, and
# each of them at most so many (since SUPPLEMENTS_SHARED_FAIRLY): one repeat reporter took all
# twenty before, and the case's own citizen could add nothing more. The case's own citizen
# keeps the rest — at least MAX_SUPPLEMENTS - MAX_REPEAT_REPORT_SUPPLEMENTS, and every one the
# repeat reporters leave. The case still takes at most MAX_SUPPLEMENTS in all.
MAX_REPEAT_REPORT_SUPPLEMENTS = 10
MAX_SUPPLEMENTS_PER_REPEAT_REPORTER = 3


# Refused actions and undecodable messages (``rejected`` events) a case records at most (since
# REJECTIONS_BOUNDED). One recorded each time let a client grow the case's state without end
# (~900 bytes a junk signal, ~330 an action refused; tests/test_case_size.py) — a client
# straight to Temporal, and a caller of the API too: the read model's copy it checks first
# has no events, so a supplement past the limit reaches the case. The last one recorded says
# so; later ones leave no event (the Temporal history keeps their signals, and the worker logs
# them); the API answers their caller 409 from the case as it answers after the signal.
MAX_RECORDED_REJECTIONS = 100

# 督办 a supervisor orders on one case at most (since SUPERVISION_ORDERS_BOUNDED). An order
# whose ladder ends at once (问责, the accountability form) could be given again and again:
# each one a child workflow, ~10 kB of opinion and decision in the case and another
# accountability record against the unit (tests/test_case_size.py). The ladders the case
# starts itself (breaches, repeat reports, dissatisfaction) do not count.
MAX_SUPERVISION_ORDERS = 10
# 延期申请 a case takes at most (since EXTENSION_REQUESTS_BOUNDED), approved or not: a request
# the centre rejects could be asked again without end, each with 4,000 characters of reasons
# and measures (the policy's max_extensions caps only the approved ones).
MAX_EXTENSION_REQUESTS = 10
# 退单 a case takes at most (since RETURNS_BOUNDED), those the centre rejected included: when
# a return waits for the centre's approval (派单异议审核), a department could return the case
# again after each rejection, without end, each with up to 2,000 characters of reason.
# Returns that are upheld reassign the case and are bounded by the policy's max_reassignments
# (then the centre's queue) anyway.
MAX_RETURNS = 10
# Co-handling departments (会办) one case convenes at most (since CO_HANDLERS_BOUNDED). The API
# convenes only departments of the reference data, each once; a client straight to Temporal
# could name new made-up ones without end, each an entry of the case and a timer.
MAX_CO_HANDLERS = 20
# Repeat reports (并单) one case takes at most. Each carries its description (up to 5,000
# characters) into the case's Temporal history, which the server ends at 50 MB or 51,200
# events: 399 of the longest took one to 11.7 MB (docs/security.md, "a case grown large"). A
# water outage reported by more callers than that is rare: intake (jiesu.intake.merge) opens a
# case of its own for the next report, and the case refuses one more from any other client
# (since REPEAT_REPORTS_BOUNDED; before, a client straight to Temporal added them without end).
MAX_MERGED_REPORTS = 500


def rejections_recorded(state: CaseState) -> int:
    """How many refusals (``rejected`` events) the case has recorded."""
    return sum(1 for e in state.events if e.kind is EventKind.REJECTED)


def _status_is(state: CaseState, *allowed: Status) -> Refusal | None:
    if state.status in allowed:
        return None
    wanted = " or ".join(s.value for s in allowed)
    return Refusal("wrong_status", f"case {state.case_id} is {state.status.value}, not {wanted}")


def _is_assigned_department(state: CaseState, actor: Actor) -> Refusal | None:
    if actor.role is Role.ADMIN:
        return None
    if actor.role not in HANDLER_ROLES:
        return Refusal("forbidden", f"role {actor.role.value} cannot act for a department", True)
    if actor.department_id != state.department_id:
        return Refusal(
            "not_assigned",
            f"case {state.case_id} is assigned to {state.department_id}, not {actor.department_id}",
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
    waiting = [c.department_id for c in state.co_handlers if not c.done]
    if waiting:
        # 会办: the lead closes the handling only with every co-handler's contribution
        return Refusal("co_handlers_pending", f"waiting for co-handlers: {', '.join(waiting)}")
    if action.outcome is ReplyOutcome.EXPLAINED and not action.evidence:
        # Jinxiang rule: an unreasonable claim is answered with explanation plus evidence.
        return Refusal("evidence_required", "an 'explained' reply needs at least one evidence link")
    return None


def check_dispatch(state: CaseState, action: DispatchAction) -> Refusal | None:
    if action.actor.role not in DISPATCHER_ROLES:
        return Refusal("forbidden", "only the hotline centre's dispatchers can dispatch", True)
    refusal = _status_is(state, Status.DISPATCHING)
    if refusal is None and action.department_id == CENTRE_ID:
        # the API refuses it (422 centre_not_assignee); a dispatch signalled directly left the
        # case assigned to the centre, out of the queue, its deadlines and ladders against the
        # centre, until CENTRE_NOT_DISPATCHED (lean-case-v10)
        return Refusal(
            "centre_not_assignee",
            "a case is dispatched out of the centre's queue to a unit, not to the centre",
            since=CENTRE_NOT_DISPATCHED,
        )
    return refusal or returned_into_the_queue(state, action.department_id)


def check_rating(state: CaseState, action: RatingAction) -> Refusal | None:
    if action.actor.role not in {Role.CITIZEN, Role.ADMIN}:
        return Refusal("forbidden", "only the citizen rates a case", True)
    return _status_is(state, Status.REPLIED) or _not_rated(state)


def _not_rated(state: CaseState) -> Refusal | None:
    """One verdict per reply round: a second rating (or a callback after one), e.g. a retry
    with a new request id, is refused instead of overwriting the first."""
    if state.rating is None:
        return None
    return Refusal("already_rated", f"{state.case_id} has already been rated in this round")


def _role_in(actor: Actor, roles: frozenset[Role], what: str) -> Refusal | None:
    if actor.role in roles:
        return None
    return Refusal("forbidden", f"role {actor.role.value} cannot {what}", True)


def check_return(state: CaseState, action: ReturnAction, now: datetime) -> Refusal | None:
    """退单 is allowed only within the return window after assignment."""
    refusal = _is_assigned_department(state, action.actor) or _status_is(state, *WITH_DEPARTMENT)
    if refusal:
        return refusal
    assert state.assignment is not None and state.deadlines is not None
    if state.pending_return is not None:
        return Refusal("return_pending", "a return is already waiting for the centre's decision")
    window = timedelta(hours=state.deadlines.return_window_hours)
    if now > state.assignment.assigned_at + window:
        return Refusal(
            "return_window_passed",
            f"a case can be returned only within {state.deadlines.return_window_hours:g} hours "
            "of its assignment",
        )
    if _count(state, EventKind.RETURNED) >= MAX_RETURNS:
        return Refusal(
            "return_limit",
            f"case {state.case_id} has been returned {MAX_RETURNS} times (at most "
            f"{MAX_RETURNS} a case): ask the centre to raise its level or assign it again",
            since=RETURNS_BOUNDED,
        )
    return None


def check_return_decision(state: CaseState, action: ReturnDecisionAction) -> Refusal | None:
    """派单异议审核: only a pending return (the policy asked for approval) can be decided."""
    refusal = _role_in(action.actor, DISPATCHER_ROLES, "decide on returns")
    if refusal:
        return refusal
    if state.pending_return is None:
        return Refusal("no_return_pending", "there is no return waiting for a decision")
    return _status_is(state, *WITH_DEPARTMENT)


def overdue_steps(state: CaseState, now: datetime) -> list[DeadlineKind]:
    """The department's steps of this round whose deadline has passed undone (超时)."""
    return [
        kind
        for kind in DeadlineKind
        if (due := deadline_of(state, kind)) is not None
        and now > due
        and not _MET[kind](state)
    ]


def check_second_assignment(
    state: CaseState, action: SecondAssignmentAction, now: datetime
) -> Refusal | None:
    """二次交办: a supervisor takes the case from a department that is overdue with it, or
    whose reply is under review (replied, not yet rated)."""
    refusal = _role_in(action.actor, DISPATCHER_ROLES, "order a second assignment")
    if refusal:
        return refusal
    if state.status is Status.REPLIED:
        return None if state.rating is None else _not_rated(state)
    refusal = _status_is(state, *WITH_DEPARTMENT, Status.REPLIED)
    if refusal is None and not overdue_steps(state, now):
        return Refusal(
            "not_overdue",
            f"{state.department_id} is not overdue with {state.case_id}: a case is taken away "
            "only when a deadline passed undone, or on review of the reply",
        )
    return refusal


def check_handover(state: CaseState, action: HandoverAction) -> Refusal | None:
    """移交: a dispatcher hands the case of a unit out of service to its successor. This is
    the part the case's state can tell; that the holder is out of service and the successor
    in it, the case looks up when it applies the handover (CaseWorkflow._hand_over), as the
    API does before it signals."""
    refusal = _role_in(action.actor, DISPATCHER_ROLES, "hand a case over") or _status_is(
        state, *WITH_DEPARTMENT
    )
    if refusal:
        return refusal
    if action.from_department_id not in (None, state.department_id):
        return Refusal(
            "holder_changed",
            f"{state.case_id} is held by {state.department_id}, not "
            f"{action.from_department_id}: it was passed on meanwhile",
        )
    if action.department_id == state.department_id:
        return Refusal(
            "same_department",
            f"{state.case_id} is already with {action.department_id}: name the unit that "
            "takes over its work",
        )
    return check_assignee(action.department_id) or _return_decided_first(state)


def _return_decided_first(state: CaseState) -> Refusal | None:
    """A 退单 awaiting the centre's decision (派单异议审核) is decided first: the handover's new
    round cleared it without a decision or an event (the review of 2026-11-25). Upheld, the
    case is reassigned anyway; rejected, it stays with the retired unit and can be handed over
    (since lean-case-v35, HANDOVER_AFTER_DECISIONS)."""
    if state.pending_return is None:
        return None
    return Refusal(
        "return_pending",
        f"{state.case_id} has a return waiting for the centre's decision: decide it first",
        since=HANDOVER_AFTER_DECISIONS,
    )


def holder_in_service(state: CaseState) -> Refusal:
    """A handover of a case whose unit is in service (reinstated meanwhile, or never retired:
    a client that is not the API): a case is taken from a working unit only by 二次交办."""
    return Refusal(
        "holder_in_service",
        f"{state.department_id} is in service: a case is handed over only from a unit out of "
        "service (二次交办 takes a case from a unit that is overdue with it)",
    )


# What a case refuses when its main loop carries an action out, beside its check's refusals
# (the API documents them with the action): a 移交 once the case has looked the units up; a
# 派单, a 会办 and a 督办 of the form 会办 once it has looked up the units they name (v37).
CARRIED_OUT_REFUSALS: dict[CaseSignal, tuple[str, ...]] = {
    CaseSignal.HAND_OVER: ("holder_in_service", "unknown_department"),
    CaseSignal.DISPATCH: ("unknown_department",),
    CaseSignal.ADD_CO_HANDLERS: ("unknown_department",),
    CaseSignal.SUPERVISE: ("unknown_department",),
}


def check_raise_level(state: CaseState, action: RaiseLevelAction) -> Refusal | None:
    return _is_assigned_department(state, action.actor) or _status_is(state, *WITH_DEPARTMENT)


# Actions that take the case from its department (or give it one): the workflow applies one,
# and the case changes hands only when its run loop gets to it.
REASSIGNING_ACTIONS = frozenset({
    CaseSignal.RETURN,
    CaseSignal.DECIDE_RETURN,
    CaseSignal.RAISE_LEVEL,
    CaseSignal.ORDER_SECOND_ASSIGNMENT,
    CaseSignal.HAND_OVER,
    CaseSignal.DISPATCH,
})  # fmt: skip


def reassignment_pending(state: CaseState) -> Refusal:
    """One reassignment at a time: between an applied 退单/提级办/二次交办/dispatch and the
    new round, the case still shows the department's status, and a second such action (a
    retry with a new request id, or in the same batch of signals) passed every other rule and
    was applied again — counted twice against the department, or the case dispatched twice.
    Only the workflow knows (the API cannot see a pending reassignment): it refuses."""
    return Refusal(
        "reassignment_pending",
        f"{state.case_id} is already being passed on to another department",
        since=ONE_REASSIGNMENT_AT_A_TIME,
    )


# The citizen's verdict on a reply (评价, or 回访 recorded by the centre).
VERDICTS = frozenset({CaseSignal.RATE, CaseSignal.CALLBACK})


def verdict_overtaken(state: CaseState) -> Refusal:
    """A rating that arrives after an applied 二次交办 of the replied case, before its new
    round starts, rated a reply the case no longer stands by: it was applied, then the new
    round cleared it, and the citizen was told 200 for a verdict that counted for nothing.
    It is refused; the citizen rates the new department's reply."""
    return Refusal(
        "reassignment_pending",
        f"{state.case_id} is being passed on to another department: its reply is not the one "
        "to rate any more",
        since=VERDICT_OVERTAKEN,
    )


def check_assignee(department_id: str | None) -> Refusal | None:
    """派单, 改派 and 二次交办 by hand give the case to a unit that handles it, never to the
    hotline centre. Named by a dispatcher, the centre was applied as any department: the case
    stood ``assigned`` to the centre — out of the dispatch queue, with no clerk to accept it,
    its deadlines running and breached against the centre — until it was overdue enough to be
    taken away again. (The routing rules still send a case they cannot place to the centre's
    queue: that is the system's doing, not a dispatcher's choice.) The API refuses it (422),
    before it looks at the case."""
    if department_id != CENTRE_ID:
        return None
    return Refusal(
        "centre_not_assignee",
        "the hotline centre dispatches cases; name the department that is to handle it",
    )


MIN_VISIBLE = 2  # a reason's or a decision's min_length, counted as a reader sees it


def blank_text(texts: dict[str, str], names: Iterable[str] = ()) -> Refusal | None:
    """The centre's reasons and decisions (``texts``: at least MIN_VISIBLE characters) and the
    persons it names (``names``: at least one), counted as a reader sees them
    (domain.visible_length): spaces, U+3000 and invisible characters passed the fields'
    lengths and their ``strip()`` checks, and were recorded as the reason a case was taken
    away, a return rejected, a person held accountable. The API refuses them (422) before it
    looks at the case; the workflow's messages keep their older rules (their histories)."""
    for field, text in texts.items():
        if visible_length(text) < MIN_VISIBLE:
            return Refusal("blank_text", f"{field} needs {MIN_VISIBLE} visible characters")
    if any(visible_length(name) == 0 for name in names):
        return Refusal("blank_text", "a person's name cannot be blank")
    return None


def check_reassign_choice(state: CaseState, action: ReassignChoice) -> Refusal | None:
    """改派's choice: only while a reassignment waits for one. A 提级办 goes to the level
    above, and a 二次交办 to the department the supervisor named: their child takes no choice
    (it would keep the signal and ignore it; the caller was answered after a 5 s wait)."""
    return (
        _role_in(action.actor, DISPATCHER_ROLES, "choose a department")
        or _status_is(state, Status.REASSIGNING)
        or _choice_not_taken(state)
        or _not_the_unit_that_returned_it(state, action)
    )


def _not_the_unit_that_returned_it(state: CaseState, action: ReassignChoice) -> Refusal | None:
    pending = state.reassignment
    reason = pending.reason if pending is not None else None
    return returned_it_last(state, reason, action.department_id)


def returned_it_last(
    state: CaseState, reason: ReassignReason | None, department_id: str
) -> Refusal | None:
    """改派 after an upheld 退单: not back to the unit whose return was upheld — it said the case
    is not its own and the centre agreed; sent back, it returns it again and each return spends
    one of the case's reassignments (red team of 2026-11-24). Routing passes over every unit
    that returned the case; a dispatcher may still choose one that returned it earlier. The API
    refuses such a choice (409); since lean-case-v33 (RETURNER_NOT_CHOSEN) the case refuses it
    too when it comes straight to the reassignment child from another Temporal client, and the
    centre's queue decides (CaseWorkflow._judged_choice)."""
    if reason is not ReassignReason.RETURN or not state.returned_by:
        return None
    if department_id != state.returned_by[-1]:
        return None
    return Refusal(
        "returned_by_this_unit", f"{department_id} returned {state.case_id} and its "
        "return was upheld: choose another unit (or, to hold it to the case, reject a return "
        "instead of upholding it)",
    )  # fmt: skip


_HOLDER_EVENTS = frozenset({EventKind.ROUTED, EventKind.DISPATCHED, EventKind.REASSIGNED})


def returned_into_the_queue(state: CaseState, department_id: str) -> Refusal | None:
    """派单 out of the centre's queue: not to the unit whose upheld 退单 sent the case there
    (through the reassignment bound, or a 改派 whose choice was refused or never made) while no
    unit has held the case since — the rule of :func:`returned_it_last` for the queue's
    dispatcher. Before lean-case-v37 (QUEUE_NOT_TO_RETURNER) the queue took that unit without a
    word, and its next return spent another reassignment (red team of 2026-11-25,
    tests/test_v33_attacks.py)."""
    for event in reversed(state.events):
        if event.kind in _HOLDER_EVENTS and event.data.get("department_id") != CENTRE_ID:
            return None  # a unit held the case after the last upheld return
        upheld = event.kind is EventKind.RETURN_UPHELD or (
            event.kind is EventKind.RETURNED and not event.data.get("awaiting_approval")
        )
        if not upheld:
            continue
        if event.data.get("department_id") != department_id:
            return None
        return Refusal(
            "returned_by_this_unit", f"{department_id} returned {state.case_id} and its "
            "return was upheld: dispatch it to another unit",
            since=QUEUE_NOT_TO_RETURNER,
        )  # fmt: skip
    return None


def _choice_not_taken(state: CaseState) -> Refusal | None:
    pending = state.reassignment
    if pending is None:
        return None
    if pending.reason is ReassignReason.RAISE_LEVEL:
        return Refusal("reassignment_not_chosen", "提级办: the case goes to the level above")
    if pending.reason is ReassignReason.HANDOVER:
        return Refusal("reassignment_not_chosen", "移交 to the unit that takes over the work")
    if pending.reason is ReassignReason.SECOND_ASSIGNMENT:
        ordered = next((e for e in reversed(state.events)
                        if e.kind is EventKind.SECOND_ASSIGNMENT_ORDERED), None)  # fmt: skip
        if ordered is not None and ordered.data.get("to_department_id"):
            return Refusal("reassignment_not_chosen",
                           "二次交办 to the department the supervisor named")  # fmt: skip
    return None


def check_extension(state: CaseState, action: ExtensionAction, now: datetime) -> Refusal | None:
    """延期: asked before the finish deadline, for a later date no further than the policy's
    bound, one request at a time, and no more approved extensions than the policy's cap."""
    refusal = _is_assigned_department(state, action.actor) or _status_is(state, *WITH_DEPARTMENT)
    if refusal:
        return refusal
    assert state.deadlines is not None
    if state.extension is not None and state.extension.approved is None:
        return Refusal("extension_pending", "an extension request is already waiting")
    cap = state.deadlines.max_extensions
    if cap is not None and state.extension_count >= cap:
        return Refusal("extension_cap", f"a case may be extended at most {cap} times")
    if now >= state.deadlines.finish:
        return Refusal("deadline_passed", "an extension must be asked before the deadline")
    if action.promised_finish <= state.deadlines.finish:
        return Refusal("invalid_promised_date", "the promised date must be after the deadline")
    # The bound in force when the deadlines were set (recorded in the history).
    limit = timedelta(days=state.deadlines.max_extension_days)
    if action.promised_finish > now + limit:
        return Refusal(
            "invalid_promised_date",
            f"the promised date may be at most {state.deadlines.max_extension_days:g} days ahead",
        )
    if _count(state, EventKind.EXTENSION_REQUESTED) >= MAX_EXTENSION_REQUESTS:
        return Refusal(
            "extension_request_limit",
            f"case {state.case_id} has taken its {MAX_EXTENSION_REQUESTS} extension requests "
            f"(at most {MAX_EXTENSION_REQUESTS} a case, approved or not)",
            since=EXTENSION_REQUESTS_BOUNDED,
        )
    return None


def _count(state: CaseState, kind: EventKind, **data: Any) -> int:
    """How many events of ``kind`` (with these data) the case has recorded."""
    return sum(
        1 for e in state.events
        if e.kind is kind and all(e.data.get(k) == v for k, v in data.items())
    )  # fmt: skip


def check_extension_decision(state: CaseState, action: ExtensionDecisionAction) -> Refusal | None:
    refusal = _role_in(action.actor, DISPATCHER_ROLES, "decide on extensions")
    if refusal:
        return refusal
    if state.extension is None or state.extension.approved is not None:
        return Refusal("no_extension_pending", "there is no extension request to decide")
    return _status_is(state, *WITH_DEPARTMENT)


Involved = Callable[[CaseState, str], bool]


def involved_now(state: CaseState, department_id: str) -> bool:
    """The lead department, or a co-handler not released: each department is convened once
    *at a time*. A co-handler released (免除协办, or by a new round) may be convened again
    (RECONVENE_RELEASED); cases before it kept it involved (CaseState.involves) for good."""
    return department_id == state.department_id or any(
        c.department_id == department_id and not c.waived for c in state.co_handlers
    )


def _involved_for_good(state: CaseState, department_id: str) -> bool:
    return state.involves(department_id)


def involved_by_its_rule(state: CaseState) -> Involved:
    """The rule of "involved" the case itself applies (CaseState.reconvenes_released): the
    API and the console's pickers judge 会办 with it, so that they neither offer nor send what
    the case would refuse — a case before lean-case-v8 keeps a released co-handler involved.
    The workflow judges by it too: one rule, read from the state its epoch set."""
    return involved_now if state.reconvenes_released else _involved_for_good


def may_co_handle(state: CaseState, department_id: str) -> bool:
    """会办: whether the case can convene ``department_id`` as a co-handler (协办单位): not
    the department holding it (主办) nor a co-handler not released — 会办 (/co-handlers) and
    督办 in the form 会办 refuse those as already_involved — nor the hotline centre, which
    dispatches and does not co-handle (centre_not_co_handler). The console's pickers offer
    the others."""
    involved = involved_by_its_rule(state)
    return not involved(state, department_id) and _centre_convened([department_id]) is None


def _centre_convened(department_ids: Iterable[str]) -> Refusal | None:
    """The hotline centre is not a co-handler: it dispatches, supervises and answers the
    citizen; a 会办 naming it was applied, and the case then waited on the centre's own
    contribution (协办意见) before its lead department could reply."""
    if CENTRE_ID not in department_ids:
        return None
    return Refusal(
        "centre_not_co_handler", "the hotline centre dispatches; it does not co-handle a case",
        since=CENTRE_NOT_CO_HANDLER,
    )  # fmt: skip


def co_handler_choices(state: CaseState, department_ids: Iterable[str]) -> list[str]:
    """Of ``department_ids``, those 会办 could still convene: none once the case has its
    MAX_CO_HANDLERS (co_handler_limit), else each :func:`may_co_handle` allows."""
    if len(state.co_handlers) >= MAX_CO_HANDLERS:
        return []
    return [d for d in department_ids if may_co_handle(state, d)]


def _may_convene(state: CaseState, action: CoHandlersAction) -> Refusal | None:
    involved = involved_by_its_rule(state)
    refusal = _role_in(action.actor, DISPATCHER_ROLES, "add co-handlers") or _status_is(
        state, *WITH_DEPARTMENT
    )
    if refusal:
        return refusal
    for dept in action.departments:
        if involved(state, dept.id):
            return Refusal("already_involved", f"{dept.id} already handles this case")
    return None


def _named_once(department_ids: list[str]) -> Refusal | None:
    """会办 convenes each department once: a message naming one twice is refused. (Applied,
    it listed the department twice; its one contribution or waiver settled one entry, and the
    other kept the lead's reply refused for ever.)"""
    repeated = sorted({d for d in department_ids if department_ids.count(d) > 1})
    if not repeated:
        return None
    return Refusal(
        "repeated_department",
        f"a co-handling department is named once, not twice: {', '.join(repeated)}",
        since=DISTINCT_CO_HANDLERS,
    )


def _within_co_handlers(state: CaseState, departments: list[DepartmentRef]) -> Refusal | None:
    if len(state.co_handlers) + len(departments) <= MAX_CO_HANDLERS:
        return None
    return Refusal(
        "co_handler_limit",
        f"case {state.case_id} convenes at most {MAX_CO_HANDLERS} co-handling departments "
        f"(会办; it has {len(state.co_handlers)})",
        since=CO_HANDLERS_BOUNDED,
    )


def check_co_handlers(state: CaseState, action: CoHandlersAction) -> Refusal | None:
    return (
        _may_convene(state, action)
        or _named_once([d.id for d in action.departments])
        or _within_co_handlers(state, action.departments)
        or _centre_convened([d.id for d in action.departments])
    )


def check_co_handlers_at(
    state: CaseState, action: CoHandlersAction, now: datetime
) -> Refusal | None:
    refusal = _may_convene(state, action)
    if refusal is None and action.due is not None and action.due <= now:
        return Refusal("invalid_due", "a contribution deadline must be in the future")
    return (
        refusal
        or _named_once([d.id for d in action.departments])
        or _within_co_handlers(state, action.departments)
        or _centre_convened([d.id for d in action.departments])
        or _due_within_bound(state, now, action.due)
    )


def co_handler_of(state: CaseState, department_id: str | None) -> CoHandler | None:
    """The department's co-handling entry: the one still owing its contribution, if any, else
    its latest. (Cases from before DISTINCT_CO_HANDLERS may list a department twice; since
    RECONVENE_RELEASED a department released and convened again has an entry each time.)"""
    entries = [c for c in state.co_handlers if c.department_id == department_id]
    return next((c for c in entries if not c.done), entries[-1] if entries else None)


def first_entry_refusal(state: CaseState, signal: CaseSignal, action: Any) -> Refusal | None:
    """How cases from before DISTINCT_CO_HANDLERS refused a contribution or a waiver that the
    rules above allow: they looked at the department's first entry only, done or not."""
    if signal is CaseSignal.CONTRIBUTE:
        department_id = action.actor.department_id
    elif signal is CaseSignal.WAIVE_CO_HANDLER:
        department_id = action.department_id
    else:
        return None
    first = next((c for c in state.co_handlers if c.department_id == department_id), None)
    if first is None or not first.done:
        return None
    if signal is CaseSignal.CONTRIBUTE:
        return Refusal("already_done", f"{department_id} has already contributed")
    return Refusal("no_pending_co_handler", f"{department_id} owes no contribution")


def check_contribution(state: CaseState, action: ContributionAction) -> Refusal | None:
    co = co_handler_of(state, action.actor.department_id)
    if co is None:
        return Refusal("not_co_handler", "only a co-handling department contributes", True)
    contributed = Refusal("already_done", f"{co.department_id} has already contributed")
    if co.waived:
        # released (免除协办 by the centre, or by a new round): it owes nothing and never
        # contributed; cases before CO_HANDLER_RELEASED said "already contributed"
        return Refusal(
            "co_handler_released",
            f"{co.department_id} was released from co-handling this case (免除协办) and owes "
            "no contribution",
            since=CO_HANDLER_RELEASED, before=contributed,
        )  # fmt: skip
    if co.done:
        return contributed
    return _status_is(state, *WITH_DEPARTMENT)


def check_waive(state: CaseState, action: WaiveAction) -> Refusal | None:
    refusal = _role_in(action.actor, DISPATCHER_ROLES, "waive a co-handler")
    if refusal:
        return refusal
    co = co_handler_of(state, action.department_id)
    if co is None or co.done:
        return Refusal("no_pending_co_handler", f"{action.department_id} owes no contribution")
    return None


def check_supervision(state: CaseState, action: SupervisionAction, now: datetime) -> Refusal | None:
    involved = involved_by_its_rule(state)
    refusal = _role_in(action.actor, DISPATCHER_ROLES, "start supervision") or _status_is(
        state, *BEFORE_REPLY
    )
    if refusal is None and state.escalation is not None and state.escalation.active:
        return Refusal("already_supervised", "the case is already on the supervision ladder")
    if refusal:
        return refusal
    for due in (action.due, action.contribution_due):
        if due is not None and due <= now:
            return Refusal("invalid_due", "a supervision deadline must be in the future")
    if action.form is SupervisionForm.JOINT_HANDLING:
        refusal = _status_is(state, *WITH_DEPARTMENT)  # 会办 convenes around a lead department
        for dept_id in action.department_ids:
            if refusal is None and involved(state, dept_id):
                refusal = Refusal("already_involved", f"{dept_id} already handles this case")
        # the departments convened are action.departments (the API fills them in from
        # department_ids, once each): those are the ones checked (since DISTINCT_CO_HANDLERS)
        convened = [d.id for d in action.departments]
        for dept_id in convened:
            if refusal is None and involved(state, dept_id):
                refusal = Refusal(
                    "already_involved", f"{dept_id} already handles this case",
                    since=DISTINCT_CO_HANDLERS,
                )  # fmt: skip
        refusal = refusal or _named_once(convened)
        refusal = refusal or _within_co_handlers(state, action.departments)
    ordered = _count(state, EventKind.ESCALATION_STARTED, trigger=EscalationTrigger.SUPERVISOR)
    if refusal is None and ordered >= MAX_SUPERVISION_ORDERS:
        return Refusal(
            "supervision_limit",
            f"case {state.case_id} has taken its {MAX_SUPERVISION_ORDERS} supervision orders "
            f"(督办, at most {MAX_SUPERVISION_ORDERS} a case)",
            since=SUPERVISION_ORDERS_BOUNDED,
        )
    if refusal is None and action.form is SupervisionForm.JOINT_HANDLING:
        refusal = _centre_convened([*action.department_ids, *(d.id for d in action.departments)])
    refusal = refusal or _due_within_bound(state, now, action.due, action.contribution_due)
    refusal = refusal or _centre_supervised(state, action)
    return refusal or _not_while_reassigned(state)


def _not_while_reassigned(state: CaseState) -> Refusal | None:
    """改派中: the unit that returned the case no longer has it and the next is not chosen yet.
    Before (NOT_SUPERVISED_WHILE_REASSIGNED) the order was taken against the returning unit
    and the new round ended it at once: accepted, pressing nobody
    (tests/test_v25_attacks.py::test_a_supervision_while_the_case_is_reassigned)."""
    if state.status is not Status.REASSIGNING:
        return None
    return Refusal(
        "wrong_status",
        "the case is being reassigned (改派中): supervise the next unit once it has the case",
        since=NOT_SUPERVISED_WHILE_REASSIGNED,
    )


def _centre_supervised(state: CaseState, action: SupervisionAction) -> Refusal | None:
    """A case waiting in the centre's dispatch queue (待派单) has no unit but the centre: 督办
    presses the centre's dispatch desk, and its ladder holds there (QUEUED_LADDER_CEILING,
    epoch lean-case-v9). An order above it — 问责 (会办 is refused wrong_status) — would hold
    the centre accountable to itself; before, it recorded an accountability against the
    centre at once."""
    if action.form.level <= EscalationLevel.SUPERVISE:
        return None
    if state.status is Status.REGISTERED:
        # taken before the planning routed the case (an order sent with the case's start): no
        # unit has had it yet. Before UNROUTED_NOT_ACCOUNTABLE (lean-case-v10) the referral was
        # recorded against the unit the plan then routed it to, which had never seen it.
        return Refusal(
            "centre_not_supervised",
            "the case is not yet routed to any unit: supervise (督办) at most; no accountability "
            "of a unit that has not had it",
            since=UNROUTED_NOT_ACCOUNTABLE,
        )
    if state.status is not Status.DISPATCHING:
        return None
    return Refusal(
        "centre_not_supervised",
        "the case waits in the centre's dispatch queue: supervise (督办) its dispatch at most; "
        "no joint handling or accountability against the centre itself",
        since=QUEUED_LADDER_CEILING,
    )


def _due_within_bound(state: CaseState, now: datetime, *dues: datetime | None) -> Refusal | None:
    """督办's deadlines (the unit's ``due``, 会办's ``contribution_due``, /co-handlers' ``due``)
    at most the policy's ``max_extension_days`` ahead — no further than a department may
    promise to finish. The ladder's first step lasts until ``due`` and one ladder climbs at a
    time: an order due in 2099 kept the case's ladder on 提醒 for decades, its breaches
    starting none of their own and no later order possible (already_supervised), until the
    unit replied; a co-handler due in 2099 was never overdue. The API refused such an order;
    since SUPERVISION_DUE_BOUNDED (epoch lean-case-v7) the case does too, whoever sends it —
    the API judging from its read-model copy when the worker is silent, any Temporal client."""
    days = (state.deadlines or Deadlines.model_construct()).max_extension_days
    if any(due is not None and due > now + timedelta(days=days) for due in dues):
        return Refusal("due_too_far", f"a supervision deadline may be at most {days:g} days ahead",
                       since=SUPERVISION_DUE_BOUNDED)  # fmt: skip
    return None


def check_supplement(state: CaseState, action: SupplementAction) -> Refusal | None:
    """补充诉求: by a reporter of the case, before it closes; at most MAX_SUPPLEMENTS a case
    (since SUPPLEMENTS_BOUNDED), shared fairly (since SUPPLEMENTS_SHARED_FAIRLY): the case's
    own citizen may take every one the repeat reporters leave, and they take at most
    MAX_REPEAT_REPORT_SUPPLEMENTS together, MAX_SUPPLEMENTS_PER_REPEAT_REPORTER each. The
    newer rule only refuses what the older one allowed, so the case's bound is unchanged."""
    refusal = _role_in(action.actor, frozenset({Role.CITIZEN, Role.ADMIN}), "supplement")
    refusal = refusal or _status_is(state, *BEFORE_REPLY, Status.REPLIED)
    if refusal is not None:
        return refusal
    supplements = [e.actor for e in state.events if e.kind is EventKind.SUPPLEMENTED]
    if len(supplements) >= MAX_SUPPLEMENTS:
        return Refusal(
            "supplement_limit",
            f"case {state.case_id} has taken its {MAX_SUPPLEMENTS} supplements; "
            "call the hotline to add more",
            since=SUPPLEMENTS_BOUNDED,
        )
    if is_case_citizen(action.actor):
        return None
    theirs = sum(1 for a in supplements if _same_reporter(a, action.actor))
    if theirs >= MAX_SUPPLEMENTS_PER_REPEAT_REPORTER:
        return Refusal(
            "supplement_limit",
            f"you have added your {MAX_SUPPLEMENTS_PER_REPEAT_REPORTER} supplements to case "
            f"{state.case_id} (a repeat report's citizen adds at most "
            f"{MAX_SUPPLEMENTS_PER_REPEAT_REPORTER}); call the hotline to add more",
            since=SUPPLEMENTS_SHARED_FAIRLY,
        )
    others = sum(1 for a in supplements if not is_case_citizen(a))
    if others >= MAX_REPEAT_REPORT_SUPPLEMENTS:
        return Refusal(
            "supplement_limit",
            f"the repeat reports of case {state.case_id} have added their "
            f"{MAX_REPEAT_REPORT_SUPPLEMENTS} supplements together (the rest are the case's "
            "own citizen's); call the hotline to add more",
            since=SUPPLEMENTS_SHARED_FAIRLY,
        )
    return None


def is_case_citizen(actor: Actor) -> bool:
    """The case's own citizen (the token of its own intake), as their actions are recorded;
    anyone else who supplements — the citizen of a repeat report, an administrator, a forged
    sender — shares the repeat reporters' part."""
    return actor.role is Role.CITIZEN and actor.name == CASE_CITIZEN_NAME


def _same_reporter(a: Actor, b: Actor) -> bool:
    return a.role is b.role and a.name == b.name


def supplements_of(state: CaseState) -> int:
    return sum(1 for e in state.events if e.kind is EventKind.SUPPLEMENTED)


def check_repeat_report(state: CaseState, report: RepeatReport) -> Refusal | None:
    """并单: at most MAX_MERGED_REPORTS a case. A report the case already holds (a retry of
    intake's signal) or one arriving after the close is left to the case, which ignores it."""
    if state.repeat_count < MAX_MERGED_REPORTS or state.status is Status.CLOSED:
        return None
    if any(e.kind is EventKind.REPEAT_REPORTED and e.data.get("report_id") == report.report_id
           for e in state.events):  # fmt: skip
        return None
    return Refusal(
        "repeat_report_limit",
        f"case {state.case_id} has taken its {MAX_MERGED_REPORTS} repeat reports; "
        "the report opens a case of its own",
        since=REPEAT_REPORTS_BOUNDED,
    )


def check_withdraw(state: CaseState, action: WithdrawAction) -> Refusal | None:
    refusal = _role_in(action.actor, frozenset({Role.CITIZEN, Role.ADMIN}), "withdraw")
    return refusal or _status_is(state, *BEFORE_REPLY)


def check_escalation_step(state: CaseState, step: EscalationStep) -> Refusal | None:
    """A ladder step counts once, from the ladder climbing now, upwards: the escalation
    child's ``escalation_step`` duplicated, replayed from an ended ladder, or forged by any
    client was applied each time — a second 问责 record against the unit, a level the ladder
    never reached."""
    e = state.escalation
    if e is None or not e.active or step.n != e.n:
        return Refusal(
            "stale_step", f"no supervision ladder {step.n} is climbing on {state.case_id}",
            since=LADDER_STEPS_ONCE,
        )  # fmt: skip
    if step.level <= e.level:
        return Refusal(
            "stale_step", f"ladder {e.n} has already reached {e.level.name.lower()}",
            since=LADDER_STEPS_ONCE,
        )  # fmt: skip
    if state.status is Status.CLOSED:
        # the ladder is still being stopped (the case's end waits for its outcome): a step
        # arriving then — its own timer racing the close, or signed by another client — was
        # recorded as a level reached by a closed case (fresh-clone CI of e92ee53,
        # tests/test_v31_attacks.py::test_a_step_after_the_case_closed)
        return Refusal(
            "stale_step", f"{state.case_id} is closed: its ladder {e.n} is ending",
            since=NO_STEPS_AFTER_CLOSE,
        )
    if state.status is Status.DISPATCHING and step.level > EscalationLevel.SUPERVISE:
        # the queue's ladder holds at 督办 (queued-ladder-ceiling-v1, queue-holds-ladder-v1);
        # a step above it is forged (any client can send it), or raced the case's hold: before
        # QUEUED_STEPS_HELD (lean-case-v10) it recorded 会办 and 问责 against the centre
        return Refusal(
            "centre_not_supervised",
            f"the case waits in the centre's dispatch queue: its ladder holds at supervise, not "
            f"{step.level.name.lower()}",
            since=QUEUED_STEPS_HELD,
        )
    return _one_step_at_a_time(e, step)


def _one_step_at_a_time(e: Escalation, step: EscalationStep) -> Refusal | None:
    """A ladder climbs one step at a time, from the step it starts at. Since lean-case-v31
    (LADDER_STEPS_SIGNED) the case holds its ladder to that: any Temporal client could send
    ``escalation_step`` 问责 right after a 提醒, and the case recorded 问责 and an
    accountability referral against the unit (tests/test_v30_attacks.py). (The step must also
    carry the case's word: CaseWorkflow._check.) A ladder started before has no start
    recorded and is judged as before."""
    if e.start_level is None:
        return None
    # the first step is the one the ladder starts at (the case records it itself but for
    # 问责, where the child ends at once and tells it)
    expected = e.start_level if e.level < e.start_level else EscalationLevel(e.level + 1)
    if step.level == expected:
        return None
    return Refusal(
        "stale_step", f"ladder {e.n} climbs one step at a time: to {expected.name.lower()}, "
        f"not to {step.level.name.lower()}",
        since=LADDER_STEPS_SIGNED,
    )  # fmt: skip


def unsigned_step(step: EscalationStep) -> Refusal:
    """A ladder step without the word of the ladder climbing now (lean-case-v31): sent by
    another Temporal client, not the ladder (the workflow knows the word:
    CaseWorkflow._unsigned)."""
    return Refusal(
        "unsigned_step", f"ladder {step.n}'s step to {step.level.name.lower()} does not carry "
        "the case's word: not from the ladder", since=LADDER_STEPS_SIGNED,
    )  # fmt: skip


def check_callback(state: CaseState, action: CallbackAction) -> Refusal | None:
    refusal = _role_in(action.actor, CENTRE_ROLES, "record a callback")
    return refusal or _status_is(state, Status.REPLIED) or _not_rated(state)


# --- deadlines -------------------------------------------------------------------------------


def deadline_of(state: CaseState, kind: DeadlineKind) -> datetime | None:
    """The case's current deadline of this kind (None: the case has none, e.g. contact for a
    general case)."""
    return getattr(state.deadlines, kind.value) if state.deadlines else None


_MET_AT: dict[DeadlineKind, Callable[[CaseState], datetime | None]] = {
    DeadlineKind.ACCEPT: lambda s: s.accepted_at,  # 签收
    DeadlineKind.CONTACT: lambda s: s.contacted_at,  # 联系诉求人
    DeadlineKind.FINISH: lambda s: s.reply.at if s.reply is not None else None,  # 办结答复
}
_MET: dict[DeadlineKind, Callable[[CaseState], bool]] = {
    kind: (lambda s, at=at: at(s) is not None) for kind, at in _MET_AT.items()
}


def deadline_met(state: CaseState, kind: DeadlineKind, round_: int) -> bool:
    """Has the department done what this deadline of assignment round ``round_`` asks? A
    closed case, or a later round (with deadlines of its own), meets every earlier one."""
    if state.status is Status.CLOSED or state.round != round_:
        return True
    return _MET[kind](state)


def deadline_met_in_time(
    state: CaseState, kind: DeadlineKind, round_: int, *, closing_is_late: bool = False
) -> bool:
    """:func:`deadline_met`, and by the deadline: the step's recorded time is not after it.
    A step done late is not met in time: its deadline's breach is owed, even when the step and
    the deadline's timer reach the worker in one workflow task (the worker down across the
    deadline), where the SDK applies the step first and the watch saw the deadline met.

    ``closing_is_late`` (lean-case-v13, LATE_ACTIONS_JUDGED): a case closed after the deadline
    (a 撤诉 sent late) with its step never done has not met it either — unless the round's
    reassignment (a 退单 in time) began before it. Before, the closed case met every deadline:
    a withdrawal applied in the deadline timer's task erased the unit's breach."""
    if not deadline_met(state, kind, round_):
        return False
    if state.round != round_:
        return True
    due, done = deadline_of(state, kind), _MET_AT[kind](state)
    if state.status is Status.CLOSED:
        if not closing_is_late or done is not None or due is None or state.closed_at is None:
            return True
        pending = state.reassignment
        return state.closed_at <= due or (pending is not None and pending.started_at < due)
    return due is None or done is None or done <= due


def deadline_owed(
    state: CaseState, kind: DeadlineKind, round_: int, now: datetime, *,
    ends_at_reassignment: bool, timed: bool = False, closing_is_late: bool = False,
) -> bool:
    """Is this deadline of round ``round_`` still its unit's to meet at ``now``? Not once met
    (:func:`deadline_met`) and, when ``ends_at_reassignment`` (cases since lean-case-v11,
    DEADLINES_END_AT_REASSIGNMENT), not while the case is being reassigned (改派中: after a
    退单, 重办, 提级办 or 二次交办) if the reassignment came before the deadline: its unit can no
    longer act on the case, and the next round has deadlines of its own. Before, a deadline
    passing in the centre's window to reassign was recorded as the returning unit's breach
    (and put it on the supervision ladder).

    A deadline already passed when the case is seen reassigning (``now``, the case's clock, at
    or after it) stays owed, and its watch records the breach: the unit was late before it let
    go. That happens when the deadline's timer and a later return reach the worker in one
    workflow task (a worker down or behind), where the SDK applies the signal first.

    ``timed`` (cases since lean-case-v12, ACTIONS_TIMED_WHEN_SENT): the case's steps are timed
    when their requests were sent (``Actor.sent_at``), and so judged: a deadline is met only
    by a step done by it (:func:`deadline_met_in_time`), and the reassignment ends the watch
    if it started before the deadline, not if the worker saw it before. Before, a step the
    worker handled after the deadline met it — a 签收 an hour late while the worker was down
    was never a breach — and a 退单 sent in time but handled late was the unit's breach."""
    if ends_at_reassignment and state.status is Status.REASSIGNING and state.round == round_:
        due = deadline_of(state, kind)
        pending = state.reassignment
        since = pending.started_at if timed and pending is not None else now
        if due is None or since < due:
            return False
    if timed:
        return not deadline_met_in_time(state, kind, round_, closing_is_late=closing_is_late)
    return not deadline_met(state, kind, round_)


def contribution_overdue_recorded(state: CaseState, co: CoHandler) -> bool:
    """Has the case recorded ``contribution_overdue`` for this co-handler's due?"""
    due = co.due.isoformat() if co.due is not None else None
    return any(
        e.kind is EventKind.CONTRIBUTION_OVERDUE
        and e.data.get("department_id") == co.department_id
        and e.data.get("due") == due
        for e in state.events
    )


def breach_recorded(state: CaseState, kind: DeadlineKind, deadline: datetime) -> bool:
    """Has the case recorded this deadline as breached (超时)?"""
    return any(b.kind is kind and b.deadline == deadline for b in state.breaches)


def breach_recorded_since(state: CaseState, kind: DeadlineKind, deadline: datetime) -> bool:
    """Has the case recorded a breach of this kind at ``deadline`` or at a deadline it was
    moved to since (cases since lean-case-v16, ONE_BREACH_PER_WATCH)? A watch waiting for
    ``deadline`` ends there: with the worker up, the first breach of a round's deadline ends its
    watch, and a deadline moved in time and then missed is that breach. Two approvals applied in
    one task (the worker down) — the first in time, the second after the deadline the first
    set — record that deadline's breach at the second, and the watch, still holding the first
    deadline, watched the third on and recorded a second breach."""
    return any(b.kind is kind and b.deadline >= deadline for b in state.breaches)


def breached_before(state: CaseState, kind: DeadlineKind, at: datetime) -> bool:
    """Did deadline ``kind`` pass, its step owed, before an approval timed ``at`` moves it
    (cases since lean-case-v14, MOVED_DEADLINE_JUDGED)? With the worker up the deadline's
    timer records 超时 at the deadline and the late approval comes after; with the worker down
    across the deadline the approval and the timer reach it in one workflow task, the SDK
    applies the approval first, and before v14 the watch followed the moved deadline: the breach
    was never recorded. Not when the step was done in time, nor when it is already recorded."""
    due = deadline_of(state, kind)
    if due is None or at <= due or breach_recorded(state, kind, due):
        return False
    return deadline_owed(  # as the watch of a case of this epoch judges it
        state, kind, state.round, at, ends_at_reassignment=True, timed=True, closing_is_late=True
    )


def verdict_too_late(state: CaseState, at: datetime) -> Refusal | None:
    """A rating (or the centre's 回访 verdict) given after the rating window (cases since
    lean-case-v13, LATE_ACTIONS_JUDGED). With the worker up the window's timer closes the case
    未评价 first and the verdict is refused as the case is closed; applied in the timer's
    task (the worker down across the window's end), the SDK applies the verdict first and an
    不满意 sent too late started 重办."""
    if state.reply is None or state.deadlines is None or state.status is not Status.REPLIED:
        return None
    window_end = state.reply.at + timedelta(hours=state.deadlines.rating_window_hours)
    if at <= window_end:
        return None
    return Refusal(
        "rating_window_passed",
        f"the rating window of {state.case_id} ended at {window_end.isoformat()}: "
        "the case closes not rated",
        since=LATE_ACTIONS_JUDGED,
    )


# --- the check of each message ---------------------------------------------------------------

Check = Callable[[CaseState, Any, datetime], Refusal | None]


def _timeless(check: Callable[[CaseState, Any], Refusal | None]) -> Check:
    return lambda state, action, _now: check(state, action)


CHECKS: dict[CaseSignal, Check] = {
    CaseSignal.ACCEPT: _timeless(check_accept),
    CaseSignal.CONTACT: _timeless(check_contact),
    CaseSignal.REPLY: _timeless(check_reply),
    CaseSignal.DISPATCH: _timeless(check_dispatch),
    CaseSignal.RATE: _timeless(check_rating),
    CaseSignal.CALLBACK: _timeless(check_callback),
    CaseSignal.RETURN: check_return,
    CaseSignal.DECIDE_RETURN: _timeless(check_return_decision),
    CaseSignal.ORDER_SECOND_ASSIGNMENT: check_second_assignment,
    CaseSignal.HAND_OVER: _timeless(check_handover),
    CaseSignal.RAISE_LEVEL: _timeless(check_raise_level),
    CaseSignal.REQUEST_EXTENSION: check_extension,
    CaseSignal.DECIDE_EXTENSION: _timeless(check_extension_decision),
    CaseSignal.ADD_CO_HANDLERS: check_co_handlers_at,
    CaseSignal.CONTRIBUTE: _timeless(check_contribution),
    CaseSignal.WAIVE_CO_HANDLER: _timeless(check_waive),
    CaseSignal.SUPERVISE: check_supervision,
    CaseSignal.SUPPLEMENT: _timeless(check_supplement),
    CaseSignal.REPEAT_REPORT: _timeless(check_repeat_report),
    CaseSignal.WITHDRAW: _timeless(check_withdraw),
    CaseSignal.ESCALATION_STEP: _timeless(check_escalation_step),
}
"""The rule each action must pass, by message name; the workflow records the refusal.
(Repeat reports come from intake: de-duplicated by id, and bounded in number.)"""
