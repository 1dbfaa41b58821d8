"""What every format reader shares: exact money and dates, derived ids, problems, the frame.

A reader finds transactions one at a time and hands each to `Rows`, which gathers them into
the engine's frame (`ingest_fast.TXN_SCHEMA`) in chunks, derives the ids an export does not
give, and refuses a repeated id. A reader reports what it cannot read to `Problems`: a
normal read raises the first as `LedgerError` (one line naming the file and the line or XML
element); `audit inspect` collects them all and carries on with the next record.
"""

from __future__ import annotations

import codecs
import functools
import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

import polars as pl

from job.errors import LedgerError
from job.ledger.ingest import currency_exponent, parse_date
from job.ledger.ingest_fast import TXN_SCHEMA, FrameLedger

__all__ = [
    "CHUNK_ROWS",
    "Problems",
    "Reading",
    "ReadOptions",
    "Rows",
    "clean_text",
    "decimal_minor",
    "decode_text",
    "derive_key",
    "file_sha256",
    "finish_reading",
    "check_currency",
    "parse_day",
    "read_bytes",
    "HashingReader",
    "open_hashing",
    "show",
]

CHUNK_ROWS = 100_000  # rows gathered in Python lists before they become a frame chunk
_LINE_BREAKS = re.compile(r"[\t\n\v\f\r\x85\u2028\u2029]+")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CODE = re.compile(r"[A-Z]{3}")
_DECIMAL_POINT = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?")
_DECIMAL_COMMA = re.compile(r"([+-]?)([0-9]*)(?:,([0-9]*))?")


@dataclass(frozen=True, slots=True)
class ReadOptions:
    """Settings a reader may need; every format has defaults for its own exports."""

    default_currency: str = "USD"  # for exports that never name a currency (QuickBooks, Xero, NetSuite)
    date_formats: tuple[str, ...] | None = None  # None: the format's own (e.g. QuickBooks %m/%d/%Y)


class Problems:
    """Where a reader reports what it cannot read: raised at once, or collected (`collect`)."""

    def __init__(self, path: str, *, collect: bool = False, limit: int = 1000) -> None:
        self.path, self.collect, self.limit = path, collect, limit
        self.found: list[LedgerError] = []
        self.more = 0  # problems past `limit`, counted but not kept

    def add(self, line: int | None, where: str | None, problem: str) -> None:
        error = LedgerError(self.path, line, where, problem)
        if not self.collect:
            raise error
        if len(self.found) < self.limit:
            self.found.append(error)
        else:
            self.more += 1

    def fail(self, line: int | None, where: str | None, problem: str) -> LedgerError:
        """A problem after which nothing more of the file can be read: raise what this returns."""
        return LedgerError(self.path, line, where, problem)


@dataclass(slots=True)
class Reading:
    """One file read by one format: the ledger, how it was read, and what could not be read."""

    ledger: FrameLedger
    format: str
    mapping: dict[str, str]  # engine column -> where the format takes it from
    notes: list[str] = field(default_factory=list)
    problems: list[LedgerError] = field(default_factory=list)
    more_problems: int = 0


def show(text: str) -> str:
    """A value as an error message quotes it: repr, at most 60 characters."""
    return repr(text if len(text) <= 60 else text[:57] + "...")


def clean_text(text: str) -> str:
    """Line breaks and tabs become one space, other control characters go, ends are stripped
    (as the CSV reader cleans its cells)."""
    if text.isprintable() and text == text.strip():  # most texts: nothing to clean
        return text
    return _CONTROLS.sub("", _LINE_BREAKS.sub(" ", text)).strip()


