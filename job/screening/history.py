"""What earlier runs recorded that tonight's rules need, read in bounded windows.

Duplicates and structuring compare tonight's payments with those of earlier nights. A
SQLite index on the transactions for that would cost every run about as much as writing a
column of a million rows again, and reading the window's transactions back costs a second
per million. So each run also records a compact digest of its payments, per day and
currency (`payment_digests`): three arrays of little-endian 64-bit integers, sorted by
(vendor hash, amount): a 64-bit BLAKE2b hash of the vendor key, the amount in minor units
and the transaction's id. A run reads only the digests of the days in its windows, finds
the candidates by hash and amount, and loads just those transactions by primary key; the
rules then compare them exactly, so a hash collision can never flag anything.

Databases from before the digests (`digest_state.legacy_max_transaction_id`) are read
from the transactions of the window's days instead, until those days have passed.
"""

from __future__ import annotations

import hashlib
import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import NamedTuple

from job.screening.screen import PastPayment

__all__ = [
    "Digest",
    "HistoryNeeds",
    "vendor_hash",
    "read_digests",
    "find_candidates",
    "load_past_payments",
    "legacy_payments",
    "recent_payments",
    "DigestPart",
    "digest_part",
    "digest_parts",
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
    """What tonight's rules will look for in earlier runs.

    duplicates: (vendor hash, currency, amount) of tonight's payments, and the days to search;
    band: per currency, tonight's vendor hashes with a payment in the structuring band and
    the band (low, high), and the days to search.
    """

    duplicates: set[tuple[int, str, int]]
    duplicate_days: tuple[str, str] | None
    band: Mapping[str, tuple[set[int], int, int]]
    band_days: tuple[str, str] | None


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


def _overlap(a: tuple[str, str] | None, day: str) -> bool:
    return a is not None and a[0] <= day <= a[1]


def find_candidates(digests: Iterable[Digest], needs: HistoryNeeds) -> set[int]:
    """Transaction ids in the digests that may matter tonight (by hash; checked exactly later)."""
    by_vendor: dict[tuple[str, int], list[int]] = {}
    for vh, currency, amount in needs.duplicates:
        by_vendor.setdefault((currency, vh), []).append(amount)
    found: set[int] = set()
    for digest in digests:
        hashes, amounts, ids = digest.vendor_hashes, digest.amounts, digest.transaction_ids
        if _overlap(needs.duplicate_days, digest.day):
            for (currency, vh), wanted in by_vendor.items():
                if currency != digest.currency:
                    continue
                lo, hi = bisect_left(hashes, vh), bisect_right(hashes, vh)
                for amount in wanted:
                    start = bisect_left(amounts, amount, lo, hi)
                    end = bisect_right(amounts, amount, start, hi)
                    found.update(ids[start:end])
        band = needs.band.get(digest.currency)
        if band is not None and _overlap(needs.band_days, digest.day):
            vendors, low, high = band
            for vh in vendors:
                lo, hi = bisect_left(hashes, vh), bisect_right(hashes, vh)
                start, end = bisect_left(amounts, low, lo, hi), bisect_right(amounts, high, lo, hi)
                found.update(ids[start:end])
    return found


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


def legacy_payments(conn, needs: HistoryNeeds, vendor_keys: Mapping[int, str]) -> list[PastPayment]:
    """Payments recorded before this database had digests, for the days tonight needs."""
    row = conn.execute("SELECT legacy_max_transaction_id FROM digest_state").fetchone()
    legacy_max = row[0] if row else 0
    spans = [s for s in (needs.duplicate_days, needs.band_days) if s is not None]
    if not legacy_max or not spans:
        return []
    first, last = min(s[0] for s in spans), max(s[1] for s in spans)
    wanted_keys = set(vendor_keys.values())
    found = []
    for txn_id, day, vendor_key, currency, amount in conn.execute(
        LEGACY_QUERY,
        (first, last, legacy_max),
    ):
        if vendor_key in wanted_keys:
            found.append(PastPayment(txn_id, day, vendor_key, currency, amount))
    return found


def recent_payments(conn, needs: HistoryNeeds, vendor_keys: Mapping[int, str]) -> list[PastPayment]:
    """Earlier runs' payments that tonight's duplicate and structuring rules may need.

    `vendor_keys` maps the vendor hashes in `needs` back to tonight's vendor keys.
    """
    spans = [s for s in (needs.duplicate_days, needs.band_days) if s is not None]
    if not spans:
        return []
    first, last = min(s[0] for s in spans), max(s[1] for s in spans)
    currencies = {c for _, c, _ in needs.duplicates} | set(needs.band)
    candidates = find_candidates(read_digests(conn, first, last, currencies), needs)
    return legacy_payments(conn, needs, vendor_keys) + load_past_payments(conn, candidates)


class DigestPart(NamedTuple):
    """One `payment_digests` row, ready to write: a day's payments in one currency, or a
    part of `PART_SIZE` of them, packed as little-endian int64 arrays sorted by (vendor
    hash, amount, id)."""

    day: str
    currency: str
    part: int
    count: int
    hashes: bytes
    amounts: bytes
    ids: bytes


def digest_parts(payments: Iterable[tuple[str, str, int, int, int]]) -> list[DigestPart]:
    """A run's payments, (day, currency, vendor hash, amount, transaction id), as digest rows.

    Per day and currency, in parts of `PART_SIZE` payments in the order given, each part
    sorted by (vendor hash, amount, id): so a part can be built from its own rows alone.
    Pure: a run makes these while its rows are being inserted.
    """
    groups: dict[tuple[str, str], list[tuple[int, int, int]]] = {}
    for day, currency, vh, amount, pk in payments:
        groups.setdefault((day, currency), []).append((vh, amount, pk))
    parts = []
    for (day, currency), entries in sorted(groups.items()):
        for part, start in enumerate(range(0, len(entries), PART_SIZE)):
            chunk = sorted(entries[start : start + PART_SIZE])
            parts.append(digest_part(day, currency, part, (e[0] for e in chunk), (e[1] for e in chunk), (e[2] for e in chunk), len(chunk)))
    return parts


def digest_part(
    day: str, currency: str, part: int, hashes: Iterable[int], amounts: Iterable[int], ids: Iterable[int], count: int
) -> DigestPart:
    """One digest row from arrays already sorted by (vendor hash, amount, id)."""
    return DigestPart(day, currency, part, count, _to_blob(hashes), _to_blob(amounts), _to_blob(ids))


def write_digests(conn, run_id: int, parts: Iterable[DigestPart]) -> int:
    """Record a run's digest rows; returns how many."""
    rows = [(run_id, p.day, p.currency, p.part, p.count, p.hashes, p.amounts, p.ids) for p in parts]
    conn.executemany(
        "INSERT INTO payment_digests (run_id, date, currency, part, payments, vendor_hashes, amounts, transaction_ids)"
        " VALUES (?,?,?,?,?,?,?,?)",
        rows,
    )
    return len(rows)


def history_needs(
    rows: Sequence[tuple[str, str, str, int]],
    *,
    duplicates_window: int | None,
    structuring_window: int | None,
    bands: Mapping[str, tuple[int, int]],
) -> tuple[HistoryNeeds, dict[int, str]]:
    """What to look for, from tonight's (day, currency, vendor key, amount) rows."""
    hashes: dict[str, int] = {}
    dup: set[tuple[int, str, int]] = set()
    band: dict[str, tuple[set[int], int, int]] = {}
    days = []
    for day, currency, vendor_key, amount in rows:
        vh = hashes.get(vendor_key)
        if vh is None:
            vh = hashes[vendor_key] = vendor_hash(vendor_key)
        days.append(day)
        if duplicates_window is not None:
            dup.add((vh, currency, amount))
        if structuring_window is not None and currency in bands:
            low, high = bands[currency]
            if amount > 0 and low <= amount <= high:
                band.setdefault(currency, (set(), low, high))[0].add(vh)
    needs = HistoryNeeds(
        duplicates=dup,
        duplicate_days=window_days(days, duplicates_window) if duplicates_window is not None else None,
        band=band,
        band_days=window_days(days, structuring_window - 1) if structuring_window is not None and band else None,
    )
    return needs, {vh: key for key, vh in hashes.items()}
