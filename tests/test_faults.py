"""Fault tolerance through the real command line: kill -9 at every step boundary of `run`
and `poll`, replies that keep failing, broken IMAP connections, overlapping runs and polls,
and mail that cannot be sent.

The kill tests compare a normalized snapshot of the database and the outbox after a killed
run (run again twice) with the snapshot of a site that ran once without interruption.
Volatile fields (row ids, timestamps, tokens, uuids, Message-IDs) are left out; every
Message-ID is instead checked to appear in the outbox at most twice, byte for byte the same.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from helpers import (
    EXAMPLE_LEDGER,
    audit,
    audit_process,
    build_reply,
    db_rows,
    drop_reply,
    errors_of,
    loopback_mail,
    maildir_messages,
    parse,
    report_json,
    write_site,
)

CRASH = "AUDIT_TEST_CRASH_AT"
FAIL = "AUDIT_TEST_FAIL_MESSAGE"
KILLED = -9  # subprocess reports a process killed by SIGKILL this way

RUN_STEPS = ["run:read", "run:reviewed", "run:inserting", "run:before-commit", "run:committed", "outbox:sent-before-recorded"]
POLL_STEPS = ["poll:before-commit", "poll:committed-before-marked", "poll:before-summaries", "outbox:sent-before-recorded"]

CONTROLLER = "controller@example.com"
CFO = "cfo@example.com"

AUDIT_T = "audit@example.test"
CONTROLLER_T = "controller@example.test"
CFO_T = "cfo@example.test"
ENV = {"AUDIT_SMTP_PASSWORD": "auditpw", "AUDIT_IMAP_PASSWORD": "auditpw"}


# ------------------------------------------------------------------------------ sites


def overlap_ledger(folder: Path) -> Path:
    """A second export repeating two transactions of the example and adding one new one."""
    path = folder / "ledger-2026-11-25.csv"
    lines = EXAMPLE_LEDGER.read_text().splitlines()
    path.write_text("\n".join(lines[:3] + ["TX-2001,2026-11-25,50000.00,USD,Acme Office Supply,Server racks,6100"]) + "\n")
    return path


def maildir_site(path: Path, **mail) -> Path:
    """A site with the maildir transport."""
    return write_site(path, [CONTROLLER, CFO], mail=mail)


def smtp_site(tmp_path: Path, mailstack, *, imap_port: int | None = None, imap_tls: str = "tls", imap_timeout: float = 10,
              smtp_port: int | None = None, smtp_timeout: float = 10, mail: dict | None = None) -> Path:
    return write_site(tmp_path / "site", [CONTROLLER_T, CFO_T], **loopback_mail(
        mailstack, AUDIT_T, smtp_port=smtp_port, imap_port=imap_port, imap_tls=imap_tls, smtp_timeout=smtp_timeout,
        imap_timeout=imap_timeout, **(mail or {})))


def set_imap_port(site: Path, port: int) -> None:
    text = (site / "audit.toml").read_text()
    section, _, rest = text.partition("[mail.imap]")
    (site / "audit.toml").write_text(section + "[mail.imap]" + re.sub(r"(?m)^port = \d+$", f"port = {port}", rest, count=1))


def set_smtp_port(site: Path, port: int) -> None:
    text = (site / "audit.toml").read_text()
    section, _, rest = text.partition("[mail.smtp]")
    (site / "audit.toml").write_text(section + "[mail.smtp]" + re.sub(r"(?m)^port = \d+$", f"port = {port}", rest, count=1))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ledgers_args(*paths: Path) -> list[str]:
    return [arg for p in paths for arg in ("--ledger", str(p))]


def outbox_dir(site: Path) -> Path:
    return site / "var" / "mail" / "outbox"


def outbox_raw(site: Path) -> list[bytes]:
    folder = outbox_dir(site)
    return [p.read_bytes() for sub in ("new", "cur") if (folder / sub).is_dir() for p in sorted((folder / sub).iterdir())]


def message_id_of(raw: bytes) -> str:
    return parse(raw)["Message-ID"]


def copies_per_message_id(site: Path) -> Counter:
    """How many times each Message-ID was written to the outbox; every copy must be identical."""
    by_id: dict[str, list[bytes]] = {}
    for raw in outbox_raw(site):
        by_id.setdefault(message_id_of(raw), []).append(raw)
    for mid, copies in by_id.items():
        assert all(c == copies[0] for c in copies), f"{mid}: the copies sent differ"
    return Counter({mid: len(copies) for mid, copies in by_id.items()})


def snapshot(site: Path) -> dict:
    """The state a user cares about, without ids, timestamps, tokens or Message-IDs."""
    q = lambda sql: sorted(db_rows(site, sql), key=repr)  # noqa: E731
    sent_ids = copies_per_message_id(site)
    out_rows = db_rows(site, "SELECT message_id, kind, recipients, subject, status FROM messages WHERE direction = 'out'")
    distinct = {message_id_of(raw): parse(raw) for raw in outbox_raw(site)}.values()
    return {
        "transactions": q("SELECT source, txn_id, amount_minor, status, flags, agent_note, item_no FROM transactions"),
        "ledger_files": q("SELECT sha256, rows, new_rows FROM ledger_files"),
        "vendors": q("SELECT vendor_key, name FROM vendors"),
        "requests": q("SELECT status, items, subject, summary, closed_at IS NOT NULL FROM requests"),
        "request_items": q("SELECT t.item_no, t.txn_id, t.status FROM transactions t JOIN requests r ON r.id = t.request_id"),
        "tokens": sorted(Counter(a for (a,) in db_rows(site, "SELECT approver FROM request_tokens")).items()),
        "outbox_rows": sorted(Counter((k, rcpt, subj, st) for _, k, rcpt, subj, st in out_rows).items()),
        "outbox_ids_match_sent": sorted(row[0] for row in out_rows if row[4] == "sent") == sorted(sent_ids),
        "mailed": sorted(Counter((m["To"], m["Subject"]) for m in distinct).items()),
        "decisions": q("SELECT item_no, decision, reason, approver FROM decisions"),
        "inbound": q("SELECT sender, status, detail FROM messages WHERE direction = 'in'"),
        # a message seen again after a kill is logged as repeated: that is a trace of the kill, not a
        # difference; every run (re-runs too) records a run and its seal
        "events": sorted(Counter(k for (k,) in db_rows(
            site, "SELECT kind FROM events WHERE kind NOT IN ('run', 'sealed', 'message_repeated')")).items()),
        "conversation": db_rows(site, "SELECT COUNT(*) FROM conversation"),
        "transcript": db_rows(site, "SELECT COUNT(*) FROM transcript"),
        "failures": q("SELECT attempts, moved_to FROM inbound_failures"),
    }


def assert_verifies(site: Path, env: dict | None = None) -> None:
    result = audit("verify", cwd=site, env=env)
    assert result.returncode == 0, result.stderr
    db = sqlite3.connect(site / "audit.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


# ------------------------------------------------------------------- kill -9: `audit run`


@pytest.fixture(scope="module")
def run_baseline(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("run-baseline")
    site = maildir_site(folder / "site")
    second = overlap_ledger(folder)
    result = audit("run", *ledgers_args(EXAMPLE_LEDGER, second), cwd=site)
    assert result.returncode == 0, result.stderr
    assert "11 new, 5 flagged" in result.stdout
    assert set(copies_per_message_id(site).values()) == {1}
    assert_verifies(site)
    return snapshot(site)


@pytest.mark.separate_process("killed with SIGKILL at a crash point")
@pytest.mark.parametrize("step", RUN_STEPS)
def test_run_killed_at_each_step_then_rerun_equals_an_uninterrupted_run(step: str, tmp_path: Path, run_baseline: dict) -> None:
    site = maildir_site(tmp_path / "site")
    args = ledgers_args(EXAMPLE_LEDGER, overlap_ledger(tmp_path))
    killed = audit_process("run", *args, cwd=site, env={CRASH: step})
    assert killed.returncode == KILLED, f"not killed at {step}: {killed.returncode} {killed.stderr}"
    for _ in range(2):  # run again, and once more: nothing new either time
        again = audit("run", *args, cwd=site)
        assert again.returncode == 0, again.stderr

    state = snapshot(site)
    for key in run_baseline:
        assert state[key] == run_baseline[key], f"{key} differs after a kill at {step}"
    copies = copies_per_message_id(site)
    assert len(copies) == 2  # one request per approver
    if step == "outbox:sent-before-recorded":
        assert set(copies.values()) <= {1, 2}  # sent at most twice, with the same Message-ID
    else:
        assert set(copies.values()) == {1}
    assert_verifies(site)


def full_disk_run(site: Path, ledger: Path, limit: int) -> subprocess.CompletedProcess:
    """`audit run` with no file allowed to grow past `limit` bytes: writes beyond it fail as
    they do on a full disk (the signal the kernel would send is ignored)."""

    def limit_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    # a separate process: the file size limit applies to the whole process
    env = {k: v for k, v in os.environ.items() if k not in ("AUDIT_CONFIG", "AUDIT_DEBUG")}
    return subprocess.run([sys.executable, "-m", "job", "run", "--ledger", str(ledger)], cwd=site, env=env,
                          capture_output=True, text=True, timeout=120, preexec_fn=limit_files)


@pytest.mark.separate_process("a file size limit (RLIMIT_FSIZE) on the process stands in for a full disk")
def test_a_full_disk_during_the_run_is_one_line_exit_7_and_records_nothing(tmp_path: Path) -> None:
    site = maildir_site(tmp_path / "site")
    lines = EXAMPLE_LEDGER.read_text().splitlines()
    ledger = tmp_path / "ledger.csv"
    ledger.write_text("\n".join(lines + [f"F-{n:05d},2026-11-24,{100 + n // 100}.{n % 100:02d},USD,Acme Office Supply,Toner,6100"
                                         for n in range(30_000)]) + "\n")
    from job.store.db import open_db

    open_db(site / "audit.db").conn.close()  # the database exists, empty: the run must add to it
    full = full_disk_run(site, ledger, 1_000_000)
    assert full.returncode == 7, full.stderr
    # a file size limit reads as an I/O error to SQLite, a full disk as "database or disk is full"
    assert errors_of(full) in ("audit: error: audit database: disk I/O error\n", "audit: error: audit database: database or disk is full\n")
    assert len(errors_of(full).splitlines()) == 1 and "Traceback" not in full.stderr
    assert db_rows(site, "SELECT COUNT(*) FROM transactions") == [(0,)]
    assert db_rows(site, "SELECT COUNT(*) FROM runs") == [(0,)]
    assert outbox_raw(site) == []
    again = audit("run", "--ledger", str(ledger), cwd=site)  # room again: the run goes through
    assert again.returncode == 0, again.stderr
    assert db_rows(site, "SELECT COUNT(*) FROM transactions") == [(30_010,)]  # the example's 10 and ours
    assert_verifies(site)


@pytest.mark.separate_process("killed with SIGKILL at a crash point")
def test_run_killed_after_smtp_accepted_resends_at_most_once_with_the_same_message_id(tmp_path: Path, mailstack) -> None:
    mailstack.reset()
    site = smtp_site(tmp_path, mailstack)
    killed = audit_process("run", "--ledger", str(EXAMPLE_LEDGER), cwd=site, env={**ENV, CRASH: "outbox:sent-before-recorded"})
    assert killed.returncode == KILLED
    assert len(mailstack.received) == 2  # the relay accepted both before the kill
    for _ in range(2):
        again = audit("run", "--ledger", str(EXAMPLE_LEDGER), cwd=site, env=ENV)
        assert again.returncode == 0, again.stderr
    relayed = Counter(message_id_of(raw) for raw in mailstack.received)
    stored = sorted(mid for (mid,) in db_rows(site, "SELECT message_id FROM messages WHERE direction = 'out'"))
    assert sorted(relayed) == stored and len(stored) == 2
    assert all(n <= 2 for n in relayed.values()), relayed
    assert db_rows(site, "SELECT status, COUNT(*) FROM messages WHERE direction = 'out' GROUP BY status") == [("sent", 2)]
    in_mailbox = Counter(parse(raw)["Message-ID"] for raw in mailstack.messages(CONTROLLER_T))
    assert len(in_mailbox) == 1 and sum(in_mailbox.values()) <= 2  # the approver sees at most a duplicate of one message
    assert_verifies(site, ENV)


# ------------------------------------------------------------------ kill -9: `audit poll`


@pytest.fixture(scope="module")
def poll_template(tmp_path_factory) -> Path:
    """A site after one run, with two replies waiting: the second one closes the request."""
    site = maildir_site(tmp_path_factory.mktemp("poll-template") / "site")
    result = audit("run", "--ledger", str(EXAMPLE_LEDGER), cwd=site)
    assert result.returncode == 0, result.stderr
    sent = {m["To"]: m for m in maildir_messages(outbox_dir(site))}
    first = drop_reply(site / "var" / "mail", build_reply(sent[CONTROLLER], "approve 1, 2\nreject 3: no PO on file", sender=CONTROLLER), "r1")
    second = drop_reply(site / "var" / "mail", build_reply(sent[CFO], "approve all", sender=CFO), "r2")
    now = time.time_ns()
    os.utime(first, ns=(now - 2_000_000_000, now - 2_000_000_000))
    os.utime(second, ns=(now, now))
    return site


def copy_site(template: Path, target: Path) -> Path:
    shutil.copytree(template, target)
    return target


@pytest.fixture(scope="module")
def poll_baseline(poll_template: Path, tmp_path_factory) -> dict:
    site = copy_site(poll_template, tmp_path_factory.mktemp("poll-baseline") / "site")
    result = audit("poll", "--once", cwd=site)
    assert result.returncode == 0, result.stderr
    assert "2 processed" in result.stdout and "4 decision(s) recorded" in result.stdout and "closed" in result.stdout
    assert_verifies(site)
    return snapshot(site)


@pytest.mark.separate_process("killed with SIGKILL at a crash point")
@pytest.mark.parametrize("step", POLL_STEPS)
def test_poll_killed_at_each_step_then_polled_again_equals_an_uninterrupted_poll(
    step: str, tmp_path: Path, poll_template: Path, poll_baseline: dict
) -> None:
    site = copy_site(poll_template, tmp_path / "site")
    killed = audit_process("poll", "--once", cwd=site, env={CRASH: step})
    assert killed.returncode == KILLED, f"not killed at {step}: {killed.returncode} {killed.stderr}"
    for _ in range(2):
        again = audit("poll", "--once", cwd=site)
        assert again.returncode == 0, again.stderr

    state = snapshot(site)
    for key in poll_baseline:
        assert state[key] == poll_baseline[key], f"{key} differs after a kill at {step}"
    # no double decision: each item decided once, by the reply that decided it
    assert [(n, d) for n, d, _, _ in state["decisions"]] == [(1, "approved"), (2, "approved"), (3, "rejected"), (4, "approved")]
    copies = copies_per_message_id(site)
    confirmations = [m for m in maildir_messages(outbox_dir(site)) if m["Subject"].startswith("Recorded:")]
    assert sorted(Counter(m["To"] for m in {m["Message-ID"]: m for m in confirmations}.values()).items()) == [(CFO, 1), (CONTROLLER, 1)]
    if step == "outbox:sent-before-recorded":
        assert set(copies.values()) <= {1, 2}
    else:
        assert set(copies.values()) == {1}
    assert not list((site / "var/mail/inbox/new").iterdir())
    assert_verifies(site)
    rows = {r["transaction_id"]: r["status"] for r in report_json(site)}
    assert (rows["TX-1008"], rows["TX-1002"], rows["TX-1007"], rows["TX-1003"]) == ("approved", "approved", "rejected", "approved")


@pytest.mark.separate_process("killed with SIGKILL at a crash point")
def test_poll_killed_between_commit_and_imap_flag_does_not_decide_twice(tmp_path: Path, mailstack) -> None:
    mailstack.reset()
    site = smtp_site(tmp_path, mailstack)
    assert audit("run", "--ledger", str(EXAMPLE_LEDGER), cwd=site, env=ENV).returncode == 0
    request = parse(mailstack.messages(CONTROLLER_T)[0])
    mailstack.send(build_reply(request, "approve 1\nreject 2: duplicate", sender=CONTROLLER_T), mail_from=CONTROLLER_T, rcpt_to=[request["Reply-To"]])

    killed = audit_process("poll", "--once", cwd=site, env={**ENV, CRASH: "poll:committed-before-marked"})
    assert killed.returncode == KILLED
    assert mailstack.flags(AUDIT_T) == [set()]  # recorded, but never marked on the server
    for _ in range(2):
        again = audit("poll", "--once", cwd=site, env=ENV)
        assert again.returncode == 0, again.stderr
        assert "0 decision(s) recorded" in again.stdout

    assert db_rows(site, "SELECT item_no, decision, approver FROM decisions ORDER BY item_no") == [
        (1, "approved", CONTROLLER_T), (2, "rejected", CONTROLLER_T)]
    assert db_rows(site, "SELECT COUNT(*) FROM messages WHERE direction = 'in'") == [(1,)]
    confirmations = [parse(m) for m in mailstack.messages(CONTROLLER_T) if b"Recorded:" in m]
    assert len(confirmations) == 1
    assert db_rows(site, "SELECT COUNT(*) FROM messages WHERE direction = 'out' AND status != 'sent'") == [(0,)]
    assert_verifies(site, ENV)


# --------------------------------------------------------------- replies that keep failing


def three_replies(site: Path, marker: str) -> None:
    sent = {m["To"]: m for m in maildir_messages(outbox_dir(site))}
    replies = [
        build_reply(sent[CONTROLLER], "approve 1", sender=CONTROLLER),
        build_reply(sent[CFO], f"approve 2\n\nref {marker}", sender=CFO),
        build_reply(sent[CONTROLLER], "reject 3: no PO on file", sender=CONTROLLER),
    ]
    now = time.time_ns()
    for n, raw in enumerate(replies):
        path = drop_reply(site / "var" / "mail", raw, f"m{n}")
        os.utime(path, ns=(now + n * 1_000_000_000,) * 2)


def test_a_reply_that_keeps_failing_does_not_stop_the_others_and_is_moved_aside(tmp_path: Path) -> None:
    site = maildir_site(tmp_path / "site", max_attempts=2)
    assert audit("run", "--ledger", str(EXAMPLE_LEDGER), cwd=site).returncode == 0
    marker = "BROKEN-7f3a"
    three_replies(site, marker)
    env = {FAIL: marker}

    first = audit("poll", "--once", cwd=site, env=env)
    assert first.returncode == 0, first.stderr
    assert "3 message(s): 2 processed" in first.stdout and "1 failed" in first.stdout and "2 decision(s) recorded" in first.stdout
    warnings = [l for l in first.stderr.splitlines() if "failed" in l]
    assert len(warnings) == 1 and warnings[0].startswith("audit: warning: ") and "attempt 1 of 2" in warnings[0]
    assert [p.name for p in (site / "var/mail/inbox/new").iterdir()] == ["m1"]  # still there, retried next poll

    second = audit("poll", "--once", cwd=site, env=env)
    assert second.returncode == 0, second.stderr
    assert "1 failed" in second.stdout
    moved = [l for l in second.stderr.splitlines() if "moved to" in l]
    assert len(moved) == 1 and moved[0].startswith("audit: warning: ") and "audit-failed" in moved[0]
    assert not list((site / "var/mail/inbox/new").iterdir())
    [aside] = list((site / "var/mail/audit-failed/new").iterdir())
    assert marker.encode() in aside.read_bytes()

    [(status, detail)] = db_rows(site, "SELECT status, detail FROM messages WHERE direction = 'in' AND instr(raw, ?)", marker.encode())
    assert status == "failed" and "injected failure" in detail
    [(event_detail,)] = db_rows(site, "SELECT detail FROM events WHERE kind = 'message_failed'")
    assert "injected failure" in event_detail and '"attempts":2' in event_detail
    statuses = {r["transaction_id"]: r["status"] for r in report_json(site)}
    assert (statuses["TX-1008"], statuses["TX-1002"], statuses["TX-1007"]) == ("approved", "pending", "rejected")

    third = audit("poll", "--once", cwd=site, env=env)  # nothing left to retry
    assert third.returncode == 0 and "0 message(s)" in third.stdout
    assert_verifies(site)


def test_a_reply_that_keeps_failing_over_imap_is_moved_to_the_failed_folder(tmp_path: Path, mailstack) -> None:
    mailstack.reset()
    site = smtp_site(tmp_path, mailstack, mail={"max_attempts": 2, "failed_folder": "Audit-Failed"})
    assert audit("run", "--ledger", str(EXAMPLE_LEDGER), cwd=site, env=ENV).returncode == 0
    to_c, to_cfo = parse(mailstack.messages(CONTROLLER_T)[0]), parse(mailstack.messages(CFO_T)[0])
    marker = "BROKEN-91c2"
    for request, sender, text in ((to_c, CONTROLLER_T, "approve 1"), (to_cfo, CFO_T, f"approve 2\n\nref {marker}"),
                                  (to_c, CONTROLLER_T, "reject 3: no PO on file")):
        mailstack.send(build_reply(request, text, sender=sender), mail_from=sender, rcpt_to=[request["Reply-To"]])
    env = {**ENV, FAIL: marker}

    first = audit("poll", "--once", cwd=site, env=env)
    assert first.returncode == 0, first.stderr
    assert "2 processed" in first.stdout and "1 failed" in first.stdout
    second = audit("poll", "--once", cwd=site, env=env)
    assert second.returncode == 0, second.stderr
    assert "1 failed" in second.stdout and any("moved to" in l for l in second.stderr.splitlines())

    [aside] = mailstack.messages(AUDIT_T, "Audit-Failed")
    assert marker.encode() in aside
    assert all(marker.encode() not in raw for raw in mailstack.messages(AUDIT_T))
    assert len(mailstack.messages(AUDIT_T)) == 2
    assert db_rows(site, "SELECT status FROM messages WHERE direction = 'in' AND instr(raw, ?)", marker.encode()) == [("failed",)]
    assert len(db_rows(site, "SELECT 1 FROM events WHERE kind = 'message_failed'")) == 1
    assert db_rows(site, "SELECT item_no, decision FROM decisions ORDER BY item_no") == [(1, "approved"), (3, "rejected")]

    third = audit("poll", "--once", cwd=site, env=env)
    assert third.returncode == 0 and "0 message(s)" in third.stdout


# ------------------------------------------------------------------- a broken IMAP server


class TcpProxy:
    """A TCP proxy on 127.0.0.1 in front of a server port (IMAP, or SMTP when silent).

    mode "pass" forwards everything; "cut" forwards `cut_after` bytes of the server's answer
    to the first FETCH, then closes both connections; "stall" stops forwarding the server's
    answer to the first FETCH (and keeps the connection open); "silent" accepts connections
    and never says anything.
    """

    def __init__(self, target_port: int, mode: str = "pass", cut_after: int = 400) -> None:
        self.target_port, self.mode, self.cut_after = target_port, mode, cut_after
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.fetch_seen = threading.Event()
        self.connected = threading.Event()
        self.accepted = 0  # connections accepted
        self.forwarded_after_fetch = 0
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> "TcpProxy":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self._sockets.append(client)
            self.accepted += 1
            self.connected.set()
            if self.mode == "silent":
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            upstream.settimeout(None)
            self._sockets.append(upstream)
            armed = threading.Event()
            threading.Thread(target=self._client_to_server, args=(client, upstream, armed), daemon=True).start()
            threading.Thread(target=self._server_to_client, args=(upstream, client, armed), daemon=True).start()

    def _client_to_server(self, client: socket.socket, upstream: socket.socket, armed: threading.Event) -> None:
        try:
            while data := client.recv(65536):
                if re.search(rb"(?i)\bfetch\b", data):
                    armed.set()
                    self.fetch_seen.set()
                upstream.sendall(data)
        except OSError:
            pass

    def _server_to_client(self, upstream: socket.socket, client: socket.socket, armed: threading.Event) -> None:
        try:
            while data := upstream.recv(65536):
                if not armed.is_set() or self.mode == "pass":
                    client.sendall(data)
                    continue
                if self.mode == "stall":
                    continue  # read and drop: the client waits for an answer that never comes
                room = self.cut_after - self.forwarded_after_fetch
                client.sendall(data[:room])
                self.forwarded_after_fetch += min(room, len(data))
                if self.forwarded_after_fetch >= self.cut_after:
                    for s in (client, upstream):
                        try:
                            s.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
                        s.close()
                    return
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()
        for s in self._sockets:
            try:
                s.close()
            except OSError:
                pass


def one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = errors_of(result).splitlines()
    assert len(lines) == 1, f"expected one error line, got:\n{result.stderr}"
    return lines[0]


def request_with_replies(site: Path, mailstack) -> list[str]:
    """Run, then have both approvers reply; returns the replies' Message-IDs."""
    assert audit("run", "--ledger", str(EXAMPLE_LEDGER), cwd=site, env=ENV).returncode == 0
    ids = []
    for approver, text in ((CONTROLLER_T, "approve 1, 2"), (CFO_T, "reject 3: no PO on file")):
        request = parse(mailstack.messages(approver)[0])
        reply = build_reply(request, text, sender=approver)
        mailstack.send(reply, mail_from=approver, rcpt_to=[request["Reply-To"]])
        ids.append(parse(reply)["Message-ID"])
    return ids


