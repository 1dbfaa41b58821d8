"""Read a ledger column-wise with polars, to exactly what `ingest.read_ledger` reads.

This is how every ledger is read. `ingest` reads row by row in Python, about 20 µs a row:
fine for thousands of rows, a minute for a million. Here polars parses the CSV in blocks of `BLOCK_BYTES`, every cell as
text, and the checks and conversions are column expressions: cleaning (only where a cell
needs it), dates (each distinct text parsed once by `ingest`'s own function), currencies,
and amounts, whose integer minor units are computed from the digit strings, never through
a float. Rows in a shape the expressions do not cover (symbols, parentheses, codes, odd
dates, empty ids) are read by `ingest`'s own row function, which either accepts them or
raises its precise ``file:line: column: what is wrong``. Duplicate ids are found by hash
and confirmed by text, and the earliest problem in the file is the one reported, as
`ingest` would.

A file the blocks cannot read with the same meaning as `ingest` raises `Unsupported`, and
the caller reads it with `ingest` instead: anything not UTF-8, NUL bytes, line breaks inside
quotes, blank lines, a lone CR, a quote after a space (Python's csv skips the space, polars
does not), or a row with the wrong number of fields (checked by counting delimiters:
every row must have exactly the header's). Physical line numbers are then simply the row's
position plus 2.

A ledger is kept as its blocks (`Block`): in memory, or, for a run too big to hold, each
written to an Arrow IPC file as soon as it is read and loaded again one at a time.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl
from polars.datatypes import DataTypeClass

from job.errors import LedgerError
from job.ledger.ingest import (
    ALL_COLUMNS,
    LedgerFormat,
    Transaction,
    build_transaction,
    clean_field,
    currency_exponent,
    detect_delimiter,
    map_columns,
    parse_date,
    show_text,
)

__all__ = ["Block", "FrameLedger", "Unsupported", "TXN_SCHEMA", "read_ledger_fast", "transactions_frame", "frame_transactions"]

BLOCK_BYTES = 32 << 20
MAX_UNIT_DIGITS = 14  # larger amounts are left to `ingest` (and never fit SQLite's 64 bits anyway)
TXN_SCHEMA: dict[str, pl.DataType | DataTypeClass] = {
    "txn_id": pl.String,
    "date": pl.Date,
    "amount_minor": pl.Int64,
    "currency": pl.String,
    "vendor": pl.String,
    "memo": pl.String,
    "account": pl.String,
    "line": pl.Int64,
}
# What str.isspace() accepts, i.e. what str.strip() strips (a test checks it against Python).
PY_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
_LINE_BREAKS = r"[\t\n\x0b\x0c\r\x{85}\x{2028}\x{2029}]+"
_CONTROLS = r"[\x00-\x1f\x7f-\x{9f}]"
_NEEDS_CLEANING = r"[\x00-\x1f\x7f-\x{9f}\x{2028}\x{2029}]|^\s|\s$"


class Unsupported(Exception):
    """This file has a feature the column-wise reader does not read exactly like `ingest`."""


class Block:
    """Consecutive rows of a ledger (columns of `TXN_SCHEMA`): in memory, or in an Arrow IPC
    file when the run is too big to hold (`spill`), read back one block at a time."""

    __slots__ = ("_frame", "path", "rows")

    def __init__(self, frame: pl.DataFrame, spill: Path | None = None) -> None:
        self.rows = frame.height
        self._frame: pl.DataFrame | None = frame
        self.path: Path | None = None
        if spill is not None:
            frame.write_ipc(spill, compression="lz4")
            self._frame, self.path = None, spill

    def load(self, columns: list[str] | None = None) -> pl.DataFrame:
        if self._frame is not None:
            return self._frame if columns is None else self._frame.select(columns)
        assert self.path is not None, "a block is in memory or spilled to a file"
        return pl.read_ipc(self.path, columns=columns)


@dataclass(frozen=True, slots=True)
class FrameLedger:
    """A ledger read column-wise: its rows in blocks, in file order."""

    path: str
    name: str
    sha256: str
    blocks: tuple[Block, ...]
    format: str = "csv"  # the export format it was read as (`ledger.formats`)

    @property
    def rows(self) -> int:
        return sum(b.rows for b in self.blocks)

    @property
    def frame(self) -> pl.DataFrame:
        """All rows in one frame (for small ledgers and tests)."""
        frames = [b.load() for b in self.blocks]
        return pl.concat(frames, rechunk=False) if frames else pl.DataFrame(schema=TXN_SCHEMA)

    @classmethod
    def of(cls, path: str, name: str, sha256: str, frame: pl.DataFrame) -> FrameLedger:
        return cls(path, name, sha256, (Block(frame),) if frame.height else ())


def transactions_frame(transactions: list[Transaction]) -> pl.DataFrame:
    """The frame of transactions `ingest` read."""
    return pl.DataFrame(
        {
            "txn_id": [t.txn_id for t in transactions],
            "date": [date.fromisoformat(t.date) for t in transactions],
            "amount_minor": [t.amount_minor for t in transactions],
            "currency": [t.currency for t in transactions],
            "vendor": [t.vendor for t in transactions],
            "memo": [t.memo for t in transactions],
            "account": [t.account for t in transactions],
            "line": [t.line for t in transactions],
        },
        schema=TXN_SCHEMA,
    )


def frame_transactions(frame: pl.DataFrame) -> list[Transaction]:
    """Rows of a transactions frame as `Transaction`s (for the few rows that need them)."""
    return [
        Transaction(txn_id, day.isoformat(), amount, currency, vendor, memo, account, line)
        for txn_id, day, amount, currency, vendor, memo, account, line in frame.select(list(TXN_SCHEMA)).iter_rows()
    ]


def read_ledger_fast(
    path: str | os.PathLike,
    fmt: LedgerFormat = LedgerFormat(),
    *,
    progress: Callable[[int, int], None] | None = None,
    spill: Path | None = None,
) -> FrameLedger:
    """Read and validate one ledger file column-wise; raise `Unsupported` to ask for `ingest`.

    With `spill` (a folder), each block is written there as it is read, so memory holds one
    block at a time; the caller removes the folder when the run is done.
    """
    shown = os.fsdecode(path)
    if not codecs.lookup(fmt.encodings[0]).name.startswith("utf-8"):
        raise Unsupported("the first encoding to try is not UTF-8")
    try:
        handle = open(path, "rb")
    except OSError as error:
        raise LedgerError(shown, None, None, f"cannot read file: {error.strerror or error}") from None
    with handle:
        reader = _BlockReader(handle, shown, fmt, os.fstat(handle.fileno()).st_size, progress, spill)
        blocks = reader.read()
    return FrameLedger(shown, os.path.basename(shown), reader.sha256, tuple(blocks))


class _BlockReader:
    def __init__(self, handle, path: str, fmt: LedgerFormat, size: int, progress, spill: Path | None) -> None:
        self.handle, self.path, self.fmt, self.size, self.progress, self.spill = handle, path, fmt, size, progress, spill
        self.hasher = hashlib.sha256()
        self.sha256 = ""
        self.done = 0
        self.blocks: list[Block] = []
        self.hashes: list[pl.Series] = []  # per block: the ids' hashes, for duplicates
        self.current: pl.Series | None = None  # the ids of the block being read
        self.rows_before = 0

    def _read(self, n: int) -> bytes:
        data = self.handle.read(n)
        self.hasher.update(data)
        self.done += len(data)
        return data

    def read(self) -> list[Block]:
        data = self._read(BLOCK_BYTES)
        if not data:
            raise Unsupported("empty file")
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            raise Unsupported("UTF-16")
        data = data.removeprefix(codecs.BOM_UTF8)
        while (end := data.find(b"\n")) < 0:  # the header may be longer than a block
            more = self._read(BLOCK_BYTES)
            if not more:
                raise Unsupported("no line after the header")
            data += more
        header = data[:end].removesuffix(b"\r")
        data = data[end + 1 :]
        self._read_header(header)
        while True:
            more = self._read(BLOCK_BYTES)
            if more:
                data += more
                cut = data.rfind(b"\n")
                if cut < 0:
                    continue
                block, data = data[: cut + 1], data[cut + 1 :]
            else:
                block, data = data, b""
            if block:
                frame = self._block(block)
                where = (
                    None
                    if self.spill is None
                    else self.spill / f"{hashlib.sha256(self.path.encode()).hexdigest()[:12]}-{len(self.blocks)}.arrow"
                )
                self.blocks.append(Block(frame, where))
                self.current = None
            if self.progress is not None:
                self.progress(self.done, self.size)
            if not more and not data:
                break
        self.sha256 = self.hasher.hexdigest()
        self._check_duplicates(None)
        return self.blocks

    def _read_header(self, header: bytes) -> None:
        if b"\x00" in header:
            raise Unsupported("NUL bytes")
        try:
            text = header.decode("utf-8")
        except UnicodeDecodeError:
            raise Unsupported("not UTF-8") from None
        if not text.strip() or '"' in text:
            raise Unsupported("blank or quoted header")
        labels = {name: self.fmt.columns.get(name, name) for name in ALL_COLUMNS}
        self.delimiter = self.fmt.delimiter or detect_delimiter(text, labels, self.path)
        if "\r" in text:
            raise Unsupported("a lone CR")
        [cells] = list(csv.reader([text], delimiter=self.delimiter, strict=True, skipinitialspace=True))
        headers = [clean_field(c) for c in cells]
        self.width = len(headers)
        self.columns = map_columns(headers, labels, self.path, 1)
        self.names = {name: headers[index] for name, index in self.columns.items()}

    # --- one block ---------------------------------------------------------------------

    def _block(self, data: bytes) -> pl.DataFrame:
        if b"\x00" in data:
            raise Unsupported("NUL bytes")
        if b"\r" in data and data.count(b"\r") != data.count(b"\r\n"):
            raise Unsupported("a lone CR")
        lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
        raw_columns = [f"c{i}" for i in range(self.width)]
        try:
            cells = pl.read_csv(
                data,
                has_header=False,
                new_columns=raw_columns,
                schema={c: pl.String for c in raw_columns},
                separator=self.delimiter,
                quote_char='"',
                infer_schema=False,
                empty_string_is_null=False,
                truncate_ragged_lines=False,
                raise_if_empty=False,
            )
        except Exception as exc:  # polars refuses what Python's csv might still read
            raise Unsupported(f"polars: {str(exc)[:80]}") from None
        if cells.height != lines:
            raise Unsupported("line breaks inside quotes or blank lines")
        delimiter = self.delimiter
        in_values = 0
        if b'"' in data:  # only a quoted value can hold the delimiter
            in_values = cells.select(
                pl.sum_horizontal(pl.col(c).str.count_matches(delimiter, literal=True).sum() for c in raw_columns)
            ).item()
        if data.count(delimiter.encode()) != cells.height * (self.width - 1) + (in_values or 0):
            raise Unsupported("a row with fewer fields than the header")
        wanted = {name: f"c{index}" for name, index in self.columns.items()}
        cells = cells.select([pl.col(raw).alias(name) for name, raw in wanted.items()])
        cells = self._clean(cells, ascii_only=data.isascii())
        if cells.select(pl.all_horizontal(pl.col(c) == "" for c in cells.columns).any()).item():
            raise Unsupported("blank rows")
        frame = self._convert(cells)
        self.rows_before += cells.height
        return frame

    def _clean(self, cells: pl.DataFrame, *, ascii_only: bool) -> pl.DataFrame:
        """`ingest.clean_field` on the cells that need it (most need nothing)."""
        if ascii_only:  # then the only whitespace that is not a control character is the space
            checks = [pl.col(c).str.contains(r"^ |[\x00-\x1f\x7f]| $").any() for c in cells.columns]
        else:
            checks = [pl.col(c).str.contains(_NEEDS_CLEANING).any() for c in cells.columns]
        dirty = [c for c, flag in zip(cells.columns, cells.select(checks).row(0)) if flag]
        if not dirty:
            return cells
        if cells.select(pl.any_horizontal(pl.col(c).str.contains(r'^ +"') for c in dirty).any()).item():
            raise Unsupported("a quote after a space")
        return cells.with_columns(
            pl.col(c).str.replace_all(_LINE_BREAKS, " ").str.replace_all(_CONTROLS, "").str.strip_chars(PY_WHITESPACE) for c in dirty
        )

    def _convert(self, cells: pl.DataFrame) -> pl.DataFrame:
        fmt = self.fmt
        n = cells.height
        # currency: each distinct text once: its code (upper-cased) and exponent, or None
        if "currency" in cells.columns:
            codes = {t: t.upper() for t in cells["currency"].unique().to_list() if re.fullmatch(r"[A-Za-z]{3}", t)}
            context = pl.col("currency").replace_strict(codes, default=None, return_dtype=pl.String)
        else:
            codes = {fmt.default_currency: fmt.default_currency}
            context = pl.lit(fmt.default_currency, dtype=pl.String)
        exponents = {code: currency_exponent(code) for code in set(codes.values())}
        # dates: each distinct text once, by ingest's own parser
        meanings: dict[str, date | None] = {}
        for text in cells["date"].unique().to_list():
            try:
                meanings[text] = date.fromisoformat(parse_date(text, fmt.date_formats))
            except ValueError:
                meanings[text] = None
        # amounts of the plain shapes, -1234.56 and -1,234.56 (with this format's separators):
        # integer minor units from the digit strings
        point, group = re.escape(fmt.decimal_separator), re.escape(fmt.thousands_separator)
        units = rf"(?:[0-9]{{1,3}}(?:{group}[0-9]{{3}})+|[0-9]+)" if group else r"[0-9]+"
        shape = rf"^-?{units}(?:{point}[0-9]+)?$"
        digits = pl.col("amount").str.strip_prefix("-")
        if fmt.thousands_separator:
            digits = digits.str.replace_all(fmt.thousands_separator, "", literal=True)
        parts = digits.str.split_exact(fmt.decimal_separator, 1)
        exponent = pl.col("context").replace_strict(exponents, default=None, return_dtype=pl.Int64)
        first_line = self.rows_before + 2
        frame = (
            cells.lazy()
            .with_columns(context=context, day=pl.col("date").replace_strict(meanings, default=None, return_dtype=pl.Date))
            .with_columns(
                exponent=exponent,
                whole=parts.struct.field("field_0"),
                fraction=parts.struct.field("field_1").fill_null(""),
                shaped=pl.col("amount").str.contains(shape),
            )
            .with_columns(
                magnitude=pl.col("whole").cast(pl.Int64, strict=False) * pl.lit(10, dtype=pl.Int64).pow(pl.col("exponent"))
                + pl.col("fraction").str.pad_end(8, "0").str.slice(0, pl.col("exponent")).cast(pl.Int64, strict=False).fill_null(0),
                fast=(
                    pl.col("shaped")
                    & pl.col("exponent").is_not_null()
                    & pl.col("day").is_not_null()
                    & (pl.col("fraction").str.len_bytes() <= pl.col("exponent"))
                    & (pl.col("whole").str.len_bytes() <= MAX_UNIT_DIGITS)
                    & (pl.col("id") != "")
                    & (pl.col("vendor") != "")
                ),
            )
            .select(
                txn_id=pl.col("id"),
                date=pl.col("day"),
                amount_minor=pl.when(pl.col("amount").str.starts_with("-")).then(-pl.col("magnitude")).otherwise(pl.col("magnitude")),
                currency=pl.col("context"),
                vendor=pl.col("vendor"),
                memo=pl.col("memo") if "memo" in cells.columns else pl.lit("", dtype=pl.String),
                account=pl.col("account") if "account" in cells.columns else pl.lit("", dtype=pl.String),
                line=pl.int_range(first_line, first_line + n, dtype=pl.Int64),
                fast=pl.col("fast"),
            )
            .collect()
        )
        slow = frame["fast"].not_().arg_true()
        out = frame.drop("fast")
        if slow.len():
            out = self._read_slow_rows(cells, out, slow.to_list(), first_line)
        self.current = out["txn_id"]
        self.hashes.append(self.current.hash(seed=0))
        return out

    def _read_slow_rows(self, cells: pl.DataFrame, out: pl.DataFrame, rows: list[int], first_line: int) -> pl.DataFrame:
        """`ingest`'s row function for the rows the expressions did not cover, in file order."""
        read: list[Transaction] = []
        for index, values in zip(rows, cells[rows].iter_rows(named=True)):
            try:
                read.append(build_transaction(values, self.names, self.fmt, self.path, first_line + index))
            except LedgerError as error:
                self.current = out["txn_id"][: index + 1]
                self.hashes.append(self.current.hash(seed=0))
                self._check_duplicates(first_line + index)  # an earlier duplicate id wins
                raise error from None
        fixed = transactions_frame(read).with_columns(row=pl.Series(rows, dtype=pl.UInt32))
        return out.with_row_index("row").update(fixed, on="row", how="left").drop("row").cast(pl.Schema(TXN_SCHEMA))

    def _check_duplicates(self, before_line: int | None) -> None:
        """Raise for the first repeated id (on a line before `before_line`, if given)."""
        if not self.hashes:
            return
        repeats = pl.concat(self.hashes, rechunk=True).is_first_distinct().not_().arg_true()
        if repeats.len() == 0:
            return
        ids = pl.concat([b.load(["txn_id"])["txn_id"] for b in self.blocks] + ([self.current] if self.current is not None else []))
        for row in repeats.to_list():  # a repeated hash is a repeated id unless the hash collided
            line = row + 2
            if before_line is not None and line >= before_line:
                return
            txn_id = ids[row]
            first = ids.head(row + 1).eq(txn_id).arg_true()[0]
            if first < row:
                raise LedgerError(self.path, line, self.names["id"], f"duplicate id {show_text(txn_id)} (first on line {first + 2})")
