#!/usr/bin/env python3
"""What writing one audit row per transaction costs, by itself: the reference's table
against the product's `transactions` table, and what each of the product's guarantees adds.

`run_bench.py` times whole processes; this times only the write, in one process, with the
rows already in Python lists (built untimed, from the ledger's columns), so the figures
are SQLite's and the binding's and nothing else. Each variant gets a fresh database:

- `reference`: the reference pipeline's write (`bench/reference.py`): six columns, no
  index, no foreign keys, rollback journal, one `executemany` of tuples, one commit.
- `product`: the real schema (`job.db.open_db`, every migration) and the statement a large
  run uses for its rows (`job.store.record_rows.insert_statement`), in WAL mode with foreign keys on,
  one transaction, then the commit and the close (which checkpoints the WAL).
- `product -fk`, `product -unique`, `product -wal`: the same with one guarantee removed:
  foreign-key checks off; the `UNIQUE (source, txn_id)` constraint (which is what makes a
  re-imported row recorded once) left out of the table; the rollback journal instead of
  WAL (which is what lets `poll` and `report` read while a run writes).
- `product -all`: all three removed.

    python bench/floor.py --ledger bench/out/ledger-1m-seed7.csv [--repeat 3]

Prints one line per variant (median of `--repeat`) and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import gc
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def load_rows(ledger: Path) -> dict[str, list]:
    """The ledger's columns as the product binds them (exact integer cents; ids in order)."""
    import polars as pl

    from job.screening.screen import normalize_vendor

    frame = pl.read_csv(ledger, infer_schema=False, empty_string_is_null=False)
    amount = pl.col("amount").str.replace_all(",", "", literal=True)
    units = amount.str.split_exact(".", 1)
    frame = frame.with_columns(
        amount_minor=units.struct.field("field_0").cast(pl.Int64) * 100
        + units.struct.field("field_1").fill_null("0").str.pad_end(2, "0").cast(pl.Int64))
    columns = {name: frame[name].to_list() for name in ("id", "date", "amount_minor", "currency", "vendor", "memo", "account")}
    keys = {name: normalize_vendor(name) for name in set(columns["vendor"])}
    columns["vendor_key"] = [keys[v] for v in columns["vendor"]]
    return columns


def write_reference(folder: Path, rows: dict[str, list]) -> float:
    start = time.perf_counter()
    conn = sqlite3.connect(folder / "ref.db", isolation_level=None)
    conn.execute("CREATE TABLE audit (txn_id TEXT, date TEXT, amount_minor INTEGER, vendor TEXT, memo TEXT, flags TEXT)")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO audit VALUES (?,?,?,?,?,?)",
                     zip(rows["id"], rows["date"], rows["amount_minor"], rows["vendor"], rows["memo"], [""] * len(rows["id"])))
    conn.execute("COMMIT")
    conn.close()
    return time.perf_counter() - start


def write_product(folder: Path, rows: dict[str, list], *, fk: bool = True, unique: bool = True, wal: bool = True) -> float:
    import polars as pl

    from job.store.record_rows import Outcomes, insert_statement
    from job.store.db import open_db

    db = open_db(folder / "audit.db")
    conn = db.conn
    if not unique:  # the same table without its UNIQUE (source, txn_id)
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'transactions'").fetchone()[0]
        indexes = [s for (s,) in conn.execute("SELECT sql FROM sqlite_master WHERE tbl_name = 'transactions' AND type IN ('index', 'trigger') AND sql IS NOT NULL")]
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("DROP TABLE transactions")
        conn.execute(re.sub(r",\s*UNIQUE \(source, txn_id\)", "", sql))
        for statement in indexes:
            conn.execute(statement)
    if not wal:
        conn.execute("PRAGMA journal_mode = DELETE")
    conn.execute(f"PRAGMA foreign_keys = {'ON' if fk else 'OFF'}")
    conn.execute("INSERT INTO runs (id, started_at, mode, reviewer) VALUES (1, 'now', 'flagged', 'bench')")
    conn.execute("INSERT INTO ledger_files (id, source, name, path, sha256, rows, new_rows, imported_at, run_id)"
                 " VALUES (1, 'ledger', 'l.csv', '/l.csv', 'x', 0, 0, 'now', 1)")
    count = len(rows["id"])
    part = pl.DataFrame({"date": [rows["date"][0], rows["date"][-1]], "currency": ["USD", "USD"], "line": [2, 3]})
    part = part.with_columns(pl.col("date").str.to_date())
    sql, names = insert_statement(part, source="ledger", file_id=1, run_id=1, first_id=1,
                                   outcomes=Outcomes("pending", None, iter(())))
    bound = {"txn_id": rows["id"], "date": rows["date"], "amount_minor": rows["amount_minor"], "vendor": rows["vendor"],
             "vendor_key": rows["vendor_key"], "memo": rows["memo"], "account": rows["account"]}
    values = zip(range(1, count + 1), *(bound[n] for n in names), [0] * count)
    start = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("PRAGMA ignore_check_constraints = ON")  # as a large run does for its constant statuses
    conn.executemany(sql, values)
    conn.execute("COMMIT")
    conn.close()
    return time.perf_counter() - start


VARIANTS = {
    "reference": lambda folder, rows: write_reference(folder, rows),
    "product": lambda folder, rows: write_product(folder, rows),
    "product -fk": lambda folder, rows: write_product(folder, rows, fk=False),
    "product -unique": lambda folder, rows: write_product(folder, rows, unique=False),
    "product -wal": lambda folder, rows: write_product(folder, rows, wal=False),
    "product -all": lambda folder, rows: write_product(folder, rows, fk=False, unique=False, wal=False),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ledger", type=Path, required=True)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--only", action="append", choices=list(VARIANTS), help="run only these variants (repeatable)")
    args = p.parse_args(argv)
    rows = load_rows(args.ledger)
    gc.disable()  # as a large run does while it inserts
    results = {}
    for name in args.only or list(VARIANTS):
        times = []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory(prefix="audit-floor-") as folder:
                times.append(VARIANTS[name](Path(folder), rows))
        results[name] = statistics.median(times)
        print(f"{name}: {', '.join(f'{t:.2f}' for t in times)} s", file=sys.stderr, flush=True)
    print(f"| write of {len(rows['id']):,} rows | median s | against the reference |")
    print("|---|---:|---:|")
    base = results.get("reference")
    for name, seconds in results.items():
        print(f"| {name} | {seconds:.2f} | {seconds / base:.1f}x |" if base else f"| {name} | {seconds:.2f} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
