"""基础数据 in the console (issue 12 part 5): the admin's pages for reference data, the
routing catalogue, the calendar, policy values, notification templates and the change log.
Admins only; every form is CSRF-checked and calls the jiesu.admin service the API calls; a
refused value is a 4xx next to its field and changes nothing; every change is in the change
log as ``person:<login>``. (The browser scenario: tests/test_console_browser.py.)"""

from __future__ import annotations

import html
import re
import uuid
from typing import Any, get_args

import asyncpg
import httpx
import pytest
from helpers import signed_in
from pydantic import TypeAdapter
from pydantic_core.core_schema import ErrorType

from api.console import form_words
from api.console.actions import CITIZEN_ACTIONS, STAFF_ACTIONS
from api.console.admin import records
from api.routers.oversight import AccountabilityCompletion
from jiesu.admin import calendar, reference, routing, templates
from jiesu.case.domain import SYSTEM_ACTOR, ComplaintIntake

PAGES = ["/console/admin/departments", "/console/admin/areas", "/console/admin/categories",
         "/console/admin/routing-rules", "/console/admin/calendar", "/console/admin/policy",
         "/console/admin/notification-templates", "/console/admin/changes"]  # fmt: skip


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Admin:
    """The demo admin at the console: pages, and forms posted with the session's token."""

    def __init__(self, client: httpx.AsyncClient, token: str) -> None:
        self.client = client
        self.token = token

    async def get(self, url: str, **params: Any) -> httpx.Response:
        return await self.client.get(url, params=params)

    async def post(self, url: str, data: dict[str, Any] | None = None,
                   **kwargs: Any) -> httpx.Response:  # fmt: skip
        return await self.client.post(url, data={**(data or {}), "csrf_token": self.token},
                                      **kwargs)  # fmt: skip


@pytest.fixture
async def admin(api: httpx.AsyncClient) -> Any:
    client = await signed_in(api, "admin")
    page = await client.get("/console/admin/changes")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    yield Admin(client, token[1])
    await client.aclose()


async def _last_change(pool: asyncpg.Pool) -> int:
    return await pool.fetchval("SELECT coalesce(max(id), 0) FROM admin_changes")


async def _logged(pool: asyncpg.Pool, entity: str, entity_id: str) -> list[tuple[str, Any]]:
    rows = await pool.fetch(
        "SELECT action, actor FROM admin_changes WHERE entity = $1 AND entity_id = $2"
        " ORDER BY id", entity, entity_id,
    )  # fmt: skip
    return [(r["action"], r["actor"].get("person")) for r in rows]


def _field_error(page: str, name: str) -> str:
    found = re.search(rf'class="field-error" role="alert" data-field="{name}">([^<]*)<', page)
    assert found is not None, f"no message next to {name!r}"
    return found[1]


def test_every_level_and_kind_of_the_service_has_its_chinese_word() -> None:
    level = reference.DepartmentIn.model_fields["level"].annotation
    assert set(records.LEVELS) == set(get_args(level))
    assert set(records.AREA_KINDS) == set(reference.PARENT_KIND)


@pytest.mark.parametrize("login", ["operator", "supervisor", "auditor", "water-clerk"])
async def test_the_pages_are_for_admins_only(api: httpx.AsyncClient, login: str) -> None:
    other = await signed_in(api, login)
    for url in [*PAGES, "/console/admin", "/console/admin/routing-rules/1"]:
        assert (await other.get(url)).status_code == 403, url
    refused = await other.post("/console/admin/departments", data={"id": "x", "name": "x"})
    assert refused.status_code == 403
    home = await other.get("/console/", follow_redirects=True)
    assert home.status_code == 200 and "基础数据" not in home.text  # not in the nav either
    await other.aclose()
    anonymous = await api.get("/console/admin/departments")
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/console/login"


async def test_every_page_opens_for_the_admin(admin: Admin) -> None:
    for url in PAGES:
        answer = await admin.get(url)
        assert answer.status_code == 200, (url, answer.text)
        assert '<nav class="subnav"' in answer.text and "基础数据</a>" in answer.text
    assert "water" in (await admin.get("/console/admin/departments")).text
    areas = (await admin.get("/console/admin/areas")).text
    assert "G-QH-03-02-2" in areas and "Polygon" in areas  # the grids' boundaries as GeoJSON
    assert "sewer_blockage" in (await admin.get("/console/admin/categories")).text
    assert "sla.urgent.accept_hours" in (await admin.get("/console/admin/policy")).text
    assert (await admin.get("/console/admin")).headers["location"] == "/console/admin/changes"


