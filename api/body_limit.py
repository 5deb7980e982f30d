"""A cap on request bodies, for the whole application (pure ASGI middleware).

Without it a client could send a body of any size: FastAPI reads a JSON body whole before the
endpoint runs, and the SMS webhook read its body before checking the signature (64 MiB
unsigned: read, then 401). A body over the cap is answered ``413 payload_too_large`` in the
API's error shape:

- a ``Content-Length`` over the cap at once, before the application runs or reads anything;
- a body without one (chunked) is counted as it is read: past the cap the application gets
  no more of it, whatever it answered is discarded, and the client gets the 413.

The cap is JIESU_MAX_BODY_BYTES (2 MiB by default: the largest bodies the API takes are a few
dozen KB — a report, a 64 KB calendar CSV in the console, a 64 KB Open311 form; nothing
uploads media); some paths have a smaller one (``SMALLER``: the SMS webhook, whose message is
at most 2,000 characters: 64 KiB). Sits inside errors.RequestContext, which gives the 413 its
request id.
"""

from __future__ import annotations

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response

SMALLER = {"/api/v1/channels/sms/inbound": 64 * 1024}
"""Paths with a smaller cap than JIESU_MAX_BODY_BYTES (bytes). The SMS webhook's: a message of
2,000 characters, each JSON-escaped as a surrogate pair (12 bytes), is ~24 KB."""


class _TooLarge(Exception):
    """Raised into the application when a streamed body passes the cap."""


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    def limit(self, path: str) -> int:
        return min(self.max_bytes, SMALLER.get(path.rstrip("/") or "/", self.max_bytes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope.get("path", ""))
        length = Headers(scope=scope).get("content-length", "")
        if length.isascii() and length.isdigit() and int(length) > limit:
            await _too_large(limit)(scope, receive, send)
            return
        received, over, started = 0, False, False

        async def counting() -> Message:
            nonlocal received, over
            if over:
                raise _TooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    raise _TooLarge
            return message

        async def unless_over(message: Message) -> None:
            nonlocal started
            if over:
                return  # the application's answer to a body it did not get whole
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting, unless_over)
        except Exception:
            if not over or started:
                raise
        if over and not started:
            await _too_large(limit)(scope, receive, send)


def _too_large(limit: int) -> JSONResponse:
    return error_response(
        413, "payload_too_large", f"the request body is larger than {limit} bytes",
        headers={"Connection": "close"},
    )  # fmt: skip
