"""Repeat reports (并单): a report of a problem that already has an open case is linked to
that case instead of opening a second one.

Same problem means, within the repeat window: the same category and either the same citizen
(phone) in the same grid, or the same non-empty address (whitespace collapsed). Each rule is a
*problem key*. The decision "new case or repeat" is made in PostgreSQL, atomically:

- the intake locks its problem keys (transaction-level advisory locks, taken in one fixed
  order so that two intakes sharing keys cannot deadlock);
- under the locks it looks for an open case among the ``intakes`` rows themselves — not the
  read model, which lags the workflow — and writes its own row before the locks go.

So concurrent reports of one problem queue on its keys: the first opens the case, every
later one finds that case's row, even before its workflow has started. A case counts as open
unless the read model says it closed; one that closed behind the read model's back is found
out when the repeat is delivered (``jiesu.intake.filing``) and the report then opens a new case. The
case's workflow counts the repeat; the third report of the same open problem puts it under
supervision. A case takes at most MAX_MERGED_REPORTS; the next report of the problem opens a
case of its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from jiesu.case import lifecycle
from jiesu.case.domain import Actor, ComplaintIntake, RepeatReport, Status, sql_status


@dataclass(frozen=True)
class ProblemKeys:
    phone: str
    address: str | None

    def all(self) -> list[str]:
        return [self.phone, *([self.address] if self.address else [])]


def problem_keys(intake: ComplaintIntake) -> ProblemKeys:
    # the reporter's phone, or the e-mail address of a report that came by e-mail without one
    contact = intake.citizen.phone or intake.citizen.email or ""
    return keys_of(intake.category_id, intake.grid_id, contact, intake.address)


def keys_of(category_id: str, grid_id: str, phone: str, address: str) -> ProblemKeys:
    """The problem keys of a report (also of one still being typed: the console's
    suggestions)."""
    phone_key = "|".join(("phone", category_id, grid_id, phone))
    address = " ".join(address.split())
    return ProblemKeys(
        phone=phone_key,
        address="|".join(("address", category_id, address)) if address else None,
    )


def _lock_id(key: str) -> int:
    """A signed 64-bit advisory-lock id. A collision only makes two problems queue."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big", signed=True)


async def lock(conn: asyncpg.Connection, keys: Iterable[str]) -> None:
    """Hold these keys until the transaction ends; always in ascending id order."""
    for lock_id in sorted({_lock_id(k) for k in keys}):
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_id)


# Repeat reports one case takes at most (the rule is the case's: jiesu.case.lifecycle, where
# the case refuses one more from any client); here, the next report opens a case of its own.
MAX_MERGED_REPORTS = lifecycle.MAX_MERGED_REPORTS

_FIND_OPEN_CASE = f"""
SELECT i.case_id
FROM intakes i LEFT JOIN cases c USING (case_id)
WHERE (i.phone_key = $1 OR i.address_key = $2)
  AND i.received_at > $3
  AND c.status IS DISTINCT FROM {sql_status(Status.CLOSED)}
  AND i.case_id <> ALL($4::text[])
ORDER BY i.received_at, i.case_id
LIMIT 1
"""
_REPORTS_OF = "SELECT count(*) FROM repeat_reports WHERE case_id = $1"


_SAME_PROBLEM = f"""
SELECT i.case_id, i.received_at, c.title, c.status, c.department_id, c.closed_at,
       c.status IS DISTINCT FROM {sql_status(Status.CLOSED)} AS open,
       (SELECT count(*) FROM repeat_reports r WHERE r.case_id = i.case_id) >= $5 AS full
FROM intakes i LEFT JOIN cases c USING (case_id)
WHERE (i.phone_key = $1 OR i.address_key = $2) AND i.received_at > $3 AND i.state = 'started'
ORDER BY open DESC, i.received_at DESC
LIMIT $4
"""


async def same_problem(
    conn: asyncpg.Connection | asyncpg.Pool, keys: ProblemKeys, since: datetime, limit: int = 10
) -> list[dict[str, Any]]:
    """Cases of this problem received since ``since``, open ones first: an open one is the
    case a report would be linked to (并单); a closed one may be the same problem come back.
    What the operator is shown before saving (the decision itself is :func:`find_open_case`,
    under the locks); ``mergeable``: open and not yet holding MAX_MERGED_REPORTS."""
    rows = await conn.fetch(
        _SAME_PROBLEM, keys.phone, keys.address, since, limit, MAX_MERGED_REPORTS
    )
    return [dict(r, mergeable=r["open"] and not r["full"]) for r in rows]


async def find_open_case(
    conn: asyncpg.Connection, keys: ProblemKeys, since: datetime, closed: Iterable[str]
) -> str | None:
    """The oldest open case of this problem (call under ``lock``); ``closed``: cases found
    closed meanwhile, which the read model may not know yet."""
    excluded = set(closed)
    while True:
        case_id = await conn.fetchval(
            _FIND_OPEN_CASE, keys.phone, keys.address, since, list(excluded)
        )
        if case_id is None:
            return None
        # Its reports are counted under the case's own lock: two reports found it by keys
        # that share no lock (one by its phone, the other by its address), and both took its
        # last place. Cases are locked oldest first, as they are found (no deadlock).
        await lock(conn, [f"case|{case_id}"])
        if await conn.fetchval(_REPORTS_OF, case_id) < MAX_MERGED_REPORTS:
            return case_id
        excluded.add(case_id)  # full: the next one, or a case of its own


async def add_report(
    conn: asyncpg.Connection,
    case_id: str,
    report: dict[str, Any],
    idempotency: tuple[str | None, str | None],
    digest: str,
    token: tuple[str, str],
) -> int:
    """The repeat's row, 'pending' until its case has been told (``jiesu.intake.filing``);
    ``idempotency`` is its Idempotency-Key and the key's owner (``filing.key_owner``)."""
    nonce, token_hash = token
    key, owner = idempotency
    return int(
        await conn.fetchval(
            "INSERT INTO repeat_reports (case_id, idempotency_key, idempotency_owner,"
            " request_hash, payload, state, token_nonce, token_hash)"
            " VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7) RETURNING id",
            case_id, key, owner, digest, report, nonce, token_hash,
        )
    )


def report_payload(intake: ComplaintIntake, received_at: datetime, actor: Actor) -> dict[str, Any]:
    return {
        "intake": intake.model_dump(mode="json"),
        "received_at": received_at.isoformat(),
        "actor": actor.model_dump(mode="json"),
    }


def repeat_signal(report_id: int, payload: dict[str, Any]) -> RepeatReport:
    intake = ComplaintIntake.model_validate(payload["intake"])
    return RepeatReport.model_validate(
        {
            "report_id": str(report_id),  # the workflow counts each report id once
            "actor": payload["actor"],
            "channel": intake.channel,
            "description": intake.description,
            "received_at": payload["received_at"],
        }
    )
