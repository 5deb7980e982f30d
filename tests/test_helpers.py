"""The tests' own helpers: the client helpers behave like a real client (a 503 case_not_ready
right after filing, the case's first moments on a loaded machine, is retried, not taken as the
answer), and the module is loaded once, under one name, with one ``complaint()`` counter."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import helpers
import httpx
import pytest
from helpers import OPERATOR, act, case, complaint, loaded_twice

NOT_READY = {"error": {"code": "case_not_ready", "message": "registered, not readable yet"}}


def _api(not_ready_times: int) -> tuple[httpx.AsyncClient, list[str]]:
    """A stand-in API that says case_not_ready ``not_ready_times`` times, then answers."""
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        if len(seen) <= not_ready_times:
            return httpx.Response(503, json=NOT_READY, headers={"Retry-After": "5"})
        return httpx.Response(200, json={"case_id": "JS1", "status": "assigned"})

    transport = httpx.MockTransport(answer)
    return httpx.AsyncClient(transport=transport, base_url="http://jiesu.test"), seen


async def test_case_waits_through_case_not_ready() -> None:
    api, seen = _api(not_ready_times=3)
    async with api:
        assert (await case(api, "JS1", OPERATOR))["status"] == "assigned"
    assert seen == ["GET /api/v1/complaints/JS1"] * 4


async def test_an_action_is_sent_again_after_case_not_ready() -> None:
    api, seen = _api(not_ready_times=2)
    async with api:
        assert (await act(api, "JS1", "accept", OPERATOR))["status"] == "assigned"
    assert seen == ["POST /api/v1/complaints/JS1/accept"] * 3


async def test_an_expected_case_not_ready_is_the_answer() -> None:
    api, seen = _api(not_ready_times=1)
    async with api:
        body = await act(api, "JS1", "accept", OPERATOR, expect=503)
    assert body["error"]["code"] == "case_not_ready" and len(seen) == 1


def test_helpers_refuses_a_second_name() -> None:
    """Loaded as ``tests.helpers`` next to ``helpers``, the module would have a second
    ``complaint()`` counter and hand out the same citizens again: it refuses."""
    path = Path(helpers.__file__)
    spec = importlib.util.spec_from_file_location("tests.helpers", path)
    assert spec is not None and spec.loader is not None
    with pytest.raises(ImportError, match="from helpers import"):
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


def test_a_file_loaded_under_two_names_is_found(tmp_path: Path) -> None:
    def module(name: str, file: Path) -> ModuleType:
        made = ModuleType(name)
        made.__file__ = str(file)
        return made

    shared, other = tmp_path / "helpers.py", tmp_path / "statcases.py"
    modules = {
        "helpers": module("helpers", shared),
        "tests.helpers": module("tests.helpers", shared),
        "statcases": module("statcases", other),
        "json": json,  # outside the folder
    }
    assert loaded_twice(modules, tmp_path) == {shared.resolve(): ["helpers", "tests.helpers"]}
    assert loaded_twice(sys.modules, Path(helpers.__file__).parent) == {}  # this very run


def test_every_module_draws_citizens_from_one_counter() -> None:
    """The modules that once imported ``tests.helpers`` now share the one ``complaint()``:
    no two intakes of the session are the same citizen at the same address by accident."""
    import test_action_answers
    import test_gc_tuning
    import test_stack

    assert test_stack.complaint is complaint
    assert test_action_answers.register is helpers.register
    assert test_gc_tuning.OPERATOR is OPERATOR
