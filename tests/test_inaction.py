"""The inaction signal (不作为信号): a problem reported again after its earlier cases were
replied to and closed (jiesu/intake/history.py, similarity.py)."""

from __future__ import annotations

import itertools
import json
import os
import re
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from helpers import (
    OPERATOR,
    act,
    case,
    department,
    eventually,
    handle_of,
    keep_history,
    register,
    run_tried_once,
)
from temporalio.client import Client

from jiesu.intake import similarity

PAIRS = json.loads((Path(__file__).parent / "data" / "inaction_pairs.json").read_text("utf-8"))
XISHAN = department("twp-xishan")  # illegal building in 西山镇 (QH-03)


def _judged(threshold: float) -> tuple[int, int, int]:
    """True positives, false positives, false negatives of the judge on the labelled pairs."""
    tp = fp = fn = 0
    for pair in PAIRS["pairs"]:
        a = similarity.Report(*pair["a"], phone="13800000001")
        b = similarity.Report(*pair["b"], phone="13800000001" if pair["same_citizen"] else "2")
        found = similarity.judge(a, b, threshold) is not None
        tp += found and pair["same"]
        fp += found and not pair["same"]
        fn += not found and pair["same"]
    return tp, fp, fn


def test_the_judge_on_labelled_pairs_prints_precision_and_recall(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert len(PAIRS["pairs"]) >= 20
    rows = []
    for threshold in (10, 15, 20, similarity.TEXT_THRESHOLD, 30, 35, 40, 50):
        tp, fp, fn = _judged(threshold)
        rows.append((threshold, tp, fp, fn, tp / (tp + fp) if tp + fp else 1.0, tp / (tp + fn)))
    with capsys.disabled():
        print(f"\ninaction judge on {len(PAIRS['pairs'])} labelled pairs")
        print("threshold  tp  fp  fn  precision  recall")
        for t, tp, fp, fn, p, r in rows:
            print(f"{t:9g}  {tp:2d}  {fp:2d}  {fn:2d}  {p:9.2f}  {r:6.2f}")
    chosen = next(r for r in rows if r[0] == similarity.TEXT_THRESHOLD)
    assert chosen[4] == 1.0 and chosen[5] >= 0.8  # no unit supervised for another problem


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("青河县松林路8号", "松林路 ８ 号"),
        ("松林路八号", "松林路8号"),
        ("人民路与河滨路交叉口", "人民路、河滨路交叉口"),
        ("幸福社区3栋", "幸福社区三栋"),
    ],
)
def test_addresses_are_normalised(a: str, b: str) -> None:
    assert similarity.normalise_address(a) == similarity.normalise_address(b)


def test_a_community_is_not_taken_for_a_district() -> None:
    assert similarity.normalise_address("幸福社区北门") == "幸福社区北门"
    assert not similarity.same_place("幸福社区北门", "光明小区北门")


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("幸福路13", "幸福路133", False),  # a house number cut short is another house
        ("幸福路13号", "幸福路133号", False),
        ("幸福路3号", "幸福路13号", False),
        ("松林路8号", "松林路8号3单元", True),  # a more precise address of the same house
        ("松林路8号3单元", "青河县松林路8号", True),
        # 13-2 normalises to 132 (punctuation goes): not told from house 132, so not linked —
        # a missed link costs less than a ladder started against a department wrongly
        ("幸福路13", "幸福路13-2", False),
    ],
)
def test_an_address_within_another_is_the_same_place_unless_a_number_runs_on(
    a: str, b: str, same: bool
) -> None:
    """Found by bench/faults.py (run 9): "Fault road 21980-13" was taken for "…-133", and the
    new case was linked to the other's replied history (不作为信号) and started a ladder."""
    assert similarity.same_place(a, b) is same
    assert similarity.same_place(b, a) is same


async def _handled(
    api: httpx.AsyncClient, pool: asyncpg.Pool, created: dict[str, Any]
) -> None:
    """The unit replies on time and the citizen is satisfied: the case closes (in the read
    model too, which intake consults: before, a new report would be merged into it)."""
    case_id = created["case_id"]

    async def assigned() -> bool:
        return (await case(api, case_id, OPERATOR))["status"] == "assigned"

    await eventually(assigned)
    await act(api, case_id, "accept", XISHAN)
    await act(api, case_id, "contact", XISHAN, note="Met the citizen on site")
    await act(api, case_id, "reply", XISHAN, outcome="explained",
              text="Inspected: the owner was told to remove it",
              evidence=["https://evidence.test/wall.jpg"])  # fmt: skip
    await act(api, case_id, "rating", token=created["citizen_token"], rating="satisfied")

    async def closed() -> bool:
        status = await pool.fetchval("SELECT status FROM cases WHERE case_id = $1", case_id)
        return status == "closed"

    await eventually(closed)


