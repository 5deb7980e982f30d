"""The knowledge base of answers (知识库) for direct answers at intake (即时办结).

Centre staff keep answers to the questions citizens ask most (opening hours, documents
needed, policies): each with the source it relies on (依据) and the days it is valid. An
operator searches it during the call and, when an answer fits a consultation, registers the
case with it: the case is answered at once (jiesu/intake/filing.py, the workflow's direct
path), still rated and counted (the indicator 即时办结率).

Search: PostgreSQL has no Chinese text parser, so the words are made here with jieba's search
mode (which also yields the shorter words inside long ones: 身份证 in 居民身份证) and stored
space-separated; the query's words are matched with the ``simple`` configuration, any word
counting, best ``ts_rank`` first.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import asyncpg
import jieba
from pydantic import BaseModel, ConfigDict, Field, model_validator

from jiesu.case.domain import Day, DirectAnswer, DirectAnswerInput, Line, Text
from jiesu.intake.errors import IntakeRefused
from jiesu.intake.similarity import STOP_WORDS


class AnswerInput(BaseModel):
    """An answer as centre staff write it."""

    model_config = ConfigDict(extra="forbid")

    question: Text = Field(min_length=2, max_length=500, examples=["居住证怎么办理？"])
    answer: Text = Field(min_length=2, max_length=5000)
    category_id: Line | None = Field(default=None, min_length=1, max_length=64)
    source: Line = Field(
        min_length=2, max_length=300, description="依据: the policy, notice or office it cites"
    )
    valid_from: Day
    valid_until: Day | None = Field(default=None, description="Last valid day; none: open")

    @model_validator(mode="after")
    def _period(self) -> AnswerInput:
        if self.valid_until is not None and self.valid_until < self.valid_from:
            raise ValueError("valid_until is before valid_from")
        return self


class Answer(AnswerInput):
    id: int
    version: int
    updated_at: datetime
    updated_by: str
    withdrawn_at: datetime | None = None
    valid_today: bool = False
    rank: float | None = Field(default=None, description="Search relevance (searches only)")


class AnswerRefused(Exception):
    """An answer that cannot be stored (unknown category)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


_QUESTION_WORDS = STOP_WORDS | frozenset(
    "怎么 怎样 怎么样 如何 什么 哪里 哪儿 哪些 哪个 多少 多久 几 吗 呢 请问 想 问 问一下 要 需要 "
    "可以 能 能否 是否 应该 该 去 带 办 咨询".split()
)
"""Words every question has: matching on them would offer every answer."""


def search_words(text: str) -> list[str]:
    """jieba's search-mode words, lower case, without punctuation, spaces and question
    words."""
    words = (w.strip().lower() for w in jieba.lcut_for_search(text))
    return [w for w in words if w.isalnum() and w not in _QUESTION_WORDS]


def _words(body: AnswerInput) -> str:
    return " ".join(search_words(f"{body.question} {body.answer}"))


_COLUMNS = (
    "id, question, answer, category_id, source, valid_from, valid_until, withdrawn_at, version,"
    " updated_at, updated_by, (withdrawn_at IS NULL AND valid_from <= $1::date"
    " AND (valid_until IS NULL OR valid_until >= $1::date)) AS valid_today"
)


def _answer(row: asyncpg.Record) -> Answer:
    return Answer.model_validate(dict(row))


async def _check_category(conn: asyncpg.Connection | asyncpg.Pool, body: AnswerInput) -> None:
    if body.category_id is not None and not await conn.fetchval(
        "SELECT 1 FROM categories WHERE id = $1", body.category_id
    ):
        raise AnswerRefused("unknown_category", f"no complaint category {body.category_id!r}")


async def create(
    pool: asyncpg.Pool, body: AnswerInput, by: str, today: date
) -> tuple[Answer, bool]:
    """Add an answer; a retry (the same answer — question, answer, category, source, validity
    — not withdrawn) returns the existing one (False: nothing added). Before, a create whose
    answer was lost and retried left two answers that operators found side by side."""
    await _check_category(pool, body)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('jiesu:knowledge'))")
        same = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM knowledge_answers WHERE withdrawn_at IS NULL"
            " AND question = $2 AND answer = $3 AND category_id IS NOT DISTINCT FROM $4"
            " AND source = $5 AND valid_from = $6 AND valid_until IS NOT DISTINCT FROM $7"
            " ORDER BY id LIMIT 1",
            today, body.question, body.answer, body.category_id, body.source, body.valid_from,
            body.valid_until,
        )  # fmt: skip
        if same is not None:
            return _answer(same), False
        row = await conn.fetchrow(
            "INSERT INTO knowledge_answers (question, answer, category_id, source, valid_from,"
            " valid_until, words, updated_by) VALUES ($2, $3, $4, $5, $6, $7, $8, $9)"
            f" RETURNING {_COLUMNS}",
            today, body.question, body.answer, body.category_id, body.source, body.valid_from,
            body.valid_until, _words(body), by,
        )  # fmt: skip
    return _answer(row), True


