#!/usr/bin/env python3
"""Generate a large, realistic, reproducible ledger CSV for benchmarking `audit run`.

The output has the header ``id,date,amount,currency,vendor,memo,account`` that
``job/ingest.py`` reads. Everything is derived from one seeded ``random.Random``, so the
same arguments always give byte-identical files. Only the standard library is used.

What the data looks like:

* vendors: a pool (default 5,000) of unique company names, some with a comma that needs CSV
  quoting ("Harbor Freight, Inc."), chosen with Zipf-like popularity (rank k has weight
  1 / k**s);
* amounts: lognormal with a median of about 800.00 USD and a long tail (about 1% of rows above
  10,000.00), always produced as integer cents and formatted from the integer, never from a
  float; about a third of the amounts of 1,000.00 or more are written with thousands
  separators and quoted (``"1,234.56"``), the rest plain (``1234.56``);
* memos: invoice numbers, purchase orders and item descriptions; about 1% are vague
  ("Misc", "Confidential", "various", "sundry items");
* dates: the file is in date order, spread evenly over ``--days`` days (default 1) from
  ``--start``;
* ids: unique, ``B-0000001``, ``B-0000002``, ... (zero-padded to at least 7 digits);
* accounts: each vendor posts mostly to its own GL account.

Injected patterns, each spread over the following rows of the file rather than adjacent:

* structuring: groups of 3 to 5 payments to one vendor, each from 9,000.00 to 9,999.99
  (at least 90% of the 10,000.00 threshold and never above it), all within 7 days;
* duplicate payments: a second payment to the same vendor for the same amount within 3 days;
* round amounts: exact multiples of 1,000.00.

The vendors file (``--vendors-out``) lists the known vendors, one per line under a ``vendor``
header. It holds ``--known-fraction`` of the pool; the vendors left out are taken from the less
popular half of the pool, as new vendors usually are, so only a small share of the rows is
paid to an unknown vendor.

Rows are produced and written in chunks, so memory stays flat however many rows are asked
for. ``--truth-out`` optionally writes which ids carry which injected pattern.

    python bench/generate_ledger.py --rows 1000000 --seed 7 --out bench/out/ledger-1m.csv \\
        --vendors-out bench/out/vendors.csv --known-fraction 0.9
"""

from __future__ import annotations

import argparse
import datetime as dt
import heapq
import itertools
import math
import os
import random
import sys
import time
from pathlib import Path

HEADER = "id,date,amount,currency,vendor,memo,account"
CURRENCY = "USD"
VAGUE_MEMOS = ("Misc", "Confidential", "various", "sundry items")

MEDIAN_CENTS = 80_000  # 800.00
SIGMA = 1.1  # P(amount > 10,000.00) = P(Z > ln(12.5) / 1.1) ~ 1.1%
MAX_CENTS = 5_000_000_00  # cap the extreme tail at 5,000,000.00
STRUCTURING_LOW, STRUCTURING_HIGH = 900_000, 999_999  # 9,000.00 .. 9,999.99 cents
STRUCTURING_WINDOW_DAYS = 7
DUPLICATE_WINDOW_DAYS = 3
MAX_SPREAD_ROWS = 20_000  # injected follow-ups land at most this many rows (and 5% of the file) later

_PREFIXES = (
    "Acme", "Apex", "Atlas", "Beacon", "Blue Harbor", "Bright", "Cascade", "Cedar", "Summit", "Contoso",
    "Crescent", "Delta", "Eagle", "Evergreen", "Fabrikam", "First Light", "Frontier", "Globex", "Granite",
    "Great Lakes", "Harbor", "Highland", "Horizon", "Initech", "Iron Gate", "Keystone", "Lakeside", "Liberty",
    "Maple", "Meridian", "Metro", "Midwest", "Northwind", "Oak Ridge", "Pacific", "Pinnacle", "Prairie",
    "Redwood", "Riverbend", "Sierra", "Silver Creek", "Southern", "Sterling", "Stonebridge", "Sunrise",
    "Tailspin", "Tri-County", "Union", "Valley", "Vertex", "Westfield", "Wide World", "Willow", "Woodgrove",
)
_TRADES = (
    "Office Supply", "Logistics", "Consulting", "Travel", "Software", "Freight", "Electric", "Plumbing",
    "Catering", "Print & Copy", "Staffing", "Legal Services", "Security", "Janitorial", "Telecom",
    "Engineering", "Marketing", "Data Services", "Auto Parts", "Industrial Supply", "Packaging",
    "Facilities", "Landscaping", "Medical Supply", "Hardware", "Analytics", "Fleet Services", "Couriers",
    "Events", "Uniforms",
)
_SUFFIXES = ("", "", "", " LLC", " Inc.", ", Inc.", " Co.", " Ltd", " Group", " Partners", ", LLC", " Corp.")
_ITEMS = (
    "Printer paper and toner", "Freight charges", "Monthly retainer", "Software subscription", "Hotel for client visit",
    "Flights for sales meeting", "Catering for all-hands", "Replacement parts", "Cleaning services", "Security patrol",
    "Consulting hours", "Legal review", "Equipment rental", "Courier deliveries", "Uniform laundering",
    "Fuel surcharge", "Network maintenance", "Office furniture", "Trade show booth", "Safety equipment",
    "Packaging materials", "Landscape maintenance", "Temporary staff", "License renewal", "Cloud hosting",
)


