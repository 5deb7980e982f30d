"""What the auditor's timeline says of signals a case could not take: one sent with no payload
(``temporal workflow signal --name accept`` without input), one whose payload has the wrong
shape, one of an unknown name, and a retried well-formed action. Each must read as ONE entry —
the signal, its sender (unknown when the payload did not decode) and what the case did with it
— in ``jiesu timeline`` and on the console's 审计记录 page.

Before (reviewer's finding, 2026-11-24): a signal without an actor in its payload was a bare
"accept" line that never said "no effect recorded", and the case's rejection of it a separate
"rejected" line from "unknown sender" that nothing tied to it; a retry read "no effect
recorded" with no word of being a retry.
"""

from __future__ import annotations

import asyncio
import html as html_lib
import re
import sys
import uuid
from pathlib import Path

import httpx
from helpers import HISTORIES, audit_page, eventually, handle_of, register
from temporalio.client import Client, WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from test_audit import run_cli

from jiesu.audit.timeline import Timeline, TimelineEntry, decode_history, recorded_batches
from jiesu.case.domain import AcceptAction, Actor, CaseState, EventKind, Role, Status
from jiesu.config import Settings
from workflows import ComplaintWorkflow

URBAN = Actor(role=Role.DEPARTMENT, name="urban clerk", department_id="urban-management")
MAYOR = {"role": "mayor", "name": "someone"}  # a role no actor has: the payload does not decode


async def _state(client: Client, case_id: str) -> CaseState:
    return await handle_of(client, case_id).query(ComplaintWorkflow.state)


async def _odd_case(api: httpx.AsyncClient, client: Client) -> tuple[str, str]:
    """An assigned case that received the odd signals, then its accept twice (same request
    id); answers (case id, the request id)."""
    case_id = (await register(api))["case_id"]

    async def assigned() -> bool:
        return (await _state(client, case_id)).status is Status.ASSIGNED

    await eventually(assigned)
    handle = handle_of(client, case_id)
    await handle.signal("accept")  # no payload, as `temporal workflow signal` without input
    await handle.signal("accept", {"actor": MAYOR})  # the wrong shape, claiming an actor
    await handle.signal("frobnicate", "hello")  # no such signal
    request_id = uuid.uuid4().hex
    accept = AcceptAction(actor=URBAN.model_copy(update={"request_id": request_id}))
    await handle.signal(ComplaintWorkflow.accept, accept)

    async def accepted() -> bool:
        return (await _state(client, case_id)).status is Status.HANDLING

    await eventually(accepted)
    await handle.signal(ComplaintWorkflow.accept, accept)  # a client's retry
    await handle.signal("accept", {"actor": MAYOR})  # once more: told apart from the first

    async def all_answered() -> bool:  # in the history: the case projects in its own time
        batches = recorded_batches(await handle.fetch_history())
        return sum(e["kind"] == EventKind.REJECTED for b in batches for e in b.events) == 4

    await eventually(all_answered)
    return case_id, request_id


def _signals(timeline: Timeline) -> list[TimelineEntry]:
    return [e for e in timeline.entries if e.kind == "signal"]


async def test_each_odd_signal_reads_as_one_entry_with_its_outcome(
    api: httpx.AsyncClient, client: Client, env: WorkflowEnvironment, settings: Settings
) -> None:
    case_id, request_id = await _odd_case(api, client)
    history = await handle_of(client, case_id).fetch_history()
    timeline = decode_history(history)

    # no rejection stands apart from the signal it answers
    assert [e.summary for e in timeline.entries if e.kind == "rejected"] == []
    empty, wrong, unknown, accept, retry, wrong_again = _signals(timeline)

    assert empty.actor is not None and empty.actor["name"] == "unknown sender"
    assert empty.details["sender"] == "unknown" and empty.details["outcome"] == "rejected"
    assert empty.summary == (
        "accept (no payload) — rejected (invalid_payload): accept takes 1 payload(s), got 0"
    )
    assert wrong.details["claimed_actor"] == MAYOR  # claimed, not taken for the sender
    assert wrong.actor is not None and wrong.actor["name"] == "unknown sender"
    assert wrong.summary.startswith(
        "accept (payload of the wrong shape) — rejected (invalid_payload): "
    ), wrong.summary
    assert unknown.summary == (
        "frobnicate — rejected (unknown_signal): no such signal: frobnicate"
    )
    assert accept.summary == "accept — applied: accepted (签收)"
    assert retry.details["retry_of"] == accept.event_id
    assert retry.summary == (
        f"accept — no effect recorded: a retry of #{accept.event_id} (request id "
        f"{request_id}), which the case answers once"
    )
    assert wrong_again.details["outcome"] == "rejected"
    # the history event that carries the case's record of each outcome, to look it up
    event_ids = {e.event_id for e in history.events}
    for signal in (empty, wrong, unknown, accept, wrong_again):
        assert signal.details["outcome_event_id"] in event_ids
        assert signal.details["outcome_event_id"] > signal.event_id
    assert wrong_again.details["recorded"]["seq"] > wrong.details["recorded"]["seq"]

    code, out, err = await run_cli(env, settings, "timeline", case_id)
    assert code == 0, err
    lines = [line for line in out.splitlines() if " signal " in line]
    assert len(lines) == 6, out
    assert "unknown sender (system)" in lines[0] and "accept (no payload) — rejected" in lines[0]
    assert "frobnicate — rejected (unknown_signal)" in lines[2]
    assert f"a retry of #{accept.event_id}" in lines[4]
    assert not [line for line in out.splitlines() if line.split()[3:4] == ["rejected"]], out


