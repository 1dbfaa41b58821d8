"""The whole loop over the maildir transport, through the real command line."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from helpers import EXAMPLES, EXAMPLE_LEDGER, audit, build_reply, drop_reply, html_body, maildir_messages, plain_body, report_json, write_config


@pytest.fixture
def site(tmp_path: Path) -> Path:
    shutil.copy(EXAMPLES / "vendors.csv", tmp_path / "vendors.csv")
    write_config(
        tmp_path / "audit.toml",
        {"db": "audit.db"},
        policy={"known_vendors_file": "vendors.csv"},
        approvers={"addresses": ["controller@example.com", "cfo@example.com"]},
    )
    return tmp_path


def run_example(site: Path) -> list:
    result = audit("run", "--ledger", str(EXAMPLE_LEDGER), cwd=site)
    assert result.returncode == 0, result.stderr
    return maildir_messages(site / "var" / "mail" / "outbox")


def test_run_sends_one_request_per_approver_listing_only_flagged_items(site: Path) -> None:
    result = audit("run", "--ledger", str(EXAMPLE_LEDGER), cwd=site)
    assert result.returncode == 0, result.stderr
    assert "10 new, 4 flagged, 6 auto-approved, 0 held" in result.stdout
    sent = maildir_messages(site / "var" / "mail" / "outbox")
    assert sorted(m["To"] for m in sent) == ["cfo@example.com", "controller@example.com"]
    request = sent[0]
    body = plain_body(request)
    listed = re.findall(r"^\[(\d+)\] (TX-\d+)", body, re.M)
    assert [tx for _, tx in listed] == ["TX-1008", "TX-1002", "TX-1007", "TX-1003"]
    assert [n for n, _ in listed] == ["1", "2", "3", "4"]
    # 10,000.00 is not flagged; 10,000.01 is
    assert "TX-1006" not in body and "TX-1007" in body
    assert "6 ordinary transactions were approved automatically" in body
    assert "Reviewer: built-in offline reviewer" in body
    assert "12,400.00 USD" in body and "Reasons: amount 12,400.00 USD is above the 10,000.00 threshold" in body
    assert request["Auto-Submitted"] == "auto-generated"
    token = re.fullmatch(r"audit\+([a-z2-7]{26})@example\.com", request["Reply-To"]).group(1)
    # the token is in the reply address and, for servers without plus-addressing, at the foot of
    # the body a reply quotes; never in the Message-ID, which every reply repeats and every server logs
    assert token not in request["Message-ID"]
    assert f"Your reply address: audit+{token}@example.com" in body
    assert sent[0]["Message-ID"] != sent[1]["Message-ID"] and sent[0]["Reply-To"] != sent[1]["Reply-To"]
    assert "<td>TX-1002</td>" in html_body(request)
    db = sqlite3.connect(site / "audit.db")
    stored = {h for (h,) in db.execute("SELECT token_hash FROM request_tokens")}
    assert token not in json.dumps(sorted(stored)) and len(stored) == 2


def test_reply_records_decisions_confirms_and_reports(site: Path) -> None:
    request = run_example(site)[0]
    reply = build_reply(request, "Approve 1, 2\nReject TX-1007: no PO on file\n\nThanks,\nC.", sender="Controller <Controller@Example.com>")
    drop_reply(site / "var" / "mail", reply, "r1")
    result = audit("poll", "--once", cwd=site)
    assert result.returncode == 0, result.stderr
    assert "3 decision(s) recorded" in result.stdout
    assert not list((site / "var/mail/inbox/new").iterdir())
    assert [p.name for p in (site / "var/mail/inbox/cur").iterdir()] == ["r1:2,S"]

    rows = {r["transaction_id"]: r for r in report_json(site)}
    assert rows["TX-1008"]["status"] == "approved" and rows["TX-1008"]["decided_by"] == "controller@example.com"
    assert rows["TX-1007"]["status"] == "rejected" and rows["TX-1007"]["reason"] == "no PO on file"
    assert rows["TX-1007"]["amount"] == "10000.01" and rows["TX-1007"]["flags"] == ["large_amount"]
    assert rows["TX-1003"]["status"] == "pending"
    assert rows["TX-1001"]["status"] == "auto_approved" and rows["TX-1001"]["decided_by"] == ""
    assert set(rows["TX-1002"]) == {
        "transaction_id", "version", "date", "vendor", "amount", "currency", "memo", "flags",
        "status", "decided_by", "decided_at", "reason", "request_id", "signed_off_by", "signed_off_at",
    }

    confirmation = maildir_messages(site / "var" / "mail" / "outbox")[-1]
    assert confirmation["To"] == "controller@example.com"
    assert confirmation["In-Reply-To"] == parse_id(reply)
    text = plain_body(confirmation)
    assert "item 3 TX-1007 (Initech Software, 10,000.01 USD): rejected: no PO on file" in text
    assert "Still pending (1):" in text and "item 4 TX-1003" in text

    # "approve all" later covers only what is still pending; earlier decisions stand
    again = build_reply(request, "approve all", sender="controller@example.com")
    drop_reply(site / "var" / "mail", again)
    result = audit("poll", "--once", cwd=site)
    assert "1 decision(s) recorded" in result.stdout and "closed" in result.stdout
    rows = {r["transaction_id"]: r for r in report_json(site)}
    assert rows["TX-1007"]["status"] == "rejected" and rows["TX-1003"]["status"] == "approved"

    csv_out = audit("report", "--format", "csv", cwd=site).stdout.splitlines()
    assert csv_out[0] == "transaction_id,version,date,vendor,amount,currency,memo,flags,status,decided_by,decided_at,reason,request_id,signed_off_by,signed_off_at"
    assert any(line.startswith("TX-1008,1,2026-11-24,Blue Harbor Holdings,2150.00,USD,Misc services,vague_memo;unfamiliar_vendor,approved,") for line in csv_out)


def parse_id(raw: bytes) -> str:
    return re.search(rb"^Message-ID: (.+?)\r?$", raw, re.M).group(1).decode()


def test_quoted_request_alone_decides_nothing_and_gets_help(site: Path) -> None:
    request = run_example(site)[0]
    drop_reply(site / "var" / "mail", build_reply(request, "", sender="controller@example.com"))
    result = audit("poll", "--once", cwd=site)
    assert result.returncode == 0, result.stderr
    assert "0 decision(s) recorded" in result.stdout
    assert all(r["status"] != "approved" for r in report_json(site))
    answer = plain_body(maildir_messages(site / "var" / "mail" / "outbox")[-1])
    assert "Nothing was recorded" in answer and "no command found" in answer
    assert "approve 1, 3-4" in answer  # the grammar is shown


def test_unquoted_instructions_pasted_back_decide_nothing(site: Path) -> None:
    request = run_example(site)[0]
    text = plain_body(request)  # the whole request, pasted with no quote markers at all
    drop_reply(site / "var" / "mail", build_reply(request, text, sender="controller@example.com", quote=False))
    audit("poll", "--once", cwd=site)
    assert all(r["status"] in ("pending", "auto_approved") for r in report_json(site))


def test_reply_from_someone_else_is_refused_and_not_answered(site: Path) -> None:
    request = run_example(site)[0]  # sent to cfo@ (sorted first? no: order of approvers)
    drop_reply(site / "var" / "mail", build_reply(request, "approve all", sender="mallory@evil.test"))
    result = audit("poll", "--once", cwd=site)
    assert "1 refused" in result.stdout
    assert all(r["status"] != "approved" for r in report_json(site))
    assert len(maildir_messages(site / "var" / "mail" / "outbox")) == 2  # no answer to a stranger


def test_approver_using_another_approvers_token_is_refused(site: Path) -> None:
    sent = run_example(site)
    to_cfo = next(m for m in sent if m["To"] == "cfo@example.com")
    drop_reply(site / "var" / "mail", build_reply(to_cfo, "approve all", sender="controller@example.com"))
    result = audit("poll", "--once", cwd=site)
    assert "1 refused" in result.stdout
    assert all(r["status"] != "approved" for r in report_json(site))


def test_same_ledger_twice_records_nothing_new_and_sends_nothing(site: Path) -> None:
    run_example(site)
    again = audit("run", "--ledger", str(EXAMPLE_LEDGER), cwd=site)
    assert again.returncode == 0, again.stderr
    assert "already imported, skipped" in again.stdout and "run 2: 0 new, 0 flagged" in again.stdout
    assert len(maildir_messages(site / "var" / "mail" / "outbox")) == 2
    assert len(report_json(site)) == 10


def test_overlapping_export_records_each_transaction_once(site: Path, tmp_path: Path) -> None:
    run_example(site)
    overlap = tmp_path / "ledger-2026-11-25.csv"
    lines = EXAMPLE_LEDGER.read_text().splitlines()
    overlap.write_text("\n".join(lines[:3] + ["TX-2001,2026-11-25,50000.00,USD,Acme Office Supply,Server racks,6100"]) + "\n")
    result = audit("run", "--ledger", str(overlap), cwd=site)
    assert "1 new, 1 flagged" in result.stdout, result.stdout
    sent = maildir_messages(site / "var" / "mail" / "outbox")
    newest = plain_body(sent[-1])
    assert "TX-2001" in newest and "TX-1002" not in newest
    assert len(report_json(site)) == 11


def test_never_mode_holds_flagged_items_and_sends_nothing(site: Path) -> None:
    write_config(site / "audit.toml", {"db": "audit.db"}, policy={"known_vendors_file": "vendors.csv", "approval_mode": "never"})
    result = audit("run", "--ledger", str(EXAMPLE_LEDGER), cwd=site)
    assert result.returncode == 0 and "4 held" in result.stdout
    assert not maildir_messages(site / "var" / "mail" / "outbox")
    statuses = {r["transaction_id"]: r["status"] for r in report_json(site)}
    assert statuses["TX-1002"] == "held" and "approved" not in statuses.values()


def send_sign_off_request(site: Path, tmp_path: Path):
    """Run a ledger with nothing to flag under approval_mode = "always"; the request sent."""
    write_config(site / "audit.toml", {"db": "audit.db"}, policy={"known_vendors_file": "vendors.csv", "approval_mode": "always"},
                 approvers={"addresses": ["controller@example.com"]})
    clean = tmp_path / "clean.csv"
    clean.write_text("id,date,amount,currency,vendor,memo\nC-1,2026-11-24,10.00,USD,Globex Travel,Taxi\n")
    assert audit("run", "--ledger", str(clean), cwd=site).returncode == 0
    return maildir_messages(site / "var" / "mail" / "outbox")[0]


def test_always_mode_asks_for_sign_off_even_with_nothing_flagged(site: Path, tmp_path: Path) -> None:
    request = send_sign_off_request(site, tmp_path)
    assert "nothing flagged, sign-off requested" in request["Subject"]
    drop_reply(site / "var" / "mail", build_reply(request, "approve all", sender="controller@example.com"))
    result = audit("poll", "--once", cwd=site)
    assert "1 decision(s) recorded" in result.stdout and "closed" in result.stdout
    db = sqlite3.connect(site / "audit.db")
    assert db.execute("SELECT decision, approver FROM decisions").fetchall() == [("signed_off", "controller@example.com")]


@pytest.mark.parametrize("words", ["Signed off.", "signed off", "Sign-off", "approve", "Approved.", "approve all"])
def test_a_run_with_nothing_flagged_is_signed_off_and_the_report_says_by_whom(site: Path, tmp_path: Path, words: str) -> None:
    request = send_sign_off_request(site, tmp_path)
    assert "To sign off this run, write:  signed off" in plain_body(request)
    drop_reply(site / "var" / "mail", build_reply(request, f"{words}\nThanks, Dana", sender="controller@example.com"))
    assert "1 decision(s) recorded" in audit("poll", "--once", cwd=site).stdout
    confirmation = plain_body(maildir_messages(site / "var" / "mail" / "outbox")[-1])
    assert "- run 1 (clean.csv: 1 transaction, none flagged): signed off" in confirmation
    assert "The run is signed off; the request is closed." in confirmation
    [row] = report_json(site)
    decided_at = sqlite3.connect(site / "audit.db").execute("SELECT decided_at FROM decisions").fetchone()[0]
    assert (row["status"], row["signed_off_by"], row["signed_off_at"]) == ("auto_approved", "controller@example.com", decided_at)
    # a second sign-off is refused: the request is closed and decisions are final
    drop_reply(site / "var" / "mail", build_reply(request, "signed off", sender="controller@example.com"))
    assert "0 decision(s) recorded" in audit("poll", "--once", cwd=site).stdout
    assert "already closed" in plain_body(maildir_messages(site / "var" / "mail" / "outbox")[-1])


def test_a_sign_off_request_answered_unclearly_still_waits(site: Path, tmp_path: Path) -> None:
    request = send_sign_off_request(site, tmp_path)
    drop_reply(site / "var" / "mail", build_reply(request, "Signed off?", sender="controller@example.com"))
    assert "0 decision(s) recorded" in audit("poll", "--once", cwd=site).stdout
    answer = plain_body(maildir_messages(site / "var" / "mail" / "outbox")[-1])
    assert "This run still waits for your sign-off." in answer and "write:  signed off" in answer
    assert "the request is closed" not in answer


def test_conversation_is_suspended_then_resumed_with_the_reply(site: Path) -> None:
    request = run_example(site)[0]
    db = sqlite3.connect(site / "audit.db")
    (conversation_id, question) = db.execute("SELECT conversation_id, question FROM requests").fetchone()
    kinds = [t.rsplit(".", 1)[1] for (t,) in db.execute("SELECT type FROM conversation WHERE stream_id = ? ORDER BY seq", (conversation_id,))]
    assert kinds[-2:] == ["ToolCallEvent", "ToolResultsEvent"]  # the ask, and AG2's stand-in result while suspended
    assert "How to answer" in question
    drop_reply(site / "var" / "mail", build_reply(request, "approve all", sender="controller@example.com"))
    audit("poll", "--once", cwd=site)
    db = sqlite3.connect(site / "audit.db")
    summary = db.execute("SELECT summary FROM requests").fetchone()[0]
    assert summary == "Human decisions recorded: 4 approved."
    bodies = [b for (b,) in db.execute("SELECT body FROM transcript WHERE stream_id = ? ORDER BY id", (conversation_id,))]
    assert any("approve all" in b and "controller@example.com" in b for b in bodies)  # the human's input
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM transcript")
