"""SWIFT MT940 customer statements, streamed line by line (one transaction held at a time).

A statement is ``:20:`` (reference), ``:25:`` (account), ``:28C:``, ``:60F:``/``:60M:``
(opening balance, which gives the currency), then per transaction a ``:61:`` statement line
and its ``:86:`` details, and ``:62F:``/``:62M:`` (closing balance, checked against the
opening balance plus the lines). SWIFT envelopes (``{1:…}{2:…}{4:``, ``-}``) and ``-``
separators between statements are read too.

``:61:`` is value date YYMMDD, optional entry date MMDD, mark (C, D, RC, RD), optional
funds code, amount with a decimal comma, type code, customer reference, ``//`` bank
reference, and optional supplementary details on its second line. The date is the entry
date (else the value date); a debit (D, or RC: a reversed credit) is positive, a credit
(C, RD) negative. German banks structure ``:86:`` as a business transaction code and
``?NN`` subfields: ``?32``/``?33`` the counterparty's name (the vendor; else the posting text ``?00``), ``?20``–``?29``
and ``?60``–``?63`` the purpose (memo: its SVWZ+ part when it has SEPA keywords), ``?00``
the posting text. Other ``:86:`` texts give the vendor from their first line (else the
``:61:`` supplementary details), and the memo from all their lines. MT940 has no unique
transaction id: every id is derived (see `common.Rows`), with the value date, mark, type
code and both references among the facts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import date

from job.ledger.formats.common import (
    Problems,
    Reading,
    ReadOptions,
    Rows,
    check_currency,
    clean_text,
    decimal_minor,
    finish_reading,
    open_hashing,
    show,
)
from job.ledger.ingest import format_amount

__all__ = ["NAME", "is_mt940", "load", "parse_lines", "read_mt940"]

NAME = "mt940"
_FIELD = re.compile(r":([0-9]{2}[A-Z]?|NS):")
_LINE_61 = re.compile(
    r"(?P<value>[0-9]{6})(?P<entry>[0-9]{4})?(?P<mark>(?i:R?[CD]))(?P<funds>[A-Z])?(?P<amount>[0-9]+,[0-9]*)"
    r"(?P<type>[NSF][A-Z0-9]{3})(?P<cref>.*?)(?://(?P<bref>.*))?"
)
_BALANCE = re.compile(r"(?P<mark>[CD])(?P<day>[0-9]{6})(?P<currency>[A-Za-z]{3})(?P<amount>[0-9]+,[0-9]*)")
_SUBFIELD = re.compile(r"\?([0-9]{2})")
_SEPA = re.compile(r"(EREF|KREF|MREF|CRED|DEBT|SVWZ|ABWA|ABWE|IBAN|BIC|COAM|OAMT|SQTP|PURP)\+")
_PURPOSE = frozenset(f"{n:02d}" for n in (*range(20, 30), *range(60, 64)))


def is_mt940(head: str) -> bool:
    """The start of an MT940 file: a SWIFT envelope or a :20: reference among the first lines."""
    lines = [line.strip() for line in head.splitlines()[:8] if line.strip()]
    return any(line.startswith((":20:", "{1:")) or "{4:" in line for line in lines[:3]) and any(
        ":25:" in line or ":20:" in line for line in lines
    )


def read_mt940(path, options: ReadOptions = ReadOptions()):
    """Read an MT940 statement file; raise `LedgerError` at the first problem."""
    return load(path, Problems(str(path)), options).ledger


def load(path, problems: Problems, options: ReadOptions) -> Reading:
    shown, stream = open_hashing(path)
    problems.path = shown
    try:
        rows, notes = parse_lines(_decoded_lines(stream), problems)
        sha256 = stream.finish()
    finally:
        stream.close()
    mapping = {
        "id": "derived from the :61: line (dates, mark, amount, type, references) and :86:",
        "date": ":61: entry date (else value date)",
        "amount": ":61: amount: D and RC positive, C and RD negative",
        "currency": ":60F:/:60M: opening balance",
        "vendor": ":86: ?32?33, else ?00 (unstructured :86:: its first line, else the :61: supplementary details)",
        "memo": ":86: purpose ?20-?29, ?60-?63 (its SVWZ+ part; else all of :86:)",
        "account": ":25:",
    }
    return finish_reading(NAME, shown, sha256, rows, mapping, notes, problems)


def _decoded_lines(stream) -> Iterator[tuple[int, str]]:
    """(line number, text): UTF-8, else Windows-1252 for a line that is not UTF-8."""
    for number, raw in enumerate(stream, 1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("cp1252", errors="replace")
        yield number, text.rstrip("\r\n").lstrip("\ufeff") if number == 1 else text.rstrip("\r\n")


def _fields(lines: Iterable[tuple[int, str]], problems: Problems) -> Iterator[tuple[str, int, list[str]]]:
    """(tag, line, content lines) of every field; ("-", line, []) at each statement's end."""
    tag: str | None = None
    start = 0
    content: list[str] = []
    for number, text in lines:
        if text.startswith("{"):
            at = text.find("{4:")
            if tag is not None:
                yield tag, start, content
                tag = None
            if at < 0:
                continue
            text = text[at + 3 :]
            if not text.strip():
                continue
        stripped = text.strip()
        if stripped in ("-", "-}") or stripped.startswith("-}"):
            if tag is not None:
                yield tag, start, content
                tag = None
            yield "-", number, []
            continue
        match = _FIELD.match(text)
        if match:
            if tag is not None:
                yield tag, start, content
            tag, start, content = match[1], number, [text[match.end() :]]
        elif tag is not None:
            content.append(text)
        elif stripped:
            problems.add(number, None, f"not an MT940 field (expected a tag such as :20: or :61:): {show(stripped)}")
    if tag is not None:
        yield tag, start, content


