"""A department's handling of its case (承办): accept, contact, reply, return, raise a level,
ask for an extension, contribute as a co-handler. A grid worker does the same for a case
routed to their grid's handling unit (docs/grid.md)."""

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter

from api.actions import ActionSpec, StaffCaller, add_actions
from api.deps import Handler
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

DEPARTMENT = StaffCaller(Handler)


def _at_now(check):  # checks that compare with the clock get the API's "now"
    return lambda state, action: check(state, action, datetime.now(UTC))


def _spec(path: str, summary: str, **kwargs: Any) -> ActionSpec:
    return ActionSpec(path, summary, DEPARTMENT, **kwargs)


ACTIONS: tuple[ActionSpec, ...] = (
    _spec("/accept", "签收 Accept the case",
          signal=Case.accept, action=AcceptAction, check=lifecycle.check_accept),
    _spec("/contact", "联系诉求人 Record contact with the citizen",
          signal=Case.contact, action=ContactAction, check=lifecycle.check_contact,
          body=ContactInput, optional_body=True),
    _spec("/reply", "办结答复 Reply with the outcome and evidence",
          signal=Case.reply, action=ReplyAction, check=lifecycle.check_reply, body=ReplyInput),
    _spec("/return", "退单 Return the case: not this department's responsibility (at most"
          f" {lifecycle.MAX_RETURNS} returns a case, rejected ones included: then 409"
          " return_limit)",
          signal=Case.return_case, action=ReturnAction,
          check=_at_now(lifecycle.check_return), body=ReturnInput),
    _spec("/extension", "延期申请 Ask for more time: reasons, measures, promised date (at most"
          f" {lifecycle.MAX_EXTENSION_REQUESTS} requests a case: then 409"
          " extension_request_limit)",
          signal=Case.request_extension, action=ExtensionAction,
          check=_at_now(lifecycle.check_extension), body=ExtensionInput),
    _spec("/raise-level", "提级办 Beyond this department's authority: the level above",
          signal=Case.raise_level, action=RaiseLevelAction, body=RaiseLevelInput,
          check=lifecycle.check_raise_level),
    _spec("/contribution", "协办意见 A co-handling department's contribution",
          signal=Case.contribute, action=ContributionAction, body=ContributionInput,
          check=lifecycle.check_contribution, co_handling=True),
)  # fmt: skip
add_actions(router, ACTIONS)