async def test_a_form_without_the_csrf_token_is_refused_and_changes_nothing(
    admin: Admin, pool: asyncpg.Pool
) -> None:
    dept = _uid("dept")
    last = await _last_change(pool)
    forged = await admin.client.post("/console/admin/departments",
                                     data={"id": dept, "name": "县文旅局", "level": "county"})
    assert forged.status_code == 403
    wrong = await admin.client.post("/console/admin/policy/max_extensions",
                                    data={"value": "9", "csrf_token": "not-the-token"})
    assert wrong.status_code == 403
    assert await _last_change(pool) == last
    assert await pool.fetchval("SELECT count(*) FROM departments WHERE id = $1", dept) == 0


async def test_departments_areas_and_categories_are_added_changed_and_deleted(
    admin: Admin, pool: asyncpg.Pool
) -> None:
    dept, grid, cat = _uid("dept"), _uid("G"), _uid("cat")
    made = await admin.post("/console/admin/departments", {
        "id": dept, "name": "县文旅局", "level": "county", "parent_id": "", "area_id": "QH"})
    assert made.status_code == 303, made.text
    listed = await admin.get("/console/admin/departments", edit=dept)
    assert 'value="县文旅局"' in listed.text  # the form filled in to change it
    renamed = await admin.post("/console/admin/departments", {
        "id": dept, "name": "县文化和旅游局", "level": "county", "area_id": "QH"})
    assert renamed.status_code == 303
    square = ('{"type": "Polygon", "coordinates": [[[116.10, 39.90], [116.11, 39.90], '
              '[116.11, 39.91], [116.10, 39.90]]]}')
    community = await pool.fetchval("SELECT parent_id FROM areas WHERE id = 'G-QH-03-02-2'")
    assert (await admin.post("/console/admin/areas", {
        "id": grid, "name": "测试网格", "kind": "grid", "parent_id": community,
        "boundary": square})).status_code == 303  # fmt: skip
    assert (await admin.post("/console/admin/categories", {
        "id": cat, "name": "广场舞噪音", "default_urgency": "general",
        "description": "夜间广场舞音响扰民"})).status_code == 303  # fmt: skip
    record = await reference.get_record(pool, reference.AREAS, grid)
    assert record["boundary"]["type"] == "Polygon"
    for path, record_id in (("departments", dept), ("areas", grid), ("categories", cat)):
        gone = await admin.post(f"/console/admin/{path}/{record_id}/delete")
        assert gone.status_code == 303, gone.text
    assert await pool.fetchval("SELECT count(*) FROM departments WHERE id = $1", dept) == 0
    assert await _logged(pool, "department", dept) == [
        ("create", "admin"), ("update", "admin"), ("delete", "admin")]
    assert await _logged(pool, "area", grid) == [("create", "admin"), ("delete", "admin")]
    assert await _logged(pool, "category", cat) == [("create", "admin"), ("delete", "admin")]


