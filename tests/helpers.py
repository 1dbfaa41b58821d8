"""Test helpers: write configs, run the real `audit` command (in this process, or as a separate
one where that is the point), build replies, read outboxes."""

from __future__ import annotations

import email
import email.policy
import email.utils
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
EXAMPLE_LEDGER = EXAMPLES / "ledger-2026-11-24.csv"


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(value)


def write_config(path: Path, top: dict | None = None, **sections: dict) -> Path:
    """Write a TOML config; section names use dots for nesting (e.g. mail.smtp)."""
    lines = [f"{k} = {toml_value(v)}" for k, v in (top or {}).items()]
    for name, values in sections.items():
        lines.append(f"\n[{name.replace('__', '.')}]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in values.items())
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


MAIL_PASSWORDS = {"AUDIT_SMTP_PASSWORD": "auditpw", "AUDIT_IMAP_PASSWORD": "auditpw"}  # the test mail stack's


def write_site(folder: Path, approvers: Iterable[str], **sections: dict) -> Path:
    """A site: the example's known-vendors file and an audit.toml (`sections` as `write_config`'s)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vendors.csv").write_text((EXAMPLES / "vendors.csv").read_text())
    write_config(folder / "audit.toml", {"db": "audit.db"}, policy={"known_vendors_file": "vendors.csv"},
                 approvers={"addresses": list(approvers)}, **sections)
    return folder


def loopback_mail(mailstack, address: str, *, smtp_port: int | None = None, imap_port: int | None = None,
                  imap_tls: str = "tls", smtp_timeout: float = 10, imap_timeout: float = 10, **mail) -> dict:
    """Config sections for SMTP and IMAP through the test mail stack as `address` (its
    passwords in `MAIL_PASSWORDS`); `mail` adds settings to [mail]."""
    return {
        "mail": {"transport": "smtp", "from_address": address, "reply_address": address, **mail},
        "mail__smtp": {"host": "127.0.0.1", "port": smtp_port or mailstack.smtp_port, "username": address,
                       "password_env": "AUDIT_SMTP_PASSWORD", "tls": "starttls", "cafile": mailstack.cert_path,
                       "timeout": smtp_timeout},
        "mail__imap": {"host": "127.0.0.1", "port": imap_port or (mailstack.imaps_port if imap_tls == "tls" else mailstack.imap_port),
                       "username": address, "password_env": "AUDIT_IMAP_PASSWORD", "tls": imap_tls,
                       "cafile": mailstack.cert_path, "timeout": imap_timeout},
    }


def db_rows(site: Path, sql: str, *args) -> list[tuple]:
    """Rows of a query on a site's audit database (opened and closed for the query)."""
    db = sqlite3.connect(site / "audit.db")
    try:
        return [tuple(r) for r in db.execute(sql, args)]
    finally:
        db.close()


# What the command reads from the environment that the test process may have: a run must not
# pick up the developer's own config, debug switch or model key.
STRIPPED_ENV = ("AUDIT_CONFIG", "AUDIT_DEBUG", "OPENAI_API_KEY")
# Only a separate process can be killed at a crash point or pick up a start-up hook.
PROCESS_ONLY_ENV = ("AUDIT_TEST_CRASH_AT", "PYTHONPATH")


def audit(*args: str, cwd: Path, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the real command line in this process, as `audit ARGS` typed in `cwd` with `env`
    added to the environment: its stdout, stderr and exit code as a finished process reports
    them. Where a separate process is the point (killed at a crash point, a lock held by
    another process, a start-up hook), use `audit_process`."""
    from inprocess import run_cli

    clash = [name for name in PROCESS_ONLY_ENV if name in (env or {})]
    if clash:
        raise ValueError(f"{', '.join(clash)} needs a separate process: use audit_process")
    return run_cli(args, cwd=cwd, env={**dict.fromkeys(STRIPPED_ENV), **(env or {})}, timeout=timeout)


def audit_process(*args: str, cwd: Path, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the real command line as a separate process (`python -m job`), as a user or cron would."""
    full_env = {k: v for k, v in os.environ.items() if k not in STRIPPED_ENV}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "job", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def parse(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def maildir_messages(folder: Path) -> list[EmailMessage]:
    """Messages in a maildir's new/ and cur/, oldest first."""
    files = [p for sub in ("new", "cur") if (folder / sub).is_dir() for p in (folder / sub).iterdir()]
    files.sort(key=lambda p: (p.stat().st_mtime_ns, p.name))
    return [parse(p.read_bytes()) for p in files]


def plain_body(msg: EmailMessage) -> str:
    return msg.get_body(("plain",)).get_content()


def html_body(msg: EmailMessage) -> str:
    return msg.get_body(("html",)).get_content()


def build_reply(
    request: EmailMessage,
    text: str,
    *,
    sender: str,
    quote: bool = True,
    to: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    message_id: str | None = None,
) -> bytes:
    """A reply as a mail client writes it: new text on top, the request quoted with '>' below."""
    reply = EmailMessage(policy=email.policy.SMTP)
    reply["From"] = sender
    reply["To"] = to or request["Reply-To"]
    reply["Subject"] = "Re: " + request["Subject"]
    reply["Date"] = email.utils.formatdate(usegmt=True)
    reply["Message-ID"] = message_id or f"<{uuid.uuid4().hex}@client.test>"
    reply["In-Reply-To"] = request["Message-ID"]
    reply["References"] = request["Message-ID"]
    for name, value in headers:
        reply[name] = value
    body = text
    if quote:
        quoted = "\n".join("> " + line for line in plain_body(request).splitlines())
        body += f"\n\nOn Wed, 25 Nov 2026 at 07:00, Audit <{request['From']}> wrote:\n{quoted}\n"
    reply.set_content(body)
    return reply.as_bytes()


def drop_reply(maildir: Path, raw: bytes, name: str | None = None) -> Path:
    """Deliver a reply into the maildir inbox the way a local delivery agent would."""
    new = maildir / "inbox" / "new"
    tmp = maildir / "inbox" / "tmp"
    new.mkdir(parents=True, exist_ok=True)
    tmp.mkdir(parents=True, exist_ok=True)
    name = name or f"{uuid.uuid4().hex}.test"
    (tmp / name).write_bytes(raw)
    os.replace(tmp / name, new / name)
    return new / name


def report_json(cwd: Path, *extra: str) -> list[dict]:
    result = audit("report", "--format", "json", *extra, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def errors_of(result: subprocess.CompletedProcess) -> str:
    """stderr without warning lines (e.g. the sender-authentication-off warning)."""
    return "".join(line for line in result.stderr.splitlines(keepends=True) if not line.startswith("audit: warning:"))


def run_site(site: Path, ledger: Path = EXAMPLE_LEDGER) -> str:
    """`audit run` on a site; the id of the request it queued."""
    result = audit("run", "--ledger", str(ledger), cwd=site)
    assert result.returncode == 0, result.stderr
    return re.search(r"request (\w+) queued", result.stdout).group(1)


def poll_site(site: Path) -> subprocess.CompletedProcess:
    """`audit poll --once` on a site, which must succeed."""
    result = audit("poll", "--once", cwd=site)
    assert result.returncode == 0, result.stderr
    return result


def age_request(site: Path, request_id: str, minutes: int) -> None:
    """Make a request look `minutes` old (requests.created_at is not an append-only column)."""
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - minutes * 60))
    db = sqlite3.connect(site / "audit.db")
    with db:
        assert db.execute("UPDATE requests SET created_at = ? WHERE id = ?", (created, request_id)).rowcount == 1
    db.close()


class Outbox:
    """What a site has sent so far; `new()` returns what was sent since the last call."""

    def __init__(self, site: Path) -> None:
        self.folder = site / "var" / "mail" / "outbox"
        self.seen: set[str] = set()

    def all(self) -> list:
        return maildir_messages(self.folder)

    def new(self) -> list:
        fresh = [m for m in self.all() if m["Message-ID"] not in self.seen]
        self.seen.update(m["Message-ID"] for m in fresh)
        return fresh
