"""The supervisor's two overdue numbers: 超时工单 (派单督办) and 超时量 (统计考评).

They count different things on purpose (docs/indicators.md, docs/supervision.md): the board
lists the cases late *now* — open, any step past its deadline (签收, 联系, 办结, 待派单), whenever
received (``jiesu.case.sla.late_sql``); 超时量 counts the cases received in the period whose
finish deadline passed without a reply, recorded as a finish breach, closed since or not
(``jiesu.stats.indicators.OVERDUE``). Each page says which it is, so that a supervisor who reads
"超时工单 1 件" and "超时量 0" sees why; and the board's count is the number of late cases, not
the number of rows it has room for.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from helpers import eventually, fast_forward_past, handle_of, register, signed_in
from statcases import case_row, insert_cases
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.console import supervision as supervision_page
from jiesu.case.domain import Status, sql_status
from jiesu.case.sla import late_sql
from jiesu.stats import rollup
from jiesu.stats.indicators import OVERDUE

BOARD_ROWS = getattr(supervision_page, "BOARD_ROWS", 200)  # 200 before it had a name


_BOARD_RULE = f"status <> {sql_status(Status.CLOSED)} AND {late_sql('$1')}"
"""超时工单's rule (api/console/supervision.py): open cases late now."""


async def _late_now(pool: asyncpg.Pool) -> int:
    return await pool.fetchval(f"SELECT count(*) FROM cases WHERE {_BOARD_RULE}", datetime.now(UTC))


async def test_a_case_late_to_accept_is_on_the_board_not_in_the_overdue_figure_and_both_say_so(
    api: httpx.AsyncClient, client: Client, env: WorkflowEnvironment, pool: asyncpg.Pool,
    settings: Any,
) -> None:  # fmt: skip
    """A real case nobody accepted: past its accept deadline (time skipping) it is on 超时工单
    (late with 签收) and is not in 超时量 (no finish breach): the two numbers disagree by their
    definitions, and each page says what its number counts and names the other."""
    case_id = (await register(api))["case_id"]

    async def deadlines() -> Any:
        return await pool.fetchrow(
            "SELECT accept_deadline FROM cases WHERE case_id = $1 AND status = 'assigned'"
            " AND accept_deadline IS NOT NULL", case_id,
        )  # fmt: skip

    accept = (await eventually(deadlines, within=30))["accept_deadline"]
    await fast_forward_past(env, handle_of(client, case_id), accept)

    async def breached() -> bool:
        return bool(await pool.fetchval(
            "SELECT 'accept' = ANY(breaches) FROM cases WHERE case_id = $1", case_id))  # fmt: skip

    await eventually(breached, within=30)
    await rollup.ensure_fresh(pool, settings.timezone)
    in_figure = await pool.fetchval(
        f"SELECT {OVERDUE.sql} FROM cases c WHERE c.case_id = $1", case_id
    )
    assert in_figure is False  # 超时量's own rule: no finish breach, not counted
    on_board = await pool.fetchval(  # the board's rule (its query's condition): listed
        f"SELECT {_BOARD_RULE} FROM cases WHERE case_id = $2", datetime.now(UTC), case_id
    )
    assert on_board is True

    supervisor = await signed_in(api, "supervisor")
    try:
        board = (await supervisor.get("/console/supervision")).text
        scope = re.search(r'id="overdue-scope"[^>]*>(.*?)</p>', board, re.S)
        assert scope is not None, "the board does not say what it counts"
        for words in ("当前", "未办结", "签收", "不限受理日期", "超时量"):
            assert words in scope[1], (words, scope[1])
        figures = (await supervisor.get("/console/figures")).text
        note = re.search(r'id="overdue-note"[^>]*>(.*?)</p>', figures, re.S)
        assert note is not None, "统计考评 does not say what 超时量 counts"
        for words in ("近30天受理", "办结时限", "含其后已办结", "签收、联系超时不计入", "超时工单"):
            assert words in note[1], (words, note[1])
    finally:
        await supervisor.aclose()


@pytest.fixture
async def many_late(pool: asyncpg.Pool) -> AsyncIterator[list[dict[str, Any]]]:
    """More late cases than the board lists (hand-made rows: not accepted, 5 hours after
    receipt, past the 4-hour accept deadline), removed after the test."""
    received = datetime.now(UTC) - timedelta(hours=5)
    # no finish deadline: listed after every other test's late case (NULLS LAST), so that
    # while they are here they push no real case off the board a test running beside reads
    rows = [{**case_row(received, status="assigned", accepted=None, replied=None, rating=None),
             "finish_deadline": None} for _ in range(BOARD_ROWS + 1)]  # fmt: skip
    await insert_cases(pool, rows)
    yield rows
    await pool.execute("DELETE FROM cases WHERE case_id = ANY($1)", [r["case_id"] for r in rows])


async def test_the_overdue_board_counts_every_late_case_not_the_rows_it_lists(
    api: httpx.AsyncClient, pool: asyncpg.Pool, many_late: list[dict[str, Any]]
) -> None:
    """超时工单 said "200 件" with 201 or 2,000 late cases: the count was the rows listed (the
    board lists 200). It says how many are late, and that it lists the first 200."""
    supervisor = await signed_in(api, "supervisor")
    try:
        board = (await supervisor.get("/console/supervision")).text
    finally:
        await supervisor.aclose()
    late = await _late_now(pool)
    assert late > BOARD_ROWS
    heading = re.search(r"<h2>超时工单 <small>(.*?)</small>", board, re.S)
    assert heading is not None, board
    shown = re.search(r"共 (\d+) 件", heading[1])
    assert shown is not None, heading[1]
    # the cases of other tests may change meanwhile: the count is this rule's, not 200
    assert abs(int(shown[1]) - late) <= 5, (heading[1], late)
    assert f"列出最早到期的 {BOARD_ROWS} 件" in heading[1], heading[1]
