"""Every recorded history under tests/histories/ must replay with the current workflow code.

A failure here means a workflow change would break cases that are already running: guard the
change with ``workflow.patched(...)`` (see README, "Changing workflow code safely").
Record new histories with ``RECORD_HISTORIES=1 make test``.
"""

from __future__ import annotations

import pytest
from helpers import HISTORIES, sandboxed_replayer
from temporalio.client import WorkflowHistory

RECORDED = sorted(HISTORIES.glob("*.json"))


def test_histories_are_recorded() -> None:
    assert len(RECORDED) >= 3, "the replay suite lost its recorded histories"


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.stem)
async def test_recorded_history_replays(path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text(encoding="utf-8"))
    replayer = sandboxed_replayer()
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name} no longer replays: {result.replay_failure}"
