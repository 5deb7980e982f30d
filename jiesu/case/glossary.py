"""The glossary's Chinese terms for the case's vocabulary (DESIGN.md glossary), one place for
every screen and message that shows them to people (the console first of all).

The enums of :mod:`jiesu.case.domain` are the names; these are how a clerk or a citizen reads
them. A test checks that every member of each enum has its term.
"""

from __future__ import annotations

from jiesu.case.domain import (
    CaseSignal,
    Channel,
    DeadlineKind,
    EscalationLevel,
    EscalationTrigger,
    EventKind,
    Rating,
    ReassignReason,
    ReplyOutcome,
    Resolution,
    Role,
    Status,
    SupervisionForm,
    Urgency,
)

STATUS: dict[Status, str] = {
    Status.REGISTERED: "已受理",
    Status.DISPATCHING: "待派单",
    Status.REASSIGNING: "改派中",
    Status.ASSIGNED: "待签收",
    Status.HANDLING: "办理中",
    Status.REPLIED: "已答复",
    Status.CLOSED: "已办结",
}

URGENCY: dict[Urgency, str] = {Urgency.URGENT: "紧急", Urgency.GENERAL: "一般"}

CHANNEL: dict[Channel, str] = {
    Channel.HOTLINE: "12345热线",
    Channel.APP: "APP",
    Channel.WECHAT: "微信",
    Channel.SMS: "短信",
    Channel.EMAIL: "电子邮件",
    Channel.WEB: "网站",
    Channel.GRID_WORKER: "网格员",
    Channel.GRID: "网格巡查（主动发现）",
    Channel.GRID_MAILBOX: "网格信箱",
    Channel.SERVICE_HALL: "政务服务大厅",
    Channel.ENTERPRISE_PORT: "企业服务端口",
}

ROLE: dict[Role, str] = {
    Role.OPERATOR: "话务员",
    Role.DEPARTMENT: "承办单位",
    Role.SUPERVISOR: "督办人员",
    Role.AUDITOR: "审计人员",
    Role.ADMIN: "管理员",
    Role.GRID_WORKER: "网格员",
    Role.CITIZEN: "诉求人",
    Role.SYSTEM: "系统",
}

RATING: dict[Rating, str] = {
    Rating.SATISFIED: "满意",
    Rating.BASICALLY_SATISFIED: "基本满意",
    Rating.UNSATISFIED: "不满意",
}

REPLY_OUTCOME: dict[ReplyOutcome, str] = {
    ReplyOutcome.RESOLVED: "已解决",
    ReplyOutcome.EXPLAINED: "已解释说明",
}

RESOLUTION: dict[Resolution, str] = {
    Resolution.RATED: "已评价",
    Resolution.NOT_RATED: "未评价",
    Resolution.WITHDRAWN: "已撤诉",
    Resolution.SOLVED_IN_GRID: "网格就地解决",
}

DEADLINE: dict[DeadlineKind, str] = {
    DeadlineKind.ACCEPT: "签收时限",
    DeadlineKind.CONTACT: "联系诉求人时限",
    DeadlineKind.FINISH: "办结时限",
}

LEVEL: dict[EscalationLevel, str] = {
    EscalationLevel.NONE: "未督办",
    EscalationLevel.REMIND: "提醒",
    EscalationLevel.URGE: "催办",
    EscalationLevel.SUPERVISE: "督办",
    EscalationLevel.JOINT_HANDLING: "会办",
    EscalationLevel.ACCOUNTABILITY: "问责",
}

FORM: dict[SupervisionForm, str] = {
    SupervisionForm.REMIND: "提醒",
    SupervisionForm.URGE: "催办",
    SupervisionForm.SUPERVISE: "督办",
    SupervisionForm.JOINT_HANDLING: "会办",
    SupervisionForm.ACCOUNTABILITY: "问责",
}

