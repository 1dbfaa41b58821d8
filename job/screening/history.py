"""What earlier runs recorded that tonight's rules need, read in bounded windows.

Duplicates and structuring compare tonight's payments with those of earlier nights. A
SQLite index on the transactions for that would cost every run about as much as writing a
column of a million rows again, and reading the window's transactions back costs a second
per million. So each run also records a compact digest of its payments, per day and
currency (`payment_digests`): three arrays of little-endian 64-bit integers, sorted by
(vendor hash, amount): a 64-bit BLAKE2b hash of the vendor key, the amount in minor units
and the transaction's id. A run reads only the digests of the days in its windows, finds
the candidates by hash and amount (a join against tonight's compact rows), and loads just
those transactions by primary key; the rules then compare them exactly, so a hash
collision can never flag anything.

Databases from before the digests (`digest_state.legacy_max_transaction_id`) are read
from the transactions of the window's days instead, until those days have passed.
"""

from __future__ import annotations

import hashlib
import sys
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import NamedTuple, cast

import polars as pl

from job.config import Policy
from job.screening.screen import PastPayment, structuring_band
from job.screening.screen_frame import Compact, in_band

__all__ = [
    "Digest",
    "HistoryNeeds",
    "vendor_hash",
    "read_digests",
    "history_needs",
    "find_candidates",
    "find_history",
    "load_past_payments",
    "legacy_payments",
    "DigestPart",
    "digest_part",
    "make_digests",
    "write_digests",
    "window_days",
]

PART_SIZE = 1_000_000  # payments per digest row (8 MB per array at most)
LOOKUP_CHUNK = 500


def vendor_hash(vendor_key: str) -> int:
    """A stable signed 64-bit hash of a vendor key (the same in every process and version)."""
    return int.from_bytes(hashlib.blake2b(vendor_key.encode("utf-8"), digest_size=8).digest(), "little", signed=True)


def _to_blob(values: Iterable[int]) -> bytes:
    data = array("q", values)
    if sys.byteorder != "little":
        data.byteswap()
    return data.tobytes()


def _from_blob(blob: bytes) -> array:
    data = array("q")
    data.frombytes(blob)
    if sys.byteorder != "little":
        data.byteswap()
    return data


@dataclass(frozen=True, slots=True)
class Digest:
    """One day's payments in one currency of one run, sorted by (vendor hash, amount)."""

    day: str
    currency: str
    vendor_hashes: array
    amounts: array
    transaction_ids: array


@dataclass(frozen=True, slots=True)
class HistoryNeeds:
    """What tonight's rules will look for in earlier runs, from tonight's compact rows.

    `payments`: tonight's (vendor hash, currency code, amount), for the duplicate rule, and
    the days it searches; `band_vendors`: tonight's (vendor hash, currency code) with a
    payment in the structuring band (`bands`: per currency code), and the days that rule
    searches. Currency codes index `currencies`; `vendor_keys` maps each hash to its key.
    """

    currencies: list[str]
    vendor_keys: dict[int, str]
    payments: pl.LazyFrame | None
    duplicate_days: tuple[str, str] | None
    band_vendors: pl.LazyFrame | None
    bands: dict[int, tuple[int, int]]
    band_days: tuple[str, str] | None

    def span(self) -> tuple[str, str] | None:
        """The first and last day either rule searches."""
        spans = [s for s in (self.duplicate_days, self.band_days) if s is not None]
        return (min(s[0] for s in spans), max(s[1] for s in spans)) if spans else None


def window_days(days: Iterable[str], margin: int) -> tuple[str, str] | None:
    """The first and last day within `margin` days of any of `days`."""
    found = sorted(set(days))
    if not found:
        return None
    first = date.fromisoformat(found[0]) - timedelta(days=margin)
    last = date.fromisoformat(found[-1]) + timedelta(days=margin)
    return first.isoformat(), last.isoformat()


def read_digests(conn, first_day: str, last_day: str, currencies: Iterable[str] | None = None) -> Iterator[Digest]:
    """The digests of the days from `first_day` to `last_day` (an index range on the key)."""
    wanted = None if currencies is None else set(currencies)
    rows = conn.execute(
        "SELECT date, currency, vendor_hashes, amounts, transaction_ids FROM payment_digests"
        " WHERE date BETWEEN ? AND ? ORDER BY date, currency, run_id, part",
        (first_day, last_day),
    )
    for day, currency, hashes, amounts, ids in rows:
        if wanted is None or currency in wanted:
            yield Digest(day, currency, _from_blob(hashes), _from_blob(amounts), _from_blob(ids))


