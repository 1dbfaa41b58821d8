"""The screening rules of `screen`, as polars expressions over a large ledger's frame.

Same rules, same reasons, same order of flags; a property test checks that this and
`screen.screen_transactions` flag exactly the same transactions with the same reasons.
Most rows are clean, so everything is computed as columns and only the flagged rows come
back to Python, as `Screening`s. Where a rule needs Python's exact semantics (the vague-memo
regex, vendor-name folding, date parsing) it runs once per distinct value, not per row.
Structuring runs `screen.find_structuring` on the few payments in the band; duplicates
sort by (vendor, currency, amount, day, position) and compare neighbours, and look up
earlier runs through `history` for the candidates only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

import polars as pl

from .config import Policy
from .ingest import Transaction
from .screen import (
    DUPLICATE_PAYMENT,
    LARGE_AMOUNT,
    ROUND_AMOUNT,
    STRUCTURING,
    UNFAMILIAR_REASON,
    UNFAMILIAR_VENDOR,
    VAGUE_MEMO,
    Flag,
    PastPayment,
    Screening,
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

__all__ = ["FrameScreening", "screen_frame", "vendor_keys"]

_EPOCH_ORDINAL = 719163  # date(1970, 1, 1).toordinal(): polars days count from 1970-01-01


@dataclass(slots=True)
class FrameScreening:
    """The flagged rows of a frame, by position, and the vendor key of every row's vendor."""

    flagged: dict[int, list[Flag]]
    vendor_key_of: dict[str, str]


def vendor_keys(vendors: pl.Series) -> dict[str, str]:
    """`screen.normalize_vendor` of each distinct vendor name."""
    return {name: normalize_vendor(name) for name in vendors.unique().to_list()}


def screen_frame(
    frame: pl.DataFrame,
    policy: Policy,
    *,
    known_vendor_keys: set[str] | frozenset[str],
    history: Sequence[PastPayment] = (),
    user_flags: Mapping[int, Sequence[Flag]] | None = None,
) -> FrameScreening:
    """Apply every rule to every row of `frame` (columns of `ingest_fast.TXN_SCHEMA`).

    Row positions stand for the order of the transactions, as the list order does for
    `screen_transactions` (duplicates: earlier position wins on the same day).
    """
    if frame.height == 0:
        return FrameScreening({}, {})
    keys = vendor_keys(frame["vendor"])
    key_list = sorted(set(keys.values()))
    key_code = {key: n for n, key in enumerate(key_list)}
    vendor_code = {name: key_code[key] for name, key in keys.items()}
    currencies = sorted(frame["currency"].unique().to_list())
    currency_code = {c: n for n, c in enumerate(currencies)}
    limits = {currency_code[c]: threshold_minor(policy.amount_threshold, c) for c in currencies}

    # compact columns for the rules: position, vendor key and currency as small codes, amount, day
    base = frame.select(
        row=pl.int_range(0, pl.len(), dtype=pl.UInt32),
        vkey=pl.col("vendor").replace_strict(vendor_code, return_dtype=pl.UInt32),
        cur=pl.col("currency").replace_strict(currency_code, return_dtype=pl.UInt16),
        amount=pl.col("amount_minor"),
        day=pl.col("date").cast(pl.Int32),
    )
    large = base.select(pl.col("amount").abs() > pl.col("cur").replace_strict(limits, return_dtype=pl.Int64)).to_series()
    unknown = [key_code[k] for k in key_list if k not in known_vendor_keys]

    flags: dict[int, list[Flag]] = {}
    large_rows = large.arg_true().to_list()
    vague = _vague_memos(frame["memo"], policy.vague_memo_terms)
    unfamiliar_rows = base["vkey"].is_in(unknown).arg_true().to_list()
    per_row = _values(frame, sorted(set(large_rows)))
    for row in large_rows:
        amount, currency = per_row[row]
        flags.setdefault(row, []).append(Flag(LARGE_AMOUNT, large_amount_reason(amount, currency, limits[currency_code[currency]])))
    for row, term in vague:
        flags.setdefault(row, []).append(Flag(VAGUE_MEMO, vague_memo_reason(term)))
    unfamiliar = Flag(UNFAMILIAR_VENDOR, UNFAMILIAR_REASON)
    for row in unfamiliar_rows:
        flags.setdefault(row, []).append(unfamiliar)

    if policy.structuring.enabled:
        for row, reason in _structuring(base, key_list, currencies, policy, history).items():
            flags.setdefault(row, []).append(Flag(STRUCTURING, reason))
    if policy.duplicates.enabled:
        for row, reason in _duplicates(frame, base, key_list, currencies, policy.duplicates.window_days, history).items():
            flags.setdefault(row, []).append(Flag(DUPLICATE_PAYMENT, reason))
    if policy.round_amounts.enabled:
        for row, reason in _round_amounts(frame, base, currencies, policy.round_amounts.multiple).items():
            flags.setdefault(row, []).append(Flag(ROUND_AMOUNT, reason))
    for row, extra in (user_flags or {}).items():
        flags.setdefault(row, []).extend(extra)
    return FrameScreening(flags, keys)


def _values(frame: pl.DataFrame, rows: list[int]) -> dict[int, tuple[int, str]]:
    if not rows:
        return {}
    picked = frame.select("amount_minor", "currency")[rows]
    return {row: (amount, currency) for row, (amount, currency) in zip(rows, picked.iter_rows())}


