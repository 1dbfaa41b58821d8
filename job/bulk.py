"""A run's stages for large ledgers held as polars frames: choose, look back, screen, record.

`run.run_audit` drives a run the same way whichever form the ledgers are in; this module
does the steps that a frame does differently from a list of `Transaction`s, so the cost
per row stays in polars and SQLite and only flagged rows become Python objects:

- `FrameBatch.select`: the rows not recorded yet. Ids are probed in SQLite only when they
  fall between the smallest and largest id already recorded for the source (two index
  lookups), so a night of new sequential ids costs nothing and a repeated export is found.
- `FrameBatch.screen`: `history` candidates by a join against the window's digests, then
  `screen_frame`, then `Screening`s for the flagged rows.
- `FrameBatch.write`: every row in file order inside the caller's transaction, with ids
  assigned up front, as one `executemany` per ledger of tuples zipped from column lists
  (the values every row shares are literals in the statement), then one UPDATE by id per
  flagged row for its flags, note, status and request number. The cyclic garbage
  collector is paused meanwhile: a million short-lived tuples would otherwise trigger it
  thousands of times. Then the vendors and the digests.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import polars as pl

from .config import Policy
from .history import (
    HistoryNeeds,
    PART_SIZE,
    legacy_payments,
    load_past_payments,
    read_digests,
    vendor_hash,
    window_days,
    write_digest_arrays,
)
from .ingest_fast import FrameLedger, frame_transactions
from .screen import Flag, PastPayment, Screening, structuring_band
from .screen_frame import screen_frame, vendor_keys

__all__ = ["FrameBatch", "WRITE_BATCH"]

WRITE_BATCH = 200_000  # rows turned into Python values at a time
LOOKUP_CHUNK = 500


@dataclass(slots=True)
class FrameBatch:
    """The new rows of a run: per chosen ledger, its frame of rows not recorded before."""

    parts: list[tuple[FrameLedger, pl.DataFrame]]
    frame: pl.DataFrame = field(init=False)
    keys: dict[str, str] = field(init=False)  # vendor name -> vendor key
    positions: list[int] = field(init=False, default_factory=list)  # of the flagged rows, after `screen`

    def __post_init__(self) -> None:
        frames = [f for _, f in self.parts]
        self.frame = pl.concat(frames, rechunk=False) if frames else pl.DataFrame(schema=_schema())
        self.keys = vendor_keys(self.frame["vendor"]) if self.frame.height else {}

    @property
    def count(self) -> int:
        return self.frame.height

    def vendor_keys(self) -> set[str]:
        return set(self.keys.values())

    # --- choosing the new rows --------------------------------------------------------

    @classmethod
    def select(cls, conn, source: str, ledgers: Sequence[FrameLedger]) -> tuple["FrameBatch", list[tuple[FrameLedger, int, bool]], list[str]]:
        """The rows not yet recorded (first occurrence wins), per ledger not yet imported.

        Returns the batch, (ledger, new rows, already imported) per ledger, and the ids a
        later export repeats with different data.
        """
        parts: list[tuple[FrameLedger, pl.DataFrame]] = []
        outcomes: list[tuple[FrameLedger, int, bool]] = []
        changed: list[str] = []
        seen_hashes: set[str] = set()
        seen_ids: list[pl.Series] = []
        low, high = conn.execute("SELECT MIN(txn_id), MAX(txn_id) FROM transactions WHERE source = ?", (source,)).fetchone()
        for ledger in ledgers:
            imported = conn.execute("SELECT 1 FROM ledger_files WHERE sha256 = ?", (ledger.sha256,)).fetchone()
            if imported or ledger.sha256 in seen_hashes:
                outcomes.append((ledger, 0, True))
                continue
            seen_hashes.add(ledger.sha256)
            frame = ledger.frame
            recorded: set[str] = set()
            if low is not None:
                maybe = frame.filter(pl.col("txn_id").is_between(pl.lit(low), pl.lit(high)))["txn_id"].to_list()
                recorded = _existing(conn, source, maybe)
            keep = ~pl.col("txn_id").is_in(list(recorded)) if recorded else pl.lit(True)
            if seen_ids:
                keep = keep & ~pl.col("txn_id").is_in(pl.concat(seen_ids))
            fresh = frame.filter(keep)
            if recorded:
                changed += _changed(conn, source, frame.filter(pl.col("txn_id").is_in(list(recorded))))
            seen_ids.append(fresh["txn_id"])
            outcomes.append((ledger, fresh.height, False))
            parts.append((ledger, fresh))
        return cls(parts), outcomes, changed

    # --- looking back and screening ---------------------------------------------------

    def history(self, conn, policy: Policy) -> list[PastPayment]:
        """Earlier runs' payments the duplicate and structuring rules may need."""
        dup, struct = policy.duplicates, policy.structuring
        if not self.count or not (dup.enabled or struct.enabled):
            return []
        days = [self.frame["date"].min().isoformat(), self.frame["date"].max().isoformat()]
        dup_days = window_days(days, dup.window_days) if dup.enabled else None
        band_days = window_days(days, struct.window_days - 1) if struct.enabled else None
        spans = [s for s in (dup_days, band_days) if s is not None]
        first, last = min(s[0] for s in spans), max(s[1] for s in spans)
        hashes = {key: vendor_hash(key) for key in self.vendor_keys()}
        by_hash = {h: key for key, h in hashes.items()}
        needs = HistoryNeeds(set(), dup_days, {}, band_days)
        past = legacy_payments(conn, needs, by_hash)
        digests = list(read_digests(conn, first, last))
        if not digests:
            return past
        entries = pl.concat(
            [
                pl.DataFrame({"vh": d.vendor_hashes, "amount": d.amounts, "pk": d.transaction_ids}, schema={"vh": pl.Int64, "amount": pl.Int64, "pk": pl.Int64})
                .with_columns(currency=pl.lit(d.currency), day=pl.lit(d.day))
                for d in digests
            ]
        )
        tonight = self.frame.select(
            vh=pl.col("vendor").replace_strict({name: hashes[key] for name, key in self.keys.items()}, return_dtype=pl.Int64),
            currency=pl.col("currency"),
            amount=pl.col("amount_minor"),
        )
        wanted: list[pl.DataFrame] = []
        if dup_days is not None:
            in_window = entries.filter(pl.col("day").is_between(pl.lit(dup_days[0]), pl.lit(dup_days[1])))
            wanted.append(in_window.join(tonight.unique(), on=["vh", "currency", "amount"], how="semi").select("pk"))
        if band_days is not None:
            bands = {c: structuring_band(policy.amount_threshold, struct.band_fraction, c) for c in tonight["currency"].unique().to_list()}
            low = pl.col("currency").replace_strict({c: b[0] for c, b in bands.items()}, default=None, return_dtype=pl.Int64)
            high = pl.col("currency").replace_strict({c: b[1] for c, b in bands.items()}, default=None, return_dtype=pl.Int64)
            in_band = (pl.col("amount") > 0) & (pl.col("amount") >= low) & (pl.col("amount") <= high)
            vendors = tonight.filter(in_band).select("vh", "currency").unique()
            wanted.append(entries.filter(pl.col("day").is_between(pl.lit(band_days[0]), pl.lit(band_days[1])) & in_band).join(vendors, on=["vh", "currency"], how="semi").select("pk"))
        pks = pl.concat(wanted)["pk"].unique().to_list() if wanted else []
        return past + load_past_payments(conn, pks)

    def screen(self, conn, policy: Policy, known: set[str], rules: Sequence = ()) -> list[Screening]:
        """The flagged rows, in batch order, as `Screening`s."""
        if not self.count:
            return []
        user_flags: dict[int, list[Flag]] = {}
        if rules:
            from .rules import amount_expression, evaluate_rules

            currencies = self.frame["currency"].unique().to_list()
            for start in range(0, self.count, 1_000_000):
                piece = self.frame.slice(start, 1_000_000).select(
                    id=pl.col("txn_id"), date=pl.col("date"), amount=amount_expression(currencies),
                    currency=pl.col("currency"), vendor=pl.col("vendor"), memo=pl.col("memo"), account=pl.col("account"),
                )
                for row, found in evaluate_rules(rules, piece, offset=start).items():
                    user_flags.setdefault(row, []).extend(found)
        result = screen_frame(self.frame, policy, known_vendor_keys=known, history=self.history(conn, policy), user_flags=user_flags)
        self.positions = sorted(result.flagged)
        transactions = frame_transactions(self.frame[self.positions]) if self.positions else []
        return [Screening(tx, tuple(result.flagged[pos])) for tx, pos in zip(transactions, self.positions)]

    # --- recording ----------------------------------------------------------------------

    def write(
        self,
        conn,
        *,
        run_id: int,
        source: str,
        file_ids: Sequence[int],
        next_pk: int,
        flagged: Mapping[str, tuple[str, str, str, str | None, int | None]],
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        """Insert every new row in order, as a clean row, then give the flagged ones their flags,
        note, status and request number: `flagged` holds (flags JSON, note, status, request id,
        item number) by transaction id. Ids are `next_pk` plus the row's position."""
        key_of = self.keys
        done = 0
        enabled = gc.isenabled()
        gc.disable()
        try:
            offset = 0
            for (ledger, part), file_id in zip(self.parts, file_ids):
                sql, names = _insert_statement(part, source=source, file_id=file_id, run_id=run_id, first_id=next_pk + offset)
                for start in range(0, part.height, WRITE_BATCH):
                    piece = part.slice(start, WRITE_BATCH)
                    first = next_pk + offset + start
                    read = [n for n in names if n != "vendor_key"]
                    columns = piece.select(pl.col("date").dt.to_string("%Y-%m-%d") if n == "date" else pl.col(n) for n in read)
                    values = {name: column.to_list() for name, column in zip(read, columns.get_columns())}
                    values["vendor_key"] = [key_of[v] for v in values["vendor"]]
                    values["id"] = range(first, first + piece.height)
                    conn.executemany(sql, zip(*(values[name] for name in ("id", *names))))
                    done += piece.height
                    if progress is not None:
                        progress(done, self.count)
                offset += part.height
            if self.positions:
                txn_ids = self.frame["txn_id"].gather(self.positions).to_list()
                conn.executemany(
                    "UPDATE transactions SET flags = ?, agent_note = ?, status = ?, request_id = ?, item_no = ? WHERE id = ?",
                    [(*flagged[txn_id], next_pk + pos) for txn_id, pos in zip(txn_ids, self.positions)],
                )
        finally:
            if enabled:
                gc.enable()
        names: dict[str, str] = {}
        for name in self.frame["vendor"].unique(maintain_order=True).to_list():
            names.setdefault(key_of[name], name)
        conn.executemany("INSERT OR IGNORE INTO vendors (vendor_key, name, first_run_id) VALUES (?,?,?)",
                         [(key, name, run_id) for key, name in names.items()])
        self._write_digests(conn, run_id, next_pk)

    def _write_digests(self, conn, run_id: int, next_pk: int) -> None:
        hashes = {name: vendor_hash(key) for name, key in self.keys.items()}
        entries = self.frame.select(
            day=pl.col("date"),
            currency=pl.col("currency"),
            vh=pl.col("vendor").replace_strict(hashes, return_dtype=pl.Int64),
            amount=pl.col("amount_minor"),
            pk=pl.int_range(next_pk, next_pk + pl.len(), dtype=pl.Int64),
        )
        for (day, currency), group in entries.group_by(["day", "currency"]):
            group = group.sort("vh", "amount", "pk")
            for part, start in enumerate(range(0, group.height, PART_SIZE)):
                chunk = group.slice(start, PART_SIZE)
                write_digest_arrays(conn, run_id, day.isoformat(), currency, part, chunk["vh"].to_list(), chunk["amount"].to_list(),
                                    chunk["pk"].to_list(), chunk.height)


def _schema():
    from .ingest_fast import TXN_SCHEMA

    return TXN_SCHEMA


def _insert_statement(part: pl.DataFrame, *, source: str, file_id: int, run_id: int, first_id: int) -> tuple[str, list[str]]:
    """The INSERT for one ledger's rows, and the columns it binds after the id.

    Binding a value costs more than SQLite spends storing it, so what every row of the
    ledger shares is a literal: the source, file, run and the clean row's flags and status
    always; the date and currency when the ledger has only one; and the line, as an
    expression of the id, when the lines follow the rows one to one.
    """
    literal: dict[str, str] = {"source": _literal(source), "ledger_file_id": str(int(file_id)), "run_id": str(int(run_id))}
    for name in ("date", "currency"):
        if part.height and part[name].n_unique() == 1:
            value = part[name][0]
            literal[name] = _literal(value.isoformat() if name == "date" else value)
    if part.height and (part["line"] - pl.int_range(0, part.height, eager=True)).n_unique() == 1:
        literal["line"] = f"?1 - {first_id - int(part['line'][0])}"
    order = ("source", "txn_id", "date", "amount_minor", "currency", "vendor", "vendor_key", "memo", "account", "ledger_file_id", "line", "run_id")
    names = [n for n in order if n not in literal]
    slots = {name: f"?{n}" for n, name in enumerate(names, 2)}
    values = ", ".join(["?1", *(literal.get(n) or slots[n] for n in order), "'[]'", "''", "'auto_approved'", "NULL", "NULL"])
    sql = (
        "INSERT INTO transactions (id, source, txn_id, date, amount_minor, currency, vendor, vendor_key, memo, account,"
        f" ledger_file_id, line, run_id, flags, agent_note, status, request_id, item_no) VALUES ({values})"
    )
    return sql, names


def _literal(text: str) -> str:
    """A SQL string literal (SQLite has no backslash escapes: only the quote is doubled)."""
    return "'" + text.replace("'", "''") + "'"


def _existing(conn, source: str, ids: list[str]) -> set[str]:
    found: set[str] = set()
    for i in range(0, len(ids), LOOKUP_CHUNK):
        chunk = ids[i : i + LOOKUP_CHUNK]
        found.update(r[0] for r in conn.execute(
            f"SELECT txn_id FROM transactions WHERE source = ? AND txn_id IN ({','.join('?' * len(chunk))})", (source, *chunk)))
    return found


def _changed(conn, source: str, repeats: pl.DataFrame) -> list[str]:
    """Ids a later export repeats with a different amount, currency, date or vendor."""
    mine = {t: (a, c, d.isoformat(), v) for t, a, c, d, v in repeats.select("txn_id", "amount_minor", "currency", "date", "vendor").iter_rows()}
    ids = list(mine)
    changed = []
    for i in range(0, len(ids), LOOKUP_CHUNK):
        chunk = ids[i : i + LOOKUP_CHUNK]
        for txn_id, *recorded in conn.execute(
            "SELECT txn_id, amount_minor, currency, date, vendor FROM transactions"
            f" WHERE source = ? AND txn_id IN ({','.join('?' * len(chunk))})", (source, *chunk)):
            if tuple(recorded) != mine[txn_id]:
                changed.append(txn_id)
    return changed
