"""Rows of a spreadsheet-like export, from a CSV/TSV text or an xlsx workbook, with their lines.

The accounting exports (QuickBooks, Xero, NetSuite, SAP, DATEV) are tables with title rows,
section rows and totals around the data; this module gives their readers the table as
`(line, cells)` pairs — the physical line a CSV record starts on, or the xlsx row number —
and the helpers they share to find the header and map its columns.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from job.errors import LedgerError
from job.ledger.formats.common import clean_text, decode_text, file_sha256, read_bytes
from job.ledger.formats.xlsx import XLSX_MAGIC, read_workbook_rows

__all__ = ["Table", "get_cell", "find_header", "fold", "label_columns", "load_table", "map_columns", "sniff_delimiter", "table_from_text"]

_DELIMITERS = (",", ";", "\t")
_LARGEST_FIELD = 2**31 - 1


@dataclass(slots=True)
class Table:
    """A table's non-blank rows as (line, cells), and what it was read from."""

    path: str
    sha256: str
    rows: list[tuple[int, list[str]]]
    container: str  # "csv" or "xlsx"
    detail: str = ""  # e.g. the xlsx sheet's name


def fold(text: str) -> str:
    """A header as it is compared: cleaned, case-folded, inner whitespace collapsed."""
    return " ".join(clean_text(text).casefold().split())


def sniff_delimiter(text: str) -> str:
    """The delimiter of a CSV text: of , ; TAB, the one that most lines split on the same number of times."""
    lines = [line for line in text.splitlines()[:60] if line.strip()]

    def score(delimiter: str) -> tuple[int, int]:
        counts = [line.count(delimiter) for line in lines]
        if not counts or max(counts) == 0:
            return (0, 0)
        common = max(set(counts) - {0}, key=counts.count)
        return (counts.count(common), common)

    return max(_DELIMITERS, key=score)


def table_from_text(text: str, path: str, sha256: str, delimiter: str | None = None) -> Table:
    """Split a CSV text into its non-blank records, each with the line it starts on."""
    if len(text) >= csv.field_size_limit():
        csv.field_size_limit(_LARGEST_FIELD)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter or sniff_delimiter(text), strict=True)
    rows: list[tuple[int, list[str]]] = []
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            raise LedgerError(path, start, None, f"malformed CSV: {error}") from None
        if any(cell.strip() for cell in row):
            rows.append((start, row))
    return Table(path, sha256, rows, "csv")


def load_table(path, *, encodings: tuple[str, ...] = ("utf-8", "cp1252")) -> Table:
    """Read a CSV/TSV file, or the first sheet of an xlsx workbook, as a `Table`."""
    shown, raw = read_bytes(path)
    if raw.startswith(XLSX_MAGIC):
        sheet, rows = read_workbook_rows(raw, shown)
        return Table(shown, file_sha256(raw), rows, "xlsx", f"sheet {sheet!r}")
    return table_from_text(decode_text(raw, shown, encodings), shown, file_sha256(raw))


def find_header(rows: Sequence[tuple[int, list[str]]], accept: Callable[[set[str]], bool], within: int = 40) -> int | None:
    """Index in `rows` of the first row (among the first `within`) whose folded cells `accept` takes."""
    for index, (_, cells) in enumerate(rows[:within]):
        if accept({fold(c) for c in cells if c.strip()}):
            return index
    return None


def map_columns(headers: Sequence[str], aliases: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Role -> column index: the first alias (in order) that a header matches, per role."""
    folded = [fold(h) for h in headers]
    columns: dict[str, int] = {}
    for role, names in aliases.items():
        for name in names:
            pattern = re.compile(name) if name.startswith("^") else None
            hits = [i for i, h in enumerate(folded) if (pattern.fullmatch(h) if pattern else h == name)]
            if hits:
                columns[role] = hits[0]
                break
    return columns


def get_cell(cells: Sequence[str], columns: Mapping[str, int], role: str) -> str:
    """The cleaned text of a row's cell for `role` ("" when the column is absent or short)."""
    index = columns.get(role)
    return clean_text(cells[index]) if index is not None and index < len(cells) else ""


def label_columns(headers: Sequence[str], columns: Mapping[str, int]) -> dict[str, str]:
    """Role -> the header as the file writes it (for messages and `audit inspect`)."""
    return {role: clean_text(headers[index]) or f"column {index + 1}" for role, index in columns.items()}


class Header(NamedTuple):
    """Where a table export's header is and what its columns are."""

    start: int  # its index in the table's rows
    line: int  # the header's line in the file
    headers: list[str]
    columns: dict[str, int]  # role -> column index
    names: dict[str, str]  # role -> the header as written


def locate_header(
    table: Table, problems: Any, accept: Callable[[set[str]], bool], aliases: Mapping[str, Sequence[str]], what: str
) -> Header:
    """The header row of `table` (the first `accept` takes, below any title rows) with its
    columns mapped by `aliases`; `problems.fail` at the first row, saying `no <what>`, if none."""
    start = find_header(table.rows, accept)
    if start is None:
        first = table.rows[0] if table.rows else (None, [])
        raise problems.fail(first[0], None, f"no {what}")
    line, headers = table.rows[start]
    columns = map_columns(headers, aliases)
    return Header(start, line, headers, columns, label_columns(headers, columns))