async def test_a_form_saved_after_another_admin_changed_the_record_is_refused(
    admin: Admin, pool: asyncpg.Pool
) -> None:
    """修改 opened, another admin saves meanwhile: this save is refused with a message and
    what was typed stays in the form; the other admin's change stands."""
    dept = _uid("dept")
    fields = {"id": dept, "name": "县文旅局", "level": "county", "area_id": "QH"}
    assert (await admin.post("/console/admin/departments", fields)).status_code == 303
    opened = await admin.get("/console/admin/departments", edit=dept)
    version = re.search(r'name="version" value="([0-9a-f]+)"', opened.text)
    assert version is not None, "the form opened with 修改 carries the record's version"
    edit = {**fields, "version": version[1], "edit_id": dept}
    renamed = reference.DepartmentIn(name="县文化和旅游局", level="county", area_id="QH")
    await reference.put_record(pool, SYSTEM_ACTOR, reference.DEPARTMENTS, dept, renamed)
    late = await admin.post("/console/admin/departments", {**edit, "name": "县旅游局"})
    assert late.status_code == 409, late.text
    assert "已被他人修改" in late.text and 'value="县旅游局"' in late.text
    kept = await reference.get_record(pool, reference.DEPARTMENTS, dept)
    assert kept["name"] == "县文化和旅游局"
    # saved under another id, the form makes a new record: no version applies to it
    copy = _uid("dept")
    assert (await admin.post("/console/admin/departments",
                             {**edit, "id": copy})).status_code == 303  # fmt: skip
    reopened = await admin.get("/console/admin/departments", edit=dept)
    fresh = re.search(r'name="version" value="([0-9a-f]+)"', reopened.text)
    assert fresh is not None and fresh[1] != version[1]
    saved = await admin.post("/console/admin/departments",
                             {**edit, "version": fresh[1], "name": "县旅游局"})  # fmt: skip
    assert saved.status_code == 303, saved.text


async def test_bad_values_are_refused_next_to_their_field_and_change_nothing(
    admin: Admin, pool: asyncpg.Pool
) -> None:
    last = await _last_change(pool)
    grid = _uid("G")
    # The service's own check: a grid's parent must be a community (422 invalid_parent).
    wrong_parent = await admin.post("/console/admin/areas", {
        "id": grid, "name": "测试网格", "kind": "grid", "parent_id": "QH"})
    assert wrong_parent.status_code == 422
    assert "上级不符合层级" in _field_error(wrong_parent.text, "parent_id")
    assert 'value="测试网格"' in wrong_parent.text  # what was typed stays in the form
    not_json = await admin.post("/console/admin/areas", {
        "id": grid, "name": "测试网格", "kind": "grid", "boundary": "{not json"})
    assert not_json.status_code == 422 and "JSON" in _field_error(not_json.text, "boundary")
    crossing = ('{"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], '
                '[0, 0]]]}')
    bowtie = await admin.post("/console/admin/areas", {
        "id": grid, "name": "测试网格", "kind": "grid", "boundary": crossing})
    assert bowtie.status_code == 422 and _field_error(bowtie.text, "boundary")
    bad_id = await admin.post("/console/admin/categories", {
        "id": "空格 id", "name": "x", "default_urgency": "general"})
    assert bad_id.status_code == 422 and "编号无效" in _field_error(bad_id.text, "id")
    no_name = await admin.post("/console/admin/categories", {
        "id": _uid("cat"), "name": "", "default_urgency": "general"})
    assert no_name.status_code == 422 and _field_error(no_name.text, "name")
    in_use = await admin.post("/console/admin/departments/water/delete")
    assert in_use.status_code == 409 and "仍被引用" in in_use.text
    too_long = await admin.post("/console/admin/policy/sla.urgent.accept_hours",
                                {"value": "100000"})
    assert too_long.status_code == 422
    assert "取值超出允许范围" in _field_error(too_long.text, "value")
    not_a_number = await admin.post("/console/admin/policy/max_extensions", {"value": "inf"})
    assert not_a_number.status_code == 422 and _field_error(not_a_number.text, "value")
    unknown = await admin.post("/console/admin/policy/no_such_value", {"value": "1"})
    assert unknown.status_code == 404
    template = await admin.post("/console/admin/notification-templates", {
        "event_kind": "routed", "recipient_kind": "department", "subject": "$secret",
        "body": "$body"})  # fmt: skip
    assert template.status_code == 422 and "unknown fields" in _field_error(template.text,
                                                                             "subject")
    backwards = await admin.post("/console/admin/routing-rules", {
        "category_id": "sewer_blockage", "department_id": "water",
        "valid_from": "2099-02-01T00:00", "valid_to": "2099-01-01T00:00"})
    assert backwards.status_code == 422 and "valid_to" in backwards.text
    ghost = await admin.post("/console/admin/routing-rules", {
        "category_id": "no-such-category", "department_id": "water"})
    assert ghost.status_code == 422 and "引用的记录不存在" in ghost.text
    bad_csv = await admin.post("/console/admin/calendar/validate", {
        "year": "2033", "csv_text": "date,kind,note\n2033-02-30,holiday,不存在的日子\n"})
    assert bad_csv.status_code == 422 and "第 2 行" in _field_error(bad_csv.text, "file")
    outside = await admin.post("/console/admin/calendar/apply", {
        "year": "2033", "csv_text": "date,kind,note\n2034-01-01,holiday,元旦\n"})
    assert outside.status_code == 422
    said = _field_error(outside.text, "file")
    assert said == "输入有误 — CSV 文件第 2 行 date：2034-01-01 不在 2033 年", said
    assert await _last_change(pool) == last  # nothing of all that changed anything
    assert await pool.fetchval("SELECT count(*) FROM areas WHERE id = $1", grid) == 0
    assert await calendar.list_days(pool, 2033) == []


