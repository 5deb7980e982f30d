"""A signal no workflow task has handled yet is not "no effect recorded".

The timeline read a signal with no recorded effect as ``no effect recorded`` — also on a
running case whose workflow task handling it had not completed yet (its effect simply not yet
written), so an auditor reading a live case concluded the action was ignored. Now a signal
that arrived after the case's last completed workflow task reads ``not yet processed`` on a
running case (尚未处理 on the console) and ``not processed`` on a closed one (the case ended
first); ``no effect recorded`` is left for a signal the case handled and recorded nothing for.
"""

from __future__ import annotations

import html as html_lib
import re
import uuid

import asyncpg
import httpx
from helpers import HISTORIES, audit_page, eventually, register
from temporalio.client import Client, WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from test_api_errors import silent
from test_audit import run_cli
from test_audit_odd_signals import URBAN

from api.console import audit_words
from api.console.event_words import Words
from jiesu.audit.timeline import TimelineEntry, decode_history
from jiesu.case.domain import AcceptAction
from jiesu.config import Settings
from worker import activities as house_activities
from workflows import ALL_WORKFLOWS
from workflows.complaint import ComplaintWorkflow


def _recorded(name: str) -> WorkflowHistory:
    return WorkflowHistory.from_json(name, (HISTORIES / f"{name}.json").read_text("utf-8"))


def _signals(history: WorkflowHistory) -> list[TimelineEntry]:
    return [e for e in decode_history(history).entries if e.kind == "signal"]


UNHANDLED = {  # (history, outcome): how many signals; the old code said "no effect recorded"
    ("co_handlers_bounded.json", "not yet processed"): 2,
    ("co_handlers_released_at_new_round.json", "not processed"): 1,
    ("dispatched_from_queue.json", "not processed"): 1,
    ("extension_requests_bounded.json", "not yet processed"): 1,
    ("grid_unit_handles_routed_case.json", "not processed"): 1,
    ("hostile_ladder_step_duplicated.json", "not yet processed"): 1,
    ("prepatch_ladder_step_duplicated.json", "not yet processed"): 1,
    ("queue_waits_without_deadlines.json", "not processed"): 1,
    ("return_reassigned_automatically.json", "not processed"): 1,
    ("v10-co_handlers_bounded.json", "not yet processed"): 2,
    ("v10-dispatched_from_queue.json", "not processed"): 1,
    ("v14-dispatched_from_queue.json", "not processed"): 1,
    ("v9-co_handlers_bounded.json", "not yet processed"): 2,
    ("v9-grid_unit_handles_routed_case.json", "not processed"): 1,
    ("v9-joint_handling.json", "not processed"): 1,
}


def test_the_recorded_histories_unhandled_signals_say_so() -> None:
    """Every recorded history: 18 signals whose effect no completed workflow task wrote —
    9 in histories captured running (``not yet processed``), 9 in histories terminated
    before the case handled them (``not processed``) — all of which the old code called
    ``no effect recorded``."""
    found: dict[tuple[str, str], int] = {}
    for path in sorted(HISTORIES.glob("*.json")):
        timeline = decode_history(WorkflowHistory.from_json(path.stem, path.read_text("utf-8")))
        for signal in (e for e in timeline.entries if e.kind == "signal"):
            outcome = signal.details.get("outcome")
            if outcome in ("not yet processed", "not processed"):
                found[path.name, outcome] = found.get((path.name, outcome), 0) + 1
    assert found == UNHANDLED


def test_a_signal_a_completed_task_handled_but_did_not_yet_record_is_not_yet_processed() -> None:
    """co_handlers_bounded.json, captured running: its last two add_co_handlers came in
    before a workflow task that completed without recording the case's events (#24), and
    the next task (#25) was outstanding — it carries their effect. "The case has an
    outstanding workflow task" is what says the effect is still to come."""
    history = _recorded("co_handlers_bounded")
    last_two = _signals(history)[-2:]
    assert [s.details["outcome"] for s in last_two] == ["not yet processed"] * 2
    assert all(s.event_id < 24 for s in last_two)
    assert history.events[-2].HasField("workflow_task_scheduled_event_attributes")


