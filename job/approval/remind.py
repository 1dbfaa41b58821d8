"""Chasing requests nobody answers: remind, escalate, then expire (fail closed).

Run by every `poll`. Each step happens at most once per request, recorded on the request
and in the audit log: a reminder in the approvers' thread listing only what is pending;
an escalation that makes the escalation addresses approvers of that request and sends
them the pending items; and at the end, expiry: what is still pending becomes `expired`
(never approved), the request closes, and everyone is told. "The approvers" and "everyone"
are only those still current (`current_approvers`): an address removed from the
configuration gets no more mail, and a request left with nobody current is warned about.
A current approver whose every token for an open request was retired when the database was
upgraded (`job.store.legacy`) first gets the request again with a fresh one.
"""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass, field

from job.approval.answer import decision_view, queue_answer, queue_request_copies
from job.config import Config
from job.store.auditlog import append_event
from job.store.db import now_utc, transaction
from job.store.seal import request_tokens

__all__ = ["ChaseResult", "chase_open_requests", "current_approvers", "is_current_approver", "retired_holders"]


@dataclass(slots=True)
class ChaseResult:
    reminded: list[str] = field(default_factory=list)
    escalated: list[str] = field(default_factory=list)
    reissued: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _age_seconds(created_at: str, now: float) -> float:
    return now - calendar.timegm(time.strptime(created_at, "%Y-%m-%dT%H:%M:%SZ"))


def request_approvers(conn, request_id: str) -> list[str]:
    """Everyone who holds a token for this request, in the order they were added."""
    return list(
        dict.fromkeys(a for (a,) in conn.execute("SELECT approver FROM request_tokens WHERE request_id = ? ORDER BY rowid", (request_id,)))
    )


def is_current_approver(conn, config: Config, request_id: str, address: str) -> bool:
    """Whether `address`, holding a token for this request, may still use it: it is an approver
    in the current configuration, or a current escalation address the request was escalated to.
    Otherwise it was removed from the configuration and its tokens are revoked."""
    if address in config.approvers:
        return True
    return (
        address in config.reminders.escalation_addresses
        and conn.execute(
            "SELECT 1 FROM messages WHERE direction = 'out' AND kind = 'escalation' AND request_id = ? AND recipients = ? LIMIT 1",
            (request_id, address),
        ).fetchone()
        is not None
    )


def current_approvers(conn, config: Config, request_id: str) -> list[str]:
    """Those of `request_approvers` still current (`is_current_approver`): the only ones
    who get reminders and notices about the request."""
    return [a for a in request_approvers(conn, request_id) if is_current_approver(conn, config, request_id, a)]


def retired_holders(conn, request_id: str, approvers: list[str]) -> list[str]:
    """Those of `approvers` who hold tokens for this request, all of them retired."""
    return [
        a
        for a in approvers
        if conn.execute(
            "SELECT 1 FROM request_tokens WHERE request_id = ? AND approver = ? AND retired_at IS NULL LIMIT 1", (request_id, a)
        ).fetchone()
        is None
    ]


REISSUE_NOTICE = (
    "Sent again with a new reply address: the address of the earlier email was retired when the audit database was"
    " upgraded; please reply to this email"
)


def _no_current_approver(conn, request_id: str, what: str) -> str:
    removed = request_approvers(conn, request_id)
    return (
        f"request {request_id} has no current approver: {', '.join(removed)} {'is' if len(removed) == 1 else 'are'}"
        f" no longer in the configuration (reply tokens revoked); {what}"
    )


