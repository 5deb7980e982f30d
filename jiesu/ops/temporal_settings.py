"""The Temporal server's dynamic configuration Jiesu runs with, in one place.

The embedded dev server (``make run``, the tests, the benches) gets these as
``--dynamic-config-value`` arguments; docker-compose's server reads the same settings from
``deploy/temporal/dynamicconfig.yaml`` (a test keeps the file and this list in agreement).
``JIESU_TEMPORAL_DYNAMIC_CONFIG`` (comma-separated ``key=value``) adds settings to the dev
server's or replaces these by key, for measurements.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

ENV = "JIESU_TEMPORAL_DYNAMIC_CONFIG"

# The history service reads a shard's queue of new tasks (workflow tasks to hand to a worker,
# timers that fire, visibility writes) at most N times a second, 20 by default: sized for
# clusters of hundreds of shards. The dev server has one shard, so under load a signal's
# workflow task waited up to 50 ms for the next read: "signal sent → workflow task started"
# p50 21 / p99 49 ms at half the sustained maximum, 0.0 / 3.9 ms at 1,000 (bench/action_stages,
# docs/performance.md). 200 reads a second: at most 5 ms, far above the reads a case needs.
QUEUE_READS_PER_SECOND = 200

SETTINGS: dict[str, object] = {
    # Self-hosted servers (1.30+) set TemporalReportedProblems (failing workflow tasks, which
    # jiesu doctor lists) only when told after how many consecutive failed or timed-out
    # workflow tasks: two, so one glitch is not reported.
    "system.numConsecutiveWorkflowTaskProblemsToTriggerSearchAttribute": 2,
    "history.transferProcessorMaxPollRPS": QUEUE_READS_PER_SECOND,
    "history.timerProcessorMaxPollRPS": QUEUE_READS_PER_SECOND,
    "history.visibilityProcessorMaxPollRPS": QUEUE_READS_PER_SECOND,
}


def _pair(setting: str) -> tuple[str, str]:
    key, sep, value = setting.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise ValueError(f"{ENV}: {setting!r} is not key=value")
    return key.strip(), value.strip()


def dynamic_config(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The settings as ``key → value`` text: ``SETTINGS``, then the environment's by key."""
    settings = {key: str(value) for key, value in SETTINGS.items()}
    for setting in environ.get(ENV, "").split(","):
        if setting.strip():
            key, value = _pair(setting)
            settings[key] = value
    return settings


def dev_server_args(environ: Mapping[str, str] = os.environ) -> list[str]:
    """``--dynamic-config-value key=value`` for each setting, for ``temporal server start-dev``."""
    args: list[str] = []
    for key, value in dynamic_config(environ).items():
        args += ["--dynamic-config-value", f"{key}={value}"]
    return args