async def test_the_console_says_each_odd_signal_and_its_outcome_in_chinese(
    api: httpx.AsyncClient, client: Client
) -> None:
    case_id, _ = await _odd_case(api, client)
    page = await audit_page(api, case_id)
    assert page.status_code == 200
    text = page.text
    said = _said(text)
    assert "收到“签收”（无内容），未执行：消息内容不符合该操作的格式，工单未作任何变更" in said
    assert "收到“签收”（内容格式不符，自称来自“someone”），未执行：" \
        "消息内容不符合该操作的格式，工单未作任何变更" in said
    assert "收到未知操作“frobnicate”，未执行：工单没有这项操作，未作任何变更" in said
    retries = [s for s in said if "重发" in s]
    assert len(retries) == 1 and retries[0].startswith("收到“签收”，未见办理记录：与 #"), said
    assert text.count("发送方不明") == 4  # the 操作人 of the four that did not decode
    assert "unknown sender" not in "".join(_cells(text, "actor"))
    assert 'data-kind="rejected"' not in text


def _cells(html: str, css_class: str) -> list[str]:
    return re.findall(rf'<td class="{css_class}"[^>]*>(.*?)</td>', html, re.S)


def _said(html: str) -> list[str]:
    found = re.findall(r'<span class="said">(.*?)</span>', html, re.S)
    return [html_lib.unescape(re.sub(r"<[^>]+>", "", s)) for s in found]


def test_no_refusal_of_an_undecoded_message_stands_apart_in_the_recorded_histories() -> None:
    """Every recorded history: the unknown sender's rejections are each on their signal's
    line (the old code left 152 of them apart: 50 in each of the three rejections_bounded
    histories, 2 in v9-hostile_ladder_step_duplicated.json); the signals the case no longer
    recorded once past its limit of refusals (100: 50 junk signals, 50 forged accepts) say so;
    the ladder's steps, which name no actor, keep their bare line (their effect is the system's
    escalated event)."""
    apart: list[str] = []
    for path in sorted(HISTORIES.glob("*.json")):
        timeline = decode_history(WorkflowHistory.from_json(path.stem, path.read_text("utf-8")))
        apart += [f"{path.name} #{e.event_id}" for e in timeline.entries
                  if e.kind == "rejected" and (e.actor or {}).get("name") == "unknown sender"]
        if path.name == "rejections_bounded.json":
            for name in ("no_such_signal", "accept"):
                said = [e.details["outcome"] for e in _signals(timeline)
                        if e.details["signal"] == name and e.details["outcome"] != "applied"]
                assert said == ["rejected"] * 50 + ["no effect recorded"] * 25, said
        for step in (e for e in _signals(timeline) if e.details["signal"] == "escalation_step"):
            assert step.details.get("outcome") in (None, "rejected"), step.summary
    assert apart == []


async def test_a_signal_from_the_temporal_cli_without_input_reads_as_refused(
    api: httpx.AsyncClient, client: Client, env: WorkflowEnvironment
) -> None:
    """The reviewer's own path: ``temporal workflow signal --name accept`` with no ``--input``
    (the CLI the test session runs its server with) sends no payload at all."""
    case_id = (await register(api))["case_id"]

    async def assigned() -> bool:
        return (await _state(client, case_id)).status is Status.ASSIGNED

    await eventually(assigned)
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "temporal"), "workflow", "signal",
        "--address", env.client.service_client.config.target_host,
        "--namespace", env.client.namespace, "--workflow-id", case_id, "--name", "accept",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, (out, err)
    handle = handle_of(client, case_id)

    async def refused() -> list[TimelineEntry] | None:
        signals = _signals(decode_history(await handle.fetch_history()))
        outcome = signals[0].details.get("outcome") if signals else None
        return signals if outcome == "rejected" else None  # once the case has projected

    (signal,) = await eventually(refused)
    assert signal.details["payloads"] == 0
    assert signal.summary == (
        "accept (no payload) — rejected (invalid_payload): accept takes 1 payload(s), got 0"
    )
