"""Every ledger is screened and recorded column-wise; a file the column-wise reader declines
is read row by row (`ingest`, for its exact messages) and then goes the same way. A run over
such a file records exactly what a run over the same rows read column-wise records: the
same rows, flags, notes, numbers, digests and email.

A blank line at the end of a file makes the column-wise reader decline it (the row reader
skips it), so the same ledgers go through both readers and the two audit databases are
compared. `[ledger] large_file_bytes = 0` makes any file "large": a progress line on a
terminal, and the reviewer imported while the file is read.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import sqlite3
from pathlib import Path

import pytest

from helpers import EXAMPLE_LEDGER, EXAMPLES, audit, maildir_messages, plain_body, write_config

VENDORS = ["Acme Office Supply", "Joe's Diner, Inc.", 'The "Best" Co', "Café Zentral", "Globex Travel", "NewCo Consulting",
           "  Initech  Software ", "INITECH software"]
RULES = """
[[policy.rules]]
name = "consulting_large"
when = "amount > 5000 AND vendor ILIKE '%consult%'"
reason = "large consulting payment"

[[policy.rules]]
name = "cafe"
when = "vendor ILIKE 'café%'"
reason = 'Café "Zentral" \\ check — by hand'
"""


def generated(path: Path, rows: int, seed: int, *, first_day: int = 1, prefix: str = "G") -> Path:
    """A ledger with every rule's cases: currencies, dates over ten days, odd amounts and texts."""
    rng = random.Random(seed)
    lines = ["id,date,amount,currency,vendor,memo,account"]
    for n in range(rows):
        currency = rng.choice(["USD", "USD", "USD", "EUR", "JPY"])
        cents = rng.choice([rng.randint(1, 3_000_000), rng.randint(900_000, 1_000_000), 100_000 * rng.randint(1, 9), 12_345])
        units, fraction = divmod(cents, 100)
        amount = str(cents) if currency == "JPY" else rng.choice([f"{units}.{fraction:02d}", f'"{units:,}.{fraction:02d}"'])
        if rng.random() < 0.02:
            amount = rng.choice(['"$1,234.56"', "(250.00)", "-75.10"]) if currency == "USD" else amount
        vendor = rng.choice(VENDORS)
        vendor = '"' + vendor.replace('"', '""') + '"' if any(c in vendor for c in ',"') else vendor
        memo = rng.choice(["Toner", "Misc", "", "Invoice 77", "various items", "Consulting hours"])
        day = f"2026-11-{first_day + rng.randint(0, 9):02d}"
        lines.append(f"{prefix}-{n:05d},{day},{amount},{currency},{vendor},{memo},{rng.choice(['6100', '6200', ''])}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def site(folder: Path, *, large: bool) -> Path:
    folder.mkdir()
    (folder / "vendors.csv").write_text((EXAMPLES / "vendors.csv").read_text())
    write_config(folder / "audit.toml", {"db": "audit.db"},
                 policy={"known_vendors_file": "vendors.csv", "known_vendors": ["Café Zentral", "Globex Travel"]},
                 policy__round_amounts={"enabled": True}, request={"max_listed": 5},
                 ledger={"large_file_bytes": 0 if large else 10**12})
    with open(folder / "audit.toml", "a", encoding="utf-8") as handle:
        handle.write(RULES)
    return folder


def recorded(folder: Path) -> dict:
    db = sqlite3.connect(folder / "audit.db")
    mail = [plain_body(m) for m in maildir_messages(folder / "var" / "mail" / "outbox")]
    attachments = [p.get_content() for m in maildir_messages(folder / "var" / "mail" / "outbox") for p in m.iter_attachments()]
    return {
        "transactions": db.execute(
            "SELECT id, source, txn_id, date, amount_minor, currency, vendor, vendor_key, memo, account, ledger_file_id, line, run_id,"
            " flags, agent_note, status, item_no, request_id IS NOT NULL FROM transactions ORDER BY id").fetchall(),
        "vendors": db.execute("SELECT vendor_key, name, first_run_id FROM vendors ORDER BY vendor_key").fetchall(),
        "digests": db.execute("SELECT run_id, date, currency, part, payments, vendor_hashes, amounts, transaction_ids"
                              " FROM payment_digests ORDER BY date, currency, run_id, part").fetchall(),
        "runs": db.execute("SELECT transactions, new_transactions, flagged, auto_approved, held, review_summary FROM runs").fetchall(),
        # request ids and reply tokens are random
        "mail": [re.sub(r"\+[a-z2-7]{26}@", "+T@", re.sub(r"Request [0-9a-f]{32}", "Request X", body)) for body in mail],
        "attachments": attachments,
    }


def decline_columns(*paths: Path) -> None:
    """A blank line at the end of each file: the column-wise reader declines it, the row reader skips it."""
    for path in paths:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write("\n")


def run_both(tmp_path: Path, *nights: list[Path]) -> tuple[dict, dict, list[str]]:
    """The nights run by the column-wise reader, then (the files declined) by the row reader."""
    outputs = []
    results = {}
    for large in (True, False):
        folder = site(tmp_path / ("columns" if large else "rows"), large=large)
        if not large:  # copies, with the same names, that the column-wise reader declines
            copies = tmp_path / "declined"
            copies.mkdir()
            for path in {p for ledgers in nights for p in ledgers}:
                (copies / path.name).write_bytes(path.read_bytes())
                decline_columns(copies / path.name)
            nights = tuple([copies / p.name for p in ledgers] for ledgers in nights)
        for ledgers in nights:
            result = audit("run", *[a for p in ledgers for a in ("--ledger", str(p))], cwd=folder)
            assert result.returncode == 0, result.stderr
            outputs.append([line for line in result.stdout.splitlines() if not line.startswith(("request ", "sent "))])
        results[large] = recorded(folder)
    return results[False], results[True], outputs


def test_the_example_ledger(tmp_path: Path) -> None:
    rows, columns, _ = run_both(tmp_path, [EXAMPLE_LEDGER])
    assert rows == columns
    assert len(rows["transactions"]) == 10 and rows["runs"][0][2] == 5  # TX-1006, 10,000.00, is round


def test_a_ledger_with_every_rule_in_several_currencies_and_days(tmp_path: Path) -> None:
    ledger = generated(tmp_path / "big.csv", 3000, seed=5)
    rows, columns, outputs = run_both(tmp_path, [ledger])
    assert rows == columns
    codes = {code for t in rows["transactions"] for code in re.findall(r'"code": "(\w+)"', t[13])}
    assert codes >= {"large_amount", "vague_memo", "unfamiliar_vendor", "structuring", "duplicate_payment", "round_amount",
                     "consulting_large"}
    assert rows["attachments"] and outputs[0] == outputs[1]


def test_nights_overlapping_exports_and_several_files(tmp_path: Path) -> None:
    first = generated(tmp_path / "n1.csv", 800, seed=1, first_day=1)
    second = generated(tmp_path / "n2.csv", 800, seed=2, first_day=8, prefix="H")
    text = first.read_text(encoding="utf-8").splitlines()
    overlap = tmp_path / "n2-overlap.csv"  # repeats 50 rows of the first night, one of them amended
    repeated = text[1:51]
    repeated[0] = re.sub(r",(\d+\.\d\d|\d+|\"[\d,]+\.\d\d\"),", ",1.23,", repeated[0], count=1)
    overlap.write_text("\n".join([text[0], *repeated]) + "\n", encoding="utf-8")
    rows, columns, outputs = run_both(tmp_path, [first], [second, overlap, second])
    assert rows == columns
    assert outputs[1] == outputs[3]
    # the same rows and the same file again add nothing; the amended row is its next version
    assert len(rows["runs"]) == 2 and rows["runs"][1][1] == 801
    reasons = " ".join(t[13] for t in rows["transactions"] if t[12] == 2)
    assert "recorded by an earlier run" in reasons  # night 2 repeats payments of night 1


def test_changed_repeats_are_recorded_as_versions_by_both_readers(tmp_path: Path) -> None:
    first = generated(tmp_path / "n1.csv", 200, seed=3)
    changed = tmp_path / "again.csv"
    header = first.read_text(encoding="utf-8").splitlines()[0]
    changed.write_text(header + "\nG-00007,2026-11-03,1.00,USD,Someone Else,Toner,6100\n", encoding="utf-8")
    for large in (True, False):
        folder = site(tmp_path / f"site-{large}", large=large)
        if not large:
            decline_columns(first, changed)
        audit("run", "--ledger", str(first), cwd=folder)
        result = audit("run", "--ledger", str(changed), cwd=folder)
        assert result.returncode == 0, result.stderr
        assert "again.csv: 1 transactions (1 new, 1 of them amended)" in result.stdout
        assert "1 flagged" in result.stdout


def test_a_bad_row_in_a_large_file_is_reported_like_in_a_small_one(tmp_path: Path) -> None:
    ledger = generated(tmp_path / "big.csv", 2000, seed=9)
    lines = ledger.read_text(encoding="utf-8").splitlines()
    lines[1500] = lines[1500].replace(",2026-11-", ",2026-13-", 1)
    ledger.write_text("\n".join(lines) + "\n", encoding="utf-8")
    messages = []
    for large in (True, False):
        folder = site(tmp_path / f"site-{large}", large=large)
        if not large:
            decline_columns(ledger)
        result = audit("run", "--ledger", str(ledger), cwd=folder)
        assert result.returncode == 4
        messages.append(result.stderr.strip().splitlines()[-1])
        assert not (folder / "audit.db").exists()
    assert messages[0] == messages[1] and f"{ledger}:1501: date: '2026-13-" in messages[0]


def test_progress_shows_on_a_terminal_only(tmp_path: Path) -> None:
    import io

    from job.config import load_config
    from job.run import read_ledgers

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    ledger = generated(tmp_path / "big.csv", 500, seed=4)
    folder = site(tmp_path / "site", large=True)
    config = load_config(folder / "audit.toml")
    terminal, log = Terminal(), io.StringIO()
    read_ledgers(config, [ledger], stream=terminal)
    read_ledgers(config, [ledger], stream=log)
    assert "\rreading big.csv [" in terminal.getvalue() and "100%" in terminal.getvalue() and terminal.getvalue().endswith("\n")
    assert log.getvalue() == ""
    result = audit("run", "--ledger", str(ledger), cwd=folder)  # stderr is a pipe here, as under cron
    assert "reading" not in result.stderr and "\r" not in result.stderr


@pytest.mark.separate_process("what a fresh interpreter imports")
@pytest.mark.parametrize("large", [False, True])
def test_every_run_reads_and_screens_with_polars(tmp_path: Path, large: bool) -> None:
    """One engine: a ledger of ten rows is read and screened column-wise too (this test
    checked that small runs never imported polars while there were two engines)."""
    folder = site(tmp_path / "site", large=large)
    (folder / "audit.toml").write_text((folder / "audit.toml").read_text().replace(RULES, ""), encoding="utf-8")
    probe = folder / "probe.py"
    probe.write_text(
        "import sys, runpy\nsys.argv = ['audit', 'run', '--ledger', sys.argv[1]]\n"
        "try:\n    runpy.run_module('job', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print('POLARS' if 'polars' in sys.modules else 'NO POLARS', file=sys.stderr)\n", encoding="utf-8")
    import subprocess
    import sys

    result = subprocess.run([sys.executable, str(probe), str(EXAMPLE_LEDGER)], cwd=folder, capture_output=True, text=True, timeout=120)
    assert result.stderr.splitlines()[-1] == "POLARS"


def test_a_run_with_its_blocks_on_disk_records_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from job.ledger import ingest_fast
    from job.config import load_config
    from job.store.db import open_db
    from job.run import read_ledgers, run_audit
    from job.screening.rules import compile_rules

    ledger = generated(tmp_path / "big.csv", 3000, seed=11)
    rows_site = site(tmp_path / "rows", large=False)
    assert audit("run", "--ledger", str(ledger), cwd=rows_site).returncode == 0
    folder = site(tmp_path / "columns", large=True)
    config = load_config(folder / "audit.toml")
    monkeypatch.setattr(ingest_fast, "BLOCK_BYTES", 16_384)  # many small blocks
    spill = tmp_path / "spill"
    spill.mkdir()
    ledgers = read_ledgers(config, [ledger], spill=spill)
    assert len(list(spill.glob("*.arrow"))) == len(ledgers[0].blocks) > 5
    db = open_db(config.db)
    asyncio.run(run_audit(db, config, ledgers, reviewer=config.llm.describe(), rules=compile_rules(config)))
    db.conn.close()
    assert recorded(rows_site) == recorded(folder)


def test_a_large_file_only_the_row_reader_can_read_records_the_same(tmp_path: Path) -> None:
    ledger = generated(tmp_path / "big.csv", 1500, seed=13)
    lines = ledger.read_text(encoding="utf-8").splitlines()
    lines[700] = lines[700].replace(",Toner,", ',"Toner,\nsecond line",', 1) if ",Toner," in lines[700] else lines[700] + ""
    lines.insert(900, "")  # a blank line: declined by the column-wise reader, skipped by the row reader
    ledger.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows, columns, _ = run_both(tmp_path, [ledger])
    assert rows == columns and len(rows["transactions"]) == 1500


def test_blocks_left_by_a_killed_run_are_removed_by_the_next_large_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from job import run
    from job.config import load_config
    from job.ledger import read

    folder = site(tmp_path / "site", large=True)
    stale = folder / ".audit.db.blocks-dead"
    stale.mkdir()
    (stale / "0.arrow").write_bytes(b"x")
    monkeypatch.setattr(read, "SPILL_BYTES", 0)
    ledgers = run.read_ledgers(load_config(folder / "audit.toml"), [generated(tmp_path / "big.csv", 300, seed=2)])
    assert not stale.exists()
    spilled = {b.path.parent for b in ledgers[0].blocks}
    assert len(spilled) == 1 and next(iter(spilled)).name.startswith(".audit.db.blocks-")


def test_a_report_for_a_date_range_holds_exactly_the_transactions_dated_in_it(tmp_path: Path) -> None:
    """Reports find a date range through each ledger file's id and date ranges (its zone map),
    not a per-row index: three nights whose files span overlapping days, every kind of range."""
    folder = site(tmp_path / "site", large=False)
    for night, first_day in enumerate((1, 6, 11)):
        path = generated(tmp_path / f"n{night}.csv", 120, seed=night, first_day=first_day, prefix=f"N{night}")
        assert audit("run", "--ledger", str(path), cwd=folder).returncode == 0
    everything = json.loads(audit("report", "--format", "json", cwd=folder).stdout)
    assert len(everything) == 360
    for since, until in [("2026-11-05", "2026-11-12"), ("2026-11-10", None), (None, "2026-11-06"), ("2026-11-07", "2026-11-07"),
                         ("2026-11-21", None), (None, "2026-10-31"), ("2026-11-01", "2026-11-20")]:
        args = [*(["--since", since] if since else []), *(["--until", until] if until else [])]
        shown = json.loads(audit("report", "--format", "json", *args, cwd=folder).stdout)
        expected = [r for r in everything if (since is None or r["date"] >= since) and (until is None or r["date"] <= until)]
        assert shown == expected, args
    assert [r["date"] for r in everything] == sorted(r["date"] for r in everything)


def test_an_upgraded_database_reports_its_older_rows_by_date(tmp_path: Path) -> None:
    old = tmp_path / "audit.db"
    old.write_bytes((Path(__file__).parent / "fixtures" / "audit-v2.db").read_bytes())
    before = sqlite3.connect(old).execute("SELECT txn_id, date FROM transactions ORDER BY date, id").fetchall()
    (tmp_path / "audit.toml").write_text('db = "audit.db"\n', encoding="utf-8")
    first = before[0][1]
    shown = json.loads(audit("report", "--format", "json", "--since", first, "--until", first, cwd=tmp_path).stdout)
    assert [(r["transaction_id"], r["date"]) for r in shown] == [(t, d) for t, d in before if d == first] != []


def test_date_ranges_read_only_the_id_ranges_of_the_files_that_may_hold_them(tmp_path: Path) -> None:
    from job.store.db import open_db
    from job.screening.history import LEGACY_QUERY
    from job.report.report import report_query

    db = open_db(tmp_path / "audit.db")
    plans = [report_query(since="2026-11-01", until="2026-11-30"), report_query(since="2026-11-01"), report_query(until="2026-11-30"),
             (LEGACY_QUERY, ("2026-11-01", "2026-11-30", 10))]
    for sql, params in plans:
        steps = [row[-1] for row in db.conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
        assert any(s.startswith("SEARCH t USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)") for s in steps), steps
        assert not any(s.startswith("SCAN t") or "AUTOMATIC" in s for s in steps), steps


@pytest.mark.parametrize("odd_ids", [False, True], ids=["plain-ids", "ids-needing-escapes"])
def test_a_long_request_event_digests_the_same_list_on_both_paths(tmp_path: Path, odd_ids: bool) -> None:
    """Over 1,000 items the request event holds a SHA-256 of the canonical [[no, id], ...]
    list; a large run makes that text with polars, and it must be the digest anyone can
    recompute from the transactions (ids with quotes, backslashes or accents included)."""
    from job.store.auditlog import canonical

    lines = ["id,date,amount,currency,vendor,memo,account"]
    for n in range(1, 1301):
        txn_id = f'Z-{n:04d}' if not odd_ids or n % 97 else f'"Zé\\{n}"""'
        lines.append(f"{txn_id},2026-11-24,{n}.{n % 100:02d},USD,Acme Office Supply,Misc,6100")  # vague memo: flagged
    digests = []
    for large in (False, True):
        folder = site(tmp_path / ("columns" if large else "rows"), large=large)
        ledger = folder / "ledger.csv"
        ledger.write_text("\n".join(lines) + "\n", encoding="utf-8")
        if not large:
            decline_columns(ledger)
        assert audit("run", "--ledger", str(ledger), cwd=folder).returncode == 0
        db = sqlite3.connect(folder / "audit.db")
        detail = json.loads(db.execute("SELECT detail FROM events WHERE kind = 'request'").fetchone()[0])
        pairs = [list(r) for r in db.execute("SELECT item_no, txn_id FROM transactions WHERE item_no IS NOT NULL ORDER BY item_no")]
        assert detail["item_count"] == len(pairs) > 1000
        assert detail["items_sha256"] == hashlib.sha256(canonical(pairs).encode("utf-8")).hexdigest()
        assert any('"' in t for _, t in pairs) == odd_ids
        digests.append(detail["items_sha256"])
    assert digests[0] == digests[1]


def test_a_second_night_finds_the_first_nights_payments_through_the_digests(tmp_path: Path) -> None:
    """A run made by the command's own functions records what `audit run` records, digests
    included, and a second night finds the first night's duplicates through them."""
    import asyncio

    from job.config import load_config
    from job.store.db import open_db
    from job.run import read_ledgers, run_audit
    from job.screening.rules import compile_rules

    nights = [generated(tmp_path / "n1.csv", 1200, seed=21), generated(tmp_path / "n2.csv", 1200, seed=21, prefix="H")]
    rows_site = site(tmp_path / "rows", large=False)
    for ledger in nights:
        assert audit("run", "--ledger", str(ledger), cwd=rows_site).returncode == 0
    folder = site(tmp_path / "columns", large=True)
    config = load_config(folder / "audit.toml")
    for ledger in nights:
        ledgers = read_ledgers(config, [ledger])
        assert ledgers[0].blocks and ledgers[0].blocks[0].rows == 1200
        db = open_db(config.db)
        asyncio.run(run_audit(db, config, ledgers, reviewer=config.llm.describe(), rules=compile_rules(config)))
        db.conn.close()
    expected, got = recorded(rows_site), recorded(folder)
    assert got["digests"] == expected["digests"] and got["transactions"] == expected["transactions"]
    second_night = [row for row in got["transactions"] if row[2].startswith("H-")]
    # the first night's payments were found through the digests: reasons name them
    assert any("duplicate_payment" in row[13] and re.search(r"G-\d{5}", row[13]) for row in second_night)
