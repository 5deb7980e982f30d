"""Grid routing (网格, issue 14 part 7): a routing rule sends a case to a grid's own handling
unit (a department row whose area is the grid, docs/grid.md); the grid's workers receive it in
their inbox and handle it like a department's clerk, under the same deadlines. A grid worker
sees only the cases of their grids (list, case, content, console), 404 otherwise."""

from __future__ import annotations

import re
import uuid
from email.message import EmailMessage
from typing import Any

import asyncpg
import httpx
from helpers import (
    AUDITOR,
    OPERATOR,
    SUPERVISOR,
    act,
    auth,
    complaint,
    department,
    eventually,
    handle_of,
    keep_history,
    signed_in,
    texted_token,
)
from temporalio.client import Client
from test_api import error_of, finish
from test_sms import deliver, sms

from jiesu.access.content import ContentField, Viewer, masked_case, unmasked_fields
from jiesu.case.domain import CaseState, Role
from jiesu.channels.mail import parse, store_attachments
from jiesu.config import Settings
from jiesu.ops.demo_data import demo_key

GRID_WORKER = auth(demo_key("demo-grid-worker"))
GRID = "G-QH-01-01-2"  # 幸福社区第2网格: garbage here is the grid's own (demo rule)


async def _held_by(api: httpx.AsyncClient, case_id: str, unit: str, status: str = "assigned"):
    async def probe() -> dict[str, Any] | None:
        response = await api.get(f"/api/v1/complaints/{case_id}", headers=OPERATOR)
        state = response.json() if response.status_code == 200 else None
        held = state and state["status"] == status and state["assignment"]
        return state if held and state["assignment"]["department_id"] == unit else None

    return await eventually(probe, within=20)


async def _grid_case(api: httpx.AsyncClient, **overrides: Any) -> str:
    body = complaint(title="垃圾桶满溢", description="幸福路垃圾桶三天没人清运，气味很大",
                     category_id="garbage", grid_id=GRID, **overrides)  # fmt: skip
    response = await api.post("/api/v1/complaints", json=body, headers=OPERATOR)
    assert response.status_code == 201, response.text
    return response.json()["case_id"]


