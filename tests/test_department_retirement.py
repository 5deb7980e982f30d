"""单位停用: a department merged away or abolished is retired from a moment on, not deleted —
routing passes over it, nobody can give it a case, a co-handling or an account, its history
and figures stay; it can be put back in service. By API, CLI and console, admins only,
logged (jiesu/admin/departments.py, docs/administration.md)."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
from helpers import (
    OPERATOR,
    SUPERVISOR,
    act,
    auth,
    cli_in_process,
    complaint,
    eventually,
    signed_in,
)
from temporalio.testing import WorkflowEnvironment
from test_audit import cli_env
from test_console_admin import Admin, admin  # noqa: F401 (the console's admin fixture)
from test_console_browser import shot, sign_in

from activities.routing import RoutingActivities
from jiesu.access import api_keys
from jiesu.case.domain import CENTRE_ID, Role
from jiesu.config import Settings
from jiesu.ops.demo_data import demo_key

ADMIN = auth(demo_key("demo-admin"))
A = "/api/v1/admin"


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _put(api: httpx.AsyncClient, path: str, body: dict[str, Any]) -> None:
    r = await api.put(f"{A}/{path}", json=body, headers=ADMIN)
    assert r.status_code == 200, r.text


async def _unit_with_a_rule(api: httpx.AsyncClient) -> tuple[str, str, int]:
    """A department of its own, a category of its own, and the rule sending it there."""
    department, category = _uid("dep"), _uid("cat")
    await _put(api, f"departments/{department}", {"name": f"撤并局{department}", "level": "county"})
    await _put(api, f"categories/{category}", {"name": "测试类别", "default_urgency": "general"})
    rule = await api.post(f"{A}/routing-rules", headers=ADMIN, json={
        "category_id": category, "area_id": "QH", "department_id": department,
        "valid_from": (datetime.now(UTC) - timedelta(days=1)).isoformat()})  # fmt: skip
    assert rule.status_code == 201, rule.text
    return department, category, rule.json()["id"]


async def _routed_to(api: httpx.AsyncClient, category: str) -> tuple[str, str]:
    filed = await api.post("/api/v1/complaints", headers=OPERATOR,
                           json=complaint(category_id=category))
    assert filed.status_code == 201, filed.text
    case_id = filed.json()["case_id"]

    async def department() -> str | None:
        r = await api.get(f"/api/v1/complaints/{case_id}", headers=SUPERVISOR)
        assignment = r.json().get("assignment") if r.status_code == 200 else None
        return assignment["department_id"] if assignment else None

    return case_id, await eventually(department, within=30)


def _code(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, r.json()["error"]["code"]


async def test_a_retired_department_gets_no_new_work_and_can_be_reinstated(
    api: httpx.AsyncClient,
) -> None:
    department, category, rule = await _unit_with_a_rule(api)
    retired = await api.post(f"{A}/departments/{department}/retire", json={}, headers=ADMIN)
    assert retired.status_code == 200, retired.text
    answer = retired.json()
    retry = await api.post(f"{A}/departments/{department}/retire", json={}, headers=ADMIN)
    assert retry.status_code == 200 and retry.json() == answer  # a retry: as it is
    assert answer["department"]["retired_at"] is not None
    assert answer["open_cases"] == 0 and answer["rules_in_force"] == [rule]  # replace it

    # routing passes over its rule: no other rule, so the centre's queue
    case_id, routed = await _routed_to(api, category)
    assert routed == CENTRE_ID
    # nobody gives it a case, a co-handling or an account (422 before the case is read)
    dispatched = await api.post(f"/api/v1/complaints/{case_id}/dispatch", headers=SUPERVISOR,
                                json={"department_id": department})
    assert _code(dispatched) == (422, "department_retired"), dispatched.text
    co = await api.post(f"/api/v1/complaints/{case_id}/co-handlers", headers=SUPERVISOR,
                        json={"department_ids": [department], "note": "会办"})
    assert _code(co) == (422, "department_retired"), co.text
    person = await api.post(f"{A}/users", headers=ADMIN, json={
        "login": _uid("clerk"), "display_name": "新人", "role": "department",
        "department_id": department, "password": "a-long-enough-password-1"})  # fmt: skip
    assert _code(person) == (422, "department_retired"), person.text

    # a PUT of its fields does not put it back in service
    await _put(api, f"departments/{department}", {"name": f"撤并局{department}", "level": "county"})
    got = await api.get(f"{A}/departments/{department}", headers=ADMIN)
    assert got.json()["retired_at"] == answer["department"]["retired_at"]

    back = await api.post(f"{A}/departments/{department}/reinstate", headers=ADMIN)
    assert back.status_code == 200 and back.json()["department"]["retired_at"] is None
    again = await api.post(f"{A}/departments/{department}/reinstate", headers=ADMIN)  # a retry
    assert again.status_code == 200, again.text
    _, routed = await _routed_to(api, category)
    assert routed == department
    log = await api.get(f"{A}/changes", headers=ADMIN,
                        params={"entity": "department", "entity_id": department})
    assert [c["action"] for c in log.json()] == ["reinstate", "retire", "create"]
    assert log.json()[1]["before"]["retired_at"] is None
    assert log.json()[1]["after"]["retired_at"] is not None


async def test_a_retirement_refused_changes_nothing(api: httpx.AsyncClient) -> None:
    department = _uid("dep")
    await _put(api, f"departments/{department}", {"name": "撤并局", "level": "township"})
    url = f"{A}/departments/{department}/retire"
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    backdated = await api.post(url, json={"at": past}, headers=ADMIN)
    assert _code(backdated) == (422, "retirement_backdated"), backdated.text
    centre = await api.post(f"{A}/departments/{CENTRE_ID}/retire", json={}, headers=ADMIN)
    assert _code(centre) == (422, "centre_not_retired"), centre.text
    missing = await api.post(f"{A}/departments/{_uid('none')}/retire", json={}, headers=ADMIN)
    assert _code(missing) == (404, "department_not_found"), missing.text
    clerk = await api.post(url, json={}, headers=SUPERVISOR)
    assert clerk.status_code == 403, clerk.text
    unknown = await api.post(url, json={"when": "now"}, headers=ADMIN)
    assert unknown.status_code == 422, unknown.text
    log = await api.get(f"{A}/changes", headers=ADMIN,
                        params={"entity": "department", "entity_id": department})
    assert [c["action"] for c in log.json()] == ["create"]

    # scheduled (a reorganisation taking effect later): still in service until then
    later = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    scheduled = await api.post(url, json={"at": later.isoformat()}, headers=ADMIN)
    assert scheduled.status_code == 200, scheduled.text
    retry = await api.post(url, json={"at": later.isoformat()}, headers=ADMIN)
    assert retry.status_code == 200, retry.text  # the same moment: answered as it is
    moved = await api.post(url, json={}, headers=ADMIN)
    assert _code(moved) == (409, "department_retired"), moved.text
    log = await api.get(f"{A}/changes", headers=ADMIN,
                        params={"entity": "department", "entity_id": department})
    assert [c["action"] for c in log.json()] == ["retire", "create"]


async def test_a_retired_department_is_not_chosen_by_the_case_nor_raised_to(
    api: httpx.AsyncClient, pool: asyncpg.Pool,
) -> None:
    """The workflow's own look-ups: a dispatcher's choice sent straight to the case
    (known_department) and 提级办 to a retired parent (level_up: the centre's queue)."""
    parent, child = _uid("up"), _uid("down")
    await _put(api, f"departments/{parent}", {"name": "上级局", "level": "county"})
    await _put(api, f"departments/{child}", {"name": "下级所", "level": "township",
                                             "parent_id": parent})
    routing = RoutingActivities(pool)
    assert (await routing.level_up(child)).department_id == parent
    assert (await routing.known_department(parent)) is not None
    r = await api.post(f"{A}/departments/{parent}/retire", json={}, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["raised_to_by"] == [child]  # the admin is told: give it another parent
    assert (await routing.level_up(child)).department_id == CENTRE_ID
    assert await routing.known_department(parent) is None


async def test_the_admin_retires_and_reinstates_a_department_at_the_console(
    api: httpx.AsyncClient, admin: Admin,  # noqa: F811
) -> None:
    department, category, rule = await _unit_with_a_rule(api)
    case_id, routed = await _routed_to(api, category)
    assert routed == department
    login = _uid("clerk")
    person = await api.post(f"{A}/users", headers=ADMIN, json={
        "login": login, "display_name": "老员工", "role": "department",
        "department_id": department, "password": "a-long-enough-password-1"})  # fmt: skip
    assert person.status_code == 201, person.text
    page = await admin.post(f"/console/admin/departments/{department}/retire", {"at": ""},
                            follow_redirects=True)
    assert page.status_code == 200, page.text
    said = re.search(r'id="service">([^<]*)<', page.text)
    assert said is not None, page.text
    assert "已停用" in said[1] and "仍有 1 件在办工单" in said[1] and f"#{rule}" in said[1]
    row = re.search(rf'<tr data-id="{department}">.*?</tr>', page.text, re.S)
    assert row is not None and "已停用" in row[0] and "恢复启用" in row[0]

    # the admin's 人员管理 says which people are in a retired unit
    people = await admin.get("/console/people")
    row = re.search(rf"<tr><td[^>]*>{login}</td>.*?</tr>", people.text, re.S)
    assert row is not None and f"撤并局{department}（已停用）" in row[0], people.text[:2000]

    # the case it holds stays its own; the dispatcher's forms no longer offer it
    supervisor = await signed_in(api, "supervisor")
    try:
        shown = await supervisor.get(f"/console/cases/{case_id}")
        assert shown.status_code == 200
        assert f'value="{department}"' not in shown.text
        assert '<span class="retired">（已停用）</span>' in shown.text  # beside its name
    finally:
        await supervisor.aclose()

    later = await admin.post(f"/console/admin/departments/{department}/retire",
                             {"at": "2099-01-01T00:00"})
    assert later.status_code == 409 and "reinstate it first" in later.text  # moved: refused
    back = await admin.post(f"/console/admin/departments/{department}/reinstate",
                            follow_redirects=True)
    assert back.status_code == 200 and "已恢复启用" in back.text
    row = re.search(rf'<tr data-id="{department}">.*?</tr>', back.text, re.S)
    assert row is not None and "在用" in row[0]
    log = await admin.get("/console/admin/changes", entity="department", entity_id=department)
    assert "恢复启用" in log.text and "停用" in log.text


async def test_the_admin_schedules_a_retirement_and_calls_it_off_in_the_browser(
    api: httpx.AsyncClient, browsers: Any, console_url: str, screenshots: Path,
) -> None:
    """As the admin does it: 承办单位, a moment typed beside 停用, the row says 将于…停用 and
    the page what still points at it; 取消停用 puts it back."""
    department, _, rule = await _unit_with_a_rule(api)
    page = await sign_in(browsers, console_url, "admin")
    await page.goto(f"{console_url}/console/admin/departments")
    row = page.locator(f"tr[data-id='{department}']")
    when = (datetime.now(ZoneInfo("Asia/Shanghai")) + timedelta(days=40)).replace(
        hour=0, minute=0)  # fmt: skip
    await row.locator("details.retire summary").click()
    await row.locator("details.retire input[name=at]").fill(when.strftime("%Y-%m-%dT%H:%M"))
    await row.locator("details.retire button", has_text="确认停用").click()
    await page.wait_for_url(re.compile(f"retired={department}"))
    said = await page.inner_text("#service")
    assert f"安排于 {when:%Y-%m-%d %H:%M} 停用" in said and f"#{rule}" in said
    assert f"将于 {when:%Y-%m-%d %H:%M} 停用" in await row.locator("td.service").inner_text()
    await row.scroll_into_view_if_needed()
    await shot(page, screenshots, "admin-department-retired")
    await row.locator("form.reinstate button", has_text="取消停用").click()
    await page.wait_for_url(re.compile(f"reinstated={department}"))
    assert await row.locator("td.service").inner_text() == "在用"


async def test_the_cli_retires_and_reinstates_a_department(
    env: WorkflowEnvironment, settings: Settings, api: httpx.AsyncClient,
) -> None:
    department = _uid("dep")
    await _put(api, f"departments/{department}", {"name": "撤并局", "level": "county"})
    variables = cli_env(env, settings)
    code, out, err = await cli_in_process(variables, "admin", "departments", "retire",
                                          department, "--at", "2099-01-01T00:00+08:00")
    assert code == 0, err
    assert json.loads(out)["department"]["retired_at"].startswith("2098-12-31T16:00")
    code, _, err = await cli_in_process(variables, "admin", "departments", "retire", department)
    assert code == 2 and err.startswith("error: department_retired"), err  # another moment
    code, out, err = await cli_in_process(variables, "admin", "departments", "reinstate",
                                          department)
    assert code == 0 and json.loads(out)["department"]["retired_at"] is None, err


async def test_a_retired_department_finishes_what_it_holds_but_gets_no_new_key(
    api: httpx.AsyncClient, pool: asyncpg.Pool,
) -> None:
    department, category, _ = await _unit_with_a_rule(api)
    _, key = await api_keys.create_key(pool, name=_uid("unit"), role=Role.DEPARTMENT,
                                       department_id=department)  # fmt: skip
    case_id, routed = await _routed_to(api, category)
    assert routed == department
    r = await api.post(f"{A}/departments/{department}/retire", json={}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["open_cases"] == 1, r.text
    own = {"Authorization": f"Bearer {key}"}
    accepted = await act(api, case_id, "accept", own)  # its own case: still its own
    assert accepted["applied"] is True and accepted["case"]["status"] == "handling", accepted
    refused = await api.post(f"{A}/keys", headers=ADMIN, json={
        "name": _uid("unit"), "role": "department", "department_id": department})
    assert _code(refused) == (422, "department_retired"), refused.text
