"""Time `audit poll --once` on many replies waiting in a real IMAP folder.

    python bench/poll_bench.py [--replies 1000]

Starts the test suite's private Dovecot and SMTP relay on 127.0.0.1, runs `audit run` on a
ledger with one flagged transaction per reply, appends that many replies from the approver
("approve N", one item each) to the audit mailbox over IMAP, then times one
`audit poll --once` as a whole process (IMAPS in, confirmations out through the relay) and
checks that every reply decided exactly one item.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import imaplib
import os
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from mailstack import MailStack  # noqa: E402

AUDIT, CONTROLLER = "audit@example.test", "controller@example.test"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replies", type=int, default=1000)
    parser.add_argument("--profile", metavar="FILE", help="run the poll under cProfile and save its stats here")
    args = parser.parse_args()
    n = args.replies
    with MailStack({AUDIT: "auditpw", CONTROLLER: "ctrlpw"}) as stack, tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp)
        ledger = site / "ledger.csv"
        ledger.write_text("id,date,amount,currency,vendor,memo\n" + "".join(
            f"P-{i:05d},2026-11-24,{20000 + i}.00,USD,Acme,Machinery\n" for i in range(1, n + 1)))
        (site / "audit.toml").write_text(f"""
db = "audit.db"
[policy]
known_vendors = ["Acme"]
[approvers]
addresses = ["{CONTROLLER}"]
[llm]
batch_size = {n}
[mail]
transport = "smtp"
from_address = "{AUDIT}"
reply_address = "{AUDIT}"
[mail.smtp]
port = {stack.smtp_port}
username = "{AUDIT}"
password_env = "PW"
cafile = "{stack.cert_path}"
[mail.imap]
port = {stack.imaps_port}
username = "{AUDIT}"
password_env = "PW"
cafile = "{stack.cert_path}"
""")
        env = {**os.environ, "PW": "auditpw", "PYTHONPATH": str(ROOT)}
        subprocess.run([sys.executable, "-m", "job", "run", "--ledger", str(ledger)], cwd=site, env=env, check=True,
                       capture_output=True)
        request = email.message_from_bytes(stack.messages(CONTROLLER)[0], policy=email.policy.default)
        started = time.perf_counter()
        imap = imaplib.IMAP4_SSL("127.0.0.1", stack.imaps_port, ssl_context=ssl.create_default_context(cafile=stack.cert_path))
        imap.login(AUDIT, "auditpw")
        for i in range(1, n + 1):
            reply = EmailMessage()
            reply["From"] = CONTROLLER
            reply["To"] = request["Reply-To"]
            reply["Subject"] = "Re: " + request["Subject"]
            reply["Message-ID"] = f"<bench-{i}@client.test>"
            reply["In-Reply-To"] = request["Message-ID"]
            reply.set_content(f"approve {i}\n\nThanks\n")
            imap.append("INBOX", "", imaplib.Time2Internaldate(time.time()), reply.as_bytes())
        imap.logout()
        print(f"appended {n} replies in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        started = time.perf_counter()
        profile = ["-m", "cProfile", "-o", str(Path(args.profile).resolve())] if args.profile else []
        result = subprocess.run([sys.executable, *profile, "-m", "job", "poll", "--once"], cwd=site, env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        decided = sqlite3.connect(site / "audit.db").execute("SELECT COUNT(*) FROM decisions").fetchone()[0]
        print(result.stdout.strip().splitlines()[0] if result.stdout else result.stderr, file=sys.stderr)
        if result.returncode != 0 or decided != n:
            sys.exit(f"poll failed: exit {result.returncode}, {decided} of {n} decided\n{result.stderr}")
        print(f"| {n:,} replies | {elapsed:.1f} s | {n / elapsed:,.0f} replies/s | {len(stack.received) - 1:,} confirmations sent |")


if __name__ == "__main__":
    main()
