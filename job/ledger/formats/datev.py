"""DATEV Buchungsstapel (EXTF/DTVF, format category 21): the CSV a German tax adviser's system exchanges.

Line 1 is the header record: ``"EXTF";700;21;"Buchungsstapel";…`` with, among others, the
fiscal year start (field 13), the batch's period ``Datum vom``/``Datum bis`` (fields 15 and
16, YYYYMMDD) and the currency (field 22). Line 2 names the columns, and every later line is
a posting: ``Umsatz (ohne Soll/Haben-Kz)`` is unsigned with a decimal comma, and
``Soll/Haben-Kennzeichen`` S (debit to Konto, recorded positive) or H (credit, negative);
``Belegdatum`` is TTMM without a year, which is the year that puts the day inside the
batch's period. Files are Windows-1252 (UTF-8 with a byte order mark is read too).

The vendor is the Buchungstext (else the Gegenkonto), the memo Belegfeld 1 and 2 (the
invoice number), the account Konto. DATEV carries no posting id: every id is derived (see
`common.Rows`), with Konto, Gegenkonto, BU-Schlüssel and Belegfeld 1 among the facts.
"""

from __future__ import annotations

from datetime import date, datetime

from job.ledger.formats.common import Problems, Reading, ReadOptions, Rows, check_currency, decimal_minor, finish_reading, show
from job.ledger.formats.table import Table, fold, get_cell, label_columns, load_table, map_columns

__all__ = ["NAME", "is_datev", "load", "read_datev", "read_table"]

NAME = "datev"
ALIASES = {
    "amount": ("umsatz (ohne soll/haben-kz)", "umsatz"),
    "side": ("soll/haben-kennzeichen", "soll-/haben-kennzeichen"),
    "currency": ("wkz umsatz",),
    "account": ("konto",),
    "contra": ("gegenkonto (ohne bu-schlüssel)", "gegenkonto"),
    "tax_key": ("bu-schlüssel",),
    "day": ("belegdatum",),
    "document": ("belegfeld 1",),
    "document2": ("belegfeld 2",),
    "text": ("buchungstext",),
}


def is_datev(first_line: str) -> bool:
    """The header record of a DATEV format file (EXTF or DTVF)."""
    head = first_line.lstrip("\ufeff").lstrip()
    return head.startswith(('"EXTF";', "EXTF;", '"DTVF";', "DTVF;"))


def read_datev(path, options: ReadOptions = ReadOptions()):
    """Read a DATEV Buchungsstapel; raise `LedgerError` at the first problem."""
    return load(path, Problems(str(path)), options).ledger


def load(path, problems: Problems, options: ReadOptions) -> Reading:
    table = load_table(path, encodings=("utf-8", "cp1252"))
    problems.path = table.path
    return read_table(table, problems, options)


def _header_day(fields: list[str], index: int) -> date | None:
    text = fields[index].strip().strip('"') if index < len(fields) else ""
    try:
        return datetime.strptime(text, "%Y%m%d").date() if text else None
    except ValueError:
        return None


def _posting_day(text: str, start: date | None, end: date | None) -> date:
    """The day of a Belegdatum TTMM (or TTMMJJJJ) inside the batch's period."""
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit()) or len(digits) not in (3, 4, 8):
        raise ValueError(f"{show(text)} is not a date TTMM")
    if len(digits) == 8:
        return datetime.strptime(digits, "%d%m%Y").date()
    digits = digits.zfill(4)
    if start is None or end is None:
        raise ValueError(f"{show(text)} has no year and the header record gives no period (Datum vom, Datum bis)")
    found = []
    for year in sorted({start.year, end.year}):
        try:
            day = date(year, int(digits[2:]), int(digits[:2]))
        except ValueError:
            continue
        if start <= day <= end:
            found.append(day)
    if len(found) != 1:
        raise ValueError(f"{show(text)} is not a day in the batch's period {start:%d.%m.%Y} to {end:%d.%m.%Y}")
    return found[0]


