"""The OpenAPI document tells an integrator the truth about what each operation can answer:
every ``error.code`` raised is listed (api/error_codes.py, the schema's ``x-error-codes``,
docs/errors.md), every status an operation can answer is in its ``responses``, and every
example fits its own schema. Static: no Temporal, no PostgreSQL."""

from __future__ import annotations

import ast
import re
import typing
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from fastapi.routing import APIRoute

from api.error_codes import ERROR_CODES, markdown
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


def _operations() -> list[tuple[APIRoute, str, dict[str, Any]]]:
    ops = []
    for route in APP.routes:
        if isinstance(route, APIRoute) and route.include_in_schema:
            for method in route.methods:
                ops.append((route, method, DOC["paths"][route.path_format][method.lower()]))
    return ops


OPERATIONS = _operations()
