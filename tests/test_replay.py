"""Every recorded history under tests/histories/ must replay with the current workflow code.

A failure here means a workflow change would break cases that are already running: guard the
change with ``workflow.patched(...)`` (see docs/auditing.md, "Changing workflow code safely").
"Replays" means the recorded commands *and* the events every projection recorded
(``replay_checked``).
The ``prepatch_*`` histories were recorded by the code before each ``workflow.patched`` change
of the eighth session's review (at de65895), on the very paths those patches changed: they check
that a case started before a patch still takes its old path.
A ``v<N>-`` prefix marks the histories of an earlier code version, kept when its paths were
recorded again: ``v9-*`` are those of cases started before ``lean-case-v3`` (they ask their
patches as they run; workflows/patches.py), kept when every path was recorded with v3;
``v10-*`` those of ``lean-case-v3`` cases, kept when some were recorded with ``lean-case-v4``;
``v11-*`` those of ``lean-case-v4`` cases, kept when recorded again with ``lean-case-v5``;
``v12-*`` those of ``lean-case-v5`` cases, kept when recorded again with ``lean-case-v6``;
``v13-*`` those of ``lean-case-v6`` cases, kept when recorded again with ``lean-case-v7``;
``v14-*`` those of ``lean-case-v7`` cases, kept when recorded again with ``lean-case-v8``;
``v15-*`` those of ``lean-case-v8`` cases, kept when recorded again with ``lean-case-v9``
(``v15-reassignment_child_terminated``, ``queue_after_reassignment_without_deadlines`` and
others of ``lean-case-v8`` record the centre as "12345热线中心 (Hotline Centre)", and replay
so; ``v15-hostile_withdrawn_during_dispatch`` drops the overtaken dispatch without a trace);
``v16-*`` those of ``lean-case-v9`` cases, kept when recorded again with ``lean-case-v10``;
``v17-*`` those of ``lean-case-v10`` cases, kept when recorded again with ``lean-case-v11``;
``v18-*`` those of ``lean-case-v11`` cases, kept when recorded again with ``lean-case-v12``;
``v19-*`` those of ``lean-case-v12`` cases, kept when recorded again with ``lean-case-v13``;
``v20-*`` those of ``lean-case-v13`` cases, kept when recorded again with ``lean-case-v14``;
``v21-*`` those of ``lean-case-v14`` cases, kept when recorded again with ``lean-case-v15``;
``v22-*`` those of ``lean-case-v15`` cases, kept when recorded again with ``lean-case-v16``;
``v23-*`` those of ``lean-case-v16`` cases, kept when recorded again with ``lean-case-v17``;
``v24-*`` those of ``lean-case-v17`` cases, kept when recorded again with ``lean-case-v18``;
``v25-*`` those of ``lean-case-v18`` cases, kept when recorded again with ``lean-case-v19``;
``v26-*`` those of ``lean-case-v19`` cases, kept when recorded again with ``lean-case-v20``;
``v27-*`` those of ``lean-case-v20`` cases, kept when recorded again with ``lean-case-v21``;
``v28-*`` those of ``lean-case-v21`` cases, kept when recorded again with ``lean-case-v22``;
``v29-*`` those of ``lean-case-v22`` cases, kept when recorded again with ``lean-case-v23``;
``v30-*`` those of ``lean-case-v23`` cases, kept when recorded again with ``lean-case-v24``;
``v31-*`` those of ``lean-case-v24`` cases, kept when recorded again with ``lean-case-v25``;
``v32-*`` those of ``lean-case-v25`` cases, kept when recorded again with ``lean-case-v26``;
``v33-*`` those of ``lean-case-v26`` cases, kept when recorded again with ``lean-case-v27``;
``v34-*`` those of ``lean-case-v27`` cases, kept when recorded again with ``lean-case-v28``;
``v35-*`` those of ``lean-case-v28`` cases, kept when recorded again with ``lean-case-v29``;
``v36-*`` those of ``lean-case-v29`` cases, kept when recorded again with ``lean-case-v30``;
``v37-*`` those of ``lean-case-v30`` cases, kept when recorded again with ``lean-case-v31``;
``v38-*`` those of ``lean-case-v31`` cases, kept when recorded again with ``lean-case-v32``;
``v39-*`` those of ``lean-case-v32`` cases, kept when recorded again with ``lean-case-v33``;
``v40-*`` those of ``lean-case-v33`` cases, kept when recorded again with ``lean-case-v34``;
``v41-*`` those of ``lean-case-v34`` cases, kept when recorded again with ``lean-case-v35``;
``v42-*`` those of ``lean-case-v35`` cases, kept when recorded again with ``lean-case-v36``;
``v43-*`` those of ``lean-case-v36`` cases, kept when recorded again with ``lean-case-v37`` (or
``lean-case-v38``: ``dissatisfaction_ladder_held_in_the_queue``);
``v44-*`` those of ``lean-case-v37`` cases, kept when recorded again with ``lean-case-v38``;
``v45-*`` those of ``lean-case-v38`` cases, kept when recorded again with ``lean-case-v39``;
``v46-*`` those of ``lean-case-v39`` cases, kept when recorded again with ``lean-case-v40``;
``v47-*`` those of ``lean-case-v40`` cases, kept when recorded again with ``lean-case-v41``
(``v15-co_handler_convened_again`` and ``v39-handover_to_successor`` too, of their epochs).
Record new histories with ``RECORD_HISTORIES=1 make test``.

``children/`` holds the histories of the recorded cases' child workflows (the supervision
ladder, the reassignment), recorded with them (``keep_history``): a change to a child workflow
must keep a running ladder or reassignment replaying, as a change to the case must keep the
case. ``RECORD_HISTORIES=children make test`` records the children of every recorded path
without touching the cases' files. The children were first recorded with ``lean-case-v10``;
``children/v15-*`` by the code of ``lean-case-v8`` (847aef5), ladders without a ceiling or
``obeys_hold`` (docs/auditing.md, "The children's histories").
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import CHILD_HISTORIES, HISTORIES, replays_checked
from temporalio.client import WorkflowHistory

RECORDED = sorted(HISTORIES.glob("*.json"))
CHILDREN = sorted(CHILD_HISTORIES.glob("*.json"))


def test_histories_are_recorded() -> None:
    assert len(RECORDED) >= 3, "the replay suite lost its recorded histories"
    kinds = {_workflow_type(p) for p in CHILDREN}
    assert {"EscalationWorkflow", "ReassignmentWorkflow"} <= kinds, (
        f"the replay suite lost its recorded child histories (has {sorted(kinds)})"
    )


@pytest.fixture(scope="module")
async def replayed(request: pytest.FixtureRequest) -> dict[Path, str | None]:
    """Every selected history replayed once, all through one sandboxed replay worker
    (``helpers.replays_checked``: a replayer per history cost ~4x the CPU); each test below
    asserts its own history's outcome, so a history that no longer replays fails its test
    alone. ``-k`` leaves the unselected histories unreplayed."""
    chosen = [item.callspec.params["path"] for item in request.session.items
              if item.module is request.module and hasattr(item, "callspec")]  # fmt: skip
    outcome: dict[Path, str | None] = {}
    for paths in ([p for p in chosen if p in RECORDED], [p for p in chosen if p in CHILDREN]):
        problems = await replays_checked([_history(p) for p in paths])
        outcome.update({p: problems[p.stem] for p in paths})
    return outcome


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.stem)
async def test_recorded_history_replays(path: Path, replayed: dict[Path, str | None]) -> None:
    assert replayed[path] is None, replayed[path]


@pytest.mark.parametrize("path", CHILDREN, ids=lambda p: p.stem)
async def test_recorded_child_history_replays(
    path: Path, replayed: dict[Path, str | None]
) -> None:
    assert replayed[path] is None, replayed[path]


def _history(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text(encoding="utf-8"))


def _workflow_type(path) -> str:
    history = _history(path)
    return history.events[0].workflow_execution_started_event_attributes.workflow_type.name
