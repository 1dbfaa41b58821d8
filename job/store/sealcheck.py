"""`audit verify`'s check of every sealed table: the rows against the runs' seals and the
events recorded since (`seal.py` says what a seal holds and how).

`verify_seals` gets the chain's events, already verified by `auditlog.verify_log`, and checks,
stopping at the first row that does not match and naming its table and row (and the column,
when it can tell): the `runs`, `ledger_files`, `requests` and `request_tokens` rows against
the values their seals hold, changed only by the events since (closing, reminders,
escalation, expiry, summary, new reply tokens); every decision event against the reply or
expiry it came from; the payment digests and vendors against their blocks; the transactions
(each status replayed to the one it had when sealed, through the decision events since)
against their blocks, and their date, currency, amount and vendor key against the digests,
their source, file and run against the ledger files; the transcript against the seal and
summary events that cover it; no row outside every seal. It also says, as notes, what it
cannot vouch for: runs sealed only when the database was upgraded, and transcript rows not
sealed yet.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import sqlite3
import sys
import zlib
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from job.store.seal import (
    BLOCK_ROWS,
    BY_FILES,
    LONG_TEXT,
    SMALL_BLOCK_ROWS,
    TRANSACTION_COLUMNS,
    TRANSCRIPT_COLUMNS,
    TRANSCRIPT_SQL,
    chain,
    digest_lines,
    id_range_blocks,
    last_key,
    line_blocks,
    literal,
    row_json,
    text_digest,
    transaction_sql,
    uint32s,
    vendor_lines,
)

__all__ = ["LogEvent", "SealCheck", "verify_seals"]

STATUSES = ("auto_approved", "pending", "held", "approved", "rejected", "expired")


class LogEvent(NamedTuple):
    """An event of the chain as `auditlog.verify_log` read it (its detail parsed)."""

    id: int
    at: str
    kind: str
    request_id: str
    message_id: str
    detail: dict


@dataclass(slots=True)
class SealCheck:
    problem: str = ""
    notes: list[str] = field(default_factory=list)


class _Mismatch(Exception):
    """The first row that does not match; its message names the table and the row."""


ANY = object()  # a value an older event did not record: any non-null value agrees
_MISSING = object()


@dataclass(frozen=True, slots=True)
class _Unit:
    """One `sealed` event: a run's seal, or the seal of everything an upgraded database held."""

    event: LogEvent

    @property
    def seal(self) -> dict:
        return self.event.detail

    @property
    def first_run(self) -> int:
        return self.seal["runs"][0]

    @property
    def last_run(self) -> int:
        return self.seal["runs"][1]

    @property
    def existing(self) -> bool:
        return "at_migration" in self.seal

    def runs(self) -> str:
        return f"run {self.first_run}" if self.first_run == self.last_run else f"runs {self.first_run}-{self.last_run}"

    @property
    def by(self) -> str:
        """Who sealed it, for messages: "run 3", "the upgrade's seal (event 40)"."""
        return f"the upgrade's seal (event {self.event.id})" if self.existing else f"run {self.first_run}"


def verify_seals(conn, events: Sequence[LogEvent]) -> SealCheck:
    """Check every sealed table against the seals and the events recorded since (`events`:
    the chain's events, already verified, in order). The first problem names the table and row."""
    check = SealCheck()
    units = sorted((_Unit(e) for e in events if e.kind == "sealed"), key=lambda u: u.first_run)
    try:
        _check_literal(conn, "runs", {row["id"]: (u, row) for u in units for row in u.seal["runs_rows"]})
        _check_literal(conn, "ledger_files", {row["id"]: (u, row) for u in units for row in u.seal["ledger_files"]})
        _check_requests(conn, units, events)
        _check_tokens(conn, units, events)
        _check_decision_sources(units, events)
        _check_ordered(conn, units, "payment_digests")  # before the transactions, which are checked against them
        _check_ordered(conn, units, "vendors")  # which give the vendor keys whose hashes the digests hold
        _check_transactions(conn, units, events)
        _check_transcript(conn, events, check)
        _check_digest_state(conn, units)
    except _Mismatch as exc:
        check.problem = str(exc)
    for u in units:
        if u.existing:
            check.notes.append(
                f"{u.runs()} recorded before seals existed: sealed as they stood when the database was upgraded"
                f" (event {u.event.id}, {u.event.at}); a change made to them before then cannot be detected"
            )
    return check


