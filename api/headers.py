"""Security headers on every response, errors and docs included.

- ``X-Content-Type-Options: nosniff``: a browser never guesses a type (a JSON body with
  markup in a citizen's text is not run as HTML);
- ``X-Frame-Options: DENY`` and ``Content-Security-Policy: frame-ancestors 'none'``: no page
  may frame the API or its docs (clickjacking); the CSP says nothing else, because the docs
  pages start Swagger UI / ReDoc with an inline script. A response that brings its own
  policy keeps it (the console's pages: api/console/web.py, ``frame-ancestors 'none'`` too);
- ``Referrer-Policy: no-referrer``: case numbers in URLs do not leak to other sites;
- ``Cache-Control: no-store`` on everything but the docs' static assets: case data and
  errors never sit in a browser's or a proxy's cache. The assets (installed with the
  package, see api/docs.py) are the same for everyone and may be cached.

A plain ASGI middleware (no BaseHTTPMiddleware): it only adds headers at ``http.response.start``
and never touches the body, so streaming and background tasks behave as without it.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADERS: dict[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}
NO_STORE = "no-store"


class SecurityHeaders:
    def __init__(self, app: ASGIApp, *, cacheable_prefix: str) -> None:
        self.app = app
        self.cacheable_prefix = cacheable_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cacheable = scope["path"].startswith(self.cacheable_prefix)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    # a page's own policy (the console's, which forbids framing too) stays
                    if name != "Content-Security-Policy" or name not in headers:
                        headers[name] = value
                if not cacheable:
                    headers["Cache-Control"] = NO_STORE
            await send(message)

        await self.app(scope, receive, send_with_headers)
