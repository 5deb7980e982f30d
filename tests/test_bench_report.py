"""The lifecycle benchmark's arithmetic (bench/report.py): the ratio is the median of the
per-round ratios, with its spread, and a round's ratio is taken inside that round."""

from __future__ import annotations

from typing import Any

from bench import disk, lifecycle, report
from bench.case_driver import CaseTimings


def _round(n: int, noop: float, shape: float, life: float, other: float = 0.0) -> dict[str, Any]:
    load = {"loadavg_start": 1.0, "loadavg_end": 1.0, "other_cores": other}
    return {"round": n, **{k: {"per_s": v, "errors": 0, "completed": 10, "load": load, "cpu": {}}
                           for k, v in (("noop", noop), ("shape", shape), ("lifecycle", life))}}


def test_ratio_is_the_median_of_per_round_ratios() -> None:
    # Round 2 ran while the machine was busy: both of its sides are low, its ratio is not.
    rounds = [_round(1, 30, 5.0, 4.0), _round(2, 15, 2.0, 1.8, other=1.5), _round(3, 30, 5.0, 3.0)]
    s = report.summarise(rounds)
    assert [r["ratio_vs_shape"] for r in rounds] == [0.8, 0.9, 0.6]
    assert s["vs_shape"] == {"median": 0.8, "min": 0.6, "max": 0.9, "n": 3}
    # The ratio of the medians (3.0 / 5.0) would be another figure: the median of ratios it is.
    assert s["lifecycle_per_s"] == 3.0 and s["shape_per_s"] == 5.0
    assert s["other_cores"]["max"] == 1.5


def test_a_round_without_bare_throughput_has_no_ratio() -> None:
    rounds = [_round(1, 30, 0.0, 4.0), _round(2, 30, 4.0, 2.0)]
    s = report.summarise(rounds)
    assert rounds[0]["ratio_vs_shape"] is None
    assert s["vs_shape"]["median"] == 0.5 and s["vs_shape"]["n"] == 1


def test_targets_and_markdown() -> None:
    rounds = [_round(n, 30, 5.0, 4.6) for n in (1, 2, 3)]
    results: dict[str, Any] = {
        "rounds": rounds,
        "summary": report.summarise(rounds),
        "fixed": {"department_actions_ms": {"p50": 20.0, "p95": 40.0, "p99": 70.0, "n": 90}},
        "history": {"case": {"median": 48, "proto_bytes": 9000, "json_bytes": 20000,
                             "types": {}}},
    }  # fmt: skip
    results["targets"] = report.targets(results)
    assert results["targets"]["shape_ratio"]["met"]
    assert not results["targets"]["department_action_p99_ms"]["met"]
    assert results["targets"]["case_history_events"]["met"]
    text = report.markdown(results)
    assert "**0.92×** (0.92–0.92)" in text
    assert "70.0 — NOT met" in text


def test_markdown_names_the_temporal_servers_settings() -> None:
    rounds = [_round(1, 30, 5.0, 4.6)]
    results: dict[str, Any] = {"rounds": rounds, "summary": report.summarise(rounds)}
    assert "Temporal dev server:" not in report.markdown(results)  # older results: nothing
    results["temporal"] = {"sqlite_pragmas": ["journal_mode=WAL", "synchronous=FULL"],
                           "dynamic_config": {"history.transferProcessorMaxPollRPS": "200"}}
    assert ("Temporal dev server: SQLite journal_mode=WAL, synchronous=FULL; dynamic config "
            "history.transferProcessorMaxPollRPS=200.") in report.markdown(results)


def test_markdown_shows_the_disks_share() -> None:
    # A slow disk, not a slow answer: the report shows the answers less the machine's waits on
    # the disk, and the disk's own flush latency measured in the same run.
    rounds = [_round(1, 30, 5.0, 4.6)]
    results: dict[str, Any] = {
        "rounds": rounds, "summary": report.summarise(rounds),
        "disk": disk.summary([0.4] * 98 + [80.0, 400.0], 2.0, 500.0),
        "fixed": {"department_actions_ms": {"p50": 20.0, "p99": 300.0, "n": 90},
                  "department_actions_less_io_stall_ms": {"p50": 19.0, "p99": 45.0, "n": 90},
                  "io_full_share": 0.05, "io_stalled_actions": 7, "io_stalled_threshold_ms": 20.0},
    }  # fmt: skip
    text = report.markdown(results)
    assert "less the time the machine waited on the disk during it (PSI) | 19.0 | – | 45.0" in text
    assert "p99 80.0 / p99.9 400.0 / max 400.0 ms (2 of 100 over 50 ms)" in text
    assert "stood still for I/O 0.5 s of 2 s" in text
    assert "waited on the disk 5.0 % of the time; 7 department actions" in text


