"""Real mail servers on loopback for the test suite.

``MailStack`` runs a private Dovecot (IMAP, IMAPS and LMTP) and, in front of it, a small aiosmtpd
SMTP relay that hands every accepted message to Dovecot over LMTP and answers with Dovecot's own
status. Everything listens on 127.0.0.1 on free ports and lives in one temporary directory, so the
tests talk to real servers (real UIDs, UIDVALIDITY, flags, TLS and AUTH) without touching the
machine's own mail service.

    with MailStack({"audit@example.test": "auditpw"}) as stack:
        stack.send(raw, mail_from="cfo@example.test", rcpt_to=["audit@example.test"])
        assert stack.messages("audit@example.test") != []

The relay offers STARTTLS with the same self-signed certificate Dovecot uses (trust it with
``ssl.create_default_context(cafile=stack.cert_path)``) and AUTH PLAIN/LOGIN against the same
users, but accepts unauthenticated submissions too, so a test can play any sender. Unknown
recipients are refused with 550.

Dovecot comes from Debian's ``dovecot-imapd`` and ``dovecot-lmtpd`` packages; without them
``start()`` raises ``DovecotMissing``. The stack starts in well under a second; stopping waits for
Dovecot's master process to exit (about a second).
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import imaplib
import logging
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

__all__ = ["MailStack", "MailStackError", "DovecotMissing", "RelayedMessage"]

DOVECOT_PACKAGES = ("dovecot-imapd", "dovecot-lmtpd")
# Debian's location of Dovecot's service binaries; each protocol needs its own package.
_DOVECOT_LIBEXEC = "/usr/lib/dovecot"
_NOBODY_UID = 65534  # mail may not belong to root, and Dovecot's own users may not own it either


class _DropLoginDataWarning(logging.Filter):
    # aiosmtpd logs this deprecation itself on every successful AUTH, whatever the caller does.
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Session.login_data is deprecated")


_AIOSMTPD_LOG_FILTER = _DropLoginDataWarning()


class MailStackError(RuntimeError):
    """The mail stack could not be started, or one of its helpers failed."""


class DovecotMissing(MailStackError):
    """Dovecot (or one of the protocol packages this stack needs) is not installed."""


@dataclasses.dataclass(frozen=True)
class RelayedMessage:
    """One message the SMTP relay accepted, with how it was submitted."""

    mail_from: str
    rcpt_to: tuple[str, ...]
    data: bytes  # as submitted, without the relay's ``add_headers``
    login: str | None  # the AUTH identity, or None for an unauthenticated submission
    tls: bool  # whether the client had switched to TLS with STARTTLS


class MailStack:
    """A private Dovecot (IMAP, IMAPS, LMTP) and an aiosmtpd SMTP relay in front of it, all on 127.0.0.1."""

    host = "127.0.0.1"
    timeout = 10.0  # seconds, for every network call and doveadm run made by the helpers

    def __init__(self, users: Mapping[str, str]) -> None:
        for address, password in users.items():
            if not address or any(c in address for c in ':\n\r\t "\\/') or "@" not in address:
                raise ValueError(f"unusable mail address for the test users file: {address!r}")
            if any(c in password for c in ":\n\r"):
                raise ValueError(f"password of {address} may not contain ':' or a line break")
        self.users: dict[str, str] = dict(users)
        self._passwords = {address.lower(): password for address, password in users.items()}
        self.dir = ""
        self.cert_path = ""
        self.key_path = ""
        self.config_path = ""
        self.log_path = ""
        self.smtp_port = 0
        self.imap_port = 0
        self.imaps_port = 0
        self.lmtp_port = 0
        self.received: list[bytes] = []
        self.envelopes: list[RelayedMessage] = []
        self.add_headers: list[tuple[str, str]] = []
        self._controller: Controller | None = None
        self._master_pid: int | None = None
        self._lock = threading.Lock()
        self._dovecot = ""
        self._doveadm = ""

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> MailStack:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def started(self) -> bool:
        return self._controller is not None

    def start(self) -> None:
        """Start Dovecot and the relay; return once every listener has sent its greeting."""
        if self.dir:
            raise MailStackError("this MailStack is already started")
        self._dovecot, self._doveadm = _find_dovecot()
        logging.getLogger("mail.log").addFilter(_AIOSMTPD_LOG_FILTER)  # adding it twice is a no-op
        try:
            self.dir = tempfile.mkdtemp(prefix="mailstack-")
            # Dovecot's unprivileged processes must be able to traverse the directory.
            os.chmod(self.dir, 0o755)
            self._make_dirs()
            self._make_certificate()
            self._write_users()
            self._start_dovecot()
            self._start_relay()
        except BaseException:
            try:
                self.stop()
            except MailStackError:
                pass  # the start-up error below is the one worth reporting
            raise
        atexit.register(self.stop)

    def stop(self) -> None:
        """Stop the relay and Dovecot, wait for Dovecot's master to exit, remove the directory.

        Safe to call more than once, and on a stack whose start failed half-way.
        """
        atexit.unregister(self.stop)
        problems: list[str] = []
        controller, self._controller = self._controller, None
        if controller is not None:
            try:
                controller.stop()
            except Exception as exc:  # keep going: Dovecot must still be stopped
                problems.append(f"SMTP relay: {exc!r}")
        pid, self._master_pid = self._master_pid, None
        if pid is None and self.dir:
            pid = _read_pid(os.path.join(self.dir, "run", "master.pid"))  # start failed half-way
        if pid is not None:
            try:
                _stop_process_tree(pid, grace=10.0)
            except Exception as exc:
                problems.append(f"dovecot master pid {pid}: {exc!r}")
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = ""
        if problems:
            raise MailStackError("stopping the mail stack: " + "; ".join(problems))

    # -- helpers for tests -----------------------------------------------------------------

    def send(self, raw: bytes, *, mail_from: str, rcpt_to: Sequence[str]) -> None:
        """Submit ``raw`` to the relay with plain SMTP, as an external sender would."""
        self._require_started()
        with smtplib.SMTP(self.host, self.smtp_port, timeout=self.timeout) as smtp:
            refused = smtp.sendmail(mail_from, list(rcpt_to), raw)
        if refused:
            raise smtplib.SMTPRecipientsRefused(refused)

    def save(self, user: str, raw: bytes, folder: str = "INBOX") -> None:
        """Put a message straight into one of ``user``'s folders, bypassing SMTP and LMTP."""
        self.doveadm("save", "-u", user, "-m", folder, input=raw)

    def messages(self, user: str, folder: str = "INBOX") -> list[bytes]:
        """Every raw message now in ``folder``, in UID order, read without setting ``\\Seen``."""
        return [raw for _uid, _flags, raw in self._fetch(user, folder, with_body=True)]

    def flags(self, user: str, folder: str = "INBOX") -> list[set[str]]:
        """The flags of each message in ``folder`` in UID order (``\\Recent`` left out)."""
        return [flags for _uid, flags, _raw in self._fetch(user, folder, with_body=False)]

    def uids(self, user: str, folder: str = "INBOX") -> list[int]:
        """The UIDs of the messages in ``folder``, ascending."""
        return [uid for uid, _flags, _raw in self._fetch(user, folder, with_body=False)]

    def set_uidvalidity(self, user: str, value: int, folder: str = "INBOX") -> None:
        """Force a new UIDVALIDITY on ``folder``, as a server does after rebuilding a mailbox."""
        self.doveadm("mailbox", "update", "-u", user, "--uid-validity", str(value), folder)

    def empty(self, *users: str) -> None:
        """Expunge every message of the given users (all users if none given), in every folder,
        and delete every folder but INBOX. UIDs keep counting up; UIDVALIDITY is kept."""
        self._require_started()
        for user in users or tuple(self.users):
            self.doveadm("expunge", "-u", user, "mailbox", "*", "all")
            names = [n for n in self.doveadm("mailbox", "list", "-u", user).splitlines() if n]
            # Children before their parents. A parent that exists only as a name in a child's
            # path is listed too but cannot be deleted, which is fine.
            for name in sorted((n for n in names if n.upper() != "INBOX"), reverse=True):
                try:
                    self.doveadm("mailbox", "delete", "-u", user, "-s", name)
                except MailStackError as exc:
                    if "doesn't exist" not in str(exc):
                        raise

    def reset(self) -> None:
        """Empty every user's mailboxes and forget what the relay accepted and its extra headers."""
        self.empty()
        with self._lock:
            self.received.clear()
            self.envelopes.clear()
        self.add_headers.clear()

    def doveadm(self, *args: str, input: bytes | None = None) -> str:
        """Run ``doveadm`` against this instance and return its standard output."""
        self._require_started()
        try:
            done = subprocess.run(
                [self._doveadm, "-c", self.config_path, *args],
                input=input if input is not None else b"",
                capture_output=True,
                timeout=self.timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise MailStackError(f"doveadm {' '.join(args)}: no answer in {self.timeout} s") from exc
        if done.returncode != 0:
            raise MailStackError(
                f"doveadm {' '.join(args)} exited with {done.returncode}: "
                f"{done.stderr.decode(errors='replace').strip()}"
            )
        return done.stdout.decode(errors="replace")

    # -- start-up --------------------------------------------------------------------------

    def _make_dirs(self) -> None:
        for sub in ("tls", "state", "mail"):
            os.mkdir(os.path.join(self.dir, sub), 0o755)
        uid, gid = self._mail_owner()
        if os.geteuid() == 0:
            os.chown(os.path.join(self.dir, "mail"), uid, gid)
        self.config_path = os.path.join(self.dir, "dovecot.conf")
        self.log_path = os.path.join(self.dir, "dovecot.log")

    def _make_certificate(self) -> None:
        self.cert_path = os.path.join(self.dir, "tls", "cert.pem")
        self.key_path = os.path.join(self.dir, "tls", "key.pem")
        command = [
            "openssl", "req", "-x509", "-nodes", "-days", "2",
            # A P-256 key is generated in milliseconds; RSA would cost a noticeable part of start-up.
            "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,digitalSignature,keyCertSign",
            "-addext", "extendedKeyUsage=serverAuth",
            "-keyout", self.key_path, "-out", self.cert_path,
        ]  # fmt: skip
        try:
            done = subprocess.run(command, capture_output=True, timeout=self.timeout)
        except FileNotFoundError as exc:
            raise MailStackError("the openssl command is needed to make the test certificate") from exc
        if done.returncode != 0:
            raise MailStackError(f"openssl req failed: {done.stderr.decode(errors='replace').strip()}")
        os.chmod(self.cert_path, 0o644)

    def _write_users(self) -> None:
        path = os.path.join(self.dir, "users")
        with open(path, "w", encoding="utf-8") as f:
            for address, password in self._passwords.items():
                f.write(f"{address}:{{PLAIN}}{password}\n")
        os.chmod(path, 0o644)

    def _mail_owner(self) -> tuple[int, int]:
        if os.geteuid() == 0:
            return _NOBODY_UID, _NOBODY_UID
        return os.geteuid(), os.getegid()

    def _write_config(self) -> None:
        uid, gid = self._mail_owner()
        if os.geteuid() == 0:
            internal_user, internal_group, login_user = "dovecot", "dovecot", "dovenull"
        else:
            me = pwd.getpwuid(os.geteuid()).pw_name
            internal_user, internal_group, login_user = me, me, me
        d = self.dir
        config = f"""\
# A private Dovecot for the test suite, started and stopped by tests/mailstack.py.
instance_name = mailstack-{uuid.uuid4().hex[:12]}
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
protocols = imap lmtp
listen = {self.host}
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = 1
first_valid_gid = 1

disable_plaintext_auth = no
auth_mechanisms = plain login
recipient_delimiter = +
lmtp_save_to_detail_mailbox = no
auth_verbose = yes
# No delay after a wrong password, and no penalty that slows the next correct login.
auth_failure_delay = 0

ssl = yes
ssl_cert = <{self.cert_path}
ssl_key = <{self.key_path}

mail_location = maildir:~/Maildir
mail_fsync = never
namespace inbox {{
  inbox = yes
  separator = /
}}

passdb {{
  driver = passwd-file
  args = {d}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={d}/mail/%Lu
}}

service imap-login {{
  chroot =
  inet_listener imap {{
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = {self.imaps_port}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    port = {self.lmtp_port}
  }}
}}
service anvil {{
  chroot =
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
protocol lmtp {{
  postmaster_address = postmaster@example.test
}}
"""
        with open(self.config_path, "w", encoding="utf-8") as f:
            f.write(config)

    def _start_dovecot(self) -> None:
        for attempt in range(3):
            self.imap_port, self.imaps_port, self.lmtp_port = _free_ports(3)
            self._write_config()
            # Output goes to a file, not a pipe: the daemon inherits the descriptors and would
            # keep a pipe open, so reading it to the end would wait for Dovecot to exit.
            startup_log = os.path.join(self.dir, "dovecot-start.log")
            try:
                with open(startup_log, "wb") as out:
                    done = subprocess.run(
                        [self._dovecot, "-c", self.config_path],
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        timeout=self.timeout,
                    )
            except subprocess.TimeoutExpired as exc:
                raise MailStackError(f"dovecot did not start in {self.timeout} s") from exc
            with open(startup_log, encoding="utf-8", errors="replace") as f:
                output = f.read().strip()
            if done.returncode == 0:
                break
            # Another process took a port between our probe and Dovecot's bind: try new ones.
            if "in use" in output and attempt < 2:
                continue
            raise MailStackError(f"dovecot -c {self.config_path} failed: {output}{self._log_tail()}")
        self._master_pid = self._read_master_pid()
        deadline = time.monotonic() + self.timeout
        try:
            _wait_greeting(self.host, self.imap_port, b"* OK", deadline)
            _wait_greeting(self.host, self.imaps_port, b"* OK", deadline, self._client_tls())
            _wait_greeting(self.host, self.lmtp_port, b"220", deadline)
        except MailStackError as exc:
            raise MailStackError(f"{exc}{self._log_tail()}") from exc

    def _read_master_pid(self) -> int:
        path = os.path.join(self.dir, "run", "master.pid")
        deadline = time.monotonic() + self.timeout
        while True:
            pid = _read_pid(path)
            if pid is not None:
                return pid
            if time.monotonic() > deadline:
                raise MailStackError(f"dovecot wrote no {path}{self._log_tail()}")
            time.sleep(0.01)

    def _start_relay(self) -> None:
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_tls.load_cert_chain(self.cert_path, self.key_path)
        for attempt in range(3):
            (self.smtp_port,) = _free_ports(1)
            controller = Controller(
                _RelayHandler(self),
                hostname=self.host,
                port=self.smtp_port,
                ready_timeout=self.timeout,
                server_hostname="localhost",
                tls_context=server_tls,
                require_starttls=False,
                auth_require_tls=False,
                authenticator=self._authenticate,
            )
            try:
                controller.start()
            except OSError:
                if attempt < 2:
                    continue
                raise
            self._controller = controller
            break
        _wait_greeting(self.host, self.smtp_port, b"220", time.monotonic() + self.timeout)

    # -- the relay's callbacks (run in the relay's thread) ---------------------------------

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode("utf-8", errors="replace")
            password = auth_data.password.decode("utf-8", errors="replace")
            expected = self._passwords.get(login.lower())
            if expected is not None and password == expected:
                return AuthResult(success=True, auth_data=auth_data)
        # handled=False makes aiosmtpd answer 535 at once; handled=True would leave the client waiting.
        return AuthResult(success=False, handled=False)

    def _deliver(self, mail_from: str, rcpt_to: list[str], data: bytes) -> str:
        """Hand one message to Dovecot over LMTP; return the status line for the SMTP client.

        SMTP has one reply to DATA where LMTP has one per recipient: the first failure wins, so
        with several recipients a failure may be reported although others got the message.
        """
        failures: list[str] = []
        successes: list[str] = []
        try:
            with smtplib.LMTP(self.host, self.lmtp_port, timeout=self.timeout) as lmtp:
                code, reply = lmtp.ehlo()  # sends LHLO
                if code != 250:
                    return _status(code, reply)
                code, reply = lmtp.mail(mail_from)
                if code != 250:
                    return _status(code, reply)
                accepted = []
                for rcpt in rcpt_to:
                    code, reply = lmtp.rcpt(rcpt)
                    if code in (250, 251):
                        accepted.append(rcpt)
                    else:
                        failures.append(_status(code, reply))
                if not accepted:
                    return failures[0]
                # LMTP answers DATA once per accepted recipient.
                replies = [lmtp.data(data)] + [lmtp.getreply() for _ in accepted[1:]]
                for code, reply in replies:
                    (successes if code == 250 else failures).append(_status(code, reply))
        except smtplib.SMTPResponseException as exc:
            return _status(exc.smtp_code, exc.smtp_error)
        except (OSError, smtplib.SMTPException) as exc:
            return f"451 4.4.0 relay could not reach dovecot lmtp on port {self.lmtp_port}: {exc}"
        return failures[0] if failures else successes[0]

    # -- internals -------------------------------------------------------------------------

    def _require_started(self) -> None:
        if not self.dir or self._master_pid is None:
            raise MailStackError("the mail stack is not started")

    def _client_tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cert_path)

    def _log_tail(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()[-15:]
        except OSError:
            return ""
        return "\ndovecot.log:\n" + "\n".join(lines) if lines else ""

    def _fetch(self, user: str, folder: str, *, with_body: bool) -> list[tuple[int, set[str], bytes]]:
        self._require_started()
        password = self._passwords.get(user.lower())
        if password is None:
            raise MailStackError(f"{user} is not one of this stack's users")
        conn = imaplib.IMAP4(self.host, self.imap_port, timeout=self.timeout)
        try:
            _imap_ok(conn.login(user, password), "LOGIN")
            # EXAMINE (read-only): nothing changes, not even \Recent.
            _imap_ok(conn.select(_imap_quote(folder), readonly=True), f"EXAMINE {folder}")
            typ, data = conn.uid("SEARCH", "ALL")
            _imap_ok((typ, data), "UID SEARCH")
            uids = sorted(int(u) for u in b" ".join(d for d in data if d).split())
            if not uids:
                return []
            items = "(UID FLAGS BODY.PEEK[])" if with_body else "(UID FLAGS)"
            typ, data = conn.uid("FETCH", ",".join(map(str, uids)), items)
            _imap_ok((typ, data), "UID FETCH")
        finally:
            try:
                conn.logout()
            except (OSError, imaplib.IMAP4.error):
                pass
        found: dict[int, tuple[set[str], bytes]] = {}
        for item in data:
            head, body = (item[0], item[1]) if isinstance(item, tuple) else (item, b"")
            if not isinstance(head, bytes):
                continue
            match = re.search(rb"\bUID (\d+)", head)
            if not match:
                continue
            flags = {f.decode() for f in imaplib.ParseFlags(head)} - {"\\Recent"}
            found[int(match.group(1))] = (flags, body)
        return [(uid, *found[uid]) for uid in sorted(found)]


class _RelayHandler:
    """aiosmtpd handler: refuse unknown recipients, relay the rest to Dovecot over LMTP."""

    def __init__(self, stack: MailStack) -> None:
        self._stack = stack

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        local, _, domain = address.lower().partition("@")
        if f"{local.split('+', 1)[0]}@{domain}" not in self._stack._passwords:  # plus-addressing
            return f"550 5.1.1 <{address}>: recipient unknown"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        stack = self._stack
        raw = bytes(envelope.original_content or b"")
        extra = b"".join(f"{name}: {value}\r\n".encode() for name, value in list(stack.add_headers))
        rcpt_to = list(envelope.rcpt_tos)
        status = await asyncio.get_running_loop().run_in_executor(
            None, stack._deliver, envelope.mail_from or "", rcpt_to, extra + raw
        )
        if status.startswith("250"):
            auth = session.auth_data if session.authenticated else None
            record = RelayedMessage(
                mail_from=envelope.mail_from or "",
                rcpt_to=tuple(rcpt_to),
                data=raw,
                login=auth.login.decode(errors="replace") if isinstance(auth, LoginPassword) else None,
                tls=session.ssl is not None,
            )
            with stack._lock:
                stack.received.append(raw)
                stack.envelopes.append(record)
        return status


def _find_dovecot() -> tuple[str, str]:
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin" + os.pathsep + "/usr/bin"
    dovecot = shutil.which("dovecot", path=path)
    doveadm = shutil.which("doveadm", path=path)
    if not dovecot or not doveadm:
        raise DovecotMissing(
            "dovecot is not installed (apt-get install " + " ".join(DOVECOT_PACKAGES) + ")"
        )
    if os.path.isdir(_DOVECOT_LIBEXEC):
        for binary, package in (("imap", "dovecot-imapd"), ("lmtp", "dovecot-lmtpd")):
            if not os.path.exists(os.path.join(_DOVECOT_LIBEXEC, binary)):
                raise DovecotMissing(f"dovecot's {binary} service is missing (apt-get install {package})")
    return dovecot, doveadm


def _free_ports(count: int) -> list[int]:
    """Ports free right now on 127.0.0.1 (all held open together, so they are distinct)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((MailStack.host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _wait_greeting(
    host: str, port: int, prefix: bytes, deadline: float, tls: ssl.SSLContext | None = None
) -> None:
    """Wait until the server on ``port`` sends a greeting line starting with ``prefix``."""
    last: object = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise MailStackError(f"no {prefix.decode()!r} greeting from {host}:{port}: {last!r}")
        try:
            with socket.create_connection((host, port), timeout=remaining) as raw_sock:
                sock = tls.wrap_socket(raw_sock, server_hostname=host) if tls else raw_sock
                line = sock.makefile("rb").readline(1000)
                if line.startswith(prefix):
                    return
                last = line
        except (OSError, ssl.SSLError) as exc:
            last = exc
        time.sleep(0.01)


def _read_pid(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        # When this process is the master's reaper (e.g. it runs as PID 1), reap it.
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _wait_exit(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _stop_process_tree(pid: int, *, grace: float) -> None:
    """SIGTERM Dovecot's master and wait; if it lingers, SIGKILL its process group."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if _wait_exit(pid, grace):
        return
    try:
        if os.getpgid(pid) == pid:  # the daemonized master leads its own group
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    if not _wait_exit(pid, 5.0):
        raise MailStackError(f"dovecot master pid {pid} did not exit")


def _status(code: int, reply: bytes) -> str:
    return f"{code} {reply.decode(errors='replace').replace(chr(10), ' ')}"


def _imap_quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _imap_ok(response: tuple[str, list[Any]], what: str) -> None:
    typ, data = response
    if typ != "OK":
        raise MailStackError(f"IMAP {what} failed: {typ} {data!r}")
