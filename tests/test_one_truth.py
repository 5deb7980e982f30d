"""One source of truth (issue 10 item 4): facts that must be defined once are, and nothing
spells them out again by hand."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from jiesu.case import lifecycle
from jiesu.case.domain import DISPATCHER_ROLES, STAFF_ROLES, Role, Status

ROOT = Path(__file__).resolve().parent.parent
CODE = [ROOT / "worker.py", *[p for d in ("api", "jiesu", "activities", "workflows")
                               for p in sorted((ROOT / d).rglob("*.py"))]]
_STATUS_LITERAL = re.compile("'({})'".format("|".join(s.value for s in Status)))


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def test_no_sql_spells_a_case_status() -> None:
    """SQL text is built from Status (``jiesu.case.domain.sql_status``): a renamed or added
    status cannot leave a query behind that silently matches nothing."""
    found = [
        f"{path.relative_to(ROOT)}:{line}: {_STATUS_LITERAL.search(text).group()}"  # type: ignore[union-attr]
        for path in CODE
        for line, text in _strings(ast.parse(path.read_text(), str(path)))
        if _STATUS_LITERAL.search(text)
    ]
    assert found == []


def test_role_groups_are_defined_once() -> None:
    """The lifecycle checks use the domain's role groups, not copies of them."""
    assert lifecycle.DISPATCHER_ROLES is DISPATCHER_ROLES
    assert STAFF_ROLES == frozenset(Role) - {Role.CITIZEN, Role.SYSTEM}


def test_no_router_builds_its_own_caller_dependency() -> None:
    """Callers (``Supervisor``, ``Admin``...) are declared in api/deps.py from the role groups;
    a router that calls ``require(...)`` itself has made a second definition."""
    routers = sorted((ROOT / "api" / "routers").glob("*.py"))
    assert [p.name for p in routers if "require(" in p.read_text()] == []


def test_every_case_action_endpoint_is_declared_by_a_spec() -> None:
    """One way to declare an action endpoint: every endpoint answering an ActionResult (a
    citizen's: a CitizenActionResult) is built by api.actions from an ActionSpec, none is a
    hand-written near-copy (its own signalling, idempotency and 202 handling)."""
    import importlib
    import pkgutil

    from fastapi.routing import APIRoute

    import api.routers
    from api.schemas import ActionResult, CitizenActionResult

    routes = [
        route
        for info in pkgutil.iter_modules(api.routers.__path__)
        for route in importlib.import_module(f"api.routers.{info.name}").router.routes
    ]
    actions = [
        route for route in routes
        if isinstance(route, APIRoute)
        and route.response_model in (ActionResult, CitizenActionResult)
    ]  # fmt: skip
    assert len(actions) >= 17
    assert [r.path for r in actions if r.endpoint.__module__ != "api.actions"] == []