def test_a_phase_without_stalls_reports_a_zero_share() -> None:
    # With PSI and no wait on the disk (--tmp /dev/shm), the share is 0 %, not unknown.
    case = CaseTimings(api={"accept": 0.02, "contact": 0.03, "reply": 0.025},
                       io_stall={"accept": 0.0, "contact": 0.0, "reply": 0.0})  # fmt: skip
    fixed = lifecycle._disk_share([case], [], 0.0, 60.0)
    assert fixed["io_full_share"] == 0.0 and fixed["io_stalled_actions"] == 0
    assert fixed["department_actions_less_io_stall_ms"]["p99"] == 30.0
    rounds = [_round(1, 30, 5.0, 4.6)]
    results: dict[str, Any] = {"rounds": rounds, "summary": report.summarise(rounds),
                               "fixed": fixed}  # fmt: skip
    assert "waited on the disk 0.0 % of the time; 0 department actions" in report.markdown(results)
    assert lifecycle._disk_share([CaseTimings(api={"accept": 0.02})], [], None, 60.0) == {}


def test_markdown_shows_how_steady_the_cpu_was() -> None:
    rounds = [_round(1, 30, 5.0, 4.6)]
    results: dict[str, Any] = {"rounds": rounds, "summary": report.summarise(rounds)}
    assert "The CPU alone" not in report.markdown(results)  # older results: nothing
    results["cpu_speed"] = {"n": 40, "seconds": 10.0, "steps": 400_000, "min": 35.1,
                            "p50": 46.1, "p90": 64.0, "max": 70.2, "spread": 2.0}  # fmt: skip
    assert ("400,000-step Python loop every 0.25 s for 10 s: min 35.1 / p50 46.1 / p90 64.0 / "
            "max 70.2 ms (slowest ÷ fastest 2.0×)") in report.markdown(results)  # fmt: skip


def test_a_rate_set_by_hand_is_named_and_not_checked_against_the_targets() -> None:
    rounds = [_round(n, 30, 5.0, 4.6) for n in (1, 2, 3)]
    fast = {"p50": 20.0, "p95": 30.0, "p99": 40.0, "n": 90}
    results: dict[str, Any] = {
        "rounds": rounds, "summary": report.summarise(rounds),
        "fixed": {"rate": 1.0, "rate_given": True, "department_actions_ms": fast,
                  "paced_department_actions_ms": fast},
    }  # fmt: skip
    results["targets"] = report.targets(results)
    assert results["targets"]["department_action_p99_ms"]["met"] is None
    text = report.markdown(results)
    assert "1.0 cases/s offered (set by --rate; the sustained maximum was 4.60/s)" in text
    assert "40.0 — not checked: the fixed rate was set by --rate" in text
    results["fixed"]["rate_given"] = False  # at half the maximum the same answers meet it
    results["targets"] = report.targets(results)
    assert results["targets"]["department_action_p99_ms"]["met"] is True


def test_every_bench_command_answers_help_before_it_starts_anything() -> None:
    """Each ``python -m bench.X`` parses its arguments with argparse before it does any work:
    ``--help`` (or a typo) once started a stack, replayed every history or printed a
    traceback (bench.session_purge, bench.grid_lookup, bench.replay_cost, bench.api_parts,
    bench.scale_worker). Checked in the source: running twenty of them costs ~18 s."""
    import re
    from pathlib import Path

    commands = [p for p in sorted(Path(__file__).parent.parent.joinpath("bench").glob("*.py"))
                if '__name__ == "__main__"' in p.read_text(encoding="utf-8")]  # fmt: skip
    assert len(commands) >= 15, commands
    raw = [p.stem for p in commands if "sys.argv" in p.read_text(encoding="utf-8")
           or not re.search(r"ArgumentParser\(", p.read_text(encoding="utf-8"))]  # fmt: skip
    assert not raw, f"bench commands without argparse: {raw}"


def test_the_fault_harness_keeps_what_the_api_logged_for_each_500(tmp_path) -> None:
    """Fault run 20 answered one rating 500, and the API's log went with the stack's folder:
    the harness now copies the logged traceback of each 500 into its results."""
    from bench import faults

    log = tmp_path / "api.log"
    log.write_text("INFO ok\nERROR request abc123 failed\nTraceback (most recent call last):\n"
                   "  File x\nRuntimeError: boom\nINFO later\n", encoding="utf-8")  # fmt: skip
    errors = [{"method": "POST", "url": "/r", "request_id": "abc123"},
              {"method": "POST", "url": "/s", "request_id": "zzz"}]  # fmt: skip
    found = faults._logged(errors, log, lines=4)
    assert found[0]["log"][0] == "ERROR request abc123 failed"
    assert found[0]["log"][-1] == "RuntimeError: boom"
    assert found[1]["log"] == []
    assert faults._logged(errors, tmp_path / "missing.log")[0]["log"] == []
