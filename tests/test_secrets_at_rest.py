"""No secret at rest: nothing the product keeps holds a reply token that still decides.

A reply token is the approver's password for one request. After a run and a poll on the real
mail stack (SMTP out through the relay, replies read over IMAPS), every table of the
database and every file the product keeps is read, every string of a token's shape in them
(each 26-letter window of each run of base32 letters, in the bytes as stored and in every
MIME part decoded) is collected, and each is tried as a reply token by an approver: none
decides anything. The tokens really mailed still work: they are checked by their hash.

Also: every stored message is bound to the audit log (a change, deletion or insertion is
named by `audit verify`); a message queued while the relay was down keeps what sending needs
and is sent after a restart; an encoded reply is stored without its token all the same; a
database from before (tokens in Message-IDs) is upgraded: its tokens retired, its open
request sent again with a fresh one.
"""

from __future__ import annotations

import base64
import email
import email.header
import email.policy
import quopri
import re
import shutil
import socket
import sqlite3
import uuid
from email.message import EmailMessage
from pathlib import Path

import pytest

from helpers import (
    EXAMPLE_LEDGER,
    MAIL_PASSWORDS,
    ROOT,
    audit,
    build_reply,
    db_rows,
    drop_reply,
    loopback_mail,
    maildir_messages,
    parse,
    plain_body,
    report_json,
    write_site,
)

AUDIT = "audit@example.test"
CONTROLLER = "controller@example.test"
CFO = "cfo@example.test"
ENV = MAIL_PASSWORDS
TOKEN_RUN = re.compile(rb"[A-Za-z2-7]{26,}")
REPLY_TOKEN = re.compile(r"\+([a-z2-7]{26})@")
MARKER = "[reply token redacted]"
PROBES_PER_MESSAGE = 400


# --- reading everything the product keeps ------------------------------------------------


def decoded_forms(data: bytes) -> list[bytes]:
    """The bytes, and when they are a message, each part decoded (base64, quoted-printable)
    and each header decoded (encoded words)."""
    forms = [data, re.sub(rb"=\r?\n", b"", data)]
    if b"\n\n" not in data.replace(b"\r\n", b"\n") or b":" not in data[:200]:
        return forms
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    for part in msg.walk():
        for _, value in part.items():
            forms.append(str(email.header.make_header(email.header.decode_header(str(value)))).encode("utf-8", "replace"))
        payload = part.get_payload(decode=True) if not part.is_multipart() else None
        if isinstance(payload, bytes):
            forms.append(payload)
    return forms


def token_shaped(data: bytes) -> set[str]:
    """Every token-shaped string: each 26-character window of each run of base32 letters."""
    found: set[str] = set()
    for form in decoded_forms(data):
        for match in TOKEN_RUN.finditer(form):
            run = match.group(0).decode("ascii").lower()
            found.update(run[i : i + 26] for i in range(len(run) - 25))
    return found


