"""Rebuild audit.db.example: the bundled example ledger, run, answered by the example reply.

    python scripts/make_example_db.py

Runs `audit run` on examples/ledger-2026-11-24.csv with examples/audit.toml (maildir
transport, offline reviewer) in a scratch folder, answers the request with
examples/reply-approve.eml through the maildir inbox, runs `audit poll --once`, and
copies the resulting database to audit.db.example.
"""

from __future__ import annotations

import email
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def audit(*args: str, cwd: Path) -> None:
    subprocess.run([sys.executable, "-m", "job", *args], cwd=cwd, check=True)


def build_example_db(target: Path) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        shutil.copytree(ROOT / "examples", work / "examples")
        config = str(work / "examples" / "audit.toml")
        audit("run", "--config", config, "--ledger", str(work / "examples" / "ledger-2026-11-24.csv"), cwd=work)
        outbox = work / "var" / "example" / "mail" / "outbox" / "new"
        request = email.message_from_bytes(next(outbox.iterdir()).read_bytes())
        reply = (ROOT / "examples" / "reply-approve.eml").read_text(encoding="utf-8")
        reply = reply.replace("audit+TOKEN@example.com", request["Reply-To"]).replace("MESSAGE_ID", request["Message-ID"])
        inbox = work / "var" / "example" / "mail" / "inbox" / "new"
        inbox.mkdir(parents=True)
        (inbox / "example-reply.eml").write_text(reply, encoding="utf-8")
        audit("poll", "--once", "--config", config, cwd=work)
        db = sqlite3.connect(work / "var" / "example" / "audit.db")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("PRAGMA journal_mode = DELETE")
        db.execute("VACUUM")
        db.close()
        shutil.copyfile(work / "var" / "example" / "audit.db", target)


if __name__ == "__main__":
    build_example_db(ROOT / "audit.db.example")
    print(f"wrote {ROOT / 'audit.db.example'}")
