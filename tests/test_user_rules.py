"""Rules of the policy file's own: SQL conditions on one transaction, safely evaluated."""

from __future__ import annotations

import sqlite3
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from helpers import audit, errors_of, maildir_messages, report_json, write_config
from job.config import Config, Policy, UserRule
from job.errors import ConfigError
from job.ledger.ingest import Transaction
from job.ledger.ingest_fast import transactions_frame
from job.screening.rules import compile_rules, match_rules, rule_columns

LEDGER = (
    "id,date,amount,currency,vendor,memo,account\n"
    'C-1,2026-11-24,"5,000.01",USD,Contoso Consulting,Strategy workshop,6400\n'
    'C-2,2026-11-24,"5,000.00",USD,Contoso Consulting,Strategy workshop,6400\n'
    'C-3,2026-11-28,"9,000.00",USD,Acme Office Supply,Desks,6100\n'
    "C-4,2026-11-24,9000,JPY,Acme Office Supply,Chairs,6100\n"
)


def compiled(*rules: tuple[str, str], where: Path | None = None) -> list:
    config = Config(path=where, policy=Policy(rules=tuple(
        UserRule(name=name, when=when, reason=f"reason of {name}", key=f"policy.rules[{n}]") for n, (name, when) in enumerate(rules, 1))))
    return compile_rules(config)


def tx(txn_id: str, amount_minor: int, *, currency: str = "USD", vendor: str = "Contoso Consulting", day: str = "2026-11-24",
       memo: str = "Workshop", account: str = "6400") -> Transaction:
    return Transaction(txn_id, day, amount_minor, currency, vendor, memo, account, 2)


def hits(rules, *items: Transaction) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for _, rule, positions in match_rules(rules, transactions_frame(list(items))):
        for i in positions.to_list():
            found.setdefault(i, []).append(rule.name)
    return dict(sorted(found.items()))


# --- evaluation -----------------------------------------------------------------------


def test_amounts_compare_exactly_as_decimals() -> None:
    rules = compiled(("over", "amount > 5000"), ("cents", "amount = 5000.01"), ("tiny", "amount >= 0.1 + 0.2"))
    assert hits(rules, tx("A", 500_001), tx("B", 500_000), tx("C", 30), tx("D", 29)) == {
        0: ["over", "cents", "tiny"], 1: ["tiny"], 2: ["tiny"],
    }


def test_amount_is_in_each_transactions_own_currency() -> None:
    rules = compiled(("big", "amount >= 1000"))
    assert hits(rules, tx("Y", 1_000, currency="JPY"), tx("K", 999_999, currency="KWD"), tx("U", 99_999)) == {0: ["big"]}


def test_text_dates_and_functions() -> None:
    rules = compiled(
        ("consult", "vendor ILIKE '%consult%' AND amount > 100"),
        ("december", "date >= DATE '2026-12-01'"),
        ("weekend", "EXTRACT(DOW FROM date) IN (0, 6)"),
        ("account_list", "account IN ('6100', '6200') OR lower(memo) LIKE '%desk%'"),
    )
    items = (tx("A", 50_000), tx("B", 100, vendor="Acme", day="2026-12-05", account="6100"), tx("C", 100, vendor="Acme", memo="DESK"))
    assert hits(rules, *items) == {0: ["consult"], 1: ["december", "weekend", "account_list"], 2: ["account_list"]}


def test_rules_frame_columns() -> None:
    frame = rule_columns(transactions_frame([tx("A", -5, memo="", account="")]))
    assert frame.row(0) == ("A", date(2026, 11, 24), Decimal("-0.0500"), "USD", "Contoso Consulting", "", "")


