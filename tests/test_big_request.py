"""Thousands of flagged items: still one email, the top items listed, all of them attached."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import sqlite3
from pathlib import Path

import pytest

from helpers import audit, build_reply, drop_reply, maildir_messages, plain_body, html_body, report_json, write_config
from job.store.auditlog import canonical
from job.mail.message import safe_filename
from job.approval.reply import parse_commands

FLAGGED = 1_100
LEDGER_NAME = 'Büro ledger (Nov) "final".csv'


def write_ledger(folder: Path) -> Path:
    lines = ["id,date,amount,currency,vendor,memo,account"]
    for n in range(1, FLAGGED + 1):
        vendor = '"=HYPERLINK(""http://x"")"' if n == 7 else "Acme Office Supply"
        lines.append(f"F-{n:04d},2026-11-24,{n}.{n % 100:02d},USD,{vendor},Misc,6100")  # vague memo
    lines[-1] = "F-1100,2026-11-24,25000.00,USD,Acme Office Supply,Misc,6100"  # two findings: ranked first
    lines += [f"C-{n},2026-11-24,{n}.50,USD,Acme Office Supply,Toner {n},6100" for n in range(50)]
    path = folder / LEDGER_NAME
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def site(tmp_path: Path) -> Path:
    write_config(tmp_path / "audit.toml", {"db": "audit.db"},
                 policy={"known_vendors": ["Acme Office Supply", "=HYPERLINK(\"http://x\")"]}, request={"max_listed": 10})
    result = audit("run", "--ledger", str(write_ledger(tmp_path)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"{FLAGGED} flagged" in result.stdout
    return tmp_path


def attachment(message) -> tuple[str, str]:
    [part] = [p for p in message.iter_attachments()]
    return part.get_filename(), part.get_content()


def test_one_email_lists_the_top_items_and_attaches_all(site: Path) -> None:
    [request] = maildir_messages(site / "var" / "mail" / "outbox")
    body = plain_body(request)
    listed = re.findall(r"^\[(\d+)\] (F-\d+)", body, re.M)
    assert [n for n, _ in listed] == [str(n) for n in range(1, 11)]
    assert listed[0][1] == "F-1100"  # most findings first, then the largest amounts
    assert [tx for _, tx in listed[1:]] == [f"F-{n:04d}" for n in range(1099, 1090, -1)]
    name = "flagged-items-Buro-ledger-Nov-final.csv"
    assert request["Subject"].endswith("1,100 transactions need your approval")
    assert f"... and 1,090 more, numbered 11 to 1100, in the attached file {name}." in body
    assert "All 1,100, numbered, with exact amounts, are in the attached file" in body
    assert "To approve a range from the attachment, write:  approve 11-1100" in body
    assert name in html_body(request)
    filename, content = attachment(request)
    assert filename == name
    rows = list(csv.DictReader(io.StringIO(content.lstrip("\ufeff"))))
    assert [int(r["no"]) for r in rows] == list(range(1, FLAGGED + 1))
    db = sqlite3.connect(site / "audit.db")
    numbered = dict(db.execute("SELECT item_no, txn_id FROM transactions WHERE item_no IS NOT NULL"))
    assert {int(r["no"]): r["id"] for r in rows} == numbered
    by_id = {r["id"]: r for r in rows}
    assert by_id["F-1100"]["amount"] == "25000.00" and by_id["F-0042"]["amount"] == "42.42"
    assert by_id["F-0007"]["vendor"] == "'=HYPERLINK(\"http://x\")"  # never a formula in a spreadsheet
    assert by_id["F-0042"]["reasons"] == "memo uses the vague term 'misc'"
    assert len(body) < 20_000


def test_replies_use_numbers_and_ids_from_the_attachment(site: Path) -> None:
    [request] = maildir_messages(site / "var" / "mail" / "outbox")
    reply = "approve 11-1000\nreject 1: no purchase order\nhold F-0003"  # F-0003 is item 1098, only in the attachment
    drop_reply(site / "var" / "mail", build_reply(request, reply, sender="controller@example.com"))
    result = audit("poll", "--once", cwd=site)
    assert result.returncode == 0, result.stderr
    assert "992 decision(s) recorded" in result.stdout
    rows = {r["transaction_id"]: r for r in report_json(site)}
    assert rows["F-1100"]["status"] == "rejected" and rows["F-1100"]["reason"] == "no purchase order"
    assert rows["F-0003"]["status"] == "held"
    db = sqlite3.connect(site / "audit.db")
    status_of_no = dict(db.execute("SELECT item_no, status FROM transactions WHERE item_no IS NOT NULL"))
    assert all(status_of_no[n] == "approved" for n in range(11, 1001))
    pending = sorted(n for n, status in status_of_no.items() if status == "pending")
    assert pending == [*range(2, 11), *(n for n in range(1001, 1101) if n != 1098)]
    confirmation = plain_body(maildir_messages(site / "var" / "mail" / "outbox")[-1])
    assert len(re.findall(r"^- item \d+ .*: (approved|rejected|held)", confirmation, re.M)) == 10
    assert "- ... and 982 more (990 approved, 1 held, 1 rejected in all)" in confirmation
    assert "Still pending (108):" in confirmation and "- ... and 98 more" in confirmation


def test_approve_all_closes_the_request_with_a_short_confirmation(site: Path) -> None:
    [request] = maildir_messages(site / "var" / "mail" / "outbox")
    drop_reply(site / "var" / "mail", build_reply(request, "approve all", sender="controller@example.com"))
    result = audit("poll", "--once", cwd=site)
    assert result.returncode == 0, result.stderr
    assert f"{FLAGGED} decision(s) recorded" in result.stdout and "closed" in result.stdout
    confirmation = plain_body(maildir_messages(site / "var" / "mail" / "outbox")[-1])
    assert "- ... and 1,090 more (1,100 approved in all)" in confirmation
    db = sqlite3.connect(site / "audit.db")
    assert db.execute("SELECT summary FROM requests").fetchone()[0] == "Human decisions recorded: 1100 approved."


def test_the_request_event_holds_a_digest_of_a_long_item_list(site: Path) -> None:
    db = sqlite3.connect(site / "audit.db")
    detail = json.loads(db.execute("SELECT detail FROM events WHERE kind = 'request'").fetchone()[0])
    pairs = [list(r) for r in db.execute("SELECT item_no, txn_id FROM transactions WHERE item_no IS NOT NULL ORDER BY item_no")]
    assert detail["item_count"] == FLAGGED and "items" not in detail
    assert detail["items_sha256"] == hashlib.sha256(canonical(pairs).encode("utf-8")).hexdigest()
    assert audit("verify", cwd=site).returncode == 0


def test_ranges_as_long_as_the_request_are_accepted() -> None:
    [command] = parse_commands("approve 1-15000", row_count=15_000, known_ids=()).commands
    assert len(command.targets) == 15_000
    assert parse_commands("approve 1-20000", row_count=15_000, known_ids=()).unclear == ("line 'approve 1-20000': the range 1-20000 is too large",)


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("flagged-items.csv", "flagged-items.csv"),
        ("../../etc/passwd.csv", "etc-passwd.csv"),
        ("Rechnungen März 2026.csv", "Rechnungen-Marz-2026.csv"),
        ("a\r\nBcc: x@y.csv", "a-Bcc-x-y.csv"),
        ("納品.csv", "attachment.csv"),
        ("x" * 200 + ".csv", "x" * 76 + ".csv"),
    ],
)
def test_attachment_names_are_safe(name: str, safe: str) -> None:
    assert safe_filename(name) == safe


def test_a_csv_too_big_for_mail_servers_is_attached_zipped() -> None:
    import zipfile

    from job.approval.request import ZIP_ABOVE_BYTES, csv_attachment

    def attachment(name: str, text: str):
        return csv_attachment(name, lambda out: out.write(text.encode("utf-8")))

    small = "\ufeffno,id\r\n1,A\r\n"
    assert attachment("flagged-items-x.csv", small) == ("flagged-items-x.csv", small)
    big = "\ufeffno,id,reasons\r\n" + "".join(f"{n},B-{n:07d},same vendor and amount as an earlier payment\r\n" for n in range(200_000))
    assert len(big.encode()) > ZIP_ABOVE_BYTES
    name, data = attachment("flagged-items-x.csv", big)
    assert name == "flagged-items-x.csv.zip" and len(data) < len(big) / 5
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == ["flagged-items-x.csv"]
        assert archive.read("flagged-items-x.csv").decode("utf-8") == big


def test_audit_items_exports_the_attachment_byte_for_byte(tmp_path: Path) -> None:
    write_config(tmp_path / "audit.toml", {"db": "audit.db"},
                 policy={"known_vendors": ["Acme Office Supply", "=HYPERLINK(\"http://x\")"]}, request={"max_listed": 10})
    assert audit("run", "--ledger", str(write_ledger(tmp_path)), cwd=tmp_path).returncode == 0
    [request] = maildir_messages(tmp_path / "var" / "mail" / "outbox")
    request_id = re.search(r"Request ([0-9a-f]{32})", plain_body(request)).group(1)
    _, attached = attachment(request)
    result = audit("items", request_id, "--out", "items.csv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"wrote {FLAGGED} item(s) of request {request_id} to items.csv" in result.stderr
    assert (tmp_path / "items.csv").read_bytes().decode("utf-8") == attached
    # to stdout, by a unique beginning of the id, and only what is still pending once some are decided
    drop_reply(tmp_path / "var" / "mail", build_reply(request, "approve 1-1000", sender="controller@example.com"))
    assert audit("poll", "--once", cwd=tmp_path).returncode == 0
    pending = audit("items", request_id[:8], "--pending", cwd=tmp_path)
    assert pending.returncode == 0, pending.stderr
    rows = list(csv.DictReader(io.StringIO(pending.stdout.lstrip("\ufeff"))))
    assert [int(r["no"]) for r in rows] == list(range(1001, FLAGGED + 1))


def test_audit_items_refuses_an_unknown_or_malformed_request_in_one_line(site: Path) -> None:
    for given, line in (
        ("0123456789abcdef0123456789abcdef", "request 0123456789abcdef0123456789abcdef: no such request in this audit database"),
        ("nothex", "request 'nothex': give the id the request email ends with (32 hexadecimal digits)"),
        ("abc", "request 'abc': give the id the request email ends with (32 hexadecimal digits)"),
    ):
        result = audit("items", given, cwd=site)
        assert (result.returncode, result.stdout, result.stderr.splitlines()) == (4, "", [f"audit: error: {line}"])


def test_a_list_too_big_to_attach_is_left_out_and_the_email_says_how_to_get_it(tmp_path: Path) -> None:
    write_config(tmp_path / "audit.toml", {"db": "audit.db"},
                 policy={"known_vendors": ["Acme Office Supply", "=HYPERLINK(\"http://x\")"]},
                 request={"max_listed": 10, "max_attachment_bytes": 20_000})
    result = audit("run", "--ledger", str(write_ledger(tmp_path)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [request] = maildir_messages(tmp_path / "var" / "mail" / "outbox")
    request_id = re.search(r"Request ([0-9a-f]{32})", plain_body(request)).group(1)
    assert list(request.iter_attachments()) == []
    body = plain_body(request)
    assert "All 1,100, numbered, with exact amounts, make a list too large to attach (192 kB;" in body
    assert "this setup attaches at most 20 kB). Whoever runs the audit can export it with" in body
    assert f'the command "audit items {request_id}". Its numbers and ids work in your reply.' in body
    assert "... and 1,090 more, numbered 11 to 1100, in the full list." in body
    assert "To approve a range from the full list, write:  approve 11-1100" in body
    assert f"audit items {request_id}" in html_body(request)
    assert (f"audit: warning: the list of 1,100 flagged items (192 kB) is over [request] max_attachment_bytes (20 kB),"
            f" so the request does not attach it; 'audit items {request_id}' exports it") in result.stderr
    # the instructions, quoted back, decide nothing; numbers only in the full list still work
    assert parse_commands(body, row_count=FLAGGED, known_ids=[f"F-{n:04d}" for n in range(1, FLAGGED + 1)]).commands == ()
    drop_reply(tmp_path / "var" / "mail", build_reply(request, "approve 1000-1100", sender="controller@example.com"))
    assert audit("poll", "--once", cwd=tmp_path).returncode == 0
    decided = {r["transaction_id"]: r["status"] for r in report_json(tmp_path) if r["status"] == "approved"}
    assert len(decided) == 101
