"""The SMS gateway (短信网关): one interface for text messages to and from citizens' phones.

A gateway does two things (:class:`SmsGateway`):

- ``send`` an :class:`OutboundSms` (the notification outbox's citizen notices, one-time
  codes). Each message carries an idempotency ``key``: a gateway sends each key once, so the
  outbox's at-least-once re-delivery does not text a citizen twice where the gateway can help
  it (commercial gateways take a client message id for this).
- ``inbound``: turn the HTTP request a gateway makes to ``POST /api/v1/channels/sms/inbound``
  into an :class:`InboundSms`, after checking that the gateway signed it. A request that is
  not signed right raises :class:`BadSignature` (the API answers 401 and changes nothing).

The built-in gateway is :class:`LogSmsGateway`, the embedded default: it records outbound
messages in the ``sms_log`` table (tests and ``make run`` users read them there) and never
makes a network call. Its inbound side is Jiesu's own webhook format (docs/channels.md):

    X-Jiesu-Timestamp: <unix seconds>
    X-Jiesu-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>
    {"message_id": "...", "from": "+8613800001234", "text": "1"}

A request whose timestamp lies more than the tolerance from our clock is refused (a replay of
an old request); within the tolerance a replayed request carries the same ``message_id`` and is
applied once (``sms_inbound``). A real gateway adapter implements the same two methods with its
vendor's signature scheme.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from jiesu.case.domain import Phone, Text, visible_length
from jiesu.config import Settings
from jiesu.validation import plain

TIMESTAMP_HEADER = "X-Jiesu-Timestamp"
SIGNATURE_HEADER = "X-Jiesu-Signature"
SIGNATURE_PREFIX = "sha256="


# A mobile number written with China's country code (86 or 0086): the number after it. (Not
# any eleven digits: 86 531 8888 6666 is a landline of area code 0531.)
_MOBILE_AFTER_86 = re.compile(r"(?:00)?86(1[3-9][0-9]{9})")
# A landline written with China's country code: 86 or 0086, the area code without its 0
# (sometimes written "(0)"), and the number — 10 or 2x and 8 digits, or 3-9xx and 7-8 digits.
_LANDLINE_AFTER_86 = re.compile(r"(?:00)?860?((?:10|2[0-9])[0-9]{8}|[3-9][0-9]{2}[0-9]{7,8})")


def phone_forms(phone: str) -> list[str]:
    """The digit strings one mobile number may be written as (with or without +86/0086);
    the first is the number's normal form, as 工单查询 compares numbers (the database's
    citizen_phone_digits, migration 0040): a landline after 86/0086 is written as a caller in
    China says it, with its area code's 0 (+86 10 8765 4321 is 01087654321)."""
    digits = re.sub(r"\D", "", phone)
    if mobile := _MOBILE_AFTER_86.fullmatch(digits):
        digits = mobile[1]
    elif landline := _LANDLINE_AFTER_86.fullmatch(digits):
        digits = "0" + landline[1]
    return [digits, "86" + digits, "0086" + digits]


def is_mobile(phone: str) -> bool:
    """A mainland mobile number (1[3-9] and nine digits, with or without +86/0086): one that
    receives an SMS. A landline (010-12345678) or a short number does not."""
    return re.fullmatch(r"1[3-9][0-9]{9}", phone_forms(phone)[0]) is not None


NOT_MOBILE = "不是手机号码（座机或短号），收不到短信：未发送"
"""Why a citizen's SMS was not sent (``notifications.last_error`` of a ``skipped`` row)."""

NO_CONTACT = "诉求人未留联系方式（无电话、无电子邮箱），无从告知：未发送"
"""Why a notice to a citizen who left no contact at all was not sent (an app's report,
Open311: contact is optional there alone, ``ComplaintIntake``): nothing can be sent and there
is nobody to phone — not a landline's :data:`NOT_MOBILE`."""


def not_sent_because(phone: str | None) -> str:
    """Why a citizen's notice that takes no SMS and has no e-mail beside it is ``skipped``:
    the phone is a landline or a short number, or there is no phone at all. The one place both
    the intake's row (jiesu.intake.follow_up) and the dispatcher's mark (jiesu.notify.outbox)
    take the reason from."""
    return NOT_MOBILE if phone else NO_CONTACT


@dataclass(frozen=True)
class OutboundSms:
    key: str  # idempotency key: the same key is sent once
    phone: str
    text: str


