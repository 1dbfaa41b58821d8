"""Tests for job.reply: only the approver's new text may ever become a command."""

from __future__ import annotations

import time

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from job.approval.reply import (
    Command,
    ParsedReply,
    collect_sent_lines,
    extract_new_text,
    parse_commands,
    parse_reply,
)

ROWS = 5
IDS = ("TX-1001", "TX-1002", "TX-1003")

INSTRUCTIONS = """\
How to answer: reply to this email and write one instruction per line.
To approve everything still pending, write:  approve all
To approve some items, write their row numbers or ids:  approve 1, 3-4
To reject with a reason, write:  reject 2: no purchase order on file
To keep items open for later, write:  hold 5
Items you do not mention stay pending.
"""

REQUEST = (
    "Hello,\n\nThe nightly audit flagged 5 transactions.\n\n"
    "  1  TX-1001  ACME Corp      1,200.00  duplicate amount\n"
    "  2  TX-1002  Widgets Ltd      310.00  no purchase order\n\n" + INSTRUCTIONS
)


def parse(text: str) -> ParsedReply:
    return parse_commands(text, row_count=ROWS, known_ids=IDS)


def reply(plain: str | None = None, html: str | None = None, sent=(REQUEST,)) -> ParsedReply:
    return parse_reply(plain, html, sent_texts=list(sent), row_count=ROWS, known_ids=IDS)


def summary(parsed: ParsedReply) -> list[tuple[str, tuple[str, ...] | None, str]]:
    return [(c.action, c.targets, c.reason) for c in parsed.commands]


A, R, H = "approve", "reject", "hold"

