"""Amendments: a known transaction id that comes back with different facts.

An export that repeats an id with the same facts is a re-import and records nothing. One that
repeats it with a different date, amount, currency, vendor, memo or account is an amendment:
it is recorded as the next version of that transaction (the earlier versions stay as they
were, decisions included), flagged `amended` with what changed, and goes to the approver
even when an earlier version was approved. The same holds for an id that appears twice with
different facts among the ledgers of one run: the later row is the next version.

Pure: `find_amendments` compares the rows of a batch that repeat a recorded id with the
latest recorded version (read by the caller) and with earlier rows of the same batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from job.ledger.ingest import format_amount_display
from job.screening.screen import AMENDED

__all__ = ["AMENDED", "FACTS", "Version", "Amendment", "describe_changes", "find_amendments"]

FACTS = ("date", "amount_minor", "currency", "vendor", "memo", "account")
_LABELS = {"amount_minor": "amount"}


@dataclass(frozen=True, slots=True)
class Version:
    """The facts of one version of a transaction, and where it was recorded."""

    txn_id: str
    version: int
    date: str
    amount_minor: int
    currency: str
    vendor: str
    memo: str
    account: str
    run_id: int | None  # None: an earlier row of this run

    @classmethod
    def from_facts(cls, txn_id: str, version: int, facts: Mapping[str, Any], run_id: int | None = None) -> Version:
        """The version `version` of `txn_id` with the `FACTS` of `facts`."""
        date, amount_minor, currency, vendor, memo, account = (facts[name] for name in FACTS)
        return cls(txn_id, version, date, amount_minor, currency, vendor, memo, account, run_id)


@dataclass(frozen=True, slots=True)
class Amendment:
    position: int  # the row's position in the batch
    txn_id: str
    version: int  # the version this row becomes
    reason: str
    facts: Version  # this row's facts, as that version


def _shown(name: str, value: object, currency: str) -> str:
    if name == "amount_minor":
        return f"{format_amount_display(int(cast(int, value)), currency)} {currency}"
    return repr(str(value)) if name in ("vendor", "memo", "account") else str(value)


def describe_changes(old: Version, new: Mapping[str, object]) -> str:
    """`amount 500.00 USD → 50,000.00 USD; memo 'Consulting' → 'Consulting, amended'`."""
    parts = []
    for name in FACTS:
        before, after = getattr(old, name), new[name]
        if before != after:
            label = _LABELS.get(name, name)
            parts.append(f"{label} {_shown(name, before, old.currency)} → {_shown(name, after, str(new['currency']))}")
    return "; ".join(parts)


def _reason(old: Version, new: Mapping[str, object], version: int) -> str:
    where = f"run {old.run_id}" if old.run_id is not None else "an earlier ledger of this run"
    return f"amended: version {version} of {new['txn_id']}, which {where} recorded as version {old.version}: {describe_changes(old, new)}"


def find_amendments(rows: Sequence[tuple[int, Mapping[str, object]]], latest: Mapping[str, Version]) -> tuple[list[Amendment], list[int]]:
    """Which repeated rows are amendments, and which are plain re-imports.

    `rows`: (position, facts incl. `txn_id`) of every row of the batch whose id is recorded
    already or appeared earlier in the batch, in batch order, where each row's first
    occurrence in the batch is included too; `latest`: the latest recorded version per id.
    Returns the amendments (each a new version, numbered on from the latest) and the
    positions to skip (the same facts as the version before them).
    """
    current: dict[str, Version] = dict(latest)
    amendments: list[Amendment] = []
    skip: list[int] = []
    for position, facts in rows:
        txn_id = str(facts["txn_id"])
        before = current.get(txn_id)
        if before is None:  # the first time this id is seen at all: a new transaction
            current[txn_id] = Version.from_facts(txn_id, 1, facts)
            continue
        if all(getattr(before, name) == facts[name] for name in FACTS):
            skip.append(position)
            continue
        version = before.version + 1
        current[txn_id] = Version.from_facts(txn_id, version, facts)
        amendments.append(Amendment(position, txn_id, version, _reason(before, facts, version), current[txn_id]))
    return amendments, skip
