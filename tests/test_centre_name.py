"""The hotline centre's name as a case records it (centre-name-chinese-v1, epoch
``lean-case-v9``).

Every department's name is Chinese only — the centre's row in the reference data too
(12345热线中心) — but the workflows wrote the centre's name themselves, with an English gloss,
"12345热线中心 (Hotline Centre)", where no routing activity answered for it: in the
department_name of a reassignment that ended in the dispatch queue (the reassignment child
ended without a choice, or its routing refused the case) and in the case's assignment, which
the API answers. A case since ``lean-case-v9`` records 12345热线中心. A case started before
keeps the gloss it recorded: the replay's witness compares the events a replay recomputes with
those of the history (jiesu/audit/witness.py), and the histories recorded before the epoch
(``v15-reassignment_child_terminated.json``, ``queue_after_reassignment_without_deadlines.json``,
``dispatched_from_queue.json``, ...) replay green in tests/test_replay.py; the same path
recorded since, ``reassignment_child_terminated.json``, holds 12345热线中心.
"""

from __future__ import annotations

import httpx
from helpers import act, case_when, department, eventually, exists, register
from temporalio.client import Client

from jiesu.case.domain import CENTRE_ID

URBAN = department("urban-management")
CENTRE_NAME = "12345热线中心"


async def test_a_reassignment_ended_in_the_queue_names_the_centre_in_chinese(
    api: httpx.AsyncClient, client: Client
) -> None:
    case_id = (await register(api))["case_id"]  # → urban management
    await case_when(api, case_id, lambda s: s["status"] == "assigned")
    await act(api, case_id, "return", URBAN, reason="Amplified music at night is police work")
    await case_when(api, case_id, lambda s: s["status"] == "reassigning")
    child = client.get_workflow_handle(f"{case_id}-reassign-1")
    await eventually(lambda: exists(child), within=30)
    await child.terminate("an operator ended the reassignment")

    state = await case_when(api, case_id, lambda s: s["status"] == "dispatching")
    assert state["assignment"] == {**state["assignment"], "department_id": CENTRE_ID,
                                   "department_name": CENTRE_NAME}, state["assignment"]  # fmt: skip
    reassigned = next(e for e in state["events"] if e["kind"] == "reassigned")
    assert reassigned["data"]["department_name"] == CENTRE_NAME, reassigned["data"]
