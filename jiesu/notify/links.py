"""The links Jiesu sends to people (one place, so an SMS, an e-mail and the console agree)."""

from __future__ import annotations

from jiesu.config import Settings

FOLLOW_UP_PATH = "/my/"
"""The citizen's follow-up page (办件查询): the console serves ``/my/<token>``."""


def base_url(settings: Settings) -> str:
    """Where the console is reached: JIESU_PUBLIC_URL, else the API's own address."""
    return (settings.public_url or f"http://{settings.api_host}:{settings.api_port}").rstrip("/")


def follow_up_link(settings: Settings, token: str) -> str:
    """The link in the SMS / e-mail sent at intake: the citizen's token is the credential, so
    the link is sent to the reporter only and never logged."""
    return f"{base_url(settings)}{FOLLOW_UP_PATH}{token}"
