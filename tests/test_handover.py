"""移交: a retired unit's open cases handed to the unit that takes over its work — by the admin
for the whole unit (``POST /admin/departments/{id}/hand-over``, ``jiesu admin departments
hand-over``) or by a dispatcher for one case (``POST /complaints/{id}/hand-over``). The case
judges it itself (lean-case-v32): it looks both units up, so a handover of a unit in service,
sent by any Temporal client, is refused (jiesu/admin/handover.py, docs/administration.md)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any
from unittest.mock import patch

import asyncpg
import httpx
import pytest
from helpers import (
    SUPERVISOR,
    act,
    case_when,
    cli_in_process,
    event_kinds,
    eventually,
    keep_history,
    own_queue,
    register,
    replay_checked,
    served,
    signal_sent,
    signed_in,
    start_of,
    started_assigned,
    until,
)
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from test_api_errors import closed_port
from test_audit import cli_env
from test_console_browser import shot, sign_in
from test_department_retirement import ADMIN, A, _code, _put, _routed_to, _uid, _unit_with_a_rule

from api.main import create_app
from jiesu.access import api_keys
from jiesu.admin import handover
from jiesu.case.domain import CENTRE_ID, Actor, CaseSignal, CaseState, EventKind, Role
from jiesu.client import connect_to
from jiesu.config import Settings, get_settings
from jiesu.ops import cli
from worker import build_worker

REASON = "机构改革：该局职能划入新设单位"


async def _co_handling(pool: asyncpg.Pool, case_id: str) -> bool:
    state = await pool.fetchval("SELECT state FROM cases WHERE case_id = $1", case_id)
    return state is not None and bool(state.get("co_handlers"))


def _refused(s: CaseState) -> list[str]:
    """The codes of the case's refused handovers, in order."""
    return [e.data["code"] for e in s.events
            if e.kind is EventKind.REJECTED and e.data["action"] == "hand_over"]  # fmt: skip


async def _successor(api: httpx.AsyncClient) -> str:
    unit = _uid("dep")
    await _put(api, f"departments/{unit}", {"name": f"新设局{unit}", "level": "county"})
    return unit


