"""The SMS gateway (jiesu/notify/sms.py) and inbound SMS (api/routers/channels.py): the outbox
delivers citizens' notices through the gateway; a signed inbound SMS becomes a case, or rates
the case waiting for that phone's rating; bad signatures and replays change nothing; the same
message delivered twice applies once. On the real servers, the log gateway's table read back."""

from __future__ import annotations

import itertools
import json
import re
import time
import uuid
from typing import Any

import asyncpg
import httpx
from conftest import SMS_SECRET
from helpers import OPERATOR, act, complaint, eventually, handle_of, run_tried_once
from temporalio.client import Client
from test_api import URBAN, assigned, error_of, finish, fresh

from jiesu.case.domain import EventKind, Rating
from jiesu.channels import sms as sms_channel
from jiesu.channels.sms import parse_rating, phone_forms
from jiesu.config import Settings
from jiesu.intake.follow_up import FollowUpLinks
from jiesu.notify.notices import RATING_PROMPT
from jiesu.notify.outbox import OutboxDispatcher, sender_from_env
from jiesu.notify.sms import LogSmsGateway, signature
from workflows.complaint import ComplaintWorkflow

INBOUND = "/api/v1/channels/sms/inbound"


def signed(message: dict[str, Any], *, secret: str = SMS_SECRET,
           at: float | None = None) -> tuple[bytes, dict[str, str]]:  # fmt: skip
    body = json.dumps(message, ensure_ascii=False).encode()
    stamp = str(int(time.time() if at is None else at))
    return body, {
        "Content-Type": "application/json",
        "X-Jiesu-Timestamp": stamp,
        "X-Jiesu-Signature": signature(secret.encode(), stamp, body),
    }


async def deliver(api: httpx.AsyncClient, message: dict[str, Any], **sign: Any) -> httpx.Response:
    body, headers = signed(message, **sign)
    return await api.post(INBOUND, content=body, headers=headers)


def sms(phone: str, text: str) -> dict[str, Any]:
    return {"message_id": f"gw-{uuid.uuid4().hex}", "from": phone, "text": text}


async def intake_count(pool: asyncpg.Pool) -> int:
    return await pool.fetchval("SELECT count(*) FROM intakes")


async def replied_case(api: httpx.AsyncClient, pool: asyncpg.Pool) -> tuple[str, str]:
    """A case of a fresh citizen, replied by the department, the read model showing it."""
    fields = fresh("SMS rating")
    created = await api.post("/api/v1/complaints", json=complaint(**fields), headers=OPERATOR)
    assert created.status_code == 201, created.text
    case_id = created.json()["case_id"]
    await assigned(api, case_id)
    await act(api, case_id, "accept", URBAN)
    await act(api, case_id, "contact", URBAN, note="Called")
    await act(api, case_id, "reply", URBAN, outcome="resolved", text="Volume turned down",
              evidence=["https://evidence.test/a.jpg"])  # fmt: skip

    async def replied() -> bool:
        status = await pool.fetchval("SELECT status FROM cases WHERE case_id = $1", case_id)
        return status == "replied"

    await eventually(replied)
    return case_id, fields["citizen"]["phone"]


def test_rating_answers_and_phone_forms() -> None:
    assert parse_rating("1") is Rating.SATISFIED
    assert parse_rating(" １。") is Rating.SATISFIED  # full-width digit, trailing stop
    assert parse_rating("基本满意") is Rating.BASICALLY_SATISFIED
    assert parse_rating("3") is Rating.UNSATISFIED
    assert parse_rating("不满意！") is Rating.UNSATISFIED
    assert parse_rating("13 路灯坏了") is None
    assert "13800001234" in phone_forms("+86 138-0000-1234")
    assert "1 满意 2 基本满意 3 不满意" == RATING_PROMPT


def test_the_trailing_stops_are_found_once() -> None:
    """An answer's trailing spaces and stops are looked for from the run's first character
    only: tried from each, a run followed by text cost n² steps (an SMS of 1,999 "…", 5,997
    dots after NFKC: 0.12 s of CPU on the event loop)."""
    assert run_tried_once(sms_channel._TRAILING)
    assert parse_rating("…" * 1999 + "x") is None
    assert parse_rating("满意" + "…" * 1999) is Rating.SATISFIED


def test_the_trailing_stops_are_those_found_before() -> None:
    """The same text for every string of up to six of ' 。!1' and a newline as before."""
    before = re.compile(r"[\s。.!！,，]+$")
    for length in range(7):
        for chars in itertools.product(" 。!1\n", repeat=length):
            text = "".join(chars)
            assert sms_channel._TRAILING.sub("", text) == before.sub("", text), repr(text)


