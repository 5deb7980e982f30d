"""Helpers shared by the tests: API keys, a valid intake body, waiting on conditions."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import os
import re
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager, redirect_stderr, redirect_stdout
from datetime import UTC, datetime, timedelta
from functools import partial, wraps
from pathlib import Path
from typing import Any
from unittest.mock import patch
from zoneinfo import ZoneInfo

import asyncpg
import httpx
from fastapi import FastAPI
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, WorkflowReplayResult

from jiesu import db
from jiesu.audit.consistency import CaseConsistency, check_case
from jiesu.audit.timeline import child_runs
from jiesu.audit.witness import ProjectionWitness
from jiesu.case.domain import (
    Actor,
    CaseFacts,
    CaseOutcome,
    CaseStart,
    CaseState,
    EventKind,
    Resolution,
    Role,
    Status,
    Urgency,
)
from jiesu.config import Settings
from jiesu.ops.demo_data import DemoKey, demo_key, department_key
from worker import build_worker
from workflows import ALL_WORKFLOWS, ComplaintWorkflow

# One module, one ``complaint()`` counter: pytest puts tests/ on sys.path (rootdir conftest,
# no __init__.py), so this module is ``helpers``. Loaded again as ``tests.helpers`` (which
# only ``python -m pytest`` from the repository makes importable) it would count citizens
# from 1 a second time, and two modules' cases would share a phone and an address and be
# merged as repeats (并单).
if __name__ != "helpers":
    raise ImportError(
        f"tests/helpers.py imported as {__name__!r}: write `from helpers import ...`"
        " (its only name)"
    )


def loaded_twice(modules: Mapping[str, Any], folder: Path) -> dict[Path, list[str]]:
    """The files under ``folder`` that ``modules`` (``sys.modules``) holds under more than one
    name, with those names: each such file runs twice, with two copies of its state."""
    names: dict[Path, list[str]] = {}
    root = folder.resolve()
    for name, module in list(modules.items()):
        file = getattr(module, "__file__", None)
        if file and Path(file).resolve().is_relative_to(root):
            names.setdefault(Path(file).resolve(), []).append(name)
    return {file: sorted(found) for file, found in names.items() if len(found) > 1}


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of ``app`` running in-process over ASGI (its lifespan included)."""
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://jiesu.test"
        ) as http,
    ):
        yield http


async def cli_in_process(
    variables: Mapping[str, str], *argv: str, stdin: str = ""
) -> tuple[int, str, str]:
    """``jiesu ARGV`` in this process — ``jiesu.ops.cli.run``, what the console script runs
    before it exits — with ``variables`` as its environment and ``stdin`` piped in: (exit code,
    stdout, stderr). A new interpreter costs about 1.5 s of CPU before the command starts, and
    the tests of refused input make many calls; the console script itself is tested through a
    subprocess (test_audit.run_cli)."""
    from jiesu.config import get_settings
    from jiesu.ops import cli

    def call() -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with (
            patch.dict(os.environ, variables), patch("sys.stdin", io.StringIO(stdin)),
            redirect_stdout(out), redirect_stderr(err),
        ):  # fmt: skip
            get_settings.cache_clear()  # the settings of these variables, not the last ones
            try:
                code = cli.run(list(argv))
            except SystemExit as exit_:  # argparse's refusals
                code = exit_.code if isinstance(exit_.code, int) else 1
            finally:
                get_settings.cache_clear()
        return code, out.getvalue(), err.getvalue()

    return await asyncio.to_thread(call)


def run_tried_once(pattern: re.Pattern[str]) -> bool:
    """Whether ``pattern`` is a run of one class tried from the run's first character only: a
    negative lookbehind over the class, then a possessive repeat of it. Searched or substituted
    without the lookbehind, a run whose end fails the rest of the pattern is tried again from
    each of its characters, each attempt reading to the run's end (n² steps)."""
    from re import _parser

    tree = list(_parser.parse(pattern.pattern))
    if len(tree) < 2 or str(tree[0][0]) != "ASSERT_NOT" or str(tree[1][0]) != "POSSESSIVE_REPEAT":
        return False
    direction, behind = tree[0][1]
    low, _high, repeated = tree[1][1]
    return direction == -1 and low == 1 and list(behind) == list(repeated)


def local_day(at: str, timezone: str) -> str:
    """The statistics day (in the hotline's time zone) of an ISO instant.

    A UTC timestamp's first ten characters name the wrong day for eight hours a
    day in Asia/Shanghai; statistics count cases by the local day.
    """
    return datetime.fromisoformat(at).astimezone(ZoneInfo(timezone)).date().isoformat()


def auth(key: DemoKey) -> dict[str, str]:
    return {"Authorization": f"Bearer {key.key}"}


OPERATOR = auth(demo_key("demo-operator"))
SUPERVISOR = auth(demo_key("demo-supervisor"))
AUDITOR = auth(demo_key("demo-auditor"))


def department(department_id: str) -> dict[str, str]:
    return auth(department_key(department_id))


_citizens = itertools.count(1)


def complaint(**overrides: Any) -> dict[str, Any]:
    """A valid intake body: a shop's loudspeaker at night in 幸福社区 grid 1.

    Each call is a different citizen at a different address, so that intakes are not merged
    into each other's open cases (并单) unless a test asks for it."""
    n = next(_citizens)
    body: dict[str, Any] = {
        "title": "Shop loudspeaker at night",
        "description": "The phone shop at No. 12 plays loud adverts until midnight.",
        "category_id": "noise_commercial",
        "grid_id": "G-QH-01-01-1",
        "address": f"幸福路{n}号",
        "channel": "hotline",
        "citizen": {"name": "Wang Fang", "phone": f"138{os.getpid() % 10000:04d}{n:04d}"},
    }
    body.update(overrides)
    return body


