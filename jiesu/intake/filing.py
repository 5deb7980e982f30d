"""Intake (受理): validate against reference data, number the case or link the report to the
open case of the same problem (并单, jiesu/intake/merge.py), and tell Temporal.

Every report is filed in two short transactions on one connection:

1. *claim*: under the problem's advisory locks (and the Idempotency-Key's), find the
   report's earlier row by its key, or decide "new case or repeat" and write the row as
   ``pending`` — the case number and the citizen token's nonce are fixed here;
2. *complete*: with that row locked, start the case's workflow (workflow id = case number)
   or signal the repeat to its case (report id = the row's id), then mark the row
   ``started``. Both are idempotent in Temporal, so completing twice does no harm.

A Temporal outage between the two leaves a ``pending`` row. With an Idempotency-Key the
client's retry finds it and completes it; without one nobody can retry, so a request that
certainly never reached Temporal (connection refused / unavailable) removes its row again —
nothing is left behind. What remains (a crash between the two, a key never retried, an
ambiguous timeout) is settled by :func:`settle_pending`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from stdnum.cn import uscc
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowQueryFailedError
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from jiesu.access import citizen_tokens
from jiesu.access.content import redact_identifiers
from jiesu.case import search_attributes as sa
from jiesu.case.domain import (
    CASE_STATE_QUERY,
    CASE_WORKFLOW,
    GRID_ROLES,
    Actor,
    CaseSignal,
    CaseStart,
    CaseState,
    Channel,
    ComplaintIntake,
    DirectAnswer,
    EventKind,
    RepeatReport,
    Role,
    Status,
    Urgency,
    visible_length,
)
from jiesu.client import QUERY_UNANSWERED, is_temporal_down
from jiesu.config import Settings
from jiesu.intake import follow_up, history, knowledge, merge
from jiesu.intake.errors import (
    IdempotencyConflict,
    IntakeContended,
    IntakeRefused,
    TemporalUnavailable,
)

# The case's workflow, by its registered name (workflows/complaint.py): this service stands
# below the workflows and does not import them.

CLOCK_SKEW = timedelta(minutes=2)
MAX_BACKDATE = timedelta(hours=24)
# A round ends without an answer only when the case found closed meanwhile; the next round
# leaves it out. More than a few in a row means something else is wrong.
MAX_ROUNDS = 4
MIN_VISIBLE = 2  # the title's and the description's min_length, counted as a reader sees


def _request_hash(intake: ComplaintIntake) -> str:
    canonical = json.dumps(intake.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _received_at(intake: ComplaintIntake) -> datetime:
    now = datetime.now(UTC)
    at = intake.received_at
    if at is None:
        return now
    if at.tzinfo is None:
        raise IntakeRefused("invalid_received_at", "received_at needs a timezone, e.g. +08:00")
    if at > now + CLOCK_SKEW:
        raise IntakeRefused("invalid_received_at", "received_at is in the future")
    if at < now - MAX_BACKDATE:
        raise IntakeRefused("invalid_received_at", "received_at is more than 24 hours ago")
    return at


def check_credit_code(intake: ComplaintIntake) -> None:
    """企业专席: an enterprise's unified social credit code must have a right checksum."""
    code = intake.citizen.credit_code
    if code is not None and not uscc.is_valid(code):
        raise IntakeRefused(
            "invalid_credit_code", "the unified social credit code (统一社会信用代码) is not valid"
        )


def check_visible(intake: ComplaintIntake) -> None:
    """A title or description of spaces passes its length but says nothing: refused, with
    nothing filed, before it reaches every list (the title) and the department."""
    if visible_length(intake.title) < MIN_VISIBLE:
        raise IntakeRefused("blank_title", f"the title needs {MIN_VISIBLE} visible characters")
    if visible_length(intake.description) < MIN_VISIBLE:
        raise IntakeRefused(
            "blank_description", f"the description needs {MIN_VISIBLE} visible characters"
        )


