"""An export with no transactions is loud: exit 11, one line, nothing recorded, unless --allow-empty."""

from __future__ import annotations

import shutil
from pathlib import Path

from helpers import audit, errors_of, write_config

FORMATS = Path(__file__).parent / "fixtures" / "formats"


def site(tmp_path: Path) -> Path:
    folder = tmp_path / "site"
    folder.mkdir()
    write_config(folder / "audit.toml", {"db": "audit.db"}, approvers={"addresses": ["controller@example.com"]})
    return folder


def test_a_header_without_rows_is_exit_11_and_records_nothing(tmp_path: Path) -> None:
    folder = site(tmp_path)
    (folder / "ledger.csv").write_text("id,date,amount,currency,vendor,memo\n", encoding="utf-8")
    result = audit("run", "--ledger", "ledger.csv", cwd=folder)
    assert result.returncode == 11
    assert errors_of(result) == (
        "audit: error: ledger.csv: no transactions in this ledger (an export that failed?); nothing recorded"
        " (--allow-empty records an empty night)\n"
    )
    assert not (folder / "audit.db").exists()


def test_an_empty_bank_statement_is_refused_too(tmp_path: Path) -> None:
    folder = site(tmp_path)
    text = (FORMATS / "mt940_deutsche.sta").read_text(encoding="latin-1")
    head = text.split(":61:", 1)[0]
    opening = next(line for line in head.splitlines() if line.startswith(":60F:"))
    closing = ":62F:" + opening.removeprefix(":60F:")
    (folder / "empty.sta").write_text(head.rstrip("\n") + "\n" + closing + "\n-\n", encoding="latin-1")
    result = audit("run", "--ledger", "empty.sta", "--format", "mt940", cwd=folder)
    assert result.returncode == 11, result.stderr
    assert "empty.sta: no transactions in this ledger" in errors_of(result)
    assert not (folder / "audit.db").exists()


def test_allow_empty_records_an_empty_night(tmp_path: Path) -> None:
    folder = site(tmp_path)
    (folder / "ledger.csv").write_text("id,date,amount,currency,vendor,memo\n", encoding="utf-8")
    result = audit("run", "--ledger", "ledger.csv", "--allow-empty", cwd=folder)
    assert result.returncode == 0, result.stderr
    assert "ledger.csv: 0 transactions" in result.stdout
    assert audit("verify", cwd=folder).returncode == 0
