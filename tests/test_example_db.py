"""audit.db.example stays what the migrations create, and shows the example's decisions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from job.db import SCHEMA_VERSION, open_db

ROOT = Path(__file__).resolve().parent.parent


def schema(conn: sqlite3.Connection) -> list[tuple]:
    rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name")
    return [(t, n, tb, " ".join((sql or "").split())) for t, n, tb, sql in rows]


def test_example_database_schema_matches_the_migrations(tmp_path: Path) -> None:
    fresh = open_db(tmp_path / "fresh.db")
    example = sqlite3.connect(f"file:{ROOT / 'audit.db.example'}?mode=ro", uri=True)
    assert example.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert schema(example) == schema(fresh.conn)


def test_example_database_holds_the_example_reply(tmp_path: Path) -> None:
    example = sqlite3.connect(f"file:{ROOT / 'audit.db.example'}?mode=ro", uri=True)
    decisions = example.execute(
        "SELECT t.txn_id, d.decision, d.reason, d.approver FROM decisions d JOIN transactions t ON t.id = d.transaction_id ORDER BY t.txn_id"
    ).fetchall()
    assert decisions == [
        ("TX-1002", "approved", "", "controller@example.com"),
        ("TX-1003", "approved", "", "controller@example.com"),
        ("TX-1007", "rejected", "no purchase order on file", "controller@example.com"),
        ("TX-1008", "approved", "", "controller@example.com"),
    ]
    assert example.execute("SELECT COUNT(*) FROM transactions WHERE status = 'auto_approved'").fetchone()[0] == 6


def test_an_older_database_upgrades_in_place_keeping_its_records(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    old.write_bytes((ROOT / "tests" / "fixtures" / "audit-v2.db").read_bytes())
    assert sqlite3.connect(old).execute("PRAGMA user_version").fetchone()[0] == 2
    db = open_db(old)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert schema(db.conn) == schema(open_db(tmp_path / "fresh.db").conn)
    assert db.execute("SELECT COUNT(*) FROM transactions").fetchone()[0] == 10
    assert db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == 4
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    from job.auditlog import verify_log

    assert verify_log(db.conn).ok


def test_an_early_large_ledger_database_upgrades_in_place(tmp_path: Path) -> None:
    """Databases made while the payment digests were migration 3 (before reminders took that
    number) are at version 3 with the digests and without the reminder columns."""
    from job.db import MIGRATIONS, split_sql

    path = tmp_path / "early.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for script in (MIGRATIONS[0], MIGRATIONS[1], MIGRATIONS[4]):  # 1, 2, and the digests as they were numbered 3
        for statement in split_sql(script):
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 3")
    conn.execute("INSERT INTO runs (id, started_at, mode, reviewer) VALUES (1, 'then', 'flagged', 'r')")
    conn.execute("INSERT INTO ledger_files VALUES (1, 'ledger', 'old.csv', '/old.csv', 'x', 1, 1, 'then', 1)")
    conn.execute(
        "INSERT INTO transactions (source, txn_id, date, amount_minor, currency, vendor, vendor_key, memo, account, ledger_file_id,"
        " line, run_id, status) VALUES ('ledger', 'OLD-1', '2026-11-20', 12345, 'USD', 'Acme', 'acme', 'Toner', '', 1, 2, 1, 'auto_approved')"
    )
    conn.execute("INSERT INTO payment_digests VALUES (1, '2026-11-20', 'USD', 0, 1, x'00', x'00', x'00')")
    legacy = conn.execute("SELECT legacy_max_transaction_id FROM digest_state").fetchall()
    conn.close()

    db = open_db(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert schema(db.conn) == schema(open_db(tmp_path / "fresh.db").conn)
    assert db.execute("SELECT txn_id, first_transaction_id, first_date FROM transactions JOIN ledger_files"
                      " ON ledger_files.id = transactions.ledger_file_id").fetchall() == [("OLD-1", 1, "2026-11-20")]
    assert db.execute("SELECT COUNT(*) FROM payment_digests").fetchone()[0] == 1
    assert db.execute("SELECT legacy_max_transaction_id FROM digest_state").fetchall() == legacy == [(0,)]
    assert "reminded_at" in {row[1] for row in db.execute("PRAGMA table_info(requests)")}
