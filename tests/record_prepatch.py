"""Records tests/histories/prepatch_*.json: the paths the eighth session's hostile-message
patches changed (tests/test_hostile_messages.py), taken by the code from *before* those
patches, so that every test run checks that a case started before a patch keeps its old path
(test_replay.py replays them with ``replay_checked``).

Not a test of this code — on it every recording fails its first assertion — and not collected
(its name does not start with ``test_``). To record again, run it on the old code:

    git worktree add /tmp/prepatch de65895
    cp tests/record_prepatch.py /tmp/prepatch/tests/test_record_prepatch.py
    cp tests/test_hostile_messages.py tests/test_witness.py /tmp/prepatch/tests/   # helpers
    cd /tmp/prepatch && RECORD_HISTORIES=1 <this clone>/.venv/bin/python -m pytest -q \
        -p no:cacheprovider tests/test_record_prepatch.py
    cp tests/histories/prepatch_*.json <this clone>/tests/histories/

Each asserts the old behaviour before keeping the history, so a recording is of the path the
patch changed, not of a lucky interleaving.
"""

from __future__ import annotations

import asyncio
import uuid

from helpers import (
    OPERATOR,
    act,
    case,
    department,
    eventually,
    handle_of,
    keep_history,
    register,
)
from helpers import SUPERVISOR as SUPERVISOR_KEY
from test_hostile_messages import (
    _SLOW,
    CITIZEN,
    SUPERVISOR,
    URBAN,
    WATER,
    event_of,
    kinds,
    private_worker,
    rid,
    start_of,
    state_of,
    until,
)
from test_witness import refusing_first_projection

from jiesu.case.domain import EventKind, Status
from workflows import ComplaintWorkflow


async def test_rec_co_handler_named_twice(api, client) -> None:
    case_id = (await register(api))["case_id"]
    await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
    h = handle_of(client, case_id)
    await h.signal("accept", {"actor": rid(URBAN)})
    await h.signal("contact", {"actor": rid(URBAN)})
    water = {"id": "water", "name": "县水务局"}
    twice = rid(SUPERVISOR)
    await h.signal("add_co_handlers", {"actor": twice, "departments": [water, water]})
    added = await event_of(client, case_id, twice)
    assert added.kind is not EventKind.REJECTED, added.data  # the old code applied it
    await h.signal("contribute", {"actor": rid(WATER), "text": "Pipe checked"})
    reply = rid(URBAN)
    await h.signal("reply", {"actor": reply, "outcome": "resolved", "text": "Turned down"})
    event = await event_of(client, case_id, reply)
    assert event.kind is EventKind.REJECTED, event.data  # wedged: co_handlers_pending
    await keep_history(h, "prepatch_co_handler_named_twice")
    await h.terminate("recorded")


async def test_rec_joint_handling_convening_the_lead(api, client) -> None:
    case_id = (await register(api))["case_id"]
    await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
    h = handle_of(client, case_id)
    urban = {"id": "urban-management", "name": "城管局"}
    order = rid(SUPERVISOR)
    await h.signal("supervise", {
        "actor": order, "form": "joint_handling", "note": "together",
        "department_ids": ["water"], "departments": [urban],
    })  # fmt: skip
    applied = await event_of(client, case_id, order)
    assert applied.kind is not EventKind.REJECTED, applied.data
    assert (await state_of(client, case_id)).co_handlers != []
    await keep_history(h, "prepatch_joint_handling_convening_the_lead")
    await h.terminate("recorded")


async def test_rec_withdrawn_in_first_task(client, settings) -> None:
    case_id = f"JS-REVIEW-{uuid.uuid4().hex[:8]}"
    h = await client.start_workflow(
        ComplaintWorkflow.run, start_of(case_id), id=case_id, task_queue=settings.task_queue,
        start_signal="withdraw", start_signal_args=[{"actor": rid(CITIZEN)}])
    routed = (EventKind.ROUTED, EventKind.QUEUED)
    s = await until(client, case_id, lambda s: any(kinds(s, k) for k in routed))
    assert s.deadlines is not None
    await keep_history(h, "prepatch_withdrawn_in_first_task")
    await h.terminate("recorded")


