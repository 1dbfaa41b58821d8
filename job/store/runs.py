"""Recording a run itself: its `runs` row, its `ledger_files` rows and its audit event.

A run's row is written first (its id numbers everything the run records) and completed at
the end with what screening and the review found; each ledger file it imported gets a row
with the id and date ranges of its new transactions (the zone map that dated reports and
the history rules read through).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from job.ledger.ingest_fast import FrameLedger
from job.store.auditlog import append_event
from job.store.db import now_utc

__all__ = ["start_run", "next_transaction_id", "record_ledger_files", "finish_run"]


def start_run(conn, *, mode: str, reviewer: str, ledgers: Sequence[FrameLedger], new_transactions: int, policy_sha256: str) -> int:
    """The run's row, before anything else it records; its id. `policy_sha256`: the
    fingerprint of the settings that decide what is flagged (`screening.fingerprint`)."""
    return conn.execute(
        "INSERT INTO runs (started_at, mode, reviewer, ledgers, transactions, new_transactions, policy_sha256) VALUES (?,?,?,?,?,?,?)",
        (now_utc(), mode, reviewer, len(ledgers), sum(ledger.rows for ledger in ledgers), new_transactions, policy_sha256),
    ).lastrowid


def next_transaction_id(conn) -> int:
    """The id the run's first new transaction gets (the rest follow in order)."""
    return conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM transactions").fetchone()[0]


def record_ledger_files(conn, run_id: int, source: str, chosen: Sequence[tuple[FrameLedger, int]], zones: Sequence[tuple]) -> list[int]:
    """A row per ledger imported, (ledger, new rows) in `chosen`, with its zone (first id,
    last id, first date, last date of its new rows: `Batch.zones`); their ids."""
    return [
        conn.execute(
            "INSERT INTO ledger_files (source, name, path, sha256, rows, new_rows, imported_at, run_id,"
            " first_transaction_id, last_transaction_id, first_date, last_date) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (source, ledger.name, str(Path(ledger.path).resolve()), ledger.sha256, ledger.rows, new, now_utc(), run_id, *zone),
        ).lastrowid
        for (ledger, new), zone in zip(chosen, zones)
    ]


def finish_run(
    conn,
    run_id: int,
    *,
    mode: str,
    reviewer: str,
    chosen: Sequence[tuple[FrameLedger, int]],
    skipped: Sequence[str],
    new_transactions: int,
    flagged: int,
    held: int,
    summary: str,
    usage: tuple[int, int, int],
    request_id: str | None,
    policy: dict,
    policy_sha256: str,
    amended: Sequence[str] = (),
) -> None:
    """Complete the run's row with what it found, and record its `run` event."""
    conn.execute(
        "UPDATE runs SET flagged = ?, auto_approved = ?, held = ?, review_summary = ?, model_calls = ?, prompt_tokens = ?,"
        " completion_tokens = ?, request_id = ?, finished_at = ? WHERE id = ?",
        (flagged, new_transactions - flagged, held, summary, *usage, request_id, now_utc(), run_id),
    )
    append_event(
        conn,
        "run",
        request_id=request_id or "",
        actor=reviewer,
        detail={
            "run_id": run_id,
            "mode": mode,
            "ledgers": [{"name": lg.name, "sha256": lg.sha256, "rows": lg.rows, "new": n} for lg, n in chosen],
            "skipped": list(skipped),
            "new_transactions": new_transactions,
            "flagged": flagged,
            "auto_approved": new_transactions - flagged,
            "held": held,
            "request_id": request_id,
            "model_calls": usage[0],
            "prompt_tokens": usage[1],
            "completion_tokens": usage[2],
            "policy": policy,
            "policy_sha256": policy_sha256,
            "amended": list(amended),
        },
    )
