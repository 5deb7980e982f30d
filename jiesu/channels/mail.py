"""Inbound e-mail (来信): a mail to the complaints address becomes a case.

An ``aiosmtpd`` handler (:class:`ComplaintMailHandler`; the process is
jiesu/channels/mail_listener.py). What each mail gets, as the sending server sees it:

- ``RCPT TO`` another address than JIESU_MAIL_ADDRESS: ``550 5.1.1`` (we relay nothing);
- bigger than JIESU_MAIL_MAX_BYTES: ``552`` (aiosmtpd's size limit, also announced in EHLO);
- a bounce or an automatic reply (null sender ``MAIL FROM:<>``, ``Auto-Submitted`` other than
  ``no``, ``Precedence: bulk/junk/list/auto_reply``, ``X-Autoreply``, a delivery report, a
  MAILER-DAEMON or postmaster sender), or
  our own mail (``X-Jiesu-Notice``, ``From`` or ``MAIL FROM`` JIESU_MAIL_ADDRESS or
  JIESU_SMTP_FROM): ``250`` and dropped, with a log line — answering it would start a mail
  loop;
- headers past what we read (the header block over 64 KiB, one header over 8 KiB, a
  Content-*, From or Message-ID header over 4 KiB, a Content-Transfer-Encoding over 256
  characters) or more than 50 MIME parts: ``552 5.3.4``, refused before anything is filed
  (refused rather than cut: the citizen learns from the bounce that files were not taken,
  instead of a case that silently lacks them). Parsing stops at the 51st part and runs in a
  thread, so one mail does not hold up the other connections;
- malformed (no sender address in ``From``, undecodable, nothing to read, a sender address
  the intake refuses, a header the intake parses with more than 200 specials and spaces or
  32 comments — no mail client writes these, and they cost the header parser seconds):
  ``550 5.6.0`` with the reason;
- otherwise the report is filed (channel ``email``; the subject is the title, the text the
  description; the reporter is the ``From`` address, with no phone) through jiesu.intake with
  an Idempotency-Key derived from the ``Message-ID``, attachments are stored in
  ``attachments`` linked to the case (evidence), an automatic reply carries the case number
  and the follow-up link, and the answer is ``250 2.0.0 case <number>``;
- past a bound on mails filed per sender address, sending domain or peer
  (JIESU_MAIL_SENDER_LIMITS, _DOMAIN_LIMITS, _PEER_LIMITS): ``451 4.7.1``, a warning, nothing
  kept (the sending server retries); past the bound on automatic replies
  (JIESU_MAIL_REPLY_LIMITS), or when the trusted relay (JIESU_MAIL_AUTHSERV_ID) found the
  sender forged: filed, not answered, a warning;
- Temporal or PostgreSQL away (or another failure): ``451 4.3.0``, the sending server tries
  again later, and the retry, with the same Message-ID, files the same case once;
- a different mail under a Message-ID already filed: ``550 5.7.0`` (the case is not shown).

Logs name a mail by the first 12 characters of its key (a hash): never an address, a phone
or a subject. aiosmtpd's own INFO log, which prints every command, is turned down.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import unicodedata
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parseaddr
from html.parser import HTMLParser
from typing import Any

import asyncpg
from pydantic import ValidationError
from temporalio.client import Client

from jiesu.access import content
from jiesu.access.clients import address_key
from jiesu.case.domain import (
    INPUT,
    Actor,
    Channel,
    Citizen,
    ComplaintIntake,
    Role,
    visible_length,
)
from jiesu.config import Settings
from jiesu.intake import filing
from jiesu.intake.errors import IdempotencyConflict, IntakeError
from jiesu.notify.links import follow_up_link
from jiesu.notify.mail import Mailer, OutboundMail
from jiesu.rate_limits import NamedLimits

log = logging.getLogger("jiesu.mail")
logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs addresses at INFO

MAIL_ACTOR = Actor(role=Role.CITIZEN, name="citizen by e-mail")
MAIL_CITIZEN_NAME = "邮件用户"
TITLE_MAX, DESCRIPTION_MAX, NAME_MAX = 200, 5000, 100
_AUTOMATIC_PRECEDENCE = {"bulk", "junk", "list", "auto_reply"}
# Mailboxes that only ever send bounces and reports (RFC 5321 4.5.1, RFC 3834 2): a mail from
# one is a bounce whose MAIL FROM was not null.
_SYSTEM_MAILBOXES = {"mailer-daemon", "postmaster"}
_AUTH_RESULT = re.compile(r"(?:^|[;\s])(spf|dkim|dmarc)\s*=\s*([a-z]+)", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# What we parse: the standard library's header parser (policy.default) takes memory and time
# quadratic in a header's length (a 0.5 MB Subject of encoded words: gigabytes, seconds), and
# each MIME part costs a row. Real mail stays far below these.
HEADER_BLOCK_MAX, HEADER_MAX, PARTS_MAX = 64 * 1024, 8 * 1024, 50
_TOO_MANY_PARTS = f"the mail has more than {PARTS_MAX} parts (attachments)"
_LONG_HEADER = f"a header of the mail is longer than {HEADER_MAX // 1024} KiB"
_HEADER_END = re.compile(rb"\r?\n\r?\n")
# The headers whose value reaches the structured header parser (email._header_value_parser):
# those parse() and the standard library's parser, get_body and iter_attachments read, with
# the longest each may be. Real mail stays far below: the longest Chinese filename (255
# characters, RFC 2231 percent-encoded) makes a 2.5 KB Content-Disposition; a Content-Transfer-
# Encoding is a word. Unread headers (To, Cc, References, Received...) are not limited.
STRUCTURED_MAX = {
    "From": 4096, "Message-ID": 4096, "Content-Type": 4096, "Content-Disposition": 4096,
    "Content-Transfer-Encoding": 256,
}  # fmt: skip
_STRUCTURED = {name.lower(): (name, limit) for name, limit in STRUCTURED_MAX.items()}
# The parser's time grows, worse than linearly, with a value's RFC 5322 specials and spaces
# (1,000 '"' in a From: 100 ms; any other character: under 1 ms) and most with comments, which
# it reads recursively (200 nested in 4 KiB: 40 ms, 32: 5 ms). Real values have few: ~80 in
# that filename's 45 folded sections, ~20 as encoded words; a comment or two ("(UTC)", a file
# "报告 (2).pdf").
SEPARATORS_MAX, COMMENTS_MAX = 200, 32
_SEPARATORS = str.maketrans(dict.fromkeys('()<>[]:;@\\,." \t'))
_MANY_SEPARATORS = (
    f"a header of the mail has more than {SEPARATORS_MAX} spaces or punctuation marks"
)
_MANY_COMMENTS = f"a header of the mail has more than {COMMENTS_MAX} comments (parentheses)"
# An attachment's type as stored (attachments.content_type): a plain media type, else
# application/octet-stream (a NUL in it made the INSERT fail after the case was filed: 451).
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}")
CONTENT_TYPE_MAX = 100
MESSAGE_ID_MAX = 250


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    content: bytes


@dataclass(frozen=True)
class Report:
    message_key: str
    message_id: str | None
    address: str
    name: str
    subject: str
    text: str
    attachments: list[Attachment] = field(default_factory=list)
    # Why the mail is filed but not answered (the trusted relay found its sender forged)
    unanswerable: str | None = None


class Dropped(Exception):
    """A mail we take (250) and do not answer: bounces and automatic replies."""


class Malformed(Exception):
    """A mail we refuse (550 5.6.0) with the reason."""


class TooLarge(Malformed):
    """A mail whose headers or parts are past what we read: refused (552 5.3.4)."""


def check_headers(raw: bytes) -> None:
    """Raise TooLarge when the mail's header block, or one (unfolded) header in it, is too
    long: checked on the raw bytes, before any header is parsed."""
    end = _HEADER_END.search(raw, 0, HEADER_BLOCK_MAX + 4)
    if end is None and len(raw) > HEADER_BLOCK_MAX:
        raise TooLarge(f"the mail's headers are longer than {HEADER_BLOCK_MAX // 1024} KiB")
    length = 0
    for line in raw[: end.start() if end else len(raw)].split(b"\n"):
        length = length + len(line) if line[:1] in (b" ", b"\t") else len(line)
        if length > HEADER_MAX:
            raise TooLarge(_LONG_HEADER)


def check_parts(msg: EmailMessage) -> None:
    """Raise TooLarge past PARTS_MAX MIME parts or for a part's header over HEADER_MAX (read
    raw, not parsed). The authority: parse()'s policy and part cap refuse the same mails,
    with the same answer, earlier (the policy also holds the headers it parses to tighter
    shapes: _STRUCTURED)."""
    for n, part in enumerate(msg.walk()):
        if n >= PARTS_MAX:
            raise TooLarge(_TOO_MANY_PARTS)
        if any(len(value) > HEADER_MAX for _, value in part.raw_items()):
            raise TooLarge(_LONG_HEADER)


def separators(value: str) -> int:
    """The RFC 5322 specials and spaces in a raw header value (what the header parser's time
    grows with; line breaks of a folded value are not counted, its indent is)."""
    return len(value) - len(value.translate(_SEPARATORS))


class _Policy(policy.EmailPolicy):
    """policy.default that refuses a header longer than HEADER_MAX as the parser reads it,
    before its value is parsed: check_headers sees only the top-level header block, and a
    part's 196 KB Content-Type took 6 s of CPU and 1.4 GB to parse (the parser itself asks
    for each part's Content-Type) before check_parts refused it.

    header_source_parse only splits the raw lines into name and value (the value's parse is
    header_fetch_parse's, on get()); the parser calls it for every header of every part, in
    walk()'s order, and its value is what raw_items() gives check_parts: the same test, met
    in the same order, so the same mails are refused with the same answer. The headers the
    parser will parse are held to tighter shapes there too (_STRUCTURED), and each value is
    parsed once."""

    parsed: dict[tuple[str, str], Any] | None = None  # set per mail (parse(): clone)

    def header_source_parse(self, sourcelines: list[str]) -> tuple[str, str]:
        """Also refuses a structured header (_STRUCTURED) past its length (TooLarge, as
        HEADER_MAX), or with more specials or comments than any mail client writes
        (Malformed, 550 5.6.0: a shape, not a size), before it is parsed: under HEADER_MAX,
        49 parts whose Content-* headers were 8 KiB of "(c)" took 81 s of CPU. Counted raw
        (in quoted strings too): linear, and generous."""
        name, value = super().header_source_parse(sourcelines)
        if len(value) > HEADER_MAX:
            raise TooLarge(_LONG_HEADER)
        structured = _STRUCTURED.get(name.lower())
        if structured:
            known, limit = structured
            if len(value) > limit:
                raise TooLarge(f"the mail's {known} header is longer than {limit} characters")
            if separators(value) > SEPARATORS_MAX:
                raise Malformed(_MANY_SEPARATORS)
            if value.count("(") > COMMENTS_MAX:
                raise Malformed(_MANY_COMMENTS)
        return name, value

    def header_fetch_parse(self, name: str, value: str) -> Any:
        """Each header value parsed once per mail: every get() parses it again (not cached by
        the standard library), and one part's Content-Type was parsed 7 times (the parser,
        get_body, iter_attachments, _content_type...). The header objects are read-only."""
        if self.parsed is None or hasattr(value, "name"):
            return super().header_fetch_parse(name, value)
        key = (name, value)
        if key not in self.parsed:
            self.parsed[key] = super().header_fetch_parse(name, value)
        return self.parsed[key]


_POLICY = _Policy()


class _PartCap:
    """The parser's message factory (``policy.message_factory``): it stops the parse at the
    part past PARTS_MAX, not after the last one — 40,000 four-byte attachments (5.5 MB, under
    the size limit) took 7 to 9 s of CPU to parse before check_parts refused them, and under
    load the sender's timeout came first.

    The parser calls it once for each part it meets, in walk()'s order, and attaches the part
    at once: it counts what check_parts counts (nested multiparts, message/rfc822), and a mail
    check_parts takes is never refused. No boundary reading of our own: quoted mails, repeated
    delimiters and CR-only line ends stay the parser's business."""

    def __init__(self) -> None:
        self.made = 0

    def __call__(self, policy: policy.EmailPolicy) -> EmailMessage:
        self.made += 1
        if self.made > PARTS_MAX:
            # A long header among the PARTS_MAX parts before, check_parts's answer then, was
            # refused as it was read (_Policy).
            raise TooLarge(_TOO_MANY_PARTS)
        return EmailMessage(policy=policy)


