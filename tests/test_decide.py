"""Planning decisions from an approver's commands: which items are decided, and why not."""

from __future__ import annotations

import pytest

from job.approval.decide import Decision, Item, Plan, plan_decisions
from job.approval.reply import Command, parse_commands


def items(*statuses: str, decided_by: str = "") -> list[Item]:
    """Items numbered 1.. with ids TX-1001.., in the given statuses."""
    return [
        Item(pk=100 + no, no=no, txn_id=f"TX-{1000 + no}", status=status,
             decided_by=decided_by if status != "pending" else "", decided_at="2026-11-25T07:00:00Z" if status != "pending" else "")
        for no, status in enumerate(statuses, 1)
    ]


def cmd(action: str, *targets: str, reason: str = "", text: str | None = None) -> Command:
    """A command as the reply parser produces it; no targets means 'all'."""
    if text is None:
        text = f"{action} {', '.join(targets) if targets else 'all'}" + (f": {reason}" if reason else "")
    return Command(action, tuple(targets) if targets else None, reason, text)


def outcome(plan: Plan) -> list[tuple[int | None, str, str]]:
    return [(d.item.no if d.item else None, d.decision, d.reason) for d in plan.decisions]


PENDING4 = items("pending", "pending", "pending", "pending")


# --- table: what gets decided ---------------------------------------------------------

CASES = [
    pytest.param(
        [cmd("approve", "1", "3")], PENDING4,
        [(1, "approved", ""), (3, "approved", "")], [],
        id="approve-rows",
    ),
    pytest.param(
        [cmd("reject", "2", reason="no PO on file"), cmd("hold", "4", reason="ask vendor")], PENDING4,
        [(2, "rejected", "no PO on file"), (4, "held", "ask vendor")], [],
        id="reject-and-hold-with-reasons",
    ),
    pytest.param(
        [cmd("approve", "tx-1002"), cmd("reject", "Tx-1003", reason="dup")], PENDING4,
        [(2, "approved", ""), (3, "rejected", "dup")], [],
        id="ids-are-case-insensitive",
    ),
    pytest.param(
        [cmd("approve", "2", "TX-1002")], PENDING4,
        [(2, "approved", "")], [],
        id="same-item-by-row-and-id-once",
    ),
    pytest.param(
        [cmd("approve", reason="all fine")], PENDING4,
        [(1, "approved", "all fine"), (2, "approved", "all fine"), (3, "approved", "all fine"), (4, "approved", "all fine")], [],
        id="approve-all",
    ),
    pytest.param(
        [cmd("approve"), cmd("reject", "2", reason="x")], PENDING4,
        [(1, "approved", ""), (2, "rejected", "x"), (3, "approved", ""), (4, "approved", "")], [],
        id="specific-before-all",
    ),
    pytest.param(
        [cmd("reject", "2", reason="x"), cmd("approve")], PENDING4,
        [(1, "approved", ""), (2, "rejected", "x"), (3, "approved", ""), (4, "approved", "")], [],
        id="specific-before-all-whatever-the-line-order",
    ),
    pytest.param(
        [cmd("hold")], items("approved", "pending", "rejected", "pending", decided_by="cfo@example.com"),
        [(2, "held", ""), (4, "held", "")], [],
        id="all-covers-only-pending-items",
    ),
    pytest.param(
        [cmd("approve", "2"), cmd("reject", "2", reason="no")], PENDING4,
        [], ["item 2 (TX-1002) was given different decisions in one reply"],
        id="conflicting-verbs-decide-nothing",
    ),
    pytest.param(
        [cmd("approve", "2"), cmd("reject", "TX-1002"), cmd("approve")], PENDING4,
        [], ["item 2 (TX-1002) was given different decisions in one reply"],
        id="a-conflict-stops-all-too",
    ),
    pytest.param(
        [cmd("approve"), cmd("reject")], PENDING4,
        [], ["the reply says 'all' more than once, in different ways; it is not clear what you meant"],
        id="two-different-all-verbs-decide-nothing",
    ),
    pytest.param(
        [cmd("approve"), cmd("hold", "3"), cmd("reject")], PENDING4,
        [], ["the reply says 'all' more than once, in different ways; it is not clear what you meant"],
        id="nothing-applies-when-all-verbs-clash",
    ),
    pytest.param(
        [cmd("approve", reason="first"), cmd("approve", reason="second")], items("pending", "pending"),
        [(1, "approved", "first"), (2, "approved", "first")], [],
        id="same-all-verb-twice-is-fine",
    ),
    pytest.param(
        [cmd("approve", "9")], PENDING4,
        [], ["'approve 9': there is no item 9 in this request"],
        id="unknown-row",
    ),
    pytest.param(
        [cmd("approve", "TX-9999", "1")], PENDING4,
        [(1, "approved", "")], ["'approve TX-9999, 1': there is no item TX-9999 in this request"],
        id="unknown-id-does-not-stop-the-rest",
    ),
    pytest.param(
        [cmd("approve", "1", "2")], items("rejected", "pending", decided_by="cfo@example.com"),
        [(2, "approved", "")], ["'approve 1, 2': item 1 (TX-1001) was already rejected by cfo@example.com; decisions are final"],
        id="already-decided-is-final",
    ),
    pytest.param(
        [cmd("reject", "TX-1001", reason="no SOW")], items("held"),
        [(1, "rejected", "no SOW")], [],
        id="a-held-item-can-still-be-rejected",
    ),
    pytest.param(
        [cmd("approve", "1")], items("held", "pending"),
        [(1, "approved", "")], [],
        id="a-held-item-can-still-be-approved",
    ),
    pytest.param(
        [cmd("approve")], items("held", "pending"),
        [(2, "approved", "")], [],
        id="all-does-not-cover-held-items",
    ),
    pytest.param(
        [cmd("hold", "1")], items("held", "pending"),
        [], ["'hold 1': item 1 (TX-1001) is already held"],
        id="holding-a-held-item-again-changes-nothing",
    ),
]


