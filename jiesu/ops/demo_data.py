"""Demo reference data: the fictional 青河县 (Qinghe County).

Loaded by ``jiesu.ops.bootstrap.prepare_database(demo=True)`` for ``make run`` (JIESU_DEMO_DATA=1)
and the tests; never by docker-compose or a plain ``jiesu bootstrap``. Everything is
idempotent: areas, departments and categories are upserted (rewritten only when they differ
from the definitions below, each rewrite recorded in ``admin_changes`` as made by demo-data,
and never one an administrator changed: a record with a change of theirs in the log is
theirs), routing rules and API keys are inserted once.

Areas (``areas``): county ``QH`` → 3 townships/streets → 2 communities/villages each → 2 grids
each, 12 grids in all::

    QH-01 城关街道  QH-01-01 幸福社区  QH-01-02 滨河社区
    QH-02 河东镇    QH-02-01 东关村    QH-02-02 柳树村
    QH-03 西山乡    QH-03-01 石门村    QH-03-02 松林村

    grids: G-QH-01-01-1 (城关街道幸福社区第1网格), G-QH-01-01-2, G-QH-01-02-1, ... G-QH-03-02-2

Every name is Chinese only, as a Chinese console shows it (areas, departments, categories,
people: "县水务局", "停水", "李娜"). A demo install loaded before carried bilingual names
("县水务局 (Water Affairs Bureau)", "李娜 (话务员)"): loading the demo data again (``make run``,
``jiesu bootstrap --demo``, the tests) rewrites them, as it rewrites any demo row that differs
from the definitions below. Cases recorded before keep the names their histories recorded.

Routing (``routing_rules``): every category except those in ``UNROUTED_CATEGORIES`` has a
county-wide rule (area ``QH``). Some have deeper rules that win inside their area ("deepest
matching area wins, then the highest priority"):

- street_vendor in 幸福社区 (QH-01-01) → 幸福社区居委会 (vil-xingfu)
- garbage in 河东镇 (QH-02) → 河东镇政府, and in 东关村 (QH-02-01) → 东关村委会; in 西山乡
  (QH-03) → 西山乡政府
- old_compound in 城关街道 (QH-01) → 城关街道办事处
- illegal_building in 西山乡 (QH-03) → 西山乡政府
- road_damage in 城关街道 (QH-01) → 城管局 (urban roads), elsewhere → 交通运输局
- property_management in 滨河社区 (QH-01-02) → 滨河社区居委会
- noise_commercial has two county-wide rules: 城管局 (priority 10) beats 公安局 (priority 0);
  the latter is where the case goes when 城管局 is excluded.

``stray_animals`` and ``public_toilet`` deliberately have NO rule: their cases land in the
hotline centre's dispatch queue (``CENTRE_ID``) for manual dispatch (人工派单).

API keys (``api_keys``, stored as sha256): one per staff role (``demo-operator``,
``demo-supervisor``, ``demo-auditor``, ``demo-admin``) and one per department
(``demo-dept-<department id>``, role ``department``). The plaintext key is ``jiesu-`` + the
name, e.g. ``jiesu-demo-operator`` or ``jiesu-demo-dept-urban-management``. They are demo
secrets: never load the demo data into a production database.

Staff accounts (``staff``, passwords argon2-hashed): one person per role, plus a clerk of each
of the two departments the walkthroughs use (``DEMO_PEOPLE``); the password is the login +
``-demo-pass``, e.g. ``operator`` / ``operator-demo-pass``. Also PUBLIC.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import asyncpg

from jiesu.access import staff
from jiesu.access.security import hash_api_key
from jiesu.admin import changes
from jiesu.case.domain import CENTRE_ID, CENTRE_NAME, Actor, Role, Urgency

COUNTY_ID = "QH"
CITY_ID = "JZ"  # 江州市: the city above the county, where raising a level (提级办) ends

_LOCK = 0x4A494558  # serialises concurrent loaders (tests and `make run` starting together)


# --- areas ----------------------------------------------------------------------------------

# (township id, name, communities); community: (id, name)
_TOWNSHIPS: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    ("QH-01", "城关街道", (("QH-01-01", "幸福社区"), ("QH-01-02", "滨河社区"))),
    ("QH-02", "河东镇", (("QH-02-01", "东关村"), ("QH-02-02", "柳树村"))),
    ("QH-03", "西山乡", (("QH-03-01", "石门村"), ("QH-03-02", "松林村"))),
)
_GRIDS_PER_COMMUNITY = 2


def _area_rows() -> list[tuple[str, str, str, str | None]]:
    """(id, name, kind, parent_id), parents before children."""
    rows: list[tuple[str, str, str, str | None]] = [
        (CITY_ID, "江州市", "city", None),
        (COUNTY_ID, "青河县", "county", CITY_ID),
    ]
    for twp_id, township, communities in _TOWNSHIPS:
        rows.append((twp_id, township, "township", COUNTY_ID))
        for com_id, community in communities:
            rows.append((com_id, community, "community", twp_id))
            rows += [
                (f"G-{com_id}-{n}", f"{township}{community}第{n}网格", "grid", com_id)
                for n in range(1, _GRIDS_PER_COMMUNITY + 1)
            ]
    return rows


AREAS: tuple[tuple[str, str, str, str | None], ...] = tuple(_area_rows())
GRID_IDS: tuple[str, ...] = tuple(a[0] for a in AREAS if a[2] == "grid")

# Grid boundaries (for Open311's points): the county is a 0.12° × 0.06° rectangle of fictional
# coordinates; each township a 0.04° column (west to east), each community a 0.03° row of it
# (south to north), each grid the western or eastern half of its community.
_WEST, _SOUTH = 115.60, 37.00
_GRID_W, _GRID_H = 0.02, 0.03


def _grid_corner(grid_id: str) -> tuple[float, float]:
    """South-west corner (lon, lat) of a demo grid ``G-QH-<t>-<c>-<g>``."""
    t, c, g = (int(part) for part in grid_id.split("-")[2:5])
    return (
        round(_WEST + (t - 1) * 2 * _GRID_W + (g - 1) * _GRID_W, 6),
        round(_SOUTH + (c - 1) * _GRID_H, 6),
    )


def grid_centre(grid_id: str) -> tuple[float, float]:
    """A point (lon, lat) inside a demo grid, e.g. for an Open311 example."""
    lon, lat = _grid_corner(grid_id)
    return round(lon + _GRID_W / 2, 6), round(lat + _GRID_H / 2, 6)


def grid_boundary(grid_id: str) -> dict[str, object]:
    lon, lat = _grid_corner(grid_id)
    east, north = round(lon + _GRID_W, 6), round(lat + _GRID_H, 6)
    ring = [[lon, lat], [east, lat], [east, north], [lon, north], [lon, lat]]
    return {"type": "Polygon", "coordinates": [ring]}


# --- departments ------------------------------------------------------------------------------

# (id, name, level, parent_id, area_id), parents before children. parent_id is where a case
# goes when it is "raised a level" (提级办): village → its township → the county government →
# the city government; a county bureau → the city government; the city has none (the centre's
# queue).
_CITY, _GOV = "city-gov", "county-gov"  # the city and the county governments
# The centre's row is named 12345热线中心, as the console names it (api/console/event_words.py)
# and as the workflows record it since lean-case-v9 (CENTRE_NAME; a case from before keeps
# CENTRE_NAME_BEFORE_V9 in its events, which a replay's witness compares).
CENTRE_DEPARTMENT_NAME = CENTRE_NAME
DEPARTMENTS: tuple[tuple[str, str, str, str | None, str | None], ...] = (
    (_CITY, "江州市人民政府", "city", None, CITY_ID),
    (CENTRE_ID, CENTRE_DEPARTMENT_NAME, "centre", None, COUNTY_ID),
    (_GOV, "青河县人民政府", "county", _CITY, COUNTY_ID),
    ("urban-management", "县城市管理局", "county", _CITY, COUNTY_ID),
    ("housing", "县住房和城乡建设局", "county", _CITY, COUNTY_ID),
    ("ecology", "县生态环境局", "county", _CITY, COUNTY_ID),
    ("water", "县水务局", "county", _CITY, COUNTY_ID),
    ("hrss", "县人力资源和社会保障局", "county", _CITY, COUNTY_ID),
    ("market", "县市场监督管理局", "county", _CITY, COUNTY_ID),
    ("police", "县公安局", "county", _CITY, COUNTY_ID),
    ("transport", "县交通运输局", "county", _CITY, COUNTY_ID),
    ("business-env", "县营商环境办", "county", _CITY, COUNTY_ID),
    ("power-supply", "国网青河县供电公司", "county", _CITY, COUNTY_ID),
    ("twp-chengguan", "城关街道办事处", "township", _GOV, "QH-01"),
    ("twp-hedong", "河东镇人民政府", "township", _GOV, "QH-02"),
    ("twp-xishan", "西山乡人民政府", "township", _GOV, "QH-03"),
    ("vil-xingfu", "幸福社区居民委员会", "village", "twp-chengguan", "QH-01-01"),
    ("vil-binhe", "滨河社区居民委员会", "village", "twp-chengguan", "QH-01-02"),
    ("vil-dongguan", "东关村村民委员会", "village", "twp-hedong", "QH-02-01"),
)
DEPARTMENT_IDS: tuple[str, ...] = tuple(d[0] for d in DEPARTMENTS)

# 网格 as handling units (docs/grid.md): a grid whose workers receive cases is a department row
# with the grid's own id, area the grid, level 'village' (the grid is the community's
# subdivision: its figures count with the village level) and parent the community's committee,
# so raising a level climbs grid → community → township → county → city. The demo grid
# worker's two grids in 幸福社区. No API key: the grid's workers (grid_workers) handle it.
DEMO_GRID_WORKER_GRIDS: tuple[str, ...] = ("G-QH-01-01-1", "G-QH-01-01-2")
"""网格员: the demo grid worker (key demo-grid-worker, person grid-worker) patrols 幸福社区's
two grids."""
GRID_UNITS: tuple[tuple[str, str, str, str | None, str | None], ...] = tuple(
    (g, f"幸福社区第{g[-1]}网格", "village", "vil-xingfu", g)
    for g in DEMO_GRID_WORKER_GRIDS
)


# --- categories -------------------------------------------------------------------------------

_U = Urgency.URGENT.value
_G = Urgency.GENERAL.value

# (id, name, default_urgency)
CATEGORIES: tuple[tuple[str, str, str], ...] = (
    ("noise_commercial", "商业噪音扰民", _G),
    ("noise_construction", "夜间施工噪音", _U),
    ("sewer_blockage", "下水道堵塞", _U),
    ("street_vendor", "占道经营", _G),
    ("water_outage", "停水", _U),
    ("power_outage", "停电", _U),
    ("odour_pollution", "异味污染", _G),
    ("illegal_building", "违法建设", _G),
    ("old_compound", "老旧小区维修", _G),
    ("enterprise_request", "企业诉求", _G),
    ("wage_arrears", "拖欠工资", _G),
    ("road_damage", "道路破损", _G),
    ("street_light", "路灯故障", _G),
    ("garbage", "垃圾清运", _G),
    ("property_management", "物业管理", _G),
    ("food_safety", "食品安全", _U),
    ("heating", "供暖问题", _U),
    ("stray_animals", "流浪动物", _G),
    ("public_toilet", "公共厕所", _G),
    ("traffic_signal", "交通信号灯故障", _G),
)
CATEGORY_IDS: tuple[str, ...] = tuple(c[0] for c in CATEGORIES)


# 企业专席: categories an enterprise files under with its unified social credit code
# (categories.enterprise). enterprise_request above is one of them.
ENTERPRISE_CATEGORIES: tuple[tuple[str, str, str], ...] = (
    ("enterprise_approval", "企业审批服务", _G),
    ("enterprise_policy", "惠企政策兑现", _G),
)
ENTERPRISE_CATEGORY_IDS: tuple[str, ...] = (
    "enterprise_request", *(c[0] for c in ENTERPRISE_CATEGORIES)
)

# Where a report without category and place (SMS, e-mail) is filed: the defaults of
# JIESU_CHANNEL_CATEGORY and JIESU_CHANNEL_GRID. 待分类 has no routing rule, so such a case
# waits in the centre's dispatch queue; 位置待核实 is a grid of the county as a whole.
CHANNEL_CATEGORY = ("unclassified", "待分类", _G)
CHANNEL_GRID = ("unlocated", "位置待核实", "grid", COUNTY_ID)

# --- routing rules ----------------------------------------------------------------------------

# Categories with no rule at all: their cases go to the centre's dispatch queue.
UNROUTED_CATEGORIES: tuple[str, ...] = ("stray_animals", "public_toilet", "unclassified")

# (category_id, area_id, department_id, priority)
ROUTING_RULES: tuple[tuple[str, str | None, str, int], ...] = (
    # county-wide
    ("noise_commercial", COUNTY_ID, "urban-management", 10),
    ("noise_commercial", COUNTY_ID, "police", 0),
    ("noise_construction", COUNTY_ID, "housing", 0),
    ("sewer_blockage", COUNTY_ID, "water", 0),
    ("street_vendor", COUNTY_ID, "urban-management", 0),
    ("water_outage", COUNTY_ID, "water", 0),
    ("power_outage", COUNTY_ID, "power-supply", 0),
    ("odour_pollution", COUNTY_ID, "ecology", 0),
    ("illegal_building", COUNTY_ID, "urban-management", 0),
    ("old_compound", COUNTY_ID, "housing", 0),
    ("enterprise_request", COUNTY_ID, "business-env", 0),
    ("wage_arrears", COUNTY_ID, "hrss", 0),
    ("road_damage", COUNTY_ID, "transport", 0),
    ("street_light", COUNTY_ID, "urban-management", 0),
    ("garbage", COUNTY_ID, "urban-management", 0),
    ("property_management", COUNTY_ID, "housing", 0),
    ("food_safety", COUNTY_ID, "market", 0),
    ("heating", COUNTY_ID, "housing", 0),
    ("traffic_signal", COUNTY_ID, "police", 0),
    ("enterprise_approval", COUNTY_ID, "business-env", 0),
    ("enterprise_policy", COUNTY_ID, "business-env", 0),
    # township
    ("garbage", "QH-02", "twp-hedong", 0),
    ("garbage", "QH-03", "twp-xishan", 0),
    ("old_compound", "QH-01", "twp-chengguan", 0),
    ("illegal_building", "QH-03", "twp-xishan", 0),
    ("road_damage", "QH-01", "urban-management", 0),
    # community / village
    ("street_vendor", "QH-01-01", "vil-xingfu", 0),
    ("garbage", "QH-02-01", "vil-dongguan", 0),
    ("property_management", "QH-01-02", "vil-binhe", 0),
    # grid (网格): the grid's own handling unit, its grid workers receive the case
    ("garbage", "G-QH-01-01-2", "G-QH-01-01-2", 0),
)

# (category_id, grid_id, expected department_id) under "deepest matching area wins, then the
# highest priority", with nothing excluded.
EXAMPLE_ROUTES: list[tuple[str, str, str]] = [
    ("noise_commercial", "G-QH-02-02-1", "urban-management"),  # priority 10 beats police
    ("street_vendor", "G-QH-01-01-1", "vil-xingfu"),  # community rule beats county-wide
    ("street_vendor", "G-QH-01-02-1", "urban-management"),  # county-wide
    ("garbage", "G-QH-02-01-2", "vil-dongguan"),  # village beats township beats county
    ("garbage", "G-QH-02-02-1", "twp-hedong"),  # township beats county
    ("garbage", "G-QH-01-01-1", "urban-management"),  # county-wide
    ("old_compound", "G-QH-01-02-2", "twp-chengguan"),
    ("old_compound", "G-QH-02-01-1", "housing"),
    ("illegal_building", "G-QH-03-01-1", "twp-xishan"),
    ("road_damage", "G-QH-01-01-2", "urban-management"),
    ("road_damage", "G-QH-03-02-1", "transport"),
    ("property_management", "G-QH-01-02-1", "vil-binhe"),
    ("sewer_blockage", "G-QH-03-02-2", "water"),
    ("wage_arrears", "G-QH-02-02-2", "hrss"),
    ("enterprise_request", "G-QH-01-01-1", "business-env"),
    ("power_outage", "G-QH-03-01-2", "power-supply"),
    ("garbage", "G-QH-01-01-2", "G-QH-01-01-2"),  # the grid rule: its grid workers handle it
]

# (category_id, grid_id): no rule matches, the case goes to CENTRE_ID's dispatch queue.
EXAMPLE_QUEUED: list[tuple[str, str]] = [
    ("stray_animals", "G-QH-01-01-1"),
    ("public_toilet", "G-QH-03-02-2"),
]


# --- API keys ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoKey:
    name: str  # e.g. "demo-operator", "demo-dept-urban-management"
    role: str  # operator | department | supervisor | auditor | admin | grid_worker
    department_id: str | None
    key: str  # the plaintext API key, e.g. "jiesu-demo-operator"


def _demo_key(name: str, role: str, department_id: str | None = None) -> DemoKey:
    return DemoKey(name=name, role=role, department_id=department_id, key=f"jiesu-{name}")


DEMO_KEYS: tuple[DemoKey, ...] = (
    _demo_key("demo-operator", "operator"),
    _demo_key("demo-supervisor", "supervisor"),
    _demo_key("demo-auditor", "auditor"),
    _demo_key("demo-admin", "admin"),
    *(_demo_key(f"demo-dept-{d}", "department", d) for d in DEPARTMENT_IDS),
    _demo_key("demo-grid-worker", "grid_worker"),
)

def demo_key(name: str) -> DemoKey:
    """The demo key named ``name`` (e.g. "demo-operator" or "demo-dept-housing")."""
    for k in DEMO_KEYS:
        if k.name == name:
            return k
    raise KeyError(name)


def department_key(department_id: str) -> DemoKey:
    """The demo key of a department."""
    return demo_key(f"demo-dept-{department_id}")


# --- loading ----------------------------------------------------------------------------------

_UPSERT_AREA = """
INSERT INTO areas (id, name, kind, parent_id) VALUES ($1, $2, $3, $4)
ON CONFLICT (id) DO UPDATE
    SET name = EXCLUDED.name, kind = EXCLUDED.kind, parent_id = EXCLUDED.parent_id
    WHERE (areas.name, areas.kind, areas.parent_id)
        IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.kind, EXCLUDED.parent_id)