async def _urgency(conn: asyncpg.Connection, intake: ComplaintIntake) -> Urgency:
    default = await conn.fetchval(
        # FOR KEY SHARE: an admin's deletion of either waits for this report to commit, and
        # then finds it (jiesu.admin.reference._USED_BY_INTAKES)
        "SELECT default_urgency FROM categories WHERE id = $1 FOR KEY SHARE", intake.category_id
    )
    if default is None:
        raise IntakeRefused("unknown_category", f"no complaint category {intake.category_id!r}")
    grid = await conn.fetchval(
        "SELECT 1 FROM areas WHERE id = $1 AND kind = 'grid' FOR KEY SHARE", intake.grid_id
    )
    if grid is None:
        raise IntakeRefused("unknown_grid", f"no grid {intake.grid_id!r}")
    return intake.urgency or Urgency(default)


async def _new_case_id(conn: asyncpg.Connection, settings: Settings, at: datetime) -> str:
    seq = await conn.fetchval("SELECT nextval('case_number_seq')")
    return f"JS{at.astimezone(ZoneInfo(settings.timezone)):%Y%m%d}-{seq:06d}"


async def start_case(
    client: Client, settings: Settings, start: CaseStart, repeat: RepeatReport | None = None
) -> None:
    """Start the case's workflow (id = case number; a second start is a no-op). With
    ``repeat``: signal-with-start, so that a repeat reaches a case whose own start has not
    happened yet; raises ``WorkflowAlreadyStartedError`` if the case has closed.

    The workflow gets :meth:`CaseStart.for_workflow`: the description and the citizen stay in
    PostgreSQL, never in the history."""
    facts = start.case_facts
    start = start.for_workflow()
    options: dict[str, Any] = {
        "id": start.case_id,
        "task_queue": settings.task_queue,
        "id_reuse_policy": WorkflowIDReusePolicy.REJECT_DUPLICATE,
        "search_attributes": TypedSearchAttributes(
            [
                SearchAttributePair(sa.CASE_STATUS, Status.REGISTERED.value),
                SearchAttributePair(sa.CASE_URGENCY, start.urgency.value),
                SearchAttributePair(sa.CASE_CATEGORY, facts.category_id),
                SearchAttributePair(sa.CASE_CHANNEL, facts.channel.value),
            ]
        ),
        "static_summary": f"{start.case_id} {facts.title}"[:200],
    }
    if repeat is not None:
        options |= {"start_signal": CaseSignal.REPEAT_REPORT.value, "start_signal_args": [repeat]}
        await client.start_workflow(CASE_WORKFLOW, start, **options)
        return
    try:
        await client.start_workflow(CASE_WORKFLOW, start, **options)
    except WorkflowAlreadyStartedError:
        pass  # a retry of an intake whose workflow did start: exactly what we want


async def _tell_case(
    client: Client, settings: Settings, case: CaseStart, case_started: bool, report: RepeatReport
) -> bool:
    """Deliver a repeat; False when its case has closed. A case whose intake is marked
    started gets a plain signal, never a start: its history may be gone (archived, deleted
    after retention), and a start would bring a new run to life under its number."""
    if not case_started:
        try:
            await start_case(client, settings, case, report)
        except WorkflowAlreadyStartedError:
            return False
        return True
    try:
        await client.get_workflow_handle(case.case_id).signal(
            CaseSignal.REPEAT_REPORT.value, report
        )
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:  # completed, or no longer kept
            return False
        raise
    return True


def _may_have_reached_temporal(err: BaseException) -> bool:
    """Of an outage (``is_temporal_down``): True when the request may have reached Temporal
    (a timeout after sending); a refused or unavailable connection certainly did not."""
    return isinstance(err, RPCError) and err.status is RPCStatusCode.DEADLINE_EXCEEDED


# --- the two transactions -----------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """A report's row: the case's own intake (``report_id`` None) or a repeat report."""

    case_id: str
    report_id: int | None
    replayed: bool  # the row was there before this request (same Idempotency-Key)


@dataclass(frozen=True)
class Filed:
    case: CaseStart
    token_nonce: str | None
    token_hash: str


class Retry(Enum):
    CLOSED = "the case found has closed"
    GONE = "the row or its case's intake was given up meanwhile"


@dataclass(frozen=True)
class Report:
    intake: ComplaintIntake
    received_at: datetime
    actor: Actor
    idempotency_key: str | None
    digest: str