@pytest.mark.parametrize(("commands", "request_items", "decided", "problems"), CASES)
def test_plan_decisions(commands, request_items, decided, problems) -> None:
    plan = plan_decisions(commands, request_items)
    assert outcome(plan) == decided
    assert list(plan.problems) == problems


def test_decisions_carry_the_items_themselves() -> None:
    plan = plan_decisions([cmd("reject", "tx-1003", reason="dup")], PENDING4)
    assert plan.decisions == (Decision(PENDING4[2], "rejected", "dup"),)


# --- a run with nothing flagged: sign-off ---------------------------------------------


def test_approve_all_on_zero_items_is_a_sign_off() -> None:
    plan = plan_decisions([cmd("approve", reason="looks good")], [])
    assert plan == Plan((Decision(None, "signed_off", "looks good"),), ())


def test_second_sign_off_is_refused() -> None:
    plan = plan_decisions([cmd("approve")], [], signed_off=True)
    assert plan.decisions == ()
    assert plan.problems == ("this run was already signed off; decisions are final",)


@pytest.mark.parametrize("verb", ["reject", "hold"])
def test_other_all_verbs_on_zero_items_are_refused(verb: str) -> None:
    plan = plan_decisions([cmd(verb)], [])
    assert plan.decisions == ()
    assert plan.problems == ("nothing was flagged in this run; only 'approve all' (sign-off) applies",)


def test_specific_rows_on_zero_items_are_unknown() -> None:
    plan = plan_decisions([cmd("approve", "1")], [])
    assert plan.decisions == ()
    assert plan.problems == ("'approve 1': there is no item 1 in this request",)


def test_nothing_to_do_when_no_commands() -> None:
    assert plan_decisions([], PENDING4) == Plan((), ())


# --- from reply text to a plan --------------------------------------------------------


def test_parsed_reply_text_plans_specific_before_all() -> None:
    ids = [i.txn_id for i in PENDING4]
    parsed = parse_commands("Approve all\nReject 2: no PO on file\n\nThanks,\nC.", row_count=4, known_ids=ids)
    assert parsed.problems == ()
    plan = plan_decisions(parsed.commands, PENDING4)
    assert outcome(plan) == [(1, "approved", ""), (2, "rejected", "no PO on file"), (3, "approved", ""), (4, "approved", "")]
    assert plan.problems == ()


def test_numeric_transaction_id_named_in_a_reply_is_decided() -> None:
    request_items = [Item(pk=1, no=1, txn_id="5001", status="pending"), Item(pk=2, no=2, txn_id="5002", status="pending")]
    parsed = parse_commands("approve 5002", row_count=2, known_ids=["5001", "5002"])
    assert [c.targets for c in parsed.commands] == [("5002",)] and parsed.problems == ()
    plan = plan_decisions(parsed.commands, request_items)
    assert plan.problems == ()
    assert outcome(plan) == [(2, "approved", "")]
