"""Input nobody should send, sent anyway: every answer is a clear 4xx and nothing is written.

Found by an adversarial review (2026-11-22): NUL characters (PostgreSQL's text cannot hold
one) and dates at the end of time reached queries and answered 500; an Idempotency-Key of
thousands of characters overflowed the key's index (500); an action's key reused with another
body answered 200 for what the first body did; an operator's key could take the key of a
citizen's SMS, whose every delivery was then refused.
"""

from __future__ import annotations

import re
import uuid

import asyncpg
import httpx
import pytest
from helpers import OPERATOR, auth, complaint, csrf_of, handle_of, signed_in
from temporalio.client import Client
from test_api import assigned, finish, fresh
from test_sms import deliver, sms

from api.errors import MAX_DETAILS, unexpected
from jiesu.access import action_keys
from jiesu.case.domain import EventKind
from jiesu.ops.demo_data import demo_key
from workflows.complaint import ComplaintWorkflow

ADMIN = auth(demo_key("demo-admin"))
V2 = "/open311/v2"
OPEN311_KEY = demo_key("demo-operator").key
FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
LONG_KEY = "k" * 8000


async def intakes(pool: asyncpg.Pool) -> int:
    return await pool.fetchval("SELECT count(*) FROM intakes")


# --- NUL characters and dates at the end of time ------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/services.json", {"jurisdiction_id": "a\x00b"}),
        ("/requests.json", {"service_request_id": "JS1\x00"}),
        ("/services/a%00b.json", {}),
        ("/requests/JS1%00.json", {}),
        ("/requests.json", {"start_date": "9999-12-31T00:00:00Z"}),
        ("/requests.json", {"start_date": "0001-01-01T00:00:00+14:00"}),
    ],
)
async def test_open311_reads_refuse_what_postgresql_cannot_hold(
    api: httpx.AsyncClient, path: str, params: dict[str, str]
) -> None:
    answer = await api.get(V2 + path, params=params)
    assert answer.status_code == 400, (answer.status_code, answer.text)
    assert answer.json()[0]["code"] == 400


@pytest.mark.parametrize(
    "fields",
    [{"service_code": "noise\x00"}, {"address_id": "G\x00"}, {"first\x00name": "Li"}],
)
async def test_an_open311_report_with_a_nul_is_refused_and_not_filed(
    api: httpx.AsyncClient, pool: asyncpg.Pool, fields: dict[str, str]
) -> None:
    before = await intakes(pool)
    form = {"api_key": OPEN311_KEY, "service_code": "noise_commercial",
            "address_id": "G-QH-01-01-1", "phone": "13900000001", "first_name": "Li", **fields}
    answer = await api.post(f"{V2}/requests.json", headers=FORM, data=form)
    assert answer.status_code == 400, (answer.status_code, answer.text)
    assert await intakes(pool) == before


@pytest.mark.parametrize(
    "params", [{"entity": "a\x00b"}, {"entity_id": "a\x00b"}], ids=["entity", "entity_id"]
)
async def test_the_change_log_refuses_a_nul_in_its_filters(
    api: httpx.AsyncClient, params: dict[str, str]
) -> None:
    answer = await api.get("/api/v1/admin/changes", params=params, headers=ADMIN)
    assert answer.status_code == 422, (answer.status_code, answer.text)


async def test_a_login_that_cannot_be_one_is_not_found(api: httpx.AsyncClient) -> None:
    answer = await api.get("/api/v1/admin/users/a%00b", headers=ADMIN)
    assert answer.status_code == 404, (answer.status_code, answer.text)
    assert answer.json()["error"]["code"] == "person_not_found"


async def test_the_console_case_page_of_a_number_that_cannot_be_one_is_not_found(
    api: httpx.AsyncClient,
) -> None:
    browser = await signed_in(api, "operator")
    try:
        for path in ("/console/cases/JS1%00", "/console/cases/" + "J" * 5000):
            answer = await browser.get(path)
            assert answer.status_code == 404, (path[:40], answer.status_code, answer.text[:300])
    finally:
        await browser.aclose()


async def test_same_problem_lookup_with_a_nul_finds_nothing_and_fails_nothing(
    api: httpx.AsyncClient,
) -> None:
    browser = await signed_in(api, "operator")
    try:
        form = {"csrf_token": await csrf_of(browser), "category_id": "noise_commercial",
                "grid_id": "G-QH-01-01-1", "citizen_phone": "1380000\x001111", "address": ""}
        answer = await browser.post("/console/intake/similar", data=form)
        assert answer.status_code == 200, (answer.status_code, answer.text[:300])
    finally:
        await browser.aclose()


