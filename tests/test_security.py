"""Security basics (issue 9, point 8): no demo keys outside the embedded trial, API keys that
can be created, listed and revoked, a limit on failed authentications, security headers, docs
without a CDN, and case numbers that cannot be probed without a key."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
from fastapi import FastAPI
from helpers import AUDITOR, OPERATOR, SUPERVISOR, auth, cli_in_process, register
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from test_api import COMPLAINTS, error_of, finish, fresh
from test_audit import cli_env, run_cli

from api.main import create_app
from jiesu.access.security import API_KEY_PREFIX
from jiesu.config import Settings
from jiesu.ops.bootstrap import prepare_database
from jiesu.ops.demo_data import demo_key
from jiesu.ops.stack import banner

ADMIN = auth(demo_key("demo-admin"))


def _sibling_database(database_url: str, name: str) -> str:
    main, sep, query = database_url.partition("?")
    return f"{main.rpartition('/')[0]}/{name}{sep}{query}"


async def test_bootstrap_without_demo_loads_no_keys_and_no_demo_county(database_url: str) -> None:
    """What docker-compose's bootstrap does (JIESU_DEMO_DATA=0, see tests/test_compose.py):
    a migrated database with not one API key, so the public demo keys open nothing."""
    dsn = _sibling_database(database_url, f"jiesu_nodemo_{uuid.uuid4().hex[:8]}")
    assert await prepare_database(dsn, demo=False) == []
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM api_keys") == 0
        assert await conn.fetchval("SELECT count(*) FROM staff") == 0  # nor demo people
        assert await conn.fetchval("SELECT count(*) FROM departments") == 0
    finally:
        await conn.close()


# --- API keys: create (shown once), list (no secrets), revoke -------------------------------


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_keys_cli_creates_lists_and_revokes(
    env: WorkflowEnvironment, settings: Settings, api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    code, out, err = await run_cli(env, settings, "keys", "create", "--role", "operator",
                                   "--name", name)  # fmt: skip
    assert code == 0, err  # the console script, in a process of its own; the rest in this one
    key = out.strip().splitlines()[-1]  # printed once, on the last line
    assert key.startswith(API_KEY_PREFIX) and len(key) >= 40
    assert (await api.get(COMPLAINTS, headers=_bearer(key))).status_code == 200

    # Stored hashed: the table holds the key's SHA-256 and nowhere the key itself.
    row = await pool.fetchrow("SELECT * FROM api_keys WHERE name = $1", name)
    assert row["key_hash"] == hashlib.sha256(key.encode()).hexdigest()
    assert key not in str(dict(row))

    variables = cli_env(env, settings)
    code, listing, err = await cli_in_process(variables, "keys", "list")
    assert code == 0, err
    line = next(li for li in listing.splitlines() if f" {name} " in li)
    key_id = line.split()[0]
    assert key not in listing and row["key_hash"] not in listing  # no secrets
    assert line.split()[2:4] == ["operator", "-"] and line.rstrip().endswith("-")  # not revoked

    code, out, err = await cli_in_process(variables, "keys", "revoke", key_id)
    assert code == 0, err
    error_of(await api.get(COMPLAINTS, headers=_bearer(key)), 401, "invalid_api_key")
    _, listing, _ = await cli_in_process(variables, "keys", "list")
    assert not next(li for li in listing.splitlines() if f" {name} " in li).rstrip().endswith("-")


async def test_keys_cli_refuses_bad_keys(env: WorkflowEnvironment, settings: Settings) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    for argv, problem in (
        (["--role", "department", "--name", name], "needs a department"),
        (["--role", "auditor", "--department", "water", "--name", name], "needs a department"),
        (["--role", "department", "--department", "nowhere", "--name", name], "nowhere"),
        (["--role", "admin", "--name", "demo-admin"], "exists"),
        (["--role", "admin", "--name", "bad name"], "key name"),
    ):
        variables = cli_env(env, settings)
        code, out, err = await cli_in_process(variables, "keys", "create", *argv)
        assert code == 2 and problem in err and API_KEY_PREFIX not in out, (argv, out, err)
    code, _, err = await cli_in_process(variables, "keys", "revoke", "999999999")
    assert code == 1 and "no API key" in err


async def test_admins_manage_keys_over_the_api(api: httpx.AsyncClient) -> None:
    url = "/api/v1/admin/keys"
    name = f"api-{uuid.uuid4().hex[:8]}"
    body = {"name": name, "role": "department", "department_id": "water"}
    for staff in (OPERATOR, SUPERVISOR, AUDITOR):
        error_of(await api.post(url, json=body, headers=staff), 403, "forbidden")
        error_of(await api.get(url, headers=staff), 403, "forbidden")
    error_of(await api.get(url), 401, "unauthenticated")

    created = await api.post(url, json=body, headers=ADMIN)
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    assert (await api.get(COMPLAINTS, headers=_bearer(key))).json()["items"] is not None
    error_of(await api.post(url, json=body, headers=ADMIN), 409, "key_name_taken")
    error_of(await api.post(url, json={**body, "department_id": None}, headers=ADMIN), 422,
             "invalid_department")  # fmt: skip
    error_of(await api.post(url, json={**body, "role": "citizen"}, headers=ADMIN), 422,
             "invalid_role")  # fmt: skip

    listing = await api.get(url, headers=ADMIN)
    assert listing.status_code == 200 and key not in listing.text
    mine = next(k for k in listing.json() if k["name"] == name)
    assert set(mine) == {"id", "name", "role", "department_id", "created_at", "revoked_at"}

    revoked = await api.post(f"{url}/{mine['id']}/revoke", headers=ADMIN)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    error_of(await api.get(COMPLAINTS, headers=_bearer(key)), 401, "invalid_api_key")
    error_of(await api.post(f"{url}/999999999/revoke", headers=ADMIN), 404, "key_not_found")
    error_of(await api.post(f"{url}/{2**70}/revoke", headers=ADMIN), 422, "invalid_request")


async def test_a_key_made_or_revoked_is_in_the_change_log(api: httpx.AsyncClient) -> None:
    """Who made a key (an admin key included) and who revoked it, when: in the administrative
    change log, never the key. Before, neither left any record but the key's own row."""
    url = "/api/v1/admin/keys"
    body = {"name": f"log-{uuid.uuid4().hex[:8]}", "role": "admin"}
    created = await api.post(url, json=body, headers=ADMIN)
    assert created.status_code == 201, created.text
    key_id, key = created.json()["id"], created.json()["key"]
    for _ in range(2):  # the second a retry: recorded once
        revoked = await api.post(f"{url}/{key_id}/revoke", headers=ADMIN)
        assert revoked.status_code == 200, revoked.text
    log = await api.get("/api/v1/admin/changes", headers=ADMIN,
                        params={"entity": "api_key", "entity_id": str(key_id)})  # fmt: skip
    assert log.status_code == 200, log.text
    changes = log.json()
    assert [(c["action"], c["actor"]["name"]) for c in changes] == [
        ("retire", "demo-admin"), ("create", "demo-admin")
    ]
    assert changes[0]["after"]["revoked_at"] is not None and changes[1]["before"] is None
    assert key not in log.text and "hash" not in log.text


