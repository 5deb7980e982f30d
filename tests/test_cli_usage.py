"""The ``jiesu`` command as its help and the docs describe it: every action listed in its
group's ``--help``, a wrong argument answered as a usage error in one line (exit 2), a file
that cannot be read or written named in one line, output cut by ``| head`` without a
traceback, and ``jiesu bootstrap`` without Temporal saying what to set (exit 2), as every
other subcommand does (docs/operations.md, "The doctor")."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys

import pytest
from temporalio.testing import WorkflowEnvironment
from test_audit import ROOT, cli_env, run_cli

from jiesu.config import Settings, get_settings
from jiesu.ops import cli


@pytest.mark.parametrize(
    ("group", "actions"),
    [
        (["admin", "departments"], ["list", "get", "put", "delete"]),
        (["admin", "categories"], ["list", "get", "put", "delete"]),
        (["admin", "rules"], ["list", "add", "retire", "replace", "history"]),
        (["admin", "calendar"], ["show", "diff", "apply"]),
        (["admin", "policy"], ["list", "set", "reset"]),
        (["admin", "templates"], ["list", "set", "delete"]),
    ],
)
def test_a_groups_help_lists_every_action(
    group: list[str], actions: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.run([*group, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    listed = out.split("positional arguments:")[1].split("options:")[0]
    for action in actions:
        # each action on a line of its own, with a few words of what it does
        [line] = [x for x in listed.splitlines() if x.strip().split(" ")[0] == action]
        assert line.strip() != action, (action, out)


def test_every_option_of_every_subcommand_says_what_it_is() -> None:
    """``jiesu admin rules add --help`` listed --category, --department, --priority, --from,
    --to without a word; so did --year, --subject, --body and --role elsewhere."""
    import argparse

    silent: list[str] = []

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, [*path, name])
            elif action.option_strings and not action.help:
                silent.append(" ".join([*path, action.option_strings[-1]]))

    walk(cli._build_parser(), ["jiesu"])
    assert silent == [], silent


@pytest.mark.parametrize("group", ["keys", "users", "repair", "admin"])
def test_a_groups_help_says_what_it_is_for(
    group: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        cli.run([group, "--help"])
    out = capsys.readouterr().out
    between = out.split("positional arguments:")[0].split("\n\n", 1)[1]  # after the usage
    assert "DATABASE_URL" in between or "docs/" in between, out


async def test_a_wrong_argument_is_a_usage_error_not_a_traceback(
    env: WorkflowEnvironment, settings: Settings
) -> None:
    for argv, argument in (
        (["replay", "--since", "yesterday"], "--since"),
        (["consistency", "--until", "2026-13-01"], "--until"),
        (["doctor", "--no-replay", "--since", "last week"], "--since"),
        (["keys", "revoke", "abc"], "id"),
        (["admin", "rules", "retire", "1", "--at", "tomorrow"], "--at"),
    ):
        code, _out, err = await run_cli(env, settings, *argv)
        assert code == 2, (argv, code, err)
        assert "Traceback" not in err, (argv, err)
        last = err.strip().splitlines()[-1]
        assert f"error: argument {argument}: " in last, (argv, err)
        assert "_instant" not in last and "_key_id" not in last, (argv, err)


async def test_a_file_that_cannot_be_read_is_named_in_one_line(
    env: WorkflowEnvironment, settings: Settings, tmp_path: object
) -> None:
    missing = f"{tmp_path}/2027.csv"
    for argv in (
        ["admin", "calendar", "diff", missing, "--year", "2027"],
        ["admin", "calendar", "apply", str(tmp_path), "--year", "2027"],  # a folder
    ):
        code, _out, err = await run_cli(env, settings, *argv)
        assert code == 2, (argv, code, err)
        assert "Traceback" not in err, err
        [line] = err.strip().splitlines()
        assert line.startswith("error: ") and argv[3] in line, line


async def test_output_cut_short_by_its_reader_is_no_traceback(
    env: WorkflowEnvironment, settings: Settings
) -> None:
    """``jiesu admin policy list | head -1``: the reader is gone before the answer is."""

    def run_with_closed_stdout() -> tuple[int, str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "jiesu.ops.cli", "admin", "policy", "list"],
            cwd=ROOT, env=cli_env(env, settings),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()  # long before the command has connected and printed
        err = process.stderr.read()
        return process.wait(timeout=120), err

    code, err = await asyncio.to_thread(run_with_closed_stdout)
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert code == 141, (code, err)


async def test_bootstrap_without_temporal_says_what_to_set_and_exits_2(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def unreachable(address: str, namespace: str, **_: object) -> None:
        raise cli.TemporalUnavailable(
            f"Temporal at {address} (namespace {namespace!r}) did not accept connections "
            "within 60 s; last error: connection refused"
        )

    codes: list[int] = []
    monkeypatch.setattr(cli, "connect_temporal", unreachable)  # instead of waiting 60 s
    monkeypatch.setattr(cli, "hard_exit", codes.append)
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
    monkeypatch.delenv("JIESU_DEMO_DATA", raising=False)
    get_settings.cache_clear()
    try:
        await asyncio.to_thread(cli.main, ["bootstrap", "--no-demo"])
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert codes == [2], (codes, err)
    [line] = err.strip().splitlines()
    assert line.startswith("error: cannot reach Temporal at 127.0.0.1:1"), line
    assert "set TEMPORAL_ADDRESS" in line


@pytest.mark.parametrize(
    ("module", "variable"),
    [("jiesu.channels.mail_listener", "JIESU_MAIL_PORT"), ("worker", "TEMPORAL_ADDRESS")],
)
def test_a_process_answers_help_and_refuses_arguments(module: str, variable: str) -> None:
    """``python -m jiesu.channels.mail_listener --help`` (docs/channels.md) and ``python -m
    worker --help`` (docs/operations.md) say how they are configured instead of starting with
    the argument ignored."""
    with socket.socket() as s:  # a port nothing listens on, should a listener start after all
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "JIESU_MAIL_PORT": str(port), "TEMPORAL_ADDRESS": "127.0.0.1:1",
           "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/jiesu"}  # fmt: skip
    for argv, code, words in ((["--help"], 0, variable),
                              (["--port", "2526"], 2, "unrecognized arguments")):  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", module, *argv],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == code, (argv, done.returncode, done.stderr)
        assert words in done.stdout + done.stderr and "Traceback" not in done.stderr, done


def test_the_stack_answers_help_and_refuses_arguments(tmp_path: object) -> None:
    """``python -m jiesu.ops.stack --help`` (docs/operations.md runs the module by hand) prints
    the variables it reads instead of starting the whole stack with the argument ignored."""
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    env = {  # should a stack start after all: nothing of ours, on servers that are not there
        **os.environ, "JIESU_DATA_DIR": str(tmp_path), "TEMPORAL_ADDRESS": "127.0.0.1:1",
        "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/jiesu", "JIESU_API_PORT": str(ports[0]),
        "JIESU_MAIL_PORT": str(ports[1]), "JIESU_API_METRICS_ADDRESS": "",
        "JIESU_WORKER_METRICS_ADDRESS": "",
    }  # fmt: skip
    for argv, code, words in ((["--help"], 0, "JIESU_DATA_DIR"),
                              (["--port", "1"], 2, "unrecognized arguments")):  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "jiesu.ops.stack", *argv],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == code, (argv, done.returncode, done.stdout, done.stderr)
        assert words in done.stdout + done.stderr and "Traceback" not in done.stderr, done


def test_a_table_with_chinese_names_lines_up_on_a_terminal() -> None:
    """``jiesu users list``: 李娜 (话务员) takes 12 terminal columns, not 9 characters' worth."""
    import unicodedata
    from datetime import UTC, datetime

    from jiesu.access.staff import Person
    from jiesu.case.domain import Role
    from jiesu.ops.users_cli import format_table

    at = datetime(2026, 11, 23, tzinfo=UTC)
    people = [
        Person(id=1, login="li.na", display_name="李娜 (话务员)", role=Role.OPERATOR,
               department_id=None, active=True, created_at=at, updated_at=at),
        Person(id=2, login="wang.fang", display_name="Wang Fang", role=Role.DEPARTMENT,
               department_id="water", active=True, created_at=at, updated_at=at),
    ]  # fmt: skip

    def column_of(line: str, word: str) -> int:  # where `word` starts, in terminal columns
        before = line[: line.index(word)]
        return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in before)

    header, _dashes, first, second = format_table(people).splitlines()
    assert column_of(first, "operator") == column_of(second, "department") == column_of(
        header, "role"
    ), format_table(people)


