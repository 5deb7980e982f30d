"""Indicators (统计指标): the one place where every figure is defined.

A *measure* (计数口径) is a condition on one case row of the read model (``cases``); summed over
cases it gives a count. An *indicator* is either a count (one measure) or a rate (a numerator
measure over a denominator measure). The rollup refresh and the baseline queries
(jiesu/stats/rollup.py, queries.py) build their SQL from ``MEASURES``, the API computes rates with
:func:`ratio`, and docs/indicators.md is rendered from this module
(``python -m jiesu.stats.catalogue > docs/indicators.md``; a test keeps them equal).

Population: every figure is about the cases **received** (受理) in the chosen period (local
days in the configured time zone), in their state *now*: "closed" means received in the period
and closed by now. This is how the hotlines report ("14,055 accepted, 13,569 done, 486 in
progress"), and it makes ``received = closed + in_progress`` always hold.

Fair attribution (按轮次归责): figures of a department (a `department_id` or `level` filter, the
ranking) count *handlings*, the case as each department that held it saw it
(jiesu/stats/attribution.py): a case routed to A, breached by A and returned to B counts for A
with A's deadlines, breach and return, and for B with B's fresh deadlines, B's reply and the
verdict on it. Both received it; the breach and the return count against A only. A handling
has the columns of a case row, so every measure below applies to it unchanged; status, place,
channel and urgency are the case's. Figures without a department filter count each case once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from jiesu.case.domain import SATISFIED_RATINGS, Rating, ReplyOutcome, Status

GRASSROOTS_LEVELS = ("township", "village")
"""基层: township/street and village/community levels."""


class GroupBy(StrEnum):
    """统计周期."""

    DAY = "day"
    WEEK = "week"  # ISO weeks, Monday first
    MONTH = "month"


class Filter(StrEnum):
    """Dimensions a statistics query can be restricted to (each an equality)."""

    DEPARTMENT = "department_id"  # a department that held the case 承办单位 (fair attribution)
    CATEGORY = "category_id"  # 诉求类别
    GRID = "grid_id"  # 网格
    CHANNEL = "channel"  # 受理渠道
    LEVEL = "level"  # level of that department: centre/county/township/village
    URGENCY = "urgency"  # 紧急程度


@dataclass(frozen=True)
class Measure:
    """计数口径: ``sql`` is a boolean expression over a ``cases`` row aliased ``c``."""

    name: str
    zh: str
    sql: str
    doc: str


@dataclass(frozen=True)
class Indicator:
    """A count (``denominator`` None) or a rate (numerator / denominator)."""

    name: str
    zh: str
    numerator: Measure
    denominator: Measure | None
    doc: str

    @property
    def is_rate(self) -> bool:
        return self.denominator is not None


def _quoted(values: Iterable[str]) -> str:
    return ", ".join(f"'{v}'" for v in sorted(values))


_CLOSED = f"c.status = '{Status.CLOSED.value}'"
_URGENT = "c.urgency = 'urgent'"

RECEIVED = Measure("received", "受理量", "TRUE", "Every case received in the period.")
CLOSED = Measure("closed", "办结量", _CLOSED, "Received cases whose status is closed (已办结).")
IN_PROGRESS = Measure(
    "in_progress", "在办量", f"NOT ({_CLOSED})", "Received cases not closed yet (在办)."
)
OVERDUE = Measure(
    "overdue",
    "超时量",
    "'finish' = ANY(c.breaches)",
    "Cases whose finish deadline (办结时限, moved by an approved extension) passed without a "
    "reply: the workflow recorded a 'finish' breach (超时). Closed since or not; a late "
    "签收 or 联系 is not counted (see 响应率). Not the supervisors' overdue board (超时工单, "
    "jiesu.case.sla.late_sql): that lists the cases open and late *now*, any step, whenever "
    "received, from the deadline on; the console's two pages say so.",
)
RESPONSE_DUE = Measure(
    "response_due",
    "应响应量",
    f"CASE WHEN {_URGENT} THEN c.contact_deadline IS NOT NULL AND (c.contacted_at IS NOT NULL"
    f" OR 'contact' = ANY(c.breaches))"
    f" ELSE c.accept_deadline IS NOT NULL AND (c.accepted_at IS NOT NULL"
    f" OR 'accept' = ANY(c.breaches)) END",
    "Cases whose response is decided. The response is contacting the citizen (联系诉求人) for "
    "an urgent case, against the 1-hour contact deadline, and accepting the case (签收) for a "
    "general case, against the accept deadline. Decided means: responded, or the deadline was "
    "breached. Cases still inside their window are left out, and so is a case closed inside "
    "it without a response (withdrawn, 撤诉): nothing was due of the department.",
)
RESPONDED_ON_TIME = Measure(
    "responded_on_time",
    "按时响应量",
    f"CASE WHEN {_URGENT} THEN c.contacted_at <= c.contact_deadline"
    " ELSE c.accepted_at <= c.accept_deadline END",
    "Urgent: contacted at or before the contact deadline. General: accepted at or before the "
    "accept deadline.",
)
FINISH_DUE = Measure(
    "finish_due",
    "应办结量",
    "c.finish_deadline IS NOT NULL AND (c.replied_at IS NOT NULL OR 'finish' = ANY(c.breaches))",
    "Cases replied to (办结答复) or past their finish deadline without a reply.",
)
FINISHED_ON_TIME = Measure(
    "finished_on_time",
    "按时办结量",
    "c.replied_at <= c.finish_deadline",
    "Replied at or before the finish deadline in force (an approved extension moves it).",
)
RATED = Measure("rated", "参评量", "c.rating IS NOT NULL", "Cases with the citizen's verdict.")
SATISFIED = Measure(
    "satisfied",
    "满意量",
    f"c.rating IN ({_quoted(r.value for r in SATISFIED_RATINGS)})",
    "Rated satisfied (满意) or basically satisfied (基本满意); the latest verdict counts.",
)
RESOLUTION_JUDGED = Measure(
    "resolution_judged",
    "应解决量",
    "c.resolved IS NOT NULL",
    "Closed cases with a reply (``cases.resolved`` is set when a replied case closes, see "
    ":func:`case_resolved`); a case withdrawn (撤诉) before any reply is not judged.",
)
RESOLVED = Measure(
    "resolved",
    "解决量",
    "c.resolved",
    "Closed cases whose final reply says the problem was solved (已解决, not merely explained "
    "已解释) and whose final verdict, if any, is not unsatisfied.",
)
HANDLED = Measure(
    "handled",
    "办结量(有承办层级)",
    f"{_CLOSED} AND c.handled_level IS NOT NULL",
    "Closed cases with a known handling level (the level of the department that replied).",
)
GRASSROOTS = Measure(
    "grassroots",
    "基层办结量",
    f"{_CLOSED} AND c.handled_level IN ({_quoted(GRASSROOTS_LEVELS)})",
    "Closed cases replied by a township/street or village/community department (乡镇街道及以下).",
)
REPEATED = Measure(
    "repeated",
    "重复诉求量",
    "c.repeat_count > 0",
    "Cases reported again by citizens (at least one repeat report merged, 并单).",
)
EXTENDED = Measure(
    "extended", "延期量", "c.extension_count > 0", "Cases with at least one extension (延期)."
)
RETURNED = Measure(
    "returned",
    "退单量",
    "c.return_count > 0",
    "Cases returned (退单) by a department at least once.",
)

ANSWERED_DIRECTLY = Measure(
    "answered_directly",
    "即时办结量",
    "c.answered_directly",
    "Consultations an operator answered on the call from the knowledge base (即时办结): "
    "registered and answered at once, then rated like any reply.",
)

RETURN_REJECTED = Measure(
    "return_rejected",
    "退单驳回量",
    "c.rejected_return_count > 0",
    "Cases a department returned and the centre rejected the return (派单异议审核: not "
    "upheld), charged to the department that returned it.",
)

SOLVED_IN_GRID = Measure(
    "solved_in_grid",
    "网格就地解决量",
    "c.solved_in_grid",
    "Problems a grid worker found on patrol (channel grid, 主动发现) and solved on the spot "
    "with evidence (就地解决): registered and closed at once.",
)

MEASURES: tuple[Measure, ...] = (
    RECEIVED, CLOSED, IN_PROGRESS, OVERDUE, RESPONSE_DUE, RESPONDED_ON_TIME, FINISH_DUE,
    FINISHED_ON_TIME, RATED, SATISFIED, RESOLUTION_JUDGED, RESOLVED, HANDLED, GRASSROOTS,
    REPEATED, EXTENDED, RETURNED, SOLVED_IN_GRID, ANSWERED_DIRECTLY, RETURN_REJECTED,
)  # fmt: skip
"""The columns of ``case_daily_stats``, in order (those added later in the order their
migrations run: 0014_grid_work before 0014_knowledge_base)."""

INDICATORS: tuple[Indicator, ...] = (
    Indicator("received", "受理量", RECEIVED, None, RECEIVED.doc),
    Indicator("closed", "办结量", CLOSED, None, CLOSED.doc),
    Indicator("in_progress", "在办量", IN_PROGRESS, None, IN_PROGRESS.doc),
    Indicator("overdue", "超时量", OVERDUE, None, OVERDUE.doc),
    Indicator(
        "response_rate", "响应率", RESPONDED_ON_TIME, RESPONSE_DUE,
        "Share of decided responses made within the deadline: urgent cases contacted within "
        "the contact deadline (1 hour), general cases accepted within the accept deadline.",
    ),
    Indicator(
        "on_time_completion_rate", "按时办结率", FINISHED_ON_TIME, FINISH_DUE,
        "Share of due cases replied to within the finish deadline in force.",
    ),
    Indicator("completion_rate", "办结率", CLOSED, RECEIVED, "Closed / received."),
    Indicator(
        "satisfaction_rate", "满意率", SATISFIED, RATED,
        "(Satisfied + basically satisfied) / rated.",
    ),
    Indicator(
        "resolution_rate", "解决率", RESOLVED, RESOLUTION_JUDGED,
        "Closed cases actually solved / closed cases with a reply (see the measure 解决量).",
    ),
    Indicator(
        "grassroots_resolution_rate", "基层解决率", GRASSROOTS, HANDLED,
        "Closed at township level or below / closed (with a known handling level).",
    ),
    Indicator(
        "repeat_report_rate", "重复诉求率", REPEATED, RECEIVED,
        "Cases reported again / received.",
    ),
    Indicator("extension_rate", "延期率", EXTENDED, RECEIVED, "Cases extended / received."),
    Indicator("return_rate", "退单率", RETURNED, RECEIVED, "Cases returned / received."),
    Indicator(
        "rejected_return_rate", "退单驳回率", RETURN_REJECTED, RECEIVED,
        "Cases with a return the centre rejected / received.",
    ),
    Indicator(
        "direct_answer_rate", "即时办结率", ANSWERED_DIRECTLY, RECEIVED,
        "Cases answered directly on the call / received.",
    ),
    Indicator(
        "grid_solution_rate", "网格就地解决率", SOLVED_IN_GRID, RECEIVED,
        "Cases solved on the spot by grid workers / received.",
    ),
)  # fmt: skip

INDICATORS_BY_NAME: dict[str, Indicator] = {i.name: i for i in INDICATORS}
RATE_NAMES: tuple[str, ...] = tuple(i.name for i in INDICATORS if i.is_rate)


def ratio(numerator: int, denominator: int) -> float | None:
    """A rate as a fraction in [0, 1], rounded to 6 places; None when nothing to divide."""
    return round(numerator / denominator, 6) if denominator else None


def evaluate(sums: dict[str, int]) -> dict[str, int | dict[str, int | float | None]]:
    """Indicator values from measure sums: counts as ints, rates as
    ``{"numerator", "denominator", "value"}``."""
    values: dict[str, int | dict[str, int | float | None]] = {}
    for ind in INDICATORS:
        num = int(sums.get(ind.numerator.name, 0))
        if ind.denominator is None:
            values[ind.name] = num
        else:
            den = int(sums.get(ind.denominator.name, 0))
            values[ind.name] = {"numerator": num, "denominator": den, "value": ratio(num, den)}
    return values


def case_resolved(
    status: Status, outcome: ReplyOutcome | None, rating: Rating | None, *, replied: bool = True
) -> bool | None:
    """``cases.resolved`` (已解决): None while the case is open, and for a case closed without
    a reply (withdrawn, 撤诉: nothing to judge); for a replied, closed case True when the final
    reply's outcome is resolved and the final verdict is not unsatisfied."""
    if status is not Status.CLOSED or not replied:
        return None
    return outcome is ReplyOutcome.RESOLVED and rating is not Rating.UNSATISFIED


