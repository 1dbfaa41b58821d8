"""`audit verify` and the tamper-evident audit log.

One full loop (run, two replies, two polls, over the maildir transport) builds a database
with runs, requests, messages, decisions, a closed request and its summary. The checks that
only read it share it; every tampering happens on a copy. The append-only triggers are
dropped on those copies first (as anyone with write access to the file could), because with
the triggers in place UPDATE and DELETE are refused outright, which is checked too.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers import EXAMPLES, EXAMPLE_LEDGER, audit, build_reply, drop_reply, html_body, maildir_messages, plain_body, write_config

APPROVER = "controller@example.com"
HEAD = re.compile(r"audit log head ([0-9a-f]{64})")
VERIFIED = re.compile(r"audit log verified: (\d+) event\(s\), head ([0-9a-f]{64})")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("verify")
    shutil.copy(EXAMPLES / "vendors.csv", site / "vendors.csv")
    write_config(site / "audit.toml", {"db": "audit.db"}, policy={"known_vendors_file": "vendors.csv"})
    result = audit("run", "--ledger", str(EXAMPLE_LEDGER), cwd=site)
    assert result.returncode == 0, result.stderr
    [request] = maildir_messages(site / "var" / "mail" / "outbox")
    # item 3 is held, then rejected: an item with two decisions, its status the last one's
    for name, text in (("r1", "approve 1\nreject 2: no PO on file"), ("r2", "hold 3\napprove 4"), ("r3", "reject 3: no SOW")):
        drop_reply(site / "var" / "mail", build_reply(request, text, sender=APPROVER), name)
        result = audit("poll", "--once", cwd=site)
        assert result.returncode == 0, result.stderr
    with sqlite3.connect(site / "audit.db") as db:
        assert db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == 5
        assert db.execute("SELECT status FROM requests").fetchone()[0] == "closed"
    return site


def events(db_path: Path) -> list[tuple]:
    with sqlite3.connect(db_path) as db:
        return db.execute("SELECT id, kind, row_hash FROM events ORDER BY id").fetchall()


def verify(site: Path, db_path: Path | None = None):
    args = ("verify",) if db_path is None else ("verify", "--db", str(db_path))
    return audit(*args, cwd=site)


def copy_db(site: Path, name: str, *, drop_triggers: bool = True) -> Path:
    """A consistent copy of the audit database (through SQLite's backup, WAL included)."""
    target = site / f"{name}.db"
    target.unlink(missing_ok=True)
    with sqlite3.connect(site / "audit.db") as source, sqlite3.connect(target) as copy:
        source.backup(copy)
    if drop_triggers:
        with sqlite3.connect(target) as copy:
            triggers = [n for (n,) in copy.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")]
            assert {"events_no_update", "decisions_no_update"} <= set(triggers)  # the append-only triggers exist
            for name_ in triggers:
                copy.execute(f'DROP TRIGGER "{name_}"')
    return target


def first_event(db_path: Path, kind: str) -> int:
    with sqlite3.connect(db_path) as db:
        return db.execute("SELECT MIN(id) FROM events WHERE kind = ?", (kind,)).fetchone()[0]


def row_hash(prev: str, row: tuple) -> str:
    """The chain's hash of one row, recomputed the way a forger would (the documented scheme)."""
    row_id, at, kind, request_id, actor, message_id, detail = row
    content = {"id": row_id, "at": at, "kind": kind, "request_id": request_id, "actor": actor,
               "message_id": message_id, "detail": json.loads(detail)}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev + "\n" + canonical).encode("utf-8")).hexdigest()


def rehash_from(db: sqlite3.Connection, start: int) -> None:
    """Recompute prev_hash and row_hash of every row from `start` on, so the chain holds again."""
    prev = db.execute("SELECT row_hash FROM events WHERE id = ?", (start - 1,)).fetchone()[0]
    rows = db.execute("SELECT id, at, kind, request_id, actor, message_id, detail FROM events WHERE id >= ? ORDER BY id",
                      (start,)).fetchall()
    for row in rows:
        new = row_hash(prev, row)
        db.execute("UPDATE events SET prev_hash = ?, row_hash = ? WHERE id = ?", (prev, new, row[0]))
        prev = new


# ------------------------------------------------------------------------------------------
# An untouched log
# ------------------------------------------------------------------------------------------