def _message_id(msg: EmailMessage) -> str | None:
    """The Message-ID the automatic reply answers (In-Reply-To, References): none when it is
    not printable ASCII without spaces, or longer than MESSAGE_ID_MAX — a NUL in it made the
    reply unstorable and unsendable, and the citizen never got the case number. Only the
    threading is lost; the mail's key is still the hash of the Message-ID as given."""
    value = (msg.get("Message-ID") or "").strip()
    if not value or len(value) > MESSAGE_ID_MAX or not all("!" <= c <= "~" for c in value):
        return None
    return value


def message_key(msg: EmailMessage, raw: bytes) -> str:
    """One key per mail: the Message-ID's hash, or the whole mail's when it has none."""
    message_id = (msg.get("Message-ID") or "").strip()
    return hashlib.sha256(message_id.encode() if message_id else raw).hexdigest()


def _automatic(
    msg: EmailMessage, envelope_from: str, sender: str, own: Collection[str]
) -> str | None:
    if not envelope_from or envelope_from == "<>":
        return "null sender (a bounce)"
    if msg.get("X-Jiesu-Notice") is not None:
        return "a Jiesu notice"
    if sender.lower() in own or envelope_from.strip("<>").lower() in own:
        return "our own address"
    if {_local_part(sender), _local_part(envelope_from.strip("<>"))} & _SYSTEM_MAILBOXES:
        return "a MAILER-DAEMON or postmaster sender"
    if (msg.get("Auto-Submitted") or "no").strip().lower() != "no":
        return "Auto-Submitted"
    if (msg.get("Precedence") or "").strip().lower() in _AUTOMATIC_PRECEDENCE:
        return "Precedence"
    if msg.get("X-Autoreply") or msg.get("X-Autorespond"):
        return "X-Autoreply"
    if msg.get_content_type() == "multipart/report":
        return "delivery report"
    return None