MAX_KEY_LENGTH = 256
"""An Idempotency-Key's length at most (the API's header takes 200; a channel's key, such as
``sms:`` and a gateway's message id of up to 200, a few more). Longer is refused: the key is
indexed, and PostgreSQL's index rows are bounded."""


# Keys the system files under itself (a case's refile of a 并单 that reached it after its close,
# activities/refile.py): a client's key may not start so, or it could take the refile's key
# and have the report refused as idempotency_key_reused (tests/test_v24_attacks.py).
SYSTEM_KEY_PREFIX = "jiesu-"


def checked_key(given: str | None, *, system: bool = False) -> str | None:
    """The Idempotency-Key to file under: none for an empty one; refused (IntakeRefused) when
    too long, holding a character that is not printable (a NUL cannot be stored at all), or,
    from a client, starting with SYSTEM_KEY_PREFIX."""
    key = (given or "").strip() or None
    if key is not None and (len(key) > MAX_KEY_LENGTH or not key.isprintable()):
        raise IntakeRefused(
            "invalid_idempotency_key",
            f"an Idempotency-Key is at most {MAX_KEY_LENGTH} printable characters",
        )
    if key is not None and not system and key.startswith(SYSTEM_KEY_PREFIX):
        raise IntakeRefused(
            "invalid_idempotency_key",
            f"an Idempotency-Key may not start with {SYSTEM_KEY_PREFIX!r} (the system's own)",
        )
    return key


def key_owner(actor: Actor) -> str:
    """Whose an Idempotency-Key is. A key belongs to its caller, as an action's does
    (api/cases.py request_id): one caller's key neither answers another's report nor blocks
    it — an operator's key ``sms:…`` does not take the key of a gateway's message."""
    return json.dumps(
        [actor.role.value, actor.name, actor.department_id, actor.person], ensure_ascii=False
    )


# Rows filed before keys had owners (migration 0025) have none: they still answer their key.
_BY_KEY = """
SELECT case_id, NULL::bigint AS report_id, request_hash FROM intakes
WHERE idempotency_key = $1 AND (idempotency_owner = $2 OR idempotency_owner IS NULL)
UNION ALL SELECT case_id, id, request_hash FROM repeat_reports
WHERE idempotency_key = $1 AND (idempotency_owner = $2 OR idempotency_owner IS NULL)
"""


async def _by_key(conn: asyncpg.Connection, report: Report) -> Claim | None:
    row = await conn.fetchrow(_BY_KEY, report.idempotency_key, key_owner(report.actor))
    if row is None:
        return None
    if row["request_hash"] != report.digest:
        raise IdempotencyConflict()
    return Claim(row["case_id"], row["report_id"], replayed=True)


def _check_on_the_spot(intake: ComplaintIntake, actor: Actor) -> None:
    """就地解决 is a grid worker's, reported from patrol (the grid router checks the grid)."""
    if intake.solved_on_the_spot is None:
        return
    if actor.role not in GRID_ROLES or intake.channel is not Channel.GRID:
        raise IntakeRefused(
            "grid_workers_only", "only a grid worker's patrol report (channel grid) can be "
            "solved on the spot: POST /api/v1/grid/reports",
        )
    if intake.direct_answer is not None:
        raise IntakeRefused("not_both", "a case is answered directly or solved on the spot")


async def _direct_answer(
    conn: asyncpg.Connection, settings: Settings, intake: ComplaintIntake, received_at: datetime
) -> DirectAnswer | None:
    """即时办结: the knowledge-base answer the operator chose, valid on the local day."""
    if intake.direct_answer is None:
        return None
    today = received_at.astimezone(ZoneInfo(settings.timezone)).date()
    return await knowledge.direct_answer(conn, intake.direct_answer, intake.category_id, today)