# --- rows the seals hold by value ------------------------------------------------------------


def _first_difference(table: str, expected: dict, actual: dict) -> str | None:
    """The first column (by name) whose value differs; a long text by its own name."""
    for name in sorted(set(expected) | set(actual)):
        want, have = expected.get(name, _MISSING), actual.get(name, _MISSING)
        differs = (have is None or have is _MISSING) if want is ANY else (want != have or type(want) is not type(have))
        if differs:
            column = name.removesuffix("_sha256")
            return column if column in LONG_TEXT.get(table, ()) else name
    return None


def _check_literal(conn, table: str, sealed: dict[Any, tuple[_Unit, dict]], since: str = "") -> None:
    """Each row exactly as sealed (and changed by the events since), none more, none less."""
    cursor = conn.execute(f"SELECT * FROM {table} ORDER BY rowid")
    names = [d[0] for d in cursor.description]
    for values in cursor:
        row = literal(table, dict(zip(names, values)))
        unit, expected = sealed.pop(row["id"], (None, None))
        if unit is None or expected is None:
            raise _Mismatch(f"{table} row {_label(table, row)}: in no run's seal (added outside a run)")
        column = _first_difference(table, expected, row)
        if column:
            raise _Mismatch(f"{table} row {_label(table, expected)}: {column} differs from what {unit.by} recorded{since}")
    if sealed:
        unit, expected = sealed[min(sealed)]
        raise _Mismatch(f"{table} row {_label(table, expected)} is missing, but {unit.by} recorded it")


def _label(table: str, row: dict) -> str:
    return f"{row.get('id')} ({row.get('name')})" if table == "ledger_files" else str(row.get("id"))


REQUEST_EVENTS = ("request_closed", "expired", "reminded", "escalated", "summary")


def _check_requests(conn, units: Sequence[_Unit], events: Sequence[LogEvent]) -> None:
    sealed = {row["id"]: (u, dict(row)) for u in units for row in u.seal["requests"]}
    for e in events:  # what the audit log says happened to each request after its seal
        if e.kind not in REQUEST_EVENTS or e.request_id not in sealed:
            continue
        unit, expected = sealed[e.request_id]
        if e.id < unit.event.id:
            continue
        d = e.detail
        if e.kind == "reissued":  # new reply tokens only (`_check_tokens`)
            continue
        if e.kind in ("request_closed", "expired"):
            expected["status"] = "closed"
            expected["closed_at"] = d.get("closed_at", ANY)
            if e.kind == "expired":
                expected["expired_at"] = d.get("closed_at", ANY)
        elif e.kind in ("reminded", "escalated"):
            expected[f"{e.kind}_at"] = d.get("at", ANY)
        else:
            expected["summary_sha256"] = text_digest(d.get("summary") or "(no summary)")
    _check_literal(conn, "requests", sealed, " and the audit log says since")


def _check_tokens(conn, units: Sequence[_Unit], events: Sequence[LogEvent]) -> None:
    """Reply tokens: a request's are those its seal holds, or those its last reminder,
    escalation or reissue event lists (each lists the request's whole set)."""
    expected: dict[str, tuple[str, set[tuple[str, str]]]] = {}
    for u in units:
        for request_id, pairs in u.seal["request_tokens"].items():
            expected[request_id] = (f"{u.by} recorded", {tuple(p) for p in pairs})
    for e in events:
        if e.kind in ("reminded", "escalated", "reissued") and "tokens" in e.detail and e.request_id in expected:
            expected[e.request_id] = (f"event {e.id} ({e.kind}) recorded", {tuple(p) for p in e.detail["tokens"]})
    found: dict[str, set[tuple[str, str]]] = {}
    for token_hash, request_id, approver in conn.execute("SELECT token_hash, request_id, approver FROM request_tokens"):
        found.setdefault(request_id, set()).add((token_hash, approver))
    for request_id in sorted(set(expected) | set(found)):
        by, want = expected.get(request_id, ("", set()))
        have = found.get(request_id, set())
        extra, gone = sorted(have - want), sorted(want - have)
        if extra:
            token_hash, approver = extra[0]
            raise _Mismatch(
                f"request_tokens row {token_hash[:16]}... (request {request_id}, {approver}): a reply token the audit log does not record"
            )
        if gone:
            token_hash, approver = gone[0]
            raise _Mismatch(f"request_tokens row {token_hash[:16]}... (request {request_id}, {approver}) is missing, but {by} it")