# (line, expected commands as (action, targets, reason), expected problem fragments)
CASES = [
    # "all"
    ("approve all", [(A, None, "")], []),
    ("Approve All.", [(A, None, "")], []),
    ("approve everything", [(A, None, "")], []),
    ("approve all items", [(A, None, "")], []),
    ("reject all: duplicates", [(R, None, "duplicates")], []),
    ("HOLD ALL!", [(H, None, "")], []),
    ("yes, all", [(A, None, "")], []),
    # rows, ranges and ids
    ("approve 1, 3-4", [(A, ("1", "3", "4"), "")], []),
    ("approve 1 3 4", [(A, ("1", "3", "4"), "")], []),
    ("approve 1,3 and 5", [(A, ("1", "3", "5"), "")], []),
    ("approve #2", [(A, ("2",), "")], []),
    ("approve items 1 and 2", [(A, ("1", "2"), "")], []),
    ("approve item 2", [(A, ("2",), "")], []),
    ("hold row 2", [(H, ("2",), "")], []),
    ("approve 1 - 3", [(A, ("1", "2", "3"), "")], []),
    ("approve 1 to 2", [(A, ("1", "2"), "")], []),
    ("approve 3-3", [(A, ("3",), "")], []),
    ("approve 1, 1, 2", [(A, ("1", "2"), "")], []),
    ("approve 01", [(A, ("1",), "")], []),
    ("approve TX-1001 TX-1002", [(A, ("TX-1001", "TX-1002"), "")], []),
    ("approve tx-1001, 3", [(A, ("TX-1001", "3"), "")], []),
    # reasons
    ("reject 2: no PO on file", [(R, ("2",), "no PO on file")], []),
    ("reject TX-1003 because duplicate", [(R, ("TX-1003",), "duplicate")], []),
    ("reject 2 - no PO on file.", [(R, ("2",), "no PO on file")], []),
    ("Reject 2 — wrong vendor", [(R, ("2",), "wrong vendor")], []),
    ("hold 4: ask Maria", [(H, ("4",), "ask Maria")], []),
    # synonyms
    ("approved 1", [(A, ("1",), "")], []),
    ("OK 1", [(A, ("1",), "")], []),
    ("okay 1", [(A, ("1",), "")], []),
    ("yes 2,3", [(A, ("2", "3"), "")], []),
    ("LGTM 4", [(A, ("4",), "")], []),
    ("accept 1", [(A, ("1",), "")], []),
    ("accepted 1", [(A, ("1",), "")], []),
    ("sign off 1-2", [(A, ("1", "2"), "")], []),
    ("signoff all", [(A, None, "")], []),
    ("rejected 3", [(R, ("3",), "")], []),
    ("deny 3", [(R, ("3",), "")], []),
    ("denied 3", [(R, ("3",), "")], []),
    ("decline 3", [(R, ("3",), "")], []),
    ("declined 3: wrong vendor", [(R, ("3",), "wrong vendor")], []),
    ("no 2", [(R, ("2",), "")], []),
    ("no 2: duplicate", [(R, ("2",), "duplicate")], []),
    ("held 5", [(H, ("5",), "")], []),
    ("defer 5", [(H, ("5",), "")], []),
    ("deferred 5", [(H, ("5",), "")], []),
    ("on hold 4", [(H, ("4",), "")], []),
    ("wait 1", [(H, ("1",), "")], []),
    ("pending 2", [(H, ("2",), "")], []),
    ("Yes, approve all", [(A, None, "")], []),
    ("No, reject 3", [(R, ("3",), "")], []),
    # bullet and markdown noise
    ("* approve 1", [(A, ("1",), "")], []),
    ("- reject 2.", [(R, ("2",), "")], []),
    ("• hold 3!", [(H, ("3",), "")], []),
    ("**approve all**", [(A, None, "")], []),
    ("   approve 2   ", [(A, ("2",), "")], []),
    # lines that start like a command but are wrong
    ("approve", [], ["say 'approve all' or list the items"]),
    ("reject", [], ["say 'reject all' or list the items"]),
    ("hold.", [], ["say 'hold all' or list the items"]),
    ("Approved, thanks!", [], ["say 'approve all' or list the items"]),
    ("approve 99", [], ["line 'approve 99': there is no item 99"]),
    ("approve 0", [], ["there is no item 0"]),
    ("approve 1, 99", [], ["there is no item 99"]),
    ("hold 4-3", [], ["runs backwards"]),
    ("approve 1-999999999", [], ["too large"]),
    ("approve 2-9", [], ["there is no item 9"]),
    ("approve TX-9999", [], ["there is no transaction TX-9999"]),
    ("approve al", [], ["'al' is not an item number"]),
    ("approve 1 and reject 2", [], ["'reject' is not an item number"]),
    ("approve all except 3", [(A, None, "")], []),
    ("approve all but 3", [(A, None, "")], []),
    ("approve 1 except 3", [], ["are not among those listed before it"]),
    ("approve 1-5 except 3", [(A, ("1", "2", "4", "5"), "")], []),
    ("approve all except", [], ["name the items after"]),
    ("approve all except 9", [], ["there is no item 9"]),
    ("approve all, 3", [], ["either 'all' or a list"]),
    ("aprove 1", [], ["line 'aprove 1': 'aprove' is not a command word; did you mean 'approve'?"]),
    ("approv", [], ["did you mean 'approve'"]),
    ("Approving 1, 2", [], ["did you mean 'approve'"]),
    ("rejct 2", [], ["did you mean 'reject'"]),
    ("regect 2: dup", [], ["did you mean 'reject'"]),
    ("hodl 3", [], ["did you mean 'hold'"]),
    ("yes 99", [], ["there is no item 99"]),
    # prose: ignored silently
    ("Hi,", [], ["no command found"]),
    ("Thanks", [], ["no command found"]),
    ("OK thanks", [], ["no command found"]),
    ("Ok.", [], ["no command found"]),
    ("No problem, thanks", [], ["no command found"]),
    ("yes", [], ["no command found"]),
    ("No", [], ["no command found"]),
    ("Hold on, let me check", [], ["'hold on' is not an instruction"]),
    ("I approve all", [], ["reads like an instruction but is not one"]),
    ("Yesterday I looked at 3", [], ["reads like an instruction but is not one"]),
    ("No 2 invoices are alike", [], ["reads like an instruction but is not one"]),
    ("Wait until Friday", [], ["no command found"]),
    ("Approval attached", [], ["no command found"]),
    ("Told 3 people", [], ["no command found"]),
    ("", [], ["no command found"]),
]


@pytest.mark.parametrize(("line", "commands", "problems"), CASES)
def test_parse_commands_table(line, commands, problems):
    parsed = parse(line)
    assert summary(parsed) == commands
    seen = parsed.unclear or parsed.problems  # "no command found" is said beside the lines not understood
    assert len(seen) == len(problems), parsed.problems
    for fragment, problem in zip(problems, seen):
        assert fragment in problem


def test_table_is_large_enough():
    assert len(CASES) >= 40


