"""``jiesu admin ...``: the administration of jiesu.admin from the machine that runs Jiesu
(the same functions as ``/api/v1/admin/...``). Works on ``DATABASE_URL``; every change is
logged with the actor ``cli:<login>`` (role admin). Answers are printed as JSON; a refused
change prints ``error: ...`` and exits 2, changing nothing.

    jiesu admin departments|areas|categories list | get ID | put ID JSON | delete ID
    jiesu admin departments retire ID [--at T] | reinstate ID
    jiesu admin departments hand-over ID --to SUCCESSOR --reason R
    jiesu admin rules list [--as-of T] [--every-version] | add ... | retire ID [--at T]
                      | replace ID --department D [--at T] | history ID
    jiesu admin calendar show YEAR | diff FILE --year YEAR | apply FILE --year YEAR
    jiesu admin policy list | set NAME VALUE | reset NAME
    jiesu admin templates list | set EVENT RECIPIENT --subject S --body B | delete EVENT RECIPIENT
    jiesu admin changes [--entity E] [--id ID] [--limit N]
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import BaseModel, ValidationError

from jiesu import db
from jiesu.admin import (
    calendar,
    changes,
    departments,
    handover,
    policy,
    reference,
    routing,
    templates,
)
from jiesu.admin.errors import AdminRefused
from jiesu.case.domain import Actor, EventKind, Role
from jiesu.client import connect
from jiesu.config import get_settings
from jiesu.validation import plain

Work = Callable[[asyncpg.Pool, Actor], Awaitable[Any]]


def cli_actor() -> Actor:
    try:
        login = getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container
        login = "unknown"
    return Actor(role=Role.ADMIN, name=f"cli:{login}"[:200])


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


async def _run(work: Work) -> int:
    pool = await db.create_pool(get_settings().database_url, min_size=1, max_size=2)
    try:
        result = await work(pool, cli_actor())
    except AdminRefused as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return 2
    finally:
        await pool.close()
    if result is not None:
        print(json.dumps(_jsonable(result), ensure_ascii=False, indent=2, default=str))
    return 0


def _execute(work: Work) -> int:
    try:
        return asyncio.run(_run(work))
    except (ValidationError, ValueError) as exc:
        print(f"error: invalid input: {plain(exc)}", file=sys.stderr)
        return 2


# --- commands: each returns the work to run ---------------------------------------------


def _reference(args: argparse.Namespace) -> Work:
    table = reference.TABLES[args.entity]
    if args.action == "list":
        return lambda pool, _: reference.list_records(pool, table)
    if args.action == "get":
        return lambda pool, _: reference.get_record(pool, table, args.id)
    if args.action == "delete":
        return lambda pool, actor: reference.delete_record(pool, actor, table, args.id)
    if args.action == "retire":
        retirement = departments.Retirement(at=args.at)
        return lambda pool, actor: departments.retire(pool, actor, args.id, retirement)
    if args.action == "reinstate":
        return lambda pool, actor: departments.reinstate(pool, actor, args.id)
    if args.action == "hand-over":
        body = handover.Handover(department_id=args.to, reason=args.reason)
        return lambda pool, actor: _hand_over_all(pool, actor, args.id, body)
    body = table.model.model_validate_json(args.json)

    async def put(pool: asyncpg.Pool, actor: Actor) -> Any:
        return (await reference.put_record(pool, actor, table, args.id, body))[0]

    return put


async def _hand_over_all(
    pool: asyncpg.Pool, actor: Actor, department_id: str, body: handover.Handover
) -> dict[str, Any]:
    """移交 in batches, oldest first, each after the last (``next``), until the unit holds
    nothing more, saying how far it got (stderr). Run again, it tells the cases that have not
    carried the first out yet once more: each takes the first (the second is refused,
    ``reassignment_pending``, or ``holder_changed`` once it is with the successor)."""
    client = await connect(get_settings())
    sent: list[str] = []
    while True:
        batch = await handover.hand_over(pool, client, actor, department_id, body)
        sent += batch.sent
        print(f"handed over {len(sent)} case(s); {batch.remaining} more", file=sys.stderr)
        if batch.next is None:
            break
        body = body.model_copy(update={"after": batch.next})
    return {"department_id": department_id, "to_department_id": body.department_id,
            "sent": sent, "left": _jsonable(batch.left)}


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO date-time, e.g. 2027-01-01T00:00+08:00"
        ) from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text}: give a timezone, e.g. 2027-01-01T00:00+08:00")
    return value


def _rules(args: argparse.Namespace) -> Work:
    if args.action == "list":
        return lambda pool, _: routing.list_rules(
            pool, as_of=args.as_of, every_version=args.every_version, category_id=args.category
        )
    if args.action == "history":
        return lambda pool, _: changes.list_changes(
            pool, entity=routing.ENTITY, entity_id=str(args.id)
        )
    if args.action == "retire":
        body = routing.Retirement(at=args.at)
        return lambda pool, actor: routing.retire_rule(pool, actor, args.id, body)
    if args.action == "replace":
        repl = routing.Replacement(at=args.at, department_id=args.department,
                                   priority=args.priority)
        return lambda pool, actor: routing.replace_rule(pool, actor, args.id, repl)
    rule = routing.RuleIn(category_id=args.category, area_id=args.area,
                          department_id=args.department, priority=args.priority or 0,
                          valid_from=args.valid_from, valid_to=args.valid_to)

    async def add(pool: asyncpg.Pool, actor: Actor) -> Any:
        return (await routing.add_rule(pool, actor, rule))[0]

    return add


def _calendar(args: argparse.Namespace) -> Work:
    if args.action == "show":
        return lambda pool, _: calendar.list_days(pool, args.year)
    notice = calendar.parse_csv(Path(args.file).read_text(encoding="utf-8"), args.year)
    apply = args.action == "apply"
    return lambda pool, actor: calendar.load(pool, actor, notice, apply=apply)


def _policy(args: argparse.Namespace) -> Work:
    settings = get_settings()
    if args.action == "list":
        return lambda pool, _: policy.list_values(pool, settings)
    value = args.value if args.action == "set" else None
    return lambda pool, actor: policy.set_value(pool, actor, settings, args.name, value)


def _templates(args: argparse.Namespace) -> Work:
    if args.action == "list":
        return lambda pool, _: templates.list_templates(pool)
    kind = EventKind(args.event_kind)
    if args.action == "delete":
        return lambda pool, actor: templates.delete_template(pool, actor, kind, args.recipient)
    body = templates.TemplateIn(subject=args.subject, body=args.body)
    return lambda pool, actor: templates.put_template(pool, actor, kind, args.recipient, body)


def _changes(args: argparse.Namespace) -> Work:
    return lambda pool, _: changes.list_changes(
        pool, entity=args.entity, entity_id=args.id, limit=args.limit
    )


def _command(build: Callable[[argparse.Namespace], Work]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            work = build(args)
        except (ValidationError, ValueError) as exc:
            print(f"error: invalid input: {plain(exc)}", file=sys.stderr)
            return 2
        return _execute(work)

    return run


# --- wiring ------------------------------------------------------------------------------


def _actions(parent: Any, name: str, help_: str, build: Callable[..., Work]) -> Any:
    p = parent.add_parser(name, help=help_, description=help_)
    p.set_defaults(func=_command(build))
    return p.add_subparsers(dest="action", required=True, metavar="ACTION")


def _add_reference(admin: Any) -> None:
    for entity, plural in (("department", "departments"), ("area", "areas"),
                           ("category", "categories")):
        help_ = f"{plural}: list, get, put (create or replace), delete" + (
            ", retire, reinstate" if entity == "department" else "")
        acts = _actions(admin, plural, help_, _reference)
        acts.add_parser("list", help=f"every {entity}").set_defaults(entity=entity)
        for action, what in (("get", f"one {entity}"),
                             ("delete", f"delete a {entity} nothing refers to")):
            acts.add_parser(action, help=what).add_argument("id")
            acts.choices[action].set_defaults(entity=entity)
        p = acts.add_parser("put", help="JSON of the record without its id, e.g. "
                            + {"department": '{"name": "...", "level": "county"}',
                               "area": '{"name": "...", "kind": "grid", "parent_id": "..."}',
                               "category": '{"name": "...", "default_urgency": "general"}'
                               }[entity])
        p.add_argument("id")
        p.add_argument("json")
        p.set_defaults(entity=entity)
        if entity == "department":
            _add_department_service(acts)


def _add_department_service(acts: Any) -> None:
    """停用 / 恢复启用: only departments are retired (their cases and figures keep them)."""
    p = acts.add_parser("retire", help="out of service from --at (default now): routing passes "
                        "over it, no new cases, co-handlings or accounts")
    p.add_argument("id")
    p.add_argument("--at", type=_instant, help="from when (ISO, with a timezone; default now)")
    p.set_defaults(entity="department")
    p = acts.add_parser("reinstate", help="back in service")
    p.add_argument("id")
    p.set_defaults(entity="department")
    p = acts.add_parser("hand-over", help="移交: a retired unit's open cases to its successor "
                        "(needs TEMPORAL_ADDRESS as well)")
    p.add_argument("id")
    p.add_argument("--to", required=True, help="the unit that takes over the work")
    p.add_argument("--reason", required=True, help="why, for each case's record")
    p.set_defaults(entity="department")


def _add_rules(admin: Any) -> None:
    acts = _actions(admin, "rules", "the routing catalogue (派单目录) with effective dates",
                    _rules)
    p = acts.add_parser("list", help="the rules in force (now, or --as-of)")
    p.add_argument("--as-of", type=_instant, help="the moment (ISO, with a timezone)")
    p.add_argument("--every-version", action="store_true",
                   help="every rule ever written, in force or not")
    p.add_argument("--category", help="only this category's rules")
    p = acts.add_parser("add", help="a new rule, in force from --from (default now)")
    p.add_argument("--category", required=True, help="the category id")
    p.add_argument("--area", help="the area id it applies in (default: anywhere)")
    p.add_argument("--department", required=True, help="the department id the cases go to")
    p.add_argument("--priority", type=int,
                   help="higher wins among rules of the same area (default 0)")
    p.add_argument("--from", dest="valid_from", type=_instant,
                   help="in force from (ISO, with a timezone; default now)")
    p.add_argument("--to", dest="valid_to", type=_instant,
                   help="in force until, exclusive (default: open-ended)")
    p = acts.add_parser("retire", help="out of force from --at (default now)")
    p.add_argument("id", type=int, help="the rule's id (from `rules list`)")
    p.add_argument("--at", type=_instant, help="from when (ISO, with a timezone; default now)")
    p = acts.add_parser("replace", help="retire and put a successor in force at --at")
    p.add_argument("id", type=int, help="the rule's id (from `rules list`)")
    p.add_argument("--department", required=True, help="the successor's department id")
    p.add_argument("--priority", type=int, help="the successor's priority (default: the rule's)")
    p.add_argument("--at", type=_instant, help="from when (ISO, with a timezone; default now)")
    acts.add_parser("history", help="a rule's changes (the change log)").add_argument(
        "id", type=int)


def _add_calendar(admin: Any) -> None:
    acts = _actions(admin, "calendar", "calendar overrides from the year's holiday notice (CSV)",
                    _calendar)
    acts.add_parser("show", help="a year's overrides").add_argument("year", type=int)
    for action, help_ in (("diff", "validate the file, show what would change"),
                          ("apply", "validate, show and apply")):
        p = acts.add_parser(action, help=help_)
        p.add_argument("file", help="CSV: date,kind,note (kind: holiday | workday)")
        p.add_argument("--year", type=int, required=True,
                       help="the year of the notice: its days become exactly the file's")


def _add_policy(admin: Any) -> None:
    acts = _actions(admin, "policy", "run-time policy values (SLA limits, lifecycle windows)",
                    _policy)
    acts.add_parser("list", help="every value, its default and unit")
    p = acts.add_parser("set", help="set one value (new deadlines use it)")
    p.add_argument("name", choices=policy.NAMES, metavar="NAME",
                   help="one of: " + ", ".join(policy.NAMES))
    p.add_argument("value", type=float)
    acts.add_parser("reset", help="back to the default").add_argument(
        "name", choices=policy.NAMES, metavar="NAME", help="see `jiesu admin policy list`")


def _add_templates(admin: Any) -> None:
    acts = _actions(admin, "templates", "notification templates ($case_id, $subject, $body)",
                    _templates)
    acts.add_parser("list", help="the templates that replace a built-in text")
    for action, help_ in (("set", "replace the built-in subject and body of one notice"),
                          ("delete", "back to the built-in text")):
        p = acts.add_parser(action, help=help_)
        p.add_argument("event_kind", choices=[k.value for k in EventKind])
        p.add_argument("recipient", choices=["department", "citizen", "supervisor"])
        if action == "set":
            p.add_argument("--subject", required=True,
                           help="string.Template: $case_id, $subject, $body, $recipient_id, "
                           "$event_kind")
            p.add_argument("--body", required=True, help="string.Template, the same fields")


def add_commands(sub: Any) -> None:
    """Add ``admin`` and its subcommands to the ``jiesu`` parser's subparsers."""
    what = "reference data, routing catalogue, calendar, policy, templates, change log"
    admin = sub.add_parser("admin", help=what, description=f"Administration ({what}) on "
                           "DATABASE_URL, as /api/v1/admin/...: docs/administration.md. "
                           "Every change is logged as cli:<login>; a refused one exits 2.")
    groups = admin.add_subparsers(dest="admin_command", required=True, metavar="WHAT")
    _add_reference(groups)
    _add_rules(groups)
    _add_calendar(groups)
    _add_policy(groups)
    _add_templates(groups)
    p = groups.add_parser("changes", help="the change log, newest first",
                          description="the change log, newest first")
    p.add_argument("--entity", help="e.g. department, area, category, routing_rule, calendar, "
                   "policy, notification_template")
    p.add_argument("--id", help="the record's id (with --entity)")
    p.add_argument("--limit", type=int, default=50, help="at most (default %(default)s)")
    p.set_defaults(func=_command(_changes))
