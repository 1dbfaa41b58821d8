"""`audit run` reads every export format, found from the content or named, as a new user runs it:
no configuration beyond the approvers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import audit, report_json, write_config

FIXTURES = Path(__file__).parent / "fixtures" / "formats"
EXPECTED = {
    "camt053_v08.xml": "camt053",
    "camt053_v02.xml": "camt053",
    "mt940_deutsche.sta": "mt940",
    "ofx1_checking.ofx": "ofx",
    "ofx2_creditcard.qfx": "ofx",
    "bai2_prior_day.bai": "bai2",
    "quickbooks_transaction_detail.csv": "quickbooks",
    "quickbooks_journal.csv": "quickbooks",
    "xero_bank_statement.csv": "xero",
    "netsuite_saved_search.csv": "netsuite",
    "sap_fbl1n.csv": "sap",
    "datev_buchungsstapel.csv": "datev",
}


def site(tmp_path: Path, **ledger) -> Path:
    folder = tmp_path / "site"
    folder.mkdir()
    sections = {"approvers": {"addresses": ["controller@example.com"]}}
    if ledger:
        sections["ledger"] = ledger
    write_config(folder / "audit.toml", {"db": "audit.db"}, **sections)
    return folder


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_format_runs_with_no_configuration_and_says_how_it_was_read(tmp_path: Path, name: str) -> None:
    folder = site(tmp_path)
    ledger = folder / name
    shutil.copy(FIXTURES / name, ledger)
    inspected = audit("inspect", name, "--json", cwd=folder)
    result = audit("run", "--ledger", name, cwd=folder)
    assert result.returncode == 0, result.stderr
    assert f"; read as {EXPECTED[name]})" in result.stdout
    rows = report_json(folder)
    assert rows and len(rows) == int(__import__("json").loads(inspected.stdout)["rows"])
    assert audit("verify", cwd=folder).returncode == 0
    again = audit("run", "--ledger", name, cwd=folder)
    assert "already imported, skipped" in again.stdout  # the same statement twice records it once


def test_a_named_format_is_used_and_a_wrong_one_is_one_line_exit_4(tmp_path: Path) -> None:
    folder = site(tmp_path)
    shutil.copy(FIXTURES / "mt940_deutsche.sta", folder / "statement.txt")
    named = audit("run", "--ledger", "statement.txt", "--format", "mt940", cwd=folder)
    assert named.returncode == 0, named.stderr
    assert "; read as mt940)" in named.stdout
    shutil.copy(FIXTURES / "ofx1_checking.ofx", folder / "other.txt")
    wrong = audit("run", "--ledger", "other.txt", "--format", "camt053", cwd=folder)
    assert wrong.returncode == 4
    errors = [line for line in wrong.stderr.splitlines() if not line.startswith("audit: warning:")]
    assert len(errors) == 1 and errors[0].startswith("audit: error: other.txt")


def test_the_config_can_name_the_format(tmp_path: Path) -> None:
    folder = site(tmp_path, format="bai2")
    shutil.copy(FIXTURES / "bai2_prior_day.bai", folder / "bank.dat")
    result = audit("run", "--ledger", "bank.dat", cwd=folder)
    assert result.returncode == 0, result.stderr
    assert "; read as bai2)" in result.stdout


def test_an_xlsx_export_runs_like_its_csv(tmp_path: Path) -> None:
    from datetime import date

    from xlsx_writer import Number, write_xlsx

    folder = site(tmp_path)
    rows = [
        ["Internal ID", "Date", "Type", "Name", "Memo", "Amount"],
        ["1", date(2026, 11, 3), "Bill", "Acme Office Supply", "paper", Number("12345.67")],
        ["2", date(2026, 11, 4), "Bill", "Müller Bürobedarf GmbH", "chairs", Number("250")],
    ]
    write_xlsx(folder / "search.xlsx", rows)
    result = audit("run", "--ledger", "search.xlsx", cwd=folder)
    assert result.returncode == 0, result.stderr
    assert "search.xlsx: 2 transactions (2 new; read as netsuite)" in result.stdout
    amounts = sorted(r["amount"] for r in report_json(folder))
    assert amounts == ["12345.67", "250.00"]
