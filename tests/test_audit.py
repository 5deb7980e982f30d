"""Auditors: a case's timeline decoded from its Temporal history, raw and bundle exports,
through the API and the command line."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import unicodedata
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from helpers import (
    AUDITOR,
    HISTORIES,
    OPERATOR,
    act,
    auth,
    case,
    department,
    eventually,
    handle_of,
    register,
)
from temporalio.client import Client, WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from jiesu.audit import histories as audit
from jiesu.audit.replay import make_replayer, replay_histories
from jiesu.audit.timeline import Timeline, child_workflow_ids, decode_history, recorded_batches
from jiesu.case.domain import AcceptAction, Actor, Role
from jiesu.config import Settings
from jiesu.ops.audit_cli import format_timeline
from jiesu.ops.demo_data import demo_key
from workflows import ALL_WORKFLOWS
from workflows.complaint import ComplaintWorkflow

ROOT = Path(__file__).parent.parent
URBAN = department("urban-management")
ADMIN = auth(demo_key("demo-admin"))
WRONG_DEPARTMENT = Actor(role=Role.DEPARTMENT, name="demo-dept-water", department_id="water")


def recorded(name: str) -> WorkflowHistory:
    """A recorded lifecycle path, whatever version prefix its file has (v1-..., ...)."""
    paths = sorted(HISTORIES.glob(f"*{name}.json"))
    assert paths, f"no recorded history for {name} under {HISTORIES}"
    return WorkflowHistory.from_json(name, paths[0].read_text("utf-8"))


def who(actor: dict[str, Any] | None) -> tuple[str, str, str | None]:
    assert actor is not None
    return actor["role"], actor["name"], actor.get("department_id")


def kinds(timeline: Timeline) -> list[str]:
    return [e.kind for e in timeline.entries]


# --- helpers shared with the other audit test files ------------------------------------------


async def closed_case(api: httpx.AsyncClient, client: Client, *, refused: bool = False) -> str:
    """A general case of urban management run to "closed" (satisfied) through the API;
    with ``refused`` a wrong department's accept signal is refused by the workflow first."""
    created = await register(api)
    case_id = created["case_id"]
    await eventually(lambda: _status(api, case_id, "assigned"))
    handle = handle_of(client, case_id)
    if refused:  # straight to the workflow: the API would refuse it before signalling
        await handle.signal(ComplaintWorkflow.accept, AcceptAction(actor=WRONG_DEPARTMENT))
        await eventually(lambda: _has_event(client, case_id, "rejected"))
    await act(api, case_id, "accept", URBAN)
    await act(api, case_id, "contact", URBAN, note="Called Ms Wang")
    await act(api, case_id, "reply", URBAN, outcome="resolved", text="Speaker removed")
    await act(api, case_id, "rating", token=created["citizen_token"], rating="satisfied")
    await handle.result()
    return case_id


async def _status(api: httpx.AsyncClient, case_id: str, status: str) -> bool:
    return (await case(api, case_id, OPERATOR))["status"] == status


async def _has_event(client: Client, case_id: str, kind: str) -> bool:
    state = await handle_of(client, case_id).query(ComplaintWorkflow.state)
    return any(e.kind.value == kind for e in state.events)


def cli_env(env: WorkflowEnvironment, settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": env.client.namespace,
        "DATABASE_URL": settings.database_url,
        "JIESU_TASK_QUEUE": settings.task_queue,
    }


