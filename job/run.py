"""`audit run`: ingest → screen → review → record → request → send, for one night's ledgers.

Everything is read, screened and reviewed before anything is written; then one
transaction records the run, its ledgers, every new transaction with its screening, the
request, its queued emails and the suspended agent conversation (a large run's rows go in
on a `db.Writer` thread while the request is composed). Sending happens after the commit, from the
outbox. Re-running on the same files records nothing new and sends nothing.

Ledgers below `[ledger] large_file_bytes` are read row by row (`ingest`) and screened in
plain Python (`screen`), without importing polars; larger ones are read and screened
column-wise (`ingest_fast`, `screen_frame`, `bulk`). Both give the same result: a
`ListBatch` or a `bulk.FrameBatch` of the new rows, which `run_audit` drives the same way.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from job.approval.answer import queue_head_notices
from job.approval.request import RequestItem, attachment_name, build_request_copies, fit_attachment, items_attachment
from job.config import Config, Policy
from job.errors import ConfigError
from job.faults import crash_point
from job.ledger.ingest import Ledger, LedgerFormat, Transaction, format_amount, read_ledger
from job.mail.outbox import FlushResult, flush_outbox, queue_message
from job.screening.fingerprint import describe_policy, policy_sha256
from job.screening.history import DigestPart, digest_parts, history_needs, recent_payments, vendor_hash, write_digests
from job.screening.screen import Flag, PastPayment, Screening, normalize_vendor, screen_transactions, structuring_band
from job.store.auditlog import append_event
from job.store.db import Writer, now_utc, transaction
from job.store.seal import seal_run

__all__ = [
    "RunResult",
    "LedgerOutcome",
    "read_ledgers",
    "run_audit",
    "load_known_vendors",
    "ledger_format",
    "find_history",
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


class ListBatch:
    """The new rows of a run read by `ingest`: per chosen ledger, its list of transactions."""

    digests_first = True  # its writes happen inline, in the order submitted

    def __init__(self, parts: list[tuple[Ledger, list[Transaction]]]) -> None:
        self.parts = parts
        self.fresh = [tx for _, txs in parts for tx in txs]

    @property
    def count(self) -> int:
        return len(self.fresh)

    def vendor_keys(self) -> set[str]:
        return {normalize_vendor(t.vendor) for t in self.fresh}

    @classmethod
    def select(cls, conn, source: str, ledgers: Sequence[Ledger]) -> tuple[ListBatch, list[tuple[Ledger, int, bool]], list[str]]:
        """The transactions not yet recorded, per ledger not yet imported (first occurrence wins)."""
        parts: list[tuple[Ledger, list[Transaction]]] = []
        outcomes: list[tuple[Ledger, int, bool]] = []
        changed: list[str] = []
        seen_ids: set[str] = set()
        for ledger, skipped in unseen_ledgers(conn, ledgers):
            if skipped:
                outcomes.append((ledger, 0, True))
                continue
            ids = [t.txn_id for t in ledger.transactions]
            recorded = _existing(conn, "SELECT txn_id FROM transactions WHERE source = ? AND txn_id IN ({marks})", ids, source)
            fresh = []
            for tx in ledger.transactions:
                if tx.txn_id in recorded or tx.txn_id in seen_ids:
                    continue
                seen_ids.add(tx.txn_id)
                fresh.append(tx)
            if recorded:
                changed.extend(_changed(conn, source, [t for t in ledger.transactions if t.txn_id in recorded]))
            outcomes.append((ledger, len(fresh), False))
            parts.append((ledger, fresh))
        return cls(parts), outcomes, changed

    def look_back(self, conn, policy: Policy) -> None:
        """Read the earlier runs' payments the rules need, so `screen` needs no database."""
        self._past = find_history(conn, policy, self.fresh)

    def screen(self, policy: Policy, known: set[str], rules: Sequence = ()) -> FlaggedList:
        """The flagged transactions (after `look_back`), most important first."""
        screenings = screen_transactions(
            self.fresh,
            amount_threshold=policy.amount_threshold,
            vague_memo_terms=policy.vague_memo_terms,
            known_vendor_keys=known,
            structuring=policy.structuring,
            duplicates=policy.duplicates,
            round_amounts=policy.round_amounts,
            history=self._past,
            user_flags=_user_flags(rules, self.fresh),
        )
        return FlaggedList([s for s in screenings if s.flagged])

    def zones(self, next_pk: int) -> list[tuple]:
        """Per chosen ledger: (first id, last id, first date, last date) of its new rows, or Nones."""
        found, pk = [], next_pk
        for _, txs in self.parts:
            dates = [tx.date for tx in txs]
            found.append((pk, pk + len(txs) - 1, min(dates), max(dates)) if txs else (None, None, None, None))
            pk += len(txs)
        return found

    def flagged_rows(self, flagged: FlaggedList, status: str, request_id: str | None, next_pk: int) -> list[tuple]:
        """What `insert_rows` writes for each flagged row beyond its ledger columns:
        (flags JSON, note, status, request id, item number, id)."""
        return flagged.row_values(status, request_id, next_pk, {tx.txn_id: n for n, tx in enumerate(self.fresh)})

    def insert_rows(
        self, conn, *, run_id: int, source: str, file_ids: Sequence[int], next_pk: int, flagged_rows: Sequence[tuple], progress=None
    ) -> None:
        """Insert every new row in order, ids from `next_pk`, the flagged ones with their `flagged_rows` values."""
        marks = {row[-1]: row[:-1] for row in flagged_rows}
        pk = next_pk
        for (_ledger, txs), file_id in zip(self.parts, file_ids):
            rows = []
            for tx in txs:
                rows.append(
                    (
                        pk,
                        source,
                        tx.txn_id,
                        tx.date,
                        tx.amount_minor,
                        tx.currency,
                        tx.vendor,
                        normalize_vendor(tx.vendor),
                        tx.memo,
                        tx.account,
                        file_id,
                        tx.line,
                        run_id,
                    )
                    + marks.get(pk, CLEAN)
                )
                pk += 1
            conn.executemany(INSERT_TRANSACTION, rows)
            crash_point("run:inserting")

    def digests(self, next_pk: int) -> list[DigestPart]:
        """The run's payment digests (pure; `run_audit` writes them with `write_extras`)."""
        hashes: dict[str, int] = {}
        rows: list[tuple[str, str, int, int, int]] = []
        for pk, tx in enumerate(self.fresh, next_pk):
            key = normalize_vendor(tx.vendor)
            if key not in hashes:
                hashes[key] = vendor_hash(key)
            rows.append((tx.date, tx.currency, hashes[key], tx.amount_minor, pk))
        return digest_parts(rows)

    def write_extras(self, conn, *, run_id: int, digests: Sequence[DigestPart]) -> None:
        """The new vendors (by first name seen) and the run's payment digests."""
        first_names: dict[str, str] = {}
        for tx in self.fresh:
            first_names.setdefault(normalize_vendor(tx.vendor), tx.vendor)
        conn.executemany(
            "INSERT OR IGNORE INTO vendors (vendor_key, name, first_run_id) VALUES (?,?,?)",
            [(key, name, run_id) for key, name in first_names.items()],
        )
        write_digests(conn, run_id, digests)


