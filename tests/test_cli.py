"""The `audit` command line as a user runs it: messages, exit codes, and what is recorded."""

from __future__ import annotations

import csv
import fcntl
import io
import hashlib
import json
import os
import re
import socket
import sqlite3
import subprocess
from pathlib import Path

import pytest

from helpers import errors_of, audit as _audit, write_config
from job.config import DEFAULT_CONFIG_TEXT
from job.store.db import open_db

LEDGER = (
    "id,date,amount,currency,vendor,memo\n"
    "C-1,2026-11-24,12.50,USD,Acme Office Supply,Taxi to client\n"
    "C-2,2026-11-24,\"10,000.01\",USD,Acme Office Supply,Server racks\n"
    "C-3,2026-11-25,99.00,USD,Globex Travel,misc\n"
)


def audit(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real command; whatever happens, the user never sees a traceback."""
    result = _audit(*args, cwd=cwd, env=env)
    assert "Traceback" not in result.stderr, result.stderr
    assert "Traceback" not in result.stdout, result.stdout
    return result


def count(db: Path, table: str) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A folder with a config (known vendors, one approver) and a small ledger."""
    site = tmp_path.resolve()
    write_config(site / "audit.toml", {"db": "audit.db"},
                 policy={"known_vendors": ["Acme Office Supply", "Globex Travel"]},
                 approvers={"addresses": ["controller@example.com"]})
    (site / "ledger.csv").write_text(LEDGER, encoding="utf-8")
    return site


# --- help and init --------------------------------------------------------------------


def test_help_lists_every_exit_code(tmp_path: Path) -> None:
    result = audit("--help", cwd=tmp_path)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    expected = {
        0: "ok", 1: "internal error", 2: "usage", 3: "config", 4: "bad input file", 5: "mail transport",
        6: "model endpoint", 7: "database", 8: "another run is busy", 9: "recorded, but mail left unsent",
    }
    for code, meaning in expected.items():
        assert f"{code} {meaning}" in text, (code, text)
    for command in ("run", "poll", "report", "status", "init"):
        assert re.search(rf"^\s+{command}\s", result.stdout, re.M), command


def test_init_writes_a_config_that_loads_and_is_never_overwritten_silently(tmp_path: Path) -> None:
    site = tmp_path.resolve()
    first = audit("init", cwd=site)
    assert (first.returncode, first.stdout, first.stderr) == (0, "wrote audit.toml\n", "")
    assert (site / "audit.toml").read_text(encoding="utf-8") == DEFAULT_CONFIG_TEXT

    # the written file loads: status gets as far as looking for the database it names
    status = audit("status", cwd=site)
    assert status.returncode == 7
    assert errors_of(status) == f"audit: error: {site / 'audit.db'}: no audit database here (run 'audit run' first)\n"
    assert status.stdout == ""
    assert not (site / "audit.db").exists()

    (site / "audit.toml").write_text('db = "mine.db"\n', encoding="utf-8")
    again = audit("init", cwd=site)
    assert again.returncode == 3
    assert errors_of(again) == "audit: error: audit.toml: already exists (use --force to overwrite)\n"
    assert (site / "audit.toml").read_text(encoding="utf-8") == 'db = "mine.db"\n'

    forced = audit("init", "--force", cwd=site)
    assert forced.returncode == 0
    assert (site / "audit.toml").read_text(encoding="utf-8") == DEFAULT_CONFIG_TEXT


# --- bad input ------------------------------------------------------------------------


def test_bad_amount_is_one_line_naming_file_line_and_column_and_records_nothing(site: Path) -> None:
    bad = site / "bad.csv"
    bad.write_text(
        "id,date,amount,currency,vendor,memo\n"
        "B-1,2026-11-24,10.00,USD,Acme Office Supply,Paper\n"
        "B-2,2026-11-24,11.00,USD,Acme Office Supply,Toner\n"
        "B-3,2026-11-24,12.x0,USD,Acme Office Supply,Pens\n",
        encoding="utf-8",
    )
    result = audit("run", "--ledger", str(site / "ledger.csv"), "--ledger", str(bad), cwd=site)
    assert result.returncode == 4
    assert errors_of(result) == f"audit: error: {bad}:4: amount: '12.x0' is not an amount\n"
    assert result.stdout == ""
    # the good ledger given first is not recorded either: nothing is written before everything is read
    db = site / "audit.db"
    if db.exists():
        for table in ("runs", "ledger_files", "transactions", "messages", "requests"):
            assert count(db, table) == 0, table
    outbox = site / "var" / "mail" / "outbox"
    assert not outbox.exists() or not list(outbox.glob("*/*"))


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('db = "audit.db"\n[policy]\ncolour = "red"\n', "bad.toml: unknown setting policy.colour"),
        ('[mail.smtp]\nport = "587"\n', "bad.toml: mail.smtp.port: expected an integer, got str"),
        ('[policy]\napproval_mode = "sometimes"\n',
         "bad.toml: policy.approval_mode: must be one of always, flagged, never, got 'sometimes'"),
    ],
    ids=["unknown-key", "wrong-type", "bad-approval-mode"],
)
def test_bad_config_exits_3_naming_the_key(tmp_path: Path, toml: str, message: str) -> None:
    (tmp_path / "bad.toml").write_text(toml, encoding="utf-8")
    result = audit("status", "--config", "bad.toml", cwd=tmp_path)
    assert result.returncode == 3
    assert errors_of(result) == f"audit: error: {message}\n"
    assert not list(tmp_path.glob("*.db"))


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("report",), 7, "{db}: no audit database here (run 'audit run' first)"),
        (("report", "--format", "xml"), 4, "--format: must be csv or json, got 'xml'"),
        (("report", "--since", "2026-13-01"), 4, "--since: not a date in YYYY-MM-DD form: '2026-13-01'"),
        (("report", "--until", "tomorrow"), 4, "--until: not a date in YYYY-MM-DD form: 'tomorrow'"),
    ],
    ids=["no-database", "bad-format", "bad-since", "bad-until"],
)
def test_report_refuses_bad_requests(site: Path, args: tuple[str, ...], code: int, message: str) -> None:
    result = audit(*args, cwd=site)
    assert result.returncode == code
    assert errors_of(result) == "audit: error: " + message.format(db=site / "audit.db") + "\n"
    assert result.stdout == ""
    assert not (site / "audit.db").exists()