"""

_UPSERT_DEPARTMENT = """
INSERT INTO departments (id, name, level, parent_id, area_id) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (id) DO UPDATE
    SET name = EXCLUDED.name, level = EXCLUDED.level, parent_id = EXCLUDED.parent_id,
        area_id = EXCLUDED.area_id
    WHERE (departments.name, departments.level, departments.parent_id, departments.area_id)
        IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.level, EXCLUDED.parent_id, EXCLUDED.area_id)
"""

_UPSERT_CATEGORY = """
INSERT INTO categories (id, name, default_urgency) VALUES ($1, $2, $3)
ON CONFLICT (id) DO UPDATE
    SET name = EXCLUDED.name, default_urgency = EXCLUDED.default_urgency
    WHERE (categories.name, categories.default_urgency)
        IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.default_urgency)
"""

# A boundary is set once: an admin's later change is left alone.
_SET_BOUNDARY = """
UPDATE areas SET boundary = $2::text::jsonb WHERE id = $1 AND boundary IS NULL
"""

# routing_rules has only a serial key: insert a rule unless the same category × area →
# department rule exists (an admin's later priority change is left alone).
_INSERT_RULE = """
INSERT INTO routing_rules (category_id, area_id, department_id, priority)
SELECT $1::text, $2::text, $3::text, $4::int
WHERE NOT EXISTS (
    SELECT 1 FROM routing_rules
    WHERE category_id = $1::text AND area_id IS NOT DISTINCT FROM $2::text
        AND department_id = $3::text
)
"""

# Upsert by name, so the returned plaintext keys work (a demo key revoked with `jiesu keys
# revoke` stays revoked).
_UPSERT_KEY = """
INSERT INTO api_keys (key_hash, name, role, department_id) VALUES ($1, $2, $3, $4)
ON CONFLICT (name) DO UPDATE
    SET key_hash = EXCLUDED.key_hash, role = EXCLUDED.role,
        department_id = EXCLUDED.department_id
    WHERE (api_keys.key_hash, api_keys.role, api_keys.department_id)
        IS DISTINCT FROM (EXCLUDED.key_hash, EXCLUDED.role, EXCLUDED.department_id)
