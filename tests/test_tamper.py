"""The tamper suite: edits made outside the product to any fact, status or decision are caught.

One module-wide site is built through the real command line and the maildir transport:

- run 1 (approval mode "flagged") on the example ledger: a request of 4 items, answered over
  three replies (approve, reject with a reason, hold then approve), reminded once in between
  (the reminder issues new reply tokens), closed, summarised by the agent;
- run 2 (approval mode "never"): its flagged rows held at the run, with no request;
- run 3 (approval mode "flagged"): a request left open, its items pending.

Each case copies that database (SQLite's backup), drops every trigger on the copy (as anyone
with write access to the file could), makes one UPDATE, DELETE or INSERT, and runs `audit
verify` on it: exit 10, one line on stderr, naming the table and the row. A last group
rewrites the whole chain consistently, which only heads kept outside the database catch.
"""

from __future__ import annotations

import hashlib
import json
from array import array
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers import (
    EXAMPLE_LEDGER,
    ROOT,
    age_request,
    audit,
    build_reply,
    drop_reply,
    maildir_messages,
    plain_body,
    write_config,
    write_site,
)

CONTROLLER = "controller@example.com"
WITNESS = "witness@example.org"

NIGHT_2 = """id,date,amount,currency,vendor,memo,account
TX-2001,2026-11-25,"15,000.00",USD,Northwind Logistics,Freight for order 5600,5200
TX-2002,2026-11-25,120.00,USD,Acme Office Supply,Pens,6100
TX-2003,2026-11-25,"2,000.00",USD,Fabrikam Partners,Misc,6900
"""
NIGHT_3 = """id,date,amount,currency,vendor,memo,account
TX-3001,2026-11-26,"25,000.00",EUR,Northwind Logistics,Freight for order 5700,5200
TX-3002,2026-11-26,75.00,EUR,Acme Office Supply,Staples,6100
"""


def run(site: Path, ledger: Path, *config: str) -> None:
    result = audit("run", "--ledger", str(ledger), *config, cwd=site)
    assert result.returncode == 0, result.stderr


def reply(site: Path, request, text: str) -> None:
    drop_reply(site / "var" / "mail", build_reply(request, text, sender=CONTROLLER))
    result = audit("poll", "--once", cwd=site)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    site = write_site(tmp_path_factory.mktemp("tamper") / "site", [CONTROLLER], reminders={"remind_after": "1h"})
    (site / "night-2.csv").write_text(NIGHT_2, encoding="utf-8")
    (site / "night-3.csv").write_text(NIGHT_3, encoding="utf-8")
    write_config(site / "never.toml", {"db": "audit.db"}, policy={"known_vendors_file": "vendors.csv", "approval_mode": "never"},
                 approvers={"addresses": [CONTROLLER]})

    run(site, EXAMPLE_LEDGER)
    [request] = maildir_messages(site / "var" / "mail" / "outbox")
    reply(site, request, "approve 1\nreject 2: no purchase order on file\nhold 3")
    (request_id,) = sqlite3.connect(site / "audit.db").execute("SELECT id FROM requests").fetchone()
    age_request(site, request_id, 61)
    result = audit("poll", "--once", cwd=site)  # the reminder, with a new reply token
    assert result.returncode == 0 and "reminder sent" in result.stdout, result.stdout + result.stderr
    reply(site, request, "approve 3\napprove 4")
    run(site, site / "night-2.csv", "--config", str(site / "never.toml"))
    run(site, site / "night-3.csv")

    with sqlite3.connect(site / "audit.db") as db:
        statuses = dict(db.execute("SELECT txn_id, status FROM transactions"))
        kinds = {k for (k,) in db.execute("SELECT kind FROM events")}
    assert {statuses[t] for t in ("TX-1008", "TX-1003", "TX-1007")} == {"approved"} and statuses["TX-1002"] == "rejected"
    assert statuses["TX-2001"] == "held" and statuses["TX-3001"] == "pending" and statuses["TX-1001"] == "auto_approved"
    assert {"sealed", "reminded", "request_closed", "summary", "decision"} <= kinds
    result = audit("verify", cwd=site)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert re.fullmatch(r"audit log verified: \d+ event\(s\), head [0-9a-f]{64}", result.stdout.strip())
    return site


