"""``jiesu doctor``: each kind of problem made to really happen on the real stack, found, and
(where there is a repair) repaired with the runbook's commands (docs/operations.md).

The doctor examines a whole installation, so these tests run their own: a fresh Temporal
namespace and a fresh database on the session's servers, with the real worker, the outbox
dispatcher and the API on them ("the clinic"). Deliberately broken workflow types run on a
second task queue: a workflow whose code raises (its task fails on every attempt), one whose
activity keeps failing, and one registered under the case type that issues other commands than
the current ComplaintWorkflow (its history does not replay). Every test removes the problem it
made, so the clinic is healthy between tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from google.protobuf.duration_pb2 import Duration
from helpers import auth, cli_in_process, complaint, eventually, served
from temporalio import activity, workflow
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from api.main import create_app
from api.routers.admin import render_metrics
from jiesu import db
from jiesu.case import search_attributes
from jiesu.case.domain import SYSTEM_ACTOR, Actor, CaseStart, ComplaintIntake, Role, Urgency
from jiesu.client import connect_to
from jiesu.config import Settings
from jiesu.health import checks as doctor
from jiesu.notify.outbox import OutboundNotice, OutboxDispatcher
from jiesu.ops.bootstrap import prepare_database
from jiesu.ops.demo_data import demo_key
from worker import build_worker
from workflows import ALL_WORKFLOWS

ROOT = Path(__file__).resolve().parent.parent
ADMIN = auth(demo_key("demo-admin"))
OPERATOR = auth(demo_key("demo-operator"))
SUPERVISOR = auth(demo_key("demo-supervisor"))
EVERYTHING = doctor.DoctorOptions(  # report at once, not after the production thresholds
    activity_after=timedelta(0), read_model_lag=timedelta(0)
)


# --- deliberately broken workflows (not sandboxed: they live in this test module) -------------


@workflow.defn(name="DoctorTestWedged", sandboxed=False)
class WedgedWorkflow:
    @workflow.run
    async def run(self) -> None:
        raise RuntimeError("deliberately broken workflow code")  # fails the task, every time


@activity.defn(name="doctor_test_unreachable")
async def unreachable() -> None:
    raise ConnectionError("deliberately unreachable service")


@workflow.defn(name="DoctorTestRetrying", sandboxed=False)
class RetryingWorkflow:
    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity(
            unreachable,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=200),
                                     maximum_interval=timedelta(seconds=1)),
        )


@workflow.defn(name="ComplaintWorkflow", sandboxed=False)
class DivergentCase:
    """A case as some other deployment ran it: a timer where the current code routes."""

    @workflow.run
    async def run(self, start: CaseStart) -> None:
        await workflow.sleep(timedelta(days=30))


# --- the clinic --------------------------------------------------------------------------------


class RefusingSender:
    """A gateway that refuses the recipients in ``refused`` and takes everything else."""

    def __init__(self) -> None:
        self.refused: set[str] = set()
        self.sent: list[str] = []

    async def send(self, notice: OutboundNotice) -> None:
        if notice.recipient_id in self.refused:
            raise ConnectionRefusedError(f"gateway refuses {notice.recipient_id}")
        self.sent.append(notice.key)


@dataclass
class Clinic:
    client: Client
    pool: asyncpg.Pool
    settings: Settings
    api: httpx.AsyncClient
    gateway: RefusingSender
    broken_queue: str

    async def examine(self, options: doctor.DoctorOptions = EVERYTHING) -> doctor.DoctorReport:
        return await doctor.examine(self.client, self.pool, options, workflows=ALL_WORKFLOWS)

    async def found(
        self, kind: str, subject: str, options: doctor.DoctorOptions = EVERYTHING
    ) -> doctor.Finding | None:
        report = await self.examine(options)
        return next((f for f in report.findings if f.kind == kind and f.subject == subject), None)

    async def cli(self, *argv: str, subprocess: bool = False) -> tuple[int, str, str]:
        """``jiesu ARGV`` against the clinic: (exit code, stdout, stderr). In this process
        (``helpers.cli_in_process``: ``jiesu.ops.cli.run`` with the clinic's environment), as
        a new interpreter costs ~1.5 s of CPU before the command starts and this file makes
        23 calls; ``subprocess=True`` runs ``python -m jiesu.ops.cli`` as an operator would
        (the doctor's exit codes 0 and 1 are read so once each)."""
        variables = {
            "TEMPORAL_ADDRESS": self.settings.temporal_address,
            "TEMPORAL_NAMESPACE": self.settings.temporal_namespace,
            "DATABASE_URL": self.settings.database_url,
        }
        if not subprocess:
            return await cli_in_process(variables, *argv)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "jiesu.ops.cli", *argv,
            cwd=ROOT, env={**os.environ, **variables},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    async def start_broken(self, workflow_type: type, prefix: str, *args: Any) -> str:
        workflow_id = f"{prefix}-{uuid.uuid4().hex[:8]}"
        # A worker reports a failing workflow task once and lets the retries time out: a 2 s
        # task timeout brings the second failure (the one Temporal marks) after ~2 s, not ~10.
        await self.client.start_workflow(
            workflow_type.run, *args, id=workflow_id, task_queue=self.broken_queue,
            task_timeout=timedelta(seconds=2),
        )  # type: ignore[call-overload]
        return workflow_id

    async def register_case(self) -> str:
        response = await self.api.post("/api/v1/complaints", json=complaint(), headers=OPERATOR)
        assert response.status_code == 201, response.text
        case_id: str = response.json()["case_id"]
        await eventually(lambda: self.projected(case_id), within=30)
        return case_id

    async def projected(self, case_id: str) -> bool:
        """The case is routed, its deadlines set, and the read model has all its events."""
        state = await doctor.case_state(self.client, case_id)
        version = await self.pool.fetchval("SELECT version FROM cases WHERE case_id = $1",
                                           case_id)
        settled = state.deadlines is not None and state.assignment is not None
        return settled and version == state.events[-1].seq


def _database_named(url: str, name: str) -> str:
    main, sep, query = url.partition("?")
    return f"{main.rpartition('/')[0]}/{name}{sep}{query}"


async def _new_namespace(env: WorkflowEnvironment, name: str) -> Client:
    await env.client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=name, workflow_execution_retention_period=Duration(seconds=86400)
        )
    )
    client = await connect_to(env.client.service_client.config.target_host, name)

    async def ready() -> bool:
        try:
            await search_attributes.register(client)
        except Exception:  # the new namespace is not known to every service yet
            return False
        return True

    await eventually(ready, within=60, interval=0.5)
    return client


