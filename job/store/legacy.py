"""Upgrading a database whose reply tokens were stored readable (schema 10 and older).

Until schema 11 each approver's reply token was also part of our Message-IDs, and every
message was stored as sent or received, token included. The Message-IDs are in the audit
log (the request and `mail_sent` events, and replies' `In-Reply-To`), which can never be
rewritten without breaking the chain: so those tokens are retired, not hidden. A retired
token decides nothing (a reply carrying one is refused with the reason); the next `poll`
sends every current approver of a still-open request a fresh copy with a new token
(`remind.chase_open_requests`). Every stored message loses the tokens it holds (a queued
one keeps its bytes, to be sent as they are; it is redacted once sent), and every row is
bound to the audit log (`message_sealed`: the sha256 of the bytes found and of the copy
kept), so `audit verify` checks it from now on.
"""

from __future__ import annotations

import sqlite3

from job.mail.redact import redact_message, redact_text, token_candidates
from job.store.auditlog import append_event
from job.store.db import now_utc
from job.store.messagelog import binding, issued_tokens

__all__ = ["retire_readable_tokens"]


def retire_readable_tokens(conn: sqlite3.Connection) -> None:
    """Migration 11 (inside the migration's transaction): see the module's doc."""
    conn.execute("ALTER TABLE request_tokens ADD COLUMN retired_at TEXT")
    retired = conn.execute("UPDATE request_tokens SET retired_at = ? WHERE retired_at IS NULL", (now_utc(),)).rowcount
    if retired:
        append_event(
            conn,
            "tokens_retired",
            detail={"tokens": retired, "why": "stored readable (in Message-IDs and stored messages) before schema 11"},
        )
    rows = conn.execute("SELECT id, direction, status, request_id, message_id, raw, recipients, new_text, detail FROM messages ORDER BY id")
    for row_id, direction, status, request_id, message_id, raw, recipients, new_text, detail in rows.fetchall():
        raw = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw or b"")
        texts = "\n".join((message_id, recipients, new_text, detail)).encode("utf-8")
        held = issued_tokens(conn, token_candidates(raw) | token_candidates(texts))
        stored = raw if (direction == "out" and status == "queued") else redact_message(raw, held)
        conn.execute(
            "UPDATE messages SET raw = ?, recipients = ?, new_text = ?, detail = ? WHERE id = ?",
            (stored, redact_text(recipients, held), redact_text(new_text, held), redact_text(detail, held), row_id),
        )
        append_event(
            conn,
            "message_sealed",
            request_id=request_id or "",
            message_id=redact_text(message_id, held),
            detail={"status": status, "tokens_redacted": len(held), **binding(conn, row_id, exact=raw, stored=stored)},
        )