class FlaggedList:
    """The flagged transactions of a small run, most important first (most rule findings,
    then largest amount, then file order), with the review's notes once given.

    `bulk.FlaggedFrame` is the same for a large run, held as a frame.
    """

    def __init__(self, screenings: list[Screening]) -> None:
        self.screenings = sorted(screenings, key=_rank)
        self.count = len(self.screenings)
        self.notes: dict[str, str] = {}
        self.concerns: dict[str, str] = {}

    def review_items(self) -> list:
        return [_review_item(s) for s in self.screenings]

    def review_groups(self) -> list:
        """(first item, how many) per group of items with the same findings, in order."""
        groups: dict[tuple[str, ...], list[Screening]] = {}
        for s in self.screenings:
            groups.setdefault(tuple(f.code for f in s.flags), []).append(s)
        self._groups = groups
        return [(_review_item(members[0]), len(members)) for members in groups.values()]

    def set_group_notes(self, notes_by_first: dict[str, str]) -> None:
        for members in self._groups.values():
            note = notes_by_first.get(members[0].transaction.txn_id)
            if note is not None:
                for s in members:
                    self.notes[s.transaction.txn_id] = note

    def flags(self, s: Screening) -> tuple[Flag, ...]:
        txn_id = s.transaction.txn_id
        return s.flags + ((Flag("agent_concern", self.concerns[txn_id], by="agent"),) if txn_id in self.concerns else ())

    def request_items(self) -> Iterator[RequestItem]:
        for n, s in enumerate(self.screenings, 1):
            tx = s.transaction
            yield RequestItem(
                n,
                tx.txn_id,
                tx.date,
                tx.vendor,
                tx.amount_minor,
                tx.currency,
                tx.memo,
                tuple(f.reason for f in self.flags(s)),
                self.notes.get(tx.txn_id, ""),
            )

    def attachment(self, name: str) -> tuple[str, str | bytes]:
        """The request's CSV of every flagged item (`request.items_attachment`)."""
        return items_attachment(name, self.request_items())

    def pairs(self) -> Iterator[tuple[int, str]]:
        for n, s in enumerate(self.screenings, 1):
            yield n, s.transaction.txn_id

    def canonical_items(self) -> Iterator[str]:
        """The canonical list of (item number, id) that `request_items_detail` digests, as text."""
        for no, txn_id in self.pairs():
            yield f"{',' if no > 1 else ''}[{no},{json.dumps(txn_id, ensure_ascii=False)}]"

    def row_values(self, status: str, request_id: str | None, next_pk: int, positions: dict[str, int]) -> list[tuple]:
        """(flags JSON, note, status, request id, item number, id) per flagged row, for
        `ListBatch.insert_rows`; `positions` gives each transaction's place in the run (its id is `next_pk` plus that)."""
        return [
            (
                json.dumps([f.as_dict() for f in self.flags(s)]),
                self.notes.get(s.transaction.txn_id, ""),
                status,
                request_id,
                n if request_id else None,
                next_pk + positions[s.transaction.txn_id],
            )
            for n, s in enumerate(self.screenings, 1)
        ]