@pytest.fixture(scope="module")
async def clinic(env: WorkflowEnvironment, settings: Settings) -> AsyncIterator[Clinic]:
    name = f"doctor_{uuid.uuid4().hex[:8]}"
    client = await _new_namespace(env, name)
    url = _database_named(settings.database_url, name)
    await prepare_database(url, demo=True)
    own = Settings(
        TEMPORAL_ADDRESS=env.client.service_client.config.target_host,
        TEMPORAL_NAMESPACE=name,
        DATABASE_URL=url,
        JIESU_TASK_QUEUE=f"{name}-cases",
        JIESU_RATING_WINDOW_HOURS=72,
    )
    pool = await db.create_pool(url, max_size=8)
    gateway = RefusingSender()
    stop = asyncio.Event()
    dispatcher = asyncio.create_task(
        # A refused notice waits an hour before its next attempt: until someone resends it.
        OutboxDispatcher(pool, gateway, retry_delay=timedelta(hours=1)).run(
            stop, poll_interval=0.2
        )
    )
    broken = Worker(
        client,
        task_queue=f"{name}-broken",
        workflows=[WedgedWorkflow, RetryingWorkflow, DivergentCase],
        activities=[unreachable],
    )
    app = create_app(own, client=client, pool=pool)
    try:
        async with (
            build_worker(client, pool, own),
            broken,
            served(app) as api,
        ):
            yield Clinic(client, pool, own, api, gateway, f"{name}-broken")
    finally:
        stop.set()
        await dispatcher
        await pool.close()


# --- the tests ---------------------------------------------------------------------------------


async def test_a_healthy_system_passes(clinic: Clinic) -> None:
    case_id = await clinic.register_case()
    await eventually(lambda: clinic.pool.fetchval(
        "SELECT bool_and(status = 'sent') FROM notifications WHERE case_id = $1", case_id
    ))
    code, out, err = await clinic.cli("doctor", "--json", "--read-model-lag", "0",
                                      "--activity-after", "0", subprocess=True)
    report = json.loads(out)
    assert code == 0, out + err
    assert report["ok"] and report["findings"] == [] and report["errors"] == []
    assert report["counts"] == dict.fromkeys(doctor.KINDS, 0)
    assert report["open_workflows"] >= 1 and report["replayed"] >= 1

    code, out, _ = await clinic.cli("doctor")
    assert code == 0 and out.startswith("OK: ")