TRIGGER: dict[EscalationTrigger, str] = {
    EscalationTrigger.ACCEPT_BREACHED: "超时未签收",
    EscalationTrigger.CONTACT_BREACHED: "超时未联系诉求人",
    EscalationTrigger.FINISH_BREACHED: "超时未办结",
    EscalationTrigger.REPEAT_REPORTS: "群众重复反映",
    EscalationTrigger.DISSATISFACTION: "群众多次不满意",
    EscalationTrigger.REASSIGNMENT_LIMIT: "多次退单",
    EscalationTrigger.SUPERVISOR: "督办人员决定",
    EscalationTrigger.REPEATED_ALTHOUGH_REPLIED: "已答复仍被重复反映",
}

EVENT: dict[EventKind, str] = {
    EventKind.RECEIVED: "受理",
    EventKind.ROUTED: "派单",
    EventKind.QUEUED: "进入派单队列",
    EventKind.DISPATCHED: "人工派单",
    EventKind.DEADLINES_SET: "设定时限",
    EventKind.ACCEPTED: "签收",
    EventKind.CONTACTED: "联系诉求人",
    EventKind.REPLIED: "办结答复",
    EventKind.RATED: "评价",
    EventKind.DEADLINE_BREACHED: "超时",
    EventKind.REJECTED: "操作未执行",
    EventKind.CLOSED: "办结归档",
    EventKind.RETURNED: "退单",
    EventKind.RETURN_UPHELD: "退单审核：同意",
    EventKind.RETURN_REJECTED: "退单审核：驳回",
    EventKind.SECOND_ASSIGNMENT_ORDERED: "二次交办",
    EventKind.LEVEL_RAISE_REQUESTED: "申请提级办",
    EventKind.HANDED_OVER: "移交（原承办单位已停用）",
    EventKind.REASSIGNMENT_STARTED: "开始改派",
    EventKind.REASSIGNED: "改派",
    EventKind.REASSIGNMENT_FAILED: "改派未完成",
    EventKind.REHANDLE_STARTED: "重办",
    EventKind.ESCALATION_STARTED: "启动督办",
    EventKind.ESCALATED: "督办升级",
    EventKind.ESCALATION_STOPPED: "督办结束",
    EventKind.ACCOUNTABILITY_RECORDED: "问责记录",
    EventKind.CO_HANDLERS_ADDED: "会办：增加协办单位",
    EventKind.CONTRIBUTED: "协办意见",
    EventKind.CONTRIBUTION_OVERDUE: "协办超时",
    EventKind.CO_HANDLER_WAIVED: "免除协办",
    EventKind.EXTENSION_REQUESTED: "延期申请",
    EventKind.EXTENSION_DECIDED: "延期审批",
    EventKind.EXTENSION_DECISION_OVERDUE: "延期审批超时",
    EventKind.RETURN_DECISION_OVERDUE: "退单审核超时",
    EventKind.REPEAT_REPORTED: "并单（重复反映）",
    EventKind.REPEAT_REFILED: "并单转立（结案后到达的重复反映另行受理）",
    EventKind.SUPPLEMENTED: "补充诉求",
    EventKind.WITHDRAWN: "撤诉",
    EventKind.CALLBACK: "回访",
    EventKind.PROJECTION_FAILED: "读模型写入失败",
    EventKind.ROUTING_FAILED: "自动派单失败",
    EventKind.HISTORY_LARGE: "工单历史过大",
    EventKind.LINKED_TO_HISTORY: "关联历史诉求（已答复仍重复反映）",
    EventKind.ANSWERED_DIRECTLY: "即时办结（知识库答复）",
    EventKind.SOLVED_ON_THE_SPOT: "网格就地解决",
}

