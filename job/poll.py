"""`audit poll`: read replies, authenticate them, record decisions, answer, chase.

Each incoming message is handled in one database transaction that records the message,
what it decided (or why it was refused or ignored), the answer to send, and the inbox
watermark. Only after that commit is the message marked on the server (or moved to
`inbox/cur`); a message seen again is recognised by its Message-ID and its content (trace
headers left out) and skipped, while another message reusing a Message-ID is handled on its
own merits. A token works only while its address is still current in the configuration
(`remind.is_current_approver`): a removed address is refused and not answered. A refusal is
answered (to an approver only) at most once per address and request in
`mail.refusal_interval`, so forged mail cannot flood an approver with answers. A message
that fails is retried by the next polls and, after `mail.max_attempts`, moved aside with
its error recorded; it never stops the others. Then open requests are chased (reminders,
escalation, expiry), and when a request has no pending item left the finance agent's
suspended conversation is resumed with the approvers' replies and writes the summary.
"""

from __future__ import annotations

import hashlib
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from job.approval.answer import decision_view, open_count, queue_answer, queue_head_notices
from job.approval.decide import Item, plan_decisions, record_decisions
from job.approval.remind import ChaseResult, chase_open_requests, is_current_approver
from job.approval.reply import IdIndex, collect_sent_lines, read_reply
from job.config import Config, format_duration
from job.faults import crash_point, fail_point
from job.mail.authenticate import check_authentication_results
from job.mail.message import Inbound, content_id, find_tokens, hash_token, read_inbound, sanitize_text
from job.mail.outbox import FlushResult, flush_outbox
from job.mail.redact import redact_inbound, redact_message, redact_text
from job.mail.transport import Received, open_inbox
from job.store.auditlog import append_event, head_hash
from job.store.db import content_sha256, now_utc, transaction
from job.store.messagelog import binding, tokens_in
from job.store.seal import cover_transcript

__all__ = ["PollResult", "poll_replies", "process_message"]

MESSAGE_BUDGET_SECONDS = 20  # no message may take longer to read and record; see time_budget
HUMAN_INPUT_DECISIONS = 200  # decisions listed for the agent's run summary; the rest are counted


@dataclass(slots=True)
class PollResult:
    fetched: int = 0
    duplicates: int = 0
    processed: int = 0
    refused: int = 0
    ignored: int = 0
    failed: int = 0
    decisions: int = 0
    closed_requests: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    chased: ChaseResult | None = None
    sent: FlushResult | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # processed | refused | ignored | duplicate
    detail: str
    decisions: int = 0
    closed: str | None = None


class SentLines:
    """What one poll keeps per request: the normalized lines of everything we sent, the
    request's items and its id index. Cleared whenever a message's transaction is rolled back."""

    def __init__(self) -> None:
        self.by_request: dict[str, set[str]] = {}
        self.items: dict[str, list[Item]] = {}
        self.indexes: dict[str, IdIndex] = {}

    def clear(self) -> None:
        self.by_request.clear()
        self.items.clear()
        self.indexes.clear()

    def get_index(self, request_id: str) -> IdIndex:
        """The request's ids for resolving replies (ids never change; read after get_items)."""
        if request_id not in self.indexes:
            self.indexes[request_id] = IdIndex([i.txn_id for i in self.items[request_id]])
        return self.indexes[request_id]

    def get_items(self, conn, request_id: str) -> list[Item]:
        if request_id not in self.items:
            self.items[request_id] = _items(conn, request_id)
        return self.items[request_id]

    def update_items(self, request_id: str, plan, approver: str, decided_at: str) -> None:
        if request_id not in self.items:
            return
        decided = {d.item.no: d.decision for d in plan.decisions if d.item is not None}
        self.items[request_id] = [
            Item(i.pk, i.no, i.txn_id, decided[i.no], approver, decided_at) if i.no in decided else i for i in self.items[request_id]
        ]

    def get(self, conn, request_id: str) -> set[str]:
        if request_id not in self.by_request:
            # new_text is empty on mail queued before it was recorded: read that from the raw message
            texts = [
                text or (raw and read_inbound(raw).plain) or ""
                for text, raw in conn.execute(
                    "SELECT new_text, CASE WHEN new_text = '' THEN raw END FROM messages WHERE direction = 'out' AND request_id = ?",
                    (request_id,),
                )
            ]
            self.by_request[request_id] = set(collect_sent_lines(texts))
        return self.by_request[request_id]

    def add(self, request_id: str | None, text: str) -> None:
        if request_id in self.by_request and text:
            self.by_request[request_id] |= collect_sent_lines([text])


