"""Which lifecycle refusals an action can answer, for its OpenAPI description: the codes of
the ``Refusal``s its check (jiesu/case/lifecycle.py) returns, read from the check's source and
the lifecycle functions it calls. 409 for a refusal of the case's state, 403 for one of who
the caller is (``Refusal.forbidden``): an integrator learns from the operation which codes to
expect, instead of from the whole list (api/error_codes.py).

The reading is static, so it sees every refusal the check can return, whatever the case's
state (a rule added while cases were running, ``Refusal.since``, included), and the refusal
the workflow adds to its check for the actions that pass a case on or judge its reply while
a reassignment is pending (``reassignment_pending``, workflows/complaint.py ``_check``) or
refuses a verdict given after the rating window (``rating_window_passed``)."""

from __future__ import annotations

import ast
import inspect
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jiesu.case import lifecycle


@dataclass(frozen=True)
class RefusalCodes:
    conflict: tuple[str, ...]  # 409
    forbidden: tuple[str, ...]  # 403


def _is_forbidden(call: ast.Call) -> bool:
    flag = call.args[2] if len(call.args) > 2 else None
    for keyword in call.keywords:
        if keyword.arg == "forbidden":
            flag = keyword.value
    return isinstance(flag, ast.Constant) and flag.value is True


def _functions(check: Callable[..., Any]) -> list[Callable[..., Any]]:
    """``check`` and, when it wraps one (a lambda giving the API's "now"), the wrapped."""
    found = [check]
    if inspect.isfunction(check) and check.__closure__:
        found += [v for v in inspect.getclosurevars(check).nonlocals.values() if callable(v)]
    return found


def refusal_codes(check: Callable[..., Any]) -> RefusalCodes:
    conflict: set[str] = set()
    forbidden: set[str] = set()
    seen: set[Any] = set()

    def read(fn: Any) -> None:
        if not inspect.isfunction(fn) or fn in seen or not fn.__module__.startswith("jiesu.case"):
            return
        seen.add(fn)
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
        except (OSError, TypeError, SyntaxError):  # no source (a lambda's line is one)
            return
        names = vars(sys.modules[fn.__module__])
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            if isinstance(node.func, ast.Name) and node.func.id == "Refusal" and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    (forbidden if _is_forbidden(node) else conflict).add(first.value)
            elif isinstance(node.func, ast.Name):
                read(names.get(node.func.id))
            elif isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
                read(getattr(names.get(node.func.value.id), node.func.attr, None))

    wrapped = _functions(check)
    for fn in wrapped:
        read(fn)
    signal = next((signal for signal, rule in lifecycle.CHECKS.items()
                   if set(_functions(rule)) & set(wrapped)), None)  # fmt: skip
    if signal in lifecycle.REASSIGNING_ACTIONS | lifecycle.VERDICTS:
        conflict.add("reassignment_pending")
    if signal in lifecycle.VERDICTS:  # the workflow's own check of the verdict's time
        read(lifecycle.verdict_too_late)
    if signal is not None:  # what the case refuses when it carries the action out
        conflict.update(lifecycle.CARRIED_OUT_REFUSALS.get(signal, ()))
    return RefusalCodes(tuple(sorted(conflict)), tuple(sorted(forbidden)))