async def test_rec_withdrawn_during_new_round(client, pool, settings) -> None:
    queue = f"review-{uuid.uuid4().hex[:8]}"
    case_id = f"JS-REVIEW-{uuid.uuid4().hex[:8]}"
    async with private_worker(client, pool, settings, queue):
        h = await client.start_workflow(ComplaintWorkflow.run, start_of(case_id), id=case_id,
                                        task_queue=queue)
        await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
        _SLOW[case_id] = started = asyncio.Event()
        await h.signal("raise_level", {"actor": rid(URBAN), "reason": "Beyond our powers"})
        await asyncio.wait_for(started.wait(), 30)
        withdraw = rid(CITIZEN)
        await h.signal("withdraw", {"actor": withdraw, "reason": "sorted it out myself"})
        assert (await event_of(client, case_id, withdraw)).kind is EventKind.WITHDRAWN
        s = await until(client, case_id, lambda s: kinds(s, EventKind.REASSIGNED), within=40)
        assert s.status is not Status.CLOSED  # the old code reopened it
        await keep_history(h, "prepatch_withdrawn_during_new_round")
        await h.terminate("recorded")


async def test_rec_return_twice_in_one_batch(client, pool, settings) -> None:
    queue = f"review-{uuid.uuid4().hex[:8]}"
    case_id = f"JS-REVIEW-{uuid.uuid4().hex[:8]}"
    async with private_worker(client, pool, settings, queue):
        await client.start_workflow(ComplaintWorkflow.run, start_of(case_id), id=case_id,
                                    task_queue=queue)
        await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
    h = handle_of(client, case_id)
    for _ in range(2):
        await h.signal("return", {"actor": rid(URBAN), "reason": "Not ours: private land"})
    async with private_worker(client, pool, settings, queue):
        s = await until(client, case_id, lambda s: len(kinds(s, EventKind.RETURNED)) == 2
                        and s.reassignment is not None, within=40)
        assert s.returned_by == ["urban-management", "urban-management"], s.returned_by
        await keep_history(h, "prepatch_return_twice_in_one_batch")
        await h.terminate("recorded")


async def test_rec_two_dispatches_at_once(api, client) -> None:
    case_id = (await register(api))["case_id"]
    await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
    for target in ("police", "market", "urban-management"):
        current = (await case(api, case_id, OPERATOR))["assignment"]["department_id"]
        await act(api, case_id, "return", department(current), reason="Not ours")
        await until(client, case_id, lambda s: s.status is Status.REASSIGNING)
        await act(api, case_id, "reassign", SUPERVISOR_KEY, department_id=target)
    await act(api, case_id, "return", department("urban-management"), reason="Still not ours")
    await until(client, case_id, lambda s: s.status is Status.DISPATCHING)
    h = handle_of(client, case_id)
    first, second = rid(SUPERVISOR), rid(SUPERVISOR)
    await asyncio.gather(
        h.signal("dispatch", {"actor": first, "department_id": "ecology",
                              "department_name": "生态环境局"}),
        h.signal("dispatch", {"actor": second, "department_id": "water",
                              "department_name": "县水务局"}),
    )  # fmt: skip
    one, other = await event_of(client, case_id, first), await event_of(client, case_id, second)
    applied = [e for e in (one, other) if e.kind is not EventKind.REJECTED]
    moved = (EventKind.DISPATCHED, EventKind.REASSIGNED)
    await until(client, case_id, lambda s: s.status is Status.ASSIGNED
                and sum(len(kinds(s, k)) for k in moved) >= 5, within=20)
    assert len(applied) == 2, [(e.kind, e.data) for e in (one, other)]
    await keep_history(h, "prepatch_two_dispatches_at_once")
    await h.terminate("recorded")


