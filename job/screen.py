"""Screening rules: pure functions from transactions and policy to flags.

Each rule hit is a `Flag` with a reason code and a sentence an approver can read. Rules
only ever add flags; the finance agent may add more later but can never remove one.
Amounts are compared exactly in integer minor units of each transaction's own currency.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from .ingest import Transaction, currency_exponent, format_amount_display

__all__ = [
    "Flag",
    "Screening",
    "LARGE_AMOUNT",
    "VAGUE_MEMO",
    "UNFAMILIAR_VENDOR",
    "AGENT_CONCERN",
    "normalize_vendor",
    "screen_transactions",
    "threshold_minor",
]

LARGE_AMOUNT = "large_amount"
VAGUE_MEMO = "vague_memo"
UNFAMILIAR_VENDOR = "unfamiliar_vendor"
AGENT_CONCERN = "agent_concern"


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
) -> list[Screening]:
    """Apply every rule to every transaction, in order."""
    memo_pattern = compile_memo_terms(vague_memo_terms)
    limits: dict[str, int] = {}
    results: list[Screening] = []
    for tx in transactions:
        flags: list[Flag] = []
        limit = limits.get(tx.currency)
        if limit is None:
            limit = limits[tx.currency] = threshold_minor(amount_threshold, tx.currency)
        if abs(tx.amount_minor) > limit:
            flags.append(
                Flag(
                    LARGE_AMOUNT,
                    f"amount {format_amount_display(tx.amount_minor, tx.currency)} {tx.currency} is above "
                    f"the {format_amount_display(limit, tx.currency)} threshold",
                )
            )
        hit = memo_pattern.search(tx.memo) if memo_pattern is not None else None
        if hit:
            flags.append(Flag(VAGUE_MEMO, f"memo uses the vague term '{hit.group(1).lower()}'"))
        elif not tx.memo.strip():
            flags.append(Flag(VAGUE_MEMO, "memo is empty"))
        if normalize_vendor(tx.vendor) not in known_vendor_keys:
            flags.append(Flag(UNFAMILIAR_VENDOR, "vendor is not on the known-vendor list and not in any earlier ledger"))
        results.append(Screening(tx, tuple(flags)))
    return results
