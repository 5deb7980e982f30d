"""A case that grows large: many long repeat reports (并单) or supplements (补充诉求).

A case holds its whole story, and Temporal has hard limits on what it carries: a payload over
2 MB is refused, and a workflow task's completion over gRPC's 4 MB makes the server end the
workflow. Before these tests, a case that grew past them was broken for everyone:

- 140 long supplements and the `state` query (which every case view asks) was refused;
  past ~4 MB a query answered with a workflow task terminated the case ("GrpcMessageTooLarge");
- a burst of long reports while the worker was down was projected in one local activity whose
  result went over 2 MB: the workflow task failed on every attempt ("PayloadsTooLarge");
- one reporter could add supplements without end.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from helpers import (
    OPERATOR,
    SUPERVISOR,
    act,
    complaint,
    department,
    eventually,
    handle_of,
    keep_history,
    replay_checked,
)
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowQueryFailedError
from test_department_retirement import _put, _uid
from test_hostile_messages import (
    CITIZEN,
    URBAN,
    private_worker,
    rid,
    start_of,
    until,
)
from test_hostile_messages import (
    SUPERVISOR as CENTRE,
)

from jiesu.case.domain import HISTORY_WARN_BYTES, HISTORY_WARN_EVENTS, EventKind, Status
from jiesu.case.lifecycle import (
    MAX_CO_HANDLERS,
    MAX_EXTENSION_REQUESTS,
    MAX_MERGED_REPORTS,
    MAX_RECORDED_REJECTIONS,
    MAX_REPEAT_REPORT_SUPPLEMENTS,
    MAX_RETURNS,
    MAX_SUPERVISION_ORDERS,
    MAX_SUPPLEMENTS,
    MAX_SUPPLEMENTS_PER_REPEAT_REPORTER,
)
from jiesu.health import checks as doctor
from jiesu.ops import doctor as repair
from workflows import ALL_WORKFLOWS, ComplaintWorkflow
from workflows.complaint import STATE_QUERY_BYTES
from workflows.projector import BATCH_BYTES

LONG = "噪音" * 2500  # the longest description a report may carry: 5,000 characters, 15 kB


def repeat(n: int) -> dict[str, Any]:
    """并单 number ``n``: a citizen's long report of the same open problem."""
    actor = CITIZEN.model_copy(update={"name": f"neighbour {n}"})
    return {"report_id": f"R-{uuid.uuid4().hex}", "actor": rid(actor), "channel": "hotline",
            "description": LONG, "received_at": datetime.now(UTC).isoformat()}  # fmt: skip


def too_large(history: Any) -> list[Any]:
    """The workflow tasks that failed on a payload over Temporal's limit (a worker stopped in
    the middle of a task fails it too, FORCE_CLOSE_COMMAND: not what these tests are about)."""
    failed = EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
    cause = WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_PAYLOADS_TOO_LARGE
    return [e for e in history.events if e.event_type == failed
            and e.workflow_task_failed_event_attributes.cause == cause]  # fmt: skip


async def version_of(pool: asyncpg.Pool, case_id: str) -> int:
    return await pool.fetchval("SELECT version FROM cases WHERE case_id = $1", case_id) or 0


async def handling(pool: asyncpg.Pool, case_id: str) -> bool:
    """The read model shows the case accepted (the query may be refused: the case is big)."""
    sql = "SELECT status FROM cases WHERE case_id = $1"
    return await pool.fetchval(sql, case_id) == "handling"


async def listed_large(client: Client, pool: asyncpg.Pool, case_id: str) -> bool:
    """``jiesu doctor`` lists the case's history as ``history_large`` (past Temporal's
    warning limits; visibility may lag a moment)."""
    options = doctor.DoctorOptions(replay=False, limit=20)

    async def probe() -> bool:
        report = await doctor.examine(client, pool, options, workflows=ALL_WORKFLOWS)
        return any(f.kind == doctor.HISTORY_LARGE and f.subject == case_id
                   for f in report.findings)  # fmt: skip

    return await eventually(probe, within=20)


