"""The screening rules over a run's rows, column-wise (polars), whatever the run's size.

Each rule is written once, here, from the pure pieces of `screen` (codes, reasons, vendor
keys, bands). A property test checks it against the row-by-row rules kept in
`tests/row_rules.py` as an oracle: the same flags, the same reasons, in the same order.

The rules that look at one row's text (vague memos, the policy file's own rules) run block
by block as the rows are read back (`row_hits`); the others run on `Compact`, a few numbers
per row for the whole run (position, vendor and currency as small codes, amount, day), so
a run of ten million rows needs about 200 MB for them. Every hit is a row of a long table
(position, rule order, code, reason), so even hundreds of thousands of flagged rows never
become Python objects here. Where a rule needs Python's exact semantics (the vague-memo
regex, vendor-name folding, amounts shown with separators) it runs once per distinct value
or per hit. Structuring runs `screen.find_structuring` on the few payments in the band;
duplicates sort by (vendor, currency, amount, day, position) and compare neighbours, and
compare earlier runs' candidates with `screen.match_earlier_payments`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import polars as pl

from job.config import Policy
from job.ledger.batch import Batch
from job.screening.flagged import FlaggedFrame
from job.screening.screen import (
    AMENDED,
    DUPLICATE_PAYMENT,
    LARGE_AMOUNT,
    ROUND_AMOUNT,
    RULE_ORDER,
    STRUCTURING,
    UNFAMILIAR_REASON,
    UNFAMILIAR_VENDOR,
    VAGUE_MEMO,
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

__all__ = ["Compact", "compact_rows", "screen_batch", "combine", "in_band", "row_hits", "rule_hits"]

_EPOCH_ORDINAL = 719163  # date(1970, 1, 1).toordinal(): polars days count from 1970-01-01
ORDER = {code: n for n, code in enumerate(RULE_ORDER)}  # user rules follow, in config order


@dataclass(slots=True)
class Compact:
    """The numbers the run-wide rules need, for every row of a run, built block by block."""

    parts: list[pl.DataFrame] = field(default_factory=list)
    vendor_code: dict[str, int] = field(default_factory=dict)  # vendor name -> code of its key
    key_code: dict[str, int] = field(default_factory=dict)  # vendor key -> code
    key_list: list[str] = field(default_factory=list)  # code -> vendor key
    currency_code: dict[str, int] = field(default_factory=dict)
    currencies: list[str] = field(default_factory=list)
    frame: pl.DataFrame | None = None

    def add(self, block: pl.DataFrame, offset: int) -> None:
        for name in block["vendor"].unique().to_list():
            if name not in self.vendor_code:
                key = normalize_vendor(name)
                if key not in self.key_code:
                    self.key_code[key] = len(self.key_list)
                    self.key_list.append(key)
                self.vendor_code[name] = self.key_code[key]
        for currency in block["currency"].unique().to_list():
            if currency not in self.currency_code:
                self.currency_code[currency] = len(self.currencies)
                self.currencies.append(currency)
        self.parts.append(
            block.select(
                row=pl.int_range(offset, offset + pl.len(), dtype=pl.UInt32),
                vkey=pl.col("vendor").replace_strict(self.vendor_code, return_dtype=pl.UInt32),
                cur=pl.col("currency").replace_strict(self.currency_code, return_dtype=pl.UInt16),
                amount=pl.col("amount_minor"),
                day=pl.col("date").cast(pl.Int32),
            )
        )

    def finish(self) -> pl.DataFrame:
        self.frame = (
            pl.concat(self.parts, rechunk=True)
            if self.parts
            else pl.DataFrame(schema={"row": pl.UInt32, "vkey": pl.UInt32, "cur": pl.UInt16, "amount": pl.Int64, "day": pl.Int32})
        )
        self.parts = []
        return self.frame


def compact_rows(batch: Batch) -> Compact:
    """The compact columns of every row of a run, which the run-wide rules, the history
    lookup (`history.find_history`) and the digests read."""
    compact = Compact()
    for offset, block in batch.blocks():
        compact.add(block.load(["vendor", "currency", "amount_minor", "date"]), offset)
    compact.finish()
    return compact


_DETAILS = ["txn_id", "date", "amount_minor", "currency", "vendor", "memo"]


def screen_batch(
    batch: Batch,
    compact: Compact,
    policy: Policy,
    *,
    known_vendor_keys: set[str] | frozenset[str],
    rules: Sequence = (),
    history: Sequence[PastPayment] = (),
    amended: Mapping[int, str] | None = None,
) -> FlaggedFrame:
    """Every rule over every row of a run: the text rules block by block, the run-wide rules
    on `compact` with the earlier runs' payments `history` (`history.find_history`); no
    database. `amended`: the reason of each row that is a new version of a known transaction,
    by position. The flagged rows with what a reviewer and an approver see, ranked."""
    hits: list[pl.DataFrame] = []
    if amended:
        positions = sorted(amended)
        hits.append(_hits(positions, AMENDED, ORDER[AMENDED], [amended[pos] for pos in positions]))
    for offset, block in batch.blocks():
        frame = block.load(["memo"] if not rules else None)
        hits += row_hits(frame, offset, policy, rules)
        del frame
    if compact.frame is not None and compact.frame.height:
        hits += rule_hits(compact, policy, known_vendor_keys=known_vendor_keys, history=history, lookup=batch.ids_and_dates)
    flagged = combine(hits)  # in position order
    del hits
    details = batch.gather(flagged["pos"], _DETAILS, ascending=True).with_columns(
        vendor=pl.col("vendor").cast(pl.Categorical), currency=pl.col("currency").cast(pl.Categorical)
    )
    return FlaggedFrame.ranked(flagged.hstack(details))


def _hits(pos, code: str, order: int, reason) -> pl.DataFrame:
    positions = pos if isinstance(pos, pl.Series) else pl.Series(pos, dtype=pl.UInt32)
    reasons = (
        reason
        if isinstance(reason, pl.Series)
        else pl.Series([reason] * len(positions) if isinstance(reason, str) else reason, dtype=pl.String)
    )
    return pl.DataFrame(
        {
            "pos": positions.cast(pl.UInt32),
            "order": pl.Series([order] * len(positions), dtype=pl.UInt16),
            "code": pl.Series([code] * len(positions), dtype=pl.String),
            "reason": reasons,
        }
    )


def row_hits(block: pl.DataFrame, offset: int, policy: Policy, rules: Sequence = ()) -> list[pl.DataFrame]:
    """Hits of the rules that read a row's text (vague memos, the policy's own rules)."""
    found = []
    vague = _vague_memos(block["memo"], policy.vague_memo_terms)
    if vague:
        found.append(_hits([offset + row for row, _ in vague], VAGUE_MEMO, ORDER[VAGUE_MEMO], [vague_memo_reason(t) for _, t in vague]))
    if rules and block.height:
        from job.screening.rules import match_rules

        for n, rule, rows in match_rules(rules, block):
            found.append(_hits(rows + offset, rule.name, len(RULE_ORDER) + n, rule.reason))
    return found


def rule_hits(
    compact: Compact,
    policy: Policy,
    *,
    known_vendor_keys: set[str] | frozenset[str],
    history: Sequence[PastPayment] = (),
    lookup: Callable[[list[int]], list[tuple[str, str]]],
) -> list[pl.DataFrame]:
    """Hits of the run-wide rules. `lookup(positions)` gives (id, ISO date) of those rows."""
    base = compact.frame
    assert base is not None, "the compact rows are kept until screening is done"
    currencies, key_list = compact.currencies, compact.key_list
    limits = {n: threshold_minor(policy.threshold_for(c), c) for n, c in enumerate(currencies)}
    found = []
    large = base.filter(pl.col("amount").abs() > pl.col("cur").replace_strict(limits, return_dtype=pl.Int64)).select("row", "cur", "amount")
    if large.height:
        reasons = [large_amount_reason(a, currencies[c], limits[c]) for c, a in zip(large["cur"].to_list(), large["amount"].to_list())]
        found.append(_hits(large["row"], LARGE_AMOUNT, ORDER[LARGE_AMOUNT], reasons))
    unknown = [n for n, key in enumerate(key_list) if key not in known_vendor_keys]
    unfamiliar = base.filter(pl.col("vkey").is_in(unknown))["row"]
    if unfamiliar.len():
        found.append(_hits(unfamiliar, UNFAMILIAR_VENDOR, ORDER[UNFAMILIAR_VENDOR], UNFAMILIAR_REASON))
    if policy.structuring.enabled:
        hits = _structuring(base, key_list, currencies, policy, history)
        if hits:
            found.append(_hits(list(hits), STRUCTURING, ORDER[STRUCTURING], list(hits.values())))
    if policy.duplicates.enabled:
        dup = _duplicates(base, key_list, currencies, policy.duplicates.window_days, history, lookup)
        if dup is not None:
            found.append(dup)
    if policy.round_amounts.enabled:
        rounds = _round_amounts(base, currencies, policy.round_amounts.multiple)
        if rounds:
            found.append(_hits(list(rounds), ROUND_AMOUNT, ORDER[ROUND_AMOUNT], list(rounds.values())))
    return found


def combine(hits: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """One row per flagged position, in position order: its codes and reasons, in rule order."""
    if not hits:
        return pl.DataFrame(schema={"pos": pl.UInt32, "codes": pl.List(pl.String), "reasons": pl.List(pl.String)})
    return (
        pl.concat(list(hits))
        .sort("pos", "order", maintain_order=True)
        .group_by("pos", maintain_order=True)
        .agg(codes=pl.col("code"), reasons=pl.col("reason"))
    )


def _vague_memos(memos: pl.Series, terms: Sequence[str]) -> list[tuple[int, str | None]]:
    """(row, vague term or None for an empty memo), by Python's regex on each candidate memo."""
    pattern = compile_memo_terms(terms)
    words = [t.strip() for t in terms if t.strip()]
    candidates = memos.str.contains(r"^[\s\x1c-\x1f]*$")  # empty or blank: the verdict below is exact
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
    verdict: dict[str, str | None] = {}  # the vague memos only
    for text in texts.unique().to_list():
        if pattern is not None and (hit := pattern.search(text)):
            verdict[text] = hit.group(1).lower()
        elif not text.strip():
            verdict[text] = None
    return [(row, verdict[text]) for row, text in zip(rows.to_list(), texts.to_list()) if text in verdict]


