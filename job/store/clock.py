"""The time as the audit database records it: ISO 8601 UTC with seconds."""

from __future__ import annotations

import time

__all__ = ["now_utc"]


def now_utc() -> str:
    """The current time as an ISO 8601 UTC string with seconds, e.g. 2026-11-25T01:02:03Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