async def test_a_case_too_large_to_query_is_refused_and_goes_on(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool
) -> None:
    """Past ~1.5 MB the `state` query is refused with a short error instead of answered; the
    case goes on, the API answers from the read model, and past 10 MiB of history the doctor
    warns (``history_large``). Before: refused by the server past
    2 MB, and past ~4 MB the case's workflow was *terminated* by a view (measured: at the
    300th supplement of 15 kB, with a query every 25)."""
    created = await api.post("/api/v1/complaints", json=complaint(), headers=OPERATOR)
    assert created.status_code == 201, created.text
    case_id = created.json()["case_id"]
    h = handle_of(client, case_id)
    try:
        await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
        refused = 0
        for n in range(1, 361):  # ~5.4 MB of reports, a history over 10 MiB
            await h.signal("repeat_report", repeat(n))
            if n % 20 == 0:
                try:
                    await h.query(ComplaintWorkflow.state)
                except WorkflowQueryFailedError as err:
                    assert "too large to answer a query" in str(err)
                    refused += 1
        assert refused >= 5  # from ~100 reports on
        assert (await h.describe()).status is WorkflowExecutionStatus.RUNNING

        async def all_projected() -> bool:
            return await version_of(pool, case_id) >= 360

        await eventually(all_projected, within=60)
        seen = await api.get(f"/api/v1/complaints/{case_id}", headers=OPERATOR)
        assert seen.status_code == 200, seen.text
        assert seen.json()["repeat_count"] == 360
        assert await listed_large(client, pool, case_id)  # jiesu doctor warns
        sent = [360]

        async def one_more_report() -> None:
            sent[0] += 1
            await h.signal("repeat_report", repeat(sent[0]))

        await found_beyond_the_limit(api, client, pool, case_id, one_more_report)

        async def every_report_projected() -> bool:
            seen = await api.get(f"/api/v1/complaints/{case_id}", headers=OPERATOR)
            return seen.json()["repeat_count"] == sent[0]

        await eventually(every_report_projected, within=60)
        await repaired_though_too_large(client, pool, case_id)
        accepted = await api.post(f"/api/v1/complaints/{case_id}/accept", json={},
                                  headers=department("urban-management"))  # fmt: skip
        assert accepted.status_code in (200, 202), accepted.text

        await eventually(lambda: handling(pool, case_id), within=20)
        assert (await h.describe()).status is WorkflowExecutionStatus.RUNNING
        await replay_checked(await h.fetch_history())  # history-watch-v1 included
    finally:
        await h.terminate("test over")


async def found_beyond_the_limit(
    api: httpx.AsyncClient,
    client: Client,
    pool: asyncpg.Pool,
    case_id: str,
    one_more_report: Callable[[], Awaitable[None]],
) -> None:
    """Past Temporal's warning limits the case records ``history_large`` (history-watch-v1),
    once for this mark, and ``jiesu doctor`` lists it from the read model although it is not
    among the open workflows it describes (limit 1, a newer case open). Before, visibility
    (no history size for a running workflow) left such a case unseen beyond the limit."""
    sql = "SELECT data FROM case_events WHERE case_id = $1 AND kind = 'history_large'"

    async def recorded() -> list[Any]:
        marks = await pool.fetch(sql, case_id)
        if not marks:  # the case looks at its size when a message comes (history-watch-v1)
            await one_more_report()
        return marks

    # The history may pass 10 MiB only by what the case records after the 360th report (its
    # projection); it then records the mark at its next message. So each look without the mark
    # brings one more report: a loaded fresh-clone run waited 90 s in vain without them.
    marks = await eventually(recorded, within=90, interval=2.0)
    assert len(marks) == 1, marks  # 10 MiB passed, 20 MiB not
    mark = marks[0]["data"]
    assert (mark["history_bytes"] >= HISTORY_WARN_BYTES
            or mark["history_events"] >= HISTORY_WARN_EVENTS), mark  # fmt: skip
    newer = await api.post("/api/v1/complaints", json=complaint(), headers=OPERATOR)
    assert newer.status_code == 201, newer.text
    try:
        options = doctor.DoctorOptions(replay=False, limit=1)
        report = await doctor.examine(client, pool, options, workflows=ALL_WORKFLOWS)
        found = [f for f in report.findings
                 if f.kind == doctor.HISTORY_LARGE and f.subject == case_id]  # fmt: skip
        assert len(found) == 1, report.findings
        assert found[0].details["recorded_at"] and "MiB" in found[0].summary
    finally:
        await handle_of(client, newer.json()["case_id"]).terminate("test over")


