"""The demo county's names (jiesu/ops/demo_data.py) in Chinese only, as the Chinese console
shows them: not "县水务局 (Water Affairs Bureau)" beside every case, nor "李娜 (话务员)（话务员）"
in the header (the console puts the role after the name itself). A demo install loaded with the
older bilingual names gets the Chinese ones when the demo data is loaded again."""

from __future__ import annotations

import re
import uuid

import asyncpg

from jiesu.ops import demo_data
from jiesu.ops.bootstrap import prepare_database

# a Latin letter or a bracket: an English gloss, or a role in brackets after a person's name
_NOT_CHINESE_ONLY = re.compile(r"[A-Za-z()（）]")


def _demo_names() -> dict[str, str]:
    """Every name the demo data gives, by what it names (area, department, category, person)."""
    names = {f"area {a[0]}": a[1] for a in (*demo_data.AREAS, demo_data.CHANNEL_GRID)}
    names |= {f"department {d[0]}": d[1]
              for d in (*demo_data.DEPARTMENTS, *demo_data.GRID_UNITS)}  # fmt: skip
    names |= {f"category {c[0]}": c[1] for c in (*demo_data.CATEGORIES,
              *demo_data.ENTERPRISE_CATEGORIES, demo_data.CHANNEL_CATEGORY)}  # fmt: skip
    names |= {f"person {p.login}": p.display_name for p in demo_data.DEMO_PEOPLE}
    return names


def test_the_demo_county_is_named_in_chinese_only() -> None:
    """The demo's units, grids, categories and people: Chinese names, no English beside them
    and no role in brackets after a person's name. (12345 is the hotline's number.)"""
    glossed = {what: name for what, name in _demo_names().items()
               if _NOT_CHINESE_ONLY.search(name)}  # fmt: skip
    assert not glossed, glossed
    assert demo_data.demo_person("operator").display_name == "李娜"


def _sibling_database(database_url: str, name: str) -> str:
    main, sep, query = database_url.partition("?")
    return f"{main.rpartition('/')[0]}/{name}{sep}{query}"


# the names a demo install loaded before the Chinese-only names carried
_OLDER_NAMES = """
UPDATE departments SET name = '县水务局 (Water Affairs Bureau)' WHERE id = 'water';
UPDATE categories SET name = '停水 (Water outage)' WHERE id = 'water_outage';
UPDATE areas SET name = '城关街道幸福社区第1网格 (Chengguan Xingfu Grid 1)'
    WHERE id = 'G-QH-01-01-1';
UPDATE staff SET display_name = '李娜 (话务员)' WHERE login = 'operator';
"""


async def test_an_older_demo_install_gets_the_chinese_names_when_loaded_again(
    database_url: str,
) -> None:
    """`make run` / `jiesu bootstrap --demo` on a database the older demo data was loaded
    into: the bilingual names are rewritten, the person's through the accounts service (the
    change recorded as made by demo-data, the name before and after)."""
    dsn = _sibling_database(database_url, f"jiesu_demonames_{uuid.uuid4().hex[:8]}")
    await prepare_database(dsn, demo=True)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(_OLDER_NAMES)
        await prepare_database(dsn, demo=True)
        named = await conn.fetchrow(
            "SELECT (SELECT name FROM departments WHERE id = 'water') AS department,"
            " (SELECT name FROM categories WHERE id = 'water_outage') AS category,"
            " (SELECT name FROM areas WHERE id = 'G-QH-01-01-1') AS grid,"
            " (SELECT display_name FROM staff WHERE login = 'operator') AS person"
        )
        assert dict(named) == {"department": "县水务局", "category": "停水",
                               "grid": "城关街道幸福社区第1网格", "person": "李娜"}  # fmt: skip
        change = await conn.fetchrow(
            "SELECT c.changed_by, c.before ->> 'display_name' AS before,"
            " c.after ->> 'display_name' AS after FROM staff_changes c"
            " JOIN staff s ON s.id = c.staff_id WHERE s.login = 'operator'"
            " ORDER BY c.id DESC LIMIT 1"
        )
        assert dict(change) == {"changed_by": "demo-data", "before": "李娜 (话务员)",
                                "after": "李娜"}  # fmt: skip
    finally:
        await conn.close()


