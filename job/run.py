"""`audit run`: ingest → screen → review → record → request → send, for one night's ledgers.

Everything is read, screened and reviewed before anything is written; then one
transaction records the run, its ledgers, every new transaction with its screening, the
request, its queued emails and the suspended agent conversation (the rows go in on a
`db.Writer` thread while the request is composed). Sending happens after the commit, from
the outbox. Re-running on the same files records nothing new and sends nothing.

Every ledger, whatever its size, is read and screened column-wise (`ingest_fast`,
`screen_frame`, `bulk`); the row reader (`ingest`) reads only the files the column-wise
reader declines, for its exact `file:line: column: problem` messages.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from job.approval.answer import queue_head_notices
from job.approval.request import attachment_name, build_request_copies, fit_attachment
from job.config import Config
from job.errors import ConfigError
from job.faults import crash_point
from job.ledger.ingest import LedgerFormat, read_ledger
from job.mail.outbox import FlushResult, flush_outbox, queue_message
from job.screening.screen import normalize_vendor
from job.store.auditlog import append_event
from job.store.db import Writer, now_utc, transaction

__all__ = [
    "RunResult",
    "LedgerOutcome",
    "read_ledgers",
    "run_audit",
    "load_known_vendors",
    "ledger_format",
    "prepare_rules",
]

CHUNK = 500


@dataclass(slots=True)
class LedgerOutcome:
    name: str
    rows: int
    new_rows: int
    already_imported: bool


@dataclass(slots=True)
class RunResult:
    run_id: int | None = None
    reviewer: str = ""
    ledgers: list[LedgerOutcome] = field(default_factory=list)
    new_transactions: int = 0
    flagged: int = 0
    auto_approved: int = 0
    held: int = 0
    changed_in_later_export: list[str] = field(default_factory=list)
    request_id: str | None = None
    model_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    recipients: tuple[str, ...] = ()
    attachment_withheld: int = 0  # size of the item list left out of the request as too big to attach
    refused: list[str] = field(default_factory=list)
    sent: FlushResult | None = None


def ledger_format(config: Config) -> LedgerFormat:
    s = config.ledger
    try:
        return LedgerFormat(
            columns=dict(s.columns),
            default_currency=s.default_currency,
            date_formats=tuple(s.date_formats),
            decimal_separator=s.decimal_separator,
            thousands_separator=s.thousands_separator,
        )
    except ValueError as exc:
        raise ConfigError(f"{config.path or 'defaults'}: [ledger]: {exc}") from None


def load_known_vendors(config: Config) -> set[str]:
    """Vendor keys from the config list and the vendors file (one name per line or a CSV)."""
    keys = {normalize_vendor(v) for v in config.policy.known_vendors if v.strip()}
    path = config.policy.known_vendors_file
    if path is None:
        return keys
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the known-vendors file: {exc}") from exc
    rows = list(csv.reader(io.StringIO(text)))
    column = 0
    if rows and any(h.strip().lower() in ("vendor", "name", "vendor_name") for h in rows[0]):
        column = next(i for i, h in enumerate(rows[0]) if h.strip().lower() in ("vendor", "name", "vendor_name"))
        rows = rows[1:]
    for row in rows:
        if len(row) > column and row[column].strip():
            keys.add(normalize_vendor(row[column]))
    return keys


def _existing(conn, sql: str, values: Sequence[str], *prefix: object) -> set[str]:
    """Which of `values` a query finds, asked in chunks to stay under SQLite's variable limit."""
    found: set[str] = set()
    for i in range(0, len(values), CHUNK):
        chunk = list(values[i : i + CHUNK])
        marks = ",".join("?" * len(chunk))
        found.update(r[0] for r in conn.execute(sql.format(marks=marks), (*prefix, *chunk)))
    return found


def unseen_ledgers(conn, ledgers: Sequence) -> Iterator[tuple[object, bool]]:
    """(ledger, skipped) per ledger: skipped when an earlier run imported the same bytes, or
    an earlier file of this run has them."""
    seen: set[str] = set()
    for ledger in ledgers:
        imported = conn.execute("SELECT 1 FROM ledger_files WHERE sha256 = ?", (ledger.sha256,)).fetchone()
        yield ledger, bool(imported) or ledger.sha256 in seen
        seen.add(ledger.sha256)


