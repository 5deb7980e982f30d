"""The lifecycle benchmark's markdown report and its ratios and target checks."""

from __future__ import annotations

from typing import Any

SHAPE_TARGET = 0.7  # lifecycle cases/s ÷ same-shape workflows/s
INTAKE_P99_TARGET_MS = 100.0  # at half the sustained maximum


def _per_s(results: dict[str, Any], *path: str) -> float | None:
    node: Any = results
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node if isinstance(node, int | float) else None


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    jiesu = _per_s(results, "maximum", "best", "per_s")
    out: dict[str, Any] = {}
    for kind in ("noop", "shape", "shape_local"):
        bare = _per_s(results, "ceiling", kind, "best", "per_s")
        out[f"vs_{kind}"] = round(jiesu / bare, 3) if jiesu and bare else None
    p99 = _per_s(results, "fixed", "intake_ms", "p99")
    out["targets"] = {
        "shape_ratio_at_least_0.7": out["vs_shape"] is not None and out["vs_shape"] >= SHAPE_TARGET,
        "intake_p99_under_100ms_at_half_max": p99 is not None and p99 < INTAKE_P99_TARGET_MS,
    }
    return out


def _ms(s: dict[str, Any] | None) -> list[str]:
    s = s or {}
    return [_fmt(s.get(k)) for k in ("p50", "p95", "p99", "max")] + [str(s.get("n", 0))]


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.1f}" if value >= 10 else f"{value:.2f}"
    return str(value)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _throughput(results: dict[str, Any]) -> list[str]:
    r = results.get("ratios", {})
    rows = []
    for label, key, node in (
        ("no-op workflow", "vs_noop", results.get("ceiling", {}).get("noop")),
        ("bare same-shape workflow", "vs_shape", results.get("ceiling", {}).get("shape")),
        (
            "bare same-shape, projections as local activities",
            "vs_shape_local",
            results.get("ceiling", {}).get("shape_local"),
        ),
        ("Jiesu case lifecycle (HTTP)", None, results.get("maximum")),
    ):
        if not node:
            continue
        levels = ", ".join(f"{lv['per_s']:.1f} @{lv['concurrency']}" for lv in node["levels"])
        ratio = _fmt(r.get(key)) + "×" if key and r.get(key) is not None else ""
        rows.append([label, _fmt(node["best"].get("per_s")), levels, ratio])
    return _table(["workload", "best /s", "per level (/s @ concurrency)", "Jiesu ÷ this"], rows)


def _latencies(fixed: dict[str, Any]) -> list[str]:
    rows = [["intake (POST /complaints)", *_ms(fixed.get("intake_ms"))],
            ["intake answered → query shows routed", *_ms(fixed.get("routed_ms"))]]  # fmt: skip
    for action, s in fixed.get("api_ms", {}).items():
        rows.append([f"{action}: API answer (query shows it)", *_ms(s)])
    for action, s in fixed.get("read_model_ms", {}).items():
        rows.append([f"{action}: API answer → read model shows it", *_ms(s)])
    rows.append(["whole lifecycle (intake → rated)", *_ms(fixed.get("lifecycle_ms"))])
    return _table(["latency (ms)", "p50", "p95", "p99", "max", "n"], rows)


def _resources(results: dict[str, Any]) -> list[str]:
    phases = [("ceiling no-op", results.get("ceiling", {}).get("noop", {}).get("cpu")),
              ("ceiling same-shape", results.get("ceiling", {}).get("shape", {}).get("cpu")),
              ("ceiling same-shape local",
               results.get("ceiling", {}).get("shape_local", {}).get("cpu")),
              ("lifecycle maximum", results.get("maximum", {}).get("cpu")),
              ("lifecycle fixed rate", results.get("fixed", {}).get("cpu"))]  # fmt: skip
    rows = []
    for label, cpu in phases:
        if not cpu:
            continue
        rows.append([label, "(machine load average, 1 min)", "", _fmt(cpu.get("loadavg_1m")), ""])
        for proc, v in cpu.items():
            if isinstance(v, dict):
                rows.append([label, proc, _fmt(v["cpu_s"]), _fmt(v["cores"]),
                             _fmt(v["peak_rss_mib"])])  # fmt: skip
    header = ["phase", "process", "CPU s", "cores busy", "peak RSS MiB"]
    return _table(header, rows)


def _history(results: dict[str, Any]) -> list[str]:
    rows = []
    for label, key in (("Jiesu case (urgent, rated)", "case"), ("bare same-shape", "shape"),
                       ("bare same-shape, local projections", "shape_local"),
                       ("no-op", "noop")):  # fmt: skip
        h = results.get("history", {}).get(key)
        if h:
            top = ", ".join(f"{k.lower()} {v}" for k, v in list(h["types"].items())[:6])
            rows.append([label, _fmt(h["median"]), top])
    return _table(["workflow", "events", "most frequent types"], rows)


def markdown(results: dict[str, Any]) -> str:
    fixed = results.get("fixed", {})
    m = results.get("machine", {})
    r = results.get("ratios", {})
    targets = r.get("targets", {})
    lines = [
        f"Machine: {m.get('cpus')} CPUs ({m.get('cpu_model')}), {m.get('memory')} RAM, "
        f"Python {m.get('python')}; run {results.get('started_at', '')[:19]}Z.",
        "",
        "### Throughput (closed loop, same Temporal server, SQLite persistence)",
        "",
        *_throughput(results),
        "",
        f"### Latencies at a fixed rate: {fixed.get('rate')} cases/s offered, "
        f"{fixed.get('achieved_per_s')} achieved, {fixed.get('completed')}/{fixed.get('cases')} "
        f"completed, {fixed.get('errors')} errors",
        "",
        *_latencies(fixed),
        "",
        "### History events per workflow",
        "",
        *_history(results),
        "",
        "### CPU and memory per phase",
        "",
        *_resources(results),
        "",
        "### Targets",
        "",
        f"- lifecycle ÷ same-shape ≥ {SHAPE_TARGET}: {_fmt(r.get('vs_shape'))} — "
        f"{'met' if targets.get('shape_ratio_at_least_0.7') else 'NOT met'}",
        f"- intake p99 < {INTAKE_P99_TARGET_MS:.0f} ms at half the maximum: "
        f"{_fmt(fixed.get('intake_ms', {}).get('p99'))} ms — "
        f"{'met' if targets.get('intake_p99_under_100ms_at_half_max') else 'NOT met'}",
    ]
    return "\n".join(lines)
