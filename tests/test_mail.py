"""Inbound e-mail (jiesu/channels/mail.py): a real SMTP client (smtplib) talks to the aiosmtpd
listener running in the test session; the automatic reply is read from the log mailer's
table. A mail becomes a case with its attachments as evidence; the same mail twice is one case
and one reply; bounces, automatic replies, oversized, malformed and misaddressed mail get their
SMTP answers and file nothing; no address or subject reaches the logs."""

from __future__ import annotations

import asyncio
import logging
import smtplib
import threading
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator
from email.message import EmailMessage
from email.utils import make_msgid
from types import SimpleNamespace

import asyncpg
import httpx
import pytest
from helpers import OPERATOR, department, eventually
from temporalio.client import Client
from test_api import error_of, finish
from test_outbox import RecordingSender

from jiesu.channels.mail import TooLarge, parse
from jiesu.channels.mail import intake as mail_intake
from jiesu.channels.mail_listener import handler_for, listening
from jiesu.config import Settings
from jiesu.notify.mail import LogMailer, OutboundMail
from jiesu.notify.outbox import OutboundNotice, OutboxDispatcher, SmtpSender

COMPLAINTS = "12345@qinghe.test"
MAX_BYTES = 64 * 1024


@pytest.fixture(scope="module")
async def smtp_port(
    settings: Settings, client: Client, pool: asyncpg.Pool
) -> AsyncIterator[int]:
    mine = settings.model_copy(update={"mail_address": COMPLAINTS, "mail_max_bytes": MAX_BYTES})
    handler = handler_for(pool, client, mine, LogMailer(pool))
    async with listening(handler, mine, "127.0.0.1", 0) as server:
        yield server.sockets[0].getsockname()[1]


SUBJECT, TEXT = "小区门口的路灯坏了", "幸福路12号门口的路灯一周没亮。"


def mail(sender: str, subject: str = SUBJECT, text: str = TEXT, **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"张伟 <{sender}>"
    msg["To"] = COMPLAINTS
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="citizen.test")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(text)
    return msg


