"""Tests for job.ingest: exact money, every accepted file shape, every rejection message."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from job.errors import InputError, LedgerError
from job.ledger.ingest import (
    CANONICAL_COLUMNS,
    Ledger,
    LedgerFormat,
    Transaction,
    currency_exponent,
    format_amount,
    format_amount_display,
    parse_amount,
    read_ledger,
)

from job.ledger import ingest_fast
from job.ledger.ingest import read_ledger as read_rows

FIXTURES = Path(__file__).parent / "fixtures" / "ledgers"


def read_columns(path, fmt: LedgerFormat = LedgerFormat()) -> Ledger:
    """How a run reads a large file: column-wise, or row by row where that cannot read it exactly."""
    try:
        fast = ingest_fast.read_ledger_fast(path, fmt)
    except ingest_fast.Unsupported:
        return read_rows(path, fmt)
    return Ledger(fast.path, fast.name, fast.sha256, ingest_fast.frame_transactions(fast.frame))


@pytest.fixture(scope="module", autouse=True, params=["rows", "columns", "columns-in-64-byte-blocks"])
def reader(request):
    """Every test here runs with the row-by-row reader and with the column-wise one (also in
    tiny blocks, so rows and the header straddle block boundaries): same results, same errors."""
    with pytest.MonkeyPatch.context() as patch:
        if request.param != "rows":
            patch.setitem(globals(), "read_ledger", read_columns)
        if request.param == "columns-in-64-byte-blocks":
            patch.setattr(ingest_fast, "BLOCK_BYTES", 64)
        yield request.param
DAY_OR_MONTH_FIRST = LedgerFormat(date_formats=("%d/%m/%Y", "%m/%d/%Y"))


def fixture(name: str) -> str:
    return str(FIXTURES / name)


def write(tmp_path: Path, data: bytes | str, name: str = "ledger.csv") -> str:
    """Write exact bytes (str is written as UTF-8 with no newline translation)."""
    target = tmp_path / name
    target.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return str(target)


def rejection(path: str, fmt: LedgerFormat = LedgerFormat()) -> str:
    with pytest.raises(LedgerError) as caught:
        read_ledger(path, fmt)
    return str(caught.value)


def amounts(ledger: Ledger) -> list[tuple[str, int, str]]:
    return [(t.txn_id, t.amount_minor, t.currency) for t in ledger.transactions]


# --- parse_amount -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10000.00", 1_000_000),
        ("10000.01", 1_000_001),
        ("9999.99", 999_999),
        ("1,234.56", 123_456),
        ("1,234,567.89", 123_456_789),
        ("(1,234.56)", -123_456),
        ("( 12.00 )", -1_200),
        ("-12.00", -1_200),
        ("+12.00", 1_200),
        ("\u22125.00", -500),
        ("-0.05", -5),
        ("-0.00", 0),
        ("0", 0),
        ("7.5", 750),
        (".5", 50),
        ("  42  ", 4_200),
        ("007.10", 710),
    ],
)
def test_parse_amount_plain_numbers_are_exact(text: str, expected: int) -> None:
    assert parse_amount(text, currency="USD") == (expected, None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$1,234.56", (123_456, "USD")),
        ("-$12.00", (-1_200, "USD")),
        ("$-12.00", (-1_200, "USD")),
        ("($12.00)", (-1_200, "USD")),
        ("$(12.00)", (-1_200, "USD")),
        ("€ 3.10", (310, "EUR")),
        ("£0.99", (99, "GBP")),
        ("¥1,500", (1_500, "JPY")),
        ("USD 12.00", (1_200, "USD")),
        ("12.00 EUR", (1_200, "EUR")),
        ("12.00EUR", (1_200, "EUR")),
        ("usd -3.00", (-300, "USD")),
        ("-3.00 CHF", (-300, "CHF")),
        ("(3.00) GBP", (-300, "GBP")),
        ("JPY 300", (300, "JPY")),
        ("BHD 1.234", (1_234, "BHD")),
        ("KWD -0.005", (-5, "KWD")),
    ],
)
def test_parse_amount_reads_symbols_and_codes(text: str, expected: tuple[int, str]) -> None:
    assert parse_amount(text, currency="USD") == expected


def test_dollar_sign_means_the_dollar_currency_in_context() -> None:
    assert parse_amount("$5.00", currency="CAD") == (500, "CAD")
    assert parse_amount("$5.00", currency="EUR") == (500, "USD")
    assert parse_amount("¥5.00", currency="CNY") == (500, "CNY")


@pytest.mark.parametrize(
    ("text", "point", "group", "expected"),
    [
        ("1.234,56", ",", ".", 123_456),
        ("-0,99", ",", ".", -99),
        ("1.234.567,00 €", ",", ".", 123_456_700),
        ("1 234,56", ",", " ", 123_456),
        ("1\u00a0234,56", ",", " ", 123_456),
        ("1'234.56", ".", "'", 123_456),
        ("1\u2019234.56", ".", "'", 123_456),
        ("1234.56", ".", "", 123_456),
    ],
)
def test_parse_amount_follows_configured_separators(text: str, point: str, group: str, expected: int) -> None:
    minor, _ = parse_amount(text, currency="EUR", decimal_separator=point, thousands_separator=group)
    assert minor == expected


def test_zero_and_three_decimal_currencies() -> None:
    assert parse_amount("1500", currency="JPY") == (1_500, None)
    assert parse_amount("1.500", currency="BHD") == (1_500, None)
    assert parse_amount("1.5", currency="OMR") == (1_500, None)


@pytest.mark.parametrize(
    ("text", "currency", "message"),
    [
        ("", "USD", "missing value"),
        ("   ", "USD", "missing value"),
        ("abc", "USD", "'abc' is not an amount"),
        ("12.", "USD", "'12.' is not an amount"),
        ("1.2.3", "USD", "'1.2.3' is not an amount"),
        ("--5", "USD", "'--5' is not an amount"),
        ("-(5)", "USD", "'-(5)' is not an amount"),
        ("USD 5 EUR", "USD", "'USD 5 EUR' is not an amount"),
        ("$", "USD", "'$' is not an amount"),
        ("1,23.45", "USD", "'1,23.45' has a misplaced thousands separator"),
        ("12,34", "USD", "'12,34' has a misplaced thousands separator"),
        (",123", "USD", "',123' has a misplaced thousands separator"),
        ("1,234.5,6", "USD", "'1,234.5,6' has a misplaced thousands separator"),
        ("12.345", "USD", "'12.345' has more decimals than USD allows (2)"),
        ("12.5", "JPY", "'12.5' has more decimals than JPY allows (0)"),
        ("¥12.5", "USD", "'¥12.5' has more decimals than JPY allows (0)"),
        ("1.2345", "KWD", "'1.2345' has more decimals than KWD allows (3)"),
        ("1e5", "USD", "'1e5' uses exponent notation"),
        ("1.5E-3", "USD", "'1.5E-3' uses exponent notation"),
        ("NaN", "USD", "'NaN' is not a finite number"),
        ("-inf", "USD", "'-inf' is not a finite number"),
        ("Infinity", "USD", "'Infinity' is not a finite number"),
        ("١٢", "USD", "'١٢' is not an amount"),
    ],
)
def test_parse_amount_rejections(text: str, currency: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_amount(text, currency=currency)
    assert str(caught.value) == message


def test_parse_amount_rejects_grouping_that_does_not_match_configuration() -> None:
    with pytest.raises(ValueError, match=r"^'1234.56' has a misplaced thousands separator$"):
        parse_amount("1234.56", currency="EUR", decimal_separator=",", thousands_separator=".")
    with pytest.raises(ValueError, match=r"^'1,234.56' is not an amount$"):
        parse_amount("1,234.56", currency="USD", thousands_separator="")


# --- format_amount and currency_exponent -------------------------------------------


@pytest.mark.parametrize(
    ("minor", "currency", "plain", "display"),
    [
        (123_456, "USD", "1234.56", "1,234.56"),
        (1_234_567, "USD", "12345.67", "12,345.67"),
        (-5, "USD", "-0.05", "-0.05"),
        (0, "EUR", "0.00", "0.00"),
        (-123_456_789, "EUR", "-1234567.89", "-1,234,567.89"),
        (100, "JPY", "100", "100"),
        (1_234_567, "JPY", "1234567", "1,234,567"),
        (1_234_567, "BHD", "1234.567", "1,234.567"),
        (-1, "KWD", "-0.001", "-0.001"),
    ],
)
def test_format_amount_is_exact(minor: int, currency: str, plain: str, display: str) -> None:
    assert format_amount(minor, currency) == plain
    assert format_amount_display(minor, currency) == display


def test_format_amount_refuses_floats() -> None:
    with pytest.raises(TypeError):
        format_amount(12.5, "USD")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "places"),
    [("USD", 2), ("eur", 2), ("JPY", 0), ("KRW", 0), ("BHD", 3), ("KWD", 3), ("OMR", 3), ("JOD", 3),
     ("TND", 3)],
)
def test_currency_exponent(code: str, places: int) -> None:
    assert currency_exponent(code) == places


@pytest.mark.parametrize("code", ["", "US", "USDX", "U$D", "12A"])
def test_currency_exponent_rejects_non_codes(code: str) -> None:
    with pytest.raises(ValueError, match="is not a 3-letter currency code"):
        currency_exponent(code)


# --- properties ---------------------------------------------------------------------

TWO_DECIMAL_CURRENCIES = st.sampled_from(["USD", "EUR", "GBP", "CAD", "CHF"])


@given(st.integers(), TWO_DECIMAL_CURRENCIES)
def test_format_then_parse_round_trips(minor: int, currency: str) -> None:
    assert parse_amount(format_amount(minor, currency), currency=currency) == (minor, None)


@given(st.integers(), st.sampled_from(["USD", "JPY", "BHD", "CLF"]))
def test_display_format_then_parse_round_trips(minor: int, currency: str) -> None:
    assert parse_amount(format_amount_display(minor, currency), currency=currency) == (minor, None)


@given(
    st.text(),
    st.sampled_from([(".", ","), (",", "."), (",", " "), (".", "'"), (".", "")]),
    st.sampled_from(["USD", "JPY", "BHD", "CAD"]),
)
def test_parse_amount_raises_only_value_error(text: str, seps: tuple[str, str], currency: str) -> None:
    point, group = seps
    try:
        minor, code = parse_amount(text, currency=currency, decimal_separator=point,
                                   thousands_separator=group)
    except ValueError:
        return
    assert type(minor) is int
    assert code is None or (len(code) == 3 and code.isupper())


@given(
    st.integers(0, 10**15),
    st.integers(0, 99),
    st.sampled_from(["{}", "-{}", "({})", "$-{}", "-$ {}", "($ {})", "USD {}", "{} USD", "(USD {})"]),
    st.booleans(),
)
def test_written_amounts_parse_exactly(units: int, cents: int, shape: str, grouped: bool) -> None:
    number = f"{units:,}.{cents:02d}" if grouped else f"{units}.{cents:02d}"
    minor, code = parse_amount(shape.format(number), currency="USD")
    sign = -1 if "-" in shape or "(" in shape else 1
    assert minor == sign * (units * 100 + cents)
    assert code == ("USD" if "$" in shape or "USD" in shape else None)


# --- read_ledger: accepted files ----------------------------------------------------


def test_basic_ledger() -> None:
    path = fixture("basic.csv")
    ledger = read_ledger(path)
    assert ledger.path == path
    assert ledger.name == "basic.csv"
    assert ledger.sha256 == hashlib.sha256(Path(path).read_bytes()).hexdigest()
    assert amounts(ledger) == [
        ("TX-1", 1_000_000, "USD"),
        ("TX-2", 1_000_001, "USD"),
        ("TX-3", -123_456, "USD"),
        ("TX-4", -1_200, "USD"),
        ("TX-5", 750, "USD"),
        ("TX-6", 1_200, "EUR"),
        ("TX-7", 5, "USD"),
    ]
    assert all(type(t.amount_minor) is int for t in ledger.transactions)
    assert ledger.transactions[0] == Transaction(
        "TX-1", "2026-03-01", 1_000_000, "USD", "Acme Supplies", "Office chairs", "", 2
    )
    diner = ledger.transactions[4]
    assert (diner.vendor, diner.memo, diner.line) == ("Joe's Diner, Inc.", "Lunch, team", 6)
    assert ledger.transactions[5].memo == ""
    padded = ledger.transactions[6]
    assert (padded.vendor, padded.memo) == ("Padded Vendor", "padded memo")


def test_headers_match_case_insensitively_and_currency_comes_from_the_amount() -> None:
    ledger = read_ledger(fixture("symbols_no_currency_column.csv"))
    assert amounts(ledger) == [
        ("A-1", 150, "EUR"),
        ("A-2", 1_200, "GBP"),
        ("A-3", 25_000, "USD"),
        ("A-4", -100_000, "USD"),
    ]
    assert [(t.vendor, t.account, t.memo) for t in ledger.transactions][:2] == [
        ("Café Zentral", "4000", ""),
        ("London Ltd", "4001", ""),
    ]


def test_default_currency_is_used_without_currency_column_or_code(tmp_path: Path) -> None:
    path = write(tmp_path, "id,date,amount,vendor\nX,2026-01-01,12.34,V\n")
    assert amounts(read_ledger(path, LedgerFormat(default_currency="chf"))) == [("X", 1_234, "CHF")]


def test_semicolon_delimiter_with_decimal_comma_and_mapped_columns() -> None:
    fmt = LedgerFormat(
        columns={
            "id": "Buchung",
            "date": "Datum",
            "amount": "Betrag",
            "currency": "Währung",
            "vendor": "Empfänger",
            "memo": "Verwendungszweck",
        },
        date_formats=("%d.%m.%Y",),
        decimal_separator=",",
        thousands_separator=".",
    )
    ledger = read_ledger(fixture("semicolon_decimal_comma.csv"), fmt)
    assert amounts(ledger) == [("B-1", 123_456, "EUR"), ("B-2", -99, "EUR"), ("B-3", 123_456_700, "EUR")]
    assert [t.date for t in ledger.transactions] == ["2026-04-03", "2026-04-04", "2026-04-05"]
    assert ledger.transactions[2].memo == "Lager, Regale"


def test_tab_delimiter_is_detected() -> None:
    ledger = read_ledger(fixture("tab_delimited.tsv"))
    assert amounts(ledger) == [("T-1", 123_450, "USD"), ("T-2", 300, "USD")]
    first = ledger.transactions[0]
    assert (first.vendor, first.memo) == ("Tab Vendor, Ltd", "comma, inside")


def test_dollar_sign_in_a_cad_ledger_is_cad(tmp_path: Path) -> None:
    path = write(tmp_path, "id,date,amount,currency,vendor\nX,2026-01-01,$5.00,CAD,V\n")
    assert amounts(read_ledger(path)) == [("X", 500, "CAD")]


def test_explicit_delimiter_overrides_detection(tmp_path: Path) -> None:
    path = write(tmp_path, "id;date;amount;vendor\nX;2026-01-01;1,50;V\n")
    fmt = LedgerFormat(delimiter=";", decimal_separator=",", thousands_separator=".")
    assert amounts(read_ledger(path, fmt)) == [("X", 150, "USD")]


def test_quoted_newlines_keep_physical_start_lines() -> None:
    ledger = read_ledger(fixture("quoted_newlines.csv"))
    starts = [(t.txn_id, t.line) for t in ledger.transactions]
    assert starts == [("Q-1", 2), ("Q-2", 4), ("Q-3", 5), ("Q-4", 8)]
    assert ledger.transactions[0].memo == "first line second line"
    assert ledger.transactions[2].memo == "a b c"


def test_blank_lines_are_skipped_and_lines_still_count() -> None:
    ledger = read_ledger(fixture("blank_lines.csv"))
    assert [(t.txn_id, t.line) for t in ledger.transactions] == [("L-1", 3), ("L-2", 5), ("L-3", 7)]


def test_header_only_is_an_empty_ledger() -> None:
    ledger = read_ledger(fixture("header_only.csv"))
    assert ledger.transactions == []
    assert ledger.name == "header_only.csv"


def test_utf8_bom_is_removed(tmp_path: Path) -> None:
    path = write(tmp_path, b"\xef\xbb\xbfid,date,amount,vendor\r\nX,2026-01-01,1.00,Caf\xc3\xa9\r\n")
    ledger = read_ledger(path)
    assert [(t.txn_id, t.vendor) for t in ledger.transactions] == [("X", "Café")]


def test_cp1252_file_is_decoded(tmp_path: Path) -> None:
    text = "id,date,amount,vendor,memo\nX,2026-01-01,€5.00,Bistro,Café – fee\n"
    path = write(tmp_path, text.encode("cp1252"))
    ledger = read_ledger(path)
    (transaction,) = ledger.transactions
    assert (transaction.memo, transaction.amount_minor, transaction.currency) == ("Café – fee", 500, "EUR")


@pytest.mark.parametrize("newline", ["\r\n", "\r", "\n"])
def test_line_endings(tmp_path: Path, newline: str) -> None:
    rows = [
        "id,date,amount,vendor,memo",
        "A,2026-01-01,1.00,V,one",
        "",
        'B,2026-01-02,2.00,V,"two',
        'lines"',
        "C,2026-01-03,3.00,V,",
    ]
    path = write(tmp_path, newline.join(rows) + newline)
    ledger = read_ledger(path)
    assert [(t.txn_id, t.line, t.memo) for t in ledger.transactions] == [
        ("A", 2, "one"),
        ("B", 4, "two lines"),
        ("C", 6, ""),
    ]


def test_control_characters_are_cleaned(tmp_path: Path) -> None:
    row = 'X,2026-01-01,1.00,"Ven\tdor\x07","a\r\nb\x1bc\x85d"'
    path = write(tmp_path, f"id,date,amount,vendor,memo\n{row}\n")
    (transaction,) = read_ledger(path).transactions
    assert (transaction.vendor, transaction.memo) == ("Ven dor", "a bc d")


def test_one_megabyte_memo(tmp_path: Path) -> None:
    memo = "x" * 1_048_576
    rows = f'BIG,2026-01-01,1.00,V,"{memo}"\nNEXT,2026-01-02,2.00,V,\n'
    path = write(tmp_path, "id,date,amount,vendor,memo\n" + rows)
    ledger = read_ledger(path)
    assert [(t.txn_id, len(t.memo), t.line) for t in ledger.transactions] == [
        ("BIG", 1_048_576, 2),
        ("NEXT", 0, 3),
    ]


def test_day_or_month_first_dates_that_agree_are_accepted() -> None:
    ledger = read_ledger(fixture("day_month_dates.csv"), DAY_OR_MONTH_FIRST)
    assert [t.date for t in ledger.transactions] == ["2026-04-13", "2026-04-13", "2026-05-05"]


def test_yen_has_no_decimals() -> None:
    assert amounts(read_ledger(fixture("yen.csv"))) == [
        ("Y-1", 1_500, "JPY"),
        ("Y-2", 300, "JPY"),
        ("Y-3", 1_500, "JPY"),
    ]


def test_path_like_is_accepted() -> None:
    ledger = read_ledger(FIXTURES / "header_only.csv")
    assert ledger.path == str(FIXTURES / "header_only.csv")


# --- read_ledger: rejections ---------------------------------------------------------


def test_ledger_error_is_an_input_error() -> None:
    with pytest.raises(InputError):
        read_ledger(fixture("empty.csv"))


@pytest.mark.parametrize(
    ("name", "fmt", "message"),
    [
        ("empty.csv", LedgerFormat(), "{path}: file is empty"),
        (
            "not_a_ledger.txt",
            LedgerFormat(),
            "{path}:1: not a ledger CSV: the header names none of the columns "
            "id, date, amount, currency, vendor, memo, account (found: Dear team, )",
        ),
        (
            "missing_amount_column.csv",
            LedgerFormat(),
            "{path}:1: missing required column 'amount' (found: id, date, vendor, memo)",
        ),
        ("duplicate_ids.csv", LedgerFormat(), "{path}:5: id: duplicate id 'TX-1' (first on line 3)"),
        ("wrong_field_count.csv", LedgerFormat(), "{path}:3: expected 4 fields, found 5"),
        (
            "ambiguous_dates.csv",
            DAY_OR_MONTH_FIRST,
            "{path}:3: date: '03/04/2026' is ambiguous: 2026-04-03 (%d/%m/%Y) or 2026-03-04 (%m/%d/%Y)",
        ),
        (
            "yen_with_decimals.csv",
            LedgerFormat(),
            "{path}:3: amount: '12.50' has more decimals than JPY allows (0)",
        ),
        (
            "semicolon_decimal_comma.csv",
            LedgerFormat(),
            "{path}:1: not a ledger CSV: the header names none of the columns "
            "id, date, amount, currency, vendor, memo, account "
            "(found: Buchung, Datum, Betrag, Währung, Empfänger, Verwendungszweck)",
        ),
    ],
)
def test_fixture_rejections(name: str, fmt: LedgerFormat, message: str) -> None:
    path = fixture(name)
    assert rejection(path, fmt) == message.format(path=path)


HEADER = "id,date,amount,currency,vendor,memo\n"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (",2026-01-01,1.00,USD,V,m", "3: id: missing value"),
        ("X,2026-01-01,1.00,USD,  ,m", "3: vendor: missing value"),
        ("X,,1.00,USD,V,m", "3: date: missing value"),
        ("X,2026-13-01,1.00,USD,V,m", "3: date: '2026-13-01' does not match %Y-%m-%d"),
        ("X,01/02/2026,1.00,USD,V,m", "3: date: '01/02/2026' does not match %Y-%m-%d"),
        ("X,26-01-01,1.00,USD,V,m", "3: date: '26-01-01' does not match %Y-%m-%d"),
        ("X,2026-01-01,,USD,V,m", "3: amount: missing value"),
        ("X,2026-01-01,ten,USD,V,m", "3: amount: 'ten' is not an amount"),
        ('X,2026-01-01,"1,23.45",USD,V,m', "3: amount: '1,23.45' has a misplaced thousands separator"),
        ("X,2026-01-01,1.001,USD,V,m", "3: amount: '1.001' has more decimals than USD allows (2)"),
        ("X,2026-01-01,1e3,USD,V,m", "3: amount: '1e3' uses exponent notation"),
        ("X,2026-01-01,nan,USD,V,m", "3: amount: 'nan' is not a finite number"),
        ("X,2026-01-01,99999999999999999.99,USD,V,m", "3: amount: '99999999999999999.99' is too large to record exactly"),
        ("X,2026-01-01,€5.00,USD,V,m", "3: amount: '€5.00' is in EUR but the currency column says USD"),
        ("X,2026-01-01,5.00 GBP,USD,V,m", "3: amount: '5.00 GBP' is in GBP but the currency column says USD"),
        ("X,2026-01-01,1.00,US,V,m", "3: currency: 'US' is not a 3-letter currency code"),
        ("X,2026-01-01,1.00,US$,V,m", "3: currency: 'US$' is not a 3-letter currency code"),
        ("X,2026-01-01,1.00,,V,m", "3: currency: missing value"),
        ("X,2026-01-01,1.00,USD,V", "3: expected 6 fields, found 5"),
        ('X,2026-01-01,1.00,USD,V,"never closed\nY,2026-01-02', "3: malformed CSV: unexpected end of data"),
        ('X,2026-01-01,1.00,USD,"V"x,m', "3: malformed CSV: ',' expected after '\"'"),
    ],
)
def test_row_rejections_name_file_line_and_column(tmp_path: Path, row: str, message: str) -> None:
    path = write(tmp_path, HEADER + "OK,2026-01-01,1.00,USD,V,m\n" + row + "\n")
    assert rejection(path) == f"{path}:{message}"


def test_the_largest_amount_sqlite_holds_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "X,2026-01-01,92233720368547758.07,USD,V,m\nY,2026-01-01,-92233720368547758.08,USD,V,m\n")
    assert amounts(read_ledger(path)) == [("X", 2**63 - 1, "USD"), ("Y", -(2**63), "USD")]


def test_rejection_names_the_column_as_written_in_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "Ref;Booked;Sum;Payee\nR-1;2026-01-01;abc;P\n")
    fmt = LedgerFormat(columns={"id": "Ref", "date": "Booked", "amount": "Sum", "vendor": "Payee"})
    assert rejection(path, fmt) == f"{path}:2: Sum: 'abc' is not an amount"


def test_first_error_wins_and_nothing_is_returned(tmp_path: Path) -> None:
    path = write(tmp_path, "id,date,amount,vendor\nA,2026-01-01,1.00,V\nB,bad,1.00,V\nC,2026-01-01,x,V\n")
    assert rejection(path) == f"{path}:3: date: 'bad' does not match %Y-%m-%d"


def test_error_line_is_the_physical_start_line_after_quoted_newlines(tmp_path: Path) -> None:
    rows = 'A,2026-01-01,1.00,V,"x\ny\nz"\n\nB,2026-01-01,oops,V,\n'
    path = write(tmp_path, "id,date,amount,vendor,memo\n" + rows)
    assert rejection(path) == f"{path}:6: amount: 'oops' is not an amount"


def test_missing_several_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "ID,Memo\n")
    message = "missing required columns 'date', 'amount', 'vendor' (found: ID, Memo)"
    assert rejection(path) == f"{path}:1: {message}"


def test_mapped_column_missing_is_named_as_configured(tmp_path: Path) -> None:
    path = write(tmp_path, "id,date,amount,vendor\n")
    fmt = LedgerFormat(columns={"amount": "Betrag"})
    message = "missing required column 'Betrag' (found: id, date, amount, vendor)"
    assert rejection(path, fmt) == f"{path}:1: {message}"


def test_column_used_twice_in_header(tmp_path: Path) -> None:
    path = write(tmp_path, "id,date,amount,vendor,Amount\n")
    assert rejection(path) == f"{path}:1: column 'amount' appears 2 times in the header"


def test_whitespace_only_file_is_empty(tmp_path: Path) -> None:
    path = write(tmp_path, "\n  \r\n\n")
    assert rejection(path) == f"{path}: file is empty"


def test_bom_only_file_is_empty(tmp_path: Path) -> None:
    path = write(tmp_path, b"\xef\xbb\xbf")
    assert rejection(path) == f"{path}: file is empty"


def test_binary_file_is_not_csv(tmp_path: Path) -> None:
    path = write(tmp_path, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "image.csv")
    assert rejection(path) == f"{path}: not a CSV file: it contains NUL bytes (binary data?)"


def test_utf16_file_is_not_csv(tmp_path: Path) -> None:
    path = write(tmp_path, "id,date,amount,vendor\n".encode("utf-16"))
    assert rejection(path) == f"{path}: not a CSV file: it is UTF-16 text; save it as UTF-8"


def test_undecodable_file(tmp_path: Path) -> None:
    path = write(tmp_path, b"id,date,amount,vendor\nX,2026-01-01,1.00,V\x81\n")
    assert rejection(path) == (
        f"{path}: cannot decode the file as utf-8-sig (byte 0x81 on line 2) or cp1252 (byte 0x81 on line 2)"
    )


def test_bom_file_with_invalid_utf8_is_not_reread_as_cp1252(tmp_path: Path) -> None:
    path = write(tmp_path, b"\xef\xbb\xbfid,date,amount,vendor\nX,2026-01-01,1.00,Caf\xe9\n")
    assert rejection(path) == f"{path}: cannot decode the file as utf-8-sig (byte 0xe9 on line 2)"


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "absent.csv")
    assert rejection(path) == f"{path}: cannot read file: No such file or directory"


# --- LedgerFormat -------------------------------------------------------------------


def test_canonical_columns() -> None:
    assert CANONICAL_COLUMNS == ("id", "date", "amount", "currency", "vendor", "memo")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"columns": {"ammount": "Betrag"}}, r"unknown column names \['ammount'\]"),
        ({"decimal_separator": ","}, "unsupported separators"),
        ({"thousands_separator": "_"}, "unsupported separators"),
        ({"delimiter": "|"}, "delimiter '|' is not"),
        ({"encodings": ("no-such-codec",)}, "known encodings"),
        ({"date_formats": ()}, "need date formats"),
        ({"default_currency": "dollars"}, "is not a 3-letter currency code"),
    ],
)
def test_ledger_format_rejects_impossible_settings(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LedgerFormat(**options)