async def repaired_though_too_large(client: Client, pool: asyncpg.Pool, case_id: str) -> None:
    """Its read model lost, the case too large for the ``state`` query is still found behind by
    the doctor and written again whole by ``jiesu repair read-model`` (doctor.reproject_case),
    which read it in parts (``state_page``). Before, both asked the refused query: the doctor
    could not judge the case and the repair failed ("too large to answer a query")."""
    events = "SELECT count(*) FROM case_events WHERE case_id = $1"
    whole = await pool.fetchval(events, case_id)
    last = await version_of(pool, case_id)
    async with pool.acquire() as conn, conn.transaction():  # the read model's rows are lost
        await conn.execute("DELETE FROM case_events WHERE case_id = $1", case_id)
        await conn.execute("UPDATE cases SET version = 0 WHERE case_id = $1", case_id)
    options = doctor.DoctorOptions(replay=False, limit=20, read_model_lag=timedelta(0))
    report = await doctor.examine(client, pool, options, workflows=ALL_WORKFLOWS)
    # (other cases of the session may be behind for a moment: read_model_lag 0 lists them)
    behind = [f for f in report.findings
              if f.kind == doctor.READ_MODEL_BEHIND and f.subject == case_id]  # fmt: skip
    assert len(behind) == 1, report.findings
    assert await repair.reproject_case(client, pool, case_id, rebuild=True) == (0, last)
    assert await pool.fetchval(events, case_id) == whole


@pytest.mark.parametrize("reports", [20, 150])
async def test_a_burst_of_long_reports_is_projected_in_parts(
    client: Client, pool: asyncpg.Pool, settings: Any, reports: int
) -> None:
    """Long reports arriving while the worker is down are projected in parts of at most
    BATCH_BYTES. 150 of them (2.3 MB) in one projection wedged the case before: its result
    was over Temporal's 2 MB, and the workflow task failed on every attempt."""
    queue = f"size-{uuid.uuid4().hex[:8]}"
    case_id = f"JS-SIZE-{uuid.uuid4().hex[:8]}"
    h = handle_of(client, case_id)
    async with private_worker(client, pool, settings, queue):
        await client.start_workflow(ComplaintWorkflow.run, start_of(case_id), id=case_id,
                                    task_queue=queue)  # fmt: skip
        await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
        before = await version_of(pool, case_id)
    for n in range(1, reports + 1):  # the worker is down
        await h.signal("repeat_report", repeat(n))
    try:
        async with private_worker(client, pool, settings, queue):

            async def all_projected() -> bool:
                return await version_of(pool, case_id) >= before + reports

            await eventually(all_projected, within=60)
            await h.signal("accept", {"actor": rid(URBAN)})
            await eventually(lambda: handling(pool, case_id), within=20)
            history = await h.fetch_history()
            assert not too_large(history)
            parts = [e for e in history.events
                     if e.marker_recorded_event_attributes.marker_name == "core_local_activity"]
            assert len(parts) >= 1 + (reports * len(LONG.encode())) // BATCH_BYTES
            if reports == 20:  # small enough to keep (~0.8 MB): replayed on every run
                await keep_history(h, "burst_projected_in_parts")
            else:
                await replay_checked(history)  # 6 MB: replayed here, not kept
    finally:
        await h.terminate("test over")


