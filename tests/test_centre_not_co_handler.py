"""会办 never convenes the hotline centre (centre-not-co-handler-v1), the first rule added since
``lean-case-v3``: it comes with the epoch ``lean-case-v4`` (``workflows/patches.py``), decided
in a case's first task.

The centre dispatches, supervises and answers the citizen. A client straight to Temporal (the
API refuses it too) could name the centre as a co-handler; the lead department's reply then
waited on the centre's contribution (co_handlers_pending). A case started before the rule keeps
the old one for its whole life, and replays as it ran.
"""

from __future__ import annotations

import uuid

from helpers import SUPERVISOR as SUPERVISOR_KEY
from helpers import act, keep_history, register, replay_checked
from test_hostile_messages import SUPERVISOR, event_of, private_worker, rid, start_of, until

from jiesu.case.domain import CENTRE_ID, CENTRE_NAME, EventKind, Status
from workflows import ComplaintWorkflow
from workflows import patches as patches_module

CENTRE = {"id": CENTRE_ID, "name": CENTRE_NAME}


async def test_a_client_naming_the_centre_is_refused_and_the_reply_is_not_held(
    api, client
) -> None:
    case_id = (await register(api))["case_id"]
    await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
    h = client.get_workflow_handle(case_id)
    order = rid(SUPERVISOR)
    await h.signal("add_co_handlers", {"actor": order, "departments": [CENTRE], "note": "x"})
    refused = await event_of(client, case_id, order)
    assert refused.kind is EventKind.REJECTED, refused
    assert refused.data["code"] == "centre_not_co_handler", refused.data
    joint = rid(SUPERVISOR)
    await h.signal("supervise", {
        "actor": joint, "form": "joint_handling", "note": "together",
        "department_ids": [CENTRE_ID], "departments": [CENTRE],
    })  # fmt: skip
    refused = await event_of(client, case_id, joint)
    assert refused.data["code"] == "centre_not_co_handler", refused.data
    s = await until(client, case_id, lambda s: s.co_handlers == [] and s.escalation is None)
    assert s.co_handlers == []
    await h.terminate("test over")
    await keep_history(h, "centre_not_co_handler")


async def test_the_api_refuses_it_at_once(api, client) -> None:
    case_id = (await register(api))["case_id"]
    await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
    body = await act(api, case_id, "co-handlers", SUPERVISOR_KEY, expect=409,
                     department_ids=[CENTRE_ID], note="together")  # fmt: skip
    assert "centre_not_co_handler" in str(body), body


async def test_a_case_started_before_the_rule_keeps_the_old_one(
    client, pool, settings, monkeypatch
) -> None:
    """Started by a worker without the rule (epoch lean-case-v3 only), continued by one with
    it: the case is of the older epoch, so it applies a 会办 naming the centre as it always
    did, and its history replays with the current code."""
    queue = f"centre-{uuid.uuid4().hex[:8]}"
    case_id = f"JS-CENTRE-{uuid.uuid4().hex[:8]}"
    with monkeypatch.context() as before:
        before.setattr(patches_module, "EPOCHS", patches_module.EPOCHS[:1])
        before.setattr(patches_module, "AFTER_V3", ())
        async with private_worker(client, pool, settings, queue):
            h = await client.start_workflow(ComplaintWorkflow.run, start_of(case_id),
                                            id=case_id, task_queue=queue)  # fmt: skip
            await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
    assert len(patches_module.EPOCHS) > 1  # the rule is back for the worker below
    try:
        async with private_worker(client, pool, settings, queue):
            order = rid(SUPERVISOR)
            await h.signal("add_co_handlers", {"actor": order, "departments": [CENTRE]})
            applied = await event_of(client, case_id, order)
            assert applied.kind is EventKind.CO_HANDLERS_ADDED, applied
            recorded = await h.fetch_history()
            await replay_checked(recorded)
    finally:
        await h.terminate("test over")
    await keep_history(h, "centre_co_handler_before_the_rule")
