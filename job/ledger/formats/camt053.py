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

__all__ = ["NAME", "is_camt053", "load", "parse_stream", "read_camt053"]

NAME = "camt053"
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
        rows, notes = parse_stream(stream, problems)
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


def _local(element) -> str:
    return etree.QName(element).localname


def _text(element, path: str) -> str:
    found = element.find(path)
    return clean_text(found.text or "") if found is not None and found.text else ""


class _Statement:
    """What an entry needs to know of its statement."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.account = ""
        self.currency = ""
        self.entries = 0


def parse_stream(stream, problems: Problems) -> tuple[Rows, list[str]]:
    """Read every entry of a camt.053 document from a binary stream (pure but for reading it)."""
    rows = Rows(NAME, problems)
    statements = 0
    statement: _Statement | None = None
    root_checked = False
    count = 0
    events = etree.iterparse(stream, events=("start", "end"), tag=("{*}Document", "{*}Stmt", "{*}Acct", "{*}Ntry"), **_PARSER)
    try:
        for event, element in events:
            name = _local(element)
            if event == "start":
                if name == "Document":
                    root_checked = True
                    namespace = etree.QName(element).namespace or ""
                    if namespace and "camt.053." not in namespace:
                        raise problems.fail(element.sourceline, "Document", f"not a camt.053 statement (namespace {namespace})")
                elif name == "Stmt":
                    statements += 1
                    statement = _Statement(statements)
                continue
            if name == "Acct" and statement is not None and _local(element.getparent()) == "Stmt":
                statement.account = _text(element, "{*}Id/{*}IBAN") or _text(element, "{*}Id/{*}Othr/{*}Id")
                statement.currency = _text(element, "{*}Ccy")
            elif name == "Ntry":
                if statement is None:
                    raise problems.fail(element.sourceline, "Ntry", "an entry outside a statement (Stmt)")
                statement.entries += 1
                count = _read_entry(element, statement, rows, problems, count)
                element.clear()
                parent = element.getparent()
                while element.getprevious() is not None:
                    del parent[0]
            elif name == "Stmt":
                element.clear()
                parent = element.getparent()
                while element.getprevious() is not None:
                    del parent[0]
    except etree.XMLSyntaxError as error:
        line = error.lineno if error.lineno else None
        raise problems.fail(line, None, f"not well-formed XML: {error.msg}") from None
    if not root_checked and statements == 0:
        raise problems.fail(None, None, "not a camt.053 statement: no Document/BkToCstmrStmt/Stmt")
    notes = [f"{statements} statement(s)"]
    return rows, notes


def _amount(container, path: str) -> tuple[str, str] | None:
    found = container.find(path)
    if found is None:
        return None
    return (found.text or "").strip(), found.get("Ccy", "")


def _money(text: str, currency: str, where: str, line: int, problems: Problems) -> tuple[int, str] | None:
    try:
        code = check_currency(currency)
        return decimal_minor(text, code), code
    except ValueError as error:
        problems.add(line, where, str(error))
        return None


def _day(entry) -> tuple[date | None, str]:
    for path in ("{*}BookgDt/{*}Dt", "{*}BookgDt/{*}DtTm", "{*}ValDt/{*}Dt", "{*}ValDt/{*}DtTm"):
        text = _text(entry, path)
        if text:
            try:
                return date.fromisoformat(text[:10]), text
            except ValueError:
                return None, text
    return None, ""


def _party(details, role: str) -> str:
    for path in (f"{{*}}RltdPties/{{*}}{role}/{{*}}Nm", f"{{*}}RltdPties/{{*}}{role}/{{*}}Pty/{{*}}Nm"):
        if name := _text(details, path):
            return name
    for path in (f"{{*}}RltdPties/{{*}}Ultmt{role}/{{*}}Nm", f"{{*}}RltdPties/{{*}}Ultmt{role}/{{*}}Pty/{{*}}Nm"):
        if name := _text(details, path):
            return name
    return ""


def _remittance(details) -> str:
    lines = [clean_text(u.text or "") for u in details.iterfind("{*}RmtInf/{*}Ustrd")]
    text = " ".join(t for t in lines if t)
    if not text:
        text = " ".join(_text(s, "{*}CdtrRefInf/{*}Ref") for s in details.iterfind("{*}RmtInf/{*}Strd")).strip()
    return text


def _read_entry(entry, statement: _Statement, rows: Rows, problems: Problems, count: int) -> int:
    where = f"Stmt[{statement.number}]/Ntry[{statement.entries}]"
    line = entry.sourceline or 0
    amount = _amount(entry, "{*}Amt")
    if amount is None:
        problems.add(line, f"{where}/Amt", "missing")
        return count
    entry_money = _money(*amount, f"{where}/Amt", line, problems)
    if entry_money is None:
        return count
    mark = _text(entry, "{*}CdtDbtInd")
    if mark not in ("DBIT", "CRDT"):
        problems.add(line, f"{where}/CdtDbtInd", f"{show(mark)} is neither DBIT nor CRDT")
        return count
    reversal = _text(entry, "{*}RvslInd").lower() in ("true", "1")
    day, day_text = _day(entry)
    if day is None:
        problems.add(line, f"{where}/BookgDt", f"{show(day_text)} is not a date" if day_text else "missing (and no ValDt)")
        return count
    entry_ref = _text(entry, "{*}AcctSvcrRef")
    entry_info = _text(entry, "{*}AddtlNtryInf")
    details = [d for group in entry.iterfind("{*}NtryDtls") for d in group.iterfind("{*}TxDtls")]
    if not details:
        details = [None]
    signed_total: int | None = 0
    for index, detail in enumerate(details, 1):
        here = f"{where}/NtryDtls/TxDtls[{index}]" if detail is not None else where
        here_line = detail.sourceline if detail is not None else line
        own = None
        if detail is not None:
            own = _amount(detail, "{*}Amt") or _amount(detail, "{*}AmtDtls/{*}TxAmt/{*}Amt")
        if own is not None:
            money = _money(*own, f"{here}/Amt", here_line, problems)
            if money is None:
                return count
        elif len(details) > 1:
            problems.add(here_line, f"{here}/Amt", f"missing: the entry has {len(details)} details, so each needs its amount")
            return count
        else:
            money = entry_money
        detail_mark = (_text(detail, "{*}CdtDbtInd") if detail is not None else "") or mark
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
            memo = _remittance(detail) or _text(detail, "{*}AddtlTxInf")
            vendor = vendor or _text(detail, "{*}AddtlTxInf") or entry_info
            ref = _text(detail, "{*}Refs/{*}AcctSvcrRef")
            end_to_end = _text(detail, "{*}Refs/{*}EndToEndId")
            instructed = _amount(detail, "{*}AmtDtls/{*}InstdAmt/{*}Amt")
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
