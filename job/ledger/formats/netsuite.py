"""NetSuite saved-search exports (CSV or xlsx): whatever columns the search defines.

The id is the Internal ID (else the Document Number) and the Line ID when the search
includes one; without a Line ID, each row of one transaction is numbered in file order
(``4711-1``, ``4711-2``), so a main-line search gives ``4711-1``. Without either column the
id is derived (see `common.Rows`). The amount is Amount (Foreign Currency) with its Currency
when the search has both, else Amount, else Debit minus Credit; the vendor is Name (or
Entity, Vendor, Customer), else the memo, else the transaction type.
"""

from __future__ import annotations

from collections import Counter

from job.ledger.formats.amounts import has_amount, read_amount
from job.ledger.formats.common import Problems, Reading, ReadOptions, Rows, check_currency, finish_reading, parse_day
from job.ledger.formats.table import Table, find_header, fold, get_cell, label_columns, load_table, map_columns

__all__ = ["NAME", "is_header", "load", "read_netsuite", "read_table"]

NAME = "netsuite"
DATE_FORMATS = ("%m/%d/%Y", "%Y-%m-%d")
ALIASES = {
    "internal_id": ("internal id", "internalid"),
    "document": ("document number", "document number/id", "transaction number", "number"),
    "line_id": ("line id", "line sequence number", "line unique key"),
    "date": ("date", "transaction date", "posting date"),
    "type": ("type", "transaction type"),
    "name": ("name", "entity", "vendor", "customer", "payee"),
    "memo": ("memo", "memo (main)", "description"),
    "account": ("account", "account name"),
    "foreign_amount": ("amount (foreign currency)", "foreign amount", "amount (transaction currency)"),
    "amount": ("amount",),
    "debit": ("amount (debit)", "debit amount", "debit"),
    "credit": ("amount (credit)", "credit amount", "credit"),
    "currency": ("currency", "transaction currency"),
}


def is_header(cells: set[str]) -> bool:
    """A saved search's header: Internal ID, or Document Number with Type and Date."""
    has_date = bool(cells & {"date", "transaction date"})
    return has_date and ("internal id" in cells or ("document number" in cells and "type" in cells))


def read_netsuite(path, options: ReadOptions = ReadOptions()):
    """Read a NetSuite saved-search export (CSV or xlsx); raise `LedgerError` at the first problem."""
    return load(path, Problems(str(path)), options).ledger


def load(path, problems: Problems, options: ReadOptions) -> Reading:
    table = load_table(path)
    problems.path = table.path
    return read_table(table, problems, options)


def read_table(table: Table, problems: Problems, options: ReadOptions) -> Reading:
    """The transactions of a NetSuite export (pure: the table is already read)."""
    start = find_header(table.rows, is_header)
    if start is None:
        top_row = table.rows[0] if table.rows else (None, [])
        raise problems.fail(top_row[0], None, "no NetSuite saved-search header (Internal ID or Document Number, Type, Date)")
    header_line, headers = table.rows[start]
    columns = map_columns(headers, ALIASES)
    names = label_columns(headers, columns)
    foreign = "foreign_amount" in columns and "currency" in columns
    if foreign:
        columns = {**{k: v for k, v in columns.items() if k not in ("amount", "debit", "credit")}, "amount": columns["foreign_amount"]}
        names = {**names, "amount": names["foreign_amount"]}
    if not has_amount(columns):
        raise problems.fail(header_line, None, "no Amount or Debit/Credit column")
    key_role = "internal_id" if "internal_id" in columns else "document" if "document" in columns else None
    formats = options.date_formats or DATE_FORMATS
    rows = Rows(NAME, problems)
    seen: Counter[str] = Counter()
    skipped = 0
    for line, cells in table.rows[start + 1 :]:
        first = next((fold(c) for c in cells if c.strip()), "")
        date_text = get_cell(cells, columns, "date")
        if not date_text and (first.startswith("total") or not any(get_cell(cells, columns, r) for r in ("amount", "debit", "credit"))):
            skipped += 1
            continue
        try:
            day = parse_day(date_text, formats)
        except ValueError as error:
            problems.add(line, names["date"], str(error))
            continue
        try:
            currency = check_currency(get_cell(cells, columns, "currency") or options.default_currency)
        except ValueError as error:
            problems.add(line, names.get("currency"), str(error))
            continue
        money = read_amount(cells, columns, names, currency, problems, line)
        if money is None:
            continue
        txn_id = None
        if key_role is not None:
            key = get_cell(cells, columns, key_role)
            if not key:
                problems.add(line, names[key_role], "missing value")
                continue
            seen[key] += 1
            part = get_cell(cells, columns, "line_id") if "line_id" in columns else str(seen[key])
            txn_id = f"{key}-{part}"
        memo, kind = get_cell(cells, columns, "memo"), get_cell(cells, columns, "type")
        vendor = get_cell(cells, columns, "name") or memo or kind
        if not vendor:
            problems.add(line, names.get("name", "Name"), "missing value")
            continue
        rows.add(txn_id, day, money[0], money[1], vendor, memo, get_cell(cells, columns, "account"), line, (kind,))
    if key_role is None:
        how = "derived from the row (Type, date, amount, name, memo, account)"
    else:
        how = f"{names[key_role]}-{names['line_id'] if 'line_id' in columns else 'n (the row of that transaction, 1, 2, …)'}"
    amount = names["amount"] if "amount" in columns else " minus ".join(names[r] for r in ("debit", "credit") if r in columns)
    mapping = {
        "id": how,
        "date": names["date"],
        "amount": amount,
        "currency": names.get("currency", f"{options.default_currency} (default)"),
        "vendor": " else ".join(names[r] for r in ("name", "memo", "type") if r in columns),
        "memo": names.get("memo", "(none)"),
        "account": names.get("account", "(none)"),
    }
    notes = [f"header on line {header_line}"] + ([f"skipped {skipped} total or empty row(s)"] if skipped else [])
    if table.container == "xlsx":
        notes.insert(0, f"xlsx workbook, {table.detail}")
    id_column = names[key_role] if key_role else "id"
    return finish_reading(NAME, table.path, table.sha256, rows, mapping, notes, problems, id_column)
