"""The case (工单) vocabulary: statuses, roles, actions, events and the case state.

Everything here is pure data shared by the workflow, the activities and the API. It is the
one place where status names, roles, channels and event kinds are defined.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

CENTRE_ID = "centre"
"""The hotline centre (12345热线中心): owner of the dispatch queue for unrouted cases."""


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
    GRID_WORKER = "grid_worker"
    GRID_MAILBOX = "grid_mailbox"
    SERVICE_HALL = "service_hall"
    ENTERPRISE_PORT = "enterprise_port"


class Status(StrEnum):
    """工单状态. The lifecycle order is registered → (dispatching →) assigned → handling →
    replied → closed."""

    REGISTERED = "registered"  # 已受理: being routed
    DISPATCHING = "dispatching"  # 待派单: in the hotline centre's queue, no rule matched
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
    CITIZEN = "citizen"  # 诉求人, acting with the per-case token
    SYSTEM = "system"  # the workflow itself (timers)


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


class Actor(BaseModel):
    """Who did something. Every signal carries one."""

    model_config = ConfigDict(frozen=True)

    role: Role
    name: str = Field(min_length=1, max_length=200)
    department_id: str | None = None


SYSTEM_ACTOR = Actor(role=Role.SYSTEM, name="jiesu")


# --- intake ---------------------------------------------------------------------------


class Citizen(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    phone: str = Field(pattern=r"^\+?[0-9][0-9\- ]{4,19}$")


class ComplaintIntake(BaseModel):
    """What the operator (or a channel) registers. The API's request body and the
    workflow's input share these fields."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=2, max_length=200, examples=["Shop loudspeaker at night"])
    description: str = Field(min_length=2, max_length=5000)
    category_id: str = Field(min_length=1, max_length=64, examples=["noise_commercial"])
    grid_id: str = Field(min_length=1, max_length=64, examples=["G-QH-01-01-1"])
    address: str = Field(default="", max_length=300)
    channel: Channel = Channel.HOTLINE
    urgency: Urgency | None = Field(
        default=None, description="Omit to use the category's default urgency."
    )
    citizen: Citizen
    received_at: datetime | None = Field(
        default=None,
        description="When the report came in (timezone-aware). Defaults to now; may be up "
        "to 24 hours in the past for reports registered late, never in the future.",
    )


class CaseStart(BaseModel):
    """The workflow's input: the intake, completed and stamped by the API."""

    case_id: str
    intake: ComplaintIntake
    urgency: Urgency
    received_at: datetime
    registered_by: Actor


# --- actions (signals) ------------------------------------------------------------------
# Each action has an *input* (what a person sends to the API) and an *action* (the input plus
# the actor, as the workflow receives it in a signal).


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AcceptAction(_Input):
    actor: Actor


class ContactInput(_Input):
    note: str = Field(default="", max_length=2000)


class ContactAction(ContactInput):
    actor: Actor


class ReplyInput(_Input):
    outcome: ReplyOutcome
    text: str = Field(min_length=2, max_length=5000)
    evidence: list[AnyHttpUrl] = Field(default_factory=list, max_length=20)


class ReplyAction(ReplyInput):
    actor: Actor


class DispatchInput(_Input):
    department_id: str = Field(min_length=1, max_length=64)
    note: str = Field(default="", max_length=2000)


class DispatchAction(DispatchInput):
    actor: Actor
    department_name: str = Field(
        default="", max_length=200, description="Filled in by the API from reference data."
    )


class RatingInput(_Input):
    rating: Rating
    comment: str = Field(default="", max_length=2000)


class RatingAction(RatingInput):
    actor: Actor


# --- state --------------------------------------------------------------------------------


class Deadlines(BaseModel):
    accept: datetime
    contact: datetime | None = None  # urgent cases only
    finish: datetime
    rating_window_hours: float


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
    events: list[CaseEvent] = Field(default_factory=list)

    @property
    def department_id(self) -> str | None:
        return self.assignment.department_id if self.assignment else None


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


class DeadlineRequest(BaseModel):
    received_at: datetime
    urgency: Urgency
