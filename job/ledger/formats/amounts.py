"""Amounts of the accounting exports: a signed Amount column, or Debit and Credit columns.

Every amount goes through `ingest.parse_amount` (exact integer minor units: ``1,250.00``,
``(1,250.00)``, ``$1,250.00``, ``-1.234,56`` with German separators). With Debit and Credit
the amount is debit minus credit, so a payment booked to an expense account is positive.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from job.ledger.formats.common import Problems, show
from job.ledger.formats.table import get_cell
from job.ledger.ingest import parse_amount

__all__ = ["has_amount", "read_amount"]


def has_amount(columns: Mapping[str, int]) -> bool:
    return "amount" in columns or "debit" in columns or "credit" in columns


def read_amount(
    cells: Sequence[str],
    columns: Mapping[str, int],
    names: Mapping[str, str],
    currency: str,
    problems: Problems,
    line: int,
    *,
    point: str = ".",
    group: str = ",",
) -> tuple[int, str] | None:
    """(minor units, currency) of one row, or None after reporting a problem."""
    roles = ["amount"] if "amount" in columns else [r for r in ("debit", "credit") if r in columns]
    total, seen, code = 0, False, currency
    for role in roles:
        text = get_cell(cells, columns, role)
        if not text:
            continue
        try:
            minor, written = parse_amount(text, currency=currency, decimal_separator=point, thousands_separator=group)
        except ValueError as error:
            problems.add(line, names[role], str(error))
            return None
        if written and written != currency:
            problems.add(line, names[role], f"{show(text)} is in {written} but the row's currency is {currency}")
            return None
        total += -minor if role == "credit" else minor
        seen = True
    if not seen:
        problems.add(line, " / ".join(names[r] for r in roles), "missing value")
        return None
    if not -(2**63) <= total < 2**63:  # SQLite stores integers in 64 bits
        problems.add(line, " / ".join(names[r] for r in roles), "is too large to record exactly")
        return None
    return total, code
