"""CPU seconds and peak memory of the stack's processes, per benchmark phase (psutil).

A process is counted with its children (PostgreSQL's backends are children of the postmaster),
except the harness itself, whose children are the stack's processes.
The sampler runs in the harness's event loop every ``interval`` seconds; CPU time is exact
(cumulative counters read at the phase's start and end), peak RSS is the highest sample.

Each phase also records the machine's load: the 1-minute load average at its start and end,
and the CPU that processes *not ours* used meanwhile (the whole machine's busy CPU time,
``psutil.cpu_times()``, minus the CPU of the watched processes). On a shared machine that is
the figure that says how much of the 2 cores the benchmark really had.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psutil

INTERVAL = 0.5

# Guest time is already counted in user time on Linux; iowait and idle are not busy.
_BUSY_FIELDS = ("user", "nice", "system", "irq", "softirq", "steal")


def _family(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        if pid == os.getpid():  # the harness's children are the stack: counted on their own
            return [root]
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _cpu_and_rss(pid: int) -> tuple[float, int]:
    """CPU seconds (user + system) and RSS of the process and its children."""
    cpu, rss = 0.0, 0
    for proc in _family(pid):
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            cpu += times.user + times.system
            rss += proc.memory_info().rss
    return cpu, rss


def machine_busy_cpu() -> float:
    """CPU seconds the whole machine has spent busy since boot (every process, every core)."""
    t = psutil.cpu_times()
    return float(sum(getattr(t, f, 0.0) for f in _BUSY_FIELDS))


@dataclass
class _Phase:
    wall_start: float
    cpu_start: dict[str, float]
    machine_start: float
    load_start: float
    cpu_end: dict[str, float] = field(default_factory=dict)
    peak_rss: dict[str, int] = field(default_factory=dict)
    wall_end: float = 0.0
    load_end: float = 0.0
    machine_end: float = 0.0


class ProcessMonitor:
    """Watches named pids; ``with monitor.phase("name"):`` measures one phase."""

    def __init__(self, pids: dict[str, int], interval: float = INTERVAL) -> None:
        self.pids = pids
        self.interval = interval
        self.phases: dict[str, _Phase] = {}
        self._open: list[_Phase] = []
        self._task: asyncio.Task[None] | None = None

    def _sample(self) -> dict[str, tuple[float, int]]:
        return {name: _cpu_and_rss(pid) for name, pid in self.pids.items()}

    def _record_peaks(self, sample: dict[str, tuple[float, int]]) -> None:
        for phase in self._open:
            for name, (_, rss) in sample.items():
                phase.peak_rss[name] = max(phase.peak_rss.get(name, 0), rss)

    async def _run(self) -> None:
        while True:
            self._record_peaks(self._sample())
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        sample = self._sample()
        current = _Phase(loop.time(), {n: cpu for n, (cpu, _) in sample.items()},
                         machine_busy_cpu(), os.getloadavg()[0])  # fmt: skip
        self.phases[name] = current
        self._open.append(current)
        self._record_peaks(sample)
        try:
            yield
        finally:
            sample = self._sample()
            self._record_peaks(sample)
            current.cpu_end = {n: cpu for n, (cpu, _) in sample.items()}
            current.wall_end = loop.time()
            current.load_end = os.getloadavg()[0]
            current.machine_end = machine_busy_cpu()
            self._open.remove(current)

    def load(self, name: str) -> dict[str, float]:
        """The machine's load during a phase: load average at its start and end, and the cores
        kept busy by processes that are not ours (whole machine minus the watched processes;
        a watched process's child that exited during the phase is counted as not ours)."""
        p = self.phases[name]
        wall = max(p.wall_end - p.wall_start, 1e-9)
        ours = sum(p.cpu_end.get(n, 0.0) - p.cpu_start.get(n, 0.0) for n in p.cpu_start)
        other = max(0.0, (p.machine_end - p.machine_start) - ours)
        return {
            "loadavg_start": round(p.load_start, 2),
            "loadavg_end": round(p.load_end, 2),
            "ours_cores": round(ours / wall, 2),
            "other_cores": round(other / wall, 2),
        }

    def report(self, name: str) -> dict[str, Any]:
        """Per process: CPU seconds in the phase, mean cores busy, peak RSS in MiB."""
        p = self.phases[name]
        wall = max(p.wall_end - p.wall_start, 1e-9)
        # Other work on the machine: figures taken while something else runs are lower, and
        # say so here.
        out: dict[str, Any] = {"wall_s": round(wall, 1), "loadavg_1m": round(p.load_end, 2),
                               "load": self.load(name)}  # fmt: skip
        for proc in p.cpu_start:
            cpu = p.cpu_end.get(proc, 0.0) - p.cpu_start.get(proc, 0.0)
            out[proc] = {
                "cpu_s": round(cpu, 1),
                "cores": round(cpu / wall, 2),
                "peak_rss_mib": round(p.peak_rss.get(proc, 0) / 2**20, 1),
            }
        return out
