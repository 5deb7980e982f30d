"""Direct answers (即时办结): the knowledge base of answers (api/routers/knowledge.py) and a
consultation answered on the call, still rated and counted."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any

import asyncpg
import httpx
from helpers import (
    OPERATOR,
    SUPERVISOR,
    act,
    case,
    department,
    eventually,
    handle_of,
    keep_history,
    local_day,
    register,
)
from temporalio.client import Client

from jiesu.config import Settings
from jiesu.stats import rollup

KB = "/api/v1/knowledge"
TODAY = date.today()


def _answer(**overrides: Any) -> dict[str, Any]:
    body = {
        "question": "居住证怎么办理？需要带什么材料？",
        "answer": "携带居民身份证、居住登记凭证和一寸照片，到居住地派出所户籍窗口办理，"
        "工作日受理，十五个工作日内领证。",
        "category_id": "enterprise_request",
        "source": "青河县公安局《居住证办理指南》(2026年版)",
        "valid_from": (TODAY - timedelta(days=30)).isoformat(),
        "valid_until": (TODAY + timedelta(days=365)).isoformat(),
    }
    return body | overrides


async def _create(api: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    """A new answer (the same one again would be a retry: each test's source is its own)."""
    overrides.setdefault("source", f"{_answer()['source']} {uuid.uuid4().hex[:8]}")
    response = await api.post(KB, json=_answer(**overrides), headers=SUPERVISOR)
    assert response.status_code == 201, response.text
    return response.json()


async def test_a_retried_create_adds_the_answer_once(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """The same answer posted again (a create whose answer was lost, retried) is answered
    ``200`` with the first: one answer, not two found side by side. Before: two, each 201.
    Withdrawn, the same text may be added anew."""
    body = _answer(source=f"retry {uuid.uuid4().hex}")
    first = await api.post(KB, json=body, headers=SUPERVISOR)
    again = await api.post(KB, json=body, headers=SUPERVISOR)
    assert (first.status_code, again.status_code) == (201, 200), again.text
    assert again.json()["id"] == first.json()["id"]
    count = "SELECT count(*) FROM knowledge_answers WHERE source = $1"
    assert await pool.fetchval(count, body["source"]) == 1
    other = await api.post(KB, json=body | {"valid_until": None}, headers=SUPERVISOR)
    assert other.status_code == 201  # another validity: another answer
    await api.post(f"{KB}/{first.json()['id']}/withdraw", headers=SUPERVISOR)
    anew = await api.post(KB, json=body, headers=SUPERVISOR)
    assert anew.status_code == 201 and anew.json()["id"] != first.json()["id"]
    assert await pool.fetchval(count, body["source"]) == 3


async def test_centre_staff_keep_the_knowledge_base(api: httpx.AsyncClient) -> None:
    created = await _create(api)
    assert created["valid_today"] and created["version"] == 1
    assert created["updated_by"] == "demo-supervisor"
    refused = await api.post(KB, json=_answer(), headers=OPERATOR)
    assert refused.status_code == 403  # operators read and use it; the centre owns it
    hit = await api.get(KB, params={"q": "办居住证要什么材料"}, headers=OPERATOR)
    assert hit.status_code == 200
    assert hit.json()[0]["id"] == created["id"] and hit.json()[0]["rank"] > 0
    miss = await api.get(KB, params={"q": "供暖费怎么交"}, headers=OPERATOR)
    assert created["id"] not in [a["id"] for a in miss.json()]

    changed = await api.put(
        f"{KB}/{created['id']}", json=_answer(source="青河县公安局通知 2026-11"), headers=SUPERVISOR
    )
    assert changed.status_code == 200 and changed.json()["version"] == 2
    withdrawn = await api.post(f"{KB}/{created['id']}/withdraw", headers=SUPERVISOR)
    assert withdrawn.status_code == 200 and not withdrawn.json()["valid_today"]
    offered = await api.get(KB, params={"q": "居住证"}, headers=OPERATOR)
    assert created["id"] not in [a["id"] for a in offered.json()]
    kept = await api.get(KB, params={"q": "居住证", "include_invalid": True}, headers=OPERATOR)
    assert created["id"] in [a["id"] for a in kept.json()]


async def test_a_change_made_from_an_old_version_is_refused(api: httpx.AsyncClient) -> None:
    """Two supervisors change the same answer from version 1: with If-Match the second is
    ``409 version_conflict`` and the first's change stays. Before, the header was not read and
    the second silently overwrote the first (an accepted change lost)."""
    created = await _create(api)
    url, v1 = f"{KB}/{created['id']}", {"If-Match": '"1"'}
    first = await api.put(url, json=_answer(source="第一位的修改"), headers=SUPERVISOR | v1)
    assert first.status_code == 200 and first.json()["version"] == 2, first.text
    second = await api.put(url, json=_answer(source="第二位的修改"), headers=SUPERVISOR | v1)
    assert second.status_code == 409, second.text
    assert second.json()["error"]["code"] == "version_conflict"
    now = await api.get(url, headers=SUPERVISOR)
    assert (now.json()["source"], now.json()["version"]) == ("第一位的修改", 2)
    bad = await api.put(url, json=_answer(), headers=SUPERVISOR | {"If-Match": "x"})
    assert bad.status_code == 422
    gone = await api.put(f"{KB}/999999999", json=_answer(), headers=SUPERVISOR | v1)
    assert gone.status_code == 404


async def test_bad_answers_are_refused(api: httpx.AsyncClient) -> None:
    backwards = _answer(valid_until=(TODAY - timedelta(days=60)).isoformat())
    assert (await api.post(KB, json=backwards, headers=SUPERVISOR)).status_code == 422
    unknown = await api.post(KB, json=_answer(category_id="nope"), headers=SUPERVISOR)
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "unknown_category"
    assert (await api.post(KB, json=_answer(source=""), headers=SUPERVISOR)).status_code == 422
    assert (await api.get(f"{KB}/999999999", headers=OPERATOR)).status_code == 404
    department_key = department("water")
    assert (await api.get(KB, headers=department_key)).status_code == 403


async def _closed(api: httpx.AsyncClient, case_id: str) -> dict[str, Any] | None:
    state = await case(api, case_id, OPERATOR)
    return state if state["status"] == "closed" else None


async def test_a_consultation_answered_on_the_call_is_closed_rated_and_counted(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    answer = await _create(api)
    created = await register(
        api, category_id="enterprise_request", title="居住证办理咨询",
        description="想问一下居住证怎么办理", channel="hotline",
        direct_answer={"answer_id": answer["id"], "rating": "satisfied"},
    )  # fmt: skip
    case_id = created["case_id"]
    state = await eventually(lambda: _closed(api, case_id))
    assert state["direct_answer"]["answer_id"] == answer["id"]
    assert state["direct_answer"]["source"] == answer["source"]
    assert state["assignment"]["department_id"] == "centre"
    assert state["reply"]["text"] == answer["answer"] and state["rating"] == "satisfied"
    kinds = [e["kind"] for e in state["events"]]
    assert kinds[-3:] == ["answered_directly", "callback", "closed"]
    assert "routed" not in kinds and "queued" not in kinds

    async def projected() -> asyncpg.Record | None:
        return await pool.fetchrow(
            "SELECT answered_directly, rating, accepted_at <= accept_deadline AS on_time"
            " FROM cases WHERE case_id = $1 AND status = 'closed'", case_id,
        )  # fmt: skip

    row = await eventually(projected)
    assert tuple(row) == (True, "satisfied", True)
    day = local_day(state["received_at"], settings.timezone)
    await rollup.ensure_fresh(pool, settings.timezone)  # what the worker's refresher does
    figures = await api.get(
        "/api/v1/stats/indicators",
        params={"from": day, "to": day,
                "category_id": "enterprise_request"},
        headers=SUPERVISOR,
    )  # fmt: skip
    rate = figures.json()["totals"]["direct_answer_rate"]
    assert rate["numerator"] >= 1 and rate["denominator"] >= rate["numerator"]
    await keep_history(handle_of(client, case_id), "direct_answer_rated_on_call")


async def test_without_a_verdict_on_the_call_the_citizen_rates_later(
    api: httpx.AsyncClient,
) -> None:
    answer = await _create(api, category_id=None)
    created = await register(api, direct_answer={"answer_id": answer["id"]})
    case_id = created["case_id"]

    async def replied() -> dict[str, Any] | None:
        state = await case(api, case_id, OPERATOR)
        return state if state["status"] == "replied" else None

    await eventually(replied)
    await act(api, case_id, "rating", token=created["citizen_token"], rating="basically_satisfied")
    assert (await eventually(lambda: _closed(api, case_id)))["rating"] == "basically_satisfied"


async def test_an_answer_that_cannot_be_given_is_a_422(api: httpx.AsyncClient) -> None:
    withdrawn = await _create(api)
    await api.post(f"{KB}/{withdrawn['id']}/withdraw", headers=SUPERVISOR)
    future = await _create(api, valid_from=(TODAY + timedelta(days=10)).isoformat())
    other = await _create(api, category_id="heating")
    for answer_id, code in (
        (999999999, "unknown_answer"), (withdrawn["id"], "answer_not_valid"),
        (future["id"], "answer_not_valid"), (other["id"], "answer_category_mismatch"),
    ):  # fmt: skip
        response = await api.post(
            "/api/v1/complaints",
            json={"title": "咨询", "description": "咨询一个问题", "category_id": "garbage",
                  "grid_id": "G-QH-01-01-1", "citizen": {"name": "Li", "phone": "13900000000"},
                  "direct_answer": {"answer_id": answer_id}},
            headers=OPERATOR,
        )  # fmt: skip
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == code


def test_the_timeline_says_it_in_words() -> None:
    from jiesu.audit.timeline import _recorded_summary

    said = _recorded_summary("answered_directly", {"answer_id": 7, "version": 2, "source": "S"})
    assert said == "answered directly on the call (即时办结) from knowledge-base answer 7 v2 (S)"
    spot = _recorded_summary("solved_on_the_spot", {"department_id": "G-1", "text": "cleared"})
    assert spot == "solved on the spot in grid G-1 (就地解决): cleared"
    linked = _recorded_summary(
        "linked_to_history", {"case_ids": ["A", "B"], "reports": 3, "window_days": 90}
    )
    assert "earlier cases A, B, 3 reports within 90 days" in linked
