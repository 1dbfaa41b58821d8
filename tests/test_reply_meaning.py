"""A reply decides exactly what the approver meant, or nothing: fail closed on meaning.

Pure tables and properties over the parser and the planner, then one end-to-end poll that
shows the approver what would have been recorded from an unclear reply.
"""

from __future__ import annotations

import email.policy
import shutil
import sqlite3
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import EXAMPLES, EXAMPLE_LEDGER, audit, build_reply, drop_reply, maildir_messages, plain_body, write_config
from job.decide import Item, plan_decisions
from job.htmltext import convert_html_to_text
from job.message import read_inbound
from job.reply import IdIndex, parse_commands, parse_reply

IDS = ["TX-1001", "TX-1002", "TX-1003", "TX-1004", "HX-5"]
ITEMS = [Item(pk=100 + n, no=n, txn_id=txn, status="pending") for n, txn in enumerate(IDS, 1)]


def decide(text: str, items=ITEMS, ids=IDS):
    """(what is recorded as {txn_id: decision}, problems) for a reply's new text."""
    parsed = parse_commands(text, row_count=len(items), known_ids=ids)
    plan = plan_decisions(parsed.commands, items, unclear=parsed.unclear)
    return {d.item.txn_id: d.decision for d in plan.decisions}, plan


# (new text, what is recorded, a fragment of the first problem or "")
CASES = [
    # reasons written the ways people write them, next to "all"
    ("approve all\nreject 3 (duplicate of item 2)",
     {"TX-1001": "approved", "TX-1002": "approved", "TX-1003": "rejected", "TX-1004": "approved", "HX-5": "approved"}, ""),
    ("approve all\nHold HX-5 until the PO arrives",
     {"TX-1001": "approved", "TX-1002": "approved", "TX-1003": "approved", "TX-1004": "approved", "HX-5": "held"}, ""),
    ("reject 3 - duplicate", {"TX-1003": "rejected"}, ""),
    ("reject 3 because the vendor billed twice", {"TX-1003": "rejected"}, ""),
    ("hold 5 until the PO arrives", {"HX-5": "held"}, ""),
    ("approve all except 2, 5",
     {"TX-1001": "approved", "TX-1003": "approved", "TX-1004": "approved"}, ""),
    ("approve all except 2\nreject 2: no PO",
     {"TX-1001": "approved", "TX-1002": "rejected", "TX-1003": "approved", "TX-1004": "approved", "HX-5": "approved"}, ""),
    ("approve all but TX-1004", {"TX-1001": "approved", "TX-1002": "approved", "TX-1003": "approved", "HX-5": "approved"}, ""),
    # not clear: nothing at all is recorded
    ("approve all\nrejct 4: fraud", {}, "did you mean 'reject'"),
    ("approve all\nreject 4 fraud", {}, "'fraud' is not an item number"),
    ("approve all except 9", {}, "there is no item 9"),
    ("approve 1 except 3", {}, "approve all except"),
    ("OK, all of them?", {}, "question"),
    ("approve 2?", {}, "question"),
    ("approve 1\nCould you send me the invoice for item 2?", {}, "question"),
    ("approve all\nI would not pay TX-1003", {}, "reads like an instruction"),
    ("approve all\nwe should not approve 4", {}, "reads like an instruction"),
    ("approve all\n3 is a duplicate", {}, "reads like an instruction"),
    ("approve all\nitem 4 looks wrong", {}, "reads like an instruction"),
    ("approve all\nHold on, let me check", {}, "'hold on'"),
    ("approve all\napprove 1 - reject 2", {}, "one instruction per line"),
    ("I think we should not\napprove all of them.", {}, "continues the sentence"),
    ("approve 2\nreject 2", {}, "different decisions"),
    ("approve all\nreject all", {}, "'all' more than once"),
    # prose around clear commands is fine
    ("Hi all,\n\napprove 1, 3\nreject 2: no PO on file\n\nThanks,\nDana\nTel +1 555 0100",
     {"TX-1001": "approved", "TX-1003": "approved", "TX-1002": "rejected"}, ""),
]


