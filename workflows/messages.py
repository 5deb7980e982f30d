"""Decoding the messages (signals) a workflow receives, whatever the sender put in them.

Temporal hands a signal's payloads to a handler after decoding them with the handler's type
hints. A payload that does not decode is dropped with only a worker log line, and a handler
whose parameters do not match the number of payloads fails the workflow task on every retry:
the case is wedged until someone resets it (DESIGN.md §4). So our workflows take every signal
through one *dynamic* handler that receives the raw payloads, and decode them here. A message
that does not fit is returned as a :class:`Misfit`, which the case records as a rejection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue

with workflow.unsafe.imports_passed_through():
    from jiesu.case.excerpts import excerpt, printable


@dataclass(frozen=True)
class Misfit:
    """A message that could not be decoded: why, and a printable excerpt of what came."""

    code: str  # invalid_payload | unknown_signal
    reason: str
    excerpt: str


__all__ = ["Misfit", "decode", "printable"]


def _excerpt(args: Sequence[RawValue]) -> str:
    return excerpt(a.payload.data for a in args)


def decode(name: str, args: Sequence[RawValue], model: type | None) -> Any:
    """The single payload of signal ``name`` as ``model`` (None: a signal without payload),
    or a :class:`Misfit` saying why not."""
    expected = 0 if model is None else 1
    if len(args) != expected:
        return Misfit(
            "invalid_payload",
            f"{name} takes {expected} payload(s), got {len(args)}",
            _excerpt(args),
        )
    if model is None:
        return None
    try:
        value = workflow.payload_converter().from_payload(args[0].payload, model)
    except Exception as err:  # any decoding or validation failure is the sender's fault
        first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
        return Misfit("invalid_payload", printable(first_line), _excerpt(args))
    if not isinstance(value, model):
        # binary/null, binary/plain and protobuf payloads (a client's None, bytes or message)
        # decode to None, the bytes or the message, whatever type is asked for
        encoding = args[0].payload.metadata.get("encoding", b"").decode("utf-8", "replace")
        reason = f"{name} takes a JSON object, not a payload encoded {encoding or 'unnamed'}"
        return Misfit("invalid_payload", printable(reason), _excerpt(args))
    return value


def unknown(name: str, args: Sequence[RawValue]) -> Misfit:
    return Misfit("unknown_signal", f"no such signal: {printable(name, 64)}", _excerpt(args))
