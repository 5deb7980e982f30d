"""A department clerk's day at the console (承办单位): the inbox's deadlines of a co-handled
case, why 办结答复 is not offered yet, a 签收 sent again from a page left open, a case back for
重办, and what the page says after an action; who acted, routing, a 重办 to the same unit,
the action buttons and the supervision ladder in words the clerk reads."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from helpers import (
    SUPERVISOR,
    act,
    audit_page,
    case,
    case_when,
    department,
    eventually,
    register,
    signed_in,
)


def _row(page: str, case_id: str) -> str:
    """The inbox's row of ``case_id`` (its HTML), or empty."""
    start = page.find(f'data-case="{case_id}"')
    return page[start: page.find("</tr>", start)] if start >= 0 else ""


async def _page_with(clerk: httpx.AsyncClient, url: str, wanted: str) -> str:
    """The page at ``url`` once it holds ``wanted`` (the read model lags the workflow)."""

    async def shown() -> str | None:
        page = (await clerk.get(url)).text
        return page if wanted in page else None

    return await eventually(shown, within=30)


async def _rehandled_by_water(api: httpx.AsyncClient, first_reply: str) -> str:
    """A water outage the water bureau replied to (``first_reply``), rated 不满意 (水还是没来)
    and sent back to it for 重办 (请重办); its case number."""
    created = await register(api, category_id="water_outage")
    case_id = created["case_id"]
    water = department("water")
    await act(api, case_id, "accept", water)
    await act(api, case_id, "contact", water, note="已电话联系")
    await act(api, case_id, "reply", water, outcome="resolved", text=first_reply)
    await act(api, case_id, "rating", token=created["citizen_token"], rating="unsatisfied",
              comment="水还是没来")  # fmt: skip
    await act(api, case_id, "reassign", SUPERVISOR, department_id="water", note="请重办")
    return case_id


async def test_a_co_handlers_inbox_says_its_own_contribution_deadline(
    api: httpx.AsyncClient,
) -> None:
    """The co-handler's (协办) inbox row showed the lead's 签收时限 and its countdown — a step
    the co-handler does not owe — and was sorted and marked late by it. Now it says the
    contribution the co-handler owes by the deadline the centre set (协办意见期限) — as the
    case page's 协办单位 line now does too —, and once given, 已提交协办意见 with no countdown."""
    case_id = (await register(api, category_id="water_outage"))["case_id"]  # water leads
    # routed first: a 会办 on a case still being planned is refused (wrong_status: registered;
    # the CI run of ac32090, loaded, sent it before the plan)
    await case_when(api, case_id, lambda s: s["status"] == "assigned")
    due = (datetime.now(UTC) + timedelta(hours=20)).replace(second=0, microsecond=0)
    await act(api, case_id, "co-handlers", SUPERVISOR, department_ids=["urban-management"],
              note="请城管局协助", due=due.isoformat())  # fmt: skip
    urban = await signed_in(api, "urban-clerk")
    try:
        local = due.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M")
        page = await _page_with(urban, "/console/inbox", f'data-case="{case_id}"')
        row = _row(page, case_id)
        assert f"协办意见期限 {local}" in row, row
        assert "签收时限" not in row, row
        case_page = (await urban.get(f"/console/cases/{case_id}")).text  # 承办与时限 says it too
        assert f'待提交意见，协办意见期限 <span class="deadline">{local}' in case_page, case_page
        await act(api, case_id, "contribution", department("urban-management"),
                  text="占道摊点已清理")  # fmt: skip

        async def given() -> str | None:
            row = _row((await urban.get("/console/inbox")).text, case_id)
            return row if "已提交协办意见" in row else None

        row = await eventually(given, within=30)
        assert "countdown" not in row and "签收时限" not in row, row
    finally:
        await urban.aclose()


