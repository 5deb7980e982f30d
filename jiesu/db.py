"""PostgreSQL access: connection pools and schema migrations.

Migrations are plain SQL files in ``jiesu/migrations`` applied in name order, each once, in
its own transaction, under an advisory lock so that several processes starting together
do not race.

A migration's statement waits at most ``MIGRATION_LOCK_TIMEOUT`` for a lock (``SET LOCAL
lock_timeout``): an ``ALTER TABLE`` waiting behind a long reader of its table would otherwise
hold every later reader and writer of that table in the queue behind it, for as long as the
reader runs. Past it the migration gives way (its transaction rolled back: nothing of it
applied), says what it waited for and who held it, and is tried again after a pause, up to
``MIGRATION_TRIES`` times; then ``MigrationBlocked``.

Only ``jiesu bootstrap`` migrates. The worker, the API and the mail listener check at start-up
that the database has every migration their code ships (:func:`check_schema`, one query): a
database behind them is refused in one line (``SchemaNotReady``) rather than failing later in
the middle of a projection or a page; one ahead of them (a newer version's bootstrap ran) is
used, with a warning naming what they do not know.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

import asyncpg

from jiesu.exiting import CannotStart

log = logging.getLogger(__name__)

_MIGRATION_LOCK = 0x4A494553  # "JIES"

# How long (seconds) a migration's statement waits for a lock before the migration gives way:
# the longest an intake or the worker waits behind an upgrade for a table another
# transaction holds. (A migration that has its lock and rewrites a table still takes as long
# as it takes: this bounds the queue, not the work.)
MIGRATION_LOCK_TIMEOUT = 3.0
# Tries of one migration before bootstrap stops with MigrationBlocked; the pause between two
# tries starts at MIGRATION_FIRST_PAUSE seconds and doubles: 1, 2, 4, 8 — at most 5 × 3 s of
# waiting for locks and 15 s of pauses before it stops (the migration's own work apart).
MIGRATION_TRIES = 5
MIGRATION_FIRST_PAUSE = 1.0


class MigrationBlocked(RuntimeError):
    """A migration could not take its locks in any of its tries; nothing of it was applied."""


class MigrationNotOneTransaction(RuntimeError):
    """A migration file ends or opens a transaction itself (COMMIT, BEGIN...): what it
    committed would stay if a later statement failed, and trying it again would run that part
    twice; after its COMMIT its statements would wait for locks without a bound. Refused
    before any pending migration runs."""


@dataclass(frozen=True)
class LockPatience:
    """How a migration waits for its locks (the defaults above; tests shorten them)."""

    timeout: float = MIGRATION_LOCK_TIMEOUT
    tries: int = MIGRATION_TRIES
    first_pause: float = MIGRATION_FIRST_PAUSE


@dataclass(frozen=True)
class LockWait:
    """The lock a migration was seen waiting for, and the sessions ahead of it."""

    lock: str  # "AccessExclusiveLock on table notifications"
    holders: tuple[str, ...]  # "pid 123 (auditor, user jiesu, idle in transaction since ...)"

    def __str__(self) -> str:
        return f"{self.lock}, held by {'; '.join(self.holders) or 'a session already gone'}"


async def init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A connection going back to the pool keeps its session as it is.

    asyncpg's default reset runs ``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`` on every release: one more round trip for every pooled query, in the API and
    the worker alike. Jiesu leaves nothing in a session to reset — its advisory locks are
    transaction-level (``pg_advisory_xact_lock``), it never LISTENs, SETs or keeps a cursor
    open — and a transaction still open at release is rolled back by asyncpg before this is
    called. tests/test_db_pool.py looks for statements that would leave session state."""


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=init_connection, reset=_keep_session
    )


def _migration_paths() -> list[Traversable]:
    folder = resources.files("jiesu") / "migrations"
    return sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)


def _migration_files() -> list[tuple[str, str]]:
    return [(f.name.removesuffix(".sql"), f.read_text(encoding="utf-8"))
            for f in _migration_paths()]  # fmt: skip


def migration_versions() -> list[str]:
    """The migrations this code ships, by name, in order (their text unread: the start-up
    check needs only the names)."""
    return [f.name.removesuffix(".sql") for f in _migration_paths()]


@dataclass(frozen=True)
class SchemaState:
    """The database's migrations against those this code ships (``migration_versions``)."""

    applied: tuple[str, ...]  # in schema_migrations, in name order
    pending: tuple[str, ...]  # shipped with this code, not applied: run `jiesu bootstrap`
    unknown: tuple[str, ...]  # applied, not shipped with this code: a newer version's


class SchemaNotReady(CannotStart):
    """The database lacks migrations this code needs: `jiesu bootstrap` has not run since it
    was installed. Said as one line by the processes that refuse to start on it."""

    def __init__(self, state: SchemaState, who: str) -> None:
        self.pending = state.pending
        listed = ", ".join(state.pending)
        what = (f"all {len(state.pending)} migrations" if not state.applied
                else f"{len(state.pending)} migration{'s' if len(state.pending) > 1 else ''}")
        super().__init__(
            f"the {who} will not start: the database lacks {what} its code needs (pending:"
            f" {listed}). Run `jiesu bootstrap` of this version first, then start the {who}"
            " again (docs/operations.md, Upgrading)."
        )  # fmt: skip


