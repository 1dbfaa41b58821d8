"""`audit poll`: read replies, authenticate them, record decisions, answer.

Each incoming message is handled in one database transaction that records the message,
what it decided (or why it was refused or ignored), the answer to send, and the inbox
watermark. Only after that commit is the message marked on the server (or moved to
`inbox/cur`); a message seen again is recognised by its Message-ID and skipped.
When a request has no pending item left, the finance agent's suspended conversation is
resumed with the approvers' replies and writes the run summary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import hashlib

from .auditlog import append_event, head_hash
from .authenticate import check_authentication_results
from .config import Config
from .db import now_utc, transaction
from .decide import Item, plan_decisions, record_decisions
from .ingest import format_amount_display
from .message import Inbound, compose, find_tokens, hash_token, read_inbound, render, reply_address_for, message_id_for, new_token, sanitize_text
from .outbox import FlushResult, flush_outbox, queue_message
from .reply import extract_new_text, parse_commands
from .transport import Received, open_inbox

__all__ = ["PollResult", "poll_replies", "process_message"]

HUMAN_INPUT_DECISIONS = 200  # decisions listed for the agent's run summary; the rest are counted


@dataclass(slots=True)
class PollResult:
    fetched: int = 0
    duplicates: int = 0
    processed: int = 0
    refused: int = 0
    ignored: int = 0
    decisions: int = 0
    closed_requests: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    sent: FlushResult | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # processed | refused | ignored | duplicate
    detail: str
    decisions: int = 0
    closed: str | None = None


async def poll_replies(db, config: Config) -> PollResult:
    """Fetch new replies once, handle each, resume finished conversations, send answers."""
    result = PollResult()
    await flush_outbox(db, config.mail)
    async with open_inbox(config.mail) as inbox:
        row = db.conn.execute("SELECT uidvalidity, last_uid FROM imap_state WHERE folder = ?", (inbox.name,)).fetchone()
        uidvalidity, last_uid = (row[0], row[1]) if row else (0, 0)
        items = await inbox.fetch(last_uid, uidvalidity)
        result.fetched = len(items)
        for item in items:
            outcome = process_message(db, config, item, inbox_name=inbox.name)
            await inbox.mark_done(item)
            result.decisions += outcome.decisions
            if outcome.closed:
                result.closed_requests.append(outcome.closed)
            counter = "duplicates" if outcome.status == "duplicate" else outcome.status
            setattr(result, counter, getattr(result, counter) + 1)
    result.warnings.extend(await summarize_closed_requests(db, config))
    result.sent = await flush_outbox(db, config.mail)
    return result


def process_message(db, config: Config, item: Received, *, inbox_name: str) -> Outcome:
    """Handle one received message in one transaction (never raises on bad mail)."""
    inbound = read_inbound(item.raw)
    with transaction(db) as conn:
        if item.uid:
            conn.execute(
                "INSERT INTO imap_state (folder, uidvalidity, last_uid) VALUES (?,?,?) ON CONFLICT(folder) DO UPDATE SET"
                " uidvalidity = excluded.uidvalidity, last_uid = MAX(CASE WHEN imap_state.uidvalidity = excluded.uidvalidity"
                " THEN imap_state.last_uid ELSE 0 END, excluded.last_uid)",
                (inbox_name, item.uidvalidity, item.uid),
            )
        if conn.execute("SELECT 1 FROM messages WHERE direction = 'in' AND message_id = ?", (inbound.message_id,)).fetchone():
            return Outcome("duplicate", "already processed")
        outcome, request_id, new_text = _judge(conn, config, inbound)
        append_event(conn, "message", request_id=request_id or "", actor=inbound.identity or ", ".join(inbound.from_addresses),
                     message_id=inbound.message_id, detail={
                         "status": outcome.status, "detail": outcome.detail, "subject": inbound.subject,
                         "sha256": hashlib.sha256(inbound.raw).hexdigest(), "decisions": outcome.decisions,
                     })
        if outcome.closed:
            append_event(conn, "request_closed", request_id=outcome.closed)
        conn.execute(
            "INSERT INTO messages (direction, kind, request_id, message_id, in_reply_to, sender, recipients, subject, raw,"
            " created_at, status, detail, new_text) VALUES ('in', 'reply', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                request_id, inbound.message_id, inbound.in_reply_to, ", ".join(inbound.from_addresses), ", ".join(inbound.to),
                inbound.subject, inbound.raw, now_utc(), outcome.status, outcome.detail, new_text,
            ),
        )
    return outcome


def _judge(conn, config: Config, inbound: Inbound) -> tuple[Outcome, str | None, str]:
    """Decide what this message is and act on it; returns (outcome, request id, new text)."""
    ours = {config.mail.from_address.lower(), config.mail.reply_address.lower()}
    if conn.execute("SELECT 1 FROM messages WHERE direction = 'out' AND message_id = ?", (inbound.message_id,)).fetchone():
        return Outcome("ignored", "our own message came back"), None, ""
    if inbound.auto_reason:
        return Outcome("ignored", f"automatic message ({inbound.auto_reason}); never read as a decision"), None, ""
    if any(a in ours for a in inbound.from_addresses):
        return Outcome("ignored", "sent from our own address"), None, ""
    approvers = set(config.approvers)
    if inbound.identity_problem:
        return Outcome("refused", f"sender cannot be trusted: {inbound.identity_problem}"), None, ""
    sender = inbound.identity
    tokens = find_tokens(" ".join(inbound.to), inbound.in_reply_to, inbound.references)
    matches = []
    for token in tokens:
        row = conn.execute("SELECT request_id, approver FROM request_tokens WHERE token_hash = ?", (hash_token(token),)).fetchone()
        if row:
            matches.append((token, row[0], row[1]))
    answerable = sender in approvers  # never send mail to an address that is not an approver
    request_hint = matches[0][1] if matches else None
    if config.sender_auth.enabled:
        problem = check_authentication_results(inbound.auth_results, config.sender_auth.authserv_ids, sender)
        if problem:
            outcome = Outcome("refused", f"sender authentication failed: {problem}")
            if answerable:
                _answer(conn, config, inbound, sender, request_hint, None, problems=[outcome.detail], show_grammar=False, recorded=[])
            return outcome, request_hint, ""
    if not answerable:
        return Outcome("refused", f"{sender} is not an approver"), request_hint, ""
    if not matches:
        outcome = Outcome("refused", "no valid reply token (reply to the request email itself)")
        _answer(conn, config, inbound, sender, None, None, problems=[outcome.detail], show_grammar=False, recorded=[])
        return outcome, None, ""
    own = [m for m in matches if m[2] == sender]
    if not own:
        outcome = Outcome("refused", f"the reply token was issued to another approver, not to {sender}")
        _answer(conn, config, inbound, sender, request_hint, None, problems=[outcome.detail], show_grammar=False, recorded=[])
        return outcome, request_hint, ""
    token, request_id, _ = own[0]
    request = conn.execute("SELECT status, items FROM requests WHERE id = ?", (request_id,)).fetchone()
    items = _items(conn, request_id)
    sent_texts = [t for (raw,) in conn.execute(
        "SELECT raw FROM messages WHERE direction = 'out' AND request_id = ?", (request_id,)) for t in [read_inbound(raw).plain] if t]
    new_text = extract_new_text(inbound.plain, inbound.html, sent_texts)
    parsed = parse_commands(new_text, row_count=len(items), known_ids=[i.txn_id for i in items])
    new_text = new_text[:20000]
    if request[0] != "open":
        outcome = Outcome("refused", "this request is already closed; decisions are final")
        _answer(conn, config, inbound, sender, request_id, token, problems=[outcome.detail], show_grammar=False, recorded=[])
        return outcome, request_id, new_text
    signed_off = conn.execute("SELECT 1 FROM decisions WHERE request_id = ? AND transaction_id IS NULL", (request_id,)).fetchone() is not None
    plan = plan_decisions(parsed.commands, items, signed_off=signed_off)
    problems = list(parsed.problems) + list(plan.problems)
    record_decisions(conn, plan, request_id=request_id, approver=sender, decided_at=now_utc(), message_id=inbound.message_id)
    pending = conn.execute("SELECT COUNT(*) FROM transactions WHERE request_id = ? AND status = 'pending'", (request_id,)).fetchone()[0]
    closed = None
    if plan.decisions and pending == 0:
        conn.execute("UPDATE requests SET status = 'closed', closed_at = ? WHERE id = ?", (now_utc(), request_id))
        closed = request_id
    limit = config.request.max_listed
    recorded = [_decision_view(conn, d.item.pk if d.item else None, d.decision, d.reason, d.item.no if d.item else 0)
                for d in plan.decisions[:limit]]
    counts: dict[str, int] = {}
    for d in plan.decisions:
        counts[d.decision] = counts.get(d.decision, 0) + 1
    _answer(conn, config, inbound, sender, request_id, token, problems=problems, show_grammar=not plan.decisions, recorded=recorded,
            recorded_total=len(plan.decisions), recorded_counts=counts)
    if plan.decisions:
        detail = f"{len(plan.decisions)} decision(s) recorded" + (f"; {len(problems)} problem(s)" if problems else "")
        return Outcome("processed", detail, len(plan.decisions), closed), request_id, new_text
    final = any("decisions are final" in p for p in plan.problems)
    status = "refused" if final else "processed"
    return Outcome(status, "nothing decided: " + "; ".join(problems)[:500]), request_id, new_text


def _items(conn, request_id: str) -> list[Item]:
    rows = conn.execute(
        "SELECT t.id, t.item_no, t.txn_id, t.status, COALESCE(d.approver, ''), COALESCE(d.decided_at, '')"
        " FROM transactions t LEFT JOIN decisions d ON d.transaction_id = t.id AND d.request_id = t.request_id"
        " WHERE t.request_id = ? ORDER BY t.item_no",
        (request_id,),
    ).fetchall()
    return [Item(*row) for row in rows]


def _decision_view(conn, pk: int | None, decision: str, reason: str, no: int) -> dict:
    if pk is None:
        return {"no": "-", "id": "run", "vendor": "all transactions", "amount": "-", "currency": "", "decision": "signed off", "reason": reason}
    row = conn.execute("SELECT txn_id, vendor, amount_minor, currency FROM transactions WHERE id = ?", (pk,)).fetchone()
    return {
        "no": no, "id": sanitize_text(row[0], 60), "vendor": sanitize_text(row[1], 80),
        "amount": format_amount_display(row[2], row[3]), "currency": row[3], "decision": decision, "reason": sanitize_text(reason, 300),
    }


def _answer(conn, config: Config, inbound: Inbound, to: str, request_id: str | None, token: str | None, *,
            problems: Sequence[str], show_grammar: bool, recorded: list[dict], recorded_total: int | None = None,
            recorded_counts: dict[str, int] | None = None) -> None:
    """Queue the confirmation (or refusal) in the same thread as the approver's message.

    It lists at most `request.max_listed` decisions and pending items, with their totals.
    """
    limit = config.request.max_listed
    pending = []
    pending_total = 0
    subject = "Ledger audit"
    if request_id:
        subject = conn.execute("SELECT subject FROM requests WHERE id = ?", (request_id,)).fetchone()[0] or subject
        pending_total = conn.execute(
            "SELECT COUNT(*) FROM transactions WHERE request_id = ? AND status = 'pending'", (request_id,)).fetchone()[0]
        for no, txn_id, vendor, amount, currency in conn.execute(
            "SELECT item_no, txn_id, vendor, amount_minor, currency FROM transactions WHERE request_id = ? AND status = 'pending'"
            " ORDER BY item_no LIMIT ?", (request_id, limit)):
            pending.append({"no": no, "id": sanitize_text(txn_id, 60), "vendor": sanitize_text(vendor, 80),
                            "amount": format_amount_display(amount, currency), "currency": currency})
    recorded_total = len(recorded) if recorded_total is None else recorded_total
    heading = ("Recorded: " if recorded else "Could not understand your reply: " if show_grammar else "Not recorded: ") + subject
    totals = ", ".join(f"{n:,} {word.replace('_', ' ')}" for word, n in sorted((recorded_counts or {}).items()))
    plain, html = render(
        "confirmation", heading=heading, recorded=recorded, problems=[sanitize_text(p, 300) for p in problems],
        pending=pending, show_grammar=show_grammar, request_id=request_id or "-", received_at=now_utc(),
        head=head_hash(conn), recorded_more=recorded_total - len(recorded), recorded_totals=totals,
        pending_total=pending_total, pending_more=pending_total - len(pending),
    )
    domain = config.mail.from_address.rpartition("@")[2]
    kind = "confirmation" if recorded else "refusal"
    msg = compose(
        sender=config.mail.from_address, to=[to], subject=heading, plain=plain, html=html,
        message_id=message_id_for(token, domain, kind="msg") if token else message_id_for(new_token(), domain, kind="ans"),
        reply_to=reply_address_for(config.mail.reply_address, token) if token else None,
        in_reply_to=inbound.message_id, references=[*inbound.references.split(), inbound.message_id],
    )
    queue_message(conn, kind=kind, request_id=request_id, message_id=msg["Message-ID"], sender=config.mail.from_address,
                  recipients=[to], subject=heading, raw=msg.as_bytes(), in_reply_to=inbound.message_id)


async def summarize_closed_requests(db, config: Config) -> list[str]:
    """Resume the agent for each closed request that has no summary yet; return warnings."""
    warnings = []
    rows = db.conn.execute("SELECT id, conversation_id FROM requests WHERE status = 'closed' AND summary = ''").fetchall()
    if not rows:
        return warnings
    from .agent import resume_with_replies
    from .errors import AuditError

    for request_id, conversation_id in rows:
        human_input = _human_input(db, request_id)
        try:
            summary = await resume_with_replies(db, config.llm, conversation_id, human_input)
        except AuditError as exc:
            warnings.append(f"request {request_id}: summary not written yet ({exc}); will retry on the next poll")
            continue
        with transaction(db) as conn:
            conn.execute("UPDATE requests SET summary = ? WHERE id = ?", (summary or "(no summary)", request_id))
            append_event(conn, "summary", request_id=request_id, actor="finance_agent", detail={"summary": summary})
    return warnings


def _human_input(db, request_id: str) -> str:
    """The approvers' input as the agent reads it: their own words, then what was recorded."""
    lines = ["Replies from the approvers (their new text only):"]
    for sender, created, text in db.conn.execute(
        "SELECT sender, created_at, new_text FROM messages WHERE direction = 'in' AND request_id = ? AND status = 'processed' ORDER BY id",
        (request_id,)):
        lines.append(f"[{created}] {sender}: {sanitize_text(text, 2000)}")
    lines.append("Decisions recorded:")
    counts: dict[str, int] = {}
    listed = 0
    for no, txn_id, decision, reason, approver in db.conn.execute(
        "SELECT d.item_no, COALESCE(t.txn_id, 'run'), d.decision, d.reason, d.approver FROM decisions d"
        " LEFT JOIN transactions t ON t.id = d.transaction_id WHERE d.request_id = ? ORDER BY d.id", (request_id,)):
        counts[decision] = counts.get(decision, 0) + 1
        if listed < HUMAN_INPUT_DECISIONS:  # the model reads a bounded list, whatever the request's size
            listed += 1
            lines.append(f"- item {no or 0} {txn_id}: {decision} by {approver}" + (f" ({sanitize_text(reason, 300)})" if reason else ""))
    total = sum(counts.values())
    if total > listed:
        lines.append(f"- ... and {total - listed} more decisions, not listed")
        lines.append("Totals: " + ", ".join(f"{n} {word}" for word, n in sorted(counts.items())))
    return "\n".join(lines)