async def test_a_routing_rule_is_added_replaced_and_retired_with_its_history(
    admin: Admin, pool: asyncpg.Pool
) -> None:
    cat = _uid("cat")  # a category of its own: no other test's case is routed by these rules
    await reference.put_record(pool, SYSTEM_ACTOR, reference.CATEGORIES, cat,
                               reference.CategoryIn(name="测试分类", default_urgency="general"))
    rule = {"category_id": cat, "area_id": "", "department_id": "water", "priority": "5",
            "valid_from": "2099-01-01T08:00", "valid_to": ""}  # fmt: skip
    added = await admin.post("/console/admin/routing-rules", rule)
    assert added.status_code == 303, added.text
    rule_id = int(added.headers["location"].rsplit("=", 1)[1])
    again = await admin.post("/console/admin/routing-rules", rule)  # a double click
    assert again.headers["location"] == added.headers["location"]
    listed = await admin.get("/console/admin/routing-rules", category_id=cat)
    scheduled = listed.text.split('id="rules-scheduled"')[1]
    assert f'data-rule="{rule_id}"' in scheduled and "2099-01-01 08:00" in scheduled
    replaced = await admin.post(f"/console/admin/routing-rules/{rule_id}/replace",
                                {"department_id": "housing", "at": "2099-03-01T00:00"})
    assert replaced.status_code == 303, replaced.text
    successor = int(re.search(r"/routing-rules/(\d+)", replaced.headers["location"])[1])
    retired = await admin.post(f"/console/admin/routing-rules/{successor}/retire",
                               {"at": "2099-06-01T00:00"})
    assert retired.status_code == 303, retired.text
    late = await admin.post(f"/console/admin/routing-rules/{successor}/retire", {"at": ""})
    assert late.status_code == 422  # not before it comes into force
    assert "生效时间有误" in _field_error(late.text, "retire_at")
    page = (await admin.get(f"/console/admin/routing-rules/{rule_id}")).text
    history = page.split('id="history"')[1]
    assert "person:admin" in history and "新增" in history and "停用" in history
    assert "2099-03-01 00:00" in history  # the local time typed: in force until then
    everything = (await admin.get("/console/admin/routing-rules", category_id=cat,
                                  every_version="true")).text
    assert f'data-rule="{rule_id}"' in everything and f'data-rule="{successor}"' in everything
    assert await _logged(pool, "routing_rule", str(rule_id)) == [
        ("create", "admin"), ("retire", "admin")]
    assert await _logged(pool, "routing_rule", str(successor)) == [
        ("create", "admin"), ("retire", "admin")]


NOTICE = """# 2032 holiday notice (a fictional year, far from the cases the tests register)
date,kind,note
2032-01-01,holiday,元旦
2032-02-07,workday,春节调休上班
2032-02-09,holiday,春节
"""