async def schema_state(conn: asyncpg.Connection | asyncpg.Pool) -> SchemaState:
    """Compare schema_migrations with the migration files of this code (one query; a database
    never bootstrapped, without the table, has every migration pending)."""
    try:
        rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
    except asyncpg.UndefinedTableError:
        rows = []
    applied = tuple(r["version"] for r in rows)
    shipped = migration_versions()
    done, known = set(applied), set(shipped)
    return SchemaState(
        applied=applied,
        pending=tuple(v for v in shipped if v not in done),
        unknown=tuple(v for v in applied if v not in known),
    )


async def check_schema(conn: asyncpg.Connection | asyncpg.Pool, who: str) -> SchemaState:
    """At start-up of the ``who`` ("worker", "API"...): raise SchemaNotReady when a migration
    of this code is not applied. Migrations the code does not know only warn: a rolling
    upgrade runs the newer bootstrap first and replaces the older processes one by one, and
    an older process restarted in between must come up again; it keeps working when the newer
    migrations only add (tables, nullable or defaulted columns, indexes), as migrations here
    are written to — one that takes away is upgraded across with the older processes stopped
    (docs/operations.md, Upgrading)."""
    state = await schema_state(conn)
    if state.pending:
        raise SchemaNotReady(state, who)
    if state.unknown:
        log.warning(
            "the database has %d migration%s this %s's code does not know: %s (a newer"
            " version's `jiesu bootstrap` ran). Starting, as an older %s does in a rolling"
            " upgrade: it keeps working if these migrations only add (docs/operations.md,"
            " Upgrading); replace it with the newer version.",
            len(state.unknown), "s" if len(state.unknown) > 1 else "", who,
            ", ".join(state.unknown), who,
        )  # fmt: skip
    return state


async def migrate(
    conn: asyncpg.Connection,
    *,
    observer: asyncpg.Connection | None = None,
    patience: LockPatience = LockPatience(),
) -> list[str]:
    """Apply pending migrations; return the names applied now.

    ``observer``, a second connection to the same database, watches ``pg_locks`` while a
    migration runs, so that a migration giving way can say which lock it waited for and who
    held it (without one it says only that it waited). Raises ``MigrationBlocked`` when a
    migration could not take its locks in ``patience.tries`` tries, and
    ``MigrationNotOneTransaction``, before applying any, when a pending file ends or opens a
    transaction itself."""
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        pending = [(version, sql) for version, sql in _migration_files() if version not in done]
        for version, sql in pending:
            _refuse_transaction_control(version, sql)
        applied = []
        for version, sql in pending:
            await _apply(conn, version, sql, observer, patience)
            applied.append(version)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)


async def _apply(
    conn: asyncpg.Connection,
    version: str,
    sql: str,
    observer: asyncpg.Connection | None,
    patience: LockPatience,
) -> None:
    """Apply one migration, trying again after a pause each time it gives way on a lock."""
    pause = patience.first_pause
    for attempt in range(1, patience.tries + 1):
        waited = await _try_once(conn, version, sql, observer, patience.timeout)
        if waited is None:
            if attempt > 1:
                log.warning("migration %s applied at try %d of %d", version, attempt,
                            patience.tries)  # fmt: skip
            return
        log.warning(
            "migration %s gave way after waiting %.1f s for %s; rolled back, nothing of it"
            " applied (try %d of %d%s)", version, patience.timeout, waited, attempt,
            patience.tries, f", next in {pause:g} s" if attempt < patience.tries else "",
        )  # fmt: skip
        if attempt < patience.tries:
            await asyncio.sleep(pause)
            pause *= 2
    raise MigrationBlocked(
        f"migration {version} not applied: in each of {patience.tries} tries it waited"
        f" {patience.timeout:g} s for a lock another transaction held (last: {waited})."
        " Nothing of it was applied and no later migration ran. End or wait for that"
        " transaction (pg_stat_activity; SELECT pg_terminate_backend(pid)), then run"
        " `jiesu bootstrap` again."
    )


async def _try_once(
    conn: asyncpg.Connection,
    version: str,
    sql: str,
    observer: asyncpg.Connection | None,
    lock_timeout: float,
) -> LockWait | str | None:
    """Run the migration in its own transaction, each lock waited for at most
    ``lock_timeout`` seconds. None when applied; else what it waited for."""
    seen: list[LockWait] = []
    finished = asyncio.Event()
    watch = None
    if observer is not None:
        interval = max(lock_timeout / 4, 0.05)  # several looks within one lock's wait
        watch = asyncio.create_task(
            _watch_waits(observer, conn.get_server_pid(), seen, finished, interval))
    try:
        async with conn.transaction():
            # SET LOCAL: a session from a pool keeps no setting (see _keep_session).
            await conn.execute("SELECT set_config('lock_timeout', $1, true)",
                               f"{round(lock_timeout * 1000)}ms")  # fmt: skip
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
    except asyncpg.LockNotAvailableError:
        return seen[-1] if seen else "a lock (who held it was not observed)"
    except asyncpg.PostgresError as err:
        err.add_note(f"in migration {version} (rolled back; not tried again)")
        raise
    finally:
        finished.set()
        if watch is not None:
            await watch
    return None


