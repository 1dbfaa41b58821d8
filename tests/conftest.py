"""Shared pytest fixtures."""

from __future__ import annotations

# ---------------------------------------------------------------------------------------------
# Mail servers: a private Dovecot (IMAP, IMAPS, LMTP) with an SMTP relay in front, on 127.0.0.1.
# One stack serves the whole session; a test that needs empty mailboxes calls mailstack.reset()
# (or mailstack.empty(user)) first. See tests/mailstack.py.
# ---------------------------------------------------------------------------------------------
import sys
from collections.abc import Iterator

import pytest

from mailstack import DovecotMissing, MailStack

MAIL_USERS = {
    "audit@example.test": "auditpw",
    "controller@example.test": "ctrlpw",
    "cfo@example.test": "cfopw",
    "outsider@example.test": "outpw",
}


@pytest.fixture(scope="session")
def mailstack() -> Iterator[MailStack]:
    """A started MailStack with the four MAIL_USERS, stopped at the end of the session."""
    stack = MailStack(MAIL_USERS)
    missing = ""
    try:
        stack.start()
    except DovecotMissing as exc:
        missing = str(exc)
    if missing:  # failed outside the except block, so the report shows only this message
        pytest.fail(
            f"{missing}. The mail tests need a real Dovecot: run the project's test script "
            "(bash .ci/run), which installs it.",
            pytrace=False,
        )
    try:
        yield stack
    finally:
        stack.stop()


# ---------------------------------------------------------------------------------------------
# End of the mail servers section.
# ---------------------------------------------------------------------------------------------


def pytest_terminal_summary(terminalreporter) -> None:
    """Print the reply corpus's exact-trim share when its tests ran."""
    corpus = sys.modules.get("test_reply_corpus")
    for line in getattr(corpus, "SUMMARY", []):
        terminalreporter.write_line(line)
