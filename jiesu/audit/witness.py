"""Does a replay recompute the events the case's history recorded? (复核: 重放须得出原事件)

Temporal's replay compares the *commands* a workflow issues — their kinds and order — with the
history, not their arguments. A rule changed without ``workflow.patched`` that turns an
applied action into a refusal (or the reverse) issues the same commands as before: one
projection, nothing else. Such a history replays without an error while the code now holds a
case that the history, the read model and the auditor's timeline contradict, and every later
decision of the case is taken on that state.

So a replay also watches what the code hands the read model (:class:`ProjectionWitness`, a
workflow interceptor) and compares it with what the history recorded of the same
projection (:func:`recorded_projections`): a local projection's result (``project_events``
returns the events it wrote: ``ProjectionReceipt``) or an activity projection's input
(``project_case``, cases started before ``lean-case-v1``). The n-th projection the code makes
is compared with the n-th one recorded; a projection the code makes beyond the recorded ones
is taken for the history's open end (the workflow task that was running when it was fetched).
A local projection that failed for good has a marker without a result: it counts as a
projection made, its events are not compared.

A history the workflow closed itself (completed, failed, continued as new: its last task
issued the closing command) has no open end, so a projection made beyond the recorded ones is
a disagreement there. Known gap: the leniency stays for a history that is still open or was
closed from outside (terminated, timed out) — a change that makes *more* projections than such
a history did after its last recorded one passes (`prepatch_projection_failed.json` replays
with the `local-projection-failure-v1` check forced on; Temporal's core does not flag the
missing local-activity markers either). Telling the open end from a completed task there needs
each projection's workflow task, which a local activity that outlasts a task's heartbeat makes
ambiguous; not done.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import (
    Interceptor,
    StartActivityInput,
    StartLocalActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)
from temporalio.workflow import ActivityHandle

from jiesu.case.domain import CaseEvent, CaseProjection, ProjectionReceipt

LOCAL_PROJECTION = "project_events"
ACTIVITY_PROJECTION = "project_case"
_LOCAL_MARKER = "core_local_activity"
_MARKER = EventType.EVENT_TYPE_MARKER_RECORDED
_SCHEDULED = EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED

Events = list[dict[str, Any]]
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class RecordedProjection:
    event_id: int  # the marker, or the activity's ActivityTaskScheduled
    events: Events | None  # None: a local projection that failed (what it carried is unknown)


def _normal(events: Sequence[CaseEvent]) -> Events:
    return [e.model_dump(mode="json", exclude={"at"}) for e in events]


def covers(computed: Any, recorded: Any) -> bool:
    """Does the replay's value say everything the recorded one says?

    A field added to a model since the history was recorded (a later ``Deadlines`` field in a
    ``deadlines_set`` event, say) appears in the replay's event with its default and is absent
    from the recorded one: keys only the replay has are not a disagreement, and a recorded
    null is an absent key. Everything recorded must be there, with the same value.

    An event's ``at`` is left out (``_normal``). It is ``workflow.now()``, which a replay
    reproduces, except when the SDK ran the handler in one workflow task and completed that task
    without commands, recording the projection with the next one: the replay then runs the
    handler in the later task and stamps its time, a few milliseconds on
    (tests/histories/hostile_two_dispatches_at_once.json, event 119: 9 ms). A time the case
    derives from that clock (a request's decision due: when the case applied it, plus the
    window) shifts by as much, so times are compared within REPLAY_CLOCK_SKEW
    (tests/test_v21_orders_attacks.py: a 延期 applied in the task after a worker's restart,
    whose first task completed without commands while the dispatch's local activity ran —
    its decision due 184 ms later in the replay)."""
    if isinstance(recorded, str) and isinstance(computed, str) and computed != recorded:
        return _same_time(computed, recorded)
    if isinstance(recorded, dict):
        return isinstance(computed, dict) and all(
            covers(computed[k], v) if k in computed else v is None for k, v in recorded.items()
        )
    if isinstance(recorded, list):
        return (
            isinstance(computed, list)
            and len(computed) == len(recorded)
            and all(covers(c, r) for c, r in zip(computed, recorded, strict=True))
        )
    return computed == recorded


def recorded_projections(history: WorkflowHistory) -> list[RecordedProjection]:
    """The events every projection of this history wrote, in the order they were made."""
    found: list[RecordedProjection] = []
    for event in history.events:
        if event.event_type == _MARKER:
            marker = event.marker_recorded_event_attributes
            if marker.marker_name != _LOCAL_MARKER or not marker.details["data"].payloads:
                continue
            meta = json.loads(marker.details["data"].payloads[0].data)
            if meta.get("activity_type") != LOCAL_PROJECTION:
                continue
            if "result" not in marker.details:  # failed: for good, or to be tried again
                if meta.get("backoff") is None:  # for good: the projection was made, and failed
                    found.append(RecordedProjection(event.event_id, None))
                continue  # else the same projection's next attempt follows (its own marker)
            receipt = _decoded(marker.details["result"].payloads, ProjectionReceipt)
            events = None if receipt is None else _normal(receipt.events)
            found.append(RecordedProjection(event.event_id, events))
        elif event.event_type == _SCHEDULED:
            scheduled = event.activity_task_scheduled_event_attributes
            if scheduled.activity_type.name != ACTIVITY_PROJECTION:
                continue
            projection = _decoded(scheduled.input.payloads, CaseProjection)
            events = None if projection is None else _normal(projection.new_events)
            found.append(RecordedProjection(event.event_id, events))
    return found


def _decoded(payloads: Sequence[Payload], kind: type[M]) -> M | None:
    """The recorded value, or None when today's model cannot read it: then it is not compared
    (the replay itself fails on it, and says so), and one case does not end a whole run."""
    try:
        [value] = pydantic_data_converter.payload_converter.from_payloads(list(payloads), [kind])
    except Exception:  # whatever the converter raises for data it cannot read
        return None
    return value if isinstance(value, kind) else None


@dataclass(frozen=True)
class Disagreement:
    event_id: int  # the recorded projection the replay disagrees with
    message: str


def compare(
    recorded: Sequence[RecordedProjection], computed: Sequence[Events], *, closed: int = 0
) -> Disagreement | None:
    """The first projection whose events the replay computed differently, if any. ``closed``:
    the event id of the workflow's own closing (no open end), or 0."""
    for n, (was, now) in enumerate(zip(recorded, computed, strict=False), start=1):
        if was.events is not None and not covers(now, was.events):
            return Disagreement(was.event_id, _difference(n, was.events, now))
    if len(computed) < len(recorded):
        missing = recorded[len(computed)]
        return Disagreement(
            missing.event_id,
            f"the history recorded {len(recorded)} projections, the replay made {len(computed)}",
        )
    if closed and len(computed) > len(recorded):
        extra = computed[len(recorded)]
        return Disagreement(
            closed,
            f"the history recorded {len(recorded)} projections before the workflow closed, the "
            f"replay makes {len(computed)}; the first not recorded: "
            f"{', '.join(_brief(e) for e in extra) or 'no events'}",
        )
    return None


