"""ISO 20022 camt.053 bank-to-customer statements (any camt.053.001.xx), streamed.

The file is read with lxml's `iterparse`, one `Ntry` at a time, each cleared once read, so
memory stays bounded however many entries the file holds. Every `NtryDtls/TxDtls` is one
transaction (an entry without details is one): its own amount (`Amt`, or `AmtDtls/TxAmt`)
when it has one, else the entry's; debit (`DBIT`, money out) positive, credit negative;
the booking date (`BookgDt`, else `ValDt`); the counterparty as vendor (`RltdPties`: the
creditor of a debit, the debtor of a credit, swapped for a reversal); the remittance info
(`RmtInf/Ustrd`, else the structured reference) as memo, marked ``Reversal:`` when
`RvslInd` is true, with the instructed amount when it was in another currency. The id is
the bank's reference (`TxDtls/Refs/AcctSvcrRef`; else the entry's `AcctSvcrRef`, with
``/n`` for the n-th detail of a batch), else derived (see `common.Rows`). A record's line
is its position in the file (1, 2, …); problems name the element's path and source line.
"""

from __future__ import annotations

import re
from datetime import date

from lxml import etree

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

__all__ = ["NAME", "is_camt053", "load", "parse_stream", "read_camt053", "sniff_namespace"]

NAME = "camt053"
HEAD_BYTES = 64 << 10
# the elements whose insides an entry or a detail is read from (bank codes, charges, agents, … are not walked)
_READ_INSIDE = frozenset(
    "BookgDt ValDt NtryDtls Refs AmtDtls InstdAmt TxAmt RltdPties Cdtr Dbtr UltmtCdtr UltmtDbtr Pty RmtInf Strd CdtrRefInf".split()
)
_PARSER = {"resolve_entities": False, "no_network": True, "load_dtd": False, "remove_comments": True, "remove_pis": True}


def is_camt053(head: bytes) -> bool:
    """The start of a camt.053 document: its namespace or its statement element."""
    return b"camt.053.001." in head or (b"<BkToCstmrStmt" in head or b":BkToCstmrStmt" in head)


def read_camt053(path, options: ReadOptions = ReadOptions()):
    """Read a camt.053 statement file; raise `LedgerError` at the first problem."""
    return load(path, Problems(str(path)), options).ledger


def load(path, problems: Problems, options: ReadOptions) -> Reading:
    shown, stream = open_hashing(path)
    problems.path = shown
    try:
        head = stream.handle.read(HEAD_BYTES)
        stream.handle.seek(0)
        try:
            namespace = sniff_namespace(head)
        except ValueError as error:
            raise problems.fail(None, None, str(error)) from None
        rows, notes = parse_stream(stream, problems, namespace)
        sha256 = stream.finish()
    finally:
        stream.close()
    mapping = {
        "id": "TxDtls/Refs/AcctSvcrRef, else Ntry/AcctSvcrRef (/n in a batch), else derived",
        "date": "Ntry/BookgDt (else ValDt)",
        "amount": "TxDtls/Amt or AmtDtls/TxAmt/Amt (else Ntry/Amt): DBIT positive, CRDT negative",
        "currency": "the amount's Ccy",
        "vendor": "RltdPties: Cdtr of a debit, Dbtr of a credit (else the ultimate party, else AddtlTxInf/AddtlNtryInf)",
        "memo": "RmtInf/Ustrd (else Strd/CdtrRefInf/Ref, AddtlTxInf, AddtlNtryInf)",
        "account": "Stmt/Acct/Id (IBAN or Othr/Id)",
    }
    return finish_reading(NAME, shown, sha256, rows, mapping, notes, problems)


def _text(element, path: str) -> str:
    found = element.find(path)
    if found is None or not found.text:
        return ""
    text = found.text
    return text if text.isprintable() and text == text.strip() else clean_text(text)