def in_band(bands: dict[int, tuple[int, int]]) -> pl.Expr:
    """Whether a compact row's positive amount is in its currency's structuring band
    (`bands`: currency code -> (low, high) in minor units, `screen.structuring_band`)."""
    low = pl.col("cur").replace_strict({n: b[0] for n, b in bands.items()}, return_dtype=pl.Int64)
    high = pl.col("cur").replace_strict({n: b[1] for n, b in bands.items()}, return_dtype=pl.Int64)
    return (pl.col("amount") > 0) & (pl.col("amount") >= low) & (pl.col("amount") <= high)


def _structuring(base, key_list, currencies, policy: Policy, history) -> dict[int, str]:
    rule = policy.structuring

    def band_of(currency: str) -> tuple[int, int]:
        return structuring_band(policy.threshold_for(currency), rule.band_fraction, currency)

    bands = {n: band_of(c) for n, c in enumerate(currencies)}
    band = base.filter(in_band(bands))
    if band.height == 0:
        return {}
    payments: list[tuple[object, str, int]] = [
        (row, f"{currencies[cur]} {key_list[vkey]}", day + _EPOCH_ORDINAL)
        for row, vkey, cur, day in band.select("row", "vkey", "cur", "day").iter_rows()
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


def _duplicates(base, key_list, currencies, window_days: int, history, lookup) -> pl.DataFrame | None:
    earlier_run: dict[int, str] = {}
    if history:
        vendor_code = {key: n for n, key in enumerate(key_list)}
        currency_code = {c: n for n, c in enumerate(currencies)}
        wanted = {
            (vendor_code[p.vendor_key], currency_code[p.currency], p.amount_minor)
            for p in history
            if p.vendor_key in vendor_code and p.currency in currency_code
        }
        triples = pl.DataFrame([list(t) for t in wanted], schema={"vkey": pl.UInt32, "cur": pl.UInt16, "amount": pl.Int64}, orient="row")
        candidates = base.join(triples, on=["vkey", "cur", "amount"], how="semi")
        rows = candidates.select("row", "vkey", "cur", "amount", "day").iter_rows()
        earlier = match_earlier_payments(
            ((row, key_list[vkey], currencies[cur], amount, day + _EPOCH_ORDINAL) for row, vkey, cur, amount, day in rows),
            history,
            window_days=window_days,
        )
        own = dict(zip(earlier, (txn_id for txn_id, _ in lookup(list(earlier))))) if earlier else {}
        # an earlier version of the same transaction (an amendment) is not a second payment
        earlier_run = {row: duplicate_reason(p.txn_id, p.date, earlier_run=True) for row, p in earlier.items() if p.txn_id != own[row]}
    repeats = (
        base.sort("vkey", "cur", "amount", "day", "row")
        .select(
            "row",
            before=pl.col("row").shift(1),
            same=(pl.col("vkey") == pl.col("vkey").shift(1))
            & (pl.col("cur") == pl.col("cur").shift(1))
            & (pl.col("amount") == pl.col("amount").shift(1))
            & (pl.col("day") - pl.col("day").shift(1) <= window_days),
        )
        .filter(pl.col("same"))
        .select("row", "before")
    )
    if earlier_run:
        repeats = repeats.filter(~pl.col("row").is_in(list(earlier_run)))
    frames = []
    if repeats.height:
        named = lookup(repeats["before"].to_list())
        own_ids = [txn_id for txn_id, _ in lookup(repeats["row"].to_list())]
        other = pl.Series([mine != theirs for mine, (theirs, _) in zip(own_ids, named)], dtype=pl.Boolean)  # not a version of itself
        reasons = pl.Series([duplicate_reason(txn_id, day, earlier_run=False) for txn_id, day in named], dtype=pl.String)
        if other.any():
            frames.append(_hits(repeats["row"].filter(other), DUPLICATE_PAYMENT, ORDER[DUPLICATE_PAYMENT], reasons.filter(other)))
    if earlier_run:
        frames.append(_hits(list(earlier_run), DUPLICATE_PAYMENT, ORDER[DUPLICATE_PAYMENT], list(earlier_run.values())))
    return pl.concat(frames) if frames else None


def _round_amounts(base, currencies, multiple: Decimal) -> dict[int, str]:
    hit = pl.lit(False)
    size = pl.col("amount").abs()
    for n, currency in enumerate(currencies):
        m = round_multiple(multiple, currency)
        scaled = size * m.denominator
        hit = hit | ((pl.col("cur") == n) & (size != 0) & (scaled >= m.numerator) & (scaled % m.numerator == 0))
    found = base.filter(hit).select("row", "cur", "amount")
    return {
        row: round_amount_reason(amount, currencies[cur], multiple)
        for row, cur, amount in zip(found["row"].to_list(), found["cur"].to_list(), found["amount"].to_list())
    }
