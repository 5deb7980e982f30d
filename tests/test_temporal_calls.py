"""Every raw Temporal RPC in the product is asked again when it fails.

The SDK's own client calls (start, signal, query, list) retry a transient failure; a raw
``client.workflow_service.…`` or ``client.operator_service.…`` call does so only with
``retry=True``. Temporal's frontend closes each connection every 5 minutes, and a call caught in
the switch fails with ``operation was canceled`` while the server is well: ``/readyz`` answered
503 in CI for it. ``python -m bench.connection_age`` measures it (docs/operations.md).
The readiness checks say ``retry=False`` and ask again themselves
(``jiesu.health.readiness.asked_again``: a server that is down is then named at once).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("api", "jiesu", "workflows", "activities", "worker.py")
SERVICES = {"workflow_service", "operator_service", "cloud_service", "test_service"}
# Modules whose raw calls say retry=False because every one of them goes through asked_again.
ASK_AGAIN_THEMSELVES = {"jiesu/health/readiness.py"}


def _raw_calls(tree: ast.AST) -> list[ast.Call]:
    """Calls of the form ``<anything>.<service>.<rpc>(...)``."""
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Attribute)
        and node.func.value.attr in SERVICES
    ]


def _retry(call: ast.Call) -> bool | None:
    """The call's ``retry=`` when it is a constant; None when not given."""
    for k in call.keywords:
        if k.arg == "retry" and isinstance(k.value, ast.Constant):
            return bool(k.value.value)
    return None


def _asked_again(tree: ast.AST) -> set[int]:
    """Lines of raw calls made inside ``asked_again(lambda: …)``."""
    return {
        inner.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "asked_again"
        for arg in node.args
        if isinstance(arg, ast.Lambda)
        for inner in _raw_calls(arg)
    }


def _product_files() -> list[Path]:
    files: list[Path] = []
    for part in PRODUCT:
        path = ROOT / part
        files += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return files


def _unretried(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    again = _asked_again(tree) if str(path.relative_to(ROOT)) in ASK_AGAIN_THEMSELVES else set()
    return [
        f"{path.relative_to(ROOT)}:{call.lineno}"
        for call in _raw_calls(tree)
        if not (_retry(call) is True or (_retry(call) is False and call.lineno in again))
    ]


def test_every_raw_temporal_call_is_asked_again_when_it_fails() -> None:
    found = sum(len(_raw_calls(ast.parse(p.read_text(encoding="utf-8")))) for p in _product_files())
    assert found >= 6, "the check no longer finds the raw calls it was written for"
    without = [where for path in _product_files() for where in _unretried(path)]
    assert not without, f"raw Temporal calls neither retry=True nor asked_again: {without}"


def test_the_check_sees_a_call_without_retry() -> None:
    tree = ast.parse(
        "async def f(c):\n"
        "    await c.workflow_service.get_system_info(r, timeout=t)\n"
        "    await c.workflow_service.describe_namespace(r, retry=True)\n"
        "    await asked_again(lambda: c.workflow_service.get_system_info(r, retry=False))\n"
    )
    assert [_retry(call) for call in _raw_calls(tree)] == [None, True, False]
    assert _asked_again(tree) == {4}
