"""The OpenAPI document tells an integrator the truth about what each operation can answer:
every ``error.code`` raised is listed (api/error_codes.py, the schema's ``x-error-codes``,
docs/errors.md), every status an operation can answer is in its ``responses``, and every
example fits its own schema. Static, read from the code and the app's document (no Temporal,
no PostgreSQL), but for the last test, which asks the running API."""

from __future__ import annotations

import ast
import inspect
import json
import re
import sys
import textwrap
import typing
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from fastapi.routing import APIRoute

from api.actions import ActionSpec
from api.error_codes import ERROR_CODES, markdown
from api.errors import COMMON_ERRORS, error_response
from api.main import create_app
from jiesu.access import sign_in_failures
from jiesu.case import glossary
from jiesu.channels import otp
from jiesu.config import Settings

ROOT = Path(__file__).resolve().parent.parent
APP = create_app(Settings())
DOC = APP.openapi()

# --- error codes ------------------------------------------------------------------------------

# Calls whose first snake_case string argument is an error code (AdminRefused: its second).
_CODE_CALLS = {
    "ApiError", "Refusal", "IntakeError", "IntakeRefused", "AccountRefused", "KeyRefused",
    "LoginRefused", "AnswerRefused", "AdminRefused", "invalid", "not_found", "conflict",
    "_unavailable", "error_response",
}  # fmt: skip
_SNAKE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)+|[a-z]+")
# Not the JSON API: GeoReport v2 has its own errors (docs/open311.md), the console its pages.
_ELSEWHERE = ("api/open311.py", "api/console/", "jiesu/intake/open311.py")


def _sources() -> list[Path]:
    return [
        path
        for folder in ("api", "jiesu")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if not str(path.relative_to(ROOT)).startswith(_ELSEWHERE)
    ]


