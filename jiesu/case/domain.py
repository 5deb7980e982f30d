"""The case (工单) vocabulary: statuses, roles, actions, events and the case state.

Everything here is pure data shared by the workflow, the activities and the API. It is the
one place where status names, roles, channels and event kinds are defined.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from datetime import date, datetime
from enum import IntEnum, StrEnum
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)

CENTRE_ID = "centre"
"""The hotline centre (12345热线中心): owner of the dispatch queue for unrouted cases."""
CENTRE_NAME = "12345热线中心"
# The name the workflows recorded for the centre (a case's assignment, the department_name of a
# reassignment that ended in the queue) in cases started before the epoch lean-case-v9: such a
# case keeps recording it, so that a replay recomputes the events its history holds
# (jiesu/audit/witness.py). workflows/case_record.py ``CaseRecord.centre_name`` chooses.
CENTRE_NAME_BEFORE_V9 = "12345热线中心 (Hotline Centre)"


# --- validated values ---------------------------------------------------------------------
# Validated once, here, in the models the API, the workflow and the activities share: a value
# that passes can be stored by PostgreSQL (no NUL, no lone surrogate) and computed with (a
# timezone, a year that date arithmetic and PostgreSQL both handle). They raise pydantic's
# ValidationError, so the API answers 422 and the workflow records ``invalid_payload``.

MIN_YEAR = 2000
"""The supported range of every date and datetime a case, a statistic or a report carries."""
MAX_YEAR = 2100

_TEXT_CONTROLS = frozenset("\n\r\t")  # line breaks (CRLF from web forms) and tabs
_LINE_CONTROLS = frozenset("\t")


def _refuse_controls(value: str, allowed: frozenset[str]) -> str:
    for char in value:
        # Cc: control characters (NUL among them); Cs: lone surrogates, which no UTF-8 store
        # (PostgreSQL) can keep.
        if unicodedata.category(char) in ("Cc", "Cs") and char not in allowed:
            raise ValueError(f"control character U+{ord(char):04X} is not allowed")
    return value


def _text(value: str) -> str:
    return _refuse_controls(value, _TEXT_CONTROLS)


def _line(value: str) -> str:
    return _refuse_controls(value, _LINE_CONTROLS)


def _year_in_range(year: int) -> None:
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise ValueError(f"year {year} is outside the supported range {MIN_YEAR}..{MAX_YEAR}")


# What pydantic would read as a number (a Unix timestamp). Every repeat is possessive: the
# former ``\d+\.?\d*`` could split a run of digits two ways, so a string of n digits and
# one other character (refused anyway) took n² steps to refuse — 16,000 characters in a
# timestamp query parameter or body field cost 6.8 s of CPU on the event loop, a 2 MiB body
# hours. The language is the same: each possessive part stops where its successor must begin.
_NUMBER = re.compile(r"\s*+[-+]?+(?:\d++(?:\.\d*+)?+|\.\d++)(?:[eE][-+]?+\d++)?+\s*+")


def _not_a_number(value: Any) -> Any:
    # pydantic reads a number, or a string of digits, as a Unix timestamp: "0" would be
    # 1970-01-01T00:00Z and "946684800" 2000-01-01, which no client sending a moment means.
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if is_number or (isinstance(value, str) and _NUMBER.fullmatch(value)):
        raise ValueError("expected an ISO 8601 date or datetime, not a number")
    return value


def _instant_in_range(value: datetime) -> datetime:
    _year_in_range(value.year)
    return value


_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _written_as_a_day(value: Any) -> Any:
    """YYYY-MM-DD, not a number (which pydantic would read as a Unix timestamp)."""
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _ISO_DAY.fullmatch(value):
        raise ValueError("a day is written YYYY-MM-DD")
    return value


def _day_in_range(value: date) -> date:
    _year_in_range(value.year)
    return value


def visible_length(value: str) -> int:
    """The characters a reader sees: not spaces (U+3000 among them) nor invisible formatting
    (zero-width spaces, joiners, direction marks). A title of them is no title."""
    return sum(
        1 for char in value if not char.isspace() and unicodedata.category(char) != "Cf"
    )


Text = Annotated[str, AfterValidator(_text)]
"""Free text (descriptions, notes, reasons): no control characters but newline and tab."""
Line = Annotated[str, AfterValidator(_line)]
"""One line (titles, names, identifiers): no control characters but tab."""
Instant = Annotated[
    AwareDatetime, BeforeValidator(_not_a_number), AfterValidator(_instant_in_range)
]
"""A moment: ISO 8601, timezone-aware, in the years MIN_YEAR..MAX_YEAR."""
Day = Annotated[date, BeforeValidator(_written_as_a_day), AfterValidator(_day_in_range)]
"""A calendar day (statistics and report periods): YYYY-MM-DD, in the years MIN_YEAR..MAX_YEAR."""


class Urgency(StrEnum):
    """紧急程度: urgent cases get the 1-hour contact / 24-hour finish limits."""

    URGENT = "urgent"
    GENERAL = "general"


class Channel(StrEnum):
    """受理渠道: where the report came in."""

    HOTLINE = "hotline"
    APP = "app"
    WECHAT = "wechat"
    SMS = "sms"
    EMAIL = "email"
    WEB = "web"
    GRID_WORKER = "grid_worker"  # reported to a grid worker by a citizen
    GRID = "grid"  # 主动发现: found by a grid worker on patrol
    GRID_MAILBOX = "grid_mailbox"
    SERVICE_HALL = "service_hall"
    ENTERPRISE_PORT = "enterprise_port"


class Status(StrEnum):
    """工单状态. The lifecycle order is registered → (dispatching →) assigned → handling →
    replied → closed."""

    REGISTERED = "registered"  # 已受理: being routed
    DISPATCHING = "dispatching"  # 待派单: in the hotline centre's queue, no rule matched
    REASSIGNING = "reassigning"  # 改派中: the reassignment child is choosing a department
    ASSIGNED = "assigned"  # 已派单: waiting for the department to accept (签收)
    HANDLING = "handling"  # 办理中: accepted by the department
    REPLIED = "replied"  # 已答复: waiting for the citizen's rating (评价)
    CLOSED = "closed"  # 已办结


OPEN_STATUSES = frozenset(s for s in Status if s is not Status.CLOSED)


class Role(StrEnum):
    OPERATOR = "operator"  # 话务员: registers cases
    DEPARTMENT = "department"  # 承办单位: scoped to one department
    SUPERVISOR = "supervisor"  # 督办人员 / 派单员
    AUDITOR = "auditor"  # 审计
    ADMIN = "admin"
    GRID_WORKER = "grid_worker"  # 网格员: bound to grids; reports from patrol, solves on the spot
    CITIZEN = "citizen"  # 诉求人, acting with the per-case token
    SYSTEM = "system"  # the workflow itself (timers)


# Role groups: who may do what. The one definition the lifecycle checks and the API's
# dependencies (api/deps.py) are both built from. Admins are in every group.
ADMIN_ROLES = frozenset({Role.ADMIN})
OPERATOR_ROLES = frozenset({Role.OPERATOR, Role.ADMIN})  # 话务员: register cases
DEPARTMENT_ROLES = frozenset({Role.DEPARTMENT, Role.ADMIN})  # 承办: a department's screens
# 承办: who handles a case — a department's clerk, or a grid worker for the grid's own handling
# unit (a department row whose area is the grid: docs/grid.md) when a rule routes a case there.
HANDLER_ROLES = frozenset({Role.DEPARTMENT, Role.GRID_WORKER, Role.ADMIN})
DISPATCHER_ROLES = frozenset({Role.SUPERVISOR, Role.ADMIN})  # 派单 / 督办
CENTRE_ROLES = frozenset({Role.OPERATOR, Role.SUPERVISOR, Role.ADMIN})  # 回访 staff
AUDITOR_ROLES = frozenset({Role.AUDITOR, Role.ADMIN})
OVERSEER_ROLES = frozenset({Role.SUPERVISOR, Role.AUDITOR, Role.ADMIN})  # whole-county figures
STATS_VIEWER_ROLES = OVERSEER_ROLES | {Role.DEPARTMENT}  # figures (a department: its own)
GRID_ROLES = frozenset({Role.GRID_WORKER, Role.ADMIN})  # 网格: patrol reports
STAFF_ROLES = frozenset(
    {Role.OPERATOR, Role.DEPARTMENT, Role.SUPERVISOR, Role.AUDITOR, Role.ADMIN, Role.GRID_WORKER}
)  # every API-key holder
# Who sees every case; a department sees the cases it handles, a grid worker those of their
# grids, and no one else (a citizen, with their token, only their own: jiesu.access.citizen_view)
WHOLE_COUNTY_VIEWER_ROLES = frozenset({Role.OPERATOR, Role.SUPERVISOR, Role.AUDITOR, Role.ADMIN})


def sql_status(*statuses: Status) -> str:
    """Statuses as a SQL list of quoted literals (one, or several for an IN list), so SQL
    text is built from :class:`Status` and never spells a status by hand."""
    return ", ".join(f"'{s.value}'" for s in statuses)


class Rating(StrEnum):
    """评价."""

    SATISFIED = "satisfied"  # 满意
    BASICALLY_SATISFIED = "basically_satisfied"  # 基本满意
    UNSATISFIED = "unsatisfied"  # 不满意


SATISFIED_RATINGS = frozenset({Rating.SATISFIED, Rating.BASICALLY_SATISFIED})


class ReplyOutcome(StrEnum):
    """办结答复的结果."""

    RESOLVED = "resolved"  # 已解决
    EXPLAINED = "explained"  # 已解释: unreasonable claim, explanation plus evidence


class Resolution(StrEnum):
    """How a closed case ended."""

    RATED = "rated"
    NOT_RATED = "not_rated"  # the rating window passed without a verdict
    WITHDRAWN = "withdrawn"  # 撤诉: the citizen withdrew the complaint
    SOLVED_IN_GRID = "solved_in_grid"  # 就地解决: found and solved on patrol by a grid worker


class EscalationLevel(IntEnum):
    """The supervision ladder (督办阶梯), in order. 0 = not under supervision."""

    NONE = 0
    REMIND = 1  # 提醒
    URGE = 2  # 催办
    SUPERVISE = 3  # 督办
    JOINT_HANDLING = 4  # 会办
    ACCOUNTABILITY = 5  # 问责


class SupervisionForm(StrEnum):
    """督办形式: the ladder step a supervisor starts at (the names of :class:`EscalationLevel`)."""

    REMIND = "remind"  # 提醒
    URGE = "urge"  # 催办
    SUPERVISE = "supervise"  # 督办
    JOINT_HANDLING = "joint_handling"  # 会办: convene named co-handling departments
    ACCOUNTABILITY = "accountability"  # 问责: an accountability record for the unit

    @property
    def level(self) -> EscalationLevel:
        return EscalationLevel[self.name]


class EscalationTrigger(StrEnum):
    """Why a case went to supervision."""

    ACCEPT_BREACHED = "accept_breached"
    CONTACT_BREACHED = "contact_breached"
    FINISH_BREACHED = "finish_breached"
    REPEAT_REPORTS = "repeat_reports"  # the third report of the same open problem
    DISSATISFACTION = "dissatisfaction"  # too many unsatisfied rounds
    REASSIGNMENT_LIMIT = "reassignment_limit"  # returned too often
    REPEATED_ALTHOUGH_REPLIED = "repeated_although_replied"  # 不作为: reported again and again
    SUPERVISOR = "supervisor"  # a supervisor decided


class ReassignReason(StrEnum):
    RETURN = "return"  # 退单
    REHANDLE = "rehandle"  # 重办
    RAISE_LEVEL = "raise_level"  # 提级办
    SECOND_ASSIGNMENT = "second_assignment"  # 二次交办: a supervisor takes the case away
    HANDOVER = "handover"  # 移交: the unit holding it is out of service; its successor takes it


class DeadlineKind(StrEnum):
    ACCEPT = "accept"  # 签收时限
    CONTACT = "contact"  # 联系诉求人时限 (urgent cases)
    FINISH = "finish"  # 办结时限


class EventKind(StrEnum):
    """What can appear in a case's event list (the auditor's vocabulary)."""

    RECEIVED = "received"  # 受理
    ROUTED = "routed"  # 派单 (by rule)
    QUEUED = "queued"  # 进入派单队列 (no rule matched)
    DISPATCHED = "dispatched"  # 人工派单
    DEADLINES_SET = "deadlines_set"
    ACCEPTED = "accepted"  # 签收
    CONTACTED = "contacted"  # 联系诉求人
    REPLIED = "replied"  # 办结答复
    RATED = "rated"  # 评价
    DEADLINE_BREACHED = "deadline_breached"  # 超时
    REJECTED = "rejected"  # an action the case could not take, with the reason
    CLOSED = "closed"  # 办结归档
    RETURNED = "returned"  # 退单 (awaiting_approval: the centre decides, 派单异议审核)
    RETURN_UPHELD = "return_upheld"  # the centre upholds a return: reassignment follows
    RETURN_REJECTED = "return_rejected"  # the centre rejects a return: counts against the unit
    SECOND_ASSIGNMENT_ORDERED = "second_assignment_ordered"  # 二次交办 by a supervisor
    LEVEL_RAISE_REQUESTED = "level_raise_requested"  # 提级办 requested by the department
    HANDED_OVER = "handed_over"  # 移交: a retired unit's case to its successor (the centre's)
    REASSIGNMENT_STARTED = "reassignment_started"  # the reassignment child started
    REASSIGNED = "reassigned"  # 改派 / 二次交办: new department, fresh deadlines
    # the reassignment child ended without a choice (terminated, failed): the centre dispatches
    REASSIGNMENT_FAILED = "reassignment_failed"
    REHANDLE_STARTED = "rehandle_started"  # 重办 after an unsatisfied rating
    ESCALATION_STARTED = "escalation_started"  # the supervision ladder started
    ESCALATED = "escalated"  # a ladder step: remind / urge / supervise / joint / accountability
    ESCALATION_STOPPED = "escalation_stopped"
    ACCOUNTABILITY_RECORDED = "accountability_recorded"  # 问责: unit, persons, reason, decision
    CO_HANDLERS_ADDED = "co_handlers_added"  # 会办: 协办 departments added
    CONTRIBUTED = "contributed"  # a co-handler's contribution
    CONTRIBUTION_OVERDUE = "contribution_overdue"  # a co-handler missed its deadline (会办)
    CO_HANDLER_WAIVED = "co_handler_waived"
    EXTENSION_REQUESTED = "extension_requested"  # 延期申请
    EXTENSION_DECIDED = "extension_decided"  # approved (deadline moved) or rejected
    EXTENSION_DECISION_OVERDUE = "extension_decision_overdue"  # nobody decided in time
    RETURN_DECISION_OVERDUE = "return_decision_overdue"  # a return nobody decided in time
    REPEAT_REPORTED = "repeat_reported"  # 并单: a new report linked to this case
    REPEAT_REFILED = "repeat_refiled"  # 并单转立: a report that came after the close, filed again
    LINKED_TO_HISTORY = "linked_to_history"  # the same problem's earlier, replied cases
    ANSWERED_DIRECTLY = "answered_directly"  # 即时办结: answered on the call
    SOLVED_ON_THE_SPOT = "solved_on_the_spot"  # 就地解决: a grid worker solved it on patrol
    SUPPLEMENTED = "supplemented"  # 补充诉求
    WITHDRAWN = "withdrawn"  # 撤诉
    CALLBACK = "callback"  # 回访: the centre recorded the citizen's verdict by phone
    PROJECTION_FAILED = "projection_failed"  # the read model refused this case's data
    ROUTING_FAILED = "routing_failed"  # routing refused the case's data: the centre dispatches
    HISTORY_LARGE = "history_large"  # the case's Temporal history passed a warning mark


# Temporal's default limits of one workflow's history: past the warning (limit.historySize.warn,
# limit.historyCount.warn) the server logs; at the error limits it terminates the workflow.
HISTORY_WARN_BYTES = 10 * 1024 * 1024
HISTORY_WARN_EVENTS = 10_240
HISTORY_LIMIT_BYTES = 50 * 1024 * 1024
HISTORY_LIMIT_EVENTS = 51_200

CASE_WORKFLOW = "ComplaintWorkflow"
"""The Temporal workflow type of a case (one workflow per case, id = case number)."""
CASE_STATE_QUERY = "state"
"""The query that answers a case's current :class:`CaseState`."""
CASE_STATE_PAGE_QUERY = "state_page"
"""The same state in parts (argument: the last event number the caller has, 0 at first):
:class:`StatePage`. For a case too large for one answer, which ``state`` refuses
(``CaseTooLarge``): Temporal refuses a query's answer over 2 MB."""


