"""Outbound mail to citizens (the automatic reply to an e-mailed report): one interface,
:class:`Mailer`, with a log default.

- :class:`LogMailer` (default, JIESU_MAIL_REPLY=log): every message is a row of ``mail_log``
  (read it there); nothing leaves the machine.
- :class:`SmtpMailer` (JIESU_MAIL_REPLY=smtp): through the SMTP server of JIESU_SMTP_HOST /
  JIESU_SMTP_PORT / JIESU_SMTP_USER / JIESU_SMTP_PASSWORD / JIESU_SMTP_STARTTLS (the outbox's
  variables, jiesu/notify/outbox.py), stdlib ``smtplib`` in a thread.

Each message carries an idempotency ``key``; the log mailer keeps one row per key.
"""

from __future__ import annotations

import asyncio
import os
import smtplib
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Protocol

import asyncpg


@dataclass(frozen=True)
class OutboundMail:
    key: str
    sender: str
    to: str
    subject: str
    body: str
    in_reply_to: str | None = None  # the Message-ID answered


class Mailer(Protocol):
    async def send(self, mail: OutboundMail) -> None:
        """Hand ``mail`` over or raise."""


def message(mail: OutboundMail) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = mail.sender
    msg["To"] = mail.to
    msg["Subject"] = mail.subject
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(domain=mail.sender.rpartition("@")[2] or "jiesu")
    msg["Auto-Submitted"] = "auto-replied"  # RFC 3834: no auto-reply to this one, please
    if mail.in_reply_to:
        msg["In-Reply-To"] = msg["References"] = mail.in_reply_to
    msg.set_content(mail.body)
    return msg


class LogMailer:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def send(self, mail: OutboundMail) -> None:
        await self.pool.execute(
            "INSERT INTO mail_log (key, to_address, subject, body, in_reply_to)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key) DO NOTHING",
            mail.key, mail.to, mail.subject, mail.body, mail.in_reply_to,
        )  # fmt: skip


class SmtpMailer:
    def __init__(
        self, host: str, port: int, *, username: str | None = None,
        password: str | None = None, starttls: bool = False, timeout: float = 30.0,
    ) -> None:  # fmt: skip
        self.host, self.port, self.timeout = host, port, timeout
        self.username, self.password, self.starttls = username, password, starttls

    async def send(self, mail: OutboundMail) -> None:
        await asyncio.to_thread(self._send, message(mail))

    def _send(self, msg: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(msg)


def mailer_from_env(pool: asyncpg.Pool, env: Mapping[str, str] | None = None) -> Mailer:
    env = os.environ if env is None else env
    kind = (env.get("JIESU_MAIL_REPLY") or "log").strip().lower()
    if kind == "log":
        return LogMailer(pool)
    if kind != "smtp":
        raise ValueError(f"JIESU_MAIL_REPLY must be 'log' or 'smtp', not {kind!r}")
    host = env.get("JIESU_SMTP_HOST")
    if not host:
        raise ValueError("JIESU_MAIL_REPLY=smtp needs JIESU_SMTP_HOST")
    return SmtpMailer(
        host, int(env.get("JIESU_SMTP_PORT") or 25),
        username=env.get("JIESU_SMTP_USER") or None,
        password=env.get("JIESU_SMTP_PASSWORD") or None,
        starttls=(env.get("JIESU_SMTP_STARTTLS") or "").lower() in {"1", "true", "yes"},
    )  # fmt: skip
