"""Seals: every fact a run records, hashed inside that run's transaction and checked by `audit verify`.

The hash chain (`auditlog`) proves the events; a seal proves the rows the events speak of.
`seal_run` is called once, inside the run's transaction, after everything the run writes is
written. It reads the run's rows back from the database (whatever wrote them) and returns
the seal, which the run records as its `sealed` event, in the chain:

- `transactions`: the run's ids, read back in id order in blocks of `BLOCK_ROWS` ids, each
  row as SQLite's `json_array` of its columns, one line per row, in id order. Each block's
  text is hashed (SHA-256) together with an Adler-32 checksum of each of its lines; the
  block hashes are chained per run and the chain's end is in the event. `seal_blocks` keeps
  each block's hash and line checksums, so a block that no longer matches names its row (the
  checksums only point the way; the SHA-256 chain decides). Building that text costs about
  40 ms per column per million rows, so a run's lines hold only the columns nothing else
  seals (`OWN_COLUMNS`: transaction id, vendor name, memo, account, line, flags, note, status,
  request, item number; the id is the line's place in its block); the others
  are sealed twice over already and `audit verify` checks every row against them: the date,
  currency, amount and vendor key against the run's payment digests (sealed here, by id), the
  source, ledger file and run against its ledger files' id ranges (sealed here, by value).
  A seal whose run lacks complete digests or ranges (and the upgrade's seal) holds all
  eighteen columns; each seal names the columns it holds.
- the `vendors` first seen in the run and its `payment_digests`: the same, in key order.
- the agent `transcript` rows written since the last seal: the same, by id.
- the `runs` row (with the policy fingerprint), its `ledger_files` rows, its `requests` row
  and the request's `request_tokens`: their values themselves, in the event (long texts by
  their SHA-256), so that `audit verify` names the column that changed.

Some of these change later, and only through events: a transaction's status by decision
events (each says which status it changed, `from`), a request's status, closing time,
reminder, escalation, expiry and summary by the events that set them, its reply tokens by
reminder and escalation events (each lists the request's whole set). `verify_seals` replays
those events over the sealed values, so a row must be exactly what its seal and the later
events say. Nothing is ever sealed again. A database upgraded from before seals existed
gets one seal of everything it holds, at the upgrade (`seal_existing`), which says so.
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
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple

__all__ = [
    "BLOCK_ROWS",
    "LogEvent",
    "SealCheck",
    "cover_transcript",
    "request_tokens",
    "seal_existing",
    "seal_run",
    "verify_seals",
]

SCHEME = 1
BLOCK_ROWS = 4096  # transaction ids and vendors per block
SMALL_BLOCK_ROWS = 256  # transcript ids (long texts) and digest rows per block

TRANSACTION_COLUMNS = (
    "id",
    "source",
    "txn_id",
    "date",
    "amount_minor",
    "currency",
    "vendor",
    "vendor_key",
    "memo",
    "account",
    "ledger_file_id",
    "line",
    "run_id",
    "flags",
    "agent_note",
    "status",
    "request_id",
    "item_no",
)
BY_DIGESTS = ("date", "currency", "amount_minor", "vendor_key")  # in the run's payment digests, per id
BY_FILES = ("source", "ledger_file_id", "run_id")  # given by the run's ledger files' id ranges
OWN_COLUMNS = tuple(c for c in TRANSACTION_COLUMNS if c not in ("id", *BY_DIGESTS, *BY_FILES))
STATUSES = ("auto_approved", "pending", "held", "approved", "rejected", "expired")
# long texts are sealed by their SHA-256 (as "<column>_sha256"), the rest by value
LONG_TEXT = {"runs": ("review_summary",), "requests": ("question", "summary")}
# requests.created_at is the reminders' clock, not a fact (the request's time of record is its
# event's): tests and operators may move it
REQUEST_UNSEALED = ("created_at",)


# ------------------------------------------------------------------------------- sealing


class Block(NamedTuple):
    rows: int
    sha256: str  # of the block's text
    sums: bytes  # the Adler-32 checksum of each line, little-endian uint32


def _uint32s(values: Iterable[int] | bytes) -> array:
    found = array("I")
    if isinstance(values, bytes):
        found.frombytes(values)
        if sys.byteorder != "little":
            found.byteswap()
        return found
    found.extend(values)
    return found


def _line_sums(data: bytes) -> bytes:
    """Each line's Adler-32 checksum (a pointer to the line that changed, not a proof: a tenth
    of the cost of a CRC here, where splitting the lines costs most)."""
    values = _uint32s(map(zlib.adler32, data.split(b"\n"))) if data else array("I")
    if sys.byteorder != "little":
        values.byteswap()
    return values.tobytes()


def _hash_block(rows: int, data: bytes) -> Block:
    return Block(rows, hashlib.sha256(data).hexdigest(), _line_sums(data))


def _hash_blocks(texts: Iterable[tuple[int, bytes]]) -> list[Block]:
    """Hash each (rows, text) block on a helper thread while the next one is read: SQLite
    builds a block's text without holding the interpreter, and hashlib hashes without it."""
    blocks: list[Block] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-seal") as pool:
        pending: list = []
        for rows, text in texts:
            pending.append(pool.submit(_hash_block, rows, text))
            if len(pending) > 2:
                blocks.append(pending.pop(0).result())
        blocks.extend(f.result() for f in pending)
    return blocks