_CLOSED_BY_ITSELF = (
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
)


def closed_by_itself(history: WorkflowHistory) -> int:
    """The event id of the workflow's own closing command, or 0 (open, or closed from outside:
    the replay may run a task the history never completed)."""
    last = history.events[-1] if history.events else None
    return last.event_id if last is not None and last.event_type in _CLOSED_BY_ITSELF else 0


def _difference(n: int, was: Events | None, now: Events) -> str:
    was = was or []
    for old, new in zip(was, now, strict=False):
        if not covers(new, old):
            return (
                f"projection {n}: the history recorded event {old.get('seq')} as "
                f"{_brief(old)}, the replay computes {_brief(new)}{_where(new, old)}"
            )
    return (
        f"projection {n}: the history recorded {len(was)} events "
        f"({', '.join(_brief(e) for e in was)}), the replay computes {len(now)} "
        f"({', '.join(_brief(e) for e in now)})"
    )


# How far a replay's clock may stand from the recorded run's in one workflow task (see covers):
# the milliseconds between two tasks, or longer when a worker died between them. A rule changed
# without a patch moves a time by its rule (hours, a working day), far beyond this.
REPLAY_CLOCK_SKEW = timedelta(minutes=1)


def _same_time(computed: str, recorded: str) -> bool:
    """Two ISO-8601 times with a zone, within REPLAY_CLOCK_SKEW; any other strings differ."""
    try:
        a, b = datetime.fromisoformat(computed), datetime.fromisoformat(recorded)
    except ValueError:
        return False
    if a.tzinfo is None or b.tzinfo is None:
        return False
    return abs(a - b) <= REPLAY_CLOCK_SKEW