class _Statement:
    def __init__(self) -> None:
        self.account = ""
        self.currency = ""
        self.opening: int | None = None  # in the bank's sign: credit positive
        self.moved = 0
        self.ok = True


def parse_lines(lines: Iterable[tuple[int, str]], problems: Problems) -> tuple[Rows, list[str]]:
    """Every transaction of an MT940 text given as numbered lines (pure)."""
    rows = Rows(NAME, problems)
    statement = _Statement()
    pending: dict | None = None
    statements = 0
    fields = 0
    for tag, line, content in _fields(lines, problems):
        fields += 1
        if tag == "86" and pending is not None and pending.get("details") is None:
            pending["details"] = content
            continue
        if pending is not None and tag != "86":
            _emit(pending, statement, rows, problems)
            pending = None
        if tag == "20":
            statements += 1
            statement = _Statement()
        elif tag == "25":
            statement.account = clean_text(" ".join(content))
        elif tag in ("60F", "60M"):
            balance = _balance(content[0], tag, line, problems)
            if balance is not None:
                statement.currency, statement.opening, statement.moved = balance[1], balance[0], 0
        elif tag in ("62F", "62M"):
            balance = _balance(content[0], tag, line, problems)
            if balance is not None and statement.opening is not None and statement.ok:
                expected = statement.opening + statement.moved
                if balance[1] == statement.currency and balance[0] != expected:
                    problems.add(
                        line,
                        f"tag {tag}",
                        f"closing balance {format_amount(balance[0], balance[1])} is not the opening balance plus the"
                        f" statement lines ({format_amount(expected, balance[1])} {balance[1]}): lines missing or changed?",
                    )
            statement.opening = None
        elif tag == "61":
            pending = {"line": line, "content": content, "details": None}
    if pending is not None:
        _emit(pending, statement, rows, problems)
    if fields == 0 or statements == 0:
        raise problems.fail(None, None, "not an MT940 statement: no :20: field")
    return rows, [f"{statements} statement(s)"]


def _balance(text: str, tag: str, line: int, problems: Problems) -> tuple[int, str] | None:
    """(amount in the bank's sign, currency) of a balance field."""
    match = _BALANCE.fullmatch(text.strip())
    if not match:
        problems.add(line, f"tag {tag}", f"{show(text.strip())} is not a balance (mark, YYMMDD, currency, amount)")
        return None
    try:
        currency = check_currency(match["currency"])
        amount = decimal_minor(match["amount"], currency, point=",")
    except ValueError as error:
        problems.add(line, f"tag {tag}", str(error))
        return None
    return (amount if match["mark"] == "C" else -amount), currency


