"""The generic `csv` format: today's CSV reader with the `[ledger]` column mapping, also for xlsx.

A CSV file is read by `ingest_fast` (falling back to `ingest` for the shapes only it reads
exactly), as `audit run` reads it. The first sheet of an xlsx workbook is written out as a
CSV (each cell as its source text; date cells in the first of the `[ledger]` date formats;
one line per row number, so lines are the sheet's row numbers) and read the same way.
"""

from __future__ import annotations

import csv
import os
import tempfile
from datetime import date

from job.errors import LedgerError
from job.ledger.formats.common import Problems, Reading, clean_text, file_sha256, read_bytes
from job.ledger.formats.xlsx import XLSX_MAGIC, read_workbook_rows
from job.ledger.ingest import CANONICAL_COLUMNS, LedgerFormat, read_ledger
from job.ledger.ingest_fast import FrameLedger, Unsupported, read_ledger_fast, transactions_frame

__all__ = ["NAME", "header_matches", "load", "read_csv"]

NAME = "csv"
_REQUIRED = ("id", "date", "amount", "vendor")


def header_matches(cells: set[str], fmt: LedgerFormat) -> bool:
    """Whether a folded header row names every required column of the `[ledger]` mapping."""
    labels = {name: " ".join(fmt.columns.get(name, name).casefold().split()) for name in _REQUIRED}
    return all(label in cells for label in labels.values())


def read_csv(path, fmt: LedgerFormat = LedgerFormat()) -> FrameLedger:
    """Read a generic ledger CSV (or xlsx) as `audit run` reads it; raise `LedgerError` at the first problem."""
    shown = os.fsdecode(path)
    try:
        with open(path, "rb") as stream:
            workbook = stream.read(4) == XLSX_MAGIC
    except OSError as error:
        raise LedgerError(shown, None, None, f"cannot read file: {error.strerror or error}") from None
    if workbook:
        return _read_workbook(path, fmt)
    try:
        return read_ledger_fast(path, fmt)
    except Unsupported:
        ledger = read_ledger(path, fmt)
        return FrameLedger.of(ledger.path, ledger.name, ledger.sha256, transactions_frame(ledger.transactions))


def _read_workbook(path, fmt: LedgerFormat) -> FrameLedger:
    shown, raw = read_bytes(path)
    _, rows = read_workbook_rows(raw, shown)
    with tempfile.TemporaryDirectory(prefix="audit-xlsx-") as folder:
        copy = os.path.join(folder, os.path.basename(shown) + ".csv")
        with open(copy, "w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out, lineterminator="\n")
            number = 1
            for row_number, cells in rows:
                while number < row_number:  # blank rows keep the line numbers equal to row numbers
                    out.write("\n")
                    number += 1
                writer.writerow([_cell(clean_text(c), fmt) for c in cells])
                number += 1
        try:
            ledger = read_ledger(copy, fmt)
        except LedgerError as error:
            raise LedgerError(shown, error.line, error.column, error.problem) from None
    return FrameLedger.of(shown, os.path.basename(shown), file_sha256(raw), transactions_frame(ledger.transactions))


def _cell(text: str, fmt: LedgerFormat) -> str:
    """An xlsx date cell (ISO) in the first `[ledger]` date format; any other cell as it is."""
    if len(text) == 10 and text[4] == "-" and text[7] == "-" and "%Y-%m-%d" not in fmt.date_formats:
        try:
            return date.fromisoformat(text).strftime(fmt.date_formats[0])
        except ValueError:
            return text
    return text


def load(path, problems: Problems, fmt: LedgerFormat) -> Reading:
    """`read_csv` for `audit inspect`: the CSV reader stops at its first problem, so that is the only one listed."""
    mapping = {n: fmt.columns.get(n, n) for n in (*CANONICAL_COLUMNS, "account")}
    mapping["currency"] = f"{fmt.columns.get('currency', 'currency')} (else {fmt.default_currency})"
    notes = ["the generic CSV reader ([ledger] columns), as audit run reads it; it stops at the first problem"]
    try:
        ledger = read_csv(path, fmt)
    except LedgerError as error:
        if not problems.collect:
            raise
        problems.found.append(error)
        shown = os.fsdecode(path)
        empty = FrameLedger.of(shown, os.path.basename(shown), "", transactions_frame([]))
        return Reading(empty, NAME, mapping, notes, problems.found, 0)
    return Reading(ledger, NAME, mapping, notes, problems.found, 0)
