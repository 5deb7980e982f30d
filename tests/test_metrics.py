"""Prometheus metrics as a scraper reads them, over real sockets: the API's requests by route
template and status with latency histograms (its own port), and the worker's endpoint (the
Temporal SDK's runtime) with the SDK's metrics, the domain gauges and the read model's lag.
A case really lives through a worker of its own here, on real Temporal and PostgreSQL."""

from __future__ import annotations

import asyncio
import re
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import patch

import asyncpg
import httpx
from helpers import OPERATOR, complaint, eventually, handle_of, served
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from statcases import case_row
from temporalio.client import Client
from test_compose import dashboard_metric_names

from api import observability
from api.main import create_app
from jiesu.client import connect_to
from jiesu.config import Settings
from jiesu.health import checks, domain_metrics
from jiesu.notify import outbox
from jiesu.telemetry import temporal_runtime
from worker import build_worker

COMPLAINTS = "/api/v1/complaints"
Samples = list[tuple[str, dict[str, str], float]]


def free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


async def scrape(address: str) -> Samples:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://{address}/metrics", timeout=5)
    assert response.status_code == 200, response.text
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    ]


def registry_samples(registry: CollectorRegistry) -> Samples:
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    ]


def value(samples: Samples, name: str, **labels: str) -> float | None:
    for sample_name, sample_labels, v in samples:
        if sample_name == name and labels.items() <= sample_labels.items():
            return v
    return None


@asynccontextmanager
async def own_worker(
    client: Client, pool: asyncpg.Pool, settings: Settings, metrics: str
) -> AsyncIterator[tuple[Client, Settings]]:
    """A worker on a task queue of its own, whose client's runtime serves ``metrics``."""
    runtime = temporal_runtime(metrics, domain_metrics.HISTOGRAM_BUCKETS)
    assert runtime is not None
    own = await connect_to(
        client.service_client.config.target_host, client.namespace, runtime=runtime
    )
    queue = settings.model_copy(update={"task_queue": f"metrics-{uuid.uuid4().hex[:8]}"})
    async with build_worker(own, pool, queue):
        yield own, queue


async def test_api_requests_by_route_template_status_and_latency(
    settings: Settings, client: Client, pool: asyncpg.Pool
) -> None:
    address = free_address()
    app = create_app(
        settings.model_copy(update={"api_metrics_address": address}), client=client, pool=pool
    )
    async with served(app) as api:
        created = await api.post(COMPLAINTS, json=complaint(), headers=OPERATOR)
        assert created.status_code == 201, created.text
        case_id = created.json()["case_id"]
        try:

            async def readable() -> bool:  # under load a fresh case may answer 503 first
                got = await api.get(f"{COMPLAINTS}/{case_id}", headers=OPERATOR)
                return got.status_code == 200

            await eventually(readable, within=30, interval=0.2)
            missing = await api.get(f"{COMPLAINTS}/JS19990101-000001", headers=OPERATOR)
            assert missing.status_code == 404
            assert (await api.get(f"{COMPLAINTS}/{case_id}")).status_code == 401
            assert (await api.get("/healthz")).status_code == 200
            samples = await scrape(address)
        finally:
            await handle_of(client, case_id).terminate("test finished")
    template = f"{COMPLAINTS}/{{case_id}}"
    for status in ("404", "401"):
        assert value(samples, "jiesu_api_requests_total", handler=template, method="GET",
                     status=status) == 1, status  # fmt: skip
    assert value(samples, "jiesu_api_requests_total", handler=template, method="GET",
                 status="200")  # fmt: skip
    assert value(samples, "jiesu_api_requests_total", handler=COMPLAINTS, method="POST",
                 status="201") == 1  # fmt: skip
    count = value(samples, "jiesu_api_request_duration_seconds_count", handler=template,
                  status="200")  # fmt: skip
    assert count and value(samples, "jiesu_api_request_duration_seconds_bucket",
                           handler=template, status="200", le="+Inf") == count  # fmt: skip
    handlers = {labels.get("handler") for _, labels, _ in samples}
    assert not any(h and case_id in h for h in handlers), "a series per case number"
    assert "/healthz" not in handlers


