"""The Temporal client, always with the pydantic data converter (or payloads won't round-trip)."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from jiesu.config import Settings


async def connect_to(address: str, namespace: str, *, lazy: bool = False) -> Client:
    """``lazy``: connect on first use (a server that is down then fails that call, not this)."""
    return await Client.connect(
        address, namespace=namespace, data_converter=pydantic_data_converter, lazy=lazy
    )


async def connect(settings: Settings, *, lazy: bool = False) -> Client:
    return await connect_to(settings.temporal_address, settings.temporal_namespace, lazy=lazy)
