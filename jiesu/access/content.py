"""The case's content (诉求内容) and who sees it unmasked.

``CaseState`` carries neither the description nor the citizen: they are in the intake's
payload (the ``intakes`` table). The assigned department and its co-handlers (主办 / 协办), the
centre's staff and auditors see the description, the address, the evidence links and the
citizen's name and phone; everyone else sees them masked (张** / 138****1234). A citizen who
asked at intake to stay anonymous to the department (``Citizen.anonymous_to_department``) is
masked for the department too; the centre still sees them in full.

Every staff view of unmasked content is recorded in ``content_views`` (who, when, which case,
which fields), listed for auditors. Nothing here logs: the content is personal data.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import asyncpg
from pydantic import BaseModel, Field

from jiesu.case.domain import (
    AUDITOR_ROLES,
    CENTRE_ROLES,
    CaseEvent,
    CaseStart,
    CaseState,
    EventKind,
    Role,
)

Db = asyncpg.Connection | asyncpg.Pool


class ContentField(StrEnum):
    """The content's fields, as recorded in a view."""

    DESCRIPTION = "description"
    ADDRESS = "address"
    EVIDENCE = "evidence"
    CITIZEN_NAME = "citizen_name"
    CITIZEN_PHONE = "citizen_phone"
    CITIZEN_EMAIL = "citizen_email"
    # a file that came with the report, downloaded (its own view: not a field of /content)
    ATTACHMENT = "attachment"


CONTENT = (
    ContentField.DESCRIPTION, ContentField.ADDRESS, ContentField.EVIDENCE,
    ContentField.CITIZEN_NAME, ContentField.CITIZEN_PHONE, ContentField.CITIZEN_EMAIL,
)  # fmt: skip
CITIZEN = (ContentField.CITIZEN_NAME, ContentField.CITIZEN_PHONE, ContentField.CITIZEN_EMAIL)
FULL_VIEW_ROLES = CENTRE_ROLES | AUDITOR_ROLES  # the centre (operator, supervisor, admin), audit
# A citizen, by a report's token (the case's own or a repeat report's, 并单): the reply's
# evidence, as their page shows it; not the descriptions and supplements the case's events
# carry, which are other citizens' as often as their own. What else of the case a citizen
# receives (no staff, no internals, only their own steps) is jiesu.access.citizen_view's.
CITIZEN_VIEW = (ContentField.EVIDENCE,)


@dataclass(frozen=True)
class Viewer:
    """Who looks: an API key's holder or a person (``person`` True) in a session."""

    name: str
    role: Role
    department_id: str | None
    person: bool = False
    handles: frozenset[str] = frozenset()  # a grid worker's grid units (jiesu.access.grids)


def unmasked_fields(viewer: Viewer, state: CaseState, anonymous: bool) -> tuple[ContentField, ...]:
    """The fields ``viewer`` sees in full; the rest are masked."""
    if viewer.role in FULL_VIEW_ROLES:
        return CONTENT
    if viewer.role is Role.CITIZEN:  # a report's token: the reply to them, no one else's words
        return CITIZEN_VIEW
    if _handles(viewer, state):
        return tuple(f for f in CONTENT if f not in CITIZEN) if anonymous else CONTENT
    return ()


def sees_report_files(viewer: Viewer, state: CaseState) -> bool:
    """The files that came with the report (a mail's attachments: photos, letters, an ID
    card) are its content, as its description is: shown to whoever sees the description
    unmasked, to nobody it is masked for (a grid worker on a case of their grid that another
    unit handles)."""
    return ContentField.DESCRIPTION in unmasked_fields(viewer, state, anonymous=False)


# What a file's name may not carry where it is shown and saved: control characters (C0, C1),
# format characters (Cf: the bidirectional overrides U+202A-U+202E and isolates U+2066-U+2069,
# which display "invoice\u202efdp.exe" as "invoiceexe.pdf"; zero-width characters), lone
# surrogates, line and paragraph separators.
_NOT_IN_NAMES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
FILE_NAME_MAX = 200


