"""Administration (issue 12 part 5): reference data, the routing catalogue with effective
dates, calendar notices, policy values, notification templates, the change log — by API and
CLI, admins only, a refused change changes nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from helpers import OPERATOR, SUPERVISOR, auth, cli_in_process, complaint, eventually
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from test_audit import cli_env, run_cli

from jiesu.case.domain import Actor, ComplaintIntake, Role
from jiesu.config import Settings
from jiesu.intake import filing
from jiesu.ops.demo_data import demo_key

ADMIN = auth(demo_key("demo-admin"))
A = "/api/v1/admin"


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _changes(api: httpx.AsyncClient, entity: str, entity_id: str) -> list[dict[str, Any]]:
    r = await api.get(f"{A}/changes", params={"entity": entity, "entity_id": entity_id},
                      headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()


async def test_a_department_change_is_logged_with_who_before_and_after(
    api: httpx.AsyncClient,
) -> None:
    dept = _uid("dept")
    body = {"name": "县文旅局 (Culture and Tourism Bureau)", "level": "county", "area_id": "QH"}
    created = await api.put(f"{A}/departments/{dept}", json=body, headers=ADMIN)
    assert created.status_code == 200, created.text
    again = await api.put(f"{A}/departments/{dept}", json=body, headers=ADMIN)  # a retry
    renamed = await api.put(f"{A}/departments/{dept}", json=body | {"name": "县文旅局"},
                            headers=ADMIN)
    assert again.status_code == renamed.status_code == 200
    log = await _changes(api, "department", dept)
    assert [c["action"] for c in log] == ["update", "create"]  # the retry logged nothing
    assert log[0]["actor"]["name"] == "demo-admin" and log[0]["actor"]["role"] == "admin"
    assert log[0]["before"]["name"].startswith("县文旅局 (")
    assert log[0]["after"]["name"] == "县文旅局"
    assert log[1]["before"] is None
    deleted = await api.delete(f"{A}/departments/{dept}", headers=ADMIN)
    assert deleted.status_code == 204, deleted.text
    assert (await api.get(f"{A}/departments/{dept}", headers=ADMIN)).status_code == 404
    assert (await _changes(api, "department", dept))[0]["after"] is None


async def test_a_change_made_on_an_old_version_is_refused_not_lost(
    api: httpx.AsyncClient,
) -> None:
    """Two admins open the same record; the second to save, on the version they opened, is
    refused (409) instead of silently undoing the first one's change (a lost update)."""
    dept = _uid("dept")
    body = {"name": "县文旅局", "level": "county", "area_id": "QH"}
    first = (await api.put(f"{A}/departments/{dept}", json=body, headers=ADMIN)).json()
    opened = (await api.get(f"{A}/departments/{dept}", headers=ADMIN)).json()["version"]
    assert opened == first["version"]
    saved = await api.put(f"{A}/departments/{dept}", json=body | {"name": "县文化和旅游局"},
                          headers=ADMIN | {"If-Match": f'"{opened}"'})
    assert saved.status_code == 200, saved.text
    assert saved.json()["version"] != opened
    late = await api.put(f"{A}/departments/{dept}", json=body | {"name": "县旅游局"},
                         headers=ADMIN | {"If-Match": opened})
    assert late.status_code == 409, late.text
    assert late.json()["error"]["code"] == "version_conflict"
    late_delete = await api.delete(f"{A}/departments/{dept}", headers=ADMIN | {"If-Match": opened})
    assert late_delete.status_code == 409, late_delete.text
    now = (await api.get(f"{A}/departments/{dept}", headers=ADMIN)).json()
    assert now["name"] == "县文化和旅游局" and now["version"] == saved.json()["version"]
    assert [c["action"] for c in await _changes(api, "department", dept)] == ["update", "create"]
    malformed = await api.put(f"{A}/departments/{dept}", json=body,
                              headers=ADMIN | {"If-Match": "yesterday"})
    assert malformed.status_code == 422, malformed.text
    missing = await api.put(f"{A}/departments/{_uid('dept')}", json=body,
                            headers=ADMIN | {"If-Match": opened})
    assert missing.status_code == 404, missing.text
    gone = await api.delete(f"{A}/departments/{dept}", headers=ADMIN | {"If-Match": now["version"]})
    assert gone.status_code == 204, gone.text


