"""Screening through the product's one engine, for tests: transactions in, flags out.

`screen_transactions` takes the rules' settings as the row engine's function of that name
did, and runs them as `audit run` does: the transactions as one block of a ledger, screened
column-wise (`job.screening.screen_frame`). `Screening` results keep the input order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal

import polars as pl

from job.config import DuplicateRule, Policy, RoundAmountRule, StructuringRule
from job.ledger.ingest import Transaction
from job.ledger.batch import Batch
from job.ledger.ingest_fast import FrameLedger, transactions_frame
from job.screening.screen import Flag, PastPayment
from job.screening.screen_frame import compact_rows, screen_batch
from row_rules import Screening


def flags_by_position(frame: pl.DataFrame, policy: Policy, known: Iterable[str], history: Sequence[PastPayment] = (),
                      rules: Sequence = ()) -> dict[int, list[Flag]]:
    """The flags of each flagged row of `frame` (columns of `ingest_fast.TXN_SCHEMA`), by position."""
    ledger = FrameLedger.of("ledger.csv", "ledger.csv", "", frame)
    batch = Batch.of([ledger])
    flagged = screen_batch(batch, compact_rows(batch), policy, known_vendor_keys=set(known), rules=rules, history=history)
    return {pos: [Flag(code, reason) for code, reason in zip(codes, reasons)]
            for pos, codes, reasons in flagged.items.select("pos", "codes", "reasons").iter_rows()}


def screen_transactions(
    transactions: Sequence[Transaction],
    *,
    amount_threshold: Decimal,
    vague_memo_terms: Iterable[str],
    known_vendor_keys: Iterable[str],
    structuring: StructuringRule | None = None,
    duplicates: DuplicateRule | None = None,
    round_amounts: RoundAmountRule | None = None,
    history: Sequence[PastPayment] = (),
    rules: Sequence = (),
) -> list[Screening]:
    """Every rule over `transactions`; a rule given as None (or disabled) does not run."""
    policy = Policy(
        amount_threshold=amount_threshold,
        vague_memo_terms=tuple(vague_memo_terms),
        structuring=structuring or StructuringRule(enabled=False),
        duplicates=duplicates or DuplicateRule(enabled=False),
        round_amounts=round_amounts or RoundAmountRule(enabled=False),
    )
    items = list(transactions)
    flags = flags_by_position(transactions_frame(items), policy, known_vendor_keys, history, rules)
    return [Screening(tx, tuple(flags.get(n, ()))) for n, tx in enumerate(items)]
