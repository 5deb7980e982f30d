"""What one sender can make the mail listener do (jiesu/channels/mail.py): mails filed per
sender address, sending domain and peer are bounded (451 4.7.1, the sending server retries),
automatic replies in all are bounded (filed, not answered), and mails whose sender the mail
itself, or the trusted relay's Authentication-Results, contradicts are not answered.

Before these bounds, one sender's 20 mails were one case, 19 repeat reports and 20 replies, and
20 mails with forged From addresses 20 cases and 20 replies to the forged addresses, each
saying "Re: <the sender's subject>", at about 50,000 mails an hour over one connection."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
from temporalio.client import Client
from test_api import finish
from test_mail import COMPLAINTS, envelope, mail, send

from jiesu.access.clients import address_key
from jiesu.channels.mail import parse, sender_key
from jiesu.channels.mail_listener import handler_for, listening
from jiesu.config import Settings
from jiesu.notify.mail import LogMailer


@asynccontextmanager
async def listener(
    settings: Settings, client: Client, pool: asyncpg.Pool, **update: Any
) -> AsyncIterator[int]:
    mine = settings.model_copy(update={"mail_address": COMPLAINTS, **update})
    handler = handler_for(pool, client, mine, LogMailer(pool))
    async with listening(handler, mine, "127.0.0.1", 0) as server:
        yield server.sockets[0].getsockname()[1]


def domain() -> str:
    return f"d{uuid.uuid4().hex[:10]}.test"


async def replies(pool: asyncpg.Pool, domain: str) -> int:
    return await pool.fetchval(
        "SELECT count(*) FROM mail_log WHERE to_address ILIKE $1", f"%@{domain}"
    )


def case_of(answer: str) -> str:
    return answer.rsplit(" ", 1)[1]


def test_the_defaults_bound_senders_and_replies() -> None:
    defaults = Settings()
    assert defaults.mail_sender_limits == "10/hour;30/day"
    assert defaults.mail_domain_limits == "300/hour"
    assert defaults.mail_peer_limits == ""
    assert defaults.mail_reply_limits == "200/hour;1000/day"
    assert defaults.mail_authserv_id == ""


def test_a_sender_is_one_whatever_its_case_or_tag() -> None:
    assert sender_key("Zhang.Wei+1@QQ.com") == sender_key("zhang.wei+2@qq.com")
    assert sender_key("zhang.wei@qq.com") == "zhang.wei@qq.com"
    assert sender_key("+x@qq.com") == "+x@qq.com"
    assert address_key("2001:db8::1") == address_key("2001:db8::ffff") == "2001:db8::/64"
    assert address_key("192.0.2.7") == "192.0.2.7"


async def test_one_sender_files_its_bound_then_is_asked_to_retry(
    settings: Settings, client: Client, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    """Three mails under JIESU_MAIL_SENDER_LIMITS=3/hour (the same mailbox, however written),
    then 451 4.7.1 — but a filed mail delivered again is still its case, and another sender
    is not affected."""
    caplog.set_level(logging.INFO)
    where, cases = domain(), []
    async with listener(settings, client, pool, mail_sender_limits="3/hour") as port:
        try:
            first = mail(f"zhang@{where}")
            for msg in (first, mail(f"Zhang+2@{where}"), mail(f"ZHANG+3@{where.upper()}")):
                _, code, answer = await send(port, msg)
                assert code == 250, answer
                cases.append(case_of(answer))
            _, code, answer = await send(port, mail(f"zhang+4@{where}"))
            assert code == 451
            assert answer == "4.7.1 too many reports from this sender now; try again later"
            _, code, answer = await send(port, first)  # the sending server's retry
            assert (code, case_of(answer)) == (250, cases[0])
            _, code, answer = await send(port, mail(f"li@{where}"))
            assert code == 250, answer
            cases.append(case_of(answer))
            assert await replies(pool, where) == 4
            assert any("past the bound on mails filed (sender 3 per 1 hour)" in r.getMessage()
                       for r in caplog.records)  # fmt: skip
        finally:
            await finish(client, *cases)


async def test_a_mail_asked_to_retry_is_not_counted_again_at_its_retry(
    settings: Settings, client: Client, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under 1/hour per sender, the sender's one mail arrives while Temporal is away (451
    4.3.0, counted): its retry is filed, not refused as past the bound it was counted against
    once already; the sender's next mail still is."""
    mine = settings.model_copy(update={"mail_address": COMPLAINTS,
                                       "mail_sender_limits": "1/hour"})  # fmt: skip
    handler = handler_for(pool, client, mine, LogMailer(pool))
    where = domain()
    delivery = envelope(mail(f"zhang@{where}").as_bytes())

    async def away(*args: object) -> str:
        raise ConnectionError("Temporal away")

    with monkeypatch.context() as outage:
        outage.setattr(handler, "file", away)
        answer = await handler.handle_DATA(None, None, delivery)
    assert answer.startswith("451 4.3.0"), answer
    answer = await handler.handle_DATA(None, None, delivery)  # the sending server's retry
    assert answer.startswith("250 2.0.0 OK: case "), answer
    try:
        again = await handler.handle_DATA(None, None, envelope(mail(f"zhang+2@{where}").as_bytes()))
        assert again.startswith("451 4.7.1"), again
    finally:
        await finish(client, case_of(answer))


