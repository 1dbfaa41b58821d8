"""Turning an approver's commands into decisions: pure planning, then recording.

`plan_decisions` is pure: given the parsed commands and the request's items it says what
to record and what to refuse, and why. Specific commands are applied before `all`, which
covers only what is still pending (less the items after "except"; a held item is decided
only by naming it). Approved, rejected and expired are final: naming such an item is refused.
Held is a pause: a held item may later be approved or rejected.

It fails closed: when the reply has a line that is not clear (the parser's problems), or
gives one item two different decisions, or says `all` with two verbs, nothing is recorded;
the plan then holds what *would* have been recorded, for the answer to show.
`record_decisions` writes a plan inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from job.approval.reply import Command, IdIndex
from job.store.auditlog import append_event

__all__ = ["Item", "Decision", "Plan", "plan_decisions", "record_decisions", "DECISION_OF"]

DECISION_OF = {"approve": "approved", "reject": "rejected", "hold": "held"}


@dataclass(frozen=True, slots=True)
class Item:
    pk: int
    no: int
    txn_id: str
    status: str
    decided_by: str = ""
    decided_at: str = ""


@dataclass(frozen=True, slots=True)
class Decision:
    item: Item | None  # None: the sign-off of a run with nothing flagged
    decision: str
    reason: str


@dataclass(frozen=True, slots=True)
class Plan:
    decisions: tuple[Decision, ...]  # what to record
    problems: tuple[str, ...]
    would: tuple[Decision, ...] = ()  # when the reply is unclear: what it would have recorded
    unclear: bool = False  # the reply is not clear, so nothing of it is recorded


def _resolve(target: str, by_no: dict[int, Item], by_id: dict[str, Item], index: IdIndex) -> Item | None:
    """A row number when it is one of this request's rows, else a transaction id, resolved
    by the same function the parser used (`IdIndex.resolve`)."""
    if target.isdigit() and int(target) in by_no:
        return by_no[int(target)]
    known, _ = index.resolve(target)
    return by_id.get(known) if known is not None else None


def plan_decisions(
    commands: Sequence[Command],
    items: Sequence[Item],
    *,
    signed_off: bool = False,
    unclear: Sequence[str] = (),
    index: IdIndex | None = None,
) -> Plan:
    """What the commands decide about these items (pure); nothing when `unclear` lists a
    line the parser could not read, or when the commands contradict each other."""
    by_no = {i.no: i for i in items}
    by_id = {i.txn_id: i for i in items}
    index = index or IdIndex(list(by_id))  # the parser's, when the caller has it
    problems: list[str] = list(unclear)
    blocked = bool(unclear)
    wanted: dict[int, tuple[str, str, str]] = {}  # item no -> (decision, reason, source text)
    conflicted: set[int] = set()
    all_commands = [c for c in commands if c.targets is None]

    for command in commands:
        if command.targets is None:
            continue
        decision = DECISION_OF[command.action]
        for target in command.targets:
            item = _resolve(target, by_no, by_id, index)
            if item is None:
                problems.append(f"'{command.text}': there is no item {target} in this request")
                continue
            if item.status == "held" and decision == "held":
                problems.append(f"'{command.text}': item {item.no} ({item.txn_id}) is already held")
                continue
            if item.status not in ("pending", "held"):  # a held item may still be approved or rejected
                problems.append(
                    f"'{command.text}': item {item.no} ({item.txn_id}) was already {item.status}"
                    + (f" by {item.decided_by}" if item.decided_by else "")
                    + "; decisions are final"
                )
                continue
            previous = wanted.get(item.no)
            if previous and previous[0] != decision:
                conflicted.add(item.no)
            elif not previous:
                wanted[item.no] = (decision, command.reason, command.text)

    if len({(DECISION_OF[c.action], c.excluded) for c in all_commands}) > 1:
        problems.append("the reply says 'all' more than once, in different ways; it is not clear what you meant")
        blocked = True
    if all_commands:
        command = all_commands[0]
        decision = DECISION_OF[command.action]
        excluded = set()
        for target in command.excluded:
            item = _resolve(target, by_no, by_id, index)
            if item is None:
                problems.append(f"'{command.text}': there is no item {target} in this request")
                blocked = True
            else:
                excluded.add(item.no)
        for item in items:
            if item.status == "pending" and item.no not in wanted and item.no not in conflicted and item.no not in excluded:
                wanted[item.no] = (decision, command.reason, command.text)

    for no in sorted(conflicted):
        wanted.pop(no, None)
        problems.append(f"item {no} ({by_no[no].txn_id}) was given different decisions in one reply")
        blocked = True

    decisions = [Decision(by_no[no], d, reason) for no, (d, reason, _) in sorted(wanted.items())]
    if not items and all_commands and not blocked:
        if signed_off:
            problems.append("this run was already signed off; decisions are final")
        elif all_commands[0].action == "approve":
            decisions.append(Decision(None, "signed_off", all_commands[0].reason))
        else:
            problems.append("nothing was flagged in this run; only 'approve all' (sign-off) applies")
    if blocked:
        return Plan((), tuple(problems), tuple(decisions), unclear=True)
    return Plan(tuple(decisions), tuple(problems))


def record_decisions(conn, plan: Plan, *, request_id: str, approver: str, decided_at: str, message_id: str) -> None:
    """Append the plan's decisions and set each item's status (inside the caller's transaction).
    Each decision's event says which status it changed (`from`), so `audit verify` can replay
    an item's statuses from its seal to now."""
    for d in plan.decisions:
        before = None
        if d.item is not None:
            row = conn.execute("SELECT status FROM transactions WHERE id = ?", (d.item.pk,)).fetchone()
            before = row[0] if row else None
        values = {
            "request_id": request_id,
            "transaction_id": d.item.pk if d.item else None,
            "item_no": d.item.no if d.item else None,
            "decision": d.decision,
            "reason": d.reason,
            "approver": approver,
            "decided_at": decided_at,
            "message_id": message_id,
        }
        decision_id = conn.execute(
            "INSERT INTO decisions (request_id, transaction_id, item_no, decision, reason, approver, decided_at, message_id)"
            " VALUES (:request_id, :transaction_id, :item_no, :decision, :reason, :approver, :decided_at, :message_id)",
            values,
        ).lastrowid
        append_event(
            conn,
            "decision",
            request_id=request_id,
            actor=approver,
            message_id=message_id,
            detail={
                **values,
                "decision_id": decision_id,
                "txn_id": d.item.txn_id if d.item else None,
                **({"from": before} if d.item else {}),
            },
        )
        if d.item is not None:
            changed = conn.execute(
                "UPDATE transactions SET status = ? WHERE id = ? AND status IN ('pending', 'held')", (d.decision, d.item.pk)
            ).rowcount
            if changed != 1:
                raise RuntimeError(f"item {d.item.no} of request {request_id} was not open when recorded")