async def test_a_route_template_is_resolved_once_not_per_request(
    settings: Settings, client: Client, pool: asyncpg.Pool
) -> None:
    """Walking every route of the app for each request's template was 4.5 % of the API's CPU
    (docs/performance.md): it is resolved at a route's first request and then kept."""
    resolved: list[str | None] = []
    resolve = observability.get_route_name

    def counting(*args: Any, **kwargs: Any) -> str | None:
        resolved.append(resolve(*args, **kwargs))
        return resolved[-1]

    app = create_app(settings, client=client, pool=pool)
    with patch.object(observability, "get_route_name", counting):
        async with served(app) as api:
            for n in range(3):  # no key: answered 401 by the route's own dependency
                got = await api.get(f"{COMPLAINTS}/JS19990101-00000{n}")
                assert got.status_code == 401
            samples = registry_samples(app.state.metrics_registry)
    template = f"{COMPLAINTS}/{{case_id}}"
    assert resolved == [template]
    assert value(samples, "jiesu_api_requests_total", handler=template, method="GET",
                 status="401") == 3  # fmt: skip


# The templates of requests that are not a plain API route: mounted apps (the console, the
# citizen's page, Open311), a method the path does not have, a path no route has, probes.
LABELLED = [
    ("GET", "/console/login", "/console/login", "200"),
    ("PUT", "/my/abcdef/x", "/my/{token}/{name}", "405"),
    ("DELETE", COMPLAINTS, COMPLAINTS, "405"),
    ("PUT", f"{COMPLAINTS}/JS19990101-000001", f"{COMPLAINTS}/{{case_id}}", "405"),
    ("GET", "/open311/v2/requests/JS1.json", "/open311/v2/requests/{resource}", "404"),
    ("GET", "/no/such/path", "none", "404"),
    # Redirected to the path without the slash: not a series named after the case (the
    # instrumentator's own middleware labelled it with the path as requested).
    ("GET", f"{COMPLAINTS}/JS19990101-000001/", "none", "307"),
]


async def test_requests_are_labelled_by_the_template_of_their_route(
    settings: Settings, client: Client, pool: asyncpg.Pool
) -> None:
    app = create_app(settings, client=client, pool=pool)
    async with served(app) as api:
        for method, path, _, status in LABELLED * 2:  # the second time from what was kept
            got = await api.request(method, path, headers=OPERATOR)
            assert str(got.status_code) == status, (method, path, got.text)
        assert (await api.get("/healthz")).status_code == 200
        samples = registry_samples(app.state.metrics_registry)
    for method, path, handler, status in LABELLED:
        counted = value(samples, "jiesu_api_requests_total", handler=handler, method=method,
                        status=status)  # fmt: skip
        assert counted is not None and counted >= 2, (method, path, handler)
    assert "/healthz" not in {labels.get("handler") for _, labels, _ in samples}


async def test_the_listener_stops_with_the_app(
    settings: Settings, client: Client, pool: asyncpg.Pool
) -> None:
    address = free_address()
    app = create_app(
        settings.model_copy(update={"api_metrics_address": address}), client=client, pool=pool
    )
    async with served(app):
        assert await scrape(address) is not None
    host, _, port = address.rpartition(":")
    with socket.socket() as s:
        assert s.connect_ex((host, int(port))) != 0, "the metrics port is still open"