def _send(port: int, envelope_from: str, rcpt: str, data: bytes) -> tuple[int, int, bytes]:
    """One SMTP conversation: (RCPT's code, DATA's code, DATA's answer); DATA is skipped (0)
    when RCPT is refused."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.ehlo("mx.citizen.test")
        smtp.mail(envelope_from)
        code, _ = smtp.rcpt(rcpt)
        if code != 250:
            return code, 0, b""
        try:
            data_code, answer = smtp.data(data)
        except smtplib.SMTPDataError as err:
            data_code, answer = err.smtp_code, err.smtp_error
        return code, data_code, answer


async def send(port: int, msg: EmailMessage | bytes, *, envelope_from: str | None = None,
               rcpt: str = COMPLAINTS) -> tuple[int, int, str]:  # fmt: skip
    # (smtplib sends bytes as they are: lines must end in CRLF already)
    data = msg if isinstance(msg, bytes) else msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
    sender = envelope_from if envelope_from is not None else "citizen@citizen.test"
    rcpt_code, code, answer = await asyncio.to_thread(_send, port, sender, rcpt, data)
    return rcpt_code, code, answer.decode()


def address() -> str:
    return f"zhang.{uuid.uuid4().hex[:10]}@citizen.test"


async def intakes(pool: asyncpg.Pool) -> int:
    return await pool.fetchval("SELECT count(*) FROM intakes")


async def test_a_mail_becomes_a_case_with_its_attachments_and_a_reply(
    smtp_port: int, pool: asyncpg.Pool, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    sender = address()
    msg = mail(sender)
    photo = b"\x89PNG\r\n\x1a\n" + uuid.uuid4().bytes * 100
    msg.add_attachment(photo, maintype="image", subtype="png", filename="路灯.png")
    before = await intakes(pool)
    _, code, answer = await send(smtp_port, msg)
    assert code == 250, answer
    case_id = answer.rsplit(" ", 1)[1]
    try:
        assert case_id.startswith("JS")
        payload = await pool.fetchval(
            "SELECT payload -> 'intake' FROM intakes WHERE case_id = $1", case_id
        )
        assert payload["channel"] == "email" and payload["title"] == "小区门口的路灯坏了"
        assert payload["description"] == "幸福路12号门口的路灯一周没亮。"
        assert payload["citizen"] == {
            "name": "张伟", "phone": None, "email": sender, "credit_code": None,
            "anonymous_to_department": False,
        }
        stored = await pool.fetch(
            "SELECT filename, content_type, content FROM attachments WHERE case_id = $1", case_id
        )
        assert [(r["filename"], r["content_type"], r["content"]) for r in stored] == [
            ("路灯.png", "image/png", photo)
        ]
        # the reply below carries the link: no intake SMS (there is no phone to send it to)
        assert await pool.fetchval(
            "SELECT count(*) FROM notifications WHERE case_id = $1 AND key LIKE '%:follow-up'",
            case_id,
        ) == 0
        reply = await pool.fetchrow("SELECT * FROM mail_log WHERE to_address = $1", sender)
        assert case_id in reply["subject"] and case_id in reply["body"]
        assert "/my/" in reply["body"] and reply["in_reply_to"] == msg["Message-ID"]
        # the sending server delivers it again (no answer seen): the same case, once
        _, again, answer_again = await send(smtp_port, msg)
        assert again == 250 and answer_again == answer
        assert await intakes(pool) == before + 1
        assert await pool.fetchval(
            "SELECT count(*) FROM attachments WHERE case_id = $1", case_id) == 1  # fmt: skip
        assert await pool.fetchval(
            "SELECT count(*) FROM mail_log WHERE to_address = $1", sender) == 1  # fmt: skip
        logged = "\n".join(r.getMessage() for r in caplog.records)
        assert case_id in logged  # the listener did log the mail...
        assert sender not in logged and "路灯" not in logged  # ...but no address or subject
    finally:
        await finish(client, case_id)


@pytest.mark.parametrize(
    ("envelope_from", "headers"),
    [
        pytest.param("", {}, id="bounce-null-sender"),
        pytest.param(None, {"Auto_Submitted": "auto-replied"}, id="auto-submitted"),
        pytest.param(None, {"Precedence": "bulk"}, id="precedence-bulk"),
        pytest.param(None, {"X_Autoreply": "yes"}, id="x-autoreply"),
        pytest.param("MAILER-DAEMON@mx.citizen.test", {}, id="mailer-daemon"),
        pytest.param("postmaster@citizen.test", {}, id="postmaster"),
    ],
)
async def test_bounces_and_automatic_replies_are_dropped(
    smtp_port: int, pool: asyncpg.Pool, envelope_from: str | None, headers: dict[str, str]
) -> None:
    sender = address()
    before = await intakes(pool)
    _, code, answer = await send(smtp_port, mail(sender, **headers), envelope_from=envelope_from)
    assert (code, answer) == (250, "2.0.0 OK: automatic mail, dropped")
    assert await intakes(pool) == before
    assert await pool.fetchval("SELECT count(*) FROM mail_log WHERE to_address = $1", sender) == 0


async def test_oversized_malformed_and_misaddressed_mail_is_refused(
    smtp_port: int, pool: asyncpg.Pool
) -> None:
    before = await intakes(pool)
    big = mail(address(), text="很长的来信。" * (MAX_BYTES // 6))
    _, code, answer = await send(smtp_port, big)
    assert code == 552, answer
    no_sender = mail(address())
    del no_sender["From"]
    _, code, answer = await send(smtp_port, no_sender)
    assert (code, answer) == (550, "5.6.0 the mail has no sender address (From)")
    empty = mail(address(), subject="", text="")
    _, code, answer = await send(smtp_port, empty)
    assert (code, answer) == (550, "5.6.0 the mail has neither a subject nor a text")
    rcpt_code, code, _ = await send(smtp_port, mail(address()), rcpt="someone@qinghe.test")
    assert (rcpt_code, code) == (550, 0)
    assert await intakes(pool) == before


async def test_another_mail_under_a_known_message_id_is_refused(
    smtp_port: int, pool: asyncpg.Pool, client: Client
) -> None:
    first = mail(address())
    _, code, answer = await send(smtp_port, first)
    assert code == 250, answer
    case_id = answer.rsplit(" ", 1)[1]
    try:
        other = mail(address(), text="另一封信")
        other.replace_header("Message-ID", first["Message-ID"])
        before = await intakes(pool)
        _, code, answer = await send(smtp_port, other)
        assert code == 550 and case_id not in answer, answer
        assert await intakes(pool) == before
    finally:
        await finish(client, case_id)


async def test_the_outbox_writes_to_a_citizen_who_came_by_e_mail(
    smtp_port: int, pool: asyncpg.Pool, client: Client
) -> None:
    """A citizen without a phone gets the citizen notices (channel sms) by e-mail instead,
    and the outbox records them as the e-mails they were (the row said ``sms`` before)."""
    sender = address()
    _, code, answer = await send(smtp_port, mail(sender))
    assert code == 250, answer
    case_id = answer.rsplit(" ", 1)[1]
    key = f"{case_id}:999:citizen:{case_id}"
    try:
        await pool.execute(
            "INSERT INTO notifications (key, case_id, event_seq, event_kind, recipient_kind,"
            " recipient_id, channel, subject, body)"
            " VALUES ($1, $2, 999, 'replied', 'citizen', $2, 'sms', 's', 'b')",
            key, case_id,
        )  # fmt: skip
        sender_ = RecordingSender()
        dispatcher = OutboxDispatcher(pool, sender_, batch=100_000)

        async def delivered() -> list[OutboundNotice]:
            await dispatcher.run_once()
            return [n for n in sender_.sent if n.key == key]

        [notice] = await eventually(delivered, within=30)
        assert (notice.channel, notice.address) == ("email", sender)
        assert await pool.fetchval(
            "SELECT channel FROM notifications WHERE key = $1", key) == "email"  # fmt: skip
    finally:
        await finish(client, case_id)


async def test_staff_read_a_mailed_case_s_attachments(
    smtp_port: int, pool: asyncpg.Pool, client: Client, api: httpx.AsyncClient
) -> None:
    msg = mail(address())
    report = "检测报告".encode() * 50
    msg.add_attachment(report, maintype="application", subtype="pdf", filename="report.pdf")
    _, code, answer = await send(smtp_port, msg)
    assert code == 250, answer
    case_id = answer.rsplit(" ", 1)[1]
    url = f"/api/v1/complaints/{case_id}/attachments"
    try:
        listed = await api.get(url, headers=OPERATOR)
        assert listed.status_code == 200, listed.text
        [info] = listed.json()
        assert (info["filename"], info["content_type"], info["size"]) == (
            "report.pdf", "application/pdf", len(report)
        )
        got = await api.get(f"{url}/{info['id']}", headers=OPERATOR)
        assert got.status_code == 200 and got.content == report
        assert got.headers["content-type"] == "application/octet-stream"
        assert got.headers["content-disposition"].startswith("attachment;")
        # a department that does not handle the case: no such case, no such file
        error_of(await api.get(url, headers=department("water")), 404, "case_not_found")
        error_of(await api.get(f"{url}/{info['id']}", headers=department("water")), 404,
                 "case_not_found")  # fmt: skip
        error_of(await api.get(f"{url}/{info['id'] + 10**9}", headers=OPERATOR), 404,
                 "attachment_not_found")  # fmt: skip
        error_of(await api.get(url), 401, "unauthenticated")
    finally:
        await finish(client, case_id)


async def test_an_attachment_s_name_cannot_disguise_the_file(
    smtp_port: int, pool: asyncpg.Pool, client: Client, api: httpx.AsyncClient
) -> None:
    """A sender's file name is listed and offered for download without what would disguise
    the file: a right-to-left override ("invoice\u202efdp.exe" shows as "invoiceexe.pdf"), a
    zero-width character, a directory. Before, both went out as mailed, and the download's
    Content-Disposition carried %E2%80%AE. A row stored before is cleaned as it is served."""
    msg = mail(address())
    msg.add_attachment(b"MZ", maintype="application", subtype="octet-stream",
                       filename="invoice\u202efdp.exe")  # fmt: skip
    msg.add_attachment(b"root", maintype="text", subtype="plain",
                       filename="../../etc/pass\u200bwd")  # fmt: skip
    _, code, answer = await send(smtp_port, msg)
    assert code == 250, answer
    case_id = answer.rsplit(" ", 1)[1]
    url = f"/api/v1/complaints/{case_id}/attachments"
    try:
        stored = await pool.fetch(
            "SELECT filename FROM attachments WHERE case_id = $1 ORDER BY id", case_id
        )
        assert [r["filename"] for r in stored] == ["invoicefdp.exe", "_.._etc_passwd"]
        await pool.execute(  # as stored before the names were cleaned
            "INSERT INTO attachments (case_id, source, filename, content_type, size, sha256,"
            " content) VALUES ($1, 'email:old-' || $1, 'photo\u202egnp.html', 'text/html', 1,"
            " 'x', 'x')",
            case_id,
        )  # fmt: skip
        listed = await api.get(url, headers=OPERATOR)
        assert listed.status_code == 200, listed.text
        names = [a["filename"] for a in listed.json()]
        assert names == ["invoicefdp.exe", "_.._etc_passwd", "photognp.html"]
        for info in listed.json():
            got = await api.get(f"{url}/{info['id']}", headers=OPERATOR)
            assert got.status_code == 200, got.text
            disposition = got.headers["content-disposition"]
            assert "%E2%80%AE" not in disposition and "%E2%80%8B" not in disposition
            assert "/" not in disposition.split("''", 1)[1], disposition
            assert got.headers["content-type"] == "application/octet-stream"
    finally:
        await finish(client, case_id)


@pytest.fixture(scope="module")
async def default_sized_smtp_port(
    settings: Settings, client: Client, pool: asyncpg.Pool
) -> AsyncIterator[int]:
    """The listener with the default JIESU_MAIL_MAX_BYTES (10 MiB)."""
    mine = settings.model_copy(update={"mail_address": COMPLAINTS})
    assert mine.mail_max_bytes == 10 * 1024 * 1024
    handler = handler_for(pool, client, mine, LogMailer(pool))
    async with listening(handler, mine, "127.0.0.1", 0) as server:
        yield server.sockets[0].getsockname()[1]


async def test_one_hostile_mail_under_the_size_limit_does_not_stall_the_listener(
    default_sized_smtp_port: int, pool: asyncpg.Pool, client: Client
) -> None:
    """Without the part cap and the parse in a thread, 5.4 MB (under the 10 MiB limit) of
    40,000 four-byte attachments held the listener's event loop ~12 s and wrote 40,000 rows:
    meanwhile every other sending server (other citizens' mails) got no greeting. Now: 552,
    nothing filed, and the others are answered at once."""
    sender = address()
    parts = [
        f"From: <{sender}>\r\nTo: {COMPLAINTS}\r\nSubject: many files\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@citizen.test>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=XX\r\n\r\n"
        "--XX\r\nContent-Type: text/plain\r\n\r\nsee the files\r\n"
    ]
    parts += [
        f"--XX\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment;"
        f" filename=f{i}\r\nContent-Transfer-Encoding: base64\r\n\r\nQQ==\r\n"
        for i in range(40_000)
    ]
    raw = ("".join(parts) + "--XX--\r\n").encode()
    assert len(raw) < 10 * 1024 * 1024
    waits: list[float] = []  # another sending server, polling from its own thread
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            start = time.monotonic()
            with smtplib.SMTP("127.0.0.1", default_sized_smtp_port, timeout=300) as smtp:
                smtp.noop()
            waits.append(time.monotonic() - start)
            time.sleep(0.2)

    before = await intakes(pool)
    poller = threading.Thread(target=poll)
    poller.start()
    try:
        _, code, answer = await send(default_sized_smtp_port, raw)
    finally:
        stop.set()
        await asyncio.to_thread(poller.join)
    if code == 250 and "case" in answer:
        await finish(client, answer.rsplit(" ", 1)[1])
    assert (code, answer) == (552, "5.3.4 the mail has more than 50 parts (attachments)")
    assert await intakes(pool) == before
    assert max(waits) < 3, f"another sender waited {max(waits):.1f} s for a greeting"


def test_a_long_encoded_subject_does_not_take_gigabytes() -> None:
    """A 109 KiB Subject of RFC 2047 encoded words (a 10 MiB mail may carry 90 times more):
    the standard header parser's memory is quadratic in its length (546 KiB took 11 GB and
    18 s on the listener's loop, every other mail waiting). Refused before parsing now."""
    raw = b"From: a@citizen.test\r\nSubject: " + b"=?utf-8?q?a?= " * 8000 + b"\r\n\r\nbody\r\n"
    assert len(raw) < 120 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(TooLarge):
            parse(raw, "a@citizen.test")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024 * 1024, f"parse() of a 117 KB mail peaked at {peak >> 20} MiB"
    # one long header in a small header block, and in a part's headers: refused as well
    long_one = b"From: a@citizen.test\r\nSubject: " + b"=?utf-8?q?a?= " * 700 + b"\r\n\r\nb\r\n"
    with pytest.raises(TooLarge, match="header"):
        parse(long_one, "a@citizen.test")
    in_part = (
        b"From: a@citizen.test\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain;"
        b" name=\"" + b"=?utf-8?q?a?= " * 700 + b"\"\r\n\r\ntext\r\n--XX--\r\n"
    )
    with pytest.raises(TooLarge, match="header"):
        parse(in_part, "a@citizen.test")


async def test_an_attachment_postgresql_would_refuse_does_not_make_a_filed_mail_451(
    smtp_port: int, pool: asyncpg.Pool, client: Client
) -> None:
    """A NUL in an attachment's Content-Type: the case was filed, then the attachment INSERT
    failed and the mail was answered 451: the sender retried for days (replaying it each
    time) and finally bounced a report that *was* filed; no automatic reply ever went out.
    Now the type is stored as application/octet-stream and the file name as one clean line."""
    sender = address()
    raw = (
        f"From: <{sender}>\r\nTo: {COMPLAINTS}\r\nSubject: road lamp broken\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@citizen.test>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=XX\r\n\r\n"
        "--XX\r\nContent-Type: text/plain\r\n\r\nThe lamp at No. 12 is out.\r\n"
        "--XX\r\nContent-Type: application/x\x00y\r\n"
        "Content-Disposition: attachment; filename=a.bin\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n"
        "--XX\r\nContent-Type: image/png\r\n"
        "Content-Disposition: attachment; filename*=utf-8''%E8%B7%AF%00%09%0A%E7%81%AF.png\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\naGVsbG8h\r\n--XX--\r\n"
    ).encode()
    _, code, answer = await send(smtp_port, raw)
    assert code == 250, answer
    case_id = answer.rsplit(" ", 1)[1]
    try:
        stored = await pool.fetch(
            "SELECT filename, content_type FROM attachments WHERE case_id = $1 ORDER BY id",
            case_id,
        )
        assert [tuple(r) for r in stored] == [
            ("a.bin", "application/octet-stream"), ("路 灯.png", "image/png")
        ]
        assert await pool.fetchval(
            "SELECT count(*) FROM mail_log WHERE to_address = $1", sender) == 1  # fmt: skip
    finally:
        await finish(client, case_id)


@pytest.mark.parametrize(
    "sender",
    [
        pytest.param("zhang.{}@localhost", id="no-dot-in-domain"),
        pytest.param("zhang.{}@" + "a" * 250 + ".test", id="over-254-characters"),
        # one quoted local part that is several to a To header: the outbox sends to none
        pytest.param('"zhang,{}"@163.com', id="several-to-the-outbox"),
    ],
)
async def test_a_sender_address_the_intake_refuses_is_a_550_not_a_451_forever(
    smtp_port: int, pool: asyncpg.Pool, sender: str
) -> None:
    """An intranet sender (no dot in the domain) or an over-long address passes parse() but
    not Citizen.email: the ValidationError was taken for 'Temporal away' and answered 451 on
    every retry, for days, until the sending server bounced it — the citizen never learned
    why. Now 550 5.6.0 at once, nothing filed. So too a quoted local part holding a comma
    ('"zhang,li"@163.com', one mailbox to parse() but several to the outbox's To header, which
    sends to none of them): it was filed, and the citizen never told by e-mail — now refused
    as intake's new input (domain.INPUT)."""
    sender = sender.format(uuid.uuid4().hex[:8])
    before = await intakes(pool)
    for _ in range(2):  # the sending server's retry gets the same answer
        _, code, answer = await send(smtp_port, mail(sender))
        assert (code, answer) == (
            550, "5.6.0 the mail cannot be registered: the sender address is not accepted"
        )
    assert await intakes(pool) == before


async def test_a_notice_jiesu_itself_mailed_is_not_filed_as_a_new_case(
    smtp_port: int, pool: asyncpg.Pool, client: Client
) -> None:
    """A mail From: the complaints address was filed (the citizen being ourselves); the outbox
    then e-mailed that case's notices to the complaints address, without Auto-Submitted, and
    each notice was filed as yet another case: a loop growing with every staff action, the
    centre's queue filling with cases nobody reported. The notice now says Auto-Submitted and
    the listener drops mail from our own addresses or carrying X-Jiesu-Notice."""
    notice = OutboundNotice(
        key=f"JS-x:{uuid.uuid4().hex}:citizen", case_id="JS-x", event_seq=5,
        event_kind="replied", recipient_kind="citizen", recipient_id="JS-x", channel="sms",
        subject="您反映的问题已答复", body="您的诉求已答复，请回复 1 满意 2 基本满意 3 不满意",
        id=1, attempts=0, address=COMPLAINTS,
    )  # fmt: skip
    msg = SmtpSender("unused", 25, COMPLAINTS).message(notice)
    assert msg["Auto-Submitted"] == "auto-generated"
    before = await intakes(pool)
    answers = [(await send(smtp_port, msg, envelope_from=COMPLAINTS))[1:]]
    del msg["Auto-Submitted"]  # an older notice, or one a relay rewrote: still ours
    answers.append((await send(smtp_port, msg))[1:])
    ours = mail(address())  # a plain mail whose From is the complaints address
    ours.replace_header("From", f"热线 <{COMPLAINTS.upper()}>")
    answers.append((await send(smtp_port, ours))[1:])
    try:
        assert answers == [(250, "2.0.0 OK: automatic mail, dropped")] * 3, answers
        assert await intakes(pool) == before
    finally:
        for _, answer in answers:
            if "case" in answer:
                await finish(client, answer.rsplit(" ", 1)[1])


def envelope(raw: bytes, mail_from: str = "citizen@citizen.test") -> SimpleNamespace:
    """What aiosmtpd hands handle_DATA for one delivery of ``raw``."""
    return SimpleNamespace(mail_from=mail_from, original_content=raw, content=raw)


async def test_mail_from_the_outbox_sender_address_is_dropped(
    settings: Settings, client: Client, pool: asyncpg.Pool
) -> None:
    """JIESU_SMTP_FROM (the outbox's From) is ours as well: a notice bounced or forwarded
    back to the complaints address under it is not a citizen's report."""
    mine = settings.model_copy(
        update={"mail_address": COMPLAINTS, "smtp_from": "notices@qinghe.test"}
    )
    handler = handler_for(pool, client, mine, LogMailer(pool))
    delivery = envelope(mail("Notices@qinghe.test").as_bytes(), "relay@qinghe.test")
    before = await intakes(pool)
    assert await handler.handle_DATA(None, None, delivery) == (
        "250 2.0.0 OK: automatic mail, dropped"
    )
    assert await intakes(pool) == before


class SlowCountingMailer:
    def __init__(self) -> None:
        self.sent: list[OutboundMail] = []

    async def send(self, mail: OutboundMail) -> None:
        await asyncio.sleep(0.5)
        self.sent.append(mail)


async def test_two_deliveries_of_one_mail_at_once_send_one_reply(
    settings: Settings, client: Client, pool: asyncpg.Pool
) -> None:
    """The sending server retries while the first delivery is still being handled (its own
    timeout): both deliveries read replied_at NULL and both sent the automatic reply — the
    citizen got the same acknowledgement twice. Now the second waits and sends nothing."""
    mine = settings.model_copy(update={"mail_address": COMPLAINTS})
    mailer = SlowCountingMailer()
    handler = handler_for(pool, client, mine, mailer)
    delivery = envelope(mail(address()).as_bytes())

    answers = await asyncio.gather(*(handler.handle_DATA(None, None, delivery) for _ in "ab"))
    case_id = answers[0].rsplit(" ", 1)[1]
    try:
        assert answers[0] == answers[1], answers
        assert len(mailer.sent) == 1, [m.key for m in mailer.sent]
        # a later delivery still sends nothing more
        assert await handler.handle_DATA(None, None, delivery) == answers[0]
        assert len(mailer.sent) == 1
    finally:
        await finish(client, case_id)


async def test_a_reply_that_failed_goes_out_with_the_next_delivery(
    settings: Settings, client: Client, pool: asyncpg.Pool
) -> None:
    """The reply is recorded only once sent: a failed send (or a crash before it) does not
    mark it sent, so the citizen is not left without the case number when the mail comes
    again."""
    mine = settings.model_copy(update={"mail_address": COMPLAINTS})
    mailer = SlowCountingMailer()
    handler = handler_for(pool, client, mine, mailer)
    delivery = envelope(mail(address()).as_bytes())

    class Down:
        async def send(self, mail: OutboundMail) -> None:
            raise ConnectionRefusedError

    handler.mailer = Down()
    first = await handler.handle_DATA(None, None, delivery)
    case_id = first.rsplit(" ", 1)[1]
    try:
        handler.mailer = mailer
        assert await handler.handle_DATA(None, None, delivery) == first
        assert len(mailer.sent) == 1
    finally:
        await finish(client, case_id)


@pytest.mark.parametrize(
    "message_id",
    [
        pytest.param("<a\x00b.{}@citizen.test>", id="nul"),
        pytest.param("<a\x7fb.{}@citizen.test>", id="del"),
        pytest.param("<{}" + "a" * 300 + "@citizen.test>", id="over-250-characters"),
    ],
)
async def test_a_filed_mail_gets_its_automatic_reply_whatever_its_message_id(
    smtp_port: int, pool: asyncpg.Pool, client: Client, message_id: str
) -> None:
    """A NUL in the Message-ID: the case was filed, but the reply (In-Reply-To it) could be
    neither stored nor sent: the citizen never learned the case number or the follow-up
    link. Such a Message-ID is now left out of the reply (only the threading is lost)."""
    sender = address()
    raw = (
        f"From: <{sender}>\r\nTo: {COMPLAINTS}\r\nSubject: road lamp broken\r\n"
        f"Message-ID: {message_id.format(uuid.uuid4().hex)}\r\n\r\nThe lamp at No. 12 is out.\r\n"
    ).encode()
    _, code, answer = await send(smtp_port, raw)
    assert code == 250, answer
    case_id = answer.rsplit(" ", 1)[1]
    try:
        [reply] = await pool.fetch("SELECT * FROM mail_log WHERE to_address = $1", sender)
        assert case_id in reply["body"] and reply["in_reply_to"] is None
    finally:
        await finish(client, case_id)


@pytest.mark.parametrize("subject", ["", "   ", "\u3000\u200b"])
def test_a_blank_subject_makes_a_title_a_reader_sees(settings: Settings, subject: str) -> None:
    """Intake refuses a title a reader cannot see; a mail's blank subject is no reason to
    lose the mail: its title is its text's first line, or 来信： before what there is."""
    raw = bytes(mail("ming@citizen.test", subject=subject, text="\u200b\u200b"))
    report = mail_intake(parse(raw, "ming@citizen.test"), settings)
    assert report.title.startswith("来信：")
    assert report.description.startswith("来信：")
    raw = bytes(mail("ming@citizen.test", subject=subject, text="楼下烧烤店\n油烟很大"))
    assert mail_intake(parse(raw, "ming@citizen.test"), settings).title == "楼下烧烤店"
