"""告知诉求人 in Chinese: what became of each notice to a case's citizen, in words the operator
acts on (the case page, api/console/cases.py ``citizen_notices``).

Only the notice's status is said — never its ``last_error``, which a gateway may have written
with the phone or the address in it. A ``skipped`` notice (jiesu.notify.outbox: nothing was
sent) is said by whether its citizen can be phoned: a landline or a short number with no
e-mail beside it is a call to make (请电话告知诉求人); a citizen who left no contact at all (an
app's report, where contact is optional: ``ComplaintIntake``) can be neither written to nor
phoned, and follows the case by its number — telling the operator to phone them would send
them looking for a number nobody has.
"""

from __future__ import annotations

NOTICE_LABELS = {
    "received": "受理通知（办件查询链接）", "repeat_reported": "并单受理通知",
    "replied": "答复通知（请评价）", "extension_decided": "延期通知",
}
"""The notice by the case event it tells of; any other is 通知."""

SENT_AS = {"sms": "短信", "email": "电子邮件"}
"""A sent notice by the channel the outbox recorded it went by (已发送短信 / 已发送电子邮件)."""

NOTICE_SAID = {
    "sent": "已发送", "pending": "待发送", "sending": "发送中",
    "failed": "发送失败，请电话告知诉求人",
    "skipped": "未发送短信：不是手机号码（座机或短号），请电话告知诉求人",
    "set_aside": "未发送：发送失败后已搁置，不再发送",
}
"""Every status of the outbox (migrations 0004, 0039, 0045); ``skipped`` of a citizen with a
phone. ``set_aside``: given up on, then set aside by an engineer (``jiesu repair notices
--set-aside``, with a reason kept for auditors, not said here): nothing more will go, and no
call back is asked for — setting it aside was someone's decision, often after a call."""

NO_CONTACT = "未发送：诉求人未留联系方式（无电话、无电子邮箱），无法告知，诉求人凭工单号查询进度"
"""A ``skipped`` notice of a citizen who left no phone and no e-mail: nobody to phone."""
