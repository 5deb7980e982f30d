"""Staff accounts and sessions (issue 11, part 2): a person logs in with a password and works
with the ``jiesu_session`` cookie and the session's CSRF token; API keys keep working as they
did; the actor recorded in a case event is the person."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import cast

import asyncpg
import httpx
import pytest
from argon2 import PasswordHasher
from helpers import AUDITOR, OPERATOR, department, register
from pydantic import ValidationError
from temporalio.client import Client
from test_api import COMPLAINTS, error_of, finish, fresh
from test_security import http_from, own_app

from api.deps import SESSION_COOKIE, cookie_secure
from jiesu.access import sessions, staff
from jiesu.audit.archive import ArchiveReport, ArchiveRequest
from jiesu.case.domain import STAFF_ROLES, Role
from jiesu.config import Settings
from jiesu.ops.demo_data import DEMO_PEOPLE
from worker import activities as activities_of

SESSION = "/api/v1/session"
SIGN_INS = "/api/v1/audit/sign-ins"
PASSWORD = "correct horse battery"


async def new_person(
    pool: asyncpg.Pool, role: Role = Role.OPERATOR, department_id: str | None = None
) -> str:
    login = f"p-{uuid.uuid4().hex[:10]}"
    await staff.create_person(
        pool, login=login, display_name="测试 人员", role=role, password=PASSWORD,
        department_id=department_id, by="test",
    )  # fmt: skip
    return login


@pytest.fixture
async def browser(
    settings: Settings, client: Client, pool: asyncpg.Pool
) -> AsyncIterator[httpx.AsyncClient]:
    """A client with a cookie jar of its own, like one browser."""
    async with own_app(settings, client, pool) as app, http_from(app, "127.0.0.9") as http:
        yield http


async def log_in(http: httpx.AsyncClient, login: str, password: str = PASSWORD) -> str:
    """Log in; return the session's CSRF token."""
    response = await http.post(SESSION, json={"login": login, "password": password})
    assert response.status_code == 200, response.text
    return str(response.json()["csrf_token"])


