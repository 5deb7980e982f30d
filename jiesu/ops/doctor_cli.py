"""``jiesu doctor`` and ``jiesu repair``: the operators' subcommands (docs/operations.md).

Registered into the main parser by :func:`add_commands`; settings from the environment
(TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, DATABASE_URL), like the auditors' subcommands.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import timedelta
from typing import Any

from jiesu.health import checks
from jiesu.intake.filing import settle_pending
from jiesu.ops import doctor
from jiesu.ops.audit_cli import Session, _add, _run, _time, iso_time
from workflows import ALL_WORKFLOWS


def cmd_doctor(args: argparse.Namespace) -> int:
    """Look for migrations not applied, wedged cases, retrying activities, stale read models,
    overdue and given-up notices, citizens nobody could tell, reports left pending, large
    histories and histories that do not replay; exit 1 when anything is found (2: a check
    could not run)."""

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
    """Send notices again from now on: by key, or every unsent notice of --case. With
    --set-aside, never send them: notices the outbox gave up on, with who and why recorded."""
    if not args.keys and not args.case and not args.list_set_aside:
        print("name notice keys or --case", file=sys.stderr)
        return 2
    if args.list_set_aside and (args.set_aside or args.reason is not None):
        print("--list-set-aside lists only: not with --set-aside or --reason", file=sys.stderr)
        return 2
    if args.list_set_aside:
        return _run(lambda session: _list_set_aside(session, args))
    if args.set_aside:
        if not (args.reason or "").strip():
            print("--set-aside needs --reason: why this notice is never to be sent "
                  "(the audit trail keeps it)", file=sys.stderr)
            return 2
        return _run(lambda session: _set_aside(session, args))
    if args.reason is not None or args.by is not None:
        print("--reason and --by go with --set-aside", file=sys.stderr)
        return 2
    return _run(lambda session: _resend(session, args))


async def _resend(session: Session, args: argparse.Namespace) -> int:
    _, pool, _ = session
    keys = await doctor.resend_notices(pool, args.keys, case_id=args.case)
    for key in keys:
        print(f"{key}: due now")
    if not keys:
        print("nothing to resend")
    # A set-aside notice is never resent (docs/operations.md): someone decided, with a
    # reason, that it must not go (a wrong mailbox, say); a resend would send it there again.
    set_aside = {r["key"]: r for r in await doctor.notices_set_aside(
        pool, args.case, None if args.case else args.keys)}
    for key, row in set_aside.items():
        print(f"{key}: not resent: set aside on {row['set_aside_at'].isoformat()} by "
              f"{row['set_aside_by']}: {row['set_aside_reason']}", file=sys.stderr)
    asked = set(args.keys) - set(keys)
    for key in sorted(asked - set(set_aside)):
        print(f"{key}: left alone (already sent, unknown, or held by a live dispatcher)",
              file=sys.stderr)
    return 1 if asked else 0


async def _set_aside(session: Session, args: argparse.Namespace) -> int:
    _, pool, _ = session
    try:
        outcome = await doctor.set_aside_notices(
            pool, args.keys, case_id=args.case, by=args.by or getpass.getuser(),
            reason=args.reason,
        )
    except doctor.EmptyReason as error:
        print(error, file=sys.stderr)
        return 2
    for key in outcome.set_aside:
        print(f"{key}: set aside, never to be sent")
    for key, at in outcome.already.items():
        print(f"{key}: already set aside on {at.isoformat()} for this reason: nothing changed")
    for key, why in outcome.refused.items():
        print(f"{key}: not set aside: {why}", file=sys.stderr)
    if outcome.refused:
        print("nothing set aside: every notice named must be one the outbox gave up on",
              file=sys.stderr)
    if not outcome.set_aside and not outcome.already and not outcome.refused:
        print(f"case {args.case}: no notice the outbox gave up on: nothing set aside",
              file=sys.stderr)
    return 0 if outcome.ok else 1


async def _list_set_aside(session: Session, args: argparse.Namespace) -> int:
    _, pool, _ = session
    rows = await doctor.notices_set_aside(pool, args.case, args.keys or None)
    for row in rows:
        print(f"{row['key']} ({row['channel']} to {row['recipient_kind']} "
              f"{row['recipient_id']}, case {row['case_id']}): set aside on "
              f"{row['set_aside_at'].isoformat()} by {row['set_aside_by']}: "
              f"{row['set_aside_reason']}; given up after {row['attempts']} attempts"
              + (f", last error: {row['last_error']}" if row["last_error"] else ""))
    if not rows:
        print("no notice set aside")
    return 0


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
    p.add_argument("--case", help="every unsent notice of this case (with --set-aside: "
                                  "every notice of it the outbox gave up on)")
    p.add_argument("--set-aside", action="store_true",
                   help="never send these notices: only failed ones (given up on), with "
                        "--reason; the doctor stops listing them")
    p.add_argument("--reason", help="why they are set aside (required with --set-aside)")
    p.add_argument("--by", help="who sets them aside (default: your login name)")
    p.add_argument("--list-set-aside", action="store_true",
                   help="list the notices set aside (of --case or KEYs): who, when, why")
    p = _add(what, "intakes", cmd_repair_intakes)
    p.add_argument("--older-than", type=float, metavar="SECONDS",
                   default=defaults.intake_pending_after.total_seconds(),
                   help="settle reports pending longer than this; keep it well above a "
                        "client's retry horizon (default %(default)s)")
