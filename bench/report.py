"""The lifecycle benchmark's summary (median of per-round ratios), target checks and markdown
report (bench/lifecycle.py)."""

from __future__ import annotations

import statistics
from typing import Any

from bench import cpu_speed, disk

# Issue 13's targets.
SHAPE_TARGET = 0.9  # lifecycle cases/s ÷ same-shape workflows/s, median of rounds
ACTION_P99_TARGET_MS = 60.0  # a department's action answered, at half the sustained maximum
EVENTS_TARGET = 50  # history events of a standard urgent case


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def _spread(values: list[float | None]) -> dict[str, Any]:
    """Median and min–max of the values that exist."""
    have = [v for v in values if v is not None]
    if not have:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": round(statistics.median(have), 3), "min": min(have), "max": max(have),
            "n": len(have)}  # fmt: skip


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-round ratios and their median with min–max. A ratio is taken inside one round, so
    noise that lasts a round hits both of its sides; the median drops an outlying round."""
    for row in rounds:
        life = row["lifecycle"]["per_s"]
        row["ratio_vs_shape"] = _ratio(life, row["shape"]["per_s"])
        row["ratio_vs_noop"] = _ratio(life, row["noop"]["per_s"])
    return {
        "rounds": len(rounds),
        "vs_shape": _spread([r["ratio_vs_shape"] for r in rounds]),
        "vs_noop": _spread([r["ratio_vs_noop"] for r in rounds]),
        "lifecycle_per_s": _spread([r["lifecycle"]["per_s"] for r in rounds])["median"],
        "shape_per_s": _spread([r["shape"]["per_s"] for r in rounds])["median"],
        "noop_per_s": _spread([r["noop"]["per_s"] for r in rounds])["median"],
        "other_cores": _spread(
            [r[k]["load"]["other_cores"] for r in rounds for k in ("noop", "shape", "lifecycle")]
        ),
    }


def _get(node: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def targets(results: dict[str, Any]) -> dict[str, Any]:
    ratio = _get(results, "summary", "vs_shape", "median")
    p99 = _get(results, "fixed", "department_actions_ms", "p99")
    paced = _get(results, "fixed", "paced_department_actions_ms", "p99")
    events = _get(results, "history", "case", "median")
    at_half = not _get(results, "fixed", "rate_given")  # the latency targets are at half max

    def within(value: float | None) -> bool | None:
        return None if not at_half else value is not None and value <= ACTION_P99_TARGET_MS

    def interval(key: str) -> dict[str, Any]:
        s = _get(results, "fixed", key) or {}
        return {"interval": s.get("p99_interval"), "n": s.get("n")}

    return {
        "shape_ratio": {"target": SHAPE_TARGET, "value": ratio,
                        "met": ratio is not None and ratio >= SHAPE_TARGET},
        "department_action_p99_ms": {"target": ACTION_P99_TARGET_MS, "value": p99,
                                     "met": within(p99), **interval("department_actions_ms")},
        "paced_department_action_p99_ms": {"target": ACTION_P99_TARGET_MS, "value": paced,
                                           "met": within(paced),
                                           **interval("paced_department_actions_ms")},
        "case_history_events": {"target": EVENTS_TARGET, "value": events,
                                "met": events is not None and events <= EVENTS_TARGET},
    }  # fmt: skip


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.1f}" if value >= 10 else f"{value:.2f}"
    return str(value)


def _ms(s: dict[str, Any] | None) -> list[str]:
    s = s or {}
    return [_fmt(s.get(k)) for k in ("p50", "p95", "p99", "max")] + [str(s.get("n", 0))]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _load(row: dict[str, Any]) -> str:
    """Load average from the round's first phase's start to its last phase's end."""
    start = row["noop"]["load"]["loadavg_start"]
    return f"{_fmt(start)}→{_fmt(row['lifecycle']['load']['loadavg_end'])}"


def _rounds(results: dict[str, Any]) -> list[str]:
    rows = []
    for r in results.get("rounds", []):
        other = "/".join(_fmt(r[k]["load"]["other_cores"]) for k in ("noop", "shape", "lifecycle"))
        errors = sum(r[k]["errors"] for k in ("noop", "shape", "lifecycle"))
        rows.append([str(r["round"]), _fmt(r["noop"]["per_s"]), _fmt(r["shape"]["per_s"]),
                     _fmt(r["lifecycle"]["per_s"]), _fmt(r["ratio_vs_shape"]) + "×",
                     _fmt(r["ratio_vs_noop"]) + "×", _load(r), other, str(errors)])  # fmt: skip
    s = results.get("summary", {})
    for key, label in (("vs_shape", "lifecycle ÷ same shape"), ("vs_noop", "lifecycle ÷ no-op")):
        v = s.get(key, {})
        rows.append([f"**median** ({label})", _fmt(s.get("noop_per_s")), _fmt(s.get("shape_per_s")),
                     _fmt(s.get("lifecycle_per_s")),
                     f"**{_fmt(v.get('median'))}×** ({_fmt(v.get('min'))}–{_fmt(v.get('max'))})"
                     if key == "vs_shape" else "",
                     f"{_fmt(v.get('median'))}× ({_fmt(v.get('min'))}–{_fmt(v.get('max'))})"
                     if key == "vs_noop" else "", "", "", ""])  # fmt: skip
    header = ["round", "no-op /s", "same shape /s", "lifecycle /s", "lifecycle ÷ shape",
              "lifecycle ÷ no-op", "load avg", "other cores (A/B/C)", "errors"]  # fmt: skip
    return _table(header, rows)


