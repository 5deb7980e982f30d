"""`jiesu repair intakes` (filing.settle_pending) after a request died between Temporal
starting its case and the `started` mark: the citizen still gets the SMS with their link, and
a case whose history Temporal's retention deleted keeps its intake (power-cut review)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg
import pytest
from helpers import complaint, eventually, handle_of
from temporalio.client import Client
from test_api_errors import FAILING_TASK_TIMEOUT, not_the_case_worker, query_refused, silent
from test_archive import forget_in_temporal

from jiesu.case.domain import Actor, ComplaintIntake, Role
from jiesu.config import Settings
from jiesu.intake import filing, follow_up

OPERATOR = Actor(role=Role.OPERATOR, name="power-cut-operator")


class PowerCut(BaseException):
    """The process dies here (not an Exception: nothing may handle it)."""


async def _file_and_die(
    monkeypatch: pytest.MonkeyPatch, pool: asyncpg.Pool, client: Client, settings: Settings,
    body: dict,
) -> None:
    """File ``body`` and die at its follow-up SMS: after Temporal has the report (a new case,
    or a repeat the case counted), before its row is marked ``started``."""
    with monkeypatch.context() as patch:

        async def die(*args: object) -> None:
            raise PowerCut

        patch.setattr(follow_up, "enqueue", die)
        with pytest.raises(PowerCut):
            await filing.register(pool, client, settings, ComplaintIntake.model_validate(body),
                                  OPERATOR, None)


async def _cut_after_start(
    monkeypatch: pytest.MonkeyPatch, pool: asyncpg.Pool, client: Client, settings: Settings,
    body: dict,
) -> str:
    """File a report without an Idempotency-Key and die after Temporal started its case but
    before the `started` mark committed (the last step before the commit is the follow-up)."""
    await _file_and_die(monkeypatch, pool, client, settings, body)
    citizen = body["citizen"]
    case_id = await pool.fetchval(
        "SELECT case_id FROM intakes WHERE payload->'intake'->'citizen' @> $1::jsonb",
        {k: citizen[k] for k in ("phone", "email") if k in citizen},
    )
    assert await pool.fetchval("SELECT state FROM intakes WHERE case_id = $1", case_id) == \
        "pending"
    await handle_of(client, case_id).describe()  # Temporal has the case
    await pool.execute("UPDATE intakes SET created_at = now() - interval '2 hours'"
                       " WHERE case_id = $1", case_id)
    return case_id


async def _pending_repeat(
    monkeypatch: pytest.MonkeyPatch, pool: asyncpg.Pool, client: Client, settings: Settings
) -> tuple[filing.Filed, asyncpg.Record]:
    """A case, and a second report of its problem (并单) that the case counted but whose
    request died before marking its row (pending, older than the repair's horizon)."""
    body = complaint()
    first = await filing.register(pool, client, settings, ComplaintIntake.model_validate(body),
                                  OPERATOR, None)
    await _file_and_die(monkeypatch, pool, client, settings, body)
    report = await pool.fetchrow(
        "SELECT id, state FROM repeat_reports WHERE case_id = $1", first.case_id
    )
    assert report["state"] == "pending"
    await _counted_and_aged(pool, first.case_id, report["id"])
    return first, report


async def _counted_and_aged(pool: asyncpg.Pool, case_id: str, report_id: int) -> None:
    """Wait until the read model shows the case counted the repeat report, then make the
    report's row older than the repair's horizon (an hour)."""
    await eventually(lambda: pool.fetchval(
        "SELECT 1 FROM case_events WHERE case_id = $1 AND kind = 'repeat_reported'"
        " AND data ->> 'report_id' = $2", case_id, str(report_id)))  # fmt: skip
    await pool.execute("UPDATE repeat_reports SET created_at = now() - interval '2 hours'"
                       " WHERE id = $1", report_id)


async def _forget_in_temporal(client: Client, case_id: str) -> None:
    """The case ends and Temporal's retention (1 day on the dev server) deletes its history."""
    await handle_of(client, case_id).terminate("closed")
    await forget_in_temporal(client, case_id)


async def test_a_settled_intake_still_gets_its_follow_up_sms(
    monkeypatch: pytest.MonkeyPatch, pool: asyncpg.Pool, client: Client, settings: Settings
) -> None:
    case_id = await _cut_after_start(monkeypatch, pool, client, settings, complaint())
    try:
        settled = await filing.settle_pending(pool, client, timedelta(hours=1))
        assert case_id in settled.started
        # The citizen's only way to its token: the intake SMS. The request died unanswered.
        assert await pool.fetchval(
            "SELECT count(*) FROM notifications WHERE key = $1", f"{case_id}:follow-up"
        ) == 1, "case started, but the citizen's intake SMS (token link) was never queued"
    finally:
        await handle_of(client, case_id).terminate("test finished")


async def test_a_settled_intake_of_a_citizen_with_only_an_email_gets_its_link_by_email(
    monkeypatch: pytest.MonkeyPatch, pool: asyncpg.Pool, client: Client, settings: Settings
) -> None:
    """The same repair for a citizen who left an e-mail address and no phone: it queued the
    link only to a phone, so this citizen never got one. Now it is queued for the e-mail."""
    mail = f"settled-{uuid.uuid4().hex[:8]}@example.cn"
    body = complaint(citizen={"name": "孙八", "email": mail})
    case_id = await _cut_after_start(monkeypatch, pool, client, settings, body)
    try:
        settled = await filing.settle_pending(pool, client, timedelta(hours=1))
        assert case_id in settled.started
        queued = await pool.fetch(
            "SELECT channel, status FROM notifications WHERE key = $1", f"{case_id}:follow-up"
        )
        assert [tuple(r) for r in queued] == [("email", "pending")]
    finally:
        await handle_of(client, case_id).terminate("test finished")


async def test_settling_after_retention_keeps_the_intake_of_a_case_that_existed(
    monkeypatch: pytest.MonkeyPatch, pool: asyncpg.Pool, client: Client, settings: Settings
) -> None:
    case_id = await _cut_after_start(monkeypatch, pool, client, settings, complaint())
    await eventually(lambda: pool.fetchval("SELECT 1 FROM cases WHERE case_id = $1", case_id))
    # the case ends and Temporal's retention (1 day on the dev server) deletes its history
    # before anybody runs `jiesu repair intakes`
    await _forget_in_temporal(client, case_id)
    await filing.settle_pending(pool, client, timedelta(hours=1))
    assert await pool.fetchval("SELECT 1 FROM cases WHERE case_id = $1", case_id) == 1
    assert await pool.fetchval("SELECT count(*) FROM intakes WHERE case_id = $1", case_id) == 1, \
        "the case's intake (description, citizen, token hash) was deleted by the repair"


async def test_a_counted_repeat_outlives_its_case_in_temporal_and_gets_its_sms(
    monkeypatch: pytest.MonkeyPatch, pool: asyncpg.Pool, client: Client, settings: Settings
) -> None:
    """A second report of an open problem (并单): the case counted it, the request died before
    marking its row; by the repair, Temporal's retention has deleted the case. The read model
    still shows the case counted it: the row is kept and the citizen's SMS queued."""
    first, report = await _pending_repeat(monkeypatch, pool, client, settings)
    await _forget_in_temporal(client, first.case_id)
    settled = await filing.settle_pending(pool, client, timedelta(hours=1))
    assert f"{first.case_id}/repeat-{report['id']}" in settled.started
    key = f"{follow_up.recipient(first.case_id, report['id'])}:follow-up"
    assert await pool.fetchval("SELECT count(*) FROM notifications WHERE key = $1", key) == 1


async def test_a_repeat_of_a_case_too_large_to_query_is_settled(
    monkeypatch: pytest.MonkeyPatch, pool: asyncpg.Pool, client: Client, settings: Settings
) -> None:
    """A case past 1.5 MB refuses the ``state`` query (CaseTooLarge, since 97d62a1); the
    repair asked it whether the case had counted a pending repeat, and the refusal (not an
    RPCError) ended ``settle_pending`` for every report after it. The case's repeats are read
    in the read model instead (a report it has not shown yet is left for the next repair)."""
    from test_case_size import repeat

    body = complaint()
    first = await filing.register(pool, client, settings, ComplaintIntake.model_validate(body),
                                  OPERATOR, None)
    h = handle_of(client, first.case_id)
    try:
        for n in range(110):  # ~1.6 MB of long reports: the query is refused
            await h.signal("repeat_report", repeat(n))
        await _file_and_die(monkeypatch, pool, client, settings, body)
        report = await pool.fetchrow(
            "SELECT id, state FROM repeat_reports WHERE case_id = $1 AND state = 'pending'",
            first.case_id,
        )
        await eventually(lambda: pool.fetchval(
            "SELECT 1 FROM case_events WHERE case_id = $1 AND kind = 'repeat_reported'"
            " AND data ->> 'report_id' = $2", first.case_id, str(report["id"])),
            within=60)  # fmt: skip
        await pool.execute("UPDATE repeat_reports SET created_at = now() - interval '2 hours'"
                           " WHERE id = $1", report["id"])
        settled = await filing.settle_pending(pool, client, timedelta(hours=1))
        assert f"{first.case_id}/repeat-{report['id']}" in settled.started
    finally:
        await h.terminate("test finished")


async def test_a_repeat_of_a_case_that_cannot_answer_is_settled(
    monkeypatch: pytest.MonkeyPatch, pool: asyncpg.Pool, client: Client, settings: Settings
) -> None:
    """The repair asks the case whether it counted a pending repeat. A case whose workflow
    task fails (or whose worker is gone a while) is refused by Temporal with
    FAILED_PRECONDITION, which ended ``settle_pending`` for every report after it. It is an
    unanswered query: the read model says whether the case counted the report."""
    first, report = await _pending_repeat(monkeypatch, pool, client, settings)
    orphan = await silent(client, first.case_id, task_timeout=FAILING_TASK_TIMEOUT)
    try:
        async with not_the_case_worker(client, (await orphan.describe()).task_queue):
            await eventually(lambda: query_refused(orphan, "Workflow Task in failed state"),
                             within=60, interval=0.5)  # fmt: skip
            settled = await filing.settle_pending(pool, client, timedelta(hours=1))
        assert f"{first.case_id}/repeat-{report['id']}" in settled.started
    finally:
        await orphan.terminate("test finished")
