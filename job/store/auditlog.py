"""The tamper-evident audit log: append-only events in one hash chain.

Every audit event (a run, a request, each message in and out, each decision, a request
closed) is a row whose hash covers the previous row's hash and its own canonical content,
so editing, deleting or reordering a row breaks the chain from that row on. Triggers refuse
UPDATE and DELETE; `audit verify` recomputes the chain, cross-checks every decision against
its event and every status against the decisions, then checks the rows the events speak of
against the runs' seals (`sealcheck.verify_seals`). The head hash and its position go out in every
confirmation, witness notice and report manifest, so copies exist outside the database.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from job.store.clock import now_utc
from job.store.messagecheck import check_messages
from job.store.sealcheck import LogEvent, verify_seals

__all__ = ["GENESIS", "append_event", "head", "head_hash", "verify_log", "Verification", "canonical"]

GENESIS = "0" * 64


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _row_hash(prev_hash: str, content: dict) -> str:
    return hashlib.sha256((prev_hash + "\n" + canonical(content)).encode("utf-8")).hexdigest()


def _content(row_id: int, at: str, kind: str, request_id: str, actor: str, message_id: str, detail: Any) -> dict:
    return {"id": row_id, "at": at, "kind": kind, "request_id": request_id, "actor": actor, "message_id": message_id, "detail": detail}


def head_hash(conn) -> str:
    return head(conn)[1]


def head(conn) -> tuple[int, str]:
    """(position, hash) of the chain's last event: (0, GENESIS) when it has none. Copies kept
    outside the database carry both, so `audit verify --witness` checks the hash at its place."""
    row = conn.execute("SELECT id, row_hash FROM events ORDER BY id DESC LIMIT 1").fetchone()
    return (row[0], row[1]) if row else (0, GENESIS)


def append_event(conn, kind: str, *, request_id: str = "", actor: str = "", message_id: str = "", detail: Any = None) -> str:
    """Append one event to the chain (inside the caller's transaction); return its hash."""
    last = conn.execute("SELECT id, row_hash FROM events ORDER BY id DESC LIMIT 1").fetchone()
    row_id, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    at = now_utc()
    detail = detail if detail is not None else {}
    row_hash = _row_hash(prev, _content(row_id, at, kind, request_id, actor, message_id, detail))
    conn.execute(
        "INSERT INTO events (id, at, kind, request_id, actor, message_id, detail, prev_hash, row_hash) VALUES (?,?,?,?,?,?,?,?,?)",
        (row_id, at, kind, request_id, actor, message_id, canonical(detail), prev, row_hash),
    )
    return row_hash


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    rows: int
    head: str
    problem: str
    notes: tuple[str, ...] = ()  # true, and worth saying: e.g. runs sealed only at an upgrade


SEALED_BY = (
    "sealed",
    "decision",
    "message",
    "request_closed",
    "expired",
    "reminded",
    "escalated",
    "reissued",
    "summary",
)  # what `verify_seals` reads


def verify_log(conn) -> Verification:
    """Recompute the chain, check the decisions, the statuses and the seals against it; name
    the first row that does not match."""
    prev, expected_id, rows = GENESIS, 1, 0
    decision_events: dict[int, dict] = {}
    log: list[LogEvent] = []
    for row_id, at, kind, request_id, actor, message_id, detail, prev_hash, row_hash in conn.execute(
        "SELECT id, at, kind, request_id, actor, message_id, detail, prev_hash, row_hash FROM events ORDER BY id"
    ):
        if row_id != expected_id:
            return Verification(False, rows, prev, f"events row {expected_id} is missing (next row is {row_id})")
        try:
            parsed = json.loads(detail)
        except ValueError:
            return Verification(False, rows, prev, f"events row {row_id}: detail is not valid JSON")
        if prev_hash != prev:
            return Verification(False, rows, prev, f"events row {row_id}: does not follow row {row_id - 1} (previous hash differs)")
        if _row_hash(prev, _content(row_id, at, kind, request_id, actor, message_id, parsed)) != row_hash:
            return Verification(False, rows, prev, f"events row {row_id}: content does not match its hash")
        if kind == "decision":
            decision_events[parsed.get("decision_id")] = parsed
        if kind in SEALED_BY and isinstance(parsed, dict):
            log.append(LogEvent(row_id, at, kind, request_id, message_id, parsed))
        prev, expected_id, rows = row_hash, row_id + 1, rows + 1
    for d_id, request_id, transaction_id, item_no, decision, reason, approver, decided_at, message_id in conn.execute(
        "SELECT id, request_id, transaction_id, item_no, decision, reason, approver, decided_at, message_id FROM decisions ORDER BY id"
    ):
        event = decision_events.pop(d_id, None)
        recorded = {
            "decision_id": d_id,
            "request_id": request_id,
            "transaction_id": transaction_id,
            "item_no": item_no,
            "decision": decision,
            "reason": reason,
            "approver": approver,
            "decided_at": decided_at,
            "message_id": message_id,
        }
        if event is None or any(event.get(k) != v for k, v in recorded.items()):
            return Verification(False, rows, prev, f"decisions row {d_id}: does not match the decision recorded in the audit log")
    if decision_events:
        missing = min(decision_events)
        return Verification(False, rows, prev, f"decisions row {missing} is missing but the audit log records it")
    problem = check_statuses(conn)
    if problem:
        return Verification(False, rows, prev, problem)
    problem = check_messages(conn)  # every stored message is the one the log recorded
    if problem:
        return Verification(False, rows, prev, problem)
    sealed = verify_seals(conn, log)
    return Verification(not sealed.problem, rows, prev, sealed.problem, tuple(sealed.notes))


DECIDED = ("approved", "rejected", "expired")


def check_statuses(conn) -> str:
    """Every transaction's status agrees with the decisions (which the chain vouches for)."""
    row = conn.execute(
        "SELECT t.id, t.txn_id, t.status, d.decision FROM transactions t"
        " LEFT JOIN decisions d ON d.id = (SELECT MAX(id) FROM decisions WHERE transaction_id = t.id AND request_id = t.request_id)"
        " WHERE (d.id IS NOT NULL AND t.status != d.decision)"
        f" OR (d.id IS NULL AND t.status IN {DECIDED!r})"
        " OR (d.id IS NULL AND t.status = 'held' AND t.request_id IS NOT NULL)"
        " OR (t.status = 'pending' AND NOT EXISTS (SELECT 1 FROM requests r WHERE r.id = t.request_id AND r.status = 'open'))"
        " ORDER BY t.id LIMIT 1"
    ).fetchone()
    if row:
        pk, txn_id, status, decision = row
        why = f"the decision recorded is {decision}" if decision else "no decision or open request accounts for it"
        return f"transactions row {pk} ({txn_id}): status {status}, but {why}"
    row = conn.execute(
        "SELECT id, txn_id FROM transactions WHERE status = 'auto_approved' AND flags != '[]' AND EXISTS"
        " (SELECT 1 FROM json_each(flags) WHERE json_extract(value, '$.by') = 'rules') ORDER BY id LIMIT 1"
    ).fetchone()
    if row:
        return f"transactions row {row[0]} ({row[1]}): auto-approved although a rule flagged it"
    row = conn.execute(
        "SELECT id, txn_id, item_no, request_id FROM transactions WHERE status = 'auto_approved' AND request_id IS NOT NULL ORDER BY id LIMIT 1"
    ).fetchone()
    if row:
        return f"transactions row {row[0]} ({row[1]}): auto-approved although it is item {row[2]} of request {row[3]}"
    return ""