def test_command_keeps_source_line_stripped():
    parsed = parse("  * reject 2: no PO on file.  ")
    expected = Command("reject", ("2",), "no PO on file", "* reject 2: no PO on file.")
    assert parsed.commands == (expected,)


def test_several_lines_and_problems_in_order():
    parsed = parse("Hi,\n\napprove 1, 3\nreject 2: dup\naprove 4\nhold 9\nThanks, Ann")
    assert summary(parsed) == [(A, ("1", "3"), ""), (R, ("2",), "dup")]
    assert len(parsed.problems) == 2
    assert parsed.problems[0].startswith("line 'aprove 4': ")
    assert parsed.problems[1] == "line 'hold 9': there is no item 9"


def test_known_ids_keep_their_own_spelling():
    parsed = parse_commands("approve inv-7a, INV-7B", row_count=1, known_ids=["Inv-7a", "iNv-7B"])
    assert summary(parsed) == [(A, ("Inv-7a", "iNv-7B"), "")]


def test_numeric_ids_outside_the_rows_are_ids():
    parsed = parse_commands("approve 2, 1001", row_count=3, known_ids=["1001"])
    assert summary(parsed) == [(A, ("2", "1001"), "")]


def test_long_problem_lines_are_shortened():
    parsed = parse("approve " + "9" * 5000)
    assert len(parsed.unclear) == 1 and len(parsed.unclear[0]) < 200


@pytest.mark.no_cover  # timed: the coverage tracer's cost is no part of what is measured
@pytest.mark.parametrize(
    "plain",
    [
        "approve 1" + ". " * 50_000 + "x",
        "--a" + "-" * 50_000 + "x",
        "approve 1" + " " * 50_000 + "- x",
        "a" * 50_000 + " 1",
    ],
)
def test_hostile_lines_are_read_in_linear_time(plain):
    started = time.monotonic()
    reply(plain, sent=())
    assert time.monotonic() - started < 5


# --- extracting the new text ---------------------------------------------------------

QUOTE = "\nHello,\napprove all\nhold 3\n"


@pytest.mark.parametrize(
    "header",
    [
        "On Tue, 24 Nov 2026 at 09:00, Audit <audit@example.com> wrote:",
        "On Tue, 24 Nov 2026 at 09:00, Audit <\naudit@example.com> wrote:",
        "On Tue, 24 Nov 2026 at 09:00, Audit Bot\n<audit@example.com> wrote:",
        "On 24 Nov 2026, at 09:00, Audit <audit@example.com> wrote:",
        "Le mar. 24 nov. 2026 à 09:00, Audit <audit@example.com> a écrit :",
        "Am Di., 24. Nov. 2026 um 09:00 Uhr schrieb Audit <audit@example.com>:",
        "Den tir. 24. nov. 2026 kl. 09.00 skrev Audit <audit@example.com>:",
        "El mar, 24 nov 2026 a las 9:00, Audit (<audit@example.com>) escribió:",
        "Il giorno mar 24 nov 2026 alle ore 09:00 Audit <audit@example.com> ha scritto:",
        "Op di 24 nov. 2026 om 09:00 schreef Audit <audit@example.com>:",
        "Em ter., 24 de nov. de 2026 às 09:00, Audit <audit@example.com> escreveu:",
        "ti 24.11.2026 klo 9.00 Audit (audit@example.com) kirjoitti:",
        "W dniu 24.11.2026 o 09:00, Audit <audit@example.com> pisze:",
        "-----Original Message-----",
        "----- Original Message -----",
        "---------- Forwarded message ---------",
        "Begin forwarded message:",
        "________________________________\nFrom: Audit <audit@example.com>\n"
        "Sent: Tuesday, November 24, 2026 9:00 AM\nTo: Boss <boss@example.com>\n"
        "Subject: 5 transactions need approval",
        "From: Audit <audit@example.com>\nDate: Tue, 24 Nov 2026 09:00\nSubject: Approval",
        "*From:* Audit <audit@example.com>\n*Sent:* Tuesday, November 24, 2026 9:00 AM",
        "Von: Audit <audit@example.com>\nGesendet: Dienstag, 24. November 2026 09:00\nAn: Boss",
        "De : Audit <audit@example.com>\nEnvoyé : mardi 24 novembre 2026 09:00\nÀ : Boss",
        "Fra: Audit <audit@example.com>\nSendt: 24. november 2026 09:00\nTil: Boss",
        "Från: Audit <audit@example.com>\nSkickat: den 24 november 2026 09:00\nTill: Boss",
        "Van: Audit <audit@example.com>\nVerzonden: dinsdag 24 november 2026 09:00",
    ],
)
def test_text_after_a_quote_header_is_never_a_command(header):
    plain = "reject 1: duplicate\n\n" + header + "\n" + QUOTE
    assert summary(reply(plain, sent=())) == [(R, ("1",), "duplicate")]
    assert reply(plain, sent=()).problems == ()


