"""Which format a file is in, from its content (the extension is only a tie-breaker's hint).

The first 64 KiB decide: an xlsx workbook (a zip) is looked into; XML is camt.053 or OFX
2.x by its namespace or root; OFX 1.x by its header; DATEV by its EXTF header record; MT940
by its ``:20:`` field or SWIFT envelope; BAI2 by its 01 record. A table (CSV, TSV or a
workbook's first sheet) is the generic `csv` format when its first row names the `[ledger]`
columns, else the export whose header it has (SAP, NetSuite, QuickBooks, Xero). A file that
matches none raises `LedgerError` listing what was tried.
"""

from __future__ import annotations

import codecs
import os

from job.errors import LedgerError
from job.ledger.formats import camt053, datev, netsuite, quickbooks, sap, xero
from job.ledger.formats.bai2 import is_bai2
from job.ledger.formats.generic import header_matches
from job.ledger.formats.mt940 import is_mt940
from job.ledger.formats.ofx import is_ofx
from job.ledger.formats.table import find_header, fold, table_from_text
from job.ledger.formats.xlsx import XLSX_MAGIC, read_workbook_rows
from job.ledger.ingest import LedgerFormat

__all__ = ["FORMAT_NAMES", "HEAD_BYTES", "detect_format"]

FORMAT_NAMES = ("csv", "quickbooks", "xero", "netsuite", "sap", "datev", "camt053", "mt940", "ofx", "bai2")
HEAD_BYTES = 64 << 10
_TABLES = (
    ("sap", sap.is_header),
    ("netsuite", netsuite.is_header),
    ("quickbooks", quickbooks.is_header),
    ("xero", xero.is_header),
)
TRIED = (
    "csv (a first row naming the [ledger] columns {columns})",
    "quickbooks (a header with Date, Transaction Type, Num, Amount or Debit/Credit)",
    "xero (Date, Source, Reference, Debit/Credit; or Date, Payee, Spent/Received)",
    "netsuite (Internal ID, or Document Number and Type, with Date)",
    "sap (Belegnummer/Document Number, a posting or document date, Betrag in/Amount in)",
    "datev (an EXTF header record on line 1)",
    "camt053 (an ISO 20022 camt.053 document)",
    "mt940 (:20: and :25: fields or a SWIFT envelope)",
    "ofx (OFXHEADER or <OFX>)",
    "bai2 (a 01 file header record)",
)


def _head_text(head: bytes) -> str:
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return head.decode("utf-16", errors="replace")
    text = head.removeprefix(codecs.BOM_UTF8).decode("utf-8", errors="replace")
    return text


def _table_format(rows: list[tuple[int, list[str]]], fmt: LedgerFormat) -> str | None:
    if rows and header_matches({fold(c) for c in rows[0][1] if c.strip()}, fmt):
        return "csv"
    for name, is_header in _TABLES:
        if find_header(rows, is_header) is not None:
            return name
    return None


def detect_format(path, csv_format: LedgerFormat = LedgerFormat()) -> str:
    """The name of the format `path` is in (one of `FORMAT_NAMES`), from its content."""
    shown = os.fsdecode(path)
    try:
        with open(path, "rb") as stream:
            head = stream.read(HEAD_BYTES)
            workbook = head.startswith(XLSX_MAGIC)
            raw = head + stream.read() if workbook else head
    except OSError as error:
        raise LedgerError(shown, None, None, f"cannot read file: {error.strerror or error}") from None
    if not head.strip():
        raise LedgerError(shown, None, None, "file is empty")
    if workbook:
        _, rows = read_workbook_rows(raw, shown, max_rows=60)
        found = _table_format(rows, csv_format)
        if found is None:
            raise LedgerError(
                shown, None, None, "an xlsx workbook whose first sheet matches no known export; tried: " + _tried(csv_format, xlsx=True)
            )
        return found
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if camt053.is_camt053(head):
        return "camt053"
    if is_ofx(head):
        return "ofx"
    text = _head_text(head)
    if datev.is_datev(text.split("\n", 1)[0]):
        return "datev"
    if is_mt940(text):
        return "mt940"
    if is_bai2(text):
        return "bai2"
    if not stripped.startswith(b"<"):
        cut = text.rfind("\n") if len(head) == HEAD_BYTES else len(text)
        try:
            rows = table_from_text(text[: cut if cut > 0 else len(text)], shown, "").rows
        except LedgerError:
            rows = []
        if found := _table_format(rows, csv_format):
            return found
    raise LedgerError(shown, None, None, "matches no known format; tried: " + _tried(csv_format))


def _tried(fmt: LedgerFormat, *, xlsx: bool = False) -> str:
    columns = ", ".join(fmt.columns.get(n, n) for n in ("id", "date", "amount", "vendor"))
    tried = [t.format(columns=columns) for t in TRIED]
    return "; ".join(tried[:5] if xlsx else tried)