async def _retire(api: httpx.AsyncClient, department: str) -> dict[str, Any]:
    r = await api.post(f"{A}/departments/{department}/retire", json={}, headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()


async def _held_by(pool: asyncpg.Pool, case_id: str, department: str) -> bool:
    """The read model shows the case with ``department`` (what a unit's handover lists)."""
    row = await pool.fetchrow("SELECT department_id, status FROM cases WHERE case_id = $1",
                              case_id)  # fmt: skip
    return row is not None and row["department_id"] == department and row["status"] in (
        "assigned", "handling")


async def test_a_retired_units_cases_go_to_its_successor_once(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool
) -> None:
    department, category, _ = await _unit_with_a_rule(api)
    successor = await _successor(api)
    case_id, routed = await _routed_to(api, category)
    assert routed == department
    await eventually(lambda: _held_by(pool, case_id, department), within=30)
    url = f"{A}/departments/{department}/hand-over"
    body = {"department_id": successor, "reason": REASON}
    early = await api.post(url, json=body, headers=ADMIN)  # in service: nothing is sent
    assert _code(early) == (409, "department_in_service"), early.text
    before = await until(client, case_id, lambda s: s.deadlines is not None)

    assert (await _retire(api, department))["open_cases"] == 1
    sent = await api.post(url, json=body, headers=ADMIN)
    assert sent.status_code == 200, sent.text
    assert sent.json() | {"left": []} == {"department_id": department, "sent": [case_id],
                                          "to_department_id": successor, "left": [],
                                          "remaining": 0, "next": None,
                                          "to_department_name": f"新设局{successor}"}  # fmt: skip

    state = await until(client, case_id, lambda s: s.department_id == successor)
    assert state.assignment is not None and state.assignment.department_name == f"新设局{successor}"
    assert state.status.value == "assigned"
    kinds = event_kinds(state)
    assert EventKind.HANDED_OVER in kinds and EventKind.DEADLINE_BREACHED not in kinds
    handed = next(e for e in state.events if e.kind is EventKind.HANDED_OVER)
    assert handed.data == {"reason": REASON, "department_id": department,
                           "to_department_id": successor}  # fmt: skip
    assert handed.actor.role is Role.ADMIN
    started = next(e for e in state.events if e.kind is EventKind.REASSIGNMENT_STARTED)
    assert started.data["reason"] == "handover"
    assert state.deadlines is not None and before.deadlines is not None
    assert state.deadlines.accept > before.deadlines.accept  # a round of its own

    # a retry of the whole handover: the case is no longer the unit's; sent again by hand
    # with the same request id, the case applies it once
    await eventually(lambda: _held_by(pool, case_id, successor), within=30)
    again = await api.post(url, json=body, headers=ADMIN)
    assert again.status_code == 200 and again.json()["sent"] == [], again.text
    first = handed.actor.model_dump(mode="json")
    handle = client.get_workflow_handle(case_id)
    fresh = {**first, "request_id": "hand-over-fresh"}  # the same handover, another request
    for actor in (first, fresh):
        await handle.signal(CaseSignal.HAND_OVER.value, {
            "actor": actor, "from_department_id": department, "department_id": successor,
            "reason": REASON})  # fmt: skip
    # the fresh one is refused (the unit no longer holds the case); the retry is not even
    # judged: one refusal, not two (the review of 2026-11-25: the retry alone proved nothing)
    later = await until(client, case_id, lambda s: bool(_refused(s)))
    assert _refused(later) == ["holder_changed"], _refused(later)
    assert event_kinds(later).count(EventKind.HANDED_OVER) == 1
    assert (await _retire(api, department))["open_cases"] == 0  # a retry: as it is now
    await keep_history(client.get_workflow_handle(case_id), "handover_to_successor")


async def test_a_handover_refused_changes_nothing(api: httpx.AsyncClient) -> None:
    department, _, _ = await _unit_with_a_rule(api)
    successor = await _successor(api)
    await _retire(api, department)
    url = f"{A}/departments/{department}/hand-over"
    gone = await _successor(api)
    await _retire(api, gone)
    for to, answer in ((gone, (422, "department_retired")),
                       (CENTRE_ID, (422, "centre_not_assignee")),
                       (department, (422, "same_department")),
                       (_uid("none"), (422, "unknown_department"))):  # fmt: skip
        r = await api.post(url, json={"department_id": to, "reason": REASON}, headers=ADMIN)
        assert _code(r) == answer, r.text
    missing = await api.post(f"{A}/departments/{_uid('none')}/hand-over", headers=ADMIN,
                             json={"department_id": successor, "reason": REASON})
    assert _code(missing) == (404, "department_not_found"), missing.text
    blank = await api.post(url, json={"department_id": successor, "reason": "　 "},
                           headers=ADMIN)  # fmt: skip
    assert blank.status_code == 422, blank.text
    clerk = await api.post(url, json={"department_id": successor, "reason": REASON},
                           headers=SUPERVISOR)  # fmt: skip
    assert clerk.status_code == 403, clerk.text


async def test_a_unit_in_service_keeps_its_case_whoever_sends_the_handover(
    api: httpx.AsyncClient, client: Client
) -> None:
    """The dispatcher's one-case handover of a unit in service is refused by the case (409
    holder_in_service, from its event); so is one sent by another Temporal client, and one
    naming a unit that no longer holds the case."""
    department, category, _ = await _unit_with_a_rule(api)
    successor = await _successor(api)
    case_id, _ = await _routed_to(api, category)
    refused = await act(api, case_id, "hand-over", SUPERVISOR, expect=409,
                        department_id=successor, reason=REASON)  # fmt: skip
    assert refused["error"]["code"] == "holder_in_service", refused
    forger = Actor(role=Role.SUPERVISOR, name="forger", request_id=_uid("rid"))
    handle = client.get_workflow_handle(case_id)
    await handle.signal(CaseSignal.HAND_OVER.value, {
        "actor": forger.model_dump(mode="json"), "department_id": successor, "reason": REASON})
    stale = forger.model_copy(update={"request_id": _uid("rid")})
    await handle.signal(CaseSignal.HAND_OVER.value, {
        "actor": stale.model_dump(mode="json"), "from_department_id": successor,
        "department_id": successor, "reason": REASON})  # fmt: skip
    state = await until(client, case_id, lambda s: len(_refused(s)) == 3)
    # the stale one is refused as it arrives; the others once the case has looked the unit up
    assert sorted(_refused(state)) == ["holder_changed", "holder_in_service", "holder_in_service"]
    assert state.department_id == department and EventKind.HANDED_OVER not in event_kinds(state)


async def test_a_dispatcher_hands_one_case_over_and_a_replied_case_waits(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool
) -> None:
    department, category, _ = await _unit_with_a_rule(api)
    _, key = await api_keys.create_key(pool, name=_uid("unit"), role=Role.DEPARTMENT,
                                       department_id=department)  # fmt: skip
    own = {"Authorization": f"Bearer {key}"}
    successor = await _successor(api)
    one, _ = await _routed_to(api, category)
    replied, _ = await _routed_to(api, category)
    await act(api, replied, "accept", own)
    await act(api, replied, "contact", own, note="已电话联系诉求人")
    await act(api, replied, "reply", own, outcome="resolved", text="已处理完毕，噪音已消除")
    elsewhere = (await register(api))["case_id"]  # another unit's, the retiring one convened
    await case_when(api, elsewhere, lambda c: c["status"] == "assigned")
    await act(api, elsewhere, "co-handlers", SUPERVISOR, department_ids=[department],
              note="会同处理")  # fmt: skip
    await eventually(lambda: _co_handling(pool, elsewhere), within=30)
    await _retire(api, department)
    handed = await act(api, one, "hand-over", SUPERVISOR, department_id=successor,
                       reason=REASON)  # fmt: skip
    assert handed["applied"] is True, handed
    await until(client, one, lambda s: s.department_id == successor)
    await eventually(lambda: _held_by(pool, one, successor), within=30)
    left = await api.post(f"{A}/departments/{department}/hand-over", headers=ADMIN,
                          json={"department_id": successor, "reason": REASON})
    assert left.status_code == 200 and left.json()["sent"] == [], left.text
    said = {c["case_id"]: (c["status"], c["why"]) for c in left.json()["left"]}
    assert said.keys() == {replied, elsewhere} and said[replied][0] == "replied"
    assert "免除协办" in said[elsewhere][1]


async def test_the_cli_hands_a_retired_units_cases_over(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool, settings: Settings,
    env: WorkflowEnvironment,
) -> None:
    department, category, _ = await _unit_with_a_rule(api)
    successor = await _successor(api)
    case_id, _ = await _routed_to(api, category)
    await eventually(lambda: _held_by(pool, case_id, department), within=30)
    await _retire(api, department)
    code, out, err = await cli_in_process(
        cli_env(env, settings), "admin", "departments", "hand-over", department,
        "--to", successor, "--reason", REASON,
    )
    assert code == 0, err
    assert json.loads(out)["sent"] == [case_id] and "handed over 1 case(s)" in err
    await until(client, case_id, lambda s: s.department_id == successor)


async def test_the_admin_hands_a_retired_units_cases_over_in_the_browser(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool, browsers: Any,
    console_url: str, screenshots: Path,
) -> None:
    """As the admin does it: 承办单位, the retired unit's row, 移交在办工单…, the successor
    chosen and the reason typed; the page says how many were sent, the case goes there."""
    department, category, _ = await _unit_with_a_rule(api)
    successor = await _successor(api)
    case_id, _ = await _routed_to(api, category)
    await eventually(lambda: _held_by(pool, case_id, department), within=30)
    await _retire(api, department)
    page = await sign_in(browsers, console_url, "admin")
    await page.goto(f"{console_url}/console/admin/departments")
    row = page.locator(f"tr[data-id='{department}']")
    await row.locator("details.hand-over summary").click()
    await row.locator("details.hand-over select[name=department_id]").select_option(successor)
    await row.locator("details.hand-over input[name=reason]").fill(REASON)
    await row.scroll_into_view_if_needed()
    await shot(page, screenshots, "admin-department-hand-over")
    await row.locator("details.hand-over button", has_text="确认移交").click()
    await page.wait_for_url(re.compile("handed="))
    said = await page.inner_text("#service")
    assert f"已向 1 件在办工单发出移交：交由新设局{successor}承办" in said, said
    await until(client, case_id, lambda s: s.department_id == successor)


async def test_the_board_and_the_case_page_offer_hand_over_for_a_retired_unit_only(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool
) -> None:
    """The dispatcher's 派单督办 lists the cases of units out of service (停用单位的在办工单)
    and the case page offers 移交 while the unit holding the case is out of service, not before
    (the case would refuse it); sent, the case goes to the unit chosen."""
    department, category, _ = await _unit_with_a_rule(api)
    successor = await _successor(api)
    case_id, _ = await _routed_to(api, category)
    supervisor = await signed_in(api, "supervisor")
    try:
        page = await supervisor.get(f"/console/cases/{case_id}")
        assert page.status_code == 200 and "/actions/hand-over" not in page.text
        board = await supervisor.get("/console/supervision")
        assert case_id not in board.text.split('id="handover"', 1)[-1]
        await _retire(api, department)
        board = await supervisor.get("/console/supervision")  # 停用单位的在办工单
        assert 'id="handover"' in board.text, board.text[-3000:]
        assert case_id in board.text.split('id="handover"', 1)[1].split("</table>")[0]
        page = await supervisor.get(f"/console/cases/{case_id}")
        form = page.text.split("/actions/hand-over", 1)[1].split("</form>")[0]
        assert f'value="{successor}"' in form and f'value="{department}"' not in form
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        done = await supervisor.post(f"/console/cases/{case_id}/actions/hand-over", data={
            "csrf_token": token[1], "department_id": successor, "reason": REASON})
        assert done.status_code == 303, done.text
    finally:
        await supervisor.aclose()
    await until(client, case_id, lambda s: s.department_id == successor)


async def test_a_unit_is_handed_over_in_batches(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool
) -> None:
    """limit 1: the first call sends the oldest case and says next; the call after next sends
    the other; a cursor naming no case is refused."""
    department, category, _ = await _unit_with_a_rule(api)
    successor = await _successor(api)
    first, _ = await _routed_to(api, category)
    second, _ = await _routed_to(api, category)
    for case_id in (first, second):
        await eventually(lambda c=case_id: _held_by(pool, c, department), within=30)
    await _retire(api, department)
    url = f"{A}/departments/{department}/hand-over"
    body = {"department_id": successor, "reason": REASON, "limit": 1}
    one = await api.post(url, json=body, headers=ADMIN)
    assert one.status_code == 200, one.text
    assert (one.json()["sent"], one.json()["remaining"], one.json()["next"]) == ([first], 1, first)
    two = await api.post(url, json={**body, "after": first}, headers=ADMIN)
    assert (two.json()["sent"], two.json()["remaining"], two.json()["next"]) == ([second], 0, None)
    for case_id in (first, second):
        state = await until(client, case_id, lambda s: s.department_id == successor)
        assert event_kinds(state).count(EventKind.HANDED_OVER) == 1 and not _refused(state)
    bad = await api.post(url, json={**body, "after": _uid("none")}, headers=ADMIN)
    assert _code(bad) == (422, "invalid_cursor"), bad.text


def test_a_keyed_call_tells_each_case_the_same_request_id() -> None:
    """The same call (Idempotency-Key, unit, successor, cursor) again: the same request ids, so
    no case applies it twice; without a key, or for another successor, new ones (a refused
    first handover does not make a later one a silent retry)."""
    admin = Actor(role=Role.ADMIN, name="admin")
    body = handover.Handover(department_id="b", reason=REASON)
    same = {handover.call_id(admin, "a", body, "k") for _ in range(2)}
    assert len(same) == 1
    other = handover.call_id(admin, "a", body.model_copy(update={"department_id": "c"}), "k")
    assert other not in same
    assert handover.call_id(admin, "a", body, None) != handover.call_id(admin, "a", body, None)


async def test_a_return_awaiting_the_centre_is_decided_before_a_handover(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    """A 退单 waiting for the centre's decision (派单异议审核) when its unit is retired: the
    handover is refused (409 return_pending) until the centre decides — before (v32–v34) the
    handover's new round cleared the return without a decision or a word (lean-case-v35)."""
    department, category, _ = await _unit_with_a_rule(api)
    _, key = await api_keys.create_key(pool, name=_uid("unit"), role=Role.DEPARTMENT,
                                       department_id=department)  # fmt: skip
    own = {"Authorization": f"Bearer {key}"}
    successor = await _successor(api)
    saved = settings.return_needs_approval
    settings.return_needs_approval = True  # recorded into the case when it is planned
    try:
        case_id, _ = await _routed_to(api, category)
    finally:
        settings.return_needs_approval = saved
    await act(api, case_id, "return", own, reason="不属本单位职责")
    await until(client, case_id, lambda s: s.pending_return is not None)
    await _retire(api, department)
    refused = await act(api, case_id, "hand-over", SUPERVISOR, expect=409,
                        department_id=successor, reason=REASON)  # fmt: skip
    assert refused["error"]["code"] == "return_pending", refused
    forger = Actor(role=Role.SUPERVISOR, name="another client", request_id=_uid("rid"))
    await client.get_workflow_handle(case_id).signal(CaseSignal.HAND_OVER.value, {
        "actor": forger.model_dump(mode="json"), "department_id": successor, "reason": REASON})
    state = await until(client, case_id, lambda s: len(_refused(s)) == 1)
    assert _refused(state) == ["return_pending"] and state.pending_return is not None
    await act(api, case_id, "return/decision", SUPERVISOR, upheld=False, note="属于本单位职责")
    handed = await act(api, case_id, "hand-over", SUPERVISOR, department_id=successor,
                       reason=REASON)  # fmt: skip
    assert handed["applied"] is True, handed
    await until(client, case_id, lambda s: s.department_id == successor)


async def test_with_temporal_down_the_units_handover_answers_503_and_the_cli_one_line(
    api: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings, env: WorkflowEnvironment
) -> None:
    """Nothing can be sent: the API answers 503 temporal_unavailable (retry: no case applies a
    message twice), the CLI says where it could not reach Temporal (the review's guard)."""
    department, category, _ = await _unit_with_a_rule(api)
    successor = await _successor(api)
    case_id, _ = await _routed_to(api, category)
    await eventually(lambda: _held_by(pool, case_id, department), within=30)
    await _retire(api, department)
    port = closed_port()
    down = await connect_to(f"127.0.0.1:{port}", "default", lazy=True)
    async with served(create_app(settings, client=down, pool=pool)) as http:
        r = await http.post(f"{A}/departments/{department}/hand-over", headers=ADMIN,
                            json={"department_id": successor, "reason": REASON})  # fmt: skip
    assert _code(r) == (503, "temporal_unavailable"), r.text
    variables = cli_env(env, settings) | {"TEMPORAL_ADDRESS": f"127.0.0.1:{port}"}
    with pytest.raises(RuntimeError) as failed:  # the console script's main says it in one line
        await cli_in_process(variables, "admin", "departments", "hand-over", department,
                             "--to", successor, "--reason", REASON)  # fmt: skip
    with patch.dict(os.environ, variables):
        get_settings.cache_clear()
        try:
            said = cli.unreachable(failed.value)
        finally:
            get_settings.cache_clear()
    assert said is not None and said.startswith(f"cannot reach Temporal at 127.0.0.1:{port}"), said
    assert await _held_by(pool, case_id, department)


async def test_a_reply_in_the_task_of_a_handover_waits_for_it(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    """The worker down, a handover and then the retired unit's reply reach the case in one
    task: the reply waits for the handover (lean-case-v35) and is refused on the reassigning
    case, as with the worker up — before, the reply was applied first and the handover refused
    (the review of 2026-11-25)."""
    department, category, _ = await _unit_with_a_rule(api)
    successor = await _successor(api)
    own = own_queue(settings, _uid("handover-wait"))
    case_id = f"JS-HANDOVER-WAIT-{_uid('c')}"
    start = start_of(case_id)
    start = start.model_copy(update={"facts": start.facts.model_copy(
        update={"category_id": category})})  # fmt: skip
    clerk = Actor(role=Role.DEPARTMENT, name="clerk", department_id=department)
    async with build_worker(client, pool, own):
        handle = await started_assigned(client, case_id, own.task_queue, start)
        await signal_sent(handle, "accept", clerk)
        await signal_sent(handle, "contact", clerk, note="called")
        await until(client, case_id, lambda s: s.contacted_at is not None)
    await _retire(api, department)
    dispatcher = Actor(role=Role.SUPERVISOR, name="dispatcher")
    await signal_sent(handle, "hand_over", dispatcher, department_id=successor, reason=REASON)
    await signal_sent(handle, "reply", clerk, outcome="resolved", text="已处理")
    async with build_worker(client, pool, own):
        state = await until(client, case_id, lambda s: s.department_id == successor
                            and "reply" in {e.data.get("action") for e in s.events})  # fmt: skip
        assert EventKind.REPLIED not in event_kinds(state) and not _refused(state)
        await replay_checked(await handle.fetch_history())
        await handle.terminate("test finished")