async def test_rec_ladder_step_duplicated(api, client) -> None:
    case_id = (await register(api))["case_id"]
    await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
    h = handle_of(client, case_id)
    await h.signal("supervise", {"actor": rid(SUPERVISOR), "note": "hurry"})
    await until(client, case_id, lambda s: s.escalation_level >= 1)
    for step in ({"n": 1, "level": 5}, {"n": 1, "level": 5}, {"n": 7, "level": 2}):
        await h.signal("escalation_step", step)
    await h.signal("supplement", {"actor": rid(CITIZEN), "text": "marker"})
    s = await until(client, case_id, lambda s: kinds(s, EventKind.SUPPLEMENTED))
    assert len(kinds(s, EventKind.ACCOUNTABILITY_RECORDED)) == 2, kinds(s, EventKind.ESCALATED)
    await keep_history(h, "prepatch_ladder_step_duplicated")
    await h.terminate("recorded")


async def test_rec_rating_after_second_assignment(client, pool, settings) -> None:
    queue = f"review-{uuid.uuid4().hex[:8]}"
    case_id = f"JS-REVIEW-{uuid.uuid4().hex[:8]}"
    h = handle_of(client, case_id)
    async with private_worker(client, pool, settings, queue):
        await client.start_workflow(ComplaintWorkflow.run, start_of(case_id), id=case_id,
                                    task_queue=queue)
        await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
        await h.signal("accept", {"actor": rid(URBAN)})
        await h.signal("contact", {"actor": rid(URBAN)})
        await h.signal("reply", {"actor": rid(URBAN), "outcome": "resolved", "text": "Done"})
        await until(client, case_id, lambda s: s.status is Status.REPLIED)
    second, rating = rid(SUPERVISOR), rid(CITIZEN)
    await h.signal("order_second_assignment", {"actor": second, "reason": "Reply not credible",
                                               "department_id": "market"})
    await h.signal("rate", {"actor": rating, "rating": "satisfied"})
    async with private_worker(client, pool, settings, queue):
        applied = await event_of(client, case_id, rating)
        assert applied.kind is not EventKind.REJECTED, applied.data
        s = await until(client, case_id, lambda s: s.round == 2, within=40)
        assert s.status is not Status.CLOSED
        await keep_history(h, "prepatch_rating_after_second_assignment")
        await h.terminate("recorded")


async def test_rec_withdrawn_while_planning(client, pool, settings) -> None:
    queue = f"review-{uuid.uuid4().hex[:8]}"
    case_id = f"JS-REVIEW-{uuid.uuid4().hex[:8]}"
    _SLOW[case_id] = started = asyncio.Event()
    async with private_worker(client, pool, settings, queue):
        h = await client.start_workflow(ComplaintWorkflow.run, start_of(case_id), id=case_id,
                                        task_queue=queue)
        await asyncio.wait_for(started.wait(), 30)
        withdraw = rid(CITIZEN)
        await h.signal("withdraw", {"actor": withdraw, "reason": "sorted it out myself"})
        assert (await event_of(client, case_id, withdraw)).kind is EventKind.WITHDRAWN
        s = await until(client, case_id, lambda s: s.deadlines is not None, within=40)
        assert s.assignment is not None  # the old code assigned the withdrawn case
        await keep_history(h, "prepatch_withdrawn_while_planning")
        await h.terminate("recorded")


async def test_rec_projection_failed(client, pool, settings) -> None:
    """Before local-projection-failure-v1 (de65895 is before it too): the projector died."""
    queue = f"review-{uuid.uuid4().hex[:8]}"
    case_id = f"JS-REVIEW-{uuid.uuid4().hex[:8]}"
    async with refusing_first_projection(client, pool, settings, queue):
        h = await client.start_workflow(ComplaintWorkflow.run, start_of(case_id), id=case_id,
                                        task_queue=queue)

        async def failed_marker() -> bool:
            history = await h.fetch_history()
            return any(e.marker_recorded_event_attributes.failure.message
                       for e in history.events if e.HasField("marker_recorded_event_attributes"))

        await eventually(failed_marker, within=20)
        await h.signal("accept", {"actor": rid(URBAN)})
        s = await until(client, case_id, lambda s: s.status is Status.HANDLING)
        assert not kinds(s, EventKind.PROJECTION_FAILED)  # the old projector had died
        await keep_history(h, "prepatch_projection_failed")
        await h.terminate("recorded")
