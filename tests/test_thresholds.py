"""[policy.thresholds]: the large-amount threshold per currency, so a ¥15,000 taxi fare is not a large amount."""

from __future__ import annotations

from pathlib import Path

from helpers import Outbox, audit, plain_body, report_json, write_site

LEDGER = (
    "id,date,amount,currency,vendor,memo,account\n"
    "J-1,2026-11-30,15000,JPY,Globex Travel,Taxi to the airport,6200\n"
    'J-2,2026-11-30,"2,000,000",JPY,Globex Travel,Charter flight,6200\n'
    'U-1,2026-11-30,"12,000.00",USD,Globex Travel,Conference travel,6200\n'
)


def flagged(site: Path) -> dict[str, list[str]]:
    return {r["transaction_id"]: r["flags"] for r in report_json(site)}


def test_a_threshold_per_currency_decides_what_is_large(tmp_path: Path) -> None:
    site = write_site(tmp_path / "site", ["controller@example.com"], policy__thresholds={"JPY": 1500000})
    ledger = tmp_path / "ledger.csv"
    ledger.write_text(LEDGER, encoding="utf-8")
    outbox = Outbox(site)
    result = audit("run", "--ledger", str(ledger), cwd=site)
    assert result.returncode == 0, result.stderr
    flags = flagged(site)
    assert "large_amount" not in flags["J-1"]  # about $100: not large in yen either
    assert "large_amount" in flags["J-2"] and "large_amount" in flags["U-1"]
    [request] = outbox.new()
    assert "amount 2,000,000 JPY is above the 1,500,000 threshold" in plain_body(request)  # the yen threshold


def test_without_it_one_threshold_applies_to_every_currency(tmp_path: Path) -> None:
    site = write_site(tmp_path / "site", ["controller@example.com"])
    ledger = tmp_path / "ledger.csv"
    ledger.write_text(LEDGER, encoding="utf-8")
    assert audit("run", "--ledger", str(ledger), cwd=site).returncode == 0
    assert "large_amount" in flagged(site)["J-1"]
