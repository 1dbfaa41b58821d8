"""`audit run`: read → choose → screen → review → record → request → send, for one night's ledgers.

Every ledger, whatever its size, is read and screened column-wise; everything is read,
screened and reviewed before anything is written. Then one transaction records the run,
its ledgers, every new transaction with its screening, the payment digests, the request,
its queued emails and the suspended agent conversation. Sending happens after the commit,
from the outbox. Re-running on the same files records nothing new and sends nothing.

Each stage lives in its own package (`ledger`, `store`, `screening`, `review`,
`approval`); `run_audit` is the run's story.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from job.approval.answer import queue_head_notices
from job.approval.new_request import draft_request, open_request, record_request
from job.config import Config
from job.faults import crash_point
from job.ledger import read
from job.ledger.ingest_fast import FrameLedger
from job.mail.outbox import FlushResult, flush_outbox
from job.review.annotate import Review, annotate
from job.review.prefetch import start_importing_agent, wait_for_imports
from job.screening.fingerprint import describe_policy, policy_sha256
from job.screening.flagged import FlaggedFrame
from job.screening.history import find_history, make_digests, write_digests
from job.screening.screen_frame import Compact, compact_rows, screen_batch
from job.screening.vendors import load_known_vendors, recorded_vendors
from job.store.auditlog import append_event
from job.store.db import transaction
from job.store.new_rows import NewRows, choose_new_rows
from job.store.record_rows import insert_rows, packed_outcomes, record_vendors
from job.store.runs import finish_run, next_transaction_id, record_ledger_files, start_run
from job.store.seal import seal_run

__all__ = ["RunResult", "LedgerOutcome", "read_ledgers", "run_audit"]


@dataclass(slots=True)
class LedgerOutcome:
    name: str
    rows: int
    new_rows: int
    already_imported: bool
    amended: int = 0  # of the new rows, how many are new versions of known transactions
    format: str = "csv"  # the export format it was read as


@dataclass(slots=True)
class RunResult:
    run_id: int | None = None
    reviewer: str = ""
    ledgers: list[LedgerOutcome] = field(default_factory=list)
    new_transactions: int = 0
    flagged: int = 0
    auto_approved: int = 0
    held: int = 0
    amended: list[str] = field(default_factory=list)  # "TX-2001 (version 2)" per amendment
    request_id: str | None = None
    model_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    recipients: tuple[str, ...] = ()
    attachment_withheld: int = 0  # size of the item list left out of the request as too big to attach
    refused: list[str] = field(default_factory=list)
    sent: FlushResult | None = None


def read_ledgers(
    config: Config,
    ledger_paths: Sequence[str | Path],
    *,
    format_name: str | None = None,
    allow_empty: bool = False,
    stream=None,
    spill: Path | None = None,
) -> list[FrameLedger]:
    """Every ledger read in full (`ledger.read.read_ledgers`). A large ledger will have flagged
    rows to review, so the agent's imports start meanwhile, on a thread."""
    if config.policy.approval_mode != "never" and read.has_large_file(config, ledger_paths):
        start_importing_agent()
    return read.read_ledgers(config, ledger_paths, format_name=format_name, allow_empty=allow_empty, stream=stream, spill=spill)


async def run_audit(db, config: Config, ledgers: Sequence[FrameLedger], *, reviewer: str, rules: Sequence = (), stream=None) -> RunResult:
    """The whole nightly run over ledgers already read by `read_ledgers`.

    `rules` are the policy's own rules (`rules.compile_rules`). Screening and the review
    come first (a model may take minutes; the write lock is not held meanwhile); then one
    transaction records everything; then the outbox is sent.
    """
    try:
        policy, mode = config.policy, config.policy.approval_mode
        new = choose_new_rows(db.conn, config.ledger.source, ledgers)
        compact = compact_rows(new.batch)
        known = load_known_vendors(config) | recorded_vendors(db.conn, compact.key_list)
        past = find_history(db.conn, policy, compact)
        crash_point("run:read")
        flagged = screen_batch(
            new.batch,
            compact,
            policy,
            known_vendor_keys=known,
            rules=rules,
            history=past,
            amended={pos: a.reason for pos, a in new.amended.items()},
        )
        review = await annotate(flagged, config, db) if flagged.count and mode != "never" else Review()
        crash_point("run:reviewed")
        result = _result(config, reviewer, new, flagged, review)
        with transaction(db) as conn:
            await _record(conn, db, config, ledgers, new, compact, flagged, review, result, stream)
            crash_point("run:before-commit")
        crash_point("run:committed")
        result.sent = await flush_outbox(db, config.mail)
        return result
    finally:
        wait_for_imports()