async def run_cli(
    env: WorkflowEnvironment, settings: Settings, *argv: str
) -> tuple[int, str, str]:
    """``python -m jiesu.ops.cli ARGV`` against the test servers: (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "jiesu.ops.cli", *argv,
        cwd=ROOT, env=cli_env(env, settings),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


# --- decoding recorded histories (no servers needed) ------------------------------------------


def test_timeline_of_a_recorded_happy_path() -> None:
    timeline = decode_history(recorded("unsatisfied_rating"))
    assert timeline.workflow_type == "ComplaintWorkflow" and timeline.status == "completed"
    assert timeline.entries[0].kind == "started"
    assert who(timeline.entries[0].actor) == ("operator", "demo-operator", None)
    activities = [e.summary for e in timeline.entries if e.kind == "activity"]
    assert any(s.startswith("routed to") and "by rule" in s for s in activities)
    assert any(s.startswith("deadlines set: accept ") for s in activities)
    timers = [e.details["timer"] for e in timeline.entries if e.kind == "timer_started"]
    assert timers == ["accept deadline", "finish deadline", "rating window"]
    signals = [e for e in timeline.entries if e.kind == "signal"]
    assert [s.details["signal"] for s in signals] == ["accept", "contact", "reply", "rate"]
    assert all(s.details["outcome"] == "applied" for s in signals)
    assert who(signals[3].actor) == ("citizen", "citizen", None)
    assert "rated unsatisfied" in signals[3].summary
    assert kinds(timeline)[-2:] == ["closed", "completed"]
    assert all(a.event_id <= b.event_id for a, b in zip(
        timeline.entries, timeline.entries[1:], strict=False
    ))


def test_timeline_shows_a_breached_deadline() -> None:
    # the recorded path where the case's own contact timer fired (the current path registers
    # the case late, so its deadline has passed before any timer is set)
    timeline = decode_history(recorded("v2-missed_contact_deadline"))
    fired = [e for e in timeline.entries if e.kind == "timer_fired"]
    assert [e.summary for e in fired] == ["contact deadline reached"]
    breach = next(e for e in timeline.entries if e.kind == "deadline_breached")
    assert breach.details["data"]["deadline_kind"] == "contact"
    assert breach.actor is not None and breach.actor["role"] == "system"
    assert kinds(timeline)[-1] == "terminated" and timeline.status == "terminated"


def test_recorded_events_come_with_the_history() -> None:
    batches = recorded_batches(recorded("unsatisfied_rating"))
    events = [e for b in batches for e in b.events]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["kind"] for e in events][:3] == ["received", "deadlines_set", "routed"]
    assert all(b.completed for b in batches)
    assert child_workflow_ids(recorded("unsatisfied_rating")) == []


# --- a live case through the API ---------------------------------------------------------------


@pytest.fixture(scope="module")
async def audited_case(api: httpx.AsyncClient, client: Client) -> str:
    return await closed_case(api, client, refused=True)


async def test_what_a_history_holds_cannot_steer_the_auditor_s_terminal(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool
) -> None:
    """A signal's name, like a termination's reason, comes from any Temporal client. One
    named with an escape sequence cleared the auditor's terminal when `jiesu audit timeline`
    printed it, a newline printed a forged line of its own, a right-to-left override read
    backwards. Each is shown escaped now, the case's lines as they were."""
    case_id = (await register(api))["case_id"]
    handle = handle_of(client, case_id)
    forged = "\x1b[2J\x1b[H\n#1    2026-01-01 00:00:00  closed  \u202eoiduA\x9b31m"
    await handle.signal(forged)
    await handle.terminate(reason="done\x1b]0;owned\x07")
    shown = format_timeline(await audit.case_timeline(client, pool, case_id), "Asia/Shanghai")
    assert not any(unicodedata.category(c) == "Cc" for c in shown.replace("\n", ""))
    assert "\u202e" not in shown and "\x9b" not in shown
    assert "\\x1b[2J\\x1b[H\\x0a#1    2026-01-01" in shown and "\\u202eoiduA" in shown
    assert "done\\x1b]0;owned\\x07" in shown
    assert not any(line.startswith("#1    2026-01-01") for line in shown.splitlines())


async def test_timeline_through_the_api(api: httpx.AsyncClient, audited_case: str) -> None:
    response = await api.get(f"/api/v1/complaints/{audited_case}/history", headers=AUDITOR)
    assert response.status_code == 200, response.text
    timeline = Timeline.model_validate(response.json())
    assert timeline.workflow_id == audited_case and timeline.source == "temporal"
    assert timeline.status == "completed"
    signals = [e for e in timeline.entries if e.kind == "signal"]
    refused, accepted = signals[0], signals[1]
    assert who(refused.actor) == ("department", "demo-dept-water", "water")
    assert refused.details["outcome"] == "rejected"
    assert refused.details["recorded"]["data"]["code"] == "not_assigned"
    assert "rejected (not_assigned)" in refused.summary
    assert accepted.details["signal"] == "accept" and accepted.details["outcome"] == "applied"
    assert who(accepted.actor) == ("department", "demo-dept-urban-management", "urban-management")
    assert [s.details["signal"] for s in signals[2:]] == ["contact", "reply", "rate"]
    activities = [e.summary for e in timeline.entries if e.kind == "activity"]
    assert any(s.startswith("routed to 县城市管理局") for s in activities), activities
    assert timeline.entries[-1].kind == "completed"


async def test_only_auditors_and_admins_see_histories(
    api: httpx.AsyncClient, audited_case: str
) -> None:
    path = f"/api/v1/complaints/{audited_case}/history"
    assert (await api.get(path)).status_code == 401
    forbidden = await api.get(path, headers=OPERATOR)
    assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "forbidden"
    assert (await api.get(path + "/raw", headers=URBAN)).status_code == 403
    assert (await api.get(path, headers=ADMIN)).status_code == 200
    missing = await api.get("/api/v1/complaints/JS19990101-999999/history", headers=AUDITOR)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "history_not_found"