async def test_a_wedged_workflow_is_found(clinic: Clinic) -> None:
    workflow_id = await clinic.start_broken(WedgedWorkflow, "DOCTOR-WEDGED")
    try:
        finding = await eventually(
            lambda: clinic.found(doctor.TASK_FAILING, workflow_id), within=30
        )
        assert "deliberately broken workflow code" in finding.summary
        assert finding.details["workflow_type"] == "DoctorTestWedged"
        # Temporal's own visibility marks it too (jiesu.ops.temporal_settings).
        await eventually(lambda: _listed(clinic.client, doctor.REPORTED_PROBLEMS_QUERY,
                                         workflow_id), within=30)

        code, out, _ = await clinic.cli("doctor", "--json", subprocess=True)
        assert code == 1
        report = json.loads(out)
        assert report["counts"][doctor.TASK_FAILING] == 1
        assert [f["subject"] for f in report["findings"]] == [workflow_id]
        code, out, _ = await clinic.cli("doctor")
        assert code == 1
        assert f"{doctor.TASK_FAILING} (1):" in out and workflow_id in out
    finally:
        await clinic.client.get_workflow_handle(workflow_id).terminate("test over")


async def test_an_activity_retrying_too_long_is_found(clinic: Clinic) -> None:
    workflow_id = await clinic.start_broken(RetryingWorkflow, "DOCTOR-RETRYING")
    try:
        finding = await eventually(
            lambda: clinic.found(doctor.ACTIVITY_RETRYING, workflow_id), within=30
        )
        assert finding.details["activity_type"] == "doctor_test_unreachable"
        assert finding.details["attempt"] >= 2
        assert "deliberately unreachable service" in finding.details["last_failure"]
        # Retrying for seconds is not yet a problem with the default threshold (5 minutes).
        assert await clinic.found(doctor.ACTIVITY_RETRYING, workflow_id,
                                  doctor.DoctorOptions()) is None
    finally:
        await clinic.client.get_workflow_handle(workflow_id).terminate("test over")


async def test_a_read_model_row_behind_is_found_and_reprojected(clinic: Clinic) -> None:
    case_id = await clinic.register_case()
    latest = await clinic.pool.fetchrow(
        "SELECT version, status FROM cases WHERE case_id = $1", case_id
    )
    # A lost write: the row goes back to the case's first event.
    await clinic.pool.execute(
        "UPDATE cases SET version = 1, status = 'registered' WHERE case_id = $1", case_id
    )
    finding = await clinic.found(doctor.READ_MODEL_BEHIND, case_id)
    assert finding is not None
    assert finding.details["read_model_version"] == 1
    assert finding.details["workflow_seq"] == latest["version"]

    code, out, err = await clinic.cli("repair", "read-model", case_id)
    assert code == 0, err
    assert f"{case_id}: read model at event 1 → {latest['version']}" in out
    assert await clinic.pool.fetchrow(
        "SELECT version, status FROM cases WHERE case_id = $1", case_id
    ) == latest
    assert await clinic.found(doctor.READ_MODEL_BEHIND, case_id) is None


async def test_a_closed_case_whose_ladder_stop_was_not_projected_is_found_and_reprojected(
    clinic: Clinic,
) -> None:
    """A case closed while its supervision ladder's child was still ending, before
    ``project-after-close-v1``: the read model missed the ladder's ``escalation_stopped`` for
    good and shows a ladder climbing on a closed case (fault run 9). The open cases' check
    cannot see a closed workflow; the read model's unstopped ladder points the doctor to it."""
    case_id = await clinic.register_case()
    due = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    ordered = await clinic.api.post(f"/api/v1/complaints/{case_id}/supervision",
                                    json={"form": "urge", "due": due}, headers=SUPERVISOR)
    assert ordered.status_code in (200, 202), ordered.text
    handle = clinic.client.get_workflow_handle(case_id)
    citizen = Actor(role=Role.CITIZEN, name="Wang Fang").model_dump()
    await handle.signal("withdraw", {"actor": citizen, "reason": "sorted it out myself"})
    await asyncio.wait_for(handle.result(), 60)
    stop = "SELECT seq FROM case_events WHERE case_id = $1 AND kind = 'escalation_stopped'"

    async def all_projected() -> bool:
        version = await clinic.pool.fetchval(
            "SELECT version FROM cases WHERE case_id = $1", case_id)  # fmt: skip
        return await clinic.pool.fetchval(stop, case_id) is not None and version == (
            (await doctor.case_state(clinic.client, case_id)).events[-1].seq)

    await eventually(all_projected, within=30)
    latest = await clinic.pool.fetchrow(
        "SELECT version, status FROM cases WHERE case_id = $1", case_id
    )
    assert latest["status"] == "closed"
    stop_seq = await clinic.pool.fetchval(stop, case_id)
    # As before the patch: the stop (and anything after it) never reached the read model.
    await clinic.pool.execute(
        "DELETE FROM case_events WHERE case_id = $1 AND seq >= $2", case_id, stop_seq)  # fmt: skip
    await clinic.pool.execute(
        "UPDATE cases SET version = $2 WHERE case_id = $1", case_id, stop_seq - 1)  # fmt: skip
    # Closed longer ago than Temporal keeps a workflow: gone in production, so not asked.
    kept = await doctor.retention(clinic.client)
    assert kept is not None and kept >= timedelta(days=1), kept
    closed_at = await clinic.pool.fetchval(
        "SELECT updated_at FROM cases WHERE case_id = $1", case_id)  # fmt: skip
    await clinic.pool.execute(
        "UPDATE cases SET updated_at = $2 WHERE case_id = $1",
        case_id, datetime.now(UTC) - kept - timedelta(hours=1))  # fmt: skip
    assert await clinic.found(doctor.READ_MODEL_BEHIND, case_id) is None
    await clinic.pool.execute(
        "UPDATE cases SET updated_at = $2 WHERE case_id = $1", case_id, closed_at)  # fmt: skip
    finding = await clinic.found(doctor.READ_MODEL_BEHIND, case_id)
    assert finding is not None, "the closed case's read model is behind, and not listed"
    assert finding.details["read_model_version"] == stop_seq - 1
    assert finding.details["workflow_seq"] == latest["version"]

    code, out, err = await clinic.cli("repair", "read-model", case_id)
    assert code == 0, err
    assert f"{case_id}: read model at event {stop_seq - 1} → {latest['version']}" in out
    assert await clinic.pool.fetchval(stop, case_id) == stop_seq
    assert await clinic.found(doctor.READ_MODEL_BEHIND, case_id) is None


