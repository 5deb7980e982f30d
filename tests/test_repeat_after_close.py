"""A repeat report (并单) that reaches its case after the case closed is filed again (转立).

The intake merges a report into the case the read model shows open. With the worker down, the
read model cannot know of a 撤诉 already sent: the intake answered "merged into JS…", the case
took the 撤诉 first, closed, and dropped the report — accepted and lost. Since lean-case-v23
(repeats-after-close-refiled-v1) the case files it again before its workflow ends
(activities/refile.py): a new case of the same problem, with the report's own time.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest
from helpers import OPERATOR, complaint, eventually, handle_of, replay_checked, served
from temporalio.client import Client
from test_hostile_messages import CITIZEN, rid

from api.main import create_app
from jiesu.config import Settings
from worker import build_worker
from workflows import patches as patches_module

COMPLAINTS = "/api/v1/complaints"


async def _status(pool: asyncpg.Pool, case_id: str) -> str | None:
    return await pool.fetchval("SELECT status FROM cases WHERE case_id = $1", case_id)


async def _withdrawn_unseen_then_reported_again(
    client: Client, pool: asyncpg.Pool, own: Settings, body: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """A case filed and assigned with the worker up; the worker stops; the citizen's 撤诉 is
    sent (the read model cannot show it); the same problem is reported again through the API
    — merged into the case, which the read model still shows open. Returns the case and the
    second report's answer."""
    async with served(create_app(own, client=client, pool=pool)) as api:
        async with build_worker(client, pool, own):
            first = await api.post(COMPLAINTS, json=body, headers=OPERATOR)
            assert first.status_code == 201, first.text
            case_id = first.json()["case_id"]
            await eventually(lambda: _assigned(pool, case_id), within=30)
        await handle_of(client, case_id).signal(
            "withdraw", {"actor": rid(CITIZEN), "reason": "Sorted it myself"}
        )
        again = await api.post(COMPLAINTS, json={**body, "channel": "wechat"}, headers=OPERATOR)
    assert again.status_code == 200, again.text  # merged: no new case
    assert again.json()["merged"] and again.json()["case_id"] == case_id, again.json()
    report_id = await pool.fetchval("SELECT id FROM repeat_reports WHERE case_id = $1", case_id)
    return case_id, {**again.json(), "report_id": report_id}


async def _assigned(pool: asyncpg.Pool, case_id: str) -> bool:
    return await _status(pool, case_id) == "assigned"


async def _refiled_as(pool: asyncpg.Pool, report_id: int) -> str | None:
    return await pool.fetchval("SELECT refiled_as FROM repeat_reports WHERE id = $1", report_id)


async def test_a_report_merged_into_a_case_closed_meanwhile_is_filed_again(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    own = settings.model_copy(update={"task_queue": f"refile-{uuid.uuid4().hex[:8]}"})
    body = complaint()
    case_id, again = await _withdrawn_unseen_then_reported_again(client, pool, own, body)
    handle = handle_of(client, case_id)
    new_case: str | None = None
    async with build_worker(client, pool, own):
        await asyncio.wait_for(handle.result(), 60)
        new_case = await _refiled_as(pool, again["report_id"])
        assert new_case is not None and new_case != case_id, "the report was dropped"
        try:
            async def projected() -> bool:
                return await pool.fetchval(
                    "SELECT data FROM case_events WHERE case_id = $1 AND kind = 'repeat_refiled'",
                    case_id,
                ) is not None  # fmt: skip

            await eventually(projected, within=30)
            refiled = await pool.fetchval(
                "SELECT data FROM case_events WHERE case_id = $1 AND kind = 'repeat_refiled'",
                case_id,
            )  # fmt: skip
            assert refiled["refiled_as"] == new_case and not refiled["merged"], refiled
            assert refiled["report_id"] == str(again["report_id"]), refiled
            # the new case is the citizen's report, as they made it (channel, time, problem)
            start = await pool.fetchval(
                "SELECT payload FROM intakes WHERE case_id = $1", new_case)  # fmt: skip
            assert start["intake"]["channel"] == "wechat"
            assert start["intake"]["address"] == body["address"]
            assert await eventually(lambda: _assigned(pool, new_case), within=30)
            await replay_checked(await handle.fetch_history())
            await _the_reporter_is_told(client, pool, own, again["citizen_token"], new_case)
        finally:
            await handle_of(client, new_case).terminate("test over")
    # the closed case's record says where the report went; it was counted once, nowhere else
    assert await pool.fetchval(
        "SELECT count(*) FROM case_events WHERE case_id = $1 AND kind = 'repeat_reported'",
        case_id,
    ) == 0  # fmt: skip


async def _the_reporter_is_told(
    client: Client, pool: asyncpg.Pool, own: Settings, token: str, new_case: str
) -> None:
    """The repeat's own link (the closed case's page, ``/my/<token>``) tells its citizen where
    the report went; the case's own citizen does not see it (another citizen's step)."""
    async with served(create_app(own, client=client, pool=pool)) as api:
        page = await api.get(f"/my/{token}")
    assert page.status_code == 200, page.text
    told = page.text.split('class="refiled"')
    assert len(told) == 2 and f"另行受理为新工单 <strong>{new_case}</strong>" in told[1], page.text


async def test_a_case_before_v23_still_drops_it(
    client: Client, pool: asyncpg.Pool, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lean-case-v22 case keeps the rule it ran with (its histories replay): nothing refiled."""
    v22 = next(n for n, (e, _) in enumerate(patches_module.EPOCHS) if e == "lean-case-v22")
    monkeypatch.setattr(patches_module, "EPOCHS", patches_module.EPOCHS[: v22 + 1])
    own = settings.model_copy(update={"task_queue": f"refile22-{uuid.uuid4().hex[:8]}"})
    case_id, again = await _withdrawn_unseen_then_reported_again(client, pool, own, complaint())
    handle = handle_of(client, case_id)
    async with build_worker(client, pool, own):
        await asyncio.wait_for(handle.result(), 60)
    assert await _refiled_as(pool, again["report_id"]) is None
    await replay_checked(await handle.fetch_history())


async def test_worker_up_the_report_after_a_withdrawal_opens_a_new_case(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    """The worker-up order (a guard): the 撤诉 is projected at once, so the intake finds no
    open case and files the report as a new one."""
    own = settings.model_copy(update={"task_queue": f"refileup-{uuid.uuid4().hex[:8]}"})
    body = complaint()
    async with served(create_app(own, client=client, pool=pool)) as api, build_worker(
        client, pool, own
    ):
        first = (await api.post(COMPLAINTS, json=body, headers=OPERATOR)).json()
        case_id = first["case_id"]
        await eventually(lambda: _assigned(pool, case_id), within=30)
        await handle_of(client, case_id).signal(
            "withdraw", {"actor": rid(CITIZEN), "reason": "Sorted it myself"}
        )
        await asyncio.wait_for(handle_of(client, case_id).result(), 60)
        again = await api.post(COMPLAINTS, json=body, headers=OPERATOR)
        assert again.status_code == 201, again.text
        assert not again.json()["merged"] and again.json()["case_id"] != case_id
        await handle_of(client, again.json()["case_id"]).terminate("test over")