async def test_the_third_report_after_replies_puts_the_unit_under_supervision(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool
) -> None:
    address = f"西山镇松林路{os.getpid()}号"
    reports = [
        "松林路楼下有人私自砌了一堵墙，把消防通道堵住了",
        "那堵违建的墙又砌起来了，消防通道还是堵着",
        "违建的墙拆了又砌，消防通道被墙堵死，消防车进不来",
    ]
    common = {"category_id": "illegal_building", "grid_id": "G-QH-03-01-1", "address": address}
    first = await register(api, description=reports[0], **common)
    await _handled(api, pool, first)
    second = await register(api, description=reports[1], **common)
    state = await eventually(lambda: _linked(api, second["case_id"]))
    assert state["earlier_cases"] == [first["case_id"]]
    assert state["escalation"] is None  # two reports: linked, not yet supervised
    await _handled(api, pool, second)

    third = await register(api, description=reports[2], **common)
    state = await eventually(lambda: _linked(api, third["case_id"]))
    assert state["earlier_cases"] == [first["case_id"], second["case_id"]]
    linked = next(e for e in state["events"] if e["kind"] == "linked_to_history")
    assert linked["data"]["reports"] == 3 and linked["data"]["window_days"] == 90
    assert state["escalation"]["trigger"] == "repeated_although_replied"
    assert state["assignment"]["department_id"] == "twp-xishan"  # the unit on the ladder

    handle = handle_of(client, third["case_id"])
    await handle.terminate("test finished")
    await keep_history(handle, "inaction_repeated_although_replied")


async def _linked(api: httpx.AsyncClient, case_id: str) -> dict[str, Any] | None:
    state = await case(api, case_id, OPERATOR)
    kinds = [e["kind"] for e in state["events"]]
    return state if "linked_to_history" in kinds and state["assignment"] else None


def test_two_reporters_without_a_phone_are_not_the_same_citizen() -> None:
    wall = "那堵违建的墙又砌起来了，消防通道还是堵着"
    a = similarity.Report(wall, "松林路8号", phone=None)
    b = similarity.Report(wall, "河滨路30号", phone=None)
    assert similarity.judge(a, b) is None  # different places, no contact to compare


class _CountedWords(frozenset[str]):
    """A description's words that count how often they are read through."""

    reads = 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        type(self).reads += 1
        return super().__iter__()


def test_the_other_description_is_read_through_once_not_once_a_word() -> None:
    """Each word was compared with each of the other's words: two descriptions of 5,000
    characters (1,250 distinct words) took 0.2 s a candidate, 20 s for intake's 100."""
    mine = frozenset(f"w{i:04d}" for i in range(1250))
    others = _CountedWords(f"v{i:04d}" for i in range(1250))
    _CountedWords.reads = 0
    similarity._share_found(mine, others)
    assert _CountedWords.reads <= 2


def test_a_word_is_found_as_before() -> None:
    """Found when it is part of one of the other's words, or one of them of two characters
    or more is part of it — as each word compared with each."""

    def before(word: str, others: frozenset[str]) -> bool:
        return any(word in o or (len(o) >= 2 and o in word) for o in others)

    others = frozenset({"焚烧", "公共厕所", "a", "xyz", "油烟机", "烧烤摊"})
    for word in ["烧", "厕所", "公共厕所门口", "油烟", "机", "烧烤", "露天焚烧垃圾", "ya", "a",
                 "xy", "wxyzw", "b", "摊位", "烤摊", "厕"]:  # fmt: skip
        assert similarity._Others(others).found(word) is before(word, others), word
    assert not similarity._Others(frozenset()).found("烧")


def test_a_run_of_numerals_is_tried_once() -> None:
    """The numerals before 号/栋/楼 are looked for from a run's first numeral only: tried from
    each numeral, a run not followed by 号 cost n² steps (a description of 5,000 numerals:
    0.16 s of CPU a text, on the event loop for the intake and each of its 100 candidates)."""
    assert run_tried_once(similarity._NUMERAL_RUN)
    assert similarity._numerals("一" * 100_000 + "x") == "一" * 100_000 + "x"
    assert similarity._numerals("十二号，" * 3) == "12号，" * 3


def test_numerals_read_as_before() -> None:
    """The same text for every string of up to six of 一十号x as with the former pattern."""
    before = re.compile(r"[零〇一二两三四五六七八九十]+(?=[号栋楼单元弄巷排室层])")
    for length in range(7):
        for chars in itertools.product("一十号x", repeat=length):
            text = "".join(chars)
            assert similarity._NUMERAL_RUN.sub("<>", text) == before.sub("<>", text), text