async def test_a_case_closing_while_examined_is_listed_once(clinic: Clinic) -> None:
    """A case the read model shows closed with its ladder not yet stopped, while its workflow
    is still open (it stops its ladder after the close, or visibility has not seen the close):
    it is in the open cases and in the closed cases with a ladder left, and was listed
    ``read_model_behind`` twice (CI of ``22feed8``: a neighbouring test's case, twice, in
    ``test_case_size``). Judged once now, with the open cases."""
    case_id = await clinic.register_case()
    due = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    ordered = await clinic.api.post(f"/api/v1/complaints/{case_id}/supervision",
                                    json={"form": "urge", "due": due}, headers=SUPERVISOR)
    assert ordered.status_code in (200, 202), ordered.text
    started = "SELECT seq FROM case_events WHERE case_id = $1 AND kind = 'escalation_started'"
    await eventually(lambda: clinic.pool.fetchval(started, case_id), within=30)
    try:
        version = await clinic.pool.fetchval(
            "SELECT version FROM cases WHERE case_id = $1", case_id)  # fmt: skip
        # The read model one event behind, and showing the case closed (the transient state).
        await clinic.pool.execute(
            "UPDATE cases SET status = 'closed', version = $2 WHERE case_id = $1",
            case_id, version - 1)  # fmt: skip
        report = await clinic.examine()
        behind = [f for f in report.findings
                  if f.kind == doctor.READ_MODEL_BEHIND and f.subject == case_id]  # fmt: skip
        assert len(behind) == 1, behind
        assert behind[0].details["read_model_version"] == version - 1
    finally:
        await clinic.client.get_workflow_handle(case_id).terminate("test over")


async def test_a_diverged_read_model_is_found_and_rebuilt(clinic: Clinic) -> None:
    case_id = await clinic.register_case()
    latest = await clinic.pool.fetchrow(
        "SELECT version, status FROM cases WHERE case_id = $1", case_id
    )
    events = await clinic.pool.fetch(
        "SELECT seq, kind, at FROM case_events WHERE case_id = $1 ORDER BY seq", case_id
    )
    # The read model's last event is not the workflow's (as after a reset to an earlier point).
    await clinic.pool.execute(
        "UPDATE case_events SET kind = 'withdrawn' WHERE case_id = $1 AND seq = $2",
        case_id, latest["version"],
    )
    finding = await clinic.found(doctor.READ_MODEL_DIVERGED, case_id)
    assert finding is not None
    assert finding.details["read_model_event"] == "withdrawn"
    assert await clinic.found(doctor.READ_MODEL_BEHIND, case_id) is None

    code, out, err = await clinic.cli("repair", "read-model", "--rebuild", case_id)
    assert code == 0, err
    assert f"{case_id}: read model at event {latest['version']} → {latest['version']}" in out
    assert await clinic.pool.fetch(
        "SELECT seq, kind, at FROM case_events WHERE case_id = $1 ORDER BY seq", case_id
    ) == events
    assert await clinic.found(doctor.READ_MODEL_DIVERGED, case_id) is None


