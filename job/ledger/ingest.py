"""Read one ledger CSV file into exact, validated transactions.

Money is integer minor units (cents) from the first character to the last; no float ever
touches an amount. Any bad row rejects the whole file with one ``LedgerError``
(``file:line: column: what is wrong``), where ``line`` is the physical line on which the
record starts. Only ``read_ledger`` does I/O; everything else is a pure function.
"""

from __future__ import annotations

import codecs
import csv
import functools
import hashlib
import io
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

from job.errors import LedgerError

__all__ = [
    "ALL_COLUMNS",
    "CANONICAL_COLUMNS",
    "Ledger",
    "LedgerFormat",
    "Transaction",
    "currency_exponent",
    "format_amount",
    "format_amount_display",
    "parse_amount",
    "read_ledger",
    # the row reader's pieces the column-wise reader (`ingest_fast`) uses, so both read alike
    "build_transaction",
    "clean_field",
    "detect_delimiter",
    "map_columns",
    "parse_date",
    "show_text",
]

CANONICAL_COLUMNS = ("id", "date", "amount", "currency", "vendor", "memo")
ALL_COLUMNS = CANONICAL_COLUMNS + ("account",)
_REQUIRED_COLUMNS = ("id", "date", "amount", "vendor")
_DELIMITERS = (",", ";", "\t")

