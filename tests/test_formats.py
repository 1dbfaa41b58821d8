"""Every export format read as a user's file would be: exact amounts, ids, lines, detection, and errors.

The fixtures in tests/fixtures/formats/ were written for these tests from the formats'
published descriptions (camt.053 from the ISO 20022 schema, MT940 from the SWIFT field
specifications and the German DFÜ-Abkommen's :86: subfields, OFX 1.x/2.x, BAI2, DATEV's
Buchungsstapel header record) and from how the accounting systems lay out their report
exports. Each has debits and credits, another currency, a reversal, a memo over two lines
and names beyond ASCII.
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from xlsx_writer import Number, write_xlsx

from job.errors import LedgerError
from job.ledger.formats.common import decimal_minor
from job.ledger.formats.detect import detect_format
from job.ledger.formats.inspect import inspect_file
from job.ledger.formats.mt940 import read_mt940
from job.ledger.formats.read import load_file, read_ledger_file
from job.ledger.ingest import LedgerFormat, read_ledger
from job.ledger.ingest_fast import frame_transactions, transactions_frame

FIXTURES = Path(__file__).parent / "fixtures" / "formats"
EXAMPLE = Path(__file__).parent.parent / "examples" / "ledger-2026-11-24.csv"
CP1252 = ("sap_fbl1n.csv", "datev_buchungsstapel.csv", "mt940_deutsche.sta", "ofx1_checking.ofx")

# file -> (detected format, rows as recorded: id, date, amount in minor units, currency, vendor, memo, account, line)
EXPECTED = {
    "bai2_prior_day.bai": (
        "bai2",
        [
            ('bai2-e2e653a479d6179c-1', '2026-11-30', 48025, 'USD', 'Check 1042 Northwind Logistics', 'Check Paid', '4417011234', 4),
            ('bai2-7c7d071036ad387a-1', '2026-11-30', -100000, 'USD', 'Incoming wire from Contoso Consulting refund of overpayment', 'Incoming Money Transfer ref INV-RF-12', '4417011234', 5),
            ('bai2-b1b9af2677e6d37b-1', '2026-11-30', 185185, 'USD', 'Outgoing wire to Société Générale Services consulting October (USD 2000.00)', 'Outgoing Money Transfer ref INV-2211', '4417011234', 7),
            ('bai2-3383f42784b0c7a2-1', '2026-11-30', -48025, 'USD', 'Debit reversal check 1042', 'Debit Reversal', '4417011234', 9),
            ('bai2-5a016f0f7ea1f7e7-1', '2026-11-30', 4500, 'USD', 'Northwind Logistics pallet fee', 'Miscellaneous ACH Debit ref PALLET', '4417011234', 10),
            ('bai2-d6b99f72dd367143-1', '2026-11-30', 4500, 'USD', 'Northwind Logistics pallet fee', 'Miscellaneous ACH Debit ref PALLET', '4417011234', 11),
        ],
    ),
    "camt053_v02.xml": (
        "camt053",
        [
            ('CH-4411-01', '2026-11-04', 98040, 'CHF', 'Zürcher Druckerei AG', 'Flyer Druck Auftrag 77', '0230-123456.01', 1),
            ('CH-4411-02', '2026-11-18', 15000, 'CHF', 'Genève Café Sàrl', 'Reversal: Storno Gutschrift 12', '0230-123456.01', 2),
        ('CH-4411-03', '2026-11-25', -462000, 'CHF', 'Øresund Trading ApS', 'Invoice 5531 (instructed 4800.00 EUR)', '0230-123456.01', 3),
        ],
    ),
    "camt053_v08.xml": (
        "camt053",
        [
            ('2026110300012', '2026-11-03', 125000, 'EUR', 'Müller Bürobedarf GmbH', 'Rechnung RE-2026-0815 Bueromoebel zwei Schreibtische', 'DE02120300000000202051', 1),
            ('FX-2026110500007', '2026-11-05', 185185, 'EUR', 'Société Générale Services', 'Consulting October INV-2211 (instructed 2000.00 USD)', 'DE02120300000000202051', 2),
            ('2026111000021/1', '2026-11-10', 280000, 'EUR', 'Zoë Ångström', 'Honorar November', 'DE02120300000000202051', 3),
            ('2026111000021/2', '2026-11-10', 150000, 'EUR', 'Łukasz Żółć', 'Honorar November', 'DE02120300000000202051', 4),
            ('2026111200003', '2026-11-12', -125000, 'EUR', 'Müller Bürobedarf GmbH', 'Reversal: Rueckbuchung RE-2026-0815: Konto erloschen', 'DE02120300000000202051', 5),
            ('2026112000044', '2026-11-20', -300000, 'EUR', 'Contoso Consulting', 'RF18539007547034', 'DE02120300000000202051', 6),
            ('camt053-e1f2eb8d7d36e9e5-1', '2026-11-30', 990, 'EUR', 'Kontoführungsgebühr November', 'Kontoführungsgebühr November', 'DE02120300000000202051', 7),
            ('camt053-e1f2eb8d7d36e9e5-2', '2026-11-30', 990, 'EUR', 'Kontoführungsgebühr November', 'Kontoführungsgebühr November', 'DE02120300000000202051', 8),
        ],
    ),
    "datev_buchungsstapel.csv": (
        "datev",
        [
            ('datev-a1d1cdbee10bb9d3-1', '2026-11-03', 125000, 'EUR', 'Müller Bürobedarf GmbH', 'RE-2026-0815', '4930', 3),
            ('datev-667ef9561c003b98-1', '2026-11-04', 200000, 'USD', 'Société Générale Services', 'INV-2211', '4900', 4),
            ('datev-3e7f1f06fbadcb59-1', '2026-11-10', -125000, 'EUR', 'Zahlung Müller Bürobedarf', '', '1200', 5),
            ('datev-5ca859481a012125-1', '2026-11-20', -31000, 'EUR', 'Storno Stuhl Müller', 'GS-17 RE-2026-0815', '4930', 6),
            ('datev-f41c749377924326-1', '2026-11-24', 15000, 'JPY', 'Tokyo Taxi', 'T-99', '4670', 7),
        ],
    ),
    "mt940_deutsche.sta": (
        "mt940",
        [
            ('mt940-eb17d5c79ddfab07-1', '2026-11-03', 125000, 'EUR', 'Müller Bürobedarf GmbH', 'Rechnung RE-2026-0815 Bueromoebel zwei Schreibtische', '10020030/1234567890', 6),
            ('mt940-0ae0e3de863dd863-1', '2026-11-05', 185185, 'EUR', 'Société Générale Services', 'Consulting October INV-2211 USD 2000,00', '10020030/1234567890', 10),
            ('mt940-5ead57a3c5029adc-1', '2026-11-12', -125000, 'EUR', 'Müller Bürobedarf GmbH', 'Reversal: Rueckbuchung Konto erloschen', '10020030/1234567890', 12),
            ('mt940-8a6c225108992796-1', '2026-11-20', -300000, 'EUR', 'Contoso Consulting', 'RF18539007547034', '10020030/1234567890', 14),
            ('mt940-635bbbf27a31c319-1', '2026-11-30', 990, 'EUR', 'Deutsche Bank AG', 'Kontoführungsgebühr November', '10020030/1234567890', 16),
            ('mt940-635bbbf27a31c319-2', '2026-11-30', 990, 'EUR', 'Deutsche Bank AG', 'Kontoführungsgebühr November', '10020030/1234567890', 18),
            ('mt940-cbe86be49b55037b-1', '2026-12-01', 40000, 'USD', 'Hotel Schweizerhof Zuerich', 'Hotel Schweizerhof Zuerich Room 1204, 2 nights', '10020030/9876543210', 27),
        ],
    ),
    "netsuite_saved_search.csv": (
        "netsuite",
        [
            ('4711-1', '2026-11-03', 125000, 'EUR', 'Müller Bürobedarf GmbH', 'Office chairs and two desks', '6100 Office Expenses', 2),
            ('4711-2', '2026-11-03', 5000, 'EUR', 'Müller Bürobedarf GmbH', 'Delivery', '6150 Freight', 4),
            ('4712-1', '2026-11-05', 48025, 'USD', 'Northwind Logistics', 'Freight for order 5521', '6150 Freight', 5),
            ('4720-1', '2026-11-20', -31000, 'EUR', 'Müller Bürobedarf GmbH', 'Reversal: damaged chair returned', '6100 Office Expenses', 6),
            ('4725-1', '2026-11-24', 15000, 'JPY', 'Tōkyō Shōji K.K.', 'Taxi fares', '2000 Accounts Payable', 7),
        ],
    ),
    "ofx1_checking.ofx": (
        "ofx",
        [
            ('20261103-0001', '2026-11-03', 125000, 'USD', 'Acme Office Supply', 'Printer paper & toner', '4417011234', 39),
            ('20261105-0002', '2026-11-05', 48025, 'USD', 'Northwind Logistics', 'Freight for order 5521 (check 1042)', '4417011234', 47),
            ('20261109-0003', '2026-11-09', -100000, 'USD', 'Café Zentral Wien', 'Refund of overpayment, catering invoice 77', '4417011234', 56),
            ('20261112-0004', '2026-11-12', 133920, 'USD', 'Société Générale Services', 'Consulting October (original currency EUR at 1.0800)', '4417011234', 65),
            ('20261114-0005', '2026-11-14', -48025, 'USD', 'Northwind Logistics', 'Correction (DELETE of 20261105-0002): Check 1042 returned', '4417011234', 77),
        ],
    ),
    "ofx2_creditcard.qfx": (
        "ofx",
        [
            ('320261104000123', '2026-11-04', 10112, 'USD', 'TOKYO MK TAXI', 'JPY 15,000 taxi fares (original currency JPY at 0.0067413)', 'XXXXXXXXXXXX4242', 23),
            ('320261110000456', '2026-11-10', 6400, 'USD', 'Björk & Søn Bakery', '', 'XXXXXXXXXXXX4242', 32),
            ('320261111000789', '2026-11-11', -6400, 'USD', 'Björk & Søn Bakery', 'Reversal: charged twice', 'XXXXXXXXXXXX4242', 40),
            ('320261125000999', '2026-11-25', -250000, 'USD', 'PAYMENT - THANK YOU', '', 'XXXXXXXXXXXX4242', 48),
        ],
    ),
    "quickbooks_journal.csv": (
        "quickbooks",
        [
            ('quickbooks-3fc39aaa21603a2d-1', '2026-11-04', 200000, 'EUR', 'Société Générale Services', 'Consulting, October phase two', 'Consulting', 6),
            ('quickbooks-ce19bed4265742f2-1', '2026-11-04', -200000, 'EUR', 'Société Générale Services', '', 'Accounts Payable (A/P) - EUR', 8),
            ('quickbooks-d96447200d679e90-1', '2026-11-15', 350000, 'USD', 'Accrued rent November', 'Accrued rent November', 'Rent', 10),
            ('quickbooks-78fc521d9620f089-1', '2026-11-15', -350000, 'USD', 'Accrued rent November', 'Accrued rent November', 'Accrued Liabilities', 11),
            ('quickbooks-0f9a9811f92159f7-1', '2026-12-01', 350000, 'USD', 'Reverse of Journal Entry 17', 'Reverse of Journal Entry 17', 'Accrued Liabilities', 13),
            ('quickbooks-19e69d6ddc93a03d-1', '2026-12-01', -350000, 'USD', 'Reverse of Journal Entry 17', 'Reverse of Journal Entry 17', 'Rent', 14),
            ('quickbooks-1f934ecc7d3840fd-1', '2026-12-02', 15000, 'JPY', 'Tōkyō Shōji K.K.', 'Taxi fares', 'Travel', 16),
            ('quickbooks-b3ecb98f441ea558-1', '2026-12-02', -15000, 'JPY', 'Tōkyō Shōji K.K.', '', 'Accounts Payable (A/P) - JPY', 17),
        ],
    ),
    "quickbooks_transaction_detail.csv": (
        "quickbooks",
        [
            ('quickbooks-e3075c88453d93b5-1', '2026-11-03', -125000, 'USD', 'Müller Bürobedarf GmbH', 'Office chairs and two desks', 'Checking', 7),
            ('quickbooks-9d3a8ef425f52b19-1', '2026-11-05', -48025, 'USD', 'Northwind Logistics', 'Freight for order 5521', 'Checking', 9),
            ('quickbooks-82a233321aa54a87-1', '2026-11-09', 100000, 'USD', 'Contoso Consulting', 'Refund of overpayment', 'Checking', 10),
            ('quickbooks-2bd2137b1eadee16-1', '2026-11-12', -4500, 'USD', 'Northwind Logistics', 'Pallet fee', 'Checking', 11),
            ('quickbooks-2bd2137b1eadee16-2', '2026-11-12', -4500, 'USD', 'Northwind Logistics', 'Pallet fee', 'Checking', 12),
            ('quickbooks-98daeda0cd7f4f74-1', '2026-11-03', 125000, 'USD', 'Müller Bürobedarf GmbH', 'Office chairs and two desks', 'Office Expenses', 15),
            ('quickbooks-5592cf3464c8eecc-1', '2026-11-20', -31000, 'USD', 'Müller Bürobedarf GmbH', 'Reversal: damaged chair returned', 'Office Expenses', 17),
        ],
    ),
    "sap_fbl1n.csv": (
        "sap",
        [
            ('1000-2026-5100000123-1', '2026-11-04', -125000, 'EUR', 'Müller Bürobedarf GmbH', 'Büromöbel Rechnung 815', '100234', 3),
            ('1000-2026-5100000124-1', '2026-11-05', -200000, 'USD', 'Société Générale Services', 'Beratung Oktober', '100235', 4),
            ('1000-2026-1500000077-1', '2026-11-10', 125000, 'EUR', 'Müller Bürobedarf GmbH', 'Zahlung', '100234', 5),
            ('1000-2026-5100000130-1', '2026-11-20', 31000, 'EUR', 'Müller Bürobedarf GmbH', 'Storno Stuhl (Gutschrift)', '100234', 6),
        ],
    ),
    "sap_fbl3n_en.txt": (
        "sap",
        [
            ('1000-2026-5100000123-1', '2026-11-04', 125000, 'USD', 'Office chairs', 'Office chairs', '6100', 2),
            ('1000-2026-5100000123-2', '2026-11-04', 7500, 'USD', 'Office chairs, delivery', 'Office chairs, delivery', '6100', 3),
            ('1000-2026-5100000130-1', '2026-11-20', -31000, 'USD', 'Reversal: chair returned', 'Reversal: chair returned', '6100', 4),
            ('1000-2026-5100000131-1', '2026-11-24', 15000, 'JPY', 'Taxi Tōkyō', 'Taxi Tōkyō', '6400', 5),
        ],
    ),
    "xero_account_transactions.csv": (
        "xero",
        [
            ('xero-1ebe644ab8e116f3-1', '2026-11-03', -125000, 'GBP', 'Müller Bürobedarf GmbH', 'Office chairs and two desks', 'Business Bank Account', 8),
            ('xero-0bd4d9e4c1fc050c-1', '2026-11-09', 100000, 'GBP', 'Contoso Consulting', 'Refund of overpayment', 'Business Bank Account', 10),
            ('xero-2f10f06864f5f693-1', '2026-11-20', 125000, 'GBP', 'Société Générale Services', 'Reversal of duplicate payment', 'Business Bank Account', 11),
            ('xero-a5fc915146e5d99c-1', '2026-11-03', 125000, 'GBP', 'Müller Bürobedarf GmbH', 'Office chairs and two desks', 'Office Expenses', 16),
        ],
    ),
    "xero_bank_statement.csv": (
        "xero",
        [
            ('xero-d513692b1a9028df-1', '2026-11-04', 200000, 'EUR', 'Société Générale Services', 'Consulting October', '', 2),
            ('xero-cf2ecddd63d45e04-1', '2026-11-10', -1250, 'EUR', 'Zürcher Kantonalbank', 'Interest November', '', 3),
            ('xero-a2efb0defb85ffb2-1', '2026-11-21', -200000, 'EUR', 'Société Générale Services', 'Reversal of INV-2211 (duplicate)', '', 5),
        ],
    ),
}


def rows_of(ledger) -> list[tuple]:
    return [(t.txn_id, t.date, t.amount_minor, t.currency, t.vendor, t.memo, t.account, t.line) for t in frame_transactions(ledger.frame)]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_fixture_is_detected_and_read_exactly(name: str) -> None:
    fmt, rows = EXPECTED[name]
    path = FIXTURES / name
    assert detect_format(path) == fmt
    ledger, used = read_ledger_file(path)
    assert used == fmt
    assert rows_of(ledger) == rows
    assert ledger.name == name and len(ledger.sha256) == 64


def test_every_fixture_has_the_cases_the_issue_asks_for() -> None:
    reversal = ("revers", "storno", "rueckbuchung", "correction", "refund")
    for name, (_, rows) in EXPECTED.items():
        amounts = [r[2] for r in rows]
        assert any(a > 0 for a in amounts) and any(a < 0 for a in amounts), name
        texts = " ".join(r[4] + " " + r[5] for r in rows)
        assert not texts.isascii(), name
        assert any(word in texts.casefold() for word in reversal), name


def test_the_format_can_be_named_and_a_wrong_name_fails_closed(tmp_path: Path) -> None:
    ledger, used = read_ledger_file(FIXTURES / "camt053_v02.xml", "camt.053")
    assert used == "camt053" and ledger.rows == 3
    with pytest.raises(LedgerError, match=r"camt053_v02\.xml: not an OFX file: no <OFX> element"):
        read_ledger_file(FIXTURES / "camt053_v02.xml", "ofx")
    with pytest.raises(LedgerError, match=r"quickbooks_journal\.csv:1: no SAP line-item list header"):
        read_ledger_file(FIXTURES / "quickbooks_journal.csv", "sap")
    with pytest.raises(Exception, match=r"--format: unknown format 'lotus'; known: csv, quickbooks"):
        read_ledger_file(FIXTURES / "quickbooks_journal.csv", "lotus")


def test_a_file_of_no_known_format_lists_what_was_tried(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("Dear team,\nplease find the November figures attached.\n")
    with pytest.raises(LedgerError) as raised:
        detect_format(notes)
    message = str(raised.value)
    assert message.startswith(f"{notes}: matches no known format; tried: csv (a first row naming the [ledger] columns id, date, amount, vendor)")
    for name in ("quickbooks", "xero", "netsuite", "sap", "datev", "camt053", "mt940", "ofx", "bai2"):
        assert f"; {name} (" in message


def test_the_generic_csv_is_read_as_audit_run_reads_it() -> None:
    ledger, used = read_ledger_file(EXAMPLE)
    assert used == "csv"
    assert ledger.frame.equals(transactions_frame(read_ledger(EXAMPLE).transactions))
    mapped = LedgerFormat(columns={"id": "Ref"})
    with pytest.raises(LedgerError, match="matches no known format; tried: csv \\(a first row naming the \\[ledger\\] columns Ref, date"):
        detect_format(EXAMPLE, mapped)


# --- ids derived when an export has none ------------------------------------------------


def test_derived_ids_are_the_same_on_a_later_export_of_the_same_rows(tmp_path: Path) -> None:
    """Another file name, rows in another order, more rows around them: the same ids."""
    lines = (FIXTURES / "quickbooks_transaction_detail.csv").read_bytes().decode("utf-8").split("\r\n")
    top, checking, office, rest = lines[:5], lines[5:13], lines[13:18], lines[18:]
    extra = ',11/02/2026,Expense,,Globex Travel,Taxi,Travel,-23.40,"50,000.00"'
    later = tmp_path / "qb-export-2026-12-05.csv"
    later.write_bytes("\r\n".join(top + office + checking[:1] + [extra] + checking[1:] + rest).encode("utf-8"))
    first = {r[0]: r[1:7] for r in rows_of(read_ledger_file(FIXTURES / "quickbooks_transaction_detail.csv")[0])}
    again = {r[0]: r[1:7] for r in rows_of(read_ledger_file(later)[0])}
    assert set(first) < set(again)
    assert all(again[i] == first[i] for i in first)
    # the two identical pallet fees stay told apart by their occurrence number
    assert first["quickbooks-2bd2137b1eadee16-1"] == first["quickbooks-2bd2137b1eadee16-2"]


def test_derived_ids_depend_on_the_rows_facts_not_their_position(tmp_path: Path) -> None:
    raw = (FIXTURES / "mt940_deutsche.sta").read_bytes()
    one, two = raw.split(b"-}\r\n", 1)
    swapped = tmp_path / "swapped.sta"
    swapped.write_bytes(two + one + b"-}\r\n")
    before = {r[0]: r[1:7] for r in rows_of(read_mt940(FIXTURES / "mt940_deutsche.sta"))}
    after = {r[0]: r[1:7] for r in rows_of(read_mt940(swapped))}
    assert before == after


# --- bad input: one line naming the file and the line or element ------------------------

BAD = [
    ("quickbooks_transaction_detail.csv", ",11/05/2026,Check", ",11/31/2026,Check",
     "9: Date: '11/31/2026' does not match %m/%d/%Y or %Y-%m-%d"),
    ("quickbooks_transaction_detail.csv", '-480.25,"48,269.75"', 'n/a,"48,269.75"', "9: Amount: 'n/a' is not an amount"),
    ("quickbooks_journal.csv", '"3,500.00",,USD\n,,,,Accrued', '"3,500.00",,US\n,,,,Accrued',
     "10: Currency: 'US' is not a 3-letter currency code"),
    ("quickbooks_journal.csv", 'Taxi fares,Travel,"15,000",,JPY', 'Taxi fares,Travel,"15,000.50",,JPY',
     "16: Debit: '15,000.50' has more decimals than JPY allows (0)"),
    ("xero_account_transactions.csv", "09 Nov 2026", "09/13/2026",
     "10: Date: '09/13/2026' does not match %d %b %Y or %d/%m/%Y or %Y-%m-%d"),
    ("xero_bank_statement.csv", ",12.50,", ",12.5O,", "3: Received: '12.5O' is not an amount"),
    ("netsuite_saved_search.csv", "4712,11/05/2026", ",11/05/2026", "5: Internal ID: missing value"),
    ("sap_fbl1n.csv", "2.000,00-;USD", "2.000,00--;USD", "4: Betrag in Belegwährung: '2.000,00--' is not an amount"),
    ("sap_fbl1n.csv", "10.11.2026;10.11.2026", "10.11.2026;31.11.2026",
     "5: Buchungsdatum: '31.11.2026' does not match %d.%m.%Y or %m/%d/%Y or %Y-%m-%d or %Y/%m/%d"),
    ("sap_fbl3n_en.txt", "15,000\tJPY", "15,000.5\tJPY", "5: Amount in local currency: '15,000.5' has more decimals than JPY allows (0)"),
    ("datev_buchungsstapel.csv", '"0411"', '"0412x"', "4: Belegdatum: '0412x' is not a date TTMM"),
    ("datev_buchungsstapel.csv", '"1011"', '"0112"', "5: Belegdatum: '0112' is not a day in the batch's period 01.11.2026 to 30.11.2026"),
    ("datev_buchungsstapel.csv", '310,00;"H"', '310,00;"X"', "6: Soll/Haben-Kennzeichen: 'X' is neither S nor H"),
    ("datev_buchungsstapel.csv", '"EXTF";700;21;"Buchungsstapel"', '"EXTF";700;16;"Debitoren/Kreditoren"',
     "1: DATEV format category '16' (Debitoren/Kreditoren) is not a Buchungsstapel (21)"),
    ("camt053_v08.xml", '<Amt Ccy="EUR">1500.00</Amt>', '<Amt Ccy="EUR">1500,00</Amt>',
     "87: Stmt[1]/Ntry[3]/NtryDtls/TxDtls[2]/Amt: '1500,00' is not an amount"),
    ("camt053_v08.xml", '<Amt Ccy="EUR">4300.00</Amt>', '<Amt Ccy="EUR">4200.00</Amt>',
     "71: Stmt[1]/Ntry[3]/Amt: the details add up to 4300.00 but the entry says 4200.00 EUR"),
    ("camt053_v08.xml", "<BookgDt><Dt>2026-11-20</Dt></BookgDt>", "<BookgDt><Dt>2026-11-31</Dt></BookgDt>",
     "115: Stmt[1]/Ntry[5]/BookgDt: '2026-11-31' is not a date"),
    ("camt053_v08.xml", "<CdtDbtInd>CRDT</CdtDbtInd>\n        <Sts>", "<CdtDbtInd>CRED</CdtDbtInd>\n        <Sts>",
     "115: Stmt[1]/Ntry[5]/CdtDbtInd: 'CRED' is neither DBIT nor CRDT"),
    ("camt053_v08.xml", "<NtryRef>2</NtryRef>", "<NtryRef>2</Ntry>",
     "50: not well-formed XML: Opening and ending tag mismatch: NtryRef line 50 and Ntry, line 50, column 26"),
    ("camt053_v02.xml", 'Ccy="CHF">150.00<', 'Ccy="CHF">150.001<', "21: Stmt[1]/Ntry[2]/Amt: '150.001' has more decimals than CHF allows (2)"),
    ("mt940_deutsche.sta", ":61:2611051105DR1851,85NTRF", ":61:2611051105DR1851.85NTRF",
     "10: tag 61: '2611051105DR1851.85NTRFINV-2211//B3K051100071' is not a statement line (date, mark, amount, type, reference)"),
    ("mt940_deutsche.sta", ":62F:C261130EUR21128,35", ":62F:C261130EUR21128,36",
     "20: tag 62F: closing balance 21128.36 is not the opening balance plus the statement lines (21128.35 EUR): lines missing or changed?"),
    ("mt940_deutsche.sta", ":60F:C261130USD5000,00\r\n", "",
     "26: tag 61: no currency: the statement has no opening balance (:60F:) before its lines"),
    ("mt940_deutsche.sta", "Card payment\r\n:86:Hotel Schweizerhof Zuerich\r\nRoom 1204, 2 nights\r\n", "",
     "27: tag 86: no counterparty name (?32/?33) and nothing else to name the line by (no :86:, no supplementary details)"),
    ("ofx1_checking.ofx", "<TRNAMT>-480.25", "<TRNAMT>-480,25", "47: STMTTRN (FITID 20261105-0002)/TRNAMT: '-480,25' is not an amount"),
    ("ofx1_checking.ofx", "<DTPOSTED>20261109", "<DTPOSTED>20261131", "56: STMTTRN (FITID 20261109-0003)/DTPOSTED: '20261131' is not a date YYYYMMDD"),
    ("ofx1_checking.ofx", "<FITID>20261109-0003", "<FITID>20261103-0001", "56: FITID: duplicate id '20261103-0001' (first on line 39)"),
    ("ofx2_creditcard.qfx", "<CURDEF>USD</CURDEF>", "", "23: STMTTRN (FITID 320261104000123)/CURDEF: no currency: the statement has no CURDEF"),
    ("bai2_prior_day.bai", "16,469,4500,0,ACH2611200007", "16,969,4500,0,ACH2611200007",
     "11: 16 type code: '969' is not a standard BAI2 credit or debit type code"),
    ("bai2_prior_day.bai", "16,475,48025,0", "16,475,480.25,0", "4: 16 amount: '480.25' is not an amount in minor units"),
    ("bai2_prior_day.bai", "49,4208310,10/", "49,4208311,10/",
     "12: 49 account control total: is 4208311 but the records above add up to 4208310: records missing or changed?"),
]


def spoil(tmp_path: Path, name: str, old: str, new: str) -> Path:
    encoding = "cp1252" if name in CP1252 else "utf-8"
    raw = (FIXTURES / name).read_bytes()
    if name in CP1252 or name.startswith("quickbooks_transaction"):
        old, new = old.replace("\n", "\r\n").replace("\r\r", "\r"), new.replace("\n", "\r\n").replace("\r\r", "\r")
    assert old.encode(encoding) in raw, (name, old)
    path = tmp_path / name
    path.write_bytes(raw.replace(old.encode(encoding), new.encode(encoding), 1))
    return path


@pytest.mark.parametrize(("name", "old", "new", "message"), BAD, ids=[f"{b[0]}:{b[3].split(':')[0]}" for b in BAD])
def test_bad_input_names_the_file_and_the_line(tmp_path: Path, name: str, old: str, new: str, message: str) -> None:
    path = spoil(tmp_path, name, old, new)
    with pytest.raises(LedgerError) as raised:
        read_ledger_file(path)
    assert str(raised.value) == f"{path}:{message}"
    assert "\n" not in str(raised.value)


def test_inspect_lists_every_problem_and_reads_the_rest(tmp_path: Path) -> None:
    path = spoil(tmp_path, "camt053_v08.xml", '<Amt Ccy="EUR">1500.00</Amt>', '<Amt Ccy="EUR">1500,00</Amt>')
    path.write_text(path.read_text(encoding="utf-8").replace("<Dt>2026-11-20</Dt></BookgDt>", "<Dt>2026-11-31</Dt></BookgDt>"), encoding="utf-8")
    info = inspect_file(path)
    assert [p["message"].removeprefix(f"{path}:") for p in info["problems"]] == [
        "87: Stmt[1]/Ntry[3]/NtryDtls/TxDtls[2]/Amt: '1500,00' is not an amount",
        "115: Stmt[1]/Ntry[5]/BookgDt: '2026-11-31' is not a date",
    ]
    assert info["rows"] == 6  # the other entries are read


def test_inspect_shows_format_mapping_totals_and_first_rows() -> None:
    info = inspect_file(FIXTURES / "sap_fbl1n.csv", first_rows=2)
    assert (info["format"], info["chosen"], info["rows"]) == ("sap", "detected", 4)
    assert info["mapping"]["id"] == "Buchungskreis-Belegnummer (fiscal year: the posting date's year)-Position"
    assert info["mapping"]["amount"] == "Betrag in Belegwährung (decimal ',', trailing minus)"
    assert info["totals"] == {
        "EUR": {"rows": 3, "net": "310.00", "positive": "1560.00", "negative": "-1250.00"},
        "USD": {"rows": 1, "net": "-2000.00", "positive": "0.00", "negative": "-2000.00"},
    }
    assert info["first_rows"][1] == {
        "line": 4, "id": "1000-2026-5100000124-1", "date": "2026-11-05", "amount": "-2000.00", "currency": "USD",
        "vendor": "Société Générale Services", "memo": "Beratung Oktober", "account": "100235",
    }
    assert info["problems"] == []


# --- xlsx ---------------------------------------------------------------------------------


def test_an_xlsx_export_reads_like_its_csv(tmp_path: Path) -> None:
    book = write_xlsx(tmp_path / "Transaction Detail.xlsx", [
        ["Acme Corp"],
        ["Transaction Detail by Account"],
        ["November 1-30, 2026"],
        [],
        [None, "Date", "Transaction Type", "Num", "Name", "Memo/Description", "Split", "Amount", "Balance"],
        ["Checking"],
        [None, date(2026, 11, 3), "Expense", None, "Müller Bürobedarf GmbH", "Office chairs\nand two desks", "Office Expenses",
         Number("-1250"), Number("48750")],
        [None, date(2026, 11, 5), "Check", "1042", "Northwind Logistics", "Freight for order 5521", "Freight", Number("-480.25"), None],
        [None, date(2026, 11, 9), "Deposit", None, "Contoso Consulting", "Refund of overpayment", "Consulting", Number("1000"), None],
        ["Total for Checking", None, None, None, None, None, None, Number("-730.25")],
        ["TOTAL", None, None, None, None, None, None, Number("-730.25")],
    ], sheet="Transaction Detail")
    assert detect_format(book) == "quickbooks"
    reading = load_file(book)
    assert reading.notes[0] == "xlsx workbook, sheet 'Transaction Detail'"
    assert [r[1:] for r in rows_of(reading.ledger)] == [
        ("2026-11-03", -125000, "USD", "Müller Bürobedarf GmbH", "Office chairs and two desks", "Checking", 7),
        ("2026-11-05", -48025, "USD", "Northwind Logistics", "Freight for order 5521", "Checking", 8),
        ("2026-11-09", 100000, "USD", "Contoso Consulting", "Refund of overpayment", "Checking", 9),
    ]
    # the same row as in the CSV export gets the same id
    csv_ids = {r[1:6]: r[0] for r in EXPECTED_ROWS("quickbooks_transaction_detail.csv")}
    assert rows_of(reading.ledger)[0][0] == csv_ids[("2026-11-03", -125000, "USD", "Müller Bürobedarf GmbH", "Office chairs and two desks")]


def EXPECTED_ROWS(name: str) -> list[tuple]:
    return EXPECTED[name][1]


def test_an_xlsx_number_is_its_source_text_never_a_rounded_float(tmp_path: Path) -> None:
    rows = [["Internal ID", "Date", "Type", "Name", "Memo", "Amount"],
            ["1", date(2026, 11, 3), "Bill", "Acme Office Supply", "paper", Number("12345678901234.56")],
            ["2", date(2026, 11, 4), "Bill", "Acme Office Supply", "sum of a formula", Number("0.30000000000000004")]]
    book = write_xlsx(tmp_path / "search.xlsx", rows)
    with pytest.raises(LedgerError) as raised:
        read_ledger_file(book)
    assert str(raised.value) == f"{book}:3: Amount: '0.30000000000000004' has more decimals than USD allows (2)"
    ledger, used = read_ledger_file(write_xlsx(tmp_path / "ok.xlsx", rows[:2]))
    assert used == "netsuite" and rows_of(ledger)[0][2] == 1234567890123456


def test_the_generic_csv_format_reads_an_xlsx_with_the_ledger_mapping(tmp_path: Path) -> None:
    book = write_xlsx(tmp_path / "ledger.xlsx", [
        ["Ref", "date", "amount", "currency", "vendor", "memo"],
        ["TX-1", date(2026, 11, 24), Number("1250"), "USD", "Acme Office Supply", "Printer paper"],
        [],
        ["TX-2", date(2026, 11, 25), Number("-12.5"), "EUR", "Café Zentral", "Refund"],
    ])
    fmt = LedgerFormat(columns={"id": "Ref"}, date_formats=("%d/%m/%Y",))
    ledger, used = read_ledger_file(book, None, fmt)
    assert used == "csv"
    assert rows_of(ledger) == [
        ("TX-1", "2026-11-24", 125000, "USD", "Acme Office Supply", "Printer paper", "", 2),
        ("TX-2", "2026-11-25", -1250, "EUR", "Café Zentral", "Refund", "", 4),
    ]
    broken = write_xlsx(tmp_path / "broken.xlsx", [["Ref", "date", "amount", "vendor"], ["TX-1", "yesterday", Number("1"), "Acme"]])
    with pytest.raises(LedgerError, match=r"broken\.xlsx:2: date: 'yesterday' does not match %d/%m/%Y$"):
        read_ledger_file(broken, None, fmt)


# --- smaller rules --------------------------------------------------------------------------


def test_mt940_entry_dates_across_a_year_end(tmp_path: Path) -> None:
    path = tmp_path / "yearend.sta"
    path.write_text(
        ":20:YEAREND\n:25:DE02120300000000202051\n:28C:1/1\n:60F:C261230EUR100,00\n"
        ":61:2612310102D10,00NTRFNONREF\n:86:?20Januar?32Stadtwerke Köln\n"
        ":61:2701021231C5,00NTRFNONREF\n:86:?20Zins?32Sparkasse\n:62F:C270102EUR95,00\n-\n",
        encoding="utf-8",
    )
    assert [(r[1], r[2], r[4]) for r in rows_of(read_mt940(path))] == [
        ("2027-01-02", 1000, "Stadtwerke Köln"),
        ("2026-12-31", -500, "Sparkasse"),
    ]


@pytest.mark.parametrize(("text", "currency", "point", "minor"), [
    ("1250.00", "EUR", ".", 125000), ("-0.5", "USD", ".", -50), ("15000.00", "JPY", ".", 15000), ("1,5", "EUR", ",", 150),
    ("12,", "EUR", ",", 1200), ("1.234", "KWD", ".", 1234), ("+7", "CHF", ".", 700),
])
def test_decimal_amounts_are_exact_minor_units(text: str, currency: str, point: str, minor: int) -> None:
    assert decimal_minor(text, currency, point=point) == minor


@pytest.mark.parametrize("text", ["1.005", "1e3", "", "1.2.3", "12 00", "9223372036854775808"])
def test_decimal_amounts_that_are_not_exact_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        decimal_minor(text, "EUR")


def test_a_copy_elsewhere_reads_the_same(tmp_path: Path) -> None:
    copy = tmp_path / "statement.xml"
    shutil.copy(FIXTURES / "camt053_v08.xml", copy)
    assert rows_of(read_ledger_file(copy)[0]) == EXPECTED["camt053_v08.xml"][1]


# --- damaged files never crash ------------------------------------------------------------

PAYLOADS = [b"", b",", b";", b"<", b">", b"\n", b'"', b"-", b"?", b":61:", b"\x00", b"\xff", b"99", b"</Ntry>", b"&amp;", b"\r"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 12), st.sampled_from(PAYLOADS)), min_size=1, max_size=4))
def test_a_damaged_file_is_read_or_refused_in_one_line(tmp_path: Path, name: str, edits) -> None:
    raw = bytearray((FIXTURES / name).read_bytes())
    for where, cut, payload in edits:
        at = int(where * len(raw))
        raw[at : at + cut] = payload
    path = tmp_path / name
    path.write_bytes(bytes(raw))
    for collect in (False, True):
        try:
            load_file(path, collect=collect)
        except LedgerError as error:
            assert "\n" not in str(error) and str(error).startswith(str(path))


def test_xlsx_named_is_a_workbook_whose_export_is_detected(tmp_path: Path) -> None:
    book = write_xlsx(tmp_path / "search.xlsx", [["Internal ID", "Date", "Type", "Name", "Amount"], ["7", date(2026, 11, 3), "Bill", "Acme", Number("5")]])
    assert read_ledger_file(book, "xlsx")[1] == "netsuite"
    with pytest.raises(LedgerError, match=r"netsuite_saved_search\.csv: not an xlsx workbook \(named by --format xlsx\)$"):
        read_ledger_file(FIXTURES / "netsuite_saved_search.csv", "xlsx")