"""


# --- staff accounts ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoPerson:
    login: str
    display_name: str
    role: Role
    department_id: str | None
    password: str  # PUBLIC: the login + "-demo-pass"


def _demo_person(
    login: str, display_name: str, role: Role, department_id: str | None = None
) -> DemoPerson:
    return DemoPerson(login, display_name, role, department_id, f"{login}-demo-pass")


DEMO_PEOPLE: tuple[DemoPerson, ...] = (
    _demo_person("operator", "李娜", Role.OPERATOR),
    _demo_person("supervisor", "张伟", Role.SUPERVISOR),
    _demo_person("auditor", "刘洋", Role.AUDITOR),
    _demo_person("admin", "陈静", Role.ADMIN),
    _demo_person("water-clerk", "王芳", Role.DEPARTMENT, "water"),
    _demo_person("urban-clerk", "赵磊", Role.DEPARTMENT, "urban-management"),
    _demo_person("grid-worker", "孙敏", Role.GRID_WORKER),
)
DEMO_DATA_ACTOR = "demo-data"  # who the demo data's account changes are recorded as made by
_LOADER = Actor(role=Role.ADMIN, name=DEMO_DATA_ACTOR)  # and its changes of reference data


def demo_person(login: str) -> DemoPerson:
    """The demo person with this login (e.g. "operator" or "water-clerk")."""
    for p in DEMO_PEOPLE:
        if p.login == login:
            return p
    raise KeyError(login)


# Who gave the person the name they have now: the newest recorded change that set it. None
# when no change did (set outside the accounts service, as an older demo's names may be).
_NAMED_BY = """
SELECT c.changed_by FROM staff_changes c JOIN staff s ON s.id = c.staff_id
WHERE s.login = $1 AND c.after ->> 'display_name' = s.display_name
  AND (c.before IS NULL OR c.before ->> 'display_name' IS DISTINCT FROM s.display_name)
