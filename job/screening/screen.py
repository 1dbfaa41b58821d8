"""Screening rules: pure functions from transactions, policy and history to flags.

Each rule hit is a `Flag` with a reason code and a sentence an approver can read. Rules
only ever add flags; the finance agent may add more later but can never remove one.
Amounts are compared exactly in integer minor units of each transaction's own currency.

This is the rule engine for ledgers of ordinary size, in plain Python. `screen_frame`
applies the same rules to large ledgers as polars expressions; a property test keeps the
two in agreement. Rules that need earlier runs (duplicates, structuring) take the few
relevant `PastPayment`s that `history` found for them; they never scan the audit log.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_CEILING, Decimal
from fractions import Fraction
from typing import TYPE_CHECKING

from job.ledger.ingest import Transaction, currency_exponent, format_amount_display

if TYPE_CHECKING:
    from job.config import DuplicateRule, RoundAmountRule, StructuringRule

__all__ = [
    "Flag",
    "Screening",
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
    "screen_transactions",
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
RULE_ORDER = (LARGE_AMOUNT, VAGUE_MEMO, UNFAMILIAR_VENDOR, STRUCTURING, DUPLICATE_PAYMENT, ROUND_AMOUNT)  # then user rules
UNFAMILIAR_REASON = "vendor is not on the known-vendor list and not in any earlier ledger"


@dataclass(frozen=True, slots=True)
class Flag:
    code: str
    reason: str
    by: str = "rules"  # "rules" or "agent"

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "reason": self.reason, "by": self.by}


@dataclass(frozen=True, slots=True)
class Screening:
    transaction: Transaction
    flags: tuple[Flag, ...]

    @property
    def flagged(self) -> bool:
        return bool(self.flags)


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


def is_round(amount_minor: int, multiple: Fraction) -> bool:
    size = abs(amount_minor)
    return size != 0 and size >= multiple and (size * multiple.denominator) % multiple.numerator == 0


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


def match_earlier_payments(
    candidates: Iterable[tuple[object, str, str, int, int]], past: Sequence[PastPayment], *, window_days: int
) -> dict[object, PastPayment]:
    """For each candidate (key, vendor key, currency, amount, day number), the earlier-run
    payment it repeats: same vendor, currency and amount, at most `window_days` days apart.
    The nearest in days wins, then the one listed first."""
    index: dict[tuple[str, str, int], list[tuple[int, int, PastPayment]]] = {}
    for order, payment in enumerate(past):
        index.setdefault((payment.vendor_key, payment.currency, payment.amount_minor), []).append(
            (day_number(payment.date), order, payment)
        )
    found: dict[object, PastPayment] = {}
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


def screen_transactions(
    transactions: Sequence[Transaction],
    *,
    amount_threshold: Decimal,
    vague_memo_terms: Iterable[str],
    known_vendor_keys: set[str] | frozenset[str],
    structuring: StructuringRule | None = None,
    duplicates: DuplicateRule | None = None,
    round_amounts: RoundAmountRule | None = None,
    history: Sequence[PastPayment] = (),
    user_flags: Mapping[int, Sequence[Flag]] | None = None,
) -> list[Screening]:
    """Apply every rule to every transaction; results keep the input order.

    A rule given as None (or disabled) does not run. `history` holds the earlier runs'
    payments the history rules may need (`history.recent_payments` finds them), and
    `user_flags` the policy file's own rules' hits by position (`rules.evaluate_rules`).
    Duplicates: a payment is flagged when an earlier one has the same vendor, currency and
    amount at most `window_days` apart; earlier means recorded by an earlier run, or in
    this run dated earlier (on the same day: earlier in the file).
    """
    memo_pattern = compile_memo_terms(vague_memo_terms)
    limits: dict[str, int] = {}
    flags: list[list[Flag]] = []
    keys = [normalize_vendor(tx.vendor) for tx in transactions]
    for tx, vendor_key in zip(transactions, keys):
        found: list[Flag] = []
        limit = limits.get(tx.currency)
        if limit is None:
            limit = limits[tx.currency] = threshold_minor(amount_threshold, tx.currency)
        if abs(tx.amount_minor) > limit:
            found.append(Flag(LARGE_AMOUNT, large_amount_reason(tx.amount_minor, tx.currency, limit)))
        hit = memo_pattern.search(tx.memo) if memo_pattern is not None else None
        if hit:
            found.append(Flag(VAGUE_MEMO, vague_memo_reason(hit.group(1).lower())))
        elif not tx.memo.strip():
            found.append(Flag(VAGUE_MEMO, vague_memo_reason(None)))
        if vendor_key not in known_vendor_keys:
            found.append(Flag(UNFAMILIAR_VENDOR, UNFAMILIAR_REASON))
        flags.append(found)

    if structuring is not None and structuring.enabled:
        for index, reason in _structuring_hits(transactions, keys, amount_threshold, structuring, history).items():
            flags[index].append(Flag(STRUCTURING, reason))
    if duplicates is not None and duplicates.enabled:
        for index, reason in _duplicate_hits(transactions, keys, duplicates.window_days, history).items():
            flags[index].append(Flag(DUPLICATE_PAYMENT, reason))
    if round_amounts is not None and round_amounts.enabled:
        multiples: dict[str, Fraction] = {}
        for index, tx in enumerate(transactions):
            multiple = multiples.get(tx.currency)
            if multiple is None:
                multiple = multiples[tx.currency] = round_multiple(round_amounts.multiple, tx.currency)
            if is_round(tx.amount_minor, multiple):
                flags[index].append(Flag(ROUND_AMOUNT, round_amount_reason(tx.amount_minor, tx.currency, round_amounts.multiple)))
    for index, extra in (user_flags or {}).items():
        flags[index].extend(extra)
    return [Screening(tx, tuple(found)) for tx, found in zip(transactions, flags)]


def _structuring_hits(transactions, keys, threshold, rule, history) -> dict[int, str]:
    bands: dict[str, tuple[int, int]] = {}

    def band(currency: str) -> tuple[int, int]:
        if currency not in bands:
            bands[currency] = structuring_band(threshold, rule.band_fraction, currency)
        return bands[currency]

    payments: list[tuple[object, str, int]] = []
    for index, (tx, vendor_key) in enumerate(zip(transactions, keys)):
        low, high = band(tx.currency)
        if tx.amount_minor > 0 and low <= tx.amount_minor <= high:
            payments.append((index, f"{tx.currency} {vendor_key}", day_number(tx.date)))
    groups = {group for _, group, _ in payments}
    for n, past in enumerate(history):
        low, high = band(past.currency)
        group = f"{past.currency} {past.vendor_key}"
        if group in groups and past.amount_minor > 0 and low <= past.amount_minor <= high:
            payments.append((("past", n), group, day_number(past.date)))
    hits = find_structuring(payments, min_payments=rule.min_payments, window_days=rule.window_days)
    return {
        key: structuring_reason(rule.min_payments, rule.window_days, band(transactions[key].currency), transactions[key].currency)
        for key in sorted(k for k in hits if isinstance(k, int))
    }


def _duplicate_hits(transactions, keys, window_days: int, history) -> dict[int, str]:
    days = [day_number(tx.date) for tx in transactions]
    earlier = match_earlier_payments(
        ((i, keys[i], tx.currency, tx.amount_minor, days[i]) for i, tx in enumerate(transactions)), history, window_days=window_days
    )
    hits = {i: duplicate_reason(p.txn_id, p.date, earlier_run=True) for i, p in earlier.items()}
    order = sorted(range(len(transactions)), key=lambda i: (keys[i], transactions[i].currency, transactions[i].amount_minor, days[i], i))
    previous = None
    for i in order:
        tx = transactions[i]
        same = (keys[i], tx.currency, tx.amount_minor)
        if previous is not None and previous[0] == same and days[i] - days[previous[1]] <= window_days and i not in hits:
            before = transactions[previous[1]]
            hits[i] = duplicate_reason(before.txn_id, before.date, earlier_run=False)
        previous = (same, i)
    return hits