def nothing_recorded(site: Path) -> None:
    assert db_rows(site, "SELECT COUNT(*) FROM decisions") == [(0,)]
    assert db_rows(site, "SELECT COUNT(*) FROM messages WHERE direction = 'in'") == [(0,)]
    assert db_rows(site, "SELECT COUNT(*) FROM imap_state") == [(0,)]
    assert db_rows(site, "SELECT COUNT(*) FROM inbound_failures") == [(0,)]


def test_imap_server_down_is_one_line_naming_host_and_port(tmp_path: Path, mailstack) -> None:
    port = closed_port()
    site = smtp_site(tmp_path, mailstack, imap_port=port, imap_tls="none", imap_timeout=2)
    started = time.monotonic()
    result = audit("poll", "--once", cwd=site, env=ENV)
    assert result.returncode == 5
    assert time.monotonic() - started < 15
    assert f"127.0.0.1:{port}" in one_error_line(result)
    assert "Traceback" not in result.stderr


def test_imap_login_refused_over_plain_imap_is_exit_5(tmp_path: Path, mailstack) -> None:
    site = smtp_site(tmp_path, mailstack, imap_tls="none", imap_timeout=5)
    result = audit("poll", "--once", cwd=site, env={**ENV, "AUDIT_IMAP_PASSWORD": "not-the-password"})
    assert result.returncode == 5
    line = one_error_line(result)
    assert f"127.0.0.1:{mailstack.imap_port}" in line and "login refused" in line and "not-the-password" not in result.stderr