def test_verify_passes_and_prints_the_head(site: Path) -> None:
    result = verify(site)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    match = VERIFIED.fullmatch(result.stdout.strip())
    assert match, result.stdout
    rows = events(site / "audit.db")
    assert int(match.group(1)) == len(rows)
    assert match.group(2) == rows[-1][2]
    kinds = {kind for _, kind, _ in rows}
    assert {"run", "request", "message", "decision", "request_closed", "mail_sent"} <= kinds


def test_confirmations_report_and_status_carry_the_head(site: Path) -> None:
    rows = events(site / "audit.db")
    position = {h: i for i, (_, _, h) in enumerate(rows)}
    confirmations = [m for m in maildir_messages(site / "var" / "mail" / "outbox") if str(m["Subject"]).startswith("Recorded: ")]
    assert len(confirmations) == 3
    heads = []
    for confirmation in confirmations:
        [head] = HEAD.findall(plain_body(confirmation))
        assert HEAD.findall(html_body(confirmation)) == [head]
        assert head in position  # the head of the log when it was written: a row of the chain
        heads.append(position[head])
    assert heads[0] < heads[1] < heads[2] <= len(rows) - 1  # later confirmations carry later heads

    # the last confirmation was composed after its decisions were logged: its head covers them
    with sqlite3.connect(site / "audit.db") as db:
        last_decision = db.execute("SELECT MAX(id) FROM events WHERE kind = 'decision'").fetchone()[0]
    assert rows[heads[2]][0] >= last_decision

    head = VERIFIED.fullmatch(verify(site).stdout.strip()).group(2)
    result = audit("report", "--format", "json", "--out", str(site / "report.json"), cwd=site)
    assert result.returncode == 0, result.stderr
    assert head in result.stderr
    manifest = json.loads((site / "report.json.manifest.json").read_text())
    assert manifest["audit_log_head"] == head
    status = audit("status", cwd=site)
    assert f"audit log head: {head}" in status.stdout
    assert VERIFIED.fullmatch(verify(site).stdout.strip()).group(2) == head  # reading appended nothing


# ------------------------------------------------------------------------------------------
# The triggers
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("statement", [
    "UPDATE events SET detail = '{}' WHERE id = 2",
    "UPDATE events SET id = 999 WHERE id = 2",
    "DELETE FROM events WHERE id = 2",
    "DELETE FROM events",
    "UPDATE decisions SET reason = 'approved by phone' WHERE id = 1",
    "UPDATE decisions SET decision = 'approved' WHERE id = 2",
    "DELETE FROM decisions WHERE id = 1",
])
def test_triggers_refuse_update_and_delete(site: Path, statement: str) -> None:
    copy = copy_db(site, "triggers", drop_triggers=False)
    with sqlite3.connect(copy) as db:
        before = db.execute("SELECT COUNT(*), SUM(LENGTH(detail)) FROM events").fetchone(), db.execute(
            "SELECT * FROM decisions ORDER BY id").fetchall()
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute(statement)
        after = db.execute("SELECT COUNT(*), SUM(LENGTH(detail)) FROM events").fetchone(), db.execute(
            "SELECT * FROM decisions ORDER BY id").fetchall()
    assert after == before
    assert verify(site, copy).returncode == 0


# ------------------------------------------------------------------------------------------
# Tampering, on copies with the triggers dropped
# ------------------------------------------------------------------------------------------


def edit_event_detail(db: sqlite3.Connection, k: int) -> str:
    db.execute("UPDATE events SET detail = replace(detail, '\"approved\"', '\"rejected\"') WHERE id = ?", (k,))
    assert db.total_changes == 1
    return rf"events row {k}: content does not match its hash"


def edit_and_rehash_one_row(db: sqlite3.Connection, k: int) -> str:
    edit_event_detail(db, k)
    row = db.execute("SELECT id, at, kind, request_id, actor, message_id, detail FROM events WHERE id = ?", (k,)).fetchone()
    prev = db.execute("SELECT prev_hash FROM events WHERE id = ?", (k,)).fetchone()[0]
    db.execute("UPDATE events SET row_hash = ? WHERE id = ?", (row_hash(prev, row), k))
    return rf"events row {k + 1}: does not follow row {k}"


def invalid_json_detail(db: sqlite3.Connection, k: int) -> str:
    db.execute("UPDATE events SET detail = '{\"decision\": ' WHERE id = ?", (k,))
    return rf"events row {k}: detail is not valid JSON"


