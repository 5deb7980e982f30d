"""Fair attribution (按轮次归责): breaches, returns, extensions and ratings are charged to the
department that held the case in that round (jiesu/stats/attribution.py, the rollup's
department grains)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from helpers import (
    OPERATOR,
    SUPERVISOR,
    act,
    case,
    department,
    eventually,
    register,
)
from statcases import case_row, insert_cases, local
from temporalio.testing import WorkflowEnvironment
from test_audit import run_cli

from jiesu.case.domain import Rating
from jiesu.config import Settings
from jiesu.readmodel.backfill import rebuild_handlings
from jiesu.stats import people as person_figures
from jiesu.stats import rollup
from jiesu.stats.attribution import handlings
from jiesu.stats.evaluation import DEFAULT_RULES, rule_points
from jiesu.stats.indicators import MEASURES, evaluate

URBAN = department("urban-management")
POLICE = department("police")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _event(minutes: int, kind: str, actor: str = "jiesu", **data: Any) -> dict[str, Any]:
    return {"kind": kind, "at": T0 + timedelta(minutes=minutes), "actor": {"name": actor},
            "data": data}  # fmt: skip


def _deadlines(start: int) -> dict[str, Any]:
    at = T0 + timedelta(minutes=start)
    return {"accept": (at + timedelta(minutes=30)).isoformat(),
            "contact": (at + timedelta(hours=1)).isoformat(),
            "finish": (at + timedelta(hours=24)).isoformat()}  # fmt: skip


A_BREACHES_AND_RETURNS_TO_B = [
    _event(0, "received", "operator"),
    _event(0, "deadlines_set", **_deadlines(0)),
    _event(0, "routed", department_id="A"),
    _event(30, "deadline_breached", deadline_kind="accept", department_id="A"),
    _event(60, "deadline_breached", deadline_kind="contact", department_id="A"),
    _event(70, "returned", "a-clerk", department_id="A", reason="not ours"),
    _event(70, "reassignment_started", n=1),
    _event(100, "deadlines_set", **_deadlines(100)),
    _event(100, "reassigned", "supervisor", department_id="B", round=2),
    _event(110, "accepted", "b-clerk"),
    _event(120, "contacted", "b-clerk"),
    _event(200, "extension_requested", "b-clerk"),
    _event(210, "extension_decided", "supervisor", approved=True,
           new_deadline=(T0 + timedelta(days=3)).isoformat()),
    _event(300, "replied", "b-officer", outcome="resolved"),
    _event(400, "rated", "citizen", rating="satisfied"),
    _event(400, "closed", resolution="rated"),
]  # fmt: skip


def test_a_breach_and_a_return_stay_with_the_department_that_held_the_case() -> None:
    a, b = handlings(A_BREACHES_AND_RETURNS_TO_B)
    assert (a.department_id, a.first_round, a.last_round) == ("A", 1, 1)
    assert a.breaches == ["accept", "contact"] and a.return_count == 1
    assert a.released_at == T0 + timedelta(minutes=100)
    assert a.accepted_at is None and a.replied_at is None and a.rating is None
    assert a.accept_deadline == T0 + timedelta(minutes=30)
    assert (b.department_id, b.first_round, b.last_round) == ("B", 2, 2)
    assert b.breaches == [] and b.return_count == 0 and b.extension_count == 1
    assert b.accept_deadline == T0 + timedelta(minutes=130)  # B's own, fresh deadlines
    assert b.finish_deadline == T0 + timedelta(days=3)  # moved by B's extension
    assert b.rating is Rating.SATISFIED and b.replied_by == "b-officer"
    assert b.released_at is None and b.accepted_by == "b-clerk"


def test_a_rejected_return_is_charged_to_the_unit_that_returned_it() -> None:
    events = [
        *A_BREACHES_AND_RETURNS_TO_B[:3],
        _event(10, "returned", "a-clerk", department_id="A", awaiting_approval=True),
        _event(20, "return_rejected", "supervisor", department_id="A", reason="yours"),
        _event(30, "returned", "a-clerk", department_id="A", awaiting_approval=True),
        _event(40, "return_upheld", "supervisor", department_id="A"),
        _event(50, "deadlines_set", **_deadlines(50)),
        _event(50, "reassigned", "supervisor", department_id="B", round=2),
    ]
    a, b = handlings(events)
    assert (a.rejected_return_count, b.rejected_return_count) == (1, 0)
    values = evaluate({"received": 4, "return_rejected": 1})
    assert values["rejected_return_rate"]["value"] == 0.25
    rule = next(r for r in DEFAULT_RULES.rules if r.indicator == "rejected_return_rate")
    assert rule_points(rule, 0.25) < 0  # 退单驳回 deducts in the evaluation


def test_a_rehandle_by_the_same_department_is_one_handling_judged_on_its_last_reply() -> None:
    events = [
        *A_BREACHES_AND_RETURNS_TO_B[:2],
        _event(0, "routed", department_id="A"),
        _event(10, "accepted", "a-clerk"),
        _event(20, "replied", "a-clerk", outcome="resolved"),
        _event(30, "rated", "citizen", rating="unsatisfied"),
        _event(40, "rehandle_started", unsatisfied_rounds=1),
        _event(50, "deadlines_set", **_deadlines(50)),
        _event(50, "reassigned", department_id="A", round=2),
        _event(60, "callback", "operator", rating="basically_satisfied"),  # not on a reply yet
        _event(70, "replied", "a-chief", outcome="explained"),
        _event(80, "callback", "operator", rating="satisfied"),
    ]
    [a] = handlings(events)
    assert (a.first_round, a.last_round) == (1, 2)
    assert a.accepted_at == T0 + timedelta(minutes=10)  # the response of its first round
    assert a.finish_deadline == T0 + timedelta(minutes=50, hours=24)
    assert a.replied_by == "a-chief" and a.rating is Rating.SATISFIED


async def _case_figures(pool: asyncpg.Pool, case_id: str) -> dict[str, dict[str, int]]:
    """The measures of one case per department, as the rollup's department grains count."""
    sums = ", ".join(f"count(*) FILTER (WHERE {m.sql}) AS {m.name}" for m in MEASURES)
    rows = await pool.fetch(
        f"SELECT department_id, {sums} FROM ({rollup.handling_rows()}) c"
        " WHERE c.case_id = $1 GROUP BY department_id",
        case_id,
    )
    return {r["department_id"]: {m.name: r[m.name] for m in MEASURES} for r in rows}


