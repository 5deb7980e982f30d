"""Why an administrative change is refused. The API maps ``kind`` to a status (invalid 422,
not_found 404, conflict 409); the CLI prints the message. A refused change changes nothing."""

from __future__ import annotations

from typing import Literal

RefusalKind = Literal["invalid", "not_found", "conflict"]


class AdminRefused(ValueError):
    def __init__(self, kind: RefusalKind, code: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.code = code
        self.message = message


def invalid(code: str, message: str) -> AdminRefused:
    return AdminRefused("invalid", code, message)


def not_found(code: str, message: str) -> AdminRefused:
    return AdminRefused("not_found", code, message)


def conflict(code: str, message: str) -> AdminRefused:
    return AdminRefused("conflict", code, message)
