"""Structuring, duplicate payments and round amounts: boundaries, windows, history, switches."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from job.config import DuplicateRule, RoundAmountRule, StructuringRule
from job.ledger.ingest import Transaction
from frame_screening import screen_transactions
from job.screening.screen import (
    DUPLICATE_PAYMENT,
    ROUND_AMOUNT,
    STRUCTURING,
    PastPayment,
    find_structuring,
    structuring_band,
)

THRESHOLD = Decimal("10000.00")
KNOWN = frozenset({"acme office supply", "globex travel", "initech"})
START = date(2026, 11, 20)


def day(offset: int) -> str:
    return (START + timedelta(days=offset)).isoformat()


def tx(amount_minor: int, *, offset: int = 0, vendor: str = "Acme Office Supply", currency: str = "USD", txn_id: str = "T") -> Transaction:
    return Transaction(txn_id=txn_id, date=day(offset), amount_minor=amount_minor, currency=currency, vendor=vendor,
                       memo="Printer paper", account="6100", line=2)


def screen(*items: Transaction, structuring=StructuringRule(), duplicates=DuplicateRule(), round_amounts=RoundAmountRule(enabled=True),
           history=(), threshold=THRESHOLD):
    return screen_transactions(list(items), amount_threshold=threshold, vague_memo_terms=(), known_vendor_keys=KNOWN,
                               structuring=structuring, duplicates=duplicates, round_amounts=round_amounts, history=history)


def codes(results) -> list[list[str]]:
    return [[f.code for f in r.flags] for r in results]


def numbered(*amounts_and_offsets, vendor="Acme Office Supply", prefix="S"):
    return [tx(a, offset=o, vendor=vendor, txn_id=f"{prefix}{n}") for n, (a, o) in enumerate(amounts_and_offsets, 1)]


# --- round amounts --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount_minor", "currency", "flagged"),
    [
        (100_000, "USD", True),  # 1,000.00: the smallest round amount
        (99_999, "USD", False),
        (100_001, "USD", False),
        (50_000, "USD", False),  # 500.00 is not a multiple of 1,000
        (200_000, "USD", True),
        (2_500_000, "USD", True),
        (-300_000, "USD", True),  # a refund of 3,000.00 is as round
        (0, "USD", False),
        (1_000, "JPY", True),  # 1,000 yen
        (999, "JPY", False),
        (1_000_000, "KWD", True),  # 1,000.000 dinar
        (100_000, "KWD", False),  # 100.000 dinar
    ],
)
def test_round_amount_is_a_non_zero_multiple_of_1000(amount_minor: int, currency: str, flagged: bool) -> None:
    [result] = screen(tx(amount_minor, currency=currency))
    assert (ROUND_AMOUNT in codes([result])[0]) is flagged


def test_round_amount_reason_and_configured_multiple() -> None:
    [result] = screen(tx(300_000))
    assert [(f.code, f.reason) for f in result.flags] == [(ROUND_AMOUNT, "amount 3,000.00 USD is a whole multiple of 1,000.00")]
    five_hundred = RoundAmountRule(enabled=True, multiple=Decimal("500"))
    assert codes(screen(tx(50_000, txn_id="A"), tx(75_000, txn_id="B"), round_amounts=five_hundred)) == [[ROUND_AMOUNT], []]


def test_round_amounts_can_be_switched_off() -> None:
    assert codes(screen(tx(300_000), round_amounts=RoundAmountRule(enabled=False))) == [[]]


# --- structuring ----------------------------------------------------------------------


def test_band_runs_from_90_percent_of_the_threshold_to_the_threshold() -> None:
    assert structuring_band(THRESHOLD, Decimal("0.9"), "USD") == (900_000, 1_000_000)
    assert structuring_band(THRESHOLD, Decimal("0.9"), "JPY") == (9_000, 10_000)
    assert structuring_band(Decimal("10000.05"), Decimal("0.9"), "USD") == (900_005, 1_000_005)  # 9,000.045 rounds up


@pytest.mark.parametrize(
    ("third", "flagged"),
    [
        (900_000, True),  # exactly 90% of the threshold counts
        (899_999, False),
        (1_000_000, True),  # the threshold itself counts
        (1_000_001, False),  # above the threshold: large_amount, not structuring
    ],
)
def test_structuring_band_edges(third: int, flagged: bool) -> None:
    results = screen(*numbered((950_000, 0), (960_000, 1), (third, 2)))
    assert all((STRUCTURING in c) is flagged for c in codes(results)[:2])


@pytest.mark.parametrize(("last_offset", "flagged"), [(6, True), (7, False)])
def test_structuring_window_is_seven_calendar_days(last_offset: int, flagged: bool) -> None:
    results = screen(*numbered((950_000, 0), (950_100, 3), (950_200, last_offset)))
    assert [STRUCTURING in c for c in codes(results)] == [flagged] * 3


def test_structuring_needs_three_payments_to_one_vendor() -> None:
    two = screen(*numbered((950_000, 0), (950_100, 1)))
    assert codes(two) == [[], []]
    spread = screen(*numbered((950_000, 0), (950_100, 1)), tx(950_200, offset=2, vendor="Globex Travel", txn_id="G"))
    assert codes(spread) == [[], [], []]


def test_structuring_groups_by_normalised_vendor_and_currency() -> None:
    same_vendor = screen(tx(950_000, vendor="ACME office  supply", txn_id="A"), tx(950_100, txn_id="B"), tx(950_200, vendor=" Acme Office Supply", txn_id="C"))
    assert [STRUCTURING in c for c in codes(same_vendor)] == [True, True, True]
    other_currency = screen(tx(950_000, txn_id="A"), tx(950_100, txn_id="B"), tx(950_200, currency="EUR", txn_id="C"))
    assert [STRUCTURING in c for c in codes(other_currency)] == [False, False, False]


def test_only_the_payments_inside_a_full_window_are_flagged() -> None:
    results = screen(*numbered((950_000, 0), (950_100, 8), (950_200, 9), (950_300, 10), (950_400, 20)))
    assert [STRUCTURING in c for c in codes(results)] == [False, True, True, True, False]


def test_refunds_in_the_band_are_not_payments() -> None:
    results = screen(*numbered((-950_000, 0), (950_100, 1), (950_200, 2)))
    assert [STRUCTURING in c for c in codes(results)] == [False, False, False]


def test_structuring_reason() -> None:
    [first, *_] = screen(*numbered((950_000, 0), (950_100, 1), (950_200, 2)))
    assert [f.reason for f in first.flags if f.code == STRUCTURING] == [
        "one of 3 or more payments to this vendor within 7 days, each between 9,000.00 and 10,000.00 USD (just under the approval threshold)"
    ]


def test_structuring_settings() -> None:
    four = StructuringRule(min_payments=4)
    assert [STRUCTURING in c for c in codes(screen(*numbered((950_000, 0), (950_100, 1), (950_200, 2)), structuring=four))] == [False] * 3
    short = StructuringRule(window_days=2)
    assert [STRUCTURING in c for c in codes(screen(*numbered((950_000, 0), (950_100, 1), (950_200, 2)), structuring=short))] == [False] * 3
    wide = StructuringRule(band_fraction=Decimal("0.5"))
    assert [STRUCTURING in c for c in codes(screen(*numbered((500_000, 0), (600_000, 1), (700_000, 2)), structuring=wide))] == [True] * 3
    off = StructuringRule(enabled=False)
    assert codes(screen(*numbered((950_000, 0), (950_100, 1), (950_200, 2)), structuring=off)) == [[], [], []]


def test_structuring_counts_payments_of_earlier_runs_but_flags_only_new_ones() -> None:
    history = [PastPayment("OLD-1", day(0), "acme office supply", "USD", 950_000),
               PastPayment("OLD-2", day(2), "acme office supply", "USD", 990_000)]
    assert codes(screen(tx(960_000, offset=5), history=history)) == [[STRUCTURING]]
    too_old = [PastPayment("OLD-1", day(-2), "acme office supply", "USD", 950_000), history[1]]
    assert codes(screen(tx(960_000, offset=5), history=too_old)) == [[]]  # day -2 to day 5 is 8 days
    other_vendor = [PastPayment("OLD-1", day(0), "globex travel", "USD", 950_000), history[1]]
    assert codes(screen(tx(960_000, offset=5), history=other_vendor)) == [[]]
    out_of_band = [PastPayment("OLD-1", day(0), "acme office supply", "USD", 890_000), history[1]]
    assert codes(screen(tx(960_000, offset=5), history=out_of_band)) == [[]]


def test_find_structuring_marks_each_payment_once() -> None:
    payments = [(n, "g", d) for n, d in enumerate([0, 0, 0, 1, 1, 30])]
    assert find_structuring(payments, min_payments=3, window_days=7) == {0, 1, 2, 3, 4}


# --- duplicate payments ---------------------------------------------------------------


@pytest.mark.parametrize(("gap", "flagged"), [(0, True), (1, True), (3, True), (4, False)])
def test_duplicate_window_is_three_days(gap: int, flagged: bool) -> None:
    first, second = screen(tx(12_345, txn_id="A"), tx(12_345, offset=gap, txn_id="B"))
    assert first.flags == ()
    assert [f.code for f in second.flags] == ([DUPLICATE_PAYMENT] if flagged else [])


def test_duplicate_reason_names_the_earlier_payment() -> None:
    _, second = screen(tx(12_345, txn_id="A"), tx(12_345, offset=2, txn_id="B"))
    assert [f.reason for f in second.flags] == [f"same vendor and amount as A on {day(0)}"]


def test_the_earlier_dated_payment_is_the_original_wherever_it_is_in_the_file() -> None:
    later, earlier = screen(tx(12_345, offset=2, txn_id="LATE"), tx(12_345, offset=0, txn_id="EARLY"))
    assert [f.code for f in later.flags] == [DUPLICATE_PAYMENT] and earlier.flags == ()
    assert later.flags[0].reason == f"same vendor and amount as EARLY on {day(0)}"


def test_every_repeat_is_flagged_naming_the_one_before() -> None:
    results = screen(tx(12_345, txn_id="A"), tx(12_345, txn_id="B"), tx(12_345, offset=1, txn_id="C"))
    assert [[f.reason for f in r.flags] for r in results] == [
        [], [f"same vendor and amount as A on {day(0)}"], [f"same vendor and amount as B on {day(0)}"]
    ]


def test_duplicates_need_the_same_vendor_currency_and_amount() -> None:
    results = screen(tx(12_345, txn_id="A"), tx(12_346, txn_id="B"), tx(12_345, vendor="Globex Travel", txn_id="C"),
                     tx(12_345, currency="EUR", txn_id="D"), tx(12_345, vendor="acme  OFFICE supply", txn_id="E"))
    assert codes(results) == [[], [], [], [], [DUPLICATE_PAYMENT]]


def test_duplicate_of_a_payment_recorded_by_an_earlier_run() -> None:
    history = [PastPayment("OLD-7", day(0), "acme office supply", "USD", 12_345)]
    [result] = screen(tx(12_345, offset=3), history=history)
    assert [(f.code, f.reason) for f in result.flags] == [
        (DUPLICATE_PAYMENT, f"same vendor and amount as OLD-7 on {day(0)}, recorded by an earlier run")
    ]
    [too_late] = screen(tx(12_345, offset=4), history=history)
    assert too_late.flags == ()
    [backdated] = screen(tx(12_345, offset=-2), history=history)  # dated before the recorded one: still a repeat
    assert [f.code for f in backdated.flags] == [DUPLICATE_PAYMENT]


def test_duplicate_settings() -> None:
    same_day_only = DuplicateRule(window_days=0)
    assert codes(screen(tx(12_345, txn_id="A"), tx(12_345, offset=1, txn_id="B"), duplicates=same_day_only)) == [[], []]
    off = DuplicateRule(enabled=False)
    assert codes(screen(tx(12_345, txn_id="A"), tx(12_345, txn_id="B"), duplicates=off)) == [[], []]


def test_rules_are_listed_in_a_fixed_order() -> None:
    history = [PastPayment("OLD-1", day(0), "newco", "USD", 1_000_000), PastPayment("OLD-2", day(1), "newco", "USD", 950_000)]
    [result] = screen(tx(1_000_000, offset=2, vendor="NewCo"), history=history)
    assert [f.code for f in result.flags] == ["unfamiliar_vendor", STRUCTURING, DUPLICATE_PAYMENT, ROUND_AMOUNT]
