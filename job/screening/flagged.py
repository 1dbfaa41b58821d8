"""A run's flagged rows, held as one frame, most important first.

However many rows are flagged (hundreds of thousands in a large run) they stay one polars
frame in file order (`items`: position, codes, reasons and the details a reviewer and an
approver see) with a ranking (`order`): most rule findings first, then the largest amount,
then file order. The review sets its notes and concerns on it; the request, the audit
event and the database read it in rank order, a chunk at a time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

import polars as pl

__all__ = ["FlaggedFrame", "CHUNK"]

CHUNK = 50_000  # flagged rows turned into Python values at a time
# what json.dumps writes unchanged between quotes with ensure_ascii=False: anything but the
# quote, the backslash and the control characters
_PLAIN_JSON_TEXT = r'^[^"\\\x00-\x1f]*$'


class FlaggedFrame:
    """The flagged rows, in file order (`items`) with their rank order (`order`: rank -> row);
    with the review's notes (by id, or by the codes of a group) and concerns once given."""

    def __init__(self, items: pl.DataFrame, order: pl.Series | None = None) -> None:
        self.items = items  # in position order
        self.order = order if order is not None else pl.Series(range(items.height), dtype=pl.UInt32)  # rank -> row
        self.count = items.height
        self.notes: dict[str, str] = {}  # by transaction id (a model's review)
        self.group_notes: dict[tuple[str, ...], str] = {}  # by the codes of a group (the offline review)
        self.concerns: dict[str, str] = {}

    @classmethod
    def ranked(cls, items: pl.DataFrame) -> FlaggedFrame:
        """`items` (with `codes` and `amount_minor`, in position order) ranked: most rule
        findings first, then the largest amount, then file order. The ranking is kept as a
        permutation, so the wide rows are never copied into that order."""
        order = items.select(
            pl.arg_sort_by([pl.col("codes").list.len(), pl.col("amount_minor").abs(), pl.col("pos")], descending=[True, True, False])
        ).to_series()
        return cls(items, order)

    def in_rank_order(self, columns: Sequence[str | pl.Expr], *, limit: int | None = None) -> Iterator[tuple[int, list[tuple]]]:
        """(rank of the first, rows of `columns`) in rank order, a chunk at a time; the first
        `limit` rows only, if given."""
        narrow = self.items.select(columns)
        count = self.count if limit is None else min(limit, self.count)
        for start in range(0, count, CHUNK):
            yield start, narrow[self.order.slice(start, min(CHUNK, count - start))].rows()

    def note_column(self) -> pl.Expr:
        """A row's note from the review, over `items`: its own, else its group's, else none."""
        by_codes = {"\x1f".join(codes): note for codes, note in self.group_notes.items()}
        note = pl.col("codes").list.join("\x1f").replace_strict(by_codes, default="", return_dtype=pl.String) if by_codes else pl.lit("")
        if self.notes:
            note = pl.col("txn_id").replace_strict(self.notes, default=None, return_dtype=pl.String).fill_null(note)
        return note

    def reasons_text(self) -> pl.Expr:
        """A row's reasons as the request shows them, over `items`: the rules' reasons, then
        the agent's concern, if any, joined by "; "."""
        text = pl.col("reasons").list.join("; ")
        if self.concerns:
            concern = pl.col("txn_id").replace_strict(self.concerns, default=None, return_dtype=pl.String)
            text = pl.when(concern.is_null()).then(text).otherwise(pl.concat_str(text, pl.lit("; "), concern))
        return text

    def flags_of(self, txn_id: str, codes, reasons) -> list[dict[str, str]]:
        """A row's flags as recorded: the rules' findings, then the agent's concern, if any."""
        found = [{"code": c, "reason": r, "by": "rules"} for c, r in zip(codes, reasons)]
        if txn_id in self.concerns:
            found.append({"code": "agent_concern", "reason": self.concerns[txn_id], "by": "agent"})
        return found

    def pairs(self) -> Iterator[tuple[int, str]]:
        """(item number, id) in rank order."""
        for start, rows in self.in_rank_order(["txn_id"]):
            for n, (t,) in enumerate(rows, start + 1):
                yield n, t

    def canonical_items(self) -> Iterator[str]:
        """The canonical list of (item number, id), `auditlog.canonical` of [[no, id], ...], as
        text, a chunk at a time: by polars when no id needs escaping in JSON, else by
        `json.dumps` as the canonical form defines it."""
        for start in range(0, self.count, CHUNK):
            ids = self.items["txn_id"].gather(self.order.slice(start, CHUNK))
            if ids.str.contains(_PLAIN_JSON_TEXT).all():
                numbered = pl.DataFrame({"no": pl.int_range(start + 1, start + 1 + ids.len(), eager=True), "id": ids})
                text = numbered.select(pl.format('[{},"{}"]', "no", "id").str.join(","))[0, 0]
            else:
                text = ",".join(f"[{no},{json.dumps(t, ensure_ascii=False)}]" for no, t in enumerate(ids.to_list(), start + 1))
            yield ("," if start else "") + text
