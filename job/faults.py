"""Named step boundaries where the test suite can kill the process, as `kill -9` would.

`AUDIT_TEST_CRASH_AT=<step>` makes the process kill itself with SIGKILL when it reaches
that step: no cleanup, no commit, no flushed buffers. The tests use it to prove that a run
or poll killed anywhere and run again ends in the same state as one never interrupted.
Unset (always, outside the tests), `crash_point` does nothing.
"""

from __future__ import annotations

import os
import signal

__all__ = ["crash_point", "fail_point", "CRASH_ENV", "FAIL_ENV"]

CRASH_ENV = "AUDIT_TEST_CRASH_AT"


def crash_point(step: str) -> None:
    if os.environ.get(CRASH_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


FAIL_ENV = "AUDIT_TEST_FAIL_MESSAGE"


def fail_point(raw: bytes) -> None:
    """Fail the handling of any message containing `AUDIT_TEST_FAIL_MESSAGE` (tests only)."""
    marker = os.environ.get(FAIL_ENV)
    if marker and marker.encode("utf-8") in raw:
        raise RuntimeError("injected failure for the test suite")
