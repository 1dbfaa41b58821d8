"""A run's stages for large ledgers, read column-wise: choose, look back, screen, record.

`run.run_audit` drives a run the same way whichever form the ledgers are in; this module
does what a run over `ingest_fast` blocks does differently from one over a list of
`Transaction`s, so the cost per row stays in polars and SQLite and memory stays bounded:
a ledger's rows stay in their blocks (in memory, or spilled to disk for very large runs)
and are read back one block at a time; the rules need only `screen_frame.Compact`; and the
flagged rows, which may be hundreds of thousands, are one frame (`FlaggedFrame`) that the
review, the request and the database read in chunks.

- `FrameBatch.select`: the rows not recorded yet. Ids are probed in SQLite only when they
  fall between the smallest and largest id already recorded for the source (two index
  lookups), so a night of new sequential ids costs nothing and a repeated export is found.
- `FrameBatch.look_back`: the compact columns of every row, and the earlier runs' payments
  the history rules need (candidates by a join against the window's digests), read before
  the run's transaction.
- `FrameBatch.screen`: the text rules block by block, the run-wide rules on the compact
  columns with those payments; no database.
- `FrameBatch.insert_rows` on the run's `db.Writer` thread inside its transaction: every
  row once, with ids assigned up front, per block one `executemany` of tuples zipped from
  column lists (the values every row shares are literals in the statement; a flagged
  row's flags, note and item number are one packed value). The cyclic garbage collector
  is paused meanwhile: a million short-lived tuples would otherwise trigger it thousands
  of times.
- `FrameBatch.digests`, made by polars on the main thread while the rows go in (or first,
  for runs over `DIGESTS_ALONGSIDE_MAX` rows, to free the compact columns before the long
  insert), then `write_extras`: the digests and the new vendors.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import polars as pl

from job.approval.request import RequestItem, items_attachment
from job.config import Policy
from job.faults import crash_point
from job.ledger.ingest import format_amount
from job.ledger.ingest_fast import Block, FrameLedger
from job.run import _existing, unseen_ledgers
from job.screening.history import DigestPart, make_digests, write_digests
from job.screening.screen import PastPayment
from job.screening.screen_frame import Compact, combine, row_hits, rule_hits

__all__ = ["FrameBatch", "FlaggedFrame", "WRITE_BATCH"]

WRITE_BATCH = 100_000  # rows turned into Python values at a time
DIGESTS_ALONGSIDE_MAX = 2_000_000  # see FrameBatch.digests_first
CHUNK = 50_000  # flagged rows turned into Python values at a time
LOOKUP_CHUNK = 500
_DETAILS = ["txn_id", "date", "amount_minor", "currency", "vendor", "memo"]


class FrameBatch:
    """The new rows of a run: per chosen ledger, its blocks of rows not recorded before."""

    def __init__(self, parts: list[tuple[FrameLedger, list[Block]]]) -> None:
        self.parts = parts
        self.count = sum(b.rows for _, blocks in parts for b in blocks)
        # Up to this size the digests are made on the run's main thread while the rows go
        # in (the compact rows they come from, about 25 bytes a row, stay meanwhile); above
        # it, before the insert, so that memory is freed first.
        self.digests_first = self.count > DIGESTS_ALONGSIDE_MAX
        self.compact: Compact | None = None
        self._names: list[str] | None = None

    def blocks(self) -> Iterator[tuple[int, Block]]:
        """(position of its first row in the run, block), in order."""
        offset = 0
        for _, blocks in self.parts:
            for block in blocks:
                yield offset, block
                offset += block.rows

    def gather(self, positions: Sequence[int] | pl.Series, columns: list[str], *, ascending: bool = False) -> pl.DataFrame:
        """Those rows' columns, in the order of `positions`, reading only the blocks they are in.
        With `ascending` positions the rows come out in block order and need no reordering."""
        wanted = pl.DataFrame({"pos": pl.Series(positions, dtype=pl.UInt32)}).with_row_index("order")
        pieces = []
        for offset, block in self.blocks():
            mine = wanted.filter(pl.col("pos").is_between(offset, offset + block.rows - 1))
            if mine.height:
                rows = block.load(columns)[(mine["pos"] - offset).to_list()]
                pieces.append(rows if ascending else rows.with_columns(order=mine["order"]))
        if not pieces:
            return pl.DataFrame(schema={c: _schema()[c] for c in columns})
        return pl.concat(pieces) if ascending else pl.concat(pieces).sort("order").drop("order")

    def _lookup(self, positions: list[int]) -> list[tuple[str, str]]:
        found = self.gather(positions, ["txn_id", "date"])
        return list(zip(found["txn_id"].to_list(), found["date"].dt.to_string("%Y-%m-%d").to_list()))

    # --- choosing the new rows --------------------------------------------------------

    @classmethod
    def select(cls, conn, source: str, ledgers: Sequence[FrameLedger]) -> tuple[FrameBatch, list[tuple[FrameLedger, int, bool]], list[str]]:
        """The rows not yet recorded (first occurrence wins), per ledger not yet imported.

        Returns the batch, (ledger, new rows, already imported) per ledger, and the ids a
        later export repeats with different data.
        """
        parts: list[tuple[FrameLedger, list[Block]]] = []
        outcomes: list[tuple[FrameLedger, int, bool]] = []
        changed: list[str] = []
        seen_ids: list[pl.Series] = []  # hashes of the ids chosen from earlier ledgers of this run
        low, high = conn.execute("SELECT MIN(txn_id), MAX(txn_id) FROM transactions WHERE source = ?", (source,)).fetchone()
        for ledger, skipped in unseen_ledgers(conn, ledgers):
            if skipped:
                outcomes.append((ledger, 0, True))
                continue
            earlier = pl.concat(seen_ids) if seen_ids else None
            kept: list[Block] = []
            new = 0
            for block in ledger.blocks:
                ids = block.load(["txn_id"])["txn_id"]
                recorded: set[str] = set()
                if low is not None:
                    recorded = _existing(
                        conn,
                        "SELECT txn_id FROM transactions WHERE source = ? AND txn_id IN ({marks})",
                        ids.filter(ids.is_between(pl.lit(low), pl.lit(high))).to_list(),
                        source,
                    )
                keep = ~ids.is_in(list(recorded)) if recorded else None
                if earlier is not None:
                    again = ids.hash(seed=0).is_in(earlier)
                    if again.any():  # confirm by text: a hash collision must not drop a row
                        before = _earlier_ids(parts, ids.filter(again).to_list())
                        repeat = ids.is_in(list(before))
                        keep = ~repeat if keep is None else keep & ~repeat
                if recorded:
                    changed += _changed(conn, source, block.load().filter(ids.is_in(list(recorded))))
                if keep is None or keep.all():
                    kept.append(block)
                    new += block.rows
                elif keep.any():
                    fresh = block.load().filter(keep)
                    kept.append(Block(fresh, block.path.with_suffix(".new.arrow") if block.path else None))
                    new += fresh.height
            seen_ids.extend(b.load(["txn_id"])["txn_id"].hash(seed=0) for b in kept)
            outcomes.append((ledger, new, False))
            parts.append((ledger, kept))
        return cls(parts), outcomes, changed

    def vendor_keys(self) -> set[str]:
        from job.screening.screen import normalize_vendor

        return {normalize_vendor(name) for name in self._vendor_names()}

    def _vendor_names(self) -> list[str]:
        """The distinct vendor names, in the order they first appear."""
        if self._names is None:
            names: dict[str, None] = {}
            for _, block in self.blocks():
                names.update(dict.fromkeys(block.load(["vendor"])["vendor"].unique(maintain_order=True).to_list()))
            self._names = list(names)
        return self._names

    # --- looking back and screening ---------------------------------------------------

    def make_compact(self) -> Compact:
        """The compact columns of every row (`screen_frame.Compact`), which the run-wide
        rules, the history lookup and the digests read."""
        compact = Compact()
        for offset, block in self.blocks():
            compact.add(block.load(["vendor", "currency", "amount_minor", "date"]), offset)
        compact.finish()
        self.compact = compact
        return compact

    def screen(self, policy: Policy, known: set[str], rules: Sequence = (), past: Sequence[PastPayment] = ()) -> FlaggedFrame:
        """Every rule over every row (after `make_compact`), with the earlier runs' payments
        `past` (`history.find_history`); the flagged rows, most important first."""
        compact = self.compact
        hits: list[pl.DataFrame] = []
        for offset, block in self.blocks():
            frame = block.load(["memo"] if not rules else None)
            hits += row_hits(frame, offset, policy, rules)
            del frame
        if compact.frame.height:
            hits += rule_hits(compact, policy, known_vendor_keys=known, history=past, lookup=self._lookup)
        flagged = combine(hits)  # in position order
        del hits
        details = self.gather(flagged["pos"], _DETAILS, ascending=True).with_columns(
            vendor=pl.col("vendor").cast(pl.Categorical), currency=pl.col("currency").cast(pl.Categorical)
        )
        items = flagged.hstack(details)
        # most rule findings first, then the largest amount, then file order: kept as a
        # permutation, so the wide rows are never copied into that order
        order = items.select(
            pl.arg_sort_by([pl.col("codes").list.len(), pl.col("amount_minor").abs(), pl.col("pos")], descending=[True, True, False])
        ).to_series()
        return FlaggedFrame(items, order)

    # --- recording ----------------------------------------------------------------------

    def zones(self, next_pk: int) -> list[tuple]:
        """Per chosen ledger: (first id, last id, first date, last date) of its new rows, or Nones."""
        found, pk = [], next_pk
        for _, blocks in self.parts:
            rows = sum(b.rows for b in blocks)
            if not rows:
                found.append((None, None, None, None))
                continue
            days = pl.concat([b.load(["date"]).select(low=pl.col("date").min(), high=pl.col("date").max()) for b in blocks if b.rows])
            found.append((pk, pk + rows - 1, days["low"].min().isoformat(), days["high"].max().isoformat()))
            pk += rows
        return found

    @staticmethod
    def flagged_rows(flagged: FlaggedFrame, status: str, request_id: str | None, next_pk: int) -> Outcomes:
        """What `insert_rows` writes for the flagged rows beyond their ledger columns."""
        return Outcomes(status, request_id, flagged.row_values(request_id, next_pk))

    def insert_rows(
        self,
        conn,
        *,
        run_id: int,
        source: str,
        file_ids: Sequence[int],
        next_pk: int,
        flagged_rows: Outcomes,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        """Insert every new row, in id order from `next_pk`: the flagged ones with their
        `flagged_rows` outcome, the others clean and auto-approved.

        Every row goes through one statement in id order, so SQLite only ever appends. (Rows
        inserted into gaps left between rows already written split nearly every page: that
        cost more than the flagged rows' values.) A row's outcome is one bound value: 0 for a
        clean row, its packed outcome for a flagged one.
        """
        compact = self.compact
        key_of = {name: compact.key_list[code] for name, code in compact.vendor_code.items()}
        pending = iter(flagged_rows.packed)
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
            for (_ledger, blocks), file_id in zip(self.parts, file_ids):
                for block in blocks:
                    frame = block.load()
                    first_id = next_pk + done
                    sql, names = _insert_statement(
                        frame, source=source, file_id=file_id, run_id=run_id, first_id=first_id, outcomes=flagged_rows
                    )
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
                            progress(done + start + piece.height, self.count)
                    done += frame.height
                    del frame
        finally:
            conn.execute("PRAGMA ignore_check_constraints = OFF")
            if enabled:
                gc.enable()

    def digests(self, next_pk: int) -> list[DigestPart]:
        """`history.make_digests` of the compact rows; then the compact rows, which nothing
        needs after this, are freed. Pure: a run makes these while the rows go in."""
        parts = make_digests(self.compact, next_pk)
        self.compact.frame = None
        return parts

    def write_extras(self, conn, *, run_id: int, digests: Sequence[DigestPart]) -> None:
        """The run's new vendors (by the first name seen) and its payment digests."""
        compact = self.compact
        key_of = {name: compact.key_list[code] for name, code in compact.vendor_code.items()}
        names: dict[str, str] = {}
        for name in self._vendor_names():
            names.setdefault(key_of[name], name)
        conn.executemany(
            "INSERT OR IGNORE INTO vendors (vendor_key, name, first_run_id) VALUES (?,?,?)",
            [(key, name, run_id) for key, name in names.items()],
        )
        write_digests(conn, run_id, digests)


class FlaggedFrame:
    """The flagged rows of a large run, most important first: position, codes, reasons and
    the details a reviewer and an approver see; with the review's notes once given."""

    def __init__(self, items: pl.DataFrame, order: pl.Series | None = None) -> None:
        self.items = items  # in position order
        self.order = order if order is not None else pl.Series(range(items.height), dtype=pl.UInt32)  # rank -> row
        self.count = items.height
        self.notes: dict[str, str] = {}  # by transaction id (a model's review)
        self.group_notes: dict[tuple[str, ...], str] = {}  # by the codes of a group (the offline review)
        self.concerns: dict[str, str] = {}

    def _chunks(self, columns: list[str]) -> Iterator[tuple[int, list[tuple]]]:
        """(rank of the first, rows) in rank order, a chunk at a time."""
        narrow = self.items.select(columns)
        for start in range(0, self.count, CHUNK):
            yield start, narrow[self.order.slice(start, CHUNK)].rows()

    def review_items(self) -> list:
        """Every flagged row as the agent is shown it (a model reviews every one)."""
        from job.review.agent import ReviewItem

        found = []
        for _, rows in self._chunks(["txn_id", "date", "vendor", "amount_minor", "currency", "memo", "codes", "reasons"]):
            found += [
                ReviewItem(t, d.isoformat(), v, format_amount(a, c), c, m, tuple(zip(codes, reasons)))
                for t, d, v, a, c, m, codes, reasons in rows
            ]
        return found

    def review_groups(self) -> list:
        """(first item, how many) per group of rows with the same findings, in order."""
        from job.review.agent import ReviewItem

        keys = self.items.select(key=pl.col("codes").list.join("\x1f"))["key"]  # per row
        ranked = keys.gather(self.order)
        firsts = self.order.gather(ranked.is_first_distinct().arg_true())  # the rows that come first in each group
        counts = dict(zip(*keys.value_counts(sort=False).get_columns()))
        self._group_of = {}
        groups = []
        rows = self.items.select("txn_id", "date", "vendor", "amount_minor", "currency", "memo", "codes", "reasons")[firsts].rows()
        for (t, d, v, a, c, m, codes, reasons), key in zip(rows, keys.gather(firsts).to_list()):
            groups.append((ReviewItem(t, d.isoformat(), v, format_amount(a, c), c, m, tuple(zip(codes, reasons))), counts[key]))
            self._group_of[t] = tuple(codes)
        return groups

    def set_group_notes(self, notes_by_first: dict[str, str]) -> None:
        self.group_notes = {self._group_of[t]: note for t, note in notes_by_first.items() if t in self._group_of}

    def _note(self, txn_id: str, codes) -> str:
        return self.notes.get(txn_id) or self.group_notes.get(tuple(codes), "")

    def _flags(self, txn_id: str, codes, reasons) -> list[dict[str, str]]:
        found = [{"code": c, "reason": r, "by": "rules"} for c, r in zip(codes, reasons)]
        if txn_id in self.concerns:
            found.append({"code": "agent_concern", "reason": self.concerns[txn_id], "by": "agent"})
        return found

    def request_items(self) -> Iterator[RequestItem]:
        """Every flagged row, numbered as in the request, one chunk at a time."""
        for start, rows in self._chunks(["txn_id", "date", "vendor", "amount_minor", "currency", "memo", "codes", "reasons"]):
            for n, (t, d, v, a, c, m, codes, reasons) in enumerate(rows, start + 1):
                reasons = tuple(reasons) + ((self.concerns[t],) if t in self.concerns else ())
                yield RequestItem(n, t, d.isoformat(), v, a, c, m, reasons, self._note(t, codes))

    def attachment(self, name: str) -> tuple[str, str | bytes]:
        """The request's CSV of every flagged row (`request.items_attachment`)."""
        return items_attachment(name, self.request_items())

    def pairs(self) -> Iterator[tuple[int, str]]:
        for start, rows in self._chunks(["txn_id"]):
            for n, (t,) in enumerate(rows, start + 1):
                yield n, t

    def canonical_items(self) -> Iterator[str]:
        """The canonical list of (item number, id) that `run.request_items_detail` digests,
        as text, a chunk at a time: by polars when no id needs escaping in JSON, else by
        `json.dumps` as the digest defines it."""
        for start in range(0, self.count, CHUNK):
            ids = self.items["txn_id"].gather(self.order.slice(start, CHUNK))
            if ids.str.contains(_PLAIN_JSON_TEXT).all():
                numbered = pl.DataFrame({"no": pl.int_range(start + 1, start + 1 + ids.len(), eager=True), "id": ids})
                text = numbered.select(pl.format('[{},"{}"]', "no", "id").str.join(","))[0, 0]
            else:
                text = ",".join(f"[{no},{json.dumps(t, ensure_ascii=False)}]" for no, t in enumerate(ids.to_list(), start + 1))
            yield ("," if start else "") + text

    def row_values(self, request_id: str | None, next_pk: int) -> Iterator[tuple[int, str]]:
        """(id, packed outcome) per flagged row, in the order of the ids, made a chunk at a
        time: the outcome is a JSON object of the row's flags JSON ("f"), note ("n") and item
        number ("i", null without a request), which `insert_rows` unpacks in SQL.

        The flags JSON is what `json.dumps` makes of `_flags` (as the row path writes it),
        built by polars when every text in it is plain ASCII that JSON keeps as it is, and
        by `json.dumps` otherwise (text with quotes, backslashes or other characters, and
        rows with an agent concern).
        """
        rank = self.order.arg_sort() + 1  # the item number of each row
        keys = pl.col("codes").list.join("\x1f")
        group_notes = {"\x1f".join(codes): note for codes, note in self.group_notes.items()}
        note = keys.replace_strict(group_notes, default="", return_dtype=pl.String) if group_notes else pl.lit("")
        if self.notes:
            note = pl.col("txn_id").replace_strict(self.notes, default=None, return_dtype=pl.String).fill_null(note)
        plain = (
            pl.col("codes").list.eval(pl.element().str.contains(_PLAIN_JSON).all()).list.first()
            & pl.col("reasons").list.eval(pl.element().str.contains(_PLAIN_JSON).all()).list.first()
        )
        if self.concerns:
            plain = plain & ~pl.col("txn_id").is_in(list(self.concerns))
        item = pl.col("rank") if request_id else pl.lit(None, pl.UInt32)
        narrow = self.items.select("pos", "txn_id", "codes", "reasons").with_columns(rank=rank)
        for start in range(0, self.count, CHUNK):
            chunk = narrow.slice(start, CHUNK).with_columns(plain=plain, note=note)
            entries = (
                chunk.select("pos", "codes", "reasons")
                .explode(["codes", "reasons"])
                .select(
                    "pos",
                    entry=pl.lit('{"code": "')
                    + pl.col("codes")
                    + pl.lit('", "reason": "')
                    + pl.col("reasons")
                    + pl.lit('", "by": "rules"}'),
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
                    packed = json.dumps({"f": json.dumps(self._flags(t, codes, reasons)), "n": text, "i": rank if request_id else None})
                yield next_pk + pos, packed


class Outcomes(NamedTuple):
    """The flagged rows' outcome for `FrameBatch.insert_rows`: their status and request (the
    same for all), and (id, packed outcome) per row in id order (`FlaggedFrame.row_values`)."""

    status: str
    request_id: str | None
    packed: Iterator[tuple[int, str]]


# what json.dumps writes unchanged between quotes: printable ASCII but the quote and the
# backslash; with ensure_ascii=False, anything but those and the control characters
_PLAIN_JSON = r"^[ !#-\[\]-~]*$"
_PLAIN_JSON_TEXT = r'^[^"\\\x00-\x1f]*$'


def _schema():
    from job.ledger.ingest_fast import TXN_SCHEMA

    return TXN_SCHEMA


def _insert_statement(
    part: pl.DataFrame, *, source: str, file_id: int, run_id: int, first_id: int, outcomes: Outcomes
) -> tuple[str, list[str]]:
    """The INSERT for one block's rows, and the columns it binds between the id (?1) and the
    outcome (the last: 0 for a clean row, else the packed outcome of `FlaggedFrame.row_values`).

    Binding a value costs more than SQLite spends storing it, so what every row of the
    block shares is a literal: the source, file, run and the flagged rows' status and
    request always; the date and currency when the block has only one; and the line, as an
    expression of the id, when the lines follow the rows one to one.
    """
    literal: dict[str, str] = {"source": _literal(source), "ledger_file_id": str(int(file_id)), "run_id": str(int(run_id))}
    for name in ("date", "currency"):
        if part.height and part[name].n_unique() == 1:
            value = part[name][0]
            literal[name] = _literal(value.isoformat() if name == "date" else value)
    if part.height and (part["line"] - pl.int_range(0, part.height, eager=True)).n_unique() == 1:
        literal["line"] = f"?1 - {first_id - int(part['line'][0])}"
    order = (
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
        "INSERT INTO transactions (id, source, txn_id, date, amount_minor, currency, vendor, vendor_key, memo, account,"
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


def _earlier_ids(parts: list[tuple[FrameLedger, list[Block]]], candidates: list[str]) -> set[str]:
    """Which of `candidates` the chosen blocks of earlier ledgers hold (by text)."""
    wanted = pl.Series(candidates, dtype=pl.String)
    found: set[str] = set()
    for _, blocks in parts:
        for block in blocks:
            ids = block.load(["txn_id"])["txn_id"]
            found.update(ids.filter(ids.is_in(wanted)).to_list())
    return found


def _changed(conn, source: str, repeats: pl.DataFrame) -> list[str]:
    """Ids a later export repeats with a different amount, currency, date or vendor."""
    mine = {
        t: (a, c, d.isoformat(), v) for t, a, c, d, v in repeats.select("txn_id", "amount_minor", "currency", "date", "vendor").iter_rows()
    }
    ids = list(mine)
    changed = []
    for i in range(0, len(ids), LOOKUP_CHUNK):
        chunk = ids[i : i + LOOKUP_CHUNK]
        for txn_id, *recorded in conn.execute(
            "SELECT txn_id, amount_minor, currency, date, vendor FROM transactions"
            f" WHERE source = ? AND txn_id IN ({','.join('?' * len(chunk))})",
            (source, *chunk),
        ):
            if tuple(recorded) != mine[txn_id]:
                changed.append(txn_id)
    return changed
