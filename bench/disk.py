"""The disk under the stack: how long one durable write waits, and how long the whole machine
stood still waiting for the disk.

    python -m bench.disk [--seconds 60] [--folder DIR]       # the disk alone
    python -m bench.disk --watch FILE [--seconds 600]         # beside a benchmark, every 10 ms

Every acknowledged action is durable: Temporal's SQLite and PostgreSQL both wait for an fsync
before they answer (jiesu/ops/stack.py). So no action can be answered faster than the disk
completes a flush, and a flush that takes 400 ms stalls every action in flight at that moment.
Two measurements, each a baseline for the benchmarks' latencies:

- ``probe``: write 4 kB and ``fdatasync`` every 20 ms in ``folder`` (on the filesystem the
  stack's data is on) and report the distribution of the waits — what the disk alone gives,
  with nothing of ours around it.
- ``watch``: every 10 ms, one JSON line of what changed — the machine's full and partial
  I/O stall (µs), writes and flushes completed and their ms, and the requests in flight at the
  device — to line up with ``bench.lifecycle --log-actions``: a stall shows as requests in
  flight with nothing completing while the whole machine waits.
- ``io_full_us``: Linux's pressure stall information (PSI, ``/proc/pressure/io``, the
  ``full`` line): microseconds during which the tasks that could run all waited on I/O
  (counted per CPU, weighted by how busy each CPU was: the whole machine waiting counts in
  full, one of two busy CPUs whose tasks all wait counts half). Read before
  and after an action, it says how much of that action's time the machine stood still for
  the disk (bench/case_driver.py), so a slow answer can be told apart from a slow disk.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.load import percentile

PSI_IO = Path("/proc/pressure/io")
BLOCK = 4096
SLOW_MS = 50.0  # a flush this slow is a stall the actions' p99 target (60 ms) cannot absorb


def _psi_totals() -> dict[str, int]:
    """``{"some": µs, "full": µs}``: the I/O stall totals since boot (PSI's two lines)."""
    totals = {}
    for line in PSI_IO.read_text().splitlines():
        kind, *fields = line.split()
        totals[kind] = int(fields[-1].split("=")[1])
    return totals


def io_full_us() -> int | None:
    """Total µs of full I/O stall since boot, or None where PSI is not available."""
    try:
        return _psi_totals().get("full")
    except (OSError, ValueError, IndexError):
        return None


def stall_ms(before: int | None, after: int | None) -> float | None:
    if before is None or after is None:
        return None
    return round((after - before) / 1000, 2)


def probe(folder: Path, seconds: float, interval: float = 0.02) -> dict[str, Any]:
    """Write 4 kB and fdatasync every ``interval`` s for ``seconds`` s in a file in ``folder``;
    the waits in ms (p50/p99/p99.9/max) and how many took longer than ``SLOW_MS``."""
    waits: list[float] = []
    # macOS has no fdatasync (os.fdatasync is missing there): fsync is the nearest durable write
    datasync = getattr(os, "fdatasync", os.fsync)
    fd, name = tempfile.mkstemp(prefix="disk-probe-", dir=folder)
    stall = io_full_us()
    try:
        block = os.urandom(BLOCK)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            began = time.perf_counter()
            os.pwrite(fd, block, (len(waits) % 256) * BLOCK)
            datasync(fd)
            waits.append((time.perf_counter() - began) * 1000)
            time.sleep(interval)
    finally:
        os.close(fd)
        os.unlink(name)
    return {**summary(waits, seconds, stall_ms(stall, io_full_us())), "interval_s": interval}


def summary(waits: Sequence[float], seconds: float, stalled: float | None) -> dict[str, Any]:
    def r(value: float | None) -> float | None:
        return None if value is None else round(value, 2)

    return {
        "n": len(waits),
        "seconds": seconds,
        "p50": r(percentile(waits, 50)),
        "p99": r(percentile(waits, 99)),
        "p99_9": r(percentile(waits, 99.9)),
        "max": r(max(waits) if waits else None),
        "slow": sum(w > SLOW_MS for w in waits),
        "slow_ms": SLOW_MS,
        "io_full_ms": stalled,  # the whole machine waiting on I/O during the probe
    }


def describe(p: dict[str, Any]) -> str:
    slow = f"{p['slow']} of {p['n']} over {p['slow_ms']:.0f} ms"
    stalled = "" if p.get("io_full_ms") is None else (
        f"; the machine stood still for I/O {p['io_full_ms'] / 1000:.1f} s of {p['seconds']:g} s"
    )  # fmt: skip
    waits = f"p50 {p['p50']} / p99 {p['p99']} / p99.9 {p['p99_9']} / max {p['max']} ms"
    every = p.get("interval_s", 0.02) * 1000  # results written before it was recorded: 20 ms
    return (f"fdatasync of 4 kB every {every:g} ms for {p['seconds']:g} s: {waits} "
            f"({slow}){stalled}")  # fmt: skip


def _counters(device: str) -> dict[str, int]:
    c = {f"io_{kind}_us": us for kind, us in _psi_totals().items()}
    for line in Path("/proc/diskstats").read_text().splitlines():
        f = line.split()
        if f[2] == device:  # Documentation/admin-guide/iostats.rst
            c.update(writes=int(f[7]), write_ms=int(f[10]), in_flight=int(f[11]))
            if len(f) > 19:
                c.update(flushes=int(f[18]), flush_ms=int(f[19]))
    return c


def block_device(folder: Path) -> str | None:
    """The block device ``folder``'s filesystem is on, or None (tmpfs, a partition's parent
    not found)."""
    dev = os.stat(folder).st_dev
    node = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    if not node.exists():
        return None
    node = node.resolve()
    return node.name if (node / "stat").exists() and not (node / "partition").exists() \
        else node.parent.name  # a partition's counters are its disk's


def watch(out: Path, seconds: float, device: str, every: float = 0.01) -> None:
    previous = _counters(device)
    end = time.monotonic() + seconds
    with out.open("w") as f:
        while time.monotonic() < end:
            time.sleep(every)
            now = _counters(device)
            line = {k: now[k] - previous.get(k, 0) for k in now if k != "in_flight"}
            line.update(t=round(time.time(), 3), in_flight=now.get("in_flight", 0))
            f.write(json.dumps(line) + "\n")
            previous = now


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.disk", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--seconds", type=float, default=60.0, help="how long to probe (60)")
    p.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()),
                   help="a folder on the filesystem to probe (the system's temporary folder)")
    p.add_argument("--watch", type=Path, default=None,
                   help="instead: write the stall and device counters every 10 ms to this file")
    args = p.parse_args(argv)
    if args.watch:
        device = block_device(args.folder)
        if device is None or not PSI_IO.exists():
            p.error(f"{args.folder} is not on a block device, or this kernel has no PSI")
        print(f"Watching {device} for {args.seconds:.0f} s into {args.watch}...", flush=True)
        watch(args.watch, args.seconds, device)
        return 0
    print(f"Probing {args.folder} for {args.seconds:.0f} s...", flush=True)
    print(describe(probe(args.folder, args.seconds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
