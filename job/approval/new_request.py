"""A run's approval request: opened, drafted from the flagged rows, then recorded and queued.

`draft_request` composes one copy per approver (`request.build_request_copies`) without the
database: the first `max_listed` items in the body, every item in the attached CSV when
there are more (left out, and said so, when too big to attach). `record_request` stores the
copies' token hashes, queues them in the outbox, records the `request` event (the items, or
for a long list their count and the SHA-256 of the canonical list) and suspends the
agent's conversation, which `poll` resumes with the approvers' replies.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import polars as pl

from job.approval.request import ApproverCopy, RequestItem, attachment_name, build_request_copies, fit_attachment, items_attachment
from job.config import Config
from job.mail.outbox import queue_message
from job.screening.flagged import FlaggedFrame
from job.store.auditlog import append_event
from job.store.db import now_utc

__all__ = ["Draft", "open_request", "request_items", "draft_request", "record_request", "items_detail", "EVENT_ITEMS_LIMIT"]

EVENT_ITEMS_LIMIT = 1000  # a longer list is recorded in the request event by its count and digest


@dataclass(frozen=True, slots=True)
class Draft:
    """The request's copies, one per approver; `withheld`: the size of an item list too big
    to attach (0 when attached or not needed)."""

    copies: list[ApproverCopy]
    withheld: int


def open_request(conn, request_id: str, run_id: int, items: int) -> None:
    """The request's row, open, before its rows and its email are recorded."""
    conn.execute(
        "INSERT INTO requests (id, run_id, created_at, status, subject, items, question, conversation_id) VALUES (?,?,?,?,?,?,?,?)",
        (request_id, run_id, now_utc(), "open", "", items, "", str(uuid.uuid4())),
    )


def request_items(flagged: FlaggedFrame, limit: int | None = None) -> Iterator[RequestItem]:
    """Every flagged row (or the first `limit`) as the request numbers it (rank order), one
    chunk at a time. Its reasons are one text, joined as the request shows them, with the
    agent's concern last (`FlaggedFrame.reasons_text`)."""
    columns: list[str | pl.Expr] = [
        "txn_id",
        pl.col("date").dt.to_string("%Y-%m-%d"),
        pl.col("vendor").cast(pl.String),
        "amount_minor",
        pl.col("currency").cast(pl.String),
        "memo",
        flagged.reasons_text().alias("reasons"),
        flagged.note_column().alias("note"),
    ]
    for start, rows in flagged.in_rank_order(columns, limit=limit):
        for n, (t, d, v, a, c, m, reasons, note) in enumerate(rows, start + 1):
            yield RequestItem(n, t, d, v, a, c, m, (reasons,), note)


def draft_request(
    config: Config,
    *,
    request_id: str,
    run_id: int,
    flagged: FlaggedFrame,
    summary: str,
    reviewer: str,
    auto_approved: int,
    ledger_names: Sequence[str],
) -> Draft:
    """The request's copies, one per approver (composed without the database)."""
    listed = list(request_items(flagged, config.request.max_listed))
    attachment = None
    if flagged.count > len(listed):
        attachment = items_attachment(attachment_name(ledger_names, run_id), request_items(flagged))
    attachment, withheld = fit_attachment(attachment, config.request.max_attachment_bytes)
    copies = build_request_copies(
        request_id=request_id,
        run_id=run_id,
        listed=listed,
        total=flagged.count,
        attachment=attachment,
        withheld=withheld,
        withheld_limit=config.request.max_attachment_bytes,
        approvers=config.approvers,
        auto_approved=auto_approved,
        ledger_names=ledger_names,
        reviewer=reviewer,
        summary=summary,
        from_address=config.mail.from_address,
        reply_address=config.mail.reply_address,
    )
    return Draft(copies, withheld)


def items_detail(flagged: FlaggedFrame) -> dict:
    """Which items a request holds, for its audit event: the list itself when it is short,
    else how many and the SHA-256 of the canonical list (`auditlog.canonical` of
    [[no, id], ...]), which anyone can recompute from `transactions` (request_id, item_no,
    txn_id) to check it. The digest is computed as the list is read, never held whole."""
    if flagged.count <= EVENT_ITEMS_LIMIT:
        return {"items": [[no, txn_id] for no, txn_id in flagged.pairs()]}
    digest = hashlib.sha256(b"[")
    for text in flagged.canonical_items():
        digest.update(text.encode("utf-8"))
    digest.update(b"]")
    return {"item_count": flagged.count, "items_sha256": digest.hexdigest()}


async def record_request(
    conn,
    db,
    config: Config,
    draft: Draft,
    *,
    request_id: str,
    run_id: int,
    flagged: FlaggedFrame,
    summary: str,
    new_transactions: int,
) -> tuple[str, ...]:
    """Queue the request's copies, record its event, and suspend the agent's conversation;
    the approvers it went to."""
    copies = draft.copies
    for copy in copies:
        conn.execute(
            "INSERT INTO request_tokens (token_hash, request_id, approver) VALUES (?,?,?)",
            (copy.token_hash, request_id, copy.approver.lower()),
        )
        queue_message(
            conn,
            kind="request",
            request_id=request_id,
            message_id=copy.message_id,
            sender=config.mail.from_address,
            recipients=[copy.approver],
            subject=copy.subject,
            raw=copy.raw,
            text=copy.plain,
        )
    append_event(
        conn,
        "request",
        request_id=request_id,
        detail={
            "run_id": run_id,
            **items_detail(flagged),
            "approvers": [c.approver for c in copies],
            "message_ids": [c.message_id for c in copies],
        },
    )
    question = copies[0].plain
    conn.execute("UPDATE requests SET subject = ?, question = ? WHERE id = ?", (copies[0].subject, question, request_id))
    conversation_id = conn.execute("SELECT conversation_id FROM requests WHERE id = ?", (request_id,)).fetchone()[0]
    briefing = (
        f"Run {run_id}: {new_transactions} new transactions; {flagged.count} flagged for a human decision, "
        f"{new_transactions - flagged.count} auto-approved. Review summary: {summary or '(none)'}\n"
        "Ask the approver to decide every flagged item."
    )
    from job.review.agent import ask_approver_and_suspend

    await ask_approver_and_suspend(db, config.llm, conversation_id, briefing, question)
    return tuple(c.approver for c in copies)