async def eventually(
    probe: Callable[[], Awaitable[Any]], *, within: float = 10.0, interval: float = 0.05
) -> Any:
    """Wait until ``probe()`` returns something truthy, failing after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + within
    while True:
        value = await probe()
        if value:
            return value
        if loop.time() > give_up:
            raise AssertionError(f"condition not met within {within}s (last value {value!r})")
        await asyncio.sleep(interval)


async def settled_consistency(
    client: Client, pool: Any, case_id: str, *, within: float = 30.0
) -> CaseConsistency:
    """The consistency check once nothing is in flight (nothing ``pending``, nothing projected
    ``ahead`` of the history): a live case's projection is recorded a moment after its rows
    are written. Waits until the check is settled and returns its last answer, consistent or
    not, for the test to assert on."""
    last: list[CaseConsistency] = []

    async def settled() -> bool:
        last[:] = [await check_case(client, pool, case_id)]
        return last[0].pending == 0 and last[0].ahead == 0

    await eventually(settled, within=within)
    return last[0]


async def ladder_of(client: Client, case_id: str, n: int = 1) -> WorkflowHandle[Any, Any]:
    """The case's ``n``-th escalation ladder (督办 child workflow), once it runs (``child_of``).
    The case records the ladder's first step itself, so a reader may see level 1 a moment
    before the child has started."""
    return await child_of(client, f"{case_id}-escalation-{n}")


async def child_of(client: Client, workflow_id: str) -> WorkflowHandle[Any, Any]:
    """A case's child workflow (a ladder, a reassignment) once its clock may be moved: started
    and given its first workflow task. Between the two, the dev server sees a child with no
    task and no timer as idle, and a fast-forward then jumps straight to its target before the
    child has set a timer (Temporal server's ``findNextSkipTarget`` names the window): the
    ladder's first step then lasts two hours of real time after a skip that answered True.
    Measured: 6 of 48 ladders skipped so when moved as soon as ``describe`` found them (six at
    once, 2026-11-24), their histories showing the skip before ``WorkflowTaskScheduled``."""
    handle = client.get_workflow_handle(workflow_id)
    await eventually(lambda: has_run(handle), within=30)
    return handle


class SetupFailed(Exception):
    """A scenario did not reach what its test judges: not the defect a strict xfail names
    (which fails with AssertionError only, ``raises=``), so it is not taken for it."""


def setup_checked(run: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """``run`` (an attack file's scenario) with its AssertionErrors turned into SetupFailed."""

    @wraps(run)
    async def checked(*args: Any) -> Any:
        try:
            return await run(*args)
        except AssertionError as err:
            raise SetupFailed(f"{run.__name__}: {err}") from err

    return checked


async def ended(handle: WorkflowHandle[Any, Any], reason: str = "test finished") -> None:
    """Terminate a case the test is done with, unless it has ended by itself meanwhile (a case
    that closed goes on only for its last projection: terminating it races its end, and the
    server answers NOT_FOUND "workflow execution already completed")."""
    try:
        await handle.terminate(reason)
    except RPCError as error:
        if error.status is not RPCStatusCode.NOT_FOUND:
            raise


async def has_run(handle: WorkflowHandle[Any, Any]) -> bool:
    """Has this workflow been given its first workflow task (so a skip waits for it)?"""
    try:
        async for event in handle.fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
                return True
    except RPCError as error:
        if error.status is RPCStatusCode.NOT_FOUND:
            return False
        raise
    return False


async def exists(handle: WorkflowHandle[Any, Any]) -> bool:
    """Does Temporal have this workflow (not deleted by retention, started already)?"""
    try:
        await handle.describe()
    except RPCError as error:
        if error.status is RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def fast_forward(env: WorkflowEnvironment, handle: WorkflowHandle[Any, Any],
                       by: timedelta) -> None:
    assert await env.fast_forward(handle, by), (
        f"{handle.id}'s clock did not reach its target: the workflow ended first"
    )


async def fast_forward_past(
    env: WorkflowEnvironment, handle: WorkflowHandle[Any, Any], moment: datetime,
    margin: timedelta = timedelta(seconds=1),
) -> None:  # fmt: skip
    """Move the case's clock to ``margin`` past ``moment`` (a deadline it holds a timer for).

    The dev server jumps the clock from timer to timer, but once no timer is left before the
    target the rest of a fast-forward passes in real time: ``by=2h1m`` for a 2 h deadline with
    nothing after it waits a real minute. Aiming just past the deadline waits ``margin``."""
    now = await env.get_current_time(handle)
    await fast_forward(env, handle, moment - now + margin)


HISTORIES = Path(__file__).parent / "histories"


def current_histories() -> list[Path]:
    """The recorded histories of today's code: not those kept from an earlier version
    (``v<N>-*``) or recorded before a patch (``prepatch_*``; test_replay.py's docstring)."""
    older = re.compile(r"^(v\d+-|prepatch_)")
    return [p for p in sorted(HISTORIES.glob("*.json")) if not older.match(p.name)]


def sandboxed_replayer(**options: Any) -> Replayer:
    """A replayer of the case workflows in the SDK's sandbox, without its deadlock detector.

    The detector fails an activation that has not yielded within 2 s of wall time; on a loaded
    2-core CI machine a replay's activation (in the sandbox, which imports the workflow
    modules afresh for each run) can take that long without anything being wrong, and the
    replay then fails with "[TMPRL1101] Potential deadlock detected". ``debug_mode`` is the
    SDK's switch for it: it runs activations inline, so the check has nothing to time. What a
    replay here proves is unchanged: the same commands (determinism) and nothing the sandbox
    forbids (it only lets ``breakpoint()`` through)."""
    return Replayer(
        workflows=ALL_WORKFLOWS, data_converter=pydantic_data_converter, debug_mode=True,
        **options,
    )  # fmt: skip


async def replay_checked(history: WorkflowHistory) -> None:
    """Replay in the sandbox and fail unless the code issues the recorded commands (Temporal's
    check) *and* computes the events every projection recorded (jiesu.audit.witness: a rule
    changed without ``workflow.patched`` issues the same commands)."""
    problem = (await replays_checked([history]))[history.workflow_id]
    assert problem is None, problem


async def replays_checked(histories: Sequence[WorkflowHistory]) -> dict[str, str | None]:
    """``replay_checked`` of many histories through the process's sandboxed replay worker
    (``REPLAYS``): what is wrong with each (by workflow id), None for one that replays and
    recomputes its projections.

    One worker streams them all (``workflow_replay_iterator``, as jiesu.audit.replay does for
    the doctor): a replayer of its own for each history cost ~4x the CPU (60 recorded
    histories: 5.5 s streamed, 22.6-25.9 s one replayer each; /tmp measurement in
    docs/testing.md, "Suite wall time"). Each history is still replayed in a workflow run of
    its own, in its own sandbox, and judged alone, before the next is replayed; the workflow
    ids of one call must be unique (the answer is by id: test_replay names each history by
    its file)."""
    ids = [history.workflow_id for history in histories]
    assert len(set(ids)) == len(ids), "two histories with one workflow id: their answers would mix"
    answers = await asyncio.gather(*(REPLAYS.problem_of(history) for history in histories))
    return dict(zip(ids, answers, strict=True))


class ReplayStream:
    """One sandboxed replay worker for the whole test process, fed one history at a time.

    A ``Replayer`` of its own per history starts a replay worker each time, which validates
    every workflow class in the sandbox before the first replay: ~0.07 s of CPU per history
    on an idle machine, several times that on a loaded one, paid by every ``replay_checked``
    of the suite (docs/testing.md, "Suite wall time", 2026-11-25 trim32). Here the worker
    stays up: each history is pushed when the one before has been judged (``_replay_problem``
    reads the witness's notes of that run and takes them), so a case replayed twice, or by
    tests that run at once, is judged as if alone. If the worker itself fails, the waiting
    callers get its error and the next call starts a new one. ``close`` (tests/conftest.py,
    at the session's end) stops it."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[tuple[WorkflowHistory, asyncio.Future[str | None]] | None]
        self._task: asyncio.Task[None] | None = None
        self._current: asyncio.Future[str | None] | None = None

    async def problem_of(self, history: WorkflowHistory) -> str | None:
        """What is wrong with ``history`` replayed with today's code (None: nothing)."""
        if self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._task = asyncio.create_task(self._run(self._queue))
        answer: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((history, answer))
        return await answer

    async def _run(self, queue: asyncio.Queue[Any]) -> None:
        witness = ProjectionWitness()
        replayer = sandboxed_replayer(interceptors=[witness])

        async def stream() -> AsyncIterator[WorkflowHistory]:
            while (item := await queue.get()) is not None:
                history, self._current = item
                yield history

        try:
            async with replayer.workflow_replay_iterator(stream()) as results:
                async for result in results:
                    answer, self._current = self._current, None
                    problem = _replay_problem(result, witness)
                    if answer is not None and not answer.done():
                        answer.set_result(problem)
        except BaseException as err:
            waiting = [self._current] + [item[1] for item in _drained(queue) if item]
            for answer in waiting:
                if answer is not None and not answer.done():
                    answer.set_exception(AssertionError(f"the replay worker failed: {err!r}"))
            raise

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._queue.put_nowait(None)
            await self._task
        self._task = None


def _drained(queue: asyncio.Queue[Any]) -> list[Any]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


REPLAYS = ReplayStream()
"""The process's replay worker (``replay_checked``, ``replays_checked``)."""


def _replay_problem(result: WorkflowReplayResult, witness: ProjectionWitness) -> str | None:
    history = result.history
    name = history.workflow_id
    if result.replay_failure is not None:
        witness.take(name, history.run_id)  # its notes, not to be left behind
        return f"{name} no longer replays: {result.replay_failure}"
    disagreement = witness.check(history)
    if disagreement is not None:
        return (
            f"{name} replays, but computes other events than it recorded (event "
            f"{disagreement.event_id}): {disagreement.message}"
        )
    return None


CHILD_HISTORIES = HISTORIES / "children"
"""Histories of the children (the ladder, the reassignment) of the recorded cases, named
``<case's file>--<child's id after the case number>.json``: replayed like the cases'."""


async def keep_history(handle: WorkflowHandle[Any, Any], name: str) -> WorkflowHistory:
    """Replay a finished path's history and its children's with the current code
    (``replay_checked``); with RECORD_HISTORIES=1 also store them under tests/histories/ so
    that every later run replays them (test_replay.py). RECORD_HISTORIES=children stores the
    children's only, leaving the cases' recorded histories as they are."""
    history = await handle.fetch_history()
    await replay_checked(history)
    record = os.environ.get("RECORD_HISTORIES")
    if record == "1":
        HISTORIES.mkdir(exist_ok=True)
        (HISTORIES / f"{name}.json").write_text(history.to_json(), encoding="utf-8")
    for child_id, run_id in child_runs(history):
        if run_id is None:  # never started (its id was taken): no history of its own
            continue
        child = await handle._client.get_workflow_handle(child_id, run_id=run_id).fetch_history()
        await replay_checked(child)
        if record in ("1", "children"):
            CHILD_HISTORIES.mkdir(parents=True, exist_ok=True)
            suffix = child_id.removeprefix(f"{handle.id}-")
            (CHILD_HISTORIES / f"{name}--{suffix}.json").write_text(child.to_json(), "utf-8")
    return history


async def register(api: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    response = await api.post("/api/v1/complaints", json=complaint(**overrides), headers=OPERATOR)
    assert response.status_code == 201, response.text
    return response.json()


NOT_READY_PATIENCE = 30.0
"""Seconds a helper retries a 503 case_not_ready: a case's first moments on a loaded machine
(its workflow has not answered yet and the read model has no row)."""


def not_ready(response: httpx.Response) -> bool:
    """The API's "registered, not readable yet; retry" (api/cases.py ``not_ready``)."""
    return response.status_code == 503 and "case_not_ready" in response.text


async def through_not_ready(
    request: Callable[[], Awaitable[httpx.Response]], within: float = NOT_READY_PATIENCE
) -> httpx.Response:
    """``request()`` again while it answers 503 case_not_ready, as a client honouring
    Retry-After does (faster: the condition is polled); any other answer is returned. The
    503 comes before the case is touched, so an action is safe to send again."""

    async def answered() -> httpx.Response | None:
        response = await request()
        return None if not_ready(response) else response

    response: httpx.Response = await eventually(answered, within=within)
    return response


async def case(api: httpx.AsyncClient, case_id: str, headers: dict[str, str]) -> dict[str, Any]:
    """The case as ``headers``' caller sees it, waiting through case_not_ready."""
    url = f"/api/v1/complaints/{case_id}"
    response = await through_not_ready(lambda: api.get(url, headers=headers))
    assert response.status_code == 200, response.text
    return response.json()


async def case_when(
    api: httpx.AsyncClient, case_id: str, test: Callable[[dict[str, Any]], Any],
    *, within: float = 30, first: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, Any]:
    """The case as the operator sees it, once ``test`` holds of it (``first``: awaited before
    each look, e.g. to assert the workflow has not failed)."""

    async def probe() -> dict[str, Any] | None:
        if first is not None:
            await first()
        state = await case(api, case_id, OPERATOR)
        return state if test(state) else None

    return await eventually(probe, within=within)


async def steps_told(ladder: WorkflowHandle[Any, Any]) -> list[int]:
    """The levels a ladder (督办阶梯 child) has signalled its case and Temporal delivered, in
    its history's order: what the case has to apply, whatever it shows yet."""
    sent: dict[int, int] = {}
    told: list[int] = []
    async for event in ladder.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
            attrs = event.signal_external_workflow_execution_initiated_event_attributes
            if attrs.signal_name == "escalation_step":
                sent[event.event_id] = json.loads(attrs.input.payloads[0].data)["level"]
        elif event.event_type == EventType.EVENT_TYPE_EXTERNAL_WORKFLOW_EXECUTION_SIGNALED:
            attrs = event.external_workflow_execution_signaled_event_attributes
            if attrs.initiated_event_id in sent:
                told.append(sent[attrs.initiated_event_id])
    return told


async def case_applied(
    api: httpx.AsyncClient, client: Client, case_id: str, test: Callable[[dict[str, Any]], Any],
    *, within: float = 90,
) -> dict[str, Any]:
    """The case as the operator sees it once ``test`` holds: for what Temporal has delivered to
    the case already (a ladder's step, a signal), so the wait is the case applying it. A
    timeout says where the case stood: the API's answer and source, the case's pending
    workflow task (its attempt: a failed task is retried after a growing pause, 10 s and more
    from the third attempt on the dev server) and its failed tasks' causes."""
    try:
        return await case_when(api, case_id, test, within=within)
    except AssertionError as slow:
        raise AssertionError(
            f"{case_id} did not apply what it was told within {within} s: "
            f"{await _where_the_case_stands(api, client, case_id)}"
        ) from slow


async def _where_the_case_stands(api: httpx.AsyncClient, client: Client, case_id: str) -> str:
    answer = await api.get(f"/api/v1/complaints/{case_id}", headers=OPERATOR)
    body = answer.json() if answer.status_code == 200 else {}
    handle = handle_of(client, case_id)
    described = (await handle.describe()).raw_description
    task = "pending_workflow_task"
    pending = (
        f"state {described.pending_workflow_task.state}, attempt "
        f"{described.pending_workflow_task.attempt}"
        if described.HasField(task) else "none"
    )  # fmt: skip
    failed = [
        f"{e.event_id}: {e.workflow_task_failed_event_attributes.failure.message[:200]}"
        async for e in handle.fetch_history_events()
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
    ]
    return (
        f"the API answers {answer.status_code} ({answer.headers.get('x-case-source')}) level "
        f"{body.get('escalation_level')}, status {body.get('status')}; the case's pending "
        f"workflow task: {pending}; its failed workflow tasks: {failed or 'none'}"
    )


async def withdrawn_to_its_close(
    api: httpx.AsyncClient, client: Client, case_id: str, token: str
) -> WorkflowHandle[Any, Any]:
    """The citizen withdraws (撤诉) and the case's workflow ends closed, withdrawn."""
    answer = await api.post(f"/api/v1/complaints/{case_id}/withdraw",
                            json={"token": token, "reason": "solved"})  # fmt: skip
    assert answer.status_code in (200, 202), answer.text
    handle = handle_of(client, case_id)
    outcome = await handle.result()
    assert (outcome.status, outcome.resolution) == (Status.CLOSED, Resolution.WITHDRAWN)
    return handle


async def act(
    api: httpx.AsyncClient,
    case_id: str,
    action: str,
    headers: dict[str, str] | None = None,
    expect: int = 200,
    **body: Any,
) -> dict[str, Any]:
    url = f"/api/v1/complaints/{case_id}/{action}"

    def send() -> Awaitable[httpx.Response]:
        return api.post(url, json=body or None, headers=headers or {})

    async def sent() -> httpx.Response | None:
        # A unit's action sent right after the intake can come before the plan routed the case
        # to the unit: it is not the unit's yet (404 case_not_found, as a real unit's inbox does
        # not show it yet) — sent again until it is, unless the test expects that 404.
        response = await through_not_ready(send)
        unrouted = response.status_code == 404 and "case_not_found" in response.text
        return None if unrouted and expect != 404 else response

    if expect == 503:
        response = await send()
    else:
        response = await eventually(sent, within=NOT_READY_PATIENCE)
    assert response.status_code == expect, response.text
    return response.json()


def handle_of(client: Client, case_id: str) -> WorkflowHandle[Any, CaseOutcome]:
    return client.get_workflow_handle_for(ComplaintWorkflow.run, case_id)


async def closed_state(handle: WorkflowHandle[Any, CaseOutcome]) -> CaseState:
    """The case's state once its workflow has ended (its result is only the outcome)."""
    outcome = await handle.result()
    state = await handle.query(ComplaintWorkflow.state)
    assert (state.status, state.resolution) == (outcome.status, outcome.resolution)
    return state


async def signed_in(api: httpx.AsyncClient, login: str) -> httpx.AsyncClient:
    """A console browser (a client on the test app) signed in as demo person ``login``."""
    browser = httpx.AsyncClient(transport=api._transport, base_url=api.base_url)
    signed = await browser.post(
        "/console/login", data={"login": login, "password": f"{login}-demo-pass"}
    )
    assert signed.status_code == 303, signed.text
    browser.cookies.set("jiesu_session", signed.cookies["jiesu_session"])
    return browser


async def audit_page(api: httpx.AsyncClient, case_id: str) -> httpx.Response:
    """The case's 审计记录 page as the demo auditor opens it in the console."""
    auditor = await signed_in(api, "auditor")
    own = {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate"}
    try:
        return await auditor.get(f"/console/audit/{case_id}", headers=own)
    finally:
        await auditor.aclose()


class _Handset:
    """A phone that keeps what the outbox sends it (a Sender, jiesu.notify.outbox)."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def send(self, notice: Any) -> None:
        self.messages.append(notice)


_LINKED_TOKEN = re.compile(r"/my/([A-Za-z0-9_=-]+)")


async def texted_token(pool: Any, settings: Any, case_id: str, phone: str) -> str:
    """The citizen token as the citizen receives it: from the link of the intake SMS the
    outbox sends to ``phone`` for ``case_id`` (jiesu.intake.follow_up), rendered and
    "delivered" to a phone of the test's own. Staff persons never get it in the intake's
    answer (api/intake.py hands_token_to)."""
    from jiesu.intake.follow_up import FollowUpLinks
    from jiesu.notify.outbox import OutboxDispatcher

    handset = _Handset()
    dispatcher = OutboxDispatcher(pool, handset, batch=500, render=FollowUpLinks(pool, settings))

    async def texted() -> str | None:
        await dispatcher.run_once()
        for notice in handset.messages:
            found = _LINKED_TOKEN.search(notice.body)
            if notice.case_id == case_id and notice.address == phone and found:
                return found.group(1)
        return None

    token: str = await eventually(texted, within=30)
    return token


async def session_api(api: httpx.AsyncClient, login: str) -> tuple[httpx.AsyncClient, str]:
    """A client of the test app logged in to the API as demo person ``login`` (the session
    cookie), and the session's CSRF token for its writes (X-CSRF-Token)."""
    browser = httpx.AsyncClient(transport=api._transport, base_url=api.base_url)
    answer = await browser.post(
        "/api/v1/session", json={"login": login, "password": f"{login}-demo-pass"}
    )
    assert answer.status_code == 200, answer.text
    browser.cookies.set("jiesu_session", answer.cookies["jiesu_session"])
    return browser, str(answer.json()["csrf_token"])


async def csrf_of(browser: httpx.AsyncClient, url: str = "/console/intake") -> str:
    """The CSRF token a console page's form carries (a signed-in person's page)."""
    page = await browser.get(url)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, page.text[:300]
    return token[1]


async def timer_fired(handle: WorkflowHandle[Any, Any], summary: bytes) -> bool:
    """Whether the server has fired a timer of the workflow whose summary holds ``summary``
    (e.g. b"contact deadline"): what a test waits for while the worker is stopped."""
    started: set[int] = set()
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
            if (event.user_metadata.summary.data or b"").find(summary) >= 0:
                started.add(event.event_id)
        elif event.event_type == EventType.EVENT_TYPE_TIMER_FIRED:
            if event.timer_fired_event_attributes.started_event_id in started:
                return True
    return False


OUTAGE_SLACKS = (timedelta(seconds=5), timedelta(seconds=25))
"""Real time from the start of an outage test's setup to the deadline it stops its worker
across. The setup (a worker started, the case brought to the deadline's step, the worker
stopped) takes a fraction of a second on an idle machine; one that overran the first slack is
done again with the second, the slack every such test used to wait."""


class SetupOverran(UserWarning):
    """An outage test's setup took longer than its slack: it was done again with a longer one."""


class Overran(Exception):
    """Raised by an outage test's setup that finds it took too long for the order it sets up
    (a window meant to end before the deadline ends after it; a message meant for before a
    window's end comes after it): ``worker_down_across`` sets it up again, as an overrun."""

    def __init__(self, handle: WorkflowHandle[Any, Any], what: str) -> None:
        super().__init__(what)
        self.handle = handle


def in_time(handle: WorkflowHandle[Any, Any], condition: bool, what: str) -> None:
    """Raise ``Overran`` (the setup is done again) unless ``condition``, an order of the setup's
    times the test needs (``what`` it means)."""
    if not condition:
        raise Overran(handle, what)


async def worker_down_across(
    setup: Callable[[timedelta], Awaitable[tuple[WorkflowHandle[Any, Any], str]]],
    summary: bytes,
    inside: tuple[bytes, ...] = (),
) -> tuple[WorkflowHandle[Any, Any], str]:
    """A case whose deadline passed while no worker served it: once the timer whose summary
    holds ``summary`` has fired, the worker still down, what the test sends now and that timer
    reach the next worker in one workflow task.

    ``setup(slack)`` starts a case, on a task queue of its own, whose deadline falls ``slack``
    from now; brings it to the deadline's step with a worker; stops the worker; sends what is to
    come before the deadline; and returns the case's handle and queue. If the timer had fired
    by then, the setup overran: the worker was up when the deadline passed, or a signal meant
    for before it came after, and the test would show nothing (or something else). The same if
    a timer of ``inside`` (a window the test lets end in the outage too) had fired, or if the
    setup raised ``Overran``. That case is terminated, a ``SetupOverran`` warning says so, and
    the setup is done again with the next slack of ``OUTAGE_SLACKS``; it fails when the last one
    is overrun too."""
    for slack in OUTAGE_SLACKS:
        began = time.monotonic()
        try:
            handle, queue = await setup(slack)
            late = [s for s in (summary, *inside) if await timer_fired(handle, s)]
            why = f"the timers of {late} fired before the worker stopped" if late else ""
        except Overran as overran:
            handle, why = overran.handle, str(overran)
        if not why:
            await eventually(partial(timer_fired, handle, summary), within=90)
            return handle, queue
        took = time.monotonic() - began
        await handle.terminate("its setup overran the deadline")
        warnings.warn(SetupOverran(
            f"{handle.id}: the setup took {took:.1f} s, its deadline was {slack} away ({why}):"
            " the worker was not down across it; set up again with a longer slack"
        ), stacklevel=2)  # fmt: skip
    raise AssertionError(
        f"the setup overran every slack ({OUTAGE_SLACKS[-1]} last): the machine is too"
        " loaded for this test to stop its worker across the deadline"
    )


async def until_past(moment: datetime, within: float = 60) -> None:
    """Wait until the clock is past ``moment``: a due a test lets pass with its worker down."""

    async def passed() -> bool:
        return datetime.now(UTC) > moment

    await eventually(passed, within=within)


class Scenarios:
    """The outage scenarios of one test module, run at once in the session's event loop.

    Most of an outage test is real time waited: a decision window or a deadline passing with
    the worker down, then the case settling. Each scenario keeps a task queue and workers of its
    own (its case is the only one its worker serves, stopped and started by the scenario alone),
    so several can wait at the same time; each test awaits its own scenario's result and
    asserts on it (its exception, if it failed, is raised in that test only). ``at_once`` caps
    how many run together: on a loaded 2-core machine a crowd of setups could overrun the
    windows they stop their worker across (``worker_down_across`` would then set up again)."""

    def __init__(self, runs: Mapping[str, Callable[[], Awaitable[Any]]], at_once: int) -> None:
        gate = asyncio.Semaphore(at_once)

        async def gated(run: Callable[[], Awaitable[Any]]) -> Any:
            async with gate:
                return await run()

        self._tasks = {name: asyncio.ensure_future(gated(run)) for name, run in runs.items()}

    async def of(self, test: Any) -> Any:
        """The result of the scenario of ``test``: a test function's name, or the test's pytest
        ``request``."""
        name = test if isinstance(test, str) else test.node.name
        return await asyncio.shield(self._tasks[name])

    async def settled(self) -> None:
        """Once every scenario has ended: before a test changes what a worker runs (an epoch,
        an SDK flag) for its own case, none of these may still be running."""
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await self.settled()


@asynccontextmanager
async def scenarios_of(
    request: Any, runs: Mapping[str, Callable[[], Awaitable[Any]]], at_once: int = 4
) -> AsyncIterator[Scenarios]:
    """The ``runs`` (by test name) of the tests selected in ``request``'s module (``-k``
    leaves the others' cases unstarted), run at once; cancelled at the module's end."""
    chosen = {item.name for item in request.session.items if item.module is request.module}
    unknown = set(runs) - {name for name in dir(request.module) if name.startswith("test_")}
    assert not unknown, f"scenarios of no test: {sorted(unknown)}"
    scenarios = Scenarios({name: run for name, run in runs.items() if name in chosen}, at_once)
    try:
        yield scenarios
    finally:
        await scenarios.close()


def outage_scenarios(*runs: Callable[..., Awaitable[Any]], at_once: int = 4) -> Any:
    """The module fixture ``outages`` of a test module whose test ``test_x`` awaits the result of
    its scenario ``_x`` (``await outages.of(request)``): each run with the session's Temporal
    client, pool and settings, all at once (``Scenarios``). Assigned at the module's end, after
    the scenarios: ``outages = outage_scenarios(_x, _y)``."""
    import pytest

    @pytest.fixture(scope="module", name="outages")
    async def fixture(
        request: pytest.FixtureRequest, client: Client, pool: Any, settings: Any
    ) -> AsyncIterator[Scenarios]:
        named = {f"test{run.__name__}": partial(run, client, pool, settings) for run in runs}
        async with scenarios_of(request, named, at_once) as started:
            yield started

    return fixture


# --- a case's workflow driven by signals, on a task queue of its own (the outage tests) -----


def rid(actor: Actor) -> dict[str, Any]:
    """``actor`` as a signal carries it, with a request id of its own."""
    return actor.model_copy(update={"request_id": uuid.uuid4().hex}).model_dump()


def sent(actor_request: dict[str, Any], at: datetime | str) -> dict[str, Any]:
    """An action's actor as the API sends it: with the time its request came in."""
    return {**actor_request, "sent_at": at if isinstance(at, str) else at.isoformat()}


async def signal_sent(handle: WorkflowHandle[Any, Any], name: str, actor: Actor,
                      **data: Any) -> None:  # fmt: skip
    """Signal ``name`` to the case as the API does: ``actor`` stamped with the time now."""
    await handle.signal(name, {"actor": sent(rid(actor), datetime.now(UTC)), **data})


def start_of(case_id: str) -> CaseStart:
    """A general case's start: a shop's loudspeaker in 幸福社区 grid 1."""
    facts = CaseFacts(title="Loudspeaker", category_id="noise_commercial",
                      grid_id="G-QH-01-01-1", address=f"幸福路{case_id}")  # fmt: skip
    operator = Actor(role=Role.OPERATOR, name="t")
    return CaseStart(case_id=case_id, facts=facts, urgency=Urgency.GENERAL,
                     received_at=datetime.now(UTC), registered_by=operator)  # fmt: skip


async def state_of(client: Client, case_id: str) -> CaseState:
    state: CaseState = await handle_of(client, case_id).query(ComplaintWorkflow.state)
    return state


async def until(client: Client, case_id: str, test: Callable[[CaseState], Any],
                within: float = 30.0) -> CaseState:  # fmt: skip
    """The case's state (its workflow's query) once ``test`` holds of it."""

    async def probe() -> CaseState | None:
        s = await state_of(client, case_id)
        return s if test(s) else None

    state: CaseState = await eventually(probe, within=within)
    return state


def urgent_start(case_id: str, due_after: timedelta, due_in: timedelta) -> CaseStart:
    """An urgent case's start, received so that its deadline ``due_after`` the receipt (an SLA
    of jiesu.case.sla) falls ``due_in`` from now."""
    received = datetime.now(UTC) - due_after + due_in
    return start_of(case_id).model_copy(
        update={"urgency": Urgency.URGENT, "received_at": received}
    )


def own_queue(settings: Settings, queue: str) -> Settings:
    return settings.model_copy(update={"task_queue": queue})


def own_case(name: str) -> tuple[str, str]:
    """A new case id and a task queue of its own, both named after ``name``."""
    return f"JS-{name.upper()}-{uuid.uuid4().hex[:8]}", f"{name}-{uuid.uuid4().hex[:8]}"


async def started_assigned(
    client: Client, case_id: str, queue: str, start: CaseStart | None = None
) -> WorkflowHandle[Any, CaseOutcome]:
    """The case started on ``queue`` (a general one, unless ``start`` says otherwise), once
    assigned; its worker is the caller's."""
    await client.start_workflow(
        ComplaintWorkflow.run, start or start_of(case_id), id=case_id, task_queue=queue
    )
    await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
    return handle_of(client, case_id)


Step = Callable[[WorkflowHandle[Any, Any]], Awaitable[None]]


async def nothing(_: WorkflowHandle[Any, Any]) -> None:
    return None


async def case_down_across(
    client: Client, pool: Any, settings: Settings, name: str, summary: bytes, before: Step,
    during: Step = nothing, start: Callable[[str, timedelta], CaseStart] | None = None,
    inside: tuple[bytes, ...] = (),
) -> tuple[WorkflowHandle[Any, Any], str]:
    """A case on a task queue of its own (``start(case_id, slack)``: its start, a general case
    by default) brought by ``before`` to the step the timer named ``summary`` watches, with the
    worker up; the worker stops, ``during`` is sent, and the timer fires with the worker down
    (``worker_down_across``: all of it done again, on a new case, if the setup overran its
    slack, or a window of ``inside`` ended before the worker stopped). The worker is started
    again by the caller (returned: the handle, the queue)."""

    async def setup(slack: timedelta) -> tuple[WorkflowHandle[Any, Any], str]:
        case_id, queue = own_case(name)
        first = start(case_id, slack) if start is not None else None  # its times run from now
        async with build_worker(client, pool, own_queue(settings, queue)):
            handle = await started_assigned(client, case_id, queue, first)
            await before(handle)
        await during(handle)  # the worker is gone
        return handle, queue

    return await worker_down_across(setup, summary, inside)


async def case_settled(
    handle: WorkflowHandle[Any, Any], done: Callable[[CaseState], bool], within: float = 30
) -> CaseState:
    """The case once ``done`` holds or its workflow ended — or, after ``within`` seconds, as
    it stands then (the test's assertions say what is wrong with it)."""
    last: list[CaseState] = []

    async def probe() -> CaseState | None:
        ended = (await handle.describe()).status is not WorkflowExecutionStatus.RUNNING
        last[:] = [await handle.query(ComplaintWorkflow.state)]
        return last[0] if ended or done(last[0]) else None

    try:
        state: CaseState = await eventually(probe, within=within)
        return state
    except AssertionError:
        return last[0]


async def ended_and_replayed(handle: WorkflowHandle[Any, Any]) -> None:
    """Terminate the case if it still runs (it may complete between the look and the end);
    then replay its history with today's code, in the sandbox."""
    if (await handle.describe()).status is WorkflowExecutionStatus.RUNNING:
        with contextlib.suppress(RPCError):
            await handle.terminate("test finished")
    await replay_checked(await handle.fetch_history())


def timeline_of(s: CaseState) -> str:
    """The case's events as ``kind@seconds`` for an assertion's message."""
    return "  ".join(f"{e.kind.value}@{e.at.isoformat()[17:23]}" for e in s.events)


# --- what the attack tests read of a case's events --------------------------------------------


def attack_case_id(tag: str, name: str) -> str:
    """A new case id for an attack file's scenario ``name``; ``tag`` names the file (V25A)."""
    return f"JS-{tag}-{name.upper()}-{uuid.uuid4().hex[:6]}"


def department_clerk(department_id: str | None) -> Actor:
    """A clerk of the department ``department_id`` (the case's unit, as the test reads it)."""
    return Actor(role=Role.DEPARTMENT, name="department clerk", department_id=department_id)


def refusals(s: CaseState) -> dict[str, str]:
    """Each refused action (a ``rejected`` event) with its code; the last one per action."""
    return {e.data["action"]: e.data["code"] for e in s.events if e.kind is EventKind.REJECTED}


def event_count(s: CaseState, kind: EventKind) -> int:
    """How many of the case's events are of ``kind``."""
    return sum(1 for e in s.events if e.kind is kind)


def event_kinds(s: CaseState) -> list[str]:
    """The kinds of the case's events, in order."""
    return [e.kind.value for e in s.events]


def ladders_started(s: CaseState) -> list[tuple[int, str]]:
    """Each escalation ladder the case started, as (its number n, its trigger), in order."""
    return [(e.data["n"], e.data["trigger"]) for e in s.events
            if e.kind is EventKind.ESCALATION_STARTED]  # fmt: skip


def ladder_stopped(s: CaseState, n: int) -> bool:
    """Whether ladder ``n`` has an ``escalation_stopped`` event."""
    return any(e.kind is EventKind.ESCALATION_STOPPED and e.data.get("n") == n for e in s.events)


# --- databases of a test's own on the session's PostgreSQL ------------------------------------


def sibling_database(database_url: str, name: str) -> str:
    """The URL of database ``name`` on the server of ``database_url`` (its options kept)."""
    main, sep, query = database_url.partition("?")
    return f"{main.rpartition('/')[0]}/{name}{sep}{query}"


async def drop_database(database_url: str, name: str) -> None:
    """Drop database ``name`` of ``database_url``'s server, closing what is connected to it."""
    admin = await asyncpg.connect(sibling_database(database_url, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@asynccontextmanager
async def database_migrated_up_to(database_url: str, name: str, last: str) -> AsyncIterator[str]:
    """A database ``name`` of its own on the session's server with the migrations up to
    ``last`` (a version's first four characters) applied, each recorded in schema_migrations,
    as an older version's bootstrap left it (its URL); dropped at the end."""
    dsn = sibling_database(database_url, name)
    await db.ensure_database(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE schema_migrations (version text PRIMARY KEY,"
                           " applied_at timestamptz NOT NULL DEFAULT now())")  # fmt: skip
        for version, sql in db._migration_files():
            if version[:4] <= last:
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute("INSERT INTO schema_migrations VALUES ($1)", version)
    finally:
        await conn.close()
    try:
        yield dsn
    finally:
        await drop_database(database_url, name)


async def ladder_token(client: Client, case_id: str, n: int = 1) -> str | None:
    """The word ladder ``n`` of the case was started with (``EscalationRequest.token``,
    lean-case-v30), as any Temporal client reads it in the ladder's history: the ladder's
    orders carry it, and its steps since lean-case-v31. None: a ladder without one."""
    return await token_in(client.get_workflow_handle(f"{case_id}-escalation-{n}"))


async def token_in(ladder: WorkflowHandle[Any, Any]) -> str | None:
    """The word a ladder was started with, read in its history (see :func:`ladder_token`)."""
    async for event in ladder.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            attrs = event.workflow_execution_started_event_attributes
            token: str | None = json.loads(attrs.input.payloads[0].data).get("token")
            return token
    raise AssertionError(f"{ladder.id} has no start event")