def decimal_minor(text: str, currency: str, *, point: str = ".") -> int:
    """Exact integer minor units of a plain decimal such as ``-1250.5`` (or ``1250,50`` with
    `point` ``,``); decimals past the currency's are allowed only when they are zeros.
    Raises ValueError with a short message."""
    match = (_DECIMAL_POINT if point == "." else _DECIMAL_COMMA).fullmatch(text.strip())
    if not match or not (match[2] or match[3]):
        raise ValueError(f"{show(text)} is not an amount")
    places = currency_exponent(currency)
    fraction = match[3] or ""
    if fraction[places:].strip("0"):
        raise ValueError(f"{show(text)} has more decimals than {currency} allows ({places})")
    minor = int(match[2] or "0") * 10**places + int(fraction[:places].ljust(places, "0") or "0")
    if minor >= 2**63:
        raise ValueError(f"{show(text)} is too large to record exactly")
    return -minor if match[1] == "-" else minor


@functools.lru_cache(maxsize=512)
def check_currency(code: str) -> str:
    """An ISO 4217 code as the engine records it (upper case), or ValueError."""
    upper = code.strip().upper()
    if not _CODE.fullmatch(upper):
        raise ValueError(f"{show(code)} is not a 3-letter currency code")
    return upper


def parse_day(text: str, formats: Iterable[str]) -> date:
    """The one date `text` means under `formats` (strptime); ValueError if none or two (`ingest.parse_date`)."""
    return date.fromisoformat(parse_date(text, tuple(formats)))


def derive_key(prefix: str, facts: Iterable[object]) -> str:
    """The stable part of a derived id: the first 16 hex digits of SHA-256 over the format
    and the row's facts (unit separator between them)."""
    text = "\x1f".join([prefix, *(str(f) for f in facts)])
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


class Rows:
    """Transactions in file order, gathered into the engine's frame.

    A row without an id of its own gets ``<prefix>-<key>-<n>``: `key` from `derive_key` over
    the row's facts, `n` the row's occurrence among rows with the same facts in this file
    (1, 2, …). A repeated id is a problem on the later row's line.
    """

    def __init__(self, prefix: str, problems: Problems) -> None:
        self.prefix, self.problems = prefix, problems
        self.chunks: list[pl.DataFrame] = []
        self._reset()

    def _reset(self) -> None:
        self.ids: list[str | None] = []
        self.keys: list[str | None] = []
        self.days: list[date] = []
        self.amounts: list[int] = []
        self.currencies: list[str] = []
        self.vendors: list[str] = []
        self.memos: list[str] = []
        self.accounts: list[str] = []
        self.lines: list[int] = []

    def add(
        self,
        txn_id: str | None,
        day: date,
        amount_minor: int,
        currency: str,
        vendor: str,
        memo: str,
        account: str,
        line: int,
        facts: Iterable[object] = (),
    ) -> None:
        """One transaction; `txn_id` None derives one from `facts` and the engine columns."""
        if txn_id is None:
            key = derive_key(self.prefix, (account, day.isoformat(), amount_minor, currency, vendor, memo, *facts))
        else:
            key = None
        self.ids.append(txn_id)
        self.keys.append(key)
        self.days.append(day)
        self.amounts.append(amount_minor)
        self.currencies.append(currency)
        self.vendors.append(vendor)
        self.memos.append(memo)
        self.accounts.append(account)
        self.lines.append(line)
        if len(self.lines) >= CHUNK_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self.lines:
            return
        self.chunks.append(
            pl.DataFrame(
                {
                    "txn_id": self.ids,
                    "key": self.keys,
                    "date": self.days,
                    "amount_minor": self.amounts,
                    "currency": self.currencies,
                    "vendor": self.vendors,
                    "memo": self.memos,
                    "account": self.accounts,
                    "line": self.lines,
                },
                schema={"txn_id": pl.String, "key": pl.String, **{k: v for k, v in TXN_SCHEMA.items() if k != "txn_id"}},
            )
        )
        self._reset()

    def frame(self, id_column: str = "id") -> pl.DataFrame:
        """All rows as the engine's frame, derived ids filled in, repeated ids reported."""
        self._flush()
        if not self.chunks:
            return pl.DataFrame(schema=TXN_SCHEMA)
        frame = pl.concat(self.chunks, rechunk=True)
        self.chunks = []
        occurrence = pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over("key").cast(pl.String)
        frame = frame.with_columns(
            txn_id=pl.when(pl.col("key").is_not_null())
            .then(pl.lit(self.prefix + "-") + pl.col("key") + pl.lit("-") + occurrence)
            .otherwise(pl.col("txn_id"))
        ).select(list(TXN_SCHEMA))
        self._check_unique(frame, id_column)
        return frame

    def _check_unique(self, frame: pl.DataFrame, id_column: str) -> None:
        repeats = frame.with_row_index("row").filter(pl.col("txn_id").is_first_distinct().not_())
        if not repeats.height:
            return
        first_lines = frame.group_by("txn_id").agg(pl.col("line").first().alias("first"))
        for txn_id, line, first in repeats.join(first_lines, on="txn_id").sort("row").select("txn_id", "line", "first").iter_rows():
            self.problems.add(line, id_column, f"duplicate id {show(txn_id)} (first on line {first})")


