"""The outbox: every outgoing message is recorded before it is sent, and marked sent only
after the transport accepted it. A failed send stays queued and is retried by the next
`run` or `poll`, with a growing pause between attempts; `audit status` shows why it failed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from job.config import MailSettings
from job.faults import crash_point
from job.mail.transport import Outgoing, send_messages
from job.store.auditlog import append_event
from job.store.db import now_utc, transaction

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

    `text` is the plain-text body: kept so that lines of it quoted back in a reply are
    recognised as ours without parsing the raw message again.
    """
    cur = conn.execute(
        "INSERT INTO messages (direction, kind, request_id, message_id, in_reply_to, sender, recipients, subject, raw,"
        " created_at, status, new_text) VALUES ('out', ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?)",
        (kind, request_id, message_id, in_reply_to, sender, ", ".join(recipients), subject, raw, now_utc(), text),
    )
    return int(cur.lastrowid)


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
    errors = []
    with transaction(db) as conn:
        for message in outgoing:
            error = results.get(message.key, "not attempted")
            if error is None:
                conn.execute(
                    "UPDATE messages SET status = 'sent', sent_at = ?, attempts = attempts + 1, detail = '' WHERE id = ?",
                    (now_utc(), message.key),
                )
                kind, request_id, message_id = conn.execute(
                    "SELECT kind, request_id, message_id FROM messages WHERE id = ?", (message.key,)
                ).fetchone()
                append_event(
                    conn,
                    "mail_sent",
                    request_id=request_id or "",
                    message_id=message_id,
                    detail={"kind": kind, "recipients": list(message.recipients)},
                )
            else:
                attempts = conn.execute("SELECT attempts FROM messages WHERE id = ?", (message.key,)).fetchone()[0] + 1
                conn.execute(
                    "UPDATE messages SET attempts = ?, detail = ?, next_attempt_at = ? WHERE id = ?",
                    (attempts, error, _backoff_until(attempts), message.key),
                )
                errors.append(error)
    return FlushResult(len(outgoing) - len(errors), len(errors), tuple(dict.fromkeys(errors)))


def unsent_messages(db) -> list[dict]:
    rows = db.conn.execute(
        "SELECT id, kind, recipients, subject, attempts, detail, created_at, next_attempt_at FROM messages"
        " WHERE direction = 'out' AND status = 'queued' ORDER BY id"
    ).fetchall()
    keys = ("id", "kind", "recipients", "subject", "attempts", "error", "created_at", "next_attempt_at")
    return [dict(zip(keys, row)) for row in rows]