async def poll_replies(db, config: Config) -> PollResult:
    """Fetch new replies once, handle each, chase open requests, resume finished ones, send."""
    result = PollResult()
    head_before = head_hash(db.conn)
    retried = await flush_outbox(db, config.mail)  # what earlier runs or polls could not send
    sent_lines = SentLines()
    async with open_inbox(config.mail) as inbox:
        row = db.conn.execute("SELECT uidvalidity, last_uid FROM imap_state WHERE folder = ?", (inbox.name,)).fetchone()
        uidvalidity, last_uid = (row[0], row[1]) if row else (0, 0)
        retry = [
            k.rsplit("/", 1)[1]
            for (k,) in db.conn.execute(
                "SELECT key FROM inbound_failures WHERE moved_to IS NULL AND key LIKE ?", (f"{inbox.name}/{uidvalidity}/%",)
            )
        ]
        done: list[Received] = []
        async for item in inbox.fetch(last_uid, uidvalidity, retry=retry):
            result.fetched += 1
            try:
                with time_budget(MESSAGE_BUDGET_SECONDS):
                    outcome = process_message(db, config, item, inbox_name=inbox.name, sent_lines=sent_lines)
            except Exception as exc:  # one bad message never stops the others
                sent_lines.clear()
                result.failed += 1
                result.warnings.append(await _record_failure(db, config, inbox, item, exc))
                continue
            crash_point("poll:committed-before-marked")
            done.append(item)
            if len(done) >= 200:  # marked after their commits, many per server round trip
                await inbox.mark_all_done(done)
                done = []
            result.decisions += outcome.decisions
            if outcome.closed:
                result.closed_requests.append(outcome.closed)
            counter = "duplicates" if outcome.status == "duplicate" else outcome.status
            setattr(result, counter, getattr(result, counter) + 1)
        await inbox.mark_all_done(done)
    result.chased = chase_open_requests(db, config)
    result.closed_requests.extend(result.chased.expired)
    result.warnings.extend(result.chased.warnings)
    crash_point("poll:before-summaries")
    result.warnings.extend(await summarize_closed_requests(db, config))
    if config.witness_addresses and head_hash(db.conn) != head_before:  # this poll recorded something
        with transaction(db) as conn:
            queue_head_notices(conn, config, "a poll")
    sent = await flush_outbox(db, config.mail)
    result.sent = FlushResult(retried.sent + sent.sent, retried.failed + sent.failed, tuple(dict.fromkeys(retried.errors + sent.errors)))
    return result


class MessageTooSlow(Exception):
    """Reading one message took longer than its time budget."""


@contextmanager
def time_budget(seconds: float) -> Iterator[None]:
    """Stop the block with MessageTooSlow after `seconds` (on the main thread; elsewhere no limit).

    Reading is linear in the size of a message, so this only stops what nothing else should
    let through: the message is then not read, its transaction rolls back, and it takes the
    path of any failed message (retried, then moved aside with the error recorded).
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum, frame):
        raise MessageTooSlow(f"reading the message took longer than {seconds:g} s; nothing of it was recorded")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _inserted_id(cur) -> int:
    """The id of the row the cursor's INSERT just added."""
    row_id = cur.lastrowid
    if row_id is None:
        raise RuntimeError("the INSERT added no row")
    return row_id


def _failure_key(inbox_name: str, item: Received) -> str:
    return f"{inbox_name}/{item.uidvalidity}/{item.key}"


