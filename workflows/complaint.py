"""ComplaintWorkflow: one durable workflow per case (工单), workflow id = case number.

The case's Temporal history is its authoritative event log. The workflow routes the case,
sets its deadlines, keeps a durable timer per deadline, applies (or records the refusal of)
every human action arriving as a signal, waits for the citizen's rating and closes. Returns,
rehandling and raising a level go through the reassignment child; breaches, repeat reports,
repeated dissatisfaction and supervisors start the escalation child (the supervision ladder).
Every state change is projected into PostgreSQL by an idempotent activity.

Changing this file: cases already running replay their histories against the new code, so a
change in the commands a path issues must be guarded with a patch (see the patch ids below),
asked through ``self._patched`` and brought by a new epoch (workflows/patches.py: a case
takes every patch of its epoch and the ones before as given, and asks none), and recorded
under tests/histories/.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    FailureError,
    WorkflowAlreadyStartedError,
)

with workflow.unsafe.imports_passed_through():
    from activities.deadlines import DeadlineActivities
    from activities.planning import PlanningActivities
    from activities.refile import (
        NOT_A_REPORT,
        RefileActivities,
        RefileBatch,
        Refiled,
        RefileRequest,
    )
    from activities.routing import RoutingActivities
    from jiesu.case import lifecycle
    from jiesu.case.domain import (
        CASE_STATE_PAGE_QUERY,
        CASE_STATE_QUERY,
        CASE_WORKFLOW,
        CENTRE_ID,
        DISPATCHER_ROLES,
        HISTORY_WARN_BYTES,
        HISTORY_WARN_EVENTS,
        SIGNAL_PAYLOADS,
        SYSTEM_ACTOR,
        AcceptAction,
        Actor,
        Assignment,
        CallbackAction,
        CaseEvent,
        CaseOutcome,
        CaseSignal,
        CaseStart,
        CaseState,
        CoHandler,
        CoHandlersAction,
        ContactAction,
        ContributionAction,
        DeadlineKind,
        DeadlineRequest,
        Deadlines,
        DepartmentRef,
        DirectAnswer,
        DispatchAction,
        Escalation,
        EscalationLevel,
        EscalationStep,
        EscalationTrigger,
        EventKind,
        Extension,
        ExtensionAction,
        ExtensionDecisionAction,
        HandoverAction,
        PendingReassignment,
        PendingReturn,
        PlanRequest,
        RaiseLevelAction,
        Rating,
        RatingAction,
        ReassignmentResult,
        ReassignReason,
        RepeatReport,
        Reply,
        ReplyAction,
        ReplyOutcome,
        Resolution,
        ReturnAction,
        ReturnDecisionAction,
        Role,
        RouteRequest,
        RouteResult,
        SecondAssignmentAction,
        SpotSolution,
        StatePage,
        Status,
        SupervisionAction,
        SupervisionForm,
        SupplementAction,
        WaiveAction,
        WithdrawAction,
    )
    from workflows import messages
    from workflows.activity_options import R, run_activity, run_local
    from workflows.case_record import CaseRecord
    from workflows.deadline_watch import lapsed, watch_deadline
    from workflows.ladder import BREACH_TRIGGERS, Ladder
    from workflows.projector import Projector, failure_text
    from workflows.reassignment import choose_department

# workflow.patched ids: each guards a change in the commands that older cases did not issue.
PATCH_ESCALATION = "escalation-ladder-v1"  # breaches start the supervision ladder
PATCH_REHANDLE = "rehandle-v1"  # an unsatisfied rating sends the case back (重办)
PATCH_FRESH_ROUND = "fresh-round-after-queue-v1"  # dispatch after the bound sets new deadlines
# Hardened message handling (issue 9): undecodable messages are recorded as rejections, and the
# projector settles before it issues commands, so that the commands of a workflow task do not
# depend on how Temporal batched its events into activations (see _settle).
PATCH_HARDENED = "hardened-messages-v1"
# Issue 14: a return may wait for the centre's approval (退单审核, when the recorded policy asks
# for it); an extension request undecided by its decision deadline is approved (see
# _extension_decision_due); the ladder's accountability step creates the accountability record.
PATCH_RETURN_APPROVAL = "return-approval-v1"
PATCH_EXTENSION_DUE = "extension-decision-due-v1"
PATCH_ACCOUNTABILITY = "accountability-record-v1"
PATCH_CONTRIBUTION_DUE = "contribution-due-v1"  # a co-handler's deadline has a timer
PATCH_RETURN_DUE = "return-decision-due-v1"  # a pending return has a decision deadline
# Lean case (issue 13): one local planning activity instead of routing + deadlines, local
# projections (their results carry the events), and the first projection after the plan.
# Implies PATCH_HARDENED (a lean case never records that marker).
PATCH_LEAN = "lean-case-v1"
# Lean case v2 (issue 13) = v1 + sparse search attributes (workflows/projector.py): written
# when who holds the case, its deadlines, breaches or level change, or when it closes — not on
# every step. A new case records this one marker instead of v1's (one marker either way);
# cases with v1's marker keep v1's behaviour.
PATCH_LEAN_V2 = "lean-case-v2"
PATCH_INACTION = "inaction-signal-v1"  # a case linked to replied history may start the ladder
PATCH_DIRECT_ANSWER = "direct-answer-v1"  # 即时办结: answered at intake, no routing
PATCH_ON_THE_SPOT = "grid-on-the-spot-v1"  # 就地解决: a grid worker's patrol report, closed at once
# Rules added to jiesu.case.lifecycle while cases were running carry their patch id
# (Refusal.since): _message applies such a refusal only when patched. Hostile or duplicated
# messages (review-wf):
PATCH_DISTINCT_CO_HANDLERS = lifecycle.DISTINCT_CO_HANDLERS  # 会办 names a department once
# 撤诉 in the case's first workflow task (or while it is planned) closes it for good: the plan
# sets the deadlines but assigns nobody, starts no deadline timers (see _closed_meanwhile).
PATCH_CLOSED_WHILE_PLANNING = "closed-while-planning-v1"
# 撤诉 while a new round's deadlines are computed (after 退单/提级办/二次交办/dispatch) keeps
# the case closed: the round is not started, nobody assigned.
PATCH_CLOSED_DURING_NEW_ROUND = "closed-during-new-round-v1"
# One reassignment at a time (lifecycle.reassignment_pending): a return, raise, second
# assignment or dispatch while one is pending (or its new round is being set up) is refused.
PATCH_ONE_REASSIGNMENT = lifecycle.ONE_REASSIGNMENT_AT_A_TIME
# A ladder step counts once, upwards, from the ladder climbing (lifecycle.check_escalation_step):
# a duplicated or forged escalation_step is refused stale_step.
PATCH_LADDER_STEPS_ONCE = lifecycle.LADDER_STEPS_ONCE
# A rating (or callback) after an applied 二次交办 of the replied case, before the new round,
# is refused (lifecycle.verdict_overtaken) instead of being applied and then cleared.
PATCH_VERDICT_OVERTAKEN = lifecycle.VERDICT_OVERTAKEN
# A projector that died (a refused local projection before local-projection-failure-v1) is
# started again when the case closes, instead of its error failing the case's workflow.
PATCH_REVIVE_PROJECTOR = "revive-projector-v1"
# What the case records after its close has been projected (the escalation_stopped of a ladder
# whose child ends after the case closed: a withdrawal, or a rating before a stopped ladder's
# child ended) is projected before the workflow ends; before, the projector had ended with the
# close and the read model missed it for good (bench/faults.py run 9).
PATCH_PROJECT_AFTER_CLOSE = "project-after-close-v1"
# A case linked to replied history (不作为信号) decides the patches it asks for after its
# planning local activity (inaction-signal-v1; the ladder's, when it is supervised at once) in
# its first workflow task, before that activity. Asked after it, a patch's marker is recorded
# in whatever task the worker went on in — a loaded worker may complete the task with the
# activity's marker and go on in a new one — while a replay goes on in the marker's task and,
# looking for the patch only there, fails (TMPRL1100; the fault harness's run 14,
# tests/test_patches_before_plan.py).
PATCH_DECIDED_BEFORE_PLAN = "linked-patches-before-plan-v1"
# A department's action that reaches a case still being planned waits for the plan, instead of
# being refused not_assigned: the read model can show the case assigned before its history
# does (the worker projected the plan, then died before its task completed; the next worker
# plans again, with the action already in the history ahead of it). Fault run 15's
# JS20261123-000235: accept answered 202, then refused; tests/test_actions_after_plan.py.
PATCH_ACTIONS_AFTER_PLAN = "actions-wait-for-plan-v1"
# A case withdrawn in its first task (撤诉 with its start) asks closed-while-planning-v1 before
# its planning local activity, not after it: asked after it, the marker went to the task a
# loaded worker went on in, and a replay (a query's, a new worker's) failed with TMPRL1100 —
# fresh-clone CI, tests/test_hostile_messages.py, 2026-11-23; the same cause as
# PATCH_DECIDED_BEFORE_PLAN. Asked only when the case is already closed.
PATCH_CLOSED_BEFORE_PLAN = "closed-before-plan-v1"
# A case records ``history_large`` when its history passes Temporal's warning limits, and again
# at each further multiple of them (10, 20, 30, 40 MiB or 10,240 … 40,960 events), so that
# `jiesu doctor` finds every such open case in the read model — visibility keeps no history
# size for a running workflow. Checked on every message: signals are what grow a history
# (a flood of junk signals included, which records nothing else past the refusals' bound).
PATCH_HISTORY_WATCH = "history-watch-v1"
HISTORY_MARKS = 4
# The state query's answer at most (JSON bytes), well under Temporal's 2 MB per payload.
STATE_QUERY_BYTES = 1_500_000
CASE_TOO_LARGE = "CaseTooLarge"  # the query's failure type
# The events of one state_page answer at most (JSON bytes; one event is always given).
STATE_PAGE_BYTES = 1_000_000
# Since this one (epoch lean-case-v6) a reassignment child that ends without a choice — an
# operator terminated or cancelled it, or it failed — is recorded (``reassignment_failed``) and
# the case goes to the centre's dispatch queue (待派单) in a new round, as when the child's own
# routing refuses the case. Before, its failure reached the case and failed its workflow: the
# case stood ``reassigning`` for ever (tests/test_reassignment_child_ended.py).
PATCH_REASSIGNMENT_CHILD_ENDED = "reassignment-child-ended-v1"
# Since this one (epoch lean-case-v6) a new round (改派, 提级办, 二次交办, the reassignment
# bound's queue) releases the co-handlers (会办) still owing a contribution to the round that
# ended: they stay convened and owe nothing (``co_handler_waived`` by the system, ``reason``
# ``round_ended``, or ``new_lead`` for a co-handler the round gives the case to). Before, they
# blocked the new lead's reply (``co_handlers_pending``), their contribution timers had stopped
# with the round, and a co-handler made the new lead waited on its own contribution
# (tests/test_co_handlers_of_ended_round.py).
PATCH_ROUND_RELEASES_CO_HANDLERS = "round-releases-co-handlers-v1"
# Since this one (epoch lean-case-v8) no deadline timer runs while the case waits in the
# centre's dispatch queue (待派单: routing found no department, or a reassignment ended there),
# and a dispatch out of the queue sets the unit's deadlines from the dispatch (人工派单 is when
# the unit's clock starts). Before, the deadlines of receipt (or of the round that ended in the
# queue) ran against the centre: a breach was charged to the centre and started a supervision
# ladder against the centre itself, and the unit got a round whose accept deadline had passed
# (tests/test_queue_deadlines.py). The queue after the reassignment bound already had fresh
# deadlines at dispatch (fresh-round-after-queue-v1) and keeps its new round.
PATCH_DEADLINES_FROM_DISPATCH = "deadlines-from-dispatch-v1"
# Since this one (epoch lean-case-v9) a dispatch out of the queue that a withdrawal (撤诉)
# overtook — the case took the dispatch, then closed while the unit's deadlines were computed —
# is recorded refused (``rejected``, ``wrong_status``, with the dispatcher's request id), so the
# dispatcher is answered from the case's record and the auditor sees it as any refused action.
# Before, the dispatch left no trace: no event of it, and the API, finding none, answered only
# once its apply window had passed, from the case as it then stood, and a retry from the closed
# case (tests/test_queue_dispatch_races.py).
PATCH_DISPATCH_OVERTAKEN = "dispatch-overtaken-recorded-v1"
# Since this one (epoch lean-case-v10) a reassignment whose child cannot start because another
# client started a workflow under its id first (``<case>-reassign-<n>``) is recorded failed
# (``reassignment_failed``) and the case goes to the centre's queue, as when the child ends
# without a choice (PATCH_REASSIGNMENT_CHILD_ENDED). Before, the start's failure ended the
# case's workflow, failed, at the unit's return (tests/test_queue_ladder_hold.py).
PATCH_REASSIGNMENT_CHILD_ID_TAKEN = "reassignment-child-id-taken-v1"


@workflow.defn(name=CASE_WORKFLOW)
class ComplaintWorkflow:
    # The signal names, for clients: ``handle.signal(ComplaintWorkflow.accept, action)``.
    accept = CaseSignal.ACCEPT
    contact = CaseSignal.CONTACT
    reply = CaseSignal.REPLY
    dispatch = CaseSignal.DISPATCH
    rate = CaseSignal.RATE
    callback = CaseSignal.CALLBACK
    return_case = CaseSignal.RETURN
    decide_return = CaseSignal.DECIDE_RETURN
    order_second_assignment = CaseSignal.ORDER_SECOND_ASSIGNMENT
    hand_over = CaseSignal.HAND_OVER
    raise_level = CaseSignal.RAISE_LEVEL
    request_extension = CaseSignal.REQUEST_EXTENSION
    decide_extension = CaseSignal.DECIDE_EXTENSION
    add_co_handlers = CaseSignal.ADD_CO_HANDLERS
    contribute = CaseSignal.CONTRIBUTE
    waive_co_handler = CaseSignal.WAIVE_CO_HANDLER
    supervise = CaseSignal.SUPERVISE
    repeat_report = CaseSignal.REPEAT_REPORT
    supplement = CaseSignal.SUPPLEMENT
    withdraw = CaseSignal.WITHDRAW
    escalation_step = CaseSignal.ESCALATION_STEP

    @workflow.init
    def __init__(self, start: CaseStart) -> None:
        self._start = start
        self._case = CaseRecord.opened(start)
        self._state, self._record = self._case.state, self._case.record
        self._patched = self._case.patched  # workflow.patched, for a case since v3 too
        self._watchers: list[asyncio.Task[None]] = []
        self._reassign_next: tuple[ReassignReason, Actor] | None = None
        self._upheld_by_lapse_at: datetime | None = None  # see _reassignment_decided_at
        # the unit named by a 二次交办 or a 移交: the reassignment child takes it as its choice
        self._second_assignment_to: ReassignmentResult | None = None
        self._handover: HandoverAction | None = None  # 移交 taken, judged in the loop
        # a 会办 (or a 督办 of the form 会办) taken, its units looked up in the loop (v37)
        self._convening: CoHandlersAction | SupervisionAction | None = None
        self._repeat_ids: set[str] = set()
        self._late_reports: list[RepeatReport] = []  # see _refile_late
        self._refiled = 0
        self._queued_after_bound = False
        self._dispatch_from_the_bound = False  # its unit looked up (v39: still in the queue)
        self._dispatched: ReassignmentResult | None = None
        self._dispatched_in_round = False  # the pending dispatch keeps the round (see _dispatch)
        self._dispatch_waiting = False  # decided, and the main loop has not begun it yet
        self._request_ids: set[str] = set()  # actions already applied or refused (idempotency)
        self._history_marks = 0  # warning marks of the history already recorded
        self._held: list[tuple[str, Sequence[RawValue]]] = []  # see PATCH_ACTIONS_AFTER_PLAN
        self._deferred: list[tuple[str, Sequence[RawValue]]] = []  # see _waits_for_loop
        # Decided once, in the first workflow task: cases started before the patch keep the
        # old behaviour for their whole life, so their histories replay. A case since
        # lean-case-v3 asks none of the patches before it again (workflows/patches.py).
        self._patched.start()
        lean_v2 = self._patched(PATCH_LEAN_V2)  # implies v1: its marker is not recorded
        self._lean = lean_v2 or self._patched(PATCH_LEAN)
        self._hardened = self._lean or self._patched(PATCH_HARDENED)
        # the case's rule of 会办, in its state for the API and console to judge by (no marker:
        # a patch of an epoch is never asked; a case before lean-case-v8 answers False)
        self._state.reconvenes_released = self._patched(lifecycle.RECONVENE_RELEASED)
        self._ladder = Ladder(self._case, on_step=self._on_escalation_step)
        self._projector = Projector(
            self._case, settle=self._hardened, local=self._lean,
            sparse=lean_v2, ladder_owes=self._ladder.owes_an_order,
        )  # fmt: skip
        self._case.record_received(start)
        self._planning = self._lean  # until run() has planned (or settled) the case

    # --- the case's life ----------------------------------------------------------------

    @workflow.run
    async def run(self, start: CaseStart) -> CaseOutcome:
        spot = start.case_facts.solved_on_the_spot
        if start.direct_answer is not None and self._patched(PATCH_DIRECT_ANSWER):
            # settled at intake: answered first, so that the first projection carries it
            await self._answer_directly(start, start.direct_answer)
            projector = asyncio.create_task(self._projector.run_until_closed())
        elif spot is not None and self._patched(PATCH_ON_THE_SPOT):
            await self._solve_on_the_spot(start, spot)
            projector = asyncio.create_task(self._projector.run_until_closed())
        else:
            projector = await self._open(start)
        self._release_held()

        while self._state.status is not Status.CLOSED:
            await workflow.wait_condition(
                lambda: (
                    self._state.status in (Status.REPLIED, Status.CLOSED)
                    or self._reassign_next is not None
                    or self._dispatched is not None
                    or self._handover is not None
                    or self._convening is not None
                )
            )
            if self._reassign_next is not None:
                await self._reassign(*self._reassign_next)
            elif self._handover is not None:
                await self._hand_over(self._handover)
            elif self._convening is not None:
                await self._convene_looked_up(self._convening)
            elif self._dispatched is not None:
                await self._carry_out_dispatch(self._dispatched)
            elif self._state.status is Status.REPLIED:
                await self._rating_round()

        if self._convening is not None:  # the case closed first: refused (wrong_status)
            await self._convene_looked_up(self._convening)
        self._release_deferred()  # the case closed first: each is answered (refused) all the same
        await self._ladder.end()
        await asyncio.gather(*self._watchers)
        await self._closed_projected(projector)
        await self._refile_late_reports()
        s = self._state
        return CaseOutcome(
            case_id=s.case_id, status=s.status, resolution=s.resolution, closed_at=s.closed_at
        )

    async def _closed_projected(self, projector: asyncio.Task[None]) -> None:
        """Wait until the read model has the closed case. A lean case of the code before
        ``local-projection-failure-v1`` lost its projector to a refused projection; awaiting it
        re-raised that error and failed the case's workflow at its close (tests/test_witness.py).
        Such a projector is started again: it projects what the case did since, then the close.
        Events recorded after the close was projected (the ladder's stop, once its child
        ended) are projected too (``project-after-close-v1``)."""
        try:
            await projector
        except ApplicationError:
            if not self._patched(PATCH_REVIVE_PROJECTOR):
                raise  # as such a case ended before the patch: failed
            self._projector.revived = True
            await self._projector.run_until_closed()
        # asked only when something is left, so a case that ended fully projected replays as it ran
        if self._projector.behind and self._patched(PATCH_PROJECT_AFTER_CLOSE):
            await self._projector.run_until_closed()

    async def _open(self, start: CaseStart) -> asyncio.Task[None]:
        """派单 and 时限: routed by the rules (or to the centre's queue), with its deadlines;
        returns the running projector."""
        if self._lean:  # planned first, so that the first projection carries the plan too
            self._decide_before_plan(start)
            if self._state.status is Status.CLOSED and self._patched(PATCH_CLOSED_BEFORE_PLAN):
                self._patched(PATCH_CLOSED_WHILE_PLANNING)  # its answer, kept for after the plan
            await self._plan(start)
            projector = asyncio.create_task(self._projector.run_until_closed())
        else:
            projector = asyncio.create_task(self._projector.run_until_closed())
            route, deadlines = await asyncio.gather(
                self._route(start),
                run_activity(
                    DeadlineActivities.compute_deadlines,
                    DeadlineRequest(received_at=start.received_at, urgency=start.urgency),
                ),
            )
            self._case.set_deadlines(deadlines)
            if not self._closed_meanwhile(PATCH_CLOSED_WHILE_PLANNING):
                self._case.assign(route, SYSTEM_ACTOR)
        if self._closed_meanwhile(PATCH_CLOSED_WHILE_PLANNING):
            return projector
        self._start_watchers()
        self._link_history(start)
        return projector

    async def _answer_directly(self, start: CaseStart, answer: DirectAnswer) -> None:
        """即时办结: the operator answered the consultation on the call from the knowledge
        base. The centre holds the case, answered at once (so on time); it is rated like any
        reply — at once when the caller gave a verdict on the call (recorded as a callback)."""
        deadlines = await run_activity(
            DeadlineActivities.compute_deadlines,
            DeadlineRequest(received_at=start.received_at, urgency=start.urgency),
        )
        self._case.set_deadlines(deadlines)
        if self._closed_meanwhile(PATCH_CLOSED_WHILE_PLANNING):
            return
        s, now, operator = self._state, workflow.now(), start.registered_by
        s.assignment = Assignment(
            department_id=CENTRE_ID,
            department_name=self._case.centre_name(),
            assigned_at=now,
            by_rule=False,
        )
        s.accepted_at = s.contacted_at = now
        s.direct_answer = answer
        s.reply = Reply(
            outcome=ReplyOutcome.RESOLVED, text=answer.text, evidence=[], at=now, by=operator
        )
        s.status = Status.REPLIED
        self._record(
            EventKind.ANSWERED_DIRECTLY,
            operator,
            department_id=CENTRE_ID,
            answer_id=answer.answer_id,
            version=answer.version,
            question=answer.question,
            text=answer.text,
            source=answer.source,
            valid_until=answer.valid_until.isoformat() if answer.valid_until else None,
        )
        if answer.rating is not None:
            self._rated(operator, answer.rating, "given on the call", EventKind.CALLBACK)

    async def _plan(self, start: CaseStart) -> None:
        """派单 and 时限 in one local activity (cases since PATCH_LEAN)."""
        request = PlanRequest(
            route=_route_request(start),
            deadlines=DeadlineRequest(received_at=start.received_at, urgency=start.urgency),
        )
        plan = await run_local(PlanningActivities.plan_case, request)
        if plan.routing_failure is not None:
            reason = messages.printable(plan.routing_failure, 500)
            self._record(EventKind.ROUTING_FAILED, SYSTEM_ACTOR, reason=reason)
        self._case.set_deadlines(plan.deadlines)
        if not self._closed_meanwhile(PATCH_CLOSED_WHILE_PLANNING):
            self._case.assign(plan.route, SYSTEM_ACTOR)

    async def _solve_on_the_spot(self, start: CaseStart, spot: SpotSolution) -> None:
        """就地解决: a grid worker found the problem on patrol and solved it at once, with
        evidence. The grid holds the case; it closes at once (no citizen to rate it)."""
        deadlines = await run_activity(
            DeadlineActivities.compute_deadlines,
            DeadlineRequest(received_at=start.received_at, urgency=start.urgency),
        )
        self._case.set_deadlines(deadlines)
        if self._closed_meanwhile(PATCH_CLOSED_WHILE_PLANNING):
            return
        s, now, worker = self._state, workflow.now(), start.registered_by
        grid = start.case_facts.grid_id
        s.assignment = Assignment(
            department_id=grid, department_name=grid, assigned_at=now, by_rule=False
        )
        s.accepted_at = s.contacted_at = now
        s.solved_on_the_spot = spot
        evidence = [str(url) for url in spot.evidence]
        s.reply = Reply(
            outcome=ReplyOutcome.RESOLVED, text=spot.text, evidence=evidence, at=now, by=worker
        )
        s.status = Status.REPLIED
        self._record(
            EventKind.SOLVED_ON_THE_SPOT, worker, department_id=grid, text=spot.text,
            evidence=evidence,
        )  # fmt: skip
        self._case.close(Resolution.SOLVED_IN_GRID, worker)

    def _closed_meanwhile(self, patch: str) -> bool:
        """撤诉 while the case awaited an activity: it stays closed — what would reopen it
        (assigning, the deadline timers) is skipped. Cases from before ``patch`` replay as
        they ran (they reopened); the patch is asked only on this path."""
        return self._state.status is Status.CLOSED and self._patched(patch)

    def _decide_before_plan(self, start: CaseStart) -> None:
        """PATCH_DECIDED_BEFORE_PLAN: the patches ``_link_history`` will ask for after the plan,
        asked now (a patch asked again answers as it did the first time, with no new marker)."""
        history = start.history
        if history is None or not self._patched(PATCH_DECIDED_BEFORE_PLAN):
            return
        if self._patched(PATCH_INACTION) and history.supervise:
            self._ladder.decide_patches(EscalationTrigger.REPEATED_ALTHOUGH_REPLIED)

    def _link_history(self, start: CaseStart) -> None:
        """不作为信号: the same problem's earlier cases were replied to and closed, and it is
        reported again; from the policy's number of reports its unit goes under supervision.
        (Cases registered before intake found such history have none: nothing changes.)"""
        history = start.history
        if history is None or not self._patched(PATCH_INACTION):
            return
        self._state.earlier_cases = list(history.case_ids)
        self._record(
            EventKind.LINKED_TO_HISTORY,
            SYSTEM_ACTOR,
            case_ids=history.case_ids,
            reports=history.reports,
            window_days=history.window_days,
            reports_before_supervision=history.reports_before_supervision,
        )
        if history.supervise:
            self._ladder.escalate(EscalationTrigger.REPEATED_ALTHOUGH_REPLIED)

    async def _route(self, start: CaseStart) -> RouteResult:
        """派单 by the routing rules; a case whose data routing refuses goes to the centre."""
        request = _route_request(start)
        try:
            return await run_activity(RoutingActivities.route_case, request)
        except ActivityError as err:
            self._record(EventKind.ROUTING_FAILED, SYSTEM_ACTOR, reason=failure_text(err))
            centre = self._case.centre_name()
            return RouteResult(department_id=CENTRE_ID, department_name=centre, by_rule=False)

    async def _rating_round(self) -> None:
        """评价: wait for the verdict; unsatisfied → rehandle (重办) or, at last, close."""
        assert self._state.reply is not None and self._state.deadlines is not None
        window_end = self._state.reply.at + timedelta(
            hours=self._state.deadlines.rating_window_hours
        )
        remaining = window_end - workflow.now()
        if remaining > timedelta(0):
            try:
                await workflow.wait_condition(
                    lambda: (
                        self._state.rating is not None
                        or self._state.status is not Status.REPLIED
                        or self._reassign_next is not None  # 二次交办 on review of the reply
                    ),
                    timeout=remaining,
                    timeout_summary="rating window",
                )
            except TimeoutError:
                pass
        if self._state.status is not Status.REPLIED or self._reassign_next is not None:
            return
        if self._state.rating is Rating.UNSATISFIED and self._rehandle_allowed():
            self._rehandle()
            return
        resolution = Resolution.RATED if self._state.rating else Resolution.NOT_RATED
        self._case.close(resolution)
        self._release_deferred()

    def _rehandle_allowed(self) -> bool:
        assert self._state.deadlines is not None
        limit = self._state.deadlines.max_unsatisfied_rounds
        return self._state.unsatisfied_rounds < limit and self._patched(PATCH_REHANDLE)

    def _rehandle(self) -> None:
        """重办: back through the reassignment child, with new deadlines and a new rating."""
        assert self._state.deadlines is not None
        self._state.unsatisfied_rounds += 1
        rounds = self._state.unsatisfied_rounds
        self._record(
            EventKind.REHANDLE_STARTED,
            SYSTEM_ACTOR,
            unsatisfied_rounds=rounds,
            reason=self._state.rating_comment,
        )
        if rounds >= self._state.deadlines.max_unsatisfied_rounds:
            other = self._state.escalation
            self._ladder.escalate(EscalationTrigger.DISSATISFACTION)
            if (
                other is not None
                and other.active
                and other.trigger is not EscalationTrigger.DISSATISFACTION
                and self._patched(lifecycle.REHANDLE_LADDER_AFTER_THE_OTHER)
            ):
                self._watchers.append(asyncio.create_task(self._rehandle_ladder_after(other)))
        self._reassign_next = (ReassignReason.REHANDLE, SYSTEM_ACTOR)

    async def _rehandle_ladder_after(self, other: Escalation) -> None:
        """The last 重办 allowed, while another ladder climbed (a 并单 ladder started after the
        reply, a supervisor's 督办): the dissatisfaction ladder could not start beside it, and
        that ladder ends at the rehandle's new round — the rehandling round was supervised by
        nobody (tests/test_v25_attacks.py). Since lean-case-v27
        (REHANDLE_LADDER_AFTER_THE_OTHER) it starts once the other has stopped, if the case is
        still open and its unit has not replied since."""
        s = self._state
        await workflow.wait_condition(lambda: not other.active or s.status is Status.CLOSED)
        if s.status not in (Status.CLOSED, Status.REPLIED):
            # in the queue (the rehandle found no unit by rule): held there, not capped for
            # good (lean-case-v28; before, it stayed at 督办 against the unit dispatched)
            self._ladder.escalate(EscalationTrigger.DISSATISFACTION, held_in_queue=True)

    # --- deadlines ----------------------------------------------------------------------

    def _start_watchers(self) -> None:
        if self._state.status is Status.DISPATCHING and self._patched(
            PATCH_DEADLINES_FROM_DISPATCH
        ):
            return  # in the centre's queue: the unit's deadlines start when it is dispatched
        self._watchers.extend(
            self._watch(kind)
            for kind in DeadlineKind
            if lifecycle.deadline_of(self._state, kind) is not None
        )

    def _watch(self, kind: DeadlineKind) -> asyncio.Task[None]:
        """A watch of this round's deadline ``kind``, by the rules of the case's epoch."""
        ends = self._patched(lifecycle.DEADLINES_END_AT_REASSIGNMENT)  # an epoch's: no marker
        timed = self._patched(lifecycle.ACTIONS_TIMED_WHEN_SENT)
        closing = self._patched(lifecycle.LATE_ACTIONS_JUDGED)
        judged = self._patched(lifecycle.MOVED_DEADLINE_JUDGED)
        once = self._patched(lifecycle.ONE_BREACH_PER_WATCH)
        settles = self._patched(lifecycle.WATCH_SETTLES_FIRST)
        first = self._looked_up if self._patched(lifecycle.LOOKED_UP_IN_ORDER) else None
        watches = {
            "ends_at_reassignment": ends, "timed": timed, "closing_is_late": closing,
            "breach_ends": judged, "any_breach_ends": once, "settles": settles, "first": first,
        }  # fmt: skip
        return asyncio.create_task(
            watch_deadline(self._state, kind, self._state.round, self._breach, **watches)
        )

    def _breach(self, kind: DeadlineKind, deadline: datetime) -> None:
        """超时: recorded, and (since PATCH_ESCALATION) the unit goes on the ladder — unless
        the step is done, late (lean-case-v12: its time after the deadline), and nothing is
        left to supervise."""
        self._case.breach(kind, deadline)
        done = lifecycle.deadline_met(self._state, kind, self._state.round)
        if done and self._patched(lifecycle.ACTIONS_TIMED_WHEN_SENT):
            return
        if self._patched(PATCH_ESCALATION):
            self._ladder.escalate(BREACH_TRIGGERS[kind])

    # --- reassignment (退单 / 重办 / 提级办) ---------------------------------------------

    async def _reassign(self, reason: ReassignReason, actor: Actor) -> None:
        self._reassign_next = None
        s = self._state
        assert s.deadlines is not None
        decided = self._reassignment_decided_at(reason, actor)
        if s.status is Status.CLOSED and self._patched(lifecycle.CLOSED_NOT_REASSIGNED):
            # 撤诉 in the task that decided the reassignment (a 退单 and a withdrawal applied
            # together, the worker down): the case is closed, and stays so (lean-case-v20).
            # Before, the main loop went on and reassigned — or queued — the withdrawn case.
            self._release_deferred()
            return
        if reason is ReassignReason.RETURN and s.reassignments >= s.deadlines.max_reassignments:
            self._breached_before_queued(decided)
            self._to_centre_queue(actor)
            self._release_co_handlers(CENTRE_ID)
            climbing = s.escalation is not None and s.escalation.active
            self._ladder.escalate(EscalationTrigger.REASSIGNMENT_LIMIT)
            if climbing and self._patched(lifecycle.QUEUE_LADDER_AFTER_THE_UNITS):
                self._watchers.append(asyncio.create_task(self._queue_ladder_after_the_units()))
            self._release_deferred()  # they meet the queued case, as with the worker up
            return
        s.reassignments += 1
        n = s.reassignments
        child_id = f"{s.case_id}-reassign-{n}"
        s.status = Status.REASSIGNING
        started = self._case.time_of(actor)  # the 退单's or order's time (lean-case-v12)
        s.reassignment = PendingReassignment(
            n=n, reason=reason, child_id=child_id, started_at=decided  # at or before ``started``
        )
        with self._case.acting(started):
            self._record(
                EventKind.REASSIGNMENT_STARTED, actor, n=n, reason=reason.value, child_id=child_id
            )
        self._release_deferred()  # they meet the reassigning case, as with the worker up
        chosen, self._second_assignment_to = self._second_assignment_to, None
        try:
            result = await choose_department(
                s, n, reason, child_id, chosen, self._case.centre_name()
            )
        except ChildWorkflowError as err:  # it ended without a choice: terminated, failed
            if not self._patched(PATCH_REASSIGNMENT_CHILD_ENDED):
                raise  # as such a case ran before the patch: its workflow failed
            result = self._reassignment_failed(n, child_id, err)
        except WorkflowAlreadyStartedError as err:  # another client holds the child's id
            if not self._patched(PATCH_REASSIGNMENT_CHILD_ID_TAKEN):
                raise  # as such a case ran before the patch: its workflow failed
            result = self._reassignment_failed(n, child_id, err)
        s.reassignment = None
        if s.status is Status.CLOSED:  # withdrawn while the child was choosing
            return
        await self._new_round(await self._judged_choice(result, reason))

    async def _judged_choice(
        self, result: ReassignmentResult, reason: ReassignReason
    ) -> ReassignmentResult:
        """The child's choice as the case takes it (REASSIGN_CHOICE_JUDGED, lean-case-v26). The
        child takes the first ``choose`` that decodes, from any Temporal client: the API's
        check (check_reassign_choice) was the only one a choice met. One by somebody not a
        dispatcher is refused for them, and the centre's queue decides — as when the child
        ended without a choice; before, a citizen's forged choice picked the next unit
        (tests/test_v25_attacks.py). A choice of the centre itself puts the case in its queue
        (:meth:`_new_round`), not in the centre's hands as a unit's. Since lean-case-v29
        (CHOSEN_UNIT_CHECKED) a dispatcher's choice of a unit is looked up in the departments
        (its name taken from there): one that does not exist is refused
        (``unknown_department``) and the centre's queue decides — before, a forged choice of
        ``no-such-unit`` left the case assigned to nobody anyone could act as. Since
        lean-case-v33 (RETURNER_NOT_CHOSEN) a choice of the unit whose 退单 was just upheld is
        refused (``returned_by_this_unit``), as the API refuses it."""
        chooser = result.chosen_by
        if chooser is None or not self._patched(lifecycle.REASSIGN_CHOICE_JUDGED):
            return result
        refusal = self._choice_refused(chooser, result.route.department_id, reason)
        if refusal is None and result.route.department_id != CENTRE_ID and self._patched(
            lifecycle.CHOSEN_UNIT_CHECKED
        ):
            known = await self._look_up(
                RoutingActivities.known_department, result.route.department_id
            )
            if known is not None:
                return result.model_copy(update={"route": known})
            refusal = lifecycle.Refusal(
                "unknown_department", f"no department {result.route.department_id!r}"
            )
        if refusal is None:
            return result
        self._case.refused("choose", chooser, refusal)
        return ReassignmentResult(route=self._centre_queue())

    def _choice_refused(
        self, chooser: Actor, department_id: str, reason: ReassignReason
    ) -> lifecycle.Refusal | None:
        if chooser.role not in DISPATCHER_ROLES:
            return lifecycle.Refusal(
                "forbidden", "only the centre's dispatchers choose the next unit", forbidden=True
            )
        if self._patched(lifecycle.RETURNER_NOT_CHOSEN):
            return lifecycle.returned_it_last(self._state, reason, department_id)
        return None

    def _centre_queue(self) -> RouteResult:
        """The centre's queue as a reassignment's outcome: its dispatcher decides."""
        return RouteResult(
            department_id=CENTRE_ID, department_name=self._case.centre_name(), by_rule=False
        )

    async def _queue_ladder_after_the_units(self) -> None:
        """The case queued at the bound while a ladder climbed against its unit (a
        supervisor's 督办, a breach's): the queue's own ladder (reassignment_limit) could not
        start beside it, and that ladder ends at the queue's new round — the centre's queue
        waited unsupervised (tests/test_v21_orders_attacks.py, worker up too). Since
        lean-case-v24 (QUEUE_LADDER_AFTER_THE_UNITS) the queue's ladder starts once the unit's
        has stopped, if the case is still waiting in the queue then."""
        s = self._state

        def in_the_queue() -> bool:
            queued = self._queued_after_bound or self._dispatch_from_the_bound
            return queued and s.status is Status.DISPATCHING

        def climbing() -> bool:
            return s.escalation is not None and s.escalation.active

        await workflow.wait_condition(lambda: not in_the_queue() or not climbing())
        if in_the_queue():
            self._ladder.escalate(EscalationTrigger.REASSIGNMENT_LIMIT)

    def _reassignment_decided_at(self, reason: ReassignReason, actor: Actor) -> datetime:
        """When the reassignment was decided, as the round's deadlines are judged against it:
        the 退单's or order's time (lean-case-v12) — or, for a 退单 upheld by the centre's lapse
        before a later action (lean-case-v18, :meth:`_lapses_before`), the lapse's time. That
        action's events (the late decision refused) come first in the case's events, so the
        reassignment's own event is recorded after them, but it was decided at the lapse, as
        with the worker up, where it began there: a deadline between the two is not the
        returning unit's breach."""
        upheld_at, self._upheld_by_lapse_at = self._upheld_by_lapse_at, None
        started = self._case.time_of(actor)
        if (
            upheld_at is not None
            and reason is ReassignReason.RETURN
            and self._patched(lifecycle.LAPSES_BEFORE_LATER_ACTIONS)
        ):
            return min(started, upheld_at)
        return started

    def _breached_before_queued(self, at: datetime) -> None:
        """A 退单 at the reassignment bound, timed after a deadline its unit had not met
        (lean-case-v17): that deadline's breach is recorded before the case goes to the centre's
        queue (a new round, which meets every deadline of the old). With the worker up the
        deadline's timer records it first; with the worker down the return and the timer reach
        it in one task, the main loop queued the case before the watch judged, and the breach
        was never recorded."""
        if not self._patched(lifecycle.LATE_RETURN_AT_THE_BOUND):
            return
        for kind in DeadlineKind:
            if lifecycle.breached_before(self._state, kind, at):  # passed, owed, unrecorded
                deadline = lifecycle.deadline_of(self._state, kind)
                assert deadline is not None
                self._breach(kind, deadline)

    async def _new_round(self, result: ReassignmentResult) -> None:
        """改派 / 二次交办: a new department (or the same), fresh deadlines, a new rating."""
        s = self._state
        compute = run_local if self._lean else run_activity
        deadlines = await compute(
            DeadlineActivities.compute_deadlines,
            DeadlineRequest(received_at=workflow.now(), urgency=s.urgency),
        )
        if self._closed_meanwhile(PATCH_CLOSED_DURING_NEW_ROUND):
            return
        self._case.start_round()
        self._case.set_deadlines(deadlines)
        actor = result.chosen_by or SYSTEM_ACTOR
        self._record(
            EventKind.REASSIGNED,
            actor,
            from_department_id=s.department_id,  # the unit of the round that ended
            department_id=result.route.department_id,
            department_name=result.route.department_name,
            round=s.round,
            by_rule=result.route.by_rule,
            note=result.note,
        )
        # the centre chosen (by anyone): its queue, as when nobody chose (assign() queues a
        # centre route of the system's only; before, a forged choice made it the case's unit)
        queued = result.route.department_id == CENTRE_ID and self._patched(
            lifecycle.REASSIGN_CHOICE_JUDGED
        )
        self._case.assign(result.route, SYSTEM_ACTOR if queued else actor, quiet=True)
        self._release_co_handlers(result.route.department_id)
        self._start_watchers()

    async def _carry_out_dispatch(self, dispatched: ReassignmentResult) -> None:
        """人工派单 out of the centre's queue, decided in a message: in the round the case
        waited in (:meth:`_dispatch`), or past the reassignment bound in a new one
        (:meth:`_new_round`); one at a time (``_dispatched`` is pending until it is set up)."""
        in_round = self._dispatched_in_round
        looked_up = await self._dispatch_looked_up(dispatched)
        self._dispatch_waiting = self._dispatch_from_the_bound = False
        if looked_up is None:
            self._dispatch_refused(dispatched, in_round)
            return
        if in_round:
            await self._dispatch(looked_up)
            self._dispatched, self._dispatched_in_round = None, False
        else:
            await self._new_round(looked_up)
            self._dispatched = None
        self._dispatch_overtaken(looked_up)
        self._dispatch_done()

    async def _dispatch_looked_up(
        self, dispatched: ReassignmentResult
    ) -> ReassignmentResult | None:
        """The unit a 派单 names, looked up in the departments' data by the case itself (since
        lean-case-v37, UNITS_LOOKED_UP): any Temporal client could send the dispatch, and the
        API's check (``department_retired``, ``unknown_department``) was the only one it met —
        a retired or made-up unit took the case under the payload's name (red team of
        2026-11-25, tests/test_v31_attacks.py). None: no such unit in service. The messages of
        its task wait meanwhile (``_dispatch_waiting``), as they do for the deadlines."""
        if not self._patched(lifecycle.UNITS_LOOKED_UP):
            return dispatched
        unit = dispatched.route.department_id
        known = await self._look_up(RoutingActivities.known_department, unit)
        return None if known is None else dispatched.model_copy(update={"route": known})

    def _dispatch_refused(self, dispatched: ReassignmentResult, in_round: bool) -> None:
        """The unit a 派单 named is not in service: the case stays in the centre's queue, and
        the dispatcher's refusal is recorded (``unknown_department``), then the messages that
        waited behind the dispatch."""
        self._dispatched, self._dispatched_in_round = None, False
        self._queued_after_bound = not in_round  # as before the dispatch was taken
        actor = dispatched.chosen_by or SYSTEM_ACTOR
        refusal = lifecycle.Refusal(
            "unknown_department",
            f"no department {dispatched.route.department_id!r} in service: the case stays in "
            "the centre's queue",
        )
        with self._case.acting(self._case.time_of(actor)):
            self._case.refused(CaseSignal.DISPATCH.value, actor, refusal)
        self._dispatch_done()

    async def _dispatch(self, result: ReassignmentResult) -> None:
        """人工派单 out of the centre's queue (PATCH_DEADLINES_FROM_DISPATCH): the unit's
        deadlines run from now, in the round the case waited in (no unit had it there)."""
        deadlines = await run_local(
            DeadlineActivities.compute_deadlines,
            DeadlineRequest(received_at=workflow.now(), urgency=self._state.urgency),
        )
        if self._closed_meanwhile(PATCH_CLOSED_DURING_NEW_ROUND):
            return
        self._case.set_deadlines(deadlines)
        self._case.assign(result.route, result.chosen_by or SYSTEM_ACTOR, note=result.note)
        self._start_watchers()

    def _dispatch_overtaken(self, dispatched: ReassignmentResult) -> None:
        """The dispatch just set up did not apply: the case closed while it waited for the
        unit's deadlines (a withdrawal; ``_closed_meanwhile``). Recorded refused for its
        dispatcher (PATCH_DISPATCH_OVERTAKEN); nothing of it otherwise, as before the patch."""
        s = self._state
        if s.status is not Status.CLOSED or not self._patched(PATCH_DISPATCH_OVERTAKEN):
            return
        resolution = s.resolution.value if s.resolution else "closed"
        refusal = lifecycle.Refusal(
            "wrong_status",
            f"the case closed ({resolution}) before the dispatch to "
            f"{dispatched.route.department_id} took effect: no unit was given it",
        )
        self._case.refused(CaseSignal.DISPATCH.value, dispatched.chosen_by or SYSTEM_ACTOR, refusal)

    def _reassignment_failed(self, n: int, child_id: str, err: FailureError) -> ReassignmentResult:
        """The reassignment child ended without a choice (PATCH_REASSIGNMENT_CHILD_ENDED): the
        centre's dispatcher decides, as when the child's routing refuses the case — the child
        that would have chosen is gone, and routing again by rule would guess for an operator
        who stopped it on purpose (a raise with no level above goes to the centre too)."""
        cause = err.cause or err
        self._record(
            EventKind.REASSIGNMENT_FAILED,
            SYSTEM_ACTOR,
            n=n,
            child_id=child_id,
            reason=messages.printable(f"{err}: {cause}" if cause is not err else str(err), 500),
        )
        return ReassignmentResult(route=self._centre_queue())

    def _release_co_handlers(self, lead: str | None) -> None:
        """A new round (PATCH_ROUND_RELEASES_CO_HANDLERS): the co-handlers still owing their
        contribution to the round that ended owe it no more; they stay convened."""
        if not self._patched(PATCH_ROUND_RELEASES_CO_HANDLERS):
            return  # as such a case ran before the patch: they kept blocking the reply
        for co in self._state.co_handlers:
            if co.done:
                continue
            co.waived = True
            self._record(
                EventKind.CO_HANDLER_WAIVED,
                SYSTEM_ACTOR,
                department_id=co.department_id,
                reason="new_lead" if co.department_id == lead else "round_ended",
            )

    def _to_centre_queue(self, actor: Actor) -> None:
        """Past the reassignment bound: the centre dispatches by hand, under supervision."""
        self._case.queue_at_centre(actor)
        self._queued_after_bound = True

    # --- messages: every signal, from any client, lands here ------------------------------

    @workflow.signal(dynamic=True)
    def _message(self, name: str, args: Sequence[RawValue]) -> None:
        """Every signal: the message, then the history's size (see PATCH_HISTORY_WATCH)."""
        self._receive(name, args)
        self._watch_history()

    def _watch_history(self) -> None:
        if self._state.status is Status.CLOSED or self._history_marks >= HISTORY_MARKS:
            return
        info = workflow.info()
        size, length = info.get_current_history_size(), info.get_current_history_length()
        passed = min(HISTORY_MARKS, max(size // HISTORY_WARN_BYTES, length // HISTORY_WARN_EVENTS))
        if passed <= self._history_marks or not self._patched(PATCH_HISTORY_WATCH):
            return
        self._history_marks = passed
        self._record(
            EventKind.HISTORY_LARGE, SYSTEM_ACTOR, history_bytes=size, history_events=length
        )

    def _waits_for_loop(self) -> bool:
        """Has a message of this task decided something the case's main loop carries out — a
        reassignment (a 退单 upheld, 提级办, 二次交办, a lapse's uphold: ``_reassign_next``) or the
        verdict on a reply (a rating, to close the case or 重办)? With the worker up the loop does
        it in the same task, before any later message arrives. With the worker down, the later
        messages of that task came first and met the case as it was: a 撤诉 after a 不满意 rating
        or a 二次交办 of a replied case was refused and the case went to a new unit; at the
        reassignment bound a 督办 was taken against the returning unit (tests/test_v20_attacks.py).
        Since lean-case-v21 (MESSAGES_AFTER_DECISIONS) they wait, in order, until the loop has
        begun it (:meth:`_release_deferred`), as messages wait for a case's plan. Since
        lean-case-v22 (MESSAGES_AFTER_LAPSES) also when the decision is a lapse the message
        itself brought first (:meth:`_lapses_before`: a 退单 upheld by 逾期视为同意): a 撤诉 after
        the window's end closed the case before its reassignment began, and the record lacked
        the ``reassignment_started`` the worker-up order has before ``withdrawn``."""
        s = self._state
        verdict = s.status is Status.REPLIED and s.rating is not None
        return (
            self._reassign_next is not None
            or verdict
            or self._waits_for_dispatch()
            or self._handover_waits()
            or self._convening is not None  # its units looked up (v37): see _convene_looked_up
        )

    def _handover_waits(self) -> bool:
        """A 移交 taken and not yet carried out (the loop looks the units up): since
        lean-case-v35 (HANDOVER_AFTER_DECISIONS) later messages wait for it, as with the worker
        up, where the loop carries it out before they arrive. Before, with the worker down, a
        reply in the same task was applied first and the handover refused (the review of
        2026-11-25)."""
        return self._handover is not None and self._patched(lifecycle.HANDOVER_AFTER_DECISIONS)

    def _waits_for_dispatch(self) -> bool:
        """A 派单 out of the centre's queue decided in this task and not yet begun by the main
        loop — or begun, with messages of its task still waiting behind it (they keep their
        order). Since lean-case-v24 (MESSAGES_AFTER_DISPATCH) such messages wait until the unit
        holds the case (:meth:`_dispatch_done`). Before, the new unit's 签收, 延期 or 退单 sent in
        the dispatch's task met the case still queued (``not_assigned``), and a 督办 started a
        ladder against the centre that the dispatch ended at once
        (tests/test_v21_orders_attacks.py). A message reaching the case in a later task, while
        the unit's deadlines are computed, meets the case as before (reassignment_pending for a
        second dispatch; a 撤诉 closes it and the dispatch is dropped)."""
        if self._dispatched is None or not self._patched(lifecycle.MESSAGES_AFTER_DISPATCH):
            return False
        return self._dispatch_waiting or bool(self._deferred)

    def _supervision_waits_for_dispatch(self, name: str) -> bool:
        """A 督办 reaching the case in a later task than a 派单 out of the centre's queue, while
        the unit's deadlines are computed: taken then, it was ordered against the centre (up to
        督办) and the dispatch ended it at once — an order spent on nobody, where with the
        dispatch done it presses the new unit (tests/test_v25_attacks.py). Since lean-case-v27
        (SUPERVISION_AFTER_DISPATCH) it waits until the unit holds the case, with whatever
        comes after it (:meth:`_waits_for_dispatch`: the deferred keep their order). Other
        messages meet the case as before (a 撤诉 closes it; a second 派单 is refused)."""
        return (
            name == CaseSignal.SUPERVISE.value
            and self._dispatched is not None
            and self._patched(lifecycle.SUPERVISION_AFTER_DISPATCH)
        )

    def _dispatch_done(self) -> None:
        """The dispatch is carried out (or dropped: the case closed meanwhile): the messages
        that waited behind it, in order."""
        if self._patched(lifecycle.MESSAGES_AFTER_DISPATCH):
            self._release_deferred()

    def _release_deferred(self) -> None:
        """The messages that waited for the main loop (:meth:`_waits_for_loop`), in order."""
        deferred, self._deferred = self._deferred, []
        for name, args in deferred:
            self._receive(name, args)

    def _release_held(self) -> None:
        """The case is planned: the department actions that arrived meanwhile, in order."""
        self._planning = False
        held, self._held = self._held, []
        for name, args in held:
            self._receive(name, args)

    def _receive(self, name: str, args: Sequence[RawValue]) -> None:
        """Decode, de-duplicate and apply a message; record one that does not fit.

        One dynamic handler instead of a typed handler per signal: a typed handler wedges the
        case on a wrong number of payloads and drops an undecodable one without a trace."""
        handler = _HANDLERS.get(name)
        if name == CaseSignal.HAND_OVER.value and not self._patched(lifecycle.HANDOVER):
            handler = None  # a case from before 移交 answers it as any unknown message
        if handler is None:
            return self._misfit(messages.unknown(name, args), name)
        model, apply = handler
        payload = messages.decode(name, args, model)
        if isinstance(payload, messages.Misfit):
            return self._misfit(payload, name)
        actor = getattr(payload, "actor", None)
        request_id = actor.request_id if isinstance(actor, Actor) else None
        if request_id is not None and request_id in self._request_ids:
            return None  # a client's retry of an action already applied or refused
        if (
            self._planning
            and isinstance(actor, Actor)
            and actor.role is Role.DEPARTMENT
            and self._patched(PATCH_ACTIONS_AFTER_PLAN)
        ):
            self._held.append((name, args))
            return None
        if self._waits_for_loop() and self._patched(lifecycle.MESSAGES_AFTER_DECISIONS):
            self._deferred.append((name, args))
            return None
        # judged and recorded at the action's time (lean-case-v12: when its request was sent)
        at = self._case.time_of(actor) if isinstance(actor, Actor) else None
        with self._case.acting(at):
            self._lapses_before(self._case.clock())
        if self._waits_for_loop() and self._patched(lifecycle.MESSAGES_AFTER_LAPSES):
            self._deferred.append((name, args))  # a lapse decided it: see _waits_for_loop
            return None
        if self._supervision_waits_for_dispatch(name):
            self._deferred.append((name, args))
            return None
        with self._case.acting(at):
            refusal = self._check(CaseSignal(name), payload)
            if self._case.allowed(name, payload, refusal):
                apply(self, payload)
        if request_id is not None:
            self._request_ids.add(request_id)
        return None

    def _check(self, signal: CaseSignal, payload: Any) -> lifecycle.Refusal | None:
        """The lifecycle's rule for this message; a rule added while cases were running
        (``Refusal.since``) applies from its patch on, and a case from before keeps the old."""
        check = lifecycle.CHECKS.get(signal)  # 会办's rule by the epoch: reconvenes_released
        # a reassigning action meets the decided reassignment below: ``reassignment_pending``
        state = self._state if signal in lifecycle.REASSIGNING_ACTIONS else self._judged_state()
        refusal = check(state, payload, self._judged_at(signal)) if check else None
        if refusal is None and signal is CaseSignal.ESCALATION_STEP:
            refusal = self._unsigned(payload) or self._after_its_duty(payload)
        if refusal is None and signal in lifecycle.VERDICTS:
            refusal = lifecycle.verdict_too_late(self._state, self._case.clock())
        pending = (
            self._reassign_next is not None
            or self._dispatched is not None
            or self._handover is not None  # a 移交 taken, not yet carried out (lean-case-v32)
        )
        if refusal is None and pending and signal in lifecycle.REASSIGNING_ACTIONS:
            refusal = lifecycle.reassignment_pending(self._state)
        elif refusal is None and self._reassign_next is not None and signal in lifecycle.VERDICTS:
            refusal = lifecycle.verdict_overtaken(self._state)
        if refusal is None:
            refusal = lifecycle.first_entry_refusal(self._state, signal, payload)
            if refusal is not None and self._patched(PATCH_DISTINCT_CO_HANDLERS):
                refusal = None  # the entry still owing its contribution takes it
        if refusal is not None and refusal.since and not self._patched(refusal.since):
            return refusal.before  # as the case answered before the rule (mostly: allowed)
        return refusal

    def _after_its_duty(self, step: EscalationStep) -> lifecycle.Refusal | None:
        """A step of a ladder that has done its duty and is being stopped (lean-case-v40,
        STEPS_END_WITH_THE_DUTY: Ladder.duty_done)."""
        if not self._ladder.duty_done() or not self._patched(lifecycle.STEPS_END_WITH_THE_DUTY):
            return None
        return lifecycle.Refusal(
            "stale_step", f"ladder {step.n} has done its duty on {self._state.case_id}: it is "
            "being stopped",
        )  # fmt: skip

    def _unsigned(self, step: EscalationStep) -> lifecycle.Refusal | None:
        """A ladder step without the word of the ladder climbing now (lean-case-v31): sent by
        another Temporal client, not the ladder."""
        return None if self._ladder.signed(step) else lifecycle.unsigned_step(step)

    def _judged_state(self) -> CaseState:
        """The case a message is judged against. Since lean-case-v20 (JUDGED_AS_REASSIGNING) a
        reassignment the case has decided (a 退单 upheld, 提级办, 二次交办: ``_reassign_next``)
        but its main loop has not begun yet is judged as begun — reassigning, or in the centre's
        queue at the bound — as with the worker up, where the loop begins it in the same task
        that decided it. With the worker down, a message applied in that task, after the
        decision, was judged against the unit still holding the case: the returning unit's reply
        or 延期 request was taken where the worker-up case refuses it (``wrong_status``)."""
        s = self._state
        if (
            self._reassign_next is None
            or s.status not in lifecycle.WITH_DEPARTMENT
            or not self._patched(lifecycle.JUDGED_AS_REASSIGNING)
        ):
            return s
        reason = self._reassign_next[0]
        bound = s.deadlines is not None and s.reassignments >= s.deadlines.max_reassignments
        queued = reason is ReassignReason.RETURN and bound
        return s.model_copy(update={"status": Status.DISPATCHING if queued else Status.REASSIGNING})

    def _reassignment_decided(self) -> bool:
        """A reassignment decided and not yet begun, for a case that judges it begun (v20)."""
        return self._reassign_next is not None and self._patched(lifecycle.JUDGED_AS_REASSIGNING)

    def _judged_at(self, signal: CaseSignal) -> datetime:
        """The time an action is checked at: its own (lean-case-v12) — except an order's due
        for a unit (会办's contribution due, 督办's), which is judged when the case applies it
        (lean-case-v13): the unit cannot see the order before, and a due that passed while the
        worker was down was accepted and broken at once (v11 refused it, as now)."""
        if signal in _ORDERS_WITH_A_DUE and self._patched(lifecycle.LATE_ACTIONS_JUDGED):
            return workflow.now()
        return self._case.clock()

    def _misfit(self, misfit: messages.Misfit, name: str) -> None:
        if self._hardened:
            self._case.misfit(misfit, name)
        else:  # cases started before the patch dropped these without a trace
            workflow.logger.warning("dropped message %s: %s", name, misfit.reason)

    def _on_escalation_step(self, step: EscalationStep) -> None:
        """From the escalation child: the ladder reached a step (提醒/催办/督办/会办/问责)."""
        self._state.escalation_level = step.level
        if self._state.escalation is not None and self._state.escalation.n == step.n:
            self._state.escalation.level = max(self._state.escalation.level, step.level)
        self._record(
            EventKind.ESCALATED,
            SYSTEM_ACTOR,
            n=step.n,
            level=int(step.level),
            level_name=step.level.name.lower(),
            department_id=self._state.department_id,
            trigger=self._state.escalation.trigger.value if self._state.escalation else None,
        )
        if step.level is EscalationLevel.ACCOUNTABILITY and self._patched(PATCH_ACCOUNTABILITY):
            self._ladder.reached(step.level)

    # --- signals: human actions ---------------------------------------------------------

    def _on_accept(self, action: AcceptAction) -> None:
        """签收."""
        self._state.status = Status.HANDLING
        self._state.accepted_at = self._case.clock()
        self._record(EventKind.ACCEPTED, action.actor)

    def _on_contact(self, action: ContactAction) -> None:
        """联系诉求人."""
        self._state.contacted_at = self._case.clock()
        self._record(EventKind.CONTACTED, action.actor, note=action.note)

    def _on_reply(self, action: ReplyAction) -> None:
        """办结答复."""
        evidence = [str(url) for url in action.evidence]
        self._state.reply = Reply(
            outcome=action.outcome,
            text=action.text,
            evidence=evidence,
            at=self._case.clock(),
            by=action.actor,
        )
        self._state.status = Status.REPLIED
        self._record(
            EventKind.REPLIED,
            action.actor,
            outcome=action.outcome.value,
            text=action.text,
            evidence=evidence,
        )

    def _on_dispatch(self, action: DispatchAction) -> None:
        """人工派单: a dispatcher assigns a case from the centre's queue."""
        route = RouteResult(
            department_id=action.department_id,
            department_name=action.department_name,
            by_rule=False,
        )
        if self._queued_after_bound and self._patched(PATCH_FRESH_ROUND):
            # out of the queue after the bound: a new round with fresh deadlines — since
            # lean-case-v39 (LOOKED_UP_IN_ORDER) still in the queue while its unit is looked up
            # (_queue_ladder_after_the_units): a refused dispatch left the queue unsupervised
            self._queued_after_bound = False
            self._dispatch_from_the_bound = self._patched(lifecycle.LOOKED_UP_IN_ORDER)
            self._dispatched = ReassignmentResult(
                route=route, chosen_by=action.actor, note=action.note
            )
            self._dispatch_waiting = True
            return
        if not self._queued_after_bound and self._patched(PATCH_DEADLINES_FROM_DISPATCH):
            # the unit's deadlines from now on (set up in run(), one dispatch at a time)
            self._dispatched = ReassignmentResult(
                route=route, chosen_by=action.actor, note=action.note
            )
            self._dispatched_in_round = True
            self._dispatch_waiting = True
            return
        if self._queued_after_bound:  # cases queued before PATCH_FRESH_ROUND
            self._queued_after_bound = False
            self._state.round += 1
            self._case.assign(route, action.actor, note=action.note)
            self._start_watchers()
            return
        self._case.assign(route, action.actor, note=action.note)

    def _on_rate(self, action: RatingAction) -> None:
        """评价."""
        self._rated(action.actor, action.rating, action.comment, EventKind.RATED)

    def _on_callback(self, action: CallbackAction) -> None:
        """回访: the centre records the verdict of a citizen who did not rate online."""
        self._rated(action.actor, action.rating, action.note, EventKind.CALLBACK)

    def _rated(self, actor: Actor, rating: Rating, comment: str, kind: EventKind) -> None:
        self._state.rating = rating
        self._state.rating_comment = comment
        self._record(kind, actor, rating=rating.value, comment=comment)

    def _on_return(self, action: ReturnAction) -> None:
        """退单: "not ours" — the reassignment child picks the next department, or, when the
        recorded policy asks for it, the centre decides first (派单异议审核)."""
        assert action.actor.department_id or self._state.department_id
        s = self._state
        assert s.deadlines is not None
        if s.deadlines.return_needs_approval and self._patched(PATCH_RETURN_APPROVAL):
            self._await_return_decision(action)
            return
        s.returned_by.append(s.department_id or "")
        self._record(
            EventKind.RETURNED,
            action.actor,
            reason=action.reason,
            department_id=s.department_id,
        )
        self._reassign_next = (ReassignReason.RETURN, action.actor)

    def _await_return_decision(self, action: ReturnAction) -> None:
        """派单异议审核: the return waits for the centre; with a decision deadline in the
        recorded policy, a timer holds the centre to it (as for extensions)."""
        s = self._state
        assert s.deadlines is not None
        hours = s.deadlines.return_decision_hours
        timed = hours is not None and self._patched(PATCH_RETURN_DUE)
        now = self._case.clock()
        seen = self._centre_sees_it(now)
        s.pending_return = pending = PendingReturn(
            department_id=s.department_id,
            reason=action.reason,
            requested_at=now,
            requested_by=action.actor,
            decision_due=seen + timedelta(hours=hours) if timed and hours is not None else None,
        )
        due = {"decision_due": pending.decision_due.isoformat()} if pending.decision_due else {}
        self._record(
            EventKind.RETURNED,
            action.actor,
            reason=action.reason,
            department_id=s.department_id,
            awaiting_approval=True,
            **due,
        )
        if pending.decision_due is not None:
            self._watchers.append(asyncio.create_task(self._return_decision_due(pending)))

    def _centre_sees_it(self, requested_at: datetime) -> datetime:
        """Where the centre's window to decide a request (退单, 延期) starts: when the case
        applied it (lean-case-v13), as the centre can only see it then; before, when it was
        sent (v12) — a request applied after its window (the worker down) was upheld and the
        centre's lapse recorded at once."""
        return workflow.now() if self._patched(lifecycle.LATE_ACTIONS_JUDGED) else requested_at

    async def _return_decision_due(self, pending: PendingReturn) -> None:
        """退单审核时限: a return nobody decided by its deadline is upheld (视为同意) and the
        lapse recorded against the centre: the department said in time that the case is not
        its own, and the citizen must not wait on the centre's silence."""
        assert pending.decision_due is not None
        if await lapsed(
            lambda: not self._return_owed(pending), pending.decision_due,
            "return decision deadline",
        ) and await self._looked_up_first() and self._still_owed(
            partial(self._return_owed, pending)
        ):  # fmt: skip
            self._uphold_by_lapse(pending)

    def _looked_up(self) -> bool:
        """No 会办 (or 督办 of the form 会办) is waiting for its units' look-up (v37)."""
        return self._convening is None

    async def _looked_up_first(self) -> bool:
        """A lapse's (or, in watch_deadline, a breach's) timer ran out while the case looks up
        the units of a 会办 or a 督办 of the form 会办 that came before it: since lean-case-v39
        (LOOKED_UP_IN_ORDER) the action is carried out first, as it was before lean-case-v37
        in the task that brought it, and as with the worker up. Before, the lapse upheld a
        return (or the breach started its ladder) during the look-up and the action, sent in
        time, was refused after it (wrong_status, already_supervised: red team of
        2026-11-25, tests/test_v37_attacks.py). Always True (the caller goes on)."""
        if not self._looked_up() and self._patched(lifecycle.LOOKED_UP_IN_ORDER):
            await workflow.wait_condition(self._looked_up)
        return True

    def _still_owed(self, owed: Callable[[], bool]) -> bool:
        """Is a lapse whose timer ran out still owed? Since lean-case-v20 (LAPSE_RECHECKED)
        asked again: a message in the timer's task may have taken the lapse first
        (:meth:`_lapses_before`) or ended it. The SDK applies a task's signals before it checks
        the waits (so the wait saw that today), but under its single-batch activations (opt-in
        in temporalio 1.35, its announced default) the timer is applied first, and the lapse
        was taken twice (tests/test_v18_attacks.py)."""
        return owed() if self._patched(lifecycle.LAPSE_RECHECKED) else True

    def _return_owed(self, pending: PendingReturn) -> bool:
        """Does the centre still owe its decision on this 退单?"""
        s = self._state
        return (
            s.pending_return is pending
            and s.status in lifecycle.WITH_DEPARTMENT
            and not self._reassignment_decided()  # as the case will be: reassigning
        )

    def _uphold_by_lapse(self, pending: PendingReturn) -> None:
        assert pending.decision_due is not None
        self._upheld_by_lapse_at = self._case.time_of(self._lapse_actor(pending.decision_due))
        self._decide_by_lapse(
            pending.decision_due, EventKind.RETURN_DECISION_OVERDUE, pending.department_id,
            lambda actor: self._on_decide_return(ReturnDecisionAction(
                actor=actor, upheld=True,
                note="upheld: no decision by the deadline (逾期未审视为同意)",
            )),
        )  # fmt: skip

    def _on_decide_return(self, action: ReturnDecisionAction) -> None:
        """派单异议审核: upheld → reassigned as any return; rejected → the case stays, and the
        return counts against the department (event ``return_rejected``)."""
        s = self._state
        pending = s.pending_return
        assert pending is not None
        s.pending_return = None
        if action.upheld:
            s.returned_by.append(pending.department_id or "")
            self._record(
                EventKind.RETURN_UPHELD,
                action.actor,
                department_id=pending.department_id,
                note=action.note,
            )
            self._reassign_next = (ReassignReason.RETURN, action.actor)
            return
        s.rejected_returns += 1
        self._record(
            EventKind.RETURN_REJECTED,
            action.actor,
            department_id=pending.department_id,
            reason=action.note,
            return_reason=pending.reason,
        )

    def _on_order_second_assignment(self, action: SecondAssignmentAction) -> None:
        """二次交办 / 改派: a supervisor takes the case from the department sitting on it; the
        reassignment child chooses the next (or takes the named one). The breaches stay on
        the record of the department that held the round."""
        s = self._state
        self._record(
            EventKind.SECOND_ASSIGNMENT_ORDERED,
            action.actor,
            reason=action.reason,
            department_id=s.department_id,
            to_department_id=action.department_id,
            overdue=[k.value for k in lifecycle.overdue_steps(s, self._case.clock())],
            on_review=s.status is Status.REPLIED,
        )
        if action.department_id:
            route = RouteResult(
                department_id=action.department_id,
                department_name=action.department_name,
                by_rule=False,
            )
            self._second_assignment_to = ReassignmentResult(
                route=route, chosen_by=action.actor, note=action.reason
            )
        self._reassign_next = (ReassignReason.SECOND_ASSIGNMENT, action.actor)

    def _on_hand_over(self, action: HandoverAction) -> None:
        """移交: taken here when the case's state allows it (lifecycle.check_handover); the
        main loop looks the two units up and carries it out, or refuses it (:meth:`_hand_over`)."""
        self._handover = action

    async def _hand_over(self, action: HandoverAction) -> None:
        """移交 (lean-case-v32): the case's unit is out of service (停用) and the centre names
        the unit that takes over its work. The case looks both up itself (the departments'
        data, a local activity: any Temporal client could send a handover) and checks its
        state again (a reply or a 退单 may have come while it looked). Carried out as a
        reassignment to the named unit: no breach, no 二次交办 counted against the unit; the
        breaches its round already had stay on its record."""
        holder = self._state.department_id
        in_service = await self._look_up(RoutingActivities.known_department, holder)
        successor = None
        if in_service is None:
            successor = await self._look_up(
                RoutingActivities.known_department, action.department_id
            )
        self._handover = None
        with self._case.acting(self._case.time_of(action.actor)):
            refusal = self._handover_refused(action, in_service, successor)
            if refusal is not None:
                self._case.refused(CaseSignal.HAND_OVER.value, action.actor, refusal)
                self._handover_done()
                return
            assert successor is not None  # else refused: unknown_department
            self._record(
                EventKind.HANDED_OVER,
                action.actor,
                reason=action.reason,
                department_id=holder,
                to_department_id=successor.department_id,
            )
        self._second_assignment_to = ReassignmentResult(
            route=successor, chosen_by=action.actor, note=action.reason
        )
        self._reassign_next = (ReassignReason.HANDOVER, action.actor)

    async def _look_up(self, method: Callable[[Any, Any], Awaitable[R]], arg: Any) -> R:
        """A look-up of units in the departments' data for an action the case carries out in
        its main loop (移交, 派单, 会办). Since lean-case-v41 (LOOKUPS_RECORDED) an activity
        whose result is an event of the history, not a local activity: a loaded worker may
        record a local activity's marker in one workflow task and apply its result in the
        next, with whatever else arrived meanwhile — a deadline's timer firing — while a
        replay applies it in the marker's task. The commands then differ: the handover's
        reassignment cancelled the timer on replay that had fired live (TMPRL1100, "TimerMachine
        … CancelTimerCommandSent … TimerFired"), a 会办's projection split in two (helper
        audit38, tests/test_replay_groupings.py). An activity's result reaches the case with
        the events of its own task, live and on replay alike. Three events instead of one, for
        actions a case takes rarely (and the check of a reassignment's chosen unit, alike)."""
        run = run_activity if self._patched(lifecycle.LOOKUPS_RECORDED) else run_local
        return await run(method, arg)

    def _handover_done(self) -> None:
        """Refused: the messages that waited behind the handover (v35), in order. (Carried
        out, the reassignment releases them: :meth:`_reassign`.)"""
        if self._patched(lifecycle.HANDOVER_AFTER_DECISIONS):
            self._release_deferred()

    def _handover_refused(
        self, action: HandoverAction, in_service: RouteResult | None, successor: RouteResult | None
    ) -> lifecycle.Refusal | None:
        s = self._state
        refusal = lifecycle.check_handover(s, action)
        if refusal is not None and refusal.since and not self._patched(refusal.since):
            refusal = refusal.before  # a rule the case's epoch does not have (Refusal.since)
        if refusal is None and (self._reassign_next is not None or self._dispatched is not None):
            refusal = lifecycle.reassignment_pending(s)
        if refusal is None and in_service is not None:
            refusal = lifecycle.holder_in_service(s)
        if refusal is None and successor is None:
            refusal = lifecycle.Refusal(
                "unknown_department", f"no department {action.department_id!r} in service"
            )
        return refusal

    def _on_raise_level(self, action: RaiseLevelAction) -> None:
        """提级办: beyond this department's authority → the level above."""
        self._record(
            EventKind.LEVEL_RAISE_REQUESTED,
            action.actor,
            reason=action.reason,
            department_id=self._state.department_id,
        )
        self._reassign_next = (ReassignReason.RAISE_LEVEL, action.actor)

    def _on_request_extension(self, action: ExtensionAction) -> None:
        """延期申请: the deciding supervisors are notified (jiesu.notify); with a decision
        deadline in the recorded policy, a timer holds the centre to it."""
        s = self._state
        assert s.deadlines is not None
        hours = s.deadlines.extension_decision_hours
        timed = hours is not None and self._patched(PATCH_EXTENSION_DUE)
        now = self._case.clock()
        seen = self._centre_sees_it(now)
        s.extension = extension = Extension(
            reasons=action.reasons,
            measures=action.measures,
            promised_finish=action.promised_finish,
            requested_at=now,
            requested_by=action.actor,
            decision_due=seen + timedelta(hours=hours) if timed and hours is not None else None,
        )
        self._record(
            EventKind.EXTENSION_REQUESTED,
            action.actor,
            reasons=action.reasons,
            measures=action.measures,
            promised_finish=action.promised_finish.isoformat(),
            decision_due=extension.decision_due.isoformat() if extension.decision_due else None,
        )
        if extension.decision_due is not None:
            self._watchers.append(asyncio.create_task(self._extension_decision_due(extension)))

    async def _extension_decision_due(self, extension: Extension) -> None:
        """延期审批时限: a request nobody decided by its deadline is approved (视为同意) and the
        lapse is recorded against the centre. The department asked in time, with reasons and a
        promised date; the centre's silence must not turn into the department's breach."""
        assert extension.decision_due is not None
        if await lapsed(
            lambda: not self._extension_owed(extension), extension.decision_due,
            "extension decision deadline",
        ) and await self._looked_up_first() and self._still_owed(
            partial(self._extension_owed, extension)
        ):  # fmt: skip
            self._approve_by_lapse(extension)

    def _extension_owed(self, extension: Extension) -> bool:
        """Does the centre still owe its decision on this 延期 request?"""
        s = self._state
        return (
            extension.approved is None
            and s.extension is extension
            and s.status in lifecycle.WITH_DEPARTMENT
            and not self._reassignment_decided()  # as the case will be: reassigning
        )

    def _approve_by_lapse(self, extension: Extension) -> None:
        assert extension.decision_due is not None
        self._decide_by_lapse(
            extension.decision_due, EventKind.EXTENSION_DECISION_OVERDUE,
            self._state.department_id,
            lambda actor: self._on_decide_extension(ExtensionDecisionAction(
                actor=actor, approved=True,
                note="approved: no decision by the deadline (逾期未审视为同意)",
            )),
        )  # fmt: skip

    def _lapses_before(self, at: datetime) -> None:
        """The centre's lapses due before an action timed ``at`` are taken first (lean-case-v18,
        LAPSES_BEFORE_LATER_ACTIONS), as their timers take them when the worker is up. With
        the worker down across a decision window's end, the SDK applies a signal before the
        window's timer in the task that brings both: the centre's decision sent after its window
        pre-empted the lapse (逾期视为同意 never happened, and a rejection left the old finish
        deadline to be breached), and a reply or any other action was judged against the
        undecided request. Now the lapse is recorded at its due first; the late decision then
        finds nothing pending (``no_extension_pending``, ``no_return_pending``), as with the
        worker up."""
        s = self._state
        owed: list[tuple[datetime, Callable[[], bool], Callable[[], None]]] = []
        if (pending := s.pending_return) is not None and pending.decision_due is not None:
            owed.append((
                pending.decision_due, partial(self._return_owed, pending),
                partial(self._uphold_by_lapse, pending),
            ))  # fmt: skip
        if (extension := s.extension) is not None and extension.decision_due is not None:
            owed.append((
                extension.decision_due, partial(self._extension_owed, extension),
                partial(self._approve_by_lapse, extension),
            ))  # fmt: skip
        due = sorted((o for o in owed if o[0] < at and o[1]()), key=lambda o: o[0])
        if due and self._patched(lifecycle.LAPSES_BEFORE_LATER_ACTIONS):
            for _, still_owed, take in due:
                if still_owed():  # the one before may have settled it
                    take()

    def _decide_by_lapse(
        self, due: datetime, overdue: EventKind, department_id: str | None,
        decide: Callable[[Actor], None],
    ) -> None:  # fmt: skip
        """The centre's lapse recorded against it (``overdue``), then its decision taken for
        it, both at the lapse's time (:meth:`_lapse_actor`)."""
        actor = self._lapse_actor(due)
        with self._case.acting(self._case.time_of(actor)):
            self._record(
                overdue, actor, decision_due=due.isoformat(), department_id=department_id
            )
            decide(actor)

    def _lapse_actor(self, due: datetime) -> Actor:
        """The system, deciding for a centre silent past ``due`` (逾期视为同意). Since
        lean-case-v16 (LAPSES_TIMED_AT_THEIR_DUE) its decision is timed at ``due``, as a
        person's action is at its sending: with the worker down across ``due`` and a deadline
        after it, both timers reach the worker in one task, and the lapse judged at the worker's
        clock came after that deadline — an extension approved by lapse before the finish
        deadline recorded 办结 超时, a return upheld by lapse before the contact deadline began its
        reassignment after it."""
        if self._patched(lifecycle.LAPSES_TIMED_AT_THEIR_DUE):
            return SYSTEM_ACTOR.model_copy(update={"sent_at": due})
        return SYSTEM_ACTOR

    def _on_decide_extension(self, action: ExtensionDecisionAction) -> None:
        """延期审批: approval moves the finish deadline; the running timer follows it. An
        approval after the finish deadline was recorded as breached (the centre decided late)
        finds no timer running: the deadline's watch ended at its breach. Since lean-case-v19
        (PROMISE_WATCHED) a new watch holds the unit to the promised date, and a miss is a
        second 办结 超时, of that date; before, nothing watched it, with the worker up or down."""
        s = self._state
        assert s.extension is not None and s.deadlines is not None
        s.extension.approved = action.approved
        new_deadline = None
        breached = False
        if action.approved:
            self._breached_before_moved(DeadlineKind.FINISH)
            breached = lifecycle.breach_recorded(s, DeadlineKind.FINISH, s.deadlines.finish)
            s.extension_count += 1
            s.deadlines = s.deadlines.model_copy(update={"finish": s.extension.promised_finish})
            new_deadline = s.deadlines.finish.isoformat()
        self._record(
            EventKind.EXTENSION_DECIDED,
            action.actor,
            approved=action.approved,
            new_deadline=new_deadline,
            note=action.note,
        )
        if breached and self._patched(lifecycle.PROMISE_WATCHED):
            self._watchers.append(self._watch(DeadlineKind.FINISH))

    def _breached_before_moved(self, kind: DeadlineKind) -> None:
        """An approval after the deadline it moves (lean-case-v14): the deadline passed with
        its step owed, so its breach is recorded first — as the deadline's timer records it
        when the worker is up, before the late approval — and the watch ends there
        (:func:`watch_deadline`, ``breach_ends``). Before, approval and timer applied in one
        task (the worker down across the deadline), the watch followed the moved deadline."""
        at = self._case.clock()
        if self._patched(lifecycle.MOVED_DEADLINE_JUDGED) and lifecycle.breached_before(
            self._state, kind, at
        ):
            deadline = lifecycle.deadline_of(self._state, kind)
            assert deadline is not None
            self._breach(kind, deadline)

    def _on_add_co_handlers(self, action: CoHandlersAction) -> None:
        """会办: 协办 departments join the lead (主办) — since lean-case-v37 once the main loop
        has looked them up (:meth:`_convene_looked_up`)."""
        if self._patched(lifecycle.UNITS_LOOKED_UP):
            self._convening = action
            return
        self._convene(action.actor, action.departments, action.note, action.due)

    async def _convene_looked_up(self, action: CoHandlersAction | SupervisionAction) -> None:
        """会办, or a 督办 of the form 会办 (lean-case-v37, UNITS_LOOKED_UP): the units it names
        are looked up in the departments' data by the case itself, their names taken from
        there, and the action is judged again on the case as it is now (timers may have fired
        meanwhile). Refused whole (``unknown_department``) if any unit is unknown or out of
        service, as the API refuses it; before, a message from any Temporal client made a
        retired or made-up unit a co-handler owing a contribution, which kept the lead unit
        from replying until the centre waived it (red team of 2026-11-25,
        tests/test_v31_attacks.py). Messages after it wait meanwhile (:meth:`_waits_for_loop`)."""
        supervision = isinstance(action, SupervisionAction)
        signal = CaseSignal.SUPERVISE if supervision else CaseSignal.ADD_CO_HANDLERS
        with self._case.acting(self._case.time_of(action.actor)):
            refusal = self._check(signal, action)
        named = self._units_named(action)
        found: list[RouteResult] = []
        if refusal is None:
            found = await self._look_up(RoutingActivities.known_departments, named)
        self._convening = None
        departments = [DepartmentRef(id=u.department_id, name=u.department_name) for u in found]
        looked_up = action.model_copy(update={"departments": departments})
        # since v39 judged again as it will be applied: the units looked up
        judged = looked_up if self._patched(lifecycle.LOOKED_UP_IN_ORDER) else action
        with self._case.acting(self._case.time_of(action.actor)):
            refusal = refusal or self._check(signal, judged) or _units_missing(named, found)
            if self._case.allowed(signal.value, action, refusal):
                self._convene_now(looked_up)
        self._release_deferred()

    def _units_named(self, action: CoHandlersAction | SupervisionAction) -> list[str]:
        """The units a 会办 names: its ``departments``; for a 督办 since lean-case-v39 those
        and its ``department_ids`` (once each) — a client that named them in
        ``department_ids`` alone started a ladder at 会办 with nobody looked up or convened
        (red team of 2026-11-25)."""
        named = [d.id for d in action.departments]
        if isinstance(action, SupervisionAction) and self._patched(lifecycle.LOOKED_UP_IN_ORDER):
            named = list(dict.fromkeys([*named, *action.department_ids]))
        return named

    def _convene_now(self, action: CoHandlersAction | SupervisionAction) -> None:
        if isinstance(action, CoHandlersAction):
            self._convene(action.actor, action.departments, action.note, action.due)
            return
        self._ladder.escalate(EscalationTrigger.SUPERVISOR, action.actor, order=action)
        self._convene(action.actor, action.departments, action.note, action.contribution_due)

    def _convene(
        self, actor: Actor, departments: list[DepartmentRef], note: str, due: datetime | None
    ) -> None:
        """会办: the co-handlers join, each owing a contribution; with a deadline, each has a
        timer, and a miss is recorded against that co-handler (``contribution_overdue``)."""
        added = [
            CoHandler(department_id=d.id, department_name=d.name, due=due) for d in departments
        ]
        self._state.co_handlers.extend(added)
        data: dict[str, Any] = {"department_ids": [d.id for d in departments], "note": note}
        if due is not None:
            data["due"] = due.isoformat()
        self._record(EventKind.CO_HANDLERS_ADDED, actor, **data)
        if due is not None and self._patched(PATCH_CONTRIBUTION_DUE):
            round_ = self._state.round
            self._watchers.extend(
                asyncio.create_task(self._contribution_due(co, round_)) for co in added
            )

    async def _contribution_due(self, co: CoHandler, round_: int) -> None:
        s = self._state
        assert co.due is not None
        remaining = co.due - workflow.now()
        if remaining > timedelta(0):
            try:
                await workflow.wait_condition(
                    lambda: (
                        co.done or s.round != round_ or s.status not in lifecycle.WITH_DEPARTMENT
                    ),
                    timeout=remaining,
                    timeout_summary=f"contribution deadline {co.department_id}",
                )
                if not self._contributed_late(co) and not self._closed_late(co):
                    return
            except TimeoutError:
                pass
        judged = self._patched(lifecycle.CONTRIBUTION_DUE_JUDGED)
        if judged and lifecycle.contribution_overdue_recorded(s, co):
            return  # recorded as a late waiver came (lean-case-v15)
        owed = not co.done or self._contributed_late(co)
        with_unit = s.round == round_ and s.status in lifecycle.WITH_DEPARTMENT
        if owed and (with_unit or self._closed_late(co)):
            self._contribution_overdue(co)

    def _contribution_overdue(self, co: CoHandler) -> None:
        assert co.due is not None
        self._record(
            EventKind.CONTRIBUTION_OVERDUE,
            SYSTEM_ACTOR,
            department_id=co.department_id,
            due=co.due.isoformat(),
        )

    def _closed_late(self, co: CoHandler) -> bool:
        """The case closed (a 撤诉) after the co-handler's due, its contribution owed
        (lean-case-v15): with the worker up the due's timer records ``contribution_overdue``
        first; applied in that timer's task, the closed case recorded nothing."""
        s = self._state
        late = co.due is not None and s.closed_at is not None and s.closed_at > co.due
        closed = s.status is Status.CLOSED and late
        return closed and self._patched(lifecycle.CONTRIBUTION_DUE_JUDGED)

    def _waived_late(self, co: CoHandler) -> None:
        """A waiver (免除协办) timed after the co-handler's due, nothing contributed
        (lean-case-v15): the contribution was overdue before it was waived, so that is recorded
        first — as the due's timer records it when the worker is up — unless already recorded.
        Before, applied in the due timer's task (the worker down), the waived co-handler was
        done and its overdue never recorded."""
        late = co.due is not None and not co.done and self._case.clock() > co.due
        if not late or not self._patched(lifecycle.CONTRIBUTION_DUE_JUDGED):
            return
        held = self._state.status in lifecycle.WITH_DEPARTMENT
        if not held and self._patched(lifecycle.LATE_WAIVER_NEEDS_THE_UNIT):
            return  # returned (or queued) before: the due's watch ended there, nothing owed
        if not lifecycle.contribution_overdue_recorded(self._state, co):
            self._contribution_overdue(co)

    def _contributed_late(self, co: CoHandler) -> bool:
        """A contribution timed after its due (lean-case-v13): applied in the due's timer task
        (the worker down), it was taken as in time and no ``contribution_overdue`` recorded."""
        late = co.contributed_at is not None and co.due is not None and co.contributed_at > co.due
        return late and self._patched(lifecycle.LATE_ACTIONS_JUDGED)

    def _on_contribute(self, action: ContributionAction) -> None:
        """A co-handler's contribution (协办意见)."""
        co = lifecycle.co_handler_of(self._state, action.actor.department_id)
        assert co is not None
        co.contributed_at = self._case.clock()
        co.contribution = action.text
        self._record(EventKind.CONTRIBUTED, action.actor, text=action.text)

    def _on_waive_co_handler(self, action: WaiveAction) -> None:
        co = lifecycle.co_handler_of(self._state, action.department_id)
        assert co is not None
        self._waived_late(co)
        co.waived = True
        self._record(
            EventKind.CO_HANDLER_WAIVED, action.actor, department_id=action.department_id
        )

    def _on_supervise(self, action: SupervisionAction) -> None:
        """A supervisor puts the case on the ladder (督办), at the step of the chosen form — of
        the form 会办, since lean-case-v37 once the main loop has looked its units up
        (:meth:`_convene_looked_up`)."""
        named = self._units_named(action)  # v39: the units of department_ids alone too
        joint = action.form is SupervisionForm.JOINT_HANDLING and bool(named)
        if joint and self._patched(lifecycle.UNITS_LOOKED_UP):
            self._convening = action
            return
        self._ladder.escalate(EscalationTrigger.SUPERVISOR, action.actor, order=action)
        if action.form is SupervisionForm.JOINT_HANDLING and action.departments:
            self._convene(action.actor, action.departments, action.note, action.contribution_due)

    def _on_repeat_report(self, report: RepeatReport) -> None:
        """并单: another report of this open problem; the third one means supervision."""
        if report.report_id in self._repeat_ids:
            return
        if self._state.status is Status.CLOSED:
            return self._refile_late(report)
        self._repeat_ids.add(report.report_id)
        self._state.repeat_count += 1
        self._record(
            EventKind.REPEAT_REPORTED,
            report.actor,
            report_id=report.report_id,
            channel=report.channel.value,
            description=report.description,
            repeat_count=self._state.repeat_count,
        )
        policy = self._state.deadlines or Deadlines.model_construct()  # (none: the defaults)
        if self._state.repeat_count >= policy.repeats_before_supervision:
            self._ladder.escalate(EscalationTrigger.REPEAT_REPORTS)

    def _refile_late(self, report: RepeatReport) -> None:
        """A report that reached the case after its close: the intake merged it because the
        read model still showed the case open (a 撤诉 or closing rating sent while the worker
        was down closed it first). Cases before lean-case-v23 (REPEATS_AFTER_CLOSE_REFILED)
        dropped it: a report accepted and lost. Now the case files it again before it ends
        (:meth:`_refile_late_reports`), at most MAX_REFILED_REPORTS of them."""
        if not self._patched(lifecycle.REPEATS_AFTER_CLOSE_REFILED):
            return
        batched = self._patched(lifecycle.LATE_REPORTS_BATCHED)
        if self._refiled >= lifecycle.MAX_REFILED_REPORTS and not batched:
            return  # v23-v24: the bound forged ids could fill before the intake's real one
        self._repeat_ids.add(report.report_id)
        self._refiled += 1
        self._late_reports.append(report)

    async def _refile_late_reports(self) -> None:
        """File again the reports that came after the close (转立), each recorded with where it
        went; a report arriving meanwhile is taken in the same loop."""
        if self._patched(lifecycle.LATE_REPORTS_BATCHED):
            return await self._refile_late_batches()
        while self._late_reports:
            report = self._late_reports.pop(0)
            request = RefileRequest(case_id=self._state.case_id, report_id=report.report_id)
            refiled = await run_activity(RefileActivities.refile_report, request)
            self._record_refiled(report, refiled)
            await self._projector.run_until_closed()

    async def _refile_late_batches(self) -> None:
        """Since lean-case-v25 (LATE_REPORTS_BATCHED): every late report in one activity per
        batch, without a bound; an id the intake never gave this case (forged, or another
        case's) is recorded for the first MAX_REFILED_REPORTS only. Before, any Temporal client
        sending 20 made-up ids took the bound, and the intake's real report behind them was
        dropped (tests/test_v24_attacks.py)."""
        foreign = 0
        while self._late_reports:
            batch = self._late_reports[:_REFILE_BATCH]
            del self._late_reports[:_REFILE_BATCH]
            request = RefileBatch(
                case_id=self._state.case_id, report_ids=[r.report_id for r in batch]
            )
            results = await run_activity(RefileActivities.refile_reports, request)
            for report, refiled in zip(batch, results, strict=True):
                if refiled.reason == NOT_A_REPORT:
                    foreign += 1
                    if foreign > lifecycle.MAX_REFILED_REPORTS:
                        continue
                self._record_refiled(report, refiled)
            await self._projector.run_until_closed()

    def _record_refiled(self, report: RepeatReport, refiled: Refiled) -> None:
        self._record(
            EventKind.REPEAT_REFILED, report.actor, report_id=report.report_id,
            channel=report.channel.value, refiled_as=refiled.case_id,
            merged=refiled.merged, reason=refiled.reason,
        )  # fmt: skip

    def _on_supplement(self, action: SupplementAction) -> None:
        """补充诉求."""
        self._record(EventKind.SUPPLEMENTED, action.actor, text=action.text)

    def _on_withdraw(self, action: WithdrawAction) -> None:
        """撤诉: the citizen withdraws before the reply; the case closes."""
        self._record(EventKind.WITHDRAWN, action.actor, reason=action.reason)
        self._case.close(Resolution.WITHDRAWN, action.actor)

    @workflow.query(name=CASE_STATE_QUERY)
    def state(self) -> CaseState:
        """The case. One too large to answer is refused instead (read it from the read model):
        Temporal refuses a query answer over 2 MB, and one that rides on a workflow task's
        completion and takes it over gRPC's 4 MB made the server *terminate the case's
        workflow* ("GrpcMessageTooLarge"; tests/test_case_size.py)."""
        size = len(self._state.model_dump_json().encode())
        if size > STATE_QUERY_BYTES:
            raise ApplicationError(
                f"case {self._state.case_id} is too large to answer a query ({size:,} bytes; "
                f"at most {STATE_QUERY_BYTES:,}): read it from the read model",
                type=CASE_TOO_LARGE,
            )
        return self._state

    @workflow.query(name=CASE_STATE_PAGE_QUERY)
    def state_page(self, after: int) -> StatePage:
        """The case with its events after number ``after``, as many as fit in one answer:
        how a case too large for ``state`` is read whole (jiesu.health.checks.case_state;
        ``jiesu repair read-model``, the doctor). Read-only, like every query."""
        rest = [e for e in self._state.events if e.seq > after]
        page: list[CaseEvent] = []
        size = 0
        for event in rest:
            size += len(event.model_dump_json().encode())
            if page and size > STATE_PAGE_BYTES:
                break
            page.append(event)
        state = self._state.model_copy(update={"events": page})
        return StatePage(state=state, complete=len(page) == len(rest))

# Each signal: the payload it must decode to (jiesu.case.domain) and the handler that applies it.
# Orders that give a unit a due: judged when the case applies them (lean-case-v13).
_ORDERS_WITH_A_DUE = frozenset({CaseSignal.ADD_CO_HANDLERS, CaseSignal.SUPERVISE})
_REFILE_BATCH = 100  # late reports filed again per activity (lean-case-v25)

_HANDLERS: dict[str, tuple[type, Callable[[ComplaintWorkflow, Any], None]]] = {
    signal: (payload, getattr(ComplaintWorkflow, f"_on_{signal.value}"))
    for signal, payload in SIGNAL_PAYLOADS.items()
}


def _units_missing(named: list[str], found: list[RouteResult]) -> lifecycle.Refusal | None:
    """The units a 会办 named that the departments' data has not (or not in service)."""
    known = {unit.department_id for unit in found}
    missing = [unit for unit in named if unit not in known]
    if not missing:
        return None
    return lifecycle.Refusal(
        "unknown_department", f"no department {', '.join(map(repr, missing))} in service"
    )


def _route_request(start: CaseStart) -> RouteRequest:
    facts = start.case_facts
    return RouteRequest(category_id=facts.category_id, grid_id=facts.grid_id)
