"""The machine's baselines for the benchmarks: the disk's flush probe times real fdatasyncs and
its watch writes the stall and device counters (bench/disk.py); the CPU probe times one loop
again and again (bench/cpu_speed.py)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

from bench import cpu_speed, disk


def test_the_disk_probe_times_real_flushes(tmp_path: Path) -> None:
    p = disk.probe(tmp_path, 0.3, interval=0.0)
    assert p["n"] > 0 and 0 <= p["p50"] <= p["max"]  # in memory (tmpfs) a flush rounds to 0.0
    assert "fdatasync of 4 kB every 0 ms for 0.3 s: p50" in disk.describe(p)  # as it ran
    assert list(tmp_path.iterdir()) == []  # its file is gone
    stall = disk.io_full_us()
    assert stall is None or stall >= 0
    assert disk.stall_ms(None, 5) is None and disk.stall_ms(1000, 3500) == 2.5


def test_the_disk_probe_flushes_where_there_is_no_fdatasync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.delattr(os, "fdatasync", raising=False)  # as on macOS
    assert disk.probe(tmp_path, 0.1, interval=0.0)["n"] > 0


@pytest.mark.skipif(not disk.PSI_IO.exists(), reason="no pressure stall information here")
def test_the_disk_watch_writes_a_line_per_sample(tmp_path: Path) -> None:
    device = disk.block_device(Path(tempfile.gettempdir()))
    if device is None:
        pytest.skip("the temporary folder is not on a block device")
    out = tmp_path / "watch.jsonl"
    disk.watch(out, 0.1, device, every=0.01)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) >= 3 and {"io_full_us", "writes", "in_flight", "t"} <= set(lines[0])


def test_the_cpu_probe_times_the_same_loop() -> None:
    p = cpu_speed.probe(0.2, steps=20_000, pause=0.01)
    assert p["n"] >= 2 and 0 < p["min"] <= p["p50"] <= p["max"]
    assert p["spread"] >= 1.0
    assert "20,000-step Python loop every 0.01 s for 0.2 s: min" in cpu_speed.describe(p)
    assert cpu_speed.probe(0, steps=1_000, pause=0)["n"] == 1  # --seconds 0: one timing
