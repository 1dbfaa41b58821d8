"""One way in for every format: `read_ledger_file(path, format_name, csv_format)`.

`format_name` None detects the format from the content (`detect.detect_format`); ``xlsx``
means "detect which export this workbook holds". The generic ``csv`` format is today's CSV
reader with the `[ledger]` mapping; every other name is the reader of that module.
"""

from __future__ import annotations

import os

from job.errors import InputError, LedgerError
from job.ledger.formats import bai2, camt053, datev, generic, mt940, netsuite, ofx, quickbooks, sap, xero
from job.ledger.formats.common import Problems, Reading, ReadOptions
from job.ledger.formats.detect import FORMAT_NAMES, detect_format
from job.ledger.formats.xlsx import XLSX_MAGIC
from job.ledger.ingest import LedgerFormat
from job.ledger.ingest_fast import FrameLedger

__all__ = ["FORMAT_NAMES", "check_format_name", "load_file", "read_ledger_file", "read_xlsx"]

LOADERS = {
    "quickbooks": quickbooks.load,
    "xero": xero.load,
    "netsuite": netsuite.load,
    "sap": sap.load,
    "datev": datev.load,
    "camt053": camt053.load,
    "mt940": mt940.load,
    "ofx": ofx.load,
    "bai2": bai2.load,
}


def check_format_name(name: str | None) -> str | None:
    """The format name in canonical form (lower case, ``camt.053`` -> ``camt053``), or `InputError`."""
    if name is None:
        return None
    canonical = name.strip().lower().replace(".", "").replace("-", "")
    aliases = {"qfx": "ofx", "qbo": "quickbooks", "extf": "datev", "swift": "mt940", "generic": "csv"}
    canonical = aliases.get(canonical, canonical)
    if canonical not in (*FORMAT_NAMES, "xlsx"):
        raise InputError(f"--format: unknown format {name!r}; known: {', '.join(FORMAT_NAMES)}, xlsx")
    return canonical


def _is_workbook(path) -> bool:
    try:
        with open(path, "rb") as stream:
            return stream.read(4) == XLSX_MAGIC
    except OSError:
        return True  # the reader says why it cannot be read


def load_file(
    path,
    format_name: str | None = None,
    csv_format: LedgerFormat = LedgerFormat(),
    *,
    date_formats: tuple[str, ...] | None = None,
    collect: bool = False,
) -> Reading:
    """Read `path` in the named (or detected) format; with `collect`, gather every problem
    instead of raising the first (what `audit inspect` shows)."""
    name = check_format_name(format_name)
    if name == "xlsx" and not _is_workbook(path):
        raise LedgerError(os.fsdecode(path), None, None, "not an xlsx workbook (named by --format xlsx)")
    if name in (None, "xlsx"):
        name = detect_format(path, csv_format)
    problems = Problems(os.fsdecode(path), collect=collect)
    if name == "csv":
        return generic.load(path, problems, csv_format)
    options = ReadOptions(default_currency=csv_format.default_currency, date_formats=date_formats)
    return LOADERS[name](path, problems, options)


def read_ledger_file(
    path,
    format_name: str | None = None,
    csv_format: LedgerFormat = LedgerFormat(),
    *,
    date_formats: tuple[str, ...] | None = None,
) -> tuple[FrameLedger, str]:
    """(the ledger, the format it was read as); the first problem raises `LedgerError`."""
    reading = load_file(path, format_name, csv_format, date_formats=date_formats)
    return reading.ledger, reading.format


def read_xlsx(path, csv_format: LedgerFormat = LedgerFormat()) -> FrameLedger:
    """Read an xlsx workbook holding any of the table exports (its first sheet decides which)."""
    return read_ledger_file(path, "xlsx", csv_format)[0]
