"""The audit database: opening it, versioned migrations, and the single-writer lock.

SQLite in WAL mode with a busy timeout, opened as an `AuditDatabase`: the raw connection for
the pipeline's own SQL, and the whole sqlite-utils API on demand. The schema version lives in
`PRAGMA user_version`; every open runs the migrations it has not seen yet, so an old
database upgrades itself and a database from a newer version is refused. Decisions and the
agent transcript are append-only: triggers refuse UPDATE and DELETE on them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from job.errors import BusyError, DatabaseError
from job.store.auditlog import append_event
from job.store.clock import now_utc
from job.store.seal import seal_existing

__all__ = [
    "AuditDatabase",
    "open_db",
    "migrate",
    "transaction",
    "SCHEMA_VERSION",
    "hold_lock",
    "now_utc",
    "split_sql",
    "content_sha256",
]


def _retire_readable_tokens(conn: sqlite3.Connection) -> None:
    """Migration 11: reply tokens used to be part of our Message-IDs, which the audit log
    keeps; those tokens are retired, stored messages lose theirs, and every stored message
    is bound to the audit log (`job.store.legacy.retire_readable_tokens`)."""
    from job.store.legacy import retire_readable_tokens  # it writes the audit log, whose module imports this one

    retire_readable_tokens(conn)


MIGRATIONS: list[str | Callable[[sqlite3.Connection], None]] = [
    # 1: the whole loop
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        mode TEXT NOT NULL,
        reviewer TEXT NOT NULL,
        ledgers INTEGER NOT NULL DEFAULT 0,
        transactions INTEGER NOT NULL DEFAULT 0,
        new_transactions INTEGER NOT NULL DEFAULT 0,
        flagged INTEGER NOT NULL DEFAULT 0,
        auto_approved INTEGER NOT NULL DEFAULT 0,
        held INTEGER NOT NULL DEFAULT 0,
        request_id TEXT,
        review_summary TEXT NOT NULL DEFAULT '',
        model_calls INTEGER NOT NULL DEFAULT 0,
        prompt_tokens INTEGER NOT NULL DEFAULT 0,
        completion_tokens INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE ledger_files (
        id INTEGER PRIMARY KEY,
        source TEXT NOT NULL,
        name TEXT NOT NULL,
        path TEXT NOT NULL,
        sha256 TEXT NOT NULL UNIQUE,
        rows INTEGER NOT NULL,
        new_rows INTEGER NOT NULL,
        imported_at TEXT NOT NULL,
        run_id INTEGER NOT NULL REFERENCES runs(id)
    );
    CREATE TABLE transactions (
        id INTEGER PRIMARY KEY,
        source TEXT NOT NULL,
        txn_id TEXT NOT NULL,
        date TEXT NOT NULL,
        amount_minor INTEGER NOT NULL,
        currency TEXT NOT NULL,
        vendor TEXT NOT NULL,
        vendor_key TEXT NOT NULL,
        memo TEXT NOT NULL,
        account TEXT NOT NULL,
        ledger_file_id INTEGER NOT NULL REFERENCES ledger_files(id),
        line INTEGER NOT NULL,
        run_id INTEGER NOT NULL REFERENCES runs(id),
        flags TEXT NOT NULL DEFAULT '[]',
        agent_note TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL CHECK (status IN ('auto_approved','pending','approved','rejected','held')),
        request_id TEXT REFERENCES requests(id),
        item_no INTEGER,
        UNIQUE (source, txn_id)
    );
    CREATE INDEX transactions_request ON transactions(request_id, item_no);
    CREATE INDEX transactions_date ON transactions(date);
    CREATE TABLE vendors (
        vendor_key TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        first_run_id INTEGER
    );
    CREATE TABLE requests (
        id TEXT PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id),
        created_at TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('open','closed')),
        subject TEXT NOT NULL,
        items INTEGER NOT NULL,
        question TEXT NOT NULL,
        conversation_id TEXT NOT NULL,
        closed_at TEXT,
        summary TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE request_tokens (
        token_hash TEXT PRIMARY KEY,
        request_id TEXT NOT NULL REFERENCES requests(id),
        approver TEXT NOT NULL
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        direction TEXT NOT NULL CHECK (direction IN ('in','out')),
        kind TEXT NOT NULL,
        request_id TEXT,
        message_id TEXT NOT NULL,
        in_reply_to TEXT NOT NULL DEFAULT '',
        sender TEXT NOT NULL DEFAULT '',
        recipients TEXT NOT NULL DEFAULT '',
        subject TEXT NOT NULL DEFAULT '',
        raw BLOB NOT NULL,
        created_at TEXT NOT NULL,
        status TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        new_text TEXT NOT NULL DEFAULT '',
        attempts INTEGER NOT NULL DEFAULT 0,
        sent_at TEXT,
        next_attempt_at TEXT,
        UNIQUE (direction, message_id)
    );
    CREATE INDEX messages_status ON messages(direction, status);
    CREATE TABLE decisions (
        id INTEGER PRIMARY KEY,
        request_id TEXT NOT NULL REFERENCES requests(id),
        transaction_id INTEGER REFERENCES transactions(id),
        item_no INTEGER,
        decision TEXT NOT NULL CHECK (decision IN ('approved','rejected','held','signed_off')),
        reason TEXT NOT NULL DEFAULT '',
        approver TEXT NOT NULL,
        decided_at TEXT NOT NULL,
        message_id TEXT NOT NULL,
        UNIQUE (request_id, transaction_id)
    );
    CREATE TABLE conversation (
        seq INTEGER PRIMARY KEY,
        stream_id TEXT NOT NULL,
        type TEXT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX conversation_stream ON conversation(stream_id, seq);
    CREATE TABLE transcript (
        id INTEGER PRIMARY KEY,
        stream_id TEXT NOT NULL,
        at TEXT NOT NULL,
        type TEXT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE TABLE imap_state (
        folder TEXT PRIMARY KEY,
        uidvalidity INTEGER NOT NULL,
        last_uid INTEGER NOT NULL
    );
    CREATE TRIGGER decisions_no_update BEFORE UPDATE ON decisions
        BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;
    CREATE TRIGGER decisions_no_delete BEFORE DELETE ON decisions
        BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;
    CREATE TRIGGER transcript_no_update BEFORE UPDATE ON transcript
        BEGIN SELECT RAISE(ABORT, 'the transcript is append-only'); END;
    CREATE TRIGGER transcript_no_delete BEFORE DELETE ON transcript
        BEGIN SELECT RAISE(ABORT, 'the transcript is append-only'); END;
    """,
    # 2: the tamper-evident audit log
    """
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        request_id TEXT NOT NULL DEFAULT '',
        actor TEXT NOT NULL DEFAULT '',
        message_id TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        row_hash TEXT NOT NULL
    );
    CREATE INDEX events_request ON events(request_id);
    CREATE TRIGGER events_no_update BEFORE UPDATE ON events
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER events_no_delete BEFORE DELETE ON events
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    """,
    # 3: reminders, escalation and expiry; replies that keep failing
    """
    CREATE TABLE transactions_v3 (
        id INTEGER PRIMARY KEY,
        source TEXT NOT NULL,
        txn_id TEXT NOT NULL,
        date TEXT NOT NULL,
        amount_minor INTEGER NOT NULL,
        currency TEXT NOT NULL,
        vendor TEXT NOT NULL,
        vendor_key TEXT NOT NULL,
        memo TEXT NOT NULL,
        account TEXT NOT NULL,
        ledger_file_id INTEGER NOT NULL REFERENCES ledger_files(id),
        line INTEGER NOT NULL,
        run_id INTEGER NOT NULL REFERENCES runs(id),
        flags TEXT NOT NULL DEFAULT '[]',
        agent_note TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL CHECK (status IN ('auto_approved','pending','approved','rejected','held','expired')),
        request_id TEXT REFERENCES requests(id),
        item_no INTEGER,
        UNIQUE (source, txn_id)
    );
    INSERT INTO transactions_v3 SELECT * FROM transactions;
    DROP TABLE transactions;
    ALTER TABLE transactions_v3 RENAME TO transactions;
    CREATE INDEX transactions_request ON transactions(request_id, item_no);
    CREATE INDEX transactions_date ON transactions(date);
    CREATE TABLE decisions_v3 (
        id INTEGER PRIMARY KEY,
        request_id TEXT NOT NULL REFERENCES requests(id),
        transaction_id INTEGER REFERENCES transactions(id),
        item_no INTEGER,
        decision TEXT NOT NULL CHECK (decision IN ('approved','rejected','held','signed_off','expired')),
        reason TEXT NOT NULL DEFAULT '',
        approver TEXT NOT NULL,
        decided_at TEXT NOT NULL,
        message_id TEXT NOT NULL,
        UNIQUE (request_id, transaction_id)
    );
    INSERT INTO decisions_v3 SELECT * FROM decisions;
    DROP TABLE decisions;
    ALTER TABLE decisions_v3 RENAME TO decisions;
    CREATE TRIGGER decisions_no_update BEFORE UPDATE ON decisions
        BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;
    CREATE TRIGGER decisions_no_delete BEFORE DELETE ON decisions
        BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;
    ALTER TABLE requests ADD COLUMN reminded_at TEXT;
    ALTER TABLE requests ADD COLUMN escalated_at TEXT;
    ALTER TABLE requests ADD COLUMN expired_at TEXT;
    CREATE TABLE inbound_failures (
        key TEXT PRIMARY KEY,
        attempts INTEGER NOT NULL,
        last_error TEXT NOT NULL,
        first_at TEXT NOT NULL,
        last_at TEXT NOT NULL,
        moved_to TEXT
    );
    """,
    # 4: look up decisions by transaction (every reply reads its request's items)
    """
    CREATE INDEX decisions_transaction ON decisions(transaction_id);
    """,
    # 5: each run's payments per day as compact digests for the history rules (job/history.py),
    # and the request index only over the rows that belong to a request. Early large-ledger
    # databases have this as their version 3 (see `migrate`), hence IF NOT EXISTS.
    """
    CREATE TABLE IF NOT EXISTS payment_digests (
        run_id INTEGER NOT NULL REFERENCES runs(id),
        date TEXT NOT NULL,
        currency TEXT NOT NULL,
        part INTEGER NOT NULL,
        payments INTEGER NOT NULL,
        vendor_hashes BLOB NOT NULL,
        amounts BLOB NOT NULL,
        transaction_ids BLOB NOT NULL,
        PRIMARY KEY (date, currency, run_id, part)
    );
    CREATE TABLE IF NOT EXISTS digest_state (
        legacy_max_transaction_id INTEGER NOT NULL
    );
    INSERT INTO digest_state (legacy_max_transaction_id)
        SELECT last FROM (SELECT COALESCE(MAX(id), 0) AS last FROM transactions) WHERE NOT EXISTS (SELECT 1 FROM digest_state);
    CREATE TRIGGER IF NOT EXISTS payment_digests_no_update BEFORE UPDATE ON payment_digests
        BEGIN SELECT RAISE(ABORT, 'payment digests are append-only'); END;
    CREATE TRIGGER IF NOT EXISTS payment_digests_no_delete BEFORE DELETE ON payment_digests
        BEGIN SELECT RAISE(ABORT, 'payment digests are append-only'); END;
    DROP INDEX transactions_request;
    CREATE INDEX transactions_request ON transactions(request_id, item_no) WHERE request_id IS NOT NULL;
    """,
    # 6: a zone map instead of the per-row date index. Each ledger file's new rows have
    # consecutive ids; the file keeps their id range and date range, so a date range is
    # found as a few id ranges (reports, the history rules' pre-digest rows). Keeping a date
    # index up to date cost more than a second per million rows recorded.
    """
    ALTER TABLE ledger_files ADD COLUMN first_transaction_id INTEGER;
    ALTER TABLE ledger_files ADD COLUMN last_transaction_id INTEGER;
    ALTER TABLE ledger_files ADD COLUMN first_date TEXT;
    ALTER TABLE ledger_files ADD COLUMN last_date TEXT;
    UPDATE ledger_files SET first_transaction_id = z.first_id, last_transaction_id = z.last_id, first_date = z.first_day,
        last_date = z.last_day
    FROM (SELECT ledger_file_id, MIN(id) AS first_id, MAX(id) AS last_id, MIN(date) AS first_day, MAX(date) AS last_day
          FROM transactions GROUP BY ledger_file_id) AS z
    WHERE z.ledger_file_id = ledger_files.id;
    DROP INDEX transactions_date;
    CREATE INDEX ledger_files_dates ON ledger_files(last_date, first_date);
    """,
    # 7: a reply's lookups by request and by approver read an index, not every message and
    # reply address ever recorded
    """
    CREATE INDEX messages_request ON messages(request_id, direction);
    CREATE INDEX request_tokens_request ON request_tokens(request_id);
    CREATE INDEX request_tokens_approver ON request_tokens(approver);
    """,
    # 8: a request's pending items, counted and listed for every confirmation, read from
    # an index of the pending rows alone, not by visiting each of the request's rows
    """
    CREATE INDEX transactions_pending ON transactions(request_id, item_no) WHERE status = 'pending';
    """,
    # 9: an incoming message is a repeat only when its Message-ID and its content both match an
    # earlier one (anyone can send first with the Message-ID an approver's reply will carry), so
    # each incoming row keeps the hash of its content as `message.content_id` reads it (trace
    # headers left out), computed here for the rows already recorded; outgoing Message-IDs stay
    # unique. Refusal answers are looked up per recipient and request, for their rate limit.
    """
    CREATE TABLE messages_v9 (
        id INTEGER PRIMARY KEY,
        direction TEXT NOT NULL CHECK (direction IN ('in','out')),
        kind TEXT NOT NULL,
        request_id TEXT,
        message_id TEXT NOT NULL,
        in_reply_to TEXT NOT NULL DEFAULT '',
        sender TEXT NOT NULL DEFAULT '',
        recipients TEXT NOT NULL DEFAULT '',
        subject TEXT NOT NULL DEFAULT '',
        raw BLOB NOT NULL,
        created_at TEXT NOT NULL,
        status TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        new_text TEXT NOT NULL DEFAULT '',
        attempts INTEGER NOT NULL DEFAULT 0,
        sent_at TEXT,
        next_attempt_at TEXT,
        content_sha256 TEXT,
        CHECK ((direction = 'in') = (content_sha256 IS NOT NULL))
    );
    INSERT INTO messages_v9 SELECT *, CASE WHEN direction = 'in' THEN audit_content_sha256(raw) END FROM messages;
    DROP TABLE messages;
    ALTER TABLE messages_v9 RENAME TO messages;
    CREATE INDEX messages_status ON messages(direction, status);
    CREATE INDEX messages_request ON messages(request_id, direction);
    CREATE UNIQUE INDEX messages_in ON messages(message_id, content_sha256) WHERE direction = 'in';
    CREATE UNIQUE INDEX messages_out ON messages(message_id) WHERE direction = 'out';
    CREATE INDEX messages_refusals ON messages(recipients, request_id, created_at) WHERE direction = 'out' AND kind = 'refusal';
    """,
    # 10: hold is a pause, not an end: a held item may later be approved, rejected or expire,
    # so an item may have more than one decision, never the same one twice. Its status is its
    # last decision's (`auditlog.check_statuses`).
    """
    CREATE TABLE decisions_v10 (
        id INTEGER PRIMARY KEY,
        request_id TEXT NOT NULL REFERENCES requests(id),
        transaction_id INTEGER REFERENCES transactions(id),
        item_no INTEGER,
        decision TEXT NOT NULL CHECK (decision IN ('approved','rejected','held','signed_off','expired')),
        reason TEXT NOT NULL DEFAULT '',
        approver TEXT NOT NULL,
        decided_at TEXT NOT NULL,
        message_id TEXT NOT NULL,
        UNIQUE (request_id, transaction_id, decision)
    );
    INSERT INTO decisions_v10 SELECT * FROM decisions;
    DROP TABLE decisions;
    ALTER TABLE decisions_v10 RENAME TO decisions;
    CREATE TRIGGER decisions_no_update BEFORE UPDATE ON decisions
        BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;
    CREATE TRIGGER decisions_no_delete BEFORE DELETE ON decisions
        BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;
    CREATE INDEX decisions_transaction ON decisions(transaction_id);
    """,
    # 11: no secret at rest (`retire_readable_tokens`)
    _retire_readable_tokens,
    # 12: amendments are kept: a known id that comes back with other facts is the next version
    # of its transaction (`screening.amendments`); every version stays, with its own status.
    """
    CREATE TABLE transactions_v11 (
        id INTEGER PRIMARY KEY,
        source TEXT NOT NULL,
        txn_id TEXT NOT NULL,
        version INTEGER NOT NULL DEFAULT 1 CHECK (version >= 1),
        date TEXT NOT NULL,
        amount_minor INTEGER NOT NULL,
        currency TEXT NOT NULL,
        vendor TEXT NOT NULL,
        vendor_key TEXT NOT NULL,
        memo TEXT NOT NULL,
        account TEXT NOT NULL,
        ledger_file_id INTEGER NOT NULL REFERENCES ledger_files(id),
        line INTEGER NOT NULL,
        run_id INTEGER NOT NULL REFERENCES runs(id),
        flags TEXT NOT NULL DEFAULT '[]',
        agent_note TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL CHECK (status IN ('auto_approved','pending','approved','rejected','held','expired')),
        request_id TEXT REFERENCES requests(id),
        item_no INTEGER,
        UNIQUE (source, txn_id, version)
    );
    INSERT INTO transactions_v11 (id, source, txn_id, version, date, amount_minor, currency, vendor, vendor_key, memo, account,
        ledger_file_id, line, run_id, flags, agent_note, status, request_id, item_no)
    SELECT id, source, txn_id, 1, date, amount_minor, currency, vendor, vendor_key, memo, account,
        ledger_file_id, line, run_id, flags, agent_note, status, request_id, item_no FROM transactions;
    DROP TABLE transactions;
    ALTER TABLE transactions_v11 RENAME TO transactions;
    CREATE INDEX transactions_request ON transactions(request_id, item_no) WHERE request_id IS NOT NULL;
    CREATE INDEX transactions_pending ON transactions(request_id, item_no) WHERE status = 'pending';
    """,
    # 13: seals (job/store/seal.py): each run's rows hashed in blocks inside its transaction, the
    # blocks' hashes and their lines' checksums kept here (with the last id a block of ids covers),
    # the chain of them in the run's `sealed` event; each run's policy fingerprint; a run's
    # files, request, vendors and digests found by run. Triggers refuse what no part of the product does:
    # deleting recorded rows, changing a transaction's facts, a status changed other than by a
    # decision (pending or held to approved, rejected, held or expired), a finished run edited.
    # What the database holds already is sealed as it stands (`seal_existing`, after this script).
    """
    ALTER TABLE runs ADD COLUMN policy_sha256 TEXT;
    CREATE TABLE seal_blocks (
        part TEXT NOT NULL,
        owner INTEGER NOT NULL,
        block INTEGER NOT NULL,
        rows INTEGER NOT NULL,
        last_key INTEGER,
        sha256 TEXT NOT NULL,
        row_sums BLOB NOT NULL,
        PRIMARY KEY (part, owner, block)
    );
    CREATE INDEX ledger_files_run ON ledger_files(run_id);
    CREATE INDEX requests_run ON requests(run_id);
    CREATE INDEX vendors_run ON vendors(first_run_id);
    CREATE INDEX payment_digests_run ON payment_digests(run_id);
    CREATE TRIGGER seal_blocks_no_update BEFORE UPDATE ON seal_blocks
        BEGIN SELECT RAISE(ABORT, 'seals are append-only'); END;
    CREATE TRIGGER seal_blocks_no_delete BEFORE DELETE ON seal_blocks
        BEGIN SELECT RAISE(ABORT, 'seals are append-only'); END;
    CREATE TRIGGER transactions_no_delete BEFORE DELETE ON transactions
        BEGIN SELECT RAISE(ABORT, 'recorded transactions are never deleted'); END;
    CREATE TRIGGER transactions_facts_fixed BEFORE UPDATE OF id, source, txn_id, date, amount_minor, currency, vendor,
        vendor_key, memo, account, ledger_file_id, line, run_id, flags, agent_note, request_id, item_no, version ON transactions
        BEGIN SELECT RAISE(ABORT, 'a recorded transaction''s facts never change; only a decision changes its status'); END;
    CREATE TRIGGER transactions_status_by_decision BEFORE UPDATE OF status ON transactions
        WHEN OLD.status NOT IN ('pending', 'held') OR NEW.status NOT IN ('approved', 'rejected', 'held', 'expired')
        BEGIN SELECT RAISE(ABORT, 'a status changes only by a decision on a pending or held item'); END;
    CREATE TRIGGER runs_no_delete BEFORE DELETE ON runs
        BEGIN SELECT RAISE(ABORT, 'runs are never deleted'); END;
    CREATE TRIGGER runs_finished BEFORE UPDATE ON runs WHEN OLD.finished_at IS NOT NULL
        BEGIN SELECT RAISE(ABORT, 'a finished run is never changed'); END;
    CREATE TRIGGER ledger_files_no_update BEFORE UPDATE ON ledger_files
        BEGIN SELECT RAISE(ABORT, 'ledger files are append-only'); END;
    CREATE TRIGGER ledger_files_no_delete BEFORE DELETE ON ledger_files
        BEGIN SELECT RAISE(ABORT, 'ledger files are append-only'); END;
    CREATE TRIGGER vendors_no_update BEFORE UPDATE ON vendors
        BEGIN SELECT RAISE(ABORT, 'vendors are append-only'); END;
    CREATE TRIGGER vendors_no_delete BEFORE DELETE ON vendors
        BEGIN SELECT RAISE(ABORT, 'vendors are append-only'); END;
    CREATE TRIGGER requests_no_delete BEFORE DELETE ON requests
        BEGIN SELECT RAISE(ABORT, 'requests are never deleted'); END;
    CREATE TRIGGER request_tokens_no_update BEFORE UPDATE ON request_tokens
        BEGIN SELECT RAISE(ABORT, 'reply tokens are append-only'); END;
    CREATE TRIGGER request_tokens_no_delete BEFORE DELETE ON request_tokens
        BEGIN SELECT RAISE(ABORT, 'reply tokens are append-only'); END;
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)

BUSY_TIMEOUT_MS = 10_000


class AuditDatabase:
    """A connection to the audit database; anything else sqlite-utils offers, on first use.

    Importing sqlite-utils costs about a quarter of a second (it pulls in numpy), more than a
    small nightly run spends on its work, and the pipeline only needs the connection. So
    `.conn` and `.execute` are plain sqlite3, and any other attribute or `db["table"]` is
    answered by a `sqlite_utils.Database` on the same connection, created when first asked.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._utils: Any = None

    def execute(self, sql: str, parameters: Any = None) -> sqlite3.Cursor:
        return self.conn.execute(sql, parameters) if parameters is not None else self.conn.execute(sql)

    def _database(self) -> Any:
        if self._utils is None:
            import sqlite_utils

            self._utils = sqlite_utils.Database(self.conn)
        return self._utils

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._database(), name)

    def __getitem__(self, table: str) -> Any:
        return self._database()[table]


