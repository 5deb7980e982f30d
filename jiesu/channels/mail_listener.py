"""The inbound e-mail listener process: an SMTP server (aiosmtpd) on JIESU_MAIL_HOST:
JIESU_MAIL_PORT that files mails to JIESU_MAIL_ADDRESS as cases (jiesu/channels/mail.py).

    python -m jiesu.channels.mail_listener      (started by `make run` and docker-compose)

It runs in our own event loop (``loop.create_server`` with aiosmtpd's ``SMTP`` protocol, as
aiosmtpd's Controller does in a thread), next to the PostgreSQL pool and the Temporal client
it files with. Plain SMTP without TLS or authentication: put it behind the county's mail
relay (MX), which delivers the complaints address to it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from aiosmtpd.smtp import SMTP
from temporalio.client import Client

from jiesu import db
from jiesu.channels.mail import ComplaintMailHandler
from jiesu.client import connect
from jiesu.config import Settings, get_settings
from jiesu.exiting import run_then_exit
from jiesu.notify.mail import Mailer, mailer_from_env

log = logging.getLogger("jiesu.mail")


@asynccontextmanager
async def listening(
    handler: ComplaintMailHandler, settings: Settings, host: str, port: int
) -> AsyncIterator[asyncio.Server]:
    """Serve SMTP with ``handler`` on ``host:port`` (port 0: any free one) until the block
    ends."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            handler, data_size_limit=settings.mail_max_bytes, enable_SMTPUTF8=True,
            hostname=settings.mail_address.rpartition("@")[2] or None, loop=loop,
        ),
        host, port,
    )  # fmt: skip
    try:
        yield server
    finally:
        server.close()
        await server.wait_closed()


def handler_for(
    pool: asyncpg.Pool, client: Client, settings: Settings, mailer: Mailer | None = None
) -> ComplaintMailHandler:
    return ComplaintMailHandler(pool, client, settings, mailer or mailer_from_env(pool))


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s mail %(levelname)s %(message)s")
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd prints addresses at INFO
    settings = get_settings()
    pool = await db.create_pool(settings.database_url)
    try:  # a mail filed into a schema behind this code would fail half-way
        await db.check_schema(pool, "mail listener")
    except db.SchemaNotReady:
        await pool.close()
        raise  # one line, exit 1 (jiesu.exiting)
    client = await connect(settings, lazy=True)  # a mail while Temporal is down: 451, retried
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        handler = handler_for(pool, client, settings)
        async with listening(handler, settings, settings.mail_host, settings.mail_port):
            log.info("SMTP listener on %s:%d", settings.mail_host, settings.mail_port)
            await stop.wait()
    finally:
        await pool.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """No options: settings come from the environment. ``--help`` says which; anything else is
    a usage error (exit 2) rather than a listener started with the argument ignored."""
    parser = argparse.ArgumentParser(
        prog="python -m jiesu.channels.mail_listener",
        description="The inbound e-mail listener: an SMTP server that files mails to the "
        "complaints address as cases (docs/channels.md). No options; it is configured by the "
        "environment: JIESU_MAIL_HOST, JIESU_MAIL_PORT (127.0.0.1:2525), JIESU_MAIL_ADDRESS "
        "(12345@jiesu.localhost), JIESU_MAIL_MAX_BYTES, JIESU_MAIL_REPLY (log | smtp), "
        "DATABASE_URL, TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE.",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    parse_args()
    run_then_exit(main, "mail listener")  # without the interpreter's teardown (jiesu.exiting)
