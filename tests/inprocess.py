"""Run the `audit` command line inside the test process, reporting what a separate process would.

Starting `python -m job` costs an interpreter and the finance agent's imports (about 1.5 s); the
same command run here costs milliseconds. What a process would have to itself is set up and put
back around each call, so one call cannot leak into the next or into the test:

* database connections: those the command leaves open are closed when it returns, as they
  are when a process ends (an unclosed sqlite3 connection holds a reference cycle through its
  statement cache, so it would otherwise stay open, with its WAL, until a full collection);
* the working directory (`cwd`) and the environment (`env`; a value of None removes the name),
  restored afterwards, including names the command sets itself;
* the width help is wrapped to, from the terminal size (the runner would force 80 columns);
* stdin (empty), stdout and stderr (captured, as `subprocess.run(capture_output=True)` does),
  and the exit code, from `sys.exit`/`typer.Exit` or 1 with the traceback on stderr for an
  exception the command let out, as the interpreter would print it;
* warnings, shown on stderr under the interpreter's default filters (pytest would otherwise
  record them instead), and log records of WARNING and above, printed on stderr as Python's
  last-resort handler does in a process that configured no logging; records from threads that
  were running before the call (the test's mail and model servers) are not the command's;
* a time limit: a command still running after `timeout` seconds dumps every thread's stack and
  ends the test session, where a hung subprocess would have been killed.

Each command opens its own event loop (`asyncio.run`) and database connections, so nothing
else needs resetting; the few module caches in `job` (templates, the public suffix list,
currency exponents) hold only what never changes during a session.
"""

from __future__ import annotations

import faulthandler
import io
import locale
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import traceback
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["run_cli"]

# The filters a Python 3.11 interpreter starts with (no -W, no PYTHONWARNINGS, not a debug build).
DEFAULT_WARNING_FILTERS = (
    ("default", DeprecationWarning, "__main__"),
    ("ignore", DeprecationWarning, ""),
    ("ignore", PendingDeprecationWarning, ""),
    ("ignore", ImportWarning, ""),
    ("ignore", ResourceWarning, ""),
)


class _OpenedConnections:
    """The sqlite3 connections opened while `recording` (seen through the interpreter's audit events)."""

    def __init__(self) -> None:
        self.recording = False
        self.connections: list[sqlite3.Connection] = []

    def note(self, event: str, args: tuple) -> None:
        if self.recording and event == "sqlite3.connect/handle":
            self.connections.append(args[0])

    def close_all(self) -> None:
        self.recording = False
        for conn in self.connections:
            try:
                conn.close()  # an open transaction rolls back, as when a process ends
            except sqlite3.ProgrammingError:  # made in another thread, which closed it or ended
                pass
        self.connections.clear()


_OPENED = _OpenedConnections()
sys.addaudithook(_OPENED.note)  # hooks cannot be removed: this one only notes while a command runs


class _LastResort(logging.Handler):
    """Print WARNING and above to the current sys.stderr, message only, as logging.lastResort does."""

    def __init__(self, foreign_threads: set[int]) -> None:
        super().__init__(logging.WARNING)
        self.foreign_threads = foreign_threads

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread in self.foreign_threads:
            return
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _restore_environ(saved: Mapping[str, str]) -> None:
    for name in [n for n in os.environ if n not in saved]:
        del os.environ[name]
    for name, value in saved.items():
        if os.environ.get(name) != value:
            os.environ[name] = value


def _text(data: bytes) -> str:
    """Bytes read from a pipe as `subprocess.run(text=True)` reads them (universal newlines)."""
    return io.TextIOWrapper(io.BytesIO(data), encoding=locale.getpreferredencoding(False)).read()


def run_cli(
    args: Sequence[str], *, cwd: Path, env: Mapping[str, str | None], timeout: float
) -> subprocess.CompletedProcess:
    """`audit ARGS` run here in `cwd` with `env` applied; returns what the process would have."""
    from typer.testing import CliRunner

    from job.cli import app

    argv = [str(a) for a in args]
    saved_cwd, saved_env = os.getcwd(), dict(os.environ)
    handler = _LastResort({t.ident for t in threading.enumerate() if t.ident != threading.get_ident()})
    logging.getLogger().addHandler(handler)
    faulthandler.dump_traceback_later(timeout, exit=True, file=sys.__stderr__)
    _OPENED.recording = True
    try:
        os.chdir(cwd)
        with warnings.catch_warnings():
            warnings.resetwarnings()
            for action, category, module in reversed(DEFAULT_WARNING_FILTERS):
                warnings.filterwarnings(action, category=category, module=module)
            warnings.showwarning = _show_warning
            # help is wrapped as a process wraps it (the runner would force 80 columns)
            width = max(min(shutil.get_terminal_size().columns, 80) - 2, 50)
            result = CliRunner().invoke(app, argv, env=dict(env), prog_name="audit", catch_exceptions=True, terminal_width=width)
    finally:
        faulthandler.cancel_dump_traceback_later()
        _OPENED.close_all()
        logging.getLogger().removeHandler(handler)
        os.chdir(saved_cwd)
        _restore_environ(saved_env)
    stdout, stderr = _text(result.stdout_bytes), _text(result.stderr_bytes)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        # the interpreter prints an uncaught exception's traceback and exits with 1
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(["audit", *argv], result.exit_code, stdout, stderr)