def tampered_copy(site: Path, name: str) -> Path:
    """A copy of the site's database with every trigger dropped."""
    target = site / f"{name}.db"
    target.unlink(missing_ok=True)
    with sqlite3.connect(site / "audit.db") as source, sqlite3.connect(target) as copy:
        source.backup(copy)
    with sqlite3.connect(target) as copy:
        for (trigger,) in copy.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            copy.execute(f'DROP TRIGGER "{trigger}"')
    return target


def pk(db: sqlite3.Connection, txn_id: str) -> int:
    return db.execute("SELECT id FROM transactions WHERE txn_id = ?", (txn_id,)).fetchone()[0]


def chain_hash(prev: str, row: tuple) -> str:
    """The chain's hash of an event row, as the README documents it (what a forger computes)."""
    row_id, at, kind, request_id, actor, message_id, detail = row
    content = {"id": row_id, "at": at, "kind": kind, "request_id": request_id, "actor": actor, "message_id": message_id,
               "detail": json.loads(detail)}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev + "\n" + text).encode("utf-8")).hexdigest()


def append_forged_event(db: sqlite3.Connection, kind: str, request_id: str, actor: str, message_id: str, detail: dict) -> int:
    """Append an event whose hash is right: the chain alone cannot tell it from a real one."""
    last, prev = db.execute("SELECT id, row_hash FROM events ORDER BY id DESC LIMIT 1").fetchone()
    row = (last + 1, "2026-11-27T00:00:00Z", kind, request_id, actor, message_id,
           json.dumps(detail, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
    db.execute("INSERT INTO events (id, at, kind, request_id, actor, message_id, detail, prev_hash, row_hash) VALUES (?,?,?,?,?,?,?,?,?)",
               (*row, prev, chain_hash(prev, row)))
    return last + 1


# ------------------------------------------------------------------------------------------
# One edit each: (what, SQL or a function of the connection, what the message must say)
# ------------------------------------------------------------------------------------------


def forge_decision(db: sqlite3.Connection) -> str:
    """The issue's forged decision: a decisions row, a correctly hashed event, the status to match."""
    request_id, item, txn_id, row = db.execute(
        "SELECT request_id, item_no, txn_id, id FROM transactions WHERE txn_id = 'TX-3001'").fetchone()
    values = {"request_id": request_id, "transaction_id": row, "item_no": item, "decision": "approved", "reason": "",
              "approver": CONTROLLER, "decided_at": "2026-11-27T00:00:00Z", "message_id": "<forged@evil.test>"}
    decision_id = db.execute(
        "INSERT INTO decisions (request_id, transaction_id, item_no, decision, reason, approver, decided_at, message_id)"
        " VALUES (:request_id, :transaction_id, :item_no, :decision, :reason, :approver, :decided_at, :message_id)", values).lastrowid
    append_forged_event(db, "decision", request_id, CONTROLLER, "<forged@evil.test>",
                        {**values, "decision_id": decision_id, "txn_id": txn_id, "from": "pending"})
    db.execute("UPDATE transactions SET status = 'approved' WHERE id = ?", (row,))
    return rf"decisions row {decision_id}: the audit log has no record of the reply <forged@evil.test>"


def insert_transaction(db: sqlite3.Connection) -> str:
    db.execute(
        "INSERT INTO transactions (source, txn_id, date, amount_minor, currency, vendor, vendor_key, memo, account, ledger_file_id,"
        " line, run_id, status) VALUES ('ledger', 'TX-9999', '2026-11-24', 4200000, 'USD', 'Mallory Ltd', 'mallory ltd', 'Consulting',"
        " '6400', 1, 12, 1, 'auto_approved')")
    return r"transactions row \d+ \(TX-9999\): in no run's seal \(inserted outside a run, as run 1\)"


def swap_item_numbers(db: sqlite3.Connection) -> str:
    a, b = pk(db, "TX-1008"), pk(db, "TX-1002")
    db.execute("UPDATE transactions SET item_no = CASE id WHEN ? THEN 2 ELSE 1 END WHERE id IN (?, ?)", (a, a, b))
    first = min(a, b)
    return rf"transactions row {first} \(TX-10\d\d\): its values differ from what run 1 recorded"


def forged_request(db: sqlite3.Connection) -> str:
    db.execute("INSERT INTO requests (id, run_id, created_at, status, subject, items, question, conversation_id)"
               " VALUES ('f0f0', 1, '2026-11-24T00:00:00Z', 'open', 'Forged', 1, 'q', 'c')")
    return r"requests row f0f0: in no run's seal"


def alter_digest_amounts(db: sqlite3.Connection) -> str:
    db.execute("UPDATE payment_digests SET amounts = zeroblob(length(amounts)) WHERE run_id = 1")
    return r"payment_digests row 2026-11-24 USD part 0 \(run 1\): differs from what run 1 recorded"


def vendor_key(db: sqlite3.Connection) -> str:
    db.execute("UPDATE transactions SET vendor = 'Someone Else', vendor_key = 'someone else' WHERE txn_id = 'TX-1008'")
    return r"transactions row \d+ \(TX-1008\): vendor_key differs from what run 1 recorded"


CASES: list[tuple[str, str | Callable[[sqlite3.Connection], str], str]] = [
    # transactions: the imported facts of an approved item
    ("amount of an approved item", "UPDATE transactions SET amount_minor = 99 WHERE txn_id = 'TX-1008'",
     r"transactions row \d+ \(TX-1008\): amount_minor differs from what run 1 recorded"),
    ("vendor of an approved item", vendor_key, ""),
    ("vendor name only", "UPDATE transactions SET vendor = 'NORTHWIND LOGISTICS' WHERE txn_id = 'TX-1007'",
     r"transactions row \d+ \(TX-1007\): its values differ from what run 1 recorded"),
    ("date", "UPDATE transactions SET date = '2026-11-23' WHERE txn_id = 'TX-1005'",
     r"transactions row \d+ \(TX-1005\): date differs from what run 1 recorded"),
    ("currency", "UPDATE transactions SET currency = 'JPY' WHERE txn_id = 'TX-1005'",
     r"transactions row \d+ \(TX-1005\): currency differs from what run 1 recorded"),
    ("memo", "UPDATE transactions SET memo = 'Printer paper' WHERE txn_id = 'TX-1001'",
     r"transactions row \d+ \(TX-1001\): its values differ from what run 1 recorded"),
    ("account", "UPDATE transactions SET account = '9999' WHERE txn_id = 'TX-2002'",
     r"transactions row \d+ \(TX-2002\): its values differ from what run 2 recorded"),
    ("transaction id", "UPDATE transactions SET txn_id = 'TX-1004B' WHERE txn_id = 'TX-1004'",
     r"transactions row \d+ \(TX-1004B\): its values differ from what run 1 recorded"),
    ("source", "UPDATE transactions SET source = 'other' WHERE txn_id = 'TX-1010'",
     r"transactions row \d+ \(TX-1010\): source differs from what run 1 recorded"),
    ("ledger line", "UPDATE transactions SET line = 40 WHERE txn_id = 'TX-1009'", r"transactions row \d+ \(TX-1009\): its values differ"),
    ("ledger file", "UPDATE transactions SET ledger_file_id = 2 WHERE txn_id = 'TX-1009'",
     r"transactions row \d+ \(TX-1009\): ledger_file_id differs from what run 1 recorded"),
    ("run", "UPDATE transactions SET run_id = 2 WHERE txn_id = 'TX-1009'", r"transactions row \d+ \(TX-1009\): run_id differs from what run 1"),
    # transactions: what screening and the review decided
    ("reasons of a flagged item", "UPDATE transactions SET flags = '[{\"code\": \"vague_memo\", \"reason\": \"memo is vague\", \"by\": \"rules\"}]'"
     " WHERE txn_id = 'TX-1002'",
     r"transactions row \d+ \(TX-1002\): its values differ from what run 1 recorded"),
    ("reviewer's note", "UPDATE transactions SET agent_note = '' WHERE txn_id = 'TX-3001'",
     r"transactions row \d+ \(TX-3001\): its values differ from what run 3 recorded"),
    ("pending item made auto-approved, flags emptied", "UPDATE transactions SET status = 'auto_approved', flags = '[]' WHERE txn_id = 'TX-3001'",
     r"transactions row \d+ \(TX-3001\): auto-approved although it is item 1 of request \w+"),
    ("item taken out of its request", "UPDATE transactions SET request_id = NULL, item_no = NULL WHERE txn_id = 'TX-3001'",
     r"transactions row \d+ \(TX-3001\): status pending, but no decision or open request accounts for it"),
    ("item numbers swapped", swap_item_numbers, ""),
    # transactions: statuses, which only decisions change
    ("a rejection turned into an approval", "UPDATE transactions SET status = 'approved' WHERE txn_id = 'TX-1002'",
     r"transactions row \d+ \(TX-1002\): status approved, but the decision recorded is rejected"),
    ("an item held at the run approved", "UPDATE transactions SET status = 'approved' WHERE txn_id = 'TX-2001'",
     r"transactions row \d+ \(TX-2001\): status approved, but no decision or open request accounts for it"),
    ("an item held at the run made auto-approved", "UPDATE transactions SET status = 'auto_approved', flags = '[]' WHERE txn_id = 'TX-2001'",
     r"transactions row \d+ \(TX-2001\): its values differ from what run 2 recorded"),
    ("an auto-approved row rejected", "UPDATE transactions SET status = 'rejected' WHERE txn_id = 'TX-1001'",
     r"transactions row \d+ \(TX-1001\): status rejected, but no decision or open request accounts for it"),
    ("an auto-approved row put on hold", "UPDATE transactions SET status = 'held' WHERE txn_id = 'TX-2002'",
     r"transactions row \d+ \(TX-2002\): status differs from what run 2 recorded \(it was auto_approved\)"),
    # transactions: rows removed or added
    ("an approved transaction deleted", "DELETE FROM transactions WHERE txn_id = 'TX-1008'",
     r"transactions row \d+ is missing, but run 1 recorded it"),
    ("a transaction inserted", insert_transaction, ""),
    # decisions and the chain
    ("a decision forged with a correctly hashed event", forge_decision, ""),
    ("a decision's reason", "UPDATE decisions SET reason = 'approved by phone' WHERE decision = 'rejected'",
     r"decisions row \d+: does not match the decision recorded in the audit log"),
    # runs, with their policy fingerprint
    ("a run's policy fingerprint", "UPDATE runs SET policy_sha256 = 'x' || substr(policy_sha256, 2) WHERE id = 1",
     r"runs row 1: policy_sha256 differs from what run 1 recorded"),
    ("a run's mode", "UPDATE runs SET mode = 'flagged' WHERE id = 2", r"runs row 2: mode differs from what run 2 recorded"),
    ("a run's flagged count", "UPDATE runs SET flagged = 0, auto_approved = 10 WHERE id = 1",
     r"runs row 1: auto_approved differs from what run 1 recorded"),
    ("a run deleted", "DELETE FROM runs WHERE id = 2", r"runs row 2 is missing, but run 2 recorded it"),
    ("a run inserted", "INSERT INTO runs (started_at, mode, reviewer) VALUES ('2026-11-27T00:00:00Z', 'never', 'nobody')",
     r"runs row 4: in no run's seal"),
    # ledger files: the bytes each row came from
    ("a ledger file's sha256", "UPDATE ledger_files SET sha256 = '0' || substr(sha256, 2) WHERE id = 1",
     r"ledger_files row 1 \(ledger-2026-11-24.csv\): sha256 differs from what run 1 recorded"),
    ("a ledger file's path", "UPDATE ledger_files SET path = '/elsewhere.csv' WHERE id = 2",
     r"ledger_files row 2 \(night-2.csv\): path differs from what run 2 recorded"),
    ("a ledger file inserted", "INSERT INTO ledger_files (source, name, path, sha256, rows, new_rows, imported_at, run_id)"
     " VALUES ('ledger', 'x.csv', '/x.csv', 'ab', 1, 1, 'now', 3)", r"ledger_files row 4 \(x.csv\): in no run's seal"),
    # requests
    ("a closed request reopened", "UPDATE requests SET status = 'open', closed_at = NULL WHERE run_id = 1",
     r"requests row \w+: closed_at differs from what run 1 recorded and the audit log says since"),
    ("a request's summary", "UPDATE requests SET summary = 'All fine.' WHERE run_id = 1", r"requests row \w+: summary differs"),
    ("a request's number of items", "UPDATE requests SET items = 7 WHERE run_id = 3", r"requests row \w+: items differs from what run 3"),
    ("a request's question", "UPDATE requests SET question = 'Approve?' WHERE run_id = 3", r"requests row \w+: question differs"),
    ("a request's reminder time", "UPDATE requests SET reminded_at = NULL WHERE run_id = 1", r"requests row \w+: reminded_at differs"),
    ("a request inserted", forged_request, ""),
    # reply tokens: who may decide
    ("a reply token added", "INSERT INTO request_tokens (token_hash, request_id, approver)"
     " SELECT '" + "ab" * 32 + "', id, 'mallory@evil.test' FROM requests WHERE run_id = 3",
     r"request_tokens row abababababababab\.\.\. \(request \w+, mallory@evil.test\): a reply token the audit log does not record"),
    ("a reply token given to another", "UPDATE request_tokens SET approver = 'mallory@evil.test'"
     " WHERE request_id = (SELECT id FROM requests WHERE run_id = 3)", r"request_tokens row [0-9a-f]{16}\.\.\. \(request \w+, mallory@evil.test\)"),
    ("a reminder's reply token deleted", "DELETE FROM request_tokens WHERE rowid = (SELECT max(rowid) FROM request_tokens"
     " WHERE request_id = (SELECT id FROM requests WHERE run_id = 1))", r"request_tokens row [0-9a-f]{16}\.\.\. \(request \w+, controller@example.com\) is missing"),
    # vendors: who counts as known
    ("a vendor made known", "INSERT INTO vendors (vendor_key, name, first_run_id) VALUES ('mallory ltd', 'Mallory Ltd', 3)",
     r"vendors row 'mallory ltd': not among what run 3 recorded \(added since\)"),
    ("a vendor renamed", "UPDATE vendors SET name = 'Acme' WHERE vendor_key = 'acme office supply'",
     r"vendors row 'acme office supply': differs from what run 1 recorded"),
    ("a vendor deleted", "DELETE FROM vendors WHERE vendor_key = 'fabrikam partners'",
     r"vendors row 'fabrikam partners' is missing, but run 2 recorded it"),
    # payment digests: what the history rules compare with
    ("a digest's amounts", alter_digest_amounts, ""),
    ("a digest deleted", "DELETE FROM payment_digests WHERE run_id = 3",
     r"payment_digests row 2026-11-26 EUR \(run 3\) is missing, but run 3 recorded it"),
    # the agent's transcript and the seals themselves
    ("a transcript entry", "UPDATE transcript SET body = replace(body, 'a', 'e') WHERE id = 1",
     r"transcript row 1: differs from what event \d+ \(sealed\) sealed"),
    ("a transcript entry deleted", "DELETE FROM transcript WHERE id = 2", r"transcript row 2 is missing, but event \d+ \(sealed\) sealed it"),
    ("a seal block's hash", "UPDATE seal_blocks SET sha256 = '0' || substr(sha256, 2) WHERE part = 'transactions' AND owner = 2",
     r"seal_blocks row \(transactions, 2, block 0\): altered"),
    ("the digests' legacy boundary", "UPDATE digest_state SET legacy_max_transaction_id = 1000",
     r"digest_state row 1: legacy_max_transaction_id differs from what run 3 recorded"),
]


@pytest.mark.parametrize("what, edit, expected", CASES, ids=[c[0] for c in CASES])
def test_an_edit_outside_the_product_fails_verify_naming_the_table_and_row(site: Path, what: str, edit, expected: str) -> None:
    copy = tampered_copy(site, re.sub(r"\W+", "-", what))
    with sqlite3.connect(copy) as db:
        if callable(edit):
            expected = edit(db)
        else:
            table = re.search(r"(?:UPDATE|DELETE FROM|INSERT INTO) (\w+)", edit).group(1)
            before = db.execute(f"SELECT * FROM {table}").fetchall()
            db.execute(edit)
            assert db.execute(f"SELECT * FROM {table}").fetchall() != before, f"the edit changed nothing: {edit}"
    result = audit("verify", "--db", str(copy), cwd=site)
    assert result.returncode == 10, result.stdout + result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.startswith("audit: error: ") and result.stderr.count("\n") == 1, result.stderr  # one line
    assert re.search(r"audit log does not verify: \w+ row", result.stderr), result.stderr  # the table and the row
    assert re.search(expected, result.stderr), result.stderr


def test_there_are_enough_distinct_edits_across_the_tables() -> None:
    tables = {re.search(r"(UPDATE|DELETE FROM|INSERT INTO) (\w+)", e).group(2) for _, e, _ in CASES if isinstance(e, str)}
    assert len(CASES) >= 25 and len({c[0] for c in CASES}) == len(CASES)
    assert {"transactions", "runs", "ledger_files", "requests", "request_tokens", "vendors", "payment_digests", "transcript",
            "decisions", "seal_blocks", "digest_state"} <= tables


def test_the_triggers_refuse_what_no_part_of_the_product_does(site: Path) -> None:
    refused = [
        "UPDATE transactions SET amount_minor = 99 WHERE txn_id = 'TX-1008'",
        "UPDATE transactions SET flags = '[]' WHERE txn_id = 'TX-3001'",
        "UPDATE transactions SET status = 'auto_approved' WHERE txn_id = 'TX-3001'",
        "UPDATE transactions SET status = 'pending' WHERE txn_id = 'TX-1008'",
        "DELETE FROM transactions WHERE txn_id = 'TX-1001'",
        "UPDATE runs SET flagged = 0 WHERE id = 1",
        "DELETE FROM runs WHERE id = 3",
        "UPDATE ledger_files SET sha256 = 'x'",
        "DELETE FROM vendors",
        "UPDATE request_tokens SET approver = 'mallory@evil.test'",
        "DELETE FROM requests",
        "UPDATE seal_blocks SET sha256 = 'x'",
        "DELETE FROM payment_digests",
    ]
    copy = site / "triggers.db"
    with sqlite3.connect(site / "audit.db") as source, sqlite3.connect(copy) as db:
        source.backup(db)
    with sqlite3.connect(copy) as db:
        for statement in refused:
            with pytest.raises(sqlite3.DatabaseError):
                db.execute(statement)
    assert audit("verify", "--db", str(copy), cwd=site).returncode == 0


# ------------------------------------------------------------------------------------------
# A chain rewritten consistently: only the heads kept outside the database catch it
# ------------------------------------------------------------------------------------------


def test_a_fact_changed_and_resealed_with_the_chain_rehashed_is_caught_only_by_a_witness(tmp_path: Path) -> None:
    from job.store.seal import seal_run

    site = write_site(tmp_path / "site", [CONTROLLER], audit={"witness_addresses": [WITNESS]})
    run(site, EXAMPLE_LEDGER)
    outbox = site / "var" / "mail" / "outbox"
    [notice] = [m for m in maildir_messages(outbox) if m["To"] == WITNESS]
    [(head, position)] = re.findall(r"audit log head ([0-9a-f]{64}) at event (\d+)", plain_body(notice))

    copy = tampered_copy(site, "rewritten")
    with sqlite3.connect(copy, isolation_level=None) as db:  # the forger: a bigger amount, everywhere, sealed again, re-hashed
        db.execute("BEGIN")
        row = pk(db, "TX-1002")
        db.execute("UPDATE transactions SET amount_minor = 1240000000 WHERE id = ?", (row,))
        ids, amounts = (array("q", blob) for blob in db.execute("SELECT transaction_ids, amounts FROM payment_digests").fetchone())
        amounts[list(ids).index(row)] = 1240000000
        db.execute("UPDATE payment_digests SET amounts = ?", (amounts.tobytes(),))
        db.execute("DELETE FROM seal_blocks")
        sealed_id = db.execute("SELECT id FROM events WHERE kind = 'sealed'").fetchone()[0]
        detail = json.dumps(seal_run(db, 1), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        db.execute("UPDATE events SET detail = ? WHERE id = ?", (detail, sealed_id))
        prev = db.execute("SELECT row_hash FROM events WHERE id = ?", (sealed_id - 1,)).fetchone()[0]
        for row in db.execute("SELECT id, at, kind, request_id, actor, message_id, detail FROM events WHERE id >= ? ORDER BY id",
                              (sealed_id,)).fetchall():
            new = chain_hash(prev, row)
            db.execute("UPDATE events SET prev_hash = ?, row_hash = ? WHERE id = ?", (prev, new, row[0]))
            prev = new
        db.execute("COMMIT")

    alone = audit("verify", "--db", str(copy), cwd=site)
    assert alone.returncode == 0, alone.stderr  # the database agrees with itself
    caught = audit("verify", "--db", str(copy), "--witness", str(outbox), cwd=site)
    assert caught.returncode == 10, caught.stdout
    assert caught.stderr.count("\n") == 1
    assert f"the audit log head {head} published in" in caught.stderr
    assert f"as event {position} is not in the chain: the log was rewritten after it was published" in caught.stderr
    assert audit("verify", "--witness", str(outbox), cwd=site).returncode == 0  # the original holds it there


def test_a_witnessed_head_must_be_at_its_recorded_position(site: Path, tmp_path: Path) -> None:
    """A head found elsewhere in the chain than where it was published does not vouch for it."""
    with sqlite3.connect(site / "audit.db") as db:
        (first,), (second,) = db.execute("SELECT row_hash FROM events WHERE id IN (1, 2) ORDER BY id").fetchall()
    good, moved = tmp_path / "good.manifest.json", tmp_path / "moved.manifest.json"
    good.write_text(json.dumps({"audit_log_head": second, "audit_log_head_event": 2}))
    moved.write_text(json.dumps({"audit_log_head": first, "audit_log_head_event": 2}))
    assert audit("verify", "--witness", str(good), cwd=site).returncode == 0
    result = audit("verify", "--witness", str(moved), cwd=site)
    assert result.returncode == 10 and f"the audit log head {first} published in {moved} as event 2 is not in the chain" in result.stderr


# ------------------------------------------------------------------------------------------
# A database from before seals: sealed at the upgrade, and said so
# ------------------------------------------------------------------------------------------


def test_runs_from_before_seals_are_sealed_at_the_upgrade_and_verify_says_so(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    old.write_bytes((ROOT / "tests" / "fixtures" / "audit-v2.db").read_bytes())
    result = audit("verify", "--db", str(old), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    first, note = result.stdout.strip().splitlines()
    assert first.startswith("audit log verified: ")
    assert re.fullmatch(
        r"note: run 1 recorded before seals existed: sealed as they stood when the database was upgraded \(event \d+, [0-9TZ:-]+\);"
        r" a change made to them before then cannot be detected", note), note
    with sqlite3.connect(old) as db:
        (detail,) = db.execute("SELECT detail FROM events WHERE kind = 'sealed'").fetchone()
        assert json.loads(detail)["at_migration"] == 13
        for (trigger,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            db.execute(f'DROP TRIGGER "{trigger}"')
        db.execute("UPDATE transactions SET amount_minor = amount_minor + 1 WHERE id = 3")
    caught = audit("verify", "--db", str(old), cwd=tmp_path)
    assert caught.returncode == 10
    assert re.search(r"transactions row 3 \(TX-\d+\): its values differ from what the upgrade's seal \(event \d+\) recorded", caught.stderr)
