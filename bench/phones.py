"""Citizens' phone numbers for the harnesses' cases: real-looking mainland mobile numbers.

A number the product takes for a landline or a short number gets no SMS
(jiesu.notify.sms.is_mobile: 1[3-9] and nine digits): its notices are written ``skipped``.
The harnesses made up longer numbers (13–14 digits) before that rule, so since it their cases
sent no citizen SMS — less work than a real case, and "lost" notices to the fault harness."""

from __future__ import annotations

MOBILE_DIGITS = 11


def mobile(n: int, tag: str, prefix: str, width: int) -> str:
    """An 11-digit mobile number: ``prefix`` (1[3-9]…), the last digits of the run's ``tag``
    that fit (runs on one database keep their citizens apart), then ``n`` in ``width`` digits
    (distinct for every ``n`` below 10 ** width)."""
    room = MOBILE_DIGITS - len(prefix) - width
    if room < 0 or not 0 <= n < 10**width:
        raise ValueError(f"no {MOBILE_DIGITS}-digit number for {prefix!r}, n={n}, width={width}")
    kept = tag[len(tag) - room:] if room else ""
    return prefix + kept.rjust(room, "0") + f"{n:0{width}d}"