async def test_an_overdue_notification_is_found_and_resent(clinic: Clinic) -> None:
    case_id = f"DOCTOR-NOTICE-{uuid.uuid4().hex[:8]}"
    recipient = f"dept-{case_id}"
    key = f"{case_id}:2:department:{recipient}"
    clinic.gateway.refused.add(recipient)
    # A notice written an hour ago that the gateway keeps refusing.
    await clinic.pool.execute(
        "INSERT INTO notifications (key, case_id, event_seq, event_kind, recipient_kind,"
        " recipient_id, channel, subject, body, created_at, not_before)"
        " VALUES ($1, $2, 2, 'routed', 'department', $3, 'email', 'test', 'overdue notice',"
        " now() - interval '1 hour', now() - interval '1 hour')",
        key, case_id, recipient,
    )
    try:
        finding = await eventually(lambda: _with_error(clinic, key), within=30)
        assert finding.details["status"] == "pending" and finding.details["attempts"] >= 1
        assert f"gateway refuses {recipient}" in finding.summary

        clinic.gateway.refused.discard(recipient)  # the gateway is repaired...
        code, out, err = await clinic.cli("repair", "notices", key)  # ...and the notice resent
        assert code == 0, err
        assert f"{key}: due now" in out
        await eventually(lambda: clinic.pool.fetchval(
            "SELECT status = 'sent' FROM notifications WHERE key = $1", key
        ), within=30)
        assert key in clinic.gateway.sent
        assert await clinic.found(doctor.NOTIFICATION_OVERDUE, key,
                                  doctor.DoctorOptions()) is None
        code, _, err = await clinic.cli("repair", "notices", key)  # sent: nothing to do
        assert code == 1 and "left alone" in err
    finally:
        await clinic.pool.execute("DELETE FROM notifications WHERE key = $1", key)


async def test_a_notice_given_up_is_found_newest_first_until_resent(clinic: Clinic) -> None:
    """A notice the outbox gave up on (``failed``: here its last attempt's dispatcher died, and
    the clinic's dispatcher expires it, ``_EXPIRE``) was reported by no finding:
    ``notification_overdue`` covers pending and sending notices only, so the operator never
    learned that a department was never told. Now each is a ``notification_failed`` finding,
    newest first within ``--limit``, until ``jiesu repair notices`` resends it."""
    failed_kind = "notification_failed"  # the kind's name, as the report and /metrics say it
    case_id = f"DOCTOR-FAILED-{uuid.uuid4().hex[:8]}"
    recipient = f"dept-{case_id}"
    keys = [f"{case_id}:{seq}:department:{recipient}" for seq in (2, 3)]
    clinic.gateway.refused.add(recipient)
    ages = (timedelta(hours=2), timedelta(hours=1))  # the older first
    for key, seq, written in zip(keys, (2, 3), ages, strict=True):
        await clinic.pool.execute(
            "INSERT INTO notifications (key, case_id, event_seq, event_kind, recipient_kind,"
            " recipient_id, channel, subject, body, status, attempts, lease_until, created_at,"
            " last_error) VALUES ($1, $2, $3, 'routed', 'department', $4, 'email', 'test',"
            " 'given up', 'sending', 10, now() - interval '1 minute',"
            " now() - $5::interval, $6)",
            key, case_id, seq, recipient, written, f"gateway refuses {recipient}",
        )  # fmt: skip
    try:
        await eventually(lambda: clinic.pool.fetchval(  # the clinic's dispatcher gives up
            "SELECT bool_and(status = 'failed') FROM notifications WHERE case_id = $1",
            case_id), within=30)  # fmt: skip
        older, newer = keys
        finding = await clinic.found(failed_kind, newer, doctor.DoctorOptions())
        assert finding is not None, "a notice given up is not a finding"
        assert finding.details["case_id"] == case_id and finding.details["attempts"] == 10
        assert "given up after 10 attempts" in finding.summary
        assert f"gateway refuses {recipient}" in finding.summary
        assert await clinic.found(doctor.NOTIFICATION_OVERDUE, newer,
                                  doctor.DoctorOptions()) is None  # not also overdue
        report = await clinic.examine(doctor.DoctorOptions(limit=1, replay=False))
        listed = [f.subject for f in report.findings if f.kind == failed_kind]
        assert listed == [newer], listed  # bounded, newest first
        assert report.counts[failed_kind] == 1
        code, out, _ = await clinic.cli("doctor", "--no-replay")
        assert code == 1 and f"{failed_kind} (2):" in out, out
        assert out.index(newer) < out.index(older) and f"2 {failed_kind}" in out

        clinic.gateway.refused.discard(recipient)  # the gateway is repaired...
        code, out, err = await clinic.cli("repair", "notices", "--case", case_id)
        assert code == 0, err
        await eventually(lambda: clinic.pool.fetchval(
            "SELECT bool_and(status = 'sent') FROM notifications WHERE case_id = $1",
            case_id), within=30)  # fmt: skip
        assert await clinic.found(failed_kind, newer, doctor.DoctorOptions()) is None
        assert failed_kind in doctor.KINDS
    finally:
        clinic.gateway.refused.discard(recipient)
        await clinic.pool.execute("DELETE FROM notifications WHERE case_id = $1", case_id)