@pytest.mark.parametrize("headers", [OPERATOR, SUPERVISOR, {}])
async def test_only_admins_administer(api: httpx.AsyncClient, headers: dict[str, str]) -> None:
    dept = _uid("dept")
    r = await api.put(f"{A}/departments/{dept}", json={"name": "x", "level": "county"},
                      headers=headers)
    assert r.status_code in (401, 403), r.text
    assert (await api.get(f"{A}/departments/{dept}", headers=ADMIN)).status_code == 404
    assert await _changes(api, "department", dept) == []


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("departments", {"name": "x", "level": "ministry"}, 422, "invalid_request"),
        ("departments", {"name": "x", "level": "county", "parent_id": "nope"}, 422,
         "unknown_reference"),
        ("areas", {"name": "g", "kind": "grid", "parent_id": "QH"}, 422, "invalid_parent"),
        ("areas", {"name": "g", "kind": "grid", "parent_id": "QH-01-01",
                   "boundary": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [0, 1],
                                                                     [1, 0], [0, 0]]]}},
         422, "invalid_request"),  # a bow-tie is not a valid polygon
        ("categories", {"name": "x", "default_urgency": "soon"}, 422, "invalid_request"),
    ],
)
async def test_bad_reference_data_is_refused_and_changes_nothing(
    api: httpx.AsyncClient, path: str, body: dict[str, Any], status: int, code: str
) -> None:
    record_id = _uid("bad")
    r = await api.put(f"{A}/{path}/{record_id}", json=body, headers=ADMIN)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert (await api.get(f"{A}/{path}/{record_id}", headers=ADMIN)).status_code == 404
    assert await _changes(api, path.rstrip("s").replace("ie", "y"), record_id) == []


async def test_a_department_in_use_is_not_deleted(api: httpx.AsyncClient) -> None:
    r = await api.delete(f"{A}/departments/water", headers=ADMIN)
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "department_in_use"
    assert (await api.get(f"{A}/departments/water", headers=ADMIN)).status_code == 200


