"""No patch is asked right after a local activity (workflows/patches.py).

Temporal looks for a patch's marker in the workflow task where the code asks for it. A loaded or
restarted worker may complete a task with a local activity's marker and go on from its result
in a new task, recording a patch asked there; a replay goes on in the marker's task and fails
(TMPRL1100) — fault runs 11 and 14, and a fresh-clone CI run, each found one such path.

Replaying every recorded history with each local activity's result split into a task of its own
(``history_surgery.after_local_activity``) found four more paths in cases started before
``lean-case-v3``: a withdrawal while the case was planned, a withdrawal while a new round's
deadlines were computed, a case registered after its deadline had passed (the breach and the
ladder's patches), and a refused local projection. A case since v3 asks none of those patches.

The static check reads the histories: a patch marker recorded in the same workflow task as a
local activity's marker, after it, is a patch asked after that activity. It runs on every
recorded history of a case since v3 (cheap); the replay of the split history runs on five
histories of the four paths above (two of the late case), and on their histories from before
v3 it must fail — so this test can.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from helpers import HISTORIES, replay_checked
from history_surgery import after_local_activity
from temporalio.client import WorkflowHistory

from jiesu.audit import placement
from workflows.patches import AFTER_V3, EPOCH_IDS, EPOCHS

LOCAL_ACTIVITY, PATCH = placement.LOCAL_ACTIVITY_MARKER, placement.PATCH_MARKER


def _markers(history: str) -> list[tuple[int, str, str, str]]:
    """(event id, marker name, its workflow task's completed id, patch id or '')."""
    out = []
    for e in json.loads(history)["events"]:
        attrs = e.get("markerRecordedEventAttributes")
        if not attrs:
            continue
        patch = ""
        if attrs["markerName"] == PATCH:
            data = attrs["details"]["patch-data"]["payloads"][0]["data"]
            patch = placement.patch_id(base64.b64decode(data))
        task = str(attrs["workflowTaskCompletedEventId"])
        out.append((int(e["eventId"]), attrs["markerName"], task, patch))
    return out


def patches_after_local_activity(history: str) -> list[str]:
    return placement.patches_after_local_activity(WorkflowHistory.from_json("h", history))


def _since_v3(path: Path) -> bool:
    """A case of an epoch (lean-case-v3 or later)."""
    return any(p in EPOCH_IDS for *_, p in _markers(path.read_text(encoding="utf-8")))


RECORDED = sorted(HISTORIES.glob("*.json"))
SINCE_V3 = [p for p in RECORDED if _since_v3(p)]
# The four paths the split replay found (the late case twice: a missed contact and a missed
# accept), recorded by a case since v3 (unprefixed) and before
# it (v9-: the histories of lean-case-v2, kept when v3 came).
FOUND = [
    "hostile_withdrawn_while_planning",
    "hostile_withdrawn_during_new_round",
    "missed_contact_deadline",
    "ladder_after_accept_breach",
    "projection_failed_once",
]


def test_cases_since_v3_are_recorded() -> None:
    assert len(SINCE_V3) >= 40, "the recorded histories of cases since lean-case-v3 are missing"


@pytest.mark.parametrize("path", SINCE_V3, ids=lambda p: p.stem)
def test_no_patch_is_recorded_after_a_local_activity(path: Path) -> None:
    assert patches_after_local_activity(path.read_text(encoding="utf-8")) == []


def test_the_check_finds_the_old_paths() -> None:
    """Before v3 these histories asked patches after a local activity: the check sees it."""
    for name in FOUND:
        text = (HISTORIES / f"v9-{name}.json").read_text(encoding="utf-8")
        assert patches_after_local_activity(text), name


def _local_activities(history: str) -> list[int]:
    return [i for i, name, *_ in _markers(history) if name == LOCAL_ACTIVITY]


@pytest.mark.parametrize("name", FOUND)
async def test_a_case_since_v3_replays_however_its_tasks_were_split(name: str) -> None:
    text = (HISTORIES / f"{name}.json").read_text(encoding="utf-8")
    assert _since_v3(HISTORIES / f"{name}.json"), f"{name} was not recorded since v3"
    for marker in _local_activities(text):
        split = after_local_activity(text, marker)
        await replay_checked(WorkflowHistory.from_json(f"{name}@{marker}", split))


@pytest.mark.parametrize("name", FOUND)
async def test_the_same_path_before_v3_did_not(name: str) -> None:
    text = (HISTORIES / f"v9-{name}.json").read_text(encoding="utf-8")
    failures = []
    for marker in _local_activities(text):
        split = after_local_activity(text, marker)
        try:
            await replay_checked(WorkflowHistory.from_json(f"v9-{name}@{marker}", split))
        except AssertionError as err:
            failures.append(str(err))
    assert any("TMPRL1100" in f for f in failures), f"v9-{name} replays under every split"


def test_every_patch_the_code_asks_belongs_to_an_epoch() -> None:
    """A new patch must come with a new epoch (workflows/patches.py): asked by itself, a running
    case of an older epoch would take it without a marker, or record it after a local
    activity. Every patch id the code names is an epoch's."""
    root = Path(__file__).resolve().parent.parent
    sources = [p for p in root.glob("workflows/*.py") if p.name != "patches.py"]
    sources.append(root / "jiesu/case/lifecycle.py")
    ids = {
        m
        for src in sources
        for m in re.findall(r'"([a-z][a-z0-9-]*-v\d+)"', src.read_text(encoding="utf-8"))
    }
    listed = set().union(*(patches for _, patches in EPOCHS))
    assert ids - EPOCH_IDS == listed, (ids - EPOCH_IDS - listed, listed - ids)
    assert set(AFTER_V3) <= listed


def test_a_new_case_records_one_patch_marker_its_epoch() -> None:
    """However many patches there are, a new case records one marker: its epoch's."""
    text = (HISTORIES / "urgent_happy_path.json").read_text(encoding="utf-8")
    assert [p for _, name, _, p in _markers(text) if name == PATCH] == [EPOCHS[-1][0]]
