"""Mail we write back: confirmations, refusals, reminders, escalations and expiry notices.

Each is composed from `templates/`, threaded on the message it answers, and queued in
the outbox inside the caller's transaction, so it exists exactly when what it reports
was committed.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

from job.approval.request import RequestItem, attachment_name, build_request_copies, fit_attachment, items_attachment
from job.config import Config
from job.ledger.ingest import format_amount_display
from job.mail.message import Inbound, compose, message_id_for, render, reply_address_for, sanitize_text
from job.mail.outbox import queue_message
from job.mail.redact import redact_text
from job.store.auditlog import head, head_hash
from job.store.db import now_utc

__all__ = [
    "queue_answer",
    "queue_request_copies",
    "pending_views",
    "decision_view",
    "request_items",
    "pending_count",
    "open_count",
    "run_label",
    "sign_off_state",
    "queue_head_notices",
]


def pending_views(conn, request_id: str, limit: int | None = None, *, status: str = "pending") -> list[dict]:
    """The first `limit` items of a request in this status (pending, or held), as confirmations list them."""
    views = []
    for no, txn_id, vendor, amount, currency in conn.execute(
        "SELECT item_no, txn_id, vendor, amount_minor, currency FROM transactions WHERE request_id = ? AND status = ?"
        " ORDER BY item_no LIMIT ?",
        (request_id, status, -1 if limit is None else limit),
    ):
        views.append(
            {
                "no": no,
                "id": sanitize_text(txn_id, 60),
                "vendor": sanitize_text(vendor, 80),
                "amount": format_amount_display(amount, currency),
                "currency": currency,
            }
        )
    return views


def decision_view(conn, pk: int | None, decision: str, reason: str, no: int, *, request_id: str | None = None) -> dict:
    """What a confirmation lists for one decision; `label` names the item, or the run for a sign-off."""
    if pk is None:
        return {"label": run_label(conn, request_id), "decision": "signed off", "reason": sanitize_text(reason, 300)}
    row = conn.execute("SELECT txn_id, vendor, amount_minor, currency FROM transactions WHERE id = ?", (pk,)).fetchone()
    amount = format_amount_display(row[2], row[3])
    return {
        "label": f"item {no} {sanitize_text(row[0], 60)} ({sanitize_text(row[1], 80)}, {amount} {row[3]})",
        "decision": decision,
        "reason": sanitize_text(reason, 300),
    }


def run_label(conn, request_id: str | None) -> str:
    """ "run 3 (ledger-2026-11-24.csv: 1,204 transactions, none flagged)": what a sign-off covers."""
    row = (
        conn.execute(
            "SELECT r.id, r.transactions, r.flagged FROM runs r JOIN requests q ON q.run_id = r.id WHERE q.id = ?", (request_id,)
        ).fetchone()
        if request_id
        else None
    )
    if row is None:
        return "the run"
    names = ", ".join(
        sanitize_text(n, 80) for (n,) in conn.execute("SELECT name FROM ledger_files WHERE run_id = ? ORDER BY id", (row[0],))
    )
    flagged = f"{row[2]:,} flagged" if row[2] else "none flagged"
    return f"run {row[0]} ({names or 'no ledger'}: {row[1]:,} transaction{'s' if row[1] != 1 else ''}, {flagged})"


def sign_off_state(conn, request_id: str | None) -> str:
    """ "" for a request with items; else "signed off" or "waiting" (a run sent for sign-off)."""
    if not request_id or conn.execute("SELECT items FROM requests WHERE id = ?", (request_id,)).fetchone()[0]:
        return ""
    done = conn.execute("SELECT 1 FROM decisions WHERE request_id = ? AND decision = 'signed_off'", (request_id,)).fetchone()
    return "signed off" if done else "waiting"


def queue_answer(
    conn,
    config: Config,
    inbound: Inbound | None,
    to: str,
    request_id: str | None,
    token: str | None,
    *,
    problems: Sequence[str],
    show_grammar: bool,
    recorded: list[dict],
    heading_prefix: str | None = None,
    kind: str | None = None,
    recorded_total: int | None = None,
    recorded_counts: dict[str, int] | None = None,
    would: Sequence[dict] = (),
    would_total: int = 0,
    unclear: bool = False,
) -> str:
    """Queue a confirmation (or refusal) in the thread of `inbound`; return its plain text as
    stored (the reply token replaced by a marker).

    It lists at most `request.max_listed` decisions and pending items, with their totals.
    """
    limit = config.request.max_listed
    subject = "Ledger audit"
    pending: list[dict] = []
    held: list[dict] = []
    pending_total = held_total = 0
    if request_id:
        subject = conn.execute("SELECT subject FROM requests WHERE id = ?", (request_id,)).fetchone()[0] or subject
        pending = pending_views(conn, request_id, limit)
        pending_total = pending_count(conn, request_id)
        held = pending_views(conn, request_id, limit, status="held")
        held_total = pending_count(conn, request_id, status="held")
    if recorded_counts is None:
        recorded_counts = {}
        for d in recorded:
            recorded_counts[d["decision"]] = recorded_counts.get(d["decision"], 0) + 1
    recorded_total = len(recorded) if recorded_total is None else recorded_total
    recorded = recorded[:limit]
    totals = ", ".join(f"{n:,} {word.replace('_', ' ')}" for word, n in sorted(recorded_counts.items()))
    if heading_prefix is None:
        heading_prefix = (
            "Recorded: "
            if recorded
            else "Nothing recorded, your reply is not clear: "
            if unclear
            else "Could not understand your reply: "
            if show_grammar
            else "Not recorded: "
        )
    heading = heading_prefix + subject
    plain, html = render(
        "confirmation",
        heading=heading,
        recorded=recorded,
        problems=[sanitize_text(p, 300) for p in problems],
        pending=pending,
        pending_total=pending_total,
        pending_more=pending_total - len(pending),
        show_grammar=show_grammar,
        request_id=request_id or "-",
        received_at=now_utc(),
        head=head_hash(conn),
        head_event=head(conn)[0],
        recorded_more=recorded_total - len(recorded),
        recorded_totals=totals,
        unclear=unclear,
        would=list(would),
        would_more=max(0, would_total - len(would)),
        sign_off=sign_off_state(conn, request_id),
        held=held,
        held_total=held_total,
        held_more=held_total - len(held),
        reply_address=reply_address_for(config.mail.reply_address, token) if token else "",
    )
    stored = redact_text(plain, {token}) if token else plain
    domain = config.mail.from_address.rpartition("@")[2]
    references = [*inbound.references.split(), inbound.message_id] if inbound else []
    msg = compose(
        sender=config.mail.from_address,
        to=[to],
        subject=heading,
        plain=plain,
        html=html,
        message_id=message_id_for(domain, kind="msg" if token else "ans"),
        reply_to=reply_address_for(config.mail.reply_address, token) if token else None,
        in_reply_to=inbound.message_id if inbound else None,
        references=references,
    )
    queue_message(
        conn,
        kind=kind or ("confirmation" if recorded else "refusal"),
        request_id=request_id,
        message_id=msg["Message-ID"],
        sender=config.mail.from_address,
        recipients=[to],
        subject=heading,
        raw=msg.as_bytes(),
        text=stored,
        in_reply_to=inbound.message_id if inbound else "",
    )
    return stored


def queue_head_notices(conn, config: Config, what: str) -> None:
    """Mail the audit log's head to `[audit] witness_addresses` (inside the caller's transaction):
    copies kept outside the database, which `audit verify --witness` checks against the chain."""
    if not config.witness_addresses:
        return
    position, head_now = head(conn)
    subject = f"Ledger audit log head after {what}"
    text = (
        f"The ledger audit's log after {what} holds {position:,} events.\n\naudit log head {head_now} at event {position}\n\n"
        "Keep this message. 'audit verify --witness FOLDER' with the folder or mbox it is saved in\n"
        "checks that the audit log still holds this head; a log rewritten afterwards does not.\n"
    )
    domain = config.mail.from_address.rpartition("@")[2]
    for address in config.witness_addresses:
        msg = compose(
            sender=config.mail.from_address,
            to=[address],
            subject=subject,
            plain=text,
            html=None,
            message_id=message_id_for(domain, kind="wit"),
        )
        queue_message(
            conn,
            kind="witness",
            request_id=None,
            message_id=msg["Message-ID"],
            sender=config.mail.from_address,
            recipients=[address],
            subject=subject,
            raw=msg.as_bytes(),
            text=text,
        )


def request_items(conn, request_id: str, *, pending_only: bool = True, open_only: bool = False) -> Iterator[RequestItem]:
    """A request's items in item order, as its email and attachment number them (those
    still pending, those still open (pending or held), or all of them), read as they are used."""
    import json

    status = " AND status IN ('pending', 'held')" if open_only else " AND status = 'pending'" if pending_only else ""
    for no, txn_id, date, vendor, amount, currency, memo, flags, note in conn.execute(
        "SELECT item_no, txn_id, date, vendor, amount_minor, currency, memo, flags, agent_note FROM transactions"
        f" WHERE request_id = ?{status} ORDER BY item_no",
        (request_id,),
    ):
        yield RequestItem(no, txn_id, date, vendor, amount, currency, memo, tuple(f["reason"] for f in json.loads(flags)), note)


def pending_count(conn, request_id: str, *, status: str = "pending") -> int:
    """How many of a request's items are still pending (or held)."""
    return conn.execute("SELECT COUNT(*) FROM transactions WHERE request_id = ? AND status = ?", (request_id, status)).fetchone()[0]