async def test_a_notice_given_up_is_set_aside_with_who_and_why_and_no_longer_found(
    clinic: Clinic,
) -> None:
    """A notice given up on that must never be sent (the department's mailbox was wrong and
    the unit was phoned instead) stayed a ``notification_failed`` finding, and alerting, until
    resent — to the wrong address again — or edited by hand. Now ``jiesu repair notices
    --set-aside KEY --reason WHY --by NAME`` sets it aside: the doctor no longer lists it,
    nothing sends it (a resend refuses it), and who, when and why are kept for an auditor
    (``--list-set-aside``). Refused: no reason, an unknown key, a notice not failed, one set
    aside before for another reason; a second identical run changes nothing and says so."""
    failed_kind = "notification_failed"
    case_id = f"DOCTOR-ASIDE-{uuid.uuid4().hex[:8]}"
    recipient = f"dept-{case_id}"
    key = {status: f"{case_id}:{seq}:department:{recipient}"
           for seq, status in enumerate(("failed", "failed2", "pending", "sent", "skipped"), 2)}
    for name, k in key.items():
        await clinic.pool.execute(  # pending: not due for a day, so the dispatcher leaves it
            "INSERT INTO notifications (key, case_id, event_seq, event_kind, recipient_kind,"
            " recipient_id, channel, subject, body, status, attempts, not_before, last_error)"
            " VALUES ($1, $2, $3, 'routed', 'department', $4, 'email', 'test', 'wrong mailbox',"
            " $5, 10, now() + interval '1 day', 'mailbox unknown')",
            k, case_id, int(k.split(":")[1]), recipient, name.rstrip("2"),
        )  # fmt: skip
    reason, by = "部门邮箱有误，已电话通知该单位", "值班工程师王工"
    try:
        assert await clinic.found(failed_kind, key["failed"], doctor.DoctorOptions())
        before = (await clinic.examine(doctor.DoctorOptions(replay=False))).counts[failed_kind]
        code, _, err = await clinic.cli("repair", "notices", "--set-aside", key["failed"])
        assert code == 2 and "needs --reason" in err
        code, _, err = await clinic.cli("repair", "notices", "--set-aside", key["failed"],
                                        "--reason", "  ")  # fmt: skip
        assert code == 2 and "needs --reason" in err
        for status in ("pending", "sent", "skipped"):
            code, _, err = await clinic.cli("repair", "notices", "--set-aside", key[status],
                                            "--reason", reason)  # fmt: skip
            assert code == 1 and f"{key[status]}: not set aside: not failed but {status}" in err
        code, _, err = await clinic.cli("repair", "notices", "--set-aside", key["failed"],
                                        f"{case_id}:99:department:nobody", "--reason", reason)
        assert code == 1 and "unknown notice" in err  # a typo among the keys...
        assert "nothing set aside" in err  # ...and the failed one beside it is not set aside
        assert await clinic.pool.fetchval(
            "SELECT count(*) FROM notifications WHERE case_id = $1 AND status = 'set_aside'",
            case_id) == 0  # fmt: skip

        code, out, err = await clinic.cli("repair", "notices", "--set-aside", key["failed"],
                                          "--reason", reason, "--by", by)  # fmt: skip
        assert code == 0, err
        assert f"{key['failed']}: set aside, never to be sent" in out
        assert await clinic.found(failed_kind, key["failed"], doctor.DoctorOptions()) is None
        assert await clinic.found(failed_kind, key["failed2"], doctor.DoctorOptions())
        row = await clinic.pool.fetchrow("SELECT * FROM notifications WHERE key = $1",
                                         key["failed"])  # fmt: skip
        assert (row["status"], row["set_aside_by"], row["set_aside_reason"]) == (
            "set_aside", by, reason)
        assert row["last_error"] == "mailbox unknown" and row["attempts"] == 10

        code, out, err = await clinic.cli("repair", "notices", "--set-aside", key["failed"],
                                          "--reason", reason, "--by", by)  # fmt: skip
        assert code == 0, err
        assert "already set aside" in out and "nothing changed" in out
        assert await clinic.pool.fetchval("SELECT set_aside_at FROM notifications WHERE key"
                                          " = $1", key["failed"]) == row["set_aside_at"]
        code, _, err = await clinic.cli("repair", "notices", "--set-aside", key["failed"],
                                        "--reason", "另一个理由", "--by", by)  # fmt: skip
        assert code == 1 and "set aside already" in err and reason in err

        code, _, err = await clinic.cli("repair", "notices", key["failed"])  # a resend
        assert code == 1 and f"{key['failed']}: not resent: set aside" in err and by in err
        assert await clinic.pool.fetchval("SELECT status FROM notifications WHERE key = $1",
                                          key["failed"]) == "set_aside"  # fmt: skip

        # the case's other failed notice, by --case; the one set aside is said, not refused
        code, out, err = await clinic.cli("repair", "notices", "--set-aside", "--case",
                                          case_id, "--reason", reason, "--by", by)
        assert code == 0, err
        assert f"{key['failed2']}: set aside" in out and "already set aside" in out
        report = await clinic.examine(doctor.DoctorOptions(replay=False))
        assert not [f for f in report.findings if f.details.get("case_id") == case_id
                    and f.kind == failed_kind]
        assert report.counts[failed_kind] == before - 2  # what /metrics alerts on
        assert f'jiesu_doctor_problems{{kind="{failed_kind}"}} {before - 2:.1f}' in (
            render_metrics(report).decode().splitlines())
        code, out, err = await clinic.cli("repair", "notices", "--list-set-aside", "--case",
                                          case_id)  # the audit trail
        assert code == 0, err
        listed = out.splitlines()
        assert [line.split(" ")[0] for line in listed] == [key["failed"], key["failed2"]]
        assert all(f"by {by}: {reason}" in line and "mailbox unknown" in line
                   for line in listed)
        assert row["set_aside_at"].isoformat() in listed[0]
        assert not {key["failed"], key["failed2"]} & set(clinic.gateway.sent)
    finally:
        await clinic.pool.execute("DELETE FROM notifications WHERE case_id = $1", case_id)