async def _record_failure(db, config: Config, inbox, item: Received, exc: Exception) -> str:
    """Count a failed attempt; after max_attempts move the message aside. Returns a warning.
    Nothing of it is stored or told with a reply token in it."""
    held = tokens_in(db.conn, item.raw)
    error = redact_text(f"{type(exc).__name__}: {sanitize_text(str(exc), 300)}", held)
    key = _failure_key(inbox.name, item)
    with transaction(db) as conn:
        conn.execute(
            "INSERT INTO inbound_failures (key, attempts, last_error, first_at, last_at) VALUES (?, 1, ?, ?, ?)"
            " ON CONFLICT(key) DO UPDATE SET attempts = attempts + 1, last_error = excluded.last_error, last_at = excluded.last_at",
            (key, error, now_utc(), now_utc()),
        )
        attempts = conn.execute("SELECT attempts FROM inbound_failures WHERE key = ?", (key,)).fetchone()[0]
    try:
        message_id = read_inbound(item.raw).message_id
    except Exception:  # the message that failed may fail to parse again
        message_id = content_id(item.raw)
    message_id = redact_text(message_id, held)
    if attempts < config.mail.max_attempts:
        return f"message {message_id} failed (attempt {attempts} of {config.mail.max_attempts}, retried next poll): {error}"
    where = await inbox.move_aside(item, config.mail.failed_folder)
    content = content_sha256(item.raw)
    stored = redact_message(item.raw, held)
    with transaction(db) as conn:
        conn.execute("UPDATE inbound_failures SET moved_to = ? WHERE key = ?", (where, key))
        cur = conn.execute(
            "INSERT OR IGNORE INTO messages (direction, kind, message_id, raw, created_at, status, detail, content_sha256)"
            " VALUES ('in', 'reply', ?, ?, ?, 'failed', ?, ?)",
            (message_id, stored, now_utc(), error, content),
        )
        detail = {"error": error, "attempts": attempts, "moved_to": where}
        if cur.rowcount == 1:
            detail.update(binding(conn, _inserted_id(cur), exact=item.raw, stored=stored))
        append_event(conn, "message_failed", message_id=message_id, detail=detail)
    return f"message {message_id} failed {attempts} times and was moved to {where}: {error}"


def process_message(db, config: Config, item: Received, *, inbox_name: str, sent_lines: SentLines | None = None) -> Outcome:
    """Handle one received message in one transaction.

    The tokens it carries (in its recipients, or quoted in its body) decide which request
    and approver it answers; everything stored or answered is read from its copy without any
    token we issued (`redact_inbound`), and the audit log records the sha256 of its exact
    bytes and of that copy."""
    sent_lines = sent_lines or SentLines()
    fail_point(item.raw)
    original = read_inbound(item.raw)
    content = content_sha256(original.raw)
    carried = Carried.read(original)
    inbound = redact_inbound(original, tokens_in(db.conn, item.raw))
    with transaction(db) as conn:
        if item.uid:
            conn.execute(
                "INSERT INTO imap_state (folder, uidvalidity, last_uid) VALUES (?,?,?) ON CONFLICT(folder) DO UPDATE SET"
                " uidvalidity = excluded.uidvalidity, last_uid = MAX(CASE WHEN imap_state.uidvalidity = excluded.uidvalidity"
                " THEN imap_state.last_uid ELSE 0 END, excluded.last_uid)",
                (inbox_name, item.uidvalidity, item.uid),
            )
        conn.execute("DELETE FROM inbound_failures WHERE key = ?", (_failure_key(inbox_name, item),))
        # a repeat has the Message-ID and the content of an earlier message: anyone can send first
        # with the Message-ID an approver's reply will carry, and that must not silence the reply
        seen = {
            c
            for (c,) in conn.execute("SELECT content_sha256 FROM messages WHERE direction = 'in' AND message_id = ?", (inbound.message_id,))
        }
        if content in seen:
            append_event(
                conn,
                "message_repeated",
                actor=inbound.identity or ", ".join(inbound.from_addresses),
                message_id=inbound.message_id,
                detail={"sha256": hashlib.sha256(original.raw).hexdigest()},
            )
            return Outcome("duplicate", "already processed")
        try:
            outcome, request_id, new_text = _judge(conn, config, inbound, sent_lines, carried)
        except BaseException:
            sent_lines.clear()
            raise
        cur = conn.execute(
            "INSERT INTO messages (direction, kind, request_id, message_id, in_reply_to, sender, recipients, subject, raw,"
            " created_at, status, detail, new_text, content_sha256) VALUES ('in', 'reply', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                request_id,
                inbound.message_id,
                inbound.in_reply_to,
                ", ".join(inbound.from_addresses),
                ", ".join(inbound.to),
                inbound.subject,
                inbound.raw,
                now_utc(),
                outcome.status,
                outcome.detail,
                new_text,
                content,
            ),
        )
        detail = {
            "status": outcome.status,
            "detail": outcome.detail,
            "subject": inbound.subject,
            "decisions": outcome.decisions,
            **binding(conn, _inserted_id(cur), exact=original.raw, stored=inbound.raw),
        }
        if seen:  # an earlier, different message carried this Message-ID
            detail["message_id_seen_before"] = len(seen)
        append_event(
            conn,
            "message",
            request_id=request_id or "",
            actor=inbound.identity or ", ".join(inbound.from_addresses),
            message_id=inbound.message_id,
            detail=detail,
        )
        if outcome.closed:
            (closed_at,) = conn.execute("SELECT closed_at FROM requests WHERE id = ?", (outcome.closed,)).fetchone()
            append_event(conn, "request_closed", request_id=outcome.closed, detail={"closed_at": closed_at})
        crash_point("poll:before-commit")
    return outcome


