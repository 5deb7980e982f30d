"""The ``jiesu`` command when a server is out of reach: one line that says which and what to
set, exit code 2 — not a traceback (the usual first mistake beside ``make run``)."""

from __future__ import annotations

from temporalio.testing import WorkflowEnvironment
from test_audit import run_cli

from jiesu.config import Settings
from jiesu.ops.cli import _without_password


async def test_a_command_that_cannot_reach_postgresql_says_so_in_one_line(
    env: WorkflowEnvironment, settings: Settings
) -> None:
    for dsn, shown in (
        ("postgresql://postgres:s3cret@127.0.0.1:1/jiesu", "postgresql://postgres:***@127.0.0.1:1"),
        ("postgresql://postgres@127.0.0.1:1/jiesu?password=s3cret",  # asyncpg reads it too
         "postgresql://postgres@127.0.0.1:1/jiesu?password=***"),
    ):  # fmt: skip
        closed = settings.model_copy(update={"database_url": dsn})  # port 1: nothing listens
        code, _out, err = await run_cli(env, closed, "archive")
        assert code == 2, (code, err)
        assert "Traceback" not in err and "s3cret" not in err, err
        [line] = err.strip().splitlines()
        assert line.startswith(f"error: cannot reach PostgreSQL at {shown}"), line
        assert "set DATABASE_URL" in line


def test_a_password_is_not_printed() -> None:
    assert _without_password("postgresql://u:pw@h:5/db") == "postgresql://u:***@h:5/db"
    assert _without_password("postgresql://postgres:@/jiesu?host=/tmp/x") == (
        "postgresql://postgres:@/jiesu?host=/tmp/x"
    )
    # a password given as a parameter (asyncpg reads ?password= and ?sslpassword=)
    assert _without_password("postgresql://u@h:5/db?password=pw&sslmode=disable") == (
        "postgresql://u@h:5/db?password=***&sslmode=disable"
    )
    assert "s3" not in _without_password("postgresql://u:a@h/db?sslpassword=s3&Password=s3")
