"""Department evaluation (考评): scoring rules for the response, handling and feedback stages.

A rule awards ``points × rate`` for a rate indicator (jiesu/stats/indicators.py); a rule with
negative points is a deduction (扣分) of ``|points| × rate``. A rate with nothing to judge
(denominator 0) gives an award rule its full points and a deduction rule nothing. A department's
score is the sum over the rules. Departments that received fewer than ``min_cases`` cases in the
period are listed but not ranked (最低件数), so that a department with three cases cannot top the
table.

Accountability (问责): every accountability record of the department dated in the period (the
supervision ladder's last step, or a supervisor's 问责 order) deducts ``accountability_points``
in the handling stage, as the rule ``accountability_records``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from jiesu.stats.indicators import RATE_NAMES


class Stage(StrEnum):
    RESPONSE = "response"  # 响应环节
    HANDLING = "handling"  # 办理环节
    FEEDBACK = "feedback"  # 反馈环节


class ScoringRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: Stage
    indicator: str = Field(description="A rate indicator, e.g. response_rate")
    points: float = Field(
        ge=-100, le=100, description="Award points × rate; negative: deduct |points| × rate"
    )

    @field_validator("indicator")
    @classmethod
    def _known_rate(cls, name: str) -> str:
        if name not in RATE_NAMES:
            raise ValueError(f"not a rate indicator: {name!r}; one of {', '.join(RATE_NAMES)}")
        return name


class ScoringRules(BaseModel):
    """考评规则."""

    model_config = ConfigDict(extra="forbid")

    rules: list[ScoringRule] = Field(min_length=1, max_length=50)
    min_cases: int = Field(
        default=30, ge=0, description="最低件数: fewer received cases → listed, not ranked"
    )
    accountability_points: float = Field(
        default=-5, ge=-100, le=0,
        description="问责: points per accountability record of the department in the period",
    )


DEFAULT_RULES = ScoringRules(
    rules=[
        ScoringRule(stage=Stage.RESPONSE, indicator="response_rate", points=20),
        ScoringRule(stage=Stage.HANDLING, indicator="on_time_completion_rate", points=20),
        ScoringRule(stage=Stage.HANDLING, indicator="resolution_rate", points=20),
        ScoringRule(stage=Stage.HANDLING, indicator="return_rate", points=-10),
        ScoringRule(stage=Stage.HANDLING, indicator="rejected_return_rate", points=-10),
        ScoringRule(stage=Stage.HANDLING, indicator="extension_rate", points=-5),
        ScoringRule(stage=Stage.FEEDBACK, indicator="satisfaction_rate", points=40),
        ScoringRule(stage=Stage.FEEDBACK, indicator="repeat_report_rate", points=-10),
    ]
)
"""Full marks 100: response 20, handling 40, feedback 40, minus deductions."""


def rule_points(rule: ScoringRule, value: float | None) -> float:
    if value is None:
        return max(rule.points, 0.0)
    return rule.points * value


def _round(points: float) -> float:
    return round(points, 2) + 0.0  # + 0.0: no "-0.0"


def score(rules: ScoringRules, values: dict[str, Any], accountability: int = 0) -> dict[str, Any]:
    """The score of one department and the breakdown behind it, from its indicator values
    (jiesu.stats.indicators.evaluate) and its number of accountability records (问责)."""
    stages: dict[Stage, dict[str, Any]] = {s: {"stage": s.value, "points": 0.0, "rules": []}
                                           for s in Stage}
    for rule in rules.rules:
        rate = values[rule.indicator]
        points = rule_points(rule, rate["value"])
        stage = stages[rule.stage]
        stage["points"] += points
        stage["rules"].append({
            "indicator": rule.indicator,
            "numerator": rate["numerator"],
            "denominator": rate["denominator"],
            "value": rate["value"],
            "rule_points": rule.points,
            "points": _round(points),
        })  # fmt: skip
    # always listed (also at 0), so that every department's breakdown has the same rules
    points = rules.accountability_points * accountability
    stages[Stage.HANDLING]["points"] += points
    stages[Stage.HANDLING]["rules"].append({
        "indicator": "accountability_records",
        "numerator": accountability,
        "denominator": None,
        "value": accountability,
        "rule_points": rules.accountability_points,
        "points": _round(points),
    })  # fmt: skip
    for stage in stages.values():
        stage["points"] = _round(stage["points"])
    total = _round(sum(s["points"] for s in stages.values()))
    return {"score": total, "stages": [s for s in stages.values() if s["rules"]]}


def rank(entries: list[dict[str, Any]], min_cases: int) -> list[dict[str, Any]]:
    """Order by score (ties: more cases first, then id); competition ranks (1, 2, 2, 4).
    Entries below ``min_cases`` follow, unranked, with the reason."""
    ranked = sorted(
        (e for e in entries if e["received"] >= min_cases),
        key=lambda e: (-e["score"], -e["received"], e["department_id"]),
    )
    previous: float | None = None
    position = 0
    for n, entry in enumerate(ranked, start=1):
        if entry["score"] != previous:
            position, previous = n, entry["score"]
        entry["rank"], entry["unranked_reason"] = position, None
    below = sorted(
        (e for e in entries if e["received"] < min_cases),
        key=lambda e: (-e["received"], e["department_id"]),
    )
    for entry in below:
        entry["rank"] = None
        entry["unranked_reason"] = f"fewer than {min_cases} cases received (最低件数)"
    return ranked + below


def render_markdown() -> str:
    """The evaluation section of docs/indicators.md."""
    lines = ["## Department evaluation (考评)", ""]
    lines += [p.replace("\n", " ") + "\n" for p in (__doc__ or "").strip().split("\n\n")[1:]]
    lines += [
        f"Default rules (full marks 100, minimum volume {DEFAULT_RULES.min_cases} cases; "
        "admins replace them with `PUT /api/v1/stats/scoring-rules`):",
        "",
        "| stage | indicator | points |",
        "|---|---|---|",
    ]
    lines += [f"| {r.stage.value} | `{r.indicator}` | {r.points:g} |" for r in DEFAULT_RULES.rules]
    lines.append(
        f"| handling | `accountability_records` (per record) | "
        f"{DEFAULT_RULES.accountability_points:g} |"
    )
    return "\n".join([*lines, ""])