def _where(computed: Any, recorded: Any, path: str = "") -> str:
    """The first value the replay does not cover, as ``; at data.x: recorded …, replay …``."""
    if isinstance(recorded, dict) and isinstance(computed, dict):
        for key, value in recorded.items():
            if not covers(computed.get(key), value) and (key in computed or value is not None):
                return _where(computed.get(key), value, f"{path}.{key}" if path else str(key))
        return ""
    return f"; at {path or 'the event'}: recorded {recorded!r}, replay {computed!r}"


def _brief(event: dict[str, Any]) -> str:
    code = (event.get("data") or {}).get("code")
    return f"{event.get('kind')}" + (f" ({code})" if code else "")


class ProjectionWitness(Interceptor):
    """A replayer's interceptor that notes the events each workflow run hands its projections.

    Runs are told apart by (workflow id, run id); :meth:`take` hands a run's notes over and
    forgets them, so one witness serves a replayer that replays thousands of histories — one
    replay at a time: two replays of the same case at once (the API's one replayer, two
    requests) would note into the same list. Replays through one witness hold ``busy``."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], list[Events]] = {}
        self.busy = asyncio.Lock()

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        witness = self

        class _Inbound(WorkflowInboundInterceptor):
            def init(self, outbound: WorkflowOutboundInterceptor) -> None:
                super().init(_Outbound(outbound, witness))

        return _Inbound

    def saw(self, workflow_id: str, run_id: str, projection: Any) -> None:
        if isinstance(projection, CaseProjection):
            key = (workflow_id, run_id)
            self._seen.setdefault(key, []).append(_normal(projection.new_events))

    def clear(self) -> None:
        self._seen.clear()

    def take(self, workflow_id: str, run_id: str) -> list[Events]:
        return self._seen.pop((workflow_id, run_id), [])

    def check(self, history: WorkflowHistory) -> Disagreement | None:
        """Compare what the replay of ``history`` computed with what it recorded."""
        computed = self.take(history.workflow_id, history.run_id)
        closed = closed_by_itself(history)
        return compare(recorded_projections(history), computed, closed=closed)


class _Outbound(WorkflowOutboundInterceptor):
    def __init__(self, next: WorkflowOutboundInterceptor, witness: ProjectionWitness) -> None:
        super().__init__(next)
        self._witness = witness

    def _note(self, activity: str, args: Sequence[Any]) -> None:
        if activity in (LOCAL_PROJECTION, ACTIVITY_PROJECTION) and args:
            info = self.info()
            self._witness.saw(info.workflow_id, info.run_id, args[0])

    def start_local_activity(self, input: StartLocalActivityInput) -> ActivityHandle[Any]:
        self._note(input.activity, input.args)
        return super().start_local_activity(input)

    def start_activity(self, input: StartActivityInput) -> ActivityHandle[Any]:
        self._note(input.activity, input.args)
        return super().start_activity(input)