def _callee(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        if func.attr == "__init__" and isinstance(func.value, ast.Call):  # super().__init__
            return "__init__" if getattr(func.value.func, "id", "") == "super" else None
        return func.attr
    return None


def raised_codes() -> dict[str, str]:
    """code → where it is raised first: the literal codes of the calls that make errors,
    the sign-in refusals' and the text-message codes' values, the HTTP handler's own."""
    found: dict[str, str] = {}
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or _callee(node) not in (*_CODE_CALLS, "__init__"):
                continue
            texts = [a.value for a in node.args
                     if isinstance(a, ast.Constant) and isinstance(a.value, str)]  # fmt: skip
            if _callee(node) == "AdminRefused":
                texts = texts[1:]
            if texts and _SNAKE.fullmatch(texts[0]):
                found.setdefault(texts[0], f"{path.relative_to(ROOT)}:{node.lineno}")
    for code in typing.get_args(sign_in_failures.Reason):
        found.setdefault(code, "jiesu/access/sign_in_failures.py")
    for refusal in otp.Refusal:
        found.setdefault(refusal.value, "jiesu/channels/otp.py")
    handler = (ROOT / "api" / "errors.py").read_text()
    for code in ("not_found", "method_not_allowed", "http_error", "invalid_request", "rejected"):
        found.setdefault(code, "api/errors.py" if f'"{code}"' in handler else "api/cases.py")
    return found


def test_the_harvest_finds_the_codes_it_should() -> None:
    """The harvest below is a static reading: make sure it reads each kind of source."""
    found = raised_codes()
    for code in ("wrong_status", "case_not_found", "payload_too_large", "login_taken",
                 "version_conflict", "idempotency_key_reused", "wrong_code", "rule_retired"):
        assert code in found, code


def test_every_raised_error_code_is_listed() -> None:
    """New-behaviour-enforcing (there was no list): a code raised anywhere in the API or the
    lifecycle must be in api/error_codes.py, so in the OpenAPI and docs/errors.md."""
    unlisted = {c: where for c, where in raised_codes().items() if c not in ERROR_CODES}
    assert unlisted == {}


def test_every_listed_error_code_is_raised() -> None:
    """No code in the list that nothing answers (a renamed code leaves none behind)."""
    assert sorted(set(ERROR_CODES) - set(raised_codes())) == []


def test_every_refusal_the_console_words_is_listed() -> None:
    """glossary.REFUSAL gives the Chinese words of codes the API answers: each is one."""
    assert sorted(set(glossary.REFUSAL) - set(ERROR_CODES)) == []


def test_the_openapi_lists_the_error_codes() -> None:
    body = DOC["components"]["schemas"]["ErrorBody"]["properties"]["code"]
    assert body["x-error-codes"] == ERROR_CODES
    assert "x-error-codes" in body["description"]


def test_docs_errors_md_is_current() -> None:
    """docs/errors.md is written by ``python -m api.error_codes > docs/errors.md``."""
    assert (ROOT / "docs" / "errors.md").read_text() == markdown()


def test_an_error_has_details_only_when_there_is_something_to_list() -> None:
    """As docs/errors.md and the README say: a 409 has no ``details`` key, a 422 its fields."""
    refused = json.loads(error_response(409, "wrong_status", "case … is closed").body)["error"]
    assert "details" not in refused
    fields = [{"field": "body.title", "problem": "missing"}]
    invalid = json.loads(error_response(422, "invalid_request", "invalid", fields).body)["error"]
    assert invalid["details"] == fields


# --- examples ---------------------------------------------------------------------------------


def _resolve(schema: Any) -> Any:
    """``schema`` with its ``$ref``s to the document's components inlined."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            return _resolve(DOC["components"]["schemas"][name])
        return {k: _resolve(v) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_resolve(v) for v in schema]
    return schema


def _examples() -> list[tuple[str, Any, Any]]:
    """(where, example, its schema) for every example in the document: of a component
    schema or one of its properties, of a parameter, of a request or response body."""
    found: list[tuple[str, Any, Any]] = []

    def of_schema(where: str, schema: dict[str, Any]) -> None:
        listed = schema.get("examples")
        for example in listed if isinstance(listed, list) else []:
            found.append((where, example, schema))
        if "example" in schema:
            found.append((where, schema["example"], schema))
        for name, prop in (schema.get("properties") or {}).items():
            of_schema(f"{where}.{name}", prop)

    for name, schema in DOC["components"]["schemas"].items():
        of_schema(name, schema)
    for path, operations in DOC["paths"].items():
        for method, op in operations.items():
            label = f"{method.upper()} {path}"
            for param in op.get("parameters", []):
                schema = param.get("schema", {})
                of_schema(f"{label} {param['name']}", schema)
                if "example" in param:
                    found.append((f"{label} {param['name']}", param["example"], schema))
                for key, ex in (param.get("examples") or {}).items():
                    found.append((f"{label} {param['name']} {key}", ex.get("value"), schema))
            bodies = [("request", op.get("requestBody", {}))]
            bodies += [(status, r) for status, r in op.get("responses", {}).items()]
            for what, body in bodies:
                for media in (body.get("content") or {}).values():
                    schema = media.get("schema", {})
                    if "example" in media:
                        found.append((f"{label} {what}", media["example"], schema))
                    for key, ex in (media.get("examples") or {}).items():
                        found.append((f"{label} {what} {key}", ex.get("value"), schema))
    return found


EXAMPLES = _examples()


def test_the_document_has_examples() -> None:
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize(("where", "example", "schema"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_every_example_fits_its_schema(where: str, example: Any, schema: Any) -> None:
    """New-behaviour-enforcing: an example the API would refuse misleads whoever copies it."""
    resolved = _resolve(schema)
    resolved.pop("examples", None)
    resolved.pop("example", None)
    jsonschema.validate(example, resolved, cls=jsonschema.Draft202012Validator,
                        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)  # fmt: skip


# --- statuses ---------------------------------------------------------------------------------


def _routes(routes: list[Any], prefix: str = "") -> list[tuple[str, APIRoute]]:
    """(path, route) of every APIRoute, included routers' too (FastAPI keeps those as
    ``_IncludedRouter``s, their routes under ``original_router`` and the prefix apart)."""
    found: list[tuple[str, APIRoute]] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append((prefix + route.path_format, route))
        elif hasattr(route, "original_router"):
            inner = prefix + getattr(route.include_context, "prefix", "")
            found += _routes(route.original_router.routes, inner)
    return found


def _operations() -> list[tuple[APIRoute, str, dict[str, Any]]]:
    ops = []
    for path, route in _routes(APP.routes):
        if route.include_in_schema:
            for method in sorted(route.methods):
                ops.append((route, method, DOC["paths"][path][method.lower()]))
    return ops


OPERATIONS = _operations()


def _glossed(fn: Any) -> dict[str, Any]:
    """The names ``fn`` sees: its module's, and the variables its closure holds."""
    names = dict(vars(sys.modules[fn.__module__]))
    if fn.__closure__:
        names.update(inspect.getclosurevars(fn).nonlocals)
    return names


