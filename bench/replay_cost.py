"""CPU and wall time to replay every recorded history (tests/histories/*.json), in the SDK's
sandbox and without it (as the worker runs), and without it with the projection witness and
its comparison (as ``jiesu replay`` and the doctor do: jiesu.audit.witness).

    .venv/bin/python -m bench.replay_cost
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

from jiesu.audit.witness import ProjectionWitness
from workflows import ALL_WORKFLOWS

HISTORIES = Path(__file__).resolve().parent.parent / "tests" / "histories"


async def replay_all(
    histories: list[WorkflowHistory], witness: bool = False, **options: Any
) -> tuple[float, float]:
    """(wall seconds, CPU seconds) to replay ``histories`` through one replayer; ``witness``:
    with a projection witness, each history's projections compared as it is replayed."""
    spy = ProjectionWitness() if witness else None
    if spy is not None:
        options["interceptors"] = [spy]
    replayer = Replayer(workflows=ALL_WORKFLOWS, data_converter=pydantic_data_converter, **options)

    async def stream() -> AsyncIterator[WorkflowHistory]:
        for history in histories:
            yield history

    wall, cpu = time.perf_counter(), time.process_time()
    async with replayer.workflow_replay_iterator(stream()) as results:
        async for result in results:
            if result.replay_failure is not None:
                raise result.replay_failure
            if spy is not None and (disagreement := spy.check(result.history)) is not None:
                raise AssertionError(disagreement.message)
    return time.perf_counter() - wall, time.process_time() - cpu


async def main() -> None:
    histories = [WorkflowHistory.from_json(p.stem, p.read_text(encoding="utf-8"))
                 for p in sorted(HISTORIES.glob("*.json"))]  # fmt: skip
    plain = {"workflow_runner": UnsandboxedWorkflowRunner()}
    runs = [("sandboxed", {}), ("unsandboxed", plain), ("witnessed", {**plain, "witness": True})]
    for name, options in runs * 3:  # thrice: the first round also warms imports and caches
        wall, cpu = await replay_all(histories, **options)
        print(f"{name:12} {len(histories)} histories: {wall:.2f} s wall, {cpu:.2f} s CPU, "
              f"{1000 * cpu / len(histories):.1f} ms CPU each")  # fmt: skip


if __name__ == "__main__":
    argparse.ArgumentParser(prog="python -m bench.replay_cost", description=__doc__).parse_args()
    asyncio.run(main())
