"""``python -m api [uvicorn's options]``: the API as ``uvicorn api.main:app [options]`` serves
it, ended as the worker ends (jiesu.exiting): without the interpreter's teardown, in which
the Temporal SDK's threads can abort the process (temporalio/sdk-python#300), and with exit
code 0 after a stop asked by SIGINT or SIGTERM. ``make run``'s stack, the Dockerfile and
docker-compose start the API this way; ``uvicorn api.main:app`` still works, ending as uvicorn
does (it raises the signal again once shut down: exit −15 for SIGTERM)."""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence
from types import FrameType
from typing import NoReturn

import uvicorn

from jiesu.exiting import hard_exit

APP = "api.main:app"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(Exception):
    """A stop signal, raised again by uvicorn after its graceful shutdown (it restores the
    handlers it found — these — and raises each signal it caught)."""


def _stopped(signum: int, _frame: FrameType | None) -> None:
    raise Stopped(signum)


def run(argv: Sequence[str] | None = None) -> NoReturn:
    """uvicorn's own command line with the app given; its exit code, through hard_exit."""
    options = list(sys.argv[1:] if argv is None else argv)
    for signum in STOP_SIGNALS:
        signal.signal(signum, _stopped)
    code: object = 0
    try:  # uvicorn's command (click) ends in SystemExit: 0, 2 for usage, 3 when it cannot start
        uvicorn.main(args=[APP, *options], prog_name="python -m api")
    except SystemExit as stop:
        code = stop.code
    except Stopped:
        code = 0  # shut down gracefully, as asked
    hard_exit(code if isinstance(code, int) else (0 if code is None else 1))


if __name__ == "__main__":
    run()