# The lock a backend waits for now, and the sessions it waits behind (pg_blocking_pids:
# those holding a conflicting lock and those queued ahead of it), one row per such session.
_LOCK_WAITED_FOR = """
SELECT l.mode || ' on ' || CASE
           WHEN l.locktype = 'relation' THEN 'table ' || l.relation::regclass::text
           WHEN l.locktype = 'tuple' THEN 'a row of table ' || l.relation::regclass::text
           ELSE l.locktype END AS lock,
       a.pid, a.application_name, a.usename, a.state,
       to_char(a.xact_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') AS since,
       left(regexp_replace(a.query, '[[:space:]]+', ' ', 'g'), 120) AS query
  FROM pg_locks l
  LEFT JOIN pg_stat_activity a ON a.pid = ANY (pg_blocking_pids(l.pid))
 WHERE l.pid = $1 AND NOT l.granted
"""


async def _watch_waits(
    observer: asyncpg.Connection,
    pid: int,
    seen: list[LockWait],
    finished: asyncio.Event,
    interval: float,
) -> None:
    """Until ``finished``, look every ``interval`` seconds whether backend ``pid`` waits for a
    lock; keep the last wait seen in ``seen`` (the one it gave way on: a wait that timed out
    lasted several intervals). Stopped by the event, never cancelled: a query cancelled
    half-way would leave the observer busy."""
    while not finished.is_set():
        try:
            rows = await observer.fetch(_LOCK_WAITED_FOR, pid)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as err:
            # Watching is for the message: the migration goes on without it.
            log.warning("cannot watch the migration's lock waits: %s", err)
            return
        if rows:
            seen[:] = [LockWait(rows[0]["lock"], tuple(_session(r) for r in rows if r["pid"]))]
        try:
            await asyncio.wait_for(finished.wait(), interval)
        except TimeoutError:
            pass


def _session(row: asyncpg.Record) -> str:
    who = row["application_name"] or "no application_name"
    return (f"pid {row['pid']} ({who}, user {row['usename']}, {row['state']},"
            f" in a transaction since {row['since']} UTC: {row['query']})")  # fmt: skip


# Statements that end or open a transaction, as the first words of a statement.
_TRANSACTION_CONTROL = re.compile(
    r"(BEGIN|START|COMMIT|END|ROLLBACK|ABORT|SAVEPOINT|RELEASE|PREPARE\s+TRANSACTION)\b",
    re.IGNORECASE,
)
# What can hold a semicolon or a keyword without being a statement: comments, quoted text and
# identifiers, dollar-quoted bodies (a PL/pgSQL function's BEGIN ... END).
_NOT_STATEMENTS = re.compile(
    r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|(\$\w*\$).*?\1", re.DOTALL
)


def _refuse_transaction_control(version: str, sql: str) -> None:
    """Raise MigrationNotOneTransaction if the file has a statement that ends or opens a
    transaction (a SQL-standard ``BEGIN ATOMIC ... END`` function body is not one)."""
    statements = _NOT_STATEMENTS.sub(" ", sql).split(";")
    in_atomic_body = False
    for statement in (s.strip() for s in statements):
        if in_atomic_body:
            in_atomic_body = not re.fullmatch(r"END", statement, re.IGNORECASE)
        elif re.search(r"\bBEGIN\s+ATOMIC\b", statement, re.IGNORECASE):
            in_atomic_body = True
        elif _TRANSACTION_CONTROL.match(statement):
            first = " ".join(statement.split()[:2])
            raise MigrationNotOneTransaction(
                f"migration {version} is not one transaction: it has {first!r}. jiesu.db.migrate"
                " runs each file in a transaction of its own (all of it or nothing, tried again"
                " when it waits too long for a lock): take that statement out (a step that"
                " cannot run in a transaction, CREATE INDEX CONCURRENTLY, say, is run by hand"
                " and documented). No migration was applied."
            )


async def in_batches(
    pool: asyncpg.Pool,
    sql: str,
    *args: object,
    batch: int,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Run ``sql`` (which takes ``*args`` and then ``batch`` as its last parameter, and
    touches at most that many rows) until it touches fewer; ``progress(rows so far)`` after
    each run. Returns the rows touched: retention chores in short transactions."""
    done = 0
    while True:
        touched = int((await pool.execute(sql, *args, batch)).split()[-1])
        done += touched
        if progress is not None:
            progress(done)
        if touched < batch:
            return done


async def ensure_database(dsn: str) -> None:
    """Create the database named in ``dsn`` if it does not exist yet."""
    try:
        conn = await asyncpg.connect(dsn)
    except asyncpg.InvalidCatalogNameError:
        main, sep, query = dsn.partition("?")
        base, _, name = main.rpartition("/")
        admin = await asyncpg.connect(f"{base}/postgres{sep}{query}")
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
    else:
        await conn.close()
