"""The column-wise rules (the one engine) agree with the row-by-row rules kept as an oracle in
`row_rules`: same flags, same reasons, same order."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from frame_screening import flags_by_position
from job.config import Config, DuplicateRule, Policy, RoundAmountRule, StructuringRule, UserRule
from job.ledger.ingest import Transaction
from job.ledger.ingest_fast import transactions_frame
from job.screening.rules import compile_rules
from job.screening.screen import Flag, PastPayment
from row_rules import screen_transactions

START = date(2026, 11, 20)
VENDORS = ("Acme Office Supply", "ACME  office supply", "Globex Travel", "Initech", "Straße GmbH", "NewCo")
KNOWN = frozenset({"acme office supply", "globex travel", "strasse gmbh"})
MEMOS = ("Printer paper", "misc", "Misc.", "", " \t\u2003", "miscount", "various vendors", "Confidential", "MİSC", "sundry, misc", "Ünterlagen")
AMOUNTS = st.one_of(
    st.integers(-2_000_000, 2_000_000),
    st.sampled_from([900_000, 950_000, 999_999, 1_000_000, 1_000_001, 100_000, 300_000, 12_345, -300_000, 0]),
)


def day(offset: int) -> str:
    return (START + timedelta(days=offset)).isoformat()


transactions = st.lists(
    st.builds(
        lambda amount, offset, currency, vendor, memo: (amount, offset, currency, vendor, memo),
        AMOUNTS, st.integers(0, 9), st.sampled_from(["USD", "JPY", "KWD", "EUR"]), st.sampled_from(VENDORS), st.sampled_from(MEMOS),
    ),
    max_size=40,
)
history = st.lists(
    st.builds(
        lambda n, amount, offset, currency, vendor: PastPayment(f"OLD-{n}", day(offset), vendor, currency, amount),
        st.integers(0, 99), AMOUNTS, st.integers(-8, 12), st.sampled_from(["USD", "JPY"]),
        st.sampled_from(["acme office supply", "initech", "newco"]),
    ),
    max_size=8,
)
policies = st.builds(
    lambda threshold, s_on, s_min, s_days, fraction, d_on, d_days, r_on, multiple, terms: Policy(
        amount_threshold=threshold,
        vague_memo_terms=terms,
        structuring=StructuringRule(enabled=s_on, min_payments=s_min, window_days=s_days, band_fraction=fraction),
        duplicates=DuplicateRule(enabled=d_on, window_days=d_days),
        round_amounts=RoundAmountRule(enabled=r_on, multiple=multiple),
    ),
    st.sampled_from([Decimal("10000.00"), Decimal("10000.50"), Decimal("500"), Decimal("0")]),
    st.booleans(), st.integers(2, 4), st.integers(1, 8), st.sampled_from([Decimal("0.9"), Decimal("0.5"), Decimal("1")]),
    st.booleans(), st.integers(0, 4),
    st.booleans(), st.sampled_from([Decimal("1000"), Decimal("0.5"), Decimal("250")]),
    st.sampled_from([("confidential", "misc", "miscellaneous", "various", "sundry"), (), ("n/a",), ("ünterlagen",)]),
)

USER_RULES = compile_rules(Config(policy=Policy(rules=(UserRule(name="user_rule", when="vendor = 'Initech'", reason="because", key="policy.rules[1]"),))))


@settings(max_examples=300, deadline=None)
@given(rows=transactions, past=history, policy=policies)
def test_both_engines_flag_the_same_rows_with_the_same_reasons(rows, past, policy: Policy) -> None:
    items = [Transaction(f"T{n}", day(offset), amount, currency, vendor, memo, "6100", n + 2)
             for n, (amount, offset, currency, vendor, memo) in enumerate(rows)]
    user = {n: [Flag("user_rule", "because")] for n, t in enumerate(items) if t.vendor == "Initech"}
    by_rows = screen_transactions(
        items, amount_threshold=policy.amount_threshold, vague_memo_terms=policy.vague_memo_terms, known_vendor_keys=KNOWN,
        structuring=policy.structuring, duplicates=policy.duplicates, round_amounts=policy.round_amounts, history=past, user_flags=user,
    )
    by_columns = flags_by_position(transactions_frame(items), policy, KNOWN, past, USER_RULES)
    assert {n: list(s.flags) for n, s in enumerate(by_rows) if s.flags} == by_columns


def test_the_earlier_payment_named_by_a_duplicate_is_the_same() -> None:
    items = [Transaction(f"T{n}", day(offset), 12_345, "USD", "Acme Office Supply", "Toner", "", n + 2)
             for n, offset in enumerate([2, 0, 0, 1, 5])]
    policy = Policy()
    rows = screen_transactions(items, amount_threshold=policy.amount_threshold, vague_memo_terms=(), known_vendor_keys=KNOWN,
                               duplicates=policy.duplicates)
    columns = flags_by_position(transactions_frame(items), policy, KNOWN)
    assert {n: [f.reason for f in s.flags] for n, s in enumerate(rows) if s.flags} == {
        n: [f.reason for f in flags] for n, flags in columns.items()
    } == {
        0: [f"same vendor and amount as T3 on {day(1)}"],
        2: [f"same vendor and amount as T1 on {day(0)}"],
        3: [f"same vendor and amount as T2 on {day(0)}"],
        4: [f"same vendor and amount as T0 on {day(2)}"],
    }
