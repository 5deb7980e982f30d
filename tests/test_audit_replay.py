"""Replay verification: recorded histories against changed workflow code, and the ``jiesu
replay`` command as a deployment gate (exit code 1 when any case does not replay)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from helpers import HISTORIES, eventually
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from test_audit import closed_case, run_cli

from jiesu.audit import replay as audit_replay
from jiesu.audit.replay import (
    NON_DETERMINISTIC,
    REPLAYS,
    make_replayer,
    replay_case,
    replay_cases,
    replay_histories,
)
from jiesu.audit.timeline import decode_payload
from jiesu.case import lifecycle
from jiesu.case.domain import CaseSignal, CaseStart, CaseState
from jiesu.config import Settings
from workflows import ALL_WORKFLOWS
from workflows.complaint import ComplaintWorkflow

RECORDED = sorted(HISTORIES.glob("*.json"))


@activity.defn(name="audit_test_extra_step")
async def extra_step(case_id: str) -> None:
    """What the changed code does first: any activity the recorded histories do not have."""


@workflow.defn(name="ComplaintWorkflow", sandboxed=False)
class ChangedComplaintWorkflow(ComplaintWorkflow):
    """ComplaintWorkflow as someone might change it without ``workflow.patched``: one more
    activity before everything else. Same workflow name, so old histories meet new code."""

    @workflow.run
    async def run(self, start: CaseStart) -> CaseState:
        await workflow.execute_activity(
            extra_step, start.case_id, start_to_close_timeout=timedelta(seconds=10)
        )
        return self._state


def _recorded(path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text(encoding="utf-8"))


async def test_recorded_histories_replay_with_the_current_code() -> None:
    replayer = make_replayer(ALL_WORKFLOWS)
    verdicts = await replay_histories([_recorded(p) for p in RECORDED], replayer)
    assert [v.verdict for v in verdicts] == [REPLAYS] * len(RECORDED), verdicts


async def test_a_suspected_deadlock_is_replayed_again_before_it_is_reported() -> None:
    """The SDK's deadlock detector fails a replay whose activation has not yielded within 2 s
    of wall time, which a loaded machine reaches with sound code (test_audit's replay through
    the API failed so). Such a verdict is settled by one more replay: a sound history then
    replays; a real deadlock would fail again."""
    history = _recorded(HISTORIES / "urgent_happy_path.json")
    detected = RuntimeError(
        "[TMPRL1101] Potential deadlock detected: workflow didn't yield within 2 second(s)."
    )  # the replay failure as the SDK words it
    first = audit_replay._history_verdict(history, detected)
    assert first.verdict == audit_replay.FAILED
    settled = await audit_replay._with_location(first, history, make_replayer(ALL_WORKFLOWS))
    assert settled.verdict == REPLAYS, settled.message


# One history whose case runs regular activities first (before lean-case-v1) and one whose
# case plans with a local activity (since): both diverge at the first command of the changed code.
_FIRST_COMMAND_CASES = [
    next(p for p in RECORDED if p.stem.startswith("v4-")),
    # named, not the first in the folder: a later history may open with a patch marker
    # (accept_ahead_of_the_plan.json), where core names the patch, not the planning activity
    next(p for p in RECORDED if p.stem == "urgent_happy_path"),
]


@pytest.mark.parametrize("path", _FIRST_COMMAND_CASES, ids=lambda p: p.stem)
async def test_changed_code_is_non_deterministic_at_the_first_command(path) -> None:
    history = _recorded(path)
    [verdict] = await replay_histories([history], make_replayer([ChangedComplaintWorkflow]))
    assert verdict.verdict == NON_DETERMINISTIC
    assert verdict.message is not None and "Nondeterminism" in verdict.message
    # The point of divergence: the first command the history recorded, named in the message.
    assert verdict.event_id is not None
    previous = history.events[verdict.event_id - 2]
    assert previous.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    first = history.events[verdict.event_id - 1]
    # (A patch marker may come first: core matches markers leniently, so the message names the
    # first activity of that task.)
    assert first.event_type in (
        EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, EventType.EVENT_TYPE_MARKER_RECORDED
    )
    if path.stem.startswith("v4-"):  # regular activities: the message names both commands
        assert "audit_test_extra_step" in verdict.message
        event = next(
            e for e in history.events[verdict.event_id - 1 :]
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        )
        name = event.activity_task_scheduled_event_attributes.activity_type.name
        assert f"'{name}'" in verdict.message
    else:  # the recorded first command is the local planning activity (a marker)
        assert "LocalActivity" in verdict.message


# --- live cases and the command line -------------------------------------------------------------


@pytest.fixture(scope="module")
async def good_case(api: httpx.AsyncClient, client: Client) -> str:
    return await closed_case(api, client)


@pytest.fixture(scope="module")
async def old_code_case(
    client: Client, pool: asyncpg.Pool, settings: Settings, good_case: str
) -> str:
    """A case recorded by *other* code (the changed class, on its own task queue): replaying
    it with the current code must fail, as a deployment of incompatible code would."""
    history = await client.get_workflow_handle(good_case).fetch_history()
    start_event = history.events[0].workflow_execution_started_event_attributes
    start = CaseStart.model_validate(decode_payload(start_event.input.payloads[0]))
    case_id = f"{good_case}-old-{uuid.uuid4().hex[:6]}"
    start = start.model_copy(update={"case_id": case_id})
    queue = f"{settings.task_queue}-old-code"
    async with Worker(
        client, task_queue=queue, workflows=[ChangedComplaintWorkflow], activities=[extra_step]
    ):
        await client.execute_workflow(
            "ComplaintWorkflow", start, id=case_id, task_queue=queue, result_type=CaseState
        )
    return case_id


async def test_replay_case_reports_each_history(
    client: Client, pool: asyncpg.Pool, good_case: str, old_code_case: str
) -> None:
    good = await replay_case(client, pool, good_case, make_replayer(ALL_WORKFLOWS))
    assert good.ok and good.verdict == REPLAYS and good.histories[0].source == "temporal"
    bad = await replay_case(client, pool, old_code_case, make_replayer(ALL_WORKFLOWS))
    assert not bad.ok and bad.verdict == NON_DETERMINISTIC
    assert bad.divergence is not None and bad.divergence.event_id is not None
    missing = await replay_case(client, pool, "JS19990101-000000", make_replayer(ALL_WORKFLOWS))
    assert missing.verdict == "missing" and not missing.ok

    seen: list[str] = []
    summary = await replay_cases(
        client, pool, [good_case, "JS19990101-000000", old_code_case, good_case],
        replayer=make_replayer(ALL_WORKFLOWS),
        on_verdict=lambda v: seen.append(f"{v.case_id}:{v.verdict}"),
    )
    assert summary.total == 4 and not summary.ok
    assert summary.counts == {REPLAYS: 2, NON_DETERMINISTIC: 1, "missing": 1}
    assert sorted(seen) == sorted([
        f"{good_case}:replays", "JS19990101-000000:missing",
        f"{old_code_case}:{NON_DETERMINISTIC}", f"{good_case}:replays",
    ])


async def test_cli_replay_gates_a_deployment(
    env: WorkflowEnvironment, settings: Settings, good_case: str, old_code_case: str
) -> None:
    code, out, err = await run_cli(env, settings, "replay", good_case)
    assert code == 0, out + err
    assert f"{good_case}: replays" in out and "summary: 1 cases: 1 replays" in out
    assert "replayed 1/1 cases, 0 failing" in err

    code, out, err = await run_cli(env, settings, "replay", good_case, old_code_case)
    assert code == 1, out + err
    assert f"{old_code_case}: non-deterministic at event " in out
    assert "Nondeterminism error" in out
    assert "summary: 2 cases: 1 non-deterministic, 1 replays" in out


async def test_cli_replay_selects_by_visibility_query(
    client: Client, env: WorkflowEnvironment, settings: Settings, good_case: str
) -> None:
    query = f'WorkflowId="{good_case}"'

    async def listed() -> bool:
        return (await client.count_workflows(f'WorkflowType="ComplaintWorkflow" AND {query}')
                ).count == 1

    await eventually(listed)
    code, out, err = await run_cli(env, settings, "replay", "--query", query)
    assert code == 0, out + err
    assert "summary: 1 cases: 1 replays" in out


@workflow.defn(name="ComplaintWorkflow", sandboxed=False)
class UnpatchedRuleComplaintWorkflow(ComplaintWorkflow):
    """ComplaintWorkflow with its rules applied to every case, as if each rule added while
    cases ran had been written without ``workflow.patched``: the same commands (a refusal is
    projected like the action it refuses), other events."""

    @workflow.run
    async def run(self, start: CaseStart) -> CaseState:
        return await super().run(start)

    def _check(self, signal: CaseSignal, payload: Any) -> lifecycle.Refusal | None:
        check = lifecycle.CHECKS.get(signal)
        return check(self._state, payload, workflow.now()) if check else None


async def test_a_rule_changed_without_a_patch_is_caught_though_the_commands_match() -> None:
    """A case from before ``distinct-co-handlers-v1`` named a department twice, and it was
    added. Replayed with the rule applied unpatched, Temporal sees the same commands; the
    witness sees the projection computing a refusal where the history recorded the addition,
    and names that projection's marker."""
    history = _recorded(HISTORIES / "prepatch_co_handler_named_twice.json")
    [sound] = await replay_histories([history], make_replayer(ALL_WORKFLOWS))
    assert sound.verdict == REPLAYS, sound.message
    [verdict] = await replay_histories([history], make_replayer([UnpatchedRuleComplaintWorkflow]))
    assert verdict.verdict == NON_DETERMINISTIC, verdict
    assert "co_handlers_added" in (verdict.message or "") and "repeated_department" in (
        verdict.message or ""
    ), verdict.message
    marker = history.events[verdict.event_id - 1]
    assert marker.event_type == EventType.EVENT_TYPE_MARKER_RECORDED


def test_a_summary_counts_verdicts_by_their_code() -> None:
    """The fault harness prints the counts: ``{'replays': 300}``, not the enum's repr."""
    summary = audit_replay.ReplaySummary()
    summary.add(audit_replay.CaseVerdict(case_id="JS-1", verdict=audit_replay.Verdict.REPLAYS))
    assert repr(summary.counts) == "{'replays': 1}"