def _pause(fixed: dict[str, Any]) -> str:
    """The paced cases' pause as run: "0.25–0.75 s, at random" (or "0.5 s" before the spread)."""
    think, spread = fixed.get("think_s"), fixed.get("think_spread")
    if not think or not spread:
        return f"{_fmt(think)} s"
    return f"{_fmt(think * (1 - spread))}–{_fmt(think * (1 + spread))} s, at random"


def _rate_source(results: dict[str, Any]) -> str:
    if not _get(results, "fixed", "rate_given"):
        return "half the sustained maximum"
    most = _get(results, "summary", "lifecycle_per_s")
    return f"set by --rate; the sustained maximum was {_fmt(most)}/s"


def _arrivals(fixed: dict[str, Any]) -> str:
    """How the fixed phase's cases arrived; runs before the choice existed were evenly spaced."""
    if fixed.get("arrivals", "even") == "even":
        return "evenly spaced"
    return f"at random, a Poisson process (seed {fixed.get('seed')})"


def _latencies(fixed: dict[str, Any]) -> list[str]:
    rows = [["intake (POST /complaints)", *_ms(fixed.get("intake_ms"))],
            ["intake answered → query shows routed", *_ms(fixed.get("routed_ms"))],
            ["**department action answered** (accept, contact, reply)",
             *_ms(fixed.get("department_actions_ms"))]]  # fmt: skip
    think = _pause(fixed)
    rows.append([f"**department action answered, at a person's pace** ({think} before each "
                 "action: the case's previous workflow task has finished)",
                 *_ms(fixed.get("paced_department_actions_ms"))])  # fmt: skip
    for key, label in (("department_actions_less_io_stall_ms", "back to back"),
                       ("paced_department_actions_less_io_stall_ms", "at a person's pace")):
        if key in fixed:
            rows.append([f"department action answered, {label}, less the time the machine "
                         "waited on the disk during it (PSI)", *_ms(fixed[key])])  # fmt: skip
    rows.append([f"rating answered, at a person's pace ({think} before)",
                 *_ms(fixed.get("paced_rating_ms"))])  # fmt: skip
    for action, s in fixed.get("api_ms", {}).items():
        rows.append([f"{action}: API answer (with the case's new state)", *_ms(s)])
    for action, s in fixed.get("read_model_ms", {}).items():
        rows.append([f"{action}: API answer → read model shows it", *_ms(s)])
    rows.append(["whole lifecycle (intake → rated)", *_ms(fixed.get("lifecycle_ms"))])
    return _table(["latency (ms)", "p50", "p95", "p99", "max", "n"], rows)


def _baselines(results: dict[str, Any]) -> list[str]:
    """The machine's baselines: the disk's own flush latency and the CPU's speed just before
    the fixed phase, and the disk's stalls during it."""
    lines = []
    if probe := results.get("disk"):
        lines.append("The data folder's storage alone, before this phase (bench/disk.py): "
                     f"{disk.describe(probe)}.")  # fmt: skip
    if probe := results.get("cpu_speed"):
        lines.append(f"The CPU alone, right after (bench/cpu_speed.py): "
                     f"{cpu_speed.describe(probe)}.")  # fmt: skip
    fixed = results.get("fixed", {})
    if fixed.get("io_full_share") is not None:
        lines.append(
            f"During this phase the whole machine waited on the disk "
            f"{fixed['io_full_share'] * 100:.1f} % of the time; "
            f"{fixed.get('io_stalled_actions')} department actions waited "
            f"{_fmt(fixed.get('io_stalled_threshold_ms'))} ms or more of their answer on it."
        )  # fmt: skip
    return ["", *lines] if lines else []