# --- documentation -----------------------------------------------------------------------------


def render_markdown() -> str:
    """docs/indicators.md, generated from the definitions above."""
    lines = [
        "# Indicators (统计指标)",
        "",
        "Generated from `jiesu/stats/indicators.py` by `python -m jiesu.stats.catalogue > "
        "docs/indicators.md`; a test fails when this file and the code disagree.",
        "",
        *_module_doc_paragraphs(),
        "## Indicators",
        "",
        "Every rate is returned with its numerator and denominator; the value is "
        "numerator / denominator (a fraction, `null` when the denominator is 0).",
        "",
        "| indicator | 中文 | numerator | denominator | definition |",
        "|---|---|---|---|---|",
    ]
    for ind in INDICATORS:
        den = f"`{ind.denominator.name}`" if ind.denominator else "—"
        lines.append(f"| `{ind.name}` | {ind.zh} | `{ind.numerator.name}` | {den} | {ind.doc} |")
    lines += [
        "",
        "## Measures (计数口径)",
        "",
        "Each measure counts the received cases for which the SQL condition holds (`c` is a "
        "row of the read model `cases`).",
        "",
        "| measure | 中文 | definition | SQL |",
        "|---|---|---|---|",
    ]
    for m in MEASURES:
        sql = m.sql.replace("|", "\\|")
        lines.append(f"| `{m.name}` | {m.zh} | {m.doc} | `{sql}` |")
    lines += ["", "## Filters and periods", ""]
    lines += [f"- `{f.value}`" for f in Filter]
    lines += [
        "",
        f"Periods: {', '.join(g.value for g in GroupBy)} (weeks start on Monday), by the "
        "local day a case was received.",
        "",
    ]
    return "\n".join(lines)


def _module_doc_paragraphs() -> list[str]:
    paragraphs = (__doc__ or "").strip().split("\n\n")[2:]
    return [p.replace("\n", " ") + "\n" for p in paragraphs]
