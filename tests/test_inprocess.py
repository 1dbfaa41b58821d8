"""The suite runs the command line in its own process (tests/inprocess.py); here that runner is
held to what `python -m job` itself prints and exits with, so the rest of the suite may trust it."""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

import pytest

from helpers import EXAMPLE_LEDGER, audit, audit_process, write_site

HEX_ID = re.compile(r"\b[0-9a-f]{32}\b")


def both(site: Path, name: str, *args: str, env: dict | None = None) -> tuple:
    """(exit code, stdout, stderr) of `audit ARGS` in-process and as a process, each in its own
    copy of `site` (ids the run draws at random made equal)."""
    outcomes = []
    for how, run in (("inprocess", audit), ("process", audit_process)):
        folder = site.parent / f"{name}-{how}"
        if not folder.exists():
            folder.mkdir()
            for item in site.iterdir():
                (folder / item.name).write_bytes(item.read_bytes())
        result = run(*args, cwd=folder, env=env)
        text = [HEX_ID.sub("<id>", out.replace(str(folder), "<site>")) for out in (result.stdout, result.stderr)]
        outcomes.append((result.returncode, *text))
    return tuple(outcomes)


@pytest.mark.separate_process("compares the in-process runner with the real process")
@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("run", "--help"),
        ("init",),
        ("init", "--force", "sub/audit.toml"),  # a folder that does not exist: one error line, exit 4
        ("report", "--format", "xml"),
        ("status",),  # no database yet
        ("run", "--ledger", "missing.csv"),
        ("run", "--ledger", str(EXAMPLE_LEDGER)),
        ("nonsense",),
    ],
    ids=lambda args: " ".join(a if "/" not in a else Path(a).name for a in args),
)
def test_the_in_process_runner_reports_what_the_process_does(tmp_path: Path, args: tuple) -> None:
    site = write_site(tmp_path / "site", ["controller@example.com"])
    inprocess, process = both(site, "run", *args)
    assert inprocess == process


@pytest.mark.separate_process("compares the in-process runner with the real process")
def test_environment_and_working_directory_are_the_commands_and_put_back(tmp_path: Path) -> None:
    site = write_site(tmp_path / "site", ["controller@example.com"])
    (site / "other.toml").write_text((site / "audit.toml").read_text().replace('"audit.db"', '"other.db"'))
    before_cwd, before_env = os.getcwd(), dict(os.environ)
    inprocess, process = both(site, "env", "run", "--ledger", str(EXAMPLE_LEDGER), env={"AUDIT_CONFIG": "other.toml"})
    assert inprocess == process and inprocess[0] == 0
    assert (os.getcwd(), dict(os.environ)) == (before_cwd, before_env)
    for how in ("inprocess", "process"):  # AUDIT_CONFIG was read: the run went into other.db
        assert not (tmp_path / f"env-{how}" / "audit.db").exists()
        with sqlite3.connect(tmp_path / f"env-{how}" / "other.db") as db:
            assert db.execute("SELECT COUNT(*) FROM transactions").fetchone() == (10,)


def test_a_command_leaves_no_database_connection_open(tmp_path: Path) -> None:
    site = write_site(tmp_path / "site", ["controller@example.com"])
    before = set(os.listdir("/proc/self/fd"))
    assert audit("run", "--ledger", str(EXAMPLE_LEDGER), cwd=site).returncode == 0
    assert audit("status", cwd=site).returncode == 0
    opened = {os.readlink(f"/proc/self/fd/{fd}") for fd in set(os.listdir("/proc/self/fd")) - before if os.path.exists(f"/proc/self/fd/{fd}")}
    assert not [path for path in opened if "audit.db" in path]
    assert not (site / "audit.db-wal").exists()  # the last connection closed checkpoints the log, as at a process's end


def test_crash_points_and_start_up_hooks_are_refused_in_process(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs a separate process"):
        audit("run", "--ledger", str(EXAMPLE_LEDGER), cwd=tmp_path, env={"AUDIT_TEST_CRASH_AT": "run:read"})