def table_values(db_path: Path) -> list[bytes]:
    """Every value of every row of every table, as bytes."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert {"messages", "request_tokens", "events", "transcript", "conversation", "requests"} <= set(tables)
        values = []
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):
                values.extend(v if isinstance(v, bytes) else str(v).encode("utf-8") for v in row if v is not None)
        return values
    finally:
        db.close()


def kept_files(site: Path, *, leave_out: tuple[Path, ...] = ()) -> dict[Path, bytes]:
    """Every file under the site (database, its write-ahead log, locks, reports, spills...)."""
    return {
        p: p.read_bytes() for p in site.rglob("*") if p.is_file() and not any(p.is_relative_to(folder) for folder in leave_out)
    }


def everything_kept(site: Path, *, leave_out: tuple[Path, ...] = ()) -> set[str]:
    found: set[str] = set()
    for value in table_values(site / "audit.db"):
        found |= token_shaped(value)
    for data in kept_files(site, leave_out=leave_out).values():
        found |= token_shaped(data)
    return found


def assert_not_kept(site: Path, tokens: set[str], *, leave_out: tuple[Path, ...] = ()) -> None:
    """None of `tokens` is in any table (in any form) or in any byte of any file kept."""
    assert tokens
    assert not tokens & everything_kept(site, leave_out=leave_out)
    for path, data in kept_files(site, leave_out=leave_out).items():
        lowered = data.lower()
        assert not [t for t in tokens if t.encode() in lowered], f"{path} holds a reply token"


def reply_tokens(messages: list[EmailMessage]) -> set[str]:
    return {REPLY_TOKEN.search(m["Reply-To"]).group(1) for m in messages if m["Reply-To"] and REPLY_TOKEN.search(m["Reply-To"])}


def probe(candidates: list[str], sender: str, domain: str, thread: str) -> list[bytes]:
    """Replies that try every candidate as a reply token, several per message: each addressed
    to `audit+<candidate>@domain` and quoting it in the body, threaded on `thread` (our
    request's Message-ID) so that a token quoted in the body counts too."""
    replies = []
    for i in range(0, len(candidates), PROBES_PER_MESSAGE):
        batch = candidates[i : i + PROBES_PER_MESSAGE]
        msg = EmailMessage(policy=email.policy.SMTP)
        msg["From"], msg["Subject"] = sender, "Re: approve all"
        msg["To"] = ", ".join(f"audit+{c}@{domain}" for c in batch)
        msg["Message-ID"] = f"<{uuid.uuid4().hex}@client.test>"
        msg["In-Reply-To"] = msg["References"] = thread
        msg.set_content("approve all\n\n" + "\n".join(f"> Your reply address: audit+{c}@{domain}" for c in batch) + "\n")
        replies.append(msg.as_bytes())
    return replies


def decisions(site: Path) -> list[tuple]:
    return db_rows(site, "SELECT item_no, decision, approver FROM decisions ORDER BY id")


# --- the mail stack ----------------------------------------------------------------------


@pytest.fixture
def site(tmp_path: Path, mailstack) -> Path:
    mailstack.reset()
    return write_site(tmp_path / "site", [CONTROLLER, CFO], **loopback_mail(mailstack, AUDIT))


def test_nothing_kept_after_a_run_and_a_poll_holds_a_token_that_decides(site: Path, mailstack) -> None:
    result = audit("run", "--ledger", str(EXAMPLE_LEDGER), cwd=site, env=ENV)
    assert result.returncode == 0, result.stderr
    requests = {who: parse(mailstack.messages(who)[0]) for who in (CONTROLLER, CFO)}
    # the controller answers through its plus-address; the cfo's server drops the +token, so
    # the cfo's reply reaches the plain address and carries the token in the quoted request
    mailstack.send(build_reply(requests[CONTROLLER], "approve 1\nhold 4", sender=CONTROLLER), mail_from=CONTROLLER,
                   rcpt_to=[requests[CONTROLLER]["Reply-To"]])
    mailstack.send(build_reply(requests[CFO], "reject 2: no PO on file", sender=CFO, to=AUDIT), mail_from=CFO, rcpt_to=[AUDIT])
    result = audit("poll", "--once", cwd=site, env=ENV)
    assert result.returncode == 0, result.stderr
    assert "2 processed" in result.stdout and "3 decision(s) recorded" in result.stdout
    before = decisions(site)
    assert before == [(1, "approved", CONTROLLER), (4, "held", CONTROLLER), (2, "rejected", CFO)]

    mailed = [parse(m) for who in (CONTROLLER, CFO) for m in mailstack.messages(who)]
    live = reply_tokens(mailed)  # the requests' and the confirmations' (the request is open: all live)
    assert len(live) == 2
    assert live <= token_shaped(b"".join(m.as_bytes() for m in mailed))  # the harvest finds tokens where they are
    assert_not_kept(site, live)
    stored = db_rows(site, "SELECT kind, raw FROM messages WHERE direction = 'out' AND kind = 'request'")
    assert len(stored) == 2 and all(f"audit+{MARKER}@example.test".encode() in raw for _, raw in stored)
    assert all(MARKER in text for (text,) in db_rows(site, "SELECT question FROM requests"))

    # every token-shaped string kept anywhere, tried as a reply token by an approver: none decides
    candidates = sorted(everything_kept(site))
    assert candidates  # hashes and ids have runs of base32 letters too
    for raw in probe(candidates, CONTROLLER, "example.test", requests[CONTROLLER]["Message-ID"]):
        mailstack.send(raw, mail_from=CONTROLLER, rcpt_to=[AUDIT])
    result = audit("poll", "--once", cwd=site, env=ENV)
    assert result.returncode == 0, result.stderr
    probes = len(range(0, len(candidates), PROBES_PER_MESSAGE))
    assert f"{probes} refused" in result.stdout and "0 decision(s) recorded" in result.stdout
    refusals = db_rows(site, "SELECT detail FROM messages WHERE direction = 'in' AND status = 'refused'")
    assert len(refusals) == probes and all(d.startswith("no valid reply token") for (d,) in refusals)
    assert decisions(site) == before

    # the tokens really mailed still decide: they are checked by their hash
    mailstack.send(build_reply(requests[CONTROLLER], "approve 3", sender=CONTROLLER), mail_from=CONTROLLER,
                   rcpt_to=[requests[CONTROLLER]["Reply-To"]])
    result = audit("poll", "--once", cwd=site, env=ENV)
    assert "1 decision(s) recorded" in result.stdout
    assert decisions(site)[-1] == (3, "approved", CONTROLLER)
    assert_not_kept(site, live)
    assert audit("verify", cwd=site).returncode == 0


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_message_queued_while_the_relay_is_down_is_sent_after_a_restart_then_redacted(tmp_path: Path, mailstack) -> None:
    mailstack.reset()
    site = write_site(tmp_path / "site", [CONTROLLER], **loopback_mail(mailstack, AUDIT, smtp_port=closed_port(), smtp_timeout=2))
    result = audit("run", "--ledger", str(EXAMPLE_LEDGER), cwd=site, env=ENV)
    assert result.returncode == 9 and "1 message(s) left unsent" in result.stderr
    [(status, raw)] = db_rows(site, "SELECT status, raw FROM messages WHERE direction = 'out'")
    assert status == "queued"
    [queued] = reply_tokens([parse(raw)])  # not yet accepted by a relay: it keeps what sending needs
    assert mailstack.messages(CONTROLLER) == []

    write_site(site, [CONTROLLER], **loopback_mail(mailstack, AUDIT))  # the relay is back; a new process
    with sqlite3.connect(site / "audit.db") as db:  # and the pause before the next attempt is over
        db.execute("UPDATE messages SET next_attempt_at = '2000-01-01T00:00:00Z' WHERE status = 'queued'")
    result = audit("poll", "--once", cwd=site, env=ENV)
    assert result.returncode == 0, result.stderr
    assert "sent 1 message(s)" in result.stdout
    [request] = [parse(m) for m in mailstack.messages(CONTROLLER)]
    assert reply_tokens([request]) == {queued}
    assert db_rows(site, "SELECT status FROM messages") == [("sent",)]
    assert_not_kept(site, {queued})

    mailstack.send(build_reply(request, "approve all", sender=CONTROLLER), mail_from=CONTROLLER, rcpt_to=[request["Reply-To"]])
    result = audit("poll", "--once", cwd=site, env=ENV)
    assert "4 decision(s) recorded" in result.stdout
    assert_not_kept(site, {queued})


# --- the maildir transport ---------------------------------------------------------------

MAILDIR_CONTROLLER = "controller@example.com"


def maildir_site(folder: Path) -> Path:
    site = write_site(folder, [MAILDIR_CONTROLLER])
    result = audit("run", "--ledger", str(EXAMPLE_LEDGER), cwd=site)
    assert result.returncode == 0, result.stderr
    return site


def encoded_reply(request: EmailMessage, token: str) -> bytes:
    """A reply whose token is only in encoded forms: a base64 HTML part quoting the request, a
    quoted-printable plain part with a soft line break inside the token, and an encoded-word
    Subject; sent to the plain address (a server without plus-addressing)."""
    address = f"audit+{token}@example.com"
    html = f"<p>approve 1</p><blockquote>Your reply address: <a href=\"mailto:{address}\">{address}</a></blockquote>"
    plain = quopri.encodestring(f"approve 1\n\n> Your reply address: {address}\n".encode()).decode()
    cut = plain.index(token) + 10
    plain = plain[:cut] + "=\n" + plain[cut:]  # a soft line break inside the token
    subject = "=?utf-8?b?" + base64.b64encode(f"Re: {request['Subject']} ({address})".encode()).decode() + "?="
    boundary = "b" + uuid.uuid4().hex
    lines = [
        f"From: {MAILDIR_CONTROLLER}", "To: audit@example.com", f"Subject: {subject}",
        f"Message-ID: <{uuid.uuid4().hex}@client.test>", f"In-Reply-To: {request['Message-ID']}",
        "MIME-Version: 1.0", f'Content-Type: multipart/alternative; boundary="{boundary}"', "",
        f"--{boundary}", "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: quoted-printable", "",
        plain, f"--{boundary}", "Content-Type: text/html; charset=utf-8", "Content-Transfer-Encoding: base64", "",
        base64.encodebytes(html.encode()).decode(), f"--{boundary}--", "",
    ]
    return "\r\n".join(lines).replace("\r\n", "\n").replace("\n", "\r\n").encode()


def test_an_encoded_reply_is_stored_without_its_token(tmp_path: Path) -> None:
    site = maildir_site(tmp_path / "site")
    [request] = maildir_messages(site / "var/mail/outbox")
    [token] = reply_tokens([request])
    raw = encoded_reply(request, token)
    assert token not in raw.decode().lower()  # only encoded
    assert token in token_shaped(raw)
    drop_reply(site / "var/mail", raw)
    result = audit("poll", "--once", cwd=site)
    assert result.returncode == 0, result.stderr
    assert "1 decision(s) recorded" in result.stdout  # the token quoted in the body answered
    [(stored, recipients, subject)] = db_rows(site, "SELECT raw, recipients, subject FROM messages WHERE direction = 'in'")
    assert token not in token_shaped(stored) and MARKER in subject
    # the mailboxes (outbox: handed to delivery; inbox: the approver's reply as delivered) are mail, not the record
    assert_not_kept(site, {token}, leave_out=(site / "var/mail",))
    assert audit("verify", cwd=site).returncode == 0


# --- every stored message is bound to the audit log --------------------------------------


@pytest.fixture(scope="module")
def answered(tmp_path_factory) -> Path:
    """A maildir site: a run, a reply, a poll (the request, the reply, the confirmation)."""
    site = maildir_site(tmp_path_factory.mktemp("bound"))
    [request] = maildir_messages(site / "var/mail/outbox")
    drop_reply(site / "var/mail", build_reply(request, "approve 1\nreject 2: no PO on file", sender=MAILDIR_CONTROLLER))
    assert audit("poll", "--once", cwd=site).returncode == 0
    rows = db_rows(site, "SELECT id, direction, kind FROM messages ORDER BY id")
    assert sorted((d, k) for _, d, k in rows) == [("in", "reply"), ("out", "confirmation"), ("out", "request")]
    return site


def row_of(site: Path, direction: str, kind: str) -> int:
    return db_rows(site, "SELECT id FROM messages WHERE direction = ? AND kind = ?", direction, kind)[0][0]


def tampered(site: Path, name: str) -> Path:
    """A copy of the site's database with the audit log's append-only triggers dropped (as
    anyone with write access to the file could)."""
    target = site / f"{name}.db"
    target.unlink(missing_ok=True)
    with sqlite3.connect(site / "audit.db") as source, sqlite3.connect(target) as copy:
        source.backup(copy)
    with sqlite3.connect(target) as copy:
        for name_ in [n for (n,) in copy.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'events'")]:
            copy.execute(f'DROP TRIGGER "{name_}"')
    return target


def unredacted_request(site: Path) -> bytes:
    [request] = [m for m in maildir_messages(site / "var/mail/outbox") if m["Subject"].startswith("Ledger audit run")]
    return request.as_bytes()


EDITS = {
    # (what is done, SQL with {out}/{in}/{conf} for the rows, what verify names)
    "the sent request's stored copy swapped for the bytes with the token": (
        ["UPDATE messages SET raw = :unredacted WHERE id = {out}"], r"messages row {out} \(out, request\): its stored bytes"),
    "the reply's bytes changed": (
        ["UPDATE messages SET raw = CAST(replace(CAST(raw AS TEXT), 'approve 1', 'approve 4') AS BLOB) WHERE id = {in}"],
        r"messages row {in} \(in, reply\): its stored bytes"),
    "the reply's new text changed": (
        ["UPDATE messages SET new_text = 'approve all' WHERE id = {in}"], r"messages row {in} \(in, reply\): its recorded fields"),
    "the reply's sender changed": (
        ["UPDATE messages SET sender = 'cfo@example.com' WHERE id = {in}"], r"messages row {in} \(in, reply\): its recorded fields"),
    "the confirmation's recipient changed": (
        ["UPDATE messages SET recipients = 'someone@else.test' WHERE id = {conf}"], r"messages row {conf} \(out, confirmation\)"),
    "the sent request marked queued again": (
        ["UPDATE messages SET status = 'queued' WHERE id = {out}"], r"messages row {out} \(out, request\): status queued"),
    "the reply deleted": (["DELETE FROM messages WHERE id = {in}"], r"messages row {in} is missing"),
    "a message inserted to be sent": (
        ["INSERT INTO messages (direction, kind, message_id, sender, recipients, subject, raw, created_at, status)"
         " VALUES ('out', 'confirmation', '<forged@example.com>', 'audit@example.com', 'controller@example.com',"
         " 'Recorded', x'00', '2026-11-25T00:00:00Z', 'queued')"], r"messages row \d+: not recorded in the audit log"),
    "the stored copy's hash in the log changed": (
        ["UPDATE events SET detail = json_set(detail, '$.stored_sha256', '" + "0" * 64 + "')"
         " WHERE kind = 'mail_sent' AND json_extract(detail, '$.messages_row') = {out}"], r"events row \d+: content does not match"),
}


@pytest.mark.parametrize("edit", sorted(EDITS), ids=lambda s: s)
def test_verify_names_a_stored_message_changed_outside_the_product(answered: Path, edit: str) -> None:
    statements, named = EDITS[edit]
    rows = {"out": row_of(answered, "out", "request"), "in": row_of(answered, "in", "reply"), "conf": row_of(answered, "out", "confirmation")}
    copy = tampered(answered, re.sub(r"\W+", "-", edit))
    with sqlite3.connect(copy) as db:
        for statement in statements:
            db.execute(statement.format(**rows), {"unredacted": unredacted_request(answered)} if ":unredacted" in statement else {})
    result = audit("verify", "--db", str(copy), cwd=answered)
    assert result.returncode == 10, result.stdout
    assert re.search(named.format(**rows), result.stderr), result.stderr
    assert audit("verify", cwd=answered).returncode == 0  # the original still verifies


# --- a database from before: tokens in Message-IDs ---------------------------------------

LEGACY_DB = ROOT / "tests" / "fixtures" / "audit-v10-open.db"  # schema 10: a run, "approve 1", the request open
LEGACY_REQUEST = ROOT / "tests" / "fixtures" / "audit-v10-open-request.eml"  # its request, as the controller got it


def test_an_upgraded_database_retires_its_readable_tokens_and_sends_the_open_request_again(tmp_path: Path) -> None:
    site = write_site(tmp_path / "site", [MAILDIR_CONTROLLER])
    shutil.copy(LEGACY_DB, site / "audit.db")
    legacy = parse(LEGACY_REQUEST.read_bytes())
    [old] = reply_tokens([legacy])
    assert old in legacy["Message-ID"]  # how tokens used to travel: the audit log keeps Message-IDs

    result = audit("verify", cwd=site)  # opening it upgrades it
    assert result.returncode == 0, result.stderr
    assert db_rows(site, "SELECT COUNT(*), COUNT(retired_at) FROM request_tokens") == [(1, 1)]
    assert all(old.encode() not in raw for (raw,) in db_rows(site, "SELECT raw FROM messages"))
    assert db_rows(site, "SELECT COUNT(*) FROM events WHERE kind = 'message_sealed'") == [(3,)]

    # a reply with the retired token is refused with the reason; the poll sends the request again
    drop_reply(site / "var/mail", build_reply(legacy, "approve all", sender=MAILDIR_CONTROLLER))
    result = audit("poll", "--once", cwd=site)
    assert result.returncode == 0, result.stderr
    assert "1 refused" in result.stdout and "0 decision(s) recorded" in result.stdout
    assert "sent again with fresh reply addresses" in result.stdout
    [(detail,)] = db_rows(site, "SELECT detail FROM messages WHERE direction = 'in' ORDER BY id DESC LIMIT 1")
    assert detail.startswith("this reply address was retired when the audit database was upgraded")
    outbox = maildir_messages(site / "var/mail/outbox")
    [again] = [m for m in outbox if m["Subject"].startswith("Sent again")]
    assert again["To"] == MAILDIR_CONTROLLER and again["In-Reply-To"] == legacy["Message-ID"]
    [fresh] = reply_tokens([again])
    assert fresh != old and fresh not in again["Message-ID"]
    assert "[1]" not in plain_body(again) and "TX-1002" in plain_body(again)  # item 1 was decided before

    drop_reply(site / "var/mail", build_reply(again, "approve all", sender=MAILDIR_CONTROLLER))
    result = audit("poll", "--once", cwd=site)
    assert "3 decision(s) recorded" in result.stdout
    assert {r["status"] for r in report_json(site) if r["transaction_id"] in ("TX-1002", "TX-1003", "TX-1007")} == {"approved"}
    assert_not_kept(site, {fresh}, leave_out=(site / "var/mail",))
    assert audit("verify", cwd=site).returncode == 0


def test_redaction_reaches_every_form_a_token_takes_in_a_message() -> None:
    """The pure redaction, on a message holding one token in every form: a plus-address, an
    encoded-word Subject, a quoted-printable soft line break inside it, a file attached in
    base64, upper case. What comes out holds it in none, read every way; the rest is kept."""
    from job.mail.redact import redact_message, token_candidates

    token = "usoc4q5cxbnj6yrudluo2jn62m"
    attached = base64.encodebytes(f"Reply-To: audit+{token}@example.com\r\n".encode()).decode()
    subject = base64.b64encode(f"Re: {token.upper()}".encode()).decode()
    raw = (
        f"From: cfo@example.com\r\nTo: audit+{token}@example.com\r\nSubject: =?utf-8?b?{subject}?=\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="zz"\r\n\r\n'
        "--zz\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        f"approve 1\r\n> audit+{token[:10]}=\r\n{token[10:]}@example.com\r\n"
        f"--zz\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n{attached}--zz--\r\n"
    ).encode()
    assert token in token_candidates(raw)
    kept = redact_message(raw, {token})
    assert token not in token_shaped(kept) and token not in kept.decode().lower()
    assert kept.count(MARKER.encode()) == 3 and b"approve 1" in kept and b"From: cfo@example.com" in kept
    assert MARKER in str(email.header.make_header(email.header.decode_header(parse(kept)["Subject"])))


def test_the_bundled_example_database_verifies_and_holds_no_token(tmp_path: Path) -> None:
    copy = tmp_path / "audit.db"
    shutil.copy(ROOT / "audit.db.example", copy)
    result = audit("verify", "--db", str(copy), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [(raw,)] = db_rows(tmp_path, "SELECT raw FROM messages WHERE kind = 'request'")
    assert f"audit+{MARKER}@example.com".encode() in raw
    assert db_rows(tmp_path, "SELECT COUNT(*) FROM request_tokens WHERE retired_at IS NULL") == [(1,)]
