"""Pydantic's refusals in one line a person reads: ``field: problem; field: problem``.

``str(ValidationError)`` is several lines with the input repeated and, for every error, a
"For further information visit https://errors.pydantic.dev/…" line — a link to a site an
intranet user may not reach, in answers (``422 invalid_sms``) and CLI errors alike."""

from __future__ import annotations

from pydantic import ValidationError


def problems(err: ValidationError, limit: int = 500) -> str:
    """Each error as ``field: message`` (the model's own name when the field is the whole
    input), joined by ``; ``, at most ``limit`` characters."""
    parts = []
    for error in err.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in error.get("loc", ())) or err.title
        parts.append(f"{where}: {error.get('msg', '')}")
    text = "; ".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plain(err: Exception, limit: int = 500) -> str:
    """A ValidationError through :func:`problems`; any other error as it says itself."""
    return problems(err, limit) if isinstance(err, ValidationError) else str(err)[:limit]
