"""Staff accounts (issue 11, part 2): ``jiesu users`` and ``/api/v1/admin/users`` create,
list, disable, enable and set passwords; every change is recorded without any hash."""

from __future__ import annotations

import asyncio
import sys
import uuid

import asyncpg
import httpx
from helpers import AUDITOR, OPERATOR, SUPERVISOR, auth, cli_in_process
from temporalio.testing import WorkflowEnvironment
from test_api import COMPLAINTS, error_of
from test_audit import ROOT, cli_env
from test_sessions import SESSION, browser, log_in  # noqa: F401 (browser is a fixture)

from jiesu.access import api_keys, sessions, staff
from jiesu.config import Settings
from jiesu.ops.demo_data import demo_key

ADMIN = auth(demo_key("demo-admin"))
USERS = "/api/v1/admin/users"


async def users_cli(
    env: WorkflowEnvironment, settings: Settings, *argv: str, stdin: str = ""
) -> tuple[int, str, str]:
    """``jiesu users ARGV`` with ``stdin`` piped in: (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "jiesu.ops.cli", "users", *argv,
        cwd=ROOT, env=cli_env(env, settings), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _login() -> str:
    return f"u-{uuid.uuid4().hex[:10]}"


async def test_users_cli_creates_lists_disables_enables_and_sets_passwords(
    env: WorkflowEnvironment,
    settings: Settings,
    pool: asyncpg.Pool,
    browser: httpx.AsyncClient,  # noqa: F811
) -> None:
    login, first, second = _login(), "first password 1", "second password 2"
    code, out, err = await users_cli(
        env, settings, "create", "--login", login, "--name", "王芳", "--role", "department",
        "--department", "water", stdin=first + "\n",
    )  # fmt: skip
    assert code == 0, err  # the console script, in a process of its own; the rest in this one
    assert login in out and first not in out
    variables = cli_env(env, settings)
    stored = await pool.fetchrow("SELECT * FROM staff WHERE login = $1", login)
    assert stored["password_hash"].startswith("$argon2id$") and first not in str(dict(stored))

    code, listing, err = await cli_in_process(variables, "users", "list")
    assert code == 0, err
    line = next(li for li in listing.splitlines() if li.startswith(f"{login} "))
    assert line.split()[1:5] == ["王芳", "department", "water", "yes"]
    assert "argon2" not in listing

    await log_in(browser, login, first)
    code, _, err = await cli_in_process(variables, "users", "disable", login)
    assert code == 0, err
    error_of(await browser.get(COMPLAINTS), 401, "session_ended")  # sessions ended at once
    error_of(await browser.post(SESSION, json={"login": login, "password": first}), 403,
             "account_disabled")  # fmt: skip
    code, _, err = await cli_in_process(variables, "users", "enable", login)
    assert code == 0, err

    code, _, err = await cli_in_process(variables, "users", "set-password", login,
                                     stdin=second + "\n")  # fmt: skip
    assert code == 0, err
    error_of(await browser.post(SESSION, json={"login": login, "password": first}), 401,
             "login_failed")  # fmt: skip
    await log_in(browser, login, second)

    changes = await staff.changes_of(pool, login)
    assert [c["change"] for c in changes] == ["created", "disabled", "enabled", "password_set"]
    assert all(c["changed_by"].startswith("cli") for c in changes)
    assert changes[1]["before"]["active"] is True and changes[1]["after"]["active"] is False
    recorded = str(changes)
    assert "argon2" not in recorded and first not in recorded and second not in recorded


async def test_users_cli_refuses_bad_input_and_changes_nothing(
    env: WorkflowEnvironment, settings: Settings, pool: asyncpg.Pool
) -> None:
    login = _login()
    cases = [
        (["create", "--login", login, "--name", "x", "--role", "operator"], "short\n",
         "a password has"),
        (["create", "--login", login, "--name", "x", "--role", "operator"], "",
         "no password on standard input"),
        (["create", "--login", login, "--name", "x", "--role", "department"], "long enough pw\n",
         "need a department"),
        (["create", "--login", login, "--name", "x", "--role", "department", "--department",
          "no-such-dept"], "long enough pw\n", "no department"),
        (["create", "--login", "-bad login", "--name", "x", "--role", "operator"],
         "long enough pw\n", "a login is"),
    ]  # fmt: skip
    variables = cli_env(env, settings)

    async def users(*argv: str, stdin: str = "") -> tuple[int, str, str]:
        return await cli_in_process(variables, "users", *argv, stdin=stdin)

    for argv, stdin, message in cases:
        code, _, err = await users(*argv, stdin=stdin)
        assert code == 2 and message in err, (argv, err)
    assert await staff.get_person(pool, login) is None
    for action in ("disable", "enable"):
        code, _, err = await users(action, "nobody-at-all")
        assert code == 2 and "no person" in err  # refused, as `jiesu admin` refuses
    code, _, err = await users("set-password", "nobody-at-all", stdin="long enough pw\n")
    assert code == 2 and "no person" in err
    # A password is never an argument.
    code, _, err = await users("set-password", login, "--password", "x")
    assert code == 2 and "unrecognized arguments" in err


async def test_admins_manage_accounts_over_the_api(
    api: httpx.AsyncClient,
    pool: asyncpg.Pool,
    browser: httpx.AsyncClient,  # noqa: F811
) -> None:
    login = _login()
    body = {"login": login, "display_name": "张三", "role": "operator",
            "password": "a good password"}  # fmt: skip
    for other in (OPERATOR, SUPERVISOR, AUDITOR):
        error_of(await api.post(USERS, json=body, headers=other), 403, "forbidden")
        error_of(await api.get(USERS, headers=other), 403, "forbidden")
    error_of(await api.get(USERS), 401, "unauthenticated")

    created = await api.post(USERS, json=body, headers=ADMIN)
    assert created.status_code == 201, created.text
    assert created.json()["login"] == login and "password" not in created.text
    error_of(await api.post(USERS, json=body, headers=ADMIN), 409, "login_taken")
    error_of(await api.post(USERS, json={**body, "login": _login(), "role": "department"},
                            headers=ADMIN), 422, "invalid_department")  # fmt: skip
    error_of(await api.post(USERS, json={**body, "login": _login(), "password": "short"},
                            headers=ADMIN), 422, "invalid_request")  # fmt: skip
    error_of(await api.post(USERS, json={**body, "login": _login(), "role": "citizen"},
                            headers=ADMIN), 422, "invalid_role")  # fmt: skip
    listing = await api.get(USERS, headers=ADMIN)
    assert any(p["login"] == login for p in listing.json()) and "argon2" not in listing.text

    await log_in(browser, login, body["password"])
    moved = await api.patch(f"{USERS}/{login}", headers=ADMIN,
                            json={"role": "department", "department_id": "water"})  # fmt: skip
    assert moved.status_code == 200, moved.text
    assert (moved.json()["role"], moved.json()["department_id"]) == ("department", "water")
    # A new role ends the old sessions: the person logs in again with their new rights.
    error_of(await browser.get(SESSION), 401, "session_ended")
    error_of(await api.patch(f"{USERS}/{login}", json={"department_id": "x"}, headers=ADMIN),
             422, "invalid_department")  # fmt: skip
    disabled = await api.patch(f"{USERS}/{login}", json={"active": False}, headers=ADMIN)
    assert disabled.status_code == 200 and disabled.json()["active"] is False
    password = await api.post(f"{USERS}/{login}/password", headers=ADMIN,
                              json={"password": "another good password"})  # fmt: skip
    assert password.status_code == 200, password.text
    error_of(await api.get(f"{USERS}/nobody-at-all", headers=ADMIN), 404, "person_not_found")
    error_of(await api.patch(f"{USERS}/nobody-at-all", json={"active": False}, headers=ADMIN),
             404, "person_not_found")  # fmt: skip

    changes = (await api.get(f"{USERS}/{login}/changes", headers=ADMIN)).json()
    assert [c["change"] for c in changes] == ["created", "updated", "disabled", "password_set"]
    assert {c["changed_by"] for c in changes} == {"key:demo-admin"}
    assert changes[1]["before"]["role"] == "operator"
    assert changes[1]["after"]["department_id"] == "water"
    assert "argon2" not in str(changes) and "good password" not in str(changes)


async def test_a_change_by_a_person_in_a_session_is_recorded_as_theirs(
    api: httpx.AsyncClient,
    pool: asyncpg.Pool,
    browser: httpx.AsyncClient,  # noqa: F811
) -> None:
    admin = _login()
    await staff.create_person(pool, login=admin, display_name="管理员", role=staff.Role.ADMIN,
                              password="admin password", by="test")  # fmt: skip
    csrf = await log_in(browser, admin, "admin password")
    login = _login()
    body = {"login": login, "display_name": "李四", "role": "auditor",
            "password": "a good password"}  # fmt: skip
    error_of(await browser.post(USERS, json=body), 403, "csrf_failed")
    created = await browser.post(USERS, json=body, headers={"X-CSRF-Token": csrf})
    assert created.status_code == 201, created.text
    changes = await staff.changes_of(pool, login)
    assert [(c["change"], c["changed_by"]) for c in changes] == [("created", f"person:{admin}")]
    # And a person cannot escape the session's end by the token alone.
    token = browser.cookies["jiesu_session"]
    await api.patch(f"{USERS}/{admin}", json={"active": False}, headers=ADMIN)
    assert await sessions.session_for(pool, token) is None


async def test_the_last_admin_credential_cannot_be_taken_away_over_http(
    api: httpx.AsyncClient,
    pool: asyncpg.Pool,
    browser: httpx.AsyncClient,  # noqa: F811
) -> None:
    """An admin in a session disabling or demoting themselves (API or console), or revoking
    the last admin key, when nothing else could administer: refused ``409 last_admin``,
    nothing changed.
    Before, each was applied, and only the machine's CLI could administer again."""
    admin = _login()
    await staff.create_person(pool, login=admin, display_name="管理员", role=staff.Role.ADMIN,
                              password="admin password", by="test")  # fmt: skip
    csrf = {"X-CSRF-Token": await log_in(browser, admin, "admin password")}
    key_info, _ = await api_keys.create_key(pool, name=f"k-{_login()}", role=staff.Role.ADMIN)
    # every other admin credential taken away for the test, given back after it
    keys = await pool.fetch(
        "UPDATE api_keys SET revoked_at = now() WHERE role = 'admin' AND revoked_at IS NULL"
        " AND id <> $1 RETURNING id", key_info.id,
    )  # fmt: skip
    people = await pool.fetch(
        "UPDATE staff SET active = false WHERE role = 'admin' AND active AND login <> $1"
        " RETURNING id", admin,
    )  # fmt: skip
    try:
        # two credentials: one may go
        revoked = await browser.post(f"/api/v1/admin/keys/{key_info.id}/revoke", headers=csrf)
        assert revoked.status_code == 200, revoked.text
        # the person is the last: neither disabled nor demoted
        error_of(await browser.patch(f"{USERS}/{admin}", json={"active": False}, headers=csrf),
                 409, "last_admin")  # fmt: skip
        error_of(await browser.patch(f"{USERS}/{admin}", json={"role": "auditor"},
                                     headers=csrf), 409, "last_admin")  # fmt: skip
        page = await browser.post(f"/console/people/{admin}/active",
                                  data={"active": "0", "csrf_token": csrf["X-CSRF-Token"]})
        assert page.status_code == 409 and "最后一个管理员" in page.text, page.text[:300]
        person = await staff.get_person(pool, admin)
        assert person is not None and person.active and person.role is staff.Role.ADMIN
        assert [c["change"] for c in await staff.changes_of(pool, admin)] == ["created"]
        # a key that is the last: not revoked by itself
        other, other_key = await api_keys.create_key(pool, name=f"k-{_login()}",
                                                     role=staff.Role.ADMIN)  # fmt: skip
        await staff.update_person(pool, admin, by="test", active=False)  # the CLI's way
        bearer = {"Authorization": f"Bearer {other_key}"}
        error_of(await api.post(f"/api/v1/admin/keys/{other.id}/revoke", headers=bearer),
                 409, "last_admin")  # fmt: skip
        revoked_at = "SELECT revoked_at FROM api_keys WHERE id = $1"
        assert await pool.fetchval(revoked_at, other.id) is None
        # the machine still may (a stolen key must be revocable)
        assert (await api_keys.revoke_key(pool, other.id)).revoked_at is not None
    finally:
        await pool.execute("UPDATE api_keys SET revoked_at = NULL WHERE id = ANY($1::bigint[])",
                           [r["id"] for r in keys])  # fmt: skip
        await pool.execute("UPDATE staff SET active = true WHERE id = ANY($1::bigint[])",
                           [r["id"] for r in people])  # fmt: skip