async def test_the_holiday_notice_is_validated_shown_and_applied(
    admin: Admin, pool: asyncpg.Pool
) -> None:
    await calendar.load(pool, SYSTEM_ACTOR, calendar.Notice(year=2032, days=[]), apply=True)
    before = await _last_change(pool)
    upload = {"file": ("2032.csv", ("\ufeff" + NOTICE).encode(), "text/csv")}  # Excel's BOM
    checked = await admin.post("/console/admin/calendar/validate", {"year": "2032"},
                               files=upload)
    assert checked.status_code == 200, checked.text
    diff = checked.text.split('id="diff"')[1]
    assert all(d in diff for d in ("2032-01-01", "2032-02-07", "2032-02-09", "春节调休上班"))
    assert await calendar.list_days(pool, 2032) == [] and await _last_change(pool) == before
    carried = re.search(r'<textarea name="csv_text" hidden>([^<]*)</textarea>', checked.text)
    assert carried is not None and "2032-02-09" in carried[1]
    applied = await admin.post("/console/admin/calendar/apply",
                               {"year": "2032", "csv_text": NOTICE})
    assert applied.status_code == 303
    assert applied.headers["location"] == "/console/admin/calendar?year=2032&done=3"
    days = await calendar.list_days(pool, 2032)
    assert [(str(d.day), d.kind) for d in days] == [
        ("2032-01-01", "holiday"), ("2032-02-07", "workday"), ("2032-02-09", "holiday")]
    twice = await admin.post("/console/admin/calendar/apply", {"year": "2032", "csv_text": NOTICE})
    assert twice.headers["location"].endswith("done=0")  # a second click changes nothing
    logged = await pool.fetch("SELECT entity_id, actor FROM admin_changes WHERE id > $1", before)
    assert [(r["entity_id"], r["actor"]["person"]) for r in logged] == [("2032", "admin")]
    shown = (await admin.get("/console/admin/calendar", year="2032")).text
    assert 'data-day="2032-02-07"' in shown and "上班（调休）" in shown


async def test_policy_values_and_notification_templates_are_set_and_reset(
    admin: Admin, pool: asyncpg.Pool
) -> None:
    name = "extension_decision_hours"
    assert (await admin.post(f"/console/admin/policy/{name}", {"value": "36"})).status_code == 303
    row = (await admin.get("/console/admin/policy")).text.split(f'data-policy="{name}"')[1]
    assert row.split("</tr>")[0].count("已调整") == 1 and "36" in row.split("</tr>")[0]
    assert (await admin.post(f"/console/admin/policy/{name}/reset")).status_code == 303
    assert await pool.fetchval("SELECT count(*) FROM policy_values WHERE name = $1", name) == 0
    logged = await pool.fetch(
        "SELECT action, before, after FROM admin_changes WHERE entity = 'policy'"
        " AND entity_id = $1 ORDER BY id DESC LIMIT 2", name,
    )  # fmt: skip
    assert [r["action"] for r in logged] == ["delete", "create"]
    assert logged[1]["after"] == {"value": 36.0}

    target = {"event_kind": "deadline_breached", "recipient_kind": "supervisor"}
    put = await admin.post("/console/admin/notification-templates", {
        **target, "subject": "【青河12345】$subject", "body": "$body\n——青河县热线"})
    assert put.status_code == 303, put.text
    listed = await admin.get("/console/admin/notification-templates",
                             edit="deadline_breached/supervisor")
    assert "【青河12345】$subject" in listed.text and "——青河县热线" in listed.text
    gone = await admin.post("/console/admin/notification-templates/deadline_breached/"
                            "supervisor/delete")
    assert gone.status_code == 303
    assert await _logged(pool, "notification_template", "deadline_breached/supervisor") == [
        ("create", "admin"), ("delete", "admin")]


async def test_the_change_log_shows_who_when_before_and_after_and_filters(
    admin: Admin, pool: asyncpg.Pool
) -> None:
    cat = _uid("cat")
    for name in ("旧名称", "新名称"):
        await admin.post("/console/admin/categories", {
            "id": cat, "name": name, "default_urgency": "general"})
    log = await admin.get("/console/admin/changes", entity="category", entity_id=cat)
    rows = re.findall(r'<tr data-change="\d+" data-entity="([^"]+)" data-entity-id="([^"]+)"',
                      log.text)
    assert rows == [("category", cat), ("category", cat)]
    update = log.text.split("<tr data-change=")[1]
    assert "person:admin" in update and "修改" in update
    assert "旧名称" in update and "新名称" in update and "default_urgency" not in update
    only_rules = await admin.get("/console/admin/changes", entity="routing_rule")
    assert 'data-entity="category"' not in only_rules.text


# --- 输入有误 in Chinese ----------------------------------------------------------------------