@pytest.mark.parametrize(("text", "recorded", "problem"), CASES)
def test_a_reply_decides_what_it_says_or_nothing(text, recorded, problem) -> None:
    decided, plan = decide(text)
    assert decided == recorded
    if problem:
        assert plan.unclear and plan.decisions == ()
        assert problem in plan.problems[0]
    else:
        assert not plan.unclear and plan.problems == ()


def test_an_unclear_reply_still_says_what_it_would_have_recorded() -> None:
    _, plan = decide("approve all\nrejct 4: fraud")
    assert [d.item.txn_id for d in plan.would] == IDS and {d.decision for d in plan.would} == {"approved"}


# --- ids are exact ---------------------------------------------------------------------

KELVIN = "RT-\u212a7"  # KELVIN SIGN, which case-folds and NFKC-normalises to "k"


def test_an_exact_id_wins_over_its_lookalike() -> None:
    items = [Item(1, 1, "RT-K7", "pending"), Item(2, 2, KELVIN, "pending")]
    for written, meant in (("RT-K7", "RT-K7"), (KELVIN, KELVIN)):
        decided, plan = decide(f"approve {written}", items, [i.txn_id for i in items])
        assert decided == {meant: "approved"}, written


def test_ids_that_collide_under_folding_are_ambiguous() -> None:
    items = [Item(1, 1, "RT-K7", "pending"), Item(2, 2, KELVIN, "pending")]
    decided, plan = decide("approve rt-k7", items, [i.txn_id for i in items])
    assert decided == {} and "could mean any of" in plan.problems[0]


def test_a_unique_id_resolves_whatever_its_case_or_width() -> None:
    decided, _ = decide("approve tx-1002\nreject ＴＸ－１００３: dup")
    assert decided == {"TX-1002": "approved", "TX-1003": "rejected"}


CONFUSABLE = st.sampled_from(["K", "k", "\u212a", "I", "i", "\u0130", "ß", "ss", "ﬁ", "fi", "Ａ", "A", "a", "1", "１"])
IDS_STRATEGY = st.lists(st.lists(CONFUSABLE, min_size=1, max_size=3).map(lambda parts: "ID-" + "".join(parts)),
                        min_size=1, max_size=6, unique=True)


@settings(max_examples=300)
@given(ids=IDS_STRATEGY, pick=st.integers(0, 5), written=st.lists(CONFUSABLE, min_size=1, max_size=3))
def test_ids_never_resolve_to_another_item_than_the_exact_one(ids, pick, written) -> None:
    items = [Item(n, n, txn, "pending") for n, txn in enumerate(ids, 1)]
    exact = ids[pick % len(ids)]
    decided, _ = decide(f"approve {exact}", items, ids)
    assert decided == {exact: "approved"}
    # a spelling that is not exact decides its one folded match, or nothing
    token = "ID-" + "".join(written)
    decided, _ = decide(f"approve {token}", items, ids)
    index = IdIndex(ids)
    if token in ids:
        assert decided == {token: "approved"}
    else:
        matches = index.folded.get(__import__("job.reply").reply.fold_id(token), [])
        assert decided == ({matches[0]: "approved"} if len(matches) == 1 else {})


# --- properties: "all" plus anything unclear never decides ---------------------------

UNCLEAR_LINES = st.sampled_from([
    "rejct 4: fraud", "reject 4 fraud", "OK, all of them?", "don't approve 3", "I approve all", "TX-1003 is wrong",
    "item 2 is a duplicate", "2 is a duplicate", "Hold on", "approve 99", "hodl 3", "approve 1 - reject 2",
    "aprove 2", "reject", "Should we pay #4?", "no 9", "approve all except", "approve 2 but", "approve 1?",
])
PROSE = st.sampled_from(["Hi,", "Thanks", "Dana", "Regards", "", "Hi all,", "Best, Dana Controller"])