def file_name(name: str, fallback: str) -> str:
    """A report's file's name as it is listed and offered for download: NFC, one line
    without control or format characters, no directory (``/`` and ``\\`` become ``_``), no
    leading dot (``..``, a hidden file), at most FILE_NAME_MAX characters; ``fallback`` when
    nothing is left. The name is the sender's: it must not disguise what the file is."""
    kept = "".join(
        " " if ch.isspace() else "_" if ch in "/\\" else ch
        for ch in unicodedata.normalize("NFC", name)
        if ch.isspace() or unicodedata.category(ch) not in _NOT_IN_NAMES
    )
    kept = " ".join(kept.split()).lstrip(". ")[:FILE_NAME_MAX].rstrip()
    return kept or fallback


# The content that travels in the case itself, in its events: a later report's description
# (并单), the citizen's supplement (补充诉求) and their other words (the rating's comment, as
# given or as the centre took it down by phone; the withdrawal's reason), the reply's evidence
# links — the event's data key, and the field of the content it is.
_IN_EVENTS: dict[EventKind, tuple[str, ContentField]] = {
    EventKind.REPEAT_REPORTED: ("description", ContentField.DESCRIPTION),
    EventKind.SUPPLEMENTED: ("text", ContentField.DESCRIPTION),
    EventKind.RATED: ("comment", ContentField.DESCRIPTION),
    # 重办: its reason is the unsatisfied rating's comment, the citizen's words as above
    EventKind.REHANDLE_STARTED: ("reason", ContentField.DESCRIPTION),
    EventKind.CALLBACK: ("comment", ContentField.DESCRIPTION),
    EventKind.WITHDRAWN: ("reason", ContentField.DESCRIPTION),
    EventKind.REPLIED: ("evidence", ContentField.EVIDENCE),
    EventKind.SOLVED_ON_THE_SPOT: ("evidence", ContentField.EVIDENCE),  # 就地解决: its reply's
}


# What a case's Temporal history carries of the content, for whoever reads it (the auditor's
# timeline, the raw history, the bundle): the address (the start's CaseFacts), every signal's
# payload as it arrived, applied or refused — supplements, repeat reports' descriptions, the
# rating's comment, the withdrawal's reason — and the reply's evidence. A case started before
# CaseFacts carries the whole intake in its start, the citizen too (HISTORY_WITH_INTAKE).
HISTORY_CONTENT = (ContentField.DESCRIPTION, ContentField.ADDRESS, ContentField.EVIDENCE)
HISTORY_WITH_INTAKE = CONTENT


def history_fields(start_input: Any) -> tuple[ContentField, ...]:
    """The content fields a case's history shows its reader, from its start's input (the
    first argument the workflow was started with, decoded): reading it is a view of them."""
    legacy = isinstance(start_input, dict) and bool(start_input.get("intake"))
    return HISTORY_WITH_INTAKE if legacy else HISTORY_CONTENT


def masked_case(viewer: Viewer, state: CaseState, *, withheld: bool = False) -> CaseState:
    """The case as ``viewer`` may read it: for one who sees the description or the evidence
    masked (a grid worker on a case of their grid that another unit handles, a citizen), the same
    content carried by the case's events and its reply is masked as ``present`` masks it — a
    text None, evidence empty. Anyone else gets ``state`` itself. ``withheld``: all masked,
    for anyone (a page opened from another site, as in :func:`view_content`)."""
    shown = () if withheld else unmasked_fields(viewer, state, anonymous=False)
    hidden = {f for f in (ContentField.DESCRIPTION, ContentField.EVIDENCE) if f not in shown}
    if not hidden:
        return state
    update: dict[str, object] = {"events": [_masked_event(e, hidden) for e in state.events]}
    if ContentField.DESCRIPTION in hidden and state.rating_comment:
        update["rating_comment"] = ""  # the rated event's comment, kept on the case
    if ContentField.EVIDENCE in hidden and state.reply is not None:
        update["reply"] = state.reply.model_copy(update={"evidence": []})
    if ContentField.EVIDENCE in hidden and state.solved_on_the_spot is not None:
        update["solved_on_the_spot"] = state.solved_on_the_spot.model_copy(
            update={"evidence": []}
        )
    return state.model_copy(update=update)


def carried_fields(viewer: Viewer, state: CaseState) -> tuple[ContentField, ...]:
    """The fields of the content that ``state``'s events carry and ``viewer`` reads unmasked:
    showing them the case is a view of those (to record, as ``view_content`` records its
    fields). None for one who reads them masked, nor when the events carry none."""
    shown = unmasked_fields(viewer, state, anonymous=False)
    carried = {
        field
        for e in state.events
        for key, field in (_IN_EVENTS.get(e.kind, ("", None)),)
        if field in shown and e.data.get(key)
    }
    return tuple(f for f in CONTENT if f in carried)


