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
from job.approval.decide import Item, plan_decisions
from job.mail.htmltext import convert_html_to_text
from job.mail.message import read_inbound
from job.approval.reply import IdIndex, parse_commands, parse_reply

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
    ("approve all\nreject 4 fraud",  # a reject's reason may follow its items without a mark, in any language
     {"TX-1001": "approved", "TX-1002": "approved", "TX-1003": "approved", "TX-1004": "rejected", "HX-5": "approved"}, ""),
    ("hold 4 пока Contoso не пришлёт акт", {"TX-1004": "held"}, ""),
    ("hold 2 and approve 3", {}, "another instruction"),
    ("approve 2 nice", {}, "'nice' is not an item number"),
    ("approve all except 9", {}, "there is no item 9"),
    ("approve 1 except 3", {}, "not among those listed"),
    ("OK, all of them?", {}, "question"),
    ("approve 2?", {}, "question"),
    ("approve 1\nCould you send me the invoice for item 2?", {}, "question"),
    ("approve all\nI would not pay TX-1003", {}, "reads like an instruction"),
    ("approve all\nwe should not approve 4", {}, "reads like an instruction"),
    ("approve all\n3 is a duplicate", {}, "reads like an instruction"),
    ("approve all\nitem 4 looks wrong", {}, "reads like an instruction"),
    ("approve all\nHold on, let me check", {}, "'hold on'"),
    ("Yes, approve 1 - reject 2", {}, "another instruction"),  # a weak verb first does not skip the reason check
    ("ok, approve 3 (only if the PO arrives)", {}, "condition"),
    ("approve all\napprove 1 - reject 2", {}, "one instruction per line"),
    ("I think we should not\napprove all of them.", {}, "continues the sentence"),
    ("approve 2\nreject 2", {}, "different decisions"),
    ("approve all\nreject all", {}, "'all' more than once"),
    # an exception, a correction or a condition on another line or inside the reason
    ("approve all\nexcept 4", {}, "reads like an instruction"),
    ("approve all\nbut not 4, it is a duplicate", {}, "reads like an instruction"),
    ("approve all\nNo, 3 is a duplicate", {}, "reads like an instruction"),
    ("approve all\ndon't pay 3", {}, "reads like an instruction"),
    ("approve all\nPlease check 3 first", {}, "reads like an instruction"),
    ("approve all\nthe fourth one is a duplicate", {}, "reads like an instruction"),
    ("approve 3\nsorry, I meant 4", {}, "reads like an instruction"),
    ("Approve all.\nOops, not yet - I need to check with Dana first.", {}, "reads like an instruction"),
    ("approve all - except 4", {}, "except"),
    ("approve all (but reject 4)", {}, "another instruction"),
    ("approve 3 - actually no, reject 3", {}, "actually"),
    ("approve 3 pending PO from vendor", {}, "condition"),
    ("approve 3 (only if the PO arrives)", {}, "condition"),
    ("reject 2: duplicate; approve 3", {}, "another instruction"),
    ("approve TX-1001 - TX-1003", {}, "the items go on"),
    ("approve 2 \u2014 3: no PO", {}, "condition"),
    ("No. 3: approve", {}, "'No.' here reads as 'number'"),
    ("No 3: approve it", {}, "'No.' here reads as 'number'"),
    ("We won\u2019t\napprove all of them.", {}, "continues the sentence"),
    ("Dana checked the vendor and under no circumstances\napprove 4.", {}, "continues the sentence"),
    # in Chinese, Japanese or Korean a reason needs no separator, but never after an approval
    ("hold 3 等采购订单\nreject 2 与上月运费重复", {"TX-1003": "held", "TX-1002": "rejected"}, ""),
    ("approve 1 等一下", {}, "is not an item number"),
    # an item named in prose, in any language, or hidden from us by invisible or look-alike letters
    ("approve all\nP.S. 4 is a dupe", {}, "reads like an instruction"),
    ("approve all\naußer 4", {}, "reads like an instruction"),
    ("approve all\n\u274c 4", {}, "reads like an instruction"),
    ("approve all\nex\u200bcept 4", {}, "reads like an instruction"),
    ("approve all\nexc\u0435pt TX-1004", {}, "reads like an instruction"),
    ("approve 2 - subject to PO", {}, "condition"),
    ("approve 2 - jk", {}, "the reason says 'jk'"),
    ("approve 1-5 except 3", {"TX-1001": "approved", "TX-1002": "approved", "TX-1004": "approved", "HX-5": "approved"}, ""),
    ("\u200fapprove 2", {"TX-1002": "approved"}, ""),
    ("approve \uff13", {"TX-1003": "approved"}, ""),
    ("approve all\nI was out 2 days, sorry\nSee you on Dec 3", {t: "approved" for t in IDS}, ""),
    # prose around clear commands is fine
    ("Please approve all", {t: "approved" for t in IDS}, ""),
    ("approve all \U0001F44D", {t: "approved" for t in IDS}, ""),
    ("Sorry for the late reply\napprove 1\n\nDana Smith\nAcme Holding AG\n1 Main Street\n3rd floor\nNo. 1 Bank Lane",
     {"TX-1001": "approved"}, ""),
    ("reject 2: not approved by the budget owner\nhold 5 until the PO arrives", {"TX-1002": "rejected", "HX-5": "held"}, ""),
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