@pytest.mark.parametrize("mode", ["cut", "stall"])
def test_imap_connection_lost_or_stalled_mid_fetch_records_nothing(mode: str, tmp_path: Path, mailstack) -> None:
    mailstack.reset()
    site = smtp_site(tmp_path, mailstack, imap_tls="none", imap_timeout=2)
    reply_ids = request_with_replies(site, mailstack)
    with TcpProxy(mailstack.imap_port, mode=mode, cut_after=400) as proxy:
        set_imap_port(site, proxy.port)
        started = time.monotonic()
        result = audit("poll", "--once", cwd=site, env=ENV, timeout=60)
        elapsed = time.monotonic() - started
        assert proxy.fetch_seen.is_set()
    assert result.returncode == 5, result.stderr
    assert elapsed < 15, f"took {elapsed:.1f}s with a 2 s timeout"
    error_lines = [l for l in result.stderr.splitlines() if l.startswith("audit: error:")]
    assert len(error_lines) == 1 and f"IMAP 127.0.0.1:{proxy.port}" in error_lines[0]
    nothing_recorded(site)
    assert mailstack.flags(AUDIT_T) == [set(), set()]

    set_imap_port(site, mailstack.imap_port)  # straight to the server: everything once
    direct = audit("poll", "--once", cwd=site, env=ENV)
    assert direct.returncode == 0, direct.stderr
    assert "2 message(s): 2 processed" in direct.stdout and "3 decision(s) recorded" in direct.stdout
    assert sorted(m for (m,) in db_rows(site, "SELECT message_id FROM messages WHERE direction = 'in'")) == sorted(reply_ids)
    again = audit("poll", "--once", cwd=site, env=ENV)
    assert "0 decision(s) recorded" in again.stdout
    assert db_rows(site, "SELECT COUNT(*) FROM decisions") == [(3,)]


