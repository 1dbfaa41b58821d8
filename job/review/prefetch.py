"""Importing the finance agent on a thread while a large ledger is read.

The agent's imports (AG2, pydantic, the OpenAI client) cost most of a second of Python
work, which a large run would otherwise spend after reading; polars reads without holding
the interpreter, so the two overlap. An import on the main thread meanwhile simply waits
for this one (Python locks each module while it is imported).
"""

from __future__ import annotations

import importlib
import threading

__all__ = ["start_importing_agent", "wait_for_imports"]

_THREADS: list[threading.Thread] = []


def start_importing_agent() -> None:
    """Start importing `job.review.agent` on a thread."""
    thread = threading.Thread(target=importlib.import_module, args=("job.review.agent",), name="audit-prefetch", daemon=True)
    thread.start()
    _THREADS.append(thread)


def wait_for_imports() -> None:
    """Wait for any import started here, so none is cut short when the process exits."""
    while _THREADS:
        _THREADS.pop().join()