def _check_decision_sources(units: Sequence[_Unit], events: Sequence[LogEvent]) -> None:
    """Every decision since seals exist came from somewhere the audit log records: a reply's
    decisions are followed at once by that reply's `message` event, which counts them; an
    expiry's by the `expired` event of their request (mail queued meanwhile, such as the
    confirmation, may come between). A decision row and event added on
    their own name no such source."""
    if not units:
        return
    since = min(u.event.id for u in units)
    group: list[LogEvent] = []
    for n, e in enumerate(events):
        if e.kind != "decision" or e.id < since:
            continue
        group.append(e)
        # the next event this check reads (mail queued meanwhile, such as the confirmation, is not among them)
        after = events[n + 1] if n + 1 < len(events) else None
        if after is not None and after.kind == "decision" and after.detail.get("message_id") == e.detail.get("message_id"):
            continue
        first = group[0]
        expiry = not first.detail.get("message_id")
        if expiry:
            sourced = after is not None and after.kind == "expired" and after.request_id == first.request_id
        else:
            sourced = (
                after is not None
                and after.kind == "message"
                and after.message_id == first.detail.get("message_id")
                and after.detail.get("status") == "processed"
                and after.detail.get("decisions") == len(group)
                and after.request_id == first.request_id
            )
        if not sourced:
            what = "the expiry of its request" if expiry else f"the reply {first.detail.get('message_id')} it names"
            raise _Mismatch(f"decisions row {first.detail.get('decision_id')}: the audit log has no record of {what} (event {first.id})")
        group = []


# --- rows the seals hold by block ------------------------------------------------------------


def _stored_blocks(conn, table: str, owner: int) -> list[tuple[int, int, str, bytes, int | None]]:
    sql = "SELECT block, rows, sha256, row_sums, last_key FROM seal_blocks WHERE part = ? AND owner = ? ORDER BY block"
    return conn.execute(sql, (table, owner)).fetchall()


def _blocks_match(table: str, part: dict, texts: Sequence[tuple[int, bytes]], stored: Sequence[tuple], digests: Sequence[str]) -> bool:
    """Whether the rows read now are what the seal's chain holds; when they are, the
    `seal_blocks` rows (the locators) must be what was sealed too."""
    sums = {block: blob for block, _, _, blob, _ in stored}
    links = [(d, sums.get(n, b"")) for n, d in enumerate(digests)]
    if chain(table, part["owner"], links) != part["sha256"] or sum(r for r, _ in texts) != part["rows"]:
        return False
    size = SMALL_BLOCK_ROWS if table == "transcript" else BLOCK_ROWS
    ids = (part["first_id"], part["last_id"], size) if "first_id" in part else None
    for n, (block, rows, sha, _, last) in enumerate(stored):
        if block != n or n >= len(digests) or sha != digests[n] or rows != texts[n][0] or last != last_key(ids, n):
            raise _Mismatch(f"seal_blocks row ({table}, {part['owner']}, block {block}): altered (the rows it seals are intact)")
    if len(stored) != len(digests):
        raise _Mismatch(f"seal_blocks rows of ({table}, {part['owner']}): {len(stored)} where the seal has {len(digests)}")
    return True


def _differing_ids(
    conn, table: str, texts: Sequence[tuple[int, bytes]], stored: Sequence[tuple], digests: Sequence[str], first_id: int, size: int
) -> Iterator[tuple[int, str]]:
    """(id, "differs" | "inserted" | "missing") for each row of a block that no longer matches
    the line sealed for its id, found by the lines' checksums; blocks whose hash matches are skipped."""
    for n, (block, rows, sha, blob, _) in enumerate(stored):
        if n >= len(digests) or block != n or sha == digests[n]:
            continue
        sums, start = uint32s(blob), first_id + n * size
        ids = [pk for (pk,) in conn.execute(f"SELECT id FROM {table} WHERE id BETWEEN ? AND ? ORDER BY id", (start, start + size - 1))]
        lines = texts[n][1].split(b"\n") if texts[n][1] else []
        for pk, line in zip(ids, lines):
            position = pk - start
            if not 0 <= position < rows:
                yield pk, "inserted"
            elif zlib.adler32(line) != sums[position]:
                yield pk, "differs"
        for position in sorted(set(range(rows)) - {pk - start for pk in ids}):
            yield start + position, "missing"