def _chain(part: str, owner: int, links: Iterable[tuple[str, bytes]]) -> str:
    """One part of one seal: h = SHA-256(h + block hash + SHA-256(line checksums)) over its blocks."""
    h = hashlib.sha256(f"{part} {owner}".encode()).digest()
    for digest, sums in links:
        h = hashlib.sha256(h + bytes.fromhex(digest) + hashlib.sha256(sums).digest()).digest()
    return h.hex()


def _record_blocks(conn, part: str, owner: int, blocks: Sequence[Block], *, ids: tuple[int, int, int] | None = None, **extra: Any) -> dict:
    """Keep the blocks' hashes and line checksums in `seal_blocks`; return the part's seal. `ids`:
    (first id, last id, ids per block) when the blocks are ranges of ids."""
    conn.executemany(
        "INSERT INTO seal_blocks (part, owner, block, rows, last_key, sha256, row_sums) VALUES (?,?,?,?,?,?,?)",
        [(part, owner, n, b.rows, _last_key(ids, n), b.sha256, b.sums) for n, b in enumerate(blocks)],
    )
    return {
        **extra,
        "owner": owner,
        "rows": sum(b.rows for b in blocks),
        "blocks": len(blocks),
        "sha256": _chain(part, owner, [(b.sha256, b.sums) for b in blocks]),
    }


def _last_key(ids: tuple[int, int, int] | None, block: int) -> int | None:
    return None if ids is None else min(ids[0] + (block + 1) * ids[2] - 1, ids[1])


def _id_range_rows(conn, sql: str, first: int, last: int, size: int) -> Iterator[tuple[int, bytes]]:
    """(rows, text as UTF-8) per block of `size` ids from `first` to `last`."""
    for start in range(first, last + 1, size):
        rows, text = conn.execute(sql, (start, min(start + size - 1, last))).fetchone()
        yield rows, text or b""


def _line_blocks(lines: Sequence[str], size: int) -> Iterator[tuple[int, bytes]]:
    for start in range(0, len(lines), size):
        chunk = lines[start : start + size]
        yield len(chunk), "\n".join(chunk).encode("utf-8")


def _row_json(columns: Sequence[str], status: str = "t.status") -> str:
    return "json_array(" + ", ".join(status if c == "status" else f"t.{c}" for c in columns) + ")"


def _transaction_sql(columns: Sequence[str], *, replayed: bool) -> str:
    """One block of transactions: its rows and its text. `replayed` takes each status from
    `temp.audit_sealed_status` when it has the row (its status when sealed, before the
    decisions recorded since)."""
    status = "coalesce(s.status, t.status)" if replayed else "t.status"
    join = " LEFT JOIN temp.audit_sealed_status s ON s.id = t.id" if replayed else ""
    text = f"CAST(group_concat({_row_json(columns, status)}, char(10)) AS BLOB)"
    return f"SELECT count(*), {text} FROM transactions t{join} WHERE t.id BETWEEN ? AND ?"