@pytest.mark.parametrize("mode", ["cut", "stall"])
def test_imap_connection_lost_mid_fetch_prints_only_one_line(mode: str, tmp_path: Path, mailstack) -> None:
    mailstack.reset()
    site = smtp_site(tmp_path, mailstack, imap_tls="none", imap_timeout=1)
    body = "".join(f"line {n} of a reply long enough to be cut in the middle\r\n" for n in range(60))
    mailstack.save(AUDIT_T, f"From: {CONTROLLER_T}\r\nTo: {AUDIT_T}\r\nSubject: hello\r\nMessage-ID: <cut.1@client.test>\r\n\r\n{body}".encode())
    with TcpProxy(mailstack.imap_port, mode=mode, cut_after=400) as proxy:
        set_imap_port(site, proxy.port)
        result = audit("poll", "--once", cwd=site, env=ENV, timeout=60)
        assert proxy.fetch_seen.is_set()
    assert result.returncode == 5
    assert db_rows(site, "SELECT COUNT(*) FROM messages") == [(0,)]
    assert f"127.0.0.1:{proxy.port}" in one_error_line(result)


def test_imap_server_that_never_greets_times_out_with_exit_5(tmp_path: Path, mailstack) -> None:
    with TcpProxy(mailstack.imap_port, mode="silent") as proxy:
        site = smtp_site(tmp_path, mailstack, imap_port=proxy.port, imap_tls="none", imap_timeout=2)
        started = time.monotonic()
        result = audit("poll", "--once", cwd=site, env=ENV, timeout=60)
        elapsed = time.monotonic() - started
        assert proxy.connected.is_set()
    assert result.returncode == 5
    assert elapsed < 15
    line = one_error_line(result)
    assert f"127.0.0.1:{proxy.port}" in line and "timed out" in line