def _read(conn, sql: str, first: int, last: int, size: int, table: str) -> list[tuple[int, bytes]]:
    try:
        return list(id_range_blocks(conn, sql, first, last, size))
    except sqlite3.OperationalError:  # a BLOB, which no run writes (json_array refuses it)
        columns = TRANSACTION_COLUMNS if table == "transactions" else TRANSCRIPT_COLUMNS
        blob = " OR ".join(f"typeof({c}) = 'blob'" for c in columns)
        pk = conn.execute(f"SELECT id FROM {table} WHERE id BETWEEN ? AND ? AND ({blob}) ORDER BY id LIMIT 1", (first, last)).fetchone()
        raise _Mismatch(f"{table} row {pk[0] if pk else first}: holds a BLOB where a run writes text or a number") from None


def _decisions_by_row(events: Sequence[LogEvent]) -> dict[int, list[LogEvent]]:
    found: dict[int, list[LogEvent]] = {}
    for e in events:
        if e.kind == "decision" and e.detail.get("transaction_id") is not None:
            found.setdefault(e.detail["transaction_id"], []).append(e)
    return found


def _replay_statuses(units: Sequence[_Unit], events: Sequence[LogEvent]) -> tuple[list[tuple[int, str]], list[tuple[int, str | None]]]:
    """From the decision events: each decided row's status when sealed (what the first decision
    after its seal changed) and its status now (what the last decision made it)."""
    ranged = sorted((u.seal["transactions"]["first_id"], u.seal["transactions"]["last_id"], u) for u in units if u.seal["transactions"])
    starts = [r[0] for r in ranged]
    sealed_status: list[tuple[int, str]] = []
    last_status: list[tuple[int, str | None]] = []  # None: a decision event naming no decision
    for pk, decided in _decisions_by_row(events).items():
        n = bisect.bisect_right(starts, pk) - 1
        unit = ranged[n][2] if n >= 0 and pk <= ranged[n][1] else None
        txn = decided[0].detail.get("txn_id")
        if unit is None:
            raise _Mismatch(f"transactions row {pk} ({txn}): decided in the audit log (event {decided[0].id}) but in no run's seal")
        since = [e for e in decided if e.id > unit.event.id]
        for before, after in itertools.pairwise(since):
            if after.detail.get("from") != before.detail.get("decision"):
                raise _Mismatch(
                    f"transactions row {pk} ({txn}): decision event {after.id} changed status {after.detail.get('from')},"
                    f" but event {before.id} had made it {before.detail.get('decision')}"
                )
        if since:
            if "from" not in since[0].detail:
                raise _Mismatch(f"transactions row {pk} ({txn}): decision event {since[0].id} does not say which status it changed")
            sealed_status.append((pk, since[0].detail["from"]))
        last_status.append((pk, decided[-1].detail.get("decision")))
    return sealed_status, last_status


def _check_transactions(conn, units: Sequence[_Unit], events: Sequence[LogEvent]) -> None:
    """Each row's status is its last decision's; each run's rows, with the statuses they had
    when sealed, are what its seal holds, and agree with its payment digests and ledger files;
    no row is outside every seal."""
    sealed_status, last_status = _replay_statuses(units, events)
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS audit_sealed_status (id INTEGER PRIMARY KEY, status TEXT NOT NULL)")
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS audit_last_status (id INTEGER PRIMARY KEY, status TEXT NOT NULL)")
    try:
        conn.execute("DELETE FROM temp.audit_sealed_status")
        conn.execute("DELETE FROM temp.audit_last_status")
        conn.executemany("INSERT INTO temp.audit_sealed_status VALUES (?,?)", sealed_status)
        conn.executemany("INSERT INTO temp.audit_last_status VALUES (?,?)", last_status)
        row = conn.execute(
            "SELECT t.id, t.txn_id, t.status, l.status FROM temp.audit_last_status l JOIN transactions t ON t.id = l.id"
            " WHERE t.status IS NOT l.status ORDER BY t.id LIMIT 1"
        ).fetchone()
        if row:
            raise _Mismatch(
                f"transactions row {row[0]} ({row[1]}): status {row[2]}, but the last decision the audit log records is {row[3]}"
            )
        for u in units:
            if u.seal["transactions"]:
                _check_run_rows(conn, u)
    finally:
        conn.execute("DROP TABLE IF EXISTS temp.audit_sealed_status")
        conn.execute("DROP TABLE IF EXISTS temp.audit_last_status")
    _check_coverage(conn, units)