# --- failed authentications are limited per client --------------------------------------------


@contextlib.asynccontextmanager
async def own_app(
    settings: Settings, client: Client, pool: asyncpg.Pool, **overrides: object
) -> AsyncIterator[FastAPI]:
    """An app of its own (its own failure counts), on the session's Temporal and database."""
    own = settings.model_copy(update=overrides)
    app = create_app(own, client=client, pool=pool)
    async with app.router.lifespan_context(app):
        yield app


def http_from(app: FastAPI, address: str) -> httpx.AsyncClient:
    """A client of ``app`` whose requests come from ``address`` (in process, no network)."""
    transport = httpx.ASGITransport(app=app, client=(address, 40000), raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://jiesu.test")


async def test_failed_authentications_are_limited_per_client(
    settings: Settings, client: Client, pool: asyncpg.Pool, api: httpx.AsyncClient
) -> None:
    created = await register(api, **fresh("Limited"))
    rating = f"{COMPLAINTS}/{created['case_id']}/rating"
    try:
        async with (
            own_app(settings, client, pool, auth_failure_limit=3) as app,
            http_from(app, "127.0.0.2") as guesser,
            http_from(app, "127.0.0.3") as colleague,
        ):
            # Three failures of either kind: a wrong API key, a wrong citizen token.
            error_of(await guesser.get(COMPLAINTS, headers=_bearer("guess-1")), 401,
                     "invalid_api_key")  # fmt: skip
            error_of(await guesser.post(rating, json={"token": "g" * 32, "rating": "satisfied"}),
                     404, "case_not_found")  # fmt: skip
            error_of(await guesser.get(COMPLAINTS, headers=_bearer("guess-3")), 401,
                     "invalid_api_key")  # fmt: skip
            # Then every credential of that client is refused unseen, a right one included,
            # so that a right guess does not stand out; no credential at all is no failure.
            for request in (
                guesser.get(COMPLAINTS, headers=_bearer("guess-4")),
                guesser.get(COMPLAINTS, headers=OPERATOR),
                guesser.post(rating, json={"token": created["citizen_token"],
                                           "rating": "satisfied"}),
                guesser.get(f"{COMPLAINTS}/{created['case_id']}", headers=OPERATOR),
            ):  # fmt: skip
                refused = await request
                error_of(refused, 429, "too_many_failed_authentications")
                assert 1 <= int(refused.headers["Retry-After"]) <= 60
            # Another client is not affected.
            assert (await colleague.get(COMPLAINTS, headers=OPERATOR)).status_code == 200
            assert (await guesser.get("/healthz")).status_code == 200
    finally:
        await finish(client, created["case_id"])
    assert "429" in (await api.get("/openapi.json")).json()["paths"][COMPLAINTS]["get"][
        "responses"
    ]


# --- security headers on every response ----------------------------------------------------

EXPECTED_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def assert_security_headers(response: httpx.Response, *, cacheable: bool = False) -> None:
    for name, value in EXPECTED_HEADERS.items():
        assert response.headers.get(name) == value, (response.url, dict(response.headers))
    assert "frame-ancestors 'none'" in response.headers.get("content-security-policy", "")
    if not cacheable:
        assert response.headers.get("cache-control") == "no-store", response.url


async def test_every_response_carries_the_security_headers(
    api: httpx.AsyncClient, settings: Settings, client: Client, pool: asyncpg.Pool
) -> None:
    created = await register(api, **fresh("Headers"))
    try:
        for response in (
            await api.get("/healthz"),
            await api.get(COMPLAINTS, headers=OPERATOR),
            await api.get(f"{COMPLAINTS}/{created['case_id']}", headers=OPERATOR),
            await api.get(COMPLAINTS),  # 401
            await api.get(f"{COMPLAINTS}/JS19990101-000001", headers=OPERATOR),  # 404
            await api.get("/api/v1/nothing-here"),  # 404 from the router
            await api.post(COMPLAINTS, json={}, headers=OPERATOR),  # 422
            await api.get("/openapi.json"),
            await api.get("/docs"),
            await api.get("/redoc"),
        ):
            assert_security_headers(response)
    finally:
        await finish(client, created["case_id"])

    # ...and an unexpected error's 500, answered outside every other middleware.
    async with own_app(settings, client, pool) as app:

        @app.get("/boom")
        async def boom() -> None:
            raise RuntimeError("boom")

        async with http_from(app, "127.0.0.4") as http:
            response = await http.get("/boom")
            assert response.status_code == 500
            assert_security_headers(response)


# --- /docs and /redoc without a CDN ----------------------------------------------------------

_REFERENCE = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|url:\s*'([^']+)'""")