async def test_login_sets_a_safe_cookie_and_answers_the_person(
    browser: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    login = await new_person(pool, Role.DEPARTMENT, "water")
    response = await browser.post(SESSION, json={"login": login, "password": PASSWORD})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["person"] == login and body["role"] == "department"
    assert body["department_id"] == "water" and len(body["csrf_token"]) >= 32
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")}
    assert {"httponly", "path", "expires"} <= attributes
    assert "samesite=lax" in cookie.lower()
    assert "secure" not in attributes  # plain http on loopback (the test's public URL)

    # Only the token's hash is stored.
    token = browser.cookies[SESSION_COOKIE]
    stored = await pool.fetch("SELECT * FROM staff_sessions s JOIN staff p ON p.id = s.staff_id"
                              " WHERE p.login = $1", login)  # fmt: skip
    assert len(stored) == 1 and token not in str([dict(r) for r in stored])

    me = await browser.get(SESSION)
    assert me.status_code == 200 and me.json() == body
    # The cookie opens the staff endpoints (a department: its own cases only).
    assert (await browser.get(COMPLAINTS)).status_code == 200


def test_the_cookie_is_secure_unless_the_console_is_plain_http_on_loopback() -> None:
    def secure(url: str) -> bool:
        return cookie_secure(Settings(JIESU_PUBLIC_URL=url))

    assert not secure("http://127.0.0.1:8000") and not secure("http://localhost:8000")
    assert not secure("http://[::1]:8000")
    assert secure("https://12345.qinghe.gov.cn") and secure("https://127.0.0.1")
    assert secure("http://10.1.2.3:8000") and secure("http://console.intranet")
    assert not cookie_secure(Settings())  # no public URL: the API's own loopback address


async def test_wrong_password_and_unknown_login_get_one_answer(
    browser: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    login = await new_person(pool)
    wrong = await browser.post(SESSION, json={"login": login, "password": "not the password"})
    unknown = await browser.post(SESSION, json={"login": "nobody-here", "password": PASSWORD})
    assert error_of(wrong, 401, "login_failed")["message"] == error_of(
        unknown, 401, "login_failed"
    )["message"]
    assert SESSION_COOKIE not in browser.cookies
    error_of(await browser.get(SESSION), 401, "unauthenticated")


async def test_failed_logins_count_in_the_failed_authentication_limit(
    settings: Settings, client: Client, pool: asyncpg.Pool
) -> None:
    login = await new_person(pool)
    async with (
        own_app(settings, client, pool, auth_failure_limit=3) as app,
        http_from(app, "127.0.0.4") as guesser,
    ):
        for n in range(3):
            error_of(await guesser.post(SESSION, json={"login": login, "password": f"guess-{n}"}),
                     401, "login_failed")  # fmt: skip
        # The right password too is refused unseen now, as a right API key would be.
        refused = await guesser.post(SESSION, json={"login": login, "password": PASSWORD})
        error_of(refused, 429, "too_many_failed_authentications")
        assert int(refused.headers["Retry-After"]) >= 1


async def test_a_disabled_person_cannot_log_in_and_their_sessions_end(
    browser: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    login = await new_person(pool)
    await log_in(browser, login)
    assert (await browser.get(COMPLAINTS)).status_code == 200

    await staff.update_person(pool, login, active=False, by="test")
    error_of(await browser.get(COMPLAINTS), 401, "session_ended")
    error_of(await browser.post(SESSION, json={"login": login, "password": PASSWORD}), 403,
             "account_disabled")  # fmt: skip
    # The wrong password still gets the answer of any wrong password: no hint the login exists.
    error_of(await browser.post(SESSION, json={"login": login, "password": "x" * 12}), 401,
             "login_failed")  # fmt: skip

    await staff.update_person(pool, login, active=True, by="test")
    await log_in(browser, login)  # a new session; the old one stays ended
    assert (await browser.get(COMPLAINTS)).status_code == 200


@pytest.mark.parametrize("expiry", ["idle", "absolute"])
async def test_an_expired_session_opens_nothing(
    browser: httpx.AsyncClient, pool: asyncpg.Pool, expiry: str
) -> None:
    login = await new_person(pool)
    await log_in(browser, login)
    token = browser.cookies[SESSION_COOKIE]
    assert await sessions.session_for(pool, token) is not None
    # Move the session's clock instead of waiting: unused for longer than its idle timeout,
    # or past its absolute end while used a moment ago.
    change = (
        "last_seen_at = now() - idle_timeout - interval '1 second'"
        if expiry == "idle"
        else "expires_at = now() - interval '1 second'"
    )
    await pool.execute(
        f"UPDATE staff_sessions SET {change} WHERE staff_id = (SELECT id FROM staff"
        " WHERE login = $1)",
        login,
    )
    error_of(await browser.get(COMPLAINTS), 401, "session_ended")
    assert await sessions.session_for(pool, token) is None


async def test_use_keeps_a_session_alive(browser: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    login = await new_person(pool)
    await log_in(browser, login)
    await pool.execute(
        "UPDATE staff_sessions SET last_seen_at = now() - idle_timeout + interval '1 minute'"
        " WHERE staff_id = (SELECT id FROM staff WHERE login = $1)",
        login,
    )
    assert (await browser.get(COMPLAINTS)).status_code == 200  # used: idle time starts again
    seen = await pool.fetchval(
        "SELECT now() - last_seen_at FROM staff_sessions WHERE staff_id = (SELECT id FROM staff"
        " WHERE login = $1)",
        login,
    )
    assert seen.total_seconds() < 30


async def test_logout_ends_the_session(browser: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    login = await new_person(pool)
    csrf = await log_in(browser, login)
    token = browser.cookies[SESSION_COOKIE]
    error_of(await browser.delete(SESSION), 403, "csrf_failed")  # no site may log you out
    assert (await browser.delete(SESSION, headers={"X-CSRF-Token": csrf})).status_code == 204
    assert SESSION_COOKIE not in browser.cookies  # cleared
    assert await sessions.session_for(pool, token) is None
    browser.cookies.set(SESSION_COOKIE, token)  # a stolen copy of the cookie opens nothing
    error_of(await browser.get(COMPLAINTS), 401, "session_ended")
    assert (await browser.delete(SESSION)).status_code == 204  # already ended: nothing to do


async def test_unsafe_requests_of_a_session_need_its_csrf_token(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool
) -> None:
    created = await register(api, **fresh("Csrf"))  # noise_commercial → urban-management
    accept = f"{COMPLAINTS}/{created['case_id']}/accept"
    try:
        login = await new_person(pool, Role.DEPARTMENT, "urban-management")
        csrf = await log_in(browser, login)
        error_of(await browser.post(accept), 403, "csrf_failed")
        error_of(await browser.post(accept, headers={"X-CSRF-Token": "not-" + csrf}), 403,
                 "csrf_failed")  # fmt: skip
        other = httpx.AsyncClient(transport=browser._transport, base_url=str(browser.base_url))
        async with other:  # another person's token is not this session's
            other_csrf = await log_in(other, await new_person(pool, Role.OPERATOR))
        error_of(await browser.post(accept, headers={"X-CSRF-Token": other_csrf}), 403,
                 "csrf_failed")  # fmt: skip
        state = await browser.get(f"{COMPLAINTS}/{created['case_id']}")
        assert state.json()["status"] == "assigned"  # refused requests changed nothing

        done = await browser.post(accept, headers={"X-CSRF-Token": csrf})
        assert done.status_code == 200, done.text
        accepted = [e for e in done.json()["case"]["events"] if e["kind"] == "accepted"]
        # The actor recorded in the case event is the person.
        assert accepted[-1]["actor"] == {
            "role": "department", "name": login, "department_id": "urban-management",
            "request_id": accepted[-1]["actor"]["request_id"], "person": login,
        }  # fmt: skip
    finally:
        await finish(client, created["case_id"])


async def test_api_keys_work_as_before_without_csrf(
    api: httpx.AsyncClient, browser: httpx.AsyncClient, client: Client, pool: asyncpg.Pool
) -> None:
    created = await register(api, **fresh("Keys"))
    try:
        # A browser that also holds a session cookie: the key wins, and needs no CSRF token.
        await log_in(browser, await new_person(pool, Role.DEPARTMENT, "water"))
        urban = department("urban-management")
        done = await browser.post(f"{COMPLAINTS}/{created['case_id']}/accept", headers=urban)
        assert done.status_code == 200, done.text
        actor = [e for e in done.json()["case"]["events"] if e["kind"] == "accepted"][-1]["actor"]
        assert actor["name"] == "demo-dept-urban-management" and actor["person"] is None
        assert (await api.get(COMPLAINTS, headers=OPERATOR)).status_code == 200
    finally:
        await finish(client, created["case_id"])


async def test_an_outdated_password_hash_is_replaced_at_login(
    browser: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    login = await new_person(pool)
    short = "old-pw"  # set under an older, shorter rule: it must still log in
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(short)
    await pool.execute("UPDATE staff SET password_hash = $2 WHERE login = $1", login, weak)
    await log_in(browser, login, short)
    stored = await pool.fetchval("SELECT password_hash FROM staff WHERE login = $1", login)
    assert stored != weak and not staff.needs_rehash(stored)
    assert staff.password_matches(stored, short)
    await log_in(browser, login, short)  # still the same password


async def test_the_demo_data_has_one_person_per_role(browser: httpx.AsyncClient) -> None:
    roles = set()
    for person in DEMO_PEOPLE:
        response = await browser.post(
            SESSION, json={"login": person.login, "password": person.password}
        )
        assert response.status_code == 200, response.text
        assert response.json()["department_id"] == person.department_id
        roles.add(response.json()["role"])
    assert roles == {r.value for r in Role if r in STAFF_ROLES}


# --- retention: ended sessions into the sign-in log ------------------------------------------

DAY = timedelta(days=1)
FAR = timedelta(days=400)  # beyond the default retention, so no other test's sessions are moved


async def _past_session(
    pool: asyncpg.Pool, login: str, *, age: timedelta, seen: timedelta,
    ended: timedelta | None = None, why: str | None = None,
) -> None:  # fmt: skip
    """A session of ``login`` opened ``age`` ago (30 min idle timeout, 12 h at most), last used
    ``seen`` after its login and, if ``ended``, ended that long after its login for ``why``."""
    await pool.execute(
        "INSERT INTO staff_sessions (token_hash, staff_id, csrf_token, created_at, last_seen_at,"
        " idle_timeout, expires_at, ended_at, ended_why)"
        " SELECT $1, id, 'csrf', now() - $2::interval, now() - $2::interval + $3::interval,"
        " interval '30 minutes', now() - $2::interval + interval '12 hours',"
        " now() - $2::interval + $4::interval, $5 FROM staff WHERE login = $6",
        uuid.uuid4().hex, age, seen, ended, why, login,
    )  # fmt: skip


async def _sign_ins(pool: asyncpg.Pool, login: str) -> list[tuple[object, ...]]:
    """The person's sign-ins as auditors read them (the ``sign_ins`` view), oldest first."""
    rows = await pool.fetch(
        "SELECT signed_in_at, last_seen_at, ended_at, ended_why FROM sign_ins"
        " WHERE login = $1 ORDER BY signed_in_at",
        login,
    )
    return [tuple(r) for r in rows]


async def _left(pool: asyncpg.Pool, table: str, login: str) -> int:
    return int(await pool.fetchval(
        f"SELECT count(*) FROM {table} WHERE staff_id = (SELECT id FROM staff WHERE login = $1)",
        login,
    ))  # fmt: skip


async def test_sessions_past_the_retention_move_to_the_sign_in_log(pool: asyncpg.Pool) -> None:
    """Sessions that ended more than the retention ago leave ``staff_sessions`` (their secrets
    with them) in bounded batches; every sign-in reads the same before and after, ends derived
    for the sessions that ran out (idle, expired); newer and open sessions stay."""
    login = await new_person(pool)
    hour = timedelta(hours=1)
    await _past_session(pool, login, age=FAR + 100 * DAY, seen=hour, ended=2 * hour, why="logout")
    await _past_session(pool, login, age=FAR + 50 * DAY, seen=hour)  # idle at 1 h 30 min
    await _past_session(pool, login, age=FAR + 20 * DAY, seen=11.75 * hour)  # expired at 12 h
    await _past_session(pool, login, age=FAR - 10 * DAY, seen=hour, ended=hour, why="disabled")
    await sessions.login(pool, login, PASSWORD)  # open
    before = await _sign_ins(pool, login)
    assert [row[3] for row in before] == ["logout", "idle", "expired", "disabled", None]

    progress: list[int] = []
    moved = await sessions.purge_ended(pool, FAR, batch=2, progress=progress.append)

    assert await _sign_ins(pool, login) == before  # nothing of the evidence lost
    assert await _left(pool, "staff_sign_ins", login) == 3
    assert await _left(pool, "staff_sessions", login) == 2  # the newer one and the open one
    steps = [b - a for a, b in zip([0, *progress], progress, strict=False)]
    assert moved >= 3 and len(progress) >= 2 and all(0 <= n <= 2 for n in steps), progress
    start, _, end, why = before[1]
    assert end == start + timedelta(minutes=90) and why == "idle"
    await sessions.purge_ended(pool, FAR)  # again: nothing of this person's moves twice
    assert await _left(pool, "staff_sign_ins", login) == 3


async def test_the_sign_in_log_is_append_only(pool: asyncpg.Pool) -> None:
    login = await new_person(pool)
    await _past_session(pool, login, age=FAR + DAY, seen=timedelta(minutes=5))
    await sessions.purge_ended(pool, FAR)
    staff_id = await pool.fetchval("SELECT id FROM staff WHERE login = $1", login)
    for change in (
        "UPDATE staff_sign_ins SET ended_why = 'logout' WHERE staff_id = $1",
        "DELETE FROM staff_sign_ins WHERE staff_id = $1",
    ):
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await pool.execute(change, staff_id)
    assert await _left(pool, "staff_sign_ins", login) == 1


async def test_the_hourly_archive_job_purges_ended_sessions(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    """The worker's periodic chore is the archive schedule's run (ArchiveWorkflow, hourly):
    it moves the sessions past JIESU_SESSION_KEEP_DAYS (30 by default) after archiving."""
    login = await new_person(pool)
    keep = timedelta(days=settings.session_keep_days)
    await _past_session(pool, login, age=keep + DAY, seen=timedelta(minutes=5))
    await _past_session(pool, login, age=keep - DAY, seen=timedelta(minutes=5))
    report = await client.execute_workflow(
        "ArchiveWorkflow",
        ArchiveRequest(query=f'WorkflowId="no-such-case-{uuid.uuid4().hex}"'),
        id=f"archive-sessions-{login}",
        task_queue=settings.task_queue,
        result_type=ArchiveReport,
    )
    # (not ``sessions_purged == 1``: the schedule's own hourly run may have moved it first)
    assert report.listed == 0
    assert await _left(pool, "staff_sign_ins", login) == 1
    assert await _left(pool, "staff_sessions", login) == 1


def test_the_retention_is_a_setting(database_url: str) -> None:
    made = Settings(DATABASE_URL=database_url, JIESU_SESSION_KEEP_DAYS=7)
    (archive,) = [a for a in activities_of(cast(asyncpg.Pool, None), made)
                  if getattr(a, "__name__", "") == "archive_closed_cases"]  # fmt: skip
    assert archive.__self__.session_keep == timedelta(days=7)
    assert Settings(DATABASE_URL=database_url).session_keep_days == 30
    with pytest.raises(ValidationError):
        Settings(DATABASE_URL=database_url, JIESU_SESSION_KEEP_DAYS=0)


async def test_auditors_read_every_sign_in_moved_or_not(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """``GET /api/v1/audit/sign-ins``: the sign-in log and the sessions not yet moved, newest
    first, for auditors; other roles are refused, bad input is a 422."""
    login = await new_person(pool)
    await _past_session(pool, login, age=FAR + DAY, seen=timedelta(minutes=5))
    await sessions.purge_ended(pool, FAR)
    await sessions.login(pool, login, PASSWORD)
    answer = await api.get(SIGN_INS, params={"login": login}, headers=AUDITOR)
    assert answer.status_code == 200, answer.text
    newest, moved = answer.json()
    assert newest["login"] == login and newest["ended_at"] is None  # open
    assert moved["ended_why"] == "idle" and await _left(pool, "staff_sign_ins", login) == 1
    error_of(await api.get(SIGN_INS, headers=OPERATOR), 403, "forbidden")
    assert (await api.get(SIGN_INS, params={"limit": 0}, headers=AUDITOR)).status_code == 422


async def test_a_request_from_another_site_does_not_keep_a_session_alive(
    browser: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """A session's request from another site is refused (403 cross_site) — and is not a use
    of the session: a sibling site's page that fetched the API every few minutes (a Lax
    cookie goes with it) would otherwise keep an unattended console signed in past its idle
    timeout."""
    login = await new_person(pool)
    await log_in(browser, login)
    idle = "SELECT s.last_seen_at FROM staff_sessions s JOIN staff p ON p.id = s.staff_id" \
        " WHERE p.login = $1 AND s.ended_at IS NULL"  # fmt: skip
    await pool.execute(
        "UPDATE staff_sessions s SET last_seen_at = last_seen_at - interval '5 minutes'"
        " FROM staff p WHERE p.id = s.staff_id AND p.login = $1", login,
    )  # fmt: skip
    before = await pool.fetchval(idle, login)
    for site in ("cross-site", "same-site"):
        refused = await browser.get(SESSION, headers={"Sec-Fetch-Site": site})
        assert refused.status_code == 403 and "cross_site" in refused.text, refused.text
    assert await pool.fetchval(idle, login) == before, "a refused request used the session"
    own = await browser.get(SESSION, headers={"Sec-Fetch-Site": "same-origin"})
    assert own.status_code == 200 and await pool.fetchval(idle, login) > before
