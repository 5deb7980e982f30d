"""Events and bytes of recorded histories, by event type: what the figures of
docs/performance.md ("History") are read from.

    python -m bench.history_size tests/histories/v4-urgent_happy_path.json \\
        tests/histories/v8-urgent_happy_path.json tests/histories/urgent_happy_path.json

Bytes are the events as the server stores them (protobuf), as bench/lifecycle.py counts them.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory


def breakdown(path: Path) -> tuple[int, int, dict[str, tuple[int, int]]]:
    """(events, bytes, {event type: (events, bytes)}) of one exported history."""
    history = WorkflowHistory.from_json(path.stem, path.read_text(encoding="utf-8"))
    count: collections.Counter[str] = collections.Counter()
    size: collections.Counter[str] = collections.Counter()
    for event in history.events:
        name = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
        count[name] += 1
        size[name] += event.ByteSize()
    by_type = {name: (count[name], size[name]) for name, _ in size.most_common()}
    return len(history.events), sum(size.values()), by_type


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path)
    args = parser.parse_args()
    first: int | None = None
    for path in args.paths:
        events, total, by_type = breakdown(path)
        first = first or total
        print(f"{path.name}: {events} events, {total:,} bytes ({total / first:.2f}× the first)")
        for name, (n, b) in by_type.items():
            print(f"  {name:40s} {n:3d} {b:7,d}")


if __name__ == "__main__":
    main()