def _resolve_call(func: ast.expr, names: dict[str, Any]) -> Any:
    if isinstance(func, ast.Name):
        return names.get(func.id)
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return getattr(names.get(func.value.id), func.attr, None)
    return None


def _status_values(expr: ast.expr, tree: ast.AST, names: dict[str, Any]) -> set[int]:
    """The statuses an ``ApiError``'s status argument may be: a number, a constant of
    ``starlette.status``, a module-level table's values, or what a local name is given."""
    found: set[int] = set()
    exprs = [expr]
    if isinstance(expr, ast.Name) and expr.id not in names:  # a local: what it is assigned
        exprs += [n.value for n in ast.walk(tree) if isinstance(n, ast.Assign)
                  for t in n.targets if isinstance(t, ast.Name) and t.id == expr.id]  # fmt: skip
    for sub in (n for e in exprs for n in ast.walk(e)):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, int) and 100 <= sub.value < 600:
            found.add(sub.value)
        elif isinstance(sub, ast.Attribute) and (m := re.match(r"HTTP_(\d{3})_", sub.attr)):
            found.add(int(m.group(1)))
        elif isinstance(sub, ast.Name) and isinstance(names.get(sub.id), dict):
            found |= {v for v in names[sub.id].values() if isinstance(v, int)}
    return found


def statuses_of(fn: Any, seen: set[Any] | None = None) -> set[int]:
    """Every status ``fn`` (an endpoint or a dependency) can answer by itself or through the
    api/ functions it calls: ``ApiError``s raised, error responses and statuses set."""
    seen = set() if seen is None else seen
    if not callable(fn):
        return set()
    if not inspect.isfunction(fn) and not inspect.ismethod(fn):
        fn = type(fn).__call__  # a dependency object
    fn = inspect.unwrap(getattr(fn, "__func__", fn)) if fn is not None else None
    if not inspect.isfunction(fn) or fn in seen or not fn.__module__.startswith("api"):
        return set()
    seen.add(fn)
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError):
        return set()
    names = _glossed(fn)
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if _callee(node) in ("ApiError", "error_response") and node.args:
                found |= _status_values(node.args[0], tree, names)
            for keyword in node.keywords:
                if keyword.arg == "status_code":
                    found |= _status_values(keyword.value, tree, names)
            target = _resolve_call(node.func, names)
            if inspect.isclass(target):
                continue
            found |= statuses_of(target, seen)
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Attribute) and t.attr == "status_code" for t in node.targets
        ):
            found |= _status_values(node.value, tree, names)
    return found


def _dependencies(dependant: Any) -> list[Any]:
    calls = []
    for dep in dependant.dependencies:
        calls.append(dep.call)
        calls += _dependencies(dep)
    return calls


def _has_params(dependant: Any) -> bool:
    """Whether the request carries anything validated: a parameter or a body, the
    operation's or one of its dependencies'."""
    kinds = ("path_params", "query_params", "header_params", "cookie_params", "body_params")
    return any(getattr(dependant, kind) for kind in kinds) or any(
        _has_params(dep) for dep in dependant.dependencies
    )


def can_answer(route: APIRoute) -> set[int]:
    """What ``route`` can answer besides the app's common errors (api.errors.COMMON_ERRORS)."""
    seen: set[Any] = set()
    found = {route.status_code or 200}
    for call in [route.endpoint, *_dependencies(route.dependant)]:
        found |= statuses_of(call, seen)
    spec = inspect.getclosurevars(route.endpoint).nonlocals.get("spec")
    if isinstance(spec, ActionSpec):  # its caller, its preparation and its check
        found |= statuses_of(type(spec.caller).perform, seen)
        found |= statuses_of(spec.prepare, seen)
    if _has_params(route.dependant):
        found.add(422)  # RequestValidationError
    return found - {int(s) for s in COMMON_ERRORS}


