"""The boards of 派单督办 say how many rows their rule finds, not how many they list.

Each board lists its first 200 rows (jiesu.readmodel.boards.BOARD_ROWS); its heading counted
the rows listed, so a supervisor read "200 件" with 201 or 2,000 cases waiting. Each test here
puts more hand-made rows on one board than it lists and reads the heading: the count of the
board's own rule (written again here, as the board's query has it), and which rows it lists.

The hand-made rows sort after every real case on their board (received in 2091, or an
accountability record of 1991 on a newest-first list), so that while they are here no real
case of another test is pushed off the board; none has a deadline (none is late: 超时工单 and
its count are not touched), and each is deleted after its test.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from helpers import signed_in
from statcases import case_row, insert_cases

from api.console import supervision as supervision_page

BOARD_ROWS = getattr(supervision_page, "BOARD_ROWS", 200)  # 200 before it had a name
LATER = datetime(2091, 3, 1, tzinfo=UTC)  # after every real case (a board's oldest-first)
EARLIER = datetime(1991, 3, 1, tzinfo=UTC)  # before every real record (a newest-first board)
_serial = itertools.count(1)

# each board's rule, as its query has it (api/console/supervision.py, jiesu/readmodel)
_QUEUE_RULE = "SELECT count(*) FROM cases WHERE status IN ('dispatching', 'reassigning')"
_LADDER_RULE = "SELECT count(*) FROM cases WHERE status <> 'closed' AND ladder_active"
_INCOMPLETE_RULE = (
    "SELECT count(*) FROM accountability_records WHERE cardinality(persons) = 0 OR decision = ''"
)
_EXTENSIONS_RULE = """
SELECT count(*) FROM cases c CROSS JOIN LATERAL (
    SELECT kind FROM case_events WHERE case_id = c.case_id
      AND kind IN ('extension_requested', 'extension_decided', 'reassigned', 'closed')
    ORDER BY seq DESC LIMIT 1) e
