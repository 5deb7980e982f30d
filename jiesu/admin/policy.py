"""Run-time policy values (可调整的时限参数): which of the lifecycle's numbers an admin may
change while Jiesu runs, and the values in force.

Changeable: the SLA limits of jiesu/case/sla.py (hours; working hours where the rule counts
working time) and the lifecycle windows that each case records in its history when its
deadlines are set (jiesu.case.domain.Deadlines). A value set here overrides the environment's
default (jiesu/config.py) for every deadline computed from then on — new cases and new rounds
(reassignment, rehandling); a case's running round keeps what it recorded, so a replay never
sees a changed value. Deleting a value returns to the default.

Not changeable at run time (environment only): the time zone, the repeat window (read at
intake, not recorded by the case), the query timeout, the token secret and the
failed-authentication limits — they are how the installation runs, not policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
from pydantic import BaseModel

from jiesu.admin import changes
from jiesu.admin.errors import invalid, not_found
from jiesu.case.domain import Actor, Urgency
from jiesu.case.sla import SLA_POLICY, Limit, SlaRule
from jiesu.config import Settings

ENTITY = "policy"
_HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Spec:
    unit: str
    integer: bool = False
    minimum: float = 0.0  # exclusive for reals, inclusive for integers
    maximum: float = 24 * 365.0


# The lifecycle windows: names are Settings' fields and Deadlines' fields.
LIFECYCLE: dict[str, Spec] = {
    "rating_window_hours": Spec("hours"),
    "return_window_hours": Spec("hours"),
    "dispatcher_window_minutes": Spec("minutes", maximum=7 * 24 * 60),
    "max_reassignments": Spec("count", integer=True, maximum=100),
    "max_unsatisfied_rounds": Spec("count", integer=True, maximum=100),
    "escalation_step_hours": Spec("hours"),
    "repeats_before_supervision": Spec("count", integer=True, minimum=1, maximum=100),
    "max_extension_days": Spec("days", maximum=3660),
    "max_extensions": Spec("count", integer=True, maximum=100),
    "extension_decision_hours": Spec("hours"),
    "return_decision_hours": Spec("hours"),
}


def sla_name(urgency: Urgency, limit: str) -> str:
    return f"sla.{urgency.value}.{limit}_hours"


def _sla_limits(rule: SlaRule) -> dict[str, Limit]:
    limits = {"accept": rule.accept, "finish": rule.finish}
    if rule.contact is not None:
        limits["contact"] = rule.contact
    return limits


SLA: dict[str, tuple[Urgency, str, Limit]] = {
    sla_name(u, name): (u, name, limit)
    for u, rule in SLA_POLICY.items()
    for name, limit in _sla_limits(rule).items()
}
NAMES: tuple[str, ...] = (*SLA, *LIFECYCLE)


class PolicyValue(BaseModel):
    name: str
    value: float
    default: float
    unit: str
    overridden: bool


def defaults(settings: Settings) -> dict[str, float]:
    sla = {n: limit.duration / _HOUR for n, (_, _, limit) in SLA.items()}
    return sla | {n: float(getattr(settings, n)) for n in LIFECYCLE}


def _spec(name: str) -> Spec:
    if name in SLA:
        working = SLA[name][2].working_time
        return Spec("working hours" if working else "hours", maximum=24 * 365.0)
    return LIFECYCLE[name]


def validate(name: str, value: float) -> float:
    if name not in NAMES:
        raise not_found("unknown_policy", f"no policy value {name!r}; one of: {', '.join(NAMES)}")
    spec = _spec(name)
    if spec.integer and value != int(value):
        raise invalid("invalid_policy_value", f"{name} is a whole number")
    low_ok = value >= spec.minimum if spec.integer else value > spec.minimum
    if not low_ok or value > spec.maximum:
        raise invalid("invalid_policy_value", f"{name} must be in ({spec.minimum}, "
                      f"{spec.maximum}] {spec.unit}")
    return float(value)


@dataclass(frozen=True)
class Effective:
    """The values in force: SLA rules and the lifecycle windows (Deadlines' fields)."""

    values: dict[str, float]

    def rule(self, urgency: Urgency) -> SlaRule:
        base = SLA_POLICY[urgency]

        def limit(name: str, old: Limit | None) -> Limit | None:
            if old is None:
                return None
            return Limit(timedelta(hours=self.values[sla_name(urgency, name)]), old.working_time)

        return SlaRule(accept=limit("accept", base.accept) or base.accept,
                       finish=limit("finish", base.finish) or base.finish,
                       contact=limit("contact", base.contact))

    def sla_hours(self, urgency: Urgency) -> dict[str, float]:
        prefix = f"sla.{urgency.value}."
        return {n[len(prefix):-len("_hours")]: v for n, v in self.values.items()
                if n.startswith(prefix)}

    def lifecycle(self) -> dict[str, Any]:
        return {n: int(self.values[n]) if s.integer else self.values[n]
                for n, s in LIFECYCLE.items()}


async def _overrides(db: asyncpg.Pool | asyncpg.Connection) -> dict[str, float]:
    return {r["name"]: r["value"] for r in await db.fetch("SELECT name, value FROM policy_values")}


async def effective(db: asyncpg.Pool | asyncpg.Connection, settings: Settings) -> Effective:
    overrides = {n: v for n, v in (await _overrides(db)).items() if n in NAMES}
    return Effective(defaults(settings) | overrides)


async def list_values(db: asyncpg.Pool, settings: Settings) -> list[PolicyValue]:
    base, overrides = defaults(settings), await _overrides(db)
    return [
        PolicyValue(name=n, value=overrides.get(n, base[n]), default=base[n],
                    unit=_spec(n).unit, overridden=n in overrides)
        for n in NAMES
    ]  # fmt: skip


async def set_value(
    pool: asyncpg.Pool, actor: Actor, settings: Settings, name: str, value: float | None
) -> PolicyValue:
    """Set a value (``None``: back to the default); the same value again changes nothing."""
    new = None if value is None else validate(name, value)
    if name not in NAMES:
        validate(name, 0)  # raises unknown_policy
    async with pool.acquire() as conn, conn.transaction():
        old = await conn.fetchval(
            "SELECT value FROM policy_values WHERE name = $1 FOR UPDATE", name
        )
        if old != new:
            if new is None:
                await conn.execute("DELETE FROM policy_values WHERE name = $1", name)
            else:
                await conn.execute(
                    "INSERT INTO policy_values (name, value) VALUES ($1, $2) ON CONFLICT (name)"
                    " DO UPDATE SET value = EXCLUDED.value, updated_at = now()", name, new,
                )  # fmt: skip
            action = "create" if old is None else "delete" if new is None else "update"
            await changes.record(conn, actor, ENTITY, name, action,
                                 None if old is None else {"value": old},
                                 None if new is None else {"value": new})
    return next(v for v in await list_values(pool, settings) if v.name == name)