@pytest.mark.parametrize(
    ("route", "method", "op"),
    OPERATIONS,
    ids=[f"{m} {op['operationId']}" for _, m, op in OPERATIONS],
)
def test_every_status_an_operation_can_answer_is_documented(
    route: APIRoute, method: str, op: dict[str, Any]
) -> None:
    """New-behaviour-enforcing: read from the code (the statuses of the ApiErrors its
    endpoint, its dependencies and the api/ functions they call raise, and those it sets),
    each must be in the operation's documented responses."""
    documented = {int(s) for s in op["responses"]}
    misread = OVERREAD.get((method, op["operationId"]), set())
    assert sorted(can_answer(route) - documented - misread) == []


OVERREAD: dict[tuple[str, str], set[int]] = {
    # users._refused maps login_taken and last_admin to 409: jiesu.access.staff.set_password
    # refuses neither (only invalid_password, 422).
    ("POST", "set_password_api_v1_admin_users__login__password_post"): {409},
}
"""Statuses the reading above finds on a path that cannot answer them, each with why."""


def test_the_overreads_are_still_overreads() -> None:
    """An entry here that the reading no longer finds, or that is now documented, goes."""
    by_id = {(m, op["operationId"]): (route, op) for route, m, op in OPERATIONS}
    for key, statuses in OVERREAD.items():
        route, op = by_id[key]
        assert statuses <= can_answer(route), key
        assert not statuses & {int(s) for s in op["responses"]}, key


# --- the gaps found, answered by the running API ---------------------------------------------


async def test_a_cross_site_session_read_is_a_documented_403(api: httpx.AsyncClient) -> None:
    """GET /session answers 403 cross_site for a cookie sent from another site's page; its
    documentation listed 401 only."""
    response = await api.get(
        "/api/v1/session",
        headers={"Cookie": "jiesu_session=whatever", "Sec-Fetch-Site": "cross-site"},
    )
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "cross_site"
    documented = (await api.get("/openapi.json")).json()["paths"]["/api/v1/session"]["get"]
    assert "403" in documented["responses"]


# --- the refusals each action names -----------------------------------------------------------


def _action_codes(path: str, status: str) -> set[str]:
    """The codes the documentation of ``POST /api/v1/complaints/{case_id}<path>`` names for
    ``status``."""
    op = DOC["paths"][f"/api/v1/complaints/{{case_id}}{path}"]["post"]
    description = op["responses"][status]["description"]
    return set(re.findall(r"[a-z][a-z0-9_]+", description.partition("one of ")[2]))


@pytest.mark.parametrize(
    ("path", "conflict", "forbidden"),
    [
        ("/accept", {"wrong_status"}, {"forbidden", "not_assigned"}),
        ("/reply", {"wrong_status", "not_contacted", "co_handlers_pending", "evidence_required"},
         {"not_assigned"}),
        ("/return", {"return_pending", "return_window_passed", "return_limit",
                     "reassignment_pending"}, {"not_assigned"}),
        ("/contribution", {"already_done"}, {"not_co_handler"}),
        ("/rating", {"already_rated", "reassignment_pending", "rating_window_passed"},
         {"original_reporter_only"}),
        ("/supplement", {"supplement_limit"}, set()),
    ],
)  # fmt: skip
def test_an_action_names_the_refusals_it_can_answer(
    path: str, conflict: set[str], forbidden: set[str]
) -> None:
    """New-behaviour-enforcing: the 409 and 403 of an action named no code at all ("The case
    cannot take this action now"); now they name those of its lifecycle check (api/refusals.py)
    and of the answers any action can give. Known refusals of each, from the lifecycle."""
    assert conflict | {"case_closed", "case_changed"} <= _action_codes(path, "409")
    assert forbidden <= _action_codes(path, "403")
    assert "original_reporter_only" not in _action_codes("/supplement", "403")