async def test_a_citizen_nobody_could_tell_is_found_until_the_case_closes(
    clinic: Clinic,
) -> None:
    """A caller who left a landline and no e-mail: the outbox skipped the SMS with their link
    (nobody told them), and the doctor said nothing of it — only the case page did, to whoever
    opened it. Now each such notice of an open case is a ``citizen_not_told`` finding, listed
    by ``jiesu doctor`` to phone them, until the case closes (here: the citizen withdraws)."""
    landline = f"010-{uuid.uuid4().int % 10**8:08d}"
    response = await clinic.api.post("/api/v1/complaints", headers=OPERATOR, json=complaint(
        citizen={"name": "钱七", "phone": landline}))  # fmt: skip
    assert response.status_code == 201, response.text
    case_id, token = response.json()["case_id"], response.json()["citizen_token"]
    key = f"{case_id}:follow-up"
    try:
        await eventually(lambda: clinic.projected(case_id), within=30)
        finding = await clinic.found(doctor.CITIZEN_NOT_TOLD, key, doctor.DoctorOptions())
        assert finding is not None, "a citizen nobody told is not a finding"
        assert finding.details["case_id"] == case_id
        assert finding.details["event_kind"] == "received"
        assert case_id in finding.summary and "phone them" in finding.summary
        code, out, _ = await clinic.cli("doctor", "--no-replay")
        assert code == 1 and "citizen_not_told (1):" in out, out
        assert f"case {case_id}" in out and "1 citizen_not_told" in out

        # an app's report without contact (followed by its case number only): its reply's
        # notice is skipped too, but nobody can phone that citizen — not a finding
        app = await clinic.api.post("/api/v1/complaints", headers=OPERATOR, json=complaint(
            channel="app", citizen={"name": "匿名"}))  # fmt: skip
        assert app.status_code == 201, app.text
        app_case = app.json()["case_id"]
        app_key = f"{app_case}:99:citizen:{app_case}"
        await eventually(lambda: clinic.projected(app_case), within=30)
        await clinic.pool.execute(
            "INSERT INTO notifications (key, case_id, event_seq, event_kind, recipient_kind,"
            " recipient_id, channel, subject, body)"
            " VALUES ($1, $2, 99, 'replied', 'citizen', $2, 'sms', 'test', 'reply notice')",
            app_key, app_case,
        )  # fmt: skip
        await eventually(lambda: clinic.pool.fetchval(  # the clinic's own dispatcher
            "SELECT status = 'skipped' FROM notifications WHERE key = $1", app_key), within=30)
        assert await clinic.found(doctor.CITIZEN_NOT_TOLD, app_key, doctor.DoctorOptions()) \
            is None  # fmt: skip
        await clinic.client.get_workflow_handle(app_case).terminate("test over")
        await clinic.pool.execute("DELETE FROM notifications WHERE case_id = $1", app_case)

        withdrawn = await clinic.api.post(f"/api/v1/complaints/{case_id}/withdraw",
                                          json={"token": token, "reason": "已自行解决"})
        assert withdrawn.status_code == 200, withdrawn.text
        await eventually(lambda: clinic.pool.fetchval(
            "SELECT status = 'closed' FROM cases WHERE case_id = $1", case_id), within=30)
        assert await clinic.found(doctor.CITIZEN_NOT_TOLD, key, doctor.DoctorOptions()) is None
    finally:
        await clinic.pool.execute("DELETE FROM notifications WHERE case_id = $1", case_id)


