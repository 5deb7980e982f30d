"""``jiesu doctor`` and ``jiesu repair``: the operators' subcommands (docs/operations.md).

Registered into the main parser by :func:`add_commands`; settings from the environment
(TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, DATABASE_URL), like the auditors' subcommands.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from typing import Any

from jiesu.health import checks
from jiesu.intake.filing import settle_pending
from jiesu.ops import doctor
from jiesu.ops.audit_cli import Session, _add, _run, _time, iso_time
from workflows import ALL_WORKFLOWS


def cmd_doctor(args: argparse.Namespace) -> int:
    """Look for wedged cases, retrying activities, stale read models, overdue and given-up
    notices, citizens nobody could tell, reports left pending, large histories and histories
    that do not replay; exit 1 when anything is found (2: a check could not run)."""

    async def body(session: Session) -> int:
        client, pool, settings = session
        options = checks.DoctorOptions(
            limit=args.limit,
            activity_after=timedelta(seconds=args.activity_after),
            read_model_lag=timedelta(seconds=args.read_model_lag),
            notification_overdue_after=timedelta(seconds=args.notification_overdue_after),
            intake_pending_after=timedelta(seconds=args.intake_pending_after),
            replay=not args.no_replay,
            replay_since=_time(args.since, settings.timezone) if args.since else None,
        )
        report = await checks.examine(client, pool, options, workflows=ALL_WORKFLOWS)
        print(report.model_dump_json(indent=2) if args.json else checks.format_report(report))
        return checks.exit_code(report)

    return _run(body)


def cmd_repair_read_model(args: argparse.Namespace) -> int:
    """Write cases' read model again from their workflows' state (idempotent)."""

    async def body(session: Session) -> int:
        client, pool, _ = session
        failed = 0
        for case_id in args.cases:
            try:
                before, after = await doctor.reproject_case(
                    client, pool, case_id, rebuild=args.rebuild
                )
            except Exception as error:  # a wedged or unknown case: say so, go on with the rest
                print(f"{case_id}: not repaired: {type(error).__name__}: {error}",
                      file=sys.stderr)
                failed += 1
                continue
            print(f"{case_id}: read model at event {before} → {after}")
        return 1 if failed else 0

    return _run(body)


def cmd_repair_notices(args: argparse.Namespace) -> int:
    """Send notices again from now on: by key, or every unsent notice of --case."""

    async def body(session: Session) -> int:
        _, pool, _ = session
        if not args.keys and not args.case:
            print("name notice keys or --case", file=sys.stderr)
            return 2
        keys = await doctor.resend_notices(pool, args.keys, case_id=args.case)
        for key in keys:
            print(f"{key}: due now")
        if not keys:
            print("nothing to resend")
        asked = set(args.keys) - set(keys)
        for key in sorted(asked):
            print(f"{key}: left alone (already sent, unknown, or held by a live dispatcher)",
                  file=sys.stderr)
        return 1 if asked else 0

    return _run(body)


def cmd_repair_intakes(args: argparse.Namespace) -> int:
    """Settle reports left pending by what Temporal knows (jiesu.intake.filing.settle_pending):
    marked started when Temporal has them, removed otherwise."""
    async def body(session: Session) -> int:
        client, pool, _ = session
        settled = await settle_pending(pool, client, timedelta(seconds=args.older_than))
        for name in settled.started:
            print(f"{name}: started")
        for name in settled.removed:
            print(f"{name}: removed (Temporal never had it)")
        if not settled.started and not settled.removed:
            print("nothing pending")
        return 0

    return _run(body)


def add_commands(sub: Any) -> None:
    """Add ``doctor`` and ``repair`` to the ``jiesu`` parser's subparsers."""
    defaults = checks.DoctorOptions()
    p = _add(sub, "doctor", cmd_doctor)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--limit", type=int, default=defaults.limit,
                   help="open workflows examined at most, newest first; also the most "
                        "notices and reports listed per kind (default %(default)s)")
    p.add_argument("--activity-after", type=float, metavar="SECONDS",
                   default=defaults.activity_after.total_seconds(),
                   help="report activities retrying longer than this (default %(default)s)")
    p.add_argument("--read-model-lag", type=float, metavar="SECONDS",
                   default=defaults.read_model_lag.total_seconds(),
                   help="report unprojected events older than this (default %(default)s)")
    p.add_argument("--notification-overdue-after", type=float, metavar="SECONDS",
                   default=defaults.notification_overdue_after.total_seconds(),
                   help="report notices unsent this long after they were written "
                        "(default %(default)s)")
    p.add_argument("--intake-pending-after", type=float, metavar="SECONDS",
                   default=defaults.intake_pending_after.total_seconds(),
                   help="report intakes and repeat reports still pending this long after "
                        "they were filed (default %(default)s)")
    p.add_argument("--no-replay", action="store_true", help="skip replaying histories")
    p.add_argument("--since", type=iso_time,
                   help="also replay cases (closed ones too) started since (ISO date/time)")

    repair = sub.add_parser("repair", help="repair what the doctor found (see "
                                           "docs/operations.md)",
                            description="Repair what `jiesu doctor` found: docs/operations.md, "
                            "one section per kind of problem.")
    what = repair.add_subparsers(dest="what", required=True, metavar="WHAT")
    p = _add(what, "read-model", cmd_repair_read_model)
    p.add_argument("cases", nargs="+", metavar="CASE", help="case numbers")
    p.add_argument("--rebuild", action="store_true",
                   help="drop the case's event list first (a read model that diverged)")
    p = _add(what, "notices", cmd_repair_notices)
    p.add_argument("keys", nargs="*", metavar="KEY", help="notice keys (see jiesu doctor)")
    p.add_argument("--case", help="every unsent notice of this case")
    p = _add(what, "intakes", cmd_repair_intakes)
    p.add_argument("--older-than", type=float, metavar="SECONDS",
                   default=defaults.intake_pending_after.total_seconds(),
                   help="settle reports pending longer than this; keep it well above a "
                        "client's retry horizon (default %(default)s)")
