"""A run's new rows: per ledger, the blocks of rows not recorded before, in file order.

The rows stay in their `ingest_fast.Block`s (in memory, or spilled to disk for a very large
run) and are read back one block at a time, so memory stays bounded whatever the run's
size. Every row has a position in the run (0, 1, ... over all the ledgers in order); its
audit id will be the run's first id plus that position.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date
from typing import cast

import polars as pl

from job.ledger.ingest_fast import TXN_SCHEMA, Block, FrameLedger

__all__ = ["Batch"]


class Batch:
    """The new rows of a run: (ledger, its blocks of new rows) per ledger chosen."""

    def __init__(self, parts: list[tuple[FrameLedger, list[Block]]]) -> None:
        self.parts = parts
        self.count = sum(b.rows for _, blocks in parts for b in blocks)
        self._names: list[str] | None = None

    @classmethod
    def of(cls, ledgers: Sequence[FrameLedger]) -> Batch:
        """Every row of `ledgers` (for tests and tools: a run chooses its rows in `store.new_rows`)."""
        return cls([(ledger, list(ledger.blocks)) for ledger in ledgers])

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
            return pl.DataFrame(schema={c: TXN_SCHEMA[c] for c in columns})
        return pl.concat(pieces) if ascending else pl.concat(pieces).sort("order").drop("order")

    def ids_and_dates(self, positions: list[int]) -> list[tuple[str, str]]:
        """(id, ISO date) of the rows at `positions`, in that order."""
        found = self.gather(positions, ["txn_id", "date"])
        return list(zip(found["txn_id"].to_list(), found["date"].dt.to_string("%Y-%m-%d").to_list()))

    def vendor_names(self) -> list[str]:
        """The distinct vendor names, in the order they first appear."""
        if self._names is None:
            names: dict[str, None] = {}
            for _, block in self.blocks():
                names.update(dict.fromkeys(block.load(["vendor"])["vendor"].unique(maintain_order=True).to_list()))
            self._names = list(names)
        return self._names

    def zones(self, next_pk: int) -> list[tuple]:
        """Per chosen ledger: (first id, last id, first date, last date) of its new rows, or
        Nones, when the run's rows get ids from `next_pk` on."""
        found: list[tuple] = []
        pk = next_pk
        for _, blocks in self.parts:
            rows = sum(b.rows for b in blocks)
            if not rows:
                found.append((None, None, None, None))
                continue
            days = pl.concat([b.load(["date"]).select(low=pl.col("date").min(), high=pl.col("date").max()) for b in blocks if b.rows])
            low, high = cast(date, days["low"].min()), cast(date, days["high"].max())  # a Date column's bounds
            found.append((pk, pk + rows - 1, low.isoformat(), high.isoformat()))
            pk += rows
        return found
