"""Intake and repeat reports (并单) under concurrency and Temporal outages; citizen tokens.

- Concurrent reports of one problem queue on the problem in PostgreSQL, not on the read model
  (which lags the workflow): one case, the rest linked to it.
- A Temporal outage is a real ``Client`` pointed at a closed port (connection refused, as when
  the frontend is down): a report either completes on the retry with the same
  Idempotency-Key or leaves nothing behind.
- Every report has its own citizen token, stored only as a hash; a repeat reporter's token
  adds information to the case but never rates or withdraws another reporter's case.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from conftest import DEV_SERVER_STARTUP, TEMPORAL_BIN
from helpers import (
    OPERATOR,
    SUPERVISOR,
    act,
    case,
    complaint,
    eventually,
    handle_of,
    served,
    session_api,
    signed_in,
    texted_token,
)
from pydantic import SecretStr
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RetryConfig
from temporalio.testing import WorkflowEnvironment
from test_outbox import RecordingSender

from api.main import create_app
from jiesu.access import citizen_tokens
from jiesu.audit import replay as audit_replay
from jiesu.case.domain import Actor, CaseStart, ComplaintIntake, Role
from jiesu.config import Settings
from jiesu.intake import filing, merge
from jiesu.intake.errors import IntakeRefused
from jiesu.intake.follow_up import FollowUpLinks
from jiesu.notify.outbox import OutboundNotice, OutboxDispatcher, SmtpSender
from workflows import ALL_WORKFLOWS
from workflows.complaint import ComplaintWorkflow

COMPLAINTS = "/api/v1/complaints"


def _key() -> str:
    return f"intake-{uuid.uuid4().hex}"


async def _post(api: httpx.AsyncClient, body: dict[str, Any], key: str | None = None
                ) -> httpx.Response:
    headers = {**OPERATOR, **({"Idempotency-Key": key} if key else {})}
    return await api.post(COMPLAINTS, json=body, headers=headers)


def _closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def outage(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    """The same API and database, with Temporal unreachable (connection refused)."""
    down = await Client.connect(
        f"127.0.0.1:{_closed_port()}",
        namespace=client.namespace,
        data_converter=pydantic_data_converter,
        lazy=True,
    )
    async with served(create_app(settings, client=down, pool=pool)) as http:
        yield http


@pytest.fixture
async def stopped_server(
    pool: asyncpg.Pool, settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    """The same API and database, with a client connected to a second, real dev server
    that is then stopped: calls fail with UNAVAILABLE (after a short retry here)."""
    second = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(TEMPORAL_BIN), dev_server_startup_timeout=DEV_SERVER_STARTUP
    )
    target = second.client.service_client.config.target_host
    down = await Client.connect(
        target,
        data_converter=pydantic_data_converter,
        retry_config=RetryConfig(initial_interval_millis=20, max_retries=2),
    )
    await down.count_workflows()  # really connected before the outage
    await second.shutdown()
    async with served(create_app(settings, client=down, pool=pool)) as http:
        yield http


async def _rows(pool: asyncpg.Pool, phone: str) -> tuple[int, int]:
    """(intake rows, repeat-report rows) of one citizen."""
    intakes = await pool.fetchval(
        "SELECT count(*) FROM intakes WHERE payload->'intake'->'citizen'->>'phone' = $1", phone
    )
    repeats = await pool.fetchval(
        "SELECT count(*) FROM repeat_reports WHERE payload->'intake'->'citizen'->>'phone' = $1",
        phone,
    )
    return intakes, repeats


async def _repeat_count(api: httpx.AsyncClient, case_id: str, at_least: int) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        response = await api.get(f"{COMPLAINTS}/{case_id}", headers=OPERATOR)
        state = response.json()
        return state if state["repeat_count"] >= at_least else None

    return await eventually(probe)


async def test_twenty_concurrent_reports_of_one_problem_make_one_case(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool
) -> None:
    body = complaint()
    responses = await asyncio.gather(*(_post(api, body) for _ in range(20)))
    answers = [r.json() for r in responses]
    case_ids = {a.get("case_id") for a in answers}
    try:
        assert sorted(r.status_code for r in responses) == [200] * 19 + [201], answers
        assert len(case_ids) == 1, case_ids
        (case_id,) = case_ids
        assert sum(a["merged"] for a in answers) == 19
        assert len({a["citizen_token"] for a in answers}) == 20  # one token per report
        assert await _rows(pool, body["citizen"]["phone"]) == (1, 19)
        linked = await pool.fetchval(
            "SELECT count(*) FROM repeat_reports WHERE case_id = $1 AND state = 'started'",
            case_id,
        )
        assert linked == 19
        state = await _repeat_count(api, case_id, 19)
        assert state["repeat_count"] == 19
    finally:
        for case_id in case_ids:
            await handle_of(client, case_id).terminate("test finished")


async def test_a_repeat_during_an_outage_completes_on_the_retry(
    api: httpx.AsyncClient, outage: httpx.AsyncClient, client: Client, pool: asyncpg.Pool
) -> None:
    body = complaint()
    first = await _post(api, body)
    assert first.status_code == 201, first.text
    case_id = first.json()["case_id"]
    key = _key()
    try:
        down = await _post(outage, {**body, "channel": "wechat"}, key)
        assert down.status_code == 503, down.text
        assert down.json()["error"]["code"] == "temporal_unavailable"
        assert await _rows(pool, body["citizen"]["phone"]) == (1, 1)  # kept for the retry

        retry = await _post(api, {**body, "channel": "wechat"}, key)
        assert retry.status_code == 200, retry.text
        assert retry.json()["case_id"] == case_id and retry.json()["merged"]
        again = await _post(api, {**body, "channel": "wechat"}, key)
        assert again.json() == retry.json()  # a retried intake answers identically
        assert await _rows(pool, body["citizen"]["phone"]) == (1, 1)
        state = await _repeat_count(api, case_id, 1)
        assert state["repeat_count"] == 1
    finally:
        await handle_of(client, case_id).terminate("test finished")


async def test_a_new_report_during_an_outage_completes_on_the_retry(
    api: httpx.AsyncClient, outage: httpx.AsyncClient, client: Client, pool: asyncpg.Pool
) -> None:
    body, key = complaint(), _key()
    down = await _post(outage, body, key)
    assert down.status_code == 503, down.text
    assert down.json()["error"]["code"] == "temporal_unavailable"
    assert int(down.headers["Retry-After"]) > 0
    again_down = await _post(outage, body, key)  # still down: still no case, no second row
    assert again_down.status_code == 503, again_down.text
    assert await _rows(pool, body["citizen"]["phone"]) == (1, 0)

    retry = await _post(api, body, key)
    assert retry.status_code in (200, 201), retry.text
    case_id = retry.json()["case_id"]
    try:
        described = await handle_of(client, case_id).describe()
        assert described.status is WorkflowExecutionStatus.RUNNING
        assert await pool.fetchval(
            "SELECT state FROM intakes WHERE case_id = $1", case_id
        ) == "started"
        again = await _post(api, body, key)
        assert again.json() == {**retry.json(), "replayed": True}
    finally:
        await handle_of(client, case_id).terminate("test finished")


async def test_a_stopped_temporal_server_is_an_outage_too(
    api: httpx.AsyncClient, stopped_server: httpx.AsyncClient, client: Client, pool: asyncpg.Pool
) -> None:
    keyless, keyed, key = complaint(), complaint(), _key()
    down = await _post(stopped_server, keyless)
    assert down.status_code == 503, down.text
    assert down.json()["error"]["code"] == "temporal_unavailable"
    assert await _rows(pool, keyless["citizen"]["phone"]) == (0, 0)

    assert (await _post(stopped_server, keyed, key)).status_code == 503
    retry = await _post(api, keyed, key)
    assert retry.status_code == 200, retry.text
    case_id = retry.json()["case_id"]
    try:
        described = await handle_of(client, case_id).describe()
        assert described.status is WorkflowExecutionStatus.RUNNING
    finally:
        await handle_of(client, case_id).terminate("test finished")


async def test_a_repeat_starts_the_case_its_intake_left_pending(
    api: httpx.AsyncClient, outage: httpx.AsyncClient, client: Client, pool: asyncpg.Pool
) -> None:
    """The case's own intake was cut off by an outage; a repeat arrives once Temporal is
    back: it starts the case with the intake's recorded input (signal-with-start)."""
    body, key = complaint(), _key()
    assert (await _post(outage, body, key)).status_code == 503
    repeat = await _post(api, {**body, "channel": "wechat"})
    assert repeat.status_code == 200, repeat.text
    case_id = repeat.json()["case_id"]
    try:
        assert repeat.json()["merged"]
        state = await _repeat_count(api, case_id, 1)
        assert state["title"] == body["title"] and state["channel"] == body["channel"]
        assert await pool.fetchval(
            "SELECT state FROM intakes WHERE case_id = $1", case_id
        ) == "started"
        original = await _post(api, body, key)  # the intake's retry: its case, not another
        assert original.status_code == 200, original.text
        assert original.json()["case_id"] == case_id and not original.json()["merged"]
        assert original.json()["citizen_token"] != repeat.json()["citizen_token"]
    finally:
        await handle_of(client, case_id).terminate("test finished")