# --- locking --------------------------------------------------------------------------


def test_overlapping_run_gives_up_with_exit_8(site: Path) -> None:
    db = site / "audit.db"
    lock = Path(f"{db}.run.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another run is "in progress"
        result = audit("run", "--wait", "0", "--ledger", "ledger.csv", cwd=site)
    finally:
        os.close(fd)
    assert result.returncode == 8
    assert errors_of(result) == f"audit: error: another 'audit run' is running on {db} (lock {lock}); try again later\n"
    assert result.stdout == ""
    assert not db.exists()  # nothing was recorded


# --- unsent mail ----------------------------------------------------------------------


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_smtp_leaves_mail_unsent_and_status_shows_it(site: Path) -> None:
    port = closed_port()
    write_config(site / "audit.toml", {"db": "audit.db"},
                 policy={"known_vendors": ["Acme Office Supply", "Globex Travel"]},
                 approvers={"addresses": ["controller@example.com"]},
                 mail={"transport": "smtp"},
                 mail__smtp={"host": "127.0.0.1", "port": port, "tls": "none", "timeout": 5})
    where = f"SMTP 127.0.0.1:{port}: cannot connect: "

    result = audit("run", "--ledger", "ledger.csv", cwd=site)
    assert result.returncode == 9, result.stderr
    assert "run 1: 3 new, 2 flagged, 1 auto-approved, 0 held" in result.stdout
    request_id = re.search(r"^request ([0-9a-f]{32}) queued for controller@example\.com$", result.stdout, re.M).group(1)
    lines = errors_of(result).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"audit: error: {where}")
    assert lines[1] == "audit: error: 1 message(s) left unsent; they are retried by the next run or poll (see 'audit status')"

    # the work is recorded even though the mail is not out
    db = site / "audit.db"
    assert count(db, "runs") == 1 and count(db, "transactions") == 3 and count(db, "requests") == 1

    status = audit("status", cwd=site)
    assert status.returncode == 0
    assert "pending items: 2" in status.stdout
    assert "unsent mail: 1" in status.stdout
    assert re.search(
        rf"^  #1 request to controller@example\.com: 1 attempt\(s\); {re.escape(where)}\S", status.stdout, re.M
    ), status.stdout
    assert re.search(rf"^  {request_id}  age \S+ \S+  2 of 2 pending  ", status.stdout, re.M), status.stdout

    info = json.loads(audit("status", "--json", cwd=site).stdout)
    [unsent] = info["unsent_mail"]
    assert unsent["kind"] == "request" and unsent["recipients"] == "controller@example.com"
    assert unsent["attempts"] == 1 and unsent["error"].startswith(where)
    assert unsent["next_attempt_at"] > unsent["created_at"]  # retried later, with a pause
    assert [r["request_id"] for r in info["open_requests"]] == [request_id]
    assert info["pending_items"] == 2 and info["last_run"]["request_id"] == request_id

    # the same ledger again: nothing new, no second request, the first one still queued once
    second = audit("run", "--ledger", "ledger.csv", cwd=site)
    assert second.returncode == 9, second.stderr  # the first request is still waiting in the outbox
    assert "ledger.csv: 3 transactions (already imported, skipped)" in second.stdout
    assert "run 2: 0 new, 0 flagged" in second.stdout and "queued for" not in second.stdout
    assert count(db, "requests") == 1
    assert count(db, "transactions") == 3
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT kind, status FROM messages WHERE direction = 'out'").fetchall() == [("request", "queued")]


