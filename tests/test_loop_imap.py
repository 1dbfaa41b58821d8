"""The whole loop over real mail servers: SMTP out through the relay, replies over IMAP.

The request goes out with aiosmtplib (STARTTLS + AUTH) through an aiosmtpd relay into a
private Dovecot; the approver's reply is sent by SMTP like any mail client's, lands in the
audit mailbox, and the poller reads it over IMAPS (and plain IMAP on loopback).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers import (
    EXAMPLE_LEDGER,
    audit,
    build_reply,
    errors_of,
    loopback_mail,
    parse,
    plain_body,
    report_json,
    write_site,
)

AUDIT = "audit@example.test"
CONTROLLER = "controller@example.test"
CFO = "cfo@example.test"


@pytest.fixture
def site(tmp_path: Path, mailstack) -> Path:
    mailstack.reset()
    return write_site(tmp_path, [CONTROLLER, CFO], **loopback_mail(mailstack, AUDIT))


ENV = {"AUDIT_SMTP_PASSWORD": "auditpw", "AUDIT_IMAP_PASSWORD": "auditpw"}


def test_full_loop_over_smtp_and_imap(site: Path, mailstack) -> None:
    result = audit("run", "--ledger", str(EXAMPLE_LEDGER), cwd=site, env=ENV)
    assert result.returncode == 0, result.stderr
    assert f"sent 2 message(s) via 127.0.0.1:{mailstack.smtp_port}" in result.stdout
    assert [(e.tls, e.login, e.mail_from) for e in mailstack.envelopes] == [(True, AUDIT, AUDIT)] * 2

    [raw] = mailstack.messages(CONTROLLER)
    request = parse(raw)
    assert "TX-1002" in plain_body(request)
    assert re.fullmatch(r"audit\+[a-z2-7]{26}@example\.test", request["Reply-To"])

    # the approver answers from an ordinary mail client, through SMTP
    reply = build_reply(request, "approve 1-2\nreject 3: duplicate of TX-0999\nhold 4", sender=f"Controller <{CONTROLLER}>")
    mailstack.send(reply, mail_from=CONTROLLER, rcpt_to=[request["Reply-To"]])
    assert len(mailstack.messages(AUDIT)) == 1

    result = audit("poll", "--once", cwd=site, env=ENV)
    assert result.returncode == 0, result.stderr
    assert "1 processed" in result.stdout and "4 decision(s) recorded" in result.stdout
    assert "closed" not in result.stdout  # a held item keeps the request open

    rows = {r["transaction_id"]: r for r in report_json(site)}
    assert (rows["TX-1008"]["status"], rows["TX-1002"]["status"], rows["TX-1007"]["status"], rows["TX-1003"]["status"]) == (
        "approved", "approved", "rejected", "held")
    assert rows["TX-1007"]["reason"] == "duplicate of TX-0999" and rows["TX-1007"]["decided_by"] == CONTROLLER

    # the confirmation arrives in the approver's mailbox, in the same thread
    inbox = [parse(m) for m in mailstack.messages(CONTROLLER)]
    confirmation = inbox[-1]
    assert confirmation["Subject"].startswith("Recorded: ")
    assert confirmation["In-Reply-To"] == parse(reply)["Message-ID"]
    assert "item 4 TX-1003 (Contoso Consulting, 3,000.00 USD): held" in plain_body(confirmation)
    assert mailstack.flags(AUDIT) == [{"\\Seen"}]  # marked only after it was recorded

    assert "Held for follow-up (1), still open until approved or rejected by name:" in plain_body(confirmation)

    # polling again reads nothing new and records nothing twice
    result = audit("poll", "--once", cwd=site, env=ENV)
    assert "0 message(s)" in result.stdout
    assert len(mailstack.messages(CONTROLLER)) == len(inbox)

    # hold is a pause: a later reply decides the held item, and then the request closes
    later = build_reply(request, "approve 4: the vendor sent the SOW", sender=f"Controller <{CONTROLLER}>")
    mailstack.send(later, mail_from=CONTROLLER, rcpt_to=[request["Reply-To"]])
    result = audit("poll", "--once", cwd=site, env=ENV)
    assert "1 decision(s) recorded" in result.stdout and "closed" in result.stdout
    row = {r["transaction_id"]: r for r in report_json(site)}["TX-1003"]
    assert (row["status"], row["reason"], row["decided_by"]) == ("approved", "the vendor sent the SOW", CONTROLLER)
    assert "Every item of this request is decided; the request is closed." in plain_body(parse(mailstack.messages(CONTROLLER)[-1]))
    assert audit("verify", cwd=site, env=ENV).returncode == 0


def test_replayed_message_is_not_processed_twice(site: Path, mailstack) -> None:
    audit("run", "--ledger", str(EXAMPLE_LEDGER), cwd=site, env=ENV)
    request = parse(mailstack.messages(CONTROLLER)[0])
    reply = build_reply(request, "approve 1", sender=CONTROLLER)
    mailstack.send(reply, mail_from=CONTROLLER, rcpt_to=[request["Reply-To"]])
    audit("poll", "--once", cwd=site, env=ENV)
    mailstack.send(reply, mail_from=CONTROLLER, rcpt_to=[request["Reply-To"]])  # the same message again
    result = audit("poll", "--once", cwd=site, env=ENV)
    assert "1 already seen" in result.stdout
    confirmations = [m for m in mailstack.messages(CONTROLLER) if b"Recorded:" in m]
    assert len(confirmations) == 1


def test_uidvalidity_change_rescans_without_doubling(site: Path, mailstack) -> None:
    audit("run", "--ledger", str(EXAMPLE_LEDGER), cwd=site, env=ENV)
    request = parse(mailstack.messages(CONTROLLER)[0])
    mailstack.send(build_reply(request, "approve 1", sender=CONTROLLER), mail_from=CONTROLLER, rcpt_to=[request["Reply-To"]])
    audit("poll", "--once", cwd=site, env=ENV)
    mailstack.set_uidvalidity(AUDIT, 424242)
    mailstack.send(build_reply(request, "approve 2", sender=CONTROLLER), mail_from=CONTROLLER, rcpt_to=[request["Reply-To"]])
    result = audit("poll", "--once", cwd=site, env=ENV)
    assert "2 message(s): 1 processed" in result.stdout and "1 already seen" in result.stdout
    statuses = {r["transaction_id"]: r["status"] for r in report_json(site)}
    assert statuses["TX-1008"] == statuses["TX-1002"] == "approved"


def test_plain_imap_on_loopback_and_reply_without_plus_address(site: Path, mailstack) -> None:
    text = (site / "audit.toml").read_text()
    text = text.replace(f"port = {mailstack.imaps_port}", f"port = {mailstack.imap_port}").replace('tls = "tls"', 'tls = "none"')
    (site / "audit.toml").write_text(text)
    audit("run", "--ledger", str(EXAMPLE_LEDGER), cwd=site, env=ENV)
    request = parse(mailstack.messages(CONTROLLER)[0])
    # a server that drops the +token: the token still travels in In-Reply-To / References
    reply = build_reply(request, "approve all", sender=CONTROLLER, to=AUDIT)
    mailstack.send(reply, mail_from=CONTROLLER, rcpt_to=[AUDIT])
    result = audit("poll", "--once", cwd=site, env=ENV)
    assert result.returncode == 0, result.stderr
    assert "4 decision(s) recorded" in result.stdout


def test_imap_login_refused_is_one_clear_line(site: Path, mailstack) -> None:
    result = audit("poll", "--once", cwd=site, env={**ENV, "AUDIT_IMAP_PASSWORD": "wrong"})
    assert result.returncode == 5
    assert errors_of(result).strip().count("\n") == 0
    assert f"IMAP 127.0.0.1:{mailstack.imaps_port}: login refused" in result.stderr
    assert "wrong" not in result.stderr