ORDER BY c.id DESC LIMIT 1
"""


async def _demo_name_for(conn: asyncpg.Connection, p: DemoPerson, now: str) -> str:
    """The name the loader gives a demo person named ``now``: the demo's, unless a person
    renamed them (the console's 人员, the admin API, ``jiesu users``) — that name is theirs,
    as an admin's boundary or rule priority is (the loader renamed 李娜（话务一组） back to 李娜
    at every ``make run``). Names it gave itself, an older demo's among them, become the
    demo's."""
    named_by = await conn.fetchval(_NAMED_BY, p.login)
    return now if named_by not in (None, DEMO_DATA_ACTOR) else p.display_name


async def _ensure_person(conn: asyncpg.Connection, p: DemoPerson) -> None:
    """Create the demo person, or put them back as documented (role, department, password;
    the name unless a person renamed them): through the accounts service, so each change is
    recorded like any other. A disabled one is left as they are: disabling the demo people
    (README) keeps their public passwords from working, as revoking the demo keys does, and
    the loader enabled them again — the demo admin with admin-demo-pass."""
    person = await staff.get_person(conn, p.login)
    if person is None:
        await staff.create_person(
            conn, login=p.login, display_name=p.display_name, role=p.role,
            department_id=p.department_id, password=p.password, by=DEMO_DATA_ACTOR,
        )  # fmt: skip
        return
    if not person.active:
        return
    await staff.update_person(
        conn, p.login, by=DEMO_DATA_ACTOR, display_name=await _demo_name_for(
            conn, p, person.display_name), role=p.role, department_id=p.department_id,
    )  # fmt: skip
    stored = await conn.fetchval("SELECT password_hash FROM staff WHERE login = $1", p.login)
    if not staff.password_matches(stored, p.password):
        await staff.set_password(conn, p.login, p.password, by=DEMO_DATA_ACTOR)