@dataclass(frozen=True, slots=True)
class Carried:
    """The reply tokens a message carries, read from the message as received: in its
    recipients (the plus-address it was sent to), and quoted in its body (the request's
    "Your reply address" line). A quoted token counts only in a reply threaded on one of our
    messages of that token's request (`In-Reply-To`/`References` name it): it is the fallback
    for servers that drop the plus-address, and a body quoting a request is not by itself a
    reply to it."""

    addressed: list[str]
    quoted: list[str]
    thread: list[str]  # the Message-IDs the message follows

    @classmethod
    def read(cls, inbound: Inbound) -> Carried:
        addressed = find_tokens(" ".join(inbound.to))
        quoted = [t for t in find_tokens(inbound.plain or "", inbound.html or "") if t not in addressed]
        thread = [m for m in f"{inbound.in_reply_to} {inbound.references}".split() if m.startswith("<")][-50:]
        return cls(addressed, quoted, thread)

    def lookup(self, conn) -> tuple[list[tuple[str, str, str]], list[str]]:
        """([(token, request id, approver)] of the live tokens, [request id] of retired ones)."""
        threaded: set[str] = set()
        if self.quoted and self.thread:
            marks = ",".join("?" * len(self.thread))
            threaded = {
                r
                for (r,) in conn.execute(
                    f"SELECT request_id FROM messages WHERE direction = 'out' AND message_id IN ({marks})", self.thread
                )
            }
        matches, retired = [], []
        for token in self.addressed + self.quoted:
            row = conn.execute(
                "SELECT request_id, approver, retired_at FROM request_tokens WHERE token_hash = ?", (hash_token(token),)
            ).fetchone()
            if row is None or (token in self.quoted and row[0] not in threaded):
                continue
            if row[2] is None:
                matches.append((token, row[0], row[1]))
            else:
                retired.append(row[0])
        return matches, retired