def test_marker_quoting_is_dropped():
    plain = "reject 1\n\n> approve all\n  > hold 2\n>> approve 3\n"
    assert summary(reply(plain, sent=())) == [(R, ("1",), "")]


def test_inline_answers_between_marked_quotes_are_kept():
    plain = "> 1  TX-1001  ACME\n\napprove 1\n\n> 2  TX-1002  Widgets\n\nreject 2: no PO\n"
    assert summary(reply(plain, sent=())) == [(A, ("1",), ""), (R, ("2",), "no PO")]


def test_a_command_squeezed_between_quoted_lines_makes_the_reply_unclear():
    # a quoted line that lost its '>' when wrapped, or an answer without blank lines: either way
    # nothing is decided, and the answer says which line
    plain = "approve 1\n\n> my advice is\nreject 3: duplicate\n> Dana\n"
    parsed = reply(plain, sent=())
    assert parsed.unclear and "between quoted lines" in parsed.unclear[0]
    plain = "> 1  TX-1001  ACME\napprove 1\n> 2  TX-1002  Widgets\n"
    assert reply(plain, sent=()).unclear


def test_outlook_block_without_markers_hides_its_commands():
    plain = (
        "approve 2\n\nFrom: Audit <audit@example.com>\nSent: Tuesday, November 24, 2026 9:00 AM\n"
        "To: Boss <boss@example.com>\nSubject: RE: approval\n\napprove all\nreject 1\n"
    )
    assert summary(reply(plain, sent=())) == [(A, ("2",), "")]


def test_a_forward_contributes_nothing():
    plain = (
        "FYI\n\n---------- Forwarded message ---------\nFrom: Audit <audit@example.com>\n"
        "Date: Tue, 24 Nov 2026 at 09:00\nSubject: Approval\n\napprove all\n"
    )
    assert reply(plain, sent=()) == ParsedReply((), ("no command found",))


def test_signature_and_mobile_footer_are_dropped():
    assert summary(reply("approve 1\n-- \nreject 2\n", sent=())) == [(A, ("1",), "")]
    assert summary(reply("approve 1\n--\nhold 2\n", sent=())) == [(A, ("1",), "")]
    plain = "approve 1\n\nSent from my iPhone\n\napprove all\n"
    assert summary(reply(plain, sent=())) == [(A, ("1",), "")]


def test_lines_of_our_own_messages_are_dropped_even_without_markers():
    sent = "Please review.\napprove all\n  hold   2 \n"
    plain = "reject 1\n\nPlease review.\n  APPROVE   ALL \n> > hold 2\nhold 2\n"
    assert summary(reply(plain, sent=(sent,))) == [(R, ("1",), "")]


def test_precollected_sent_lines_stand_in_for_sent_texts():
    sent = collect_sent_lines(["Please review.\n\n> Approve   ALL\n"])
    assert sent == frozenset({"please review.", "approve all"})
    plain = "reject 1\nPlease review.\napprove all\n"
    assert extract_new_text(plain, None, (), sent_lines=sent) == "reject 1"


def test_instruction_block_quoted_without_markers_gives_no_commands():
    parsed = reply("approve 1\n\n" + INSTRUCTIONS, sent=(INSTRUCTIONS,))
    assert summary(parsed) == [(A, ("1",), "")] and parsed.problems == ()
    assert reply(INSTRUCTIONS, sent=(INSTRUCTIONS,)) == ParsedReply((), ("no command found",))


def test_instruction_block_without_sent_texts_makes_the_reply_unclear():
    # rewrapped or unknown, our instructions read like instructions that are not commands:
    # nothing is decided from such a reply
    parsed = reply("approve 1\n\n" + INSTRUCTIONS, sent=())
    assert parsed.commands[0].targets == ("1",) and parsed.unclear
    assert reply(INSTRUCTIONS, sent=()).commands == ()