async def test_a_demo_person_renamed_by_hand_keeps_the_name_at_every_demo_load(
    database_url: str,
) -> None:
    """An admin renamed the demo operator 李娜 to 李娜（话务一组） (the console's 人员, recorded as
    made by person:admin); the next `make run` put 李娜 back — and recorded it as demo-data's
    change — at every start. The loader renames what it named itself (an older demo's names);
    a name a person gave is theirs. Loaded twice: nothing more is recorded."""
    from jiesu.access import staff

    dsn = _sibling_database(database_url, f"jiesu_demonames_{uuid.uuid4().hex[:8]}")
    await prepare_database(dsn, demo=True)
    conn = await asyncpg.connect(dsn)
    try:
        renamed = "李娜（话务一组）"
        await staff.update_person(conn, "operator", by="person:admin", display_name=renamed)
        await conn.execute(  # and one of an older demo, never renamed by anyone since
            "UPDATE staff SET display_name = '张伟 (督办人员)' WHERE login = 'supervisor'"
        )
        changes = "SELECT count(*) FROM staff_changes"
        for _ in range(2):
            await prepare_database(dsn, demo=True)
            if _ == 0:
                recorded = await conn.fetchval(changes)
        names = dict(await conn.fetch(
            "SELECT login, display_name FROM staff WHERE login IN ('operator', 'supervisor')"
        ))  # fmt: skip
        assert names == {"operator": renamed, "supervisor": "张伟"}, names
        assert await conn.fetchval(changes) == recorded, "the second load changed nothing"
        last = await conn.fetchval(
            "SELECT c.changed_by FROM staff_changes c JOIN staff s ON s.id = c.staff_id"
            " WHERE s.login = 'operator' ORDER BY c.id DESC LIMIT 1"
        )
        assert last == "person:admin", last
    finally:
        await conn.close()


async def test_a_demo_person_disabled_by_hand_stays_disabled_as_a_revoked_demo_key_stays_revoked(
    database_url: str,
) -> None:
    """README: to keep a data folder's public demo credentials from working, `jiesu keys
    revoke` the demo keys and `jiesu users disable` the demo people. The next `make run` with
    the demo data kept the keys revoked but enabled the people again — the demo admin among
    them, with its public password admin-demo-pass. A demo person someone disabled stays
    disabled, as a revoked demo key stays revoked; the others are still put back."""
    from jiesu.access import staff

    dsn = _sibling_database(database_url, f"jiesu_demonames_{uuid.uuid4().hex[:8]}")
    await prepare_database(dsn, demo=True)
    conn = await asyncpg.connect(dsn)
    try:
        await staff.update_person(conn, "admin", by="cli:ops", active=False)
        await staff.set_password(conn, "admin", "a-password-only-ops-knows", by="cli:ops")
        await conn.execute("UPDATE staff SET role = 'auditor' WHERE login = 'supervisor'")
        await prepare_database(dsn, demo=True)
        admin = await staff.get_person(conn, "admin")
        assert admin is not None and not admin.active
        stored = await conn.fetchval("SELECT password_hash FROM staff WHERE login = 'admin'")
        assert not staff.password_matches(stored, "admin-demo-pass")
        supervisor = await staff.get_person(conn, "supervisor")
        assert supervisor is not None and supervisor.role is staff.Role.SUPERVISOR
    finally:
        await conn.close()


async def test_a_demo_unit_an_admin_changed_keeps_the_change_and_the_loader_records_its_own(
    database_url: str,
) -> None:
    """An admin renamed the demo's 县水务局 through the admin API (PUT
    /api/v1/admin/departments/water, recorded in admin_changes); the next `make run` put the
    demo's name back, by a raw upsert that admin_changes never heard of — the append-only log
    then said the unit was named what it no longer was. Now a demo unit, area or category
    with a change in the log is the admin's and stays; one the loader renames (an older
    demo's name) is recorded as demo-data's change, before and after, once."""
    from jiesu.admin import reference
    from jiesu.case.domain import Actor, Role
    from jiesu.db import create_pool

    dsn = _sibling_database(database_url, f"jiesu_demonames_{uuid.uuid4().hex[:8]}")
    await prepare_database(dsn, demo=True)
    pool = await create_pool(dsn, max_size=2)
    try:
        admin = Actor(role=Role.ADMIN, name="key:ops-admin")
        renamed = reference.DepartmentIn(name="县水务局（水务集团）", level="county",
                                         parent_id="city-gov", area_id="QH")  # fmt: skip
        await reference.put_record(pool, admin, reference.DEPARTMENTS, "water", renamed)
        await pool.execute("UPDATE categories SET name = '停水 (Water outage)'"
                           " WHERE id = 'water_outage'")  # fmt: skip
        for _ in range(2):
            await prepare_database(dsn, demo=True)
        names = await pool.fetchrow(
            "SELECT (SELECT name FROM departments WHERE id = 'water') AS department,"
            " (SELECT name FROM categories WHERE id = 'water_outage') AS category"
        )
        assert dict(names) == {"department": renamed.name, "category": "停水"}, dict(names)
        logged = await pool.fetch(
            "SELECT actor ->> 'name' AS by, entity_id, before ->> 'name' AS before,"
            " after ->> 'name' AS after FROM admin_changes"
            " WHERE entity_id IN ('water', 'water_outage') ORDER BY id"
        )
        assert [dict(r) for r in logged] == [
            {"by": "key:ops-admin", "entity_id": "water", "before": "县水务局",
             "after": renamed.name},
            {"by": "demo-data", "entity_id": "water_outage", "before": "停水 (Water outage)",
             "after": "停水"},
        ], logged  # fmt: skip
    finally:
        await pool.close()