class CaseSignal(StrEnum):
    """The names of the messages (Temporal signals) a case accepts. Every client — the API,
    the children, the CLI or any Temporal client — uses these; the workflow decodes each
    payload itself and records a rejection (``invalid_payload``) for one that does not fit."""

    ACCEPT = "accept"
    CONTACT = "contact"
    REPLY = "reply"
    DISPATCH = "dispatch"
    RATE = "rate"
    CALLBACK = "callback"
    RETURN = "return"
    DECIDE_RETURN = "decide_return"
    ORDER_SECOND_ASSIGNMENT = "order_second_assignment"
    HAND_OVER = "hand_over"  # 移交 (since lean-case-v32)
    RAISE_LEVEL = "raise_level"
    REQUEST_EXTENSION = "request_extension"
    DECIDE_EXTENSION = "decide_extension"
    ADD_CO_HANDLERS = "add_co_handlers"
    CONTRIBUTE = "contribute"
    WAIVE_CO_HANDLER = "waive_co_handler"
    SUPERVISE = "supervise"
    REPEAT_REPORT = "repeat_report"
    SUPPLEMENT = "supplement"
    WITHDRAW = "withdraw"
    ESCALATION_STEP = "escalation_step"  # from the escalation child


class Actor(BaseModel):
    """Who did something. Every signal carries one."""

    model_config = ConfigDict(frozen=True)

    role: Role
    name: Line = Field(min_length=1, max_length=200)
    department_id: Line | None = Field(default=None, max_length=64)
    request_id: Line | None = Field(
        default=None,
        max_length=200,
        description="The API request that carried the action: the case applies one request id "
        "once (a retry with the same Idempotency-Key is answered from the recorded event).",
    )
    person: Line | None = Field(
        default=None,
        max_length=64,
        description="The login of the staff person who acted in a session (their `name` is "
        "the same login); none for an API key, the citizen and the system.",
    )
    sent_at: Instant | None = Field(
        default=None,
        exclude_if=lambda at: at is None,  # absent, not null: no byte for the actors without it
        description="When the API sent the action: as it signals the case, milliseconds "
        "after the request came in and was checked (the API's clock). "
        "A case since lean-case-v12 records the action at this time, bounded by its last "
        "recorded event and its own clock, and judges it by it (a deadline met in time while "
        "the worker was down is met); the case's events do not keep it.",
    )