async def test_worker_endpoint_has_sdk_domain_and_read_model_metrics(
    settings: Settings, client: Client, pool: asyncpg.Pool
) -> None:
    address = free_address()
    async with own_worker(client, pool, settings, address) as (own, queue):
        stop = asyncio.Event()
        meter = own.service_client.config.runtime.metric_meter
        sampler = asyncio.create_task(domain_metrics.sample(pool, meter, stop, interval=0.2))
        case_id = ""
        try:
            api_address = free_address()
            with_metrics = queue.model_copy(update={"api_metrics_address": api_address})
            async with served(create_app(with_metrics, client=client, pool=pool)) as api:
                created = await api.post(COMPLAINTS, json=complaint(), headers=OPERATOR)
                assert created.status_code == 201, created.text
                case_id = created.json()["case_id"]
                api_samples = await scrape(api_address)
            async def assigned() -> bool:
                status = "SELECT status FROM cases WHERE case_id = $1"
                return await pool.fetchval(status, case_id) == "assigned"

            await eventually(assigned, within=30)

            async def scraped() -> Samples | None:
                samples = await scrape(address)
                assigned = value(samples, "jiesu_open_cases", status="assigned")
                lag = value(samples, "jiesu_read_model_lag_seconds_count")
                return samples if assigned and lag else None

            samples = await eventually(scraped, within=30, interval=0.3)
        finally:
            stop.set()
            await sampler
            if case_id:
                await handle_of(client, case_id).terminate("test finished")
    names = {name for name, _, _ in samples}
    # the SDK's own worker metrics, through its runtime telemetry
    assert any(n.startswith("temporal_workflow_task") for n in names), sorted(names)
    assert any(n.startswith("temporal_local_activity_execution") for n in names), sorted(names)
    # every open status and ladder step is a series, 0 included
    for status in ("registered", "dispatching", "reassigning", "assigned", "handling", "replied"):
        assert value(samples, "jiesu_open_cases", status=status) is not None, status
    assert value(samples, "jiesu_open_cases_supervised", step="accountability") is not None
    assert value(samples, "jiesu_open_cases_breached", deadline="finish") is not None
    assert value(samples, "jiesu_outbox_notices", status="pending") is not None
    assert value(samples, "jiesu_outbox_notices", status="skipped") is not None
    assert value(samples, "jiesu_outbox_oldest_unsent_age_seconds") is not None
    assert value(samples, "jiesu_read_model_lag_seconds_bucket", le="+Inf")

    # Every metric the Grafana dashboard queries is one these endpoints really export.
    exported = names | {name for name, _, _ in api_samples}
    missing = dashboard_metric_names() - exported - PROMETHEUS_OWN - FIRST_USE_ONLY
    assert not missing, f"the dashboard queries metrics nobody exports: {sorted(missing)}"


PROMETHEUS_OWN = {"up"}  # Prometheus's own series per scrape target
# The SDK creates a series at its first use: failures (this test's case fails nothing) and
# regular activities (reports, archive, cases from before lean-case-v1; a new case runs
# local activities only).
FIRST_USE_ONLY = {
    "temporal_activity_execution_failed_total",
    "temporal_local_activity_execution_failed_total",
    "temporal_activity_execution_latency_seconds_bucket",
}


async def test_the_outbox_gauge_counts_skipped_notices(pool: asyncpg.Pool) -> None:
    """A citizen's SMS to a landline or short number with no e-mail is written ``skipped``
    (migration 0039), but jiesu_outbox_notices counted pending, sending and failed only: the
    notices nobody received were in no series and no dashboard. Now ``skipped`` is a status
    of the gauge like the others (0 when there is none)."""
    key = f"TEST-METRICS-{uuid.uuid4().hex[:10]}:follow-up"
    await pool.execute(
        "INSERT INTO notifications (key, case_id, event_seq, event_kind, recipient_kind,"
        " recipient_id, channel, subject, body, status, last_error) VALUES ($1, $2, 0,"
        " 'received', 'citizen', $2, 'sms', 'test', 'synthetic', 'skipped', 'not a mobile')",
        key, key.split(":")[0],
    )
    try:
        measured = await domain_metrics.measure(pool)
        assert measured.outbox.get("skipped", 0) >= 1, measured.outbox
        assert set(domain_metrics.OUTBOX_STATUSES) >= {"pending", "sending", "failed", "skipped"}
    finally:
        await pool.execute("DELETE FROM notifications WHERE key = $1", key)



