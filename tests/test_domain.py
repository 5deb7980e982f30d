"""The validated value types of the shared domain models: text that PostgreSQL can store and
datetimes that carry a timezone and lie in the supported years. Pure: no server needed."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, date, datetime, timedelta
from re import _parser

import pytest
from pydantic import TypeAdapter, ValidationError

from jiesu.case import domain, lifecycle
from jiesu.case.domain import (
    Actor,
    CallbackAction,
    CaseState,
    Channel,
    ComplaintIntake,
    Day,
    Deadlines,
    DispatchInput,
    ExtensionAction,
    ExtensionInput,
    Instant,
    Rating,
    RatingAction,
    RepeatReport,
    Role,
    Status,
    SupplementInput,
    Urgency,
)

DEPARTMENT = Actor(role=Role.DEPARTMENT, name="desk", department_id="urban-management")
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def intake(**overrides: object) -> dict[str, object]:
    return {
        "title": "Shop loudspeaker",
        "description": "Loud adverts until midnight.",
        "category_id": "noise_commercial",
        "grid_id": "G-QH-01-01-1",
        "citizen": {"name": "Wang Fang", "phone": "13800000000"},
        **overrides,
    }


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f", "\x85", "\ud800"])
@pytest.mark.parametrize(
    ("model", "field", "valid"),
    [
        (ComplaintIntake, "title", intake()),
        (ComplaintIntake, "description", intake()),
        (ComplaintIntake, "address", intake()),
        (DispatchInput, "note", {"department_id": "police"}),
        (DispatchInput, "department_id", {"department_id": "police"}),
        (SupplementInput, "text", {}),
    ],
)
def test_control_characters_are_refused(
    model: type, field: str, valid: dict[str, object], char: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        model.model_validate({**valid, field: f"ab{char}cd"})
    assert raised.value.errors()[0]["loc"][-1] == field


def test_newline_and_tab_are_kept_in_free_text_but_not_in_a_title() -> None:
    assert SupplementInput(text="line one\r\n\tline two").text == "line one\r\n\tline two"
    assert ComplaintIntake.model_validate(intake(description="a\nb")).description == "a\nb"
    with pytest.raises(ValidationError):
        ComplaintIntake.model_validate(intake(title="two\nlines"))


@pytest.mark.parametrize(
    "value",
    [
        "2026-03-02T09:00:00",
        "9999-12-31T00:00:00+08:00",
        "1999-12-31T23:00:00Z",
        "0001-01-01T00:00:00Z",
    ],
)
def test_a_datetime_needs_a_timezone_and_a_supported_year(value: str) -> None:
    with pytest.raises(ValidationError):
        TypeAdapter(Instant).validate_python(value)
    with pytest.raises(ValidationError):
        ExtensionInput(reasons="rain", measures="pumps", promised_finish=value)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        RepeatReport(
            report_id="r1", actor=DEPARTMENT, channel=Channel.APP, description="again",
            received_at=value,  # type: ignore[arg-type]
        )


@pytest.mark.parametrize(
    "value", ["0001-01-01", "9999-12-31", "1999-12-31", "2101-01-01", 946684800, "946684800"]
)
def test_a_day_outside_the_supported_years_or_not_a_day_is_refused(value: object) -> None:
    with pytest.raises(ValidationError):
        TypeAdapter(Day).validate_python(value)


def test_a_day_inside_the_supported_years_is_kept() -> None:
    assert TypeAdapter(Day).validate_python("2026-02-28") == date(2026, 2, 28)


@pytest.mark.parametrize("value", ["946684800", " 1e9", "-0.5", 946684800, 1.0e9])
@pytest.mark.parametrize("kind", [Day, Instant])
def test_a_number_is_not_a_day_or_a_moment(kind: object, value: object) -> None:
    """pydantic would read it as a Unix timestamp (found by Schemathesis: ``/reports/daily/0``
    answered the report of 1970-01-01)."""
    with pytest.raises(ValidationError):
        TypeAdapter(kind).validate_python(value)



def _repeats(pattern: re.Pattern[str]) -> list[str]:
    """The kinds of repeat in a pattern's parse tree (MAX_REPEAT, POSSESSIVE_REPEAT...)."""
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, _parser.SubPattern):
            for op, arg in node:
                if str(op).endswith("REPEAT"):
                    found.append(str(op))
                walk(arg)
        elif isinstance(node, tuple | list):
            for part in node:
                walk(part)

    walk(_parser.parse(pattern.pattern))
    return found


