"""Reports for auditors and the operator: the decision report and `audit status`.

Read-only queries over the audit database. The report has one row per transaction with
exactly the fields auditors asked for; amounts are exact decimal strings.
"""

from __future__ import annotations

import calendar
import csv
import hashlib
import json
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import IO, TextIO

from job.approval.request import safe_cell
from job.errors import InputError
from job.ledger.ingest import format_amount
from job.mail.outbox import unsent_messages
from job.store.auditlog import head, head_hash
from job.store.db import now_utc

__all__ = [
    "REPORT_FIELDS",
    "report_query",
    "iter_report_rows",
    "csv_row",
    "write_report",
    "write_report_file",
    "collect_status",
    "parse_day",
    "find_request",
    "write_items",
    "write_items_file",
]

REPORT_FIELDS = (
    "transaction_id",
    "version",
    "date",
    "vendor",
    "amount",
    "currency",
    "memo",
    "flags",
    "status",
    "decided_by",
    "decided_at",
    "reason",
    "request_id",
    "signed_off_by",
    "signed_off_at",
)


def parse_day(text: str | None, option: str) -> str | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise InputError(f"{option}: not a date in YYYY-MM-DD form: {text!r}") from None


def report_query(*, since: str | None = None, until: str | None = None) -> tuple[str, dict]:
    """The report's SQL and parameters; `since`/`until` bound the transaction date.

    A date range is found through the ledger files whose rows may fall in it (each file's
    id and date ranges, db migration 6), then each one's id range: SQLite is held to that
    order (CROSS JOIN), and `+` keeps it from building an index over the whole table for
    the file check. Without a range, the whole table.
    """
    clauses, params = [], {}
    if since:
        clauses += ["f.last_date >= :since", "t.date >= :since"]
        params["since"] = since
    if until:
        clauses += ["f.first_date <= :until", "t.date <= :until"]
        params["until"] = until
    if clauses:
        rows = "ledger_files f CROSS JOIN transactions t"
        clauses[:0] = ["t.id BETWEEN f.first_transaction_id AND f.last_transaction_id", "+t.ledger_file_id = f.id"]
    else:
        rows = "transactions t"
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    sql = (
        "SELECT t.txn_id AS transaction_id, t.version, t.date, t.vendor, t.amount_minor, t.currency, t.memo, t.flags, t.status,"
        " COALESCE(d.approver, '') AS decided_by, COALESCE(d.decided_at, '') AS decided_at,"
        " COALESCE(d.reason, CASE WHEN t.status = 'held' AND t.request_id IS NULL"
        " THEN 'held: approval_mode is \"never\", so no approval was requested' ELSE '' END) AS reason,"
        " COALESCE(t.request_id, '') AS request_id, t.run_id"
        f" FROM {rows} LEFT JOIN decisions d ON d.transaction_id = t.id AND d.request_id = t.request_id AND d.decision = t.status"
        f" {where} ORDER BY t.date, t.id"
    )
    return sql, params


def iter_report_rows(db, *, since: str | None = None, until: str | None = None) -> Iterator[dict]:
    """One dict per transaction, oldest first; `since`/`until` bound the transaction date."""
    sql, params = report_query(since=since, until=until)
    # the run-level sign-offs (approval_mode = "always"): few, so read once
    sign_offs = {
        run_id: (who, when)
        for run_id, who, when in db.conn.execute(
            "SELECT r.id, d.approver, d.decided_at FROM decisions d JOIN runs r ON r.request_id = d.request_id"
            " WHERE d.transaction_id IS NULL AND d.decision = 'signed_off'"
        )
    }
    for row in db.query(sql, params):  # sqlite-utils: rows as dicts, streamed
        row["signed_off_by"], row["signed_off_at"] = sign_offs.get(row.pop("run_id"), ("", ""))
        amount_minor = row.pop("amount_minor")
        row["amount"] = format_amount(amount_minor, row["currency"])
        row["flags"] = [f["code"] for f in json.loads(row["flags"])]
        yield {field: row[field] for field in REPORT_FIELDS}


def csv_row(row: dict) -> list[str]:
    """One report row as CSV cells: flags joined by `;`, every cell kept from being read as a
    formula (`request.safe_cell`: amounts and other plain numbers stay as they are)."""
    return [safe_cell(";".join(row[f]) if f == "flags" else str(row[f])) for f in REPORT_FIELDS]


def write_report(db, out: TextIO, fmt: str, *, since: str | None = None, until: str | None = None, bom: bool = False) -> int:
    """Write the report as csv or json; return the number of rows. CSV cells are spreadsheet-
    safe (`csv_row`); `bom` starts a CSV with a UTF-8 BOM (files, not standard output).
    JSON is the data exactly."""
    rows = iter_report_rows(db, since=since, until=until)
    count = 0
    if fmt == "csv":
        if bom:
            out.write("\ufeff")
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(REPORT_FIELDS)
        for row in rows:
            writer.writerow(csv_row(row))
            count += 1
        return count
    out.write("[")
    for row in rows:
        out.write(("," if count else "") + "\n  " + json.dumps(row, ensure_ascii=False))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count


