"""The shipped cron.d file, systemd units and logrotate file call what exists, and an
unattended run logs stamped lines and reaches a person only when it fails."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from helpers import ROOT, audit

CRON = ROOT / "cron"
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def cron_jobs() -> list[tuple[list[str], str, str]]:
    """(schedule, user, command) of each line of the cron.d file."""
    jobs = []
    for line in (CRON / "ledger-audit").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or re.match(r"^[A-Z_]+=", line):
            continue
        fields = line.split(None, 6)
        jobs.append((fields[:5], fields[5], fields[6]))
    return jobs


def audit_args(command: str) -> list[str]:
    """The arguments a scheduled command passes to `audit`."""
    words = shlex.split(command.replace("\\%", "%").replace("%%", "%"))
    if words[:2] == ["/bin/sh", "-c"]:
        words = shlex.split(words[2].removeprefix("exec "))
    start = next(i for i, w in enumerate(words) if w.endswith("/audit") or w in ('"$AUDIT"', "$AUDIT"))
    return words[start + 1 :]


def test_cron_file_is_a_cron_d_file_that_mails_failures_and_never_overlaps() -> None:
    text = (CRON / "ledger-audit").read_text()
    assert "." not in (CRON / "ledger-audit").name  # cron.d skips file names with a dot
    assert re.search(r"^MAILTO=\S+@\S+", text, re.M)
    jobs = cron_jobs()
    assert [schedule for schedule, _, _ in jobs] == [["30", "2", "*", "*", "*"], ["*/5", "*", "*", "*", "*"], ["0", "6", "*", "*", "*"]]
    for schedule, user, command in jobs:
        assert user == "audit"  # never root
        assert "--log var/log/audit.log" in command and ">>" not in command and "2>&1" not in command
        if schedule[0] != "0":
            assert "flock -n" in command


def test_every_scheduled_command_parses(tmp_path: Path) -> None:
    commands = [command for _, _, command in cron_jobs()]
    commands += [
        line.split("=", 1)[1] for unit in CRON.glob("audit-*.service") for line in unit.read_text().splitlines() if line.startswith("ExecStart=")
    ]
    assert len(commands) == 6
    for command in commands:
        args = audit_args(command)
        result = audit(*args, "--help", cwd=tmp_path)
        assert result.returncode == 0, (command, result.stderr)
        assert "Usage: audit" in result.stdout and result.stderr == ""


def test_units_run_as_a_user_after_the_network_and_tell_someone_on_failure() -> None:
    for name in ("audit-run.service", "audit-poll.service", "audit-verify.service"):
        unit = (CRON / name).read_text()
        assert re.search(r"^User=audit$", unit, re.M), name
        assert re.search(r"^OnFailure=ledger-audit-failed@%n\.service$", unit, re.M), name
        if name != "audit-verify.service":
            assert "Wants=network-online.target" in unit and "After=network-online.target" in unit, name
    failed = (CRON / "ledger-audit-failed@.service").read_text()
    assert "sendmail" in failed and "%i" in failed


def test_timers_match_the_cron_file() -> None:
    assert "OnCalendar=*-*-* 02:30:00" in (CRON / "audit-run.timer").read_text()
    assert "OnCalendar=*:0/5" in (CRON / "audit-poll.timer").read_text()
    assert "OnCalendar=*-*-* 06:00:00" in (CRON / "audit-verify.timer").read_text()


def test_logrotate_covers_the_log_the_cron_jobs_write() -> None:
    text = (CRON / "ledger-audit.logrotate").read_text()
    home = re.search(r"^AUDIT_HOME=(\S+)", (CRON / "ledger-audit").read_text(), re.M).group(1)
    assert f"{home}/var/log/*.log {{" in text
    assert re.search(r"^\s+rotate \d+$", text, re.M) and "create 0640 audit audit" in text


def test_an_unattended_run_logs_stamped_lines_and_prints_nothing(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.csv"
    ledger.write_text("id,date,amount,currency,vendor,memo\nT1,2026-12-02,15000.00,USD,Acme,services\n", encoding="utf-8")
    assert audit("init", cwd=tmp_path).returncode == 0
    result = audit("--log", "var/log/audit.log", "run", "--ledger", str(ledger), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""
    lines = (tmp_path / "var/log/audit.log").read_text().splitlines()
    assert all(re.match(rf"^{STAMP} audit run \[pid \d+\] ", line) for line in lines), lines
    assert any(re.search(r"\] run 1: run 1: 1 new, 1 flagged", line) for line in lines), lines
    assert lines[-1].endswith("run 1: finished: exit 0")


def test_a_failing_night_prints_one_line_naming_the_exit_and_the_log(tmp_path: Path) -> None:
    assert audit("init", cwd=tmp_path).returncode == 0
    result = audit("--log", "var/log/audit.log", "run", "--ledger", "exports/missing.csv", cwd=tmp_path)
    assert result.returncode == 4
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "audit run failed with exit 4: exports/missing.csv: cannot read file: No such file or directory (log: var/log/audit.log)"
    ]
    log = (tmp_path / "var/log/audit.log").read_text()
    assert re.search(rf"^{STAMP} audit run \[pid \d+\] audit: error: exports/missing.csv: cannot read file", log, re.M)
    assert log.rstrip().endswith("finished: exit 4")


def test_a_log_that_cannot_be_written_is_a_one_line_usage_error(tmp_path: Path) -> None:
    (tmp_path / "var").write_text("a file where the log folder should be", encoding="utf-8")
    result = audit("--log", "var/log/audit.log", "status", cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("audit: error: --log var/log/audit.log: cannot write")