TRANSCRIPT_COLUMNS = ("id", "stream_id", "at", "type", "body")
TRANSCRIPT_SQL = (
    "SELECT count(*), CAST(group_concat(json_array(id, stream_id, at, type, body), char(10)) AS BLOB) FROM transcript"
    " WHERE id BETWEEN ? AND ?"
)


def _vendor_lines(conn, first_run: int, last_run: int, existing: bool) -> list[str]:
    where = "first_run_id BETWEEN ? AND ?" + (" OR first_run_id IS NULL" if existing else "")
    sql = f"SELECT json_array(vendor_key, name, first_run_id) FROM vendors WHERE {where} ORDER BY vendor_key"
    return [line for (line,) in conn.execute(sql, (first_run, last_run))]


def _digest_lines(conn, first_run: int, last_run: int) -> list[str]:
    return [
        json.dumps([_blob_digest(v) if isinstance(v, bytes) else v for v in row], ensure_ascii=False)
        for row in conn.execute(
            "SELECT run_id, date, currency, part, payments, vendor_hashes, amounts, transaction_ids FROM payment_digests"
            " WHERE run_id BETWEEN ? AND ? ORDER BY run_id, date, currency, part",
            (first_run, last_run),
        )
    ]


def _blob_digest(value: bytes) -> str:
    return "sha256:" + hashlib.sha256(value).hexdigest()


def _literal_rows(conn, table: str, where: str, args: Sequence) -> list[dict]:
    cursor = conn.execute(f"SELECT * FROM {table} WHERE {where} ORDER BY rowid", args)
    names = [d[0] for d in cursor.description]
    return [_literal(table, dict(zip(names, row))) for row in cursor]


def _literal(table: str, row: dict) -> dict:
    """A row as a seal keeps it: long texts and blobs by their SHA-256, the unsealed left out."""
    out = {}
    for name, value in row.items():
        if table == "requests" and name in REQUEST_UNSEALED:
            continue
        if name in LONG_TEXT.get(table, ()):
            out[f"{name}_sha256"] = _text_digest(value)
        elif isinstance(value, bytes):
            out[name] = _blob_digest(value)
        else:
            out[name] = value
    return out


def _text_digest(value: Any) -> str | None:
    return None if value is None else hashlib.sha256(str(value).encode("utf-8")).hexdigest()


def request_tokens(conn, request_id: str) -> list[list[str]]:
    """A request's reply tokens as [token hash, approver], sorted: what its events record."""
    sql = "SELECT token_hash, approver FROM request_tokens WHERE request_id = ? ORDER BY token_hash"
    return [list(row) for row in conn.execute(sql, (request_id,))]


def _transcript_mark(conn) -> int:
    """The last transcript id sealed so far (0: none yet), from the last transcript block."""
    row = conn.execute("SELECT last_key FROM seal_blocks WHERE part = 'transcript' ORDER BY owner DESC, block DESC LIMIT 1").fetchone()
    return row[0] if row else 0


def cover_transcript(conn) -> dict | None:
    """Seal the transcript rows written since the last seal or summary (inside the caller's
    transaction); the result goes in the caller's event (a run's `sealed`, a poll's `summary`)."""
    first = _transcript_mark(conn) + 1
    last = conn.execute("SELECT max(id) FROM transcript").fetchone()[0]
    if last is None or last < first:
        return None
    blocks = _hash_blocks(_id_range_rows(conn, TRANSCRIPT_SQL, first, last, SMALL_BLOCK_ROWS))
    return _record_blocks(conn, "transcript", first, blocks, ids=(first, last, SMALL_BLOCK_ROWS), first_id=first, last_id=last)


