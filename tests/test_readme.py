"""The README's commands are the ones that work: checked here so they never rot."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

from helpers import ROOT, audit, maildir_messages

README = (ROOT / "README.md").read_text()


def quick_start() -> list[str]:
    block = re.search(r"## Quick start\n\n```sh\n(.*?)```", README, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_quick_start_is_two_commands_and_ci_runs_the_second() -> None:
    first, second = quick_start()
    assert first.startswith("pip install -e . && audit run ")
    assert second == "bash scripts/test.sh"
    assert "exec bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def run_readme_command(line: str, cwd: Path):
    words = shlex.split(line.split("&&")[-1])
    assert words[0] == "audit"
    return audit(*words[1:], cwd=cwd)


def test_first_command_runs_the_bundled_example_with_no_configuration(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    result = run_readme_command(quick_start()[0], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "run 1: 10 new, 10 flagged" in result.stdout  # no vendor is known on a first run
    assert len(maildir_messages(tmp_path / "var" / "mail" / "outbox")) == 1


def test_walk_through_run_flags_four_with_the_vendor_list(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    run_readme_command(quick_start()[0], tmp_path)  # the quick start first, as a reader would
    line = re.search(r"^audit run --config examples/audit.toml[^\n]*", README, re.M).group(0)
    result = run_readme_command(line, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "run 1: 10 new, 4 flagged, 6 auto-approved, 0 held" in result.stdout
    assert len(maildir_messages(tmp_path / "var" / "example" / "mail" / "outbox")) == 1
