"""`audit inspect` as a user runs it: what a file will be read as, and nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from helpers import audit

FIXTURES = Path(__file__).parent / "fixtures" / "formats"


def test_inspect_explains_a_bank_statement_without_touching_the_database(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "camt053_v08.xml", tmp_path / "statement.xml")
    result = audit("inspect", "statement.xml", "--rows", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert out[0] == "statement.xml: camt053 (detected)"
    assert "  amount    <- TxDtls/Amt or AmtDtls/TxAmt/Amt (else Ntry/Amt): DBIT positive, CRDT negative" in out
    assert "rows: 8" in out
    assert "  EUR  net 3171.65  (+7421.65, -4250.00)  in 8 row(s)" in out
    assert "first 3 row(s) as they will be recorded:" in out
    assert (
        "  line 2: FX-2026110500007  2026-11-05  1851.85 EUR  Société Générale Services"
        "  | Consulting October INV-2211 (instructed 2000.00 USD)  | account DE02120300000000202051"
    ) in out
    assert out[-1] == "problems: none"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["statement.xml"]  # no database, no mail folder


def test_inspect_json_has_exact_amounts_and_every_problem(tmp_path: Path) -> None:
    text = (FIXTURES / "xero_bank_statement.csv").read_text(encoding="utf-8")
    bad = tmp_path / "xero.csv"
    bad.write_text(text.replace(",12.50,", ",12.5O,").replace("21/11/2026", "31/11/2026"), encoding="utf-8")
    result = audit("inspect", str(bad), "--json", cwd=tmp_path)
    assert result.returncode == 4, result.stderr
    info = json.loads(result.stdout)
    assert (info["format"], info["rows"]) == ("xero", 1)
    assert info["totals"] == {"EUR": {"rows": 1, "net": "2000.00", "positive": "2000.00", "negative": "0.00"}}
    assert [p["message"] for p in info["problems"]] == [
        f"{bad}:3: Received: '12.5O' is not an amount",
        f"{bad}:5: Date: '31/11/2026' does not match %d %b %Y or %d/%m/%Y or %Y-%m-%d",
    ]
    assert info["first_rows"][0]["amount"] == "2000.00" and info["first_rows"][0]["vendor"] == "Société Générale Services"


def test_inspect_with_a_named_format_and_with_no_format_that_fits(tmp_path: Path) -> None:
    named = audit("inspect", str(FIXTURES / "ofx2_creditcard.qfx"), "--format", "QFX", cwd=tmp_path)
    assert named.returncode == 0, named.stderr
    assert named.stdout.splitlines()[0].endswith("ofx2_creditcard.qfx: ofx (named)")
    wrong = audit("inspect", str(FIXTURES / "camt053_v02.xml"), "--format", "mt940", cwd=tmp_path)
    assert wrong.returncode == 4
    assert wrong.stderr == f"audit: error: {FIXTURES / 'camt053_v02.xml'}: not an MT940 statement: no :20: field\n"
    letter = tmp_path / "letter.txt"
    letter.write_text("Dear team,\nthe figures follow.\n")
    unknown = audit("inspect", str(letter), cwd=tmp_path)
    assert unknown.returncode == 4
    assert unknown.stderr.startswith(f"audit: error: {letter}: matches no known format; tried: csv (")
    assert unknown.stderr.count("\n") == 1 and "Traceback" not in unknown.stderr
    lotus = audit("inspect", str(letter), "--format", "lotus", cwd=tmp_path)
    assert lotus.returncode == 4 and "unknown format 'lotus'; known: csv, quickbooks" in lotus.stderr


def test_the_readme_shows_what_inspect_prints(tmp_path: Path) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    block = readme.split("$ audit inspect statement.xml --rows 2\n", 1)[1].split("```", 1)[0]
    shutil.copy(FIXTURES / "camt053_v08.xml", tmp_path / "statement.xml")
    result = audit("inspect", "statement.xml", "--rows", "2", cwd=tmp_path)
    assert result.stdout == block
