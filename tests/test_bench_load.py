"""The benchmarks' open loop (bench/load.py) and a person's pace (bench/case_driver.py): cases
arrive at random and pause at random, so that the fixed-rate phase does not measure bursts of
its own making (docs/performance.md, "A person's pace: the harness's own bursts")."""

from __future__ import annotations

import itertools
import random
import statistics
import time
from typing import Any, cast

from bench import load, overlaps, report
from bench.case_driver import CaseDriver


def test_even_arrivals_are_evenly_spaced() -> None:
    assert load.arrival_times(4.0, 5, "even") == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_poisson_arrivals_have_the_rate_and_the_spread_of_random_calls() -> None:
    times = load.arrival_times(4.0, 5000, "poisson", seed=7)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    mean = statistics.fmean(gaps)
    assert abs(mean - 0.25) < 0.025  # the rate asked for, on average
    # Exponential gaps: as spread as they are long (coefficient of variation 1); even ones: 0.
    assert 0.85 < statistics.stdev(gaps) / mean < 1.15
    assert times == sorted(times) and times[0] == 0.0


def test_poisson_arrivals_repeat_with_their_seed() -> None:
    assert load.arrival_times(3.6, 50, "poisson", seed=1) == load.arrival_times(
        3.6, 50, "poisson", seed=1
    )
    assert load.arrival_times(3.6, 50, "poisson", seed=1) != load.arrival_times(
        3.6, 50, "poisson", seed=2
    )


async def test_open_loop_starts_no_job_before_its_arrival() -> None:
    started: list[float] = []

    async def job() -> None:
        started.append(time.monotonic())

    schedule = load.arrival_times(200.0, 20, "poisson", seed=3)
    began = time.monotonic()
    outcome = await load.open_loop(job, 200.0, 20, arrivals="poisson", seed=3)
    assert outcome.started == 20 and len(outcome.results) == 20
    assert all(at - began >= due - 0.001 for at, due in zip(started, schedule, strict=True))


def test_a_person_pauses_at_random_around_the_think_time() -> None:
    driver = CaseDriver(cast(Any, None), think=0.5, seed=1)
    pauses = [driver.pause() for _ in range(1000)]
    assert min(pauses) >= 0.25 and max(pauses) <= 0.75
    assert statistics.stdev(pauses) > 0.1  # not one pause for everybody: cases fall out of step
    assert abs(statistics.fmean(pauses) - 0.5) < 0.02
    assert CaseDriver(cast(Any, None), think=0.0).pause() == 0.0


def test_the_report_says_how_cases_arrived_and_paused() -> None:
    fixed: dict[str, Any] = {"think_s": 0.5, "think_spread": 0.5, "arrivals": "poisson",
                             "seed": 1, "department_actions_ms": {}}  # fmt: skip
    text = "\n".join(report._latencies(fixed))
    assert "0.25–0.75 s, at random before each action" in text
    assert report._arrivals(fixed) == "at random, a Poisson process (seed 1)"
    older = {"think_s": 0.5}  # results of runs before the choice: evenly spaced, one pause
    assert report._arrivals(older) == "evenly spaced"
    assert "(0.50 s before each action" in "\n".join(report._latencies(older))


def test_overlaps_counts_the_actions_in_flight_during_each() -> None:
    def action(at: float, ms: float, name: str = "accept", think: float = 0.0) -> dict[str, Any]:
        return {"at": at, "ms": ms, "action": name, "think": think}

    log = [action(0.0, 100), action(0.05, 100, "rating"), action(0.08, 10, think=0.5),
           action(5.0, 30)]  # fmt: skip
    assert overlaps.in_flight(log) == [2, 2, 2, 0]
    table = overlaps.table(log)
    both = table["all"]  # the rating is counted as in flight, not as a department action
    assert both["n"] == 3 and both["mean_in_flight"] == round(4 / 3, 2)
    assert both["by_in_flight"][0]["n"] == 1 and both["by_in_flight"][2]["n"] == 2
    assert table["0.5"]["n"] == 1 and table["0.0"]["n"] == 2


def test_a_percentiles_interval_has_the_textbook_ranks() -> None:
    """The distribution-free interval of a percentile (order statistics): the median of 100
    samples lies between the 40th and the 61st at 95 % (of 20: the 6th and the 15th), as in
    the textbooks' tables; a p99 needs ~370 samples before anything bounds it from above."""
    assert load.percentile_ranks(100, 50) == (40, 61)
    assert load.percentile_ranks(20, 50) == (6, 15)
    assert load.percentile_ranks(230, 99)[1] is None
    assert load.percentile_ranks(370, 99)[1] == 370
    assert load.percentile_ranks(1000, 99) == (983, 997)


def test_a_p99_interval_covers_the_true_p99_at_least_95_times_in_100() -> None:
    rng = random.Random(7)
    runs, covered = 400, 0
    for _ in range(runs):  # uniform samples: the true p99 is 0.99
        low, high = load.percentile_interval([rng.random() for _ in range(500)], 99) or (1, 0)
        covered += low <= 0.99 and (high is None or 0.99 <= high)
    assert covered / runs >= 0.95, covered / runs


def test_the_report_gives_each_p99_its_interval() -> None:
    samples = [i / 1000 for i in range(1, 231)]  # 230 answers of 1..230 ms
    fixed = {"department_actions_ms": load.summary_ms(samples)}
    assert fixed["department_actions_ms"]["p99_interval"] == [224.0, None]
    text = report._targets({"targets": report.targets({"fixed": fixed})})
    assert "228.0 (95 % interval 224.0 – unbounded: 230 answers cannot bound" in "".join(text)
