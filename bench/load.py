"""Load shapes for the benchmarks: closed loop (N concurrent drivers, as fast as they go) and
open loop (arrivals at a rate: evenly spaced, or at random as calls come, a Poisson process).
Both are bounded in time; both count errors instead of stopping at the first one."""

from __future__ import annotations

import asyncio
import bisect
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

T = TypeVar("T")
MAX_ERROR_SAMPLES = 5
Arrivals = Literal["even", "poisson"]
ARRIVALS: tuple[Arrivals, ...] = ("even", "poisson")


def percentile(samples: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100); None without samples."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _binomial_cdf(n: int, p: float) -> list[float]:
    """[P(B ≤ k) for k in 0..n], B ~ Binomial(n, p): each term in logs (no underflow for n of
    a hundred thousand answers), one pass."""
    log_p, log_q, log_n = math.log(p), math.log1p(-p), math.lgamma(n + 1)
    cdf, total = [], 0.0
    for k in range(n + 1):
        total += math.exp(log_n - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                          + k * log_p + (n - k) * log_q)  # fmt: skip
        cdf.append(min(1.0, total))
    return cdf


def percentile_ranks(n: int, p: float, confidence: float = 0.95) -> tuple[int, int | None]:
    """The order statistics (1-based ranks) that bound the p-th percentile of the population
    with at least ``confidence``, assuming nothing about its distribution: the count of
    samples below the true percentile is Binomial(n, p/100). The upper rank is None when n
    is too small to bound it from above (for the p99: fewer than ~370 samples at 95 %)."""
    tail = (1 - confidence) / 2
    cdf = _binomial_cdf(n, p / 100)
    # lower: the largest rank with P(B ≤ rank - 1) ≤ tail (at least the first sample)
    lower = max(1, bisect.bisect_right(cdf, tail))
    # upper: the smallest rank with P(B ≥ rank) = 1 - P(B ≤ rank - 1) ≤ tail
    upper = bisect.bisect_left(cdf, 1 - tail) + 1
    return lower, (upper if upper <= n else None)


def percentile_interval(
    samples: Sequence[float], p: float, confidence: float = 0.95
) -> tuple[float, float | None] | None:
    """The ``confidence`` interval of the p-th percentile from the samples' order statistics
    (:func:`percentile_ranks`); its upper end None when the samples cannot bound it."""
    if not samples:
        return None
    ordered = sorted(samples)
    lower, upper = percentile_ranks(len(ordered), p, confidence)
    return ordered[lower - 1], (ordered[upper - 1] if upper is not None else None)


def summary_ms(samples: Sequence[float]) -> dict[str, Any]:
    """p50/p95/p99/max of durations in seconds, reported in milliseconds, and the 95 %
    interval of the p99 (``p99_interval``: [low, high], high None when unbounded)."""

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 1)

    interval = percentile_interval(samples, 99)
    return {
        "n": len(samples),
        "p50": ms(percentile(samples, 50)),
        "p95": ms(percentile(samples, 95)),
        "p99": ms(percentile(samples, 99)),
        "p99_interval": None if interval is None else [ms(interval[0]), ms(interval[1])],
        "max": ms(max(samples) if samples else None),
    }


@dataclass
class Outcome(Generic[T]):
    """What a load run produced: results finished inside the measured window, errors."""

    results: list[T] = field(default_factory=list)
    finished_at: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    started: int = 0

    def ok(self, result: T) -> None:
        self.results.append(result)
        self.finished_at.append(time.monotonic())

    def fail(self, exc: BaseException) -> None:
        self.errors += 1
        if len(self.error_samples) < MAX_ERROR_SAMPLES:
            self.error_samples.append(f"{type(exc).__name__}: {exc}"[:300])

    def rate(self, start: float, end: float) -> float:
        """Completions per second between ``start`` and ``end`` (monotonic seconds)."""
        done = sum(1 for t in self.finished_at if start <= t < end)
        return done / (end - start) if end > start else 0.0


async def _guarded(job: Callable[[], Awaitable[T]], outcome: Outcome[T], limit: float) -> None:
    outcome.started += 1
    try:
        outcome.ok(await asyncio.wait_for(job(), limit))
    except Exception as exc:  # a failed case is counted and shown, the run goes on
        outcome.fail(exc)


async def closed_loop(
    job: Callable[[], Awaitable[T]],
    concurrency: int,
    seconds: float,
    job_timeout: float = 60.0,
) -> Outcome[T]:
    """``concurrency`` drivers, each running ``job`` back to back until ``seconds`` have
    passed; a job under way then finishes (bounded by ``job_timeout``)."""
    outcome: Outcome[T] = Outcome()
    stop = time.monotonic() + seconds

    async def driver() -> None:
        while time.monotonic() < stop:
            await _guarded(job, outcome, job_timeout)

    await asyncio.gather(*(driver() for _ in range(concurrency)))
    return outcome


def arrival_times(
    rate: float, count: int, arrivals: Arrivals = "even", seed: int = 1
) -> list[float]:
    """Seconds after the start at which each of ``count`` jobs arrives, ``rate`` a second on
    average: evenly spaced, or a Poisson process (independent exponential gaps, as calls to a
    hotline come), drawn from ``seed`` so that a run can be repeated.

    Why it matters: evenly spaced cases that each wait the same think time before every action
    fall into step — every case's next action lands within a few milliseconds of its
    neighbours' — so their actions meet in bursts while back-to-back cases never meet any
    (docs/performance.md, "A person's pace: the harness's own bursts")."""
    if arrivals == "even":
        return [i / rate for i in range(count)]
    rng = random.Random(seed)
    times, at = [], 0.0
    for _ in range(count):
        times.append(at)
        at += rng.expovariate(rate)
    return times


async def open_loop(
    job: Callable[[], Awaitable[T]],
    rate: float,
    count: int,
    job_timeout: float = 60.0,
    arrivals: Arrivals = "even",
    seed: int = 1,
) -> Outcome[T]:
    """``count`` jobs started at ``rate`` per second (see arrival_times), whatever the previous
    ones are doing; returns when all have finished (each bounded by ``job_timeout``)."""
    outcome: Outcome[T] = Outcome()
    start = time.monotonic()
    tasks: list[asyncio.Task[None]] = []
    for at in arrival_times(rate, count, arrivals, seed):
        delay = start + at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(_guarded(job, outcome, job_timeout)))
    await asyncio.gather(*tasks)
    return outcome