async def test_the_case_page_says_why_the_reply_is_not_offered_yet(
    api: httpx.AsyncClient,
) -> None:
    """After 签收 the clerk looked for 办结答复 and it was not there: the lifecycle wants the
    citizen contacted first, and then every co-handler's contribution, and the page said
    neither. Now the actions say 办结答复 and why it is not offered yet."""
    case_id = (await register(api, category_id="water_outage"))["case_id"]
    water = department("water")
    await act(api, case_id, "accept", water)
    clerk = await signed_in(api, "water-clerk")
    try:
        url = f"/console/cases/{case_id}"
        page = await _page_with(clerk, url, 'data-action="contact"')
        assert 'data-action="reply"' not in page
        assert "办结答复：请先联系诉求人，再办结答复" in page, page
        await act(api, case_id, "co-handlers", SUPERVISOR, department_ids=["urban-management"],
                  note="请城管局协助")  # fmt: skip
        await act(api, case_id, "contact", water, note="已电话联系")
        page = await _page_with(clerk, url, "已联系")
        said = "办结答复：尚有协办单位未提交协办意见，暂不能答复（待县城市管理局提交）"
        assert said in page, page
    finally:
        await clerk.aclose()


async def test_a_second_accept_from_a_page_left_open_says_it_was_accepted(
    api: httpx.AsyncClient,
) -> None:
    """签收 sent again from a second tab (or a page left open) after the case was accepted
    was a red 不能签收：该工单现在的状态是“办理中”, as if the clerk's 签收 had failed. Now the
    page says calmly that the case was accepted, and when."""
    case_id = (await register(api, category_id="water_outage"))["case_id"]
    clerk = await signed_in(api, "water-clerk")
    try:
        url = f"/console/cases/{case_id}"
        page = await _page_with(clerk, url, 'data-action="accept"')
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token
        first = await clerk.post(f"{url}/actions/accept",
                                 data={"csrf_token": token[1], "key": "tab-1"})  # fmt: skip
        assert first.status_code == 303, first.text
        again = await clerk.post(f"{url}/actions/accept",
                                 data={"csrf_token": token[1], "key": "tab-2"})  # fmt: skip
        assert again.status_code == 303, again.text
        assert again.headers["location"].endswith("?already=accept")
        shown = (await clerk.get(again.headers["location"])).text
        assert re.search(r"该工单已于 \d{4}-\d\d-\d\d \d\d:\d\d 签收，无需再次签收", shown), shown
        assert 'class="error"' not in shown
    finally:
        await clerk.aclose()


async def test_a_rehandled_case_says_why_it_came_back(api: httpx.AsyncClient) -> None:
    """重办: the citizen rated the reply 不满意 and the case came back to the unit as 待签收,
    like a new case: the inbox said nothing of it, and the case page had dropped the reply
    (its 办结答复 card goes with the round) — why it came back was one line deep in 办理经过.
    Now the inbox row is marked 重办, and 承办与时限 says which 重办 it is, the citizen's
    words and the reply they were not satisfied with."""
    case_id = await _rehandled_by_water(api, first_reply="已恢复供水，第一次答复")
    clerk = await signed_in(api, "water-clerk")
    try:
        page = await _page_with(clerk, f"/console/cases/{case_id}", 'data-action="accept"')
        assert 'id="rehandling"' in page, page
        said = page[page.index('id="rehandling"'):]
        said = said[: said.index("</dd>")]
        assert "第 1 次重办：诉求人对上次答复不满意：" in said and "水还是没来" in said, said
        assert "上次答复" in said and "已恢复供水，第一次答复" in said, said
        inbox = await _page_with(clerk, "/console/inbox", f'data-case="{case_id}"')
        assert '<span class="tag rehandle">重办</span>' in _row(inbox, case_id)
    finally:
        await clerk.aclose()


