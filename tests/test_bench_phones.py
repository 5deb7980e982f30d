"""The harnesses' citizens have mobile numbers, so their cases send the SMS a real case sends
(bench/phones.py; jiesu.notify.sms.is_mobile)."""

from __future__ import annotations

import pytest

from bench.phones import mobile
from jiesu.notify.sms import is_mobile

# (tag, prefix, width) as bench/case_driver.py, bench/faults.py and bench/scale.py call it
HARNESSES = [("12345", "13", 6), ("12345", "139", 5), ("12345", "15", 7), ("7", "16", 7)]


@pytest.mark.parametrize(("tag", "prefix", "width"), HARNESSES)
def test_every_harness_number_is_a_distinct_mobile(tag: str, prefix: str, width: int) -> None:
    numbers = [mobile(n, tag, prefix, width) for n in (0, 1, 299, 10**width - 1)]
    assert all(is_mobile(number) and len(number) == 11 for number in numbers), numbers
    assert len(set(numbers)) == len(numbers)


def test_runs_with_other_tags_get_other_numbers() -> None:
    assert mobile(5, "12345", "139", 5) != mobile(5, "12346", "139", 5)


def test_a_number_that_does_not_fit_is_refused() -> None:
    with pytest.raises(ValueError):
        mobile(10**5, "1", "139", 5)