# What a core schema node can be refused with (pydantic_core's error types), and what its
# constraints add; a node kind not listed fails the test below, to be looked at.
_TYPES_OF_NODE: dict[str, set[str]] = {
    "str": {"string_type"}, "int": {"int_type", "int_parsing", "int_from_float"},
    "float": {"float_type", "float_parsing"}, "bool": {"bool_type", "bool_parsing"},
    "literal": {"literal_error"}, "enum": {"enum"}, "dict": {"dict_type"},
    "list": {"list_type"}, "none": {"none_required"}, "is-instance": {"is_instance_of"},
    "datetime": {"datetime_type", "datetime_parsing", "datetime_from_date_parsing",
                 "datetime_object_invalid"},
    "date": {"date_type", "date_parsing", "date_from_datetime_parsing",
             "date_from_datetime_inexact"},
    "url": {"url_type", "url_parsing", "url_scheme", "url_syntax_violation", "url_too_long"},
    "model": {"model_type"}, "model-fields": {"model_attributes_type"},
    "tagged-union": {"union_tag_invalid", "union_tag_not_found"},
    "function-after": {"value_error"}, "function-before": {"value_error"},
    "function-wrap": {"value_error"}, "function-plain": {"value_error"},
    **{kind: set() for kind in ("nullable", "default", "model-field", "union", "any", "chain",
                                "definitions", "definition-ref")},
}  # fmt: skip
_TYPES_OF_CONSTRAINT = {"max_length": "too_long", "min_length": "too_short",
                        "ge": "greater_than_equal", "le": "less_than_equal", "gt": "greater_than",
                        "lt": "less_than", "pattern": "string_pattern_mismatch"}  # fmt: skip
_NOT_SCHEMAS = ("metadata", "serialization", "ref", "config", "cls", "function")


def _node_types(node: dict[str, Any]) -> set[str]:
    kind = node["type"]
    assert kind in _TYPES_OF_NODE, f"a schema of kind {kind!r}: which errors can it raise?"
    found = set(_TYPES_OF_NODE[kind])
    for constraint, error in _TYPES_OF_CONSTRAINT.items():
        if node.get(constraint) is not None:
            found.add(f"string_{error}" if kind == "str" and "too_" in error else error)
    if kind == "datetime" and node.get("tz_constraint") == "aware":
        found.add("timezone_aware")
    if kind == "model-fields":
        if any(f["schema"]["type"] != "default" for f in node["fields"].values()):
            found.add("missing")
        if node.get("extra_behavior") == "forbid":
            found.add("extra_forbidden")
    if kind == "model" and (node.get("config") or {}).get("extra_fields_behavior") == "forbid":
        found.add("extra_forbidden")
    return found


def _error_types(schema: Any) -> set[str]:
    """Every pydantic error type a core schema can raise, by walking it."""
    if isinstance(schema, list):
        return set().union(*(_error_types(s) for s in schema))
    if not isinstance(schema, dict):
        return set()
    found = _node_types(schema) if isinstance(schema.get("type"), str) else set()
    for key, value in schema.items():
        if key not in _NOT_SCHEMAS:
            found |= _error_types(list(value.values()) if key == "fields" else value)
    return found


def test_every_error_the_console_models_can_raise_has_chinese_words() -> None:
    """Each model a console form validates (the administration's, the case pages' action
    bodies, intake, 问责): every error type it can raise has words in form_words.PROBLEMS,
    is our validators' own (value_error) or is left to pydantic's message on purpose
    (FALLBACK). A model given a new kind of field shows here before a clerk reads English."""
    bodies = {a.spec.body for a in (*STAFF_ACTIONS, *CITIZEN_ACTIONS) if a.spec.body}
    models = [routing.RuleIn, routing.Retirement, routing.Replacement, reference.DepartmentIn,
              reference.AreaIn, reference.CategoryIn, templates.TemplateIn, calendar.Notice,
              ComplaintIntake, AccountabilityCompletion, *bodies]  # fmt: skip
    raised = set().union(*(_error_types(m.__pydantic_core_schema__) for m in models))
    raised |= _error_types(TypeAdapter(reference.Id).core_schema)
    assert {"missing", "string_too_long", "int_parsing", "literal_error"} <= raised  # it walks
    worded = set(form_words.PROBLEMS) | form_words.FALLBACK | {"value_error"}
    assert raised <= worded, sorted(raised - worded)
    assert worded <= set(get_args(ErrorType)), sorted(worded - set(get_args(ErrorType)))


