"""Request bodies have a cap (api/body_limit.py, JIESU_MAX_BODY_BYTES; 64 KiB for the SMS
webhook): without it, anyone could make the API read a body of any size — the SMS webhook
read 64 MiB before checking the signature, /api/v1/self-service needs no key — and one
client's body could take the memory every other citizen's request needs. Over the cap: 413
in the API's error shape, before the body is read (Content-Length) or as soon as it passes
the cap (streamed); bodies under it are served as before."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
from test_api import error_of
from test_sms import INBOUND, deliver, sms

from jiesu.config import Settings

SELF_SERVICE = "/api/v1/self-service/codes"


class Body:
    """A request body handed over in 64 KiB chunks, counting how much the API pulled."""

    def __init__(self, size: int) -> None:
        self.size, self.pulled = size, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunk = b" " * 65536
        while self.pulled < self.size:
            piece = chunk[: self.size - self.pulled]
            self.pulled += len(piece)
            yield piece


async def test_an_unsigned_huge_body_is_refused_before_it_is_read(api: httpx.AsyncClient) -> None:
    """64 MiB unsigned to the SMS webhook: was read whole, then answered 401."""
    body = Body(64 * 1024 * 1024)
    answer = await api.post(INBOUND, content=body, headers={
        "Content-Type": "application/json", "Content-Length": str(body.size)})  # fmt: skip
    error = error_of(answer, 413, "payload_too_large")
    assert "65536 bytes" in error["message"]
    assert body.pulled == 0  # not a byte read


async def test_the_sms_webhook_takes_64_kib_and_its_longest_messages(
    api: httpx.AsyncClient,
) -> None:
    """A signed message of the longest text is under the webhook's cap, even in characters
    JSON escapes as surrogate pairs (12 bytes each: ~24 KB); 65 KiB is not."""
    padded = {**sms("13800001234", "路灯坏了"), "padding": " " * 65 * 1024}
    error_of(await deliver(api, padded), 413, "payload_too_large")
    longest = {"message_id": "x" * 200, "from": "+8613800001234", "text": "\U0001F6A7" * 2000}
    assert len(json.dumps(longest).encode()) < 64 * 1024  # (ensure_ascii: 12 bytes a character)


async def test_a_streamed_body_over_the_cap_is_cut_off_and_refused(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    """No Content-Length (chunked): counted as it comes, refused once past the cap, on an
    endpoint anyone may call without a key."""
    cap = settings.max_body_bytes
    body = Body(8 * cap)
    answer = await api.post(
        SELF_SERVICE, content=body, headers={"Content-Type": "application/json"}
    )
    error = error_of(answer, 413, "payload_too_large")
    assert error["message"] == f"the request body is larger than {cap} bytes"
    assert body.pulled <= cap + 65536  # read up to the cap and one chunk more, no further
    # a declared length over the cap: at once
    declared = Body(cap + 1)
    answer = await api.post(SELF_SERVICE, content=declared, headers={
        "Content-Type": "application/json", "Content-Length": str(cap + 1)})  # fmt: skip
    error_of(answer, 413, "payload_too_large")
    assert declared.pulled == 0


async def test_bodies_under_the_cap_are_served_as_before(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    """A body under the cap, streamed or not, reaches the endpoint (422: not a phone)."""
    for content in (b'{"phone": "x"}', Body(1000)):
        answer = await api.post(
            SELF_SERVICE, content=content, headers={"Content-Type": "application/json"}
        )
        assert answer.status_code == 422, answer.text