def _check_run_rows(conn, unit: _Unit) -> None:
    part = unit.seal["transactions"]
    columns = part.get("columns", TRANSACTION_COLUMNS)
    first, last = part["first_id"], part["last_id"]
    texts = _read(conn, transaction_sql(columns, replayed=True), first, last, BLOCK_ROWS, "transactions")
    digests = [hashlib.sha256(text).hexdigest() for _, text in texts]
    stored = _stored_blocks(conn, "transactions", part["owner"])
    if "ledger_file_id" not in columns:  # first: what these find, they name by column
        _check_against_files(conn, unit)
    if "amount_minor" not in columns:
        _check_against_digests(conn, unit)
    if _blocks_match("transactions", part, texts, stored, digests):
        return
    found = list(itertools.islice(_differing_ids(conn, "transactions", texts, stored, digests, first, BLOCK_ROWS), 2))
    if not found:
        raise _Mismatch(
            f"transactions rows {first}-{last}: they or their seal_blocks rows were altered; they do not match what {unit.by} sealed"
        )
    pk, state = found[0]
    row = conn.execute("SELECT txn_id, date, currency, amount_minor, vendor_key, run_id FROM transactions WHERE id = ?", (pk,)).fetchone()
    if state == "missing" or row is None:
        raise _Mismatch(f"transactions row {pk} is missing, but {unit.by} recorded it")
    if state == "inserted":
        raise _Mismatch(f"transactions row {pk} ({row[0]}): was not there when {unit.by} sealed its rows (inserted since)")
    was = _status_was(conn, pk, columns, stored, first) if len(found) == 1 else None
    if was:
        raise _Mismatch(f"transactions row {pk} ({row[0]}): status differs from what {unit.by} recorded (it was {was})")
    column = _column_from_digests(conn, pk, row) if len(found) == 1 and "amount_minor" in columns else None
    what = f"{column} differs" if column else "its values differ"
    raise _Mismatch(f"transactions row {pk} ({row[0]}): {what} from what {unit.by} recorded")


def _status_was(conn, pk: int, columns: Sequence[str], stored: Sequence[tuple], first: int) -> str | None:
    """The status the row was sealed with, when its line with that status is the line sealed
    (by its checksum): then the status alone changed."""
    block, position = divmod(pk - first, BLOCK_ROWS)
    sums = uint32s(stored[block][3]) if block < len(stored) else array("I")
    if position >= len(sums):
        return None
    for status in STATUSES:
        (line,) = conn.execute(f"SELECT CAST({row_json(columns, '?')} AS BLOB) FROM transactions t WHERE t.id = ?", (status, pk)).fetchone()
        if zlib.adler32(line) == sums[position]:
            return status
    return None


def _check_against_files(conn, unit: _Unit) -> None:
    """The source, ledger file and run of each row: those of the sealed file whose id range holds it."""
    for f in unit.seal["ledger_files"]:
        if f["first_transaction_id"] is None:
            continue
        row = conn.execute(
            "SELECT id, txn_id, source IS NOT ?, ledger_file_id IS NOT ?, run_id IS NOT ? FROM transactions WHERE id BETWEEN ? AND ?"
            " AND (source IS NOT ? OR ledger_file_id IS NOT ? OR run_id IS NOT ?) ORDER BY id LIMIT 1",
            (f["source"], f["id"], f["run_id"], f["first_transaction_id"], f["last_transaction_id"], f["source"], f["id"], f["run_id"]),
        ).fetchone()
        if row:
            column = next(c for c, differs in zip(BY_FILES, row[2:]) if differs)
            raise _Mismatch(f"transactions row {row[0]} ({row[1]}): {column} differs from what {unit.by} recorded")


