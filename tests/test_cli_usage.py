"""The ``jiesu`` command as its help and the docs describe it: every action listed in its
group's ``--help``, a wrong argument answered as a usage error in one line (exit 2), a file
that cannot be read or written named in one line, output cut by ``| head`` without a
traceback, and ``jiesu bootstrap`` without Temporal saying what to set (exit 2), as every
other subcommand does (docs/operations.md, "The doctor")."""

from __future__ import annotations

import pytest
from temporalio.testing import WorkflowEnvironment
from test_audit import run_cli

from jiesu.config import Settings
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