def history_needs(compact: Compact, policy: Policy) -> HistoryNeeds | None:
    """What tonight's duplicate and structuring rules look for in earlier runs (None: nothing)."""
    dup, struct = policy.duplicates, policy.structuring
    base = compact.frame
    if base is None or not base.height or not (dup.enabled or struct.enabled):
        return None
    days = [day_text(cast(int, base["day"].min())), day_text(cast(int, base["day"].max()))]  # day numbers
    hashes = [vendor_hash(key) for key in compact.key_list]
    # lazy: built only when there are digests to compare them with (a first import has none)
    tonight = base.lazy().select(
        vh=pl.col("vkey").replace_strict(dict(enumerate(hashes)), return_dtype=pl.Int64), cur="cur", amount="amount"
    )
    bands = {}
    if struct.enabled:
        bands = {n: structuring_band(policy.threshold_for(c), struct.band_fraction, c) for n, c in enumerate(compact.currencies)}
    return HistoryNeeds(
        currencies=list(compact.currencies),
        vendor_keys=dict(zip(hashes, compact.key_list)),
        payments=tonight.unique() if dup.enabled else None,
        duplicate_days=window_days(days, dup.window_days) if dup.enabled else None,
        band_vendors=tonight.filter(in_band(bands)).select("vh", "cur").unique() if struct.enabled else None,
        bands=bands,
        band_days=window_days(days, struct.window_days - 1) if struct.enabled else None,
    )


def find_candidates(digests: Iterable[Digest], needs: HistoryNeeds) -> set[int]:
    """Transaction ids in the digests that may matter tonight (by hash; checked exactly later):
    the same vendor, currency and amount in the duplicate window, and the same vendor and
    currency in the structuring band in its window."""
    code = {currency: n for n, currency in enumerate(needs.currencies)}
    frames = [
        pl.DataFrame(
            {"vh": d.vendor_hashes, "amount": d.amounts, "pk": d.transaction_ids},
            schema={"vh": pl.Int64, "amount": pl.Int64, "pk": pl.Int64},
        ).with_columns(cur=pl.lit(code[d.currency], dtype=pl.UInt16), day=pl.lit(d.day))
        for d in digests
        if d.currency in code
    ]
    if not frames:
        return set()
    entries = pl.concat(frames)
    wanted: list[pl.DataFrame] = []
    if needs.payments is not None and needs.duplicate_days is not None:
        first, last = needs.duplicate_days
        in_window = entries.filter(pl.col("day").is_between(pl.lit(first), pl.lit(last)))
        wanted.append(in_window.join(needs.payments.collect(), on=["vh", "cur", "amount"], how="semi").select("pk"))
    if needs.band_vendors is not None and needs.band_days is not None:
        first, last = needs.band_days
        in_days = pl.col("day").is_between(pl.lit(first), pl.lit(last))
        wanted.append(
            entries.filter(in_days & in_band(needs.bands)).join(needs.band_vendors.collect(), on=["vh", "cur"], how="semi").select("pk")
        )
    return set(pl.concat(wanted)["pk"].to_list()) if wanted else set()


def find_history(conn, policy: Policy, compact: Compact) -> list[PastPayment]:
    """Earlier runs' payments that tonight's duplicate and structuring rules may need."""
    needs = history_needs(compact, policy)
    span = needs.span() if needs is not None else None
    if needs is None or span is None:
        return []
    past = legacy_payments(conn, needs)
    return past + load_past_payments(conn, find_candidates(read_digests(conn, *span, needs.currencies), needs))


def load_past_payments(conn, transaction_ids: Iterable[int]) -> list[PastPayment]:
    """The recorded transactions with these ids, oldest first."""
    ids = sorted(set(transaction_ids))
    rows: list[tuple] = []
    for i in range(0, len(ids), LOOKUP_CHUNK):
        chunk = ids[i : i + LOOKUP_CHUNK]
        rows += conn.execute(
            f"SELECT id, txn_id, date, vendor_key, currency, amount_minor FROM transactions WHERE id IN ({','.join('?' * len(chunk))})",
            chunk,
        ).fetchall()
    rows.sort()
    return [PastPayment(txn_id, day, vendor_key, currency, amount) for _, txn_id, day, vendor_key, currency, amount in rows]