def _local_part(address: str) -> str:
    return address.rpartition("@")[0].lower() if "@" in address else address.lower()


def forged(msg: EmailMessage, authserv_id: str) -> str | None:
    """Why the trusted relay (``authserv_id``, JIESU_MAIL_AUTHSERV_ID) found the sender
    forged: DMARC ``fail``, or, without a DMARC result, SPF ``fail`` and no DKIM ``pass``.
    Only the topmost Authentication-Results with that authserv-id is read (the relay adds
    its own on top and, RFC 8601 5, removes any that claims its id); without an id set, none
    is: the header is whatever the sender wrote."""
    if not authserv_id:
        return None
    for value in msg.get_all("Authentication-Results") or ():
        text = " ".join(str(value).split())
        if text.split(";", 1)[0].split(" ", 1)[0].lower() != authserv_id.lower():
            continue
        results: dict[str, set[str]] = {}
        for method, result in _AUTH_RESULT.findall(text.split(";", 1)[-1]):
            results.setdefault(method.lower(), set()).add(result.lower())
        if "fail" in results.get("dmarc", set()):
            return "DMARC fail"
        if "dmarc" not in results and "fail" in results.get("spf", set()) and (
            "pass" not in results.get("dkim", set())
        ):
            return "SPF fail without a DKIM pass"
        return None
    return None