# The demo records an administrator changed (admin API, console, CLI): a change in the log
# by anyone but the loader itself.
_CHANGED_BY_AN_ADMIN = """
SELECT DISTINCT entity_id FROM admin_changes
WHERE entity = $1 AND entity_id = ANY($2::text[]) AND actor ->> 'name' IS DISTINCT FROM $3
"""


async def _upsert_reference(
    conn: asyncpg.Connection, entity: str, table: str, columns: tuple[str, ...],
    upsert: str, rows: list[tuple[str | None, ...]],
) -> None:  # fmt: skip
    """Upsert the demo's ``rows`` (id first, then ``columns``) of ``table``, except those an
    administrator changed — the loader put the demo's 县水务局 back over an admin's rename at
    every ``make run`` — and record each row it rewrites in ``admin_changes``, as every other
    change of a unit, area or category is: the log said the admin's name after the loader had
    replaced it."""
    ids = [str(r[0]) for r in rows]
    theirs = {r["entity_id"] for r in await conn.fetch(
        _CHANGED_BY_AN_ADMIN, entity, ids, DEMO_DATA_ACTOR)}  # fmt: skip
    read = f"SELECT id, {', '.join(columns)} FROM {table} WHERE id = ANY($1::text[])"
    before = {r["id"]: dict(r) for r in await conn.fetch(read, ids)}
    await conn.executemany(upsert, [r for r in rows if r[0] not in theirs])
    after = {r["id"]: dict(r) for r in await conn.fetch(read, ids)}
    for record_id, was in before.items():
        if after[record_id] != was:
            await changes.record(conn, _LOADER, entity, record_id, "update", was, after[record_id])


