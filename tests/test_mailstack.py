"""The test mail stack works: SMTP in (STARTTLS, AUTH), IMAP and IMAPS out, and its helpers."""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import re
import ssl
import time
import uuid
from collections.abc import Awaitable, Iterator
from email.message import EmailMessage
from typing import TypeVar

import aioimaplib
import aiosmtplib
import pytest

from mailstack import MailStack

T = TypeVar("T")

TIMEOUT = 10.0  # seconds, for every network operation below
AUDIT = ("audit@example.test", "auditpw")
CFO = ("cfo@example.test", "cfopw")


@pytest.fixture
def stack(mailstack: MailStack) -> Iterator[MailStack]:
    mailstack.reset()
    yield mailstack
    mailstack.add_headers.clear()


async def within(awaitable: Awaitable[T], seconds: float = TIMEOUT) -> T:
    return await asyncio.wait_for(awaitable, seconds)


def make_message(subject: str, body: str, *, sender: str = CFO[0], to: str = AUDIT[0]) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@example.test>"
    msg.set_content(body)
    return msg


def client_tls(stack: MailStack) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=stack.cert_path)


async def submit(stack: MailStack, msg: EmailMessage, *, login: tuple[str, str]) -> None:
    """Send through the relay as the product will: STARTTLS, then AUTH, then the message."""
    smtp = aiosmtplib.SMTP(
        hostname=stack.host,
        port=stack.smtp_port,
        timeout=TIMEOUT,
        start_tls=True,
        tls_context=client_tls(stack),
    )
    await within(smtp.connect())
    try:
        await within(smtp.login(*login))
        errors, _reply = await within(smtp.send_message(msg))
        assert errors == {}
    finally:
        await within(smtp.quit())


async def read_inbox(client: aioimaplib.IMAP4, user: str, password: str) -> tuple[int, list[tuple[int, bytes]]]:
    """Log in, SELECT INBOX, UID SEARCH ALL, UID FETCH BODY.PEEK[]: (UIDVALIDITY, [(uid, raw)])."""
    await within(client.wait_hello_from_server())
    try:
        response = await within(client.login(user, password))
        assert response.result == "OK", response
        response = await within(client.select("INBOX"))
        assert response.result == "OK", response
        uidvalidity = uidvalidity_of(response.lines)
        response = await within(client.uid_search("ALL"))
        assert response.result == "OK", response
        uids = [int(u) for u in response.lines[0].split()]
        if not uids:
            return uidvalidity, []
        response = await within(client.uid("fetch", ",".join(map(str, uids)), "(UID BODY.PEEK[])"))
        assert response.result == "OK", response
        return uidvalidity, parse_fetch(response.lines)
    finally:
        await within(client.logout())


def uidvalidity_of(select_lines: list[bytes]) -> int:
    for line in select_lines:
        match = re.search(rb"\[UIDVALIDITY (\d+)\]", line)
        if match:
            return int(match.group(1))
    raise AssertionError(f"no UIDVALIDITY in {select_lines!r}")


def parse_fetch(lines: list[bytes | bytearray]) -> list[tuple[int, bytes]]:
    """aioimaplib gives a FETCH with a literal as: b'N FETCH (UID u BODY[] {size}', bytearray(raw), b')'."""
    found = []
    for head, literal in zip(lines, lines[1:]):
        match = re.match(rb"\d+ FETCH \(.*\bUID (\d+)\b.*\{\d+\}$", bytes(head))
        if match and isinstance(literal, bytearray):
            found.append((int(match.group(1)), bytes(literal)))
    return found