# Lifecycle refusals no action endpoint answers with a 409 or 403, each with why.
NOT_AN_ACTION_REFUSAL = {
    "stale_step": "the escalation ladder's own step (check_escalation_step), no API action",
    "unsigned_step": "a ladder step without the case's word (CaseWorkflow._unsigned), not an API's",
    "repeat_report_limit": "a repeat report comes from intake (check_repeat_report)",
    "blank_text": "the API refuses blank text first, 422 (api/routers/supervision.py)",
}


def test_every_lifecycle_refusal_is_named_by_an_action() -> None:
    """Each Refusal code of jiesu/case/lifecycle.py is named by some action's 409 or 403 (or
    is listed above with the reason no action answers it)."""
    tree = ast.parse((ROOT / "jiesu" / "case" / "lifecycle.py").read_text())
    refusals = {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Refusal"
        and node.args and isinstance(node.args[0], ast.Constant)
    }  # fmt: skip
    named: set[str] = set()
    for path, operations in DOC["paths"].items():
        if path.startswith("/api/v1/complaints/{case_id}/") and "post" in operations:
            short = path.removeprefix("/api/v1/complaints/{case_id}")
            for status in ("409", "403"):
                if status in operations["post"]["responses"]:
                    named |= _action_codes(short, status)
    assert sorted(refusals - named - set(NOT_AN_ACTION_REFUSAL)) == []
    assert sorted(set(NOT_AN_ACTION_REFUSAL) & named) == []
    assert named <= set(ERROR_CODES)


# A status documented that the reading above does not find, each with why it is right.
UNDERREAD: dict[tuple[str, str], set[int]] = {
    # an SMS rating is performed through citizen.act_as, which the reading does not follow
    # (the spec's caller is called through a variable): its 404 was documented, and is kept
    ("POST", "sms_inbound_api_v1_channels_sms_inbound_post"): {404},
}


@pytest.mark.parametrize(
    ("route", "method", "op"),
    OPERATIONS,
    ids=[f"{m} {op['operationId']}" for _, m, op in OPERATIONS],
)
def test_no_operation_documents_a_refusal_it_cannot_answer(
    route: APIRoute, method: str, op: dict[str, Any]
) -> None:
    """New-behaviour-enforcing: lists, searches and creations documented 404 "No such case
    visible to you", admin reads 409 "The change conflicts", the public self-service form and
    the citizen's actions 401 ("No or unknown API key"): an integrator would handle answers
    that never come, or send a key nobody reads. 401, 403, 404 and 409 are documented where
    the code path can answer them (422 stays where FastAPI puts it)."""
    documented = {int(s) for s in op["responses"]} & {401, 403, 404, 409}
    allowed = can_answer(route) | UNDERREAD.get((method, op["operationId"]), set())
    assert sorted(documented - allowed) == []


# --- what the document says of the doctor and the citizen's link -------------------------------


def test_the_doctor_operation_names_every_kind_it_reports() -> None:
    """GET /api/v1/admin/doctor's summary named six of the nine kinds (not the citizens
    nobody could tell, nor large histories) and its document no kind by name; a kind added to
    the doctor (notification_failed) went unsaid. Now its description lists every kind of
    ``checks.KINDS``, and the summary names given-up notices and the citizens not told."""
    from jiesu.health import checks

    operation = DOC["paths"]["/api/v1/admin/doctor"]["get"]
    described = operation.get("description", "")
    assert [k for k in checks.KINDS if f"`{k}`" not in described] == [], described
    assert "given-up notices" in operation["summary"]
    assert "citizens nobody could tell" in operation["summary"]


def test_the_citizen_token_says_the_link_may_go_by_e_mail() -> None:
    """IntakeResponse.citizen_token said the citizen gets the token "by the intake SMS's
    link"; a citizen whose phone takes no SMS and who left an e-mail gets it by e-mail
    (jiesu.intake.follow_up, jiesu.notify.outbox.route)."""
    token = DOC["components"]["schemas"]["IntakeResponse"]["properties"]["citizen_token"]
    assert "by e-mail" in token["description"], token["description"]
