"""The outbox: every outgoing message is recorded before it is sent, and marked sent only
after the transport accepted it. A failed send stays queued and is retried by the next
`run` or `poll`, with a growing pause between attempts; `audit status` shows why it failed.

A queued message keeps the bytes it will send, reply token included: nothing else could
send it after a restart. In the transaction that records it sent, its stored copy becomes
the one with every token replaced by a marker (`messagelog.stored_copy`), and the audit log
records the sha256 of the bytes sent and of the copy kept (`mail_queued`, `mail_sent`).
The database's write-ahead log is then truncated, so no page with the token stays in it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass

from job.config import MailSettings
from job.faults import crash_point
from job.mail.transport import Outgoing, send_messages
from job.store.auditlog import append_event
from job.store.db import now_utc, transaction
from job.store.messagelog import binding, stored_copy

__all__ = ["queue_message", "flush_outbox", "FlushResult", "unsent_messages"]

MAX_BACKOFF_S = 3600


@dataclass(frozen=True, slots=True)
class FlushResult:
    sent: int
    failed: int
    errors: tuple[str, ...]


def queue_message(
    conn,
    *,
    kind: str,
    request_id: str | None,
    message_id: str,
    sender: str,
    recipients: Sequence[str],
    subject: str,
    raw: bytes,
    text: str = "",
    in_reply_to: str = "",
) -> int:
    """Record an outgoing message as queued (inside the caller's transaction).

    `text` is the plain-text body (without its reply token, `redact.redact_text`): kept so
    that lines of it quoted back in a reply are recognised as ours without parsing the raw
    message again. The audit log records the sha256 of `raw` (`mail_queued`).
    """
    cur = conn.execute(
        "INSERT INTO messages (direction, kind, request_id, message_id, in_reply_to, sender, recipients, subject, raw,"
        " created_at, status, new_text) VALUES ('out', ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?)",
        (kind, request_id, message_id, in_reply_to, sender, ", ".join(recipients), subject, raw, now_utc(), text),
    )
    row_id = int(cur.lastrowid)
    append_event(
        conn,
        "mail_queued",
        request_id=request_id or "",
        message_id=message_id,
        detail={"kind": kind, "recipients": list(recipients), **binding(conn, row_id, exact=raw, stored=raw)},
    )
    return row_id


def _backoff_until(attempts: int) -> str:
    delay = min(60 * 2 ** max(attempts - 1, 0), MAX_BACKOFF_S)
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + delay))


async def flush_outbox(db, settings: MailSettings, *, force: bool = False) -> FlushResult:
    """Send every queued message that is due; record the outcome of each."""
    now = now_utc()
    rows = db.conn.execute(
        "SELECT id, raw, sender, recipients FROM messages WHERE direction = 'out' AND status = 'queued'"
        " AND (next_attempt_at IS NULL OR next_attempt_at <= ? OR ?) ORDER BY id",
        (now, force),
    ).fetchall()
    if not rows:
        return FlushResult(0, 0, ())
    outgoing = [
        Outgoing(key=row[0], raw=row[1], sender=row[2], recipients=tuple(a.strip() for a in row[3].split(",") if a.strip())) for row in rows
    ]
    results = await send_messages(settings, outgoing)
    crash_point("outbox:sent-before-recorded")
    kept = {m.key: stored_copy(db.conn, m.raw) for m in outgoing if results.get(m.key, "not attempted") is None}
    errors = []
    with transaction(db) as conn:
        for message in outgoing:
            error = results.get(message.key, "not attempted")
            if error is None:
                conn.execute(
                    "UPDATE messages SET status = 'sent', sent_at = ?, attempts = attempts + 1, detail = '', raw = ? WHERE id = ?",
                    (now_utc(), kept[message.key], message.key),
                )
                kind, request_id, message_id = conn.execute(
                    "SELECT kind, request_id, message_id FROM messages WHERE id = ?", (message.key,)
                ).fetchone()
                append_event(
                    conn,
                    "mail_sent",
                    request_id=request_id or "",
                    message_id=message_id,
                    detail={
                        "kind": kind,
                        "recipients": list(message.recipients),
                        **binding(conn, message.key, exact=message.raw, stored=kept[message.key]),
                    },
                )
            else:
                attempts = conn.execute("SELECT attempts FROM messages WHERE id = ?", (message.key,)).fetchone()[0] + 1
                conn.execute(
                    "UPDATE messages SET attempts = ?, detail = ?, next_attempt_at = ? WHERE id = ?",
                    (attempts, error, _backoff_until(attempts), message.key),
                )
                errors.append(error)
    if kept:
        forget_unredacted(db)
    return FlushResult(len(outgoing) - len(errors), len(errors), tuple(dict.fromkeys(errors)))


def forget_unredacted(db) -> None:
    """Copy the write-ahead log into the database and truncate it: the pages that held a
    message before its token was redacted are overwritten (`secure_delete` zeroes freed space)
    instead of lingering in the log. Best effort: a reader still on an older snapshot keeps
    the log until the next time."""
    try:
        db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    except sqlite3.Error:  # busy: the next flush, or closing the database, checkpoints it
        pass


def unsent_messages(db) -> list[dict]:
    rows = db.conn.execute(
        "SELECT id, kind, recipients, subject, attempts, detail, created_at, next_attempt_at FROM messages"
        " WHERE direction = 'out' AND status = 'queued' ORDER BY id"
    ).fetchall()
    keys = ("id", "kind", "recipients", "subject", "attempts", "error", "created_at", "next_attempt_at")
    return [dict(zip(keys, row)) for row in rows]