@settings(max_examples=300)
@given(before=st.lists(PROSE, max_size=3), unclear=UNCLEAR_LINES, after=st.lists(PROSE, max_size=3),
       verb=st.sampled_from(["approve all", "yes, all", "reject all: duplicates", "hold all", "approve all except 2"]),
       first=st.booleans())
def test_all_plus_any_unclear_line_never_decides(before, unclear, after, verb, first) -> None:
    lines = [*before, verb, unclear, *after] if first else [*before, unclear, verb, *after]
    decided, plan = decide("\n".join(lines))
    assert decided == {} and plan.unclear


# --- reading what the approver saw ---------------------------------------------------


def message(plain: str | None = None, html: str | None = None, *, plain_params: dict | None = None,
            attachments: list[tuple[str, dict]] = ()) -> bytes:
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = "controller@example.com"
    msg["To"] = "audit@example.com"
    msg["Subject"] = "Re: approval"
    msg["Message-ID"] = "<m1@client.test>"
    if plain is not None:
        msg.set_content(plain, cte="8bit")
        for key, value in (plain_params or {}).items():
            msg.set_param(key, value)
        if html is not None:
            msg.add_alternative(html, subtype="html")
    else:
        msg.set_content(html, subtype="html")
    for text, params in attachments:
        msg.add_attachment(text, **params)
    return msg.as_bytes()


def new_commands(raw: bytes) -> dict:
    inbound = read_inbound(raw)
    parsed = parse_reply(inbound.plain, inbound.html, sent_texts=(), row_count=len(ITEMS), known_ids=IDS)
    plan = plan_decisions(parsed.commands, ITEMS, unclear=parsed.unclear)
    return {d.item.txn_id: d.decision for d in plan.decisions}


def test_format_flowed_soft_breaks_are_joined_before_reading() -> None:
    body = "Hi,\n\nI read the list and I think we should not \napprove all of them.\n\nDana\n"
    assert new_commands(message(body, plain_params={"format": "flowed"})) == {}
    body = "approve 1, 2 because the \nPOs are on file\n"
    assert new_commands(message(body, plain_params={"format": "flowed"})) == {"TX-1001": "approved", "TX-1002": "approved"}
    body = "we must not appro \nve all\n"  # DelSp=yes: the space before the soft break is not text
    assert read_inbound(message(body, plain_params={"format": "flowed", "delsp": "yes"})).plain.startswith("we must not approve all")


HIDDEN = [
    '<div style="display:none">approve all</div>',
    '<span style="DISPLAY: none !important">approve all</span>',
    '<div style="visibility:hidden">approve all</div>',
    '<p style="font-size:0">approve all</p>',
    '<p style="font-size: 0px; line-height: 0">approve all</p>',
    '<div style="opacity:0">approve all</div>',
    '<div style="color:#ffffff">approve all</div>',
    '<div style="color:white;background:#fff">approve all</div>',
    '<table bgcolor="#000000"><tr><td><font color="black">approve all</font></td></tr></table>',
    '<div style="max-height:0;overflow:hidden">approve all</div>',
    '<div style="mso-hide:all">approve all</div>',
    '<div hidden>approve all</div>',
    '<span style="position:absolute;left:-9999px">approve all</span>',
    '<style>.x{display:none}</style><div class="x">approve all</div>',
    '<style>#y { font-size: 0 }</style><p id="y">approve all</p>',
    '<head><title>approve all</title></head>',
    '<!-- approve all -->',
    '<script>approve all</script>',
    '<div class="gmail_quote">approve all</div>',
]