async def test_docs_use_only_assets_installed_with_the_package(api: httpx.AsyncClient) -> None:
    for page in ("/docs", "/redoc"):
        response = await api.get(page)
        assert response.status_code == 200
        assert "http://" not in response.text and "https://" not in response.text, page
        urls = [a or b for a, b in _REFERENCE.findall(response.text)]
        assert any(u.endswith(".js") for u in urls), urls
        for url in urls:
            assert url.startswith("/") and not url.startswith("//"), (page, url)
            asset = await api.get(url)
            assert asset.status_code == 200, (page, url)
            kind = asset.headers["content-type"]
            expected = {".js": "javascript", ".css": "text/css", ".png": "image/png",
                        ".json": "application/json"}[Path(url).suffix]  # fmt: skip
            assert expected in kind, (url, kind)
            assert_security_headers(asset, cacheable=url.startswith("/docs-assets/"))


# --- case numbers cannot be probed without a key ----------------------------------------------


_CITIZEN_BODIES = {  # valid bodies with a made-up token
    "rating": {"token": "t" * 32, "rating": "satisfied"},
    "supplement": {"token": "t" * 32, "text": "more"},
    "withdraw": {"token": "t" * 32, "reason": "solved"},
}


def _case_operations(openapi: dict[str, object]) -> list[tuple[str, str]]:
    paths = openapi["paths"]
    assert isinstance(paths, dict)
    return [
        (method.upper(), path)
        for path, operations in paths.items()
        if "{case_id}" in path
        for method in operations
    ]