# --- which config is used -------------------------------------------------------------


def test_config_precedence_cli_over_env_over_local_file(site: Path) -> None:
    for name in ("audit", "env", "cli"):
        write_config(site / f"{name}.toml", {"db": f"{name}-chosen.db"})

    def dbs() -> list[str]:
        return sorted(p.name for p in site.glob("*-chosen.db"))

    assert audit("run", "--ledger", "ledger.csv", cwd=site).returncode == 0
    assert dbs() == ["audit-chosen.db"]

    env = {"AUDIT_CONFIG": str(site / "env.toml")}
    assert audit("run", "--ledger", "ledger.csv", cwd=site, env=env).returncode == 0
    assert dbs() == ["audit-chosen.db", "env-chosen.db"]

    assert audit("run", "--config", "cli.toml", "--ledger", "ledger.csv", cwd=site, env=env).returncode == 0
    assert dbs() == ["audit-chosen.db", "cli-chosen.db", "env-chosen.db"]
    for name in ("audit", "env", "cli"):
        assert count(site / f"{name}-chosen.db", "transactions") == 3, name


# --- the report -----------------------------------------------------------------------


def test_report_to_stdout_and_to_a_file(site: Path) -> None:
    assert audit("run", "--ledger", "ledger.csv", cwd=site).returncode == 0

    shown = audit("report", cwd=site)
    assert shown.returncode == 0 and errors_of(shown) == ""
    rows = list(csv.DictReader(io.StringIO(shown.stdout)))
    assert shown.stdout.splitlines()[0] == (
        "transaction_id,version,date,vendor,amount,currency,memo,flags,status,decided_by,decided_at,reason,request_id,signed_off_by,signed_off_at"
    )
    assert [(r["transaction_id"], r["amount"], r["flags"], r["status"]) for r in rows] == [
        ("C-1", "12.50", "", "auto_approved"),
        ("C-2", "10000.01", "large_amount", "pending"),
        ("C-3", "99.00", "vague_memo", "pending"),
    ]

    out = site / "report.csv"
    out.write_text("an older report\n", encoding="utf-8")
    written = audit("report", "--out", "report.csv", cwd=site)
    assert written.returncode == 0
    assert written.stdout == ""
    assert re.fullmatch(r"wrote 3 row\(s\) to report.csv; audit log head [0-9a-f]{64} \(also in report.csv.manifest.json\)\n", written.stderr)
    manifest = json.loads((site / "report.csv.manifest.json").read_text())
    assert manifest["rows"] == 3 and manifest["audit_log_head"] in written.stderr
    assert manifest["sha256"] == hashlib.sha256((site / "report.csv").read_bytes()).hexdigest()
    assert out.read_bytes().startswith(b"\xef\xbb\xbf") and not shown.stdout.startswith("\ufeff")  # a BOM in files only
    assert out.read_text(encoding="utf-8-sig") == shown.stdout
    assert not (site / "report.csv.tmp").exists()

    since = audit("report", "--format", "json", "--since", "2026-11-25", cwd=site)
    assert since.returncode == 0
    assert [r["transaction_id"] for r in json.loads(since.stdout)] == ["C-3"]


def test_failed_report_write_leaves_no_temporary_file(site: Path) -> None:
    open_db(site / "audit.db").conn.close()  # an empty audit database
    (site / "out").mkdir()  # --out names a folder: the final rename must fail
    result = audit("report", "--out", "out", cwd=site)
    assert result.returncode == 4
    assert errors_of(result) == "audit: error: out: cannot write the report: Is a directory\n"
    assert sorted(p.name for p in site.iterdir() if p.name.startswith("out")) == ["out"]


@pytest.mark.separate_process("a real pipe closed by its reader (BrokenPipeError on the process's stdout)")
def test_output_piped_into_a_reader_that_stops_early_ends_quietly(tmp_path: Path) -> None:
    """`audit report | head`: when the reader closes the pipe, no error line and exit 0."""
    import sys

    write_config(tmp_path / "audit.toml", {"db": "audit.db"})
    rows = ["id,date,amount,currency,vendor,memo,account"] + [
        f"P-{n:05d},2026-11-24,{n}.00,USD,Vendor {n % 50},Office supplies for the team,6100" for n in range(1, 4001)]
    (tmp_path / "big.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert _audit("run", "--ledger", "big.csv", cwd=tmp_path).returncode == 0
    env = {k: v for k, v in os.environ.items() if k not in ("AUDIT_CONFIG", "AUDIT_DEBUG")}
    for args in (("report",), ("report", "--format", "json")):
        proc = subprocess.Popen([sys.executable, "-m", "job", *args], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        first = proc.stdout.readline()
        proc.stdout.close()  # as `head -1` does, long before the report is written
        stderr = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 0, stderr
        assert first and stderr == "", stderr