def test_an_error_type_without_words_keeps_pydantics_message() -> None:
    error: Any = {"type": "uuid_parsing", "loc": ("id",), "msg": "Input should be a valid UUID",
                  "input": "x"}  # fmt: skip
    assert form_words.problem(error) == "Input should be a valid UUID"


async def test_refused_admin_forms_name_the_field_by_its_label_in_chinese(admin: Admin) -> None:
    """基础数据: 输入有误, the field's label as the form shows it, and what is wrong in Chinese
    (not pydantic's "String should have at most 200 characters")."""
    too_long = await admin.post("/console/admin/categories", {
        "id": _uid("cat"), "name": "名" * 201, "default_urgency": "general"})  # fmt: skip
    assert too_long.status_code == 422
    assert _field_error(too_long.text, "name") == "输入有误 — 名称：最多 200 个字"
    bad_kind = await admin.post("/console/admin/areas", {
        "id": _uid("G"), "name": "测试网格", "kind": "planet"})  # fmt: skip
    assert _field_error(bad_kind.text, "kind") == (
        "输入有误 — 类型：须为以下之一：市、县、乡镇（街道）、社区（村）、网格")
    priority = await admin.post("/console/admin/routing-rules", {
        "category_id": "sewer_blockage", "department_id": "water", "priority": "很高"})
    assert _field_error(priority.text, "priority") == "输入有误 — 优先级：须为整数"
    too_high = await admin.post("/console/admin/routing-rules", {
        "category_id": "sewer_blockage", "department_id": "water", "priority": "5000"})
    assert _field_error(too_high.text, "priority") == "输入有误 — 优先级：不能大于 1000"
    backwards = await admin.post("/console/admin/routing-rules", {
        "category_id": "sewer_blockage", "department_id": "water",
        "valid_from": "2099-02-01T00:00", "valid_to": "2099-01-01T00:00"})  # fmt: skip
    assert "输入有误 — 失效时间须晚于生效时间" in backwards.text
    subject = await admin.post("/console/admin/notification-templates", {
        "event_kind": "routed", "recipient_kind": "department", "subject": "题" * 301,
        "body": "$body"})  # fmt: skip
    assert _field_error(subject.text, "subject") == "输入有误 — 标题：最多 300 个字"


def _options(page: str, name: str) -> list[str]:
    """The names the form's select ``name`` shows (its options' texts, the empty one left out)."""
    select = re.search(rf'<select name="{name}"[^>]*>(.*?)</select>', page, re.S)
    assert select is not None, f"no select {name!r}"
    shown = [html.unescape(t).strip() for t in re.findall(r"<option[^>]*>([^<]*)<", select[1])]
    return [t for t in shown if t != "—"]


@pytest.mark.parametrize(("path", "body", "name"), [
    ("departments", {"name": "测试单位", "level": "planet"}, "level"),
    ("areas", {"name": "测试网格", "kind": "planet"}, "kind"),
    ("categories", {"name": "测试类别", "default_urgency": "asap"}, "default_urgency"),
])  # fmt: skip
async def test_a_refused_choice_is_said_by_the_names_its_select_shows(
    admin: Admin, path: str, body: dict[str, str], name: str
) -> None:
    """A value no select offers (a stale or forged form): 须为以下之一 and the names the
    person sees in the select (市、县…), not the service's codes (city、county…)."""
    refused = await admin.post(f"/console/admin/{path}", {"id": _uid("x"), **body})
    assert refused.status_code == 422
    said = _field_error(refused.text, name)
    assert said.endswith("须为以下之一：" + "、".join(_options(refused.text, name))), said
    assert not re.search(r"[a-z]{3,}", said), said


async def test_a_refused_holiday_notice_names_the_line_in_chinese(admin: Admin) -> None:
    note = "长" * 201
    refused = await admin.post("/console/admin/calendar/validate", {
        "year": "2033", "csv_text": f"date,kind,note\n2033-01-01,holiday,{note}\n"})
    assert refused.status_code == 422
    assert _field_error(refused.text, "file") == "输入有误 — CSV 文件第 2 行 note：最多 200 个字"
    assert "String should" not in refused.text


