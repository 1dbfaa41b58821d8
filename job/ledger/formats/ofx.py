"""OFX bank and credit card statements: 1.x (SGML, leaf tags left open), 2.x (XML), and QFX.

Read with a small tokenizer of our own rather than a full OFX model: it keeps each
transaction's line for messages, takes the date as the file writes it (``DTPOSTED``
``20261103220000[-5:EST]`` is 3 November, not 4 November in UTC), and tolerates the
missing sign-on blocks and open tags real banks send. Each ``STMTTRN`` of a ``STMTRS`` or
``CCSTMTRS`` is one transaction: the id its ``FITID`` (derived when a bank leaves it out),
the date ``DTPOSTED``, the amount ``-TRNAMT`` (the file writes a debit negative; here a
payment is positive) in ``CURRENCY/CURSYM`` or else the statement's ``CURDEF``, the vendor
``NAME`` (else ``PAYEE/NAME``, ``EXTDNAME``, ``MEMO``), the memo ``MEMO`` with the check
number, the account ``ACCTID``. A 1.x file is decoded as its CHARSET says unless its bytes
are valid UTF-8 with non-ASCII characters (a common mislabel).
"""

from __future__ import annotations

import html
import re
from datetime import date

from job.ledger.formats.common import (
    Problems,
    Reading,
    ReadOptions,
    Rows,
    check_currency,
    clean_text,
    decimal_minor,
    file_sha256,
    finish_reading,
    read_bytes,
    show,
)

__all__ = ["NAME", "is_ofx", "load", "parse_text", "read_ofx"]

NAME = "ofx"
_TOKEN = re.compile(r"<(/?)([A-Za-z0-9_.]+)[^>]*>|<[?!][^>]*>|([^<]+)")
_CHARSETS = {"1252": "cp1252", "ISO-8859-1": "latin-1", "8859-1": "latin-1", "UTF-8": "utf-8", "NONE": "cp1252"}
_STATEMENTS = ("STMTRS", "CCSTMTRS")


def is_ofx(head: bytes) -> bool:
    upper = head[:4096].upper()
    return b"OFXHEADER" in upper or b"<OFX>" in upper


def read_ofx(path, options: ReadOptions = ReadOptions()):
    """Read an OFX or QFX file; raise `LedgerError` at the first problem."""
    return load(path, Problems(str(path)), options).ledger


def load(path, problems: Problems, options: ReadOptions) -> Reading:
    shown, raw = read_bytes(path)
    problems.path = shown
    text, version = _decode(raw)
    rows, notes = parse_text(text, problems)
    notes.insert(0, f"OFX {version}")
    mapping = {
        "id": "STMTTRN/FITID (derived when missing)",
        "date": "DTPOSTED (the date as written)",
        "amount": "TRNAMT negated: a debit (negative in the file) is positive",
        "currency": "CURRENCY/CURSYM, else the statement's CURDEF",
        "vendor": "NAME, else PAYEE/NAME, EXTDNAME, MEMO",
        "memo": "MEMO (and CHECKNUM)",
        "account": "BANKACCTFROM/ACCTID or CCACCTFROM/ACCTID",
    }
    return finish_reading(NAME, shown, file_sha256(raw), rows, mapping, notes, problems, "FITID")


def _decode(raw: bytes) -> tuple[str, str]:
    head = raw[:1024].decode("ascii", errors="replace")
    if raw.lstrip().startswith(b"<?xml") or 'OFXHEADER="2' in head:
        match = re.search(r'encoding="([^"]+)"', head)
        encoding = match[1] if match else "utf-8"
        version = "2.x (XML)"
    else:
        match = re.search(r"CHARSET:\s*([A-Za-z0-9-]+)", head)
        encoding = _CHARSETS.get(match[1].upper(), "cp1252") if match else "cp1252"
        if re.search(r"ENCODING:\s*UTF-8", head, re.I):
            encoding = "utf-8"
        version = "1.x (SGML)"
    if not raw.isascii():
        try:
            return raw.decode("utf-8").lstrip("\ufeff"), version
        except UnicodeDecodeError:
            pass
    try:
        return raw.decode(encoding, errors="replace"), version
    except LookupError:
        return raw.decode("cp1252", errors="replace"), version


class _Context:
    def __init__(self) -> None:
        self.currency = ""
        self.account = ""
        self.statements = 0