async def test_raw_export_is_temporal_json_and_replays(
    api: httpx.AsyncClient, client: Client, audited_case: str
) -> None:
    response = await api.get(f"/api/v1/complaints/{audited_case}/history/raw", headers=AUDITOR)
    assert response.status_code == 200
    original = await handle_of(client, audited_case).fetch_history()
    assert response.json() == original.to_json_dict()
    exported = WorkflowHistory.from_json(audited_case, response.text)
    [verdict] = await replay_histories([exported], make_replayer(ALL_WORKFLOWS))
    assert verdict.verdict == "replays", verdict.message


async def test_bundle_holds_timeline_and_histories(
    api: httpx.AsyncClient, audited_case: str
) -> None:
    response = await api.get(
        f"/api/v1/complaints/{audited_case}/history/bundle", headers=AUDITOR
    )
    assert response.status_code == 200
    assert audited_case in response.headers["content-disposition"]
    bundle = response.json()
    assert bundle["format"] == audit.BUNDLE_FORMAT and bundle["case_id"] == audited_case
    assert Timeline.model_validate(bundle["timeline"]).workflow_id == audited_case
    assert set(bundle["histories"]) == {audited_case}  # no children on this path
    stored = bundle["histories"][audited_case]
    history = WorkflowHistory.from_json(audited_case, stored["history"])
    assert history.run_id == stored["run_id"] and stored["source"] == "temporal"


async def test_replay_through_the_api(api: httpx.AsyncClient, audited_case: str) -> None:
    response = await api.post(f"/api/v1/complaints/{audited_case}/replay", headers=AUDITOR)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] is True and body["verdict"] == "replays"
    assert body["histories"][0]["workflow_id"] == audited_case
    assert (await api.post(
        f"/api/v1/complaints/{audited_case}/replay", headers=OPERATOR
    )).status_code == 403


# --- the command line -----------------------------------------------------------------------------


async def test_cli_timeline_and_exports(
    env: WorkflowEnvironment, settings: Settings, audited_case: str, tmp_path: Path
) -> None:
    code, out, _ = await run_cli(env, settings, "timeline", audited_case)
    assert code == 0
    assert f"ComplaintWorkflow {audited_case}" in out and "from temporal" in out
    assert "demo-dept-water (department, water)  accept — rejected (not_assigned)" in out
    assert "accept deadline: timer set" in out

    raw = tmp_path / "raw.json"
    code, _, _ = await run_cli(env, settings, "export", audited_case, "-o", str(raw))
    assert code == 0
    history = WorkflowHistory.from_json(audited_case, raw.read_text("utf-8"))
    assert (await replay_histories([history], make_replayer(ALL_WORKFLOWS)))[0].verdict == "replays"

    code, out, _ = await run_cli(env, settings, "export", audited_case, "--bundle")
    assert code == 0
    bundle = json.loads(out)
    assert bundle["timeline"]["workflow_id"] == audited_case

    code, _, err = await run_cli(env, settings, "timeline", "JS19990101-999999")
    assert code == 2 and "no history for JS19990101-999999" in err


# --- timelines do not come from the read model -------------------------------------------------


async def test_timeline_ignores_the_read_model(
    client: Client, pool: asyncpg.Pool, audited_case: str
) -> None:
    before = await audit.case_timeline(client, pool, audited_case)
    rows = await pool.fetch("SELECT * FROM case_events WHERE case_id = $1", audited_case)
    await pool.execute("DELETE FROM case_events WHERE case_id = $1", audited_case)
    try:
        after = await audit.case_timeline(client, pool, audited_case)
    finally:
        await pool.executemany(
            "INSERT INTO case_events (case_id, seq, kind, at, actor, data) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            [(r["case_id"], r["seq"], r["kind"], r["at"], r["actor"], r["data"]) for r in rows],
        )
    assert after == before



async def test_replays_of_one_case_at_once_through_the_api(
    api: httpx.AsyncClient, audited_case: str
) -> None:
    """The API's one replay worker (and its one projection witness) serves every request: two
    auditors — or a client retrying a slow request while the first still runs — replay the
    same case at once. Each replay's projections are its own, not the other's mixed in."""
    url = f"/api/v1/complaints/{audited_case}/replay"
    answers = await asyncio.gather(*(api.post(url, headers=AUDITOR) for _ in range(3)))
    for response in answers:
        assert response.status_code == 200, response.text
        assert response.json()["verdict"] == "replays", response.json()
