"""Screening rules: the amount threshold, vague memos and unfamiliar vendors."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from job.config import DEFAULT_VAGUE_TERMS
from job.ledger.ingest import Transaction
from frame_screening import screen_transactions
from job.screening.screen import (
    LARGE_AMOUNT,
    UNFAMILIAR_VENDOR,
    VAGUE_MEMO,
    normalize_vendor,
    threshold_minor,
)

KNOWN = frozenset({"acme office supply", "globex travel"})
THRESHOLD = Decimal("10000.00")
UNFAMILIAR_REASON = "vendor is not on the known-vendor list and not in any earlier ledger"


def tx(amount_minor: int, *, currency: str = "USD", vendor: str = "Acme Office Supply", memo: str = "Printer paper",
       txn_id: str = "TX-1", line: int = 2) -> Transaction:
    return Transaction(txn_id=txn_id, date="2026-11-24", amount_minor=amount_minor, currency=currency,
                       vendor=vendor, memo=memo, account="6100", line=line)


def screen(*transactions: Transaction, threshold: Decimal = THRESHOLD, terms=DEFAULT_VAGUE_TERMS, known=KNOWN):
    return screen_transactions(list(transactions), amount_threshold=threshold, vague_memo_terms=terms,
                               known_vendor_keys=known)


def codes(screening) -> list[str]:
    return [f.code for f in screening.flags]


# --- amount threshold -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount_minor", "flagged"),
    [
        (1_000_000, False),  # 10,000.00 is the threshold itself: not above it
        (1_000_001, True),  # 10,000.01
        (999_999, False),
        (-1_000_000, False),
        (-1_000_001, True),  # the absolute amount counts: a large refund is flagged too
        (0, False),
    ],
)
def test_amount_threshold_is_strict_and_uses_the_absolute_amount(amount_minor: int, flagged: bool) -> None:
    [result] = screen(tx(amount_minor))
    assert (LARGE_AMOUNT in codes(result)) is flagged
    assert result.flagged is flagged


def test_large_amount_reason_names_amount_currency_and_threshold() -> None:
    [above] = screen(tx(1_000_001))
    assert [f.as_dict() for f in above.flags] == [
        {"code": "large_amount", "reason": "amount 10,000.01 USD is above the 10,000.00 threshold", "by": "rules"}
    ]
    [negative] = screen(tx(-1_000_001))
    assert negative.flags[0].reason == "amount -10,000.01 USD is above the 10,000.00 threshold"


def test_jpy_threshold_has_no_minor_units() -> None:
    assert threshold_minor(THRESHOLD, "JPY") == 10_000
    not_above, above = screen(tx(10_000, currency="JPY", txn_id="J1"), tx(10_001, currency="JPY", txn_id="J2"))
    assert not not_above.flagged
    assert [f.reason for f in above.flags] == ["amount 10,001 JPY is above the 10,000 threshold"]


def test_three_decimal_currency_threshold() -> None:
    assert threshold_minor(THRESHOLD, "KWD") == 10_000_000
    not_above, above = screen(tx(10_000_000, currency="KWD", txn_id="K1"), tx(10_000_001, currency="KWD", txn_id="K2"))
    assert not not_above.flagged
    assert above.flags[0].reason == "amount 10,000.001 KWD is above the 10,000.000 threshold"


@pytest.mark.parametrize(
    ("threshold", "currency", "expected_minor"),
    [
        (Decimal("10000.50"), "JPY", 10_000),  # finer than a yen: rounds down
        (Decimal("10000.99"), "JPY", 10_000),
        (Decimal("100.005"), "USD", 10_000),  # finer than a cent: rounds down
        (Decimal("100"), "USD", 10_000),
        (Decimal("0"), "USD", 0),
    ],
)
def test_threshold_finer_than_the_minor_unit_rounds_down(threshold: Decimal, currency: str, expected_minor: int) -> None:
    assert threshold_minor(threshold, currency) == expected_minor


def test_rounded_down_threshold_lets_nothing_above_the_configured_amount_escape() -> None:
    at, above = screen(tx(10_000, currency="JPY", txn_id="J1"), tx(10_001, currency="JPY", txn_id="J2"),
                       threshold=Decimal("10000.50"))
    assert not at.flagged  # 10,000 yen is below 10,000.50
    assert codes(above) == [LARGE_AMOUNT]  # 10,001 yen is above 10,000.50
    cent_at, cent_above = screen(tx(10_000, txn_id="U1"), tx(10_001, txn_id="U2"), threshold=Decimal("100.005"))
    assert not cent_at.flagged and codes(cent_above) == [LARGE_AMOUNT]


def test_each_currency_uses_its_own_threshold_in_one_batch() -> None:
    results = screen(
        tx(1_000_001, currency="USD", txn_id="U"),
        tx(10_001, currency="JPY", txn_id="J"),
        tx(10_000, currency="JPY", txn_id="J0"),
        tx(1_000_000, currency="USD", txn_id="U0"),
    )
    assert [(r.transaction.txn_id, r.flagged) for r in results] == [("U", True), ("J", True), ("J0", False), ("U0", False)]


# --- vague memos ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("memo", "term"),
    [
        ("Confidential", "confidential"),
        ("CONFIDENTIAL payment", "confidential"),
        ("misc", "misc"),
        ("MISC", "misc"),
        ("Misc.", "misc"),
        ("Misc services", "misc"),
        ("misc-expenses", "misc"),  # a hyphen is not part of a word
        ("(misc)", "misc"),
        ("Miscellaneous items", "miscellaneous"),  # the longer term wins, as its own word
        ("various vendors", "various"),
        ("Sundry", "sundry"),
        ("paid for sundry, misc", "sundry"),  # the first term in the memo is named
    ],
)
def test_vague_term_as_a_whole_word_in_any_case_is_flagged(memo: str, term: str) -> None:
    [result] = screen(tx(100, memo=memo))
    assert [f.as_dict() for f in result.flags] == [
        {"code": "vague_memo", "reason": f"memo uses the vague term '{term}'", "by": "rules"}
    ]


@pytest.mark.parametrize(
    "memo",
    ["Nonconfidential", "miscount", "misconduct review", "Sundrys", "variously", "misc_fee", "pre-miscx", "Office chairs"],
)
def test_vague_term_inside_a_longer_word_is_not_flagged(memo: str) -> None:
    [result] = screen(tx(100, memo=memo))
    assert not result.flagged, result.flags


@pytest.mark.parametrize("memo", ["", "   ", "\t"])
def test_empty_memo_is_vague(memo: str) -> None:
    [result] = screen(tx(100, memo=memo))
    assert [(f.code, f.reason) for f in result.flags] == [(VAGUE_MEMO, "memo is empty")]


def test_empty_memo_is_vague_even_without_any_configured_terms() -> None:
    empty, misc = screen(tx(100, memo="", txn_id="A"), tx(100, memo="misc", txn_id="B"), terms=())
    assert [f.reason for f in empty.flags] == ["memo is empty"]
    assert not misc.flagged


def test_configured_terms_are_matched_literally_not_as_regex() -> None:
    terms = ("n/a", "t.b.d", "  ")  # a blank term is ignored
    na, tbd, tbx = screen(tx(100, memo="N/A", txn_id="A"), tx(100, memo="cost t.b.d", txn_id="B"),
                          tx(100, memo="cost tXbXd", txn_id="C"), terms=terms)
    assert [f.reason for f in na.flags] == ["memo uses the vague term 'n/a'"]
    assert [f.reason for f in tbd.flags] == ["memo uses the vague term 't.b.d'"]
    assert not tbx.flagged


# --- unfamiliar vendors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Acme Office Supply", "acme office supply"),
        ("  ACME   Office\tSupply ", "acme office supply"),
        ("Globex\u00a0Travel", "globex travel"),
        ("Straße GmbH", "strasse gmbh"),
    ],
)
def test_normalize_vendor_folds_case_and_whitespace(name: str, key: str) -> None:
    assert normalize_vendor(name) == key


def test_known_vendor_matches_after_case_and_whitespace_folding() -> None:
    results = screen(
        tx(100, vendor="ACME  office supply", txn_id="A"),
        tx(100, vendor=" Globex Travel ", txn_id="B"),
        tx(100, vendor="Acme Office Supplies", txn_id="C"),
    )
    assert [codes(r) for r in results] == [[], [], [UNFAMILIAR_VENDOR]]
    assert results[2].flags[0].reason == UNFAMILIAR_REASON


def test_all_three_rules_in_order_with_their_reasons() -> None:
    [result] = screen(tx(-2_500_000, vendor="Blue Harbor Holdings", memo="Misc services"))
    assert [(f.code, f.reason, f.by) for f in result.flags] == [
        (LARGE_AMOUNT, "amount -25,000.00 USD is above the 10,000.00 threshold", "rules"),
        (VAGUE_MEMO, "memo uses the vague term 'misc'", "rules"),
        (UNFAMILIAR_VENDOR, UNFAMILIAR_REASON, "rules"),
    ]


def test_results_keep_the_input_order_and_transactions() -> None:
    items = [tx(100, txn_id=f"T{i}") for i in range(5)]
    results = screen(*items)
    assert [r.transaction for r in results] == items


# --- properties -----------------------------------------------------------------------

CURRENCIES = ("USD", "JPY", "KWD", "EUR")
VENDORS = ("Acme Office Supply", "Globex Travel", "Initech", "Blue Harbor")
MEMOS = ("Printer paper", "misc", "Confidential", "", "miscount", "various", "Office chairs", "Sundrys")

transactions = st.lists(
    st.builds(
        lambda amount, currency, vendor, memo: (amount, currency, vendor, memo),
        st.integers(min_value=-3_000_000_000, max_value=3_000_000_000),
        st.sampled_from(CURRENCIES),
        st.sampled_from(VENDORS),
        st.sampled_from(MEMOS),
    ),
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(rows=transactions, data=st.data())
def test_flags_never_depend_on_the_order_of_transactions(rows, data) -> None:
    items = [tx(a, currency=c, vendor=v, memo=m, txn_id=f"T{i}") for i, (a, c, v, m) in enumerate(rows)]
    shuffled = data.draw(st.permutations(items))
    original = {r.transaction.txn_id: r.flags for r in screen(*items)}
    reordered = {r.transaction.txn_id: r.flags for r in screen(*shuffled)}
    assert original == reordered


SAFE_WORDS = ("printer", "paper", "miscount", "Nonconfidential", "Sundrys", "variously", "misc_fee", "toner", "Q4")


@settings(max_examples=200, deadline=None)
@given(
    currency=st.sampled_from(CURRENCIES),
    fraction=st.integers(min_value=-1_000_000, max_value=1_000_000),
    vendor=st.sampled_from(("Acme Office Supply", "Globex Travel")),
    spacing=st.sampled_from((" ", "  ", "\t", " \u00a0")),
    upper=st.booleans(),
    words=st.lists(st.sampled_from(SAFE_WORDS), min_size=1, max_size=5),
)
def test_small_amount_known_vendor_plain_memo_is_never_flagged(currency, fraction, vendor, spacing, upper, words) -> None:
    limit = threshold_minor(THRESHOLD, currency)
    amount = limit * fraction // 1_000_000  # anywhere in [-limit, limit]
    assert abs(amount) <= limit
    name = spacing + spacing.join(vendor.split()) + spacing
    [result] = screen(tx(amount, currency=currency, vendor=name.upper() if upper else name, memo=" ".join(words)))
    assert result.flags == ()