def write_report_file(db, out: Path, fmt: str, *, since: str | None = None, until: str | None = None, unverified: str = "") -> int:
    """Write the report to a file atomically, with a manifest carrying the audit log's head hash
    and whether the log verified (`unverified` is why not, when exported anyway); a CSV file
    starts with a UTF-8 BOM, so spreadsheets read its accents."""
    tmp = out.with_name(out.name + ".tmp")
    manifest = out.with_name(out.name + ".manifest.json")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            count = write_report(db, handle, fmt, since=since, until=until, bom=True)
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()  # of the bytes written, BOM and all
        manifest_tmp = manifest.with_name(manifest.name + ".tmp")
        manifest_tmp.write_text(
            json.dumps(
                {
                    "report": out.name,
                    "format": fmt,
                    "rows": count,
                    "sha256": digest,
                    "since": since,
                    "until": until,
                    "generated_at": now_utc(),
                    "audit_log_head": head(db.conn)[1],
                    "audit_log_head_event": head(db.conn)[0],  # its position: `audit verify --witness` checks both
                    "audit_log_verified": not unverified,
                    **({"audit_log_problem": unverified} if unverified else {}),
                    "reviewers": [r for (r,) in db.conn.execute("SELECT DISTINCT reviewer FROM runs ORDER BY reviewer")],
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
        tmp.replace(out)  # never leave half a report behind
        manifest_tmp.replace(manifest)
    except OSError as exc:
        for leftover in (tmp, manifest.with_name(manifest.name + ".tmp")):
            leftover.unlink(missing_ok=True)
        raise InputError(f"{out}: cannot write the report: {exc.strerror or exc}") from exc
    return count


def find_request(conn, given: str) -> str:
    """The id of the request `given` names: in full, or by a unique beginning of 6 or more characters."""
    text = given.strip().lower()
    if len(text) < 6 or not all(c in "0123456789abcdef" for c in text):
        raise InputError(f"request {given!r}: give the id the request email ends with (32 hexadecimal digits)")
    found = [r for (r,) in conn.execute("SELECT id FROM requests WHERE id >= ? AND id < ? ORDER BY id LIMIT 2", (text, text + "g"))]
    if not found:
        raise InputError(f"request {given}: no such request in this audit database")
    if len(found) > 1:
        raise InputError(f"request {given}: more than one request begins with this; give more of the id")
    return found[0]


def write_items(conn, out: IO[str], request_id: str, *, pending_only: bool = False, bom: bool = True) -> int:
    """A request's items as its email's CSV attachment (`request.write_items_csv`); how many.
    `bom=False` leaves out the UTF-8 BOM (for standard output)."""
    from job.approval.answer import request_items
    from job.approval.request import write_items_csv

    count = 0

    def counted():
        nonlocal count
        for item in request_items(conn, request_id, pending_only=pending_only):
            count += 1
            yield item

    write_items_csv(out, counted(), bom=bom)
    return count


def write_items_file(conn, out: Path, request_id: str, *, pending_only: bool = False) -> int:
    """`write_items` to a file, atomically: never half a list."""
    tmp = out.with_name(out.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            count = write_items(conn, handle, request_id, pending_only=pending_only)
        tmp.replace(out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{out}: cannot write the items: {exc.strerror or exc}") from exc
    return count


def _age(created_at: str) -> str:
    then = calendar.timegm(time.strptime(created_at, "%Y-%m-%dT%H:%M:%SZ"))
    seconds = max(0, int(time.time() - then))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    return f"{days}d {hours}h" if days else f"{hours}h {rest // 60}m"


def collect_status(db) -> dict:
    """Open requests with their age, pending and held items, unsent mail, and the last run."""
    from job.approval.answer import pending_count

    requests = []
    for rid, created, subject, items, reminded, escalated in db.conn.execute(
        "SELECT id, created_at, subject, items, reminded_at, escalated_at FROM requests WHERE status = 'open' ORDER BY created_at"
    ):
        pending = pending_count(db.conn, rid)
        requests.append(
            {
                "request_id": rid,
                "created_at": created,
                "age": _age(created),
                "items": items,
                "pending": pending,
                "held": pending_count(db.conn, rid, status="held"),
                "subject": subject,
                "reminded_at": reminded,
                "escalated_at": escalated,
            }
        )
    last = db.conn.execute(
        "SELECT id, started_at, finished_at, reviewer, new_transactions, flagged, auto_approved, held, request_id,"
        " model_calls, prompt_tokens, completion_tokens FROM runs ORDER BY id DESC LIMIT 1"
    ).fetchone()
    last_run = None
    if last:
        keys = (
            "run_id",
            "started_at",
            "finished_at",
            "reviewer",
            "new_transactions",
            "flagged",
            "auto_approved",
            "held",
            "request_id",
            "model_calls",
            "prompt_tokens",
            "completion_tokens",
        )
        last_run = dict(zip(keys, last))
    return {
        "open_requests": requests,
        "pending_items": db.conn.execute("SELECT COUNT(*) FROM transactions WHERE status = 'pending'").fetchone()[0],
        "held_items": db.conn.execute("SELECT COUNT(*) FROM transactions WHERE status = 'held'").fetchone()[0],
        "unsent_mail": unsent_messages(db),
        "last_run": last_run,
        "audit_log_head": head_hash(db.conn),
    }