def test_whole_request_quoted_without_markers_gives_no_commands():
    parsed = reply("hold 3: ask Maria\nThanks\n\n" + REQUEST)
    assert summary(parsed) == [(H, ("3",), "ask Maria")] and parsed.problems == ()


def test_prose_that_merely_mentions_wrote_is_kept():
    plain = "As I wrote yesterday:\napprove 2\nreject 3"
    assert summary(reply(plain, sent=())) == [(A, ("2",), ""), (R, ("3",), "")]


def test_a_command_right_above_a_wrapped_header_is_kept():
    plain = (
        "approve 2\nOn Tue, 24 Nov 2026 at 09:00, Audit <\naudit@example.com> wrote:\n"
        "approve all"
    )
    assert summary(reply(plain, sent=())) == [(A, ("2",), "")]


# --- HTML ------------------------------------------------------------------------------


def test_html_blockquote_is_dropped():
    html = (
        "<html><body><div>reject 1</div><div><br></div>"
        "<blockquote type='cite'><div>approve all</div><blockquote>hold 2</blockquote>"
        "<p>approve 3</p></blockquote></body></html>"
    )
    assert summary(reply(None, html, sent=())) == [(R, ("1",), "")]


def test_gmail_html_quote_is_dropped():
    html = (
        '<div dir="ltr">reject 1<br></div><br><div class="gmail_quote gmail_quote_container">'
        '<div dir="ltr" class="gmail_attr">On Tue, 24 Nov 2026 at 09:00, Audit &lt;'
        'audit@example.com&gt; wrote:<br></div>'
        '<blockquote class="gmail_quote"><div>approve all</div><div>hold 2</div></blockquote></div>'
    )
    assert summary(reply("", html, sent=())) == [(R, ("1",), "")]


def test_gmail_inline_answers_between_its_quotes_are_kept():
    html = (
        '<div dir="ltr">Hi,</div><div class="gmail_quote"><div class="gmail_attr">On Tue, 24 Nov 2026, Audit '
        '&lt;audit@example.com&gt; wrote:</div><blockquote class="gmail_quote">[1] TX-1001 | ACME<br>approve all</blockquote>'
        '<div>approve 1</div><blockquote class="gmail_quote">[2] TX-1002 | Widgets</blockquote><div>reject 2: no PO</div></div>'
    )
    assert summary(reply(None, html, sent=())) == [(A, ("1",), ""), (R, ("2",), "no PO")]


def test_outlook_html_reply_header_and_everything_after_is_dropped():
    html = (
        '<div style="font-family: Calibri">reject 1</div><div id="appendonsend"></div>'
        '<hr style="display:inline-block;width:98%"><div id="divRplyFwdMsg" dir="ltr">'
        "<b>From:</b> Audit<br><b>Sent:</b> Tuesday<br></div><div>approve all</div>"
    )
    assert summary(reply(None, html, sent=())) == [(R, ("1",), "")]
    html = '<p>reject 1</p><div id="divRplyFwdMsg"><b>From:</b> Audit</div><p>approve all</p>'
    assert summary(reply(None, html, sent=())) == [(R, ("1",), "")]


def test_outlook_desktop_border_separator_is_dropped():
    html = (
        "<p class=MsoNormal>hold 2<o:p></o:p></p><div><div style='border:none;border-top:solid"
        " #E1E1E1 1.0pt;padding:3.0pt 0in 0in 0in'><p><b>From:</b> Audit</p></div></div>"
        "<p>approve all</p>"
    )
    assert summary(reply(None, html, sent=())) == [(H, ("2",), "")]


def test_yahoo_and_thunderbird_quotes_are_dropped():
    html = '<div>approve 1</div><div class="yahoo_quoted"><div>approve all</div></div>'
    assert summary(reply(None, html, sent=())) == [(A, ("1",), "")]
    html = '<p>approve 1</p><div class="moz-cite-prefix">approve all</div><p>approve 2</p>'
    assert summary(reply(None, html, sent=())) == [(A, ("1",), ""), (A, ("2",), "")]