async def _listed(api: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> set[str]:
    response = await api.get("/api/v1/complaints", params={"limit": 200, **params},
                             headers=headers)  # fmt: skip
    assert response.status_code == 200, response.text
    return {c["case_id"] for c in response.json()["items"]}


async def test_a_case_routed_to_a_grid_is_handled_by_its_grid_worker(
    api: httpx.AsyncClient, client: Client
) -> None:
    case_id = await _grid_case(api)
    state = await _held_by(api, case_id, GRID)
    assert state["assignment"]["by_rule"] is True
    assert state["deadlines"]["accept"] and state["deadlines"]["finish"]  # deadlines apply
    assert case_id in await _listed(api, GRID_WORKER, department_id=GRID)  # the worker's list

    await act(api, case_id, "accept", GRID_WORKER)
    content = await api.get(f"/api/v1/cases/{case_id}/content", headers=GRID_WORKER)
    assert content.status_code == 200 and content.json()["masked"] == []  # to call the citizen
    await act(api, case_id, "contact", GRID_WORKER, note="电话联系，约定今天下午清运")
    replied = await act(api, case_id, "reply", GRID_WORKER, outcome="resolved",
                        text="已协调保洁清运并增设垃圾桶")  # fmt: skip
    case = replied["case"]
    assert case["status"] == "replied"
    own = [e for e in case["events"] if e["kind"] in ("accepted", "contacted", "replied")]
    assert [e["actor"]["role"] for e in own] == ["grid_worker"] * 3
    assert {(e["actor"]["name"], e["actor"]["department_id"]) for e in own} == {
        ("demo-grid-worker", GRID)
    }
    await handle_of(client, case_id).terminate("test finished")
    await keep_history(handle_of(client, case_id), "grid_unit_handles_routed_case")


async def test_a_department_cannot_act_for_the_grid_nor_a_worker_for_another_unit(
    api: httpx.AsyncClient,
) -> None:
    case_id = await _grid_case(api)
    await _held_by(api, case_id, GRID)
    clerk = auth(demo_key("demo-dept-urban-management"))
    await act(api, case_id, "accept", clerk, expect=404)  # not the clerk's case
    other = (await api.post("/api/v1/complaints", json=complaint(category_id="street_vendor"),
                            headers=OPERATOR)).json()["case_id"]  # fmt: skip
    await _held_by(api, other, "vil-xingfu")  # in the worker's grid, held by the committee
    refused = await act(api, other, "accept", GRID_WORKER, expect=403)
    assert refused["error"]["code"] == "not_assigned"


async def test_raising_a_level_from_the_grid_climbs_to_the_community_not_the_centre(
    api: httpx.AsyncClient,
) -> None:
    case_id = await _grid_case(api)
    await _held_by(api, case_id, GRID)
    await act(api, case_id, "raise-level", GRID_WORKER,
              reason="清运车辆需社区统一调度，超出网格权限")  # fmt: skip
    await _held_by(api, case_id, "vil-xingfu")
    await act(api, case_id, "raise-level", auth(demo_key("demo-dept-vil-xingfu")),
              reason="需街道协调环卫")  # fmt: skip
    await _held_by(api, case_id, "twp-chengguan")


async def test_a_grid_worker_sees_only_the_cases_of_their_grids(api: httpx.AsyncClient) -> None:
    mine = (await api.post("/api/v1/complaints", json=complaint(), headers=OPERATOR)).json()
    theirs = (await api.post("/api/v1/complaints", json=complaint(grid_id="G-QH-02-02-1"),
                             headers=OPERATOR)).json()  # fmt: skip
    mine_id, theirs_id = mine["case_id"], theirs["case_id"]
    await _held_by(api, theirs_id, "urban-management")
    await _held_by(api, mine_id, "urban-management")

    for path in ("/api/v1/complaints/{}", "/api/v1/cases/{}/content"):
        answer = await api.get(path.format(theirs_id), headers=GRID_WORKER)
        assert answer.status_code == 404, (path, answer.text)
    assert (await api.get(f"/api/v1/complaints/{mine_id}", headers=GRID_WORKER)).status_code == 200
    content = await api.get(f"/api/v1/cases/{mine_id}/content", headers=GRID_WORKER)
    assert content.status_code == 200 and content.json()["description"] is None  # not theirs
    listed = await _listed(api, GRID_WORKER, department_id="urban-management")
    assert mine_id in listed and theirs_id not in listed
    everything = await api.get("/api/v1/complaints", params={"limit": 200}, headers=GRID_WORKER)
    assert {c["grid_id"] for c in everything.json()["items"]} <= {"G-QH-01-01-1", GRID}
    other_grid = await api.get("/api/v1/complaints", params={"grid_id": "G-QH-02-02-1"},
                               headers=GRID_WORKER)  # fmt: skip
    assert other_grid.status_code == 403


async def test_a_grid_worker_gets_no_files_of_a_case_whose_content_is_masked_to_them(
    api: httpx.AsyncClient, pool: asyncpg.Pool, client: Client
) -> None:
    """The files that came with a report (a mail's attachments: a photo of the citizen's ID,
    their letter) are its content, as its description is: a case of the worker's grid that a
    county bureau handles shows them its content masked, and its files neither listed nor
    downloaded (403 content_masked, whether the file exists or not); the bureau gets them."""
    filed = await api.post("/api/v1/complaints", json=complaint(), headers=OPERATOR)
    case_id = filed.json()["case_id"]
    await _held_by(api, case_id, "urban-management")
    letter = EmailMessage()
    letter["From"], letter["To"] = "张伟 <zhang.wei@citizen.test>", "12345@gov.test"
    letter["Subject"] = "夜间噪音"
    letter.set_content("附身份证照片")
    letter.add_attachment(b"\xff\xd8 the citizen's ID card", maintype="image", subtype="jpeg",
                          filename="身份证.jpg")  # fmt: skip
    await store_attachments(pool, case_id, parse(letter.as_bytes(), "zhang.wei@citizen.test"))
    url = f"/api/v1/complaints/{case_id}/attachments"
    try:
        listed = await api.get(url, headers=department("urban-management"))
        assert listed.status_code == 200, listed.text
        [file] = listed.json()
        got = await api.get(f"{url}/{file['id']}", headers=department("urban-management"))
        assert got.status_code == 200 and got.content.endswith(b"ID card")
        views = await api.get(f"/api/v1/audit/content-views?case_id={case_id}", headers=AUDITOR)
        assert [(v["department_id"], v["fields"]) for v in views.json()] == [
            ("urban-management", ["attachment"])
        ], views.text  # the download is recorded; the listing (names, sizes) is not

        content = await api.get(f"/api/v1/cases/{case_id}/content", headers=GRID_WORKER)
        assert content.status_code == 200 and content.json()["description"] is None
        for path in (url, f"{url}/{file['id']}", f"{url}/{file['id'] + 10**9}"):
            refused = error_of(await api.get(path, headers=GRID_WORKER), 403, "content_masked")
            assert "身份证" not in refused["message"]
    finally:
        await finish(client, case_id)


async def test_a_grid_worker_reads_no_content_in_the_events_of_a_case_masked_to_them(
    api: httpx.AsyncClient, client: Client
) -> None:
    """The content travels in the case too: a later report's description (并单), the
    citizen's supplement (补充诉求) and the reply's evidence links are events of the case.
    Where its content is masked (a case of the worker's grid that a county bureau handles),
    the case — API and console page — shows them masked as /content does; the bureau sees
    them."""
    filed = await api.post("/api/v1/complaints", json=complaint(), headers=OPERATOR)
    case_id = filed.json()["case_id"]
    await _held_by(api, case_id, "urban-management")
    phone, supplement, photo = "13912345678", "我住3单元502，电话见上", "https://evidence.test/p1.jpg"
    h = handle_of(client, case_id)
    try:
        await h.signal("repeat_report", {
            "report_id": "grid-mask-1", "channel": "hotline",
            "actor": {"role": "operator", "name": "operator"},
            "description": f"又响了一夜，我的电话{phone}", "received_at": "2026-11-20T01:00:00Z",
        })  # fmt: skip
        await h.signal("supplement", {"actor": {"role": "citizen", "name": "citizen"},
                                      "text": supplement})  # fmt: skip
        bureau = department("urban-management")
        await act(api, case_id, "accept", bureau)
        await act(api, case_id, "contact", bureau)
        await act(api, case_id, "reply", bureau, outcome="resolved", text="已处理",
                  evidence=[photo])  # fmt: skip

        async def shown(headers: dict[str, str]) -> str | None:
            text = (await api.get(f"/api/v1/complaints/{case_id}", headers=headers)).text
            return text if '"replied"' in text and '"supplemented"' in text else None

        full = await eventually(lambda: shown(bureau), within=20)
        assert phone in full and supplement in full and photo in full
        masked = await shown(GRID_WORKER)
        assert masked is not None, "the grid worker sees the case and its events"
        for secret in (phone, supplement, photo):
            assert secret not in masked, secret
        person = await signed_in(api, "grid-worker")
        try:
            page = await person.get(f"/console/cases/{case_id}")
            assert page.status_code == 200
            for secret in (phone, supplement, photo):
                assert secret not in page.text, secret
        finally:
            await person.aclose()
    finally:
        await finish(client, case_id)


async def test_the_grid_worker_person_receives_and_accepts_on_the_console(
    api: httpx.AsyncClient,
) -> None:
    case_id = await _grid_case(api)
    await _held_by(api, case_id, GRID)
    elsewhere = (await api.post("/api/v1/complaints", json=complaint(grid_id="G-QH-03-02-2"),
                                headers=OPERATOR)).json()["case_id"]  # fmt: skip
    await _held_by(api, elsewhere, "urban-management")
    person = await signed_in(api, "grid-worker")
    try:
        home = await person.get("/console/")
        assert home.headers["location"] == "/console/inbox"
        inbox = await person.get("/console/inbox")
        assert inbox.status_code == 200 and case_id in inbox.text
        assert (await person.get(f"/console/cases/{elsewhere}")).status_code == 404
        page = await person.get(f"/console/cases/{case_id}")
        assert page.status_code == 200 and "/actions/accept" in page.text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert csrf is not None
        accepted = await person.post(f"/console/cases/{case_id}/actions/accept",
                                     data={"csrf_token": csrf.group(1)})  # fmt: skip
        assert accepted.status_code == 303, accepted.text
    finally:
        await person.aclose()
    state = await _held_by(api, case_id, GRID, status="handling")
    accepted_event = next(e for e in state["events"] if e["kind"] == "accepted")
    assert accepted_event["actor"]["person"] == "grid-worker"
    assert accepted_event["actor"]["role"] == "grid_worker"


async def test_the_evidence_of_a_spot_solution_is_masked_where_the_reply_s_is(
    api: httpx.AsyncClient,
) -> None:
    """就地解决: the grid holds the case, and its evidence is in the reply, the spot solution
    and the ``solved_on_the_spot`` event — the same links, masked alike to whoever sees the
    case's evidence masked (a worker of the grid where the grid is no unit, docs/grid.md: the
    case's holder, the grid's id, is none of their units), shown alike to the centre."""
    photo = f"https://evidence.test/spot-{uuid.uuid4().hex}.jpg"
    report = {
        "title": "楼道堆放杂物", "description": "幸福社区3栋楼道堆放纸箱，堵塞通道",
        "category_id": "property_management", "grid_id": "G-QH-01-01-1",
        "address": f"幸福社区{uuid.uuid4().hex[:6]}栋",
        "reporter": {"name": "网格员 张敏", "phone": "13700000001"},
        "solved_on_the_spot": {"text": "当场清走纸箱", "evidence": [photo]},
    }  # fmt: skip
    filed = await api.post("/api/v1/grid/reports", json=report, headers=GRID_WORKER)
    assert filed.status_code == 201, filed.text
    case_id = filed.json()["case_id"]

    async def closed() -> dict[str, Any] | None:
        response = await api.get(f"/api/v1/complaints/{case_id}", headers=OPERATOR)
        state = response.json() if response.status_code == 200 else None
        return state if state and state["status"] == "closed" else None

    centre = await eventually(closed, within=20)
    assert centre["reply"]["evidence"] == [photo]
    assert centre["solved_on_the_spot"]["evidence"] == [photo]
    state = CaseState.model_validate(centre)
    worker = Viewer("w", Role.GRID_WORKER, None, handles=frozenset())  # the grid: no unit
    assert ContentField.EVIDENCE not in unmasked_fields(worker, state, anonymous=False)
    masked = masked_case(worker, state)
    assert masked.reply is not None and masked.reply.evidence == []
    assert photo not in masked.model_dump_json(), "the spot solution's evidence, unmasked"


async def test_a_grid_worker_reads_no_rating_comment_of_a_case_masked_to_them(
    api: httpx.AsyncClient, client: Client
) -> None:
    """The citizen's words in the rating (评价意见) are theirs as a supplement's are: in the
    ``rated`` event and the case's ``rating_comment``, masked alike where the content is (a
    case of the worker's grid that a county bureau handles); the bureau reads them."""
    filed = await api.post("/api/v1/complaints", json=complaint(), headers=OPERATOR)
    case_id, token = filed.json()["case_id"], filed.json()["citizen_token"]
    await _held_by(api, case_id, "urban-management")
    words = "还是吵，我住3单元502，电话13912345670"
    try:
        bureau = department("urban-management")
        await act(api, case_id, "accept", bureau)
        await act(api, case_id, "contact", bureau)
        await act(api, case_id, "reply", bureau, outcome="resolved", text="已处理")
        await act(api, case_id, "rating", token=token, rating="satisfied", comment=words)

        async def rated(headers: dict[str, str]) -> str | None:
            text = (await api.get(f"/api/v1/complaints/{case_id}", headers=headers)).text
            return text if '"rated"' in text else None

        assert words in await eventually(lambda: rated(bureau), within=20)
        masked = await rated(GRID_WORKER)
        assert masked is not None, "the grid worker sees the case and its events"
        assert words not in masked and "13912345670" not in masked
    finally:
        await finish(client, case_id)


async def test_a_grid_worker_reads_no_unsatisfied_comment_in_the_rehandling_it_started(
    api: httpx.AsyncClient, client: Client
) -> None:
    """An unsatisfied rating's comment starts the 重办 round, and the ``rehandle_started``
    event carries it as its ``reason`` — the citizen's words, as the ``rated`` event's comment
    (above). It was not masked where the comment is: a worker of the case's grid read it in
    the case's events (API) and on the console's case page (its timeline and the 重办 card)."""
    filed = await api.post("/api/v1/complaints", json=complaint(), headers=OPERATOR)
    case_id, token = filed.json()["case_id"], filed.json()["citizen_token"]
    await _held_by(api, case_id, "urban-management")
    words = "还是吵，我住5单元301，电话13912345671"
    try:
        bureau = department("urban-management")
        await act(api, case_id, "accept", bureau)
        await act(api, case_id, "contact", bureau)
        await act(api, case_id, "reply", bureau, outcome="resolved", text="已处理")
        await act(api, case_id, "rating", token=token, rating="unsatisfied", comment=words)

        async def rehandled(headers: dict[str, str]) -> str | None:
            text = (await api.get(f"/api/v1/complaints/{case_id}", headers=headers)).text
            return text if '"rehandle_started"' in text else None

        assert words in await eventually(lambda: rehandled(bureau), within=20)
        masked = await rehandled(GRID_WORKER)
        assert masked is not None, "the grid worker sees the case and its events"
        assert words not in masked and "13912345671" not in masked
        person = await signed_in(api, "grid-worker")
        try:
            page = await person.get(f"/console/cases/{case_id}")
            assert page.status_code == 200, page.text
            assert "13912345671" not in page.text, "the comment on the console's case page"
        finally:
            await person.aclose()
    finally:
        await finish(client, case_id)


async def test_a_worker_contributes_for_their_co_handling_unit_when_another_of_theirs_leads(
    api: httpx.AsyncClient,
) -> None:
    """The worker patrols both grids of 幸福社区, each a unit. A case of grid 2 (its unit leads)
    convenes grid 1's unit as co-handler (会办, a problem on their border). The worker acted for
    the lead unit in every action, the contribution too: 403 not_co_handler, and the lead's
    reply waited for a contribution no one could give (co_handlers_pending) until a supervisor
    waived it. Now a contribution is the co-handling unit's, every other action the lead's."""
    case_id = await _grid_case(api)
    await _held_by(api, case_id, GRID)
    await act(api, case_id, "co-handlers", SUPERVISOR, department_ids=["G-QH-01-01-1"])
    await act(api, case_id, "accept", GRID_WORKER)
    await act(api, case_id, "contact", GRID_WORKER, note="已电话联系")
    given = await act(api, case_id, "contribution", GRID_WORKER, text="第1网格已清运交界处垃圾")
    [co] = given["case"]["co_handlers"]
    assert co["department_id"] == "G-QH-01-01-1" and co["contributed_at"], co
    event = next(e for e in given["case"]["events"] if e["kind"] == "contributed")
    assert event["actor"]["department_id"] == "G-QH-01-01-1"
    again = await act(api, case_id, "contribution", GRID_WORKER, expect=409, text="再来一次吧")
    assert again["error"]["code"] == "already_done"
    replied = await act(api, case_id, "reply", GRID_WORKER, outcome="resolved",
                        text="两个网格已协同清运")  # fmt: skip
    assert replied["case"]["status"] == "replied"
    assert replied["case"]["reply"]["by"]["department_id"] == GRID


async def test_a_grid_worker_cannot_rate_their_own_units_work(
    api: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings, client: Client
) -> None:
    """A patrol report's reporter is the grid worker: its answer carries no citizen token,
    and the token of the intake SMS to the worker's own phone cannot rate the case their own
    unit handled (403 own_unit_rating) — a unit's satisfaction rate and ranking are the
    citizens' verdict, not its own. Before, the answer carried the token and the worker rated
    their own reply 满意."""
    phone = f"139{uuid.uuid4().int % 10**8:08d}"
    report = {"title": "垃圾桶满溢", "description": "幸福路垃圾桶三天没人清运，气味很大",
              "category_id": "garbage", "grid_id": GRID, "address": f"幸福路{phone[-4:]}号",
              "reporter": {"name": "网格员 张敏", "phone": phone}}  # fmt: skip
    filed = await api.post("/api/v1/grid/reports", json=report, headers=GRID_WORKER)
    assert filed.status_code == 201, filed.text
    assert filed.json()["citizen_token"] is None
    case_id = filed.json()["case_id"]
    try:
        await _held_by(api, case_id, GRID)  # the worker's own unit (demo rule)
        await act(api, case_id, "accept", GRID_WORKER)
        await act(api, case_id, "contact", GRID_WORKER, note="现场查看")
        await act(api, case_id, "reply", GRID_WORKER, outcome="resolved", text="已清运")
        token = await texted_token(pool, settings, case_id, phone)  # the worker's own phone
        refused = await act(api, case_id, "rating", token=token, rating="satisfied", expect=403)
        assert refused["error"]["code"] == "own_unit_rating"
        # nor by answering the rating prompt from that phone (the same path, citizen.act_as)
        await eventually(lambda: pool.fetchval(
            "SELECT status = 'replied' FROM cases WHERE case_id = $1", case_id))  # fmt: skip
        texted = await deliver(api, sms(phone, "1"))
        error_of(texted, 403, "own_unit_rating")
        assert (await api.get(f"/api/v1/complaints/{case_id}", headers=OPERATOR)
                ).json()["rating"] is None  # fmt: skip
    finally:
        await handle_of(client, case_id).terminate("test finished")