async def _claim(
    conn: asyncpg.Connection, settings: Settings, secret: bytes, report: Report,
    closed: set[str], late: IntakeRefused | None = None,
) -> Claim:
    """``late``: the report's time was refused — only its earlier filing (same key) is
    answered."""
    intake, key = report.intake, report.idempotency_key
    keys = merge.problem_keys(intake)
    async with conn.transaction():
        owner = key_owner(report.actor) if key else None
        await merge.lock(conn, [*keys.all(), *([f"idempotency|{owner}|{key}"] if key else [])])
        if key and (earlier := await _by_key(conn, report)):
            return earlier
        if late is not None:
            raise late
        urgency = await _urgency(conn, intake)
        since = report.received_at - timedelta(days=settings.repeat_window_days)
        token = citizen_tokens.issue(secret)
        _check_on_the_spot(intake, report.actor)
        direct = await _direct_answer(conn, settings, intake, report.received_at)
        if direct is not None or intake.solved_on_the_spot:  # settled at intake: never merged
            keys = merge.ProblemKeys(phone=f"direct|{report.digest}|{token[0]}", address=None)
        elif not intake.citizen.reachable:  # no contact (Open311): not "the same citizen" as
            # every other report without one — the same place may still make it a repeat
            keys = merge.ProblemKeys(phone=f"nobody|{report.digest}|{token[0]}",
                                     address=keys.address)
        settled = direct is not None or intake.solved_on_the_spot is not None
        open_case = None if settled else await merge.find_open_case(conn, keys, since, closed)
        if open_case is not None:
            payload = merge.report_payload(intake, report.received_at, report.actor)
            report_id = await merge.add_report(
                conn, open_case, payload, (key, owner), report.digest, token
            )
            return Claim(open_case, report_id, replayed=False)
        case_id = await _new_case_id(conn, settings, report.received_at)
        start = CaseStart(
            case_id=case_id,
            intake=intake,
            urgency=urgency,
            received_at=report.received_at,
            registered_by=report.actor,
            history=None if settled else await history.earlier_cases(
                conn, settings, intake, report.received_at
            ),
            direct_answer=direct,
        )
        await conn.execute(
            "INSERT INTO intakes (case_id, idempotency_key, idempotency_owner, request_hash,"
            " payload, state, token_nonce, token_hash, received_at, phone_key, address_key)"
            " VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $9, $10)",
            case_id, key, owner, report.digest, start.model_dump(mode="json"), *token,
            report.received_at, keys.phone, keys.address,
        )
        return Claim(case_id, None, replayed=False)


async def _complete_intake(
    conn: asyncpg.Connection, client: Client, settings: Settings, claim: Claim
) -> Filed | Retry:
    row = await conn.fetchrow(
        "SELECT state, payload, token_nonce, token_hash FROM intakes WHERE case_id = $1"
        " FOR UPDATE",
        claim.case_id,
    )
    if row is None:
        return Retry.GONE
    case = CaseStart.model_validate(row["payload"])
    if row["state"] == "pending":
        await start_case(client, settings, case)
        await conn.execute("UPDATE intakes SET state = 'started' WHERE case_id = $1", case.case_id)
        # the SMS (or e-mail) with the citizen's link
        if contact := _follow_up_contact(case.registered_intake, case.registered_by):
            await follow_up.enqueue(conn, case.case_id, None, *contact)
    return Filed(case, row["token_nonce"], row["token_hash"])


async def _complete_repeat(
    conn: asyncpg.Connection, client: Client, settings: Settings, claim: Claim
) -> Filed | Retry:
    # Lock order: the repeat's row, then its case's intake row (as settle_pending does).
    mine = await conn.fetchrow(
        "SELECT state, payload, token_nonce, token_hash, refiled_as FROM repeat_reports"
        " WHERE id = $1 FOR UPDATE",
        claim.report_id,
    )
    if mine is None:
        return Retry.GONE
    case_row = await conn.fetchrow(
        "SELECT state, payload FROM intakes WHERE case_id = $1 FOR UPDATE", claim.case_id
    )
    if case_row is None:  # the case's own intake was given up in an outage
        await conn.execute("DELETE FROM repeat_reports WHERE id = $1", claim.report_id)
        return Retry.GONE
    case = CaseStart.model_validate(case_row["payload"])
    if mine["state"] == "pending" and mine["refiled_as"] is not None:
        # The case took it closed and filed it again (并单转立, lean-case-v23): the request
        # died before it knew. Its first filing stands; telling the ended case again would
        # find it gone, and the report would be filed a second time.
        await conn.execute(
            "UPDATE repeat_reports SET state = 'started' WHERE id = $1", claim.report_id
        )
    elif mine["state"] == "pending":
        repeat = merge.repeat_signal(claim.report_id or 0, mine["payload"])
        if not await _tell_case(client, settings, case, case_row["state"] == "started", repeat):
            await conn.execute("DELETE FROM repeat_reports WHERE id = $1", claim.report_id)
            return Retry.CLOSED
        await conn.execute(
            "UPDATE repeat_reports SET state = 'started' WHERE id = $1", claim.report_id
        )
        await conn.execute(
            "UPDATE intakes SET state = 'started' WHERE case_id = $1", claim.case_id
        )
        if contact := _report_contact(mine["payload"]):
            await follow_up.enqueue(conn, claim.case_id, claim.report_id, *contact)
    return Filed(case, mine["token_nonce"], mine["token_hash"])