def test_html_layout_becomes_lines():
    html = (
        "<html><head><style>p {}</style><title>approve all</title></head><body>"
        "<script>approve 4</script>approve&nbsp;1<br>reject\n  2: dup<p>hold 3</p>"
        "<table><tr><td>approve</td><td>5</td></tr></table></body></html>"
    )
    parsed = reply(None, html, sent=())
    assert summary(parsed) == [
        (A, ("1",), ""), (R, ("2",), "dup"), (H, ("3",), ""), (A, ("5",), "")
    ]


def test_unclosed_head_does_not_hide_the_body():
    assert summary(reply(None, "<head><meta charset=utf-8><body>approve 1", sent=())) == [
        (A, ("1",), "")
    ]


def test_plain_part_is_preferred_over_html():
    assert summary(reply("reject 1", "<p>approve all</p>", sent=())) == [(R, ("1",), "")]
    assert summary(reply("  \n", "<p>approve all</p>", sent=())) == [(A, None, "")]
    assert extract_new_text(None, None, []) == ""


def test_malformed_html_does_not_raise():
    parsed = reply(None, "<p>approve 1</p><![bogus[ approve 2 <b", sent=())
    assert summary(parsed) == [(A, ("1",), "")]


# --- properties ------------------------------------------------------------------------

COMMANDISH = [
    "approve all",
    "reject 2: no PO",
    "hold 1-3",
    "yes 4",
    "OK thanks",
    "aprove 1",
    "approve 99",
    "Hi,",
    "-- ",
    "Sent from my iPhone",
    "> approve 5",
    "From: Audit",
    "Sent: today",
    "On Tue, 24 Nov 2026 at 09:00, Audit <a@b.c>",
    "wrote:",
    "-----Original Message-----",
]
LINES = st.lists(st.one_of(st.sampled_from(COMMANDISH), st.text()), max_size=8).map("\n".join)
TEXTS = st.one_of(st.text(), LINES)
TAGS = st.sampled_from(
    ["<p>", "</p>", "<br>", "<div class='gmail_quote'>", "</div>", "<blockquote>",
     "</blockquote>", "<div id=divRplyFwdMsg>", "<style>", "</style>", "<![if x]>", "<![",
     "<!--", "-->", "&amp;", "&#x0;", "&#99999999;", "<pre>", "</pre>", "<head>", "<body>",
     "<", ">", "approve all", "reject 1", "\n"]
)
SOUP = st.lists(st.one_of(TAGS, st.text(max_size=5)), max_size=30).map("".join)
HTML = st.one_of(st.text(), SOUP)
SAFE_PROSE_LINE = st.text(
    st.characters(
        blacklist_categories=("Cs",),
        blacklist_characters="\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029",
    ),
    max_size=30,
).filter(lambda line: not parse(line).commands)


@settings(max_examples=300)
@given(
    plain=st.one_of(st.none(), TEXTS),
    html=st.one_of(st.none(), HTML),
    sent=st.lists(TEXTS, max_size=3),
    row_count=st.integers(-3, 50),
    known_ids=st.sets(st.text(max_size=8), max_size=5),
)
def test_parse_reply_never_raises(plain, html, sent, row_count, known_ids):
    parsed = parse_reply(plain, html, sent_texts=sent, row_count=row_count, known_ids=known_ids)
    assert parsed.commands or parsed.problems
    for command in parsed.commands:
        assert command.action in ("approve", "reject", "hold")
        for target in command.targets or ():
            assert target in known_ids or 1 <= int(target) <= row_count


@settings(max_examples=300)
@given(new=TEXTS, old=TEXTS, sent=st.lists(TEXTS, max_size=2))
@example(new="From: Audit\napprove all", old="From: Audit", sent=[])  # a header field below in the quote is not this header's
def test_quoted_text_below_a_header_never_changes_the_result(new, old, sent):
    quoted = "\n".join("> " + line for line in old.splitlines())
    plain = new + "\n\nOn Mon, 1 Jan 2026, X <x@y.z> wrote:\n" + quoted
    kwargs = dict(sent_texts=sent, row_count=ROWS, known_ids=IDS)
    assert parse_reply(plain, None, **kwargs) == parse_reply(new, None, **kwargs)


@settings(max_examples=300)
@given(prose=st.lists(SAFE_PROSE_LINE, max_size=5).map("\n".join), sent=TEXTS)
def test_our_own_text_quoted_without_markers_gives_no_commands(prose, sent):
    assert reply(prose + "\n\n" + sent, sent=(sent,)).commands == ()
