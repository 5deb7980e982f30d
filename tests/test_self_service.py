"""Citizen self-service intake (api/routers/self_service.py, jiesu/channels/otp.py): no key, a
one-time code texted through the SMS gateway (read back from the log gateway's table), the
report filed by the one intake service; wrong, expired, locked and missing codes; rate limits
per phone and per address; enterprises with a checked unified social credit code."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from helpers import served
from temporalio.client import Client
from test_api import error_of, finish

from api.main import create_app
from jiesu.config import Settings

SELF = "/api/v1/self-service"
CREDIT_CODE = "91110000600037341L"  # a valid 统一社会信用代码
BAD_CHECKSUM = "91110000600037341M"


@pytest.fixture(scope="module")
async def public(
    settings: Settings, client: Client, pool: asyncpg.Pool
) -> AsyncIterator[httpx.AsyncClient]:
    """The API with limits no test here reaches except on purpose (the counts, in the
    database, start empty for each test: tests/conftest.py fresh_rate_limits)."""
    roomy = settings.model_copy(update={
        "otp_phone_limits": "100/minute", "otp_address_limits": "1000/hour",
        "report_phone_limits": "100/day", "report_address_limits": "1000/hour",
    })  # fmt: skip
    async with served(create_app(roomy, client=client, pool=pool)) as http:
        yield http


def new_phone() -> str:
    return "136" + f"{uuid.uuid4().int % 10**8:08d}"


def report(phone: str, code: str, **overrides: Any) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:10]
    return {
        "phone": phone, "code": code, "name": "李娜", "title": f"路灯不亮 {tag}",
        "description": "滨河路口的路灯连续三晚不亮", "category_id": "street_light",
        "grid_id": "G-QH-01-02-1", "address": f"滨河路{tag}号", "channel": "wechat",
        **overrides,
    }  # fmt: skip


async def code_for(api: httpx.AsyncClient, pool: asyncpg.Pool, phone: str) -> str:
    """Ask for a code and read it where the log gateway put it (the citizen's phone)."""
    sent = await api.post(f"{SELF}/codes", json={"phone": phone})
    assert sent.status_code == 202, sent.text
    text = await pool.fetchval(
        "SELECT text FROM sms_log WHERE phone = $1 ORDER BY id DESC LIMIT 1", phone
    )
    found = re.search(r"\b(\d{6})\b", text)
    assert found, text
    return found.group(1)


async def intake_count(pool: asyncpg.Pool) -> int:
    return await pool.fetchval("SELECT count(*) FROM intakes")


async def test_a_citizen_files_with_the_texted_code(
    public: httpx.AsyncClient, pool: asyncpg.Pool, client: Client
) -> None:
    phone = new_phone()
    code = await code_for(public, pool, phone)
    stored = await pool.fetch("SELECT phone_key, code_hash FROM otp_codes ORDER BY id DESC LIMIT 1")
    assert phone not in str(stored[0]) and code not in str(stored[0])  # hashed, both
    body = report(phone, code)
    filed = await public.post(f"{SELF}/reports", json=body)
    assert filed.status_code == 201, filed.text
    case_id = filed.json()["case_id"]
    try:
        assert re.fullmatch(r"http://[^/]+/my/[A-Za-z0-9_\-]{32}", filed.json()["follow_up_url"])
        payload = await pool.fetchval(
            "SELECT payload -> 'intake' FROM intakes WHERE case_id = $1", case_id
        )
        assert payload["channel"] == "wechat" and payload["citizen"]["phone"] == phone
        # the answer was lost: the same code and report again are the same case, once
        before = await intake_count(pool)
        again = await public.post(f"{SELF}/reports", json=body)
        assert again.status_code == 200, again.text
        assert again.json() == filed.json()
        # the code files one report, not another one
        other = await public.post(f"{SELF}/reports", json=report(phone, code))
        assert other.status_code == 422, other.text
        assert await intake_count(pool) == before
    finally:
        await finish(client, case_id)


async def test_wrong_missing_expired_and_locked_codes_file_nothing(
    public: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    before = await intake_count(pool)
    phone = new_phone()
    error_of(await public.post(f"{SELF}/reports", json=report(phone, "123456")), 401, "no_code")
    code = await code_for(public, pool, phone)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    error_of(await public.post(f"{SELF}/reports", json=report(phone, wrong)), 401, "wrong_code")
    # a new code replaces the old one
    newer = await code_for(public, pool, phone)
    if newer != code:
        error_of(await public.post(f"{SELF}/reports", json=report(phone, code)), 401,
                 "wrong_code")  # fmt: skip
    # too many wrong tries: even the right code is refused until a new one is asked for
    newer = await code_for(public, pool, phone)
    wrong = f"{(int(newer) + 1) % 10**6:06d}"
    for _ in range(settings.otp_max_attempts):
        error_of(await public.post(f"{SELF}/reports", json=report(phone, wrong)), 401,
                 "wrong_code")  # fmt: skip
    error_of(await public.post(f"{SELF}/reports", json=report(phone, newer)), 401, "code_locked")
    # expired: the code's time is over (moved back in the table rather than waited for)
    latest = await code_for(public, pool, phone)
    await pool.execute(
        "UPDATE otp_codes SET expires_at = now() - interval '1 second'"
        " WHERE id = (SELECT max(id) FROM otp_codes)"
    )
    error_of(await public.post(f"{SELF}/reports", json=report(phone, latest)), 401,
             "code_expired")  # fmt: skip
    assert await intake_count(pool) == before
    error_of(await public.post(f"{SELF}/reports", json={**report(phone, latest), "urgency": "x"}),
             422, "invalid_request")  # fmt: skip


async def test_rate_limits_per_phone_and_per_address(
    settings: Settings, client: Client, pool: asyncpg.Pool
) -> None:
    tight = settings.model_copy(update={
        "otp_phone_limits": "2/minute", "otp_address_limits": "4/hour",
        "report_phone_limits": "1/day", "report_address_limits": "100/hour",
    })  # fmt: skip
    async with served(create_app(tight, client=client, pool=pool)) as api:
        phone = new_phone()
        for _ in range(2):
            assert (await api.post(f"{SELF}/codes", json={"phone": phone})).status_code == 202
        sent = await pool.fetchval("SELECT count(*) FROM sms_log WHERE phone = $1", phone)
        refused = await api.post(f"{SELF}/codes", json={"phone": "+86 " + phone})  # same phone
        error_of(refused, 429, "rate_limited")
        assert int(refused.headers["Retry-After"]) >= 1
        assert await pool.fetchval("SELECT count(*) FROM sms_log WHERE phone LIKE $1",
                                   f"%{phone}") == sent  # fmt: skip
        # the address (every request counts, the refused one too): a fourth phone's code,
        # then this client is refused whatever the phone
        assert (await api.post(f"{SELF}/codes", json={"phone": new_phone()})).status_code == 202
        error_of(await api.post(f"{SELF}/codes", json={"phone": new_phone()}), 429,
                 "rate_limited")  # fmt: skip

    # A new app keeps those counts (they are in the database: tests/test_shared_limits.py);
    # the per-phone report limit below needs this address's codes again.
    await pool.execute("DELETE FROM rate_limit_hits")
    async with served(create_app(tight, client=client, pool=pool)) as api:
        phone = new_phone()
        code = await code_for(api, pool, phone)
        first = await api.post(f"{SELF}/reports", json=report(phone, code))
        assert first.status_code == 201, first.text
        try:
            second = report(phone, await code_for(api, pool, phone))
            error_of(await api.post(f"{SELF}/reports", json=second), 429, "rate_limited")
        finally:
            await finish(client, first.json()["case_id"])


async def test_enterprises_file_with_a_checked_credit_code(
    public: httpx.AsyncClient, pool: asyncpg.Pool, client: Client
) -> None:
    listed = await public.get(f"{SELF}/categories", params={"enterprise": "true"})
    assert listed.status_code == 200, listed.text
    enterprise_ids = {c["id"] for c in listed.json()}
    assert {"enterprise_request", "enterprise_approval", "enterprise_policy"} <= enterprise_ids
    assert "street_light" not in enterprise_ids
    phone = new_phone()
    code = await code_for(public, pool, phone)
    as_firm = {"credit_code": CREDIT_CODE, "category_id": "enterprise_approval",
               "name": "青河县某某科技有限公司 张经理"}  # fmt: skip
    before = await intake_count(pool)
    bad = await public.post(f"{SELF}/reports", json=report(phone, code, **{
        **as_firm, "credit_code": BAD_CHECKSUM}))  # fmt: skip
    error_of(bad, 422, "invalid_credit_code")
    lower = await public.post(f"{SELF}/reports", json=report(phone, code, **{
        **as_firm, "credit_code": CREDIT_CODE.lower()}))  # fmt: skip
    error_of(lower, 422, "invalid_request")
    citizen = await public.post(f"{SELF}/reports",
                                json=report(phone, code, category_id="enterprise_approval"))
    error_of(citizen, 422, "enterprise_category")
    firm_elsewhere = await public.post(f"{SELF}/reports", json=report(phone, code, **{
        **as_firm, "category_id": "street_light"}))  # fmt: skip
    error_of(firm_elsewhere, 422, "not_an_enterprise_category")
    assert await intake_count(pool) == before
    # none of the refusals spent the code
    filed = await public.post(f"{SELF}/reports", json=report(phone, code, **as_firm))
    assert filed.status_code == 201, filed.text
    case_id = filed.json()["case_id"]
    try:
        payload = await pool.fetchval(
            "SELECT payload -> 'intake' FROM intakes WHERE case_id = $1", case_id
        )
        assert payload["channel"] == "enterprise_port"
        assert payload["citizen"]["credit_code"] == CREDIT_CODE
    finally:
        await finish(client, case_id)


async def test_an_unknown_grid_does_not_spend_the_code(
    public: httpx.AsyncClient, pool: asyncpg.Pool, client: Client
) -> None:
    phone = new_phone()
    code = await code_for(public, pool, phone)
    nowhere = await public.post(f"{SELF}/reports", json=report(phone, code, grid_id="G-NOWHERE"))
    error_of(nowhere, 422, "unknown_grid")
    filed = await public.post(f"{SELF}/reports", json=report(phone, code))
    assert filed.status_code == 201, filed.text
    await finish(client, filed.json()["case_id"])


async def test_the_public_form_is_served(public: httpx.AsyncClient) -> None:
    page = await public.get("/report")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    for field in ("phone", "code", "name", "credit_code", "category_id", "grid_id", "title",
                  "description"):  # fmt: skip
        assert f'id="{field}"' in html, field
    assert '"/api/v1/self-service"' in html and "/codes" in html and "/reports" in html
    assert "/report" not in (await public.get("/openapi.json")).json()["paths"]


async def test_an_ipv6_subscriber_is_one_client_whatever_address_it_takes(
    settings: Settings, client: Client, pool: asyncpg.Pool
) -> None:
    """A subscriber gets a /64 (a phone on a mobile network, a home line, a cloud server) and
    may send each request from another of its 2**64 addresses: the per-address limits count
    the /64. Before, each address was a client of its own: 100 addresses of one /64 were sent
    100 codes under a limit of 2 an hour per address, and guessed 100 codes past a limit of 2
    failed authentications."""
    tight = settings.model_copy(update={
        "otp_phone_limits": "100/minute", "otp_address_limits": "2/hour",
        "report_phone_limits": "100/day", "report_address_limits": "100/hour",
        "auth_failure_limit": 2,
    })  # fmt: skip
    app = create_app(tight, client=client, pool=pool)
    async with app.router.lifespan_context(app):

        def at(host: str) -> httpx.AsyncClient:
            transport = httpx.ASGITransport(app=app, client=(host, 40000))
            return httpx.AsyncClient(transport=transport, base_url="http://jiesu.test")

        async def code_from(host: str) -> httpx.Response:
            async with at(host) as http:
                return await http.post(f"{SELF}/codes", json={"phone": new_phone()})

        async def guess_from(host: str, phone: str, guess: str) -> httpx.Response:
            async with at(host) as http:
                return await http.post(f"{SELF}/reports", json=report(phone, guess))

        answers = [await code_from(f"2001:db8:1:2::{i:x}") for i in range(1, 6)]
        assert [a.status_code for a in answers] == [202, 202, 429, 429, 429]
        assert (await code_from("2001:db8:1:3::1")).status_code == 202  # another /64
        # IPv4 and an IPv4-mapped IPv6 address are the same client
        mapped = [await code_from(h) for h in ("192.0.2.7", "::ffff:192.0.2.7", "192.0.2.7")]
        assert [a.status_code for a in mapped] == [202, 202, 429]

        phone = new_phone()
        async with at("2001:db8:9:9::1") as http:  # a code, so that each guess is a wrong one
            wrong = f"{(int(await code_for(http, pool, phone)) + 1) % 10**6:06d}"
        guesses = [await guess_from(f"2001:db8:9:9::{i:x}", phone, wrong) for i in range(2, 7)]
        assert [g.status_code for g in guesses] == [401, 401, 429, 429, 429], [
            g.text for g in guesses
        ]
        error_of(guesses[-1], 429, "too_many_failed_authentications")


async def test_a_wrong_code_spends_none_of_the_phone_s_reports(
    settings: Settings, client: Client, pool: asyncpg.Pool
) -> None:
    """Anyone may send a phone number with a made-up code. Before, each such try counted
    against that phone's reports (`JIESU_REPORT_PHONE_LIMITS`, 5 a day): five posts with no
    code locked the phone's citizen out of self-service for the day (here one of a limit of
    one). Only a report with the right code counts now."""
    tight = settings.model_copy(update={
        "otp_phone_limits": "100/minute", "otp_address_limits": "1000/hour",
        "report_phone_limits": "1/day", "report_address_limits": "1000/hour",
    })  # fmt: skip
    async with served(create_app(tight, client=client, pool=pool)) as api:
        phone = new_phone()
        code = await code_for(api, pool, phone)
        wrong = f"{(int(code) + 1) % 10**6:06d}"
        for _ in range(3):  # the attacker's, from anywhere
            error_of(await api.post(f"{SELF}/reports", json=report(phone, wrong)), 401,
                     "wrong_code")  # fmt: skip
        filed = await api.post(f"{SELF}/reports", json=report(phone, code))
        assert filed.status_code == 201, filed.text
        try:  # the phone's day is spent by its report
            again = report(phone, await code_for(api, pool, phone))
            error_of(await api.post(f"{SELF}/reports", json=again), 429, "rate_limited")
        finally:
            await finish(client, filed.json()["case_id"])


async def test_guessing_a_used_code_ends_too(
    public: httpx.AsyncClient, pool: asyncpg.Pool, client: Client, settings: Settings
) -> None:
    """A used code stays the phone's newest, and its right value answers the report again with
    its follow-up link (the key to the case). Before, wrong tries on a used code were not
    counted: guessing it was bounded only per client, never per code."""
    phone = new_phone()
    code = await code_for(public, pool, phone)
    body = report(phone, code)
    filed = await public.post(f"{SELF}/reports", json=body)
    assert filed.status_code == 201, filed.text
    try:
        wrong = f"{(int(code) + 1) % 10**6:06d}"
        for _ in range(settings.otp_max_attempts):
            error_of(await public.post(f"{SELF}/reports", json=report(phone, wrong)), 401,
                     "wrong_code")  # fmt: skip
        error_of(await public.post(f"{SELF}/reports", json=body), 401, "code_locked")
    finally:
        await finish(client, filed.json()["case_id"])


async def test_all_codes_together_are_bounded(
    settings: Settings, client: Client, pool: asyncpg.Pool
) -> None:
    """Each code is an SMS the installation pays for. A caller with many addresses (a proxy
    pool, a botnet) asking codes for many phones passed every per-phone and per-address limit:
    nothing bounded what it cost. The 4th code here comes from a 4th address for a 4th phone."""
    tight = settings.model_copy(update={
        "otp_phone_limits": "100/minute", "otp_address_limits": "1000/hour",
        "otp_total_limits": "3/hour",
    })  # fmt: skip
    app = create_app(tight, client=client, pool=pool)
    async with app.router.lifespan_context(app):
        answers = []
        for i in range(1, 5):
            transport = httpx.ASGITransport(app=app, client=(f"198.51.100.{i}", 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                answers.append(await http.post(f"{SELF}/codes", json={"phone": new_phone()}))
        assert [a.status_code for a in answers] == [202, 202, 202, 429]
        error_of(answers[-1], 429, "rate_limited")
    assert Settings.model_fields["otp_phone_limits"].default.endswith(";10/day")
