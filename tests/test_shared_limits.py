"""Rate limits counted where every API replica sees the same count and a restart keeps it
(jiesu/rate_limits.py, PostgreSQL table rate_limit_hits).

Before, every limit was counted in one process's memory (the ``limits`` library's
MemoryStorage): two API replicas on one database each let the whole bound through (a phone
got 2 codes under ``1/minute``), and an API started again forgot every count (a guesser who
got the API restarted had its failed authentications back). Each app here is what one API
process holds; they share the test PostgreSQL as replicas share the deployment's."""

from __future__ import annotations

import asyncio
import re
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from email.message import EmailMessage
from email.utils import make_msgid
from types import SimpleNamespace
from typing import Any

import asyncpg
import httpx
from helpers import served
from temporalio.client import Client
from test_api import error_of

from api.main import create_app
from jiesu.channels.mail import ComplaintMailHandler
from jiesu.config import Settings
from jiesu.notify.mail import LogMailer
from jiesu.rate_limits import NamedLimits

SELF = "/api/v1/self-service"
COMPLAINTS = "/api/v1/complaints"
COMPLAINT_ADDRESS = "12345@qinghe.test"


def new_phone() -> str:
    return "137" + f"{uuid.uuid4().int % 10**8:08d}"


@asynccontextmanager
async def replicas(
    settings: Settings, client: Client, pool: asyncpg.Pool, n: int, **update: Any
) -> AsyncIterator[list[httpx.AsyncClient]]:
    """``n`` API processes with the same settings on the same database."""
    mine = settings.model_copy(update=update)
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(served(create_app(mine, client=client, pool=pool)))
            for _ in range(n)
        ]


async def code(api: httpx.AsyncClient, phone: str) -> int:
    return (await api.post(f"{SELF}/codes", json={"phone": phone})).status_code


async def test_two_replicas_send_a_phone_no_more_codes_than_one(
    settings: Settings, client: Client, pool: asyncpg.Pool
) -> None:
    """Old code: the second replica sent a second code within the minute (202)."""
    async with replicas(settings, client, pool, 2, otp_phone_limits="1/minute") as (a, b):
        phone = new_phone()
        assert await code(a, phone) == 202
        refused = await b.post(f"{SELF}/codes", json={"phone": phone})
        error_of(refused, 429, "rate_limited")
        assert 1 <= int(refused.headers["Retry-After"]) <= 60


async def test_a_restarted_api_keeps_the_counts(
    settings: Settings, client: Client, pool: asyncpg.Pool
) -> None:
    """Old code: after the restart the phone got another code and the guesser two more
    guesses."""
    tight = {"otp_phone_limits": "1/hour", "auth_failure_limit": 2}
    phone = new_phone()
    async with replicas(settings, client, pool, 1, **tight) as (api,):
        assert await code(api, phone) == 202
        for guess in ("guess-1", "guess-2"):
            wrong = await api.get(COMPLAINTS, headers={"Authorization": f"Bearer {guess}"})
            error_of(wrong, 401, "invalid_api_key")
    async with replicas(settings, client, pool, 1, **tight) as (restarted,):
        error_of(await restarted.post(f"{SELF}/codes", json={"phone": phone}), 429,
                 "rate_limited")  # fmt: skip
        refused = await restarted.get(COMPLAINTS, headers={"Authorization": "Bearer guess-3"})
        error_of(refused, 429, "too_many_failed_authentications")
        assert int(refused.headers["Retry-After"]) >= 1


async def test_replicas_share_the_failed_authentications(
    settings: Settings, client: Client, pool: asyncpg.Pool
) -> None:
    """A guesser spreading guesses over 3 replicas under a limit of 3: old code let it guess
    3 times on each (9), now 3 in all."""
    async with replicas(settings, client, pool, 3, auth_failure_limit=3) as apis:
        answers = []
        for n in range(6):
            guess = {"Authorization": f"Bearer guess-{n}"}
            answers.append((await apis[n % 3].get(COMPLAINTS, headers=guess)).status_code)
        assert answers == [401, 401, 401, 429, 429, 429]


async def test_requests_at_once_on_several_replicas_pass_the_bound_once(
    settings: Settings, client: Client, pool: asyncpg.Pool
) -> None:
    """Eight requests for one phone at the same moment, over two replicas, under 1/minute:
    one code is sent. The check and the count are one step under a lock: two requests cannot
    both see the last slot free."""
    async with replicas(settings, client, pool, 2, otp_phone_limits="1/minute") as (a, b):
        phone = new_phone()
        answers = await asyncio.gather(*(code((a, b)[n % 2], phone) for n in range(8)))
        assert sorted(answers) == [202] + [429] * 7
        sent = await pool.fetchval("SELECT count(*) FROM sms_log WHERE phone = $1", phone)
        assert sent == 1


async def test_two_mail_listeners_share_the_sender_bound(
    settings: Settings, client: Client, pool: asyncpg.Pool
) -> None:
    """Two mail listeners (or one restarted) on one database: old code let each file the
    sender's bound."""
    mine = settings.model_copy(update={"mail_sender_limits": "1/hour"})
    first, second = (ComplaintMailHandler(pool, client, mine, LogMailer(pool)) for _ in "12")
    sender = f"zhang{uuid.uuid4().hex[:8]}@example.test"
    assert await first.limits.file(sender, None, uuid.uuid4().hex) is None
    assert await second.limits.file(sender, None, uuid.uuid4().hex) == "sender 1 per 1 hour"