def read_ledgers(config: Config, ledger_paths: Sequence[str | Path], *, stream=None, spill: Path | None = None) -> list:
    """Read every ledger completely; any bad row rejects the run before anything is written.

    Every file is read column-wise in blocks (`ingest_fast`); a file in a shape only the
    row-by-row reader reads exactly (`ingest_fast.Unsupported`) is read by `ingest` and
    turned into one block. From `SPILL_BYTES` of ledgers on, the blocks are kept on disk
    (`spill`, or a folder beside the database) and read back one at a time. When a file is
    at least `[ledger] large_file_bytes`, a progress line goes to `stream` (stderr) while it
    is read, if that is a terminal, and the reviewer's imports start meanwhile.
    """
    from job.ledger.ingest_fast import FrameLedger, Unsupported, read_ledger_fast, transactions_frame
    from job.progress import Progress

    fmt = ledger_format(config)
    sizes = []
    for p in ledger_paths:
        try:
            sizes.append(os.path.getsize(p))
        except OSError:
            sizes.append(0)  # the reader reports it
    large = any(size >= config.ledger.large_file_bytes for size in sizes)
    if large and config.policy.approval_mode != "never":
        _start_prefetch("job.review.agent")  # a large ledger will have flagged items to review
    if spill is None and sum(sizes) >= SPILL_BYTES:
        spill = _spill_folder(config)
    ledgers = []
    for p in ledger_paths:
        progress = Progress(f"reading {os.path.basename(p)}", stream=stream if large else io.StringIO())
        try:
            ledgers.append(read_ledger_fast(p, fmt, progress=progress.update, spill=spill))
        except Unsupported:  # a shape only the row-by-row reader reads exactly
            ledger = read_ledger(p, fmt)
            ledgers.append(FrameLedger.of(ledger.path, ledger.name, ledger.sha256, transactions_frame(ledger.transactions)))
        finally:
            progress.finish()
    return ledgers


_PREFETCH: list = []


def _start_prefetch(module: str) -> None:
    """Import `module` on a thread while polars reads the ledger.

    The agent's imports (AG2, pydantic, the OpenAI client) cost most of a second of Python
    work, which a large run would otherwise spend after reading; polars reads without
    holding the interpreter, so the two overlap. An import on the main thread meanwhile
    simply waits for this one (Python locks each module while it is imported).
    """
    import importlib
    import threading

    thread = threading.Thread(target=importlib.import_module, args=(module,), name="audit-prefetch", daemon=True)
    thread.start()
    _PREFETCH.append(thread)


def _finish_prefetch() -> None:
    """Wait for any prefetching import, so none is cut short when the process exits."""
    while _PREFETCH:
        _PREFETCH.pop().join()


SPILL_BYTES = 200_000_000  # from this much ledger data on, blocks wait on disk, not in memory


def _spill_folder(config: Config) -> Path:
    """A private folder beside the audit database for a large run's blocks, removed at exit.

    Beside the database, not in /tmp: /tmp is often memory itself, and the database's disk
    has room for what the run is about to record anyway.
    """
    import atexit
    import shutil
    import tempfile

    folder = Path(config.db).resolve().parent
    folder.mkdir(parents=True, exist_ok=True)
    prefix = f".{Path(config.db).name}.blocks-"
    for stale in folder.glob(prefix + "*"):  # left by a run that was killed; runs hold the run lock
        shutil.rmtree(stale, ignore_errors=True)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=folder))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def prepare_rules(config: Config) -> list:
    """The policy file's own rules, checked and compiled (ConfigError naming a bad one)."""
    from job.screening.rules import compile_rules

    return compile_rules(config)


@dataclass(slots=True)
class Review:
    """What screening and the review found: the flagged items with their notes."""

    flagged: object  # bulk.FlaggedFrame
    outcome: object = None  # agent.ReviewOutcome, when the agent reviewed anything
    summary: str = ""
    usage: tuple[int, int, int] = (0, 0, 0)


async def run_audit(db, config: Config, ledgers: Sequence, *, reviewer: str, rules: Sequence = (), stream=None) -> RunResult:
    """The whole nightly run over ledgers already read by `read_ledgers`.

    `rules` are the policy's own rules from `prepare_rules`. Screening and the review come
    first (a model may take minutes; the write lock is not held meanwhile); then one
    transaction records everything, the new rows going in (by a `db.Writer`, on its own
    thread for a large run) while the request is composed.
    """
    try:
        return await _run_audit(db, config, ledgers, reviewer=reviewer, rules=rules, stream=stream)
    finally:
        _finish_prefetch()


