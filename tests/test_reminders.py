"""Requests nobody answers: remind, escalate, then expire (fail closed), as `audit poll` does.

A request is made to look old by rewriting requests.created_at (not an append-only column)
before each poll; everything else goes through the real command line and the maildir outbox.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from helpers import (
    Outbox,
    age_request as age,
    poll_site as poll,
    run_site as run,
    audit,
    audit_process,
    build_reply,
    drop_reply,
    plain_body,
    report_json,
    write_site,
)

CONTROLLER = "controller@example.com"
AP = "ap@example.com"
CFO = "cfo@example.com"  # the escalation address: not an approver until a request is escalated to it


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return write_site(tmp_path / "site", [CONTROLLER, AP],
                      reminders={"remind_after": "1h", "escalate_after": "2h", "escalation_addresses": [CFO], "expire_after": "3h"})


def listed_items(msg) -> list[tuple[str, str]]:
    return re.findall(r"^\[(\d+)\] (TX-\d+)", plain_body(msg), re.M)


def token_of(msg) -> str:
    return re.fullmatch(r"audit\+([a-z2-7]{26})@example\.com", msg["Reply-To"]).group(1)


def status_json(site: Path) -> dict:
    result = audit("status", "--json", cwd=site)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def statuses(site: Path) -> dict[str, dict]:
    return {r["transaction_id"]: r for r in report_json(site)}


def test_remind_then_escalate_then_expire_each_once(site: Path) -> None:
    request_id = run(site)
    outbox = Outbox(site)
    originals = {m["To"]: m for m in outbox.new()}
    assert sorted(originals) == [AP, CONTROLLER]

    # a fresh request: nothing to chase; the controller decides item 1
    drop_reply(site / "var/mail", build_reply(originals[CONTROLLER], "approve 1", sender=CONTROLLER))
    result = poll(site)
    assert "reminder" not in result.stdout and "escalated" not in result.stdout
    assert [m["Subject"].split(":")[0] for m in outbox.new()] == ["Recorded"]
    [open_request] = status_json(site)["open_requests"]
    assert open_request["request_id"] == request_id and re.fullmatch(r"0h \d+m", open_request["age"])

    # 1h+: one reminder per approver, in that approver's thread, listing only what is pending
    age(site, request_id, 65)
    result = poll(site)
    assert f"request {request_id}: reminder sent" in result.stdout
    reminders = {m["To"]: m for m in outbox.new()}
    assert sorted(reminders) == [AP, CONTROLLER]  # not the escalation address yet
    for approver, reminder in reminders.items():
        assert reminder["Subject"].startswith("Reminder: ")
        assert reminder["In-Reply-To"] == originals[approver]["Message-ID"]
        assert originals[approver]["Message-ID"] in reminder["References"]
        assert listed_items(reminder) == [("2", "TX-1002"), ("3", "TX-1007"), ("4", "TX-1003")]
        assert "TX-1008" not in plain_body(reminder)
        assert token_of(reminder) != token_of(originals[approver])
    [open_request] = status_json(site)["open_requests"]
    assert re.fullmatch(r"1h \d+m", open_request["age"]) and open_request["pending"] == 3

    # the reminder's own token works for replying; a second poll sends no second reminder
    drop_reply(site / "var/mail", build_reply(reminders[AP], "reject 2: no purchase order", sender=AP))
    result = poll(site)
    assert "1 decision(s) recorded" in result.stdout and "reminder sent" not in result.stdout
    [confirmation] = outbox.new()
    assert confirmation["To"] == AP and confirmation["Subject"].startswith("Recorded: ")
    assert statuses(site)["TX-1002"]["status"] == "rejected" and statuses(site)["TX-1002"]["decided_by"] == AP
    assert outbox.new() == []

    # 2h+: escalated to the escalation address only, listing what is still pending
    age(site, request_id, 125)
    result = poll(site)
    assert f"request {request_id}: escalated to {CFO}" in result.stdout
    [escalation] = outbox.new()
    assert escalation["To"] == CFO and escalation["Subject"].startswith("Escalated: ")
    assert listed_items(escalation) == [("3", "TX-1007"), ("4", "TX-1003")]
    poll(site)
    assert outbox.new() == []  # escalated once

    # the escalation address is now an approver of this request
    drop_reply(site / "var/mail", build_reply(escalation, "approve 3", sender=CFO))
    result = poll(site)
    assert "1 decision(s) recorded" in result.stdout
    assert [m["To"] for m in outbox.new()] == [CFO]
    assert statuses(site)["TX-1007"]["status"] == "approved" and statuses(site)["TX-1007"]["decided_by"] == CFO

    # 3h+: what is still pending expires (never approved), the request closes, everyone is told once
    age(site, request_id, 185)
    result = poll(site)
    assert f"request {request_id} closed: pending items expired" in result.stdout
    notices = outbox.new()
    assert sorted(m["To"] for m in notices) == [AP, CFO, CONTROLLER]
    for notice in notices:
        assert notice["Subject"].startswith("Expired: ")
        assert "item 4 TX-1003" in plain_body(notice) and "expired" in plain_body(notice)
    rows = statuses(site)
    assert rows["TX-1003"]["status"] == "expired" and rows["TX-1003"]["decided_by"] != CONTROLLER
    assert [rows[t]["status"] for t in ("TX-1008", "TX-1002", "TX-1007", "TX-1003")] == ["approved", "rejected", "approved", "expired"]
    db = sqlite3.connect(site / "audit.db")
    assert db.execute("SELECT status, expired_at IS NOT NULL FROM requests").fetchall() == [("closed", 1)]
    assert db.execute("SELECT decision FROM decisions WHERE item_no = 4").fetchall() == [("expired",)]
    db.close()
    info = status_json(site)
    assert info["open_requests"] == [] and info["pending_items"] == 0
    assert "open requests: 0" in audit("status", cwd=site).stdout

    poll(site)
    assert outbox.new() == []  # expired once, told once
    # a late reply cannot approve an expired item
    drop_reply(site / "var/mail", build_reply(originals[CONTROLLER], "approve 4", sender=CONTROLLER))
    poll(site)
    assert statuses(site)["TX-1003"]["status"] == "expired"
    assert audit("verify", cwd=site).returncode == 0


def test_escalation_address_may_decide_only_the_request_escalated_to_it(site: Path, tmp_path: Path) -> None:
    first = run(site)
    later_ledger = tmp_path / "ledger-2026-11-25.csv"
    later_ledger.write_text("id,date,amount,currency,vendor,memo\nTX-2001,2026-11-25,50000.00,USD,Acme Office Supply,Server racks\n")
    second = run(site, later_ledger)
    outbox = Outbox(site)
    sent = outbox.new()
    to_controller_second = next(m for m in sent if m["To"] == CONTROLLER and "TX-2001" in plain_body(m))

    # before any escalation the escalation address is a stranger
    drop_reply(site / "var/mail", build_reply(to_controller_second, "approve all", sender=CFO))
    poll(site)
    assert outbox.new() == []  # strangers get no answer

    age(site, first, 65)
    assert "reminder sent" in poll(site).stdout
    assert sorted(m["To"] for m in outbox.new()) == [AP, CONTROLLER]
    age(site, first, 130)
    result = poll(site)
    assert f"request {first}: escalated to {CFO}" in result.stdout and second not in result.stdout
    [escalation] = outbox.new()
    assert escalation["To"] == CFO and escalation["X-Audit-Request"] == first

    # a reply to the other request (the controller's copy, forwarded) is refused
    drop_reply(site / "var/mail", build_reply(to_controller_second, "approve 1", sender=CFO))
    result = poll(site)
    assert "1 refused" in result.stdout and "0 decision(s) recorded" in result.stdout
    assert statuses(site)["TX-2001"]["status"] == "pending"
    [refusal] = outbox.new()
    assert refusal["To"] == CFO and refusal["Subject"].startswith("Not recorded: ")

    # while a reply to the escalation decides the escalated request
    drop_reply(site / "var/mail", build_reply(escalation, "approve all", sender=CFO))
    result = poll(site)
    assert "4 decision(s) recorded" in result.stdout
    rows = statuses(site)
    assert all(rows[t]["status"] == "approved" and rows[t]["decided_by"] == CFO for t in ("TX-1008", "TX-1002", "TX-1007", "TX-1003"))
    assert rows["TX-2001"]["status"] == "pending"
    [open_request] = status_json(site)["open_requests"]
    assert open_request["request_id"] == second


def test_status_shows_the_age_of_every_open_request(site: Path, tmp_path: Path) -> None:
    first = run(site)
    later_ledger = tmp_path / "ledger-2026-11-25.csv"
    later_ledger.write_text("id,date,amount,currency,vendor,memo\nTX-2001,2026-11-25,50000.00,USD,Acme Office Supply,Server racks\n")
    second = run(site, later_ledger)
    age(site, first, 50)
    ages = {r["request_id"]: r["age"] for r in status_json(site)["open_requests"]}
    assert set(ages) == {first, second}
    assert re.fullmatch(r"0h (49|50)m", ages[first]) and re.fullmatch(r"0h [01]m", ages[second])
    text = audit("status", cwd=site).stdout
    assert re.search(rf"{first}  age 0h (49|50)m  4 of 4 pending", text)
    assert re.search(rf"{second}  age 0h [01]m  1 of 1 pending", text)

    # neither is an hour old: a poll sends nothing
    outbox = Outbox(site)
    outbox.new()
    result = poll(site)
    assert "reminder" not in result.stdout and outbox.new() == []


@pytest.mark.separate_process("killed with SIGKILL at a crash point")
@pytest.mark.parametrize("step", ["poll:before-summaries", "outbox:sent-before-recorded"])
def test_poll_killed_after_queuing_reminders_sends_each_reminder_once(step: str, site: Path) -> None:
    request_id = run(site)
    outbox = Outbox(site)
    outbox.new()
    age(site, request_id, 65)
    killed = audit_process("poll", "--once", cwd=site, env={"AUDIT_TEST_CRASH_AT": step})
    assert killed.returncode == -9
    for _ in range(2):
        result = poll(site)
        assert "reminder sent" not in result.stdout  # the killed poll already recorded it
    folder = site / "var/mail/outbox"
    copies: dict[str, list[bytes]] = {}
    for path in [p for sub in ("new", "cur") for p in (folder / sub).iterdir()]:
        raw = path.read_bytes()
        if b"Subject: Reminder:" in raw:
            copies.setdefault(re.search(rb"^Message-ID: (.+?)\r?$", raw, re.M).group(1).decode(), []).append(raw)
    recipients = sorted(re.search(rb"^To: (.+?)\r?$", c[0], re.M).group(1).decode() for c in copies.values())
    assert recipients == [AP, CONTROLLER]  # one reminder per approver
    for versions in copies.values():
        assert len(versions) <= (2 if step == "outbox:sent-before-recorded" else 1)
        assert all(v == versions[0] for v in versions)
    db = sqlite3.connect(site / "audit.db")
    assert db.execute("SELECT COUNT(*) FROM events WHERE kind = 'reminded'").fetchone() == (1,)
    assert db.execute("SELECT COUNT(*) FROM messages WHERE kind = 'reminder' AND status = 'sent'").fetchone() == (2,)
    db.close()


def test_a_request_first_polled_after_escalate_after_gets_no_reminder_after_its_escalation(site: Path) -> None:
    request_id = run(site)
    outbox = Outbox(site)
    outbox.new()
    age(site, request_id, 130)  # nobody polled while it passed both remind_after and escalate_after
    kinds = []
    for _ in range(3):
        poll(site)
        kinds += [(m["Subject"].split(":")[0], m["To"]) for m in outbox.new()]
    assert ("Escalated", CFO) in kinds
    first_escalation = kinds.index(("Escalated", CFO))
    assert [k for k in kinds[first_escalation:] if k[0] == "Reminder"] == [], kinds


def test_an_expiry_notice_lists_at_most_max_listed_items_and_counts_the_rest(tmp_path: Path) -> None:
    site = write_site(tmp_path / "site", [CONTROLLER], request={"max_listed": 2}, reminders={"expire_after": "1h"})
    request_id = run(site)
    outbox = Outbox(site)
    outbox.new()
    flagged = [r["transaction_id"] for r in report_json(site) if r["status"] == "pending"]
    assert len(flagged) > 2
    age(site, request_id, 65)
    result = poll(site)
    assert f"request {request_id} closed: pending items expired" in result.stdout
    [notice] = outbox.new()
    body = plain_body(notice)
    assert len(re.findall(r"^- item \d+ ", body, re.M)) == 2
    assert f"... and {len(flagged) - 2} more ({len(flagged)} expired in all)" in body
    assert all(r["status"] == "expired" for r in report_json(site) if r["transaction_id"] in flagged)


def test_a_reminder_attaches_only_the_pending_items_numbered_as_in_the_request(tmp_path: Path) -> None:
    import csv
    import io

    site = write_site(tmp_path / "site", [CONTROLLER], request={"max_listed": 1}, reminders={"remind_after": "1h"})
    request_id = run(site)
    outbox = Outbox(site)
    [request] = outbox.new()
    [(first_no, first_id)] = listed_items(request)
    drop_reply(site / "var" / "mail", build_reply(request, f"approve {first_no}", sender=CONTROLLER))
    poll(site)
    outbox.new()  # the confirmation
    age(site, request_id, 65)
    poll(site)
    [reminder] = [m for m in outbox.new() if m["Subject"].startswith("Reminder")]
    [part] = list(reminder.iter_attachments())
    rows = list(csv.DictReader(io.StringIO(part.get_content().lstrip("\ufeff"))))
    pending = [r["transaction_id"] for r in report_json(site) if r["status"] == "pending"]
    assert len(rows) == len(pending) >= 2 and first_id not in {r["id"] for r in rows}
    numbered = dict(sqlite3.connect(site / "audit.db").execute("SELECT txn_id, item_no FROM transactions WHERE item_no IS NOT NULL"))
    assert [(int(r["no"]), r["id"]) for r in rows] == sorted((numbered[t], t) for t in pending)
    assert f"{len(rows)} transaction" in plain_body(reminder)