async def test_a_case_breached_by_a_and_returned_to_b_counts_against_a_only(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    # Registered 65 minutes late as urgent: urban management (A) breaches the 30-minute accept
    # and the 1-hour contact deadlines at once, then returns the case; police (B) gets it with
    # fresh deadlines and handles it on time.
    received = (datetime.now(UTC) - timedelta(minutes=65)).isoformat()
    created = await register(api, urgency="urgent", received_at=received)
    case_id = created["case_id"]

    async def breached() -> dict[str, Any] | None:
        state = await case(api, case_id, OPERATOR)
        kinds = {b["kind"] for b in state["breaches"]}
        return state if kinds >= {"accept", "contact"} else None

    await eventually(breached)
    await act(api, case_id, "return", URBAN, reason="Amplified music at night is police work")

    async def reassigning() -> bool:
        return (await case(api, case_id, OPERATOR))["status"] == "reassigning"

    await eventually(reassigning)
    await act(api, case_id, "reassign", SUPERVISOR, department_id="police", note="police")
    await act(api, case_id, "accept", POLICE)
    await act(api, case_id, "contact", POLICE)
    await act(api, case_id, "reply", POLICE, outcome="resolved", text="Music stopped",
              evidence=["https://evidence.test/noise.jpg"])  # fmt: skip
    await act(api, case_id, "rating", token=created["citizen_token"], rating="satisfied")

    async def closed() -> dict[str, dict[str, int]] | None:
        row = await pool.fetchrow("SELECT status FROM cases WHERE case_id = $1", case_id)
        if row is None or row["status"] != "closed":
            return None
        return await _case_figures(pool, case_id)

    figures = await eventually(closed)
    urban, police = figures["urban-management"], figures["police"]
    # both received it; A's late response and its return count against A only
    assert urban["received"] == police["received"] == 1
    assert (urban["response_due"], urban["responded_on_time"]) == (1, 0)
    assert (police["response_due"], police["responded_on_time"]) == (1, 1)
    assert (urban["returned"], police["returned"]) == (1, 0)
    # the reply, the verdict and the resolution are B's
    assert (urban["rated"], police["rated"], police["satisfied"]) == (0, 1, 1)
    assert (urban["resolution_judged"], police["resolved"]) == (0, 1)
    assert (urban["handled"], police["handled"]) == (0, 1)
    row = await pool.fetchrow(
        "SELECT breaches, return_count FROM case_handlings"
        " WHERE case_id = $1 AND department_id = 'police'", case_id,
    )  # fmt: skip
    assert tuple(row) == ([], 0)


async def test_department_figures_count_handlings_and_fall_back_to_the_case_row(
    api: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    """A hand-made case with handlings is counted for each department that held it; one
    without (projected before handlings existed) for its current department."""
    day = date(2005, 9, 12)
    moved, legacy = case_row(local(day), department_id="police"), case_row(local(day, 11))
    await insert_cases(pool, [moved, legacy])
    await pool.executemany(
        "INSERT INTO case_handlings (case_id, department_id, first_round, last_round,"
        " assigned_at, released_at, accept_deadline, breaches, return_count)"
        " VALUES ($1, $2, $3, $3, $4, $5, $6, $7, $8)",
        [(moved["case_id"], "water", 1, local(day), local(day, 12), moved["accept_deadline"],
          ["accept"], 1),
         (moved["case_id"], "police", 2, local(day, 12), None, None, [], 0)],
    )  # fmt: skip
    await pool.execute(
        "UPDATE case_handlings h SET accept_deadline = c.accept_deadline, accepted_at ="
        " c.accepted_at, finish_deadline = c.finish_deadline, replied_at = c.replied_at,"
        " rating = c.rating, resolved = c.resolved, handled_level = 'county'"
        " FROM cases c WHERE c.case_id = h.case_id AND h.department_id = 'police'"
    )

    await rollup.ensure_fresh(pool, settings.timezone)  # what the worker's refresher does

    async def figures(department_id: str) -> dict[str, Any]:
        response = await api.get(
            "/api/v1/stats/indicators",
            params={"from": day.isoformat(), "to": day.isoformat(),
                    "department_id": department_id},
            headers=SUPERVISOR,
        )  # fmt: skip
        assert response.status_code == 200, response.text
        return response.json()["totals"]

    water, police = await figures("water"), await figures("police")
    assert water["received"] == 2  # the legacy case and its round of the moved one
    assert water["return_rate"]["numerator"] == 1
    assert water["response_rate"] == {"numerator": 1, "denominator": 2, "value": 0.5}
    assert water["satisfaction_rate"]["denominator"] == 1  # the legacy case's verdict only
    assert police["received"] == 1 and police["return_rate"]["numerator"] == 0
    assert police["satisfaction_rate"]["numerator"] == 1
    everyone = await api.get(
        "/api/v1/stats/indicators",
        params={"from": day.isoformat(), "to": day.isoformat()}, headers=SUPERVISOR,
    )  # fmt: skip
    assert everyone.json()["totals"]["received"] == 2  # each case once


# --- per-person figures (个人绩效) ------------------------------------------------------------


async def test_per_person_figures_next_to_the_unit(
    api: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    """Water's clerk li replied to two cases (one late, one unsatisfied), wang to one; zhao
    returned a case that police then handled. Each is charged with their own part."""
    day = date(2006, 5, 15)
    rows = [case_row(local(day, h)) for h in (9, 10, 11, 12)]
    rows[3]["department_id"] = "police"
    await insert_cases(pool, rows)
    deadline = local(day, 20)
    handlings_ = [  # case, department, replied_by, replied at, rating
        (rows[0], "water", "li", local(day, 15), "satisfied"),
        (rows[1], "water", "li", local(day, 22), "unsatisfied"),  # late
        (rows[2], "water", "wang", local(day, 16), None),
        (rows[3], "water", None, None, None),  # returned by zhao
        (rows[3], "police", "chen", local(day, 18), "satisfied"),
    ]
    await pool.executemany(
        "INSERT INTO case_handlings (case_id, department_id, first_round, last_round,"
        " assigned_at, finish_deadline, replied_at, replied_by, rating, return_count)"
        " VALUES ($1, $2, 1, 1, $3, $4, $5, $6, $7, $8)",
        [(r["case_id"], dept, r["received_at"], deadline, at, who, rating,
          1 if who is None else 0) for r, dept, who, at, rating in handlings_],
    )  # fmt: skip
    await pool.execute(
        "INSERT INTO case_events (case_id, seq, kind, at, actor, data)"
        " VALUES ($1, 1, 'returned', $2, $3, $4)",
        rows[3]["case_id"], local(day, 13),
        {"role": "department", "name": "zhao", "department_id": "water"},
        {"department_id": "water", "reason": "not ours"},
    )  # fmt: skip
    as_of = await rollup.ensure_fresh(pool, settings.timezone)  # the worker's refresher
    response = await api.get(
        "/api/v1/stats/people", params={"from": day.isoformat(), "to": day.isoformat()},
        headers=SUPERVISOR,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    assert datetime.fromisoformat(response.json()["as_of"]) == as_of
    units = {u["department_id"]: u for u in response.json()["units"]}
    assert response.json()["units"] == await person_figures.from_handlings(
        pool, day, day, settings.timezone
    )  # the people rollup gives what the handlings and events give
    water = units["water"]
    assert water["unit"]["cases"] == 4 and water["unit"]["handled"] == 3
    assert water["unit"]["returns"] == 1
    people = {p["person"]: p for p in water["people"]}
    assert list(people) == ["li", "wang", "zhao"]  # by cases handled
    assert people["li"]["handled"] == 2
    assert people["li"]["on_time_rate"] == {"numerator": 1, "denominator": 2, "value": 0.5}
    assert people["li"]["satisfaction_rate"]["value"] == 0.5
    assert people["wang"]["satisfaction_rate"]["denominator"] == 0
    assert (people["zhao"]["handled"], people["zhao"]["returns"]) == (0, 1)
    assert [p["person"] for p in units["police"]["people"]] == ["chen"]
    own = await api.get(
        "/api/v1/stats/people", params={"from": day.isoformat(), "to": day.isoformat()},
        headers=department("police"),
    )  # fmt: skip
    assert [u["department_id"] for u in own.json()["units"]] == ["police"]
    other = await api.get("/api/v1/stats/people", params={"department_id": "water"},
                          headers=department("police"))  # fmt: skip
    assert other.status_code == 403


# --- backfill (补建承办记录) ---------------------------------------------------------------------

_HANDLING_FACTS = (
    "SELECT department_id, first_round, last_round, return_count, breaches, accepted_at"
    " FROM case_handlings WHERE case_id = $1 ORDER BY first_round"
)


async def test_backfill_rebuilds_the_handlings_of_cases_written_before_them(
    api: httpx.AsyncClient, pool: asyncpg.Pool, env: WorkflowEnvironment, settings: Settings
) -> None:
    """A case projected before migration 0014 has no handlings: ``jiesu backfill-handlings``
    rebuilds them from its events, the same rows the projection writes; a second run (and
    ``--all``) changes nothing."""
    case_id = (await register(api))["case_id"]

    async def status(wanted: str) -> bool:
        return (await case(api, case_id, OPERATOR))["status"] == wanted

    await eventually(lambda: status("assigned"))
    await act(api, case_id, "return", URBAN, reason="Amplified music at night is police work")
    await eventually(lambda: status("reassigning"))
    await act(api, case_id, "reassign", SUPERVISOR, department_id="police", note="police")
    await act(api, case_id, "accept", POLICE)

    async def written() -> list[asyncpg.Record] | None:
        rows = await pool.fetch(_HANDLING_FACTS, case_id)
        return rows if len(rows) == 2 and rows[1]["accepted_at"] else None

    projected = [tuple(r) for r in await eventually(written)]
    await pool.execute("DELETE FROM case_handlings WHERE case_id = $1", case_id)  # as before 0014

    code, out, err = await run_cli(env, settings, "backfill-handlings")
    assert code == 0, err
    assert "handlings rebuilt for" in out
    assert [tuple(r) for r in await pool.fetch(_HANDLING_FACTS, case_id)] == projected
    await rebuild_handlings(pool)  # again: the case has its handlings, nothing to do for it
    assert [tuple(r) for r in await pool.fetch(_HANDLING_FACTS, case_id)] == projected
    code, _, err = await run_cli(env, settings, "backfill-handlings", "--all")
    assert code == 0, err
    assert [tuple(r) for r in await pool.fetch(_HANDLING_FACTS, case_id)] == projected


async def test_per_person_figures_as_csv(
    api: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    """docs/statistics.md: every statistics GET answers CSV with ?format=csv or Accept:
    text/csv. The per-person figures answered JSON to both (a 200 a client saved as .csv)."""
    day = date(2006, 6, 14)
    row = case_row(local(day, 9))
    await insert_cases(pool, [row])
    await pool.execute(
        "INSERT INTO case_handlings (case_id, department_id, first_round, last_round,"
        " assigned_at, finish_deadline, replied_at, replied_by, rating)"
        " VALUES ($1, 'water', 1, 1, $2, $3, $4, '=li', 'satisfied')",
        row["case_id"], row["received_at"], local(day, 20), local(day, 15),
    )  # fmt: skip
    await rollup.ensure_fresh(pool, settings.timezone)
    period = {"from": day.isoformat(), "to": day.isoformat()}
    for params, headers in (({**period, "format": "csv"}, SUPERVISOR),
                            (period, {**SUPERVISOR, "Accept": "text/csv"})):  # fmt: skip
        response = await api.get("/api/v1/stats/people", params=params, headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert [(r["department_id"], r["person"], r["cases"], r["handled"]) for r in rows] == [
            ("water", "", "1", "1"), ("water", "'=li", "", "1")
        ]  # the unit, then its people; a name is never read as a formula  # fmt: skip
        assert rows[1]["on_time_rate"] == "1.0" and rows[1]["satisfaction_rate"] == "1.0"
