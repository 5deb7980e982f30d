"""Refused sign-ins (登录失败记录, migration 0024): every staff login that opened no session is
recorded outside its rolled-back transaction, by the session API and the console alike, without
the password; the table is append-only; auditors read it at /api/v1/audit/sign-in-failures."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from helpers import AUDITOR, OPERATOR
from temporalio.client import Client
from test_api import error_of
from test_security import http_from, own_app
from test_sessions import PASSWORD, SESSION, new_person

from jiesu.access import staff
from jiesu.config import Settings

FAILURES = "/api/v1/audit/sign-in-failures"
WRONG = "not-the-password-7f3a"


async def _rows(pool: asyncpg.Pool, login: str) -> list[dict[str, object]]:
    """The recorded refusals of ``login`` as stored (every column), oldest first."""
    rows = await pool.fetch(
        "SELECT * FROM staff_sign_in_failures WHERE login = $1 ORDER BY id", login
    )
    return [dict(r) for r in rows]


async def test_each_refusal_is_recorded_once_with_its_reason_and_no_password(
    settings: Settings, client: Client, pool: asyncpg.Pool
) -> None:
    known = await new_person(pool)
    disabled = await new_person(pool)
    await staff.update_person(pool, disabled, active=False, by="test")
    unknown = f"nobody-{uuid.uuid4().hex[:8]}"
    async with own_app(settings, client, pool) as app, http_from(app, "127.0.1.1") as http:
        error_of(await http.post(SESSION, json={"login": known, "password": WRONG}), 401,
                 "login_failed")  # fmt: skip
        error_of(await http.post(SESSION, json={"login": unknown, "password": WRONG}), 401,
                 "login_failed")  # fmt: skip
        error_of(await http.post(SESSION, json={"login": disabled, "password": PASSWORD}), 403,
                 "account_disabled")  # fmt: skip
        signed = await http.post(SESSION, json={"login": known, "password": PASSWORD})
        assert signed.status_code == 200, signed.text

    staff_ids = dict(await pool.fetch(
        "SELECT login, id FROM staff WHERE login = ANY($1)", [known, disabled]
    ))  # fmt: skip
    for login, reason, staff_id in (
        (known, "login_failed", staff_ids[known]),  # the success after it added nothing
        (unknown, "login_failed", None),
        (disabled, "account_disabled", staff_ids[disabled]),
    ):
        (row,) = await _rows(pool, login)
        assert (row["reason"], row["client"], row["staff_id"]) == (reason, "127.0.1.1", staff_id)
        stored = str(row)
        assert WRONG not in stored and PASSWORD not in stored  # nor anything but its columns
    assert set(row) == {"id", "at", "login", "reason", "client", "staff_id"}


async def test_the_console_form_records_its_refusals(
    settings: Settings, client: Client, pool: asyncpg.Pool
) -> None:
    login = await new_person(pool)
    async with own_app(settings, client, pool) as app, http_from(app, "127.0.1.2") as browser:
        wrong = await browser.post("/console/login", data={"login": login, "password": WRONG})
        assert wrong.status_code == 401 and "jiesu_session" not in wrong.cookies
        right = await browser.post("/console/login", data={"login": login, "password": PASSWORD})
        assert right.status_code == 303, right.text
    (row,) = await _rows(pool, login)
    assert (row["reason"], row["client"]) == ("login_failed", "127.0.1.2")


async def test_a_login_postgresql_cannot_hold_is_refused_and_recorded_not_a_500(
    settings: Settings, client: Client, pool: asyncpg.Pool
) -> None:
    """The console's form takes any text; a NUL byte is no one's login (the API's JSON body
    refuses control characters with a 422 before)."""
    typed = f"nul-{uuid.uuid4().hex[:8]}\x00x"
    async with own_app(settings, client, pool) as app, http_from(app, "127.0.1.7") as browser:
        refused = await browser.post("/console/login", data={"login": typed, "password": WRONG})
        assert refused.status_code == 401, refused.text
    (row,) = await _rows(pool, typed.replace("\x00", ""))
    assert (row["reason"], row["staff_id"]) == ("login_failed", None)


async def test_a_flood_of_guesses_costs_one_row_per_failure_and_one_per_window(
    settings: Settings, client: Client, pool: asyncpg.Pool
) -> None:
    """With the default limit (10 failures a minute) a client that sends 30 guesses writes 11
    rows: its 10 refusals and the first of its 429s (rate_limited); the other 429s, the
    console's too, write none. A disabled account's refusals count in the limit too, or
    knowing its password would write rows without bound."""
    defaults = {f: Settings.model_fields[f].default
                for f in ("auth_failure_limit", "auth_failure_window_seconds")}  # fmt: skip
    limit = defaults["auth_failure_limit"]
    assert (limit, defaults["auth_failure_window_seconds"]) == (10, 60)  # the documented figures
    login = await new_person(pool)
    disabled = await new_person(pool)
    await staff.update_person(pool, disabled, active=False, by="test")
    async with (
        own_app(settings, client, pool, **defaults) as app,
        http_from(app, "127.0.1.3") as guesser,
        http_from(app, "127.0.1.4") as other,
    ):
        for n in range(limit):
            error_of(await guesser.post(SESSION, json={"login": login, "password": f"g-{n}"}),
                     401, "login_failed")  # fmt: skip
        for n in range(20):
            error_of(await guesser.post(SESSION, json={"login": login, "password": f"h-{n}"}),
                     429, "too_many_failed_authentications")  # fmt: skip
        console = await guesser.post("/console/login", data={"login": login, "password": "x"})
        assert console.status_code == 429
        for _ in range(limit):
            error_of(await other.post(SESSION, json={"login": disabled, "password": PASSWORD}),
                     403, "account_disabled")  # fmt: skip
        error_of(await other.post(SESSION, json={"login": disabled, "password": PASSWORD}),
                 429, "too_many_failed_authentications")  # fmt: skip
    reasons = [(r["reason"], r["client"]) for r in await _rows(pool, login)]
    assert reasons == [("login_failed", "127.0.1.3")] * limit + [("rate_limited", "127.0.1.3")]
    reasons = [r["reason"] for r in await _rows(pool, disabled)]
    assert reasons == ["account_disabled"] * limit + ["rate_limited"]


async def test_the_refused_sign_ins_are_append_only(pool: asyncpg.Pool) -> None:
    login = f"nobody-{uuid.uuid4().hex[:8]}"
    await pool.execute(
        "INSERT INTO staff_sign_in_failures (login, reason, client) VALUES ($1, 'login_failed',"
        " '127.0.0.1')",
        login,
    )
    for change in (
        "UPDATE staff_sign_in_failures SET reason = 'account_disabled' WHERE login = $1",
        "DELETE FROM staff_sign_in_failures WHERE login = $1",
    ):
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await pool.execute(change, login)
    async with pool.acquire() as conn, conn.transaction():
        savepoint = conn.transaction()
        await savepoint.start()
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute("TRUNCATE staff_sign_in_failures")
        await savepoint.rollback()
    assert len(await _rows(pool, login)) == 1


@pytest.fixture
async def unrecordable(pool: asyncpg.Pool) -> AsyncIterator[str]:
    """A login whose refusals the database cannot take (a trigger refuses its rows): the
    failure to record, made real without touching anyone else's logins."""
    prefix = f"unrecordable-{uuid.uuid4().hex[:8]}"
    function = prefix.replace("-", "_")
    await pool.execute(
        f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        f" IF NEW.login LIKE '{prefix}%' THEN RAISE EXCEPTION 'disk full (test)'; END IF;"
        " RETURN NEW; END $$;"
        f" CREATE TRIGGER {function} BEFORE INSERT ON staff_sign_in_failures"
        f" FOR EACH ROW EXECUTE FUNCTION {function}()"
    )
    try:
        yield prefix
    finally:
        await pool.execute(
            f"DROP TRIGGER {function} ON staff_sign_in_failures; DROP FUNCTION {function}()"
        )


