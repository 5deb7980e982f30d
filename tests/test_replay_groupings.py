"""Other instances of the v38 class (tests/test_ladder_orders_before_projection.py): a loaded
worker completes a workflow task with a local activity's marker and applies the activity's
result in the next task, together with a server's answer that came meanwhile; a replay
applies the result in the marker's task, before the answer. Wherever the result and the
answer wake coroutines that issue commands (or decide) in an order of their own, the two
groupings issue different commands: TMPRL1100. Audit of 2026-11-25 (helper audit38,
``history_surgery.answer_moved``: ``answered_late`` for any answer, the answer's own task
dropped or the answer lifted out of another task's window).

Finding (strict xfail below): a 移交's look-up and a deadline's timer. ``_hand_over`` (the
main loop) awaits two local ``known_department`` look-ups; the unit's deadline watches
(``_watch``: accept, contact) wait on their timers. Recorded (handover_to_successor, a
lean-case-v32 case; the code involved is unchanged through v38): task 15 has the markers 16
and 17, then the reassignment child 18, the cancels of timers 1 and 2 (19, 20: the watches end
at the reassignment) and the projection 21. Let timer 1 (accept) fire while the worker runs
task 15 and the successor's look-up (17) be applied in the next task with the firing: that
worker cannot cancel timer 1 (it fired) and issues 18, 20, 21 there. The replay applies 17
in task 15: the handover is carried out, the accept watch sees its deadline no longer owed
and cancels timer 1; then the firing: "TimerMachine in state CancelTimerCommandSent says the
transition is invalid during event ... TimerFired". Worse, the order of the two in one
activation decides: with the marker too in the firing's task (a worker whose task timed out
while the look-up ran), the watch judges first, records the accept breach and starts
``escalation-1`` before the reassignment child ("Child workflow id of scheduled event
'...-reassign-1' does not match child workflow id of command '...-escalation-1'" against the
recorded commands) — a breach the other groupings never record, for a handover sent before the
deadline. Same for the contact and finish watches, and for any main-loop look-up whose result
ends a watch whose timer can fire meanwhile (``_convene_looked_up``'s ``known_departments``
where a convening ends a contribution watch, a dispatch's ``compute_deadlines`` in a case
whose old round still had a running timer).

Checked, cannot fail (a plain test for the first):

- The ladder child's start answered late past a queue's ``compute_deadlines`` marker
  (dissatisfaction_ladder_held_in_the_queue, v38: answer 80, task 86 keeps marker 87; 88 hold,
  89-91 projections and upsert in the next task): since v38 the ladder owes its ``hold`` once
  started (``owed_once_started``), so the projector waits in both groupings; the recorded order
  replays. (Before v38: the known failure, test_ladder_orders_before_projection.)
- The ``hold``/``release`` answers: v38 itself (test_ladder_orders_before_projection).
- The ``stop`` answer: the ladder then only awaits its child's outcome; no command follows it.
- The ladder child's outcome: ``_climb`` records ESCALATION_STOPPED; the watchers that start
  the next ladder (``_rehandle_ladder_after``, ``_queue_ladder_after_the_units``) decide in the
  condition sweep after every job of the activation is applied, and the main loop's look-ups
  cannot overlap them with a result that changes what they read except through the dispatch
  out of the queue, which they read the same either way (status and ``active`` both applied
  before the sweep).
- The reassignment child (``choose_department``): the main loop itself awaits it, so no local
  activity of the main loop can be pending beside its start or its result; the projector's
  ``project_events`` can, but its result changes no state: the projector then loops and
  projects only what the answer's coroutine recorded, in both groupings (a breach timer's
  ladder in promise_kept_after_a_late_approval, 45 → 49-51, likewise).
- Activities run with ``run_activity`` in a lean case: at intake (direct answer, on the spot:
  before the projector starts) and the refiling at the close (after the projector ended): no
  local activity is pending beside them.
"""

from __future__ import annotations

import json

import pytest
from helpers import HISTORIES, replay_checked
from history_surgery import answer_moved
from temporalio.client import WorkflowHistory

LADDER = "dissatisfaction_ladder_held_in_the_queue"  # lean-case-v38
# handover_to_successor (lean-case-v32), kept here so that a re-recording there leaves the ids
HANDOVER = HISTORIES / "batching" / "handover_looked_up_as_the_accept_timer_fired.json"
CANCELED, FIRED = "EVENT_TYPE_TIMER_CANCELED", "EVENT_TYPE_TIMER_FIRED"


async def test_the_ladder_start_answered_after_the_queue_deadlines() -> None:
    text = (HISTORIES / f"{LADDER}.json").read_text(encoding="utf-8")
    late = answer_moved(text, answer_id=80, completed_id=86, later=[88, 89, 90, 91])
    await replay_checked(WorkflowHistory.from_json(f"{LADDER}@start_late", late))
    # the projector's commands first cannot be what either grouping issues
    with pytest.raises(AssertionError, match="TMPRL1100"):
        wrong = answer_moved(text, answer_id=80, completed_id=86, later=[89, 90, 91, 88])
        await replay_checked(WorkflowHistory.from_json(f"{LADDER}@projector_first", wrong))


def _fired(text: str, cancel_id: int) -> str:
    """The history with the cancel ``cancel_id`` replaced by its timer's firing."""
    events = json.loads(text)["events"]
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


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="a handover's look-up applied with a deadline timer's firing (audit38): the replay "
    "applies it first and cancels the fired timer (TMPRL1100)",
)
async def test_a_handover_looked_up_as_the_accept_timer_fired() -> None:
    """Timer 1 (accept) fires while task 15 runs; the successor's look-up (marker 17) is
    applied in the next task with the firing: there the case issues the reassignment child
    (18), the contact timer's cancel (20) and the projection (21), as recorded, but no cancel
    of timer 1 (19: it fired). A case must replay what its worker wrote."""
    text = HANDOVER.read_text(encoding="utf-8")
    assert json.loads(text)["events"][18]["timerCanceledEventAttributes"]["timerId"] == "1"
    late = answer_moved(_fired(text, 19), answer_id=19, completed_id=15, later=[18, 20, 21])
    await replay_checked(WorkflowHistory.from_json("handover@accept_fired", late))