def _year(two_digits: str) -> int:
    year = int(two_digits)
    return 2000 + year if year < 80 else 1900 + year


def _entry_day(value: date, text: str) -> date:
    """The day of an entry date MMDD: in the year that puts it nearest the value date."""
    month, day = int(text[:2]), int(text[2:])
    if month == value.month:
        try:
            return date(value.year, month, day)
        except ValueError:
            raise ValueError(f"entry date {show(text)} is not a day") from None
    found = []
    for year in (value.year - 1, value.year, value.year + 1):
        try:
            found.append(date(year, month, day))
        except ValueError:
            continue
    if not found:
        raise ValueError(f"entry date {show(text)} is not a day")
    return min(found, key=lambda d: abs((d - value).days))


def _emit(pending: dict, statement: _Statement, rows: Rows, problems: Problems) -> None:
    line, content = pending["line"], pending["content"]
    match = _LINE_61.fullmatch(content[0].strip())
    if not match:
        problems.add(line, "tag 61", f"{show(content[0].strip())} is not a statement line (date, mark, amount, type, reference)")
        statement.ok = False
        return
    try:
        value = date(_year(match["value"][:2]), int(match["value"][2:4]), int(match["value"][4:]))
        day = _entry_day(value, match["entry"]) if match["entry"] else value
    except ValueError as error:
        problems.add(line, "tag 61", str(error) if "entry" in str(error) else f"value date {show(match['value'])} is not a day")
        statement.ok = False
        return
    if not statement.currency:
        problems.add(line, "tag 61", "no currency: the statement has no opening balance (:60F:) before its lines")
        statement.ok = False
        return
    try:
        amount = decimal_minor(match["amount"], statement.currency, point=",")
    except ValueError as error:
        problems.add(line, "tag 61", str(error))
        statement.ok = False
        return
    mark = match["mark"].upper()
    paid = mark in ("D", "RC")
    statement.moved += -amount if paid else amount
    supplementary = clean_text(" ".join(content[1:]))
    vendor, memo = _details(pending["details"] or [], supplementary)
    if mark in ("RC", "RD"):
        memo = f"Reversal: {memo}".strip()
    if not vendor:
        problems.add(
            line, "tag 86", "no counterparty name (?32/?33) and nothing else to name the line by (no :86:, no supplementary details)"
        )
        return
    cref, bref = match["cref"].strip(), (match["bref"] or "").strip()
    facts = (match["value"], mark, match["type"], cref, bref)
    rows.add(None, day, amount if paid else -amount, statement.currency, vendor, memo, statement.account, line, facts)


def _details(lines: list[str], supplementary: str) -> tuple[str, str]:
    """(vendor, memo) from an :86: field's lines."""
    joined = "".join(lines)
    if re.match(r"(?:[0-9]{3})?\?[0-9]{2}", joined):
        parts = _SUBFIELD.split(joined)
        fields: dict[str, str] = {}
        for key, text in zip(parts[1::2], parts[2::2]):
            fields[key] = fields.get(key, "") + text
        vendor = clean_text(fields.get("32", "") + fields.get("33", ""))
        purpose = clean_text("".join(fields[k] for k in sorted(fields) if k in _PURPOSE))
        memo = _sepa_purpose(purpose) or clean_text(fields.get("00", ""))
        return vendor or supplementary or clean_text(fields.get("00", "")), memo
    texts = [clean_text(t) for t in lines if clean_text(t)]
    memo = " ".join(texts)
    return (texts[0] if texts else "") or supplementary, memo


def _sepa_purpose(purpose: str) -> str:
    """The SVWZ+ part of a purpose with SEPA keywords, else the purpose itself."""
    pieces = _SEPA.split(purpose)
    if len(pieces) == 1:
        return purpose
    keyed = dict(zip(pieces[1::2], (p.strip() for p in pieces[2::2])))
    return keyed.get("SVWZ") or pieces[0].strip() or purpose
