"""audit.db.example stays what the migrations create, and shows the example's decisions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from job.store.db import SCHEMA_VERSION, open_db

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
    from job.store.auditlog import verify_log

    assert verify_log(db.conn).ok


def test_an_early_large_ledger_database_upgrades_in_place(tmp_path: Path) -> None:
    """Databases made while the payment digests were migration 3 (before reminders took that
    number) are at version 3 with the digests and without the reminder columns."""
    from job.store.db import MIGRATIONS, split_sql

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


def test_an_upgraded_database_knows_the_content_of_the_replies_it_recorded(tmp_path: Path) -> None:
    """Migration 9 hashes the content of the incoming messages already recorded, as the poller
    does (trace headers left out): a later copy of one is still a repeat, while another message
    with the same Message-ID can be recorded beside it."""
    from job.mail.message import content_id
    from job.store.db import AuditDatabase, migrate

    old = tmp_path / "old.db"
    old.write_bytes((ROOT / "tests" / "fixtures" / "audit-v2.db").read_bytes())
    # as migration 9 left it (migration 11 then replaces the stored copies' reply tokens)
    at_nine = sqlite3.connect(old, isolation_level=None)
    assert migrate(AuditDatabase(at_nine), target=10) == 10
    rows = at_nine.execute("SELECT direction, message_id, raw, content_sha256 FROM messages ORDER BY id").fetchall()
    at_nine.close()
    assert [direction for direction, *_ in rows] == ["out", "out", "in"]
    assert all(content is None for direction, _, _, content in rows if direction == "out")
    [(_, message_id, raw, content)] = [row for row in rows if row[0] == "in"]
    assert content_id(raw) == f"<sha256.{content}@no-message-id>"
    assert content_id(b"Received: from mx2.example.test; Tue, 1 Dec 2026 00:00:00 +0000\r\n" + raw) == content_id(raw)

    db = open_db(old)  # the content hash stays the one of the message as received
    assert db.execute("SELECT content_sha256 FROM messages WHERE direction = 'in'").fetchall() == [(content,)]

    insert = ("INSERT INTO messages (direction, kind, message_id, raw, created_at, status, content_sha256)"
              " VALUES ('in', 'reply', ?, ?, 'now', 'refused', ?)")
    with pytest.raises(sqlite3.IntegrityError):
        db.execute(insert, (message_id, raw, content))
    db.execute(insert, (message_id, b"Subject: another message\r\n\r\nreused Message-ID\r\n", "0" * 64))
    with pytest.raises(sqlite3.IntegrityError):  # every incoming row has its content hash, no outgoing row has one
        db.execute(insert, (message_id, b"x", None))
    out = "INSERT INTO messages (direction, kind, message_id, raw, created_at, status) VALUES ('out', 'refusal', ?, x'00', 'now', 'queued')"
    db.execute(out, ("<a@example.test>",))
    with pytest.raises(sqlite3.IntegrityError):  # our own Message-IDs stay unique
        db.execute(out, ("<a@example.test>",))