_EXPONENTS = {  # ISO 4217 minor units that differ from the usual 2
    **dict.fromkeys("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split(), 0),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
    **dict.fromkeys("CLF UYW".split(), 4),
}
_DOLLARS = set("USD AUD BBD BMD BND BSD BZD CAD FJD HKD JMD KYD MXN NZD SGD TTD TWD XCD".split())
_SYMBOLS = {  # symbol -> (the code it means by default, codes it also stands for)
    "$": ("USD", _DOLLARS),
    "€": ("EUR", {"EUR"}),
    "£": ("GBP", {"GBP"}),
    "¥": ("JPY", {"JPY", "CNY"}),
}
_SIGNS = "+-\u2212"  # U+2212 is the typographic minus
_NON_FINITE = frozenset({"nan", "inf", "infinity"})
_CODE = re.compile(r"[A-Za-z]{3}")
_CODE_FIRST = re.compile(r"([A-Za-z]{3})(?![A-Za-z])\s*(.+)", re.S)
_CODE_LAST = re.compile(r"(.+?)\s*(?<![A-Za-z])([A-Za-z]{3})", re.S)
_EXPONENT = re.compile(r"[0-9.,' ]*[0-9][eE][+-]?[0-9]+")
_GROUP_LOOKALIKES = {" ": {0xA0: " ", 0x202F: " "}, "'": {0x2019: "'"}}  # no-break spaces, curly '
_DIGITS = re.compile(r"[0-9]*")
_LINE_BREAKS = re.compile(r"[\t\n\v\f\r\x85\u2028\u2029]+")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_LARGEST_FIELD = 2**31 - 1  # fits a C long on every platform


@dataclass(frozen=True, slots=True)
class Transaction:
    txn_id: str
    date: str  # ISO yyyy-mm-dd
    amount_minor: int  # exact integer minor units
    currency: str  # ISO 4217, upper-case
    vendor: str
    memo: str
    account: str  # "" when the column is absent
    line: int  # physical line on which the record starts (header is line 1)


@dataclass(frozen=True, slots=True)
class Ledger:
    path: str  # as given
    name: str  # basename
    sha256: str  # hex digest of the raw bytes
    transactions: list[Transaction]


@dataclass(frozen=True, slots=True)
class LedgerFormat:
    """How one source writes its ledgers; the defaults read a plain US-style CSV."""

    columns: Mapping[str, str] = field(default_factory=dict)  # canonical name -> header in file
    default_currency: str = "USD"
    date_formats: tuple[str, ...] = ("%Y-%m-%d",)
    decimal_separator: str = "."
    thousands_separator: str = ","
    delimiter: str | None = None  # None: detect from the header among , ; TAB
    encodings: tuple[str, ...] = ("utf-8-sig", "cp1252")

    def __post_init__(self) -> None:
        """Reject (ValueError) a format that could never read a file."""
        if unknown := sorted(set(self.columns) - set(ALL_COLUMNS)):
            raise ValueError(f"unknown column names {unknown}; known: {', '.join(ALL_COLUMNS)}")
        point, group = self.decimal_separator, self.thousands_separator
        if point not in (".", ",") or group not in (",", ".", " ", "'", "") or point == group:
            raise ValueError(f"unsupported separators: decimal {point!r}, thousands {group!r}")
        if self.delimiter not in (None, *_DELIMITERS):
            raise ValueError(f"delimiter {self.delimiter!r} is not ',', ';' or TAB")
        if not self.date_formats or not self.encodings or not all(map(_is_codec, self.encodings)):
            raise ValueError(f"need date formats and known encodings: {self.date_formats}, {self.encodings}")
        currency_exponent(self.default_currency)
        object.__setattr__(self, "default_currency", self.default_currency.upper())


def _is_codec(name: str) -> bool:
    try:
        return bool(codecs.lookup(name))
    except LookupError:
        return False


@functools.lru_cache(maxsize=256)
def currency_exponent(code: str) -> int:
    """Number of decimal places of an ISO 4217 currency (2 unless known otherwise)."""
    if not _CODE.fullmatch(code):
        raise ValueError(f"{show_text(code)} is not a 3-letter currency code")
    return _EXPONENTS.get(code.upper(), 2)


def format_amount(amount_minor: int, currency: str) -> str:
    """Exact plain decimal: 123456 USD -> '1234.56', -5 USD -> '-0.05', 100 JPY -> '100'."""
    return _format(amount_minor, currency, grouping="")


def format_amount_display(amount_minor: int, currency: str) -> str:
    """Exact decimal with thousands separators, for people: 1234567 USD -> '12,345.67'."""
    return _format(amount_minor, currency, grouping=",")


def _format(amount_minor: int, currency: str, grouping: str) -> str:
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise TypeError(f"amounts are integer minor units, not {type(amount_minor).__name__}")
    places = currency_exponent(currency)
    sign = "-" if amount_minor < 0 else ""
    units, fraction = divmod(abs(amount_minor), 10**places)
    whole = f"{units:{grouping}d}"
    return f"{sign}{whole}.{fraction:0{places}d}" if places else f"{sign}{whole}"


def parse_amount(text: str, *, currency: str, decimal_separator: str = ".", thousands_separator: str = ",") -> tuple[int, str | None]:
    """Parse one amount exactly: (minor units, currency code written in the text or None).

    ``currency`` is what the amount is in unless the text names another currency; it sets
    the decimals allowed and which currency an ambiguous symbol ($, ¥) stands for.
    Raises ValueError with a short message for anything that is not an exact amount.
    """
    shown = show_text(text)
    body = text.strip()
    if not body:
        raise ValueError("missing value")
    if body.lstrip(_SIGNS).strip().casefold() in _NON_FINITE:
        raise ValueError(f"{shown} is not a finite number")
    body, code = _split_currency(body, currency)
    negative = False
    if body.startswith("(") and body.endswith(")"):
        negative, body = True, body[1:-1].strip()
    elif body and body[0] in _SIGNS:
        negative, body = body[0] != "+", body[1:].strip()
    if code is None:  # "-$5", "($5)", "(USD 5)"
        body, code = _split_currency(body, currency)
    if _EXPONENT.fullmatch(body):
        raise ValueError(f"{shown} uses exponent notation")
    units, fraction = _split_number(body, shown, decimal_separator, thousands_separator)
    in_currency = code or currency.upper()
    places = currency_exponent(in_currency)
    if len(fraction) > places:
        raise ValueError(f"{shown} has more decimals than {in_currency} allows ({places})")
    minor = int(units or "0") * 10**places + int(fraction.ljust(places, "0") or "0")
    return (-minor if negative else minor), code


def _split_currency(text: str, context: str) -> tuple[str, str | None]:
    """Take one leading or trailing currency symbol or ISO code off ``text``."""
    for symbol, (default, family) in _SYMBOLS.items():
        if text.startswith(symbol) or text.endswith(symbol):
            rest = text[1:] if text.startswith(symbol) else text[:-1]
            return rest.strip(), (context.upper() if context.upper() in family else default)
    if match := _CODE_FIRST.fullmatch(text):
        return match[2], match[1].upper()
    if match := _CODE_LAST.fullmatch(text):
        return match[1], match[2].upper()
    return text, None


def _split_number(number: str, shown: str, point: str, group: str) -> tuple[str, str]:
    """Split a bare number into its digits before and after the decimal separator."""
    number = number.translate(_GROUP_LOOKALIKES.get(group, {}))
    units, has_point, fraction = number.partition(point)
    if group and group in number:
        grouped = re.compile(rf"[0-9]{{1,3}}(?:{re.escape(group)}[0-9]{{3}})+")
        if group in fraction or not grouped.fullmatch(units):
            raise ValueError(f"{shown} has a misplaced thousands separator")
        units = units.replace(group, "")
    digits_only = _DIGITS.fullmatch(units) and _DIGITS.fullmatch(fraction)
    if not digits_only or not (units or fraction) or (has_point and not fraction):
        raise ValueError(f"{shown} is not an amount")
    return units, fraction


def parse_date(text: str, formats: tuple[str, ...]) -> str:
    """Return the ISO date ``text`` means under ``formats``; reject it if they disagree."""
    if not text:
        raise ValueError("missing value")
    meanings: dict[date, str] = {}
    for date_format in formats:
        try:
            day = datetime.strptime(text, date_format).date()
        except ValueError:
            continue
        if day.year >= 1000:  # %Y also takes "26", which never means the year 26
            meanings.setdefault(day, date_format)
    if not meanings:
        raise ValueError(f"{show_text(text)} does not match {' or '.join(formats)}")
    if len(meanings) > 1:
        readings = " or ".join(f"{day.isoformat()} ({how})" for day, how in meanings.items())
        raise ValueError(f"{show_text(text)} is ambiguous: {readings}")
    return next(iter(meanings)).isoformat()


def clean_field(text: str) -> str:
    """Line breaks and tabs become one space, other control characters go, ends are stripped."""
    return _CONTROLS.sub("", _LINE_BREAKS.sub(" ", text)).strip()


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def show_text(text: str) -> str:
    return repr(_shorten(text, 60))


def read_ledger(path: str | os.PathLike, fmt: LedgerFormat = LedgerFormat()) -> Ledger:
    """Read and validate one ledger file; raise LedgerError on the first problem."""
    shown = os.fsdecode(path)
    try:
        with open(path, "rb") as stream:
            raw = stream.read()
    except OSError as error:
        raise LedgerError(shown, None, None, f"cannot read file: {error.strerror or error}") from None
    if not raw:
        raise LedgerError(shown, None, None, "file is empty")
    text = _decode_text(raw, fmt.encodings, shown)
    transactions = _parse_transactions(text, fmt, shown)
    return Ledger(shown, os.path.basename(shown), hashlib.sha256(raw).hexdigest(), transactions)


def _decode_text(raw: bytes, encodings: tuple[str, ...], path: str) -> str:
    """Decode the whole file with the first encoding that fits; refuse binary data."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise LedgerError(path, None, None, "not a CSV file: it is UTF-16 text; save it as UTF-8")
    if b"\x00" in raw:
        raise LedgerError(path, None, None, "not a CSV file: it contains NUL bytes (binary data?)")
    if raw.startswith(codecs.BOM_UTF8):  # the file says it is UTF-8; a fallback would garble it
        encodings = tuple(e for e in encodings if codecs.lookup(e).name.startswith("utf-8")) or ("utf-8",)
    failures = []
    for encoding in encodings:
        try:
            return raw.decode(encoding).removeprefix("\ufeff")
        except UnicodeDecodeError as error:
            seen = error.object  # utf-8-sig reports offsets after the BOM it dropped
            line = len(re.findall(rb"\r\n|\r|\n", seen[: error.start])) + 1
            failures.append(f"{encoding} (byte 0x{seen[error.start]:02x} on line {line})")
    raise LedgerError(path, None, None, "cannot decode the file as " + " or ".join(failures))


def _parse_transactions(text: str, fmt: LedgerFormat, path: str) -> list[Transaction]:
    if len(text) >= csv.field_size_limit():  # the whole file is in memory already
        csv.field_size_limit(_LARGEST_FIELD)
    labels = {name: fmt.columns.get(name, name) for name in ALL_COLUMNS}
    delimiter = fmt.delimiter or detect_delimiter(text, labels, path)
    records = _iter_records(text, delimiter, path)
    header_line, header = next(records, (0, []))
    if not header:
        raise LedgerError(path, None, None, "file is empty")
    headers = [clean_field(cell) for cell in header]
    columns = map_columns(headers, labels, path, header_line)
    names = {name: headers[index] for name, index in columns.items()}  # as written in the file
    transactions: list[Transaction] = []
    first_seen: dict[str, int] = {}
    for line, row in records:
        if len(row) != len(header):
            raise LedgerError(path, line, None, f"expected {len(header)} fields, found {len(row)}")
        cells = {name: clean_field(row[index]) for name, index in columns.items()}
        transaction = build_transaction(cells, names, fmt, path, line)
        if (first := first_seen.setdefault(transaction.txn_id, line)) != line:
            problem = f"duplicate id {show_text(transaction.txn_id)} (first on line {first})"
            raise LedgerError(path, line, names["id"], problem)
        transactions.append(transaction)
    return transactions


def _iter_records(text: str, delimiter: str, path: str) -> Iterator[tuple[int, list[str]]]:
    """Yield (physical start line, fields) for every record that is not blank."""
    lines = io.StringIO(text, newline="")  # splits on \r\n, \r and \n alike; csv counts them
    reader = csv.reader(lines, delimiter=delimiter, strict=True, skipinitialspace=True)
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise LedgerError(path, start, None, f"malformed CSV: {error}") from None
        if any(clean_field(cell) for cell in row):
            yield start, row


def detect_delimiter(text: str, labels: Mapping[str, str], path: str) -> str:
    """Pick the delimiter that splits the header into the most known column names."""
    wanted = {label.strip().casefold() for label in labels.values()}

    def score(delimiter: str) -> tuple[int, int]:
        try:
            _, header = next(_iter_records(text, delimiter, path), (0, []))
        except LedgerError:
            return (-1, 0)
        return (sum(clean_field(cell).casefold() in wanted for cell in header), len(header))

    return max(_DELIMITERS, key=score)  # ties go to the earlier delimiter


def map_columns(headers: list[str], labels: Mapping[str, str], path: str, line: int) -> dict[str, int]:
    """Return canonical column name -> field index; reject a header without a required one."""
    folded = [header.casefold() for header in headers]
    found = _shorten(", ".join(headers), 120)
    columns = {}
    for name, label in labels.items():
        hits = [index for index, header in enumerate(folded) if header == label.strip().casefold()]
        if len(hits) > 1:
            raise LedgerError(path, line, None, f"column {label!r} appears {len(hits)} times in the header")
        if hits:
            columns[name] = hits[0]
    if not columns:
        expected = ", ".join(labels.values())
        problem = f"not a ledger CSV: the header names none of the columns {expected} (found: {found})"
        raise LedgerError(path, line, None, problem)
    if missing := [repr(labels[name]) for name in _REQUIRED_COLUMNS if name not in columns]:
        noun = "column" if len(missing) == 1 else "columns"
        problem = f"missing required {noun} {', '.join(missing)} (found: {found})"
        raise LedgerError(path, line, None, problem)
    return columns


def build_transaction(cells: Mapping[str, str], names: Mapping[str, str], fmt: LedgerFormat, path: str, line: int) -> Transaction:
    """Validate one row's cleaned cells (canonical name -> text) into a Transaction."""

    def reject(name: str, problem: str) -> LedgerError:
        return LedgerError(path, line, names[name], problem)

    for name in ("id", "vendor"):
        if not cells[name]:
            raise reject(name, "missing value")
    try:
        day = parse_date(cells["date"], fmt.date_formats)
    except ValueError as error:
        raise reject("date", str(error)) from None
    stated = cells.get("currency")  # None when the file has no currency column
    if stated == "":
        raise reject("currency", "missing value")
    if stated is not None and not _CODE.fullmatch(stated):
        raise reject("currency", f"{show_text(stated)} is not a 3-letter currency code")
    context = stated.upper() if stated else fmt.default_currency
    separators = {"decimal_separator": fmt.decimal_separator, "thousands_separator": fmt.thousands_separator}
    try:
        amount, written = parse_amount(cells["amount"], currency=context, **separators)
    except ValueError as error:
        raise reject("amount", str(error)) from None
    if stated and written and written != context:
        problem = f"{show_text(cells['amount'])} is in {written} but the currency column says {context}"
        raise reject("amount", problem)
    if not -(2**63) <= amount < 2**63:  # SQLite stores integers in 64 bits
        raise reject("amount", f"{show_text(cells['amount'])} is too large to record exactly")
    memo, account = cells.get("memo", ""), cells.get("account", "")
    return Transaction(cells["id"], day, amount, written or context, cells["vendor"], memo, account, line)
