"""A known id that comes back with other facts is a new version, flagged and sent to the
approver; the old version and its decision stay; a plain re-import records nothing."""

from __future__ import annotations

from pathlib import Path

from helpers import Outbox, audit, build_reply, drop_reply, plain_body, poll_site, report_json, write_site

HEADER = "id,date,amount,currency,vendor,memo,account\n"
APPROVER = "controller@example.com"


def ledger(path: Path, *rows: str) -> Path:
    path.write_text(HEADER + "".join(row + "\n" for row in rows), encoding="utf-8")
    return path


def run(site: Path, *ledgers: Path):
    args = [a for p in ledgers for a in ("--ledger", str(p))]
    result = audit("run", *args, cwd=site)
    assert result.returncode == 0, result.stderr
    return result


def versions(site: Path, txn_id: str) -> list[tuple[int, str, str]]:
    return [(r["version"], r["amount"], r["status"]) for r in report_json(site) if r["transaction_id"] == txn_id]


def test_a_later_export_that_changes_an_approved_amount_is_a_new_version_for_the_approver(tmp_path: Path) -> None:
    site = write_site(tmp_path / "site", [APPROVER])
    outbox = Outbox(site)
    run(site, ledger(tmp_path / "n1.csv", "TX-2001,2026-11-30,500.00,USD,Acme Office Supply,Office chairs,6100"))
    assert versions(site, "TX-2001") == [(1, "500.00", "auto_approved")]
    outbox.new()

    result = run(site, ledger(tmp_path / "n2.csv", 'TX-2001,2026-11-30,"50,000.00",USD,Acme Office Supply,Office chairs,6100'))
    assert "n2.csv: 1 transactions (1 new, 1 of them amended)" in result.stdout
    assert "1 flagged" in result.stdout
    assert versions(site, "TX-2001") == [(1, "500.00", "auto_approved"), (2, "50000.00", "pending")]
    [request] = outbox.new()
    body = plain_body(request)
    assert "TX-2001" in body
    assert "amended: version 2 of TX-2001, which run 1 recorded as version 1: amount 500.00 USD → 50,000.00 USD" in body
    row = [r for r in report_json(site) if r["transaction_id"] == "TX-2001"][1]
    assert "amended" in row["flags"] and "large_amount" in row["flags"]

    again = run(
        site,
        ledger(tmp_path / "n3.csv", 'TX-2001,2026-11-30,"50,000.00",USD,Acme Office Supply,Office chairs,6100', "TX-2002,2026-12-01,9.00,USD,Acme Office Supply,Pens,6100"),
    )
    assert "n3.csv: 2 transactions (1 new)" in again.stdout  # TX-2001 with the same facts again: a re-import, nothing recorded
    assert len(versions(site, "TX-2001")) == 2
    assert audit("verify", cwd=site).returncode == 0


def test_an_approved_item_changed_later_goes_back_to_the_approver_and_the_approval_stays(tmp_path: Path) -> None:
    site = write_site(tmp_path / "site", [APPROVER])
    outbox = Outbox(site)
    run(site, ledger(tmp_path / "n1.csv", 'TX-3001,2026-11-30,"15,000.00",USD,Acme Office Supply,Desks,6100'))
    [request] = outbox.new()
    drop_reply(site / "var" / "mail", build_reply(request, "approve all", sender=APPROVER))
    poll_site(site)
    assert versions(site, "TX-3001") == [(1, "15000.00", "approved")]

    run(site, ledger(tmp_path / "n2.csv", 'TX-3001,2026-11-30,"15,000.00",USD,Acme Office Supply,Desks and chairs,6100'))
    assert versions(site, "TX-3001") == [(1, "15000.00", "approved"), (2, "15000.00", "pending")]
    new_request = [m for m in outbox.new() if "run 2" in m["Subject"] and not m["Subject"].startswith("Recorded")]
    assert new_request and "memo 'Desks' → 'Desks and chairs'" in plain_body(new_request[0])
    rows = [r for r in report_json(site) if r["transaction_id"] == "TX-3001"]
    assert "duplicate_payment" not in rows[1]["flags"]  # an earlier version is not a second payment
    assert rows[0]["decided_by"] == APPROVER and rows[1]["decided_by"] == ""
    assert audit("verify", cwd=site).returncode == 0


def test_the_same_id_twice_in_one_run_with_other_facts_is_two_versions(tmp_path: Path) -> None:
    site = write_site(tmp_path / "site", [APPROVER])
    a = ledger(tmp_path / "a.csv", "TX-4001,2026-11-30,120.00,USD,Acme Office Supply,Toner,6100")
    b = ledger(tmp_path / "b.csv", "TX-4001,2026-11-30,120.00,USD,Globex Travel,Toner,6100")
    c = ledger(tmp_path / "c.csv", "TX-4001,2026-11-30,120.00,USD,Globex Travel,Toner,6100", "TX-4002,2026-11-30,5.00,USD,Globex Travel,Tea,6100")
    result = run(site, a, b, c)
    assert "b.csv: 1 transactions (1 new, 1 of them amended)" in result.stdout
    assert "c.csv: 2 transactions (1 new)" in result.stdout  # its TX-4001 repeats b.csv's exactly
    rows = [r for r in report_json(site) if r["transaction_id"] == "TX-4001"]
    assert [(r["version"], r["vendor"], r["status"]) for r in rows] == [(1, "Acme Office Supply", "auto_approved"), (2, "Globex Travel", "pending")]
    assert "amended" in rows[1]["flags"]
    [request] = Outbox(site).new()
    assert "which an earlier ledger of this run recorded as version 1: vendor 'Acme Office Supply' → 'Globex Travel'" in plain_body(request)
    assert audit("verify", cwd=site).returncode == 0
