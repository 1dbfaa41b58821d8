"""Every bad-input ledger shipped in tests/fixtures/ledgers is read exactly or rejected with
`file:line: column: what is wrong`, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from job.errors import LedgerError
from job.ledger.ingest import LedgerFormat, read_ledger

FIXTURES = Path(__file__).parent / "fixtures" / "ledgers"

EXPECTED = {  # file -> (amounts read, in minor units) or the rejection's "line: column: problem" start
    "utf8_bom.csv": [1250],
    "cp1252.csv": [9900],
    "crlf.csv": [100, 200],
    "cr_only.csv": [100, 200],
    "parentheses_negative.csv": [-123456],
    "currency_codes.csv": [1000, 1000, 750],
    "non_numeric_amount.csv": ":3: amount: ",
    "too_many_decimals.csv": ":2: amount: ",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_is_read_exactly_or_rejected_with_file_line_and_column(name: str) -> None:
    path = FIXTURES / name
    expected = EXPECTED[name]
    if isinstance(expected, list):
        ledger = read_ledger(path, LedgerFormat())
        assert [t.amount_minor for t in ledger.transactions] == expected
        return
    with pytest.raises(LedgerError) as caught:
        read_ledger(path, LedgerFormat())
    assert str(caught.value).startswith(str(path) + expected)
    assert "\n" not in str(caught.value)


def test_text_survives_the_encoding() -> None:
    assert read_ledger(FIXTURES / "cp1252.csv").transactions[0].vendor == "Café – Paris"
    assert read_ledger(FIXTURES / "utf8_bom.csv").transactions[0].vendor == "Café Rouge"
    assert [t.currency for t in read_ledger(FIXTURES / "currency_codes.csv").transactions] == ["USD", "EUR", "GBP"]


def test_every_shipped_ledger_fixture_reads_or_fails_cleanly() -> None:
    for path in sorted(FIXTURES.iterdir()):
        try:
            read_ledger(path, LedgerFormat())
        except LedgerError as exc:
            assert str(exc).startswith(str(path)) and "\n" not in str(exc)
