"""Recording a run's new rows: every row once, with its screening and review outcome.

One INSERT per block, in id order from the run's first id, so SQLite only ever appends;
per block, `executemany` of tuples zipped from column lists, a slice of `WRITE_BATCH` rows
at a time. The values every row of a block shares are literals in the statement; a flagged
row's flags, note and item number are one packed value (`packed_outcomes`), 0 for a clean
row. The cyclic garbage collector is paused meanwhile: a million short-lived tuples would
otherwise trigger it thousands of times.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import NamedTuple

import polars as pl

from job.faults import crash_point
from job.ledger.batch import Batch
from job.screening.flagged import CHUNK, FlaggedFrame
from job.screening.screen_frame import Compact

__all__ = ["Outcomes", "packed_outcomes", "insert_rows", "insert_statement", "record_vendors", "WRITE_BATCH"]

WRITE_BATCH = 100_000  # rows turned into Python values at a time
# what json.dumps writes unchanged between quotes: printable ASCII but the quote and the backslash
_PLAIN_JSON = r"^[ !#-\[\]-~]*$"


class Outcomes(NamedTuple):
    """The flagged rows' outcome for `insert_rows`: their status and request (the same for
    all), and (id, packed outcome) per row in id order (`packed_outcomes`)."""

    status: str
    request_id: str | None
    packed: Iterator[tuple[int, str]]


def packed_outcomes(flagged: FlaggedFrame, status: str, request_id: str | None, next_pk: int) -> Outcomes:
    """What `insert_rows` writes for the flagged rows beyond their ledger columns, when the
    run's rows get ids from `next_pk` on."""
    return Outcomes(status, request_id, _packed(flagged, request_id, next_pk))


def _packed(flagged: FlaggedFrame, request_id: str | None, next_pk: int) -> Iterator[tuple[int, str]]:
    """(id, packed outcome) per flagged row, in the order of the ids, made a chunk at a
    time: the outcome is a JSON object of the row's flags JSON ("f"), note ("n") and item
    number ("i", null without a request), which `insert_rows` unpacks in SQL.

    The flags JSON is what `json.dumps` makes of `FlaggedFrame.flags_of`, built by polars when every text in it is plain ASCII that JSON keeps as it is, and
    by `json.dumps` otherwise (text with quotes, backslashes or other characters, and
    rows with an agent concern).
    """
    rank = flagged.order.arg_sort() + 1  # the item number of each row
    note = flagged.note_column()
    plain = (
        pl.col("codes").list.eval(pl.element().str.contains(_PLAIN_JSON).all()).list.first()
        & pl.col("reasons").list.eval(pl.element().str.contains(_PLAIN_JSON).all()).list.first()
    )
    if flagged.concerns:
        plain = plain & ~pl.col("txn_id").is_in(list(flagged.concerns))
    item = pl.col("rank") if request_id else pl.lit(None, pl.UInt32)
    narrow = flagged.items.select("pos", "txn_id", "codes", "reasons").with_columns(rank=rank)
    for start in range(0, flagged.count, CHUNK):
        chunk = narrow.slice(start, CHUNK).with_columns(plain=plain, note=note)
        entries = (
            chunk.select("pos", "codes", "reasons")
            .explode(["codes", "reasons"])
            .select(
                "pos",
                entry=pl.lit('{"code": "') + pl.col("codes") + pl.lit('", "reason": "') + pl.col("reasons") + pl.lit('", "by": "rules"}'),
            )
        )
        flags = entries.group_by("pos", maintain_order=True).agg(json=pl.lit("[") + pl.col("entry").str.join(", ") + pl.lit("]"))
        chunk = chunk.join(flags, on="pos", how="left", maintain_order="left").with_columns(
            packed=pl.when("plain").then(pl.struct(f="json", n="note", i=item).struct.json_encode())
        )
        for pos, t, codes, reasons, rank, text, packed in chunk.select(
            "pos", "txn_id", "codes", "reasons", "rank", "note", "packed"
        ).iter_rows():
            if packed is None:
                packed = json.dumps({"f": json.dumps(flagged.flags_of(t, codes, reasons)), "n": text, "i": rank if request_id else None})
            yield next_pk + pos, packed