class VersionConflict(Exception):
    """The answer changed since the version the change was made from (``If-Match``)."""

    def __init__(self, current: Answer) -> None:
        super().__init__(f"answer {current.id} is at version {current.version} now")
        self.current = current


async def update(
    pool: asyncpg.Pool, answer_id: int, body: AnswerInput, by: str, today: date,
    *, if_version: int | None = None,
) -> Answer | None:  # fmt: skip
    """Change an answer; None if there is none. ``if_version``: only if it is still at that
    version, else VersionConflict (two supervisors editing it at once: the second does not
    silently overwrite the first)."""
    await _check_category(pool, body)
    row = await pool.fetchrow(
        "UPDATE knowledge_answers SET question = $3, answer = $4, category_id = $5, source = $6,"
        " valid_from = $7, valid_until = $8, words = $9, updated_by = $10, updated_at = now(),"
        " version = version + 1 WHERE id = $2 AND ($11::int IS NULL OR version = $11)"
        f" RETURNING {_COLUMNS}",
        today, answer_id, body.question, body.answer, body.category_id, body.source,
        body.valid_from, body.valid_until, _words(body), by, if_version,
    )  # fmt: skip
    if row is None and if_version is not None:
        current = await get(pool, answer_id, today)
        if current is not None:
            raise VersionConflict(current)
    return _answer(row) if row else None


async def withdraw(pool: asyncpg.Pool, answer_id: int, by: str, today: date) -> Answer | None:
    """停用: no longer offered; kept, since cases cite it (idempotent)."""
    row = await pool.fetchrow(
        "UPDATE knowledge_answers SET withdrawn_at = coalesce(withdrawn_at, now()),"
        f" updated_by = $3, updated_at = now() WHERE id = $2 RETURNING {_COLUMNS}",
        today, answer_id, by,
    )  # fmt: skip
    return _answer(row) if row else None


async def get(
    conn: asyncpg.Connection | asyncpg.Pool, answer_id: int, today: date
) -> Answer | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM knowledge_answers WHERE id = $2", today, answer_id
    )
    return _answer(row) if row else None


async def search(
    pool: asyncpg.Pool,
    today: date,
    *,
    query: str = "",
    category_id: str | None = None,
    include_invalid: bool = False,
    limit: int = 20,
) -> list[Answer]:
    """Answers whose words meet the query's (any of them; best first), or all answers (newest
    first) without a query. Only answers valid today unless ``include_invalid``."""
    words = search_words(query)
    args: list[Any] = [today, category_id, include_invalid, limit]
    rank = "NULL::real"
    match = "TRUE"
    if words:
        args.append(" | ".join(f"'{w}'" for w in words))  # alphanumeric only: no quoting issue
        rank = f"ts_rank(search, to_tsquery('simple', ${len(args)}))"
        match = f"search @@ to_tsquery('simple', ${len(args)})"
    rows = await pool.fetch(
        f"SELECT * FROM (SELECT {_COLUMNS}, {rank} AS rank FROM knowledge_answers"
        f" WHERE {match} AND ($2::text IS NULL OR category_id IS NULL OR category_id = $2)) a"
        " WHERE $3 OR valid_today"
        " ORDER BY rank DESC NULLS LAST, updated_at DESC, id DESC LIMIT $4",
        *args,
    )
    return [_answer(r) for r in rows]


async def direct_answer(
    conn: asyncpg.Connection, chosen: DirectAnswerInput, category_id: str, today: date
) -> DirectAnswer:
    """The answer an operator gives on the call, as the case records it; refused when it does
    not exist, is not valid today or belongs to another category."""
    answer = await get(conn, chosen.answer_id, today)
    if answer is None:
        raise IntakeRefused("unknown_answer", f"no knowledge-base answer {chosen.answer_id}")
    if not answer.valid_today:
        raise IntakeRefused(
            "answer_not_valid", f"answer {answer.id} is withdrawn or not valid on {today}"
        )
    if answer.category_id not in (None, category_id):
        raise IntakeRefused(
            "answer_category_mismatch",
            f"answer {answer.id} is for {answer.category_id!r}, not {category_id!r}",
        )
    return DirectAnswer(
        answer_id=answer.id,
        version=answer.version,
        question=answer.question,
        text=answer.answer,
        source=answer.source,
        valid_until=answer.valid_until,
        rating=chosen.rating,
    )
