"""The column-wise reader agrees with the row-by-row one: same transactions, same errors.

test_ingest.py runs all of its cases through both readers too; here Hypothesis writes
random ledgers, valid and not, and checks that `read_ledger_fast` either reads exactly
what `read_ledger` reads, raises exactly its error, or declines (`Unsupported`) a file
it cannot read the same way, and that it does not decline ordinary files.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from job.ledger import ingest_fast
from job.errors import LedgerError
from job.ledger.ingest import LedgerFormat, read_ledger
from job.ledger.ingest_fast import Unsupported, frame_transactions, read_ledger_fast

IDS = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=1, max_size=8)
DATES = st.sampled_from(["2026-11-24", "2026-11-25", "2026-02-28", "2024-02-29"]) | st.sampled_from(
    ["2026-02-30", "2026-13-01", "24/11/2026", "2026-1-5", "", "26-11-24", " 2026-11-24 ", "2026-11-24T00:00"]
)
PLAIN_AMOUNTS = st.builds(lambda units, cents, neg, grouped: ("-" if neg else "") + (f"{units:,}" if grouped else str(units)) + f".{cents:02d}",
                          st.integers(0, 10**9), st.integers(0, 99), st.booleans(), st.booleans())
ODD_AMOUNTS = st.sampled_from([
    "$1,234.56", "(12.00)", "-$5.00", "USD 7.10", "12.00 EUR", "1.5", "7", ".5", "+3.00", "\u22125.00", "12.", "1,23.45",
    "12.345", "1e5", "NaN", "", "abc", " 42 ", "0", "-0.00", "1 234.56", "1'234.56", "99999999999999999.99", "¥1,500", "€ 3.10",
])
CURRENCIES = st.sampled_from(["USD", "usd", "EUR", "JPY", "KWD"]) | st.sampled_from(["", "US", "EURO", "U$D", "123"])
ODD_TEXTS = [
    "Acme Office Supply", "Joe's Diner, Inc.", 'The "Best" Co', "Café Zentral", "  padded  ", "tab\there", "", "misc",
    "ctl\x01char", "nbsp\u00a0end\u00a0", "line\u2028sep", "a, b, c", "=SUM(A1)", "x" * 40, "日本語", "\x85nel", " \u3000wide ",
]
TEXTS = st.sampled_from(ODD_TEXTS + ["new\nline", "cr\rin"])


@st.composite
def ledgers(draw, *, plain: bool = False, odd_cells: bool = False):
    """(bytes of a ledger file, its format). `plain`: ordinary files; `odd_cells`: any cell
    content, amounts and dates, in an ordinary file structure."""
    with_currency = draw(st.booleans())
    header = ["id", "date", "amount"] + (["currency"] if with_currency else []) + ["vendor", "memo", "account"]
    rows = []
    for _ in range(draw(st.integers(0, 12))):
        amount = draw(PLAIN_AMOUNTS if plain else PLAIN_AMOUNTS | ODD_AMOUNTS)
        texts = st.sampled_from(ODD_TEXTS) if odd_cells else TEXTS
        row = {
            "id": draw(IDS),
            "date": "2026-11-24" if plain else draw(DATES),
            "amount": amount,
            "currency": draw(st.sampled_from(["USD", "EUR"]) if plain else CURRENCIES),
            "vendor": draw(st.sampled_from(["Acme", "Joe's Diner, Inc.", 'The "Best" Co', "Café"]) if plain else texts),
            "memo": draw(st.sampled_from(["Toner", "", "misc, various"]) if plain else texts),
            "account": draw(st.sampled_from(["6100", ""]) if plain else texts),
        }
        rows.append([row[h] for h in header])
    if not plain and rows and draw(st.booleans()):  # repeat an id
        rows.append(list(rows[draw(st.integers(0, len(rows) - 1))]))
    out = io.StringIO()
    ending = draw(st.sampled_from(["\n", "\r\n"] if plain or odd_cells else ["\n", "\r\n", "\r"]))
    writer = csv.writer(out, lineterminator=ending)
    writer.writerow(header)
    writer.writerows(rows)
    text = out.getvalue()
    if not plain and not odd_cells:
        if draw(st.booleans()):
            text = text.rstrip("\r\n")  # no line break after the last row
        if draw(st.integers(0, 5)) == 0:
            text = text.replace(ending, ending + ending, 1)  # a blank line
        if draw(st.integers(0, 5)) == 0 and rows:
            text = text.rstrip("\r\n") + ending + "X,2026-11-24" + ending  # a short row
        if draw(st.integers(0, 5)) == 0 and rows:
            text = text.replace(",", ", ", 3)  # spaces after delimiters
    data = text.encode("utf-8")
    if draw(st.integers(0, 4)) == 0:
        data = b"\xef\xbb\xbf" + data
    return data, LedgerFormat()


def outcome(reader, path: str, fmt: LedgerFormat):
    try:
        return "ok", reader(path, fmt)
    except LedgerError as error:
        return "error", str(error)


def compare(tmp_path: Path, data: bytes, fmt: LedgerFormat) -> str:
    """'same' or 'declined'; fails when the readers disagree."""
    path = tmp_path / "ledger.csv"
    path.write_bytes(data)
    expected_kind, expected = outcome(read_ledger, str(path), fmt)
    try:
        kind, got = outcome(read_ledger_fast, str(path), fmt)
    except Unsupported:
        return "declined"
    assert kind == expected_kind, (got, expected)
    if kind == "error":
        assert got == expected
    else:
        assert got.sha256 == expected.sha256 and got.name == expected.name
        assert frame_transactions(got.frame) == expected.transactions
    return "same"


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@SETTINGS
@given(case=ledgers(), block=st.sampled_from([64, 1 << 20]))
def test_the_column_wise_reader_reads_what_the_row_reader_reads_or_declines(tmp_path: Path, case, block: int) -> None:
    data, fmt = case
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ingest_fast, "BLOCK_BYTES", block)
        compare(tmp_path, data, fmt)


@SETTINGS
@given(case=ledgers(odd_cells=True), block=st.sampled_from([64, 1 << 20]))
def test_any_cells_in_an_ordinary_file_are_read_column_wise_with_the_same_result(tmp_path: Path, case, block: int) -> None:
    data, fmt = case
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ingest_fast, "BLOCK_BYTES", block)
        assert compare(tmp_path, data, fmt) == "same"


@SETTINGS
@given(case=ledgers(plain=True), block=st.sampled_from([64, 1 << 20]))
def test_ordinary_ledgers_are_read_column_wise(tmp_path: Path, case, block: int) -> None:
    data, fmt = case
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ingest_fast, "BLOCK_BYTES", block)
        assert compare(tmp_path, data, fmt) == "same"


@pytest.mark.parametrize(
    ("data", "declined"),
    [
        (b'id,date,amount,vendor\n1,2026-11-24,5.00,"a\nb"\n', True),  # a line break inside quotes
        (b"id,date,amount,vendor\n1,2026-11-24,5.00,a\n\n2,2026-11-24,5.00,b\n", True),  # a blank line
        (b"id,date,amount,vendor\n1,2026-11-24,5.00\n", True),  # a short row
        (b'id,date,amount,vendor\n1,2026-11-24,5.00, "a"\n', True),  # a quote after a space
        (b"id,date,amount,vendor\r1,2026-11-24,5.00,a\r", True),  # CR line endings
        (b"id,date,amount,vendor\n1,2026-11-24,5.00,caf\xe9\n", True),  # not UTF-8 (cp1252)
        (b"id,date,amount,vendor\r\n1,2026-11-24,5.00,a\r\n", False),
        (b'id,date,amount,vendor\n1,2026-11-24,"$1,234.56",a\n2,2026-11-24,(5.00),b\n', False),  # odd rows read by ingest's row code
        (b"id,date,amount,vendor\n1,2026-11-24,5.00,a\n1,2026-11-24,5.00,a\n", False),  # duplicate id: the same error
        (b"id,date,amount,vendor\n1,2026-11-24,5.00,a\n2,2026-11-24,5.000,a\n", False),  # too many decimals: the same error
    ],
)
def test_what_the_column_wise_reader_declines(tmp_path: Path, data: bytes, declined: bool) -> None:
    assert compare(tmp_path, data, LedgerFormat()) == ("declined" if declined else "same")


def test_an_earlier_duplicate_id_is_reported_before_a_later_bad_row(tmp_path: Path) -> None:
    rows = "".join(f"T-{n},2026-11-24,{n}.00,V\n" for n in range(300)) + "T-5,2026-11-24,1.00,V\n" + "X,2026-11-24,bad,V\n"
    path = tmp_path / "ledger.csv"
    path.write_text("id,date,amount,vendor\n" + rows, encoding="utf-8")
    for block in (64, 1 << 20):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(ingest_fast, "BLOCK_BYTES", block)
            with pytest.raises(LedgerError) as caught:
                read_ledger_fast(str(path))
        assert str(caught.value) == f"{path}:302: id: duplicate id 'T-5' (first on line 7)"


def test_progress_is_reported_per_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ledger.csv"
    path.write_text("id,date,amount,vendor\n" + "".join(f"T-{n},2026-11-24,{n}.00,V\n" for n in range(100)), encoding="utf-8")
    monkeypatch.setattr(ingest_fast, "BLOCK_BYTES", 256)
    seen = []
    read_ledger_fast(str(path), progress=lambda done, total: seen.append((done, total)))
    size = path.stat().st_size
    assert len(seen) > 3 and seen[-1] == (size, size) and seen == sorted(seen)


def test_the_whitespace_stripped_is_what_python_strips() -> None:
    assert ingest_fast.PY_WHITESPACE == "".join(chr(c) for c in range(0x110000) if chr(c).isspace())