async def test_a_report_without_a_key_during_an_outage_leaves_nothing_behind(
    api: httpx.AsyncClient, outage: httpx.AsyncClient, client: Client, pool: asyncpg.Pool
) -> None:
    body = complaint()
    down = await _post(outage, body)
    assert down.status_code == 503, down.text
    assert await _rows(pool, body["citizen"]["phone"]) == (0, 0)

    first = await _post(api, body)
    case_id = first.json()["case_id"]
    try:
        repeat = await _post(outage, {**body, "channel": "wechat"})
        assert repeat.status_code == 503, repeat.text
        assert await _rows(pool, body["citizen"]["phone"]) == (1, 0)
    finally:
        await handle_of(client, case_id).terminate("test finished")


async def test_a_repeat_of_a_case_closed_meanwhile_opens_a_new_case(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool
) -> None:
    """Terminated behind the read model's back: the read model still says open."""
    body = complaint()
    first = (await _post(api, body)).json()
    await handle_of(client, first["case_id"]).terminate("closed behind the read model")
    second = await _post(api, body)
    assert second.status_code == 201, second.text
    new_case = second.json()["case_id"]
    try:
        assert new_case != first["case_id"] and not second.json()["merged"]
        assert await _rows(pool, body["citizen"]["phone"]) == (2, 0)
    finally:
        await handle_of(client, new_case).terminate("test finished")


