"""Every ``error.code`` the JSON API answers, with what it means: the one list an integrator
reads (the OpenAPI's ``ErrorBody.code``, its ``x-error-codes`` extension, and docs/errors.md,
written by ``python -m api.error_codes``).

tests/test_openapi_truth.py fails when code in api/ or jiesu/ raises a code that is not
listed here (an ``ApiError``, a lifecycle ``Refusal``, an intake, account, key or
administration refusal), or when a listed code is raised nowhere.
"""

from __future__ import annotations

ERROR_CODES: dict[str, str] = {
    # --- any operation -------------------------------------------------------------------
    "invalid_request": "The request does not fit the operation's schema (422; `details` lists "
    "each field and problem), or a header such as If-Match is malformed",
    "invalid_value": "A value in the request cannot be stored or compared (422)",
    "http_error": "The body could not be parsed (400), or another HTTP-level refusal",
    "not_found": "No such path (404)",
    "method_not_allowed": "This method is not allowed on this path (405; `Allow` lists those "
    "that are)",
    "unsupported_media_type": "The body is not application/json (415)",
    "payload_too_large": "The body is larger than JIESU_MAX_BODY_BYTES (413)",
    "internal_error": "Unexpected error (500): quote the request id to report it",
    "temporal_unavailable": "Temporal cannot be reached (503, Retry-After)",
    "database_unavailable": "PostgreSQL cannot be reached (503, Retry-After)",
    # --- authentication and roles ---------------------------------------------------------
    "unauthenticated": "No API key, session cookie or token was sent (401)",
    "invalid_api_key": "The API key is not known or was revoked (401)",
    "session_ended": "The session has ended (idle or too old): log in again (401)",
    "no_session": "An API key has no session: log in as a person (401)",
    "login_failed": "Unknown login or wrong password (401)",
    "account_disabled": "The account is disabled (403)",
    "rate_limited": "Too many requests of this kind from this client or phone (429, "
    "Retry-After)",
    "too_many_failed_authentications": "Too many failed authentications from this client "
    "(429, Retry-After)",
    "csrf_failed": "A session's unsafe request without its CSRF token (403)",
    "cross_site": "A sign-in or session request from another site (403)",
    "forbidden": "The caller's role (or department) may not do this (403)",
    "not_your_grid": "A grid worker asked for a grid they do not work in (403)",
    "bad_signature": "The SMS gateway's signature does not verify (401)",
    "no_code": "No verification code was sent to this phone (401)",
    "code_expired": "The verification code has expired (401)",
    "code_locked": "Too many wrong verification codes (401)",
    "wrong_code": "The verification code is wrong (401)",
    # --- finding things -------------------------------------------------------------------
    "case_not_found": "No such case visible to you (404)",
    "case_not_ready": "The case is registered but cannot be read yet (503, Retry-After)",
    "history_not_found": "No history for this case (404)",
    "attachment_not_found": "No such attachment (404)",
    "content_masked": "The attachment's content is masked for you (403)",
    "report_not_found": "No such report (404)",
    "person_not_found": "No such person (404)",
    "key_not_found": "No such API key (404)",
    "answer_not_found": "No such knowledge-base answer (404)",
    "no_such_record": "No such accountability record (404)",
    "department_not_found": "No such department (404)",
    "rule_not_found": "No such routing rule (404)",
    "template_not_found": "No such notification template (404)",
    "unknown_reference": "No such reference record (404)",
    "unknown_policy": "No such policy value (404)",
    # --- a case's lifecycle (jiesu/case/lifecycle.py Refusal) -------------------------------
    "wrong_status": "The case's status does not allow this action now (409)",
    "not_assigned": "The case is not assigned to your department (403)",
    "already_done": "This was done already (409)",
    "not_contacted": "Contact the citizen before replying (409)",
    "co_handlers_pending": "Co-handlers still owe their contribution (409)",
    "evidence_required": "An 'explained' reply needs at least one evidence link (409)",
    "already_rated": "The case was rated already in this round (409)",
    "rating_window_passed": "The rating was given after the case's rating window ended (409): "
    "the case closes not rated",
    "return_pending": "A return is already waiting for the centre's decision (409)",
    "no_return_pending": "No return is waiting for a decision (409)",
    "return_window_passed": "Too late to return the case (409)",
    "return_limit": "The case has taken the most returns it may (409)",
    "not_overdue": "The department is not overdue: no second assignment (409)",
    "holder_changed": "The case was passed on from the unit named: no handover (409)",
    "holder_in_service": "The unit holding the case is in service: no handover (409)",
    "same_department": "The case is already with that unit (409); a unit's handover naming the "
    "unit itself (422)",
    "department_in_service": "The department is in service: retire it before handing its "
    "cases over (409)",
    "reassignment_pending": "The case is being reassigned (409)",
    "reassignment_not_chosen": "This reassignment goes to the level above or to a named "
    "department: no other choice (409)",
    "no_reassignment": "The case is not being reassigned (409)",
    "centre_not_assignee": (
        "The hotline centre cannot be the assigned department (the API answers 422; a dispatch"
        " signalled to the case directly is refused and recorded with it)"
    ),
    "extension_pending": "An extension request is already waiting (409)",
    "extension_cap": "The case has been extended the most times it may (409)",
    "extension_request_limit": "The case has taken the most extension requests it may (409)",
    "deadline_passed": "An extension must be asked before the deadline (409)",
    "invalid_promised_date": "The promised date must be after the deadline and within the "
    "extension bound (409)",
    "no_extension_pending": "No extension request is waiting (409)",
    "already_involved": "The department already handles this case (409)",
    "centre_not_co_handler": "The hotline centre cannot be a co-handler (409)",
    "repeated_department": "A department is named more than once (409)",
    "co_handler_limit": "The case has convened the most co-handlers it may (409)",
    "no_pending_co_handler": "The department owes no contribution (409)",
    "co_handler_released": "The co-handler was released (免除协办) and owes no contribution "
    "(409)",
    "not_co_handler": "Only a co-handling department contributes (403)",
    "invalid_due": "A deadline must be in the future (409; 422 when the API checks it first)",
    "due_too_far": "A supervision deadline is too far ahead (409; 422 when the API checks it "
    "first)",
    "already_supervised": "The case is already on the supervision ladder (409)",
    "supervision_limit": "The case has taken the most supervision orders it may (409)",
    "centre_not_supervised": "A case no unit holds (in the centre's dispatch queue, or not yet "
    "routed) takes supervision (督办) at most: no joint handling or accountability (409)",
    "returned_by_this_unit": "改派 (or 派单 out of the queue) to the unit whose return (退单) was "
    "just upheld (409)",
    "stale_step": "This supervision step no longer applies (409)",
    "unsigned_step": "A supervision ladder step not sent by the case's ladder (409)",
    "supplement_limit": "The case has taken the most supplements it may (409)",
    "repeat_report_limit": "The case has merged the most repeat reports it may (409)",
    "blank_text": "A reason, decision or name has no visible characters (409 or 422)",
    "original_reporter_only": "Only the case's original citizen may rate or withdraw (403)",
    "own_unit_rating": "A grid worker's patrol report is not rated by that worker while their "
    "own unit leads or co-handles it (403)",
    "case_closed": "The case is closed (409)",
    "case_changed": "What the action answers has ended: read the case again (409)",
    "case_moved_on": "A keyed retry of an action applied at its first attempt, on a case "
    "since passed out of your hands (409)",
    "rejected": "The workflow refused the action without naming a code (409)",
    "idempotency_key_reused": "The Idempotency-Key was used with a different body (422)",
    # --- intake (jiesu/intake) --------------------------------------------------------------
    "unknown_department": "No such department (422); a 移交 whose successor the case no longer "
    "finds in service (409)",
    "unknown_category": "No such category (422)",
    "unknown_grid": "No such grid (422)",
    "blank_title": "The title has no visible characters (422)",
    "blank_description": "The description has no visible characters (422)",
    "invalid_received_at": "received_at must have a time zone, be no later than now and no "
    "earlier than 24 hours ago (422)",
    "invalid_credit_code": "The unified social credit code is invalid (422)",
    "invalid_idempotency_key": "The Idempotency-Key is malformed (422)",
    "grid_workers_only": "Only a grid worker's report may be resolved on the spot (422)",
    "not_both": "A case cannot be both resolved at once and on the spot (422)",
    "unknown_answer": "No such knowledge-base answer (422)",
    "answer_not_valid": "The knowledge-base answer is withdrawn or not valid today (422)",
    "answer_category_mismatch": "The knowledge-base answer is of another category (422)",
    "intake_contended": "The same problem changed repeatedly under the intake: retry (503, "
    "Retry-After)",
    "enterprise_category": "An enterprise's category needs the enterprise form (422)",
    "not_an_enterprise_category": "Not an enterprise category (422)",
    "invalid_sms": "The inbound SMS is malformed (422)",
    # --- lists and statistics ---------------------------------------------------------------
    "offset_with_after": "Page with offset or with after, not both (422)",
    "invalid_cursor": "The `after` cursor is not one this API wrote (422)",
    "invalid_period": "'from' is after 'to', or a report's period has not begun or begins "
    "before the supported years (422)",
    "too_many_periods": "The period asks for too many buckets (422)",
    "report_pending": "The report was not produced within JIESU_REPORT_WAIT_SECONDS (is a "
    "worker running?); its run goes on: retry, or read its url (503, Retry-After)",
    # --- administration, accounts and keys ----------------------------------------------------
    "invalid_persons": "A person's name is blank (422)",
    "invalid_department": "The role needs its department, or the department does not fit "
    "the role (422)",
    "invalid_role": "This role cannot be given here (422)",
    "invalid_login": "The login is malformed (422)",
    "invalid_display_name": "The display name is blank or too long (422)",
    "invalid_password": "The password is too short or too weak (422)",
    "login_taken": "The login is taken (409)",
    "last_admin": "The last active admin cannot be removed (409)",
    "invalid_key_name": "The key's name is malformed (422)",
    "key_name_taken": "The key's name is taken (409)",
    "version_conflict": "The record changed since you read it (If-Match): read it again (409)",
    "invalid_boundary": "The grid boundary is invalid (422)",
    "invalid_parent": "The parent record is invalid (422)",
    "invalid_record": "The record is invalid (422)",
    "invalid_calendar": "The calendar change is invalid (422)",
    "invalid_policy_value": "The policy value is out of its range (422)",
    "invalid_validity": "The rule's validity period is invalid (422)",
    "rule_retired": "The routing rule is retired (409)",
    "department_retired": "The department is out of service (停用): it cannot be given a case, "
    "a co-handling, an account or an API key (422); retiring it again at another moment (409)",
    "centre_not_retired": "The hotline centre cannot be retired (422)",
    "retirement_backdated": "A department's retirement cannot be backdated (422)",
    # --- health -------------------------------------------------------------------------------
    "not_ready": "A dependency is not ready (503 from /readyz, Retry-After)",
}


def markdown() -> str:
    """docs/errors.md: the list as a table."""
    lines = [
        "# Error codes",
        "",
        "Every error answer has the shape",
        '`{"error": {"code": "...", "message": "...", "details": [...], "request_id": "..."}}`;',
        "`details` is there only when there is something to list (a 422's fields, the checks",
        "`/readyz` found failing).",
        "`code` is one of the values below (the OpenAPI lists them too: the `ErrorBody.code`",
        "field's `x-error-codes`). `message` is for people and may change; match on `code`.",
        "The status in brackets is the usual one; each operation's documented `responses` say",
        "which statuses it answers. New codes may be added: treat an unknown code by its status.",
        "",
        "Written by `python -m api.error_codes > docs/errors.md` from api/error_codes.py;",
        "tests/test_openapi_truth.py checks that it is current.",
        "",
        "| code | meaning |",
        "|---|---|",
    ]
    lines += [f"| `{code}` | {meaning} |" for code, meaning in ERROR_CODES.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
