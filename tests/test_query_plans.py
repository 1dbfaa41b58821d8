"""The statements a poll runs read the audit log through indexes, so a reply costs the same
after years of history as on the first night.

The real `audit poll` runs in its own process with every SQL statement it executes traced
(a `sitecustomize` on PYTHONPATH hooks `sqlite3.connect`); each traced query is then
planned against the same database and must not scan a table that grows with history.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from pathlib import Path

import pytest

from helpers import EXAMPLE_LEDGER, audit, audit_process, build_reply, drop_reply, maildir_messages, write_site

CONTROLLER = "controller@example.com"
AP = "ap@example.com"
# tables with a row per transaction, message, decision, event or reply address ever recorded
GROWING = ("transactions", "messages", "decisions", "request_tokens", "events", "ledger_files", "payment_digests", "conversation")

TRACER = '''
import os, sqlite3
_connect = sqlite3.connect
def _traced(database, *args, **kwargs):
    conn = _connect(database, *args, **kwargs)
    if os.path.basename(str(database)) == "audit.db":  # not, e.g., a coverage data file
        log = open(os.environ["AUDIT_TEST_SQL_LOG"], "a", encoding="utf-8")
        conn.set_trace_callback(lambda sql: log.write(json.dumps(sql) + "\\n") or log.flush())
    return conn
import json
sqlite3.connect = _traced
'''


def traced_poll(site: Path, tmp_path: Path) -> list[str]:
    hook = tmp_path / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(TRACER)
    log = tmp_path / "sql.log"
    log.unlink(missing_ok=True)
    path = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH", "")) if p)  # keeps the code under test importable
    result = audit_process("poll", "--once", cwd=site, env={"PYTHONPATH": path, "AUDIT_TEST_SQL_LOG": str(log)})
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


def scans(db: sqlite3.Connection, statements: list[str]) -> list[tuple[str, str]]:
    found = []
    for sql in statements:
        if not re.match(r"\s*(SELECT|UPDATE|DELETE|WITH)\b", sql, re.I):
            continue
        if re.search(r"ORDER BY id DESC LIMIT 1$", sql):  # SQLite reads the last row only
            continue
        for *_, step in db.execute("EXPLAIN QUERY PLAN " + sql):
            table = re.match(r"SCAN (\w+)", step)
            if table and table.group(1) in GROWING:
                found.append((step, sql[:200]))
    return found


@pytest.mark.separate_process("a sitecustomize start-up hook traces every SQL statement")
def test_a_poll_with_replies_and_reminders_scans_no_table_that_grows_with_history(tmp_path: Path) -> None:
    site = write_site(tmp_path / "site", [CONTROLLER, AP], reminders={"remind_after": "1h"})
    for night in range(2):  # some history: an earlier request, its messages and decisions
        ledger = tmp_path / f"ledger-{night}.csv"
        ledger.write_text(EXAMPLE_LEDGER.read_text().replace("TX-", f"N{night}-"))
        result = audit("run", "--ledger", str(ledger), cwd=site)
        assert result.returncode == 0, result.stderr
    requests = [m for m in maildir_messages(site / "var/mail/outbox") if m["To"] == CONTROLLER]
    drop_reply(site / "var/mail", build_reply(requests[0], "approve all", sender=CONTROLLER))
    drop_reply(site / "var/mail", build_reply(requests[1], "approve 1\nreject 2 wrong vendor", sender=CONTROLLER))
    statements = traced_poll(site, tmp_path)
    assert any("INSERT INTO decisions" in s for s in statements)  # the replies were processed

    db = sqlite3.connect(site / "audit.db")
    db.execute("UPDATE requests SET created_at = '2000-01-01T00:00:00Z'")  # old enough to remind
    db.commit()
    # replies on another approver's copy are refused: each looks up the refusals answered lately
    ap_copy = next(m for m in maildir_messages(site / "var/mail/outbox") if m["To"] == AP)
    for _ in range(2):
        drop_reply(site / "var/mail", build_reply(ap_copy, "approve all", sender=CONTROLLER))
    statements += traced_poll(site, tmp_path)
    assert any("reminded" in s for s in statements)
    assert any("kind = 'refusal'" in s for s in statements)
    assert scans(db, statements) == []


def test_a_requests_pending_items_are_counted_and_listed_from_the_pending_rows_alone(tmp_path: Path) -> None:
    """Every confirmation counts and lists what is still pending: with an index of the
    pending rows, that reads those rows, not every item the request ever had."""
    site = write_site(tmp_path / "site", [CONTROLLER])
    assert audit("run", "--ledger", str(EXAMPLE_LEDGER), cwd=site).returncode == 0
    [request] = [m for m in maildir_messages(site / "var/mail/outbox") if m["To"] == CONTROLLER]
    drop_reply(site / "var/mail", build_reply(request, "approve 1", sender=CONTROLLER))
    statements = [s for s in traced_poll(site, tmp_path) if re.search(r"request_id = '[0-9a-f]{32}' AND status = 'pending'", s)]
    assert statements  # the confirmation counted and listed what is pending
    db = sqlite3.connect(site / "audit.db")
    for sql in statements:
        plan = [step for *_, step in db.execute("EXPLAIN QUERY PLAN " + sql)]
        assert any("INDEX transactions_pending" in step for step in plan), (sql, plan)
