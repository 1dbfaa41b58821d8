"""Bad email input: odd, broken and hostile messages in the inbox never crash the poller.

The messages are files under tests/fixtures/email/. Replies carry placeholders filled in at
test time with a real request's reply address and Message-ID:

    {{FROM}}        the approver's address          {{REPLY_TO}}    the request's Reply-To
    {{MESSAGE_ID}}  the request's Message-ID         {{SUBJECT}}     the request's Subject
    {{ATTACHMENT_10MB}}  10 MiB of base64 (generated, so the fixture stays small)

Each is delivered to a maildir inbox (and a handful over the real Dovecot IMAP server), then
one `audit poll --once` runs; the message must be recorded, and decided, answered or ignored
as the trust rules say.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from job.mail.message import content_id
from helpers import (
    EXAMPLE_LEDGER,
    audit,
    db_rows,
    drop_reply,
    loopback_mail,
    maildir_messages,
    parse,
    plain_body,
    write_site,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "email"
CONTROLLER = "controller@example.com"
CFO = "cfo@example.com"


def attachment_10mb() -> str:
    """10 MiB of deterministic bytes, base64 in 76-character lines."""
    block = b"".join(hashlib.sha256(str(i).encode()).digest() for i in range(1024))  # 32 KiB
    return base64.encodebytes(block * 320).decode("ascii").rstrip("\n")


def fill(name: str, request, sender: str) -> bytes:
    raw = (FIXTURES / name).read_bytes()
    values = {
        "FROM": sender,
        "REPLY_TO": request["Reply-To"],
        "MESSAGE_ID": request["Message-ID"],
        "SUBJECT": request["Subject"],
    }
    for key, value in values.items():
        raw = raw.replace(b"{{%s}}" % key.encode(), value.encode("ascii"))
    if b"{{ATTACHMENT_10MB}}" in raw:
        raw = raw.replace(b"{{ATTACHMENT_10MB}}", attachment_10mb().encode("ascii"))
    assert b"{{" not in raw, f"{name}: a placeholder was left unfilled"
    return raw


@dataclass(frozen=True)
class Expect:
    status: str  # the messages row: processed | refused | ignored
    decided: tuple = ()  # (item_no, decision) recorded from this message
    answer: str | None = None  # subject prefix of the answer, None when nothing is sent back
    detail: str = ""  # a substring of the recorded detail
    grammar: bool = False  # the answer explains how to reply


APPROVED_1 = ((1, "approved"),)
READABLE = Expect("processed", APPROVED_1, "Recorded: ", "1 decision(s) recorded")
UNREADABLE = Expect("processed", (), "Could not understand your reply: ", "no command found", grammar=True)

CASES = {
    "no_text_part.eml": UNREADABLE,
    "html_only.eml": READABLE,
    "wrong_charset.eml": READABLE,
    "unknown_charset.eml": READABLE,
    "base64_body.eml": READABLE,
    "quoted_printable.eml": READABLE,
    "big_attachment.eml": READABLE,
    "winmail_dat.eml": UNREADABLE,
    "nested_forward.eml": READABLE,  # only the approver's own "approve 1"; the forwards' commands never count
    "empty_subject.eml": READABLE,
    "missing_subject.eml": READABLE,
    "non_utf8_headers.eml": READABLE,
    "missing_message_id.eml": READABLE,
    "not_mime.eml": READABLE,
    "stranger_new_mail.eml": Expect("refused", (), None, "is not an approver"),
    "approver_without_token.eml": Expect("refused", (), "Not recorded: ", "no valid reply token"),
    "auto_reply.eml": Expect("ignored", (), None, "automatic message"),
    "bounce.eml": Expect("ignored", (), None, "automatic message"),
    "not_an_email.eml": Expect("ignored", (), None, ""),
    "undefined_charset.eml": READABLE,
    "forward_only.eml": UNREADABLE,  # a forwarded message's "approve all" is not the approver's words
    "html_reply_with_forward.eml": READABLE,  # the approver's own HTML "approve 1", not the attachment's text
}


def test_every_fixture_has_an_expectation() -> None:
    assert sorted(p.name for p in FIXTURES.glob("*.eml")) == sorted(CASES)


# ------------------------------------------------------------------------------ maildir


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    site = write_site(tmp_path_factory.mktemp("bad-email") / "site", [CONTROLLER, CFO], mail={"max_attempts": 2})
    result = audit("run", "--ledger", str(EXAMPLE_LEDGER), cwd=site)
    assert result.returncode == 0, result.stderr
    return site


def new_site(template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(template, tmp_path / "site"))


def request_to(site: Path, approver: str):
    return next(m for m in maildir_messages(site / "var/mail/outbox") if m["To"] == approver)


def inbound(site: Path) -> list[tuple]:
    return db_rows(site, "SELECT message_id, sender, status, detail FROM messages WHERE direction = 'in' ORDER BY id")


def decisions(site: Path) -> list[tuple]:
    return db_rows(site, "SELECT item_no, decision, approver FROM decisions ORDER BY item_no")


def answers(site: Path) -> list:
    return [m for m in maildir_messages(site / "var/mail/outbox") if not m["Subject"].startswith("Ledger audit run")]


def stored_message_id(raw: bytes) -> str:
    value = parse(raw)["Message-ID"]
    return str(value).strip() if value else content_id(raw)


def check_one(site: Path, raw: bytes, expect: Expect) -> None:
    [(message_id, sender, status, detail)] = inbound(site)
    assert status == expect.status, detail
    assert expect.detail in detail
    if raw.startswith(b"From:"):
        assert message_id == stored_message_id(raw)
    assert [(n, d) for n, d, _ in decisions(site)] == list(expect.decided)
    assert all(a == CONTROLLER for _, _, a in decisions(site))
    sent = answers(site)
    if expect.answer is None:
        assert sent == []
        return
    [answer] = sent
    assert answer["To"] == CONTROLLER and answer["Subject"].startswith(expect.answer)
    assert str(answer["In-Reply-To"]).strip() == message_id  # in the thread of the message it answers
    text = plain_body(answer)
    assert ("How to answer" in text and "approve 1, 3-4" in text) == expect.grammar
    if expect.decided:
        assert "item 1 TX-1008 (Blue Harbor Holdings, 2,150.00 USD): approved" in text


def fixture_params():
    for name in sorted(CASES):
        yield pytest.param(name, id=name)


@pytest.mark.parametrize("name", list(fixture_params()))
def test_bad_message_is_recorded_and_handled_by_the_trust_rules(name: str, template: Path, tmp_path: Path) -> None:
    site = new_site(template, tmp_path)
    raw = fill(name, request_to(site, CONTROLLER), CONTROLLER)
    drop_reply(site / "var/mail", raw, name.removesuffix(".eml"))
    result = audit("poll", "--once", cwd=site)
    assert result.returncode == 0, result.stderr
    assert "1 message(s)" in result.stdout and "0 failed" in result.stdout
    assert not list((site / "var/mail/inbox/new").iterdir())
    check_one(site, raw, CASES[name])
    assert audit("verify", cwd=site).returncode == 0


def test_a_reply_without_message_id_delivered_twice_is_handled_once(template: Path, tmp_path: Path) -> None:
    site = new_site(template, tmp_path)
    raw = fill("missing_message_id.eml", request_to(site, CONTROLLER), CONTROLLER)
    drop_reply(site / "var/mail", raw, "first")
    assert audit("poll", "--once", cwd=site).returncode == 0
    drop_reply(site / "var/mail", raw, "second")
    again = audit("poll", "--once", cwd=site)
    assert again.returncode == 0 and "1 already seen" in again.stdout
    assert len(inbound(site)) == 1 and len(decisions(site)) == 1 and len(answers(site)) == 1


def test_every_bad_message_in_one_inbox_one_poll(template: Path, tmp_path: Path) -> None:
    site = new_site(template, tmp_path)
    names = sorted(CASES)
    requests = {CONTROLLER: request_to(site, CONTROLLER), CFO: request_to(site, CFO)}
    now = time.time_ns()
    raws = {}
    for n, name in enumerate(names):
        approver = (CONTROLLER, CFO)[n % 2]
        raws[name] = fill(name, requests[approver], approver)
        path = drop_reply(site / "var/mail", raws[name], name.removesuffix(".eml"))
        os.utime(path, ns=(now + n * 1_000_000,) * 2)
    result = audit("poll", "--once", cwd=site, timeout=180)
    assert result.returncode == 0, result.stderr
    assert f"poll: {len(names)} message(s)" in result.stdout and "0 failed" in result.stdout
    assert not list((site / "var/mail/inbox/new").iterdir())
    rows = inbound(site)
    assert len(rows) == len(names)
    assert {s for _, _, s, _ in rows} <= {"processed", "refused", "ignored"}
    recorded = {m for m, *_ in rows}
    for name, raw in raws.items():
        if raw.startswith(b"From:"):
            assert stored_message_id(raw) in recorded, name
    by_id = {m: (s, d) for m, _, s, d in rows}
    assert by_id[stored_message_id(raws["big_attachment.eml"])][0] in ("processed", "refused")
    assert by_id[stored_message_id(raws["stranger_new_mail.eml"])][0] == "refused"
    assert by_id[stored_message_id(raws["auto_reply.eml"])][0] == "ignored"
    assert audit("verify", cwd=site).returncode == 0
    status = audit("status", cwd=site)
    assert status.returncode == 0 and "unsent mail: 0" in status.stdout


def test_an_undecodable_charset_does_not_stop_the_other_replies(template: Path, tmp_path: Path) -> None:
    site = new_site(template, tmp_path)
    bad = fill("undefined_charset.eml", request_to(site, CONTROLLER), CONTROLLER)
    good = fill("html_only.eml", request_to(site, CFO), CFO).replace(b"approve 1", b"approve 2")
    now = time.time_ns()
    for n, (name, raw) in enumerate((("bad", bad), ("good", good))):
        os.utime(drop_reply(site / "var/mail", raw, name), ns=(now + n * 1_000_000_000,) * 2)
    for _ in range(2):  # mail.max_attempts = 2
        result = audit("poll", "--once", cwd=site)
        assert result.returncode == 0, result.stderr
    assert (2, "approved", CFO) in decisions(site)
    assert len(inbound(site)) == 2
    assert not list((site / "var/mail/inbox/new").iterdir())


# --------------------------------------------------------------------------------- IMAP

AUDIT_T = "audit@example.test"
CONTROLLER_T = "controller@example.test"
CFO_T = "cfo@example.test"
ENV = {"AUDIT_SMTP_PASSWORD": "auditpw", "AUDIT_IMAP_PASSWORD": "auditpw"}
OVER_IMAP = ["html_only.eml", "base64_body.eml", "quoted_printable.eml", "unknown_charset.eml", "wrong_charset.eml",
             "non_utf8_headers.eml", "not_mime.eml", "missing_message_id.eml", "winmail_dat.eml", "big_attachment.eml",
             "stranger_new_mail.eml"]


def test_bad_messages_over_real_imap(tmp_path: Path, mailstack) -> None:
    mailstack.reset()
    write_site(tmp_path, [CONTROLLER_T, CFO_T], **loopback_mail(mailstack, AUDIT_T, smtp_timeout=30, imap_timeout=30))
    assert audit("run", "--ledger", str(EXAMPLE_LEDGER), cwd=tmp_path, env=ENV).returncode == 0
    request = parse(mailstack.messages(CONTROLLER_T)[0])
    for name in OVER_IMAP:
        raw = fill(name, request, CONTROLLER_T).replace(b"\n", b"\r\n")  # on the wire, lines end in CRLF
        if name == "big_attachment.eml":
            mailstack.save(AUDIT_T, raw)  # straight into the mailbox: 14 MB through the test relay is slow
        else:
            mailstack.send(raw, mail_from=CONTROLLER_T, rcpt_to=[request["Reply-To"]])
    assert len(mailstack.messages(AUDIT_T)) == len(OVER_IMAP)

    result = audit("poll", "--once", cwd=tmp_path, env=ENV, timeout=180)
    assert result.returncode == 0, result.stderr
    assert f"poll: {len(OVER_IMAP)} message(s)" in result.stdout and "0 failed" in result.stdout
    rows = inbound(tmp_path)
    assert len(rows) == len(OVER_IMAP)
    assert mailstack.flags(AUDIT_T) == [{"\\Seen"}] * len(OVER_IMAP)

    # the first readable "approve 1" decides; every later one was read too, and refused as already decided
    assert [(n, d) for n, d, _ in decisions(tmp_path)] == [(1, "approved")]
    by_sender_status = [(s, st, d) for _, s, st, d in rows]
    readable = [name for name in OVER_IMAP if CASES[name] is READABLE]
    outcomes = [(st, d) for (s, st, d), name in zip(by_sender_status, OVER_IMAP) if name in readable]
    assert outcomes[0] == ("processed", "1 decision(s) recorded")
    for status, detail in outcomes[1:]:
        assert status == "refused" and "item 1 (TX-1008) was already approved" in detail, detail
    winmail = by_sender_status[OVER_IMAP.index("winmail_dat.eml")]
    assert winmail[1:] == ("processed", "nothing decided: no command found")
    stranger = by_sender_status[OVER_IMAP.index("stranger_new_mail.eml")]
    assert stranger[1] == "refused" and "not an approver" in stranger[2]
    answered = [parse(m) for m in mailstack.messages(CONTROLLER_T)][1:]
    assert len(answered) == len(readable) + 1  # every reply from the approver is answered; the stranger is not