async def load_demo_data(conn: asyncpg.Connection) -> list[DemoKey]:
    """Load (or refresh) the demo county in one transaction; return the demo API keys."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
        await _upsert_reference(conn, "area", "areas", ("name", "kind", "parent_id"),
                                _UPSERT_AREA, [*AREAS, CHANNEL_GRID])  # fmt: skip
        await conn.executemany(
            _SET_BOUNDARY, [(g, json.dumps(grid_boundary(g))) for g in GRID_IDS]
        )
        await _upsert_reference(
            conn, "department", "departments", ("name", "level", "parent_id", "area_id"),
            _UPSERT_DEPARTMENT, [*DEPARTMENTS, *GRID_UNITS],
        )  # fmt: skip
        await _upsert_reference(
            conn, "category", "categories", ("name", "default_urgency"), _UPSERT_CATEGORY,
            [*CATEGORIES, *ENTERPRISE_CATEGORIES, CHANNEL_CATEGORY],
        )  # fmt: skip
        await conn.execute(
            "UPDATE categories SET enterprise = true WHERE id = ANY($1) AND NOT enterprise",
            list(ENTERPRISE_CATEGORY_IDS),
        )
        await conn.executemany(_INSERT_RULE, ROUTING_RULES)
        await conn.executemany(
            _UPSERT_KEY,
            [(hash_api_key(k.key), k.name, k.role, k.department_id) for k in DEMO_KEYS],
        )
        for person in DEMO_PEOPLE:
            await _ensure_person(conn, person)
        await conn.executemany(
            "INSERT INTO grid_workers (worker, grid_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            [(w, g) for w in ("demo-grid-worker", "grid-worker") for g in DEMO_GRID_WORKER_GRIDS],
        )
    return list(DEMO_KEYS)
