"""Department actions' answers against how many other actions were in flight during each:
read from the lines of ``bench.lifecycle --log-actions FILE`` (docs/performance.md, "A
person's pace: the harness's own bursts").

    python -m bench.overlaps actions.jsonl [more.jsonl ...]

An action's interval is [began, began + answered]; another action is "in flight" during it when
their intervals intersect. Intakes are not in the log, so they are not counted.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bench.load import summary_ms

DEPARTMENT_ACTIONS = ("accept", "contact", "reply")
MOST = 3  # the last row counts "3 or more"


def in_flight(actions: Sequence[dict[str, Any]]) -> list[int]:
    """For each action, how many of the others overlapped it in time."""
    spans = [(a["at"], a["at"] + a["ms"] / 1000) for a in actions]
    ordered = sorted(spans)
    counts = []
    for began, ended in spans:
        n = 0
        for other_began, other_ended in ordered:
            if other_began > ended:
                break
            n += other_ended >= began
        counts.append(n - 1)  # itself
    return counts


def table(actions: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per pace (the log's ``think``) and both together: the mean of others in flight and the
    department actions' answers by others in flight (0, 1, 2, MOST or more)."""
    counts = in_flight(actions)
    rows = [(min(n, MOST), a) for n, a in zip(counts, actions, strict=True)
            if a["action"] in DEPARTMENT_ACTIONS]  # fmt: skip
    out: dict[str, Any] = {}
    for pace in [*sorted({a["think"] for _, a in rows}), "all"]:
        chosen = [(n, a) for n, a in rows if pace == "all" or a["think"] == pace]
        if not chosen:
            continue
        out[str(pace)] = {
            "n": len(chosen),
            "mean_in_flight": round(sum(n for n, _ in chosen) / len(chosen), 2),
            "by_in_flight": {
                k: {"share": round(len(ms) / len(chosen), 2), **summary_ms(ms)}
                for k in range(MOST + 1)
                if (ms := [a["ms"] / 1000 for n, a in chosen if n == k])
            },
        }
    return out


def read(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """The actions of several logs, each log on its own time line (runs never overlap)."""
    return [json.loads(line) for path in paths for line in path.read_text().splitlines() if line]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", nargs="+", type=Path)
    result = table(read(parser.parse_args().logs))
    for pace, r in result.items():
        label = "both paces" if pace == "all" else f"think {pace} s"
        print(f"{label}: {r['n']} department actions, others in flight {r['mean_in_flight']} "
              "on average")  # fmt: skip
        for k, s in r["by_in_flight"].items():
            print(f"  {k}{'+' if k == MOST else ' '} in flight: {s['share']:4.0%}  p50 {s['p50']}"
                  f"  p95 {s['p95']}  p99 {s['p99']}  max {s['max']} ms (n {s['n']})")


if __name__ == "__main__":
    main()
