"""QuickBooks report exports (Transaction Detail by Account, Journal, General Ledger) as CSV or xlsx.

A report export has title rows (company, report name, dates) above the header, account
section rows (a name alone on its row), "Total for …" rows, a TOTAL row and a footer (the
basis and export time). Only dated rows and a journal's split lines (no date, an account
and an amount: they belong to the dated row above) are transactions. The account is the
Account column, or else the section the row is in. Amount is signed as exported; Debit and
Credit give debit minus credit. Num is often empty: QuickBooks exports carry no line id,
so every id is derived (see `common.Rows`), with Transaction Type, Num and Split among the
facts.
"""

from __future__ import annotations

from job.ledger.formats.amounts import has_amount, read_amount
from job.ledger.formats.common import Problems, Reading, ReadOptions, Rows, check_currency, finish_reading, parse_day
from job.ledger.formats.table import Table, find_header, fold, get_cell, label_columns, load_table, map_columns

__all__ = ["NAME", "is_header", "load", "read_quickbooks", "read_table"]

NAME = "quickbooks"
DATE_FORMATS = ("%m/%d/%Y", "%Y-%m-%d")
ALIASES = {
    "date": ("date", "transaction date"),
    "type": ("transaction type", "type"),
    "num": ("num", "no.", "ref no.", "ref #"),
    "name": ("name", "payee", "vendor", "customer"),
    "memo": ("memo/description", "memo", "description"),
    "account": ("account", "account full name", "account name", "distribution account"),
    "split": ("split", "split account"),
    "amount": ("amount",),
    "debit": ("debit",),
    "credit": ("credit",),
    "currency": ("currency",),
}


def is_header(cells: set[str]) -> bool:
    """A QuickBooks report's header row: Date, a type, Num and an amount column."""
    return (
        "date" in cells
        and bool(cells & {"transaction type", "type"})
        and bool(cells & {"num", "no.", "ref no."})
        and bool(cells & {"amount", "debit", "credit"})
    )


def read_quickbooks(path, options: ReadOptions = ReadOptions()):
    """Read a QuickBooks report export (CSV or xlsx); raise `LedgerError` at the first problem."""
    return load(path, Problems(str(path)), options).ledger


def load(path, problems: Problems, options: ReadOptions) -> Reading:
    table = load_table(path)
    problems.path = table.path
    return read_table(table, problems, options)


def read_table(table: Table, problems: Problems, options: ReadOptions) -> Reading:
    """The transactions of a QuickBooks report (pure: the table is already read)."""
    start = find_header(table.rows, is_header)
    if start is None:
        top_row = table.rows[0] if table.rows else (None, [])
        raise problems.fail(top_row[0], None, "no QuickBooks report header (Date, Transaction Type, Num, Amount or Debit/Credit)")
    header_line, headers = table.rows[start]
    columns = map_columns(headers, ALIASES)
    names = label_columns(headers, columns)
    if not has_amount(columns):
        raise problems.fail(header_line, None, "no Amount or Debit/Credit column")
    formats = options.date_formats or DATE_FORMATS
    rows = Rows(NAME, problems)
    counts = {"section": 0, "total": 0, "other": 0}
    section = ""
    last: tuple | None = None  # the dated row a journal's split lines belong to
    for line, cells in table.rows[start + 1 :]:
        texts = [fold(c) for c in cells]
        first = next((t for t in texts if t), "")
        if first == "total":
            counts["total"] += 1
            break  # the footer follows
        if first.startswith("total for ") or first.startswith("total "):
            counts["total"] += 1
            continue
        date_text = get_cell(cells, columns, "date")
        amounts = any(get_cell(cells, columns, r) for r in ("amount", "debit", "credit"))
        if sum(1 for t in texts if t) == 1 and not amounts:  # an account's name alone on its row
            section, last = next(c for c in cells if c.strip()).strip(), None
            counts["section"] += 1
            continue
        if not date_text:
            if amounts and get_cell(cells, columns, "account") and last is not None:
                day, kind, num, name = last
            else:
                counts["total" if amounts else "other"] += 1
                continue
        else:
            try:
                day = parse_day(date_text, formats)
            except ValueError as error:
                problems.add(line, names["date"], str(error))
                last = None
                continue
            kind, num, name = get_cell(cells, columns, "type"), get_cell(cells, columns, "num"), get_cell(cells, columns, "name")
            last = (day, kind, num, name)
        currency = get_cell(cells, columns, "currency") or options.default_currency
        try:
            currency = check_currency(currency)
        except ValueError as error:
            problems.add(line, names.get("currency"), str(error))
            continue
        money = read_amount(cells, columns, names, currency, problems, line)
        if money is None:
            continue
        memo = get_cell(cells, columns, "memo")
        vendor = name or memo or kind
        if not vendor:
            problems.add(line, names.get("name", "Name"), "missing value (and no memo or transaction type to name the row by)")
            continue
        account = get_cell(cells, columns, "account") or section
        rows.add(None, day, money[0], money[1], vendor, memo, account, line, (kind, num, get_cell(cells, columns, "split")))
    mapping = {
        "id": "derived from the row (Transaction Type, Num, Split, date, amount, name, memo, account)",
        "date": names["date"],
        "amount": names["amount"] if "amount" in columns else " minus ".join(names[r] for r in ("debit", "credit") if r in columns),
        "currency": names.get("currency", f"{options.default_currency} (the default currency)"),
        "vendor": " else ".join(names[r] for r in ("name", "memo", "type") if r in columns),
        "memo": names.get("memo", "(none)"),
        "account": names.get("account", "the account section row above"),
    }
    notes = [f"header on line {header_line}"] + [f"skipped {n} {kind} row(s)" for kind, n in counts.items() if n]
    if table.container == "xlsx":
        notes.insert(0, f"xlsx workbook, {table.detail}")
    return finish_reading(NAME, table.path, table.sha256, rows, mapping, notes, problems, names.get("num", "Num"))