async def test_each_report_has_its_own_token_and_a_repeat_token_only_supplements(
    api: httpx.AsyncClient, client: Client
) -> None:
    body = complaint()
    original = (await _post(api, body)).json()
    case_id = original["case_id"]
    # The same phone number typed in again: whoever gives it gets a token of their own only.
    repeat = (await _post(api, {**body, "channel": "wechat"})).json()
    assert repeat["merged"] and repeat["case_id"] == case_id
    assert repeat["citizen_token"] and repeat["citizen_token"] != original["citizen_token"]

    mine = repeat["citizen_token"]
    await act(api, case_id, "supplement", token=mine, text="It is louder on Fridays")
    refused = await act(api, case_id, "withdraw", token=mine, expect=403, reason="Not me")
    assert refused["error"]["code"] == "original_reporter_only"
    refused = await act(api, case_id, "rating", token=mine, expect=403, rating="satisfied")
    assert refused["error"]["code"] == "original_reporter_only"

    other = (await _post(api, complaint())).json()["case_id"]  # a stranger's case
    await act(api, other, "supplement", token=mine, expect=404, text="Not my case")
    await handle_of(client, other).terminate("test finished")

    withdrawn = await act(
        api, case_id, "withdraw", token=original["citizen_token"], reason="The shop moved away"
    )
    assert withdrawn["case"]["status"] == "closed"
    # the repeat reporter's supplement is theirs: the case's citizen is not answered it
    # (jiesu.access.citizen_view); the centre reads it, recorded as that report's citizen's
    kinds = [e["kind"] for e in withdrawn["case"]["events"]]
    assert "supplemented" not in kinds and "withdrawn" in kinds
    full = await case(api, case_id, SUPERVISOR)
    supplements = [e for e in full["events"] if e["kind"] == "supplemented"]
    assert [e["actor"]["role"] for e in supplements] == ["citizen"]
    assert supplements[0]["actor"]["name"].startswith("citizen of repeat report ")