SYSTEM_ACTOR = Actor(role=Role.SYSTEM, name="jiesu")
CASE_CITIZEN_NAME = "citizen"
"""The name the case's own citizen's actions are recorded with (the token of its intake)."""


def repeat_reporter_name(report_id: int | str) -> str:
    """The name the actions of repeat report ``report_id``'s citizen (并单) are recorded with."""
    return f"citizen of repeat report {report_id}"


UNKNOWN_SENDER = Actor(role=Role.SYSTEM, name="unknown sender")
"""Who a message that could not be decoded is recorded as coming from."""


# --- intake ---------------------------------------------------------------------------


Phone = Annotated[str, Field(pattern=r"^\+?[0-9][0-9\- ]{4,19}$")]

INPUT: Mapping[str, bool] = MappingProxyType({"input": True})
"""The validation context of a report as it comes in — ``model_validate(data, context=INPUT)``
at each intake path (the API's and the grid's bodies, the console's form, Open311, the mail
listener): the rules that hold for new input only. What was stored before such a rule (an
``intakes.payload``, a repeat report's, a workflow history's input) is decoded without it and
still loads."""

# One mailbox, as a To header takes it without splitting it: no header specials, no blanks
# (the outbox's mail sender, jiesu/notify/outbox.py, refuses anything else).
MAILBOX_CHARS = r"[^\s@,;:\"()<>\[\]\\]"
"""A character of either side of one mailbox's address (jiesu.notify.outbox checks the same)."""
ONE_MAILBOX = re.compile(f"{MAILBOX_CHARS}+@{MAILBOX_CHARS}+\\.{MAILBOX_CHARS}+")
NOT_ONE_MAILBOX = (
    "one e-mail address only: no comma, semicolon, colon, quote, bracket or backslash"
)


