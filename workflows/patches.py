"""Which code a case runs: its ``workflow.patched`` questions, and the patches a case started
since ``lean-case-v3`` takes as given.

Temporal looks for a patch's marker in the workflow task where the code asks for it. A patch
asked right after a local activity is recorded in whatever task the worker went on in — a
loaded or restarted worker may complete a task with the activity's marker and go on in a new
one — while a replay goes on in the marker's task and, not finding the patch there, fails
(TMPRL1100). Four such paths were found and fixed one by one (fault runs 11 and 14, fresh-clone
CI; docs/auditing.md), and replaying every recorded history with each local activity's result
split into a task of its own found four more: a withdrawal while the case is planned or while
a new round's deadlines are computed, a case whose deadline had already passed when it was
planned (a breach, the ladder's patches), a refused local projection
(tests/test_patch_placement.py).

A case started since ``lean-case-v3`` asks none of the patches in :data:`SETTLED_BY_V3`: every
one of them is in force for it from its first task (that is what asking it would answer in a
case that is not being replayed), so its history records that one marker and no later one can
land after a local activity. Cases started before keep asking, and replay as they ran.

A patch added after v3 must not join that set: a v3 case already running when it is deployed
would take it without a marker, and replaying its history with the new code would diverge.
It comes with a new epoch instead (:data:`EPOCHS`): a new marker, asked in a new case's first
task in place of the older ones, that brings the patch. A case of that epoch or later has it
for its whole life; a case started before never (it replays as it ran). No patch of an epoch is
asked, so none can land after a local activity wherever the code asks it, and a new case
records one marker (and the SDK's ``TemporalChangeVersion`` update) however many epochs there
are. (From ``8d3c3ab`` to ``065998c`` on 2026-11-23 a patch after v3 was asked by itself in the
first task instead, two events more per case; :data:`AFTER_V3` keeps those cases replaying.)
"""

from __future__ import annotations

from temporalio import workflow

LEAN_V3 = "lean-case-v3"

# Every patch the case workflow asked for before lean-case-v3 (workflows/complaint.py,
# ladder.py, projector.py, case_record.py; jiesu.case.lifecycle's ``Refusal.since``).
SETTLED_BY_V3: frozenset[str] = frozenset({
    "lean-case-v2", "lean-case-v1", "hardened-messages-v1",
    "escalation-ladder-v1", "rehandle-v1", "fresh-round-after-queue-v1",
    "return-approval-v1", "extension-decision-due-v1", "accountability-record-v1",
    "contribution-due-v1", "return-decision-due-v1",
    "inaction-signal-v1", "direct-answer-v1", "grid-on-the-spot-v1",
    "closed-while-planning-v1", "closed-during-new-round-v1",
    "revive-projector-v1", "project-after-close-v1", "linked-patches-before-plan-v1",
    "actions-wait-for-plan-v1", "closed-before-plan-v1", "history-watch-v1",
    "ladder-stops-on-purpose-v1", "ladder-watches-rehandling-v1", "ladder-first-step-in-case-v1",
    "local-projection-failure-v1", "bounded-projection-v1", "revived-projection-failure-v1",
    "distinct-co-handlers-v1", "one-reassignment-at-a-time-v1", "ladder-steps-once-v1",
    "verdict-overtaken-v1", "supplements-bounded-v1", "supplements-shared-fairly-v1",
    "rejections-bounded-v1", "supervision-orders-bounded-v1", "extension-requests-bounded-v1",
    "repeat-reports-bounded-v1", "co-handlers-bounded-v1", "returns-bounded-v1",
})  # fmt: skip

# Cases recorded from 8d3c3ab to 065998c (lean-case-v3 with the first patch after it) asked
# these in their first task, after lean-case-v3's marker; they still do, to replay as they ran.
AFTER_V3: tuple[str, ...] = ("centre-not-co-handler-v1",)