def _resources(results: dict[str, Any]) -> list[str]:
    """CPU per process, summed over the rounds, per kind of phase."""
    rows = []
    for kind, label in (("noop", "no-op"), ("shape", "same shape"), ("lifecycle", "lifecycle")):
        totals: dict[str, list[float]] = {}
        done = 0
        for r in results.get("rounds", []):
            done += r[kind]["completed"]
            for proc, v in r[kind]["cpu"].items():
                if isinstance(v, dict) and "cpu_s" in v:
                    t = totals.setdefault(proc, [0.0, 0.0, 0.0])
                    t[0] += v["cpu_s"]
                    t[1] = max(t[1], v["peak_rss_mib"])
                    t[2] += 1
        for proc, (cpu, rss, _) in totals.items():
            per = f"{cpu / done * 1000:.0f}" if done else "–"
            rows.append([label, proc, _fmt(cpu), per, _fmt(rss)])
    header = ["phases", "process", "CPU s (all rounds)", "CPU ms per completed unit",
              "peak RSS MiB"]  # fmt: skip
    return _table(header, rows)


def _history(results: dict[str, Any]) -> list[str]:
    rows = []
    for label, key in (("Jiesu case (urgent, rated)", "case"), ("bare same-shape", "shape"),
                       ("no-op", "noop")):  # fmt: skip
        h = results.get("history", {}).get(key)
        if h:
            top = ", ".join(f"{k.lower()} {v}" for k, v in list(h["types"].items())[:6])
            rows.append([label, _fmt(h["median"]), _fmt(h.get("proto_bytes")),
                         _fmt(h.get("json_bytes")), top])  # fmt: skip
    header = ["workflow", "events", "bytes (protobuf)", "bytes (JSON)", "most frequent types"]
    return _table(header, rows)


def _targets(results: dict[str, Any]) -> list[str]:
    t = results.get("targets", {})
    labels = {"shape_ratio": "lifecycle ÷ same shape (median of rounds) ≥",
              "department_action_p99_ms": "department action answer p99 (ms) at half max, "
                                          "actions back to back ≤",
              "paced_department_action_p99_ms": "department action answer p99 (ms) at half "
                                                "max, at a person's pace ≤",
              "case_history_events": "history events per standard urgent case ≤"}  # fmt: skip
    verdict = {True: "met", False: "NOT met",
               None: "not checked: the fixed rate was set by --rate, not half the maximum"}
    return [f"- {labels[k]} {_fmt(v['target'])}: {_fmt(v['value'])}{_interval(v)} — "
            f"{verdict[v['met']]}" for k, v in t.items()]  # fmt: skip


def _interval(target: dict[str, Any]) -> str:
    """A p99's 95 % interval (bench/load.py percentile_interval): how far another run of the
    same length may put it. Unbounded above when the answers are too few to bound it."""
    if not target.get("interval"):
        return ""
    low, high = target["interval"]
    above = (f"{_fmt(high)}" if high is not None
             else f"unbounded: {target.get('n')} answers cannot bound a p99 from above")
    return f" (95 % interval {_fmt(low)} – {above})"


def _temporal_server(results: dict[str, Any]) -> list[str]:
    t = results.get("temporal")
    if not t:  # results of runs before it was recorded
        return []
    pragmas = ", ".join(t.get("sqlite_pragmas", [])) or "the dev server's defaults"
    config = ", ".join(f"{k}={v}" for k, v in t.get("dynamic_config", {}).items())
    return ["", f"Temporal dev server: SQLite {pragmas}; dynamic config {config}."]


def markdown(results: dict[str, Any]) -> str:
    fixed = results.get("fixed", {})
    m = results.get("machine", {})
    a = results.get("args", {})
    s = results.get("summary", {})
    other = s.get("other_cores", {})
    lines = [
        f"Machine: {m.get('cpus')} CPUs ({m.get('cpu_model')}), {m.get('memory')} RAM, "
        f"Python {m.get('python')}; run {results.get('started_at', '')[:19]}Z; "
        f"{a.get('rounds')} rounds × 3 phases of {a.get('warmup')} + {a.get('duration')} s, "
        f"{a.get('concurrency')} concurrent clients each. Processes not ours kept "
        f"{_fmt(other.get('median'))} cores busy (median of phases, "
        f"{_fmt(other.get('min'))}–{_fmt(other.get('max'))}).",
        *_temporal_server(results),
        "",
        "### Throughput, interleaved rounds (closed loop, same Temporal server, SQLite)",
        "",
        *_rounds(results),
        "",
        f"### Latencies at a fixed rate: {fixed.get('rate')} cases/s offered "
        f"({_rate_source(results)}), arriving {_arrivals(fixed)}, "
        f"{fixed.get('achieved_per_s')} achieved, "
        f"{fixed.get('completed')}/{fixed.get('cases')} completed, {fixed.get('errors')} errors, "
        f"{fixed.get('answered_202', 0)} actions answered 202 (then looked up); "
        f"other cores busy {_fmt(_get(fixed, 'cpu', 'load', 'other_cores'))}",
        "",
        *_latencies(fixed),
        *_baselines(results),
        "",
        "### History per workflow",
        "",
        *_history(results),
        "",
        "### CPU and memory per kind of phase",
        "",
        *_resources(results),
        "",
        "### Targets (issue 13)",
        "",
        *_targets(results),
    ]
    return "\n".join(lines)