WHERE e.kind = 'extension_requested' AND c.status IN ('assigned', 'handling')
"""


def _handmade(status: str, n: int, **columns: Any) -> dict[str, Any]:
    """A case of no deadline received in 2091 (``n`` minutes after LATER)."""
    row = case_row(LATER + timedelta(minutes=n), status=status, accepted=None, replied=None,
                   rating=None)  # fmt: skip
    return {**row, "case_id": f"BD{next(_serial):06d}-{n:04d}", "accept_deadline": None,
            "contact_deadline": None, "finish_deadline": None, **columns}  # fmt: skip


@pytest.fixture
async def cleanup(pool: asyncpg.Pool) -> AsyncIterator[list[str]]:
    """The hand-made case numbers to delete after the test (cases, events, records)."""
    made: list[str] = []
    yield made
    for table in ("accountability_records", "case_events", "cases"):
        await pool.execute(f"DELETE FROM {table} WHERE case_id = ANY($1)", made)


async def _heading(api: httpx.AsyncClient, board: str) -> str:
    supervisor = await signed_in(api, "supervisor")
    try:
        page = (await supervisor.get("/console/supervision")).text
    finally:
        await supervisor.aclose()
    heading = re.search(rf"<h2>{board} <small[^>]*>(.*?)</small>", page, re.S)
    assert heading is not None, page
    return heading[1]


async def _says_the_rules_count(
    api: httpx.AsyncClient, pool: asyncpg.Pool, board: str, rule: str, listed: str
) -> None:
    """The heading of ``board`` counts what ``rule`` finds and says it lists ``listed``."""
    heading = await _heading(api, board)
    total = await pool.fetchval(rule)
    assert total > BOARD_ROWS
    shown = re.search(r"共 (\d+) 件", heading)
    assert shown is not None, heading
    # real cases of the tests before may still move meanwhile: the rule's count, not 200
    assert abs(int(shown[1]) - total) <= 5, (heading, total)
    assert f"列出{listed} {BOARD_ROWS} 件" in heading, heading


async def test_the_dispatch_queue_counts_every_waiting_case_not_the_rows_it_lists(
    api: httpx.AsyncClient, pool: asyncpg.Pool, cleanup: list[str]
) -> None:
    """待派单队列 said "200 件（含改派中）" with 201 cases waiting for the centre."""
    rows = [_handmade("dispatching", n, department_id=None) for n in range(BOARD_ROWS + 1)]
    cleanup.extend(r["case_id"] for r in rows)
    await insert_cases(pool, rows)
    await _says_the_rules_count(api, pool, "待派单队列", _QUEUE_RULE, "最早受理的")


async def test_the_ladder_board_counts_every_supervised_case_not_the_rows_it_lists(
    api: httpx.AsyncClient, pool: asyncpg.Pool, cleanup: list[str]
) -> None:
    """督办中的工单 said "200 件" with 201 open cases on the supervision ladder (level 1: after
    every real case of a higher level, then by receipt)."""
    rows = [_handmade("handling", n, escalation_level=1, ladder_active=True)
            for n in range(BOARD_ROWS + 1)]
    cleanup.extend(r["case_id"] for r in rows)
    await insert_cases(pool, rows)
    await _says_the_rules_count(api, pool, "督办中的工单", _LADDER_RULE, "督办级别最高的")


async def test_the_extension_board_counts_every_pending_request_not_the_rows_it_lists(
    api: httpx.AsyncClient, pool: asyncpg.Pool, cleanup: list[str]
) -> None:
    """延期待审 said "200 件" with 201 extension requests waiting (no 审批期限, asked in 2091:
    after every real request)."""
    rows = [_handmade("handling", n) for n in range(BOARD_ROWS + 1)]
    cleanup.extend(r["case_id"] for r in rows)
    await insert_cases(pool, rows)
    await pool.executemany(
        "INSERT INTO case_events (case_id, seq, kind, at, actor, data)"
        " VALUES ($1, 1, 'extension_requested', $2, $3, $4)",
        [(r["case_id"], r["received_at"], {}, {"reasons": "手工延期"}) for r in rows],
    )
    await _says_the_rules_count(api, pool, "延期待审", _EXTENSIONS_RULE, "审批期限最早的")


async def test_the_accountability_board_counts_every_incomplete_record_not_the_rows_it_lists(
    api: httpx.AsyncClient, pool: asyncpg.Pool, cleanup: list[str]
) -> None:
    """问责待完善 said "200 件" with 201 records waiting for their persons and decision
    (recorded in 1991: after every real record, newest first)."""
    made = [f"BD{next(_serial):06d}-A" for _ in range(BOARD_ROWS + 1)]
    cleanup.extend(made)
    await pool.executemany(
        "INSERT INTO accountability_records (case_id, seq, department_id, reason, recorded_at)"
        " VALUES ($1, 1, 'water', '手工问责', $2)",
        [(case_id, EARLIER + timedelta(minutes=n)) for n, case_id in enumerate(made)],
    )
    await _says_the_rules_count(api, pool, "问责待完善", _INCOMPLETE_RULE, "最近记录的")


def _uses(plan: str, index: str) -> bool:
    return any(n.get("Index Name") == index for n in _plan_nodes(json.loads(plan)[0]["Plan"]))


def _plan_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node.get("Plans", []) for n in _plan_nodes(child))]


@pytest.mark.parametrize(
    ("table", "sql", "index"),
    [
        pytest.param("accountability_records", supervision_page.INCOMPLETE.count_sql,
                     "accountability_records_incomplete", id="incomplete"),
        pytest.param("cases", supervision_page.LADDER.count_sql, "cases_on_ladder", id="ladder"),
        pytest.param("cases", "SELECT count(*) FROM cases WHERE category_id = 'garbage'",
                     "cases_category", id="audit-category"),
    ],
)  # fmt: skip
async def test_a_boards_count_can_be_read_from_its_index(
    pool: asyncpg.Pool, table: str, sql: str, index: str
) -> None:
    """Migration 0043: at 200,000 rows these counts read every record, every open case, or
    every case (python -m bench.boards, docs/performance.md "The boards' counts"). On the
    test's small tables the planner may rightly prefer a scan, so the question is whether the
    count can be served by its index: with the table's other indexes dropped and sequential
    scans off, in a transaction rolled back, the plan reads it."""
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            await conn.execute("SET LOCAL lock_timeout = '10s'")
            others = await conn.fetch(
                "SELECT indexrelid::regclass::text AS name FROM pg_index WHERE indrelid ="
                " $1::regclass AND NOT indisprimary AND indexrelid::regclass::text <> $2",
                table, index,
            )  # fmt: skip
            for other in others:
                await conn.execute(f'DROP INDEX "{other["name"]}"')
            await conn.execute("SET LOCAL enable_seqscan = off")
            plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}")
        finally:
            await tx.rollback()
    assert _uses(plan, index), plan