def _check_against_digests(conn, unit: _Unit) -> None:
    """The date, currency, amount and vendor key of each row: those of its entry in the run's
    payment digests (each row in exactly one). A block at a time, SQLite lists the rows'
    amounts, vendor hashes (from a table of the vendor keys and their hashes) and day numbers,
    which are compared as arrays with the same lists made from the digests."""
    from job.screening.history import vendor_hash  # the digests' own hash of a vendor key

    part = unit.seal["transactions"]
    first, last = part["first_id"], part["last_id"]
    count = last - first + 1
    day_of = array("q", [-1]) * count  # per row: the number of its digest's (date, currency)
    amounts, hashes = array("q", [0]) * count, array("q", [0]) * count
    days: dict[tuple[str, str], int] = {}  # (date, currency) -> its number
    for day, currency, vh_blob, amount_blob, id_blob in conn.execute(
        "SELECT date, currency, vendor_hashes, amounts, transaction_ids FROM payment_digests WHERE run_id BETWEEN ? AND ?"
        " ORDER BY date, currency, part",
        (unit.first_run, unit.last_run),
    ):
        number = days.setdefault((day, currency), len(days))
        for pk, amount, vh in zip(_int64s(id_blob), _int64s(amount_blob), _int64s(vh_blob)):
            slot = pk - first
            if not 0 <= slot < count or day_of[slot] != -1:
                raise _Mismatch(
                    f"payment_digests row {day} {currency} ({unit.runs()}): lists transaction {pk} where {unit.by} sealed no such row"
                )
            day_of[slot], amounts[slot], hashes[slot] = number, amount, vh
    if -1 in day_of:
        pk = first + day_of.index(-1)
        raise _Mismatch(f"transactions row {pk}: not in the payment digests {unit.by} recorded")
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS audit_vendor_hash (vendor_key TEXT PRIMARY KEY, vh INTEGER NOT NULL)")
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS audit_day (date TEXT, currency TEXT, n INTEGER, PRIMARY KEY (date, currency))")
    try:
        conn.execute("DELETE FROM temp.audit_vendor_hash")
        conn.execute("DELETE FROM temp.audit_day")
        keys = [k for (k,) in conn.execute("SELECT vendor_key FROM vendors WHERE typeof(vendor_key) = 'text'")]  # every run's keys
        conn.executemany("INSERT INTO temp.audit_vendor_hash VALUES (?,?)", [(k, vendor_hash(k)) for k in keys])
        conn.executemany("INSERT INTO temp.audit_day VALUES (?,?,?)", [(d, c, n) for (d, c), n in days.items()])
        sql = (
            "SELECT count(*), group_concat(coalesce(t.amount_minor, 'x')), group_concat(coalesce(v.vh, 'x')), group_concat(coalesce(d.n, 'x'))"
            " FROM transactions t LEFT JOIN temp.audit_vendor_hash v ON v.vendor_key = t.vendor_key"
            " LEFT JOIN temp.audit_day d ON d.date = t.date AND d.currency = t.currency WHERE t.id BETWEEN ? AND ?"
        )
        for start in range(first, last + 1, BLOCK_ROWS):
            end = min(start + BLOCK_ROWS - 1, last)
            rows, *lists = conn.execute(sql, (start, end)).fetchone()
            if rows != end - start + 1:
                return  # a row is missing or added: the seal's blocks name it
            a, b = start - first, end - first + 1
            if any(_ints(listed) != wanted[a:b] for listed, wanted in zip(lists, (amounts, hashes, day_of))):
                _name_digest_difference(conn, unit, start, end, (amounts, hashes, day_of), days)
    finally:
        conn.execute("DROP TABLE IF EXISTS temp.audit_vendor_hash")
        conn.execute("DROP TABLE IF EXISTS temp.audit_day")


def _ints(listed: str | None) -> array | None:
    """A list of integers SQLite joined with commas, or None when one is not an integer."""
    try:
        return array("q", map(int, listed.split(","))) if listed else array("q")
    except (ValueError, OverflowError):
        return None


def _name_digest_difference(conn, unit: _Unit, start: int, end: int, wanted: tuple[array, array, array], days: dict) -> None:
    """Name the first row of a block whose date, currency, amount or vendor key is not its digest entry's."""
    amounts, hashes, day_of = wanted
    sealed_day = {number: key for key, number in days.items()}
    first = unit.seal["transactions"]["first_id"]
    for pk, txn_id, day, currency, amount, vh in conn.execute(
        "SELECT t.id, t.txn_id, t.date, t.currency, t.amount_minor, v.vh FROM transactions t"
        " LEFT JOIN temp.audit_vendor_hash v ON v.vendor_key = t.vendor_key WHERE t.id BETWEEN ? AND ? ORDER BY t.id",
        (start, end),
    ):
        slot = pk - first
        then_day, then_currency = sealed_day[day_of[slot]]
        column = (
            "date"
            if day != then_day
            else "currency"
            if currency != then_currency
            else "amount_minor"
            if amount != amounts[slot] or type(amount) is not int
            else "vendor_key"
            if vh != hashes[slot]
            else None
        )
        if column:
            raise _Mismatch(f"transactions row {pk} ({txn_id}): {column} differs from what {unit.by} recorded")


