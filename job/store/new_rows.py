"""Which of a run's rows are new: not in a file imported before, not recorded before, not
repeated by an earlier file of the same run.

A file with the same bytes as one imported before (or as an earlier file of this run) is
skipped whole. Ids are probed in SQLite only when they fall between the smallest and
largest id already recorded for the source (two index lookups), so a night of new
sequential ids costs nothing and a repeated export is found. A repeated id whose facts
differ from the latest version recorded is kept as the next version (an amendment).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import polars as pl

from job.ledger.batch import Batch
from job.ledger.ingest_fast import Block, FrameLedger
from job.screening.amendments import FACTS, Amendment, Version, find_amendments

__all__ = ["NewRows", "choose_new_rows", "find_existing", "unseen_ledgers"]

LOOKUP_CHUNK = 500  # values per IN (...) query: SQLite limits the variables of a statement


class NewRows(NamedTuple):
    """What `choose_new_rows` found: the new rows; (ledger, new rows, already imported,
    amended rows) per ledger; the amendments among the new rows by position in the run."""

    batch: Batch
    outcomes: list[tuple[FrameLedger, int, bool]]
    amended: dict[int, Amendment]
    amended_per_ledger: list[int]


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
    """The rows not yet recorded, per ledger not yet imported. A row that repeats a known id
    (recorded before, or in an earlier ledger of this run) with the same facts is a re-import
    and left out; with other facts it is kept as the next version (`screening.amendments`)."""
    parts: list[tuple[FrameLedger, list[Block]]] = []
    outcomes: list[tuple[FrameLedger, int, bool]] = []
    amended: dict[int, Amendment] = {}
    amended_per_ledger: list[int] = []
    in_run: dict[str, Version] = {}  # ids amended in this run: their latest version
    seen_ids: list[pl.Series] = []  # hashes of the ids chosen from earlier ledgers of this run
    position = 0
    low, high = conn.execute("SELECT MIN(txn_id), MAX(txn_id) FROM transactions WHERE source = ?", (source,)).fetchone()
    for ledger, skipped in unseen_ledgers(conn, ledgers):
        if skipped:
            outcomes.append((ledger, 0, True))
            amended_per_ledger.append(0)
            continue
        earlier = pl.concat(seen_ids) if seen_ids else None
        kept: list[Block] = []
        new = amended_here = 0
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
            before: dict[str, Version] = {}
            if earlier is not None:
                again = ids.hash(seed=0).is_in(earlier)
                if again.any():  # confirm by text: a hash collision must not drop a row
                    before = _earlier_versions(parts, ids.filter(again).to_list())
            repeat = ids.is_in(list(recorded | set(before))) if recorded or before else None
            keep = None
            found: list[Amendment] = []
            if repeat is not None and repeat.any():
                rows = block.load().with_row_index("at").filter(repeat)
                latest = {**_recorded_versions(conn, source, sorted(recorded)), **before, **in_run}
                found, _ = find_amendments([(r["at"], _facts(r)) for r in rows.iter_rows(named=True)], latest)
                keep = ~repeat | pl.int_range(0, block.rows, eager=True).is_in([a.position for a in found])
            if keep is None or keep.all():
                kept.append(block)
                rows_kept = block.rows
            else:
                fresh = block.load().filter(keep)
                kept.append(Block(fresh, block.path.with_suffix(".new.arrow") if block.path else None))
                rows_kept = fresh.height
            if found:
                assert keep is not None, "amendments found without a mask of the rows kept"
                index = keep.cum_sum().to_list()  # the row's place among the kept rows, plus one
                for a in found:
                    amended[position + new + index[a.position] - 1] = a
                    in_run[a.txn_id] = a.facts
                amended_here += len(found)
            new += rows_kept
        seen_ids.extend(b.load(["txn_id"])["txn_id"].hash(seed=0) for b in kept)
        outcomes.append((ledger, new, False))
        amended_per_ledger.append(amended_here)
        parts.append((ledger, kept))
        position += new
    return NewRows(Batch(parts), outcomes, amended, amended_per_ledger)


def _facts(row: dict) -> dict:
    return {"txn_id": row["txn_id"], **{name: (row[name].isoformat() if name == "date" else row[name]) for name in FACTS}}


def _earlier_versions(parts: list[tuple[FrameLedger, list[Block]]], candidates: list[str]) -> dict[str, Version]:
    """Of `candidates`, those the chosen blocks of earlier ledgers hold, each with the facts of
    its last such row (as version 1: amended ones are known to the caller by their version)."""
    wanted = pl.Series(candidates, dtype=pl.String)
    found: dict[str, Version] = {}
    for _, blocks in parts:
        for block in blocks:
            frame = block.load()
            for row in frame.filter(frame["txn_id"].is_in(wanted)).iter_rows(named=True):
                found[row["txn_id"]] = Version.from_facts(row["txn_id"], 1, _facts(row))
    return found


def _recorded_versions(conn, source: str, txn_ids: Sequence[str]) -> dict[str, Version]:
    """The latest recorded version of each of `txn_ids`."""
    found: dict[str, Version] = {}
    for i in range(0, len(txn_ids), LOOKUP_CHUNK):
        chunk = txn_ids[i : i + LOOKUP_CHUNK]
        for row in conn.execute(
            "SELECT txn_id, version, date, amount_minor, currency, vendor, memo, account, run_id FROM transactions t"
            f" WHERE source = ? AND txn_id IN ({','.join('?' * len(chunk))})"
            " AND version = (SELECT MAX(version) FROM transactions u WHERE u.source = t.source AND u.txn_id = t.txn_id)",
            (source, *chunk),
        ):
            found[row[0]] = Version(*row)
    return found