def _masked_event(event: CaseEvent, hidden: set[ContentField]) -> CaseEvent:
    key, field = _IN_EVENTS.get(event.kind, ("", None))
    if field not in hidden or key not in event.data:
        return event
    masked = [] if field is ContentField.EVIDENCE else None
    return event.model_copy(update={"data": {**event.data, key: masked}})


def _handles(viewer: Viewer, state: CaseState) -> bool:
    """The viewer's department, or a grid worker's grid unit, leads or co-handles the case."""
    if viewer.role is Role.DEPARTMENT:
        return _needs_content(state, viewer.department_id)
    return viewer.role is Role.GRID_WORKER and any(_needs_content(state, u) for u in viewer.handles)


def _needs_content(state: CaseState, department_id: str | None) -> bool:
    """The department leads the case (主办) or co-handles it (协办) — not once the centre has
    released it from co-handling (免除协办, ``waived``): it has nothing more to do on the case,
    which it still sees (CaseState.involves), with the content masked as for any department
    that sees a case without handling it."""
    return department_id == state.department_id or any(
        c.department_id == department_id and not c.waived for c in state.co_handlers
    )


def mask_name(name: str) -> str:
    """张三丰 → 张**: the first character, one star for each other."""
    return name[:1] + "*" * max(1, len(name) - 1)


def mask_phone(phone: str) -> str:
    """13812341234 → 138****1234: the operator prefix and the last four digits stay."""
    digits = "".join(c for c in phone if c.isdigit())
    if len(digits) >= 8:
        return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]
    return "*" * max(1, len(digits) - 2) + digits[-2:]


def mask_email(email: str) -> str:
    """wang.fang@example.com → w***@example.com: the first character and the domain stay."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


def mask_address(address: str) -> str:
    """松林路8号 → 松林***: the first two characters (the road, at most) stay."""
    return address[:2] + "***" if address else ""


# What identifies a person in free text and can be told by its shape: a resident ID number
# (18 characters, or 15 digits), a mobile number (+86 and spaces or hyphens allowed), a
# landline with its area code, any other run of seven digits or more (bank cards, QQ
# numbers), an e-mail address. Names cannot be told by their shape and stay.
_IDENTIFIERS = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"  # e-mail
    r"|(?<!\d)(?:\d{17}[\dXx]|\d{15})(?![\dXx])"  # resident ID
    r"|(?<!\d)(?:\+?86[ -]?)?1[3-9]\d[ -]?\d{4}[ -]?\d{4}(?!\d)"  # mobile
    r"|(?<!\d)0\d{2,3}[ -]?\d{7,8}(?!\d)"  # landline
    r"|(?<![A-Za-z0-9])\d{7,}(?![A-Za-z0-9])"  # any other long number (not within a code)
)


def redact_identifiers(text: str) -> str:
    """``text`` with every phone number, ID number, long number and e-mail address in it
    masked (138****1234, w***@example.com, 110***********002X, ******78). For the case's
    title: it goes where the content does not — every case list, the Temporal history and
    its Web UI — and a title cut from an SMS or a mail is often "我是3号楼的，电话138…"."""

    def masked(found: re.Match[str]) -> str:
        value = found.group()
        if "@" in value:
            return mask_email(value)
        chars = [c for c in value if c.isdigit() or c in "Xx"]
        if value.startswith(("+86", "86")) and len(chars) == 13:
            chars = chars[2:]  # the country code: the number is the mobile's
        if len(chars) >= 11:  # the prefix and the last four, as a masked phone
            return "".join(chars[:3]) + "*" * (len(chars) - 7) + "".join(chars[-4:])
        return "*" * (len(chars) - 2) + "".join(chars[-2:])

    return _IDENTIFIERS.sub(masked, text)


class CaseContent(BaseModel):
    """A case's content as one viewer may see it."""

    case_id: str
    title: str
    description: str | None = Field(description="None when masked")
    address: str
    evidence: list[str] = Field(description="Evidence links of the replies (办结答复)")
    citizen_name: str
    citizen_phone: str | None = Field(description="None: the citizen gave an e-mail address")
    citizen_email: str | None = None
    anonymous_to_department: bool = Field(
        description="The citizen asked to stay anonymous to the department"
    )
    masked: list[ContentField] = Field(description="The fields shown masked to this viewer")