SIGNAL: dict[CaseSignal, str] = {
    CaseSignal.ACCEPT: "签收",
    CaseSignal.CONTACT: "联系诉求人",
    CaseSignal.REPLY: "办结答复",
    CaseSignal.DISPATCH: "人工派单",
    CaseSignal.RATE: "评价",
    CaseSignal.CALLBACK: "回访",
    CaseSignal.RETURN: "退单",
    CaseSignal.DECIDE_RETURN: "退单审核",
    CaseSignal.ORDER_SECOND_ASSIGNMENT: "二次交办",
    CaseSignal.HAND_OVER: "移交",
    CaseSignal.RAISE_LEVEL: "提级办",
    CaseSignal.REQUEST_EXTENSION: "延期申请",
    CaseSignal.DECIDE_EXTENSION: "延期审批",
    CaseSignal.ADD_CO_HANDLERS: "会办",
    CaseSignal.CONTRIBUTE: "协办意见",
    CaseSignal.WAIVE_CO_HANDLER: "免除协办",
    CaseSignal.SUPERVISE: "督办",
    CaseSignal.REPEAT_REPORT: "并单",
    CaseSignal.SUPPLEMENT: "补充诉求",
    CaseSignal.WITHDRAW: "撤诉",
    CaseSignal.ESCALATION_STEP: "督办升级",
}
"""The actions a case receives (its signals), as a refused one is named in 办理经过."""

REASSIGN_REASON: dict[ReassignReason, str] = {
    ReassignReason.RETURN: "退单",
    ReassignReason.REHANDLE: "重办",
    ReassignReason.RAISE_LEVEL: "提级办",
    ReassignReason.SECOND_ASSIGNMENT: "二次交办",
    ReassignReason.HANDOVER: "移交",
}

TERMS: dict[type, dict] = {
    Status: STATUS, Urgency: URGENCY, Channel: CHANNEL, Role: ROLE, Rating: RATING,
    ReplyOutcome: REPLY_OUTCOME, Resolution: RESOLUTION, DeadlineKind: DEADLINE,
    EscalationLevel: LEVEL, EscalationTrigger: TRIGGER, EventKind: EVENT, SupervisionForm: FORM,
    CaseSignal: SIGNAL, ReassignReason: REASSIGN_REASON,
}  # fmt: skip
"""Each enum and its terms (the test checks they are complete)."""


