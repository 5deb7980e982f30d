"""Is a new report the same problem as an earlier one? (同一诉求的判断)

Used for the inaction signal (jiesu/intake/history.py): a report of a problem whose earlier
case was replied to and closed. The candidates already share the category and the grid; the
judge then needs the same citizen or the same place, and a description that says the same:

- **place**: the addresses, normalised (:func:`normalise_address`: full-width to half-width,
  Chinese numerals to digits, no spaces or punctuation, the county's name dropped), are equal
  or one contains the other (松林路8号 / 青河县松林路８号院);
- **description**: the content words of both descriptions (segmented by ``jieba``; stop words,
  punctuation, numbers and the words of the address dropped), each weighted by its inverse
  document frequency from jieba's own table (a rare word such as 油烟 says more than 门口). A
  word of one description is found in the other when it equals or is part of one of its words
  (烧 in 焚烧, 厕所 in 公共厕所). The similarity is the mean of the two weighted shares found, at
  least :data:`TEXT_THRESHOLD`. The threshold is measured on the labelled pairs of
  tests/data/inaction_pairs.json (precision and recall printed by tests/test_inaction.py; the
  table is in docs/intake.md).
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from functools import cache, lru_cache

import jieba

jieba.setLogLevel(logging.WARNING)  # not the dictionary's loading messages on every start



def warm_up() -> None:
    """Load jieba's dictionary and IDF table now (about a second of CPU, several on a busy
    machine). Left to the first description it segments, that load runs inside a request and
    holds the API's event loop meanwhile: every other request waits behind it
    (docs/performance.md)."""
    jieba.initialize()
    _idf()


@cache
def _idf() -> tuple[dict[str, float], float]:
    """jieba's IDF table and its median, imported on first use: importing ``jieba.analyse``
    loads the part-of-speech model too (about 1.5 s of CPU), which every process importing
    this module paid at start — each ``jiesu`` command, most of which never compare texts."""
    import jieba.analyse

    tfidf = jieba.analyse.default_tfidf
    return tfidf.idf_freq, tfidf.median_idf


TEXT_THRESHOLD = 25.0
"""Similarity (0–100) from which two descriptions say the same. On the 32 labelled pairs it
gives precision 1.00 and recall 0.82 (14 of 17 same problems); at 20 precision falls to 0.88
for no more recall. A false match puts a unit under supervision unjustly, so precision comes
first."""

_NUMERALS = dict(zip("零〇一二两三四五六七八九", "001223456789", strict=True))
_PUNCTUATION = re.compile(r"[\s\W_]+", re.UNICODE)
# A leading province/city/county, which every address of the county may or may not repeat;
# not 社区/小区/园区… (a community's name is part of the place).
_PREFIX = re.compile(r"^(.{2,8}?(省|市|自治州))?(.{2,8}?(县|(?<![社小园校景街片城])区))?")
_CONNECTORS = re.compile(r"[与和及]")  # 人民路与河滨路交叉口 = 人民路河滨路交叉口
# A run of numerals before 号/栋/楼/…, tried from the run's first numeral only (the
# lookbehind): without it every numeral of a run not followed by 号 started a match that ran to
# the run's end and gave it back (n² steps: 5,000 numerals in a description, 0.16 s a text).
_NUMERAL_RUN = re.compile(
    r"(?<![零〇一二两三四五六七八九十])[零〇一二两三四五六七八九十]++(?=[号栋楼单元弄巷排室层])"
)
STOP_WORDS = frozenset(
    "的 了 又 在 是 有 和 与 及 也 都 就 还 被 把 让 给 我 我们 你 他 她 它 这 那 这个 那个 "
    "一直 已经 现在 今天 昨天 每天 天天 总是 还是 依然 仍然 再次 多次 一次 又一次 请 希望 "
    "要求 反映 投诉 举报 市民 居民 来电 称 说 问题 情况 处理 解决 一下 没有 不 很 非常 "
    "特别 啊 吧 呢 吗 了 着 过 个 从 到 对 向 于 为 等".split()
)


def _numerals(text: str) -> str:
    """Chinese numerals to digits, enough for house numbers: 八号 → 8号, 十二号 → 12号."""

    def number(match: re.Match[str]) -> str:
        chars = match.group(0)
        if "十" not in chars:
            return "".join(_NUMERALS[c] for c in chars)
        tens, _, units = chars.partition("十")
        value = (int(_NUMERALS[tens]) if tens else 1) * 10 + (int(_NUMERALS[units]) if units else 0)
        return str(value)

    return _NUMERAL_RUN.sub(number, text)


def normalise_address(address: str) -> str:
    """The address as a comparable key: NFKC (full-width digits and letters), lower case,
    numerals before 号/栋/楼/… as digits, without spaces and punctuation, and without a
    leading province/city/county (which every address of the county shares)."""
    text = unicodedata.normalize("NFKC", address).lower()
    text = _CONNECTORS.sub("", _PUNCTUATION.sub("", _numerals(text)))
    return _PREFIX.sub("", text, count=1) or text


def same_place(a: str, b: str) -> bool:
    """The same address, or one a more precise form of the other (松林路8号 / 松林路8号3单元) —
    never by a number cut short: 幸福路13 is not 幸福路133."""
    x, y = normalise_address(a), normalise_address(b)
    if not x or not y:
        return False
    shorter, longer = sorted((x, y), key=len)
    return x == y or (len(shorter) >= 4 and _within(shorter, longer))


def _within(part: str, whole: str) -> bool:
    """``part`` in ``whole``, where no number of ``part`` runs on into more digits."""
    start = whole.find(part)
    while start != -1:
        end = start + len(part)
        runs_on = (part[-1].isdigit() and end < len(whole) and whole[end].isdigit()) or (
            part[0].isdigit() and start > 0 and whole[start - 1].isdigit()
        )
        if not runs_on:
            return True
        start = whole.find(part, start + 1)
    return False


@lru_cache(maxsize=4096)
def words(text: str, address: str = "") -> frozenset[str]:
    """The content words of a description (jieba, precise mode), without the address's."""
    place = normalise_address(address)
    normal = _numerals(unicodedata.normalize("NFKC", text).lower())
    return frozenset(
        w for w in jieba.lcut(normal)
        if w.strip() and w not in STOP_WORDS and not _PUNCTUATION.fullmatch(w)
        and not w.isdigit() and w not in place
    )  # fmt: skip


