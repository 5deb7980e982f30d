"""Other instances of the v38 class (tests/test_ladder_orders_before_projection.py): a loaded
worker completes a workflow task with a local activity's marker and applies the activity's
result in the next task, together with a server's answer that came meanwhile; a replay
applies the result in the marker's task, before the answer. Wherever the result and the
answer wake coroutines that issue commands (or decide) in an order of their own, the two
groupings issue different commands. Audit of 2026-11-25 (helper audit38,
``history_surgery.answer_moved``: ``answered_late`` for any answer, the answer's own task
dropped or the answer lifted out of another task's window).

Findings (strict xfails below; the histories are lean-case-v38, recorded 2026-11-25):

1. A 移交's look-up and a deadline's timer (TMPRL-level: the case's workflow task fails on
   every replay). ``_hand_over`` (the main loop) awaits two local ``known_department``
   look-ups; the unit's deadline watches (``_watch``) wait on their timers. Recorded
   (handover_to_successor): task 15 has the markers 16 and 17, then the reassignment child
   18, the cancels of timers 1 (accept) and 2 (contact) (19, 20: the watches end at the
   reassignment) and the projection 21. Let timer 1 fire while the worker runs task 15 and the
   successor's look-up (17) be applied in the next task with the firing. That worker issues
   18, 20, 21 there — whichever job comes first (test_a_worker_applying_both_together_issues:
   the SDK made to apply both in one activation) — and no cancel of timer 1 (it fired). The
   replay applies 17 in task 15: the handover is carried out, the accept watch sees its
   deadline no longer owed and cancels timer 1 (19); then the firing: "Fatal error in workflow
   machines: TimerMachine in state CancelTimerCommandSent says the transition is invalid
   during event ... TimerFired". Built for timer 1 and for timer 2 (contact: 20 becomes the
   firing, 18, 19, 21 reissued); by the same code every watch the handover's reassignment ends
   while its timer can fire (finish, a co-handler's contribution, an extension's or a 退单's
   decision deadline) fails alike.

   Not a replay fault but worth a look by the case's rules: with marker 17 itself in the
   firing's task (a worker whose task timed out while the look-up ran), the firing comes in an
   activation of its own, before the result, and the watch records the accept breach and
   starts ``escalation-1`` before the handover is carried out (what the SDK issues for the
   firing alone, 2026-11-25) — the unit breached for a deadline its handover, sent before it,
   ends in every other grouping.

2. A 会办's look-up and a deadline's timer (witness-level). ``_convene_looked_up`` awaits the
   local ``known_departments`` (co_handler_convened_again: marker 16 in task 15, projection 17).
   Let timer 1 (accept) fire with the look-up's result applied in the next task: the convening
   (main loop) and the breach (watch: ``_breach``, its ladder ``escalation-1``) are recorded in
   one activation, and the settling projector projects them in one batch — the worker writes
   the child's start, the upsert and one projection of four events (co_handlers_added,
   deadline_breached, escalation_started, escalated). The replay applies the result in task
   15 and projects co_handlers_added alone before the firing. Temporal's own check passes
   (local-activity markers are matched by their seq, and Core resolves a task's markers
   before its activation): the replay's projections then run one local activity ahead of
   what the worker wrote — checked ad hoc with the history continued by the ladder child's
   start and its first climb (the upsert of the level and projection seq 5: it replays) — so a
   worker that replays such a case goes on; but ``replay_checked`` (jiesu's witness: ``jiesu
   replay``, the doctor) reports a sound case as one that "computes other events than it
   recorded". Any pair of a local activity's result that records an event and an answer
   whose coroutine records one (a breach, a lapse, a co-handler's overdue contribution, the
   ladder's stop) is of this kind. The history is written from the commands the SDK issues
   for that activation (tests/joint_activation.py).

Checked, cannot fail (the first as a plain test):

- The ladder child's start answered after a queue's ``compute_deadlines`` marker
  (dissatisfaction_ladder_held_in_the_queue: answer 80 moved after task 86's marker 87; the
  ``hold`` 88, the projections and upsert 89-91 in the next task): since v38 the ladder owes
  its ``hold`` once started (``owed_once_started``), the projector waits for it in both
  groupings, and the recorded order replays. Cases before v38: the v38 failure itself.
- The ``hold`` / ``release`` answers: v38 (test_ladder_orders_before_projection).
- The ``stop`` answer: the ladder then awaits its child's outcome; no command follows.
- The reassignment child's start and result (``choose_department``): the main loop awaits it
  itself, so none of its local activities is pending beside them; the projector's
  ``project_events`` may be, and its result changes nothing the others read (the projector
  loops and projects what the answer's coroutine recorded, in both groupings).
- The main loop's other look-ups and deadlines (``_plan``, ``_judged_choice``, ``_new_round``,
  ``_carry_out_dispatch`` / ``_dispatch``) against timers: no watch's timer runs then — the
  first task has none, and a case being reassigned or in the centre's queue has ended its
  watches (``deadline_owed``, ``_return_owed``, ``_extension_owed``, a contribution's
  WITH_DEPARTMENT); against the ladder's answers: v38.
- Activities run with ``run_activity`` in a lean case: at intake (a direct answer, solved on
  the spot: before the projector starts) and the refiling at the close (after it ended): no
  local activity is pending beside them.
- The watchers that start the next ladder (``_rehandle_ladder_after``,
  ``_queue_ladder_after_the_units``) when the ladder's outcome comes with a result: they
  decide in the condition sweep, after every job of the activation is applied, so on the same
  state in both groupings (their projections: finding 2's kind, not built here).
"""

