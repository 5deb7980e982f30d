"""How a Jiesu process that has used a Temporal client ends: without the interpreter's teardown.

Once a Temporal client has been used, the SDK's Rust threads can abort the finalising
interpreter ("Fatal Python error: PyGILState_Release: thread state … must be current when
releasing", then SIGABRT: temporalio/sdk-python#300). A worker stopped cleanly exited -6 so in
a fresh-clone suite on a loaded machine (tests/test_stack.py, 2026-11-23), and the CLI's
commands had done the same before. Everything that must happen at exit — the worker's
shutdown, the spans sent, the pool closed — has happened by the time this is called.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn


class CannotStart(Exception):
    """A process refusing to start for a reason its message says in full (the database's
    schema behind its code, jiesu.db.SchemaNotReady): logged as that one line, without a
    traceback, exit 1."""


def hard_exit(code: int) -> NoReturn:
    """Flush what was said (logging, stdout, stderr), then end the process with ``code``."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_then_exit(main: Callable[[], Coroutine[Any, Any, None]], name: str) -> NoReturn:
    """``asyncio.run(main())``, then :func:`hard_exit`: 0 when it returns or is interrupted
    (Ctrl-C), 1 with the failure logged when it raises — the worker's and the mail listener's
    ``__main__``. A refusal to start (CannotStart) is logged as its one line."""
    code = 0
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    except CannotStart as refusal:
        logging.getLogger(name).error("%s", refusal)
        code = 1
    except Exception:
        logging.getLogger(name).exception("%s failed", name)
        code = 1
    hard_exit(code)