def _column_from_digests(conn, pk: int, row: tuple) -> str | None:
    """Which imported fact changed, when the run's payment digests (sealed too) tell: the
    date, the currency, the amount or the vendor key."""
    from job.screening.history import vendor_hash  # only when a row does not match

    _, day, currency, amount, vendor_key, run_id = row
    for d_day, d_currency, hashes, amounts, ids in conn.execute(
        "SELECT date, currency, vendor_hashes, amounts, transaction_ids FROM payment_digests WHERE run_id = ?", (run_id,)
    ):
        pks = _int64s(ids)
        if pk not in pks:
            continue
        i = pks.index(pk)
        if d_day != day:
            return "date"
        if d_currency != currency:
            return "currency"
        if _int64s(amounts)[i] != amount:
            return "amount_minor"
        if _int64s(hashes)[i] != vendor_hash(str(vendor_key)):
            return "vendor_key"
        return None
    return None


def _int64s(blob: bytes) -> array:
    values = array("q")
    values.frombytes(blob)
    if sys.byteorder != "little":
        values.byteswap()
    return values


def _check_coverage(conn, units: Sequence[_Unit]) -> None:
    """Every transactions row belongs to a seal: a row in none was inserted outside a run."""
    parts = sorted((u.seal["transactions"]["first_id"], u.seal["transactions"]["last_id"]) for u in units if u.seal["transactions"])
    total = conn.execute("SELECT count(*) FROM transactions").fetchone()[0]
    if total == sum(u.seal["transactions"]["rows"] for u in units if u.seal["transactions"]):
        return
    merged: list[list[int]] = []
    for first, last in parts:
        if merged and first == merged[-1][1] + 1:
            merged[-1][1] = last
        else:
            merged.append([first, last])
    outside = " AND ".join(f"id NOT BETWEEN {int(a)} AND {int(b)}" for a, b in merged) or "1"
    row = conn.execute(f"SELECT id, txn_id, run_id FROM transactions WHERE {outside} ORDER BY id LIMIT 1").fetchone()
    if row:
        raise _Mismatch(f"transactions row {row[0]} ({row[1]}): in no run's seal (inserted outside a run, as run {row[2]})")


def _check_ordered(conn, units: Sequence[_Unit], table: str) -> None:
    """Vendors and payment digests: per seal, the rows in key order against the seal; then
    no row outside every seal."""
    size = BLOCK_ROWS if table == "vendors" else SMALL_BLOCK_ROWS
    sealed_rows = 0
    for u in units:
        part = u.seal[table]
        sealed_rows += part["rows"]
        if table == "vendors":
            lines = vendor_lines(conn, u.first_run, u.last_run, u.existing)
        else:
            lines = digest_lines(conn, u.first_run, u.last_run)
        texts = list(line_blocks(lines, size))
        digests = [hashlib.sha256(text).hexdigest() for _, text in texts]
        stored = _stored_blocks(conn, table, part["owner"])
        if _blocks_match(table, part, texts, stored, digests):
            continue
        if len(lines) < part["rows"]:
            raise _Mismatch(_missing_ordered(conn, table, u, part["rows"] - len(lines)))
        sums = array("I")
        for _, _, _, blob, _ in stored:
            sums.extend(uint32s(blob))
        for position, line in enumerate(lines):
            if position >= len(sums) or zlib.adler32(line.encode("utf-8")) != sums[position]:
                if len(lines) > part["rows"]:
                    raise _Mismatch(f"{table} row {_key(table, line)}: not among what {u.by} recorded (added since)")
                raise _Mismatch(f"{table} row {_key(table, line)}: differs from what {u.by} recorded")
        raise _Mismatch(f"{table} rows of {u.runs()}: they or their seal_blocks rows were altered; they do not match what {u.by} sealed")
    if conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == sealed_rows:
        return
    column = "first_run_id" if table == "vendors" else "run_id"
    covered = [f"{column} BETWEEN {int(u.first_run)} AND {int(u.last_run)}" for u in units]
    if table == "vendors" and any(u.existing for u in units):
        covered.append(f"{column} IS NULL")
    key = "quote(vendor_key)" if table == "vendors" else "date || ' ' || currency || ' part ' || part || ' (run ' || run_id || ')'"
    row = conn.execute(f"SELECT {key} FROM {table} WHERE NOT ({' OR '.join(covered) or '0'}) LIMIT 1").fetchone()
    raise _Mismatch(f"{table} row {row[0] if row else '(unknown)'}: in no run's seal (added outside a run)")