def _one_mailbox_on_input(address: str, info: ValidationInfo) -> str:
    """"wang,li@163.com" (a comma typed for a full stop), "a@b.cn;c@d.cn": the pattern below
    lets them through, and the outbox refuses to send to them — the citizen would never be
    told by e-mail. Refused as input (INPUT); an address stored before loads as it was."""
    if info.context and info.context.get("input") and not ONE_MAILBOX.fullmatch(address):
        raise ValueError(NOT_ONE_MAILBOX)
    return address


Email = Annotated[
    Line,
    Field(max_length=254, pattern=r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$"),
    AfterValidator(_one_mailbox_on_input),
]


CONTACT_OPTIONAL: frozenset[Channel] = frozenset({Channel.APP})
"""The channels whose report may come without any contact (Open311: GeoReport v2 leaves it
optional); every other channel needs a phone or an e-mail (:class:`ComplaintIntake`). The
console's intake form says so from this (api/console/form_words.py ``contact_hint``)."""


class Citizen(BaseModel):
    """The reporter (诉求人): reached by phone, or by e-mail when the report came by e-mail
    without a phone number. At least one of the two, except for a report through an app
    (Open311: GeoReport v2 leaves contact optional) — checked by :class:`ComplaintIntake`."""

    name: Line = Field(min_length=1, max_length=100)
    phone: Phone | None = None
    email: Email | None = Field(
        default=None,
        description="One e-mail address. Several (a comma or a semicolon: \"wang,li@163.com\", "
        "\"a@b.cn;c@d.cn\"), a display name (\"Wang <w@x.cn>\"), blanks, quotes, brackets, a "
        "colon or a backslash are refused (422): the notices go to one mailbox.",
    )
    credit_code: str | None = Field(
        default=None,
        pattern=r"^[0-9A-Z]{18}$",
        description="企业专席: the unified social credit code (统一社会信用代码) of the enterprise "
        "the reporter speaks for; its checksum is checked at intake.",
        examples=["91110000600037341L"],
    )
    anonymous_to_department: bool = Field(
        default=False,
        description="The citizen asks to stay anonymous to the department (匿名): it sees "
        "their name and contact masked; the hotline centre still sees them in full.",
    )

    @property
    def reachable(self) -> bool:
        return self.phone is not None or self.email is not None


class DirectAnswerInput(BaseModel):
    """即时办结: the operator answers a consultation on the call from the knowledge base."""

    model_config = ConfigDict(extra="forbid")

    answer_id: int = Field(ge=1, lt=2**63, description="A knowledge-base answer valid today")
    rating: Rating | None = Field(
        default=None,
        description="The caller's verdict, asked on the call: the case closes at once. "
        "Without it the citizen rates with the token, as for any reply.",
    )


class DirectAnswer(BaseModel):
    """The answer a case was given at intake, as the knowledge base held it then."""

    answer_id: int
    version: int
    question: str
    text: str
    source: str
    valid_until: date | None = None
    rating: Rating | None = None


class SpotSolution(BaseModel):
    """就地解决: what a grid worker did on the spot, with evidence (photos before / after)."""

    model_config = ConfigDict(extra="forbid")

    text: Text = Field(min_length=2, max_length=5000)
    evidence: list[AnyHttpUrl] = Field(min_length=1, max_length=20)


class ComplaintIntake(BaseModel):
    """What the operator (or a channel) registers. The API's request body and the
    workflow's input share these fields."""

    model_config = ConfigDict(extra="forbid")

    title: Line = Field(min_length=2, max_length=200, examples=["Shop loudspeaker at night"])
    description: Text = Field(min_length=2, max_length=5000)
    category_id: Line = Field(min_length=1, max_length=64, examples=["noise_commercial"])
    grid_id: Line = Field(min_length=1, max_length=64, examples=["G-QH-01-01-1"])
    address: Line = Field(default="", max_length=300)
    channel: Channel = Channel.HOTLINE
    urgency: Urgency | None = Field(
        default=None, description="Omit to use the category's default urgency."
    )
    citizen: Citizen
    received_at: Instant | None = Field(
        default=None,
        description="When the report came in (timezone-aware). Defaults to now; may be up "
        "to 24 hours in the past for reports registered late, never in the future.",
    )
    direct_answer: DirectAnswerInput | None = Field(
        default=None,
        description="即时办结: answered on the call from the knowledge base (operators only); "
        "the case is registered and answered at once, never merged into another.",
    )
    solved_on_the_spot: SpotSolution | None = Field(
        default=None,
        description="就地解决: a grid worker's patrol report (channel grid) solved on the spot; "
        "the case is registered and closed at once. Use POST /api/v1/grid/reports.",
    )

    @model_validator(mode="after")
    def _reachable(self) -> ComplaintIntake:
        # An app's report may come without contact (Open311); the case is then followed by
        # its number only: no SMS, no callback.
        if not self.citizen.reachable and self.channel not in CONTACT_OPTIONAL:
            raise ValueError("a citizen needs a phone number or an e-mail address")
        return self


class RepeatHistory(BaseModel):
    """不作为信号: the earlier cases of the same problem (same citizen or same place, category
    and grid, a similar description: jiesu/intake/history.py) that were replied to and closed
    within the window. Found at intake; the policy numbers in force are recorded with them."""

    case_ids: list[Line] = Field(min_length=1, max_length=100)
    window_days: float
    reports_before_supervision: int = Field(
        description="This report and the earlier ones: from this many, supervision"
    )

    @property
    def reports(self) -> int:
        return len(self.case_ids) + 1

    @property
    def supervise(self) -> bool:
        return self.reports >= self.reports_before_supervision


class CaseFacts(BaseModel):
    """What the case's workflow needs of an intake: the problem, where, how it came in. Not
    the description nor the citizen: those stay in the ``intakes`` row (PostgreSQL, behind
    jiesu.access.content's masking and view log), out of Temporal's history, its Web UI and
    its exports — and out of every byte the history carries for every case."""

    title: Line
    category_id: Line
    grid_id: Line
    address: Line = ""
    channel: Channel = Channel.HOTLINE
    solved_on_the_spot: SpotSolution | None = None

    @classmethod
    def of(cls, intake: ComplaintIntake) -> CaseFacts:
        """The intake's fields of the same names (the facts are a subset of the intake)."""
        return cls(**{name: getattr(intake, name) for name in cls.model_fields})


class CaseStart(BaseModel):
    """The case as registered: the intake, completed and stamped by intake (受理).

    Stored whole in ``intakes.payload``. The workflow is started with :meth:`for_workflow`,
    which carries ``facts`` instead of the intake; cases started before that carry the whole
    ``intake`` in their history, and :attr:`case_facts` reads either."""

    case_id: Line
    intake: ComplaintIntake | None = None
    facts: CaseFacts | None = None
    urgency: Urgency
    received_at: Instant
    registered_by: Actor
    history: RepeatHistory | None = None  # added later: older cases have none
    direct_answer: DirectAnswer | None = None  # 即时办结, filled in by intake

    @model_validator(mode="after")
    def _has_facts(self) -> CaseStart:
        if self.intake is None and self.facts is None:
            raise ValueError("a case start needs its intake or its facts")
        return self

    @property
    def case_facts(self) -> CaseFacts:
        return self.facts if self.facts is not None else CaseFacts.of(self.registered_intake)

    @property
    def registered_intake(self) -> ComplaintIntake:
        """The whole intake (only the ``intakes`` row has it; a workflow's input has not)."""
        if self.intake is None:
            raise ValueError(f"case {self.case_id}: this start carries the facts only")
        return self.intake

    def for_workflow(self) -> CaseStart:
        """The workflow's input: the facts, without the description and the citizen."""
        return self.model_copy(update={"intake": None, "facts": self.case_facts})


# --- actions (signals) ------------------------------------------------------------------
# Each action has an *input* (what a person sends to the API) and an *action* (the input plus
# the actor, as the workflow receives it in a signal).


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AcceptAction(_Input):
    actor: Actor


class ContactInput(_Input):
    note: Text = Field(default="", max_length=2000)


class ContactAction(ContactInput):
    actor: Actor


class ReplyInput(_Input):
    outcome: ReplyOutcome
    text: Text = Field(min_length=2, max_length=5000)
    evidence: list[AnyHttpUrl] = Field(default_factory=list, max_length=20)


class ReplyAction(ReplyInput):
    actor: Actor


class DispatchInput(_Input):
    department_id: Line = Field(min_length=1, max_length=64)
    note: Text = Field(default="", max_length=2000)


class DispatchAction(DispatchInput):
    actor: Actor
    department_name: Line = Field(
        default="", max_length=200, description="Filled in by the API from reference data."
    )


class RatingInput(_Input):
    rating: Rating
    comment: Text = Field(default="", max_length=2000)


class RatingAction(RatingInput):
    actor: Actor


class ReturnInput(_Input):
    """退单: "not ours", with the reason."""

    reason: Text = Field(min_length=2, max_length=2000)


class ReturnAction(ReturnInput):
    actor: Actor


class ReturnDecisionInput(_Input):
    """派单异议审核: the centre upholds a return (the case is reassigned) or rejects it (the
    case stays with the department, and the return counts against it)."""

    upheld: bool
    note: Text = Field(default="", max_length=2000, description="The reason; required to reject")

    @model_validator(mode="after")
    def _rejection_has_reason(self) -> ReturnDecisionInput:
        if not self.upheld and len(self.note.strip()) < 2:
            raise ValueError("rejecting a return needs the reason (note)")
        return self


class ReturnDecisionAction(ReturnDecisionInput):
    actor: Actor


class SecondAssignmentInput(_Input):
    """二次交办 / 改派: a supervisor takes the case from a department sitting on it (overdue,
    or on review of a poor reply). With ``department_id`` the case goes there; without, the
    reassignment child lets the centre choose, then the routing rules, without the unit it
    was taken from."""

    reason: Text = Field(min_length=2, max_length=2000)
    department_id: Line | None = Field(default=None, min_length=1, max_length=64)


class SecondAssignmentAction(SecondAssignmentInput):
    actor: Actor
    department_name: Line = Field(default="", max_length=200)


class HandoverInput(_Input):
    """移交: the unit holding the case is out of service (停用, a reorganisation); the centre
    hands the case to the unit that takes over its work. Not a judgement of the unit (no
    breach, no 二次交办): the successor starts a round with fresh deadlines."""

    department_id: Line = Field(min_length=1, max_length=64, description="The successor: a "
                                "unit in service, not the centre")
    reason: Text = Field(min_length=2, max_length=2000)


class HandoverAction(HandoverInput):
    actor: Actor
    from_department_id: Line | None = Field(
        default=None, min_length=1, max_length=64,
        description="The retired unit the case is taken from (a unit's handover names it): "
        "the case refuses the handover once another unit holds it",
    )
    department_name: Line = Field(default="", max_length=200)


class RaiseLevelInput(_Input):
    """提级办: the problem is beyond this department's authority."""

    reason: Text = Field(min_length=2, max_length=2000)


class RaiseLevelAction(RaiseLevelInput):
    actor: Actor


class ReassignChoiceInput(_Input):
    """The centre's dispatcher picks the department in a pending reassignment."""

    department_id: Line = Field(min_length=1, max_length=64)
    note: Text = Field(default="", max_length=2000)


class ReassignChoice(ReassignChoiceInput):
    actor: Actor
    department_name: Line = Field(default="", max_length=200)


class ExtensionInput(_Input):
    """延期申请: reasons, measures taken and a promised date."""

    reasons: Text = Field(min_length=2, max_length=2000)
    measures: Text = Field(min_length=2, max_length=2000)
    promised_finish: Instant = Field(
        description="Timezone-aware; after the finish deadline and at most "
        "JIESU_MAX_EXTENSION_DAYS (default 90) days ahead."
    )


class ExtensionAction(ExtensionInput):
    actor: Actor


class ExtensionDecisionInput(_Input):
    approved: bool
    note: Text = Field(default="", max_length=2000)


class ExtensionDecisionAction(ExtensionDecisionInput):
    actor: Actor


class DepartmentRef(BaseModel):
    id: Line = Field(min_length=1, max_length=64)
    name: Line = Field(max_length=200)


class CoHandlersInput(_Input):
    """会办: add co-handling (协办) departments to the lead (主办) department."""

    department_ids: list[Annotated[Line, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=10
    )
    note: Text = Field(default="", max_length=2000)
    due: Instant | None = Field(default=None, description="The contribution deadline")


class CoHandlersAction(_Input):
    actor: Actor
    departments: list[DepartmentRef] = Field(min_length=1, max_length=10)
    note: Text = Field(default="", max_length=2000)
    due: Instant | None = None


class ContributionInput(_Input):
    text: Text = Field(min_length=2, max_length=5000)


class ContributionAction(ContributionInput):
    actor: Actor


class WaiveAction(_Input):
    actor: Actor
    department_id: Line = Field(min_length=1, max_length=64)


class SupervisionInput(_Input):
    """A supervisor puts the case on the supervision ladder (督办), at the step of the chosen
    form, with an opinion (``note``, 督办意见) and a deadline for the unit (``due``: the ladder
    climbs when it passes; without it, after the policy's step interval). 会办 names the
    co-handling departments and their contribution deadline; 问责 names the persons, the reason
    (``note``) and the decision, and creates an accountability record."""

    note: Text = Field(default="", max_length=2000, description="督办意见: the opinion")
    form: SupervisionForm = SupervisionForm.REMIND
    due: Instant | None = Field(default=None, description="The unit's deadline (timezone-aware)")
    department_ids: list[Annotated[Line, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=10, description="会办: the co-handling departments"
    )
    contribution_due: Instant | None = Field(
        default=None, description="会办: the co-handlers' contribution deadline"
    )
    persons: list[Annotated[Line, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=20, description="问责: the persons held accountable"
    )
    decision: Text = Field(default="", max_length=2000, description="问责: the decision")

    @model_validator(mode="after")
    def _form_has_its_fields(self) -> SupervisionInput:
        joint = self.form is SupervisionForm.JOINT_HANDLING
        if joint != bool(self.department_ids):
            raise ValueError("department_ids go with the joint_handling form (会办), and only")
        if self.contribution_due is not None and not joint:
            raise ValueError("contribution_due goes with the joint_handling form (会办)")
        if self.form is SupervisionForm.ACCOUNTABILITY:
            if not self.persons or len(self.decision.strip()) < 2 or len(self.note.strip()) < 2:
                raise ValueError("accountability (问责) needs persons, the reason (note) and "
                                 "the decision")
        elif self.persons or self.decision:
            raise ValueError("persons and decision go with the accountability form (问责)")
        return self


class SupervisionAction(SupervisionInput):
    actor: Actor
    departments: list[DepartmentRef] = Field(
        default_factory=list, max_length=10, description="会办: filled in by the API"
    )


class SupplementInput(_Input):
    """补充诉求: the citizen adds information."""

    text: Text = Field(min_length=2, max_length=5000)


class SupplementAction(SupplementInput):
    actor: Actor


class WithdrawInput(_Input):
    """撤诉."""

    reason: Text = Field(default="", max_length=2000)


class WithdrawAction(WithdrawInput):
    actor: Actor


class CallbackInput(_Input):
    """回访: the centre phoned the citizen and records the verdict."""

    rating: Rating
    note: Text = Field(default="", max_length=2000)


class CallbackAction(CallbackInput):
    actor: Actor


class RepeatReport(_Input):
    """并单: a new report of the same open problem, linked to this case."""

    report_id: Line = Field(min_length=1, max_length=100)
    actor: Actor
    channel: Channel
    description: Text = Field(max_length=5000)
    received_at: Instant


class EscalationStep(BaseModel):
    """Sent by the escalation child to its case at every ladder step."""

    n: int
    level: EscalationLevel
    # the case's word the ladder was started with (``EscalationRequest.token``), on the steps of
    # a ladder that signs them (lean-case-v31): the case takes no step without it
    token: str | None = None


# --- state --------------------------------------------------------------------------------


class Deadlines(BaseModel):
    """The deadlines of one assignment round, and the policy numbers in force when they were
    set (recorded in the history, so a replay never depends on today's configuration)."""

    accept: datetime
    contact: datetime | None = None  # urgent cases only
    finish: datetime
    rating_window_hours: float
    return_window_hours: float = 24.0
    dispatcher_window_minutes: float = 30.0
    max_reassignments: int = 3
    max_unsatisfied_rounds: int = 2
    escalation_step_hours: float = 2.0
    repeats_before_supervision: int = 2  # 并单: repeats of an open problem → supervision
    # Added later: histories recorded before it carry no value and get the default.
    max_extension_days: float = 90.0
    # Issue 14 (defaults = the behaviour of cases recorded before them):
    return_needs_approval: bool = False  # 退单 waits for the centre's decision
    max_extensions: int | None = None  # approved extensions per case (None: no cap)
    extension_decision_hours: float | None = None  # a request undecided this long is approved
    return_decision_hours: float | None = None  # a return undecided this long is upheld
    # The SLA limits in force (hours; working hours for working-time limits), e.g. {"accept":
    # 0.5, "contact": 1, "finish": 24}: run-time policy values (jiesu/admin/policy.py) may
    # differ from jiesu/case/sla.py. Empty in histories recorded before it.
    sla_hours: dict[str, float] = Field(default_factory=dict)


class Breach(BaseModel):
    kind: DeadlineKind
    deadline: datetime
    at: datetime


class CaseEvent(BaseModel):
    seq: int
    kind: EventKind
    at: datetime
    actor: Actor
    data: dict[str, Any] = Field(default_factory=dict)


class Assignment(BaseModel):
    department_id: str
    department_name: str
    assigned_at: datetime
    by_rule: bool


class Reply(BaseModel):
    outcome: ReplyOutcome
    text: str
    evidence: list[str]
    at: datetime
    by: Actor


class CoHandler(BaseModel):
    """A 协办 department in joint handling (会办)."""

    department_id: str
    department_name: str
    due: datetime | None = None  # the contribution deadline a supervisor set (会办 form)
    contributed_at: datetime | None = None
    contribution: str = ""
    waived: bool = False

    @property
    def done(self) -> bool:
        return self.waived or self.contributed_at is not None


class Extension(BaseModel):
    reasons: str
    measures: str
    promised_finish: datetime
    requested_at: datetime
    requested_by: Actor
    approved: bool | None = None  # None while pending
    decision_due: datetime | None = None  # the centre decides by then, or it is approved


class Escalation(BaseModel):
    n: int
    trigger: EscalationTrigger
    child_id: str
    started_at: datetime
    active: bool = True
    level: EscalationLevel = EscalationLevel.NONE  # the step this ladder has reached
    department_id: str | None = None  # the unit under supervision
    # a supervisor's order (督办单): the form, opinion and the unit's deadline; 问责's record
    form: SupervisionForm | None = None
    opinion: str = ""
    due: datetime | None = None
    persons: list[str] = Field(default_factory=list)
    decision: str = ""
    # the step the ladder starts at, recorded when it starts (lean-case-v31): it climbs one
    # step at a time from there (lifecycle.check_escalation_step)
    start_level: EscalationLevel | None = None


class PendingReturn(BaseModel):
    """退单 awaiting the centre's decision (派单异议审核)."""

    department_id: str | None
    reason: str
    requested_at: datetime
    requested_by: Actor
    decision_due: datetime | None = None  # None: no decision deadline (older cases, policy)


class PendingReassignment(BaseModel):
    n: int
    reason: ReassignReason
    child_id: str
    started_at: datetime


class CaseState(BaseModel):
    """The full current state of a case, returned by the workflow's query."""

    case_id: str
    status: Status
    title: str
    category_id: str
    grid_id: str
    address: str
    channel: Channel
    urgency: Urgency
    received_at: datetime
    assignment: Assignment | None = None
    deadlines: Deadlines | None = None
    accepted_at: datetime | None = None
    contacted_at: datetime | None = None
    reply: Reply | None = None
    rating: Rating | None = None
    rating_comment: str = ""
    resolution: Resolution | None = None
    closed_at: datetime | None = None
    breaches: list[Breach] = Field(default_factory=list)
    round: int = 1  # assignment round: a reassignment starts a new one
    reassignments: int = 0
    returned_by: list[str] = Field(default_factory=list)
    pending_return: PendingReturn | None = None
    rejected_returns: int = 0  # returns the centre rejected (they count against the unit)
    unsatisfied_rounds: int = 0
    repeat_count: int = 0
    earlier_cases: list[str] = Field(
        default_factory=list, description="不作为信号: the same problem's earlier replied cases"
    )
    extension_count: int = 0
    extension: Extension | None = None
    direct_answer: DirectAnswer | None = None  # 即时办结
    solved_on_the_spot: SpotSolution | None = None  # 就地解决
    co_handlers: list[CoHandler] = Field(default_factory=list)
    escalation_level: EscalationLevel = EscalationLevel.NONE
    escalation: Escalation | None = None
    reassignment: PendingReassignment | None = None
    # Whether 会办 may convene a co-handler released (免除协办, or by a new round) again
    # (lifecycle.RECONVENE_RELEASED, epoch lean-case-v8): the case's own rule, set by the
    # workflow from its epoch, so that the API and the console judge 会办 as the case will.
    # False for a case before, and on a read-model row projected before the field: the API
    # then judges by the old, stricter rule and, refused, asks the case itself (api.cases).
    reconvenes_released: bool = False
    events: list[CaseEvent] = Field(default_factory=list)

    @property
    def department_id(self) -> str | None:
        return self.assignment.department_id if self.assignment else None

    def involves(self, department_id: str | None) -> bool:
        """The lead department or one of its co-handlers."""
        return department_id == self.department_id or any(
            c.department_id == department_id for c in self.co_handlers
        )


class CaseOutcome(BaseModel):
    """The case workflow's result: how it ended. The whole state stays queryable (a closed
    workflow still answers ``case_state``) and its events are in the history already; a
    result carrying the state again would be the largest event of every case."""

    case_id: str
    status: Status
    resolution: Resolution | None = None
    closed_at: datetime | None = None


class StatePage(BaseModel):
    """A part of a case's state (``state_page`` query): the case with only the events after
    the number asked, as many as fit in one answer; ``complete`` when none is left after
    them. Events are only ever appended, so the parts asked one after the other, joined, are
    the case as the last part shows it (jiesu.health.checks.case_state)."""

    state: CaseState
    complete: bool


class CaseProjection(BaseModel):
    """What the workflow hands the read-model activity: the state (without its event list,
    which would make every projection grow with the case) and the events since the last one.
    ``version`` is the seq of the last event included."""

    state: CaseState
    new_events: list[CaseEvent]
    version: int


class RouteRequest(BaseModel):
    category_id: str
    grid_id: str
    exclude_department_ids: list[str] = Field(default_factory=list)


class RouteResult(BaseModel):
    """A routing decision. ``by_rule`` False means the hotline centre's dispatch queue."""

    department_id: str
    department_name: str
    by_rule: bool
    rule_id: int | None = None


class ReassignmentRequest(BaseModel):
    """Input of the reassignment child (改派): who hands the case over, and why."""

    case_id: str
    n: int
    reason: ReassignReason
    category_id: str
    grid_id: str
    from_department_id: str | None
    exclude_department_ids: list[str] = Field(default_factory=list)
    dispatcher_window_minutes: float
    # 二次交办 to a named department: the supervisor's choice, no window to wait
    chosen: ReassignmentResult | None = None
    # the name the case records for the centre when routing refuses the case (the default: a
    # child of a case from before lean-case-v9, whose recorded input has none)
    centre_name: str = CENTRE_NAME_BEFORE_V9


class ReassignmentResult(BaseModel):
    route: RouteResult
    chosen_by: Actor | None = None  # None: chosen automatically
    note: str = ""


class EscalationRequest(BaseModel):
    """Input of the escalation child (督办阶梯)."""

    case_id: str
    n: int
    trigger: EscalationTrigger
    department_id: str | None
    step_hours: float
    start_level: EscalationLevel = EscalationLevel.REMIND
    first_step_due: datetime | None = None  # the unit's deadline: the first step lasts until it
    # the case recorded the first step when it started the ladder (ladder-first-step-in-case-v1):
    # the child does not signal it back
    first_step_taken: bool = False
    # the highest step the ladder climbs to, then holds until stopped (None: 问责, the top).
    # A ladder of a case waiting in the centre's dispatch queue holds at 督办 (ladder.py,
    # PATCH_QUEUED_CEILING): the centre does not hold a 会办 or refer itself for 问责.
    ceiling: EscalationLevel | None = None
    # the case may tell this ladder to hold at 督办 while it waits in the centre's queue and to
    # climb again after (``hold``/``release``, queue-holds-ladder-v1, lean-case-v10). A child
    # started by an older case has no such field: it ignores ``hold`` as it always did, so a
    # running old ladder that a stray ``hold`` reaches replays as it ran
    obeys_hold: bool = False
    # the case's word for ``stop``/``hold``/``release`` (ladder-orders-signed-v1, lean-case-v30):
    # a child given one takes those only with it (:class:`LadderOrder`), not from any client
    # that names them. None: a ladder started before, which takes them bare, as it did
    token: str | None = None
    # the ladder signs its steps to the case with ``token`` (lean-case-v31); a ladder started
    # before does not, and replays as it ran
    signs_steps: bool = False


class LadderOrder(BaseModel):
    """``stop``, ``hold`` or ``release`` from the case to its ladder, with the case's word."""

    token: str


class EscalationOutcome(BaseModel):
    final_level: EscalationLevel
    stopped: bool


class DeadlineRequest(BaseModel):
    received_at: datetime
    urgency: Urgency


class PlanRequest(BaseModel):
    """Input of ``plan_case``: where the case goes and by when (one activity for both)."""

    route: RouteRequest
    deadlines: DeadlineRequest


class CasePlan(BaseModel):
    """A new case's plan: its department and its deadlines. ``routing_failure`` is set when
    routing refused the case's data and the plan sends it to the centre's queue instead."""

    route: RouteResult
    deadlines: Deadlines
    routing_failure: str | None = None


class ProjectionReceipt(BaseModel):
    """What the local projection activity returns, and so what the history keeps of it (a
    local activity's input is not recorded): the events it wrote, up to ``version``. The
    auditor's timeline and the consistency check read the case's own events from here."""

    version: int
    events: list[CaseEvent]


SIGNAL_PAYLOADS: dict[CaseSignal, type[BaseModel]] = {
    CaseSignal.ACCEPT: AcceptAction,
    CaseSignal.CONTACT: ContactAction,
    CaseSignal.REPLY: ReplyAction,
    CaseSignal.DISPATCH: DispatchAction,
    CaseSignal.RATE: RatingAction,
    CaseSignal.CALLBACK: CallbackAction,
    CaseSignal.RETURN: ReturnAction,
    CaseSignal.DECIDE_RETURN: ReturnDecisionAction,
    CaseSignal.ORDER_SECOND_ASSIGNMENT: SecondAssignmentAction,
    CaseSignal.HAND_OVER: HandoverAction,
    CaseSignal.RAISE_LEVEL: RaiseLevelAction,
    CaseSignal.REQUEST_EXTENSION: ExtensionAction,
    CaseSignal.DECIDE_EXTENSION: ExtensionDecisionAction,
    CaseSignal.ADD_CO_HANDLERS: CoHandlersAction,
    CaseSignal.CONTRIBUTE: ContributionAction,
    CaseSignal.WAIVE_CO_HANDLER: WaiveAction,
    CaseSignal.SUPERVISE: SupervisionAction,
    CaseSignal.REPEAT_REPORT: RepeatReport,
    CaseSignal.SUPPLEMENT: SupplementAction,
    CaseSignal.WITHDRAW: WithdrawAction,
    CaseSignal.ESCALATION_STEP: EscalationStep,
}
"""What each message a case accepts must decode to (the workflow decodes them itself)."""