# through the ledger files' id and date ranges, as `report.report_query` (db migration 6)
LEGACY_QUERY = (
    "SELECT t.txn_id, t.date, t.vendor_key, t.currency, t.amount_minor FROM ledger_files f CROSS JOIN transactions t"
    " WHERE t.id BETWEEN f.first_transaction_id AND f.last_transaction_id AND +t.ledger_file_id = f.id"
    " AND f.last_date >= ?1 AND f.first_date <= ?2 AND t.date BETWEEN ?1 AND ?2 AND t.id <= ?3 ORDER BY t.id"
)


def legacy_payments(conn, needs: HistoryNeeds) -> list[PastPayment]:
    """Payments recorded before this database had digests, for the days tonight needs."""
    row = conn.execute("SELECT legacy_max_transaction_id FROM digest_state").fetchone()
    legacy_max = row[0] if row else 0
    span = needs.span()
    if not legacy_max or span is None:
        return []
    first, last = span
    wanted_keys = set(needs.vendor_keys.values())
    found = []
    for txn_id, day, vendor_key, currency, amount in conn.execute(
        LEGACY_QUERY,
        (first, last, legacy_max),
    ):
        if vendor_key in wanted_keys:
            found.append(PastPayment(txn_id, day, vendor_key, currency, amount))
    return found


class DigestPart(NamedTuple):
    """One `payment_digests` row, ready to write: a day's payments in one currency, or a
    part of `PART_SIZE` of them, packed as little-endian int64 arrays sorted by (vendor
    hash, amount, id)."""

    day: str
    currency: str
    part: int
    payments: int  # the `count` column (a field named count would hide tuple.count)
    hashes: bytes
    amounts: bytes
    ids: bytes


def digest_part(
    day: str, currency: str, part: int, hashes: Iterable[int], amounts: Iterable[int], ids: Iterable[int], count: int
) -> DigestPart:
    """One digest row from arrays already sorted by (vendor hash, amount, id)."""
    return DigestPart(day, currency, part, count, _to_blob(hashes), _to_blob(amounts), _to_blob(ids))


def make_digests(compact: Compact, next_pk: int) -> list[DigestPart]:
    """The run's digest rows from its compact rows, whose ids are `next_pk` plus their row:
    per day and currency, in parts of `PART_SIZE` payments in row order, each part sorted
    by (vendor hash, amount, id), so a part is built from its own rows alone."""
    hashes = dict(enumerate(vendor_hash(key) for key in compact.key_list))
    base = compact.frame
    assert base is not None, "the compact rows are kept until the digests are made"
    parts = []
    groups = base.select("day", "cur").unique().sort("day", "cur").rows()
    for day, cur in groups:
        rows = base if len(groups) == 1 else base.filter((pl.col("day") == day) & (pl.col("cur") == cur))
        for part, start in enumerate(range(0, rows.height, PART_SIZE)):
            chunk = (
                rows.slice(start, PART_SIZE)
                .select(
                    vh=pl.col("vkey").replace_strict(hashes, return_dtype=pl.Int64),
                    amount="amount",
                    pk=(pl.col("row").cast(pl.Int64) + next_pk),
                )
                .sort("vh", "amount", "pk")
            )
            parts.append(
                digest_part(
                    day_text(day),
                    compact.currencies[cur],
                    part,
                    _ints(chunk["vh"]),
                    _ints(chunk["amount"]),
                    _ints(chunk["pk"]),
                    chunk.height,
                )
            )
    return parts


def _ints(series: pl.Series) -> array:
    """The integers as an `array('q')`, made a slice at a time: a million Python ints at
    once would cost more memory than the digest itself."""
    out = array("q")
    for start in range(0, series.len(), 50_000):
        out.extend(series.slice(start, 50_000).to_list())
    return out


def day_text(days_since_epoch: int) -> str:
    """The ISO date of a polars day number (days since 1970-01-01)."""
    return (date(1970, 1, 1) + timedelta(days=int(days_since_epoch))).isoformat()


def write_digests(conn, run_id: int, parts: Iterable[DigestPart]) -> int:
    """Record a run's digest rows; returns how many."""
    rows = [(run_id, p.day, p.currency, p.part, p.payments, p.hashes, p.amounts, p.ids) for p in parts]
    conn.executemany(
        "INSERT INTO payment_digests (run_id, date, currency, part, payments, vendor_hashes, amounts, transaction_ids)"
        " VALUES (?,?,?,?,?,?,?,?)",
        rows,
    )
    return len(rows)