def insert_rows(
    conn,
    batch: Batch,
    compact: Compact,
    *,
    run_id: int,
    source: str,
    file_ids: Sequence[int],
    next_pk: int,
    outcomes: Outcomes,
    versions: Mapping[int, int] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Insert every new row, in id order from `next_pk`: the flagged ones with their
    `outcomes`, the others clean and auto-approved. `versions`: the version of each row
    that amends a known transaction, by position in the run (the others are version 1).

    Every row goes through one statement in id order, so SQLite only ever appends. (Rows
    inserted into gaps left between rows already written split nearly every page: that
    cost more than the flagged rows' values.) A row's outcome is one bound value: 0 for a
    clean row, its packed outcome for a flagged one.
    """
    key_of = {name: compact.key_list[code] for name, code in compact.vendor_code.items()}
    pending = iter(outcomes.packed)
    upcoming = next(pending, None)
    done = 0
    enabled = gc.isenabled()
    gc.disable()
    # The status CHECK is an IN list, which SQLite evaluates by building a small table for
    # every row inserted: 1.8 s per million rows, more than the insert itself. The statuses
    # written here are constants ('auto_approved', 'pending' or 'held'), so the check is
    # skipped for these rows.
    conn.execute("PRAGMA ignore_check_constraints = ON")
    try:
        for (_ledger, blocks), file_id in zip(batch.parts, file_ids):
            for block in blocks:
                frame = block.load()
                first_id = next_pk + done
                mine = {pos - done: v for pos, v in (versions or {}).items() if done <= pos < done + frame.height}
                if mine:
                    frame = frame.with_columns(version=pl.Series([mine.get(n, 1) for n in range(frame.height)], dtype=pl.Int64))
                sql, names = insert_statement(frame, source=source, file_id=file_id, run_id=run_id, first_id=first_id, outcomes=outcomes)
                for start in range(0, frame.height, WRITE_BATCH):
                    piece = frame.slice(start, WRITE_BATCH)
                    low = first_id + start
                    high = low + piece.height
                    outcome: list = [0] * piece.height
                    while upcoming is not None and upcoming[0] < high:
                        outcome[upcoming[0] - low] = upcoming[1]
                        upcoming = next(pending, None)
                    columns = _columns(piece, names, key_of)
                    conn.executemany(sql, zip(range(low, high), *columns, outcome))
                    crash_point("run:inserting")
                    if progress is not None:
                        progress(done + start + piece.height, batch.count)
                done += frame.height
                del frame
    finally:
        conn.execute("PRAGMA ignore_check_constraints = OFF")
        if enabled:
            gc.enable()


def record_vendors(conn, batch: Batch, compact: Compact, *, run_id: int) -> None:
    """The run's vendors not recorded before, each by the first name seen for its key."""
    key_of = {name: compact.key_list[code] for name, code in compact.vendor_code.items()}
    names: dict[str, str] = {}
    for name in batch.vendor_names():
        names.setdefault(key_of[name], name)
    conn.executemany(
        "INSERT OR IGNORE INTO vendors (vendor_key, name, first_run_id) VALUES (?,?,?)",
        [(key, name, run_id) for key, name in names.items()],
    )


def insert_statement(
    part: pl.DataFrame, *, source: str, file_id: int, run_id: int, first_id: int, outcomes: Outcomes
) -> tuple[str, list[str]]:
    """The INSERT for one block's rows, and the columns it binds between the id (?1) and the
    outcome (the last: 0 for a clean row, else the packed outcome of `packed_outcomes`).

    Binding a value costs more than SQLite spends storing it, so what every row of the
    block shares is a literal: the source, file, run and the flagged rows' status and
    request always; the date and currency when the block has only one; and the line, as an
    expression of the id, when the lines follow the rows one to one.
    """
    literal: dict[str, str] = {"source": _literal(source), "ledger_file_id": str(int(file_id)), "run_id": str(int(run_id))}
    if "version" not in part.columns:
        literal["version"] = "1"
    for name in ("date", "currency"):
        if part.height and part[name].n_unique() == 1:
            value = part[name][0]
            literal[name] = _literal(value.isoformat() if name == "date" else value)
    if part.height and (part["line"] - pl.int_range(0, part.height, eager=True)).n_unique() == 1:
        literal["line"] = f"?1 - {first_id - int(part['line'][0])}"
    order = (
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
    )
    names = [n for n in order if n not in literal]
    slots = {name: f"?{n}" for n, name in enumerate(names, 2)}
    packed = f"?{len(names) + 2}"

    def outcome(clean: str, flagged: str) -> str:
        return f"CASE WHEN {packed} = 0 THEN {clean} ELSE {flagged} END"

    request = _literal(outcomes.request_id) if outcomes.request_id else "NULL"
    values = ", ".join(
        [
            "?1",
            *(literal.get(n) or slots[n] for n in order),
            outcome("'[]'", f"json_extract({packed}, '$.f')"),
            outcome("''", f"json_extract({packed}, '$.n')"),
            outcome("'auto_approved'", _literal(outcomes.status)),
            outcome("NULL", request),
            outcome("NULL", f"json_extract({packed}, '$.i')"),
        ]
    )
    sql = (
        "INSERT INTO transactions (id, source, txn_id, version, date, amount_minor, currency, vendor, vendor_key, memo, account,"
        f" ledger_file_id, line, run_id, flags, agent_note, status, request_id, item_no) VALUES ({values})"
    )
    return sql, names


def _columns(frame: pl.DataFrame, names: Sequence[str], key_of: dict[str, str]) -> list[list]:
    """`frame`'s values for `names` as lists (dates as ISO text; `vendor_key` from `key_of`)."""
    read = [n for n in names if n != "vendor_key"]
    columns = frame.select(pl.col("date").dt.to_string("%Y-%m-%d") if n == "date" else pl.col(n) for n in read)
    values = {name: column.to_list() for name, column in zip(read, columns.get_columns())}
    if "vendor_key" in names:
        values["vendor_key"] = [key_of[v] for v in values["vendor"]]
    return [values[name] for name in names]


def _literal(text: str) -> str:
    """A SQL string literal (SQLite has no backslash escapes: only the quote is doubled)."""
    return "'" + text.replace("'", "''") + "'"