def test_the_number_check_never_backtracks() -> None:
    """Every repeat of the "not a number" pattern is possessive: the former
    ``\\d+\\.?\\d*`` split a run of digits two ways and took n² steps to refuse n digits and
    one letter (16,000 characters of a timestamp query parameter: 6.8 s of CPU on the event
    loop; a 2 MiB body field, hours)."""
    kinds = _repeats(domain._NUMBER)
    assert kinds and set(kinds) == {"POSSESSIVE_REPEAT"}, kinds
    with pytest.raises(ValidationError):
        TypeAdapter(Instant).validate_python("1" * 100_000 + "x")


def test_the_number_check_refuses_what_it_refused_before() -> None:
    """The same strings are numbers as with the backtracking pattern (all strings of up to
    six characters over the characters that matter)."""
    before = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")
    for length in range(7):
        for chars in itertools.product(" 1.e+x", repeat=length):
            text = "".join(chars)
            assert bool(domain._NUMBER.fullmatch(text)) == bool(before.fullmatch(text)), text

def _handling(max_extension_days: float = 90.0) -> CaseState:
    return CaseState(
        case_id="JS1", status=Status.HANDLING, title="t", category_id="c", grid_id="g",
        address="", channel=Channel.HOTLINE, urgency=Urgency.GENERAL, received_at=NOW,
        assignment={"department_id": "urban-management", "department_name": "U",  # type: ignore[arg-type]
                    "assigned_at": NOW, "by_rule": True},
        deadlines=Deadlines(accept=NOW + timedelta(hours=2), finish=NOW + timedelta(days=5),
                            rating_window_hours=72, max_extension_days=max_extension_days),
    )


def _extension(ahead: timedelta) -> ExtensionAction:
    return ExtensionAction(actor=DEPARTMENT, reasons="rain", measures="pumps",
                           promised_finish=NOW + ahead)


def test_a_promised_finish_at_most_the_policy_days_ahead_is_allowed() -> None:
    assert lifecycle.check_extension(_handling(), _extension(timedelta(days=90)), NOW) is None


def test_a_promised_finish_beyond_the_policy_days_is_refused() -> None:
    refusal = lifecycle.check_extension(_handling(), _extension(timedelta(days=91)), NOW)
    assert refusal is not None and refusal.code == "invalid_promised_date"
    strict = _handling(max_extension_days=10)
    refusal = lifecycle.check_extension(strict, _extension(timedelta(days=11)), NOW)
    assert refusal is not None and refusal.code == "invalid_promised_date"


def test_deadlines_recorded_before_the_bound_existed_get_the_default() -> None:
    recorded = {"accept": NOW.isoformat(), "finish": NOW.isoformat(), "rating_window_hours": 72}
    assert Deadlines.model_validate(recorded).max_extension_days == 90.0


def _replied(rating: Rating | None) -> CaseState:
    return _handling().model_copy(update={"status": Status.REPLIED, "rating": rating})


CITIZEN = Actor(role=Role.CITIZEN, name="citizen")
OPERATOR_ACTOR = Actor(role=Role.OPERATOR, name="centre")


def test_a_second_rating_in_one_round_is_refused() -> None:
    """Two ``rate`` messages with different request ids delivered together were both applied
    (fault run 5): the second overwrote the first verdict."""
    rate = RatingAction(actor=CITIZEN, rating=Rating.SATISFIED)
    assert lifecycle.check_rating(_replied(None), rate) is None
    refusal = lifecycle.check_rating(_replied(Rating.UNSATISFIED), rate)
    assert refusal is not None and refusal.code == "already_rated"


def test_a_callback_after_a_rating_is_refused() -> None:
    callback = CallbackAction(actor=OPERATOR_ACTOR, rating=Rating.SATISFIED, note="called")
    assert lifecycle.check_callback(_replied(None), callback) is None
    refusal = lifecycle.check_callback(_replied(Rating.SATISFIED), callback)
    assert refusal is not None and refusal.code == "already_rated"