# Each epoch: its marker, asked in a new case's first task, and the patches it brings. A case
# of an epoch has every patch of that epoch and the ones before it, and none after (it started
# before them): no patch of an epoch is ever asked, so none is recorded, anywhere. Oldest
# first; append only. A new patch is a new epoch: a new case still records one marker.
EPOCHS: tuple[tuple[str, frozenset[str]], ...] = (
    (LEAN_V3, SETTLED_BY_V3),
    ("lean-case-v4", frozenset({"centre-not-co-handler-v1"})),
    ("lean-case-v5", frozenset({"ladder-child-ended-v1"})),
    ("lean-case-v6", frozenset({"reassignment-child-ended-v1", "round-releases-co-handlers-v1"})),
    ("lean-case-v7", frozenset({"supervision-due-bounded-v1"})),
    ("lean-case-v8", frozenset({
        "deadlines-from-dispatch-v1", "co-handler-released-v1", "reconvene-released-v1",
    })),
    ("lean-case-v9", frozenset({
        "queued-ladder-ceiling-v1", "centre-name-chinese-v1", "dispatch-overtaken-recorded-v1",
    })),
    ("lean-case-v10", frozenset({
        "queue-holds-ladder-v1", "ladder-child-id-taken-v1", "reassignment-child-id-taken-v1",
        "unrouted-not-accountable-v1", "queued-steps-held-v1", "centre-not-dispatched-v1",
    })),
    ("lean-case-v11", frozenset({"deadlines-end-at-reassignment-v1"})),
    ("lean-case-v12", frozenset({"actions-timed-when-sent-v1"})),
    ("lean-case-v13", frozenset({"late-actions-judged-v1"})),
    ("lean-case-v14", frozenset({"moved-deadline-judged-v1"})),
    ("lean-case-v15", frozenset({"contribution-due-judged-v1"})),
    ("lean-case-v16", frozenset({
        "lapses-timed-at-their-due-v1", "one-breach-per-watch-v1", "watch-settles-first-v1",
    })),
    ("lean-case-v17", frozenset({"late-return-at-the-bound-v1", "late-waiver-needs-the-unit-v1"})),
    ("lean-case-v18", frozenset({"lapses-before-later-actions-v1"})),
    ("lean-case-v19", frozenset({"promise-watched-v1"})),
    ("lean-case-v20", frozenset({
        "closed-case-not-reassigned-v1", "judged-as-reassigning-v1", "lapse-rechecked-v1",
    })),
    ("lean-case-v21", frozenset({"messages-after-decisions-v1"})),
    ("lean-case-v22", frozenset({"messages-after-lapses-v1"})),
    ("lean-case-v23", frozenset({"repeats-after-close-refiled-v1"})),
    ("lean-case-v24", frozenset({"messages-after-dispatch-v1", "queue-ladder-after-the-units-v1"})),
    ("lean-case-v25", frozenset({"late-reports-batched-v1"})),
    ("lean-case-v26", frozenset({
        "not-supervised-while-reassigned-v1", "reassign-choice-judged-v1",
    })),
    ("lean-case-v27", frozenset({
        "rehandle-ladder-after-the-other-v1", "supervision-after-dispatch-v1",
    })),
    ("lean-case-v28", frozenset({
        "rehandle-ladder-held-in-queue-v1", "ladder-outcome-judged-v1",
    })),
    ("lean-case-v29", frozenset({"chosen-unit-checked-v1"})),
    ("lean-case-v30", frozenset({"ladder-orders-signed-v1"})),
    ("lean-case-v31", frozenset({"ladder-steps-signed-v1"})),
    ("lean-case-v32", frozenset({"handover-v1"})),
    ("lean-case-v33", frozenset({"returner-not-chosen-v1"})),
    ("lean-case-v34", frozenset({"ladder-signed-from-its-start-v1"})),
    ("lean-case-v35", frozenset({"handover-after-decisions-v1"})),
    ("lean-case-v36", frozenset({"no-steps-after-close-v1"})),
    ("lean-case-v37", frozenset({"units-looked-up-v1", "queue-not-to-returner-v1"})),
    ("lean-case-v38", frozenset({"ladder-orders-before-projection-v1"})),
    ("lean-case-v39", frozenset({"looked-up-in-order-v1"})),
    ("lean-case-v40", frozenset({"no-ladder-after-close-v1", "steps-end-with-the-duty-v1"})),
    ("lean-case-v41", frozenset({"lookups-recorded-v1"})),
)
EPOCH_IDS = frozenset(epoch for epoch, _ in EPOCHS)
_INTRODUCED = {patch: n for n, (_, patches) in enumerate(EPOCHS) for patch in patches}


class Patches:
    """The case's answer to ``workflow.patched``; one per case workflow, shared by the parts
    that ask (the case, its ladder, its projector, its record)."""

    def __init__(self) -> None:
        self.epoch = -1  # index in EPOCHS; -1: a case from before lean-case-v3
        self._first_task: dict[str, bool] = {}  # AFTER_V3's answers, from the first task

    def start(self) -> None:
        """Asked first, in the case's first workflow task: the case's epoch, newest first (a
        new case answers the newest; an older one's replay finds its own marker). A case
        without one, or of v3, asks AFTER_V3 too, as the cases of 8d3c3ab did."""
        self.epoch = next(
            (n for n in reversed(range(len(EPOCHS))) if workflow.patched(EPOCHS[n][0])), -1
        )
        if self.epoch < 1:
            self._first_task = {patch: workflow.patched(patch) for patch in AFTER_V3}

    def __call__(self, patch: str) -> bool:
        introduced = _INTRODUCED.get(patch)
        if introduced is not None and introduced <= self.epoch:
            return True  # in force since the case's first task; no marker
        if patch in self._first_task:
            return self._first_task[patch]  # decided in the first task (v3 and 8d3c3ab)
        if introduced is not None and introduced > 0:
            return False  # a patch of a later epoch: the case started before it
        return workflow.patched(patch)  # a case from before v3 asks as it always did
