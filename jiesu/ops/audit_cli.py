"""The auditors' subcommands of ``jiesu``: timeline, export, replay, consistency, archive.

Registered into the main parser by :func:`add_commands`; each works on Temporal and, for
cases Temporal no longer keeps, on the history archive (settings from the environment:
TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, DATABASE_URL).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

import asyncpg
from temporalio.client import Client

from jiesu import bidi, db
from jiesu.audit import archive as audit_archive
from jiesu.audit import consistency as audit_consistency
from jiesu.audit import histories as audit
from jiesu.audit import replay as audit_replay
from jiesu.audit.timeline import Timeline, actor_label, iter_entries
from jiesu.client import connect
from jiesu.config import Settings, get_settings
from workflows import ALL_WORKFLOWS

Session = tuple[Client, asyncpg.Pool, Settings]


@asynccontextmanager
async def _session() -> AsyncIterator[Session]:
    settings = get_settings()
    client = await connect(settings)
    pool = await db.create_pool(settings.database_url, max_size=4)
    try:
        yield client, pool, settings
    finally:
        await pool.close()


def _run(body: Callable[[Session], Awaitable[int]]) -> int:
    async def main() -> int:
        async with _session() as session:
            return await body(session)

    try:
        return asyncio.run(main())
    except audit.HistoryNotFound as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def iso_time(value: str) -> str:
    """argparse type of ``--since``/``--until``: refuse what ``_time`` cannot read, as a usage
    error (exit 2) before anything is connected, instead of a traceback afterwards."""
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an ISO date or date-time, e.g. 2026-11-01 or "
            "2026-11-01T08:00+08:00"
        ) from None
    return value


def _time(value: str, zone: str | None = None) -> datetime:
    """An ISO date or date-time; without an offset, in the hotline's time zone."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo(zone or get_settings().timezone))
    return parsed


# --- what the commands show ----------------------------------------------------------------

# Bidirectional formatting (U+202A–U+202E, U+2066–U+2069, marks): they reorder what a terminal
# shows, so a line could read other than it is. The set and its escape are jiesu.bidi's, which
# the console shows the same way.


def terminal_safe(text: str) -> str:
    """One line's ``text`` with control characters (C0, a newline too, DEL, C1) and
    bidirectional controls escaped. What a history holds — a signal's name, a failure's
    message, an operator's reason for terminating — comes from any Temporal client: an escape
    sequence in it would move the cursor, clear or retitle the auditor's terminal, and could
    print a forged line over a real one, or a newline in it a line of its own."""
    return "".join(
        f"\\x{ord(c):02x}" if unicodedata.category(c) == "Cc"
        else bidi.escaped(c) if c in bidi.BIDI_CONTROLS else c
        for c in text
    )


# --- timeline ------------------------------------------------------------------------------


def format_timeline(timeline: Timeline, zone: str) -> str:
    """The timeline as lines for a terminal (each :func:`terminal_safe`)."""
    return "\n".join(terminal_safe(line) for line in _timeline_lines(timeline, zone))


def _timeline_lines(timeline: Timeline, zone: str) -> list[str]:
    tz = ZoneInfo(zone)
    lines = [
        f"{timeline.workflow_type} {timeline.workflow_id} (run {timeline.run_id}): "
        f"{timeline.status}; {timeline.event_count} history events from {timeline.source}"
    ]
    if timeline.stuck:
        lines.append(f"STUCK: the last workflow task failed ({timeline.stuck}); see "
                     "docs/operations.md")
    for depth, entry in iter_entries(timeline):
        indent = "    " * depth
        at = entry.at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")
        actor = actor_label(entry.actor) if entry.actor else ""
        lines.append(
            f"{indent}#{entry.event_id:<4} {at}  {entry.kind:<18} {actor:<36} {entry.summary}"
            .rstrip()
        )
        if entry.child is not None:
            child = entry.child
            lines.append(
                f"{indent}    ↳ {child.workflow_type} {child.workflow_id}: {child.status}, "
                f"history from {child.source}"
            )
    return lines


