"""BAI2 cash management balance and transaction reports (bank to customer, comma-separated records).

Records: 01 file header, 02 group header (as-of date, currency), 03 account (number,
currency, balances), 16 transaction detail, 88 continuation, 49 account trailer, 98 group
trailer, 99 file trailer; ``/`` ends a record. Amounts are in minor units without a decimal
point. Each 16 record is one transaction: the date is its group's as-of date, the currency
the account's (else the group's, else the default), the amount positive for a debit type
code and negative for a credit one (the direction and description of each standard type
code come from the maintained `bai2` package's table; a code outside it is refused), the
vendor the record's text (else its description), the memo the code's description and the
customer reference. The control totals of 49, 98 and 99 are checked. BAI2 has no unique
transaction id: ids are derived (see `common.Rows`) with the type code and both references
among the facts.
"""

from __future__ import annotations

from datetime import date

from bai2.constants import TypeCodes, TypeCodeTransaction

from job.ledger.formats.common import (
    Problems,
    Reading,
    ReadOptions,
    Rows,
    check_currency,
    clean_text,
    decode_text,
    file_sha256,
    finish_reading,
    read_bytes,
    show,
)

__all__ = ["NAME", "is_bai2", "load", "parse_text", "read_bai2"]

NAME = "bai2"
_FUNDS_FIELDS = {"S": 3, "V": 2}  # availability fields after the funds type; "D" says how many follow


def is_bai2(head: str) -> bool:
    """A BAI2 file starts with a 01 file header record."""
    first = next((line.strip() for line in head.splitlines() if line.strip()), "")
    return first.startswith("01,") and "02," in head


def read_bai2(path, options: ReadOptions = ReadOptions()):
    """Read a BAI2 file; raise `LedgerError` at the first problem."""
    return load(path, Problems(str(path)), options).ledger


def load(path, problems: Problems, options: ReadOptions) -> Reading:
    shown, raw = read_bytes(path)
    problems.path = shown
    rows, notes = parse_text(decode_text(raw, shown), problems, options.default_currency)
    mapping = {
        "id": "derived from the 16 record (type code, references, text, amount) and its account and date",
        "date": "02 group header's as-of date",
        "amount": "16 amount (minor units): debit type codes positive, credit negative",
        "currency": "03 account currency, else 02 group currency",
        "vendor": "16 text (else the type code's description)",
        "memo": "the type code's description and the customer reference",
        "account": "03 account number",
    }
    return finish_reading(NAME, shown, file_sha256(raw), rows, mapping, notes, problems)


def _records(text: str):
    """(line, code, fields) of each logical record, 88 continuations joined."""
    current: tuple[int, str, str] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        code, _, rest = line.partition(",")
        if code == "88" and current is not None:
            start, first, body = current
            joined = body[:-1] + "," + rest if body.endswith("/") else body + " " + rest
            current = (start, first, joined)
            continue
        if current is not None:
            yield current
        current = (number, code, rest)
    if current is not None:
        yield current


def _day(text: str) -> date:
    return date(2000 + int(text[:2]), int(text[2:4]), int(text[4:6]))


def _minor(text: str) -> int:
    body = text.strip()
    if not body:
        return 0
    sign = -1 if body.startswith("-") else 1
    digits = body.lstrip("+-")
    if not digits.isdigit() or not digits.isascii():
        raise ValueError(f"{show(text)} is not an amount in minor units")
    if len(digits) > 18:
        raise ValueError(f"{show(text)} is too large to record exactly")
    return sign * int(digits)


class _Totals:
    def __init__(self) -> None:
        self.account = 0
        self.group = 0
        self.file = 0