async def test_a_department_that_held_a_case_is_not_deleted(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """A department that held a case and passed it on (returned it, raised it) is named by
    the case's handlings only, not by its row: its past figures (fair attribution, the
    ranking, its level in the statistics) need it, so it is kept like one a case names."""
    department = _uid("dep")
    put = await api.put(f"{A}/departments/{department}", headers=ADMIN,
                        json={"name": "曾承办单位", "level": "township"})  # fmt: skip
    assert put.status_code == 200, put.text
    case_id, long_ago = _uid("held"), datetime(2009, 8, 4, 2, tzinfo=UTC)
    await pool.execute(
        "INSERT INTO cases (case_id, version, status, title, category_id, grid_id, channel,"
        " urgency, department_id, received_at, state) VALUES ($1, 1, 'assigned', '转办', "
        " 'sewer_blockage', 'G-QH-01-01-1', 'hotline', 'general', 'water', $2, '{}')",
        case_id, long_ago,
    )  # fmt: skip
    try:
        await pool.execute(
            "INSERT INTO case_handlings (case_id, department_id, first_round, last_round,"
            " assigned_at, released_at) VALUES ($1, $2, 1, 1, $3, $3)",
            case_id, department, long_ago,
        )  # fmt: skip
        refused = await api.delete(f"{A}/departments/{department}", headers=ADMIN)
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "department_in_use"
        assert (await api.get(f"{A}/departments/{department}", headers=ADMIN)).status_code == 200
    finally:  # a hand-made case: gone with its handlings (the statistics see it, 0030)
        await pool.execute("DELETE FROM cases WHERE case_id = $1", case_id)


async def test_a_category_a_case_names_is_not_deleted(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """No foreign key joins cases to categories: the check is the service's."""
    category = _uid("cat")
    await api.put(f"{A}/categories/{category}", json={"name": "临时类别",
                  "default_urgency": "general"}, headers=ADMIN)
    case_id = (await api.post("/api/v1/complaints", headers=OPERATOR,
                              json=complaint(category_id=category))).json()["case_id"]
    await eventually(
        lambda: pool.fetchval("SELECT 1 FROM cases WHERE case_id = $1", case_id), within=30
    )
    refused = await api.delete(f"{A}/categories/{category}", headers=ADMIN)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "category_in_use"


class _PowerCut(BaseException):
    """The intake's process dies here (not an Exception: nothing may handle it)."""


@pytest.mark.parametrize("entity", ["category", "area"])
async def test_a_category_or_grid_of_a_report_not_yet_a_case_is_not_deleted(
    api: httpx.AsyncClient, pool: asyncpg.Pool, client: Client, settings: Settings,
    monkeypatch: pytest.MonkeyPatch, entity: str,
) -> None:
    """A report is accepted (its intake row committed) before its case exists in Temporal and
    in the read model: the process may die there, or Temporal be away, and the repair starts
    the case later (nothing accepted is lost). A record such a report names is in use."""
    category, grid = _uid("cat"), _uid("G")
    assert (await api.put(f"{A}/categories/{category}", headers=ADMIN, json={
        "name": "临时类别", "default_urgency": "general"})).status_code == 200  # fmt: skip
    community = await pool.fetchval("SELECT parent_id FROM areas WHERE id = 'G-QH-03-02-2'")
    made = await api.put(f"{A}/areas/{grid}", headers=ADMIN,
                         json={"name": "临时网格", "kind": "grid", "parent_id": community})
    assert made.status_code == 200, made.text
    body = complaint(category_id=category, grid_id=grid)

    async def die(*args: object) -> None:
        raise _PowerCut

    with monkeypatch.context() as patch:
        patch.setattr(filing, "start_case", die)
        with pytest.raises(_PowerCut):
            await filing.register(pool, client, settings, ComplaintIntake.model_validate(body),
                                  Actor(role=Role.OPERATOR, name="op"), None)  # fmt: skip
    case_id = await pool.fetchval(
        "SELECT case_id FROM intakes WHERE payload #>> '{intake,category_id}' = $1", category)
    try:
        assert case_id is not None and await pool.fetchval(
            "SELECT count(*) FROM cases WHERE case_id = $1", case_id) == 0  # fmt: skip
        path, record_id = ("categories", category) if entity == "category" else ("areas", grid)
        refused = await api.delete(f"{A}/{path}/{record_id}", headers=ADMIN)
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == f"{entity}_in_use"
    finally:  # the report's row: a hand-cut intake no repair should start for other tests;
        # then the records (a grid left in 松林村 would be that community's first grid by id,
        # where Open311 places an address it names: test_open311)
        await pool.execute("DELETE FROM intakes WHERE case_id = $1", case_id)
        for path, record_id in (("categories", category), ("areas", grid)):
            gone = await api.delete(f"{A}/{path}/{record_id}", headers=ADMIN)
            assert gone.status_code == 204, gone.text


async def test_a_boundary_belongs_to_a_grid_only(api: httpx.AsyncClient) -> None:
    square = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}
    r = await api.put(f"{A}/areas/{_uid('cty')}", headers=ADMIN,
                      json={"name": "县", "kind": "county", "boundary": square})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_boundary", r.text


async def test_the_change_log_is_append_only(pool: asyncpg.Pool) -> None:
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await pool.execute("UPDATE admin_changes SET entity = 'x'")
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await pool.execute("DELETE FROM admin_changes")


# --- the routing catalogue ------------------------------------------------------------------


async def _category(api: httpx.AsyncClient) -> str:
    category = _uid("cat")
    r = await api.put(f"{A}/categories/{category}",
                      json={"name": "测试类别", "default_urgency": "general"}, headers=ADMIN)
    assert r.status_code == 200, r.text
    return category


async def _routed_to(api: httpx.AsyncClient, case_id: str) -> str:
    async def department() -> str | None:
        r = await api.get(f"/api/v1/complaints/{case_id}", headers=SUPERVISOR)
        assignment = r.json().get("assignment") if r.status_code == 200 else None
        return assignment["department_id"] if assignment else None

    return await eventually(department, within=30)


async def test_routing_uses_the_rule_in_force_when_the_case_was_reported(
    api: httpx.AsyncClient,
) -> None:
    category = await _category(api)
    now = datetime.now(UTC)
    first = await api.post(f"{A}/routing-rules", headers=ADMIN, json={
        "category_id": category, "area_id": "QH", "department_id": "water",
        "valid_from": (now - timedelta(days=2)).isoformat()})
    assert first.status_code == 201, first.text
    retry = await api.post(f"{A}/routing-rules", headers=ADMIN, json={
        "category_id": category, "area_id": "QH", "department_id": "water",
        "valid_from": (now - timedelta(days=2)).isoformat()})
    assert retry.status_code == 200 and retry.json()["id"] == first.json()["id"]
    switch = now - timedelta(hours=1)
    replaced = await api.post(f"{A}/routing-rules/{first.json()['id']}/replace", headers=ADMIN,
                              json={"department_id": "ecology", "at": switch.isoformat()})
    assert replaced.status_code == 200, replaced.text
    successor = replaced.json()["successor"]

    before = await api.post("/api/v1/complaints", headers=OPERATOR, json=complaint(
        category_id=category, received_at=(switch - timedelta(minutes=30)).isoformat()))
    after = await api.post("/api/v1/complaints", headers=OPERATOR,
                           json=complaint(category_id=category))
    assert before.status_code == after.status_code == 201, before.text + after.text
    assert await _routed_to(api, before.json()["case_id"]) == "water"
    assert await _routed_to(api, after.json()["case_id"]) == "ecology"

    in_force = await api.get(f"{A}/routing-rules", params={"category_id": category},
                             headers=ADMIN)
    assert [r["id"] for r in in_force.json()] == [successor["id"]]
    earlier = await api.get(f"{A}/routing-rules", headers=ADMIN, params={
        "category_id": category, "as_of": (switch - timedelta(seconds=1)).isoformat()})
    assert [r["department_id"] for r in earlier.json()] == ["water"]
    history = await api.get(f"{A}/routing-rules/{first.json()['id']}/history", headers=ADMIN)
    assert [c["action"] for c in history.json()] == ["retire", "create"]
    assert history.json()[0]["before"]["valid_to"] is None
    assert history.json()[0]["after"]["valid_to"] is not None


async def test_a_retired_rule_cannot_be_retired_again_later(api: httpx.AsyncClient) -> None:
    category = await _category(api)
    rule = (await api.post(f"{A}/routing-rules", headers=ADMIN, json={
        "category_id": category, "department_id": "water"})).json()
    retired = await api.post(f"{A}/routing-rules/{rule['id']}/retire", json={}, headers=ADMIN)
    assert retired.status_code == 200 and retired.json()["valid_to"], retired.text
    again = await api.post(f"{A}/routing-rules/{rule['id']}/retire", json={}, headers=ADMIN)
    assert again.status_code == 409 and again.json()["error"]["code"] == "rule_retired"
    missing = await api.post(f"{A}/routing-rules", headers=ADMIN, json={
        "category_id": category, "department_id": "no-such-department"})
    assert missing.status_code == 422, missing.text


# --- calendar --------------------------------------------------------------------------------

NOTICE_2031 = """# 2031 holiday notice (fictional year, far from the cases the tests register)
date,kind,note
2031-01-01,holiday,元旦
2031-01-25,workday,春节调休上班
2031-01-27,holiday,春节
"""


async def test_a_holiday_notice_is_validated_diffed_and_applied_by_the_cli(
    env: WorkflowEnvironment, settings: Settings, api: httpx.AsyncClient, tmp_path: Path
) -> None:
    notice = tmp_path / "2031.csv"
    notice.write_text(NOTICE_2031, encoding="utf-8-sig")  # with a BOM, as Excel saves CSV UTF-8
    code, out, err = await run_cli(env, settings, "admin", "calendar", "diff", str(notice),
                                   "--year", "2031")
    assert code == 0, err
    assert '"applied": false' in out and '"after": "workday"' in out
    assert (await api.get(f"{A}/calendar/2031", headers=ADMIN)).json() == []  # a diff only

    code, out, err = await run_cli(env, settings, "admin", "calendar", "apply", str(notice),
                                   "--year", "2031")
    assert code == 0, err
    days = (await api.get(f"{A}/calendar/2031", headers=ADMIN)).json()
    assert [(d["day"], d["kind"]) for d in days] == [
        ("2031-01-01", "holiday"), ("2031-01-25", "workday"), ("2031-01-27", "holiday")]
    log = await _changes(api, "calendar", "2031")
    assert log[0]["actor"]["name"].startswith("cli:") and log[0]["before"] == {}

    # The notice changes: one day less. The API shows the diff, then applies it.
    days_2 = [{"day": "2031-01-01", "kind": "holiday", "note": "元旦"},
              {"day": "2031-01-25", "kind": "workday"}]
    dry = await api.put(f"{A}/calendar/2031", params={"dry_run": "true"},
                        json={"days": days_2}, headers=ADMIN)
    assert dry.status_code == 200, dry.text
    assert [(c["day"], c["before"], c["after"]) for c in dry.json()["changes"]] == [
        ("2031-01-25", "workday", "workday"), ("2031-01-27", "holiday", None)]
    assert len((await api.get(f"{A}/calendar/2031", headers=ADMIN)).json()) == 3
    applied = await api.put(f"{A}/calendar/2031", json={"days": days_2}, headers=ADMIN)
    assert applied.json()["applied"] is True
    assert len((await api.get(f"{A}/calendar/2031", headers=ADMIN)).json()) == 2


@pytest.mark.parametrize(
    "text",
    [
        "date,kind\n2031-02-30,holiday\n",  # no such day
        "date,kind\n2031-03-01,day-off\n",  # unknown kind
        "date,kind\n2032-01-01,holiday\n",  # not in the notice's year
        "date,kind\n2031-03-01,holiday\n2031-03-01,workday\n",  # twice
        "day,type\n2031-03-01,holiday\n",  # no header
    ],
)
async def test_a_bad_notice_is_refused_by_the_cli_and_changes_nothing(
    env: WorkflowEnvironment, settings: Settings, api: httpx.AsyncClient, tmp_path: Path,
    text: str,
) -> None:
    notice = tmp_path / "bad.csv"
    notice.write_text(text, encoding="utf-8")
    before = (await api.get(f"{A}/calendar/2031", headers=ADMIN)).json()
    code, _, err = await cli_in_process(cli_env(env, settings), "admin", "calendar", "apply",
                                        str(notice), "--year", "2031")  # fmt: skip
    assert code == 2 and err.startswith("error:"), err
    assert (await api.get(f"{A}/calendar/2031", headers=ADMIN)).json() == before


async def test_input_the_cli_refuses_is_named_in_one_line(
    env: WorkflowEnvironment, settings: Settings
) -> None:
    """A record pydantic refuses: which field and why, in one line, without pydantic's
    "For further information visit https://errors.pydantic.dev/…" (an intranet user may not
    reach it) nor the input repeated."""
    code, _, err = await cli_in_process(
        cli_env(env, settings), "admin", "categories", "put", "noise_square",
        '{"name": "广场舞噪音", "default_urgency": "whenever"}',
    )  # fmt: skip
    assert code == 2 and err.startswith("error: invalid input: "), err
    assert "default_urgency" in err and "pydantic.dev" not in err, err
    assert len(err.strip().splitlines()) == 1, err


# --- policy values and templates ------------------------------------------------------------


async def test_a_policy_value_applies_to_new_cases_and_is_recorded_in_them(
    api: httpx.AsyncClient,
) -> None:
    name = "sla.urgent.accept_hours"
    try:
        bad = await api.put(f"{A}/policy/{name}", json={"value": -1}, headers=ADMIN)
        assert bad.status_code == 422, bad.text
        unknown = await api.put(f"{A}/policy/sla.urgent.lunch_hours", json={"value": 1},
                                headers=ADMIN)
        assert unknown.status_code == 404, unknown.text
        r = await api.put(f"{A}/policy/{name}", json={"value": 2}, headers=ADMIN)
        assert r.status_code == 200 and r.json()["overridden"] and r.json()["default"] == 0.5
        case = await api.post("/api/v1/complaints", headers=OPERATOR,
                              json=complaint(category_id="sewer_blockage"))
        case_id = case.json()["case_id"]

        async def deadlines() -> dict[str, Any] | None:
            view = await api.get(f"/api/v1/complaints/{case_id}", headers=SUPERVISOR)
            return view.json().get("deadlines") if view.status_code == 200 else None

        recorded = await eventually(deadlines, within=30)
        accept = datetime.fromisoformat(recorded["accept"])
        received = datetime.fromisoformat(case.json()["received_at"])
        assert accept - received == timedelta(hours=2)
        assert recorded["sla_hours"] == {"accept": 2.0, "contact": 1.0, "finish": 24.0}
    finally:
        reset = await api.delete(f"{A}/policy/{name}", headers=ADMIN)
        assert reset.status_code == 200 and not reset.json()["overridden"]
    log = await _changes(api, "policy", name)
    assert [c["action"] for c in log[:2]] == ["delete", "create"]


async def test_a_template_rewords_the_department_notice(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    url = f"{A}/notification-templates/routed/department"
    bad = await api.put(url, json={"subject": "${nope}", "body": "x"}, headers=ADMIN)
    assert bad.status_code == 422, bad.text
    try:
        r = await api.put(url, headers=ADMIN,
                          json={"subject": "【青河12345】$subject", "body": "$body\n——青河县热线"})
        assert r.status_code == 200, r.text
        case_id = (await api.post("/api/v1/complaints", headers=OPERATOR,
                                  json=complaint())).json()["case_id"]
        row = await eventually(lambda: pool.fetchrow(
            "SELECT subject, body FROM notifications WHERE case_id = $1"
            " AND recipient_kind = 'department'", case_id), within=30)
        assert row["subject"].startswith("【青河12345】") and case_id in row["subject"]
        assert row["body"].endswith("——青河县热线")
    finally:
        assert (await api.delete(url, headers=ADMIN)).status_code == 204
