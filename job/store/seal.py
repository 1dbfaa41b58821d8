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
  35 ms per column per million rows, so a run's lines hold only the columns nothing else
  seals (`OWN_COLUMNS`: transaction id, vendor name, memo, account, line, flags, note,
  status, request, item number; the id is the line's place in its block). The others are
  held by rows sealed here too, and `audit verify` checks every row against them: the date,
  currency, amount and vendor key against the run's payment digests, the source, ledger
  file and run against its ledger files' id ranges. A seal whose run lacks complete digests
  or ranges (and the upgrade's seal) holds all eighteen columns; each seal names the
  columns it holds.
- the `vendors` first seen in the run and its `payment_digests`: the same, in key order.
- the agent `transcript` rows written since the last seal: the same, by id.
- the `runs` row (with the policy fingerprint), its `ledger_files` rows, its `requests` row
  and the request's `request_tokens`: their values themselves, in the event (long texts by
  their SHA-256), so that `audit verify` names the column that changed.

Some of these change later, and only through events: a transaction's status by decision
events (each says which status it changed, `from`), a request's status, closing time,
reminder, escalation, expiry and summary by the events that set them, its reply tokens by
reminder and escalation events (each lists the request's whole set). `sealcheck.verify_seals` replays
those events over the sealed values, so a row must be exactly what its seal and the later
events say. Nothing is ever sealed again. A database upgraded from before seals existed
gets one seal of everything it holds, at the upgrade (`seal_existing`), which says so.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sys
import zlib
from array import array
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

__all__ = [
    "BLOCK_ROWS",
    "BY_DIGESTS",
    "BY_FILES",
    "LONG_TEXT",
    "OWN_COLUMNS",
    "SMALL_BLOCK_ROWS",
    "TRANSACTION_COLUMNS",
    "TRANSCRIPT_COLUMNS",
    "TRANSCRIPT_SQL",
    "chain",
    "cover_transcript",
    "digest_lines",
    "id_range_blocks",
    "last_key",
    "line_blocks",
    "literal",
    "request_tokens",
    "row_json",
    "seal_existing",
    "seal_run",
    "text_digest",
    "transaction_sql",
    "uint32s",
    "vendor_lines",
]

SCHEME = 1
BLOCK_ROWS = 4096  # transaction ids and vendors per block
SMALL_BLOCK_ROWS = 256  # transcript ids (long texts) and digest rows per block

TRANSACTION_COLUMNS = (
    "id",
    "source",
    "txn_id",
    "version",
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


def uint32s(values: Iterable[int] | bytes) -> array:
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
    values = uint32s(map(zlib.adler32, data.split(b"\n"))) if data else array("I")
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


def chain(part: str, owner: int, links: Iterable[tuple[str, bytes]]) -> str:
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
        [(part, owner, n, b.rows, last_key(ids, n), b.sha256, b.sums) for n, b in enumerate(blocks)],
    )
    return {
        **extra,
        "owner": owner,
        "rows": sum(b.rows for b in blocks),
        "blocks": len(blocks),
        "sha256": chain(part, owner, [(b.sha256, b.sums) for b in blocks]),
    }


def last_key(ids: tuple[int, int, int] | None, block: int) -> int | None:
    return None if ids is None else min(ids[0] + (block + 1) * ids[2] - 1, ids[1])


def id_range_blocks(conn, sql: str, first: int, last: int, size: int) -> Iterator[tuple[int, bytes]]:
    """(rows, text as UTF-8) per block of `size` ids from `first` to `last`."""
    for start in range(first, last + 1, size):
        rows, text = conn.execute(sql, (start, min(start + size - 1, last))).fetchone()
        yield rows, text or b""


def line_blocks(lines: Sequence[str], size: int) -> Iterator[tuple[int, bytes]]:
    for start in range(0, len(lines), size):
        chunk = lines[start : start + size]
        yield len(chunk), "\n".join(chunk).encode("utf-8")


def row_json(columns: Sequence[str], status: str = "t.status") -> str:
    return "json_array(" + ", ".join(status if c == "status" else f"t.{c}" for c in columns) + ")"


def transaction_sql(columns: Sequence[str], *, replayed: bool) -> str:
    """One block of transactions: its rows and its text. `replayed` takes each status from
    `temp.audit_sealed_status` when it has the row (its status when sealed, before the
    decisions recorded since)."""
    status = "coalesce(s.status, t.status)" if replayed else "t.status"
    join = " LEFT JOIN temp.audit_sealed_status s ON s.id = t.id" if replayed else ""
    text = f"CAST(group_concat({row_json(columns, status)}, char(10)) AS BLOB)"
    return f"SELECT count(*), {text} FROM transactions t{join} WHERE t.id BETWEEN ? AND ?"


TRANSCRIPT_COLUMNS = ("id", "stream_id", "at", "type", "body")
TRANSCRIPT_SQL = (
    "SELECT count(*), CAST(group_concat(json_array(id, stream_id, at, type, body), char(10)) AS BLOB) FROM transcript"
    " WHERE id BETWEEN ? AND ?"
)


def vendor_lines(conn, first_run: int, last_run: int, existing: bool) -> list[str]:
    where = "first_run_id BETWEEN ? AND ?" + (" OR first_run_id IS NULL" if existing else "")
    sql = f"SELECT json_array(vendor_key, name, first_run_id) FROM vendors WHERE {where} ORDER BY vendor_key"
    return [line for (line,) in conn.execute(sql, (first_run, last_run))]


def digest_lines(conn, first_run: int, last_run: int) -> list[str]:
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
    return [literal(table, dict(zip(names, row))) for row in cursor]


def literal(table: str, row: dict) -> dict:
    """A row as a seal keeps it: long texts and blobs by their SHA-256, the unsealed left out."""
    out = {}
    for name, value in row.items():
        if table == "requests" and name in REQUEST_UNSEALED:
            continue
        if name in LONG_TEXT.get(table, ()):
            out[f"{name}_sha256"] = text_digest(value)
        elif isinstance(value, bytes):
            out[name] = _blob_digest(value)
        else:
            out[name] = value
    return out


def text_digest(value: Any) -> str | None:
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
    blocks = _hash_blocks(id_range_blocks(conn, TRANSCRIPT_SQL, first, last, SMALL_BLOCK_ROWS))
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
        blocks = _hash_blocks(id_range_blocks(conn, transaction_sql(columns, replayed=False), first, last, BLOCK_ROWS))
        found = sum(b.rows for b in blocks)
        if found != expected or (not existing and found != last - first + 1):
            raise RuntimeError(f"run {first_run}: {found} transactions in ids {first}-{last}, but its ledger files record {expected}")
        seal["transactions"] = _record_blocks(
            conn, "transactions", first_run, blocks, ids=(first, last, BLOCK_ROWS), first_id=first, last_id=last, columns=list(columns)
        )
    vendors = _hash_blocks(line_blocks(vendor_lines(conn, first_run, last_run, existing), BLOCK_ROWS))
    seal["vendors"] = _record_blocks(conn, "vendors", first_run, vendors)
    digests = _hash_blocks(line_blocks(digest_lines(conn, first_run, last_run), SMALL_BLOCK_ROWS))
    seal["payment_digests"] = _record_blocks(conn, "payment_digests", first_run, digests)
    seal["transcript"] = cover_transcript(conn)
    seal["digest_state"] = [v for (v,) in conn.execute("SELECT legacy_max_transaction_id FROM digest_state")]
    return seal
