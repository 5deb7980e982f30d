"""A department's handling of its case (承办): accept, contact, reply, return, raise a level,
ask for an extension, contribute as a co-handler."""

from datetime import UTC, datetime

from fastapi import APIRouter

from api.actions import add_action
from api.deps import Department
from jiesu.case import lifecycle
from jiesu.case.domain import (
    AcceptAction,
    ContactAction,
    ContactInput,
    ContributionAction,
    ContributionInput,
    ExtensionAction,
    ExtensionInput,
    RaiseLevelAction,
    RaiseLevelInput,
    ReplyAction,
    ReplyInput,
    ReturnAction,
    ReturnInput,
)
from workflows.complaint import ComplaintWorkflow as Case

router = APIRouter(prefix="/complaints/{case_id}", tags=["handling (承办)"])


def _at_now(check):  # checks that compare with the clock get the API's "now"
    return lambda state, action: check(state, action, datetime.now(UTC))


add_action(router, "/accept", summary="签收 Accept the case", caller=Department,
           signal=Case.accept, action=AcceptAction, check=lifecycle.check_accept)
add_action(router, "/contact", summary="联系诉求人 Record contact with the citizen",
           caller=Department, signal=Case.contact, action=ContactAction,
           check=lifecycle.check_contact, body=ContactInput, optional_body=True)
add_action(router, "/reply", summary="办结答复 Reply with the outcome and evidence",
           caller=Department, signal=Case.reply, action=ReplyAction,
           check=lifecycle.check_reply, body=ReplyInput)
add_action(router, "/return", summary="退单 Return the case: not this department's responsibility",
           caller=Department, signal=Case.return_case, action=ReturnAction,
           check=_at_now(lifecycle.check_return), body=ReturnInput)
add_action(router, "/raise-level",
           summary="提级办 Beyond this department's authority: the level above",
           caller=Department, signal=Case.raise_level, action=RaiseLevelAction,
           check=lifecycle.check_raise_level, body=RaiseLevelInput)
add_action(router, "/extension",
           summary="延期申请 Ask for more time: reasons, measures, promised date",
           caller=Department, signal=Case.request_extension, action=ExtensionAction,
           check=_at_now(lifecycle.check_extension), body=ExtensionInput)
add_action(router, "/contribution", summary="协办意见 A co-handling department's contribution",
           caller=Department, signal=Case.contribute, action=ContributionAction,
           check=lifecycle.check_contribution, body=ContributionInput)