class _Statement:
    """What an entry needs to know of its statement."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.account = ""
        self.currency = ""
        self.entries = 0


class _Paths(dict):
    """Element paths in the document's namespace: ``paths["BookgDt/Dt"]`` is
    ``{urn:…camt.053.001.08}BookgDt/{urn:…}Dt`` (an exact namespace is much faster to find than ``{*}``)."""

    def __init__(self, namespace: str) -> None:
        super().__init__()
        self.prefix = f"{{{namespace}}}" if namespace else ""

    def __missing__(self, path: str) -> str:
        value = self[path] = "/".join(self.prefix + part for part in path.split("/"))
        return value


def sniff_namespace(head: bytes) -> str:
    """The camt.053 namespace the document declares ("" for none); `ValueError` for another message."""
    match = re.search(rb'xmlns(?::[A-Za-z0-9_]+)?="(urn:iso:std:iso:20022:tech:xsd:(camt\.[0-9]{3})\.[0-9]{3}\.[0-9]{2,})"', head)
    if match is None:
        return ""
    if match[2] != b"camt.053":
        raise ValueError(f"not a camt.053 statement but {match[2].decode()} (namespace {match[1].decode()})")
    return match[1].decode()


def parse_stream(stream, problems: Problems, namespace: str = "") -> tuple[Rows, list[str]]:
    """Read every entry of a camt.053 document from a binary stream (pure but for reading it)."""
    paths = _Paths(namespace)
    rows = Rows(NAME, problems)
    statements = 0
    statement: _Statement | None = None
    count = 0
    stmt, acct, ntry = paths["Stmt"], paths["Acct"], paths["Ntry"]
    events = etree.iterparse(stream, events=("end",), tag=(acct, ntry, stmt), **_PARSER)
    try:
        for _, element in events:
            tag = element.tag
            if tag == ntry:
                if statement is None:
                    raise problems.fail(element.sourceline, "Ntry", "an entry outside a statement (Stmt) or before its account (Acct)")
                statement.entries += 1
                count = _read_entry(element, statement, rows, problems, count, len(paths.prefix))
            elif tag == acct:
                if element.getparent().tag != stmt:
                    continue
                statements += 1
                statement = _Statement(statements)
                statement.account = _text(element, paths["Id/IBAN"]) or _text(element, paths["Id/Othr/Id"])
                statement.currency = _text(element, paths["Ccy"])
                continue
            else:
                statement = None
            element.clear()
            parent = element.getparent()
            while element.getprevious() is not None:
                del parent[0]
    except etree.XMLSyntaxError as error:
        line = error.lineno if error.lineno else None
        raise problems.fail(line, None, "not well-formed XML: " + " ".join(str(error.msg).split())) from None
    if statements == 0:
        raise problems.fail(None, None, "not a camt.053 statement: no Document/BkToCstmrStmt/Stmt/Acct")
    notes = [f"{statements} statement(s)"]
    return rows, notes


class _Index:
    """An element's descendants by their path of local names (``"BookgDt/Dt"``), read in one
    walk (lxml's `find` costs microseconds a call; an entry asks a dozen questions). The walk
    goes only inside the elements it reads from (`_READ_INSIDE`); a `TxDtls` is indexed on its own."""

    __slots__ = ("found",)

    def __init__(self, element, strip: int) -> None:
        self.found: dict[str, list] = {}
        self._walk(element, "", strip)

    def _walk(self, node, path: str, strip: int) -> None:
        for child in node:
            name = child.tag[strip:]
            where = f"{path}/{name}" if path else name
            self.found.setdefault(where, []).append(child)
            if name in _READ_INSIDE:
                self._walk(child, where, strip)

    def all(self, path: str) -> list:
        return self.found.get(path, [])

    def text(self, path: str) -> str:
        found = self.found.get(path)
        if not found or not found[0].text:
            return ""
        return clean_text(found[0].text)

    def amount(self, path: str) -> tuple[str, str] | None:
        found = self.found.get(path)
        if not found:
            return None
        return (found[0].text or "").strip(), found[0].get("Ccy", "")


def _money(text: str, currency: str, where: str, line: int, problems: Problems) -> tuple[int, str] | None:
    try:
        code = check_currency(currency)
        return decimal_minor(text, code), code
    except ValueError as error:
        problems.add(line, where, str(error))
        return None


def _day(entry: _Index) -> tuple[date | None, str]:
    for path in ("BookgDt/Dt", "BookgDt/DtTm", "ValDt/Dt", "ValDt/DtTm"):
        text = entry.text(path)
        if text:
            try:
                return date.fromisoformat(text[:10]), text
            except ValueError:
                return None, text
    return None, ""


def _party(details: _Index, role: str) -> str:
    for path in (f"RltdPties/{role}/Nm", f"RltdPties/{role}/Pty/Nm", f"RltdPties/Ultmt{role}/Nm", f"RltdPties/Ultmt{role}/Pty/Nm"):
        if name := details.text(path):
            return name
    return ""


def _remittance(details: _Index) -> str:
    lines = [clean_text(u.text or "") for u in details.all("RmtInf/Ustrd")]
    text = " ".join(t for t in lines if t)
    if not text:
        text = " ".join(clean_text(r.text or "") for r in details.all("RmtInf/Strd/CdtrRefInf/Ref")).strip()
    return text


def _read_entry(element, statement: _Statement, rows: Rows, problems: Problems, count: int, strip: int) -> int:
    where = f"Stmt[{statement.number}]/Ntry[{statement.entries}]"
    line = element.sourceline or 0
    entry = _Index(element, strip)
    amount = entry.amount("Amt")
    if amount is None:
        problems.add(line, f"{where}/Amt", "missing")
        return count
    entry_money = _money(*amount, f"{where}/Amt", line, problems)
    if entry_money is None:
        return count
    mark = entry.text("CdtDbtInd")
    if mark not in ("DBIT", "CRDT"):
        problems.add(line, f"{where}/CdtDbtInd", f"{show(mark)} is neither DBIT nor CRDT")
        return count
    reversal = entry.text("RvslInd").lower() in ("true", "1")
    day, day_text = _day(entry)
    if day is None:
        problems.add(line, f"{where}/BookgDt", f"{show(day_text)} is not a date" if day_text else "missing (and no ValDt)")
        return count
    entry_ref = entry.text("AcctSvcrRef")
    entry_info = entry.text("AddtlNtryInf")
    details: list[_Index | None] = [_Index(d, strip) for d in entry.all("NtryDtls/TxDtls")]
    detail_lines = [d.sourceline for d in entry.all("NtryDtls/TxDtls")]
    if not details:
        details = [None]
    signed_total: int | None = 0
    for index, detail in enumerate(details, 1):
        here = f"{where}/NtryDtls/TxDtls[{index}]" if detail is not None else where
        here_line = detail_lines[index - 1] if detail is not None else line
        own = None
        if detail is not None:
            own = detail.amount("Amt") or detail.amount("AmtDtls/TxAmt/Amt")
        if own is not None:
            money = _money(*own, f"{here}/Amt", here_line, problems)
            if money is None:
                return count
        elif len(details) > 1:
            problems.add(here_line, f"{here}/Amt", f"missing: the entry has {len(details)} details, so each needs its amount")
            return count
        else:
            money = entry_money
        detail_mark = (detail.text("CdtDbtInd") if detail is not None else "") or mark
        if detail_mark not in ("DBIT", "CRDT"):
            problems.add(here_line, f"{here}/CdtDbtInd", f"{show(detail_mark)} is neither DBIT nor CRDT")
            return count
        amount_minor = money[0] if detail_mark == "DBIT" else -money[0]
        if signed_total is not None and money[1] == entry_money[1]:
            signed_total += amount_minor
        else:
            signed_total = None  # a detail in another currency: no sum to check
        paid = detail_mark == "DBIT"
        if detail is not None:
            first, second = ("Dbtr", "Cdtr") if paid == reversal else ("Cdtr", "Dbtr")
            vendor = _party(detail, first) or _party(detail, second)
            memo = _remittance(detail) or detail.text("AddtlTxInf")
            vendor = vendor or detail.text("AddtlTxInf") or entry_info
            ref = detail.text("Refs/AcctSvcrRef")
            end_to_end = detail.text("Refs/EndToEndId")
            instructed = detail.amount("AmtDtls/InstdAmt/Amt")
        else:
            vendor, memo, ref, end_to_end, instructed = entry_info, "", "", "", None
        memo = memo or entry_info
        if instructed is not None and instructed[1] and instructed[1] != money[1]:
            original = _money(*instructed, f"{here}/AmtDtls/InstdAmt/Amt", here_line, problems)
            if original is None:
                return count
            memo = f"{memo} (instructed {format_amount(original[0], original[1])} {original[1]})".strip()
        if reversal:
            memo = f"Reversal: {memo}".strip()
        if not vendor:
            problems.add(here_line, f"{here}/RltdPties", "no counterparty name (Cdtr/Dbtr Nm) and no additional information")
            return count
        if ref:
            txn_id = ref
        elif entry_ref:
            txn_id = entry_ref if len(details) == 1 else f"{entry_ref}/{index}"
        else:
            txn_id = None
        count += 1
        rows.add(txn_id, day, amount_minor, money[1], vendor, memo, statement.account, count, (end_to_end, mark, reversal))
    entry_signed = entry_money[0] if mark == "DBIT" else -entry_money[0]
    if signed_total is not None and details[0] is not None and signed_total != entry_signed:
        problems.add(
            line,
            f"{where}/Amt",
            f"the details add up to {format_amount(signed_total, entry_money[1])} but the entry says"
            f" {format_amount(entry_signed, entry_money[1])} {entry_money[1]}",
        )
    return count