async def _run_audit(db, config: Config, ledgers: Sequence, *, reviewer: str, rules: Sequence, stream) -> RunResult:
    known = load_known_vendors(config)
    source = config.ledger.source
    result = RunResult(reviewer=reviewer)
    policy = config.policy
    mode = policy.approval_mode

    from job.bulk import FrameBatch

    batch, outcomes, changed = FrameBatch.select(db.conn, source, ledgers)
    for ledger, new, skipped in outcomes:
        result.ledgers.append(LedgerOutcome(ledger.name, ledger.rows, new, skipped))
    result.changed_in_later_export = changed
    chosen = [(ledger, new) for ledger, new, skipped in outcomes if not skipped]
    known |= _existing(db.conn, "SELECT vendor_key FROM vendors WHERE vendor_key IN ({marks})", sorted(batch.vendor_keys()))
    from job.screening.history import find_history

    past = find_history(db.conn, policy, batch.make_compact())
    fresh_count = batch.count

    crash_point("run:read")
    review = Review(batch.screen(policy, known, rules, past))
    flagged = review.flagged
    if flagged.count and mode != "never":
        from job.review.agent import review_flagged, review_offline

        if config.llm.offline:
            outcome = await review_offline(flagged.review_groups(), config.llm, db)
            flagged.set_group_notes(outcome.notes)
        else:
            outcome = await review_flagged(flagged.review_items(), config.llm, db)
            flagged.notes = outcome.notes
        flagged.concerns = outcome.concerns
        review.outcome, review.summary = outcome, outcome.summary
        review.usage = (outcome.calls, outcome.prompt_tokens, outcome.completion_tokens)
        result.refused = outcome.refused
        if not config.llm.offline:
            result.model_calls, result.prompt_tokens, result.completion_tokens = review.usage
    crash_point("run:reviewed")

    request_id = uuid.uuid4().hex if (mode == "flagged" and flagged.count) or (mode == "always" and chosen) else None
    with transaction(db) as conn:
        run_id = conn.execute(
            "INSERT INTO runs (started_at, mode, reviewer, ledgers, transactions, new_transactions) VALUES (?,?,?,?,?,?)",
            (now_utc(), mode, reviewer, len(ledgers), sum(ledger.rows for ledger in ledgers), fresh_count),
        ).lastrowid
        result.run_id = run_id
        next_pk = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM transactions").fetchone()[0]
        file_ids = [
            conn.execute(
                "INSERT INTO ledger_files (source, name, path, sha256, rows, new_rows, imported_at, run_id,"
                " first_transaction_id, last_transaction_id, first_date, last_date) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (source, ledger.name, str(Path(ledger.path).resolve()), ledger.sha256, ledger.rows, new, now_utc(), run_id, *zone),
            ).lastrowid
            for (ledger, new), zone in zip(chosen, batch.zones(next_pk))
        ]
        if request_id:
            _insert_request(conn, request_id, run_id, flagged.count)
        marks = batch.flagged_rows(flagged, "held" if mode == "never" else "pending", request_id, next_pk)
        progress = _write_progress(batch.count, stream)
        writer = Writer(conn, background=True)
        draft = None
        try:
            if batch.digests_first:  # made before the long insert, which frees the rows they are made from
                writer.submit(batch.write_extras, run_id=run_id, digests=batch.digests(next_pk))
            writer.submit(
                batch.insert_rows,
                run_id=run_id,
                source=source,
                file_ids=file_ids,
                next_pk=next_pk,
                flagged_rows=marks,
                progress=progress.update if progress else None,
            )
            if request_id:  # composed while the rows go in
                draft = _draft_request(
                    config,
                    request_id,
                    run_id,
                    flagged,
                    review.summary,
                    result,
                    fresh_count - flagged.count,
                    [ledger.name for ledger, _ in chosen],
                )
            if not batch.digests_first:  # made while the rows go in, written after them
                writer.submit(batch.write_extras, run_id=run_id, digests=batch.digests(next_pk))
        except BaseException:
            writer.close(cancel=True)
            raise
        finally:
            if progress:
                progress.finish()
        writer.close()
        if review.outcome is not None and review.outcome.storage is not None:
            review.outcome.storage.flush(conn)
        result.new_transactions = fresh_count
        result.flagged = flagged.count
        result.auto_approved = fresh_count - flagged.count
        result.held = flagged.count if mode == "never" else 0
        conn.execute(
            "UPDATE runs SET flagged = ?, auto_approved = ?, held = ?, review_summary = ?, model_calls = ?, prompt_tokens = ?,"
            " completion_tokens = ?, request_id = ?, finished_at = ? WHERE id = ?",
            (flagged.count, result.auto_approved, result.held, review.summary, *review.usage, request_id, now_utc(), run_id),
        )
        append_event(
            conn,
            "run",
            request_id=request_id or "",
            actor=reviewer,
            detail={
                "run_id": run_id,
                "mode": mode,
                "ledgers": [{"name": lg.name, "sha256": lg.sha256, "rows": lg.rows, "new": n} for lg, n in chosen],
                "skipped": [o.name for o in result.ledgers if o.already_imported],
                "new_transactions": fresh_count,
                "flagged": flagged.count,
                "auto_approved": fresh_count - flagged.count,
                "held": result.held,
                "request_id": request_id,
                "model_calls": review.usage[0],
                "prompt_tokens": review.usage[1],
                "completion_tokens": review.usage[2],
            },
        )
        if draft is not None:
            await _record_request(conn, db, config, request_id, draft, run_id, flagged, review.summary, result)
        queue_head_notices(conn, config, f"run {run_id}")
        crash_point("run:before-commit")
    crash_point("run:committed")
    result.request_id = request_id
    result.sent = await flush_outbox(db, config.mail)
    return result


