"""Rules across nights: duplicates and structuring against what earlier runs recorded."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from helpers import audit, report_json, write_config
from decimal import Decimal

from job.config import DuplicateRule, Policy, StructuringRule
from job.ledger.ingest import Transaction
from job.ledger.ingest_fast import transactions_frame
from job.screening.history import find_candidates, find_history, history_needs, make_digests, read_digests, write_digests
from job.screening.screen_frame import Compact
from job.store.db import MIGRATIONS, open_db, split_sql, transaction

HEADER = "id,date,amount,currency,vendor,memo,account\n"


def night(folder: Path, name: str, rows: list[str]) -> str:
    path = folder / name
    path.write_text(HEADER + "".join(r + "\n" for r in rows), encoding="utf-8")
    return str(path)


def compact(*rows: tuple[str, str, str, int]) -> Compact:
    """The compact rows (`screen_frame.Compact`) of (date, currency, vendor, amount) payments."""
    found = Compact()
    found.add(transactions_frame([Transaction(f"T{n}", d, a, c, v, "", "", n + 2) for n, (d, c, v, a) in enumerate(rows)]), 0)
    found.finish()
    return found


def site(tmp_path: Path) -> Path:
    write_config(tmp_path / "audit.toml", {"db": "audit.db"},
                 policy={"known_vendors": ["Acme Office Supply", "Initech Software", "Globex Travel"]})
    return tmp_path


def flags_by_id(folder: Path) -> dict[str, list[str]]:
    return {r["transaction_id"]: r["flags"] for r in report_json(folder)}


def reasons(folder: Path, txn_id: str) -> list[str]:
    import json

    row = sqlite3.connect(folder / "audit.db").execute("SELECT flags FROM transactions WHERE txn_id = ?", (txn_id,)).fetchone()
    return [f["reason"] for f in json.loads(row[0])]


def test_duplicates_and_structuring_across_nights(tmp_path: Path) -> None:
    folder = site(tmp_path)
    first = night(folder, "n1.csv", [
        "A-1,2026-11-20,123.45,USD,Acme Office Supply,Toner,6100",
        "A-2,2026-11-18,9500.00,USD,Initech Software,Seats,6500",
        "A-3,2026-11-20,9600.00,USD,Initech Software,Seats,6500",
        "A-4,2026-11-20,77.00,USD,Globex Travel,Taxi,6300",
    ])
    result = audit("run", "--ledger", first, cwd=folder)
    assert result.returncode == 0, result.stderr
    assert flags_by_id(folder) == {"A-1": [], "A-2": [], "A-3": [], "A-4": []}

    second = night(folder, "n2.csv", [
        "B-1,2026-11-23,123.45,USD,ACME office supply,Toner again,6100",  # 3 days after A-1
        "B-2,2026-11-24,9700.00,USD,Initech Software,More seats,6500",  # 18th to 24th: 7 calendar days
        "B-3,2026-11-24,77.00,USD,Globex Travel,Taxi,6300",  # 4 days after A-4: not a duplicate
        "B-4,2026-11-24,123.46,USD,Acme Office Supply,Toner,6100",
    ])
    result = audit("run", "--ledger", second, cwd=folder)
    assert result.returncode == 0, result.stderr
    flags = flags_by_id(folder)
    assert flags["B-1"] == ["duplicate_payment"]
    assert reasons(folder, "B-1") == ["same vendor and amount as A-1 on 2026-11-20, recorded by an earlier run"]
    assert flags["B-2"] == ["structuring"]
    assert flags["B-3"] == [] and flags["B-4"] == []
    assert all(flags[i] == [] for i in ("A-1", "A-2", "A-3", "A-4"))  # earlier runs are never re-flagged


def test_the_same_file_again_or_an_overlapping_export_is_not_a_duplicate_of_itself(tmp_path: Path) -> None:
    folder = site(tmp_path)
    first = night(folder, "n1.csv", ["A-1,2026-11-20,123.45,USD,Acme Office Supply,Toner,6100"])
    overlap = night(folder, "n2.csv", ["A-1,2026-11-20,123.45,USD,Acme Office Supply,Toner,6100",
                                        "A-2,2026-11-21,50.00,USD,Acme Office Supply,Pens,6100"])
    for ledger in (first, first, overlap):
        assert audit("run", "--ledger", ledger, cwd=folder).returncode == 0
    assert flags_by_id(folder) == {"A-1": [], "A-2": []}


def test_history_rules_switched_off_look_at_nothing(tmp_path: Path) -> None:
    folder = tmp_path
    write_config(folder / "audit.toml", {"db": "audit.db"}, policy={"known_vendors": ["Acme Office Supply"]},
                 policy__duplicates={"enabled": False})
    audit("run", "--ledger", night(folder, "n1.csv", ["A-1,2026-11-20,123.45,USD,Acme Office Supply,Toner,6100"]), cwd=folder)
    audit("run", "--ledger", night(folder, "n2.csv", ["B-1,2026-11-20,123.45,USD,Acme Office Supply,Toner,6100"]), cwd=folder)
    assert flags_by_id(folder) == {"A-1": [], "B-1": []}


def test_digests_are_read_only_for_the_window(tmp_path: Path) -> None:
    db = open_db(tmp_path / "audit.db")
    with transaction(db) as conn:
        conn.execute("INSERT INTO runs (id, started_at, mode, reviewer) VALUES (1, 'now', 'flagged', 'r')")
        write_digests(conn, 1, make_digests(compact(  # transactions 1 to 5
            ("2026-11-01", "USD", "acme", 100),
            ("2026-11-20", "USD", "acme", 100),
            ("2026-11-20", "USD", "acme", 50),
            ("2026-11-20", "EUR", "acme", 100),
            ("2026-11-20", "USD", "initech", 100),
        ), 1))
    digests = list(read_digests(db.conn, "2026-11-17", "2026-11-23"))
    assert [(d.day, d.currency, len(d.amounts)) for d in digests] == [("2026-11-20", "EUR", 1), ("2026-11-20", "USD", 3)]
    # tonight: acme 100 USD again (duplicates: 11-17 to 11-23), and initech 95 USD, in the
    # structuring band of 0.90 to 1.00 (11-14 to 11-26)
    policy = Policy(amount_threshold=Decimal("1.00"), duplicates=DuplicateRule(window_days=3), structuring=StructuringRule(window_days=7))
    needs = history_needs(compact(("2026-11-20", "USD", "acme", 101), ("2026-11-20", "USD", "acme", 100),
                                  ("2026-11-20", "USD", "initech", 95)), policy)
    assert (needs.duplicate_days, needs.band_days) == (("2026-11-17", "2026-11-23"), ("2026-11-14", "2026-11-26"))
    assert find_candidates(digests, needs) == {2, 5}


def test_a_database_from_before_the_digests_is_read_from_its_transactions(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for number, script in enumerate(MIGRATIONS[:2], 1):  # the schema as version 2 left it
        for statement in split_sql(script):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {number}")
    conn.execute("INSERT INTO runs (id, started_at, mode, reviewer) VALUES (1, 'then', 'flagged', 'r')")
    conn.execute("INSERT INTO ledger_files VALUES (1, 'ledger', 'old.csv', '/old.csv', 'x', 1, 1, 'then', 1)")
    conn.execute(
        "INSERT INTO transactions (source, txn_id, date, amount_minor, currency, vendor, vendor_key, memo, account, ledger_file_id,"
        " line, run_id, status) VALUES ('ledger', 'OLD-1', '2026-11-20', 12345, 'USD', 'Acme Office Supply', 'acme office supply',"
        " 'Toner', '', 1, 2, 1, 'auto_approved')"
    )
    conn.close()
    folder = site(tmp_path)
    result = audit("run", "--ledger", night(folder, "n.csv", ["N-1,2026-11-21,123.45,USD,Acme Office Supply,Toner,6100"]), cwd=folder)
    assert result.returncode == 0, result.stderr
    assert reasons(folder, "N-1") == ["same vendor and amount as OLD-1 on 2026-11-20, recorded by an earlier run"]
    db = open_db(path)
    tonight = compact(("2026-11-20", "USD", "acme office supply", 12345))
    policy = Policy(duplicates=DuplicateRule(window_days=3), structuring=StructuringRule(enabled=False))
    assert [p.txn_id for p in find_history(db.conn, policy, tonight)] == ["OLD-1", "N-1"]