async def test_a_reporter_adds_at_most_so_many_supplements(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool
) -> None:
    """补充诉求 without end let one reporter grow the case until Temporal refused it; the
    (MAX_SUPPLEMENTS + 1)-th is `409 supplement_limit`, through the API and from any client."""
    created = await api.post("/api/v1/complaints", json=complaint(), headers=OPERATOR)
    assert created.status_code == 201, created.text
    case_id, token = created.json()["case_id"], created.json()["citizen_token"]
    h = handle_of(client, case_id)
    try:
        for n in range(MAX_SUPPLEMENTS):
            await act(api, case_id, "supplement", token=token, text=f"{n}: {LONG[:100]}")
        refused = await act(api, case_id, "supplement", expect=409, token=token, text="More")
        assert refused["error"]["code"] == "supplement_limit"

        forged = rid(CITIZEN)  # past the API: the workflow refuses it too
        await h.signal("supplement", {"actor": forged, "text": "Straight to Temporal"})
        s = await until(client, case_id,
                        lambda s: any(e.actor.request_id == forged["request_id"]
                                      for e in s.events))  # fmt: skip
        assert s.events[-1].kind is EventKind.REJECTED
        assert s.events[-1].data["code"] == "supplement_limit"
        assert sum(e.kind is EventKind.SUPPLEMENTED for e in s.events) == MAX_SUPPLEMENTS
        assert len(s.model_dump_json().encode()) < STATE_QUERY_BYTES
    finally:
        await h.terminate("test over")


async def supplements_until_refused(api: httpx.AsyncClient, case_id: str, token: str,
                                    who: str) -> tuple[int, dict[str, Any]]:
    """A reporter's script: supplement after supplement until refused (the case's bound
    stops it at the latest). How many were applied, and the refusal."""
    for n in range(MAX_SUPPLEMENTS + 1):
        answer = await api.post(f"/api/v1/complaints/{case_id}/supplement",
                                json={"token": token, "text": f"{who} {n}: louder tonight"})
        if answer.status_code != 200:
            assert answer.status_code == 409, answer.text
            return n, answer.json()["error"]
    raise AssertionError(f"{who} added {MAX_SUPPLEMENTS + 1} supplements")


