"""The SMS sent at intake (受理短信): the case number and the link to the citizen's own page
(``/my/<token>``, jiesu.notify.links.follow_up_link), through the notifications outbox.

The link carries the citizen's token, which is a credential and is never stored
(jiesu.access.citizen_tokens). So the outbox row holds the message with a placeholder
(:data:`LINK`), written in the same transaction that marks the report started (so a report
given up in an outage sends nothing), and the dispatcher fills the link in at the moment of
sending (:class:`FollowUpLinks`), recomputing the token from the report's nonce and the
server secret. The token exists only in memory while the message is handed to the sender —
and in the message itself, which is the point. Nothing logs it.
"""

from __future__ import annotations

import re

import asyncpg

from jiesu.access import citizen_tokens
from jiesu.case.domain import EventKind
from jiesu.config import Settings
from jiesu.notify.links import follow_up_link
from jiesu.notify.outbox import OutboundNotice
from jiesu.notify.sms import is_mobile, not_sent_because

LINK = "{follow_up_link}"
"""Where the link goes in the stored message; filled in when the SMS is sent."""

_REPEAT = re.compile(r"^(?P<case>.+)/repeat-(?P<id>\d+)$")


def recipient(case_id: str, report_id: int | None) -> str:
    """The notice's recipient id: the case's own citizen, or the citizen of a repeat report."""
    return case_id if report_id is None else f"{case_id}/repeat-{report_id}"


async def enqueue(
    conn: asyncpg.Connection,
    case_id: str,
    report_id: int | None,
    phone: str | None,
    email: str | None = None,
) -> None:
    """Queue the intake SMS of one report to the citizen's ``phone`` (once: its key is unique).
    A citizen whose phone receives no SMS (none given, a landline, a short number:
    jiesu.notify.sms.is_mobile) gets it by ``email`` when they left one — the row says
    ``email``, the channel it goes by, and the dispatcher writes to that address
    (jiesu.notify.outbox.route). Without one the row is written ``skipped``, with why in
    ``last_error``, so whoever looks at the case's notices sees that no SMS went and why
    (whatever channel the report came by — every intake is filed here)."""
    merged = report_id is not None
    by_sms = is_mobile(phone or "")
    channel = "email" if email and not by_sms else "sms"
    status, why = ("pending", None) if by_sms or email else ("skipped", not_sent_because(phone))
    body = (
        f"【12345】您反映的问题已受理，工单号 {case_id}"
        + ("（同一问题已有工单，已合并办理）" if merged else "")
        + f"。查看办理进度、补充或评价：{LINK}"
    )
    await conn.execute(
        "INSERT INTO notifications (key, case_id, event_seq, event_kind, recipient_kind,"
        " recipient_id, channel, subject, body, status, last_error) VALUES ($1, $2, 0, $3,"
        " 'citizen', $4, $9, $5, $6, $7, $8) ON CONFLICT (key) DO NOTHING",
        f"{recipient(case_id, report_id)}:follow-up",
        case_id,
        (EventKind.REPEAT_REPORTED if merged else EventKind.RECEIVED).value,
        recipient(case_id, report_id),
        f"工单 {case_id} 已受理",
        body,
        status,
        why,
        channel,
    )


class LinkUnavailable(Exception):
    """The report's token cannot be recomputed (its row is gone, or the secret was rotated)."""


class FollowUpLinks:
    """The outbox dispatcher's renderer (jiesu.notify.outbox): fills in the link of an intake
    SMS, and the phone of a repeat report's citizen when the claim left it unresolved. Other
    notices pass unchanged."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings

    async def __call__(self, notice: OutboundNotice) -> OutboundNotice:
        if LINK not in notice.body:
            return notice
        repeat = _REPEAT.match(notice.recipient_id)
        if repeat is None:
            row = await self.pool.fetchrow(
                "SELECT token_nonce, token_hash, payload -> 'intake' -> 'citizen' ->> 'phone'"
                " AS phone FROM intakes WHERE case_id = $1", notice.recipient_id,
            )  # fmt: skip
        else:
            row = await self.pool.fetchrow(
                "SELECT token_nonce, token_hash, payload -> 'intake' -> 'citizen' ->> 'phone'"
                " AS phone FROM repeat_reports WHERE id = $1", int(repeat["id"]),
            )  # fmt: skip
        secret = await citizen_tokens.server_secret(self.pool, self.settings)
        token = row and citizen_tokens.recompute(secret, row["token_nonce"], row["token_hash"])
        if not token:
            raise LinkUnavailable(f"no follow-up link for {notice.recipient_id}")
        return notice.model_copy(update={
            "body": notice.body.replace(LINK, follow_up_link(self.settings, token)),
            # the claim's address stands: the e-mail of a citizen whose phone takes no SMS
            "address": notice.address or row["phone"],
        })  # fmt: skip