REFUSAL: dict[str, str] = {
    "wrong_status": "工单当前的状态不能办理此操作，请刷新页面查看最新状态",
    "forbidden": "您的岗位不能办理此操作",
    "already_done": "此操作已办理过，请刷新页面查看",
    "not_contacted": "请先联系诉求人，再办结答复",
    "co_handlers_pending": "尚有协办单位未提交协办意见，暂不能答复",
    "evidence_required": "办理结果为“已解释说明”时，须至少附一个证据链接",
    "already_rated": "本轮已评价过",
    "rating_window_passed": "评价期限已过，工单按未评价办结",
    "return_pending": "已有退单申请等待中心审核",
    "no_return_pending": "没有待审核的退单申请",
    "extension_pending": "已有延期申请等待审批",
    "extension_cap": "延期次数已达上限",
    "deadline_passed": "办结时限已过，不能再申请延期",
    "invalid_promised_date": "承诺办结时间须晚于现办结时限，且不超过延期上限天数",
    "no_extension_pending": "没有待审批的延期申请",
    "already_involved": "所选单位已在办理此工单",
    "centre_not_co_handler": "热线中心负责派单与督办，不作为协办单位",
    "centre_not_assignee": "热线中心负责派单，不能把工单派给热线中心本身，请选择承办单位",
    "invalid_due": "期限须晚于当前时间",
    "due_too_far": "督办期限不能超过延期上限天数（默认90天）",
    "no_pending_co_handler": "该单位没有待提交的协办意见",
    "co_handler_released": "该单位已被免除协办，无需提交协办意见",
    "not_co_handler": "只有协办单位可以提交协办意见",
    "already_supervised": "该工单已在督办中",
    "centre_not_supervised": (
        "工单尚无承办单位（在待派单队列中或尚未派出），只能督办派单，不能会办或问责"
    ),
    "not_assigned": "此工单不由您的单位承办",
    "not_overdue": "承办单位未超时，不能二次交办",
    "holder_changed": "工单已转至其他单位，无需移交",
    "holder_in_service": "承办单位仍在用，不能移交（超时可二次交办）",
    "same_department": "工单已在该单位，请选择承接其职能的单位",
    "department_in_service": "该单位仍在用：先停用，再移交其在办工单",
    "reassignment_pending": "此工单正在改派中",
    "repeated_department": "同一协办单位只能选择一次",
    "return_window_passed": "已超过可退单的时间",
    "stale_step": "此督办步骤已不适用，请刷新页面",
    "returned_by_this_unit": (
        "该单位刚退回此工单且退单已获同意，请改派或派单给其他单位（如认为应由其办理，应驳回退单）"
    ),
    "unsigned_step": "此督办步骤并非来自本工单的督办阶梯，未予记录",
    "supplement_limit": "补充诉求次数已达上限，如需补充请拨打12345热线",
    "supervision_limit": "此工单的督办次数已达上限",
    "extension_request_limit": "此工单的延期申请次数已达上限，请联系中心",
    "return_limit": "此工单的退单次数已达上限，请联系中心",
    "co_handler_limit": "此工单的协办单位数已达上限",
    "repeat_report_limit": "此工单并单的重复诉求已达上限",
    "case_not_found": "没有找到此工单（工单号有误，或不在您的办理范围内）",
    "case_not_ready": "工单刚刚登记，暂时还读取不到，请稍后刷新页面",
    "case_closed": "此工单已办结，不能再办理此操作，请刷新页面查看",
    "case_changed": "此工单刚刚有变动，请刷新页面查看最新状态后再办理",
    "case_moved_on": "此操作已办理成功；工单随后已转出，不在您的办理范围内",
    "no_reassignment": "此工单不在改派中，请刷新页面查看最新状态",
    "reassignment_not_chosen": "此次改派按提级办或指定单位进行，不能另选单位",
    "original_reporter_only": "重复反映的诉求人可以补充信息；评价和撤诉由原诉求人办理",
    "own_unit_rating": "这件诉求是网格员巡查上报、由其所在网格办理的，不能由上报的网格员评价",
    "unknown_department": "所选单位不存在（可能已撤销），请重新选择",
    "unknown_category": "所选诉求类别已不存在（可能已停用），请重新选择",
    "unknown_grid": "所选网格已不存在（可能已撤销），请重新选择",
    "blank_title": "标题不能只有空格或不可见字符，请填写标题",
    "blank_text": "理由、决定或人员姓名不能只有空格或不可见字符，请填写",
    "invalid_received_at": "受理时间有误：须带时区，不晚于现在，不早于24小时前",
    "invalid_credit_code": "统一社会信用代码有误，请核对",
    "invalid_idempotency_key": "表单已失效，请刷新页面后重新提交",
    "grid_workers_only": "只有网格员巡查上报的问题可以就地解决",
    "not_both": "一件工单不能既即时办结又就地解决",
    "unknown_answer": "所选知识库答复不存在，请重新选择",
    "answer_not_valid": "所选知识库答复已撤回或不在有效期内，请重新选择",
    "answer_category_mismatch": "所选知识库答复不属于此诉求类别，请重新选择",
    "blank_description": "诉求内容不能只有空格或不可见字符，请填写诉求内容",
    "idempotency_key_reused": "此表单已提交过一次；内容已保留，请核对后重新提交",
    "intake_contended": "同一问题的工单正在变动，请稍后重新提交",
    "temporal_unavailable": "工作流服务暂时不可用，请稍后重新提交（内容已保留）",
    "database_unavailable": "数据库暂时不可用，请稍后重试",
}
"""Why the lifecycle refused an action (jiesu/case/lifecycle.py Refusal codes), the intake a
report (jiesu/intake/errors.py) or the API found no case (api.errors), as the person at the
console reads it; the API answers with the code and its English reason."""


