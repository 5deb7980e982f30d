"""How fast this machine's CPU runs the same work, moment to moment.

    python -m bench.cpu_speed [--seconds 30]

A fixed pure-Python loop, timed every 0.25 s: on a dedicated machine its time hardly changes;
on a virtual machine whose host is shared it can change by 2× from one second to the next with
nothing visible inside (docs/performance.md, "The stalls behind the p99"). The benchmarks'
CPU-bound figures — throughput, CPU per case, latency tails — move with it, so the lifecycle
benchmark measures it in the same run, as the baseline of its latencies, next to the disk's.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

from bench.load import percentile

STEPS = 400_000  # ~35–70 ms of one core here
PAUSE = 0.25


def loop_ms(steps: int = STEPS) -> float:
    began = time.perf_counter()
    total = 0
    for i in range(steps):
        total += i * i
    return (time.perf_counter() - began) * 1000


def probe(seconds: float, steps: int = STEPS, pause: float = PAUSE) -> dict[str, Any]:
    """Time the loop every ``pause`` s for ``seconds`` s: min/p50/p90/max ms and max ÷ min."""
    times: list[float] = []
    end = time.monotonic() + seconds
    while not times or time.monotonic() < end:  # at least one timing, even for 0 s
        times.append(loop_ms(steps))
        time.sleep(pause)
    fastest = min(times)
    return {
        "n": len(times),
        "seconds": seconds,
        "steps": steps,
        "pause": pause,
        "min": round(fastest, 1),
        "p50": round(percentile(times, 50) or 0.0, 1),
        "p90": round(percentile(times, 90) or 0.0, 1),
        "max": round(max(times), 1),
        "spread": round(max(times) / fastest, 2) if fastest > 0 else None,
    }


def describe(p: dict[str, Any]) -> str:
    return (f"the same {p['steps']:,}-step Python loop every {p.get('pause', PAUSE):g} s "
            f"for {p['seconds']:g} s: "
            f"min {p['min']} / p50 {p['p50']} / p90 {p['p90']} / max {p['max']} ms "
            f"(slowest ÷ fastest {p['spread']}×)")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cpu_speed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--seconds", type=float, default=30.0, help="how long to probe (30)")
    args = p.parse_args(argv)
    print(describe(probe(args.seconds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
