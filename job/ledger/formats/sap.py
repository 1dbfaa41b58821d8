"""SAP line-item list exports (FBL1N vendors, FBL3N G/L accounts, FBL5N customers) as text or xlsx.

The lists are saved as semicolon- or tab-separated text (or a spreadsheet) with German or
English headers, may carry title rows above the header and total rows (``*``, ``**``)
below the items, and write amounts in the user's number format with a trailing minus
(``1.234,56-``, or ``1,234.56-``); the file's decimal separator is the one before the last
two digits of its amounts. Dates are ``24.11.2026`` (or ``11/24/2026``, ISO).

The id is ``company code-fiscal year-document number-line item`` (fiscal year: its column,
else the posting date's year; line item: its column, else the row's number among the
document's rows in the file). The amount is in document currency when the list has it,
else in local currency. The vendor is the name column, else the vendor or customer number,
else the text.
"""

from __future__ import annotations

import re
from collections import Counter

from job.ledger.formats.common import Problems, Reading, ReadOptions, Rows, check_currency, finish_reading, parse_day, show
from job.ledger.formats.table import Table, fold, get_cell, load_table, locate_header
from job.ledger.ingest import parse_amount

__all__ = ["NAME", "is_header", "load", "read_sap", "read_table", "parse_sap_amount"]

NAME = "sap"
DATE_FORMATS = ("%d.%m.%Y", "%m/%d/%Y", "%Y-%m-%d", "%Y/%m/%d")
ALIASES = {
    "company": ("buchungskreis", "bukr", "bukrs", "company code", "cocd"),
    "year": ("geschäftsjahr", "gjahr", "jahr", "fiscal year", "year"),
    "document": ("belegnummer", "belegnr", "belegnr.", "document number", "documentno", "doc. no.", "document no"),
    "item": ("position", "buchungszeile", "pos.", "pos", "line item", "itm", "item"),
    "posting_date": ("buchungsdatum", "buch.dat.", "posting date", "pstng date"),
    "document_date": ("belegdatum", "beleg.dat.", "document date", "doc. date", "doc..date"),
    "doc_amount": ("betrag in belegwährung", "betrag in bw", "amount in doc. curr.", "amount in dc", "amount in document currency"),
    "doc_currency": ("belegwährung", "währung", "document currency", "curr.", "currency"),
    "local_amount": ("betrag in hauswährung", "betrag in hw", "amount in local currency", "amount in lc", "amt in loc.cur."),
    "local_currency": ("hauswährung", "hw", "local currency", "lcurr"),
    "name": ("name 1", "name", "name des kreditors", "name des debitors", "vendor name", "customer name"),
    "partner": ("kreditor", "lieferant", "debitor", "kunde", "vendor", "customer", "account", "konto"),
    "gl_account": ("sachkonto", "hauptbuchkonto", "g/l account", "g/l acct", "g/l"),
    "text": ("text", "buchungstext", "positionstext"),
    "assignment": ("zuordnung", "assignment"),
    "reference": ("referenz", "reference"),
}
_GERMAN = ("buchungskreis", "belegnummer", "buchungsdatum", "belegdatum", "hauswährung", "belegwährung")


def is_header(cells: set[str]) -> bool:
    """An FBL1N/FBL3N/FBL5N header: a document number, a posting or document date and an amount in a currency."""
    document = bool(cells & {"belegnummer", "belegnr", "belegnr.", "document number", "documentno", "doc. no."})
    day = bool(cells & {"buchungsdatum", "belegdatum", "posting date", "document date", "pstng date", "doc. date"})
    money = any(c.startswith(("betrag in", "amount in", "amt in")) for c in cells)
    return document and day and money


def parse_sap_amount(text: str, currency: str, point: str) -> int:
    """Exact minor units of an SAP amount: ``1.234,56-`` (trailing minus), ``-1.234,56``, ``1,234.56-``."""
    body = text.strip()
    negative = body.endswith("-")
    if negative:
        body = body[:-1].strip()
        if body.startswith(("-", "+")):
            raise ValueError(f"{show(text)} has two signs")
    try:
        minor, written = parse_amount(body, currency=currency, decimal_separator=point, thousands_separator="." if point == "," else ",")
    except ValueError as error:
        raise ValueError(str(error).replace(show(body), show(text))) from None
    if written and written != currency:
        raise ValueError(f"{show(text)} is in {written} but the row's currency is {currency}")
    if minor >= 2**63:
        raise ValueError(f"{show(text)} is too large to record exactly")
    return -minor if negative else minor