def refusal(code: str, reason: str) -> str:
    """The Chinese words of a refusal's ``code``, or its ``reason`` when there are none."""
    return REFUSAL.get(code, reason)


def refusal_of(code: str, reason: str, action: str, now: Status) -> str:
    """A refusal of ``action`` (its term: 办结答复) as the case page says it, with the status
    the case is in ``now`` (read after the refusal): wrong_status said only "the case's status
    does not allow this", which told a clerk replying from a second tab nothing of the reply
    the first had sent — now 不能办结答复：该工单现在的状态是“已答复”."""
    if code == "wrong_status":
        return f"不能{action}：该工单现在的状态是“{STATUS[now]}”，请刷新页面查看最新状态"
    return refusal(code, reason)


CITIZEN_NOW: dict[Status, str] = {
    Status.REGISTERED: "正在转交承办单位",
    Status.DISPATCHING: "正在转交承办单位",
    Status.REASSIGNING: "正在转交承办单位",
    Status.ASSIGNED: "正在办理中",
    Status.HANDLING: "正在办理中",
    Status.REPLIED: "已经答复",
    Status.CLOSED: "已经办结",
}
"""Where a citizen's case is, in the citizen's words (the staff's 待派单, 待签收 are not theirs)."""

CITIZEN_REFUSAL: dict[str, str] = {
    "already_rated": "您已经评价过这次答复，不能重复评价",
    "rating_window_passed": "评价期限已过，不能再评价这次答复",
    "already_done": "您已经提交过了，请刷新本页查看",
    "case_changed": "您的诉求刚刚有新的进展，请刷新本页查看后再提交",
    "case_not_ready": "您的诉求刚刚登记，请稍后刷新本页",
    "invalid_idempotency_key": "本页已失效，请刷新本页后重新提交",
    "idempotency_key_reused": "这份表单已经提交过一次；您填写的内容已保留，请核对后重新提交",
    "temporal_unavailable": "系统暂时繁忙，请稍后重新提交（您填写的内容已保留）",
    "database_unavailable": "系统暂时繁忙，请稍后重新提交（您填写的内容已保留）",
}
"""A refusal of a citizen's own action (/my/) as the citizen reads it, where the staff's
words (REFUSAL) speak of 工单, 页面 or the system's parts."""


def citizen_refusal_of(code: str, reason: str, action: CaseSignal, now: Status) -> str:
    """A refusal of the citizen's ``action`` (评价, 补充诉求, 撤诉) on their page, with where the
    case is ``now`` (read after the refusal): a refusal for the case's state said only the
    staff's general 工单当前的状态不能办理此操作 — now why, and what the citizen can do."""
    if code == "case_closed":
        now = Status.CLOSED
    if code not in ("wrong_status", "case_closed"):
        return CITIZEN_REFUSAL.get(code) or refusal(code, reason)
    said = f"不能{SIGNAL[action]}：您的诉求{CITIZEN_NOW[now]}"
    if now is Status.CLOSED:
        return f"{said}。如有新的情况，请拨打12345热线反映"
    if action is CaseSignal.RATE:
        return f"现在还不能评价：您的诉求{CITIZEN_NOW[now]}，承办单位答复后即可在本页评价"
    if action is CaseSignal.WITHDRAW and now is Status.REPLIED:
        return f"{said}，您可以在本页对答复进行评价"
    return said


def term(enum: type, value: object) -> str:
    """The Chinese term of ``value`` (a member of ``enum`` or its value, e.g. a read-model
    column), or the value itself when it is no member."""
    try:
        member = enum(value)
    except (ValueError, TypeError):
        return "" if value is None else str(value)
    return TERMS[enum].get(member, str(value))
