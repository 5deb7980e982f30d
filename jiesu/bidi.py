"""Bidirectional formatting characters (Unicode bidi controls), defined once for every place
that shows people's text: the audit CLI's terminal lines (jiesu.ops.audit_cli.terminal_safe)
and the web console's pages (api.console.web).

Embeddings and overrides (U+202A–U+202E), isolates (U+2066–U+2069) and the marks (U+200E,
U+200F, U+061C) reorder how the characters around them are shown: "退款\u202e0001\u202c元"
reads as 退款1000元, a phone number or a case number can read backwards. A reader must see
such a character, not be steered by it, so each is shown as its escape ``\\u202e``: plain
ASCII, the same in a terminal, an HTML page (text or attribute) and a JSON string.
"""

from __future__ import annotations

BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def escaped(char: str) -> str:
    """``char``'s escape as a reader sees it: ``\\u202e``."""
    return f"\\u{ord(char):04x}"


def visible(text: str) -> str:
    """``text`` with every bidirectional control shown as its escape (nothing else changed)."""
    if not any(c in BIDI_CONTROLS for c in text):
        return text
    return "".join(escaped(c) if c in BIDI_CONTROLS else c for c in text)