def test_the_stack_says_which_of_its_own_ports_clash_before_starting_anything(
    tmp_path: object,
) -> None:
    """JIESU_MAIL_PORT chosen next to the API's port is the API's metrics port (API port + 1,
    unless JIESU_API_METRICS_ADDRESS is set): the stack started Temporal, PostgreSQL, the
    worker and the API, and then said only "port N (SMTP listener) is already in use; set
    JIESU_MAIL_PORT" — in use by itself. Now it says so before starting anything, naming both
    uses and their settings, and lists every port it wants with the setting of each."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        api_port = s.getsockname()[1]
    env = {  # should a stack start after all: nothing of ours, on servers that are not there
        **os.environ, "JIESU_DATA_DIR": str(tmp_path), "TEMPORAL_ADDRESS": "127.0.0.1:1",
        "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/jiesu",
        "JIESU_API_PORT": str(api_port), "JIESU_MAIL_PORT": str(api_port + 1),
    }  # fmt: skip
    for name in ("JIESU_API_METRICS_ADDRESS", "JIESU_WORKER_METRICS_ADDRESS"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-m", "jiesu.ops.stack"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    said = done.stderr
    assert f"port {api_port + 1} is chosen twice" in said, said
    assert "API metrics (JIESU_API_METRICS_ADDRESS" in said and "(JIESU_MAIL_PORT" in said
    assert f"{api_port} API (JIESU_API_PORT" in said and "worker metrics" in said, said
    assert "Temporal" not in done.stdout and "Preparing" not in done.stdout, done.stdout


def test_a_port_in_use_is_named_with_its_setting_and_the_stacks_other_ports() -> None:
    """A port another program holds: the error names the setting that chose it and every
    port the stack wants, so the next choice does not clash with one of them either."""
    from jiesu.ops.stack import PlannedPort, StackError, check_ports

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        smtp = PlannedPort(port, "SMTP listener", "JIESU_MAIL_PORT, default 2525")
        with pytest.raises(StackError) as refused:
            check_ports([smtp])
    said = str(refused.value)
    assert said.startswith(f"port {port} (SMTP listener) is already in use; set JIESU_MAIL_PORT")
    assert f"The stack's ports: {port} SMTP listener (JIESU_MAIL_PORT, default 2525)" in said


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("JIESU_API_PORT", "70000", "JIESU_API_PORT"),
        ("JIESU_TEMPORAL_PORT", "65000", "JIESU_TEMPORAL_UI_PORT"),  # its UI at gRPC + 1000
        ("JIESU_TEMPORAL_PORT", "-5", "JIESU_TEMPORAL_PORT"),
        ("JIESU_API_PORT", "0", "JIESU_API_PORT"),  # 0: "any port" — not one the banner can show
        ("JIESU_API_METRICS_ADDRESS", "127.0.0.1:99999", "JIESU_API_METRICS_ADDRESS"),
        ("JIESU_API_PORT", "abc", "JIESU_API_PORT"),
    ],
)
def test_a_port_that_is_no_port_number_is_named_not_a_traceback(
    tmp_path: object, variable: str, value: str, named: str
) -> None:
    """`make run` with a port outside 1-65535 (or not a number at all): the port check's
    connect_ex raised OverflowError, and Settings() its ValidationError, out of the stack's
    error handling — a Python traceback instead of the stack's one line naming the setting.
    Now the same "error: …" as for a port chosen twice, before anything starts."""
    env = {  # should a stack start after all: nothing of ours, on servers that are not there
        **os.environ, "JIESU_DATA_DIR": str(tmp_path),
        "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/jiesu", variable: value,
    }  # fmt: skip
    for name in ("TEMPORAL_ADDRESS", "JIESU_TEMPORAL_UI_PORT", "JIESU_WORKER_METRICS_ADDRESS"):
        env.pop(name, None)
    if variable != "JIESU_API_METRICS_ADDRESS":
        env.pop("JIESU_API_METRICS_ADDRESS", None)
    if variable != "JIESU_API_PORT":
        env["JIESU_API_PORT"] = "18733"
    if variable != "JIESU_TEMPORAL_PORT":
        env["JIESU_TEMPORAL_PORT"] = "18731"
    done = subprocess.run(
        [sys.executable, "-m", "jiesu.ops.stack"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    said = done.stderr
    assert done.returncode == 1, (done.returncode, done.stdout, said)
    assert "Traceback" not in said and "error: " in said and named in said, said
    assert "Temporal" not in done.stdout and "Preparing" not in done.stdout, done.stdout


def test_a_port_held_on_another_local_address_is_in_use_for_a_stack_on_every_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """JIESU_API_HOST=0.0.0.0 and another program listening on the port at another of the
    machine's addresses (127.0.0.2 here; a LAN address, a container bridge's): the check
    connected to 127.0.0.1 only, found nothing, and the stack started Temporal, PostgreSQL and
    the worker before the API failed with "address already in use". Now the check also binds
    where the stack will listen."""
    from jiesu.ops.stack import StackError, check_ports, planned_ports

    with socket.socket() as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.bind(("127.0.0.2", 0))
        held.listen()
        port = held.getsockname()[1]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            mail_port = s.getsockname()[1]
        for name, value in (("TEMPORAL_ADDRESS", "127.0.0.1:1"), ("JIESU_API_HOST", "0.0.0.0"),
                            ("JIESU_API_PORT", str(port)), ("JIESU_MAIL_PORT", str(mail_port)),
                            ("JIESU_API_METRICS_ADDRESS", ""),
                            ("JIESU_WORKER_METRICS_ADDRESS", "")):  # fmt: skip
            monkeypatch.setenv(name, value)
        with pytest.raises(StackError) as refused:
            check_ports(planned_ports(Settings()))
    assert str(refused.value).startswith(f"port {port} (API) is already in use; set JIESU_API_PORT")