# ------------------------------------------------------------------ overlapping runs/polls


def start_audit(*args: str, cwd: Path, env: dict) -> subprocess.Popen:
    """`audit ARGS` started in a separate process that holds its lock while the test runs another."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("AUDIT_CONFIG", "AUDIT_DEBUG", "OPENAI_API_KEY")}
    full_env.update(env)
    return subprocess.Popen([sys.executable, "-m", "job", *args], cwd=cwd, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.separate_process("the lock is held by another process")
def test_two_polls_at_once_the_second_exits_8_and_nothing_is_corrupted(tmp_path: Path, mailstack) -> None:
    mailstack.reset()
    site = smtp_site(tmp_path, mailstack, imap_tls="none", imap_timeout=3)
    request_with_replies(site, mailstack)
    with TcpProxy(mailstack.imap_port, mode="stall") as proxy:
        set_imap_port(site, proxy.port)
        first = start_audit("poll", "--once", cwd=site, env=ENV)
        try:
            assert proxy.fetch_seen.wait(20), "the first poll never reached FETCH"
            started = time.monotonic()
            second = audit("poll", "--once", cwd=site, env=ENV)  # default --wait 0
            quick = time.monotonic() - started
            started = time.monotonic()
            third = audit("poll", "--once", "--wait", "1", cwd=site, env=ENV)
            waited = time.monotonic() - started
            _, first_err = first.communicate(timeout=60)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
    for result in (second, third):
        assert result.returncode == 8, result.stderr
        line = one_error_line(result)
        assert "another 'audit poll' is running" in line
    assert quick < 5
    assert 1.0 <= waited < 6
    assert first.returncode == 5, first_err  # the stalled one gives up after its timeout

    set_imap_port(site, mailstack.imap_port)
    after = audit("poll", "--once", cwd=site, env=ENV)
    assert after.returncode == 0 and "2 processed" in after.stdout
    assert db_rows(site, "SELECT COUNT(*) FROM decisions") == [(3,)]
    assert_verifies(site, ENV)


@pytest.mark.separate_process("the lock is held by another process")
def test_two_runs_at_once_the_second_waits_then_exits_8(tmp_path: Path, mailstack) -> None:
    hang = TcpProxy(mailstack.smtp_port, mode="silent")  # an SMTP server that accepts and never answers
    try:
        site = smtp_site(tmp_path, mailstack, smtp_port=hang.port, smtp_timeout=4)
        first = start_audit("run", "--ledger", str(EXAMPLE_LEDGER), cwd=site, env=ENV)
        try:
            assert hang.connected.wait(20), "the first run never started sending"
            started = time.monotonic()
            second = audit("run", "--ledger", str(EXAMPLE_LEDGER), "--wait", "1", cwd=site, env=ENV)
            waited = time.monotonic() - started
            first_out, first_err = first.communicate(timeout=60)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
    finally:
        hang.close()
    assert second.returncode == 8, second.stderr
    assert "another 'audit run' is running" in one_error_line(second)
    assert 1.0 <= waited < 6
    assert first.returncode == 9, first_err  # recorded, but the mail could not be sent
    assert "4 flagged" in first_out
    assert db_rows(site, "SELECT COUNT(*) FROM runs") == [(1,)]
    assert db_rows(site, "SELECT COUNT(*) FROM transactions") == [(10,)]
    assert_verifies(site, ENV)


# --------------------------------------------------------------------------- the outbox


def test_unsent_mail_exits_9_is_listed_and_is_sent_later_with_the_same_message_id(tmp_path: Path, mailstack) -> None:
    mailstack.reset()
    down = closed_port()
    site = smtp_site(tmp_path, mailstack, smtp_port=down, smtp_timeout=3)

    run = audit("run", "--ledger", str(EXAMPLE_LEDGER), cwd=site, env=ENV)
    assert run.returncode == 9, run.stderr
    assert f"127.0.0.1:{down}" in run.stderr and "2 message(s) left unsent" in run.stderr
    assert db_rows(site, "SELECT COUNT(*) FROM transactions") == [(10,)]  # the work itself is recorded
    status = audit("status", cwd=site, env=ENV)
    assert status.returncode == 0
    assert "unsent mail: 2" in status.stdout
    unsent = [l for l in status.stdout.splitlines() if l.lstrip().startswith("#")]
    assert len(unsent) == 2 and all("cannot connect" in l and str(down) in l and "1 attempt(s)" in l for l in unsent)
    assert {re.search(r"request to (\S+):", l).group(1) for l in unsent} == {CONTROLLER_T, CFO_T}
    queued = sorted(db_rows(site, "SELECT message_id, recipients FROM messages WHERE direction = 'out' AND status = 'queued'"))

    set_smtp_port(site, mailstack.smtp_port)
    early = audit("poll", "--once", cwd=site, env=ENV)  # within the backoff: not retried yet
    assert early.returncode == 9 and mailstack.received == []

    db = sqlite3.connect(site / "audit.db")
    db.execute("UPDATE messages SET next_attempt_at = '2000-01-01T00:00:00Z' WHERE status = 'queued'")
    db.commit()
    db.close()
    later = audit("poll", "--once", cwd=site, env=ENV)
    assert later.returncode == 0, later.stderr
    assert sorted((message_id_of(raw), parse(raw)["To"]) for raw in mailstack.received) == queued
    status = audit("status", cwd=site, env=ENV)
    assert "unsent mail: 0" in status.stdout
    assert db_rows(site, "SELECT status, attempts FROM messages WHERE direction = 'out'") == [("sent", 2), ("sent", 2)]
    assert audit("run", "--ledger", str(EXAMPLE_LEDGER), cwd=site, env=ENV).returncode == 0
    assert len(mailstack.received) == 2


def test_a_batch_of_mail_goes_out_over_the_configured_connections_each_message_once(mailstack, monkeypatch) -> None:
    """Many messages (a poll's confirmations) are dealt out over `connections` SMTP
    connections at once; a message the relay refuses fails alone, the others are sent."""
    import asyncio

    from job.config import MailSettings, SmtpSettings
    from job.mail.transport import Outgoing, send_messages

    mailstack.reset()
    monkeypatch.setenv("AUDIT_SMTP_PASSWORD", "auditpw")
    messages = [Outgoing(key=n, sender=AUDIT_T, recipients=("nobody@example.test",) if n == 5 else (CONTROLLER_T,),
                         raw=(f"From: {AUDIT_T}\r\nTo: {CONTROLLER_T}\r\nSubject: message {n}\r\n"
                              f"Message-ID: <m{n}@example.test>\r\n\r\nbody {n}\r\n").encode())
                for n in range(1, 8)]
    with TcpProxy(mailstack.smtp_port) as proxy:
        settings = MailSettings(transport="smtp", smtp=SmtpSettings(
            host="127.0.0.1", port=proxy.port, username=AUDIT_T, password_env="AUDIT_SMTP_PASSWORD", tls="starttls",
            cafile=Path(mailstack.cert_path), timeout=10, connections=3))
        results = asyncio.run(send_messages(settings, messages))
        assert proxy.accepted == 3
    assert {k: v is None for k, v in results.items()} == {1: True, 2: True, 3: True, 4: True, 5: False, 6: True, 7: True}
    assert "recipients refused" in results[5]
    subjects = sorted(re.search(rb"Subject: (message \d)", raw).group(1).decode() for raw in mailstack.received)
    assert subjects == [f"message {n}" for n in (1, 2, 3, 4, 6, 7)]