def parse_text(text: str, problems: Problems) -> tuple[Rows, list[str]]:
    """Every STMTTRN of an OFX document (pure)."""
    start = text.upper().find("<OFX>")
    if start < 0:
        raise problems.fail(None, None, "not an OFX file: no <OFX> element")
    rows = Rows(NAME, problems)
    line = text.count("\n", 0, start) + 1
    position = start
    path: list[str] = []
    context = _Context()
    transaction: dict[str, str] | None = None
    transaction_line = 0
    leaf: str | None = None
    leaf_line = 0
    valued: str | None = None  # the leaf whose value was just read
    derived = 0
    for match in _TOKEN.finditer(text, start):
        line += text.count("\n", position, match.start())
        position = match.start()
        closing, tag, value = match[1], (match[2] or "").upper(), match[3]
        if value is not None:
            if leaf is not None and value.strip():
                _set_leaf(path, leaf, clean_text(html.unescape(value)), context, transaction)
                valued, leaf = leaf, None
            continue
        if not tag or match[0].endswith("/>"):  # a declaration, or an empty element <MEMO/>
            continue
        if closing:
            if tag in (leaf, valued):  # </NAME> right after a leaf's value (2.x), or of an empty leaf
                leaf = valued = None
                continue
            leaf = valued = None
            if tag not in path:
                problems.add(line, "/".join(path[-3:]), f"</{tag}> closes nothing that is open")
                continue
            while path and path.pop() != tag:
                pass
            if tag == "STMTTRN" and transaction is not None:
                derived += _emit(transaction, transaction_line, context, rows, problems)
                transaction = None
            continue
        valued = None
        if leaf is not None:  # the previous tag had no value: it opened an aggregate
            path.append(leaf)
            _open(leaf, context)
            if leaf == "STMTTRN":
                transaction, transaction_line = {}, leaf_line
        leaf, leaf_line = tag, line
        if tag == "INVSTMTRS":
            raise problems.fail(line, "INVSTMTRS", "investment statements are not read (bank and credit card statements are)")
    if context.statements == 0:
        raise problems.fail(None, None, "not an OFX statement: no STMTRS or CCSTMTRS")
    notes = [f"{context.statements} statement(s)"] + ([f"{derived} transaction(s) without FITID: ids derived"] if derived else [])
    return rows, notes


def _open(tag: str, context: _Context) -> None:
    if tag in _STATEMENTS:
        context.statements += 1
        context.currency, context.account = "", ""


def _set_leaf(path: list[str], tag: str, value: str, context: _Context, transaction: dict | None) -> None:
    parent = path[-1] if path else ""
    if transaction is not None and "STMTTRN" in path:
        key = tag if parent == "STMTTRN" else f"{parent}.{tag}"
        transaction[key] = value
    elif tag == "CURDEF":
        context.currency = value
    elif tag == "ACCTID" and parent in ("BANKACCTFROM", "CCACCTFROM"):
        context.account = value


def _emit(tx: dict[str, str], line: int, context: _Context, rows: Rows, problems: Problems) -> int:
    """Record one STMTTRN; 1 if its id had to be derived."""
    where = f"STMTTRN (FITID {tx['FITID']})" if tx.get("FITID") else "STMTTRN"
    posted = tx.get("DTPOSTED", "")
    try:
        day = date(int(posted[:4]), int(posted[4:6]), int(posted[6:8]))
    except ValueError:
        problems.add(line, f"{where}/DTPOSTED", f"{show(posted)} is not a date YYYYMMDD" if posted else "missing")
        return 0
    try:
        currency = check_currency(tx.get("CURRENCY.CURSYM") or context.currency)
    except ValueError as error:
        problems.add(line, f"{where}/CURDEF", str(error) if context.currency else "no currency: the statement has no CURDEF")
        return 0
    amount_text = tx.get("TRNAMT", "")
    try:
        amount = -decimal_minor(amount_text, currency)
    except ValueError as error:
        problems.add(line, f"{where}/TRNAMT", str(error) if amount_text else "missing")
        return 0
    memo = clean_text(tx.get("MEMO", ""))
    vendor = clean_text(tx.get("NAME") or tx.get("PAYEE.NAME") or tx.get("EXTDNAME") or memo)
    if not vendor:
        problems.add(line, f"{where}/NAME", "missing (and no PAYEE, EXTDNAME or MEMO)")
        return 0
    if check := tx.get("CHECKNUM"):
        memo = f"{memo} (check {check})".strip()
    if original := tx.get("ORIGCURRENCY.CURSYM"):
        memo = f"{memo} (original currency {original} at {tx.get('ORIGCURRENCY.CURRATE', '?')})".strip()
    if action := tx.get("CORRECTACTION"):
        memo = f"Correction ({action} of {tx.get('CORRECTFITID', '?')}): {memo}".strip()
    fitid = tx.get("FITID", "").strip()
    facts = (tx.get("TRNTYPE", ""), tx.get("CHECKNUM", ""), tx.get("REFNUM", ""), posted)
    rows.add(fitid or None, day, amount, currency, vendor, memo, context.account, line, facts)
    return 0 if fitid else 1