def chase_open_requests(db, config: Config, *, now: float | None = None) -> ChaseResult:
    """Take the next due step for every open request."""
    now = time.time() if now is None else now
    settings = config.reminders
    result = ChaseResult()
    rows = db.conn.execute(
        "SELECT id, created_at, reminded_at, escalated_at FROM requests WHERE status = 'open' ORDER BY created_at"
    ).fetchall()
    for request_id, created_at, reminded_at, escalated_at in rows:
        age = _age_seconds(created_at, now)
        hours = int(age // 3600)
        current = current_approvers(db.conn, config, request_id)
        if settings.expire_after is not None and age >= settings.expire_after:
            with transaction(db) as conn:
                expire_request(conn, config, request_id, hours)
            result.expired.append(request_id)
            if not current:
                result.warnings.append(_no_current_approver(db.conn, request_id, "it expired and nobody was told"))
        elif stale := retired_holders(db.conn, request_id, current):
            with transaction(db) as conn:
                sent_to = queue_request_copies(conn, config, request_id, stale, kind="reissue", notice=REISSUE_NOTICE)
                append_event(
                    conn,
                    "reissued",
                    request_id=request_id,
                    detail={"to": sent_to, "why": "reply tokens retired", "tokens": request_tokens(conn, request_id)},
                )
            result.reissued.append(request_id)
        elif settings.escalate_after is not None and settings.escalation_addresses and not escalated_at and age >= settings.escalate_after:
            with transaction(db) as conn:
                sent_to = queue_request_copies(
                    conn,
                    config,
                    request_id,
                    settings.escalation_addresses,
                    kind="escalation",
                    notice=f"Escalated: this request has waited {hours} hours for a decision; you may now decide it",
                )
                at = now_utc()
                conn.execute("UPDATE requests SET escalated_at = ? WHERE id = ?", (at, request_id))
                append_event(
                    conn,
                    "escalated",
                    request_id=request_id,
                    detail={"to": sent_to, "age_hours": hours, "at": at, "tokens": request_tokens(conn, request_id)},
                )
            result.escalated.append(request_id)
        elif not current:  # nobody to remind; said on every poll until it is escalated, expires or someone is added back
            result.warnings.append(_no_current_approver(db.conn, request_id, "nobody can decide it and no reminder is sent"))
        elif settings.remind_after is not None and not reminded_at and not escalated_at and age >= settings.remind_after:
            with transaction(db) as conn:
                sent_to = queue_request_copies(
                    conn,
                    config,
                    request_id,
                    current,
                    kind="reminder",
                    notice=f"Reminder: this request has waited {hours} hours; the items below are still open (pending or held)",
                )
                at = now_utc()
                conn.execute("UPDATE requests SET reminded_at = ? WHERE id = ?", (at, request_id))
                append_event(
                    conn,
                    "reminded",
                    request_id=request_id,
                    detail={"to": sent_to, "age_hours": hours, "at": at, "tokens": request_tokens(conn, request_id)},
                )
            result.reminded.append(request_id)
    return result


def expire_request(conn, config: Config, request_id: str, hours: int) -> None:
    """Mark every pending or held item expired (never approved), close the request, tell everyone
    still current."""
    from job.approval.decide import Decision, Item, Plan, record_decisions

    items = [
        Item(pk, no, txn_id, status)
        for pk, no, txn_id, status in conn.execute(
            "SELECT id, item_no, txn_id, status FROM transactions WHERE request_id = ? AND status IN ('pending', 'held') ORDER BY item_no",
            (request_id,),
        )
    ]
    reason = f"no decision within {hours} hours"
    plan = Plan(tuple(Decision(i, "expired", reason) for i in items), ())
    record_decisions(conn, plan, request_id=request_id, approver="(expiry)", decided_at=now_utc(), message_id="")
    at = now_utc()
    conn.execute("UPDATE requests SET status = 'closed', closed_at = ?, expired_at = ? WHERE id = ?", (at, at, request_id))
    append_event(conn, "expired", request_id=request_id, detail={"items": [i.txn_id for i in items], "age_hours": hours, "closed_at": at})
    # the notice lists the first `max_listed` items and counts the rest, as a confirmation does
    recorded = [decision_view(conn, i.pk, "expired", reason, i.no) for i in items[: config.request.max_listed]]
    for approver in current_approvers(conn, config, request_id):
        queue_answer(
            conn,
            config,
            None,
            approver,
            request_id,
            None,
            problems=[],
            show_grammar=False,
            recorded=recorded,
            recorded_total=len(items),
            recorded_counts={"expired": len(items)},
            heading_prefix="Expired: ",
            kind="expiry",
        )