def delete_middle_event(db: sqlite3.Connection, k: int) -> str:
    db.execute("DELETE FROM events WHERE id = ?", (k,))
    return rf"events row {k} is missing \(next row is {k + 1}\)"


def swap_two_events(db: sqlite3.Connection, k: int) -> str:
    top = db.execute("SELECT MAX(id) FROM events").fetchone()[0] + 1000
    db.execute("UPDATE events SET id = ? WHERE id = ?", (top, k))
    db.execute("UPDATE events SET id = ? WHERE id = ?", (k, k + 1))
    db.execute("UPDATE events SET id = ? WHERE id = ?", (k + 1, top))
    return rf"events row {k}: "


def change_event_kind(db: sqlite3.Connection, k: int) -> str:
    db.execute("UPDATE events SET kind = 'note' WHERE id = ?", (k,))
    return rf"events row {k}: content does not match its hash"


def edit_decision_reason(db: sqlite3.Connection, k: int) -> str:
    d = db.execute("SELECT id FROM decisions WHERE reason != '' ORDER BY id").fetchone()[0]
    db.execute("UPDATE decisions SET reason = 'approved by phone' WHERE id = ?", (d,))
    return rf"decisions row {d}: does not match the decision recorded in the audit log"


def edit_decision_verdict(db: sqlite3.Connection, k: int) -> str:
    d = db.execute("SELECT id FROM decisions WHERE decision = 'rejected'").fetchone()[0]
    db.execute("UPDATE decisions SET decision = 'approved', reason = '' WHERE id = ?", (d,))
    return rf"decisions row {d}: does not match"


def delete_decision(db: sqlite3.Connection, k: int) -> str:
    d = db.execute("SELECT id FROM decisions ORDER BY id LIMIT 1 OFFSET 1").fetchone()[0]
    db.execute("DELETE FROM decisions WHERE id = ?", (d,))
    return rf"decisions row {d} is missing"


def insert_forged_decision(db: sqlite3.Connection, k: int) -> str:
    # INSERT is allowed by the triggers; the chain has no event for this row
    request_id, = db.execute("SELECT id FROM requests").fetchone()
    pk, = db.execute("SELECT id FROM transactions WHERE status = 'auto_approved' ORDER BY id").fetchone()
    d = db.execute(
        "INSERT INTO decisions (request_id, transaction_id, item_no, decision, reason, approver, decided_at, message_id)"
        " VALUES (?, ?, NULL, 'rejected', 'forged', 'mallory@evil.test', '2026-11-25T00:00:00Z', '<forged@evil.test>')",
        (request_id, pk)).lastrowid
    return rf"decisions row {d}: does not match"


TAMPERING: list[tuple[str, Callable[[sqlite3.Connection, int], str], bool]] = [
    ("edit one event's detail", edit_event_detail, True),
    ("edit one event and recompute its own hash", edit_and_rehash_one_row, True),
    ("event detail that is not JSON", invalid_json_detail, True),
    ("change one event's kind", change_event_kind, True),
    ("delete a middle event", delete_middle_event, True),
    ("reorder two events", swap_two_events, True),
    ("edit a decision's reason", edit_decision_reason, True),
    ("turn a rejection into an approval", edit_decision_verdict, True),
    ("delete a decision", delete_decision, True),
    ("insert a forged decision (triggers in place)", insert_forged_decision, False),
]


@pytest.mark.parametrize("name, tamper, drop", TAMPERING, ids=[t[0] for t in TAMPERING])
def test_verify_names_the_first_row_that_does_not_match(site: Path, name: str, tamper, drop: bool) -> None:
    copy = copy_db(site, re.sub(r"\W+", "-", name), drop_triggers=drop)
    k = first_event(copy, "decision")  # a row in the middle of the chain, with rows after it
    assert 1 < k < len(events(copy))
    with sqlite3.connect(copy) as db:
        expected = tamper(db, k)

    result = verify(site, copy)
    assert result.returncode == 10, result.stdout + result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.endswith("\n") and result.stderr.count("\n") == 1, result.stderr  # one line
    assert result.stderr.startswith("audit: error: ") and "audit log does not verify" in result.stderr
    assert re.search(expected, result.stderr), result.stderr
    assert verify(site).returncode == 0  # the original is untouched


