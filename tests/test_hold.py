"""Hold is a pause, not an end: a held item stays open until approved, rejected or expired.

Through the real command line and the maildir transport; a request is made to look old by
rewriting requests.created_at (not an append-only column), as tests/test_reminders.py does.
"""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path

import pytest

from helpers import EXAMPLE_LEDGER, audit, build_reply, drop_reply, maildir_messages, plain_body, report_json, write_site

CONTROLLER = "controller@example.com"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    site = write_site(tmp_path / "site", [CONTROLLER], reminders={"remind_after": "1h", "expire_after": "3h"})
    result = audit("run", "--ledger", str(EXAMPLE_LEDGER), cwd=site)
    assert result.returncode == 0, result.stderr
    return site


def reply(site: Path, text: str) -> str:
    request = maildir_messages(site / "var" / "mail" / "outbox")[0]
    drop_reply(site / "var" / "mail", build_reply(request, text, sender=CONTROLLER))
    result = audit("poll", "--once", cwd=site)
    assert result.returncode == 0, result.stderr
    return result.stdout


def statuses(site: Path) -> dict[str, str]:
    return {r["transaction_id"]: r["status"] for r in report_json(site) if r["request_id"]}


def last_mail(site: Path) -> str:
    return plain_body(maildir_messages(site / "var" / "mail" / "outbox")[-1])


def test_a_held_item_keeps_the_request_open_until_it_is_decided(site: Path) -> None:
    out = reply(site, "approve 1, 2, 3\nhold 4 until the vendor sends the SOW")
    assert "4 decision(s) recorded" in out and "closed" not in out
    answer = last_mail(site)
    assert "Held for follow-up (1), still open until approved or rejected by name:" in answer
    assert "- item 4 TX-1003 (Contoso Consulting, 3,000.00 USD)" in answer
    assert "the request is closed" not in answer
    status = audit("status", cwd=site).stdout
    assert "held items: 1" in status and "0 of 4 pending, 1 held" in status

    # "all" never sweeps a held item up: it must be named
    out = reply(site, "approve all")
    assert "0 decision(s) recorded" in out and statuses(site)["TX-1003"] == "held"

    out = reply(site, "reject 4: no SOW after two weeks")
    assert "1 decision(s) recorded" in out and "closed" in out
    row = {r["transaction_id"]: r for r in report_json(site)}["TX-1003"]
    assert (row["status"], row["reason"], row["decided_by"]) == ("rejected", "no SOW after two weeks", CONTROLLER)
    db = sqlite3.connect(site / "audit.db")
    assert db.execute("SELECT decision, reason FROM decisions WHERE item_no = 4 ORDER BY id").fetchall() == [
        ("held", "until the vendor sends the SOW"), ("rejected", "no SOW after two weeks")]
    assert audit("verify", cwd=site).returncode == 0
    # decisions other than hold are final
    out = reply(site, "approve 4")
    assert "0 decision(s) recorded" in out


def age(site: Path, minutes: int) -> None:
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - minutes * 60))
    with sqlite3.connect(site / "audit.db") as db:
        db.execute("UPDATE requests SET created_at = ?", (created,))


def test_reminders_list_held_items_and_expiry_ends_them(site: Path) -> None:
    reply(site, "approve 1, 2, 3\nhold 4")
    age(site, 61)
    assert audit("poll", "--once", cwd=site).returncode == 0
    [reminder] = [m for m in maildir_messages(site / "var" / "mail" / "outbox") if str(m["Subject"]).startswith("Reminder")]
    body = plain_body(reminder)
    assert "still open (pending or held)" in body and re.search(r"^\[4\] TX-1003 ", body, re.M)
    age(site, 181)
    out = audit("poll", "--once", cwd=site).stdout
    assert "closed" in out
    assert statuses(site)["TX-1003"] == "expired"
    assert audit("verify", cwd=site).returncode == 0


def test_approval_mode_never_says_why_each_item_is_held(tmp_path: Path) -> None:
    site = write_site(tmp_path / "site", [CONTROLLER])
    (site / "audit.toml").write_text((site / "audit.toml").read_text().replace("[policy]", '[policy]\napproval_mode = "never"'))
    assert audit("run", "--ledger", str(EXAMPLE_LEDGER), cwd=site).returncode == 0
    held = [r for r in report_json(site) if r["status"] == "held"]
    assert len(held) == 4
    assert {r["reason"] for r in held} == {'held: approval_mode is "never", so no approval was requested'}