async def test_a_report_left_pending_is_found_and_settled(clinic: Clinic) -> None:
    """An intake row nobody completed (its request never reached Temporal) is found after the
    threshold and ``jiesu repair intakes`` removes it: Temporal has no such case."""
    case_id = f"DOCTOR-PENDING-{uuid.uuid4().hex[:8]}"
    await clinic.pool.execute(
        "INSERT INTO intakes (case_id, request_hash, payload, token_hash, received_at,"
        " phone_key, state, created_at)"
        " VALUES ($1, 'h', '{}', 't', now(), 'p', 'pending', now() - interval '2 hours')",
        case_id,
    )
    try:
        finding = await clinic.found(doctor.INTAKE_PENDING, case_id, doctor.DoctorOptions())
        assert finding is not None and finding.details["case_id"] == case_id
        assert await clinic.found(doctor.INTAKE_PENDING, case_id, doctor.DoctorOptions(
            intake_pending_after=timedelta(hours=3))) is None  # not yet past this threshold
        code, out, err = await clinic.cli("repair", "intakes")
        assert code == 0, err
        assert f"{case_id}: removed" in out
        assert await clinic.found(doctor.INTAKE_PENDING, case_id, doctor.DoctorOptions()) is None
    finally:
        await clinic.pool.execute("DELETE FROM intakes WHERE case_id = $1", case_id)


async def test_a_history_that_does_not_replay_is_found(clinic: Clinic) -> None:
    start = CaseStart(
        case_id="DOCTOR-DIVERGENT",
        intake=ComplaintIntake.model_validate(complaint()),
        urgency=Urgency.GENERAL,
        received_at=datetime.now(UTC),
        registered_by=SYSTEM_ACTOR,
    )
    workflow_id = await clinic.start_broken(DivergentCase, "DOCTOR-DIVERGENT", start)
    try:
        await eventually(lambda: _timer_started(clinic.client, workflow_id))
        finding = await clinic.found(doctor.NOT_REPLAYING, workflow_id)
        assert finding is not None
        assert finding.details["verdict"] == "non-deterministic"
        assert finding.details["event_id"] is not None
    finally:
        await clinic.client.get_workflow_handle(workflow_id).terminate("test over")


async def test_the_report_as_an_admin_endpoint_and_as_metrics(clinic: Clinic) -> None:
    workflow_id = await clinic.start_broken(WedgedWorkflow, "DOCTOR-WEDGED")
    try:
        async def wedged_in_report() -> dict[str, Any] | None:
            response = await clinic.api.get("/api/v1/admin/doctor", headers=ADMIN)
            assert response.status_code == 200, response.text
            report: dict[str, Any] = response.json()
            return report if report["counts"][doctor.TASK_FAILING] else None

        report = await eventually(wedged_in_report, within=30)
        assert set(report["counts"]) == set(doctor.KINDS) and report["ok"] is False
        assert report["findings"][0]["subject"] == workflow_id

        metrics = await clinic.api.get("/metrics", headers=ADMIN)
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain")
        lines = metrics.text.splitlines()
        assert 'jiesu_doctor_problems{kind="workflow_task_failing"} 1.0' in lines
        assert 'jiesu_doctor_problems{kind="notification_overdue"} 0.0' in lines
        assert 'jiesu_doctor_problems{kind="citizen_not_told"} 0.0' in lines
        assert 'jiesu_doctor_problems{kind="notification_failed"} 0.0' in lines
        assert 'jiesu_doctor_problems{kind="history_large"} 0.0' in lines  # docs/operations.md

        for path in ("/api/v1/admin/doctor", "/metrics"):
            assert (await clinic.api.get(path)).status_code == 401
            assert (await clinic.api.get(path, headers=OPERATOR)).status_code == 403
    finally:
        await clinic.client.get_workflow_handle(workflow_id).terminate("test over")


# --- helpers --------------------------------------------------------------------------------


async def _listed(client: Client, query: str, workflow_id: str) -> bool:
    return any([e.id == workflow_id async for e in client.list_workflows(query)])


async def _with_error(clinic: Clinic, key: str) -> doctor.Finding | None:
    finding = await clinic.found(doctor.NOTIFICATION_OVERDUE, key, doctor.DoctorOptions())
    return finding if finding is not None and finding.details["last_error"] else None


async def _timer_started(client: Client, workflow_id: str) -> bool:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return any(e.HasField("timer_started_event_attributes") for e in history.events)
