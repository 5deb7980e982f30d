"""Decode a Temporal history into the auditor's timeline: who did what, and when.

The history is the authoritative record (DESIGN.md §2). This module turns its events into
entries ``{event_id, at, kind, actor, summary, details}``:

- ``started`` / ``completed`` / ``failed`` / ``terminated`` / ... — the run's start and end;
- ``signal`` — a human action as it arrived, with its actor and payload. Its ``outcome``
  (``applied``, ``rejected`` with the reason, ``no effect recorded``, ``not yet processed``
  or ``not processed``) is read from the
  workflow's *own event list*, which travels inside the history as the input of the
  ``project_case`` activity: the first event the workflow recorded after the signal for the
  same actor is the signal's effect (a ``rejected`` event carries the reason). A signal whose
  effect no completed workflow task wrote (``_Decoder._unhandled``) reads ``not yet
  processed`` on a running case, ``not processed`` on a closed one. No read model
  is consulted, and no code is re-run: the answer is what the workflow wrote at the time;
- ``activity`` — an activity's result (``route_case`` → "routed to X by rule N",
  ``compute_deadlines`` → "deadlines set: ...", ``plan_case`` → both),
  ``activity_failed`` / ``activity_timed_out``; a *local* activity's result is a
  ``core_local_activity`` marker, decoded the same way (since ``lean-case-v1`` the case's
  planning and projections are local, and the ``project_events`` result carries the events);
- ``timer_started`` / ``timer_fired`` / ``timer_canceled`` with the timer's summary
  ("accept deadline"), and ``deadline_moved`` when a timer with the same summary is started
  again for a different time;
- ``search_attributes`` — upserts, decoded;
- ``child_initiated`` / ``child_started`` / ``child_completed`` / ``child_failed`` / ... —
  child workflows (reassignment, escalation) with their workflow id and type;
- the workflow's recorded events that no signal explains (``received``, ``routed``,
  ``deadline_breached``, ``closed``, ladder steps, ...) under their own :class:`EventKind`
  name, ``details.seq`` being their number in the case's event list.

Everything here is pure: a :class:`WorkflowHistory` in, a :class:`Timeline` out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.json_format import MessageToDict
from pydantic import BaseModel, Field
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter

from jiesu.audit.stuck import failing_task, task_failure
from jiesu.case.domain import CASE_WORKFLOW, SIGNAL_PAYLOADS, UNKNOWN_SENDER
from jiesu.case.excerpts import excerpt, printable

PROJECTION_ACTIVITY = "project_case"
# Cases since lean-case-v1 project with a local activity; its result carries the events.
LOCAL_PROJECTION_ACTIVITY = "project_events"
LOCAL_ACTIVITY_MARKER = "core_local_activity"
PATCH_MARKER = "core_patch"  # workflow.patched
# A timer re-started for a time further than this from the previous one is a moved deadline.
_MOVE_TOLERANCE = timedelta(seconds=2)
# A signal's outcome when no completed workflow task has handled it yet: the case is running
# and will (its effect is still to be written), or it closed before it did.
NOT_YET_PROCESSED = "not yet processed"
NOT_PROCESSED = "not processed"


class TimelineEntry(BaseModel):
    event_id: int = Field(description="The history event this entry comes from")
    at: datetime
    kind: str
    actor: dict[str, Any] | None = None
    summary: str
    details: dict[str, Any] = Field(default_factory=dict)
    child: Timeline | None = Field(
        default=None, description="The child workflow's own timeline (child_started entries)"
    )


class Timeline(BaseModel):
    workflow_id: str
    run_id: str
    workflow_type: str
    source: str = Field(description="Where the history came from: temporal or archive")
    status: str = Field(description="running, completed, failed, terminated, ...")
    event_count: int
    stuck: str | None = Field(
        default=None,
        description="Set when the case is wedged: its last workflow task failed with this "
        "message, so it makes no progress until fixed or reset (docs/operations.md)",
    )
    entries: list[TimelineEntry]


# --- payloads ---------------------------------------------------------------------------------


def decode_payload(payload: Payload) -> Any:
    """A payload as a JSON value (what the pydantic data converter would produce)."""
    try:
        return pydantic_data_converter.payload_converter.from_payload(payload)
    except Exception:  # an undecodable payload is shown, not fatal to the timeline
        return {"undecodable_payload": MessageToDict(payload)}


def decode_payloads(payloads: Payloads) -> list[Any]:
    return [decode_payload(p) for p in payloads.payloads]


def _first(payloads: Payloads) -> Any:
    values = decode_payloads(payloads)
    return values[0] if values else None


def _time(value: datetime | str | None) -> str:
    """A short, unambiguous UTC time for summaries."""
    if value is None:
        return "-"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def actor_label(actor: dict[str, Any] | None) -> str:
    if not actor:
        return "-"
    department = actor.get("department_id")
    suffix = f", {department}" if department else ""
    return f"{actor.get('name', '?')} ({actor.get('role', '?')}{suffix})"


# --- messages the case could not decode ---------------------------------------------------------

def message_excerpt(payloads: Payloads) -> str:
    """The excerpt of a signal's payloads the workflow records when it cannot decode them
    (jiesu.case.excerpts, the workflows' rule): how the timeline knows which signal an
    unknown sender's rejection answers."""
    return excerpt(p.data for p in payloads.payloads)


ACTORLESS = frozenset(
    str(name) for name, model in SIGNAL_PAYLOADS.items() if "actor" not in model.model_fields
)
"""The case's messages that name no actor (the escalation child's ``escalation_step``): what
they did is recorded under the system, so the timeline cannot tell their outcome."""


def _from_unknown_sender(actor: dict[str, Any] | None) -> bool:
    return bool(actor) and actor.get("name") == UNKNOWN_SENDER.name and (
        actor.get("role") == UNKNOWN_SENDER.role.value
    )


# --- the workflow's recorded events -------------------------------------------------------------


@dataclass
class RecordedBatch:
    """The case events one ``project_case`` activity carried, and whether it completed."""

    scheduled_event_id: int
    events: list[dict[str, Any]]
    completed: bool = False


def _recorded_summary(kind: str, data: dict[str, Any]) -> str:
    formats: dict[str, Callable[[], str]] = {
        "received": lambda: f"case registered: {data.get('title')} "
        f"({data.get('urgency')}, via {data.get('channel')})",
        "routed": lambda: f"assigned to {data.get('department_name')} "
        f"({data.get('department_id')}) by rule {data.get('rule_id')}",
        "queued": lambda: "no routing rule matched: placed in the dispatch queue "
        f"({data.get('department_id')})",
        "dispatched": lambda: f"dispatched to {data.get('department_name')} "
        f"({data.get('department_id')})",
        "deadlines_set": lambda: "deadlines set: " + _deadline_text(data),
        "accepted": lambda: "accepted (签收)",
        "contacted": lambda: "citizen contacted"
        + (f": {data['note']}" if data.get("note") else ""),
        "replied": lambda: f"replied ({data.get('outcome')}): {data.get('text')}",
        "rated": lambda: f"rated {data.get('rating')}"
        + (f": {data['comment']}" if data.get("comment") else ""),
        "deadline_breached": lambda: f"{data.get('deadline_kind')} deadline "
        f"{_time(data.get('deadline'))} breached (department {data.get('department_id')})",
        "rejected": lambda: f"{data.get('action')} rejected ({data.get('code')}): "
        f"{data.get('reason')}",
        "closed": lambda: f"case closed ({data.get('resolution')})",
        # issue 14: second assignment, return approval, supervision forms, extension hygiene
        "second_assignment_ordered": lambda: "taken from "
        f"{data.get('department_id')} and assigned again (二次交办)"
        + (f" to {data['to_department_id']}" if data.get("to_department_id") else "")
        + f": {data.get('reason')}",
        "handed_over": lambda: f"handed over from {data.get('department_id')}, out of service, "
        f"to {data.get('to_department_id')} (移交): {data.get('reason')}",
        "returned": lambda: f"returned by {data.get('department_id')} (退单): {data.get('reason')}"
        + (" — awaiting the centre's decision" if data.get("awaiting_approval") else ""),
        "return_upheld": lambda: f"return by {data.get('department_id')} upheld: reassignment",
        "return_rejected": lambda: f"return by {data.get('department_id')} rejected, the case "
        f"stays: {data.get('reason')}",
        "escalation_started": lambda: "supervision ladder started "
        f"({data.get('trigger')})"
        + (f" with the form {data['form']}: {data.get('opinion') or '-'}" if data.get("form")
           else "")
        + (f", unit's deadline {_time(data['due'])}" if data.get("due") else ""),
        "accountability_recorded": lambda: f"accountability (问责) for {data.get('department_id')}"
        f": persons {', '.join(data.get('persons') or []) or 'to be named'}; reason "
        f"{data.get('reason')}; decision {data.get('decision') or 'pending'}",
        "contribution_overdue": lambda: f"co-handler {data.get('department_id')} missed its "
        f"contribution deadline {_time(data.get('due'))}",
        "extension_decision_overdue": lambda: "no extension decision by "
        f"{_time(data.get('decision_due'))}: approved",
        "return_decision_overdue": lambda: "no decision on the return by "
        f"{_time(data.get('decision_due'))}: upheld",
        "answered_directly": lambda: "answered directly on the call (即时办结) from knowledge-base "
        f"answer {data.get('answer_id')} v{data.get('version')} ({data.get('source')})",
        "solved_on_the_spot": lambda: f"solved on the spot in grid {data.get('department_id')} "
        f"(就地解决): {data.get('text')}",
        "history_large": lambda: "the case's Temporal history passed "
        f"{(data.get('history_bytes') or 0) / 1024 / 1024:.1f} MiB / "
        f"{data.get('history_events') or 0:,} events (Temporal ends a case at 50 MiB or 51,200 "
        "events): close it when its work is done",
        "linked_to_history": lambda: "reported again although replied (不作为信号): the same "
        f"problem's earlier cases {', '.join(data.get('case_ids') or [])}, "
        f"{data.get('reports')} reports within {data.get('window_days')} days",
    }
    if kind in formats:
        return formats[kind]()
    shown = ", ".join(f"{k}={v}" for k, v in data.items() if v not in (None, "", []))
    return f"{kind}: {shown}" if shown else kind


def event_summary(kind: str, data: dict[str, Any]) -> str:
    """A recorded case event in plain words (the timeline's and the console's)."""
    return _recorded_summary(kind, data)


def _deadline_text(data: dict[str, Any]) -> str:
    parts = [
        f"{name} {_time(data[name])}" for name in ("accept", "contact", "finish") if data.get(name)
    ]
    if data.get("rating_window_hours") is not None:
        parts.append(f"rating window {data['rating_window_hours']:g} h")
    return ", ".join(parts)


def _activity_summary(name: str, result: Any) -> str:
    if name == "route_case" and isinstance(result, dict):
        if result.get("by_rule"):
            return (
                f"routed to {result.get('department_name')} ({result.get('department_id')}) "
                f"by rule {result.get('rule_id')}"
            )
        return f"no routing rule matched: to the dispatch queue of {result.get('department_id')}"
    if name == "compute_deadlines" and isinstance(result, dict):
        return "deadlines set: " + _deadline_text(result)
    if name == "plan_case" and isinstance(result, dict):
        route = _activity_summary("route_case", result.get("route"))
        failed = result.get("routing_failure")
        if failed:
            route = f"routing refused the case ({failed}); {route}"
        return f"{route}; " + _activity_summary("compute_deadlines", result.get("deadlines"))
    return f"activity {name} completed"


# --- the decoder ---------------------------------------------------------------------------------

_CLOSE_STATUS = {
    "workflow_execution_completed_event_attributes": "completed",
    "workflow_execution_failed_event_attributes": "failed",
    "workflow_execution_terminated_event_attributes": "terminated",
    "workflow_execution_canceled_event_attributes": "canceled",
    "workflow_execution_timed_out_event_attributes": "timed_out",
    "workflow_execution_continued_as_new_event_attributes": "continued_as_new",
}


@dataclass
class _Timer:
    summary: str
    fires_at: datetime


@dataclass
class _Decoder:
    history: WorkflowHistory
    entries: list[TimelineEntry] = field(default_factory=list)
    batches: list[RecordedBatch] = field(default_factory=list)
    workflow_type: str = ""
    status: str = "running"
    _activities: dict[int, tuple[str, Any]] = field(default_factory=dict)
    _projections: dict[int, RecordedBatch] = field(default_factory=dict)
    _timers: dict[str, _Timer] = field(default_factory=dict)
    _last_deadline: dict[str, datetime] = field(default_factory=dict)
    _children: dict[int, tuple[str, str]] = field(default_factory=dict)
    _awaiting_effect: list[TimelineEntry] = field(default_factory=list)
    _retries: list[TimelineEntry] = field(default_factory=list)
    _excerpts: dict[int, str] = field(default_factory=dict)  # signal event id -> excerpt
    _last_task_completed: int = 0  # the last WorkflowTaskCompleted event's id
    _task_outstanding: bool = False  # a workflow task is scheduled and not completed
    # the completed workflow task whose commands last carried the case's recorded events
    _last_recording_task: int = 0

    def run(self) -> None:
        for event in self.history.events:
            attr = event.WhichOneof("attributes")
            handler = getattr(self, f"_on_{attr}", None) if attr else None
            if attr in _CLOSE_STATUS:
                self.status = _CLOSE_STATUS[attr]
                self._closed(event, attr)
            elif handler is not None:
                handler(event)
        for entry in self._awaiting_effect:
            if entry.details.get("signal") in ACTORLESS and entry.actor is None:
                continue  # the ladder's step: its effect is the system's escalated event
            if self._unhandled(entry):
                continue
            entry.details["outcome"] = "no effect recorded"
            entry.summary += " — no effect recorded"
        for entry in self._retries:
            if self._unhandled(entry):
                continue
            request_id = (entry.actor or {}).get("request_id")
            entry.details["outcome"] = "no effect recorded"
            entry.summary += (
                f" — no effect recorded: a retry of #{entry.details['retry_of']} (request id "
                f"{request_id}), which the case answers once"
            )

    def _unhandled(self, entry: TimelineEntry) -> bool:
        """Mark a signal whose effect no completed workflow task has written: it arrived
        after the last one (Temporal writes a signal that comes in during a task after that
        task's completion, and schedules a new task for it), or — on a running case with an
        outstanding workflow task — after the last task that recorded case events (a task
        can complete before the projection carrying its events does, and the next one
        records them). On a running case the effect is still to come (``not yet
        processed``); a closed case ended first (``not processed``). Either way "no effect
        recorded" would claim the case handled it and wrote nothing."""
        if entry.event_id < self._last_task_completed and not (
            self.status == "running" and self._task_outstanding
            and entry.event_id > self._last_recording_task
        ):
            return False
        if self.status == "running":
            entry.details["outcome"] = NOT_YET_PROCESSED
            entry.summary += " — not yet processed: the case has not handled it yet"
        else:
            entry.details["outcome"] = NOT_PROCESSED
            entry.summary += f" — not processed: the case was {self.status} before handling it"
        return True

    def _on_workflow_task_completed_event_attributes(self, event: HistoryEvent) -> None:
        self._last_task_completed = event.event_id
        self._task_outstanding = False

    def _on_workflow_task_scheduled_event_attributes(self, event: HistoryEvent) -> None:
        self._task_outstanding = True

    def _add(
        self,
        event: HistoryEvent,
        kind: str,
        summary: str,
        actor: dict[str, Any] | None = None,
        at: datetime | None = None,
        **details: Any,
    ) -> TimelineEntry:
        entry = TimelineEntry(
            event_id=event.event_id,
            at=at or event.event_time.ToDatetime(tzinfo=UTC),
            kind=kind,
            actor=actor,
            summary=summary,
            details={k: v for k, v in details.items() if v is not None},
        )
        self.entries.append(entry)
        return entry

    # start and end

    def _on_workflow_execution_started_event_attributes(self, event: HistoryEvent) -> None:
        a = event.workflow_execution_started_event_attributes
        self.workflow_type = a.workflow_type.name
        args = decode_payloads(a.input)
        first = args[0] if args and isinstance(args[0], dict) else {}
        actor = first.get("registered_by") or first.get("actor")
        parent = a.parent_workflow_execution.workflow_id or None
        summary = f"{self.workflow_type} started"
        # a case's start carries its facts (since cases left the citizen out of the
        # history) or, before that, the whole intake
        intake = first.get("facts") or first.get("intake")
        if isinstance(intake, dict):
            summary = (
                f"case {first.get('case_id')} registered: {intake.get('title')} "
                f"({first.get('urgency')}, via {intake.get('channel')})"
            )
        if parent:
            summary += f" as a child of {parent}"
        self._add(event, "started", summary, actor, input=args, parent_workflow_id=parent)

    def _closed(self, event: HistoryEvent, attr: str) -> None:
        a = getattr(event, attr)
        details: dict[str, Any] = {}
        summary = f"workflow {self.status}"
        if attr == "workflow_execution_completed_event_attributes":
            result = _first(a.result)
            details["result"] = result
            if isinstance(result, dict) and result.get("status"):
                summary = f"workflow completed: case {result.get('status')}"
                if result.get("resolution"):
                    summary += f" ({result['resolution']})"
        elif attr == "workflow_execution_failed_event_attributes":
            summary = f"workflow failed: {a.failure.message}"
        elif attr == "workflow_execution_terminated_event_attributes":
            summary = f"workflow terminated by {a.identity or '?'}: {a.reason or 'no reason'}"
        elif attr == "workflow_execution_continued_as_new_event_attributes":
            summary = f"continued as new run {a.new_execution_run_id}"
        self._add(event, self.status, summary, **details)

    # signals, updates and the workflow's own event list

    def _on_workflow_execution_signaled_event_attributes(self, event: HistoryEvent) -> None:
        a = event.workflow_execution_signaled_event_attributes
        payload = _first(a.input)
        claimed = payload.get("actor") if isinstance(payload, dict) else None
        actor = claimed if isinstance(claimed, dict) else None
        sent: dict[str, Any] = {}
        if actor is not None and "sent_at" in actor:
            # when the API received the request (lean-case-v12 times the action by it); the
            # case's events record the actor without it
            actor = {key: value for key, value in actor.items() if key != "sent_at"}
            sent["sent_at"] = claimed["sent_at"]
        entry = self._add(
            event,
            "signal",
            a.signal_name,
            actor,
            signal=a.signal_name,
            payload=payload,
            payloads=len(a.input.payloads),
            **sent,
        )
        self._excerpts[event.event_id] = message_excerpt(a.input)
        original = self._answered_request(actor)
        if original is not None:  # the case ignores a request id it has answered
            entry.details["retry_of"] = original.event_id
            self._retries.append(entry)
            return
        # a case answers every message, so each awaits its outcome: one without an actor
        # only a rejection from the unknown sender can answer (a message that did not
        # decode). A child's own messages without one (the ladder's stop) record nothing.
        if actor is not None or self.workflow_type == CASE_WORKFLOW:
            self._awaiting_effect.append(entry)

    def _answered_request(self, actor: dict[str, Any] | None) -> TimelineEntry | None:
        """The earlier signal carrying the same request id, unless it did not decode (then
        the case never took its request id, and this one is no retry)."""
        request_id = (actor or {}).get("request_id")
        if not request_id:
            return None
        return next(
            (e for e in self.entries[:-1] if e.kind == "signal"
             and (e.details.get("claimed_actor") or e.actor or {}).get("request_id") == request_id
             and e.details.get("sender") != "unknown"),
            None,
        )

    def _on_workflow_execution_update_accepted_event_attributes(self, event: HistoryEvent) -> None:
        a = event.workflow_execution_update_accepted_event_attributes
        request = a.accepted_request
        args = decode_payloads(request.input.args)
        first = args[0] if args and isinstance(args[0], dict) else {}
        actor = first.get("actor")
        self._add(
            event, "update", f"update {request.input.name}", actor,
            update=request.input.name, args=args,
        )

    def _recorded(self, event: HistoryEvent, batch: RecordedBatch) -> None:
        self._last_recording_task = self._last_task_completed
        for recorded in batch.events:
            actor = recorded.get("actor")
            kind = str(recorded.get("kind"))
            data = recorded.get("data") or {}
            misfit = self._misfit_of(kind, actor, data)
            if misfit is not None:
                self._awaiting_effect.remove(misfit)
                self._undecoded(misfit, event, data, recorded)
                continue
            cause = next((e for e in self._awaiting_effect if e.actor == actor), None)
            if cause is not None:
                self._awaiting_effect.remove(cause)
                self._explain(cause, event, kind, data, recorded)
                continue
            at = _parse_time(recorded.get("at"))
            self._add(
                event, kind, _recorded_summary(kind, data), actor, at=at,
                seq=recorded.get("seq"), data=data,
            )

    def _misfit_of(
        self, kind: str, actor: dict[str, Any] | None, data: dict[str, Any]
    ) -> TimelineEntry | None:
        """The signal a rejection from the unknown sender answers: the case records a message
        that did not decode under that sender, with the signal's name as ``action`` and an
        excerpt of its payloads, which are in the signal's own history event."""
        if kind != "rejected" or not _from_unknown_sender(actor):
            return None
        excerpt = data.get("payload")
        return next(
            (e for e in self._awaiting_effect
             if data.get("action") == printable(str(e.details.get("signal")), 64)
             and (excerpt is None or self._excerpts.get(e.event_id) == excerpt)),
            None,
        )

    def _undecoded(
        self,
        signal: TimelineEntry,
        event: HistoryEvent,
        data: dict[str, Any],
        recorded: dict[str, Any],
    ) -> None:
        """A signal the case could not decode: its sender is unknown (an actor its payload
        names is only claimed), and the case refused it."""
        if signal.actor is not None:
            signal.details["claimed_actor"] = signal.actor
        signal.actor = recorded.get("actor")
        signal.details["sender"] = "unknown"
        if signal.details.get("payloads") == 0:
            signal.summary += " (no payload)"
        elif data.get("code") != "unknown_signal":
            signal.summary += " (payload of the wrong shape)"
        self._explain(signal, event, "rejected", data, recorded)
        # a retry of this one's request id was no retry: the case never took the id
        retry = next(
            (e for e in self._retries if e.details.get("retry_of") == signal.event_id), None
        )
        if retry is not None:
            self._retries.remove(retry)
            del retry.details["retry_of"]
            self._awaiting_effect.append(retry)

    @staticmethod
    def _explain(
        signal: TimelineEntry,
        event: HistoryEvent,
        kind: str,
        data: dict[str, Any],
        recorded: dict[str, Any],
    ) -> None:
        signal.details["recorded"] = recorded
        signal.details["outcome_event_id"] = event.event_id
        if kind == "rejected":
            signal.details["outcome"] = "rejected"
            signal.details["code"] = data.get("code")
            signal.details["reason"] = data.get("reason")
            signal.summary += f" — rejected ({data.get('code')}): {data.get('reason')}"
        else:
            signal.details["outcome"] = "applied"
            signal.summary += f" — applied: {_recorded_summary(kind, data)}"

    # activities

    def _on_activity_task_scheduled_event_attributes(self, event: HistoryEvent) -> None:
        a = event.activity_task_scheduled_event_attributes
        args = decode_payloads(a.input)
        name = a.activity_type.name
        self._activities[event.event_id] = (name, args[0] if len(args) == 1 else args)
        if name == PROJECTION_ACTIVITY and args and isinstance(args[0], dict):
            batch = RecordedBatch(event.event_id, list(args[0].get("new_events") or []))
            self.batches.append(batch)
            self._projections[event.event_id] = batch
            self._recorded(event, batch)

    def _on_activity_task_completed_event_attributes(self, event: HistoryEvent) -> None:
        a = event.activity_task_completed_event_attributes
        name, arg = self._activities.get(a.scheduled_event_id, ("?", None))
        if name == PROJECTION_ACTIVITY:
            if a.scheduled_event_id in self._projections:
                self._projections[a.scheduled_event_id].completed = True
            return  # bookkeeping: its events are already on the timeline
        result = _first(a.result)
        self._add(
            event, "activity", _activity_summary(name, result),
            activity=name, input=arg, result=result,
        )

    def _on_workflow_task_failed_event_attributes(self, event: HistoryEvent) -> None:
        message = task_failure(event)
        self._add(event, "workflow_task_failed", f"workflow task failed: {message}",
                  message=message)

    def _on_activity_task_failed_event_attributes(self, event: HistoryEvent) -> None:
        a = event.activity_task_failed_event_attributes
        name, arg = self._activities.get(a.scheduled_event_id, ("?", None))
        self._add(
            event, "activity_failed", f"activity {name} failed: {a.failure.message}",
            activity=name, input=arg, retry_state=a.retry_state,
        )

    def _on_activity_task_timed_out_event_attributes(self, event: HistoryEvent) -> None:
        a = event.activity_task_timed_out_event_attributes
        name, arg = self._activities.get(a.scheduled_event_id, ("?", None))
        self._add(
            event, "activity_timed_out", f"activity {name} timed out: {a.failure.message}",
            activity=name, input=arg,
        )

    # timers (deadlines)

    def _on_timer_started_event_attributes(self, event: HistoryEvent) -> None:
        a = event.timer_started_event_attributes
        summary = _summary_of(event) or f"timer {a.timer_id}"
        started = event.event_time.ToDatetime(tzinfo=UTC)
        fires_at = started + a.start_to_fire_timeout.ToTimedelta()
        self._timers[a.timer_id] = _Timer(summary, fires_at)
        previous = self._last_deadline.get(summary)
        self._last_deadline[summary] = fires_at
        if previous is not None and abs(previous - fires_at) > _MOVE_TOLERANCE:
            self._add(
                event, "deadline_moved",
                f"{summary} moved from {_time(previous)} to {_time(fires_at)}",
                timer=summary, timer_id=a.timer_id, previous=previous.isoformat(),
                fires_at=fires_at.isoformat(),
            )
            return
        self._add(
            event, "timer_started", f"{summary}: timer set, fires at {_time(fires_at)}",
            timer=summary, timer_id=a.timer_id, fires_at=fires_at.isoformat(),
        )

    def _on_timer_fired_event_attributes(self, event: HistoryEvent) -> None:
        a = event.timer_fired_event_attributes
        timer = self._timers.get(a.timer_id)
        summary = timer.summary if timer else f"timer {a.timer_id}"
        self._add(event, "timer_fired", f"{summary} reached", timer=summary, timer_id=a.timer_id)

    def _on_timer_canceled_event_attributes(self, event: HistoryEvent) -> None:
        a = event.timer_canceled_event_attributes
        timer = self._timers.get(a.timer_id)
        summary = timer.summary if timer else f"timer {a.timer_id}"
        self._add(
            event, "timer_canceled", f"{summary}: timer cancelled (condition met or time moved)",
            timer=summary, timer_id=a.timer_id,
        )

    # search attributes and markers

    def _on_upsert_workflow_search_attributes_event_attributes(self, event: HistoryEvent) -> None:
        fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
        values = {name: decode_payload(p) for name, p in sorted(fields.indexed_fields.items())}
        shown = ", ".join(f"{k}={v}" for k, v in values.items())
        self._add(event, "search_attributes", f"search attributes: {shown}", values=values)

    def _on_marker_recorded_event_attributes(self, event: HistoryEvent) -> None:
        a = event.marker_recorded_event_attributes
        details = {k: decode_payloads(v) for k, v in a.details.items()}
        if a.marker_name == LOCAL_ACTIVITY_MARKER:
            return self._local_activity(event, details)
        summary = f"marker {a.marker_name}"
        patch = (details.get("patch-data") or [None])[0]
        if a.marker_name == PATCH_MARKER and isinstance(patch, dict):
            state = "deprecated " if patch.get("deprecated") else ""
            summary = f"code version: {state}patch {patch.get('id')} (workflow.patched)"
        self._add(event, "marker", summary, marker=a.marker_name, **details)

    def _local_activity(self, event: HistoryEvent, details: dict[str, list[Any]]) -> None:
        """A local activity's marker: its result (the input is not recorded), or its failure."""
        meta = (details.get("data") or [None])[0]
        meta = meta if isinstance(meta, dict) else {}
        name = str(meta.get("activity_type") or "?")
        result = (details.get("result") or [None])[0]
        if event.marker_recorded_event_attributes.HasField("failure"):
            message = event.marker_recorded_event_attributes.failure.message
            self._add(event, "activity_failed", f"activity {name} failed: {message}",
                      activity=name, local=True)  # fmt: skip
            return
        if name == LOCAL_PROJECTION_ACTIVITY and isinstance(result, dict):
            batch = RecordedBatch(event.event_id, list(result.get("events") or []), True)
            self.batches.append(batch)
            self._recorded(event, batch)
            return
        self._add(event, "activity", _activity_summary(name, result),
                  activity=name, result=result, local=True)  # fmt: skip

    # child workflows (reassignment, escalation)

    def _on_start_child_workflow_execution_initiated_event_attributes(
        self, event: HistoryEvent
    ) -> None:
        a = event.start_child_workflow_execution_initiated_event_attributes
        self._children[event.event_id] = (a.workflow_id, a.workflow_type.name)
        args = decode_payloads(a.input)
        self._add(
            event, "child_initiated", f"child {a.workflow_type.name} {a.workflow_id} requested",
            workflow_id=a.workflow_id, workflow_type=a.workflow_type.name, input=args,
        )

    def _on_start_child_workflow_execution_failed_event_attributes(
        self, event: HistoryEvent
    ) -> None:
        a = event.start_child_workflow_execution_failed_event_attributes
        self._add(
            event, "child_start_failed", f"child {a.workflow_id} could not start ({a.cause})",
            workflow_id=a.workflow_id, workflow_type=a.workflow_type.name,
        )

    def _child(self, event: HistoryEvent, attr: str, kind: str, text: str, **details: Any) -> None:
        a = getattr(event, attr)
        workflow_id = a.workflow_execution.workflow_id
        workflow_type = a.workflow_type.name
        self._add(
            event, kind, f"child {workflow_type} {workflow_id} {text}",
            workflow_id=workflow_id, run_id=a.workflow_execution.run_id,
            workflow_type=workflow_type, **details,
        )

    def _on_child_workflow_execution_started_event_attributes(self, event: HistoryEvent) -> None:
        self._child(event, "child_workflow_execution_started_event_attributes", "child_started",
                    "started")

    def _on_child_workflow_execution_completed_event_attributes(self, event: HistoryEvent) -> None:
        a = event.child_workflow_execution_completed_event_attributes
        self._child(event, "child_workflow_execution_completed_event_attributes",
                    "child_completed", "completed", result=_first(a.result))

    def _on_child_workflow_execution_failed_event_attributes(self, event: HistoryEvent) -> None:
        a = event.child_workflow_execution_failed_event_attributes
        self._child(event, "child_workflow_execution_failed_event_attributes", "child_failed",
                    f"failed: {a.failure.message}")

    def _on_child_workflow_execution_canceled_event_attributes(self, event: HistoryEvent) -> None:
        self._child(event, "child_workflow_execution_canceled_event_attributes", "child_canceled",
                    "cancelled")

    def _on_child_workflow_execution_timed_out_event_attributes(self, event: HistoryEvent) -> None:
        self._child(event, "child_workflow_execution_timed_out_event_attributes",
                    "child_timed_out", "timed out")

    def _on_child_workflow_execution_terminated_event_attributes(
        self, event: HistoryEvent
    ) -> None:
        self._child(event, "child_workflow_execution_terminated_event_attributes",
                    "child_terminated", "terminated")

    def _on_signal_external_workflow_execution_initiated_event_attributes(
        self, event: HistoryEvent
    ) -> None:
        a = event.signal_external_workflow_execution_initiated_event_attributes
        target = a.workflow_execution.workflow_id
        self._add(
            event, "signal_sent", f"signal {a.signal_name} sent to {target}",
            workflow_id=target, signal=a.signal_name, payload=_first(a.input),
        )


def _summary_of(event: HistoryEvent) -> str | None:
    if not event.HasField("user_metadata") or not event.user_metadata.HasField("summary"):
        return None
    value = decode_payload(event.user_metadata.summary)
    return value if isinstance(value, str) else None


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return value if isinstance(value, datetime) else None


def decode_history(history: WorkflowHistory, source: str = "temporal") -> Timeline:
    """The history as the auditor's timeline (children not yet attached)."""
    decoder = _Decoder(history)
    decoder.run()
    return Timeline(
        workflow_id=history.workflow_id,
        run_id=history.run_id,
        workflow_type=decoder.workflow_type,
        source=source,
        status=decoder.status,
        event_count=len(history.events),
        stuck=failing_task(history),
        entries=decoder.entries,
    )


def recorded_batches(history: WorkflowHistory) -> list[RecordedBatch]:
    """The workflow's own event list as carried by its ``project_case`` activities (their
    inputs) or, since ``lean-case-v1``, its local ``project_events`` activities (their
    results)."""
    decoder = _Decoder(history)
    decoder.run()
    return decoder.batches


def child_workflow_ids(history: WorkflowHistory) -> list[str]:
    """Workflow ids of the children this history started (or tried to), in order."""
    ids: list[str] = []
    for event in history.events:
        if event.HasField("start_child_workflow_execution_initiated_event_attributes"):
            child_id = event.start_child_workflow_execution_initiated_event_attributes.workflow_id
            if child_id not in ids:
                ids.append(child_id)
    return ids


def child_runs(history: WorkflowHistory) -> list[tuple[str, str | None]]:
    """(workflow id, run id) of each child this history started, in order; the run id is
    None while the history records no start of it (it failed to start, or had not yet). A
    reset case's runs reuse their children's ids: only the run id tells whose child is whose."""
    runs: dict[str, str | None] = {}
    for event in history.events:
        if event.HasField("start_child_workflow_execution_initiated_event_attributes"):
            a = event.start_child_workflow_execution_initiated_event_attributes
            runs.setdefault(a.workflow_id, None)
        elif event.HasField("child_workflow_execution_started_event_attributes"):
            run = event.child_workflow_execution_started_event_attributes.workflow_execution
            runs[run.workflow_id] = run.run_id
    return list(runs.items())


def iter_entries(timeline: Timeline, depth: int = 0) -> Iterable[tuple[int, TimelineEntry]]:
    """Entries with their nesting depth, children's entries right after their start entry."""
    for entry in timeline.entries:
        yield depth, entry
        if entry.child is not None:
            yield from iter_entries(entry.child, depth + 1)


TimelineEntry.model_rebuild()