def _vague_memos(memos: pl.Series, terms: Sequence[str]) -> list[tuple[int, str | None]]:
    """(row, vague term or None for an empty memo), by Python's regex on each candidate memo."""
    pattern = compile_memo_terms(terms)
    words = [t.strip() for t in terms if t.strip()]
    candidates = memos == ""
    if pattern is not None:
        if all(w.isascii() for w in words):
            # an ASCII memo can only match an ASCII term; case-insensitive ASCII search finds
            # every such memo, and any other memo is checked by the regex itself
            found = memos.str.contains_any(words, ascii_case_insensitive=True)
            candidates = candidates | found | ~memos.str.contains(r"^[\x00-\x7f]*$")
        else:
            candidates = pl.Series([True] * len(memos))
    rows = candidates.arg_true()
    if rows.len() == 0:
        return []
    texts = memos.gather(rows)
    verdict: dict[str, str | None | bool] = {}
    for text in texts.unique().to_list():
        if pattern is not None and (hit := pattern.search(text)):
            verdict[text] = hit.group(1).lower()
        elif not text.strip():
            verdict[text] = None
        else:
            verdict[text] = False
    return [(row, verdict[text]) for row, text in zip(rows.to_list(), texts.to_list()) if verdict[text] is not False]


def _structuring(base, key_list, currencies, policy: Policy, history) -> dict[int, str]:
    rule = policy.structuring

    def band_of(currency: str) -> tuple[int, int]:
        return structuring_band(policy.amount_threshold, rule.band_fraction, currency)

    bands = {n: band_of(c) for n, c in enumerate(currencies)}
    low = pl.col("cur").replace_strict({n: b[0] for n, b in bands.items()}, return_dtype=pl.Int64)
    high = pl.col("cur").replace_strict({n: b[1] for n, b in bands.items()}, return_dtype=pl.Int64)
    band = base.filter((pl.col("amount") > 0) & (pl.col("amount") >= low) & (pl.col("amount") <= high))
    if band.height == 0:
        return {}
    payments: list[tuple[object, str, int]] = [
        (row, f"{currencies[cur]} {key_list[vkey]}", day + _EPOCH_ORDINAL) for row, vkey, cur, day in band.select("row", "vkey", "cur", "day").iter_rows()
    ]
    groups = {group for _, group, _ in payments}
    for n, past in enumerate(history):
        group = f"{past.currency} {past.vendor_key}"
        lo, hi = band_of(past.currency)
        if group in groups and past.amount_minor > 0 and lo <= past.amount_minor <= hi:
            payments.append((("past", n), group, day_number(past.date)))
    hits = find_structuring(payments, min_payments=rule.min_payments, window_days=rule.window_days)
    currency_of = dict(zip(band["row"].to_list(), band["cur"].to_list()))
    return {
        row: structuring_reason(rule.min_payments, rule.window_days, bands[currency_of[row]], currencies[currency_of[row]])
        for row in sorted(k for k in hits if isinstance(k, int))
    }


def _duplicates(frame, base, key_list, currencies, window_days: int, history) -> dict[int, str]:
    hits: dict[int, str] = {}
    if history:
        vendor_code = {key: n for n, key in enumerate(key_list)}
        currency_code = {c: n for n, c in enumerate(currencies)}
        wanted = {(vendor_code[p.vendor_key], currency_code[p.currency], p.amount_minor) for p in history
                  if p.vendor_key in vendor_code and p.currency in currency_code}
        triples = pl.DataFrame([list(t) for t in wanted], schema={"vkey": pl.UInt32, "cur": pl.UInt16, "amount": pl.Int64}, orient="row")
        candidates = base.join(triples, on=["vkey", "cur", "amount"], how="semi")
        rows = candidates.select("row", "vkey", "cur", "amount", "day").iter_rows()
        earlier = match_earlier_payments(
            ((row, key_list[vkey], currencies[cur], amount, day + _EPOCH_ORDINAL) for row, vkey, cur, amount, day in rows),
            history, window_days=window_days,
        )
        hits = {row: duplicate_reason(p.txn_id, p.date, earlier_run=True) for row, p in earlier.items()}
    ordered = base.sort("vkey", "cur", "amount", "day", "row").with_columns(
        before=pl.col("row").shift(1),
        same=(pl.col("vkey") == pl.col("vkey").shift(1)) & (pl.col("cur") == pl.col("cur").shift(1))
        & (pl.col("amount") == pl.col("amount").shift(1)) & (pl.col("day") - pl.col("day").shift(1) <= window_days),
    )
    repeats = ordered.filter(pl.col("same")).select("row", "before")
    del ordered
    if repeats.height:
        earlier_rows = repeats["before"].to_list()
        named = frame.select("txn_id", "date")[earlier_rows]
        for row, (txn_id, day) in zip(repeats["row"].to_list(), named.iter_rows()):
            if row not in hits:
                hits[row] = duplicate_reason(txn_id, day.isoformat(), earlier_run=False)
    return hits


def _round_amounts(frame, base, currencies, multiple: Decimal) -> dict[int, str]:
    hit = pl.lit(False)
    size = pl.col("amount").abs()
    for n, currency in enumerate(currencies):
        m = round_multiple(multiple, currency)
        scaled = size * m.denominator
        hit = hit | ((pl.col("cur") == n) & (size != 0) & (scaled >= m.numerator) & (scaled % m.numerator == 0))
    rows = base.select(hit.alias("hit"))["hit"].arg_true().to_list()
    values = _values(frame, rows)
    return {row: round_amount_reason(values[row][0], values[row][1], multiple) for row in rows}