def _result(config: Config, reviewer: str, new: NewRows, flagged: FlaggedFrame, review: Review) -> RunResult:
    """What the run will record and report, before it is recorded; a request when one is due."""
    mode = config.policy.approval_mode
    chosen = any(not skipped for _, _, skipped in new.outcomes)
    result = RunResult(
        reviewer=reviewer,
        ledgers=[
            LedgerOutcome(ledger.name, ledger.rows, n, skipped, amended, ledger.format)
            for (ledger, n, skipped), amended in zip(new.outcomes, new.amended_per_ledger)
        ],
        new_transactions=new.batch.count,
        flagged=flagged.count,
        auto_approved=new.batch.count - flagged.count,
        held=flagged.count if mode == "never" else 0,
        amended=[f"{a.txn_id} (version {a.version})" for _, a in sorted(new.amended.items())],
        request_id=uuid.uuid4().hex if (mode == "flagged" and flagged.count) or (mode == "always" and chosen) else None,
        refused=review.refused,
    )
    if review.outcome is not None and not config.llm.offline:
        result.model_calls, result.prompt_tokens, result.completion_tokens = review.usage
    return result


async def _record(
    conn, db, config: Config, ledgers, new: NewRows, compact: Compact, flagged: FlaggedFrame, review: Review, result, stream
) -> None:
    """Everything the run records, in its one transaction: the run and its ledger files, the
    vendors and payment digests, every new row with its outcome, the run event, the request."""
    mode, request_id, batch = config.policy.approval_mode, result.request_id, new.batch
    chosen = [(ledger, n) for ledger, n, skipped in new.outcomes if not skipped]
    described = describe_policy(config.policy, load_known_vendors(config))  # the settings that decide what is flagged
    fingerprint = policy_sha256(described)
    result.run_id = run_id = start_run(
        conn, mode=mode, reviewer=result.reviewer, ledgers=ledgers, new_transactions=batch.count, policy_sha256=fingerprint
    )
    next_pk = next_transaction_id(conn)
    file_ids = record_ledger_files(conn, run_id, config.ledger.source, chosen, batch.zones(next_pk))
    if request_id:
        open_request(conn, request_id, run_id, flagged.count)
    record_vendors(conn, batch, compact, run_id=run_id)
    write_digests(conn, run_id, make_digests(compact, next_pk))
    compact.frame = None  # the rows' compact columns: nothing needs them any more
    outcomes = packed_outcomes(flagged, "held" if mode == "never" else "pending", request_id, next_pk)
    progress = _write_progress(batch.count, stream)
    try:
        insert_rows(
            conn,
            batch,
            compact,
            run_id=run_id,
            source=config.ledger.source,
            file_ids=file_ids,
            next_pk=next_pk,
            outcomes=outcomes,
            versions={pos: a.version for pos, a in new.amended.items()},
            progress=progress.update if progress else None,
        )
    finally:
        if progress:
            progress.finish()
    if review.outcome is not None and review.outcome.storage is not None:
        review.outcome.storage.flush(conn)
    finish_run(
        conn,
        run_id,
        mode=mode,
        reviewer=result.reviewer,
        chosen=chosen,
        skipped=[o.name for o in result.ledgers if o.already_imported],
        new_transactions=batch.count,
        flagged=flagged.count,
        held=result.held,
        summary=review.summary,
        usage=review.usage,
        request_id=request_id,
        policy=described,
        policy_sha256=fingerprint,
        amended=result.amended,
    )
    if request_id:
        draft = draft_request(
            config,
            request_id=request_id,
            run_id=run_id,
            flagged=flagged,
            summary=review.summary,
            reviewer=result.reviewer,
            auto_approved=result.auto_approved,
            ledger_names=[ledger.name for ledger, _ in chosen],
        )
        result.attachment_withheld = draft.withheld
        result.recipients = await record_request(
            conn,
            db,
            config,
            draft,
            request_id=request_id,
            run_id=run_id,
            flagged=flagged,
            summary=review.summary,
            new_transactions=batch.count,
        )
    append_event(conn, "sealed", detail=seal_run(conn, run_id))  # after the run's last write but the witness notices
    queue_head_notices(conn, config, f"run {run_id}")


def _write_progress(rows: int, stream):
    """A progress line for the insert of a run of 100,000 rows or more (on a terminal only)."""
    if rows < 100_000:
        return None
    from job.progress import Progress

    return Progress("recording transactions", stream=stream, unit="k rows", scale=1e3)