def _judge(conn, config: Config, inbound: Inbound, sent_lines: SentLines, carried: Carried) -> tuple[Outcome, str | None, str]:
    """Decide what this message is and act on it; returns (outcome, request id, new text).
    `carried`: the reply tokens the message carries (`inbound` is its copy without them)."""
    if conn.execute("SELECT 1 FROM messages WHERE direction = 'out' AND message_id = ?", (inbound.message_id,)).fetchone():
        return Outcome("ignored", "our own message came back"), None, ""
    if inbound.auto_reason:
        return Outcome("ignored", f"automatic message ({inbound.auto_reason}); never read as a decision"), None, ""
    ours = {config.mail.from_address.lower(), config.mail.reply_address.lower()}
    if any(a.split("+", 1)[0] + "@" + a.rpartition("@")[2] in ours for a in inbound.from_addresses):
        return Outcome("ignored", "sent from our own address"), None, ""
    if inbound.identity_problem:
        return Outcome("refused", f"sender cannot be trusted: {inbound.identity_problem}"), None, ""
    sender = inbound.identity
    matches, retired = carried.lookup(conn)
    # approvers: the configured ones, and escalation addresses a request was escalated to; an
    # address removed from the configuration holds tokens still, but they are revoked and it
    # gets no answer
    holder = conn.execute("SELECT 1 FROM request_tokens WHERE approver = ? LIMIT 1", (sender,)).fetchone() is not None
    answerable = sender in config.approvers or (holder and sender in config.reminders.escalation_addresses)
    request_hint = matches[0][1] if matches else None
    if config.sender_auth.enabled:
        problem = check_authentication_results(inbound.auth_results, config.sender_auth.authserv_ids, sender)
        if problem:
            return _refuse(
                conn, config, inbound, sender if answerable else None, request_hint, f"sender authentication failed: {problem}", sent_lines
            )
    if not answerable:
        reason = _revoked(sender) if holder else f"{sender} is not an approver"
        return Outcome("refused", reason), request_hint, ""
    if not matches and retired:
        return _refuse(conn, config, inbound, sender, retired[0], RETIRED, sent_lines)
    if not matches:
        return _refuse(conn, config, inbound, sender, None, "no valid reply token (reply to the request email itself)", sent_lines)
    own = [m for m in matches if m[2] == sender]
    if not own:
        return _refuse(
            conn, config, inbound, sender, request_hint, f"the reply token was issued to another approver, not to {sender}", sent_lines
        )
    token, request_id, _ = own[0]
    if not is_current_approver(conn, config, request_id, sender):  # e.g. an approver now only an escalation address
        return Outcome("refused", _revoked(sender, this_request=True)), request_id, ""
    status = conn.execute("SELECT status FROM requests WHERE id = ?", (request_id,)).fetchone()[0]
    items = sent_lines.get_items(conn, request_id)
    index = sent_lines.get_index(request_id)
    new_text, parsed = read_reply(
        inbound.plain, inbound.html, sent_lines=sent_lines.get(conn, request_id), row_count=len(items), known_ids=index
    )
    new_text = new_text[:20000]
    if status != "open":
        outcome, _, _ = _refuse(
            conn, config, inbound, sender, request_id, "this request is already closed; decisions are final", sent_lines, token=token
        )
        return outcome, request_id, new_text
    signed_off = (
        conn.execute("SELECT 1 FROM decisions WHERE request_id = ? AND transaction_id IS NULL", (request_id,)).fetchone() is not None
    )
    plan = plan_decisions(parsed.commands, items, signed_off=signed_off, unclear=parsed.unclear, index=index)
    problems = list(plan.problems) + [p for p in parsed.problems if p not in parsed.unclear]
    decided_at = now_utc()
    record_decisions(conn, plan, request_id=request_id, approver=sender, decided_at=decided_at, message_id=inbound.message_id)
    sent_lines.update_items(request_id, plan, sender, decided_at)
    closed = None
    if plan.decisions and open_count(conn, request_id) == 0:  # held items keep a request open
        conn.execute("UPDATE requests SET status = 'closed', closed_at = ? WHERE id = ?", (now_utc(), request_id))
        closed = request_id
    limit = config.request.max_listed

    def views(decisions) -> list[dict]:
        return [
            decision_view(conn, d.item.pk if d.item else None, d.decision, d.reason, d.item.no if d.item else 0, request_id=request_id)
            for d in decisions[:limit]
        ]

    recorded, would = views(plan.decisions), views(plan.would)
    counts: dict[str, int] = {}
    for d in plan.decisions:
        counts[d.decision] = counts.get(d.decision, 0) + 1
    text = queue_answer(
        conn,
        config,
        inbound,
        sender,
        request_id,
        token,
        problems=problems,
        show_grammar=not plan.decisions,
        recorded=recorded,
        recorded_total=len(plan.decisions),
        recorded_counts=counts,
        would=would,
        would_total=len(plan.would),
        unclear=plan.unclear and bool(parsed.commands),
    )
    sent_lines.add(request_id, text)
    if plan.decisions:
        detail = f"{len(plan.decisions)} decision(s) recorded" + (f"; {len(problems)} problem(s)" if problems else "")
        return Outcome("processed", detail, len(plan.decisions), closed), request_id, new_text
    final = any("decisions are final" in p for p in plan.problems)
    if plan.unclear and parsed.commands:
        return Outcome("refused", "reply not clear, nothing recorded: " + "; ".join(problems)[:500]), request_id, new_text
    return Outcome("refused" if final else "processed", "nothing decided: " + "; ".join(problems)[:500]), request_id, new_text


RETIRED = (
    "this reply address was retired when the audit database was upgraded (it used to be stored readable);"
    " reply to the copy of the request sent again since"
)


def _revoked(sender: str, *, this_request: bool = False) -> str:
    if this_request:
        return f"{sender} is no longer an approver of this request in the configuration; its reply tokens for it are revoked"
    return f"{sender} is no longer an approver in the configuration; its reply tokens are revoked"


def _refuse(
    conn,
    config: Config,
    inbound: Inbound,
    answer_to: str | None,
    request_id: str | None,
    reason: str,
    sent_lines: SentLines,
    *,
    token: str | None = None,
) -> tuple[Outcome, str | None, str]:
    """Record a refusal; answer it only when the sender is an approver (never a stranger), and
    at most once per address and request (or no request) in `mail.refusal_interval`."""
    if answer_to:
        last = _last_refusal_answer(conn, config, answer_to, request_id)
        if last:
            interval = format_duration(config.mail.refusal_interval)
            return (
                Outcome(
                    "refused",
                    f"{reason}; answer suppressed by the rate limit (a refusal was answered to {answer_to}"
                    f" at {last}; at most one per {interval}, mail.refusal_interval)",
                ),
                request_id,
                "",
            )
        text = queue_answer(conn, config, inbound, answer_to, request_id, token, problems=[reason], show_grammar=False, recorded=[])
        sent_lines.add(request_id, text)
    return Outcome("refused", reason), request_id, ""


