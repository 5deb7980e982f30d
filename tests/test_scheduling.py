"""The test processes take the slowest files first (tests/scheduling.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from scheduling import RECORD, _recorded_seconds, file_seconds, slowest_first


def _items(*nodeids: str) -> list[Any]:
    return [SimpleNamespace(nodeid=nodeid) for nodeid in nodeids]


def test_the_slowest_file_goes_first_and_a_files_tests_keep_their_order() -> None:
    items = _items(
        "tests/test_a.py::one", "tests/test_a.py::two",
        "tests/test_b.py::one", "tests/test_b.py::two", "tests/test_b.py::three",
        "tests/test_c.py::one",
    )  # fmt: skip
    ordered = slowest_first(items, {"test_a.py": 1.0, "test_b.py": 30.0, "test_c.py": 5.0})
    assert [i.nodeid for i in ordered] == [
        "tests/test_b.py::one", "tests/test_b.py::two", "tests/test_b.py::three",
        "tests/test_c.py::one",
        "tests/test_a.py::one", "tests/test_a.py::two",
    ]  # fmt: skip


def test_a_file_missing_from_the_record_counts_the_median() -> None:
    items = _items("tests/test_new.py::t", "tests/test_fast.py::t", "tests/test_slow.py::t")
    seconds = {"test_fast.py": 1.0, "test_mid.py": 10.0, "test_slow.py": 100.0}
    ordered = slowest_first(items, seconds)
    assert [i.nodeid for i in ordered] == [
        "tests/test_slow.py::t", "tests/test_new.py::t", "tests/test_fast.py::t",
    ]  # fmt: skip


def test_seconds_per_file_are_read_from_a_junit_report(tmp_path: Path) -> None:
    report = tmp_path / "junit.xml"
    report.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.test_a" name="one" time="1.25"/>'
        '<testcase classname="tests.test_a" name="two" time="2.5"/>'
        '<testcase classname="tests.test_b.TestThing" name="one" time="4"/>'
        "</testsuite></testsuites>"
    )
    assert file_seconds(report) == {"test_a.py": 3.8, "test_b.py": 4.0}


def test_the_record_names_test_files_that_exist() -> None:
    recorded = _recorded_seconds()
    assert recorded, f"{RECORD} is missing or empty"
    here = {p.name for p in Path(__file__).parent.rglob("test_*.py")}
    assert set(recorded) <= here, sorted(set(recorded) - here)