async def test_repeat_reporters_leave_the_case_citizen_their_supplements(
    api: httpx.AsyncClient, client: Client
) -> None:
    """补充诉求 shared fairly (``supplements-shared-fairly-v1``): before, the citizen of one
    repeat report (并单) took all MAX_SUPPLEMENTS of the case, and its own citizen's next one was
    `409 supplement_limit`. Now each repeat reporter adds at most
    MAX_SUPPLEMENTS_PER_REPEAT_REPORTER, all of them MAX_REPEAT_REPORT_SUPPLEMENTS together, and
    the case's own citizen keeps the rest; the case still takes MAX_SUPPLEMENTS in all, from the
    API and from any client."""
    body = complaint()
    created = await api.post("/api/v1/complaints", json=body, headers=OPERATOR)
    assert created.status_code == 201, created.text
    case_id, own = created.json()["case_id"], created.json()["citizen_token"]
    h = handle_of(client, case_id)
    try:
        repeats = []
        reporters = -(-MAX_REPEAT_REPORT_SUPPLEMENTS // MAX_SUPPLEMENTS_PER_REPEAT_REPORTER)
        for n in range(reporters):  # the same phone and address again: merged, 并单
            merged = await api.post("/api/v1/complaints", headers=OPERATOR, json={
                **body, "channel": "wechat", "description": f"Still loud, report {n}"})
            assert merged.status_code == 200 and merged.json()["merged"], merged.text
            assert merged.json()["case_id"] == case_id
            repeats.append(merged.json()["citizen_token"])

        added, refused = await supplements_until_refused(api, case_id, repeats[0], "first")
        assert added == MAX_SUPPLEMENTS_PER_REPEAT_REPORTER, refused
        assert refused["code"] == "supplement_limit"
        assert f"adds at most {MAX_SUPPLEMENTS_PER_REPEAT_REPORTER}" in refused["message"]
        # the case's own citizen can still add one (before: 409, the case's 20 were taken)
        await act(api, case_id, "supplement", token=own, text="The shop opened again")

        by_repeats = added
        for n, token in enumerate(repeats[1:], start=2):
            added, refused = await supplements_until_refused(api, case_id, token, f"r{n}")
            by_repeats += added
        assert by_repeats == MAX_REPEAT_REPORT_SUPPLEMENTS
        assert f"{MAX_REPEAT_REPORT_SUPPLEMENTS} supplements together" in refused["message"]

        forged = rid(CITIZEN.model_copy(update={"name": "citizen of repeat report 99999"}))
        await h.signal("supplement", {"actor": forged, "text": "Straight to Temporal"})
        s = await until(client, case_id,
                        lambda s: any(e.actor.request_id == forged["request_id"]
                                      for e in s.events))  # fmt: skip
        assert s.events[-1].kind is EventKind.REJECTED, s.events[-1]
        assert s.events[-1].data["code"] == "supplement_limit"

        added, refused = await supplements_until_refused(api, case_id, own, "own")
        assert 1 + added == MAX_SUPPLEMENTS - MAX_REPEAT_REPORT_SUPPLEMENTS  # the rest
        assert f"its {MAX_SUPPLEMENTS} supplements" in refused["message"]
        s = await h.query(ComplaintWorkflow.state)
        assert sum(e.kind is EventKind.SUPPLEMENTED for e in s.events) == MAX_SUPPLEMENTS
        await keep_history(h, "supplements_shared_fairly")
    finally:
        await h.terminate("test over")


async def test_a_case_records_so_many_refusals_and_junk_no_more(
    client: Client, pool: asyncpg.Pool, settings: Any
) -> None:
    """Junk signals and refused actions straight to Temporal were each recorded as a
    ``rejected`` event: a client could grow the case's state without end (measured on the code
    before: ~900 bytes a junk signal of 200 characters, ~330 an action refused). Now a case
    records MAX_RECORDED_REJECTIONS of them (``rejections-bounded-v1``), the last saying so,
    and goes on: a valid action after the flood is applied and projected."""
    case_id = f"JS-SIZE-{uuid.uuid4().hex[:8]}"
    h = await client.start_workflow(ComplaintWorkflow.run, start_of(case_id), id=case_id,
                                    task_queue=settings.task_queue)  # fmt: skip
    try:
        await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
        forged = URBAN.model_copy(update={"department_id": "water"})
        for n in range(MAX_RECORDED_REJECTIONS + 50):
            if n % 2:
                await h.signal("no_such_signal", {"junk": "垃圾" * 100, "n": n})
            else:
                await h.signal("accept", {"actor": rid(forged)})  # not its department
        accept = rid(URBAN)
        await h.signal("accept", {"actor": accept})
        s = await until(client, case_id, lambda s: s.status is Status.HANDLING)
        rejected = [e for e in s.events if e.kind is EventKind.REJECTED]
        assert len(rejected) == MAX_RECORDED_REJECTIONS
        assert "this is the last one" in rejected[-1].data["reason"]
        assert len(s.model_dump_json().encode()) < 150_000
        await eventually(lambda: handling(pool, case_id), within=20)
        await keep_history(h, "rejections_bounded")
    finally:
        await h.terminate("test over")


async def test_past_the_recorded_refusals_the_api_still_answers_409(
    api: httpx.AsyncClient, client: Client
) -> None:
    """The read model's copy of a case has no events, so it lets a supplement past the limit
    through and the workflow refuses it: measured on the code before, a citizen's 300 of them
    through the API were 300 ``rejected`` events (110 kB of state, 1,613 history events, 416
    kB). Now the case records MAX_RECORDED_REJECTIONS; past them the answer is still `409`, read
    from the case as it answers after the signal (before: `202`, "not applied yet")."""
    created = await api.post("/api/v1/complaints", json=complaint(), headers=OPERATOR)
    assert created.status_code == 201, created.text
    case_id, token = created.json()["case_id"], created.json()["citizen_token"]
    h = handle_of(client, case_id)
    try:
        for n in range(MAX_SUPPLEMENTS):
            await act(api, case_id, "supplement", token=token, text=f"{n}: louder")
        for n in range(MAX_RECORDED_REJECTIONS):
            await h.signal("no_such_signal", {"junk": n})
        await until(client, case_id, lambda s: sum(
            e.kind is EventKind.REJECTED for e in s.events) == MAX_RECORDED_REJECTIONS)
        refused = await act(api, case_id, "supplement", expect=409, token=token, text="More")
        assert refused["error"]["code"] == "supplement_limit"
        s = await h.query(ComplaintWorkflow.state)
        assert sum(e.kind is EventKind.REJECTED for e in s.events) == MAX_RECORDED_REJECTIONS
    finally:
        await h.terminate("test over")


async def test_a_case_takes_so_many_repeat_reports_from_any_client(
    client: Client, settings: Any
) -> None:
    """Intake merges at most MAX_MERGED_REPORTS into a case, but the case took any number
    from a client straight to Temporal, each with up to 15 kB of description (without end, as
    the other tests here measure). Now the case refuses one more (``repeat-reports-bounded-v1``,
    `repeat_report_limit`); intake's retry of a report it already holds is still ignored."""
    case_id = f"JS-SIZE-{uuid.uuid4().hex[:8]}"
    h = await client.start_workflow(ComplaintWorkflow.run, start_of(case_id), id=case_id,
                                    task_queue=settings.task_queue)  # fmt: skip
    try:
        await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
        reports = [{**repeat(n), "description": f"Still loud {n}"}
                   for n in range(MAX_MERGED_REPORTS + 3)]  # fmt: skip
        for report in reports:
            await h.signal("repeat_report", report)
        await h.signal("repeat_report", reports[0])  # a retry of one it holds
        s = await until(client, case_id, lambda s: sum(
            e.kind is EventKind.REJECTED for e in s.events) == 3, within=60)
        assert s.repeat_count == MAX_MERGED_REPORTS
        assert {e.data["code"] for e in s.events if e.kind is EventKind.REJECTED} == {
            "repeat_report_limit"}
        await replay_checked(await h.fetch_history())  # ~500 events: replayed, not kept
    finally:
        await h.terminate("test over")


async def test_a_case_convenes_so_many_co_handlers_from_any_client(
    api: httpx.AsyncClient, client: Client, settings: Any
) -> None:
    """会办 names each department once, and the API only departments it knows; a client
    straight to Temporal named made-up ones, ten a message, without end. Now a case convenes
    MAX_CO_HANDLERS (``co-handlers-bounded-v1``): the next message is `co_handler_limit`.
    (Since lean-case-v37 the case looks the units up: the first messages name real ones, made
    here; the last one's made-up units meet the limit before any look-up.)"""
    units = [_uid("cap") for _ in range(MAX_CO_HANDLERS)]
    for unit in units:
        await _put(api, f"departments/{unit}", {"name": f"协办{unit}", "level": "county"})
    case_id = f"JS-SIZE-{uuid.uuid4().hex[:8]}"
    h = await client.start_workflow(ComplaintWorkflow.run, start_of(case_id), id=case_id,
                                    task_queue=settings.task_queue)  # fmt: skip
    try:
        await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
        messages = MAX_CO_HANDLERS // 10 + 1
        for m in range(messages):
            named = units[m * 10:(m + 1) * 10] or [f"made-up-{m}-{n}" for n in range(10)]
            departments = [{"id": unit, "name": "Made up"} for unit in named]
            await h.signal("add_co_handlers", {"actor": rid(CENTRE), "departments": departments})
        s = await until(client, case_id, lambda s: any(
            e.kind is EventKind.REJECTED for e in s.events))
        assert len(s.co_handlers) == MAX_CO_HANDLERS
        [refused] = [e for e in s.events if e.kind is EventKind.REJECTED]
        assert refused.data["code"] == "co_handler_limit"
        await keep_history(h, "co_handlers_bounded")
    finally:
        await h.terminate("test over")


async def test_a_department_returns_a_case_so_many_times(
    api: httpx.AsyncClient, client: Client, settings: Any
) -> None:
    """退单 waiting for the centre's approval, rejected, could be asked again and again within
    the return window (on the code before: the eleventh applied too, each return and its
    rejection ~17 kB of state with 2,000-character reasons, without end). Now a case takes
    MAX_RETURNS (``returns-bounded-v1``): the next is `409 return_limit`."""
    settings.return_needs_approval = True
    try:
        created = await api.post("/api/v1/complaints", json=complaint(), headers=OPERATOR)
        assert created.status_code == 201, created.text
        case_id = created.json()["case_id"]
        h = handle_of(client, case_id)
        s = await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
    finally:
        settings.return_needs_approval = False  # recorded into the case
    assert s.deadlines is not None and s.deadlines.return_needs_approval
    clerk = department("urban-management")
    reason = "Not ours: the shop is on a market street" + "。" * 1900
    try:
        for _ in range(MAX_RETURNS):
            await act(api, case_id, "return", clerk, reason=reason)
            await act(api, case_id, "return/decision", SUPERVISOR, upheld=False,
                      note="A shop's loudspeaker is urban management's" + "。" * 1900)
        refused = await act(api, case_id, "return", clerk, expect=409, reason=reason)
        assert refused["error"]["code"] == "return_limit"
        assert f"returned {MAX_RETURNS} times" in refused["error"]["message"]
        await keep_history(h, "returns_bounded")
    finally:
        await h.terminate("test over")


async def post(api: httpx.AsyncClient, case_id: str, action: str, who: dict[str, str],
               **body: Any) -> httpx.Response:
    return await api.post(f"/api/v1/complaints/{case_id}/{action}", json=body, headers=who)


async def test_a_supervisor_orders_so_many_supervisions_on_a_case(
    api: httpx.AsyncClient, client: Client
) -> None:
    """督办 in the accountability form (问责) ends its ladder at once, and a supervisor could
    order it again and again (measured on the code before: 12 of 30 orders applied in a row,
    each ~10 kB of state, ~20 kB of history and another accountability record against the unit).
    Now a case takes MAX_SUPERVISION_ORDERS (``supervision-orders-bounded-v1``): the next is
    `409 supervision_limit`."""
    created = await api.post("/api/v1/complaints", json=complaint(), headers=OPERATOR)
    assert created.status_code == 201, created.text
    case_id = created.json()["case_id"]
    h = handle_of(client, case_id)
    order = {"form": "accountability", "note": "Ignored the reminders" + "。" * 1900,
             "persons": ["李明"], "decision": "通报批评" * 400}  # fmt: skip
    try:
        await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
        ordered = 0
        for _ in range(MAX_SUPERVISION_ORDERS * 20):
            answer = await post(api, case_id, "supervision", SUPERVISOR, **order)
            if answer.status_code in (200, 202):
                ordered += 1
                await until(client, case_id, lambda s: not s.escalation.active, within=20)
                continue
            assert answer.status_code == 409, answer.text
            if answer.json()["error"]["code"] != "already_supervised":  # its ladder is ending
                break
        assert ordered == MAX_SUPERVISION_ORDERS, answer.text
        assert answer.json()["error"]["code"] == "supervision_limit", answer.text
        assert f"its {MAX_SUPERVISION_ORDERS} supervision orders" in answer.text
        await keep_history(h, "supervision_orders_bounded")
    finally:
        await h.terminate("test over")


async def test_a_department_asks_so_many_extensions_of_a_case(
    api: httpx.AsyncClient, client: Client
) -> None:
    """延期申请 rejected by the centre could be asked again without end (measured on the code
    before: 30 of 30 requests applied, each ~4.8 kB of state and ~11 kB of history with its
    decision). Now a case takes MAX_EXTENSION_REQUESTS (``extension-requests-bounded-v1``),
    approved or not: the next is `409 extension_request_limit`."""
    created = await api.post("/api/v1/complaints", json=complaint(), headers=OPERATOR)
    assert created.status_code == 201, created.text
    case_id = created.json()["case_id"]
    h = handle_of(client, case_id)
    clerk = department("urban-management")
    try:
        s = await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
        await act(api, case_id, "accept", clerk)
        assert s.deadlines is not None
        request = {"reasons": "The shop's owner is abroad" + "。" * 1900,
                   "measures": "Letter sent" + "。" * 1900,
                   "promised_finish": (s.deadlines.finish + timedelta(days=1)).isoformat()}
        for _ in range(MAX_EXTENSION_REQUESTS):
            await act(api, case_id, "extension", clerk, **request)
            await act(api, case_id, "extension/decision", SUPERVISOR, approved=False,
                      note="Finish it on time")  # fmt: skip
        refused = await act(api, case_id, "extension", clerk, expect=409, **request)
        assert refused["error"]["code"] == "extension_request_limit"
        assert f"its {MAX_EXTENSION_REQUESTS} extension requests" in refused["error"]["message"]
        await keep_history(h, "extension_requests_bounded")
    finally:
        await h.terminate("test over")


async def test_a_burst_cut_after_one_projected_whole_before_the_patch(
    client: Client, pool: asyncpg.Pool, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A case whose earlier burst over BATCH_BYTES was projected whole by the code before
    ``bounded-projection-v1`` (it asked no patch) and whose later burst is over 2 MB: the new
    worker replays the earlier burst, where ``workflow.patched`` answers False — and the SDK
    memoizes that answer for the rest of the run. Before: the later burst was not cut either,
    and the case was wedged (PayloadsTooLarge on every attempt), the very thing the patch
    fixes. Now the later burst is cut, and the history replays."""
    from workflows import projector
    from workflows.patches import Patches

    queue = f"size-{uuid.uuid4().hex[:8]}"
    case_id = f"JS-SIZE-{uuid.uuid4().hex[:8]}"
    h = handle_of(client, case_id)
    with monkeypatch.context() as old_code:
        old_code.setattr(projector, "_bounded", lambda new, patched: new)  # before the patch
        old_code.setattr(Patches, "start", lambda self: False)  # so before lean-case-v3 too
        async with private_worker(client, pool, settings, queue):
            await client.start_workflow(ComplaintWorkflow.run, start_of(case_id), id=case_id,
                                        task_queue=queue)  # fmt: skip
            await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
            before = await version_of(pool, case_id)
        for n in range(1, 21):  # ~300 kB while the worker is down: projected whole
            await h.signal("repeat_report", repeat(n))
        async with private_worker(client, pool, settings, queue):

            async def first_projected() -> bool:
                return await version_of(pool, case_id) >= before + 20

            await eventually(first_projected, within=60)
    for n in range(21, 171):  # 2.3 MB while the worker is down, then the new code
        await h.signal("repeat_report", repeat(n))
    try:
        async with private_worker(client, pool, settings, queue):

            async def all_projected() -> bool:
                return await version_of(pool, case_id) >= before + 170

            await eventually(all_projected, within=60)  # written before the task fails
            await h.signal("accept", {"actor": rid(URBAN)})
            await eventually(lambda: handling(pool, case_id), within=20)
            history = await h.fetch_history()
            assert not too_large(history)
            await replay_checked(history)
    finally:
        await h.terminate("test over")