async def test_the_same_interface_on_the_database(settings: Settings, pool: asyncpg.Pool) -> None:
    """``past`` counts nothing, ``count`` counts whatever the bounds say, ``take`` counts
    only within them and names the first bound used up, with the seconds until it frees."""
    limits = NamedLimits(pool, settings, {"codes": "2/minute;3/hour", "none": ""})
    key = new_phone()
    assert await limits.past("codes", key) is None
    assert await limits.take([("codes", key)]) is None
    await limits.count("codes", key)
    name, past = await limits.take([("codes", key)]) or ("", None)
    assert name == "codes" and past is not None and str(past.item) == "2 per 1 minute"
    assert 55 <= past.retry_after <= 60
    assert await limits.past("codes", key) == past
    assert await limits.take([("none", key)]) is None  # an empty spec bounds nothing


async def test_takes_at_once_pass_the_last_slot_once(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """Two objects, as two API processes hold them; 20 takes at once under 3/minute."""
    first, second = (NamedLimits(pool, settings, {"codes": "3/minute"}) for _ in "12")
    key = new_phone()
    answers = await asyncio.gather(
        *((first, second)[n % 2].take([("codes", key)]) for n in range(20))
    )
    assert sum(answer is None for answer in answers) == 3
    stored = await pool.fetchval("SELECT count(*) FROM rate_limit_hits WHERE name = 'codes'")
    assert stored == 3


async def test_no_phone_or_address_is_stored(
    settings: Settings, client: Client, pool: asyncpg.Pool
) -> None:
    """The keys are stored keyed (HMAC with the server secret), as otp_codes keeps phones."""
    async with replicas(settings, client, pool, 1) as (api,):
        phone = new_phone()
        assert await code(api, phone) == 202
    rows = await pool.fetch("SELECT name, key FROM rate_limit_hits")
    assert {r["name"] for r in rows} == {"otp-phone", "otp-address", "otp-total"}
    assert all(re.fullmatch(r"[0-9a-f]{64}", r["key"]) for r in rows)
    assert not any(phone in r["key"] or "127.0.0" in r["key"] for r in rows)


async def test_expired_hits_are_pruned(settings: Settings, pool: asyncpg.Pool) -> None:
    """A hit expires after the longest window of its limit; ``prune`` (run by each process at
    most every PRUNE_EVERY seconds when it counts) deletes it. The old hit is written as
    one from two days ago would be, under a 1/day limit."""
    limits = NamedLimits(pool, settings, {"codes": "1/minute;1/day"})
    old, new = new_phone(), new_phone()
    assert await limits.take([("codes", old)]) is None
    await pool.execute(
        "UPDATE rate_limit_hits SET at = at - interval '2 days',"
        " expires_at = expires_at - interval '2 days'"
    )
    assert await limits.take([("codes", new)]) is None
    expiry = await pool.fetchval(
        "SELECT extract(epoch FROM expires_at - at) FROM rate_limit_hits WHERE at > now() - "
        "interval '1 hour'"
    )
    assert expiry == 86400  # the longest window
    assert await limits.past("codes", old) is None  # out of every window...
    assert await limits.prune() == 1  # ...and gone
    assert await pool.fetchval("SELECT count(*) FROM rate_limit_hits") == 1
    assert await limits.past("codes", new) is not None


async def test_without_the_database_a_limit_fails_closed(
    settings: Settings, client: Client, pool: asyncpg.Pool
) -> None:
    """PostgreSQL unreachable when a limit is checked: 503 database_unavailable with
    Retry-After, as for every request needing the database — no code texted unbounded, no
    credential looked at unbounded. (A pool to a port nothing listens on.)"""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nowhere = await asyncpg.create_pool(
        f"postgresql://jiesu@127.0.0.1:{port}/nowhere", min_size=0, max_size=1
    )
    try:
        async with served(create_app(settings, client=client, pool=nowhere)) as api:
            down = await api.post(f"{SELF}/codes", json={"phone": new_phone()})
            error_of(down, 503, "database_unavailable")
            assert int(down.headers["Retry-After"]) >= 1
            guess = await api.get(COMPLAINTS, headers={"Authorization": "Bearer guess"})
            error_of(guess, 503, "database_unavailable")
    finally:
        await nowhere.close()


async def test_without_the_database_the_mail_listener_asks_to_retry(
    settings: Settings, client: Client
) -> None:
    """The listener cannot check whether the mail was filed before nor count it: ``451``,
    the sending server delivers later. Before, the exception reached aiosmtpd, which answers
    ``500 Error`` — permanent: the sending server bounced the citizen's mail."""
    mine = settings.model_copy(update={"mail_address": COMPLAINT_ADDRESS})
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nowhere = await asyncpg.create_pool(
        f"postgresql://jiesu@127.0.0.1:{port}/nowhere", min_size=0, max_size=1
    )
    try:
        handler = ComplaintMailHandler(nowhere, client, mine, LogMailer(nowhere))
        msg = EmailMessage()
        msg["From"] = f"张伟 <zhang{uuid.uuid4().hex[:8]}@citizen.test>"
        msg["To"] = COMPLAINT_ADDRESS
        msg["Subject"] = "楼下烧烤油烟扰民"
        msg["Message-ID"] = make_msgid(domain="citizen.test")
        msg.set_content("每天晚上十点后楼下烧烤店油烟很大，请处理。")
        raw = msg.as_bytes()
        delivery = SimpleNamespace(mail_from="citizen@citizen.test", original_content=raw,
                                   content=raw)  # fmt: skip
        answer = await handler.handle_DATA(None, None, delivery)
        assert answer.startswith("451 4.3.0"), answer
    finally:
        await nowhere.close()