async def _complete(
    conn: asyncpg.Connection, client: Client, settings: Settings, claim: Claim
) -> Filed | Retry:
    async with conn.transaction():
        if claim.report_id is None:
            return await _complete_intake(conn, client, settings, claim)
        return await _complete_repeat(conn, client, settings, claim)


async def _give_up(conn: asyncpg.Connection, claim: Claim) -> None:
    """Remove a pending row nobody can retry (no Idempotency-Key). Repeats already linked
    to a removed intake find it gone when they complete, and open a case of their own."""
    if claim.report_id is None:
        await conn.execute(
            "DELETE FROM intakes WHERE case_id = $1 AND state = 'pending'", claim.case_id
        )
    else:
        await conn.execute(
            "DELETE FROM repeat_reports WHERE id = $1 AND state = 'pending'", claim.report_id
        )


@dataclass(frozen=True)
class Filing:
    """A filed report: its case, and the citizen's token for this report."""

    case_id: str
    citizen_token: str | None  # None only when the token secret was rotated since (a retry)
    urgency: Urgency
    received_at: datetime
    merged: bool  # linked to the open case of the same problem (并单): no new case
    replayed: bool  # a retry with the same Idempotency-Key: no new case
    report_id: int | None = None  # the repeat report's id when merged (None: the case's own)


def _filing(claim: Claim, filed: Filed, secret: bytes) -> Filing:
    return Filing(
        case_id=claim.case_id,
        citizen_token=citizen_tokens.recompute(secret, filed.token_nonce, filed.token_hash),
        urgency=filed.case.urgency,
        received_at=filed.case.received_at,
        merged=claim.report_id is not None,
        replayed=claim.replayed,
        report_id=claim.report_id,
    )


async def register(
    pool: asyncpg.Pool,
    client: Client,
    settings: Settings,
    intake: ComplaintIntake,
    actor: Actor,
    idempotency_key: str | None,
    *,
    system_key: bool = False,
) -> Filing:
    """File one report: a new case, a repeat of an open one, or (same Idempotency-Key) the
    earlier answer again. Raises :class:`~jiesu.intake.errors.IntakeError`. ``system_key``:
    the key is the system's own (SYSTEM_KEY_PREFIX), not a client's."""
    key = checked_key(idempotency_key, system=system_key)
    check_credit_code(intake)
    check_visible(intake)
    digest = _request_hash(intake)  # of the request as sent: a retry sends it again
    # The title travels where the content does not (every list, the Temporal history, its
    # Web UI): the numbers and addresses that identify a person are masked in it; the
    # description keeps them, behind the content's masking and view log.
    intake = intake.model_copy(update={"title": redact_identifiers(intake.title)})
    try:
        received_at, late = _received_at(intake), None
    except IntakeRefused as refused:
        if key is None:
            raise
        # a retry of a report filed in time gets its answer again, however late it comes (the
        # case's refile of a 并单, activities/refile.py, retried past a day); a new one: refused
        received_at, late = datetime.now(UTC), refused
    report = Report(intake, received_at, actor, key, digest)
    closed: set[str] = set()
    async with pool.acquire() as conn:
        secret = await citizen_tokens.server_secret(conn, settings)
        for _ in range(MAX_ROUNDS):
            claim = await _claim(conn, settings, secret, report, closed, late)
            try:
                filed = await _complete(conn, client, settings, claim)
            except Exception as err:
                if not is_temporal_down(err):
                    raise
                if key is None and not _may_have_reached_temporal(err):
                    await _give_up(conn, claim)
                raise TemporalUnavailable() from err
            if filed is Retry.CLOSED:
                closed.add(claim.case_id)
            elif isinstance(filed, Filed):
                return _filing(claim, filed, secret)
    raise IntakeContended()