async def test_the_gauges_read_indexes_not_every_case_and_notice(pool: asyncpg.Pool) -> None:
    """Every 15 s the worker counts open cases and unsent notices. Without the partial indexes
    of migration 0042 each count read every notice and every case's index entry: 560–920 ms
    at 1,000,000 cases and 3,000,000 notices, 25 ms with them (docs/performance.md). Planned
    here on copies of the two tables (temporary, this connection's only: they hide the real
    ones from the gauges' queries) holding 20,000 closed cases and sent notices and 20 of
    each that the gauges count, as the planner sees a table in use."""
    expected = {  # the indexes each query may read (the ladder's board has one, 0043)
        domain_metrics._CASES: {"cases_open_gauges"},
        domain_metrics._BREACHED: {"cases_open_gauges"},
        domain_metrics._SUPERVISED: {"cases_open_gauges", "cases_on_ladder"},
        domain_metrics._OUTBOX: {"notifications_unsent"},
    }
    async with pool.acquire() as conn, conn.transaction():
        await _temporary_copies(conn, "GAUGE", open_cases=20)
        await conn.execute(
            "INSERT INTO notifications (key, case_id, event_seq, event_kind, recipient_kind,"
            " recipient_id, channel, subject, body, status) SELECT 'n' || g, 'GAUGE' || g, 1,"
            " 'accepted', 'citizen', 'GAUGE' || g, 'sms', 's', 'b',"
            " CASE WHEN g <= 20 THEN 'failed' ELSE 'sent' END FROM generate_series(1, 20000) g"
        )
        await conn.execute("ANALYZE pg_temp.cases; ANALYZE pg_temp.notifications")
        copies = await _copies_of_indexes(conn, set().union(*expected.values()))
        for sql, indexes in expected.items():
            plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + sql))
            assert any(copies.get(i, f"(no index {i})") in plan for i in indexes), plan
            assert "Seq Scan" not in plan, plan


# Each query that reads the outbox by its status, with its arguments, and the indexes its plan
# may read: the doctor's (notification_overdue, notification_failed, citizen_not_told), the
# gauge of the oldest unsent notice and the dispatcher's own (expire, claim). Measured at
# 2,000,000 notices with `python -m bench.outbox_failed_plan` (docs/performance.md, "Outbox
# indexes (twenty-first session)"): each reads the index named here there too.
_DOCTOR = checks.DoctorOptions()
_OUTBOX_BY_STATUS: dict[str, tuple[str, tuple[object, ...], set[str]]] = {
    "gauge oldest unsent": (domain_metrics._OLDEST_UNSENT, (),
                            {"notifications_due", "notifications_unsent"}),
    "doctor notification_overdue": (checks._OVERDUE, (_DOCTOR.notification_overdue_after, 500),
                                    {"notifications_due", "notifications_unsent"}),
    "doctor notification_failed": (checks._FAILED, (500,), {"notifications_failed"}),
    "doctor citizen_not_told": (checks._NOT_TOLD, (500,), {"notifications_citizens_not_told"}),
    "outbox expire": (outbox._EXPIRE, (10,), {"notifications_unsent", "notifications_due"}),
    "outbox claim": (outbox._CLAIM, (50, timedelta(seconds=30), 10), {"notifications_due"}),
}  # fmt: skip