class MailLimits:
    """The bounds on what senders make us do (jiesu.rate_limits, counted in PostgreSQL: every
    listener on the database shares them, a restart keeps them): mails filed per sender
    address, sending domain and peer (JIESU_MAIL_SENDER_LIMITS, _DOMAIN_LIMITS,
    _PEER_LIMITS), automatic replies in all (JIESU_MAIL_REPLY_LIMITS). An empty setting
    bounds nothing."""

    UNFILED_KEPT = 10_000  # mails counted but asked to retry, remembered (the oldest go)

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self._limits = NamedLimits(pool, settings, {
            "sender": settings.mail_sender_limits, "domain": settings.mail_domain_limits,
            "peer": settings.mail_peer_limits, "reply": settings.mail_reply_limits,
        })  # fmt: skip
        self._unfiled: OrderedDict[str, None] = OrderedDict()

    async def file(self, address: str, peer: str | None, message_key: str) -> str | None:
        """Count one mail filed from ``address`` (and ``peer``), or name the bound it is past
        (then nothing is counted). A mail counted at an earlier delivery that was asked to
        retry (:meth:`unfiled`) is not counted again, nor refused: it is within the bound."""
        if message_key in self._unfiled:
            return None
        keys = [("sender", sender_key(address)), ("domain", address.rpartition("@")[2].lower())]
        if peer:
            keys.append(("peer", address_key(peer)))
        return await self._count(keys)

    def unfiled(self, message_key: str) -> None:
        """The mail was counted and then not filed (451 4.3.0): its retry is already counted."""
        self._unfiled[message_key] = None
        self._unfiled.move_to_end(message_key)
        while len(self._unfiled) > self.UNFILED_KEPT:
            self._unfiled.popitem(last=False)

    def settled(self, message_key: str) -> None:
        """The mail is filed, or refused for good: nothing of it is pending."""
        self._unfiled.pop(message_key, None)

    async def reply(self) -> str | None:
        """Count one automatic reply, or name the bound it is past."""
        return await self._count([("reply", "all")])

    async def _count(self, keys: list[tuple[str, str]]) -> str | None:
        """Count one against each, or none if one is past (one step: mails at once, on one
        listener or several, do not both pass the last slot)."""
        if found := await self._limits.take(keys):
            return f"{found[0]} {found[1].item}"
        return None


