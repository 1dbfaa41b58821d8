"""A one-line progress display on stderr, shown only when stderr is a terminal.

Under cron (or with stderr redirected to a file) it prints nothing at all, so logs stay
clean; on a terminal it redraws one line in place and ends it when the stage is done.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """`update(done, total)` as work advances, `finish()` at the end; silent off a terminal."""

    def __init__(self, label: str, *, stream: TextIO | None = None, unit: str = "MB", scale: float = 1e6, every: float = 0.2) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.label, self.unit, self.scale, self.every = label, unit, scale, every
        self.last = 0.0
        self.shown = False

    def update(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last < self.every and done < total:
            return
        self.last = now
        share = done / total if total else 1.0
        bar = "#" * int(share * 30)
        self.stream.write(f"\r{self.label} [{bar:<30}] {share:4.0%} {done / self.scale:,.0f}/{total / self.scale:,.0f} {self.unit}")
        self.stream.flush()
        self.shown = True

    def finish(self) -> None:
        if self.enabled and self.shown:
            self.stream.write("\n")
            self.stream.flush()
            self.shown = False