def test_a_value_postgresql_refuses_is_the_requests_fault_not_a_500() -> None:
    """The net under the endpoints' own checks (api/errors.py ``unexpected``)."""
    nul = asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence: 0x00")
    assert (unexpected(nul).status, unexpected(nul).code) == (422, "invalid_value")
    assert unexpected(OverflowError("date value out of range")).status == 422
    assert unexpected(RuntimeError("a bug")).status == 500


# --- Idempotency-Keys -------------------------------------------------------------------------


async def test_an_overlong_intake_key_is_refused_on_every_channel(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    before = await intakes(pool)
    form = {"api_key": OPEN311_KEY, "service_code": "noise_commercial",
            "address_id": "G-QH-01-01-1", "phone": f"139{uuid.uuid4().int % 10**8:08d}",
            "first_name": "Li", "description": f"loud music {uuid.uuid4().hex}"}
    answer = await api.post(f"{V2}/requests.json", headers={**FORM, "Idempotency-Key": LONG_KEY},
                            data=form)
    assert answer.status_code == 400, (answer.status_code, answer.text)
    assert "Idempotency-Key" in answer.json()[0]["description"]

    browser = await signed_in(api, "operator")
    try:
        fields = fresh("Console key")
        answer = await browser.post("/console/intake", data={
            "csrf_token": await csrf_of(browser), "key": LONG_KEY, "title": fields["title"],
            "description": "Loud adverts every night", "category_id": "noise_commercial",
            "grid_id": "G-QH-01-01-1", "address": fields["address"], "channel": "hotline",
            "citizen_name": "Wang Fang", "citizen_phone": fields["citizen"]["phone"]})
        assert answer.status_code == 422, (answer.status_code, answer.text[:300])
    finally:
        await browser.aclose()
    assert await intakes(pool) == before


async def test_an_action_key_reused_with_another_body_is_refused(
    api: httpx.AsyncClient, client: Client
) -> None:
    """A citizen's app reuses a key for a second supplement: the app is told (422), not
    answered 200 for a text the case never recorded. The true retry is still answered."""
    created = await api.post("/api/v1/complaints", json=complaint(**fresh("Idem body")),
                             headers=OPERATOR)
    assert created.status_code == 201, created.text
    case_id, token = created.json()["case_id"], created.json()["citizen_token"]
    await assigned(api, case_id)
    try:
        url, key = f"/api/v1/complaints/{case_id}/supplement", {"Idempotency-Key": "k-1"}
        first = {"token": token, "text": "Starts at 22:00"}
        assert (await api.post(url, json=first, headers=key)).status_code == 200
        other = await api.post(url, json={"token": token, "text": "Also on Sundays, 08:00"},
                               headers=key)
        assert other.status_code == 422, (other.status_code, other.text[:300])
        assert other.json()["error"]["code"] == "idempotency_key_reused"
        retry = await api.post(url, json=first, headers=key)
        assert retry.status_code == 200, retry.text[:300]
        state = await handle_of(client, case_id).query(ComplaintWorkflow.state)
        texts = [e.data.get("text") for e in state.events if e.kind is EventKind.SUPPLEMENTED]
        assert texts == ["Starts at 22:00"]
    finally:
        await finish(client, case_id)


async def test_an_operators_key_does_not_take_a_citizens_sms(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """An operator's key that happens to read "sms:<id>" is the operator's: the citizen's SMS
    with that gateway id is filed, and the gateway's retry answered the same."""
    message = sms(f"139{uuid.uuid4().int % 10**8:08d}", "路灯坏了，幸福路口一直不亮")
    taken = await api.post("/api/v1/complaints", json=complaint(**fresh("Key squat")),
                           headers={**OPERATOR, "Idempotency-Key": f"sms:{message['message_id']}"})
    assert taken.status_code == 201, taken.text
    delivered = await deliver(api, message)
    again = await deliver(api, message)  # the gateway's retry
    assert (delivered.status_code, again.status_code) == (200, 200), delivered.text
    assert await pool.fetchval(
        "SELECT count(*) FROM intakes WHERE idempotency_key = $1", f"sms:{message['message_id']}"
    ) == 2


async def test_two_callers_with_one_key_file_two_reports(
    api: httpx.AsyncClient, client: Client
) -> None:
    """The operator's key never answers the admin's report with the operator's case and
    citizen token: each caller's key is its own."""
    key = {"Idempotency-Key": f"shared-{uuid.uuid4().hex}"}
    body = complaint(**fresh("Shared key"))
    mine = await api.post("/api/v1/complaints", json=body, headers={**OPERATOR, **key})
    theirs = await api.post("/api/v1/complaints", json=body, headers={**ADMIN, **key})
    assert (mine.status_code, theirs.status_code) == (201, 200), theirs.text
    assert theirs.json()["citizen_token"] != mine.json()["citizen_token"]
    assert theirs.json()["merged"] is True  # the same problem: a repeat report of that case
    mine_again = await api.post("/api/v1/complaints", json=body, headers={**OPERATOR, **key})
    assert mine_again.json()["citizen_token"] == mine.json()["citizen_token"]
    assert mine_again.json()["replayed"] is True
    await finish(client, mine.json()["case_id"])


async def test_a_key_filed_before_keys_had_owners_still_answers_its_retry(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool
) -> None:
    key = {"Idempotency-Key": f"legacy-{uuid.uuid4().hex}"}
    body = complaint(**fresh("Legacy key"))
    first = await api.post("/api/v1/complaints", json=body, headers={**OPERATOR, **key})
    assert first.status_code == 201, first.text
    await pool.execute(  # as migration 0025 left the rows filed before it
        "UPDATE intakes SET idempotency_owner = NULL WHERE case_id = $1", first.json()["case_id"]
    )
    retry = await api.post("/api/v1/complaints", json=body, headers={**OPERATOR, **key})
    assert (retry.status_code, retry.json()["case_id"]) == (200, first.json()["case_id"])
    await finish(client, first.json()["case_id"])


async def test_action_keys_past_their_keeping_are_purged(pool: asyncpg.Pool) -> None:
    old, recent = f"idem-old-{uuid.uuid4().hex}", f"idem-new-{uuid.uuid4().hex}"
    await pool.execute(
        "INSERT INTO action_keys (request_id, body_digest, created_at)"
        " VALUES ($1, 'x', now() - $3::interval - interval '1 hour'), ($2, 'x', now())",
        old, recent, action_keys.KEEP,
    )  # fmt: skip
    assert await action_keys.purge(pool, batch=1) >= 1
    left = await pool.fetch(
        "SELECT request_id FROM action_keys WHERE request_id = ANY($1)", [old, recent]
    )
    assert [r["request_id"] for r in left] == [recent]


async def test_console_pages_refuse_what_postgresql_cannot_hold_with_a_page(
    api: httpx.AsyncClient,
) -> None:
    """The console's own pages: a NUL in a filter, a record's id or a login is a 4xx page
    (the change log's filters checked first; the others by the console's net)."""
    browser = await signed_in(api, "admin")
    refused = {
        "/console/admin/changes?entity=a%00b": 422,
        "/console/admin/changes?entity_id=a%00b": 422,
        "/console/admin/departments?edit=a%00b": 422,
        "/console/admin/categories?edit=a%00b": 422,
    }
    try:
        for path, status in refused.items():
            answer = await browser.get(path)
            assert answer.status_code == status, (path, answer.status_code, answer.text[:200])
            assert "text/html" in answer.headers["content-type"], path
        page = await browser.get("/console/admin/departments")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token, page.text[:300]
        deleted = await browser.post("/console/admin/departments/a%00b/delete",
                                     data={"csrf_token": token[1]})
        assert deleted.status_code == 422, (deleted.status_code, deleted.text[:200])
    finally:
        await browser.aclose()
    signed = await api.post("/console/login", data={"login": "a\x00b", "password": "x"})
    assert signed.status_code == 401, signed.text[:200]


async def test_a_body_of_many_unknown_keys_lists_only_the_first_problems(
    api: httpx.AsyncClient,
) -> None:
    """A 422 names at most MAX_DETAILS problems: listing each of a 2 MiB body's 209,714
    unknown keys made a 14 MB answer and 2.3 s of CPU on the event loop."""
    body = {**complaint(), **{f"k{i}": 0 for i in range(MAX_DETAILS * 4)}}
    response = await api.post("/api/v1/complaints", json=body, headers=OPERATOR)
    assert response.status_code == 422, response.text
    assert len(response.json()["error"]["details"]) == MAX_DETAILS
