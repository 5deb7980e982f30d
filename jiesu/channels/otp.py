"""One-time codes (短信验证码) of the citizen self-service intake: the phone a report gives
is the phone that received the code.

- A code is 6 random digits, sent through the SMS gateway, valid ``otp_ttl_seconds`` (300) and
  for ``otp_max_attempts`` (5) wrong tries; asking again replaces it (only a phone's newest
  code counts).
- Nothing readable is stored: the phone as ``HMAC(server secret, phone)``, the code as
  ``HMAC(server secret, phone key + code)``. A 6-digit code needs the key: a copy of the table
  alone does not give the codes away by trying the million candidates.
- A code files one report. The report's Idempotency-Key is derived from the code's id, so the
  citizen's retry with the same code (after a 503, a lost answer) is answered with the same
  case, and the code cannot file a second, different report.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum

import asyncpg

from jiesu.access import citizen_tokens
from jiesu.channels.sms import phone_forms
from jiesu.config import Settings
from jiesu.notify.sms import OutboundSms, SmsGateway

CODE_DIGITS = 6


def _mac(secret: bytes, *parts: str) -> str:
    return hmac.new(secret, "|".join(parts).encode(), hashlib.sha256).hexdigest()


def phone_key(secret: bytes, phone: str) -> str:
    """The phone, keyed: the same number however written (+86, spaces, dashes)."""
    return _mac(secret, "otp-phone", phone_forms(phone)[0])


def _code_hash(secret: bytes, key: str, code: str) -> str:
    return _mac(secret, "otp-code", key, code)


def message(code: str, settings: Settings) -> str:
    minutes = max(1, settings.otp_ttl_seconds // 60)
    return (
        f"【12345】您的验证码是 {code}，{minutes} 分钟内有效，仅用于提交诉求，请勿告诉他人。\n"
        f"Your 12345 code is {code}, valid for {minutes} minutes."
    )


@dataclass(frozen=True)
class Issued:
    expires_in: int  # seconds


async def issue(
    pool: asyncpg.Pool, settings: Settings, gateway: SmsGateway, phone: str
) -> Issued:
    """Make a new code for ``phone`` (replacing any earlier one) and text it."""
    secret = await citizen_tokens.server_secret(pool, settings)
    key = phone_key(secret, phone)
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    async with pool.acquire() as conn, conn.transaction():
        # Earlier unused codes of this phone are dead from now on: drop them.
        await conn.execute(
            "DELETE FROM otp_codes WHERE phone_key = $1 AND used_at IS NULL", key
        )
        code_id = await conn.fetchval(
            "INSERT INTO otp_codes (phone_key, code_hash, expires_at)"
            " VALUES ($1, $2, now() + $3::interval) RETURNING id",
            key, _code_hash(secret, key, code), timedelta(seconds=settings.otp_ttl_seconds),
        )  # fmt: skip
    # After the commit: a code the gateway received is one the citizen can use. A failed send
    # leaves a code nobody knows, replaced by the next request.
    await gateway.send(OutboundSms(key=f"otp:{code_id}", phone=phone, text=message(code, settings)))
    return Issued(expires_in=settings.otp_ttl_seconds)


class Refusal(Enum):
    NO_CODE = "no_code"
    EXPIRED = "code_expired"
    LOCKED = "code_locked"
    WRONG = "wrong_code"


REFUSALS = {
    Refusal.NO_CODE: "no code was sent to this phone: ask for one first",
    Refusal.EXPIRED: "the code has expired: ask for a new one",
    Refusal.LOCKED: "too many wrong codes: ask for a new one",
    Refusal.WRONG: "the code is wrong",
}


@dataclass(frozen=True)
class Verified:
    code_id: int

    @property
    def idempotency_key(self) -> str:
        """The report's Idempotency-Key: one report per code."""
        return f"otp:{self.code_id}"


_LATEST = """
SELECT id, code_hash, used_at IS NOT NULL AS used, expires_at < now() AS expired, attempts
FROM otp_codes WHERE phone_key = $1 ORDER BY id DESC LIMIT 1 FOR UPDATE
"""


async def verify(
    pool: asyncpg.Pool, settings: Settings, phone: str, code: str
) -> Verified | Refusal:
    """Check ``code`` against the phone's newest code; a right one is marked used. A used code
    that is right again is a retry of its report (the same Idempotency-Key answers it)."""
    secret = await citizen_tokens.server_secret(pool, settings)
    key = phone_key(secret, phone)
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(_LATEST, key)
        if row is None:
            return Refusal.NO_CODE
        right = hmac.compare_digest(row["code_hash"], _code_hash(secret, key, code.strip()))
        if row["expired"] and not row["used"]:
            return Refusal.EXPIRED
        # A used code's wrong tries count too: the right one answers its report's follow-up
        # link, so guessing a used code (which stays the phone's newest) must end as well.
        if row["attempts"] >= settings.otp_max_attempts:
            return Refusal.LOCKED
        if row["used"] and right:
            return Verified(row["id"])
        if not right:
            await conn.execute(
                "UPDATE otp_codes SET attempts = attempts + 1 WHERE id = $1", row["id"]
            )
            return Refusal.WRONG
        await conn.execute("UPDATE otp_codes SET used_at = now() WHERE id = $1", row["id"])
        return Verified(row["id"])


async def release(pool: asyncpg.Pool, verified: Verified) -> None:
    """Make a verified code usable again: its report was refused before anything was filed
    (an unknown grid, say), so the citizen may correct the report and send the same code."""
    await pool.execute("UPDATE otp_codes SET used_at = NULL WHERE id = $1", verified.code_id)