def _csv_field(text: str) -> str:
    """One CSV field as the csv module would write it (quoted only when needed)."""
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def format_cents(cents: int, grouped: bool = False) -> str:
    """Exact decimal text from integer cents: 123456 -> '1234.56' (or '"1,234.56"')."""
    units, fraction = divmod(cents, 100)
    if grouped and units >= 1000:
        return f'"{units:,d}.{fraction:02d}"'
    return f"{units:d}.{fraction:02d}"


def make_vendor_names(rng: random.Random, count: int) -> list[str]:
    """``count`` distinct vendor names, in a seeded random order."""
    combos = [(p, t) for p in _PREFIXES for t in _TRADES]
    if count > len(combos) * len(_SUFFIXES):
        raise SystemExit(f"at most {len(combos) * len(_SUFFIXES)} vendors can be generated, asked for {count}")
    rng.shuffle(combos)
    names: list[str] = []
    seen: set[str] = set()
    for round_no in itertools.count():
        for prefix, trade in combos:
            suffix = _SUFFIXES[0] if round_no == 0 else rng.choice(_SUFFIXES[1:])
            name = f"{prefix} {trade}{suffix}"
            key = " ".join(name.split()).casefold()  # as job.screen.normalize_vendor compares
            if key in seen:
                continue
            seen.add(key)
            names.append(name)
            if len(names) == count:
                return names
        if round_no > 4 * len(_SUFFIXES):
            raise SystemExit("could not make enough distinct vendor names")
    raise AssertionError("unreachable")


