"""The operator's log: `audit --log FILE …` for unattended runs (cron, systemd timers).

Everything the command prints, on stdout and stderr, is appended to FILE instead, one line
each, stamped with the time (UTC), the command, its process id and, once known, the run
(`2026-12-03T02:30:04Z audit run [pid 4711] run 7: 3000 new, 12 flagged, …`). A night that
goes well prints nothing, so cron mails nothing. A command that exits non-zero also prints
one line to the real stderr, naming the exit code, the last error and the log, which is
what cron's `MAILTO` and systemd's `OnFailure=` pass on to a person.
"""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path
from typing import TextIO

__all__ = ["start_log", "label_log", "finish_log"]


class _Lines(io.TextIOBase):
    """A text stream that writes each complete line to the log with its stamp."""

    def __init__(self, log: OperatorLog, error: bool) -> None:
        self.log, self.error, self.pending = log, error, ""

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self.log.write_line(line, error=self.error)
        return len(text)

    def flush(self) -> None:
        self.log.handle.flush()

    def close_pending(self) -> None:
        if self.pending:
            self.log.write_line(self.pending, error=self.error)
            self.pending = ""


class OperatorLog:
    def __init__(self, path: Path, command: str, stdout: TextIO, stderr: TextIO) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.command = path, command
        self.handle = open(path, "a", encoding="utf-8", errors="backslashreplace")
        self.real_stdout, self.real_stderr = stdout, stderr
        self.label = ""
        self.last_error = ""
        self.streams = (_Lines(self, error=False), _Lines(self, error=True))

    def write_line(self, line: str, *, error: bool) -> None:
        line = line.rstrip("\r")
        if "\r" in line:  # a progress bar redrawn in place: keep its last state
            line = line.rsplit("\r", 1)[-1]
        if not line.strip():
            return
        if error and line.startswith("audit: error: "):
            self.last_error = line.removeprefix("audit: error: ")
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        label = f" {self.label}:" if self.label else ""
        self.handle.write(f"{stamp} audit {self.command} [pid {os.getpid()}]{label} {line}\n")
        self.handle.flush()


_ACTIVE: list[OperatorLog] = []


def start_log(path: Path, command: str) -> None:
    """From now on, what this command prints goes to `path`, stamped (see the module doc)."""
    log = OperatorLog(path, command, sys.stdout, sys.stderr)
    _ACTIVE.append(log)
    sys.stdout, sys.stderr = log.streams
    log.write_line("started: audit " + " ".join(sys.argv[1:]) if sys.argv[1:] else "started", error=False)


def label_log(label: str) -> None:
    """Name what the following lines are about (e.g. `run 7`)."""
    if _ACTIVE:
        _ACTIVE[-1].label = label


def finish_log(code: int) -> None:
    """Record the exit code, give the streams back, and on failure say so on the real stderr."""
    if not _ACTIVE:
        return
    log = _ACTIVE.pop()
    for stream in log.streams:
        stream.close_pending()
    log.write_line(f"finished: exit {code}", error=False)
    sys.stdout, sys.stderr = log.real_stdout, log.real_stderr
    log.handle.close()
    if code != 0:
        why = f": {log.last_error}" if log.last_error else ""
        print(f"audit {log.command} failed with exit {code}{why} (log: {log.path})", file=sys.stderr)