def rewrite_decision_and_rehash(db: sqlite3.Connection, k: int) -> None:
    """A careful forger: turn the decision of event `k` into a rejection, make the decision row
    and the item's status agree with it, and re-hash the chain from there on."""
    edit_event_detail(db, k)
    decision_id = json.loads(db.execute("SELECT detail FROM events WHERE id = ?", (k,)).fetchone()[0])["decision_id"]
    db.execute("UPDATE decisions SET decision = 'rejected' WHERE id = ?", (decision_id,))
    db.execute("UPDATE transactions SET status = 'rejected' WHERE id = (SELECT transaction_id FROM decisions WHERE id = ?)",
               (decision_id,))
    rehash_from(db, k)


def test_a_rewritten_chain_no_longer_matches_the_published_head(site: Path) -> None:
    """Whoever rewrites the whole chain after an edit gets a log that verifies on its own, but
    the head already sent out in a confirmation is no longer part of it."""
    confirmation = [m for m in maildir_messages(site / "var" / "mail" / "outbox") if str(m["Subject"]).startswith("Recorded: ")][-1]
    [published] = HEAD.findall(plain_body(confirmation))
    copy = copy_db(site, "rewritten")
    k = first_event(copy, "decision")
    with sqlite3.connect(copy) as db:
        rewrite_decision_and_rehash(db, k)
    result = verify(site, copy)
    assert result.returncode == 0, result.stderr
    assert published not in {h for _, _, h in events(copy)}
    assert published in {h for _, _, h in events(site / "audit.db")}


def test_verify_catches_a_transaction_status_edited_behind_the_decisions(tmp_path: Path) -> None:
    """Statuses are not chained themselves, but must agree with the chained decisions."""
    from helpers import EXAMPLES, EXAMPLE_LEDGER, audit, write_config

    (tmp_path / "vendors.csv").write_text((EXAMPLES / "vendors.csv").read_text())
    write_config(tmp_path / "audit.toml", {"db": "audit.db"}, policy={"known_vendors_file": "vendors.csv"})
    assert audit("run", "--ledger", str(EXAMPLE_LEDGER), cwd=tmp_path).returncode == 0
    assert audit("verify", cwd=tmp_path).returncode == 0
    for sql, expected in (
        ("UPDATE transactions SET status = 'approved' WHERE txn_id = 'TX-1002'", "TX-1002): status approved, but no decision"),
        ("UPDATE transactions SET status = 'auto_approved' WHERE txn_id = 'TX-1002'", "TX-1002): auto-approved although a rule"),
    ):
        copy = tmp_path / "copy.db"
        copy.write_bytes((tmp_path / "audit.db").read_bytes())
        conn = sqlite3.connect(copy)
        if "auto_approved" in sql:  # no decision makes a status auto_approved: a trigger refuses it, unless dropped
            with pytest.raises(sqlite3.IntegrityError, match="a status changes only by a decision"):
                conn.execute(sql)
            conn.execute("DROP TRIGGER transactions_status_by_decision")
        conn.execute(sql)
        conn.commit()
        conn.close()
        result = audit("verify", "--db", str(copy), cwd=tmp_path)
        assert result.returncode == 10, result.stderr
        assert expected in result.stderr and result.stderr.count("\n") == 1


def test_a_report_of_a_log_that_does_not_verify_is_refused_unless_marked_unverified(site: Path) -> None:
    import json

    good = audit("report", "--format", "json", "--out", str(site / "good.json"), cwd=site)
    assert good.returncode == 0, good.stderr
    assert json.loads((site / "good.json.manifest.json").read_text())["audit_log_verified"] is True

    tampered = copy_db(site, "tampered-report")
    with sqlite3.connect(tampered) as db:
        db.execute("UPDATE decisions SET reason = 'approved by phone' WHERE id = 2")
    refused = audit("report", "--db", str(tampered), "--out", str(site / "bad.csv"), cwd=site)
    assert refused.returncode == 10
    assert refused.stderr.strip().count("\n") == 0 and "audit log does not verify: decisions row 2" in refused.stderr
    assert "--unverified" in refused.stderr and not (site / "bad.csv").exists()
    assert audit("report", "--db", str(tampered), cwd=site).stdout == ""  # nothing on stdout either

    marked = audit("report", "--db", str(tampered), "--unverified", "--out", str(site / "bad.csv"), cwd=site)
    assert marked.returncode == 0, marked.stderr
    assert "exporting an UNVERIFIED report" in marked.stderr
    manifest = json.loads((site / "bad.csv.manifest.json").read_text())
    assert manifest["audit_log_verified"] is False and "decisions row 2" in manifest["audit_log_problem"]
    assert "approved by phone" in (site / "bad.csv").read_text("utf-8-sig")