def _sealed_elsewhere(conn, files: Sequence[dict], run_id: int, first: int, last: int, rows: int) -> bool:
    """Whether the run's payment digests hold every one of its rows once, and its ledger
    files' id ranges tile its ids: then those columns are sealed through them."""
    ranges = sorted((f["first_transaction_id"], f["last_transaction_id"]) for f in files if f["first_transaction_id"] is not None)
    tiled = bool(ranges) and ranges[0][0] == first and ranges[-1][1] == last
    tiled = tiled and all(b[0] == a[1] + 1 for a, b in itertools.pairwise(ranges))
    digested = conn.execute("SELECT coalesce(sum(payments), 0) FROM payment_digests WHERE run_id = ?", (run_id,)).fetchone()[0]
    return tiled and digested == rows


def seal_run(conn, run_id: int) -> dict:
    """Seal everything run `run_id` recorded (inside its transaction, after its last write);
    returns the seal, for the run's `sealed` event."""
    first, last, rows = conn.execute(
        "SELECT min(first_transaction_id), max(last_transaction_id), coalesce(sum(new_rows), 0) FROM ledger_files WHERE run_id = ?",
        (run_id,),
    ).fetchone()
    return _seal(conn, run_id, run_id, (first, last, rows) if rows else None)


def seal_existing(conn, migration: int) -> dict | None:
    """Seal everything a database upgraded from before seals holds, as it stands (at
    migration `migration`); None when it holds no run yet."""
    low, high = conn.execute("SELECT min(id), max(id) FROM runs").fetchone()
    if low is None:
        return None
    first, last, rows = conn.execute("SELECT min(id), max(id), count(*) FROM transactions").fetchone()
    seal = _seal(conn, low, high, (first, last, rows) if rows else None, existing=True)
    seal["at_migration"] = migration
    return seal


def _seal(conn, first_run: int, last_run: int, ids: tuple[int, int, int] | None, *, existing: bool = False) -> dict:
    runs = (first_run, last_run)
    seal: dict[str, Any] = {"scheme": SCHEME, "runs": list(runs)}
    seal["runs_rows"] = _literal_rows(conn, "runs", "id BETWEEN ? AND ?", runs)
    seal["ledger_files"] = _literal_rows(conn, "ledger_files", "run_id BETWEEN ? AND ?", runs)
    seal["requests"] = _literal_rows(conn, "requests", "run_id BETWEEN ? AND ?", runs)
    seal["request_tokens"] = {r["id"]: request_tokens(conn, r["id"]) for r in seal["requests"]}
    seal["transactions"] = None
    if ids is not None:
        first, last, expected = ids
        own = not existing and _sealed_elsewhere(conn, seal["ledger_files"], first_run, first, last, expected)
        columns = OWN_COLUMNS if own else TRANSACTION_COLUMNS
        blocks = _hash_blocks(_id_range_rows(conn, _transaction_sql(columns, replayed=False), first, last, BLOCK_ROWS))
        found = sum(b.rows for b in blocks)
        if found != expected or (not existing and found != last - first + 1):
            raise RuntimeError(f"run {first_run}: {found} transactions in ids {first}-{last}, but its ledger files record {expected}")
        seal["transactions"] = _record_blocks(
            conn, "transactions", first_run, blocks, ids=(first, last, BLOCK_ROWS), first_id=first, last_id=last, columns=list(columns)
        )
    vendors = _hash_blocks(_line_blocks(_vendor_lines(conn, first_run, last_run, existing), BLOCK_ROWS))
    seal["vendors"] = _record_blocks(conn, "vendors", first_run, vendors)
    digests = _hash_blocks(_line_blocks(_digest_lines(conn, first_run, last_run), SMALL_BLOCK_ROWS))
    seal["payment_digests"] = _record_blocks(conn, "payment_digests", first_run, digests)
    seal["transcript"] = cover_transcript(conn)
    seal["digest_state"] = [v for (v,) in conn.execute("SELECT legacy_max_transaction_id FROM digest_state")]
    return seal