def test_a_number_that_is_also_another_items_id_is_refused() -> None:
    items = [Item(1, 1, "2", "pending"), Item(2, 2, "TX-1002", "pending")]
    decided, plan = decide("approve 2", items, ["2", "TX-1002"])
    assert decided == {} and "also the id of item 1" in plan.problems[0]
    decided, _ = decide("approve TX-1002", items, ["2", "TX-1002"])
    assert decided == {"TX-1002": "approved"}


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
        matches = index.folded.get(__import__("job.approval.reply", fromlist=["fold_id"]).fold_id(token), [])
        assert decided == ({matches[0]: "approved"} if len(matches) == 1 else {})


# --- properties: "all" plus anything unclear never decides ---------------------------

UNCLEAR_LINES = st.sampled_from([
    "rejct 4: fraud", "approve 4 fraud", "OK, all of them?", "don't approve 3", "I approve all", "TX-1003 is wrong",
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


# --- properties: a command under any quote header never decides ----------------------

VERB_HEADERS = [
    "On Thu, 3 Dec 2026 at 17:45, Ledger Audit <audit@example.com> wrote:",
    "On Thu, Dec 3, 2026 at 5:45 PM Ledger Audit <\naudit@example.com> wrote:",
    "Am Do., 3. Dez. 2026 um 18:45 Uhr schrieb Ledger Audit <audit@example.com>:",
    "Le jeu. 3 déc. 2026 à 18:45, Ledger Audit <audit@example.com> a écrit :",
    "El jue, 3 dic 2026 a las 18:45, Ledger Audit (<audit@example.com>) escribió:",
    "Op do 3 dec. 2026 om 18:45 schreef Ledger Audit <audit@example.com>:",
    "Il giorno gio 3 dic 2026 alle ore 18:45 Ledger Audit <audit@example.com> ha scritto:",
    "Em qui., 3 de dez. de 2026 às 14:45, Ledger Audit <audit@example.com> escreveu:",
    "Den tors 3 dec. 2026 kl 18:45 skrev Ledger Audit <audit@example.com>:",
    "czw., 3 gru 2026 o 18:45 Ledger Audit <audit@example.com> napisał(a):",
    "03.12.2026 20:45, Ledger Audit пишет:",
    "чт, 3 груд. 2026 р. о 19:45 Ledger Audit <audit@example.com> пише:",
    "在 2026-12-04 01:45:00，\"Ledger Audit\" <audit@example.com> 写道：",
    "2026년 12월 4일 (금) 오전 2:45, Ledger Audit <audit@example.com>님이 작성:",
    "3 Ara 2026 Per, 20:45 tarihinde Ledger Audit <audit@example.com> şunu yazdı:",
    "On Thu, Dana wrote:",
]
MARKED_ONLY_HEADERS = [
    "03.12.2026, 20:45, \"Ledger Audit\" <audit@example.com>:",
    "чт, 3 дек. 2026 г. в 20:45, Ledger Audit <audit@example.com>:",
    "2026年12月4日(金) 2:45 Ledger Audit <audit@example.com>:",
    "2016-10-24 15:36 GMT+02:00 Ledger Audit <audit@example.com>:",
]
BLOCK_HEADERS = [
    "-----Original Message-----",
    "-------- Original message --------",
    "---------- Forwarded message ---------",
    "------------------ 原始邮件 ------------------",
    "---------- Původní e-mail ----------",
    "________________________________\nFrom: Ledger Audit\nSent: Thursday, December 3, 2026 5:45 PM\nTo: Dana\nSubject: approval",
    "*From:* Ledger Audit <audit@example.com>\n*Sent:* Thursday, December 3, 2026 5:45 PM",
    "Von: Ledger Audit <audit@example.com>\nGesendet: Donnerstag, 3. Dezember 2026 18:45\nAn: Dana",
    "De : Ledger Audit\nEnvoyé : jeudi 3 décembre 2026 18:45\nÀ : Dana",
    "От: Ledger Audit\nОтправлено: 3 декабря 2026 г. 20:45\nКому: Dana",
    "Від: Ledger Audit\nНадіслано: 3 грудня 2026 р. 19:45\nКому: Dana",
    "发件人: Ledger Audit\n发送时间: 2026年12月4日 1:45\n收件人: Dana",
    "差出人: Ledger Audit\n送信日時: 2026年12月4日 2:45\n宛先: Dana",
    "Date: Thu, 3 Dec 2026 17:45\nTo: Dana\nSubject: approval",
]
NEW_TEXT = st.sampled_from(["approve 1", "reject 2: no PO", "hold 3 until the PO arrives", "Thanks", "approve TX-1004",
                            "Hi,\napprove 1, 3\nDana", ""])
PLANTED = st.lists(st.sampled_from(["approve all", "reject 2: duplicate", "approve 1-5", "hold 3", "yes, all",
                                    "approve all except 1", "reject TX-1001: fraud"]), min_size=1, max_size=3)


FOREIGN_HEADERS = [
    "Quoting Bob <bob@x.com>:",
    "---- On Mon, 03 Dec 2026 09:12:00 +0100 Bob <bob@x.com> wrote ----",
    "Bob <bob@x.com> wrote on Dec 3, 2026 9:12:",
    "Bob Smith (bob@x.com) said on 12/3/2026:",
    "2026年12月3日(木) 9:12 Bob <bob@x.com>:",
    "From: Bob <bob@x.com>",
    "Forwarded message:",
    "De la: Audit <audit@x.com>\nTrimis: luni, 24 noiembrie 2026 09:12\nCătre: Ana <ana@x.com>\nSubiect: Ledger audit",
    "________________________________\nDe la: Audit <audit@x.com>\nTrimis: luni, 24 noiembrie 2026 09:12\nCătre: Ana",
    "Από: Audit <audit@x.com>\nΑποστολή: Δευτέρα, 24 Νοεμβρίου 2026 09:12\nΠρος: Ana\nΘέμα: Ledger audit",
    "Dari: Audit <audit@x.com>\nDikirim: Senin, 24 November 2026 09.12\nKepada: Ana",
    "Absender: Audit <audit@x.com>\nZeitpunkt: 24.11.2026 09:12\nEmpfänger: Ana",  # labels we do not list
    "În lun., 24 nov. 2026 la 09:12, Audit <audit@x.com> a scris:",
    "El dl., 24 de nov. 2026 a les 9:12, Audit (<audit@x.com>) va escriure:",
    "Pada tanggal Sen, 24 Nov 2026 09.12, Audit <audit@x.com> menulis:",
    "On Mon, Nov 24, 2026 at 9:12 AM Audit <audit@x.com> wrote",
]


@pytest.mark.parametrize("header", FOREIGN_HEADERS)
def test_an_unmarked_quote_under_a_header_in_another_language_never_decides(header: str) -> None:
    plain = "approve 1\n\n" + header + "\n\nreject 3: duplicate\napprove all\n"
    assert new_commands(message(plain)) == {"TX-1001": "approved"}


def test_a_quote_drawn_with_a_left_border_never_decides() -> None:
    html = ('<div>approve 1</div><div>În lun., 24 nov. 2026 la 09:12, Dana &lt;dana@x.com&gt; a scris:</div>'
            '<div style="border-left:1px solid #ccc;padding-left:1ex">reject 3: duplicate</div>')
    assert new_commands(message(None, html)) == {"TX-1001": "approved"}


@settings(max_examples=400)
@given(new=NEW_TEXT, header=st.sampled_from(VERB_HEADERS + MARKED_ONLY_HEADERS + BLOCK_HEADERS), planted=PLANTED,
       marked=st.booleans(), blank=st.booleans())
def test_a_command_under_any_quote_header_never_decides(new, header, planted, marked, blank) -> None:
    if header in MARKED_ONLY_HEADERS:
        marked = True  # without a verb, such a header is known by the quote under it
    quote = "\n".join(("> " if marked else "") + line for line in planted)
    plain = new + ("\n\n" if blank else "\n") + header + "\n" + quote + "\n"
    alone = parse_reply(new, None, sent_texts=(), row_count=len(ITEMS), known_ids=IDS)
    parsed = parse_reply(plain, None, sent_texts=(), row_count=len(ITEMS), known_ids=IDS)
    assert parsed.commands == alone.commands
    assert plan_decisions(parsed.commands, ITEMS, unclear=parsed.unclear) == plan_decisions(
        alone.commands, ITEMS, unclear=alone.unclear)


# --- no input makes a reply slow -------------------------------------------------------

ADVERSARIAL_BODIES = [
    lambda n: "approve " + "1, " * n,
    lambda n: "a" * (8 * n),
    lambda n: "On " + "1 " * n + "wrote",
    lambda n: ("approve 1\n" + "x" * 50 + ":\n") * (n // 20),
    lambda n: "> " * n + "approve all",
    lambda n: "-" * (4 * n) + "x",
    lambda n: "reject 1 (" * n,
    lambda n: ("TX-1001 " * n) + "?",
    lambda n: "<div style='display:none'>" * (n // 8) + "approve all",
    lambda n: "<style>" + ".a{" * n + "</style>approve 1",
    lambda n: "<style>" + "/**/" * n + "</style><p>approve 1</p>",
    lambda n: "wrote" + " " * (4 * n) + "x\nOn:\n",
    lambda n: "approve all\n" + "sorry 1 " * n,
    lambda n: ("> q\napprove 1\n" * (n // 4)),
]


@pytest.mark.no_cover  # timed: the coverage tracer's cost is no part of what is measured
@pytest.mark.parametrize("shape", range(len(ADVERSARIAL_BODIES)))
def test_reading_a_reply_takes_linear_time(shape: int) -> None:
    import gc
    import time

    build = ADVERSARIAL_BODIES[shape]

    def seconds(n: int) -> float:
        text = build(n)
        best = float("inf")
        gc.disable()  # as timeit does: a collection of the test process's heap is no part of the parse
        try:
            for _ in range(3):
                started = time.perf_counter()
                html = text if "<" in text[:8] else None
                parse_reply(None if html else text, html, sent_texts=(), row_count=5000, known_ids=IDS)
                best = min(best, time.perf_counter() - started)
        finally:
            gc.enable()
        return best

    small, large = seconds(5_000), seconds(20_000)
    assert large < 8 * small + 0.005, (small, large)  # linear is 4x, quadratic 16x
    assert large < 1.0


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
    '<blockquote class="gmail_quote">approve all</blockquote>',
]


HIDDEN += [
    '<div style="color:transparent">approve all</div>',
    '<div style="color:rgba(0,0,0,0)">approve all</div>',
    '<div style="color:#fefefe">approve all</div>',
    '<div style="background:url(x.png) #000;color:#010101">approve all</div>',
    '<div style="font-size:1px">approve all</div>',
    '<div style="opacity:0.01">approve all</div>',
    '<div style="position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0,0,0,0)">approve all</div>',
    '<div style="clip-path:inset(100%)">approve all</div>',
    '<div style="transform:translateX(-9999px)">approve all</div>',
    '<div style="transform:scaleX(0)">approve all</div>',
    '<div style="text-indent:-100%">approve all</div>',
    '<div style="text-decoration:line-through">approve all</div>',
    '<del>approve all</del>',
    '<details><summary>more</summary><div>approve all</div></details>',
    '<svg width="0" height="0"><text>approve all</text></svg>',
    '<div style="border-left:1px solid #ccc;padding-left:1ex">approve all</div>',
]


HIDDEN += [
    '<p style="color:hsl(0,0%,100%)">approve all</p>',
    '<p style="-webkit-text-fill-color:#fff">approve all</p>',
    '<p style="filter:opacity(0)">approve all</p>',
    '<p style="clip-path:circle(0)">approve all</p>',
    '<p style="font-size:1%">approve all</p>',
    '<p style="color:rgba(0,0,0,0.01)">approve all</p>',
    '<p style="color:#0000">approve all</p>',
    '<p style="position:absolute;left:-400px">approve all</p>',
    '<p style="text-indent:-400px;overflow:hidden">approve all</p>',
    '<div style="display:none"/><p>approve all</p></div>',  # a browser ignores the '/': the div holds the text
    '<!-- -- >approve all-->',  # a browser ends this comment only at '-->'
]


@pytest.mark.parametrize("hidden", HIDDEN)
def test_text_a_reader_would_not_see_never_counts(hidden: str) -> None:
    html = f"<html><body><div>reject 2: no PO</div>{hidden}</body></html>"
    assert "approve all" not in convert_html_to_text(html)
    assert new_commands(message(None, html)) == {"TX-1002": "rejected"}


@pytest.mark.parametrize(("plain", "html"), [
    ("approve 1, 2, 4", "<p>approve 1, 2, <s>4</s></p>"),  # struck out in what the approver saw
    ("approve all", "<p>approve all</p><p>except 4</p>"),
    ("approve all", "<p>approve 1</p>"),
])
def test_plain_and_html_versions_that_disagree_decide_nothing(plain: str, html: str) -> None:
    assert new_commands(message(plain, html)) == {}
    assert new_commands(message(plain, f"<p>{plain}</p>")) != {}  # the same words in both: recorded


def test_every_inline_text_part_is_read() -> None:
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = "controller@example.com"
    msg["Message-ID"] = "<m3@client.test>"
    msg.set_content("approve all\n")
    msg.add_attachment("except 4\n", subtype="plain", disposition="inline")
    part = msg.get_payload()[1]
    del part["Content-Disposition"]
    part["Content-Disposition"] = "inline"
    assert new_commands(msg.as_bytes()) == {}


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


def test_a_message_that_takes_too_long_is_stopped() -> None:
    import time

    from job.poll import MessageTooSlow, time_budget

    started = time.monotonic()
    with pytest.raises(MessageTooSlow, match="nothing of it was recorded"):
        with time_budget(0.2):
            while True:
                sum(range(1000))
    assert time.monotonic() - started < 2
    with time_budget(0.2):  # a block that finishes in time is not touched, and the timer is cleared
        pass
    time.sleep(0.3)


def test_an_encoded_display_name_never_lends_another_address() -> None:
    """Real clients put encoded words inside quoted names, and that is tolerated; a name that
    decodes to another address, or an encoded word where the address belongs, is still refused."""
    import base64

    from job.mail.authenticate import identify_sender

    def sender(from_value: str):
        return identify_sender(f"From: {from_value}\r\nTo: audit@example.com\r\n\r\napprove all\r\n".encode())

    name = base64.b64encode("Dana Контролер".encode()).decode()
    assert sender(f'"=?utf-8?B?{name}?=" <controller@example.com>').address == "controller@example.com"
    spoof = base64.b64encode("controller@example.com".encode()).decode()
    assert "names another address" in sender(f'"=?utf-8?B?{spoof}?=" <mallory@evil.test>').problem
    assert sender(f'"=?utf-8?B?{spoof}?="@evil.test').problem
    assert sender(f'=?utf-8?B?{spoof}?=').problem