async def test_a_sent_extension_request_says_it_waits_for_the_centre(
    api: httpx.AsyncClient,
) -> None:
    """After 延期申请 the page said 操作已完成。 — as if the deadline had moved, while the
    request waits for the centre's decision. Now it says what was done: 延期申请已提交，待中心
    审批 (and each action its own words, e.g. 已签收)."""
    case_id = (await register(api, category_id="water_outage"))["case_id"]
    clerk = await signed_in(api, "water-clerk")
    try:
        url = f"/console/cases/{case_id}"
        page = await _page_with(clerk, url, 'data-action="accept"')
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token
        accepted = await clerk.post(f"{url}/actions/accept",
                                    data={"csrf_token": token[1], "key": "accept-1"})  # fmt: skip
        assert accepted.status_code == 303, accepted.text
        assert "已签收。" in (await clerk.get(accepted.headers["location"])).text
        finish = datetime.fromisoformat(
            (await api.get(f"/api/v1/complaints/{case_id}", headers=SUPERVISOR)).json()
            ["deadlines"]["finish"]
        )  # fmt: skip
        promised = (finish + timedelta(days=2)).astimezone(ZoneInfo("Asia/Shanghai"))
        asked = await clerk.post(f"{url}/actions/extension", data={
            "csrf_token": token[1], "key": "extension-1", "reasons": "管网抢修需更换主管",
            "measures": "已临时送水", "promised_finish": promised.strftime("%Y-%m-%dT%H:%M")})
        assert asked.status_code == 303, asked.text
        shown = (await clerk.get(asked.headers["location"])).text
        assert "延期申请已提交，待中心审批。" in shown, shown
        assert "操作已完成" not in shown
    finally:
        await clerk.aclose()


async def test_a_case_being_reassigned_shows_no_countdown_of_the_returning_units_deadlines(
    api: httpx.AsyncClient,
) -> None:
    """退单 → 改派中: the returning unit can no longer act on the case, and the new unit's
    deadlines run from the reassignment, but the case page still counted the returning unit's
    down (联系时限 剩余 56分) under its name as 承办单位, while the inbox said —. Now 承办与时限
    says the case is being reassigned, who returned it, and that the new unit's deadlines
    start at the reassignment."""
    created = await register(api, urgency="urgent")  # noise → urban management
    case_id = created["case_id"]
    urban = department("urban-management")
    await act(api, case_id, "accept", urban)
    await act(api, case_id, "return", urban, reason="商铺噪声属公安管辖，请改派")
    supervisor = await signed_in(api, "supervisor")
    try:
        page = await _page_with(supervisor, f"/console/cases/{case_id}", 'id="reassigning"')
        facts = page[page.index("<h2>承办与时限</h2>"):]
        facts = facts[: facts.index("</dl>")]
        assert "改派中" in facts and "县城市管理局已退单" in facts, facts
        assert "改派后起算" in facts, facts
        assert "联系时限" not in facts and "剩余" not in facts, facts
    finally:
        await supervisor.aclose()


def _timeline(page: str) -> str:
    """The case page's 办理经过 (its HTML)."""
    start = page.index("<h2>办理经过</h2>")
    return page[start: page.index("</ol>", start)]


async def test_an_action_through_an_api_key_is_said_in_chinese_and_its_key_kept_for_the_audit(
    api: httpx.AsyncClient,
) -> None:
    """办理经过 named an action taken with an API key by the key's name — 受理 by
    demo-operator（话务员）, English in the Chinese page, a name the clerk knows nothing of.
    Now it says the role and that it came through the interface (话务员（接口）, 承办单位（接口 ·
    县水务局）); the auditor's 审计记录 still names the key."""
    case_id = (await register(api, category_id="water_outage"))["case_id"]
    await act(api, case_id, "accept", department("water"))
    clerk = await signed_in(api, "water-clerk")
    try:
        page = await _page_with(clerk, f"/console/cases/{case_id}", "已签收")
        said = _timeline(page)
        assert "话务员（接口）" in said and "承办单位（接口 · 县水务局）" in said, said
        assert "demo-" not in said, said
    finally:
        await clerk.aclose()
    audit = (await audit_page(api, case_id)).text
    assert "demo-operator" in audit and "demo-dept-water" in audit