@pytest.mark.parametrize("bound", ["mail_domain_limits", "mail_peer_limits"])
async def test_a_sending_domain_and_a_peer_are_bounded(
    settings: Settings, client: Client, pool: asyncpg.Pool, bound: str
) -> None:
    """Two mails, each from another address (of one domain, or of two domains from one
    peer), under a bound of 2/hour: the third is 451."""
    where, cases = domain(), []
    async with listener(settings, client, pool, **{bound: "2/hour"}) as port:
        try:
            for n in range(3):
                sender = f"u{n}@{where}" if bound == "mail_domain_limits" else f"u@{n}{where}"
                _, code, answer = await send(port, mail(sender))
                if n < 2:
                    assert code == 250, answer
                    cases.append(case_of(answer))
            assert code == 451, answer
        finally:
            await finish(client, *cases)


async def test_past_the_reply_bound_mail_is_filed_and_not_answered(
    settings: Settings, client: Client, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    """Forged From addresses, one mail each (no sender bound is reached): under
    JIESU_MAIL_REPLY_LIMITS=2/hour three mails are three cases and two replies; the third is
    logged, its inbound_mail.replied_at empty."""
    caplog.set_level(logging.INFO)
    where, cases = domain(), []
    async with listener(settings, client, pool, mail_reply_limits="2/hour") as port:
        try:
            for n in range(3):
                _, code, answer = await send(port, mail(f"victim{n}@{where}"))
                assert code == 250, answer
                cases.append(case_of(answer))
            assert await replies(pool, where) == 2
            assert await pool.fetchval(
                "SELECT count(*) FROM inbound_mail WHERE case_id = ANY($1) AND replied_at IS NULL",
                cases,
            ) == 1
            assert any(f"filed as case {cases[2]}, not answered: reply 2 per 1 hour"
                       in r.getMessage() for r in caplog.records)  # fmt: skip
        finally:
            await finish(client, *cases)


AR = "Authentication-Results"
TRUSTED = "mx.qinghe.test"


def _with(*results: str) -> bytes:
    msg = mail("zhang@citizen.test")
    for value in results:
        msg[AR] = value
    return msg.as_bytes()


@pytest.mark.parametrize(
    ("authserv_id", "results", "why"),
    [
        pytest.param(TRUSTED, [f"{TRUSTED}; dmarc=fail (p=reject) header.from=citizen.test"],
                     "DMARC fail", id="dmarc-fail"),
        pytest.param(TRUSTED, [f"{TRUSTED}; spf=fail smtp.mailfrom=citizen.test"],
                     "SPF fail without a DKIM pass", id="spf-fail"),
        pytest.param(TRUSTED, [f"{TRUSTED}; spf=fail; dkim=pass header.d=citizen.test"], None,
                     id="spf-fail-dkim-pass-forwarded"),
        pytest.param(TRUSTED, [f"{TRUSTED}; spf=pass; dkim=pass; dmarc=pass"], None,
                     id="pass"),
        pytest.param(TRUSTED, [f"{TRUSTED}; dmarc=pass", f"{TRUSTED}; dmarc=fail"], None,
                     id="only-the-topmost-counts"),
        pytest.param(TRUSTED, ["evil.test; dmarc=fail", f"{TRUSTED} 1; dmarc=pass"], None,
                     id="another-id-is-ignored"),
        pytest.param("", [f"{TRUSTED}; dmarc=fail"], None, id="no-trusted-relay-set"),
    ],
)
def test_the_trusted_relay_s_authentication_results(
    authserv_id: str, results: list[str], why: str | None
) -> None:
    assert parse(_with(*results), "zhang@citizen.test", (), authserv_id).unanswerable == why


async def test_a_mail_the_trusted_relay_found_forged_is_filed_and_not_answered(
    settings: Settings, client: Client, pool: asyncpg.Pool
) -> None:
    where = domain()
    msg = mail(f"zhang@{where}")
    msg[AR] = f"{TRUSTED}; spf=softfail; dkim=none; dmarc=fail header.from={where}"
    async with listener(settings, client, pool, mail_authserv_id=TRUSTED) as port:
        _, code, answer = await send(port, msg)
    assert code == 250, answer
    try:
        assert await replies(pool, where) == 0
    finally:
        await finish(client, case_of(answer))



