"""Spreadsheet-safe files: every CSV we write keeps formula-leading cells in every column from
being run (a leading `'`), leaves plain numbers such as amounts as they are, and a CSV *file*
starts with a UTF-8 BOM so Excel keeps the accents; standard output has no BOM.

A ledger with hostile text in every column it has goes through the real `audit run`, a reply
and `audit poll`, then `audit report`, `audit items` and the request's attachment are read
back; the attachment and `audit items` are written by the one items writer, byte for byte alike.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from pathlib import Path

import pytest

from helpers import audit, build_reply, drop_reply, maildir_messages, plain_body, write_config
from job.approval.request import _cell, safe_cell

BOM = "\ufeff"
APPROVER = "=ctl@example.com"  # a valid address that starts like a formula: the report's decided_by

# (id, amount, vendor, memo) as the ledger has them, quoted for CSV where needed
LEDGER_ROWS = [
    ("=1+2", "-12.50", '"=HYPERLINK(""http://x"",""y"")"', "\"\t=cmd|' /C calc'!A0\""),  # a tab first: the reader strips it
    ("+SUM(A1)", "250.00", "Müller Bürobedarf", "-Büromaterial"),
    ("-2+3", "-75.10", "@SUM(1+1)", "+Toner"),
    ("@cmd", "10.00", "-Vendor", "Misc"),
    ("-7", "+3.00", "Plain Co", "Toner"),  # an id that is a plain number stays one
    ("N-1", "20.00", "Normal GmbH", "Papier für Büro"),
]
# what the CSVs show for each id: (id, vendor, amount, memo)
SAFE = {
    "=1+2": ("'=1+2", "'=HYPERLINK(\"http://x\",\"y\")", "-12.50", "'=cmd|' /C calc'!A0"),
    "+SUM(A1)": ("'+SUM(A1)", "Müller Bürobedarf", "250.00", "'-Büromaterial"),
    "-2+3": ("'-2+3", "'@SUM(1+1)", "-75.10", "'+Toner"),
    "@cmd": ("'@cmd", "'-Vendor", "10.00", "Misc"),
    "-7": ("-7", "Plain Co", "3.00", "Toner"),
    "N-1": ("N-1", "Normal GmbH", "20.00", "Papier für Büro"),
}


def write_ledger(folder: Path) -> Path:
    lines = ["id,date,amount,currency,vendor,memo,account"]
    lines += [f"{i},2026-11-24,{amount},EUR,{vendor},{memo},6100" for i, amount, vendor, memo in LEDGER_ROWS]
    path = folder / "ledger.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_site(folder: Path) -> Path:
    """A site whose every vendor is new (all flagged), one item listed and the rest attached."""
    folder.mkdir()
    write_config(folder / "audit.toml", {"db": "audit.db"}, approvers={"addresses": [APPROVER]}, request={"max_listed": 1})
    result = audit("run", "--ledger", str(write_ledger(folder)), cwd=folder)
    assert result.returncode == 0, result.stderr
    assert "6 new, 6 flagged" in result.stdout
    return folder


def request_of(site: Path):
    [request] = maildir_messages(site / "var" / "mail" / "outbox")
    return request, re.search(r"Request ([0-9a-f]{32})", plain_body(request)).group(1)


def attached_bytes(request) -> bytes:
    [part] = list(request.iter_attachments())
    assert part.get_filename() == "flagged-items-ledger.csv"
    return part.get_payload(decode=True)


def csv_rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def assert_items_safe(rows: list[dict]) -> None:
    assert sorted(r["id"] for r in rows) == sorted(s[0] for s in SAFE.values())
    for row in rows:
        [raw] = [k for k, s in SAFE.items() if s[0] == row["id"]]
        assert (row["id"], row["vendor"], row["amount"], row["memo"]) == SAFE[raw]


def test_the_rule() -> None:
    assert [safe_cell(t) for t in ("=1+2", "+SUM(A1)", "-2+3", "@cmd", "\tx", "\rx")] == [
        "'=1+2", "'+SUM(A1)", "'-2+3", "'@cmd", "'\tx", "'\rx"]
    assert [safe_cell(t) for t in ("-12.50", "+3", "-7", "0.5", "N-1", "Müller")] == ["-12.50", "+3", "-7", "0.5", "N-1", "Müller"]
    assert [safe_cell(t) for t in ("-1e5", "-.5", "-1,234.50", "-12.50\n", "-١")] == [
        "'-1e5", "'-.5", "'-1,234.50", "'-12.50\n", "'-١"]  # only a plain ASCII decimal is let through
    assert _cell("\t=1") == "'=1"  # flattened first, then kept from formulas


def test_attachment_and_audit_items_neutralise_every_column(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site")
    request, request_id = request_of(site)
    attached = attached_bytes(request)
    assert attached.startswith(BOM.encode("utf-8"))
    assert_items_safe(csv_rows(attached.decode("utf-8-sig")))

    result = audit("items", request_id, "--out", "items.csv", cwd=site)
    assert result.returncode == 0, result.stderr
    assert (site / "items.csv").read_bytes() == attached  # a file: the attachment exactly, BOM and all
    shown = audit("items", request_id, cwd=site)
    assert shown.returncode == 0, shown.stderr
    assert not shown.stdout.startswith(BOM)  # standard output: plain UTF-8
    assert csv_rows(shown.stdout) == csv_rows(attached.decode("utf-8-sig"))


def test_report_file_has_a_bom_and_no_formulas(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site")
    request, request_id = request_of(site)
    numbers = {r["id"]: r["no"] for r in csv_rows(attached_bytes(request).decode("utf-8-sig"))}
    reply = (f'reject =1+2: =HYPERLINK("http://evil")\n'
             f"hold {numbers['-7']}: @ask the vendor\n"
             f"approve {numbers[SAFE['+SUM(A1)'][0]]}, {numbers[SAFE['-2+3'][0]]}")
    drop_reply(site / "var" / "mail", build_reply(request, reply, sender=APPROVER))
    polled = audit("poll", "--once", cwd=site)
    assert polled.returncode == 0, polled.stderr
    assert "4 decision(s) recorded" in polled.stdout, polled.stdout

    result = audit("report", "--format", "csv", "--out", "r.csv", cwd=site)
    assert result.returncode == 0, result.stderr
    data = (site / "r.csv").read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    manifest = json.loads((site / "r.csv.manifest.json").read_text(encoding="utf-8"))
    assert manifest["sha256"] == hashlib.sha256(data).hexdigest() and manifest["rows"] == 6  # of the bytes written

    with open(site / "r.csv", encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["transaction_id"] for r in rows] == [s[0] for s in SAFE.values()]
    for row, (tid, vendor, amount, memo) in zip(rows, SAFE.values()):
        assert (row["transaction_id"], row["vendor"], row["amount"], row["memo"]) == (tid, vendor, amount, memo)
        assert row["currency"] == "EUR" and row["date"] == "2026-11-24" and row["request_id"] == request_id
    by_id = {r["transaction_id"]: r for r in rows}
    rejected = by_id["'=1+2"]
    assert rejected["status"] == "rejected" and rejected["decided_by"] == "'" + APPROVER
    assert rejected["reason"] == "'=HYPERLINK(\"http://evil\")"
    held = by_id["-7"]
    assert held["status"] == "held" and held["reason"] == "'@ask the vendor"
    assert by_id["'+SUM(A1)"]["vendor"] == "Müller Bürobedarf"  # accents intact
    assert by_id["'-2+3"]["amount"] == "-75.10" and by_id["'=1+2"]["amount"] == "-12.50"  # numbers, not text
    assert by_id["'@cmd"]["status"] == "pending" and by_id["'@cmd"]["flags"] == "vague_memo;unfamiliar_vendor"
    for row in rows:  # no cell in any column can start a formula
        for value in row.values():
            assert not value.startswith(("=", "+", "@", "\t", "\r")) and (not value.startswith("-") or re.fullmatch(r"-[0-9.]+", value))

    shown = audit("report", "--format", "csv", cwd=site)  # standard output: no BOM, the same rows
    assert shown.returncode == 0 and not shown.stdout.startswith(BOM)
    assert csv_rows(shown.stdout) == rows

    exact = audit("report", "--format", "json", cwd=site)  # JSON is data: exactly as recorded
    assert exact.returncode == 0
    records = {r["transaction_id"]: r for r in json.loads(exact.stdout)}
    assert set(records) == set(SAFE)
    assert records["=1+2"]["vendor"] == '=HYPERLINK("http://x","y")' and records["=1+2"]["decided_by"] == APPROVER
    assert records["=1+2"]["reason"] == '=HYPERLINK("http://evil")' and records["-2+3"]["memo"] == "+Toner"