async def test_outbox_delivers_citizen_sms_through_the_gateway(
    api: httpx.AsyncClient, pool: asyncpg.Pool, client: Client
) -> None:
    case_id, phone = await replied_case(api, pool)
    try:
        gateway = LogSmsGateway(pool, SMS_SECRET.encode())
        dispatcher = OutboxDispatcher(pool, sender_from_env({}, sms=gateway), batch=500)

        async def reply_texted() -> Any:
            await dispatcher.run_once()
            return await pool.fetchrow(
                "SELECT s.phone, s.text FROM sms_log s JOIN notifications n ON n.key = s.key"
                " WHERE n.case_id = $1 AND n.event_kind = 'replied' AND n.status = 'sent'",
                case_id,
            )

        row = await eventually(reply_texted, within=30)
        assert row["phone"] == phone
        assert RATING_PROMPT in row["text"] and "Volume turned down" in row["text"]
        # the notice's key is the message's key: sending it again is still one message
        key = await pool.fetchval(
            "SELECT key FROM notifications WHERE case_id = $1 AND event_kind = 'replied'", case_id
        )
        await pool.execute("UPDATE notifications SET status = 'pending' WHERE key = $1", key)
        await eventually(reply_texted, within=30)
        assert await pool.fetchval("SELECT count(*) FROM sms_log WHERE key = $1", key) == 1
    finally:
        await finish(client, case_id)


async def test_an_sms_answering_the_prompt_rates_the_case_once(
    api: httpx.AsyncClient, pool: asyncpg.Pool, client: Client
) -> None:
    case_id, phone = await replied_case(api, pool)
    try:
        message = sms("+86" + phone, "1")
        before = await intake_count(pool)
        first = await deliver(api, message)
        assert first.status_code == 200, first.text
        assert first.json() | {"applied": True} == {
            "message_id": message["message_id"], "outcome": "rating", "case_id": case_id,
            "applied": True, "merged": False,
        }  # fmt: skip
        state = await handle_of(client, case_id).query(ComplaintWorkflow.state)
        assert state.rating is Rating.SATISFIED and state.status.value == "closed"
        # the gateway retries the same message: the same answer, no second rating, no case "1"
        again = await deliver(api, message)
        assert again.status_code == 200, again.text
        assert again.json()["outcome"] == "rating" and again.json()["case_id"] == case_id
        state = await handle_of(client, case_id).query(ComplaintWorkflow.state)
        rated = [e for e in state.events if e.kind is EventKind.RATED]
        assert len(rated) == 1, rated
        assert await intake_count(pool) == before
    finally:
        await finish(client, case_id)


async def test_an_sms_becomes_a_case_once(
    api: httpx.AsyncClient, pool: asyncpg.Pool, client: Client, settings: Settings
) -> None:
    phone = "137" + uuid.uuid4().int.__str__()[:8]
    message = sms(phone, "松林路的路灯坏了三天了，晚上很黑")
    before = await intake_count(pool)
    first = await deliver(api, message)
    assert first.status_code == 200, first.text
    case_id = first.json()["case_id"]
    try:
        assert first.json()["outcome"] == "case"
        again = await deliver(api, message)
        assert again.status_code == 200, again.text
        assert again.json()["case_id"] == case_id
        assert await intake_count(pool) == before + 1
        payload = await pool.fetchval(
            "SELECT payload -> 'intake' FROM intakes WHERE case_id = $1", case_id
        )
        assert payload["channel"] == "sms"
        assert payload["citizen"]["phone"] == phone
        assert payload["description"] == message["text"]
        # no category, no place: the centre's dispatch queue classifies it
        assert (payload["category_id"], payload["grid_id"]) == ("unclassified", "unlocated")
        # the citizen is texted the case number and the follow-up link through the gateway
        dispatcher = OutboxDispatcher(
            pool, sender_from_env({}, sms=LogSmsGateway(pool, b"")), batch=500,
            render=FollowUpLinks(pool, settings),
        )  # fmt: skip

        async def texted() -> Any:
            await dispatcher.run_once()
            return await pool.fetchval(
                "SELECT s.text FROM sms_log s JOIN notifications n ON n.key = s.key"
                " WHERE n.case_id = $1 AND s.phone = $2", case_id, phone,
            )  # fmt: skip

        text = await eventually(texted, within=30)
        assert case_id in text and "/my/" in text
        await eventually(lambda: _status(client, case_id, "dispatching"))
        # "1" from a phone with no case waiting for a rating is a report, not a rating
        one = await deliver(api, sms("135" + uuid.uuid4().int.__str__()[:8], "1"))
        assert one.status_code == 200 and one.json()["outcome"] == "case", one.text
        await finish(client, one.json()["case_id"])
    finally:
        await finish(client, case_id)