from __future__ import annotations

import base64
import json

import pytest
from helpers import HISTORIES, replay_checked
from history_surgery import _attrs, answer_moved
from joint_activation import CONVENED, convened_events, joint_commands, kinds
from temporalio.client import WorkflowHistory

LADDER = "dissatisfaction_ladder_held_in_the_queue"  # lean-case-v38
# handover_to_successor as lean-case-v38 recorded it (test_handover, 2026-11-25), kept here so
# that a re-recording there leaves the ids
HANDOVER = HISTORIES / "batching" / "handover_looked_up_as_the_accept_timer_fired.json"
CANCELED, FIRED = "EVENT_TYPE_TIMER_CANCELED", "EVENT_TYPE_TIMER_FIRED"


async def test_the_ladder_start_answered_after_the_queue_deadlines() -> None:
    text = (HISTORIES / f"{LADDER}.json").read_text(encoding="utf-8")
    late = answer_moved(text, answer_id=80, completed_id=86, later=[88, 89, 90, 91])
    await replay_checked(WorkflowHistory.from_json(f"{LADDER}@start_late", late))
    # the projector's commands first are not what the case issues: the check can fail
    with pytest.raises(AssertionError, match="TMPRL1100"):
        wrong = answer_moved(text, answer_id=80, completed_id=86, later=[89, 90, 91, 88])
        await replay_checked(WorkflowHistory.from_json(f"{LADDER}@projector_first", wrong))


def _events(text: str) -> list[dict]:
    return json.loads(text)["events"]


def _fired(text: str, cancel_id: int) -> str:
    """The history with the cancel ``cancel_id`` replaced by its timer's firing."""
    events = _events(text)
    for n, e in enumerate(events):
        if e["eventId"] == str(cancel_id):
            assert e["eventType"] == CANCELED, e
            a = e["timerCanceledEventAttributes"]
            events[n] = {
                "eventId": e["eventId"], "eventTime": e["eventTime"], "eventType": FIRED,
                "timerFiredEventAttributes": {
                    "timerId": a["timerId"], "startedEventId": a["startedEventId"]},
            }  # fmt: skip
    return json.dumps({"events": events})


def _handover_late(timer: int = 1) -> str:
    """Timer ``timer`` (1: accept, 2: contact) fired while task 15 ran; the successor's
    look-up (marker 17) applied in the next task with the firing: the reassignment child (18),
    the other timer's cancel and the projection (21) issued there; no cancel of the timer that
    fired (19 for timer 1, 20 for timer 2)."""
    text = HANDOVER.read_text(encoding="utf-8")
    cancel = {1: 19, 2: 20}[timer]
    other = {1: 20, 2: 19}[timer]
    attrs = _attrs(_events(text)[cancel - 1])
    assert attrs["timerId"] == str(timer), attrs
    return answer_moved(
        _fired(text, cancel), answer_id=cancel, completed_id=15, later=[18, other, 21]
    )


def _after_the_firing(text: str) -> list[str]:
    """The kinds of the commands of the task that follows the timer's firing."""
    events = _events(text)
    fired = next(i for i, e in enumerate(events) if e["eventType"] == FIRED)
    done = next(e for e in events[fired:] if e["eventType"] == "EVENT_TYPE_WORKFLOW_TASK_COMPLETED")
    return [
        e["eventType"]
        for e in events
        if str(_attrs(e).get("workflowTaskCompletedEventId")) == str(done["eventId"])
    ]