# --- reports left pending -------------------------------------------------------------------


@dataclass
class Settled:
    """What :func:`settle_pending` did, by report ("JS…" or "JS…/repeat-<id>")."""

    started: list[str]  # Temporal has it: the row is marked started
    removed: list[str]  # Temporal never got it: the row is removed (nothing left behind)


_PENDING_INTAKES = """
SELECT case_id FROM intakes WHERE state = 'pending' AND created_at < now() - $1::interval
ORDER BY created_at
"""
_PENDING_REPEATS = """
SELECT id, case_id FROM repeat_reports
WHERE state = 'pending' AND created_at < now() - $1::interval ORDER BY created_at
"""


async def _case_exists(client: Client, case_id: str) -> bool:
    try:
        await client.get_workflow_handle(case_id).describe()
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


# A case Temporal no longer has may still have been: its history deleted by the namespace's
# retention (1 day on the dev server) after it closed. The read model and the archive remember.
_KNOWN_ELSEWHERE = """
SELECT EXISTS (SELECT 1 FROM cases WHERE case_id = $1)
    OR EXISTS (SELECT 1 FROM history_archive WHERE case_id = $1)
"""


def _follow_up_contact(
    intake: ComplaintIntake, actor: Actor
) -> tuple[str | None, str | None] | None:
    """(phone, e-mail) the report's intake notice — the citizen's link — is queued to, or None
    when none is queued: a report without contact (an app's), or one the citizen mailed in
    themselves (the mail listener's automatic reply carries the link, once, within its bounds
    against backscatter: jiesu.channels.mail). Whether it goes by SMS or by e-mail is
    follow_up.enqueue's to decide. Before, only a phone was queued to, and a citizen who left
    an e-mail alone (the API, the console, a repeat report) never got a link."""
    citizen = intake.citizen
    mailed_in = intake.channel is Channel.EMAIL and actor.role is Role.CITIZEN
    if citizen.phone or (citizen.email and not mailed_in):
        return citizen.phone, citizen.email
    return None


def _report_contact(payload: dict[str, Any]) -> tuple[str | None, str | None] | None:
    """:func:`_follow_up_contact` of a stored report: an intake row (a CaseStart, by
    ``registered_by``) or a repeat report's (by ``actor``); both keep the intake under
    "intake"."""
    actor = payload.get("registered_by") or payload["actor"]
    return _follow_up_contact(
        ComplaintIntake.model_validate(payload["intake"]), Actor.model_validate(actor)
    )


async def _settle_intake(conn: asyncpg.Connection, client: Client, case_id: str) -> bool | None:
    async with conn.transaction():
        # SKIP LOCKED: a row being completed right now (a retry) is that request's to finish.
        payload = await conn.fetchval(
            "SELECT payload FROM intakes WHERE case_id = $1 AND state = 'pending'"
            " FOR UPDATE SKIP LOCKED",
            case_id,
        )
        if payload is None:
            return None
        if await _case_exists(client, case_id) or await conn.fetchval(_KNOWN_ELSEWHERE, case_id):
            await conn.execute("UPDATE intakes SET state = 'started' WHERE case_id = $1", case_id)
            # The request died before queueing the SMS with the citizen's link: without it the
            # citizen never gets the token that rates, supplements or withdraws the case.
            if contact := _report_contact(payload):
                await follow_up.enqueue(conn, case_id, None, *contact)
            return True
        await conn.execute("DELETE FROM intakes WHERE case_id = $1", case_id)
        return False