def open_db(path: str | os.PathLike, *, create: bool = True) -> AuditDatabase:
    """Open (and if needed create and upgrade) the audit database."""
    path = Path(path)
    if not create and not path.exists():
        raise DatabaseError(f"{path}: no audit database here (run 'audit run' first)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA secure_delete = ON")  # what a row held before it was changed is zeroed, not left in free space
        db = AuditDatabase(conn)
        migrate(db, where=str(path))  # with foreign keys off: a migration may rebuild a table
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(f"{path}: {exc}") from exc
    return db


def migrate(db: AuditDatabase, *, where: str = "database", target: int = SCHEMA_VERSION) -> int:
    """Apply the migrations this database has not seen, up to `target` (by default all of
    them); return the resulting version."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise DatabaseError(
            f"{where}: schema version {version} is newer than this program understands ({SCHEMA_VERSION}); upgrade the program"
        )
    if version == 3 and _early_digests_layout(db.conn):
        version = 2  # its 3 is today's 5, which finds what it made and keeps it
    db.conn.create_function("audit_content_sha256", 1, content_sha256, deterministic=True)  # used by migration 9
    for number in range(version, min(target, SCHEMA_VERSION)):
        step = MIGRATIONS[number]
        with transaction(db):
            if callable(step):  # a migration that needs more than SQL
                step(db.conn)
            else:
                for statement in split_sql(step):
                    db.conn.execute(statement)
            if number + 1 == SEALS_MIGRATION:
                _seal_existing(db.conn)
            db.conn.execute(f"PRAGMA user_version = {number + 1}")
    return max(version, min(target, SCHEMA_VERSION))


SEALS_MIGRATION = 13


def _seal_existing(conn: sqlite3.Connection) -> None:
    """Migration 11's second half: seal what the database already holds, as it stands, in a
    `sealed` event that says it was made at the upgrade (`audit verify` says so too)."""
    seal = seal_existing(conn, SEALS_MIGRATION)
    if seal is not None:
        append_event(conn, "sealed", actor="upgrade", detail=seal)


def content_sha256(raw: bytes) -> str:
    """The hash of a message's content as `message.content_id` computes it: the headers servers
    add in transit (Received, DKIM-Signature, ...) left out, so two deliveries of one message
    have the same hash."""
    from job.mail.message import content_id  # only when a message is read: it imports the templates' engine

    match = CONTENT_ID.fullmatch(content_id(raw.encode() if isinstance(raw, str) else bytes(raw)))
    assert match is not None, "content_id names the content by its hash"
    return match.group(1)


CONTENT_ID = re.compile(r"<sha256\.([0-9a-f]{64})@no-message-id>")


def _early_digests_layout(conn: sqlite3.Connection) -> bool:
    """A version-3 database from before reminders were numbered 3: it has the payment
    digests (today's migration 5) and not the reminder columns (today's 3)."""
    tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    columns = {row[1] for row in conn.execute("PRAGMA table_info(requests)")}
    return "payment_digests" in tables and "reminded_at" not in columns


def split_sql(script: str) -> list[str]:
    """Split a script into complete statements (trigger bodies keep their inner semicolons)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements


@contextlib.contextmanager
def transaction(db: AuditDatabase) -> Iterator[sqlite3.Connection]:
    """One write transaction: BEGIN IMMEDIATE, then COMMIT, or ROLLBACK on any error."""
    conn = db.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:  # an interrupted statement may have rolled it back already
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextlib.contextmanager
def hold_lock(db_path: str | os.PathLike, name: str, *, wait: float = 0.0) -> Iterator[None]:
    """Hold an exclusive lock named for one job (`run` or `poll`) on this database.

    A second `run` while one is running waits up to `wait` seconds, then fails with
    BusyError. The lock is a kernel file lock, so it disappears with a killed process.
    """
    lock_path = Path(f"{db_path}.{name}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise BusyError(f"another 'audit {name}' is running on {db_path} (lock {lock_path}); try again later") from None
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)
