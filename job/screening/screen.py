"""Screening rules: the pure pieces every rule is made of, written once.

Each rule hit is a `Flag` with a reason code and a sentence an approver can read. Rules
only ever add flags; the finance agent may add more later but can never remove one.
Amounts are compared exactly in integer minor units of each transaction's own currency.

Here are the codes, the reasons' texts, the vendor key, the thresholds and bands in minor
units, and the two rules that work on a few payments in Python (`find_structuring`,
`match_earlier_payments`); `screen_frame` applies the rules to a run's rows column-wise
with them. Rules that need earlier runs (duplicates, structuring) take the few relevant
`PastPayment`s that `history` found for them; they never scan the audit log.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_CEILING, Decimal
from fractions import Fraction
from typing import TypeVar

from job.ledger.ingest import currency_exponent, format_amount_display

__all__ = [
    "AMENDED",
    "Flag",
    "PastPayment",
    "LARGE_AMOUNT",
    "VAGUE_MEMO",
    "UNFAMILIAR_VENDOR",
    "STRUCTURING",
    "DUPLICATE_PAYMENT",
    "ROUND_AMOUNT",
    "AGENT_CONCERN",
    "RULE_ORDER",
    "normalize_vendor",
    "threshold_minor",
    "structuring_band",
    "round_multiple",
    "find_structuring",
    "match_earlier_payments",
    "large_amount_reason",
    "vague_memo_reason",
    "structuring_reason",
    "duplicate_reason",
    "round_amount_reason",
    "UNFAMILIAR_REASON",
]

LARGE_AMOUNT = "large_amount"
VAGUE_MEMO = "vague_memo"
UNFAMILIAR_VENDOR = "unfamiliar_vendor"
STRUCTURING = "structuring"
DUPLICATE_PAYMENT = "duplicate_payment"
ROUND_AMOUNT = "round_amount"
AGENT_CONCERN = "agent_concern"
AMENDED = "amended"  # a known id back with other facts (`amendments`)
RULE_ORDER = (AMENDED, LARGE_AMOUNT, VAGUE_MEMO, UNFAMILIAR_VENDOR, STRUCTURING, DUPLICATE_PAYMENT, ROUND_AMOUNT)  # then user rules
UNFAMILIAR_REASON = "vendor is not on the known-vendor list and not in any earlier ledger"


@dataclass(frozen=True, slots=True)
class Flag:
    code: str
    reason: str
    by: str = "rules"  # "rules" or "agent"

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "reason": self.reason, "by": self.by}


@dataclass(frozen=True, slots=True)
class PastPayment:
    """A payment an earlier run recorded, as far as the history rules need it."""

    txn_id: str
    date: str
    vendor_key: str
    currency: str
    amount_minor: int


def normalize_vendor(name: str) -> str:
    """The key vendors are compared by: case-folded, inner whitespace collapsed."""
    return " ".join(name.split()).casefold()


def threshold_minor(threshold: Decimal, currency: str) -> int:
    """The threshold in a currency's minor units; amounts strictly above it are flagged.

    A threshold finer than the currency's minor unit (10000.50 for JPY) rounds down, so
    nothing above the configured amount escapes.
    """
    scaled = threshold.scaleb(currency_exponent(currency))
    return int(scaled.to_integral_value(rounding="ROUND_FLOOR"))


def structuring_band(threshold: Decimal, fraction: Decimal, currency: str) -> tuple[int, int]:
    """(lowest, highest) amount in minor units that counts towards structuring, both included.

    From `fraction` of the threshold (rounded up to the minor unit, so 90% of 10,000.00 is
    9,000.00 exactly) to the threshold itself (rounded down, as `threshold_minor`).
    """
    low = (threshold * fraction).scaleb(currency_exponent(currency)).to_integral_value(rounding=ROUND_CEILING)
    return int(low), threshold_minor(threshold, currency)


def round_multiple(multiple: Decimal, currency: str) -> Fraction:
    """The round-amount multiple in a currency's minor units (a fraction when finer than one)."""
    return Fraction(multiple) * 10 ** currency_exponent(currency)