def read_bytes(path: str | os.PathLike) -> tuple[str, bytes]:
    """(path as shown, the file's bytes); an unreadable or empty file is a `LedgerError`."""
    shown = os.fsdecode(path)
    try:
        with open(path, "rb") as stream:
            raw = stream.read()
    except OSError as error:
        raise LedgerError(shown, None, None, f"cannot read file: {error.strerror or error}") from None
    if not raw:
        raise LedgerError(shown, None, None, "file is empty")
    return shown, raw


def file_sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


class HashingReader:
    """A binary file whose bytes are hashed as they are read (for readers that stream)."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self.hasher = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.handle.read(n)
        self.hasher.update(data)
        self.size += len(data)
        return data

    def readline(self) -> bytes:
        data = self.handle.readline()
        self.hasher.update(data)
        self.size += len(data)
        return data

    def __iter__(self):
        return iter(self.readline, b"")

    def finish(self) -> str:
        """Read whatever is left (so the hash covers the whole file) and return the hex digest."""
        while self.read(1 << 20):
            pass
        return self.hasher.hexdigest()

    def close(self) -> None:
        self.handle.close()


def open_hashing(path: str | os.PathLike) -> tuple[str, HashingReader]:
    shown = os.fsdecode(path)
    try:
        handle = open(path, "rb")
    except OSError as error:
        raise LedgerError(shown, None, None, f"cannot read file: {error.strerror or error}") from None
    return shown, HashingReader(handle)


def decode_text(raw: bytes, path: str, encodings: tuple[str, ...] = ("utf-8", "cp1252")) -> str:
    """The file's text: a byte order mark decides (UTF-8 or UTF-16), else the first of
    `encodings` that decodes every byte. NUL bytes (other than UTF-16's) are refused."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError:
            raise LedgerError(path, None, None, "cannot decode the file as UTF-16 (it starts with a UTF-16 byte order mark)") from None
    if b"\x00" in raw:
        raise LedgerError(path, None, None, "not a text file: it contains NUL bytes (binary data?)")
    if raw.startswith(codecs.BOM_UTF8):
        encodings = ("utf-8",)
        raw = raw[len(codecs.BOM_UTF8) :]
    failures = []
    for encoding in encodings:
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError as error:
            line = raw.count(b"\n", 0, error.start) + 1
            failures.append(f"{encoding} (byte 0x{raw[error.start]:02x} on line {line})")
    raise LedgerError(path, None, None, "cannot decode the file as " + " or ".join(failures))


def finish_reading(
    name: str, path: str, sha256: str, rows: Rows, mapping: dict[str, str], notes: list[str], problems: Problems, id_column: str = "id"
) -> Reading:
    """The `Reading` of a file whose rows are all in `rows` (repeated ids reported here)."""
    frame = rows.frame(id_column)
    ledger = FrameLedger.of(path, os.path.basename(path), sha256, frame)
    return Reading(ledger, name, mapping, notes, problems.found, problems.more)