def _key(table: str, line: str) -> str:
    values = json.loads(line)
    if table == "vendors":
        return "'" + str(values[0]).replace("'", "''") + "'"
    return f"{values[1]} {values[2]} part {values[3]} (run {values[0]})"


def _missing_ordered(conn, table: str, unit: _Unit, count: int) -> str:
    """Name a vendor or digest row that is gone, from the sealed transactions that need it."""
    part = unit.seal["transactions"]
    row = None
    if part and table == "vendors":
        row = conn.execute(
            "SELECT quote(vendor_key) FROM transactions t WHERE t.id BETWEEN ? AND ?"
            " AND NOT EXISTS (SELECT 1 FROM vendors v WHERE v.vendor_key = t.vendor_key) LIMIT 1",
            (part["first_id"], part["last_id"]),
        ).fetchone()
    elif part:
        row = conn.execute(
            "SELECT t.date || ' ' || t.currency FROM transactions t WHERE t.id BETWEEN ? AND ? AND NOT EXISTS"
            " (SELECT 1 FROM payment_digests d WHERE d.run_id = t.run_id AND d.date = t.date AND d.currency = t.currency) LIMIT 1",
            (part["first_id"], part["last_id"]),
        ).fetchone()
    if row:
        label = row[0] if table == "vendors" else f"{row[0]} ({unit.runs()})"
        return f"{table} row {label} is missing, but {unit.by} recorded it"
    return f"{table}: {count} row(s) of {unit.runs()} are missing, but {unit.by} recorded them"


def _check_transcript(conn, events: Sequence[LogEvent], check: SealCheck) -> None:
    """The agent's transcript: each seal or summary event covers the rows written since the one
    before; rows after the last are reported as not sealed yet (a summary that did not finish)."""
    covered_last = 0
    first_cover = None
    for event in events:
        cover = event.detail.get("transcript") if event.kind in ("sealed", "summary") else None
        if not cover:
            continue
        first, last = cover["first_id"], cover["last_id"]
        if first_cover is None:
            first_cover = first
        elif first != covered_last + 1:
            raise _Mismatch(f"transcript rows {covered_last + 1}-{first - 1}: event {event.id} does not seal the rows after the last seal")
        covered_last = last
        texts = _read(conn, TRANSCRIPT_SQL, first, last, SMALL_BLOCK_ROWS, "transcript")
        digests = [hashlib.sha256(text).hexdigest() for _, text in texts]
        stored = _stored_blocks(conn, "transcript", cover["owner"])
        if _blocks_match("transcript", cover, texts, stored, digests):
            continue
        by = f"event {event.id} ({event.kind})"
        for pk, state in _differing_ids(conn, "transcript", texts, stored, digests, first, SMALL_BLOCK_ROWS):
            if state == "missing":
                raise _Mismatch(f"transcript row {pk} is missing, but {by} sealed it")
            if state == "inserted":
                raise _Mismatch(f"transcript row {pk}: was not there when {by} sealed the rows around it (inserted since)")
            raise _Mismatch(f"transcript row {pk}: differs from what {by} sealed")
        raise _Mismatch(f"transcript rows {first}-{last}: they or their seal_blocks rows were altered; they do not match what {by} sealed")
    low, high = conn.execute("SELECT min(id), max(id) FROM transcript").fetchone()
    if low is not None and low <= covered_last and (first_cover is None or low < first_cover):
        raise _Mismatch(f"transcript row {low}: in no seal (inserted outside the product)")
    if high is not None and high > covered_last:
        tail = conn.execute("SELECT min(id) FROM transcript WHERE id > ?", (covered_last,)).fetchone()[0]
        check.notes.append(
            f"transcript rows {tail}-{high} are not sealed yet (written by a summary that did not finish); the next run or summary seals them"
        )


def _check_digest_state(conn, units: Sequence[_Unit]) -> None:
    if not units:
        return
    last = max(units, key=lambda u: u.event.id)
    now = [v for (v,) in conn.execute("SELECT legacy_max_transaction_id FROM digest_state")]
    if now != last.seal.get("digest_state", now):
        raise _Mismatch(f"digest_state row 1: legacy_max_transaction_id differs from what {last.by} recorded")