async def _status(client: Client, case_id: str, status: str) -> bool:
    state = await handle_of(client, case_id).query(ComplaintWorkflow.state)
    return state.status.value == status


async def test_unsigned_badly_signed_and_replayed_requests_change_nothing(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    message = sms("13912345678", "噪音扰民")
    before = await intake_count(pool)
    body, headers = signed(message)
    unsigned = await api.post(INBOUND, content=body, headers={"Content-Type": "application/json"})
    error_of(unsigned, 401, "bad_signature")
    error_of(await deliver(api, message, secret="not-the-secret"), 401, "bad_signature")
    tampered = body.replace("噪音".encode(), "路灯".encode())
    error_of(await api.post(INBOUND, content=tampered, headers=headers), 401, "bad_signature")
    old = await deliver(api, message, at=time.time() - 3600)  # captured an hour ago, replayed
    error_of(old, 401, "bad_signature")
    future = await deliver(api, message, at=time.time() + 3600)
    error_of(future, 401, "bad_signature")
    not_sms = error_of(await deliver(api, {"message_id": "x"}), 422, "invalid_sms")["message"]
    assert "from: Field required" in not_sms and "pydantic.dev" not in not_sms, not_sms
    assert await intake_count(pool) == before
    assert await pool.fetchval(
        "SELECT count(*) FROM sms_inbound WHERE message_id = $1", message["message_id"]
    ) == 0


async def test_a_message_id_with_spaces_or_other_than_printable_ascii_is_refused(
    api: httpx.AsyncClient, pool: asyncpg.Pool, client: Client
) -> None:
    """The message id was a Line (spaces, tabs, U+00A0 allowed) while the intake strips the
    Idempotency-Key built from it: ids "gw-X" and "gw-X " were two messages but one key, and
    the second citizen's report was lost (422 idempotency_key_reused). Such ids are now
    refused as invalid before anything is written; the gateway's own ids are plain tokens."""
    mid = f"gw-{uuid.uuid4().hex}"
    first = await deliver(api, {"message_id": mid, "from": "13800005678", "text": "幸福路路灯坏了"})
    assert first.status_code == 200, first.text
    try:
        before = await intake_count(pool)
        for bad in (mid + " ", " " + mid, mid + "\t", mid + "\u00a0", "gw X", "", "x" * 201):
            refused = await deliver(
                api, {"message_id": bad, "from": "13900006789", "text": "和平街井盖丢了"}
            )
            error_of(refused, 422, "invalid_sms")
            assert await pool.fetchval(
                "SELECT count(*) FROM sms_inbound WHERE message_id = $1", bad) == 0  # fmt: skip
        assert await intake_count(pool) == before
        mid200 = (f"gw~{uuid.uuid4().hex}!" * 6)[:200]
        longest = await deliver(
            api, {"message_id": mid200, "from": "13900006789", "text": "和平街井盖丢了"}
        )
        assert longest.status_code == 200, longest.text  # 200 printable characters: taken
        await finish(client, longest.json()["case_id"])
    finally:
        await finish(client, first.json()["case_id"])


async def test_an_sms_a_reader_sees_nothing_of_is_refused_and_files_nothing(
    api: httpx.AsyncClient, pool: asyncpg.Pool, client: Client
) -> None:
    """A text of spaces (U+3000 among them) or invisible formatting (zero-width space, a
    direction mark) says nothing. It was filed as a case "短信：" of nothing into the centre's
    dispatch queue, where a mail without subject or text is refused (550) and an operator's or
    a citizen's blank report is 422 blank_description. Now 422 invalid_sms, nothing written;
    one character a reader sees ("好") is still a case."""
    before = await intake_count(pool)
    for blank in (" ", "   \n\t", "\u3000\u3000", "\u200b", "\u202e\u200b\u200f"):
        message = sms("136" + str(uuid.uuid4().int)[:8], blank)
        refused = await deliver(api, message)
        assert "no visible text" in error_of(refused, 422, "invalid_sms")["message"], blank
        assert await pool.fetchval(
            "SELECT count(*) FROM sms_inbound WHERE message_id = $1", message["message_id"]
        ) == 0
    assert await intake_count(pool) == before
    one = await deliver(api, sms("136" + str(uuid.uuid4().int)[:8], " 好 "))
    assert one.status_code == 200 and one.json()["outcome"] == "case", one.text
    await finish(client, one.json()["case_id"])