# ------------------------------------------------------------------------------- checking


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
        row = _literal(table, dict(zip(names, values)))
        unit, expected = sealed.pop(row["id"], (None, None))
        if unit is None:
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
        if e.kind in ("request_closed", "expired"):
            expected["status"] = "closed"
            expected["closed_at"] = d.get("closed_at", ANY)
            if e.kind == "expired":
                expected["expired_at"] = d.get("closed_at", ANY)
        elif e.kind in ("reminded", "escalated"):
            expected[f"{e.kind}_at"] = d.get("at", ANY)
        else:
            expected["summary_sha256"] = _text_digest(d.get("summary") or "(no summary)")
    _check_literal(conn, "requests", sealed, " and the audit log says since")


def _check_tokens(conn, units: Sequence[_Unit], events: Sequence[LogEvent]) -> None:
    """Reply tokens: a request's are those its seal holds, or those its last reminder or
    escalation event lists (each lists the request's whole set)."""
    expected: dict[str, tuple[str, set[tuple[str, str]]]] = {}
    for u in units:
        for request_id, pairs in u.seal["request_tokens"].items():
            expected[request_id] = (f"{u.by} recorded", {tuple(p) for p in pairs})
    for e in events:
        if e.kind in ("reminded", "escalated") and "tokens" in e.detail and e.request_id in expected:
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
    expiry's by the `expired` event of their request. A decision row and event added on
    their own name no such source."""
    if not units:
        return
    since = min(u.event.id for u in units)
    by_id = {e.id: e for e in events}
    group: list[LogEvent] = []
    for e in events:
        if e.kind != "decision" or e.id < since:
            continue
        group.append(e)
        after = by_id.get(e.id + 1)
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
    if _chain(table, part["owner"], links) != part["sha256"] or sum(r for r, _ in texts) != part["rows"]:
        return False
    size = SMALL_BLOCK_ROWS if table == "transcript" else BLOCK_ROWS
    ids = (part["first_id"], part["last_id"], size) if "first_id" in part else None
    for n, (block, rows, sha, _, last_key) in enumerate(stored):
        if block != n or n >= len(digests) or sha != digests[n] or rows != texts[n][0] or last_key != _last_key(ids, n):
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
        sums, start = _uint32s(blob), first_id + n * size
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
        return list(_id_range_rows(conn, sql, first, last, size))
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


def _replay_statuses(units: Sequence[_Unit], events: Sequence[LogEvent]) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """From the decision events: each decided row's status when sealed (what the first decision
    after its seal changed) and its status now (what the last decision made it)."""
    ranged = sorted((u.seal["transactions"]["first_id"], u.seal["transactions"]["last_id"], u) for u in units if u.seal["transactions"])
    starts = [r[0] for r in ranged]
    sealed_status: list[tuple[int, str]] = []
    last_status: list[tuple[int, str]] = []
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
    texts = _read(conn, _transaction_sql(columns, replayed=True), first, last, BLOCK_ROWS, "transactions")
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
    sums = _uint32s(stored[block][3]) if block < len(stored) else array("I")
    if position >= len(sums):
        return None
    for status in STATUSES:
        (line,) = conn.execute(
            f"SELECT CAST({_row_json(columns, '?')} AS BLOB) FROM transactions t WHERE t.id = ?", (status, pk)
        ).fetchone()
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
    amounts, hashes, days = array("q", [0]) * count, array("q", [0]) * count, {}
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
            lines = _vendor_lines(conn, u.first_run, u.last_run, u.existing)
        else:
            lines = _digest_lines(conn, u.first_run, u.last_run)
        texts = list(_line_blocks(lines, size))
        digests = [hashlib.sha256(text).hexdigest() for _, text in texts]
        stored = _stored_blocks(conn, table, part["owner"])
        if _blocks_match(table, part, texts, stored, digests):
            continue
        if len(lines) < part["rows"]:
            raise _Mismatch(_missing_ordered(conn, table, u, part["rows"] - len(lines)))
        sums = array("I")
        for _, _, _, blob, _ in stored:
            sums.extend(_uint32s(blob))
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
