"""The read-model writer: the case row and its append-only event list in PostgreSQL.

Idempotent by construction: events are keyed by (case_id, seq) and inserted with
ON CONFLICT DO NOTHING; the case row only ever moves to a newer version. A retried or
re-delivered activity therefore never duplicates or rolls back anything. Local projections
(cases since lean-case-v1) write with ``overwrite``: the last write of a seq wins, so that a
retried workflow task's write replaces one its abandoned attempt made.

The same transaction stores the notices the new events cause (``jiesu.notify.notices``) in the
``notifications`` outbox, keyed by their idempotency key: written exactly when the events are.
With ``overwrite`` the rewritten seqs' notices follow their events while nobody has claimed them
(see _OVERWRITE_NOTICE); one already sent stays sent.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from jiesu.case.domain import CaseProjection, Status
from jiesu.notify import templates
from jiesu.notify.notices import notices_for
from jiesu.readmodel import accountability
from jiesu.readmodel.changes import NOTIFY_SQL, notify_payload
from jiesu.stats.attribution import handlings
from jiesu.stats.indicators import case_resolved

_UPSERT_CASE = """
INSERT INTO cases (
    case_id, version, status, title, category_id, grid_id, channel, urgency, department_id,
    received_at, accept_deadline, contact_deadline, finish_deadline, accepted_at, contacted_at,
    replied_at, closed_at, rating, resolution, breaches, state, repeat_count, return_count,
    extension_count, rehandle_count, escalation_level, handled_level, resolved,
    answered_directly, solved_in_grid, rejected_return_count, ladder_active, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
        $20, $21, $22, $23, $24, $25, $26,
        (SELECT level FROM departments WHERE id = $27), $28, $29, $30, $31, $32, now())
ON CONFLICT (case_id) DO UPDATE SET
    version = excluded.version, status = excluded.status, department_id = excluded.department_id,
    urgency = excluded.urgency, accept_deadline = excluded.accept_deadline,
    contact_deadline = excluded.contact_deadline, finish_deadline = excluded.finish_deadline,
    accepted_at = excluded.accepted_at, contacted_at = excluded.contacted_at,
    replied_at = excluded.replied_at, closed_at = excluded.closed_at, rating = excluded.rating,
    resolution = excluded.resolution, breaches = excluded.breaches, state = excluded.state,
    repeat_count = excluded.repeat_count, return_count = excluded.return_count,
    extension_count = excluded.extension_count, rehandle_count = excluded.rehandle_count,
    escalation_level = excluded.escalation_level,
    -- the level the reply was given at (docs/statistics.md, Levels): kept while the reply is
    -- the same one, not read again after the department's level changed
    handled_level = CASE WHEN cases.replied_at IS NOT DISTINCT FROM excluded.replied_at
        AND cases.handled_level IS NOT NULL THEN cases.handled_level
        ELSE excluded.handled_level END,
    resolved = excluded.resolved, answered_directly = excluded.answered_directly,
    solved_in_grid = excluded.solved_in_grid,
    rejected_return_count = excluded.rejected_return_count,
    ladder_active = excluded.ladder_active, updated_at = now()
WHERE cases.version < excluded.version
"""

# A local projection (lean-case-v1) writes before its workflow task commits: a task that is
# retried (its worker died, it timed out) runs again with a later workflow time, so the same
# seq may come again with another time. The history keeps the committed attempt, and the
# read model must end up equal to it: the later write of a seq wins, and a case row of the
# same version is rewritten.
_UPSERT_CASE_OVERWRITE = _UPSERT_CASE.replace(
    "WHERE cases.version < excluded.version", "WHERE cases.version <= excluded.version"
)

_INSERT_EVENT = """
INSERT INTO case_events (case_id, seq, kind, at, actor, data)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (case_id, seq) DO NOTHING
"""

_OVERWRITE_EVENT = _INSERT_EVENT.replace(
    "DO NOTHING",
    "DO UPDATE SET kind = excluded.kind, at = excluded.at, actor = excluded.actor,"
    " data = excluded.data",
)

_INSERT_NOTICE = """
INSERT INTO notifications (
    key, case_id, event_seq, event_kind, recipient_kind, recipient_id, channel, subject, body)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (key) DO NOTHING