class InboundSms(BaseModel):
    """A text message a citizen sent to the hotline's number (上行短信)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    # Printable ASCII without spaces: the id is the Idempotency-Key of what the message files
    # ("sms:" + id, which the intake strips), so "gw-X" and "gw-X " would be one key — the
    # second message refused as a reused key and lost. Anything else is 422, nothing written.
    message_id: str = Field(pattern=r"^[\x21-\x7e]{1,200}$")
    phone: Phone = Field(alias="from")
    text: Text = Field(min_length=1, max_length=2000)

    @field_validator("text")
    @classmethod
    def _says_something(cls, text: str) -> str:
        # Spaces and invisible formatting only (U+3000, U+200B, direction marks) say nothing:
        # refused as a mail without subject or text is, not filed as a case "短信：" of
        # nothing. One character a reader sees ("好") is a message (jiesu.channels.sms.intake).
        if visible_length(text) == 0:
            raise ValueError("the message has no visible text")
        return text


class BadSignature(Exception):
    """The request was not signed by the gateway (or is too old): answer 401."""


class InvalidInbound(Exception):
    """Signed, but not a message we understand: answer 422."""


class SmsGateway(Protocol):
    async def send(self, sms: OutboundSms) -> None:
        """Hand ``sms`` to the gateway or raise. Returning means accepted."""

    def inbound(self, headers: Mapping[str, str], body: bytes) -> InboundSms:
        """The message of a signed webhook request; raises BadSignature / InvalidInbound."""
        ...


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Jiesu-Signature`` value of ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def verify(
    secret: bytes,
    headers: Mapping[str, str],
    body: bytes,
    tolerance_seconds: int,
    now: float | None = None,
) -> None:
    """Raise BadSignature unless the request is signed with ``secret`` and recent."""
    if not secret:
        raise BadSignature("inbound SMS is not configured (JIESU_SMS_WEBHOOK_SECRET)")
    stamp = headers.get(TIMESTAMP_HEADER.lower()) or headers.get(TIMESTAMP_HEADER) or ""
    given = headers.get(SIGNATURE_HEADER.lower()) or headers.get(SIGNATURE_HEADER) or ""
    if not stamp.isascii() or not stamp.isdigit() or not given:
        raise BadSignature(f"send {TIMESTAMP_HEADER} (unix seconds) and {SIGNATURE_HEADER}")
    if not hmac.compare_digest(signature(secret, stamp, body), given):
        raise BadSignature("the signature does not match")
    if abs((time.time() if now is None else now) - int(stamp)) > tolerance_seconds:
        raise BadSignature("the timestamp is too old or in the future (a replayed request?)")


class LogSmsGateway:
    """The embedded default: outbound messages are rows of ``sms_log`` (never sent anywhere);
    inbound requests are checked against Jiesu's own HMAC scheme."""

    def __init__(self, pool: asyncpg.Pool, secret: bytes, tolerance_seconds: int = 300) -> None:
        self.pool = pool
        self.secret = secret
        self.tolerance_seconds = tolerance_seconds

    async def send(self, sms: OutboundSms) -> None:
        await self.pool.execute(
            "INSERT INTO sms_log (key, phone, text) VALUES ($1, $2, $3)"
            " ON CONFLICT (key) DO NOTHING",
            sms.key, sms.phone, sms.text,
        )  # fmt: skip

    def inbound(self, headers: Mapping[str, str], body: bytes) -> InboundSms:
        verify(self.secret, headers, body, self.tolerance_seconds)
        try:
            return InboundSms.model_validate(json.loads(body))
        except (ValueError, ValidationError) as err:  # JSONDecodeError is a ValueError
            raise InvalidInbound(f"not an inbound SMS: {plain(err)}"[:500]) from err


def gateway_from_settings(settings: Settings, pool: asyncpg.Pool) -> SmsGateway:
    """The gateway JIESU_SMS_GATEWAY names (``log`` is the only built-in one)."""
    kind = settings.sms_gateway.strip().lower()
    if kind != "log":
        raise ValueError(f"JIESU_SMS_GATEWAY must be 'log', not {kind!r}")
    secret = settings.sms_webhook_secret.get_secret_value().encode()
    return LogSmsGateway(pool, secret, settings.sms_webhook_tolerance_seconds)