@pytest.mark.parametrize("fire_first", [True, False], ids=["fire_first", "result_first"])
async def test_a_worker_applying_both_together_issues(fire_first: bool) -> None:
    """The commands the built histories give the joint task are those the case issues when
    the SDK applies the look-up's result and the firing in one activation, in either job
    order: the histories are what a loaded worker writes."""
    text = HANDOVER.read_text(encoding="utf-8")
    handover = [e for e in _events(text) if int(e["eventId"]) <= 17]
    for timer, other in ((1, 2), (2, 1)):
        issued = kinds(await joint_commands(handover, 6, timer, fire_first=fire_first))
        assert issued == [
            "start_child_workflow_execution:JS20261125-000001-reassign-1",
            f"cancel_timer:{other}",
            "schedule_local_activity:project_events",
        ], issued
        late = _events(_handover_late(timer))
        fired = next(i for i, e in enumerate(late) if e["eventType"] == FIRED)
        cancel = next(e for e in late[fired:] if e["eventType"] == CANCELED)
        assert _attrs(cancel)["timerId"] == str(other), cancel
        joint = _after_the_firing(json.dumps({"events": late}))
        assert joint == [
            "EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED",
            "EVENT_TYPE_TIMER_CANCELED",
            "EVENT_TYPE_MARKER_RECORDED",
        ], joint
    issued = kinds(await joint_commands(convened_events(), 5, 1, fire_first=fire_first))
    assert issued == [
        "start_child_workflow_execution:JS20261125-000001-escalation-1",
        "upsert_workflow_search_attributes:",
        "schedule_local_activity:project_events",
    ], issued
    written = _after_the_firing(CONVENED.read_text(encoding="utf-8"))
    assert written == [
        "EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED",
        "EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES",
        "EVENT_TYPE_MARKER_RECORDED",
    ], written


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="finding 1 (audit38): a handover's look-up applied with a deadline timer's firing; "
    "the replay applies it first and cancels the fired timer",
)
@pytest.mark.parametrize("timer", [1, 2], ids=["accept", "contact"])
async def test_a_handover_looked_up_as_a_deadline_timer_fired(timer: int) -> None:
    """Finding 1. Fails today: "TimerMachine in state CancelTimerCommandSent says the
    transition is invalid during event ... TimerFired"."""
    late = _handover_late(timer)
    await replay_checked(WorkflowHistory.from_json(f"handover@timer_{timer}_fired", late))


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="finding 2 (audit38): a convening's look-up applied with a deadline timer's firing; "
    "the replay projects the convening alone and computes other projections than recorded",
)
async def test_a_convening_looked_up_as_the_accept_timer_fired() -> None:
    """Finding 2. Fails today: "... computes other events than it recorded (event 23):
    projection 2: the history recorded 4 events (co_handlers_added, deadline_breached,
    escalation_started, escalated), the replay computes 1 (co_handlers_added)"."""
    text = CONVENED.read_text(encoding="utf-8")
    await replay_checked(WorkflowHistory.from_json("convened@accept_fired", text))


def _looked_up(name: str) -> tuple[list[str], list[str]]:
    """The units' look-ups of a recorded case: as activities (scheduled events), as local
    activities (markers)."""
    events = json.loads((HISTORIES / f"{name}.json").read_text(encoding="utf-8"))["events"]
    lookups = {"known_department", "known_departments"}
    scheduled = [e["activityTaskScheduledEventAttributes"]["activityType"]["name"]
                 for e in events if e["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED"]
    markers = []
    for e in events:
        details = e.get("markerRecordedEventAttributes", {}).get("details", {})
        if "data" in details:
            data = base64.b64decode(details["data"]["payloads"][0]["data"])
            markers.append(json.loads(data)["activity_type"])
    return ([a for a in scheduled if a in lookups], [a for a in markers if a in lookups])


@pytest.mark.parametrize(("name", "lookups"), [
    # the holder, the successor, and the reassignment's choice (_judged_choice)
    ("handover_to_successor", ["known_department"] * 3),
    ("co_handler_convened_again", ["known_departments"] * 2),
])  # fmt: skip
def test_since_v41_the_lookups_are_events_of_their_own_tasks(
    name: str, lookups: list[str]
) -> None:
    """lean-case-v41 (lookups-recorded-v1, CaseWorkflow._look_up): the 移交's and the 会办's
    look-ups are activities — their results are history events, applied with the events of
    their own task live and on replay alike — so findings 1 and 2 cannot be built for a case
    of v41 (the cases above are v38's, and keep the hazard). The recorded histories (test_handover,
    test_co_handler_released; replayed by test_replay) carry no look-up marker."""
    scheduled, markers = _looked_up(name)
    assert markers == [], markers
    assert scheduled == lookups, scheduled