def parsed(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def test_message_sent_with_starttls_and_auth_arrives_over_imaps_and_imap(stack: MailStack) -> None:
    subject = f"Approval needed {uuid.uuid4().hex[:8]}"
    asyncio.run(submit(stack, make_message(subject, "Please approve entry 42.\n"), login=CFO))

    async def read_both() -> tuple[tuple[int, list[tuple[int, bytes]]], ...]:
        imaps = aioimaplib.IMAP4_SSL(
            host=stack.host, port=stack.imaps_port, ssl_context=client_tls(stack), timeout=TIMEOUT
        )
        over_tls = await read_inbox(imaps, *AUDIT)
        imap = aioimaplib.IMAP4(host=stack.host, port=stack.imap_port, timeout=TIMEOUT)
        over_plain = await read_inbox(imap, *AUDIT)
        return over_tls, over_plain

    over_tls, over_plain = asyncio.run(read_both())
    assert over_tls == over_plain
    _uidvalidity, messages = over_tls
    assert len(messages) == 1
    msg = parsed(messages[0][1])
    assert msg["Subject"] == subject
    assert msg.get_content().strip() == "Please approve entry 42."
    assert msg["Delivered-To"] == AUDIT[0]  # really delivered by Dovecot's LMTP

    assert len(stack.received) == 1
    assert parsed(stack.received[0])["Subject"] == subject
    relayed = stack.envelopes[-1]
    assert (relayed.mail_from, relayed.rcpt_to) == (CFO[0], (AUDIT[0],))
    assert relayed.login == CFO[0] and relayed.tls
    # BODY.PEEK[] leaves the message unread.
    assert stack.flags(AUDIT[0]) == [set()]


def test_unknown_recipient_is_refused_with_550(stack: MailStack) -> None:
    async def scenario() -> None:
        smtp = aiosmtplib.SMTP(
            hostname=stack.host, port=stack.smtp_port, timeout=TIMEOUT, tls_context=client_tls(stack)
        )
        await within(smtp.connect())
        try:
            await within(smtp.mail(CFO[0]))
            with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
                await within(smtp.rcpt("nobody@example.test"))
            assert refused.value.code == 550
            await within(smtp.rset())
            # A known recipient in the same envelope still gets the message.
            msg = make_message("mixed", "one good, one bad\n")
            errors, _ = await within(
                smtp.sendmail(CFO[0], [AUDIT[0], "nobody@example.test"], msg.as_bytes())
            )
            assert set(errors) == {"nobody@example.test"}
            assert errors["nobody@example.test"].code == 550
        finally:
            await within(smtp.quit())

    asyncio.run(scenario())
    assert [parsed(m)["Subject"] for m in stack.messages(AUDIT[0])] == ["mixed"]


def test_wrong_smtp_password_fails_quickly_and_the_right_one_still_works(stack: MailStack) -> None:
    async def scenario() -> float:
        smtp = aiosmtplib.SMTP(
            hostname=stack.host, port=stack.smtp_port, timeout=TIMEOUT, tls_context=client_tls(stack)
        )
        await within(smtp.connect())
        try:
            started = time.monotonic()
            with pytest.raises(aiosmtplib.SMTPAuthenticationError) as failed:
                await within(smtp.login(CFO[0], "not-the-password"))
            elapsed = time.monotonic() - started
            assert failed.value.code == 535
            await within(smtp.login(*CFO))
            return elapsed
        finally:
            await within(smtp.quit())

    assert asyncio.run(scenario()) < 5.0


def test_wrong_imap_password_does_not_slow_the_next_login(stack: MailStack) -> None:
    async def scenario() -> float:
        client = aioimaplib.IMAP4(host=stack.host, port=stack.imap_port, timeout=TIMEOUT)
        await within(client.wait_hello_from_server())
        try:
            response = await within(client.login(AUDIT[0], "not-the-password"))
            assert response.result == "NO"
            started = time.monotonic()
            response = await within(client.login(*AUDIT))
            assert response.result == "OK"
            return time.monotonic() - started
        finally:
            await within(client.logout())

    # Dovecot still answers a failed login after about 0.5 s (its failure timer); the point is
    # that the next, correct login from the same address gets no penalty.
    assert asyncio.run(scenario()) < 1.0


def test_set_uidvalidity_changes_what_select_reports(stack: MailStack) -> None:
    stack.save(AUDIT[0], make_message("saved", "put there by doveadm\n").as_bytes())

    def select_uidvalidity() -> int:
        async def scenario() -> int:
            client = aioimaplib.IMAP4(host=stack.host, port=stack.imap_port, timeout=TIMEOUT)
            uidvalidity, messages = await read_inbox(client, *AUDIT)
            assert [parsed(raw)["Subject"] for _uid, raw in messages] == ["saved"]
            return uidvalidity

        return asyncio.run(scenario())

    before = select_uidvalidity()
    new_value = before + 1000
    stack.set_uidvalidity(AUDIT[0], new_value)
    assert select_uidvalidity() == new_value


def test_helpers_save_messages_flags_empty_and_add_headers(stack: MailStack) -> None:
    stack.save(CFO[0], make_message("first", "1\n", to=CFO[0]).as_bytes())
    stack.add_headers.append(("Authentication-Results", "mx.example.test; dmarc=pass"))
    stack.send(make_message("second", "2\n", to=CFO[0]).as_bytes(), mail_from=AUDIT[0], rcpt_to=[CFO[0]])

    messages = [parsed(raw) for raw in stack.messages(CFO[0])]
    assert [m["Subject"] for m in messages] == ["first", "second"]
    assert messages[1]["Authentication-Results"] == "mx.example.test; dmarc=pass"
    assert b"Authentication-Results" not in stack.received[-1]  # received = what was submitted
    assert stack.envelopes[-1].login is None and not stack.envelopes[-1].tls

    uids = stack.uids(CFO[0])
    assert uids == sorted(uids) and len(uids) == 2

    async def mark_first_seen() -> None:
        client = aioimaplib.IMAP4(host=stack.host, port=stack.imap_port, timeout=TIMEOUT)
        await within(client.wait_hello_from_server())
        try:
            assert (await within(client.login(*CFO))).result == "OK"
            assert (await within(client.select("INBOX"))).result == "OK"
            response = await within(client.uid("store", str(uids[0]), "+FLAGS", "(\\Seen)"))
            assert response.result == "OK", response
            assert (await within(client.create("Processed"))).result == "OK"
        finally:
            await within(client.logout())

    asyncio.run(mark_first_seen())
    assert stack.flags(CFO[0]) == [{"\\Seen"}, set()]
    stack.save(CFO[0], b"Subject: filed\r\n\r\nx\r\n", folder="Processed")
    assert len(stack.messages(CFO[0], "Processed")) == 1

    stack.empty(CFO[0])
    assert stack.messages(CFO[0]) == []
    assert stack.doveadm("mailbox", "list", "-u", CFO[0]).split() == ["INBOX"]


def test_a_stack_starts_fast_and_stops_cleanly() -> None:
    stack = MailStack({"solo@example.test": "solopw"})
    started = time.monotonic()
    stack.start()
    try:
        assert time.monotonic() - started < 2.0
        directory, pid = stack.dir, stack._master_pid
        assert pid is not None and os.path.isdir(directory)
        stack.send(b"Subject: ping\r\n\r\nping\r\n", mail_from="x@example.test", rcpt_to=["solo@example.test"])
        assert len(stack.messages("solo@example.test")) == 1
    finally:
        stack.stop()
    assert not os.path.exists(directory)
    assert not process_running(pid)
    stack.stop()  # a second stop is harmless


def process_running(pid: int) -> bool:
    """True unless the process is gone or only a zombie (PID 1 may be slow to reap it)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False