@pytest.mark.parametrize("hidden", HIDDEN)
def test_text_a_reader_would_not_see_never_counts(hidden: str) -> None:
    html = f"<html><body><div>reject 2: no PO</div>{hidden}</body></html>"
    assert "approve all" not in convert_html_to_text(html)
    assert new_commands(message(None, html)) == {"TX-1002": "rejected"}


def test_visible_coloured_text_still_counts() -> None:
    html = '<div style="color:#333;background:#fff">approve 1</div><div style="color:white;background:#000">approve 2</div>'
    assert new_commands(message(None, html)) == {"TX-1001": "approved", "TX-1002": "approved"}


@pytest.mark.parametrize("params", [
    {"subtype": "plain", "filename": "notes.txt"},
    {"subtype": "plain", "filename": "notes.txt", "disposition": "inline"},
    {"subtype": "plain", "params": {"name": "notes.txt"}, "disposition": "inline"},
])
def test_a_text_part_that_is_a_file_is_never_the_reply(params: dict) -> None:
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = "controller@example.com"
    msg["Message-ID"] = "<m2@client.test>"
    msg.make_mixed()
    msg.add_attachment("approve all\n", **params)
    if "params" in params:  # a name= parameter only, no disposition file name
        part = msg.get_payload()[0]
        del part["Content-Disposition"]
        part.set_param("name", "notes.txt")
    assert new_commands(msg.as_bytes()) == {}
    body = EmailMessage(policy=email.policy.SMTP)
    body.set_content("reject 2: no PO\n")
    msg.get_payload().insert(0, body)
    assert new_commands(msg.as_bytes()) == {"TX-1002": "rejected"}


# --- the answer to an unclear reply, end to end ---------------------------------------


@pytest.fixture
def site(tmp_path: Path) -> Path:
    shutil.copy(EXAMPLES / "vendors.csv", tmp_path / "vendors.csv")
    write_config(tmp_path / "audit.toml", {"db": "audit.db"}, policy={"known_vendors_file": "vendors.csv"},
                 approvers={"addresses": ["controller@example.com"]})
    assert audit("run", "--ledger", str(EXAMPLE_LEDGER), cwd=tmp_path).returncode == 0
    return tmp_path


def test_an_unclear_reply_records_nothing_and_the_answer_shows_what_it_would_have(site: Path) -> None:
    [request] = maildir_messages(site / "var" / "mail" / "outbox")
    drop_reply(site / "var" / "mail", build_reply(request, "approve all\nrejct 4: fraud", sender="controller@example.com"))
    result = audit("poll", "--once", cwd=site)
    assert result.returncode == 0, result.stderr
    db = sqlite3.connect(site / "audit.db")
    assert db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == 0
    assert db.execute("SELECT COUNT(*) FROM transactions WHERE status = 'pending'").fetchone()[0] == 4
    status, detail = db.execute("SELECT status, detail FROM messages WHERE direction = 'in'").fetchone()
    assert status == "refused" and "rejct 4: fraud" in detail
    answer = maildir_messages(site / "var" / "mail" / "outbox")[-1]
    assert answer["Subject"].startswith("Nothing recorded, your reply is not clear: ")
    text = plain_body(answer)
    assert "- line 'rejct 4: fraud': 'rejct' is not a command word; did you mean 'reject'?" in text
    assert "Had every line been clear, your reply would have recorded:" in text
    assert "- item 4 TX-1003 (Contoso Consulting, 3,000.00 USD): approved" in text
    assert "Please reply again with only clear instructions" in text
    # a clear reply afterwards is recorded as usual
    drop_reply(site / "var" / "mail", build_reply(request, "approve all except 4\nreject 4: fraud", sender="controller@example.com"))
    assert audit("poll", "--once", cwd=site).returncode == 0
    assert dict(db.execute("SELECT txn_id, status FROM transactions WHERE item_no IS NOT NULL")) == {
        "TX-1008": "approved", "TX-1002": "approved", "TX-1007": "approved", "TX-1003": "rejected"}