class ContentView(BaseModel):
    """One recorded view of unmasked content."""

    case_id: str
    viewed_at: datetime
    viewer: str = Field(description="The person's login or the API key's name")
    viewer_role: Role
    department_id: str | None
    person: bool
    fields: list[ContentField]


async def intake_of(db: Db, case_id: str) -> CaseStart | None:
    """The case's intake as registered (None if there is none, e.g. an intake given up)."""
    text = await db.fetchval("SELECT payload::text FROM intakes WHERE case_id = $1", case_id)
    return None if text is None else CaseStart.model_validate(json.loads(text))


def _evidence(state: CaseState) -> list[str]:
    return [
        str(url)
        for e in state.events
        if e.kind is EventKind.REPLIED
        for url in e.data.get("evidence", [])
    ]


def present(start: CaseStart, state: CaseState, shown: tuple[ContentField, ...]) -> CaseContent:
    """The content with every field not in ``shown`` masked."""
    intake = start.registered_intake
    citizen = intake.citizen

    def pick(field: ContentField, full: str, masked: str) -> str:
        return full if field in shown else masked

    phone, email = citizen.phone, citizen.email

    return CaseContent(
        case_id=start.case_id,
        title=intake.title,
        description=intake.description if ContentField.DESCRIPTION in shown else None,
        address=pick(ContentField.ADDRESS, intake.address, mask_address(intake.address)),
        evidence=_evidence(state) if ContentField.EVIDENCE in shown else [],
        citizen_name=pick(ContentField.CITIZEN_NAME, citizen.name, mask_name(citizen.name)),
        citizen_phone=None if phone is None
        else pick(ContentField.CITIZEN_PHONE, phone, mask_phone(phone)),
        citizen_email=None if email is None
        else pick(ContentField.CITIZEN_EMAIL, email, mask_email(email)),
        anonymous_to_department=citizen.anonymous_to_department,
        masked=[f for f in CONTENT if f not in shown],
    )


async def view_content(
    db: Db, state: CaseState, viewer: Viewer, *, withheld: bool = False
) -> CaseContent | None:
    """The case's content as ``viewer`` may see it, recording the view of what is unmasked
    (before it is answered: a view that cannot be recorded is not shown). None if the case
    has no intake row. The caller has checked that the viewer may see the case at all.
    ``withheld``: all masked and nothing recorded (a page opened from another site)."""
    start = await intake_of(db, state.case_id)
    if start is None:
        return None
    anonymous = start.registered_intake.citizen.anonymous_to_department
    shown = () if withheld else unmasked_fields(viewer, state, anonymous)
    if shown:
        await record_view(db, state.case_id, viewer, shown)
    return present(start, state, shown)


async def record_view(
    db: Db, case_id: str, viewer: Viewer, fields: tuple[ContentField, ...]
) -> None:
    """A view of these fields of the case's content, recorded before it is answered."""
    await db.execute(
        "INSERT INTO content_views (case_id, viewer, viewer_role, department_id, person,"
        " fields) VALUES ($1, $2, $3, $4, $5, $6)",
        case_id, viewer.name, viewer.role.value, viewer.department_id, viewer.person,
        [f.value for f in fields],
    )  # fmt: skip


async def record_file_view(db: Db, case_id: str, viewer: Viewer) -> None:
    """A file of the report handed over: recorded as a view of the content (``attachment``),
    before it is answered, as ``view_content`` records the fields it shows."""
    await record_view(db, case_id, viewer, (ContentField.ATTACHMENT,))


MAX_VIEWS = 1000


async def content_views(
    db: Db, *, case_id: str | None = None, viewer: str | None = None, limit: int = 100
) -> list[ContentView]:
    """Recorded views, newest first, of one case and/or by one viewer."""
    rows = await db.fetch(
        "SELECT case_id, viewed_at, viewer, viewer_role, department_id, person, fields"
        " FROM content_views WHERE ($1::text IS NULL OR case_id = $1)"
        " AND ($2::text IS NULL OR viewer = $2) ORDER BY id DESC LIMIT $3",
        case_id, viewer, min(limit, MAX_VIEWS),
    )  # fmt: skip
    return [ContentView.model_validate(dict(r)) for r in rows]
