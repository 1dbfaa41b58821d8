"""The first sheet of an xlsx workbook as rows of text, each cell as its source text.

Read from the workbook's XML (zip + lxml, the sheet streamed), not through a library that
hands numbers over as floats: a number cell's text is kept as written (``1250.1``,
``0.30000000000000004``), so amounts are converted exactly or refused, never rounded. Cells
with a date number format become ISO dates (``2026-11-03``), booleans TRUE/FALSE, shared
and inline strings their text. Rows carry their row number, which is what "line" means for
a workbook.
"""

from __future__ import annotations

import io
import posixpath
import re
import zipfile
import zlib
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation

from lxml import etree

from job.errors import LedgerError

__all__ = ["XLSX_MAGIC", "read_workbook_rows"]

XLSX_MAGIC = b"PK\x03\x04"
_MAX_UNPACKED = 1 << 31  # refuse workbooks that unpack to more than 2 GiB (zip bombs)
_DATE_FORMAT_IDS = {14, 15, 16, 17, 18, 19, 20, 21, 22, 27, 30, 36, 45, 46, 47, 50, 57}
_R = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PARSER = {"resolve_entities": False, "no_network": True, "load_dtd": False}


def read_workbook_rows(raw: bytes, path: str, *, max_rows: int | None = None) -> tuple[str, list[tuple[int, list[str]]]]:
    """(sheet name, non-blank rows as (row number, cells)) of the workbook's first sheet."""
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as book:
            return _read_first_sheet(book, path, max_rows)
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        etree.XMLSyntaxError,
        KeyError,
        ValueError,
        IndexError,
        NotImplementedError,
        RuntimeError,
        OverflowError,
    ) as error:
        problem = " ".join(str(getattr(error, "msg", None) or error).split())
        raise LedgerError(path, None, None, f"not a readable xlsx workbook: {type(error).__name__}: {problem}") from None


def _read_first_sheet(book: zipfile.ZipFile, path: str, max_rows: int | None) -> tuple[str, list[tuple[int, list[str]]]]:
    if sum(i.file_size for i in book.infolist()) > _MAX_UNPACKED:
        raise LedgerError(path, None, None, "not read: the workbook unpacks to more than 2 GiB")
    names = set(book.namelist())
    if "xl/workbook.xml" not in names:
        raise LedgerError(path, None, None, "not an xlsx workbook (no xl/workbook.xml; .xls and .ods are not read: save as .xlsx or CSV)")
    sheet_name, sheet_path, date1904 = _first_sheet(book, path)
    strings = _shared_strings(book) if "xl/sharedStrings.xml" in names else []
    date_styles = _date_styles(book) if "xl/styles.xml" in names else set()
    if sheet_path not in names:
        raise LedgerError(path, None, None, f"xlsx: the sheet {sheet_name!r} is missing ({sheet_path})")
    with book.open(sheet_path) as stream:
        rows = _sheet_rows(stream, strings, date_styles, date1904, path, max_rows)
    return sheet_name, rows


def _xml(book: zipfile.ZipFile, name: str):
    with book.open(name) as stream:
        return etree.parse(stream, etree.XMLParser(**_PARSER)).getroot()


def _first_sheet(book: zipfile.ZipFile, path: str) -> tuple[str, str, bool]:
    workbook = _xml(book, "xl/workbook.xml")
    sheet = workbook.find("{*}sheets/{*}sheet")
    if sheet is None:
        raise LedgerError(path, None, None, "xlsx: the workbook has no sheet")
    properties = workbook.find("{*}workbookPr")
    date1904 = properties is not None and properties.get("date1904") in ("1", "true")
    target = "xl/worksheets/sheet1.xml"
    relation = sheet.get(f"{{{_R}}}id")
    if relation and "xl/_rels/workbook.xml.rels" in book.namelist():
        for rel in _xml(book, "xl/_rels/workbook.xml.rels"):
            if rel.get("Id") == relation:
                ref = rel.get("Target", "")
                target = ref.lstrip("/") if ref.startswith("/") else posixpath.normpath(posixpath.join("xl", ref))
    return sheet.get("name", "Sheet1"), target, date1904


