"""`audit inspect`: what a file will be read as, before anything is recorded.

`inspect_file` reads the file in the named or detected format, collecting every problem
instead of stopping at the first, and returns plain data: the format and how it was chosen,
how each engine column is filled, the row count, exact totals per currency, the first rows
as they will be recorded, and the problems with their lines (or XML element paths).
`render_inspection` prints that for people. Nothing here opens the database.
"""

from __future__ import annotations

import os

import polars as pl

from job.ledger.formats.read import check_format_name, load_file
from job.ledger.ingest import LedgerFormat, format_amount

__all__ = ["inspect_file", "render_inspection"]

COLUMNS = ("id", "date", "amount", "currency", "vendor", "memo", "account")


def inspect_file(path, format_name: str | None = None, csv_format: LedgerFormat = LedgerFormat(), *, first_rows: int = 10) -> dict:
    """Everything `audit inspect` shows, as JSON-ready data (amounts as exact decimal strings)."""
    named = check_format_name(format_name)
    reading = load_file(path, named, csv_format, collect=True)
    frame = reading.ledger.frame
    totals = {}
    if frame.height:
        grouped = (
            frame.group_by("currency")
            .agg(
                rows=pl.len(),
                net=pl.col("amount_minor").sum(),
                positive=pl.col("amount_minor").filter(pl.col("amount_minor") > 0).sum(),
                negative=pl.col("amount_minor").filter(pl.col("amount_minor") < 0).sum(),
            )
            .sort("currency")
        )
        for currency, rows, net, positive, negative in grouped.iter_rows():
            totals[currency] = {
                "rows": rows,
                "net": format_amount(int(net), currency),
                "positive": format_amount(int(positive or 0), currency),
                "negative": format_amount(int(negative or 0), currency),
            }
    shown = [
        {
            "line": line,
            "id": txn_id,
            "date": day.isoformat(),
            "amount": format_amount(amount, currency),
            "currency": currency,
            "vendor": vendor,
            "memo": memo,
            "account": account,
        }
        for txn_id, day, amount, currency, vendor, memo, account, line in frame.head(first_rows)
        .select("txn_id", "date", "amount_minor", "currency", "vendor", "memo", "account", "line")
        .iter_rows()
    ]
    return {
        "file": os.fsdecode(path),
        "format": reading.format,
        "chosen": "named" if named not in (None, "xlsx") else "detected",
        "notes": reading.notes,
        "mapping": {column: reading.mapping.get(column, "") for column in COLUMNS},
        "rows": frame.height,
        "sha256": reading.ledger.sha256,
        "totals": totals,
        "first_rows": shown,
        "problems": [{"line": p.line, "where": p.column, "problem": p.problem, "message": str(p)} for p in reading.problems],
        "more_problems": reading.more_problems,
    }


def render_inspection(info: dict) -> str:
    """The inspection as text for people."""
    out = [f"{info['file']}: {info['format']} ({info['chosen']})"]
    out += [f"  {note}" for note in info["notes"]]
    out.append("columns:")
    width = max(len(c) for c in COLUMNS)
    out += [f"  {column:<{width}}  <- {source}" for column, source in info["mapping"].items()]
    out.append(f"rows: {info['rows']}")
    if info["totals"]:
        out.append("totals (positive = payments and debits, negative = receipts and credits):")
        for currency, total in info["totals"].items():
            out.append(
                f"  {currency}  net {total['net']}  (+{total['positive']}, {total['negative']})  in {total['rows']} row(s)".replace(
                    "(+-", "(-"
                )
            )
    if info["first_rows"]:
        out.append(f"first {len(info['first_rows'])} row(s) as they will be recorded:")
        for row in info["first_rows"]:
            out.append(
                f"  line {row['line']}: {row['id']}  {row['date']}  {row['amount']} {row['currency']}  {row['vendor']}"
                + (f"  | {row['memo']}" if row["memo"] else "")
                + (f"  | account {row['account']}" if row["account"] else "")
            )
    problems = info["problems"]
    if not problems:
        out.append("problems: none")
    else:
        more = info["more_problems"]
        out.append(f"problems: {len(problems) + more}" + (f" (the first {len(problems)} listed)" if more else ""))
        out += [f"  {p['message']}" for p in problems]
    return "\n".join(out)