async def test_the_outbox_is_read_by_its_partial_indexes_not_every_notice(
    pool: asyncpg.Pool,
) -> None:
    """The notices not sent are a few among every notice ever sent: the doctor's findings,
    the gauge of the oldest unsent one and the dispatcher's claim each read a partial index
    of the outbox (0004's notifications_due, 0041's notifications_citizens_not_told, 0042's
    notifications_unsent, 0044's notifications_failed), never the whole table. Only the
    gauges' counts had a plan test (above): a dropped or folded index went unnoticed.
    Planned on temporary copies of the outbox and the cases, as above: 20,000 notices, 20
    pending, 1,000 each failed and skipped (more than the doctor's --limit, 500: they stay
    until resent, or for ever), the rest sent; a tenth of the cases open, as the bench has
    them."""
    async with pool.acquire() as conn, conn.transaction():
        await _temporary_copies(conn, "OUTBOX", open_cases=2000)
        await conn.execute(
            "INSERT INTO notifications (key, case_id, event_seq, event_kind, recipient_kind,"
            " recipient_id, channel, subject, body, status, created_at) SELECT 'n' || g,"
            " 'OUTBOX' || (g % 20000 + 1), 1, 'accepted', 'citizen', 'OUTBOX' || (g % 20000 + 1),"
            " 'sms', 's', 'b', CASE WHEN g <= 20 THEN 'pending' WHEN g % 20 = 1 THEN 'failed'"
            " WHEN g % 20 = 2 THEN 'skipped' ELSE 'sent' END,"
            " now() - make_interval(mins => g) FROM generate_series(1, 20000) g"
        )
        await conn.execute("ANALYZE pg_temp.cases; ANALYZE pg_temp.notifications")
        wanted = set().union(*(indexes for _, _, indexes in _OUTBOX_BY_STATUS.values()))
        copies = await _copies_of_indexes(conn, wanted)
        for name, (sql, args, indexes) in _OUTBOX_BY_STATUS.items():
            plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + sql, *args))
            assert any(copies.get(i, f"(no index {i})") in plan for i in indexes), f"{name}\n{plan}"
            assert "Seq Scan on notifications" not in plan, f"{name}\n{plan}"


async def _temporary_copies(conn: asyncpg.Connection, prefix: str, open_cases: int) -> None:
    """Empty copies of ``notifications`` and ``cases`` on this connection (temporary, dropped
    at commit: they hide the real tables from the queries planned), the cases filled with
    20,000 of ``prefix`` 1..20000 (and the template's row), the first ``open_cases`` open."""
    template = case_row(datetime.now(UTC) - timedelta(days=3))
    columns = ", ".join(template)
    opened = f"CASE WHEN g <= {open_cases} THEN 'assigned' ELSE status END"
    changed = {"case_id": f"'{prefix}' || g", "status": opened}
    copied = ", ".join(changed.get(name, name) for name in template)
    for table in ("cases", "notifications"):
        await conn.execute(f"CREATE TEMP TABLE {table} (LIKE public.{table} INCLUDING ALL)"
                           " ON COMMIT DROP")  # fmt: skip
    placeholders = ", ".join(f"${n}" for n in range(1, len(template) + 1))
    await conn.execute(f"INSERT INTO cases ({columns}) VALUES ({placeholders})",
                       *template.values())  # fmt: skip
    await conn.execute(f"INSERT INTO cases ({columns}) SELECT {copied}"
                       " FROM cases, generate_series(1, 20000) g")  # fmt: skip


async def _copies_of_indexes(conn: asyncpg.Connection, names: set[str]) -> dict[str, str]:
    """The name of each index's copy on this connection's temporary tables (LIKE … INCLUDING
    ALL names the copies itself), found by the same definition."""
    rows = await conn.fetch(
        "SELECT schemaname LIKE 'pg_temp%' AS copy, indexname,"
        " regexp_replace(indexdef, '^.* ON [^ ]+ ', '') AS shape FROM pg_indexes"
        " WHERE tablename IN ('cases', 'notifications')"
        " AND (schemaname = 'public' OR schemaname = pg_my_temp_schema()::regnamespace::text)"
    )
    copy_by_shape = {r["shape"]: r["indexname"] for r in rows if r["copy"]}
    return {r["indexname"]: copy_by_shape[r["shape"]] for r in rows
            if not r["copy"] and r["indexname"] in names}  # fmt: skip


