"""A supervision ladder whose child has ended when the case stops it (ladder-child-ended-v1,
epoch ``lean-case-v5``).

The case stops its ladder's child (``stop``) when the unit did its duty. The child may have
ended already: its last step (问责) done a moment before the unit replied, or ended otherwise.
The stop signal was then refused ("ExternalWorkflowExecutionNotFound"), or the child's outcome
was a failure, and the error ended the ladder's task: the case kept its ladder ``active`` for
ever — no ladder of its own breaches, every 督办 order refused ``already_supervised`` — and its
workflow failed at the close, which awaited that task. Found by ordering 问责 and replying at
once on a dozen cases (one hit the first race). Now the ladder is recorded stopped at the level
it reached, and the case goes on; a case of an older epoch keeps the old code (it replays as it
ran).
"""

from __future__ import annotations

import httpx
from helpers import (
    HISTORIES,
    SUPERVISOR,
    act,
    case_when,
    department,
    ladder_of,
    register,
    replay_checked,
    withdrawn_to_its_close,
)
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHistory

URBAN = department("urban-management")


async def test_a_ladder_whose_child_ended_is_recorded_stopped_and_the_case_goes_on(
    api: httpx.AsyncClient, client: Client
) -> None:
    created = await register(api)
    case_id, token = created["case_id"], created["citizen_token"]
    await case_when(api, case_id, lambda s: s["status"] == "assigned")
    await act(api, case_id, "supervision", SUPERVISOR, form="urge", note="Hurry")
    ladder = await ladder_of(client, case_id)
    await ladder.terminate("the ladder's child ended before the case stopped it")
    state = await case_when(
        api, case_id, lambda s: s["escalation"] and not s["escalation"]["active"]
    )
    stopped = [e for e in state["events"] if e["kind"] == "escalation_stopped"]
    assert stopped and stopped[-1]["data"]["final_level"] == 2, stopped  # 催办, where it was
    # the case can be supervised again, and it closes
    await act(api, case_id, "supervision", SUPERVISOR, form="remind", note="Again")
    handle = await withdrawn_to_its_close(api, client, case_id, token)
    assert (await handle.describe()).status is WorkflowExecutionStatus.COMPLETED


async def test_the_raced_history_replays() -> None:
    """The history of a case whose 问责 ladder ended a moment before the unit's reply asked it to
    stop (the stop signal refused): recorded with the race hit, it replays with the code."""
    path = HISTORIES / "ladder_child_ended_before_its_stop.json"
    history = WorkflowHistory.from_json(path.stem, path.read_text(encoding="utf-8"))
    assert "signalExternalWorkflowExecutionFailedEventAttributes" in path.read_text(
        encoding="utf-8"
    )
    await replay_checked(history)