# --- refusals -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "problem"),
    [
        ("amount >", "cannot read 'amount >': unable to parse 'amount >' as Expr"),
        ("vendr = 'x'", "unknown column 'vendr'; the columns are id, date, amount, currency, vendor, memo, account"),
        ("amount", "must be a condition (true or false), but 'amount' gives Decimal(precision=38, scale=4)"),
        ("date > '2026-01-01'", "cannot evaluate \"date > '2026-01-01'\": cannot compare a date with text (write dates as DATE '2026-11-01')"),
        ("max(amount) > 5", "aggregate and window functions are not allowed (Agg): a rule looks at one transaction at a time"),
        ("amount > avg(amount)", "aggregate and window functions are not allowed (Agg): a rule looks at one transaction at a time"),
        ("count(*) OVER (PARTITION BY vendor) > 1", "aggregate and window functions are not allowed (Len, Over): a rule looks at one transaction at a time"),
    ],
)
def test_a_bad_expression_is_a_config_error_naming_the_rule(when: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        compiled(("ok_rule", "amount > 1"), ("bad_rule", when), where=Path("/srv/audit.toml"))
    assert str(caught.value) == f"/srv/audit.toml: policy.rules[2] (bad_rule): when: {problem}"
    assert caught.value.exit_code == 3


@pytest.mark.parametrize(
    "when",
    [
        "amount > (SELECT max(amount_minor) FROM transactions)",
        "amount IN (SELECT amount_minor FROM transactions)",
        "EXISTS (SELECT 1 FROM sqlite_master)",
        "vendor IN (SELECT name FROM vendors)",
    ],
)
def test_other_tables_and_subqueries_are_refused(when: str) -> None:
    with pytest.raises(ConfigError, match=r"subqueries and other tables are not allowed"):
        compiled(("sneaky", when))


@pytest.mark.parametrize(
    "when",
    [
        "1=1; DROP TABLE transactions",
        "amount > 5; DELETE FROM decisions",
        "read_csv('/etc/passwd') IS NULL",
        "ATTACH DATABASE 'x.db' AS x",
        "amount > 5 -- ; UPDATE transactions SET status = 'approved'",
    ],
)
def test_statements_and_file_access_are_refused(when: str) -> None:
    try:
        rules = compiled(("sneaky", when))
    except ConfigError as exc:
        assert "policy.rules[1] (sneaky): when: " in str(exc)
        return
    # a trailing SQL comment is just a comment: what is left must still be a plain condition
    assert hits(rules, tx("A", 600), tx("B", 400)) == {0: ["sneaky"]}


# --- end to end -----------------------------------------------------------------------


def test_user_rule_flags_with_its_code_and_reason(tmp_path: Path) -> None:
    (tmp_path / "ledger.csv").write_text(LEDGER, encoding="utf-8")
    write_config(tmp_path / "audit.toml", {"db": "audit.db"}, policy={"known_vendors": ["Contoso Consulting", "Acme Office Supply"]})
    with open(tmp_path / "audit.toml", "a", encoding="utf-8") as handle:
        handle.write('\n[[policy.rules]]\nname = "consulting_large"\nwhen = "amount > 5000 AND vendor LIKE \'%Consult%\'"\n'
                     'reason = "large consulting payment: check the statement of work"\n'
                     '\n[[policy.rules]]\nname = "weekend"\nwhen = "EXTRACT(DOW FROM date) IN (0, 6)"\nreason = "paid on a weekend"\n')
    result = audit("run", "--ledger", str(tmp_path / "ledger.csv"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    flags = {r["transaction_id"]: r["flags"] for r in report_json(tmp_path)}
    assert flags == {"C-1": ["consulting_large"], "C-2": [], "C-3": ["weekend"], "C-4": []}
    stored = sqlite3.connect(tmp_path / "audit.db").execute("SELECT flags FROM transactions WHERE txn_id = 'C-1'").fetchone()[0]
    assert '"reason": "large consulting payment: check the statement of work"' in stored
    body = maildir_messages(tmp_path / "var" / "mail" / "outbox")[0].get_body(("plain",)).get_content()
    assert "large consulting payment: check the statement of work" in body


def test_invalid_rule_stops_the_run_before_anything_is_read_or_written(tmp_path: Path) -> None:
    (tmp_path / "ledger.csv").write_text(LEDGER, encoding="utf-8")
    (tmp_path / "audit.toml").write_text(
        'db = "audit.db"\n[[policy.rules]]\nname = "broken"\nwhen = "amount >> 5000 AND"\nreason = "x"\n', encoding="utf-8")
    result = audit("run", "--ledger", str(tmp_path / "ledger.csv"), cwd=tmp_path)
    assert result.returncode == 3
    lines = errors_of(result).splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"audit: error: {tmp_path / 'audit.toml'}: policy.rules[1] (broken): when: cannot read ")
    assert not (tmp_path / "audit.db").exists()


def test_a_rule_reaching_for_a_table_is_refused_from_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "ledger.csv").write_text(LEDGER, encoding="utf-8")
    (tmp_path / "audit.toml").write_text(
        'db = "audit.db"\n[[policy.rules]]\nname = "peek"\nwhen = "amount > (SELECT max(amount_minor) FROM transactions)"\nreason = "x"\n',
        encoding="utf-8")
    result = audit("run", "--ledger", str(tmp_path / "ledger.csv"), cwd=tmp_path)
    assert result.returncode == 3
    assert "policy.rules[1] (peek): when: cannot read" in result.stderr and "subqueries and other tables are not allowed" in result.stderr
    assert "Traceback" not in result.stderr