# The dispatcher's statements that find notices it holds by their id, with their arguments for
# a notice claimed once (SQL, ``{id}`` its id): the marks, the heartbeat and the hand-back.
_OUTBOX_BY_ID: dict[str, tuple[str, str]] = {
    "mark sent": (outbox._SENT, "{id}, 1, 'email'"),
    "mark failed attempt": (outbox._FAILED_ATTEMPT, "{id}, 1, 10, 'refused', '10 s', 'email'"),
    "mark skipped": (outbox._SKIPPED, "{id}, 1, 'not a mobile'"),
    "heartbeat": (outbox._RENEW, "ARRAY[{id}], ARRAY[1], '30 s'"),
    "hand back": (outbox._HAND_BACK, "ARRAY[{id}], ARRAY[1]"),
}


async def test_the_outbox_finds_a_notice_it_holds_by_its_primary_key(database_url: str) -> None:
    """Each mark, heartbeat and hand-back of the dispatcher is of notices it holds, by id: one
    row each, by the primary key. Their fence (still ``sending``, the claim's attempts) was
    written ``status = 'sending'``, which let the planner read them through a partial index
    instead, chosen by the statistics: after a vacuum of a quiet outbox both 0004's
    notifications_due and 0042's notifications_unsent look empty, and with a backlog pending
    the heartbeat and the hand-back read the whole of notifications_due — every pending
    notice, a median of 450–630 buffers each at a backlog of 10,000 on 2,000,000 notices,
    against 5 by the primary key (bench/outbox_mark_plan.py) — or, as here, every notice in
    flight through notifications_unsent. Planned here as the bench found it, on a
    temporary copy of the outbox (its own session: VACUUM runs outside a transaction): 20,000
    sent notices vacuumed, then 2,000 pending and 50 of them claimed; each statement prepared,
    as asyncpg runs it, and planned both ways a prepared statement may be: for its values
    (custom) and once for all (generic, what PostgreSQL may settle on after five runs)."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("CREATE TEMP TABLE notifications"
                           " (LIKE public.notifications INCLUDING ALL)")  # fmt: skip
        fill = ("INSERT INTO notifications (key, case_id, event_seq, event_kind, recipient_kind,"
                " recipient_id, channel, subject, body, status, attempts) SELECT {p} || g,"
                " 'BYID' || g / 8, 1, 'routed', 'department', 'water', 'email', 's', 'b', {s}, 1"
                " FROM generate_series(1, $1::int) g")  # fmt: skip
        await conn.execute(fill.format(p="'sent:'", s="'sent'"), 20000)
        await conn.execute("VACUUM ANALYZE pg_temp.notifications")
        await conn.execute(fill.format(p="'due:'", s="'pending'"), 2000)
        claimed = await conn.fetchval(
            "UPDATE notifications SET status = 'sending' WHERE id IN (SELECT id FROM"
            " notifications WHERE status = 'pending' ORDER BY id LIMIT 50) RETURNING id")
        pkey = (await _copies_of_indexes(conn, {"notifications_pkey"}))["notifications_pkey"]
        wrong = {}
        for name, (sql, args) in _OUTBOX_BY_ID.items():
            await conn.execute(f"PREPARE by_id AS {sql}")
            for mode in ("force_custom_plan", "force_generic_plan"):
                await conn.execute(f"SET plan_cache_mode = {mode}")
                explained = f"EXPLAIN EXECUTE by_id({args.format(id=claimed)})"
                plan = "\n".join(r[0] for r in await conn.fetch(explained))
                scans = re.findall(r"(\w[\w ]*Scan)(?: Backward)? (?:using (\w+) )?on"
                                   r" notifications", plan)  # fmt: skip
                if scans != [("Index Scan", pkey)]:
                    wrong[f"{name} ({mode})"] = plan
            await conn.execute("DEALLOCATE by_id")
        assert not wrong, "\n\n".join(f"{name}:\n{plan}" for name, plan in wrong.items())
    finally:
        await conn.close()