def _weight(word: str) -> float:
    frequencies, median = _idf()
    return float(frequencies.get(word, median))


class _Others:
    """The other description's words, read once: ``word`` is found when it is part of one of
    them (one search of them joined, in C) or one of them of two characters or more is part
    of ``word`` (its substrings of their lengths, looked up). Comparing each word with each
    word instead cost n² Python steps: two descriptions of 5,000 characters (1,250 distinct
    words each) 0.2 s a candidate, 20 s for intake's 100 candidates, on the event loop."""

    def __init__(self, others: frozenset[str]) -> None:
        # a description has no control characters (domain.Text), so no word holds "\0"
        # and a match in the joined text never spans two words
        self.joined = "\0".join(others)
        self.words = {o for o in others if len(o) >= 2}
        self.lengths = sorted({len(o) for o in self.words})

    def found(self, word: str) -> bool:
        if word in self.joined:
            return True
        return any(
            word[i : i + n] in self.words
            for n in self.lengths if n <= len(word)
            for i in range(len(word) - n + 1)
        )  # fmt: skip


def _share_found(mine: frozenset[str], others: frozenset[str]) -> float:
    total = sum(_weight(w) for w in mine)
    if not total:
        return 0.0
    found = _Others(others).found
    return sum(_weight(w) for w in mine if found(w)) / total


def text_similarity(a: str, b: str, address_a: str = "", address_b: str = "") -> float:
    """0–100: the mean of the IDF-weighted shares of each description's words found in the
    other's (see the module's docstring)."""
    x, y = words(a, address_a), words(b, address_b)
    return round(50.0 * (_share_found(x, y) + _share_found(y, x)), 1)


@dataclass(frozen=True)
class Report:
    """What the judge compares (category and grid are equal already)."""

    description: str
    address: str
    phone: str | None  # the citizen's phone (or e-mail when reported by mail without one)


@dataclass(frozen=True)
class Match:
    same_citizen: bool
    same_place: bool
    similarity: float


def judge(new: Report, earlier: Report, threshold: float = TEXT_THRESHOLD) -> Match | None:
    """The match of the same problem, or None: same citizen or same place, and a description
    at least ``threshold`` similar."""
    citizen = bool(new.phone) and new.phone == earlier.phone  # no contact: not the same
    place = same_place(new.address, earlier.address)
    if not (citizen or place):
        return None
    similarity = text_similarity(
        new.description, earlier.description, new.address, earlier.address
    )
    if similarity < threshold:
        return None
    return Match(same_citizen=citizen, same_place=place, similarity=similarity)