def large_amount_reason(amount_minor: int, currency: str, limit: int) -> str:
    return (
        f"amount {format_amount_display(amount_minor, currency)} {currency} is above the {format_amount_display(limit, currency)} threshold"
    )


def vague_memo_reason(term: str | None) -> str:
    return f"memo uses the vague term '{term}'" if term is not None else "memo is empty"


def structuring_reason(min_payments: int, window_days: int, band: tuple[int, int], currency: str) -> str:
    low, high = (format_amount_display(v, currency) for v in band)
    return (
        f"one of {min_payments} or more payments to this vendor within {window_days} days, "
        f"each between {low} and {high} {currency} (just under the approval threshold)"
    )


def duplicate_reason(txn_id: str, day: str, *, earlier_run: bool) -> str:
    where = ", recorded by an earlier run" if earlier_run else ""
    return f"same vendor and amount as {txn_id} on {day}{where}"


def round_amount_reason(amount_minor: int, currency: str, multiple: Decimal) -> str:
    shown = (
        format_amount_display(int(multiple.scaleb(currency_exponent(currency))), currency)
        if multiple == multiple.to_integral_value()
        else str(multiple)
    )
    return f"amount {format_amount_display(amount_minor, currency)} {currency} is a whole multiple of {shown}"


def day_number(iso: str) -> int:
    return date.fromisoformat(iso).toordinal()


def find_structuring(payments: Sequence[tuple[object, str, int]], *, min_payments: int, window_days: int) -> set[object]:
    """Which payments belong to a run of `min_payments` or more within `window_days` days.

    `payments` are (key, group, day number) for the payments in the structuring band;
    `group` is the vendor and currency. A window of N days holds payments at most N - 1
    days apart. Every payment inside a window that holds enough payments is returned.
    """
    by_group: dict[str, list[tuple[int, object]]] = {}
    for key, group, day in payments:
        by_group.setdefault(group, []).append((day, key))
    hits: set[object] = set()
    for entries in by_group.values():
        if len(entries) < min_payments:
            continue
        entries.sort(key=lambda e: e[0])
        start, marked = 0, -1  # marked: the last index already returned
        for end in range(len(entries)):
            while entries[end][0] - entries[start][0] > window_days - 1:
                start += 1
            if end - start + 1 >= min_payments:
                for i in range(max(start, marked + 1), end + 1):
                    hits.add(entries[i][1])
                marked = end
    return hits


K = TypeVar("K")  # what the caller identifies a candidate by


def match_earlier_payments(
    candidates: Iterable[tuple[K, str, str, int, int]], past: Sequence[PastPayment], *, window_days: int
) -> dict[K, PastPayment]:
    """For each candidate (key, vendor key, currency, amount, day number), the earlier-run
    payment it repeats: same vendor, currency and amount, at most `window_days` days apart.
    The nearest in days wins, then the one listed first."""
    index: dict[tuple[str, str, int], list[tuple[int, int, PastPayment]]] = {}
    for order, payment in enumerate(past):
        index.setdefault((payment.vendor_key, payment.currency, payment.amount_minor), []).append(
            (day_number(payment.date), order, payment)
        )
    found: dict[K, PastPayment] = {}
    for key, vendor_key, currency, amount, day in candidates:
        best = None
        for past_day, order, payment in index.get((vendor_key, currency, amount), ()):
            distance = abs(past_day - day)
            if distance <= window_days and (best is None or (distance, order) < best[:2]):
                best = (distance, order, payment)
        if best is not None:
            found[key] = best[2]
    return found


def compile_memo_terms(terms: Iterable[str]) -> re.Pattern[str] | None:
    words = [re.escape(t.strip()) for t in terms if t.strip()]
    if not words:
        return None
    return re.compile(r"(?<!\w)(" + "|".join(sorted(words, key=len, reverse=True)) + r")(?!\w)", re.IGNORECASE)
