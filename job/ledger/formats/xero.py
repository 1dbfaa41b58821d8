"""Xero exports as CSV or xlsx: the Account Transactions report and bank statement lines.

Account Transactions has title rows (report name, organisation, period) above the header
(Date, Source, Contact, Description, Reference, Debit, Credit, Running Balance, …), an
account section row, Opening and Closing Balance rows and "Total …" rows; the amount is
debit minus credit. A bank statement export has Payee, Spent and Received (amount = spent
minus received, so a payment is positive) or a signed Amount (recorded as exported). The
currency is a Currency column, or the code in a header such as ``Debit (GBP)``, or the
default. Xero exports carry no line id: every id is derived (see `common.Rows`), with
Source and Reference among the facts.
"""

from __future__ import annotations

import re

from job.ledger.formats.amounts import has_amount, read_amount
from job.ledger.formats.common import Problems, Reading, ReadOptions, Rows, check_currency, finish_reading, parse_day
from job.ledger.formats.table import Table, find_header, fold, get_cell, label_columns, load_table, map_columns

__all__ = ["NAME", "is_header", "load", "read_table", "read_xero"]

NAME = "xero"
DATE_FORMATS = ("%d %b %Y", "%d/%m/%Y", "%Y-%m-%d")
_CODE = r"(?: \([a-z]{3}\))?"
ALIASES = {
    "date": ("date", "transaction date"),
    "source": ("source", "transaction type", "type"),
    "contact": ("contact", "payee", "contact name"),
    "description": ("description", "particulars"),
    "reference": ("reference",),
    "account": ("account", "account name"),
    "amount": (rf"^amount{_CODE}$",),
    "debit": (rf"^debit{_CODE}$", rf"^spent{_CODE}$"),
    "credit": (rf"^credit{_CODE}$", rf"^received{_CODE}$"),
    "currency": ("currency", "currency code"),
}
_SKIP = ("opening balance", "closing balance", "total ")


def is_header(cells: set[str]) -> bool:
    """An Account Transactions header (Date, Source, Reference, Debit/Credit) or a bank
    statement export's (Date, Payee, Spent/Received)."""
    strip = {re.sub(r" \([a-z]{3}\)$", "", c) for c in cells}
    report = "date" in strip and "source" in strip and "reference" in strip and bool(strip & {"debit", "credit"})
    statement = "date" in strip and "payee" in strip and bool(strip & {"spent", "received"})
    return report or statement


def read_xero(path, options: ReadOptions = ReadOptions()):
    """Read a Xero export (CSV or xlsx); raise `LedgerError` at the first problem."""
    return load(path, Problems(str(path)), options).ledger


def load(path, problems: Problems, options: ReadOptions) -> Reading:
    table = load_table(path)
    problems.path = table.path
    return read_table(table, problems, options)


def read_table(table: Table, problems: Problems, options: ReadOptions) -> Reading:
    """The transactions of a Xero export (pure: the table is already read)."""
    start = find_header(table.rows, is_header)
    if start is None:
        top_row = table.rows[0] if table.rows else (None, [])
        raise problems.fail(top_row[0], None, "no Xero header (Date, Source, Reference, Debit, Credit; or Date, Payee, Spent, Received)")
    header_line, headers = table.rows[start]
    columns = map_columns(headers, ALIASES)
    names = label_columns(headers, columns)
    if not has_amount(columns):
        raise problems.fail(header_line, None, "no Debit/Credit, Spent/Received or Amount column")
    in_header = {m[1].upper() for h in headers if (m := re.search(r"\(([A-Za-z]{3})\)\s*$", h.strip()))}
    if len(in_header) > 1:
        raise problems.fail(header_line, None, f"the amount columns name different currencies: {', '.join(sorted(in_header))}")
    default = in_header.pop() if in_header else options.default_currency
    formats = options.date_formats or DATE_FORMATS
    rows = Rows(NAME, problems)
    counts = {"section": 0, "balance or total": 0}
    section = ""
    for line, cells in table.rows[start + 1 :]:
        texts = [fold(c) for c in cells if c.strip()]
        first = texts[0] if texts else ""
        if first.startswith(_SKIP) or first == "total":
            counts["balance or total"] += 1
            continue
        date_text = get_cell(cells, columns, "date")
        amounts = any(get_cell(cells, columns, r) for r in ("amount", "debit", "credit"))
        if len(texts) == 1 and not amounts:  # an account's name alone on its row
            section = next(c for c in cells if c.strip()).strip()
            counts["section"] += 1
            continue
        if not date_text:
            counts["balance or total"] += 1
            continue
        try:
            day = parse_day(date_text, formats)
        except ValueError as error:
            problems.add(line, names["date"], str(error))
            continue
        try:
            currency = check_currency(get_cell(cells, columns, "currency") or default)
        except ValueError as error:
            problems.add(line, names.get("currency"), str(error))
            continue
        money = read_amount(cells, columns, names, currency, problems, line)
        if money is None:
            continue
        contact, description = get_cell(cells, columns, "contact"), get_cell(cells, columns, "description")
        reference, source = get_cell(cells, columns, "reference"), get_cell(cells, columns, "source")
        vendor = contact or description or reference
        if not vendor:
            problems.add(line, names.get("contact", names.get("description", "Description")), "missing value")
            continue
        memo = description if contact else reference
        account = get_cell(cells, columns, "account") or section
        rows.add(None, day, money[0], money[1], vendor, memo, account, line, (source, reference))
    amount = names["amount"] if "amount" in columns else " minus ".join(names[r] for r in ("debit", "credit") if r in columns)
    mapping = {
        "id": "derived from the row (Source, Reference, date, amount, contact, memo, account)",
        "date": names["date"],
        "amount": amount,
        "currency": names.get("currency", f"{default} ({'the amount headers' if default != options.default_currency else 'default'})"),
        "vendor": " else ".join(names[r] for r in ("contact", "description", "reference") if r in columns),
        "memo": names.get("description", "") if "contact" in columns else names.get("reference", "(none)"),
        "account": names.get("account", "the account section row above"),
    }
    notes = [f"header on line {header_line}"] + [f"skipped {n} {kind} row(s)" for kind, n in counts.items() if n]
    if table.container == "xlsx":
        notes.insert(0, f"xlsx workbook, {table.detail}")
    return finish_reading(NAME, table.path, table.sha256, rows, mapping, notes, problems)