def parse_text(text: str, problems: Problems, default_currency: str) -> tuple[Rows, list[str]]:
    """Every 16 record of a BAI2 file (pure)."""
    rows = Rows(NAME, problems)
    totals = _Totals()
    group_day: date | None = None
    group_currency = default_currency
    account, currency = "", default_currency
    groups = accounts = 0
    seen_header = False
    for line, code, body in _records(text):
        fields = body.rstrip("/").split(",")
        if code == "01":
            seen_header = True
        elif not seen_header:
            raise problems.fail(line, None, f"not a BAI2 file: the first record is {show(code)}, not a 01 file header")
        elif code == "02":
            groups += 1
            totals.group = 0
            try:
                group_day = _day(fields[3])
            except (ValueError, IndexError):
                problems.add(line, "02 as-of date", f"{show(fields[3] if len(fields) > 3 else '')} is not a date YYMMDD")
                group_day = None
            group_currency = fields[5].strip() if len(fields) > 5 and fields[5].strip() else default_currency
        elif code == "03":
            accounts += 1
            account = fields[0].strip()
            currency = fields[1].strip() if len(fields) > 1 and fields[1].strip() else group_currency
            totals.account = 0
            for index in range(2, len(fields) - 1, 4):  # type code, amount, item count, funds type
                try:
                    totals.account += _minor(fields[index + 1])
                except ValueError as error:
                    problems.add(line, "03 amount", str(error))
        elif code == "16":
            totals.account += _detail(line, fields, account, currency, group_day, rows, problems)
        elif code == "49":
            _check(line, "49 account control total", fields[0], totals.account, problems)
            totals.group += totals.account
        elif code == "98":
            _check(line, "98 group control total", fields[0], totals.group, problems)
            totals.file += totals.group
        elif code == "99":
            _check(line, "99 file control total", fields[0], totals.file, problems)
        else:
            problems.add(line, None, f"{show(code)} is not a BAI2 record code (01, 02, 03, 16, 88, 49, 98, 99)")
    if not seen_header:
        raise problems.fail(None, None, "not a BAI2 file: no 01 file header")
    return rows, [f"{groups} group(s), {accounts} account(s)"]


def _check(line: int, what: str, text: str, expected: int, problems: Problems) -> None:
    try:
        stated = _minor(text)
    except ValueError as error:
        problems.add(line, what, str(error))
        return
    if stated != expected:
        problems.add(line, what, f"is {stated} but the records above add up to {expected}: records missing or changed?")


def _detail(line: int, fields: list[str], account: str, currency_text: str, day: date | None, rows: Rows, problems: Problems) -> int:
    """Record one 16 record; return its amount for the control totals."""
    if len(fields) < 3:
        problems.add(line, "16", "needs a type code, an amount and a funds type")
        return 0
    code = fields[0].strip()
    try:
        amount = _minor(fields[1])
    except ValueError as error:
        problems.add(line, "16 amount", str(error))
        return 0
    funds = fields[2].strip().upper()
    rest = fields[3:]
    skip = _FUNDS_FIELDS.get(funds, 0)
    if funds == "D" and rest:
        try:
            skip = 1 + 2 * int(rest[0])
        except ValueError:
            problems.add(line, "16 funds type", f"distributed availability count {show(rest[0])} is not a number")
            return amount
    rest = rest[skip:]
    bank_ref = rest[0].strip() if rest else ""
    customer_ref = rest[1].strip() if len(rest) > 1 else ""
    text = clean_text(",".join(rest[2:]).rstrip("/")) if len(rest) > 2 else ""
    kind = TypeCodes.get(code)
    if kind is None or kind.transaction not in (TypeCodeTransaction.credit, TypeCodeTransaction.debit):
        if kind is not None and kind.transaction == TypeCodeTransaction.misc and amount == 0:
            return amount  # non-monetary information
        problems.add(line, "16 type code", f"{show(code)} is not a standard BAI2 credit or debit type code")
        return amount
    if day is None:
        problems.add(line, "16", "its group header has no as-of date")
        return amount
    try:
        currency = check_currency(currency_text)
    except ValueError as error:
        problems.add(line, "03 currency", str(error))
        return amount
    vendor = text or kind.description
    memo = " ".join(p for p in (kind.description, f"ref {customer_ref}" if customer_ref else "") if p)
    signed = amount if kind.transaction == TypeCodeTransaction.debit else -amount
    rows.add(None, day, signed, currency, vendor, memo, account, line, (code, bank_ref, customer_ref))
    return amount