"""

# A local projection's rewrite of a seq (see _UPSERT_CASE_OVERWRITE) rewrites its notices too: a
# notice of the abandoned attempt is replaced by the committed attempt's notice of the same key,
# and one the committed attempt does not cause is deleted, as long as nobody has claimed it
# (``pending``). A notice already claimed (``sending``) or ``sent`` cannot be called back: it
# may reach its recipient although the history has another event at its seq.
_OVERWRITE_NOTICE = _INSERT_NOTICE.replace(
    "DO NOTHING",
    "DO UPDATE SET event_seq = excluded.event_seq, event_kind = excluded.event_kind,"
    " recipient_kind = excluded.recipient_kind, recipient_id = excluded.recipient_id,"
    " channel = excluded.channel, subject = excluded.subject, body = excluded.body"
    " WHERE notifications.status = 'pending'",
)

_DELETE_ABANDONED_NOTICES = """
DELETE FROM notifications
WHERE case_id = $1 AND status = 'pending' AND event_seq = ANY($2::int[])
  AND NOT (key = ANY($3::text[]))
"""

_CASE_EVENTS = "SELECT seq, kind, at, actor, data FROM case_events WHERE case_id = $1 ORDER BY seq"

# The projection's way: its handlings are cleared in the same round trip as its events are read
# back (a data-modifying WITH runs whether or not the query reads it; the events it has just
# inserted are there, so there is always something to write back). The levels the cleared
# handlings replied at come back after the events, as rows without a seq (see _kept_levels).
_CASE_EVENTS_CLEARING_HANDLINGS = """
WITH cleared AS (DELETE FROM case_handlings WHERE case_id = $1
                 RETURNING department_id, replied_at, handled_level)
SELECT seq, kind, at, actor, data, NULL AS department_id, NULL::timestamptz AS replied_at,
    NULL AS handled_level
FROM case_events WHERE case_id = $1
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, department_id, replied_at, handled_level
FROM cleared WHERE handled_level IS NOT NULL
ORDER BY seq NULLS LAST
"""
_CLEAR_HANDLINGS = """
DELETE FROM case_handlings WHERE case_id = $1
RETURNING department_id, replied_at, handled_level
"""

_INSERT_HANDLING = """
INSERT INTO case_handlings (
    case_id, department_id, first_round, last_round, assigned_at, released_at, accept_deadline,
    contact_deadline, finish_deadline, accepted_at, contacted_at, replied_at, rating, resolved,
    handled_level, breaches, repeat_count, return_count, extension_count, replied_by,
    accepted_by, rejected_return_count)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,
        CASE WHEN $12::timestamptz IS NOT NULL
            THEN coalesce($22::text, (SELECT level FROM departments WHERE id = $2)) END,
        $15, $16, $17, $18, $19, $20, $21)
"""

# (department, its reply's time) → the level it replied at, of a case's handlings as they were
Levels = dict[tuple[str, Any], str]


def _kept_levels(rows: list[asyncpg.Record]) -> Levels:
    """The levels the handlings just cleared replied at: a handling whose reply is the same
    one keeps its level (docs/statistics.md, Levels) — a department's level changed since
    does not rewrite where a case was handled."""
    return {(r["department_id"], r["replied_at"]): r["handled_level"]
            for r in rows if r["handled_level"] is not None}  # fmt: skip


async def write_handlings(conn: asyncpg.Connection, case_id: str, status: Status) -> int | None:
    """Replace the case's handlings (fair attribution) by those of its full event list; the
    number written, or None for a case without events (none is projected so; a row made by
    hand keeps what it has). The caller holds the case's row lock (the projection's upsert,
    or the backfill's ``FOR UPDATE``), so two writers never interleave delete and insert."""
    events = await conn.fetch(_CASE_EVENTS, case_id)
    if not events:
        return None
    kept = _kept_levels(await conn.fetch(_CLEAR_HANDLINGS, case_id))
    return await _insert_handlings(conn, case_id, status, events, kept)


async def _insert_handlings(
    conn: asyncpg.Connection, case_id: str, status: Status, events: list[asyncpg.Record],
    kept: Levels,
) -> int:
    """The handlings of ``events`` (the case's whole list), its old ones already deleted;
    ``kept``: the levels they replied at."""
    rows = handlings(events)
    await conn.executemany(
        _INSERT_HANDLING,
        [
            (case_id, h.department_id, h.first_round, h.last_round, h.assigned_at,
             h.released_at, h.accept_deadline, h.contact_deadline, h.finish_deadline,
             h.accepted_at, h.contacted_at, h.replied_at, h.rating.value if h.rating else None,
             h.resolved(status), h.breaches, h.repeat_count, h.return_count,
             h.extension_count, h.replied_by, h.accepted_by, h.rejected_return_count,
             kept.get((h.department_id, h.replied_at)))
            for h in rows
        ],
    )  # fmt: skip
    return len(rows)