CLEAN = ("[]", "", "auto_approved", None, None)  # flags, note, status, request, item number of a clean row
INSERT_TRANSACTION = (
    "INSERT INTO transactions (id, source, txn_id, date, amount_minor, currency, vendor, vendor_key, memo, account,"
    " ledger_file_id, line, run_id, flags, agent_note, status, request_id, item_no)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


def _changed(conn, source: str, repeats: Sequence[Transaction]) -> list[str]:
    """Ids that a later export repeats with a different amount, currency, date or vendor."""
    changed = []
    for tx in repeats:
        row = conn.execute(
            "SELECT amount_minor, currency, date, vendor FROM transactions WHERE source = ? AND txn_id = ?", (source, tx.txn_id)
        ).fetchone()
        if row and tuple(row) != (tx.amount_minor, tx.currency, tx.date, tx.vendor):
            changed.append(tx.txn_id)
    return changed


def history_bands(policy: Policy, currencies) -> dict[str, tuple[int, int]]:
    """The structuring band per currency, or nothing when the rule is off."""
    if not policy.structuring.enabled:
        return {}
    return {c: structuring_band(policy.amount_threshold, policy.structuring.band_fraction, c) for c in currencies}


def find_history(conn, policy: Policy, fresh: Sequence[Transaction]) -> list[PastPayment]:
    """The earlier runs' payments tonight's duplicate and structuring rules need."""
    if not fresh or not (policy.duplicates.enabled or policy.structuring.enabled):
        return []
    needs, keys = history_needs(
        [(t.date, t.currency, normalize_vendor(t.vendor), t.amount_minor) for t in fresh],
        duplicates_window=policy.duplicates.window_days if policy.duplicates.enabled else None,
        structuring_window=policy.structuring.window_days if policy.structuring.enabled else None,
        bands=history_bands(policy, {t.currency for t in fresh}),
    )
    return recent_payments(conn, needs, keys)


def _rank(screening: Screening) -> tuple[int, int]:
    return (-len(screening.flags), -abs(screening.transaction.amount_minor))


def read_ledgers(config: Config, ledger_paths: Sequence[str | Path], *, stream=None, spill: Path | None = None) -> list:
    """Read every ledger completely; any bad row rejects the run before anything is written.

    When any file is at least `[ledger] large_file_bytes`, every file of the run is read
    column-wise in blocks (`ingest_fast`), otherwise into `Transaction`s (`ingest`). From
    `SPILL_BYTES` of ledgers on, the blocks are kept on disk (`spill`, or a folder beside the
    database) and read back one at a time. A progress line goes to `stream` (stderr) while a
    large file is read, if it is a terminal.
    """
    fmt = ledger_format(config)
    sizes = []
    for p in ledger_paths:
        try:
            sizes.append(os.path.getsize(p))
        except OSError:
            sizes.append(0)  # read_ledger reports it
    if not any(size >= config.ledger.large_file_bytes for size in sizes):
        return [read_ledger(p, fmt) for p in ledger_paths]
    from job.ledger.ingest_fast import FrameLedger, Unsupported, read_ledger_fast, transactions_frame
    from job.progress import Progress

    if config.policy.approval_mode != "never":
        _start_prefetch("job.review.agent")  # a large ledger will have flagged items to review

    if spill is None and sum(sizes) >= SPILL_BYTES:
        spill = _spill_folder(config)
    ledgers = []
    for p in ledger_paths:
        progress = Progress(f"reading {os.path.basename(p)}", stream=stream)
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
    """The policy file's own rules, checked and compiled (ConfigError naming a bad one).

    Only a policy with rules of its own pays for importing the rule engine (polars).
    """
    if not config.policy.rules:
        return []
    from job.screening.rules import compile_rules

    return compile_rules(config)


def _user_flags(rules: Sequence, fresh: Sequence[Transaction]) -> dict[int, list[Flag]]:
    if not rules or not fresh:
        return {}
    from job.screening.rules import evaluate_rules, rules_frame

    return evaluate_rules(rules, rules_frame(fresh))


@dataclass(slots=True)
class Review:
    """What screening and the review found: the flagged items with their notes."""

    flagged: object  # FlaggedList or bulk.FlaggedFrame
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
    described = describe_policy(config.policy, known)  # the settings that decide what is flagged
    fingerprint = policy_sha256(described)
    source = config.ledger.source
    result = RunResult(reviewer=reviewer)
    policy = config.policy
    mode = policy.approval_mode

    large = bool(ledgers) and not isinstance(ledgers[0], Ledger)
    if large:
        from job.bulk import FrameBatch as batch_kind
    else:
        batch_kind = ListBatch
    batch, outcomes, changed = batch_kind.select(db.conn, source, ledgers)
    for ledger, new, skipped in outcomes:
        result.ledgers.append(LedgerOutcome(ledger.name, _rows(ledger), new, skipped))
    result.changed_in_later_export = changed
    chosen = [(ledger, new) for ledger, new, skipped in outcomes if not skipped]
    known |= _existing(db.conn, "SELECT vendor_key FROM vendors WHERE vendor_key IN ({marks})", sorted(batch.vendor_keys()))
    batch.look_back(db.conn, policy)
    fresh_count = batch.count

    crash_point("run:read")
    review = Review(batch.screen(policy, known, rules))
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
            "INSERT INTO runs (started_at, mode, reviewer, ledgers, transactions, new_transactions, policy_sha256) VALUES (?,?,?,?,?,?,?)",
            (now_utc(), mode, reviewer, len(ledgers), sum(_rows(ledger) for ledger in ledgers), fresh_count, fingerprint),
        ).lastrowid
        result.run_id = run_id
        next_pk = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM transactions").fetchone()[0]
        file_ids = [
            conn.execute(
                "INSERT INTO ledger_files (source, name, path, sha256, rows, new_rows, imported_at, run_id,"
                " first_transaction_id, last_transaction_id, first_date, last_date) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (source, ledger.name, str(Path(ledger.path).resolve()), ledger.sha256, _rows(ledger), new, now_utc(), run_id, *zone),
            ).lastrowid
            for (ledger, new), zone in zip(chosen, batch.zones(next_pk))
        ]
        if request_id:
            _insert_request(conn, request_id, run_id, flagged.count)
        marks = batch.flagged_rows(flagged, "held" if mode == "never" else "pending", request_id, next_pk)
        progress = _write_progress(batch.count, stream)
        writer = Writer(conn, background=large)
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
                "ledgers": [{"name": lg.name, "sha256": lg.sha256, "rows": _rows(lg), "new": n} for lg, n in chosen],
                "skipped": [o.name for o in result.ledgers if o.already_imported],
                "new_transactions": fresh_count,
                "flagged": flagged.count,
                "auto_approved": fresh_count - flagged.count,
                "held": result.held,
                "request_id": request_id,
                "model_calls": review.usage[0],
                "prompt_tokens": review.usage[1],
                "completion_tokens": review.usage[2],
                "policy": described,
                "policy_sha256": fingerprint,
            },
        )
        if draft is not None:
            await _record_request(conn, db, config, request_id, draft, run_id, flagged, review.summary, result)
        append_event(conn, "sealed", detail=seal_run(conn, run_id))  # after the run's last write but the witness notices
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


def _rows(ledger) -> int:
    return len(ledger.transactions) if isinstance(ledger, Ledger) else ledger.rows


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


def _review_item(s: Screening):
    from job.review.agent import ReviewItem

    tx = s.transaction
    return ReviewItem(
        id=tx.txn_id,
        date=tx.date,
        vendor=tx.vendor,
        amount=format_amount(tx.amount_minor, tx.currency),
        currency=tx.currency,
        memo=tx.memo,
        flags=tuple((f.code, f.reason) for f in s.flags),
    )


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