async def test_an_operator_person_never_receives_the_citizens_token(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    """The hotline operator at the console is staff, not the citizen: their intake answers
    without the token that rates the case (a retry too, identically); the citizen gets it by
    the intake SMS. A channel system's API key (the app, WeChat) still receives it, to hand
    on. Before, the operator's answer carried it, so staff could rate for the citizen."""
    operator, csrf = await session_api(api, "operator")
    body = complaint()
    key = {"Idempotency-Key": f"call-{uuid.uuid4()}", "X-CSRF-Token": csrf}
    try:
        first = await operator.post("/api/v1/complaints", json=body, headers=key)
        assert first.status_code == 201, first.text
        assert first.json()["citizen_token"] is None
        retry = await operator.post("/api/v1/complaints", json=body, headers=key)
        assert retry.status_code == 200 and retry.json()["replayed"], retry.text
        assert {**retry.json(), "replayed": False} == first.json()  # identical, without a token
    finally:
        await operator.aclose()
    case_id = first.json()["case_id"]
    token = await texted_token(pool, settings, case_id, body["citizen"]["phone"])
    await act(api, case_id, "supplement", token=token, text="It is louder on Fridays")

    channel = await _post(api, complaint(channel="wechat"))  # an API key: a channel system
    assert channel.status_code == 201 and channel.json()["citizen_token"], channel.text
    for filed in (case_id, channel.json()["case_id"]):
        await handle_of(client, filed).terminate("test finished")


async def test_citizen_tokens_are_stored_only_as_hashes(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool
) -> None:
    body = complaint()
    original = (await _post(api, body)).json()
    repeat = (await _post(api, {**body, "channel": "wechat"})).json()
    case_id = original["case_id"]
    try:
        for answer in (original, repeat):
            token = answer["citizen_token"]
            for table in ("intakes", "repeat_reports"):
                dumped = await pool.fetchval(
                    f"SELECT count(*) FROM {table} t WHERE t::text LIKE '%' || $1 || '%'", token
                )
                assert dumped == 0, f"{table} holds a citizen token in plain text"
        hashes = await pool.fetch(
            "SELECT token_hash FROM intakes WHERE case_id = $1 "
            "UNION ALL SELECT token_hash FROM repeat_reports WHERE case_id = $1",
            case_id,
        )
        expected = {hashlib.sha256(a["citizen_token"].encode()).hexdigest()
                    for a in (original, repeat)}
        assert {r["token_hash"] for r in hashes} == expected
    finally:
        await handle_of(client, case_id).terminate("test finished")


async def test_reports_left_pending_are_settled_by_what_temporal_knows(
    api: httpx.AsyncClient,
    outage: httpx.AsyncClient,
    client: Client,
    pool: asyncpg.Pool,
    settings: Settings,
) -> None:
    # Two problems reported during an outage, each with a repeat; nobody retries.
    lost, kept = complaint(), complaint()
    for body in (lost, kept):
        assert (await _post(outage, body, _key())).status_code == 503
        assert (await _post(outage, {**body, "channel": "wechat"}, _key())).status_code == 503
    rows = {
        body["citizen"]["phone"]: await pool.fetchrow(
            "SELECT i.case_id, i.payload, r.id AS report_id, r.payload AS report"
            " FROM intakes i JOIN repeat_reports r USING (case_id)"
            " WHERE i.payload->'intake'->'citizen'->>'phone' = $1",
            body["citizen"]["phone"],
        )
        for body in (lost, kept)
    }
    # Temporal did get the second problem's start and repeat (say the answers were lost).
    row = rows[kept["citizen"]["phone"]]
    await filing.start_case(client, settings, CaseStart.model_validate(row["payload"]))
    await handle_of(client, row["case_id"]).signal(
        ComplaintWorkflow.repeat_report, merge.repeat_signal(row["report_id"], row["report"])
    )
    try:
        settled = await filing.settle_pending(pool, client, timedelta(0))
        gone = rows[lost["citizen"]["phone"]]
        assert {gone["case_id"], f"{gone['case_id']}/repeat-{gone['report_id']}"} <= set(
            settled.removed
        )
        assert {row["case_id"], f"{row['case_id']}/repeat-{row['report_id']}"} <= set(
            settled.started
        )
        assert await _rows(pool, lost["citizen"]["phone"]) == (0, 0)  # nothing left behind
        assert await pool.fetchval(
            "SELECT count(*) FROM repeat_reports WHERE case_id = $1 AND state = 'started'",
            row["case_id"],
        ) == 1
        assert await pool.fetchval(
            "SELECT state FROM intakes WHERE case_id = $1", row["case_id"]
        ) == "started"
    finally:
        await handle_of(client, row["case_id"]).terminate("test finished")


@pytest.fixture
async def api_with_secret(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> AsyncIterator[Any]:
    """Apps like the session's, but with JIESU_TOKEN_SECRET set to the given value."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(secret: str) -> httpx.AsyncClient:
            configured = settings.model_copy(update={"token_secret": SecretStr(secret)})
            app = create_app(configured, client=client, pool=pool)
            return await stack.enter_async_context(served(app))

        yield make


async def test_a_configured_secret_makes_the_tokens_and_rotating_it_keeps_them_valid(
    api_with_secret: Any, client: Client, pool: asyncpg.Pool
) -> None:
    body, key = complaint(), _key()
    before = await api_with_secret("first secret, " + uuid.uuid4().hex)
    created = await _post(before, body, key)
    assert created.status_code == 201, created.text
    case_id, token = created.json()["case_id"], created.json()["citizen_token"]
    nonce = await pool.fetchval("SELECT token_nonce FROM intakes WHERE case_id = $1", case_id)
    stored = await pool.fetchval("SELECT value FROM server_secrets WHERE name = 'citizen_token'")
    assert token != citizen_tokens.derive(stored.encode(), nonce)  # not the database's secret

    after = await api_with_secret("rotated secret, " + uuid.uuid4().hex)
    retry = await _post(after, body, key)
    assert retry.json()["case_id"] == case_id
    assert retry.json()["citizen_token"] is None  # cannot be recomputed, never a wrong one
    await act(after, case_id, "supplement", token=token, text="Still loud")  # still valid
    withdrawn = await act(after, case_id, "withdraw", token=token, reason="Solved")
    assert withdrawn["case"]["status"] == "closed"


def test_the_filing_service_refuses_with_domain_errors_not_http_errors() -> None:
    """The service speaks in intake terms; api/intake.py alone turns this into a 422."""
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    future = ComplaintIntake.model_validate(complaint(received_at=tomorrow))
    with pytest.raises(IntakeRefused) as refused:
        filing._received_at(future)
    assert (refused.value.code, refused.value.message) == (
        "invalid_received_at", "received_at is in the future"
    )


async def _similar_hint(api: httpx.AsyncClient, body: dict[str, Any]) -> str:
    """The console's "same problem" panel for ``body``, as the operator's form asks it."""
    browser = await signed_in(api, "operator")
    try:
        page = await browser.get("/console/intake")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert csrf, page.text[:300]
        form = {"csrf_token": csrf[1], "category_id": body["category_id"],
                "grid_id": body["grid_id"], "citizen_phone": body["citizen"]["phone"],
                "address": body["address"]}  # fmt: skip
        answer = await browser.post("/console/intake/similar", data=form)
        assert answer.status_code == 200, answer.text[:300]
        return answer.text
    finally:
        await browser.aclose()


async def test_a_case_takes_so_many_repeat_reports_and_the_next_opens_its_own(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool
) -> None:
    """Each repeat report (并单) carries its description into the case's Temporal history,
    which the server ends at 50 MB: past merge.MAX_MERGED_REPORTS the next report of the
    problem opens a case of its own. (The earlier reports are rows written here, standing for
    reports merged before: 499 signals would only slow the test.)"""
    body = complaint()
    first = (await _post(api, body)).json()
    case_id = first["case_id"]
    earlier = """INSERT INTO repeat_reports (case_id, request_hash, payload, state)
                 SELECT $1, 'earlier', '{}'::jsonb, 'started' FROM generate_series(1, $2)"""
    await pool.execute(earlier, case_id, merge.MAX_MERGED_REPORTS - 1)
    opened = None
    try:
        last = (await _post(api, {**body, "channel": "wechat"})).json()
        assert last["merged"] and last["case_id"] == case_id  # the 500th
        hint = await _similar_hint(api, body)  # the operator is told before saving
        assert "并单已满" in hint and "将并入" not in hint, hint
        past = await _post(api, {**body, "channel": "sms"})
        assert past.status_code == 201, past.text
        opened = past.json()["case_id"]
        assert not past.json()["merged"] and opened != case_id
    finally:
        await pool.execute("DELETE FROM repeat_reports WHERE request_hash = 'earlier'")
        for done in filter(None, (case_id, opened)):
            await handle_of(client, done).terminate("test finished")


async def test_two_reports_at_once_by_other_keys_do_not_take_a_case_past_its_cap(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool
) -> None:
    """The cap (merge.MAX_MERGED_REPORTS) was counted under the reports' own problem keys'
    locks: two reports of one case found by different keys (one by its phone, the other by
    its address) hold no lock in common, both counted the last free place and both took it —
    any number of them at once. The case found is locked before its reports are counted."""
    first = (await _post(api, complaint())).json()
    case_id = first["case_id"]
    earlier = """INSERT INTO repeat_reports (case_id, request_hash, payload, state)
                 SELECT $1, 'earlier', '{}'::jsonb, 'started' FROM generate_series(1, $2)"""
    await pool.execute(earlier, case_id, merge.MAX_MERGED_REPORTS - 1)  # one place left
    keys = await pool.fetchrow("SELECT phone_key, address_key FROM intakes WHERE case_id = $1",
                               case_id)  # fmt: skip
    other = uuid.uuid4().hex
    by_phone = merge.ProblemKeys(phone=keys["phone_key"], address=f"address|x|{other}")
    by_address = merge.ProblemKeys(phone=f"phone|x|{other}", address=keys["address_key"])
    since = datetime.now(UTC) - timedelta(days=30)

    async def take(conn: asyncpg.Connection, keys: merge.ProblemKeys, n: int) -> str | None:
        await merge.lock(conn, keys.all())
        found = await merge.find_open_case(conn, keys, since, set())
        if found is not None:
            await merge.add_report(conn, found, {}, (None, None), "race", (f"{other}{n}", f"{n}"))
        return found

    try:
        async with pool.acquire() as one, pool.acquire() as two:
            first_tx = one.transaction()
            await first_tx.start()
            assert await take(one, by_phone, 1) == case_id  # the last place, not committed yet

            async def second() -> str | None:
                async with two.transaction():
                    return await take(two, by_address, 2)

            racing = asyncio.create_task(second())
            # the second waits on the case's lock (the code before the fix did not: it never
            # waits, the condition never holds, and the test fails here)
            waiting = "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1"
            await eventually(lambda: pool.fetchval(waiting, two.get_server_pid()), within=10)
            await first_tx.commit()
            assert await racing != case_id  # the case is full: a case of its own
        count = "SELECT count(*) FROM repeat_reports WHERE case_id = $1"
        assert await pool.fetchval(count, case_id) == merge.MAX_MERGED_REPORTS
    finally:
        await pool.execute("DELETE FROM repeat_reports WHERE request_hash IN ('earlier', 'race')")
        await handle_of(client, case_id).terminate("test finished")


async def test_an_intake_stored_with_several_e_mail_addresses_still_loads(
    api: httpx.AsyncClient, pool: asyncpg.Pool, client: Client, settings: Settings
) -> None:
    """Intake now refuses an e-mail address that is several ("wang,li@163.com") as new input
    (domain.INPUT); the shared ``Email`` type decodes as before. A case filed before the
    refusal keeps the address in its ``intakes`` row and in its workflow's input, and still
    loads: its content (the API's, the case page's), a repeat report of it (the case's row is
    read to tell it), the outbox's notice to the citizen (routed to the address, which its
    mail sender then refuses: test_outbox) and the doctor's replay of its history."""
    several = "wang,li@163.com"
    body = complaint(citizen={"name": "王力", "phone": f"010-{uuid.uuid4().int % 10**8:08d}",
                              "email": "wang.li@163.com"})  # a landline: the link by e-mail
    # as the API filed it before, the address put in unchecked (model_copy validates nothing,
    # so this stands whatever Email checks now): the intakes row and the workflow's input
    # hold it as the old code wrote them
    registered = ComplaintIntake.model_validate(body)
    registered = registered.model_copy(
        update={"citizen": registered.citizen.model_copy(update={"email": several})}
    )
    operator = Actor(role=Role.OPERATOR, name="demo-operator")
    filed = await filing.register(pool, client, settings, registered, operator, None)
    case_id = filed.case_id
    try:
        stored = "SELECT payload -> 'intake' -> 'citizen' ->> 'email' FROM intakes"
        assert await pool.fetchval(f"{stored} WHERE case_id = $1", case_id) == several

        async def content() -> dict[str, Any] | None:
            got = await api.get(f"/api/v1/cases/{case_id}/content", headers=SUPERVISOR)
            return got.json() if got.status_code == 200 else None

        assert (await eventually(content))["citizen_email"] == several
        browser = await signed_in(api, "operator")
        try:
            page = await browser.get(f"/console/cases/{case_id}")
            assert page.status_code == 200, page.text
            assert 'id="citizen-email"' in page.text, page.text
        finally:
            await browser.aclose()

        repeat = await api.post("/api/v1/complaints", headers=OPERATOR,
                                json=complaint(address=body["address"]))  # fmt: skip
        assert repeat.status_code == 200 and repeat.json()["merged"], repeat.text
        assert repeat.json()["case_id"] == case_id

        sender = RecordingSender()
        outbox = OutboxDispatcher(pool, sender, batch=500, render=FollowUpLinks(pool, settings))

        async def linked() -> list[OutboundNotice]:
            await outbox.run_once()
            return [n for n in sender.sent if n.recipient_id == case_id
                    and n.recipient_kind == "citizen" and n.event_kind == "received"]  # fmt: skip

        [notice] = await eventually(linked)
        assert (notice.channel, notice.address) == ("email", several)
        with pytest.raises(ValueError, match="not one e-mail address"):
            SmtpSender("localhost", 25, "12345@jiesu.test").message(notice)

        verdict = await audit_replay.replay_case(
            client, pool, case_id, audit_replay.make_replayer(ALL_WORKFLOWS)
        )
        assert verdict.ok and verdict.verdict == audit_replay.REPLAYS, verdict
    finally:
        await handle_of(client, case_id).terminate("test finished")