def open_count(conn, request_id: str) -> int:
    """How many of a request's items keep it open: pending or held."""
    return pending_count(conn, request_id) + pending_count(conn, request_id, status="held")


def queue_request_copies(conn, config: Config, request_id: str, approvers: Sequence[str], *, kind: str, notice: str) -> list[str]:
    """Send the still-open (pending or held) items of a request again (reminder or escalation), one
    copy per approver with a fresh token, threaded on that approver's original request when there is one."""
    run_id, subject, _summary = conn.execute("SELECT run_id, subject, summary FROM requests WHERE id = ?", (request_id,)).fetchone()
    reviewer, review_summary, auto_approved = conn.execute(
        "SELECT reviewer, review_summary, auto_approved FROM runs WHERE id = ?", (run_id,)
    ).fetchone()
    ledger_names = [n for (n,) in conn.execute("SELECT name FROM ledger_files WHERE run_id = ? ORDER BY id", (run_id,))]
    # the items are read as the attachment is written, never held: a request may hold millions
    listed = list(itertools.islice(request_items(conn, request_id, open_only=True), config.request.max_listed))
    total = open_count(conn, request_id)
    extra = (
        items_attachment(attachment_name(ledger_names, run_id), request_items(conn, request_id, open_only=True))
        if total > len(listed)
        else None
    )
    extra, withheld = fit_attachment(extra, config.request.max_attachment_bytes)
    copies = build_request_copies(
        request_id=request_id,
        run_id=run_id,
        listed=listed,
        total=total,
        attachment=extra,
        approvers=approvers,
        auto_approved=auto_approved,
        ledger_names=ledger_names,
        withheld=withheld,
        withheld_limit=config.request.max_attachment_bytes,
        reviewer=reviewer,
        summary=review_summary,
        from_address=config.mail.from_address,
        reply_address=config.mail.reply_address,
        notice=notice,
        subject=f"{notice.split(':')[0]}: {subject}",
        thread=lambda approver: _original_thread(conn, request_id, approver),
    )
    for copy in copies:
        conn.execute(
            "INSERT INTO request_tokens (token_hash, request_id, approver) VALUES (?,?,?)", (copy.token_hash, request_id, copy.approver)
        )
        queue_message(
            conn,
            kind=kind,
            request_id=request_id,
            message_id=copy.message_id,
            sender=config.mail.from_address,
            recipients=[copy.approver],
            subject=copy.subject,
            raw=copy.raw,
            text=copy.plain,
        )
    return [c.approver for c in copies]


def _original_thread(conn, request_id: str, approver: str) -> list[str]:
    row = conn.execute(
        "SELECT message_id FROM messages WHERE direction = 'out' AND kind = 'request' AND request_id = ? AND recipients = ?"
        " ORDER BY id LIMIT 1",
        (request_id, approver),
    ).fetchone()
    return [row[0]] if row else []
