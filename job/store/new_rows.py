"""Which of a run's rows are new: not in a file imported before, not recorded before, not
repeated by an earlier file of the same run.

A file with the same bytes as one imported before (or as an earlier file of this run) is
skipped whole. Ids are probed in SQLite only when they fall between the smallest and
largest id already recorded for the source (two index lookups), so a night of new
sequential ids costs nothing and a repeated export is found. A repeated id whose amount,
currency, date or vendor differ from what was recorded is reported (the first is kept).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import polars as pl

from job.ledger.batch import Batch
from job.ledger.ingest_fast import Block, FrameLedger

__all__ = ["NewRows", "choose_new_rows", "find_existing", "unseen_ledgers"]

LOOKUP_CHUNK = 500  # values per IN (...) query: SQLite limits the variables of a statement


class NewRows(NamedTuple):
    """What `choose_new_rows` found: the new rows; (ledger, new rows, already imported) per
    ledger; the ids a later export repeats with different data."""

    batch: Batch
    outcomes: list[tuple[FrameLedger, int, bool]]
    changed: list[str]


def find_existing(conn, sql: str, values: Sequence[str], *prefix: object) -> set[str]:
    """Which of `values` a query finds (`sql` has `{marks}` for the IN list), asked in chunks."""
    found: set[str] = set()
    for i in range(0, len(values), LOOKUP_CHUNK):
        chunk = list(values[i : i + LOOKUP_CHUNK])
        marks = ",".join("?" * len(chunk))
        found.update(r[0] for r in conn.execute(sql.format(marks=marks), (*prefix, *chunk)))
    return found


def unseen_ledgers(conn, ledgers: Sequence[FrameLedger]) -> Iterator[tuple[FrameLedger, bool]]:
    """(ledger, skipped) per ledger: skipped when an earlier run imported the same bytes, or
    an earlier file of this run has them."""
    seen: set[str] = set()
    for ledger in ledgers:
        imported = conn.execute("SELECT 1 FROM ledger_files WHERE sha256 = ?", (ledger.sha256,)).fetchone()
        yield ledger, bool(imported) or ledger.sha256 in seen
        seen.add(ledger.sha256)


def choose_new_rows(conn, source: str, ledgers: Sequence[FrameLedger]) -> NewRows:
    """The rows not yet recorded (first occurrence wins), per ledger not yet imported."""
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
                recorded = find_existing(
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
    return NewRows(Batch(parts), outcomes, changed)


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