class Ledger:
    """The streaming generator: call ``chunks()`` for lists of CSV lines."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.rows: int = args.rows
        self.rng = random.Random(args.seed)
        rng = self.rng
        self.days = args.days
        self.start = args.start
        self.rows_per_day = self.rows / self.days
        self.id_width = max(7, len(str(self.rows)))

        # Vendors: names, popularity rank (index 0 = most popular), account, memo habits.
        self.vendors = make_vendor_names(rng, args.vendors)
        self.vendor_fields = [_csv_field(v) for v in self.vendors]
        weights = [1.0 / (k ** args.zipf) for k in range(1, len(self.vendors) + 1)]
        self.cum_weights = list(itertools.accumulate(weights))
        accounts = [str(a) for a in range(5000, 7000, 50)]
        self.accounts = accounts
        self.vendor_account = [rng.choice(accounts) for _ in self.vendors]
        self.vendor_item = [rng.randrange(len(_ITEMS)) for _ in self.vendors]

        # Known vendors: everything but a sample from the less popular half of the pool.
        n = len(self.vendors)
        unknown_count = n - round(n * args.known_fraction)
        tail_start = max(0, n - max(2 * unknown_count, n // 2))
        self.unknown = set(rng.sample(range(tail_start, n), unknown_count)) if unknown_count else set()

        self.mu = math.log(MEDIAN_CENTS)
        self.vague_rate = args.vague_rate
        self.structuring_rate = args.structuring_rate
        self.duplicate_rate = args.duplicate_rate
        self.round_rate = args.round_rate
        self.grouped_rate = args.grouped_rate
        self.chunk_size = args.chunk_size

        self.pending: list[tuple[int, int, tuple]] = []  # (due row, tiebreak, (vendor, cents, memo, pattern, group))
        self.tiebreak = itertools.count()
        self.truth: list[tuple[str, str, int]] = []  # (id, pattern, group) for --truth-out
        self.counts = {"structuring_groups": 0, "structuring_rows": 0, "duplicate_pairs": 0, "round_amounts": 0, "vague_memos": 0}
        self.group_ids = itertools.count(1)
        self.day_strings = [(self.start + dt.timedelta(days=d)).isoformat() for d in range(self.days)]
        # How far ahead a follow-up may land and still be within its window (dates follow row order).
        self.dup_spread = self._spread(DUPLICATE_WINDOW_DAYS)
        self.struct_spread = self._spread(STRUCTURING_WINDOW_DAYS - 1)

    def _spread(self, window_days: int) -> int:
        # Rows i and i + d are at most ceil(d / rows_per_day) days apart; keep a margin for
        # follow-ups that wait behind others due on the same row.
        return max(1, min(MAX_SPREAD_ROWS, self.rows // 20, int(self.rows_per_day * window_days * 0.9)))

    def _memo(self, vendor: int) -> str:
        rng = self.rng
        r = rng.random()
        if r < self.vague_rate:
            self.counts["vague_memos"] += 1
            return VAGUE_MEMOS[rng.randrange(len(VAGUE_MEMOS))]
        if r < 0.45:
            return f"Invoice INV-{rng.randrange(10_000, 1_000_000)}"
        if r < 0.65:
            return f"PO {rng.randrange(1000, 100_000)} - {_ITEMS[self.vendor_item[vendor]]}"
        if r < 0.85:
            return _ITEMS[self.vendor_item[vendor]]
        return _ITEMS[rng.randrange(len(_ITEMS))]

    def _amount(self) -> int:
        cents = int(math.exp(self.rng.gauss(self.mu, SIGMA)) + 0.5)
        return min(max(cents, 1), MAX_CENTS)

    def _schedule(self, due: int, row: tuple) -> None:
        heapq.heappush(self.pending, (due, next(self.tiebreak), row))

    def _inject(self, r: float, pos: int, vendor: int, cents: int, memo: str) -> tuple:
        """Start the pattern that ``r`` (uniform below the sum of the rates) picks at row ``pos``;
        return the row to write now."""
        rng = self.rng
        # Only start patterns that can finish before the end of the file.
        room = self.rows - pos - len(self.pending) - 1
        if r < self.structuring_rate and room > self.struct_spread + 10:
            group = next(self.group_ids)
            size = rng.randint(3, 5)
            self.counts["structuring_groups"] += 1
            self.counts["structuring_rows"] += size
            for _ in range(size - 1):
                amount = rng.randint(STRUCTURING_LOW, STRUCTURING_HIGH)
                self._schedule(pos + rng.randint(1, self.struct_spread), (vendor, amount, self._memo(vendor), "structuring", group))
            return (vendor, rng.randint(STRUCTURING_LOW, STRUCTURING_HIGH), memo, "structuring", group)
        r -= self.structuring_rate
        if r < self.duplicate_rate and room > self.dup_spread + 10:
            group = next(self.group_ids)
            self.counts["duplicate_pairs"] += 1
            self._schedule(pos + rng.randint(1, self.dup_spread), (vendor, cents, memo, "duplicate", group))
            return (vendor, cents, memo, "duplicate", group)
        r -= self.duplicate_rate
        if r < self.round_rate:
            self.counts["round_amounts"] += 1
            thousands = min(max(1, int(math.exp(rng.gauss(math.log(3), 1.0)))), 500)
            return (vendor, thousands * 100_000, memo, "round", 0)
        return (vendor, cents, memo, "", 0)

    def chunks(self, want_truth: bool):
        rng = self.rng
        rows, chunk_size = self.rows, self.chunk_size
        days, day_strings, pending = self.days, self.day_strings, self.pending
        vendor_fields, vendor_account, accounts = self.vendor_fields, self.vendor_account, self.accounts
        grouped_rate, width = self.grouped_rate, self.id_width
        inject_rate = self.structuring_rate + self.duplicate_rate + self.round_rate
        population = range(len(self.vendors))
        pos = 0
        while pos < rows:
            n = min(chunk_size, rows - pos)
            picks = rng.choices(population, cum_weights=self.cum_weights, k=n)
            lines: list[str] = []
            append = lines.append
            for vendor in picks:
                # A follow-up row is due (or the file is about to end): write it instead.
                if pending and (pending[0][0] <= pos or rows - pos <= len(pending)):
                    row = heapq.heappop(pending)[2]
                else:
                    cents = self._amount()
                    memo = self._memo(vendor)
                    r = rng.random()
                    if r < inject_rate:
                        row = self._inject(r, pos, vendor, cents, memo)
                    else:
                        row = (vendor, cents, memo, "", 0)
                v, cents, memo, pattern, group = row
                pos += 1
                txn_id = f"B-{pos:0{width}d}"
                if want_truth and pattern:
                    self.truth.append((txn_id, pattern, group))
                account = vendor_account[v] if rng.random() < 0.9 else accounts[rng.randrange(len(accounts))]
                amount = format_cents(cents, cents >= 100_000 and rng.random() < grouped_rate)
                day = day_strings[(pos - 1) * days // rows]
                append(f"{txn_id},{day},{amount},{CURRENCY},{vendor_fields[v]},{memo},{account}\n")
            yield lines
        assert not pending, "every injected follow-up must be written"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, required=True, help="number of transactions to write")
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7); same arguments, same bytes")
    p.add_argument("--out", type=Path, required=True, help="ledger CSV to write (written to a .tmp file, then renamed)")
    p.add_argument("--vendors-out", type=Path, help="also write the known-vendors file here")
    p.add_argument("--known-fraction", type=float, default=0.9, help="share of the vendor pool that is known (default 0.9)")
    p.add_argument("--truth-out", type=Path, help="also write id,pattern,group for every injected row")
    p.add_argument("--vendors", type=int, default=5000, help="vendor pool size (default 5000)")
    p.add_argument("--zipf", type=float, default=1.0, help="Zipf exponent of vendor popularity (default 1.0)")
    p.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2026, 11, 24), help="first date (default 2026-11-24)")
    p.add_argument("--days", type=int, default=1, help="number of days the rows are spread over (default 1)")
    p.add_argument("--vague-rate", type=float, default=0.01, help="share of vague memos (default 0.01)")
    p.add_argument("--structuring-rate", type=float, default=0.0005, help="structuring groups started per row (default 0.0005)")
    p.add_argument("--duplicate-rate", type=float, default=0.002, help="duplicate pairs started per row (default 0.002)")
    p.add_argument("--round-rate", type=float, default=0.005, help="share of round amounts (default 0.005)")
    p.add_argument("--grouped-rate", type=float, default=0.33, help="share of amounts >= 1,000 written as \"1,234.56\" (default 0.33)")
    p.add_argument("--chunk-size", type=int, default=50_000, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.rows < 1:
        p.error("--rows must be at least 1")
    if args.vendors < 1 or args.days < 1:
        p.error("--vendors and --days must be at least 1")
    if not 0.0 <= args.known_fraction <= 1.0:
        p.error("--known-fraction must be between 0 and 1")
    if args.structuring_rate + args.duplicate_rate + args.round_rate >= 1:
        p.error("the pattern rates must add up to less than 1")
    if args.rows < 100 * args.days:
        print("warning: fewer than 100 rows a day; injected patterns may not stay within their windows", file=sys.stderr)
    return args


def _write_atomically(path: Path, lines) -> int:
    """Write an iterable of line lists to ``path`` via a temporary file; return bytes written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    size = 0
    with open(tmp, "w", encoding="utf-8", newline="") as out:
        for chunk in lines:
            text = "".join(chunk)
            size += len(text.encode("utf-8"))
            out.write(text)
    os.replace(tmp, path)
    return size


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    started = time.perf_counter()
    ledger = Ledger(args)
    size = _write_atomically(args.out, itertools.chain([[HEADER + "\n"]], ledger.chunks(bool(args.truth_out))))
    elapsed = time.perf_counter() - started

    if args.vendors_out:
        known = [name for rank, name in enumerate(ledger.vendors) if rank not in ledger.unknown]
        known.sort(key=str.casefold)
        _write_atomically(args.vendors_out, [["vendor\n"], [_csv_field(name) + "\n" for name in known]])
    if args.truth_out:
        _write_atomically(args.truth_out, [["id,pattern,group\n"], [f"{i},{p},{g}\n" for i, p, g in ledger.truth]])

    c = ledger.counts
    print(
        f"wrote {args.rows:,} rows ({size / 2**20:,.1f} MiB) to {args.out} in {elapsed:.2f} s; "
        f"{len(ledger.vendors):,} vendors ({len(ledger.vendors) - len(ledger.unknown):,} known); "
        f"injected: {c['structuring_groups']} structuring groups ({c['structuring_rows']} rows), "
        f"{c['duplicate_pairs']} duplicate pairs, {c['round_amounts']} round amounts; {c['vague_memos']} vague memos",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
