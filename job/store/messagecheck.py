"""`audit verify` for the `messages` table: every row is the one the audit log recorded.

Each message in and out is bound to the hash chain by the events that record it (their
detail names the `messages_row`): the sha256 of its exact bytes, the sha256 of the copy
kept in the database (for mail we sent, the copy with its reply token replaced by a marker),
and the sha256 of its recorded fields (`fields_sha256`). Outgoing mail is bound when it is
queued (`mail_queued`) and again when the relay took it (`mail_sent`: the bytes sent must be
the bytes queued); incoming mail when it is recorded (`message`, `message_failed`); rows from
before this binding existed when the database was upgraded (`message_sealed`). A row changed,
deleted or added outside the product is named.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["BINDING_KINDS", "FIELDS", "fields_sha256", "read_fields", "check_messages", "raw_sha256"]

BINDING_KINDS = ("mail_queued", "mail_sent", "message", "message_failed", "message_sealed")
# what a row records once and never changes; an incoming row's status and detail too (an
# outgoing row's status is checked against its events; its attempts, last error and retry
# times change). When it happened is the events' `at`: `created_at` is the outbox's clock
FIELDS = ("direction", "kind", "request_id", "message_id", "in_reply_to", "sender", "recipients", "subject", "new_text", "content_sha256")
INBOUND_FIELDS = (*FIELDS, "status", "detail")


def raw_sha256(raw: Any) -> str:
    """The sha256 of a stored message's bytes (text stored by a hand outside the product as UTF-8)."""
    data = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw if raw is not None else b"")
    return hashlib.sha256(data).hexdigest()


def fields_sha256(fields: dict[str, Any]) -> str:
    names = INBOUND_FIELDS if fields.get("direction") == "in" else FIELDS
    values = [fields.get(name) for name in names]
    return hashlib.sha256(json.dumps(values, ensure_ascii=False, separators=(",", ":")).encode("utf-8")).hexdigest()


def read_fields(conn, row_id: int) -> dict[str, Any]:
    """The recorded fields of one `messages` row, as `fields_sha256` reads them."""
    row = conn.execute(f"SELECT {', '.join(INBOUND_FIELDS)} FROM messages WHERE id = ?", (row_id,)).fetchone()
    return dict(zip(INBOUND_FIELDS, row)) if row else {}


def _expected(conn) -> tuple[dict[int, dict], str]:
    """Each row's state as the events record it: ({row: state}, the first problem or "")."""
    expected: dict[int, dict] = {}
    kinds = ", ".join(f"'{k}'" for k in BINDING_KINDS)
    for event_id, kind, detail in conn.execute(f"SELECT id, kind, detail FROM events WHERE kind IN ({kinds}) ORDER BY id"):
        try:
            recorded = json.loads(detail)
        except ValueError:
            continue  # the chain check names such a row
        row = recorded.get("messages_row") if isinstance(recorded, dict) else None
        if not isinstance(row, int):
            continue  # an event from before messages were bound, or about no stored row
        if kind == "mail_sent":
            before = expected.get(row)
            if before is None:
                return expected, f"messages row {row}: the audit log records it sent (events row {event_id}) but never queued"
            if recorded.get("sha256") != before["sha256"]:
                return expected, f"messages row {row}: the bytes sent (events row {event_id}) are not the bytes queued"
            expected[row] = {**before, "stored_sha256": recorded.get("stored_sha256"), "status": "sent", "event": event_id}
            continue
        status = "queued" if kind == "mail_queued" else recorded.get("status")
        expected[row] = {
            "sha256": recorded.get("sha256"),
            "stored_sha256": recorded.get("stored_sha256"),
            "fields_sha256": recorded.get("fields_sha256"),
            "status": status,
            "event": event_id,
        }
    return expected, ""


def check_messages(conn) -> str:
    """The first `messages` row that is not as the audit log records it ("" when all are)."""
    expected, problem = _expected(conn)
    if problem:
        return problem
    columns = ", ".join(INBOUND_FIELDS)
    for row_id, raw, *values in conn.execute(f"SELECT id, raw, {columns} FROM messages ORDER BY id"):
        state = expected.pop(row_id, None)
        if state is None:
            return f"messages row {row_id}: not recorded in the audit log (added outside the product?)"
        fields = dict(zip(INBOUND_FIELDS, values))
        where = f"messages row {row_id} ({fields['direction']}, {fields['kind']})"
        if raw_sha256(raw) != state["stored_sha256"]:
            return f"{where}: its stored bytes do not match their hash in the audit log (events row {state['event']})"
        if fields_sha256(fields) != state["fields_sha256"]:
            return f"{where}: its recorded fields do not match the audit log (events row {state['event']})"
        if fields["direction"] == "out" and fields["status"] != state["status"]:
            return f"{where}: status {fields['status']}, but the audit log records it {state['status']}"
    if expected:
        return f"messages row {min(expected)} is missing but the audit log records it"
    return ""