def _notice(case_id: str, state: dict[str, Any], events: list[asyncpg.Record] | None) -> str:
    """What the NOTIFY says (jiesu.readmodel.changes): the case as written, when the
    transaction read its events back; the case id alone when it did not."""
    if events is None:
        return case_id
    as_stored = [
        {"seq": e["seq"], "kind": e["kind"], "at": e["at"].isoformat(), "actor": e["actor"],
         "data": e["data"]}
        for e in events
    ]  # fmt: skip
    return notify_payload(case_id, state, as_stored)


def _statistics_columns(projection: CaseProjection) -> tuple[str | None, bool | None]:
    """For jiesu/stats/indicators.py: the department that replied (its level is the case's
    handled_level; NULL until a reply) and ``resolved`` (see
    jiesu.stats.indicators.case_resolved)."""
    s = projection.state
    replier = (s.reply.by.department_id or s.department_id) if s.reply else None
    outcome = s.reply.outcome if s.reply else None
    return replier, case_resolved(s.status, outcome, s.rating, replied=s.reply is not None)


async def write_case(
    pool: asyncpg.Pool, projection: CaseProjection, *, overwrite: bool = False
) -> None:
    """Store the projection's new events, the newer case row and the notices they cause, in
    one transaction (idempotent: a repeated call changes nothing). ``overwrite``: for local
    projections, a later write of the same seq or version wins (see _OVERWRITE_EVENT)."""
    s = projection.state
    d = s.deadlines
    state = s.model_dump(mode="json", exclude={"events"})
    async with pool.acquire() as conn, conn.transaction():
        await conn.executemany(
            _OVERWRITE_EVENT if overwrite else _INSERT_EVENT,
            [
                (
                    s.case_id,
                    e.seq,
                    e.kind.value,
                    e.at,
                    e.actor.model_dump(mode="json"),
                    e.data,
                )
                for e in projection.new_events
            ],
        )
        written = await conn.execute(
            _UPSERT_CASE_OVERWRITE if overwrite else _UPSERT_CASE,
            s.case_id,
            projection.version,
            s.status.value,
            s.title,
            s.category_id,
            s.grid_id,
            s.channel.value,
            s.urgency.value,
            s.department_id,
            s.received_at,
            d.accept if d else None,
            d.contact if d else None,
            d.finish if d else None,
            s.accepted_at,
            s.contacted_at,
            s.reply.at if s.reply else None,
            s.closed_at,
            s.rating.value if s.rating else None,
            s.resolution.value if s.resolution else None,
            [b.kind.value for b in s.breaches],
            state,
            s.repeat_count,
            len(s.returned_by),
            s.extension_count,
            s.unsatisfied_rounds,
            int(s.escalation_level),
            *_statistics_columns(projection),
            s.direct_answer is not None,
            s.solved_on_the_spot is not None,
            s.rejected_returns,
            s.escalation is not None and s.escalation.active,  # 督办中 (migration 0050)
        )
        await accountability.store(conn, s.case_id, projection.new_events)
        events = None
        if written != "INSERT 0 0":  # the row moved to this version: its handlings follow
            rows = await conn.fetch(_CASE_EVENTS_CLEARING_HANDLINGS, s.case_id)
            events = [r for r in rows if r["seq"] is not None]
            kept = _kept_levels([r for r in rows if r["seq"] is None])
            await _insert_handlings(conn, s.case_id, s.status, events, kept)
        if projection.new_events:  # delivered at commit: whoever waits for them (changes.py)
            await conn.execute(NOTIFY_SQL, _notice(s.case_id, state, events))
        notices = notices_for(s, projection.new_events)
        if overwrite and projection.new_events:
            await conn.execute(
                _DELETE_ABANDONED_NOTICES, s.case_id, [e.seq for e in projection.new_events],
                [n.key for n in notices],
            )
        wording = await templates.load(conn) if notices else {}
        await conn.executemany(
            _OVERWRITE_NOTICE if overwrite else _INSERT_NOTICE,
            [
                (n.key, n.case_id, n.event_seq, n.event_kind.value, n.recipient_kind,
                 n.recipient_id, n.channel, n.subject, n.body)
                for n in (templates.apply(notice, wording) for notice in notices)
            ],
        )