_COUNTED_IN_READ_MODEL = """
SELECT EXISTS (SELECT 1 FROM case_events WHERE case_id = $1
               AND kind IN ('repeat_reported', 'repeat_refiled') AND data ->> 'report_id' = $2)
"""
_TAKEN = (EventKind.REPEAT_REPORTED, EventKind.REPEAT_REFILED)


async def _repeat_delivered(
    conn: asyncpg.Connection, client: Client, case_id: str, report_id: int
) -> bool | None:
    """Whether the case has taken this report: counted it (``repeat_reported``) or, reached
    closed, filed it again (``repeat_refiled``, lean-case-v23) — asked of the workflow, or of
    the read model once Temporal's retention has deleted the case. A case too large to answer
    the query (CaseTooLarge) is read in the read model too; a report it does not show yet is
    undecided (None: the next repair asks again), as is one whose workflow does not answer now
    (its worker down: jiesu.client.QUERY_UNANSWERED), and one a closed case whose workflow
    still runs may yet be refiling (its refile reads this row: deleting it lost the report)."""
    try:
        state = await client.get_workflow_handle(case_id).query(
            CASE_STATE_QUERY, result_type=CaseState
        )
    except (WorkflowQueryFailedError, RPCError) as err:
        status = err.status if isinstance(err, RPCError) else None
        if status is not None and status not in {RPCStatusCode.NOT_FOUND, *QUERY_UNANSWERED}:
            raise
        counted = bool(await conn.fetchval(_COUNTED_IN_READ_MODEL, case_id, str(report_id)))
        return counted if status is RPCStatusCode.NOT_FOUND else counted or None
    if any(
        e.kind in _TAKEN and e.data.get("report_id") == str(report_id) for e in state.events
    ):
        return True
    if state.status is Status.CLOSED and await _still_running(client, case_id):
        return None
    return False


async def _still_running(client: Client, case_id: str) -> bool:
    description = await client.get_workflow_handle(case_id).describe()
    return description.status is WorkflowExecutionStatus.RUNNING


async def _settle_repeat(
    conn: asyncpg.Connection, client: Client, report_id: int, case_id: str
) -> bool | None:
    async with conn.transaction():
        # Lock order as in _complete_repeat: the repeat's row, then its case's intake row.
        payload = await conn.fetchval(
            "SELECT payload FROM repeat_reports WHERE id = $1 AND state = 'pending'"
            " FOR UPDATE SKIP LOCKED",
            report_id,
        )
        if payload is None:
            return None
        await conn.execute("SELECT 1 FROM intakes WHERE case_id = $1 FOR UPDATE", case_id)
        delivered = await _repeat_delivered(conn, client, case_id, report_id)
        if delivered is None:
            return None
        if delivered:
            await conn.execute(
                "UPDATE repeat_reports SET state = 'started' WHERE id = $1", report_id
            )
            if contact := _report_contact(payload):  # as for an intake: this report's link
                await follow_up.enqueue(conn, case_id, report_id, *contact)
            return True
        await conn.execute("DELETE FROM repeat_reports WHERE id = $1", report_id)
        return False


async def settle_pending(pool: asyncpg.Pool, client: Client, older_than: timedelta) -> Settled:
    """Settle reports left ``pending`` for longer than ``older_than`` (a crash between the
    two transactions, a key never retried, a timeout that may or may not have reached
    Temporal) by what Temporal knows: an intake whose workflow exists, or a repeat its case
    has counted, is marked started; anything else is removed, so that no row stays without
    its case. Their clients were answered with an error (or not at all), so removing is
    what they were told. Choose ``older_than`` well above a client's retry horizon."""
    settled = Settled(started=[], removed=[])
    async with pool.acquire() as conn:
        for row in await conn.fetch(_PENDING_INTAKES, older_than):
            outcome = await _settle_intake(conn, client, row["case_id"])
            if outcome is not None:
                (settled.started if outcome else settled.removed).append(row["case_id"])
        for row in await conn.fetch(_PENDING_REPEATS, older_than):
            outcome = await _settle_repeat(conn, client, row["id"], row["case_id"])
            name = f"{row['case_id']}/repeat-{row['id']}"
            if outcome is not None:
                (settled.started if outcome else settled.removed).append(name)
    return settled