def test_a_signal_the_case_ended_before_handling_reads_not_processed() -> None:
    """dispatched_from_queue.json: the accept came in, its workflow task failed (the recording
    worker went away), and the case was terminated."""
    accept = _signals(_recorded("dispatched_from_queue"))[-1]
    assert accept.details["outcome"] == "not processed"
    assert accept.summary == "accept — not processed: the case was terminated before handling it"


def test_a_running_case_s_last_signal_reads_not_yet_processed() -> None:
    last = _signals(_recorded("extension_requests_bounded"))[-1]
    assert last.details["outcome"] == "not yet processed", last.summary
    assert last.summary.endswith(" — not yet processed: the case has not handled it yet")


def _said(html: str) -> list[str]:
    found = re.findall(r'<span class="said">(.*?)</span>', html, re.S)
    return [html_lib.unescape(re.sub(r"<[^>]+>", "", s)) for s in found]


async def test_a_live_case_s_signal_awaiting_its_task_reads_not_yet_processed(
    api: httpx.AsyncClient, client: Client, env: WorkflowEnvironment, pool: asyncpg.Pool,
    settings: Settings,
) -> None:
    """A case run on a task queue no worker polls (a stopped worker): its accept waits for a
    workflow task. The timeline, ``jiesu timeline`` and the console say it is not yet
    processed; once a worker serves the queue the case handles it and the line says how."""
    case_id = (await register(api))["case_id"]
    queue = f"jiesu-pending-{uuid.uuid4().hex[:8]}"
    orphan = await silent(client, case_id, queue)
    try:
        await orphan.signal(ComplaintWorkflow.accept, AcceptAction(actor=URBAN))
        (accept,) = _signals(await orphan.fetch_history())
        assert accept.details["outcome"] == "not yet processed"
        assert accept.summary == "accept — not yet processed: the case has not handled it yet"

        code, out, err = await run_cli(env, settings, "timeline", case_id)
        assert code == 0, err
        (line,) = [line for line in out.splitlines() if " signal " in line]
        assert line.endswith("accept — not yet processed: the case has not handled it yet"), out
        assert "no effect recorded" not in out

        page = await audit_page(api, case_id)
        assert page.status_code == 200
        said = _said(page.text)
        assert "收到“签收”，尚未处理：工单还未办理这条操作，结果待定" in said, said
        assert not [s for s in said if "未见办理记录" in s], said

        own_activities = house_activities(pool, settings.model_copy(update={"task_queue": queue}))
        async with Worker(client, task_queue=queue, workflows=ALL_WORKFLOWS,
                          activities=own_activities,
                          workflow_runner=UnsandboxedWorkflowRunner()):  # fmt: skip

            async def handled() -> TimelineEntry | None:
                (signal,) = _signals(await orphan.fetch_history())
                return signal if signal.details["outcome"] in ("applied", "rejected") else None

            await eventually(handled, within=30)
    finally:
        await orphan.terminate("test finished")


def test_the_console_says_not_yet_processed_and_not_processed_in_chinese() -> None:
    """The 审计记录 page's sentences for a running case's unhandled accept and a terminated
    case's (its words: 尚未处理 / 未处理, never 未见办理记录)."""
    words = Words({}, lambda at: str(at)[:16])
    for name, said in (
        ("extension_requests_bounded", "，尚未处理：工单还未办理这条操作，结果待定"),
        ("dispatched_from_queue", "收到“签收”，未处理：工单在办理这条操作之前已结束"),
    ):
        timeline = decode_history(_recorded(name))
        signals = [r for r in audit_words.rows(timeline, words) if r.entry.kind == "signal"]
        assert signals[-1].sentence.endswith(said), (name, signals[-1].sentence)