def _shared_strings(book: zipfile.ZipFile) -> list[str]:
    strings = []
    with book.open("xl/sharedStrings.xml") as stream:
        for _, item in etree.iterparse(stream, tag="{*}si", **_PARSER):
            strings.append(_item_text(item))
            item.clear()
    return strings


def _item_text(item) -> str:
    """A string item's text: its t, or its runs' t, without phonetic (rPh) runs."""
    return "".join(t.text or "" for t in item.iter("{*}t") if etree.QName(t.getparent()).localname != "rPh")


def _date_styles(book: zipfile.ZipFile) -> set[int]:
    """Indexes of the cell styles whose number format shows a date."""
    styles = _xml(book, "xl/styles.xml")
    custom = {}
    for fmt in styles.iterfind("{*}numFmts/{*}numFmt"):
        code = re.sub(r'"[^"]*"|\[[^\]]*\]|\\.', "", fmt.get("formatCode", ""))
        custom[int(fmt.get("numFmtId", "0"))] = bool(re.search(r"[dmyDMY]", code))
    found = set()
    for index, xf in enumerate(styles.iterfind("{*}cellXfs/{*}xf")):
        number = int(xf.get("numFmtId", "0"))
        if number in _DATE_FORMAT_IDS or custom.get(number):
            found.add(index)
    return found


def _column(ref: str) -> int:
    index = 0
    for char in ref:
        if not char.isalpha():
            break
        index = index * 26 + ord(char.upper()) - 64
    return index - 1


def _serial_date(text: str, date1904: bool) -> str:
    days = int(Decimal(text))  # the fraction is the time of day
    if date1904:
        return (date(1904, 1, 1) + timedelta(days=days)).isoformat()
    if days < 61:  # Excel counts a 29 February 1900 that never was
        return (date(1899, 12, 31) + timedelta(days=days)).isoformat()
    return (date(1899, 12, 30) + timedelta(days=days)).isoformat()


def _sheet_rows(stream, strings, date_styles, date1904, path, max_rows) -> list[tuple[int, list[str]]]:
    rows: list[tuple[int, list[str]]] = []
    next_row = 1
    try:
        for _, row in etree.iterparse(stream, tag="{*}row", huge_tree=True, **_PARSER):
            number = int(row.get("r") or next_row)
            next_row = number + 1
            cells: dict[int, str] = {}
            position = 0
            for cell in row.iterfind("{*}c"):
                ref = cell.get("r")
                position = _column(ref) if ref else position
                cells[position] = _cell_text(cell, strings, date_styles, date1904, path, number)
                position += 1
            row.clear()
            while row.getprevious() is not None:
                del row.getparent()[0]
            if any(v.strip() for v in cells.values()):
                width = max(cells) + 1
                rows.append((number, [cells.get(i, "") for i in range(width)]))
                if max_rows is not None and len(rows) >= max_rows:
                    break
    except etree.XMLSyntaxError as error:
        raise LedgerError(path, None, None, "xlsx: the sheet is not well-formed XML: " + " ".join(str(error.msg).split())) from None
    return rows


def _cell_text(cell, strings, date_styles, date1904, path, row) -> str:
    kind = cell.get("t", "n")
    value = cell.find("{*}v")
    text = value.text or "" if value is not None else ""
    if kind == "s":
        try:
            return strings[int(text)]
        except (ValueError, IndexError):
            raise LedgerError(path, row, cell.get("r"), f"xlsx: shared string {text!r} does not exist") from None
    if kind == "inlineStr":
        inline = cell.find("{*}is")
        return _item_text(inline) if inline is not None else ""
    if kind == "b":
        return "TRUE" if text == "1" else "FALSE"
    if kind == "d":
        return text[:10]
    if kind in ("str", "e"):
        return text
    if not text:
        return ""
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise LedgerError(path, row, cell.get("r"), f"xlsx: {text!r} is not a number") from None
    if int(cell.get("s", "0")) in date_styles:
        return _serial_date(text, date1904)
    return text if "e" not in text.lower() else format(number, "f")