def read_table(table: Table, problems: Problems, options: ReadOptions) -> Reading:
    """The postings of a Buchungsstapel (pure: the table is already read)."""
    if len(table.rows) < 2 or not is_datev(";".join(table.rows[0][1])):
        raise problems.fail(table.rows[0][0] if table.rows else None, None, "not a DATEV file: line 1 is not an EXTF header record")
    header_line, record = table.rows[0]
    record = [f.strip() for f in record]
    category = record[2] if len(record) > 2 else ""
    if category != "21":
        what = record[3] if len(record) > 3 else "?"
        raise problems.fail(header_line, None, f"DATEV format category {category!r} ({what}) is not a Buchungsstapel (21)")
    start, end = _header_day(record, 14), _header_day(record, 15)
    batch_currency = record[21].strip() if len(record) > 21 and record[21].strip() else "EUR"
    columns_line, headers = table.rows[1]
    columns = map_columns(headers, ALIASES)
    names = label_columns(headers, columns)
    if missing := [n for n in ("amount", "side", "account", "day") if n not in columns]:
        raise problems.fail(columns_line, None, f"missing DATEV column(s) {', '.join(ALIASES[n][0] for n in missing)}")
    rows = Rows(NAME, problems)
    for line, cells in table.rows[2:]:
        try:
            day = _posting_day(get_cell(cells, columns, "day"), start, end)
        except ValueError as error:
            problems.add(line, names["day"], str(error))
            continue
        try:
            currency = check_currency(get_cell(cells, columns, "currency") or batch_currency)
        except ValueError as error:
            problems.add(line, names.get("currency"), str(error))
            continue
        try:
            amount = decimal_minor(get_cell(cells, columns, "amount"), currency, point=",")
        except ValueError as error:
            problems.add(line, names["amount"], str(error))
            continue
        if amount < 0:
            problems.add(line, names["amount"], "is signed; the sign belongs in Soll/Haben-Kennzeichen")
            continue
        side = fold(get_cell(cells, columns, "side"))
        if side not in ("s", "h"):
            problems.add(line, names["side"], f"{show(get_cell(cells, columns, 'side'))} is neither S nor H")
            continue
        account, contra = get_cell(cells, columns, "account"), get_cell(cells, columns, "contra")
        text = get_cell(cells, columns, "text")
        vendor = text or (f"Gegenkonto {contra}" if contra else "")
        if not vendor:
            problems.add(line, names.get("text", "Buchungstext"), "missing value (and no Gegenkonto)")
            continue
        document = get_cell(cells, columns, "document")
        memo = " ".join(p for p in (document, get_cell(cells, columns, "document2")) if p)
        facts = (contra, get_cell(cells, columns, "tax_key"), document)
        rows.add(None, day, amount if side == "s" else -amount, currency, vendor, memo, account, line, facts)
    period = f"{start:%d.%m.%Y} to {end:%d.%m.%Y}" if start and end else "none given"
    mapping = {
        "id": "derived from the posting (Konto, Gegenkonto, BU-Schlüssel, Belegfeld 1, date, amount, text)",
        "date": f"{names['day']} (TTMM; the year from the batch's period, {period})",
        "amount": f"{names['amount']}, positive for {names['side']} S, negative for H",
        "currency": names.get("currency", "") + f" (else the header record's {batch_currency})",
        "vendor": f"{names.get('text', 'Buchungstext')} else Gegenkonto",
        "memo": " and ".join(names[r] for r in ("document", "document2") if r in columns) or "(none)",
        "account": names["account"],
    }
    notes = [f"DATEV format version {record[1]}, {record[3] if len(record) > 3 else ''} version {record[4] if len(record) > 4 else '?'}"]
    return finish_reading(NAME, table.path, table.sha256, rows, mapping, notes, problems)
