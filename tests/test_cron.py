"""The shipped crontab and systemd units call commands and options that exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from helpers import ROOT, audit

CRON = ROOT / "cron"


def cron_jobs() -> list[tuple[list[str], str]]:
    jobs = []
    for line in (CRON / "audit.crontab").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or re.match(r"^[A-Z_]+=", line):
            continue
        fields = line.split(None, 5)
        jobs.append((fields[:5], fields[5]))
    return jobs


def test_crontab_runs_nightly_and_polls_every_five_minutes_without_overlap() -> None:
    jobs = cron_jobs()
    assert [schedule for schedule, _ in jobs] == [["30", "2", "*", "*", "*"], ["*/5", "*", "*", "*", "*"]]
    for _, command in jobs:
        assert "flock -n" in command and ">> var/log/" in command and "2>&1" in command


def test_every_scheduled_command_parses(tmp_path: Path) -> None:
    commands = [command for _, command in cron_jobs()]
    commands += [line.split("=", 1)[1] for unit in CRON.glob("*.service") for line in unit.read_text().splitlines()
                 if line.startswith("ExecStart=")]
    assert len(commands) == 4
    for command in commands:
        words = shlex.split(command.replace("\\%", "%").replace("%%", "%"))
        if words[:2] == ["/bin/sh", "-c"]:
            words = shlex.split(words[2].removeprefix("exec "))
        start = next(i for i, w in enumerate(words) if w.endswith("/audit") or w == '"$AUDIT"' or w == "$AUDIT")
        args = [w for w in words[start + 1 :] if not w.startswith(">>") and w not in ("2>&1",)]
        args = args[: args.index(">>")] if ">>" in args else args
        args = [a for a in args if not a.startswith("var/log")]
        result = audit(*args, "--help", cwd=tmp_path)
        assert result.returncode == 0, (command, result.stderr)


def test_timers_match_the_crontab() -> None:
    assert "OnCalendar=*-*-* 02:30:00" in (CRON / "audit-run.timer").read_text()
    assert "OnCalendar=*:0/5" in (CRON / "audit-poll.timer").read_text()