def sender_key(address: str) -> str:
    """One key per mailbox: lower case, the local part without its +tag (zhang+1@, zhang+2@
    are one sender)."""
    local, _, domain = address.lower().rpartition("@")
    return f"{local.split('+', 1)[0] or local}@{domain}"


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def _plain(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return " ".join(" ".join(parser.parts).split())


def _clean(text: str) -> str:
    """What the domain's Text takes (and PostgreSQL stores): no control characters but
    newlines and tabs, no lone surrogates."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    return _CONTROL.sub("", unicodedata.normalize("NFC", text)).strip()


def _content_type(part: EmailMessage) -> str:
    kind = part.get_content_type()
    if len(kind) <= CONTENT_TYPE_MAX and _MEDIA_TYPE.fullmatch(kind):
        return kind
    return "application/octet-stream"


def _filename(part: EmailMessage, n: int) -> str:
    """One line of printable text (no control characters, tabs or newlines), or a made-up
    name: what the attachment's row and its Content-Disposition can carry."""
    return content.file_name(_clean(part.get_filename() or ""), f"attachment-{n}")


def _body(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    content = part.get_content()
    if not isinstance(content, str):
        return ""
    return _plain(content) if part.get_content_type() == "text/html" else content


def _attachments(msg: EmailMessage) -> list[Attachment]:
    found = []
    for n, part in enumerate(msg.iter_attachments(), start=1):
        content = part.get_payload(decode=True)
        if not isinstance(content, bytes) or not content:
            continue
        found.append(Attachment(_filename(part, n), _content_type(part), content))
    return found


def parse(
    raw: bytes, envelope_from: str, own: Collection[str] = (), authserv_id: str = ""
) -> Report:
    """The report a mail makes; raises Dropped (automatic mail, or from one of our ``own``
    addresses, lower case), TooLarge or Malformed. ``authserv_id``: the trusted relay's, whose
    Authentication-Results may make the report ``unanswerable`` (:func:`forged`).
    CPU-bound (up to JIESU_MAIL_MAX_BYTES of MIME): the listener calls it in a thread."""
    check_headers(raw)
    try:
        mail_policy = _POLICY.clone(message_factory=_PartCap(), parsed={})
        msg = BytesParser(policy=mail_policy).parsebytes(raw)
        if not isinstance(msg, EmailMessage):
            raise Malformed("the mail cannot be read")
        check_parts(msg)
        name, address = parseaddr(str(msg.get("From") or ""))
        reason = _automatic(msg, envelope_from, address, own)
        if reason:
            raise Dropped(reason)
        subject = _clean(" ".join(str(msg.get("Subject") or "").split()))
        text = _clean(_body(msg))
        attachments = _attachments(msg)
        unanswerable = forged(msg, authserv_id)
    except (Dropped, Malformed):
        raise
    except Exception as err:  # undecodable headers, unknown charsets...: the mail is broken
        raise Malformed(f"the mail cannot be read ({type(err).__name__})") from err
    if "@" not in address or any(c.isspace() for c in address):
        raise Malformed("the mail has no sender address (From)")
    if not subject and not text:
        raise Malformed("the mail has neither a subject nor a text")
    return Report(
        message_key=message_key(msg, raw), message_id=_message_id(msg),
        address=address, name=_clean(name)[:NAME_MAX] or MAIL_CITIZEN_NAME,
        subject=subject, text=text, attachments=attachments, unanswerable=unanswerable,
    )  # fmt: skip


def _at_least_two(text: str, limit: int) -> str:
    """The text, or — if a reader would see less than two characters of it (an empty or
    blank subject) — 来信： before it, which intake takes."""
    if visible_length(text) >= 2:
        return text
    return f"来信：{text.strip()}"[:limit]


def intake(report: Report, settings: Settings) -> ComplaintIntake:
    """Subject → title, text → description, the sender → the reporter; the centre classifies
    and places it (JIESU_CHANNEL_CATEGORY, JIESU_CHANNEL_GRID), as with an SMS."""
    first_line = report.text.splitlines()[0] if report.text else ""
    title = report.subject if visible_length(report.subject) else first_line
    if len(title) > TITLE_MAX:
        title = title[: TITLE_MAX - 1] + "…"
    description = report.text or report.subject
    if len(description) > DESCRIPTION_MAX:
        description = description[: DESCRIPTION_MAX - 1] + "…"
    return ComplaintIntake(
        title=_at_least_two(title, TITLE_MAX),
        description=_at_least_two(description, DESCRIPTION_MAX),
        category_id=settings.channel_category,
        grid_id=settings.channel_grid,
        channel=Channel.EMAIL,
        # as new input (INPUT): one address — a quoted '"wang,li"@163.com' passes parse()
        citizen=Citizen.model_validate(
            {"name": report.name, "email": report.address}, context=INPUT
        ),
    )


async def store_attachments(pool: asyncpg.Pool, case_id: str, report: Report) -> None:
    """The mail's files, linked to its case (evidence); stored once however often it comes."""
    await pool.executemany(
        "INSERT INTO attachments (case_id, source, filename, content_type, size, sha256, content)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (source, filename, sha256) DO NOTHING",
        [
            (case_id, f"email:{report.message_key}", a.filename, a.content_type, len(a.content),
             hashlib.sha256(a.content).hexdigest(), a.content)
            for a in report.attachments
        ],
    )  # fmt: skip


def reply(report: Report, settings: Settings, filed: filing.Filing) -> OutboundMail:
    link = follow_up_link(settings, filed.citizen_token) if filed.citizen_token else None
    follow = f"查询办理进度 Follow your case: {link}\n" if link else ""
    return OutboundMail(
        key=f"mail-reply:{report.message_key}",
        sender=settings.mail_address,
        to=report.address,
        subject=f"已受理 工单 {filed.case_id} — Re: {report.subject or '您的来信'}"[:250],
        body=(
            f"{report.name}：\n\n您的来信已受理，工单编号 {filed.case_id}。\n{follow}"
            "请保存此链接，它是查询和评价此工单的凭证。\n\n"
            f"Your report has been registered as case {filed.case_id}.\n"
        ),
        in_reply_to=report.message_id,
    )


class ComplaintMailHandler:
    """aiosmtpd handler: RCPT checks the address, DATA files the report (see the module)."""

    def __init__(
        self, pool: asyncpg.Pool, client: Client, settings: Settings, mailer: Mailer
    ) -> None:
        self.pool, self.client, self.settings, self.mailer = pool, client, settings, mailer
        own = (settings.mail_address, settings.smtp_from)
        self.own = frozenset(a.strip().lower() for a in own if a.strip())
        self.limits = MailLimits(pool, settings)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address.lower() != self.settings.mail_address.lower():
            return "550 5.1.1 no such mailbox here: write to the complaints address"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        key = hashlib.sha256(raw).hexdigest()[:12]
        try:
            report = await asyncio.to_thread(
                parse, raw, envelope.mail_from or "", self.own, self.settings.mail_authserv_id
            )
        except Dropped as why:
            log.info("mail %s dropped: %s", key, why)
            return "250 2.0.0 OK: automatic mail, dropped"
        except TooLarge as why:
            log.info("mail %s refused: %s", key, why)
            return f"552 5.3.4 {why}"
        except Malformed as why:
            log.info("mail %s refused: %s", key, why)
            return f"550 5.6.0 {why}"
        try:  # what the intake refuses (an intranet address, >254 characters) is no outage
            complaint = intake(report, self.settings)
        except ValidationError as err:
            fields = ", ".join(sorted({".".join(map(str, e["loc"])) for e in err.errors()}))
            log.info("mail %s refused: the intake refuses %s", report.message_key[:12], fields)
            what = "the sender address" if fields in {"email", "citizen.email"} else fields
            return f"550 5.6.0 the mail cannot be registered: {what} is not accepted"
        peer = session.peer[0] if isinstance(getattr(session, "peer", None), tuple) else None
        try:
            past = await self._past_bound(report, peer)
        except Exception as err:  # PostgreSQL away: not aiosmtpd's 500, a permanent failure
            log.warning("mail %s not counted (%s): asked to retry", report.message_key[:12],
                        type(err).__name__)  # fmt: skip
            return "451 4.3.0 the complaint cannot be registered now; try again later"
        if past:
            log.warning("mail %s refused: past the bound on mails filed (%s)",
                        report.message_key[:12], past)  # fmt: skip
            return "451 4.7.1 too many reports from this sender now; try again later"
        try:
            case_id = await self.file(report, complaint)
        except IdempotencyConflict:  # another mail under a Message-ID we filed: never retry
            self.limits.settled(report.message_key)
            log.info("mail %s refused: its Message-ID came with another mail",
                     report.message_key[:12])  # fmt: skip
            return "550 5.7.0 a different mail with this Message-ID was received before"
        except Exception as err:  # Temporal or PostgreSQL away...: the sender retries later
            self.limits.unfiled(report.message_key)  # counted once: its retry is not again
            kind = err.code if isinstance(err, IntakeError) else type(err).__name__
            log.warning("mail %s not filed (%s): asked to retry", report.message_key[:12], kind)
            return "451 4.3.0 the complaint cannot be registered now; try again later"
        self.limits.settled(report.message_key)
        return f"250 2.0.0 OK: case {case_id}"

    async def _past_bound(self, report: Report, peer: str | None) -> str | None:
        """The bound on mails filed this mail is past, or None (then it is counted). A mail
        filed before (a retry) is not counted again."""
        if await self.pool.fetchval(
            "SELECT 1 FROM inbound_mail WHERE message_key = $1", report.message_key
        ):
            return None
        return await self.limits.file(report.address, peer, report.message_key)

    async def file(self, report: Report, complaint: ComplaintIntake) -> str:
        filed = await filing.register(
            self.pool, self.client, self.settings, complaint, MAIL_ACTOR,
            f"email:{report.message_key}",
        )  # fmt: skip
        await store_attachments(self.pool, filed.case_id, report)
        await self.pool.execute(
            "INSERT INTO inbound_mail (message_key, case_id) VALUES ($1, $2)"
            " ON CONFLICT (message_key) DO NOTHING",
            report.message_key, filed.case_id,
        )  # fmt: skip
        await self._reply_once(report, filed)
        log.info("mail %s filed as case %s%s", report.message_key[:12], filed.case_id,
                 " (repeat report)" if filed.merged else "")  # fmt: skip
        return filed.case_id

    async def _reply_once(self, report: Report, filed: filing.Filing) -> None:
        """The automatic reply, unless it went out for an earlier delivery of the mail. A
        failed reply is logged and not retried: the case stands (the mail is answered 250).

        Once, even for two deliveries at the same time (the sending server retrying while the
        first is still handled): the reply is sent holding the ``inbound_mail`` row's lock
        (``SELECT … FOR UPDATE``) and recorded (``replied_at``) in that same transaction, so
        the other delivery waits for the lock, then finds it sent. Not a claim committed
        before sending: a crash between such a claim and the send would lose the reply for
        good. Here a crash rolls the transaction back, the sending server (which saw no 250)
        delivers again and that delivery replies. The price: a crash after the send and before
        the commit replies twice (the log mailer keeps one row per key), and the send holds
        one pooled connection (at most the mailer's timeout)."""
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(
                "SELECT replied_at IS NOT NULL FROM inbound_mail WHERE message_key = $1"
                " FOR UPDATE",
                report.message_key,
            ):
                return
            if why := report.unanswerable or await self.limits.reply():
                log.warning("mail %s filed as case %s, not answered: %s",
                            report.message_key[:12], filed.case_id, why)  # fmt: skip
                return
            try:
                await self.mailer.send(reply(report, self.settings, filed))
            except Exception as err:
                log.warning("mail %s: the automatic reply failed (%s)", report.message_key[:12],
                            type(err).__name__)  # fmt: skip
                return
            await conn.execute(
                "UPDATE inbound_mail SET replied_at = now() WHERE message_key = $1",
                report.message_key,
            )