async def test_routing_is_said_without_the_rules_number_which_the_audit_keeps(
    api: httpx.AsyncClient,
) -> None:
    """自动派单 read 按派单规则 4 派至县水务局: a number nobody at the unit can look up. Now
    the clerk reads 按派单目录自动派至县水务局; the auditor's 审计记录 still says which rule."""
    case_id = (await register(api, category_id="water_outage"))["case_id"]

    async def routed_event() -> dict[str, Any] | None:  # the plan routes it a moment later
        state = await case(api, case_id, SUPERVISOR)
        return next((e for e in state["events"] if e["kind"] == "routed"), None)

    routed = await eventually(routed_event, within=30)
    clerk = await signed_in(api, "water-clerk")
    try:
        said = _timeline(await _page_with(clerk, f"/console/cases/{case_id}", "派至县水务局"))
        assert "按派单目录自动派至县水务局" in said, said
        assert not re.search(r"派单规则 ?\d", said), said
    finally:
        await clerk.aclose()
    audit = (await audit_page(api, case_id)).text
    assert f"按派单目录自动派至县水务局（派单规则 {routed['data']['rule_id']}）" in audit


async def test_a_rehandling_back_to_the_same_unit_says_it_stays_with_it(
    api: httpx.AsyncClient,
) -> None:
    """重办 back to the unit that replied read 由县水务局改派至县水务局 — a 改派 to itself.
    Now it says what happened: 重办：仍由县水务局办理."""
    case_id = await _rehandled_by_water(api, first_reply="已恢复供水")
    clerk = await signed_in(api, "water-clerk")
    try:
        page = await _page_with(clerk, f"/console/cases/{case_id}", 'data-action="accept"')
        said = _timeline(page)
        assert "重办：仍由县水务局办理：请重办" in said, said
        assert "改派至县水务局" not in said, said
    finally:
        await clerk.aclose()


async def test_each_action_button_names_the_action_it_performs(api: httpx.AsyncClient) -> None:
    """The co-handler's form said 协办意见 three times — heading, field and button — and its
    button named no action (so did 督办, 会办, 延期审批, ...). Now the button says what it
    does: 提交协办意见 (the heading keeps the action's name)."""
    case_id = (await register(api, category_id="water_outage"))["case_id"]
    await act(api, case_id, "co-handlers", SUPERVISOR, department_ids=["urban-management"],
              note="请城管局协助")  # fmt: skip
    urban = await signed_in(api, "urban-clerk")
    supervisor = await signed_in(api, "supervisor")
    try:
        page = await _page_with(urban, f"/console/cases/{case_id}", 'data-action="contribution"')
        form = page[page.index('data-action="contribution"'):]
        form = form[: form.index("</form>")]
        assert '<button type="submit">提交协办意见</button>' in form, form
        url = f"/console/cases/{case_id}"
        page = await _page_with(supervisor, url, 'data-action="supervision"')
        buttons = re.findall(r'<button type="submit">([^<]+)</button>', page)
        assert "下达督办单" in buttons and "督办" not in buttons, buttons
    finally:
        await urban.aclose()
        await supervisor.aclose()


async def test_the_clerk_reads_what_ends_the_supervision_and_when_it_climbs(
    api: httpx.AsyncClient,
) -> None:
    """On a case under 督办 the clerk saw the ladder (提醒 … 问责) and where it stood, but not
    what ends it nor when it climbs — only a supervisor read that. Now the clerk reads one
    line from the case's own state: what the unit must do to end it and when the next step
    comes (the step's hours from the case's deadlines)."""
    case_id = (await register(api, category_id="water_outage"))["case_id"]
    await act(api, case_id, "supervision", SUPERVISOR, form="urge", note="请今日内答复")

    async def urged() -> dict[str, Any] | None:
        state = await case(api, case_id, SUPERVISOR)
        return state if state["escalation_level"] == 2 else None

    state = await eventually(urged, within=30)
    step = next(e for e in reversed(state["events"]) if e["kind"] == "escalated")
    hours = state["deadlines"]["escalation_step_hours"]
    climbs = (datetime.fromisoformat(step["at"]) + timedelta(hours=hours)).astimezone(
        ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M")  # fmt: skip
    clerk = await signed_in(api, "water-clerk")
    try:
        page = await _page_with(clerk, f"/console/cases/{case_id}", 'id="ladder-next"')
        line = page[page.index('id="ladder-next"'):]
        line = line[: line.index("</p>")]
        assert "承办单位办结答复后督办结束" in line, line
        assert f"{climbs} 升至“督办”" in line and f"每 {hours:g} 小时升一级" in line, line
    finally:
        await clerk.aclose()