def test_heads_kept_outside_the_database_catch_a_rewritten_chain(site: Path) -> None:
    """`verify --witness` reads the heads that left the database (confirmations in a maildir or
    an mbox, report manifests) and finds each in the chain; a rewritten chain loses them."""
    import mailbox

    outbox = site / "var" / "mail" / "outbox"
    result = audit("verify", "--witness", str(outbox), cwd=site)
    assert result.returncode == 0, result.stderr
    confirmations = [m for m in maildir_messages(outbox) if str(m["Subject"]).startswith("Recorded: ")]
    assert f"all {len(confirmations)} head(s) kept outside it are in the chain" in result.stdout
    assert audit("report", "--out", str(site / "witness-report.csv"), cwd=site).returncode == 0
    saved = mailbox.mbox(str(site / "saved.mbox"))
    for message in confirmations:
        saved.add(message.as_bytes())
    saved.flush()

    copy = copy_db(site, "rewritten-witness")
    k = first_event(copy, "decision")
    with sqlite3.connect(copy) as db:
        rewrite_decision_and_rehash(db, k)
    assert verify(site, copy).returncode == 0
    for witness in (outbox, site / "saved.mbox"):
        caught = audit("verify", "--db", str(copy), "--witness", str(witness), cwd=site)
        assert caught.returncode == 10, (witness, caught.stdout)
        assert "is not in the chain: the log was rewritten after it was published" in caught.stderr
        assert caught.stderr.strip().count("\n") == 0
    # the report's manifest holds a head written after the last decision: the rewrite loses it too
    caught = audit("verify", "--db", str(copy), "--witness", str(site / "witness-report.csv.manifest.json"), cwd=site)
    assert caught.returncode == 10 and "witness-report.csv.manifest.json" in caught.stderr

    nothing = audit("verify", "--witness", str(site / "vendors.csv"), cwd=site)
    assert nothing.returncode == 4 and "no audit log head found" in nothing.stderr


def test_witness_addresses_get_the_head_after_each_run_and_poll_that_recorded_something(tmp_path: Path) -> None:
    from helpers import EXAMPLES, EXAMPLE_LEDGER, write_config

    site = tmp_path
    shutil.copy(EXAMPLES / "vendors.csv", site / "vendors.csv")
    write_config(site / "audit.toml", {"db": "audit.db"}, policy={"known_vendors_file": "vendors.csv"},
                 audit={"witness_addresses": ["witness@example.org"]})
    assert audit("run", "--ledger", str(EXAMPLE_LEDGER), cwd=site).returncode == 0
    outbox = site / "var" / "mail" / "outbox"

    def notices() -> list:
        return [m for m in maildir_messages(outbox) if m["To"] == "witness@example.org"]

    [after_run] = notices()
    assert after_run["Subject"] == "Ledger audit log head after run 1"
    [head] = HEAD.findall(plain_body(after_run))
    with sqlite3.connect(site / "audit.db") as db:  # the head once the run was recorded, before its mail went out
        position = db.execute("SELECT id FROM events WHERE row_hash = ?", (head,)).fetchone()[0]
        run_event = db.execute("SELECT MAX(id) FROM events WHERE kind IN ('run', 'request', 'sealed')").fetchone()[0]
    assert position == run_event
    assert f"audit log head {head} at event {position}" in plain_body(after_run)  # with its place in the chain

    assert audit("poll", "--once", cwd=site).returncode == 0  # nothing to read: nothing recorded, no notice
    assert len(notices()) == 1
    request = [m for m in maildir_messages(outbox) if m["To"] != "witness@example.org"][0]
    drop_reply(site / "var" / "mail", build_reply(request, "approve 1", sender=APPROVER))
    assert audit("poll", "--once", cwd=site).returncode == 0
    assert [m["Subject"] for m in notices()][1] == "Ledger audit log head after a poll"

    witnessed = site / "witness-mail"  # what the witness saved
    (witnessed / "cur").mkdir(parents=True)
    for n, message in enumerate(notices()):
        (witnessed / "cur" / f"{n}.eml").write_bytes(message.as_bytes())
    result = audit("verify", "--witness", str(witnessed), cwd=site)
    assert result.returncode == 0 and "all 2 head(s) kept outside it are in the chain" in result.stdout