async def test_case_endpoints_answer_alike_for_real_and_made_up_case_numbers(
    api: httpx.AsyncClient, client: Client
) -> None:
    """Without a key (staff) or with a wrong token (citizen) a real case and a made-up one get
    the same answer, so case numbers (JS<date>-<seq>: guessable) cannot be enumerated."""
    created = await register(api, **fresh("Probe"))
    real, made_up = created["case_id"], "JS19990101-000001"
    operations = _case_operations((await api.get("/openapi.json")).json())
    assert len(operations) >= 10, operations
    try:
        for method, path in operations:
            body = _CITIZEN_BODIES.get(path.rsplit("/", 1)[-1])
            citizen = body is not None
            answers = []
            for case_id in (real, made_up):
                response = await api.request(
                    method, path.replace("{case_id}", case_id), json=body
                )
                error = error_of(response, 404 if citizen else 401,
                                 "case_not_found" if citizen else "unauthenticated")  # fmt: skip
                answers.append(error["message"].replace(case_id, "<case>"))
            assert answers[0] == answers[1], (method, path, answers)
    finally:
        await finish(client, real)


async def test_a_key_request_with_a_control_character_is_refused(api: httpx.AsyncClient) -> None:
    url = "/api/v1/admin/keys"
    for body in (
        {"name": "nul", "role": "department", "department_id": "wat\u0000er"},
        {"name": "nul\u0000", "role": "auditor"},
    ):
        error_of(await api.post(url, json=body, headers=ADMIN), 422, "invalid_request")


def test_make_run_alone_turns_the_demo_data_on(tmp_path: Path) -> None:
    """`make run` is the one place with demo data by default; JIESU_DEMO_DATA=0 still wins.
    The recipe runs a stand-in python that prints what jiesu.ops.stack would read."""
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "JIESU_DEMO_DATA=[$JIESU_DEMO_DATA] $*"\n')
    fake.chmod(0o755)
    root = Path(__file__).resolve().parent.parent

    def make_run(*extra: str, env: dict[str, str] | None = None) -> str:
        environ = {k: v for k, v in os.environ.items() if k != "JIESU_DEMO_DATA"}
        result = subprocess.run(
            ["make", "-s", "run", f"VENV={tmp_path}", "STAMP=", *extra],
            cwd=root, env={**environ, **(env or {})}, capture_output=True, text=True,
            timeout=60, check=True,
        )  # fmt: skip
        return result.stdout.strip()

    assert make_run() == "JIESU_DEMO_DATA=[1] -m jiesu.ops.stack"
    assert make_run(env={"JIESU_DEMO_DATA": "0"}) == "JIESU_DEMO_DATA=[0] -m jiesu.ops.stack"
    assert make_run("JIESU_DEMO_DATA=0") == "JIESU_DEMO_DATA=[0] -m jiesu.ops.stack"


def test_the_banner_without_demo_data_says_earlier_keys_stay() -> None:
    """``make run JIESU_DEMO_DATA=0`` on a data folder that had the demo county keeps its public
    keys (bootstrap removes nothing): the banner must not say there is no demo data."""
    text = banner([("Console", "http://127.0.0.1:8000/console/")], [], ".data/api.log")
    assert "No demo data" not in text
    assert "keys loaded before stay until revoked" in text
    assert "jiesu keys create --role admin --name NAME" in text