async def test_a_refusal_that_cannot_be_recorded_is_still_a_refusal_and_is_logged(
    settings: Settings, client: Client, pool: asyncpg.Pool, unrecordable: str,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.ERROR, logger="jiesu.access.sign_in_failures")
    async with own_app(settings, client, pool) as app, http_from(app, "127.0.1.5") as http:
        answer = await http.post(SESSION, json={"login": unrecordable, "password": WRONG})
        error_of(answer, 401, "login_failed")  # not a 500
        console = await http.post("/console/login", data={"login": unrecordable, "password": "x"})
        assert console.status_code == 401
    assert await _rows(pool, unrecordable) == []
    logged = [r for r in caplog.records if "could not record a refused sign-in" in r.message]
    assert len(logged) == 2 and "disk full (test)" in str(logged[0].exc_info)


async def test_auditors_read_the_refused_sign_ins(
    settings: Settings, client: Client, pool: asyncpg.Pool
) -> None:
    """``GET /api/v1/audit/sign-in-failures``: newest first, of one login as typed (an unknown
    one too), bounded; other roles are refused; bad input is a 422."""
    login = await new_person(pool)
    unknown = f"nobody-{uuid.uuid4().hex[:8]}"
    async with own_app(settings, client, pool) as app, http_from(app, "127.0.1.6") as http:
        await http.post(SESSION, json={"login": login, "password": "first-guess"})
        await http.post(SESSION, json={"login": login, "password": "second-guess"})
        await http.post(SESSION, json={"login": unknown, "password": "guess"})
        answer = await http.get(FAILURES, params={"login": login}, headers=AUDITOR)
        assert answer.status_code == 200, answer.text
        newest, oldest = answer.json()
        assert newest["at"] >= oldest["at"] and newest["login"] == login
        assert newest | {"at": None} == {
            "at": None, "login": login, "reason": "login_failed", "client": "127.0.1.6",
            "known": True,
        }  # fmt: skip
        (stranger,) = (await http.get(FAILURES, params={"login": unknown}, headers=AUDITOR)).json()
        assert stranger["known"] is False and stranger["login"] == unknown
        (latest,) = (await http.get(FAILURES, params={"limit": 1}, headers=AUDITOR)).json()
        assert latest["login"] == unknown  # everyone's, newest first

        error_of(await http.get(FAILURES, headers=OPERATOR), 403, "forbidden")
        error_of(await http.get(FAILURES), 401, "unauthenticated")
        for bad in ({"limit": 0}, {"limit": 1001}, {"limit": "many"}, {"login": "x" * 201},
                    {"login": "a\x00b"}):  # fmt: skip
            assert (await http.get(FAILURES, params=bad, headers=AUDITOR)).status_code == 422
        summary = app.openapi()["paths"][FAILURES]["get"]["summary"]
        assert "登录失败记录" in summary
