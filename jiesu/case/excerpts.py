"""How a message the case could not decode is written into its rejection: its name and an
excerpt of its payloads, printable. One rule for the workflows, which write it
(workflows/messages.py), and for the auditor's timeline, which finds the signal a rejection
answers by the same excerpt (jiesu/audit/timeline.py): if the two differed, a refusal would no
longer match its signal. Pure functions, safe in the workflow sandbox."""

from __future__ import annotations

import re
from collections.abc import Iterable

EXCERPT_CHARS = 200  # how much of an undecodable payload the auditors get to see
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def printable(text: str, limit: int = EXCERPT_CHARS) -> str:
    """Control characters escaped (they cannot be stored or shown), cut to ``limit``."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text[:limit])


def excerpt(payloads: Iterable[bytes]) -> str:
    """The excerpt of a message's payloads (their bytes, in order) as the case records it."""
    return printable(" | ".join(data.decode("utf-8", "replace") for data in payloads))
