#!/usr/bin/env python3
"""The reference pipeline from the performance notes, to compare `audit run` against.

This is the fastest pipeline the notes measured, and nothing more: polars reads the CSV,
six rules run as polars expressions (duplicates by sorting and comparing neighbours), and
sqlite3 `executemany` writes one audit row per transaction in one transaction. It does no
validation beyond what exact money needs, no dedupe against earlier runs, no review, no
email. `run_bench.py --reference` times it the same way as `audit run`, as a whole process.

    python bench/reference.py --ledger bench/out/ledger-1m.csv --vendors-file bench/out/vendors.csv --db /tmp/ref.db

Amounts are exact here too: integer cents from the digit strings, never through a float.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

import polars as pl

THRESHOLD = 1_000_000  # 10,000.00 in cents
VAGUE = r"(?i)\b(confidential|misc|miscellaneous|various|sundry)\b"


def read(ledger: Path) -> pl.DataFrame:
    df = pl.read_csv(ledger, infer_schema=False, empty_string_is_null=False)
    amount = pl.col("amount").str.replace_all(",", "", literal=True)
    units = amount.str.split_exact(".", 1)
    return df.with_columns(
        amount_minor=units.struct.field("field_0").cast(pl.Int64) * 100
        + units.struct.field("field_1").fill_null("0").str.pad_end(2, "0").cast(pl.Int64),
        day=pl.col("date").str.to_date("%Y-%m-%d"),
        vendor_key=pl.col("vendor").str.to_lowercase(),
    )


def screen(df: pl.DataFrame, known: set[str]) -> pl.DataFrame:
    df = df.with_row_index("row").with_columns(
        large=pl.col("amount_minor").abs() > THRESHOLD,
        vague=pl.col("memo").str.contains(VAGUE),
        unfamiliar=~pl.col("vendor_key").is_in(list(known)),
        round=(pl.col("amount_minor") % 100_000 == 0) & (pl.col("amount_minor") >= 100_000),
    )
    dup = (
        df.select("row", "vendor_key", "amount_minor", "day")
        .sort("vendor_key", "amount_minor", "day")
        .with_columns(
            duplicate=(pl.col("vendor_key") == pl.col("vendor_key").shift(1))
            & (pl.col("amount_minor") == pl.col("amount_minor").shift(1))
            & ((pl.col("day") - pl.col("day").shift(1)).dt.total_days() <= 3)
        )
        .select("row", "duplicate")
    )
    band = (
        df.filter(pl.col("amount_minor").is_between(THRESHOLD * 9 // 10, THRESHOLD))
        .select("row", "vendor_key", "day")
        .sort("vendor_key", "day")
    )
    in_window = band.rolling("day", period="7d", group_by="vendor_key").agg(n=pl.len(), rows=pl.col("row"))
    struct_rows = in_window.filter(pl.col("n") >= 3).explode("rows").select(row=pl.col("rows"), structuring=pl.lit(True)).unique("row")
    df = df.join(dup, on="row", how="left").join(struct_rows, on="row", how="left")
    codes = ["large", "vague", "unfamiliar", "structuring", "duplicate", "round"]
    return df.with_columns(
        flags=pl.concat_str([pl.when(pl.col(c).fill_null(False)).then(pl.lit(c + ";")).otherwise(pl.lit("")) for c in codes])
    )


def write(df: pl.DataFrame, db: Path) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("CREATE TABLE IF NOT EXISTS audit (txn_id TEXT, date TEXT, amount_minor INTEGER, vendor TEXT, memo TEXT, flags TEXT)")
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO audit VALUES (?,?,?,?,?,?)",
        df.select("id", "date", "amount_minor", "vendor", "memo", "flags").iter_rows(),
    )
    conn.execute("COMMIT")
    conn.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ledger", type=Path, required=True)
    p.add_argument("--vendors-file", type=Path)
    p.add_argument("--db", type=Path, required=True)
    args = p.parse_args(argv)
    known: set[str] = set()
    if args.vendors_file:
        known = set(pl.read_csv(args.vendors_file, infer_schema=False)["vendor"].str.to_lowercase())
    df = screen(read(args.ledger), known)
    write(df, args.db)
    flagged = df.filter(pl.col("flags") != "").height
    print(f"reference: {df.height} rows, {flagged} flagged, written to {args.db}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