def _last_refusal_answer(conn, config: Config, address: str, request_id: str | None) -> str | None:
    """When a refusal was last answered to `address` about `request_id` (None: about no request)
    within `mail.refusal_interval`, else None. Read from the outbox rows, so it holds across
    polls and restarts; answers to replies that were processed (e.g. "could not understand
    your reply") are not refusals and do not count."""
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - config.mail.refusal_interval))
    row = conn.execute(
        "SELECT o.created_at FROM messages o WHERE o.direction = 'out' AND o.kind = 'refusal' AND o.recipients = ?"
        " AND o.request_id IS ? AND o.created_at > ? AND EXISTS (SELECT 1 FROM messages i WHERE i.direction = 'in'"
        " AND i.message_id = o.in_reply_to AND i.status = 'refused') ORDER BY o.created_at DESC LIMIT 1",
        (address, request_id, since),
    ).fetchone()
    return row[0] if row else None


def _items(conn, request_id: str) -> list[Item]:
    rows = conn.execute(
        "SELECT t.id, t.item_no, t.txn_id, t.status, COALESCE(d.approver, ''), COALESCE(d.decided_at, '')"
        " FROM transactions t LEFT JOIN decisions d"  # the decision that set the status (a held item may have two)
        " ON d.transaction_id = t.id AND d.request_id = t.request_id AND d.decision = t.status"
        " WHERE t.request_id = ? ORDER BY t.item_no",
        (request_id,),
    ).fetchall()
    return [Item(*row) for row in rows]


async def summarize_closed_requests(db, config: Config) -> list[str]:
    """Resume the agent for each closed request that has no summary yet; return warnings."""
    warnings: list[str] = []
    rows = db.conn.execute("SELECT id, conversation_id FROM requests WHERE status = 'closed' AND summary = ''").fetchall()
    if not rows:
        return warnings
    from job.errors import AuditError
    from job.review.agent import resume_with_replies

    for request_id, conversation_id in rows:
        human_input = _human_input(db, request_id)
        try:
            summary = await resume_with_replies(db, config.llm, conversation_id, human_input)
        except AuditError as exc:
            warnings.append(f"request {request_id}: summary not written yet ({exc}); will retry on the next poll")
            continue
        with transaction(db) as conn:
            conn.execute("UPDATE requests SET summary = ? WHERE id = ?", (summary or "(no summary)", request_id))
            append_event(
                conn,
                "summary",
                request_id=request_id,
                actor="finance_agent",
                detail={"summary": summary, "transcript": cover_transcript(conn)},  # the conversation's rows since the last seal
            )
    return warnings


def _human_input(db, request_id: str) -> str:
    """The approvers' input as the agent reads it: their own words, then what was recorded."""
    lines = ["Replies from the approvers (their new text only):"]
    for sender, created, text in db.conn.execute(
        "SELECT sender, created_at, new_text FROM messages WHERE direction = 'in' AND request_id = ? AND status = 'processed' ORDER BY id",
        (request_id,),
    ):
        lines.append(f"[{created}] {sender}: {sanitize_text(text, 2000)}")
    lines.append("Decisions recorded:")
    # the model reads a bounded list, whatever the request's size, and the totals
    for no, txn_id, decision, reason, approver in db.conn.execute(
        "SELECT d.item_no, COALESCE(t.txn_id, 'run'), d.decision, d.reason, d.approver FROM decisions d"
        " LEFT JOIN transactions t ON t.id = d.transaction_id WHERE d.request_id = ? ORDER BY d.id LIMIT ?",
        (request_id, HUMAN_INPUT_DECISIONS),
    ):
        lines.append(f"- item {no or 0} {txn_id}: {decision} by {approver}" + (f" ({sanitize_text(reason, 300)})" if reason else ""))
    counts = dict(db.conn.execute("SELECT decision, COUNT(*) FROM decisions WHERE request_id = ? GROUP BY decision", (request_id,)))
    total = sum(counts.values())
    if total > HUMAN_INPUT_DECISIONS:
        lines.append(f"- ... and {total - HUMAN_INPUT_DECISIONS} more decisions, not listed")
        lines.append("Totals: " + ", ".join(f"{n} {word}" for word, n in sorted(counts.items())))
    return "\n".join(lines)