def cmd_timeline(args: argparse.Namespace) -> int:
    """Show a case's timeline, decoded from its Temporal history (or the archive)."""

    async def body(session: Session) -> int:
        client, pool, settings = session
        timeline = await audit.case_timeline(client, pool, args.case)
        if args.json:
            print(timeline.model_dump_json(indent=2))
        else:
            print(format_timeline(timeline, settings.timezone))
        return 0

    return _run(body)


# --- export --------------------------------------------------------------------------------


def cmd_export(args: argparse.Namespace) -> int:
    """Export a case's raw history (Temporal JSON) or, with --bundle, timeline + histories."""

    async def body(session: Session) -> int:
        client, pool, _ = session
        if args.bundle:
            document = await audit.case_bundle(client, pool, args.case)
        else:
            document = await audit.raw_history(client, pool, args.case)
        text = audit.dumps(document) + "\n"
        if args.output:
            await asyncio.to_thread(Path(args.output).write_text, text, encoding="utf-8")
            print(f"wrote {args.output}", file=sys.stderr)
        else:
            sys.stdout.write(text)
        return 0

    return _run(body)


# --- replay --------------------------------------------------------------------------------


class Progress:
    """A progress line on stderr: rewritten in place on a terminal, every ~5% otherwise."""

    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self.total, self.done, self.failed, self.stream = total, 0, 0, stream
        self.every = 1 if stream.isatty() else max(1, total // 20)

    def step(self, ok: bool) -> None:
        self.done += 1
        self.failed += not ok
        if self.done % self.every and self.done != self.total:
            return
        line = f"replayed {self.done}/{self.total} cases, {self.failed} failing"
        end = "\r" if self.stream.isatty() and self.done != self.total else "\n"
        print(line, end=end, file=self.stream, flush=True)


def describe_verdict(verdict: audit_replay.CaseVerdict) -> str:
    if verdict.ok:
        children = len(verdict.histories) - 1
        more = f" (with {children} child histories)" if children > 0 else ""
        source = verdict.histories[0].source if verdict.histories else "?"
        return f"{verdict.case_id}: replays{more} [history from {source}]"
    bad = verdict.divergence
    where = ""
    if bad is not None:
        where = f" in {bad.workflow_id}" if bad.workflow_id != verdict.case_id else ""
        where += f" at event {bad.event_id}" if bad.event_id is not None else ""
    return f"{verdict.case_id}: {verdict.verdict}{where}: {verdict.message}"


def cmd_replay(args: argparse.Namespace) -> int:
    """Replay cases against the current workflow code; exit 1 if any does not replay."""

    async def body(session: Session) -> int:
        client, pool, settings = session
        since = _time(args.since, settings.timezone) if args.since else None
        until = _time(args.until, settings.timezone) if args.until else None
        cases = list(args.cases) or await audit_replay.select_cases(
            client, pool, query=args.query, since=since, until=until
        )
        if not cases:
            print("no cases matched")
            return 0
        progress = Progress(len(cases))

        def on_verdict(verdict: audit_replay.CaseVerdict) -> None:
            print(terminal_safe(describe_verdict(verdict)), flush=True)
            progress.step(verdict.ok)

        replayer = audit_replay.make_replayer(ALL_WORKFLOWS)
        summary = await audit_replay.replay_cases(
            client, pool, cases, replayer=replayer, on_verdict=on_verdict
        )
        counts = ", ".join(f"{n} {verdict}" for verdict, n in sorted(summary.counts.items()))
        print(f"summary: {summary.total} cases: {counts}")
        return 0 if summary.ok else 1

    return _run(body)


# --- consistency ---------------------------------------------------------------------------


def describe_consistency(result: audit_consistency.CaseConsistency) -> list[str]:
    head = (
        f"{result.case_id}: {'consistent' if result.ok else 'DIVERGES'} "
        f"({result.history_events} history events, {result.read_model_events} in the read "
        f"model, {result.pending} pending, {result.ahead} ahead of the history; history from "
        f"{result.source})"
    )
    lines = [head]
    if result.error:
        lines.append(f"    error: {result.error}")
    for d in result.divergences:
        fields = f" ({', '.join(d.fields)})" if d.fields else ""
        lines.append(f"    seq {d.seq}: {d.problem}{fields}")
        if d.history is not None:
            lines.append(f"        history:    {d.history}")
        if d.read_model is not None:
            lines.append(f"        read model: {d.read_model}")
    return lines


def cmd_consistency(args: argparse.Namespace) -> int:
    """Compare each case's read-model event list with its history; exit 1 on divergence."""

    async def body(session: Session) -> int:
        client, pool, settings = session
        since = _time(args.since, settings.timezone) if args.since else None
        until = _time(args.until, settings.timezone) if args.until else None
        cases = list(args.cases) or await audit_consistency.select_cases(
            client, pool, since, until
        )
        diverging = 0
        async for result in audit_consistency.check_cases(client, pool, cases):
            diverging += not result.ok
            if not result.ok or args.verbose:
                print("\n".join(map(terminal_safe, describe_consistency(result))), flush=True)
        print(f"summary: {len(cases)} cases checked, {diverging} diverging")
        return 1 if diverging else 0

    return _run(body)


# --- archive -------------------------------------------------------------------------------


def cmd_archive(args: argparse.Namespace) -> int:
    """Archive closed cases' histories into PostgreSQL now (the schedule does it hourly)."""

    async def body(session: Session) -> int:
        client, pool, _ = session
        request = audit_archive.ArchiveRequest(query=args.query)

        def heartbeat(cursor: audit_archive.ArchiveCursor, report: dict[str, Any]) -> None:
            if cursor.listing == "children":
                print(f"children page {report['children_pages']}: {report['children_listed']}"
                      f" listed, {report['children']} archived", file=sys.stderr, flush=True)
            else:
                print(f"page {report['pages']}: {report['listed']} listed, "
                      f"{report['archived']} archived", file=sys.stderr, flush=True)

        report = await audit_archive.archive_closed_cases(
            client, pool, request, heartbeat=heartbeat
        )
        print(", ".join(f"{k} {v}" for k, v in asdict_report(report).items()))
        for child_id in report.open_children:
            print(f"still open long after its case closed: {child_id}", file=sys.stderr)
        for child_id in report.lost_children:
            print(f"gone from Temporal, never archived: {child_id}", file=sys.stderr)
        # deferred cases are normal (a child closing after its case); stuck children are not
        return 1 if report.missing or report.open_children or report.lost_children else 0

    return _run(body)


def asdict_report(report: audit_archive.ArchiveReport) -> dict[str, Any]:
    values = report.model_dump()
    for listed in ("missing", "deferred", "open_children", "lost_children"):
        values[listed] = len(values[listed])
    return values


# --- wiring --------------------------------------------------------------------------------


def _add(
    sub: Any, name: str, func: Callable[[argparse.Namespace], int]
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=func.__doc__, description=func.__doc__
    )
    parser.set_defaults(func=func)
    return parser


def _add_range(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", type=iso_time,
                        help="cases started at or after (ISO date/time)")
    parser.add_argument("--until", type=iso_time, help="cases started before (ISO date/time)")


def add_commands(sub: Any) -> None:
    """Add the auditors' subcommands to the ``jiesu`` parser's subparsers."""
    p = _add(sub, "timeline", cmd_timeline)
    p.add_argument("case", help="case number (workflow id)")
    p.add_argument("--json", action="store_true", help="print the timeline as JSON")

    p = _add(sub, "export", cmd_export)
    p.add_argument("case", help="case number (workflow id)")
    p.add_argument("--bundle", action="store_true",
                   help="timeline plus raw histories of the case and its children")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")

    p = _add(sub, "replay", cmd_replay)
    p.add_argument("cases", nargs="*", metavar="CASE", help="case numbers (default: select)")
    p.add_argument("--query", help='a visibility query, e.g. \'CaseStatus="closed"\'')
    _add_range(p)

    p = _add(sub, "consistency", cmd_consistency)
    p.add_argument("cases", nargs="*", metavar="CASE", help="case numbers (default: select)")
    p.add_argument("-v", "--verbose", action="store_true", help="list consistent cases too")
    _add_range(p)

    p = _add(sub, "archive", cmd_archive)
    p.add_argument("--query", help="an extra visibility filter for the closed cases")