def _decimal_point(amounts: list[str], german: bool) -> str:
    """The file's decimal separator: the one before the last two digits of its amounts."""
    for text in amounts:
        if match := re.search(r"([.,])[0-9]{1,2}-?$", text.strip()):
            return match[1]
    return "," if german else "."


def read_sap(path, options: ReadOptions = ReadOptions()):
    """Read an SAP FBL1N/FBL3N/FBL5N list export; raise `LedgerError` at the first problem."""
    return load(path, Problems(str(path)), options).ledger


def load(path, problems: Problems, options: ReadOptions) -> Reading:
    table = load_table(path)
    problems.path = table.path
    return read_table(table, problems, options)


def read_table(table: Table, problems: Problems, options: ReadOptions) -> Reading:
    """The line items of an SAP list (pure: the table is already read)."""
    start, header_line, headers, columns, names = locate_header(
        table, problems, is_header, ALIASES, "SAP line-item list header (document number, posting or document date, amount)"
    )
    if "doc_amount" in columns and "doc_currency" in columns:
        amount_role, currency_role = "doc_amount", "doc_currency"
    elif "local_amount" in columns:
        amount_role, currency_role = "local_amount", "local_currency"
    else:
        raise problems.fail(header_line, None, "no amount with its currency (Betrag in Belegwährung/Belegwährung or Betrag in Hauswährung)")
    date_role = "posting_date" if "posting_date" in columns else "document_date"
    german = any(fold(h) in _GERMAN for h in headers)
    body = table.rows[start + 1 :]
    point = _decimal_point([get_cell(c, columns, amount_role) for _, c in body[:200]], german)
    formats = options.date_formats or DATE_FORMATS
    rows = Rows(NAME, problems)
    seen: Counter[str] = Counter()
    skipped = 0
    for line, cells in body:
        texts = [c.strip() for c in cells if c.strip()]
        document = get_cell(cells, columns, "document")
        if not document or texts[0].startswith("*"):
            skipped += 1  # a total or a subtotal row
            continue
        try:
            day = parse_day(get_cell(cells, columns, date_role), formats)
        except ValueError as error:
            problems.add(line, names[date_role], str(error))
            continue
        try:
            currency = check_currency(get_cell(cells, columns, currency_role) or options.default_currency)
        except ValueError as error:
            problems.add(line, names.get(currency_role), str(error))
            continue
        text = get_cell(cells, columns, amount_role)
        if not text:
            problems.add(line, names[amount_role], "missing value")
            continue
        try:
            amount = parse_sap_amount(text, currency, point)
        except ValueError as error:
            problems.add(line, names[amount_role], str(error))
            continue
        company = get_cell(cells, columns, "company")
        year = get_cell(cells, columns, "year") or str(day.year)
        key = "-".join(p for p in (company, year, document) if p)
        seen[key] += 1
        item = get_cell(cells, columns, "item") or str(seen[key])
        partner = get_cell(cells, columns, "partner")
        memo = get_cell(cells, columns, "text")
        vendor = get_cell(cells, columns, "name") or partner or memo
        if not vendor:
            problems.add(line, names.get("name", names.get("partner", "Name")), "missing value")
            continue
        account = get_cell(cells, columns, "gl_account") or partner
        rows.add(f"{key}-{item}", day, amount, currency, vendor, memo, account, line)
    mapping = {
        "id": "-".join(names[r] for r in ("company", "year", "document") if r in columns)
        + ("" if "year" in columns else " (fiscal year: the posting date's year)")
        + f"-{names['item'] if 'item' in columns else 'n (the row of that document, 1, 2, …)'}",
        "date": names[date_role],
        "amount": f"{names[amount_role]} (decimal {point!r}, trailing minus)",
        "currency": names.get(currency_role, f"{options.default_currency} (default)"),
        "vendor": " else ".join(names[r] for r in ("name", "partner", "text") if r in columns),
        "memo": names.get("text", "(none)"),
        "account": names.get("gl_account", names.get("partner", "(none)")),
    }
    notes = [f"header on line {header_line}"] + ([f"skipped {skipped} total row(s)"] if skipped else [])
    if table.container == "xlsx":
        notes.insert(0, f"xlsx workbook, {table.detail}")
    return finish_reading(NAME, table.path, table.sha256, rows, mapping, notes, problems, names["document"])
