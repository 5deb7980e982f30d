"""The API reads JSON bodies only. A body of another media type is answered ``415`` at once:
FastAPI would otherwise hand it to validation as raw bytes and answer a puzzling 422."""

from __future__ import annotations

from fastapi import Request

from api.errors import ApiError


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return "transfer-encoding" in request.headers or (length is not None and length != "0")


async def json_bodies_only(request: Request) -> None:
    """An app-wide dependency. A body without a Content-Type is read as JSON, as FastAPI does."""
    content_type = request.headers.get("content-type")
    if content_type is not None and _has_body(request) and not _is_json(content_type):
        raise ApiError(
            415, "unsupported_media_type", f"send the body as application/json, not {content_type}"
        )
