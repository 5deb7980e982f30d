"""Inbound SMS (上行短信): a new case, or the answer to a rating prompt.

A citizen's reply SMS rates the case when it answers the prompt of the reply notice
(``jiesu.notify.notices.RATING_PROMPT``: "1 满意 2 基本满意 3 不满意") and a case of that phone
is waiting for its rating (status ``replied``, the phone of the case's own intake). Any other
text becomes a case (channel ``sms``) in the channel category and grid (JIESU_CHANNEL_*): the
centre's dispatcher classifies and places it.

The decision is taken once per gateway message id and stored (``sms_inbound``), so a
redelivered message repeats the same decision: a rating that closed the case is not turned into
a new case "1" by the gateway's retry. The action itself is idempotent too (its request id and
the intake's Idempotency-Key are derived from the message id).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

import asyncpg

from jiesu.case.domain import (
    Actor,
    Channel,
    Citizen,
    ComplaintIntake,
    Rating,
    Role,
    Status,
    sql_status,
    visible_length,
)
from jiesu.config import Settings
from jiesu.notify.sms import InboundSms, phone_forms

SMS_ACTOR = Actor(role=Role.CITIZEN, name="citizen by SMS")
"""Who registers an SMS's case: the citizen, through the gateway (no operator)."""

SMS_CITIZEN_NAME = "短信用户"
"""The reporter's name on an SMS case: an SMS carries none."""

TITLE_LENGTH = 30

_ANSWERS: dict[str, Rating] = {
    "1": Rating.SATISFIED, "满意": Rating.SATISFIED,
    "2": Rating.BASICALLY_SATISFIED, "基本满意": Rating.BASICALLY_SATISFIED,
    "3": Rating.UNSATISFIED, "不满意": Rating.UNSATISFIED,
}  # fmt: skip
# The trailing run, tried from the run's first character only (the lookbehind): without it
# every character of a run followed by text started a match that ran to the run's end and
# failed there (n² steps: an SMS of 1,999 "…", 5,997 dots after NFKC, 0.12 s).
_TRAILING = re.compile(r"(?<![\s。.!！,，])[\s。.!！,，]++$")


def parse_rating(text: str) -> Rating | None:
    """The rating an answer to the prompt gives ("1", "满意", "１。"...), else None."""
    answer = _TRAILING.sub("", unicodedata.normalize("NFKC", text).strip())
    return _ANSWERS.get(answer)


_WAITING = f"""
SELECT c.case_id FROM cases c JOIN intakes i USING (case_id)
WHERE c.status = {sql_status(Status.REPLIED)} AND i.state = 'started'
  AND regexp_replace(i.payload -> 'intake' -> 'citizen' ->> 'phone', '\\D', '', 'g') = ANY($1)
ORDER BY c.replied_at DESC NULLS LAST
LIMIT 1
"""


async def case_waiting_for_rating(conn: asyncpg.Pool, phone: str) -> str | None:
    """The case whose own citizen has this phone and which waits for a rating: the most
    recently replied one when there are several (its prompt is the last one sent)."""
    return await conn.fetchval(_WAITING, phone_forms(phone))


@dataclass(frozen=True)
class Decision:
    kind: Literal["case", "rating"]
    case_id: str | None = None  # the rated case
    rating: Rating | None = None


async def decide(pool: asyncpg.Pool, sms: InboundSms) -> Decision:
    """What this message does, decided on its first delivery and repeated on every other."""
    rating = parse_rating(sms.text)
    case_id = await case_waiting_for_rating(pool, sms.phone) if rating else None
    kind = "rating" if case_id else "case"
    await pool.execute(
        "INSERT INTO sms_inbound (message_id, kind, case_id, rating) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (message_id) DO NOTHING",
        sms.message_id, kind, case_id, rating.value if case_id and rating else None,
    )  # fmt: skip
    row = await pool.fetchrow(
        "SELECT kind, case_id, rating FROM sms_inbound WHERE message_id = $1", sms.message_id
    )  # the first delivery's decision, whoever wrote it
    return Decision(row["kind"], row["case_id"], Rating(row["rating"]) if row["rating"] else None)


def idempotency_key(sms: InboundSms) -> str:
    """The Idempotency-Key of what the message does: one per gateway message id."""
    return f"sms:{sms.message_id}"


def intake(sms: InboundSms, settings: Settings) -> ComplaintIntake:
    """The report an SMS makes: its text, from its phone, to be classified by the centre."""
    text = " ".join(sms.text.split())
    title = text if len(text) <= TITLE_LENGTH else text[: TITLE_LENGTH - 1] + "…"
    return ComplaintIntake(
        title=title if visible_length(title) >= 2 else f"短信：{title}",
        description=sms.text if visible_length(sms.text) >= 2 else f"短信：{sms.text}",
        category_id=settings.channel_category,
        grid_id=settings.channel_grid,
        channel=Channel.SMS,
        citizen=Citizen(name=SMS_CITIZEN_NAME, phone=sms.phone),
    )