def _insert_request(conn, request_id: str, run_id: int, items: int) -> None:
    conn.execute(
        "INSERT INTO requests (id, run_id, created_at, status, subject, items, question, conversation_id) VALUES (?,?,?,?,?,?,?,?)",
        (request_id, run_id, now_utc(), "open", "", items, "", str(uuid.uuid4())),
    )


def _write_progress(rows: int, stream):
    if rows < 100_000:
        return None
    from job.progress import Progress

    return Progress("recording transactions", stream=stream, unit="k rows", scale=1e3)


EVENT_ITEMS_LIMIT = 1000


def request_items_detail(flagged) -> dict:
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


def _draft_request(
    config: Config, request_id: str, run_id: int, flagged, review_summary: str, result: RunResult, auto_approved: int, names: list[str]
) -> list:
    """The request's copies, one per approver (composed without the database); a list too
    big to attach is noted in `result.attachment_withheld` (its size)."""
    listed = list(itertools.islice(flagged.request_items(), config.request.max_listed))
    attachment = flagged.attachment(attachment_name(names, run_id)) if flagged.count > len(listed) else None
    attachment, result.attachment_withheld = fit_attachment(attachment, config.request.max_attachment_bytes)
    return build_request_copies(
        request_id=request_id,
        run_id=run_id,
        listed=listed,
        total=flagged.count,
        attachment=attachment,
        withheld=result.attachment_withheld,
        withheld_limit=config.request.max_attachment_bytes,
        approvers=config.approvers,
        auto_approved=auto_approved,
        ledger_names=names,
        reviewer=result.reviewer,
        summary=review_summary,
        from_address=config.mail.from_address,
        reply_address=config.mail.reply_address,
    )


async def _record_request(conn, db, config: Config, request_id: str, copies: list, run_id, flagged, review_summary, result) -> None:
    """Queue the request's copies (`_draft_request`), record its event, and suspend the agent's conversation."""
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
            **request_items_detail(flagged),
            "approvers": [c.approver for c in copies],
            "message_ids": [c.message_id for c in copies],
        },
    )
    question = copies[0].plain
    conn.execute("UPDATE requests SET subject = ?, question = ? WHERE id = ?", (copies[0].subject, question, request_id))
    result.recipients = tuple(c.approver for c in copies)
    conversation_id = conn.execute("SELECT conversation_id FROM requests WHERE id = ?", (request_id,)).fetchone()[0]
    briefing = (
        f"Run {run_id}: {result.new_transactions} new transactions; {flagged.count} flagged for a human decision, "
        f"{result.new_transactions - flagged.count} auto-approved. Review summary: {review_summary or '(none)'}\n"
        "Ask the approver to decide every flagged item."
    )
    from job.review.agent import ask_approver_and_suspend

    await ask_approver_and_suspend(db, config.llm, conversation_id, briefing, question)