NOTICE_WITH_COMMENTS = """# 2033 年部分节假日安排
# 元旦
date,kind,note
2033-01-01,holiday,元旦

# 春节
2033-01-30,holday,春节
2033-02-05,workday,"春节调休
上班"
2033-01-01,workday,again
"""


@pytest.mark.parametrize(("replace", "said"), [
    (None, "输入有误 — CSV 文件第 7 行 kind：须为以下之一：holiday、workday"),
    (("holday", "holiday"), "输入有误 — CSV 文件第 8 行 note：不能含换行等控制字符（U+000A）"),
    (("调休\n上班", "调休上班"), "输入有误 — CSV 文件第 9 行 date：2033-01-01 已在第 4 行列出"),
    (("date,kind,note", "day,kind,note"), "输入有误 — CSV 文件第 3 行：须为表头 date,kind,note"),
])  # fmt: skip
async def test_a_refused_holiday_notice_names_the_line_an_editor_shows(
    admin: Admin, replace: tuple[str, str] | None, said: str
) -> None:
    """The line an editor shows, comments and blank lines counted (they were not: a wrong
    kind on line 7 was said to be on line 3); each earlier mistake fixed in turn."""
    csv_text = NOTICE_WITH_COMMENTS
    fixes = [("holday", "holiday"), ("调休\n上班", "调休上班"), ("date,kind,note", "day,kind,note")]
    for fix in fixes[: fixes.index(replace) + 1] if replace else []:
        csv_text = csv_text.replace(*fix)
    refused = await admin.post("/console/admin/calendar/validate",
                               {"year": "2033", "csv_text": csv_text})  # fmt: skip
    assert refused.status_code == 422
    assert _field_error(refused.text, "file") == said


async def test_a_refused_person_names_the_field_by_its_label_in_chinese(admin: Admin) -> None:
    """人员管理: the account service's refusal next to 输入有误 and the form's label."""
    person = {"login": _uid("p"), "display_name": "名" * 101, "role": "department",
              "department_id": "water", "password": "a-long-enough-password"}  # fmt: skip
    refused = await admin.post("/console/people", person)
    assert refused.status_code == 422
    assert "输入有误 — 姓名：须为 1–100 个可显示的字" in refused.text
    short = await admin.post("/console/people", {**person, "display_name": "赵磊",
                                                  "password": "short"})  # fmt: skip
    assert "输入有误 — 初始密码：须为 10–256 个字符" in short.text



async def test_a_notice_with_old_mac_line_ends_is_read_not_a_500(admin: Admin) -> None:
    """Lines ended by a lone CR (a spreadsheet's "CSV (Macintosh)") read as lines (csv.Error
    escaped parse_csv: a 500)."""
    mac = await admin.post("/console/admin/calendar/validate", {
        "year": "2033", "csv_text": "date,kind,note\r2033-01-01,holiday,元旦\r"})  # fmt: skip
    assert mac.status_code == 200, mac.text[-500:]
    assert "2033-01-01" in mac.text


def test_a_cell_over_the_csv_field_limit_is_refused_by_its_line() -> None:
    """The CLI reads any file: a cell over the csv module's 131,072 characters was a
    traceback (csv.Error is no ValueError)."""
    with pytest.raises(calendar.NoticeLine) as refused:
        calendar.parse_csv("date,kind,note\n2033-01-01,holiday," + "x" * 140_000, 2033)
    assert (refused.value.line, refused.value.reason) == (2, "unreadable")


async def test_a_notice_without_days_is_refused_not_applied(admin: Admin) -> None:
    """A file with its header and no day (an export that went wrong; lines separated by
    U+2028, which CSV does not split on) would have cleared the year's overrides when applied;
    clearing a year is the API's ``days: []``."""
    for csv_text in ("# 2033\ndate,kind,note\n", "date,kind,note\u20282033-01-01,holiday,元旦"):
        refused = await admin.post("/console/admin/calendar/apply",
                                   {"year": "2033", "csv_text": csv_text})  # fmt: skip
        assert refused.status_code == 422, refused.text[-300:]
        said = _field_error(refused.text, "file")
        assert said.endswith("是表头，其后没有列出任何日期"), said
