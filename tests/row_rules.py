"""The row-by-row screening rules of the retired row engine, kept as a test oracle.

The product screens every run column-wise (`job.screening.screen_frame`); these are the
same rules written the plain way, one transaction at a time, from the same pure pieces
(`job.screening.screen`: reasons, vendor keys, thresholds, bands). `test_screen_frame`
checks that both flag the same rows with the same reasons in the same order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from job.config import DuplicateRule, RoundAmountRule, StructuringRule
from job.ledger.ingest import Transaction
from job.screening.screen import (
    DUPLICATE_PAYMENT,
    LARGE_AMOUNT,
    ROUND_AMOUNT,
    STRUCTURING,
    UNFAMILIAR_REASON,
    UNFAMILIAR_VENDOR,
    VAGUE_MEMO,
    Flag,
    PastPayment,
    compile_memo_terms,
    day_number,
    duplicate_reason,
    find_structuring,
    large_amount_reason,
    match_earlier_payments,
    normalize_vendor,
    round_amount_reason,
    round_multiple,
    structuring_band,
    structuring_reason,
    threshold_minor,
    vague_memo_reason,
)


@dataclass(frozen=True, slots=True)
class Screening:
    transaction: Transaction
    flags: tuple[Flag, ...]

    @property
    def flagged(self) -> bool:
        return bool(self.flags)


def is_round(amount_minor: int, multiple: Fraction) -> bool:
    size = abs(amount_minor)
    return size != 0 and size >= multiple and (size * multiple.denominator) % multiple.numerator == 0


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
