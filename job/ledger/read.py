"""Reading a run's ledgers: every file column-wise, in blocks, before anything is written.

Every file is read by `ingest_fast`; a file in a shape only the row-by-row reader reads
exactly (`ingest_fast.Unsupported`: not UTF-8, line breaks inside quotes, blank lines, ...)
is read by `ingest`, for its exact `file:line: column: problem` messages, and turned into
one block. From `SPILL_BYTES` of ledgers on, the blocks wait on disk (a private folder
beside the database) and are read back one at a time. Files of at least `[ledger]
large_file_bytes` show a progress line while they are read, on a terminal only.
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Sequence
from pathlib import Path

from job.config import Config
from job.errors import ConfigError, EmptyLedgerError
from job.ledger.formats.detect import detect_format
from job.ledger.formats.read import read_ledger_file
from job.ledger.ingest import LedgerFormat, read_ledger
from job.ledger.ingest_fast import FrameLedger, Unsupported, read_ledger_fast, transactions_frame
from job.progress import Progress

__all__ = ["SPILL_BYTES", "ledger_format", "has_large_file", "read_ledgers"]

SPILL_BYTES = 200_000_000  # from this much ledger data on, blocks wait on disk, not in memory


def ledger_format(config: Config) -> LedgerFormat:
    """How this source writes its ledgers (`[ledger]`); ConfigError for one no file could have."""
    s = config.ledger
    try:
        return LedgerFormat(
            columns=dict(s.columns),
            default_currency=s.default_currency,
            date_formats=tuple(s.date_formats),
            decimal_separator=s.decimal_separator,
            thousands_separator=s.thousands_separator,
        )
    except ValueError as exc:
        raise ConfigError(f"{config.path or 'defaults'}: [ledger]: {exc}") from None


def has_large_file(config: Config, ledger_paths: Sequence[str | Path]) -> bool:
    """Whether any of the files is at least `[ledger] large_file_bytes`."""
    return any(size >= config.ledger.large_file_bytes for size in _sizes(ledger_paths))


def read_ledgers(
    config: Config,
    ledger_paths: Sequence[str | Path],
    *,
    format_name: str | None = None,
    allow_empty: bool = False,
    stream=None,
    spill: Path | None = None,
) -> list[FrameLedger]:
    """Read every ledger completely; any bad row rejects the run before anything is written.

    `format_name` (else `[ledger] format`): the export format, or `auto` to find each file's
    from its content; a generic CSV is read here, the others by `ledger.formats`. A ledger with
    no transactions is refused (`EmptyLedgerError`) unless `allow_empty`. `spill`: a folder for the blocks (by default one beside the database, for runs of at
    least `SPILL_BYTES`); `stream`: where the progress line goes (stderr), if a terminal.
    """
    fmt = ledger_format(config)
    sizes = _sizes(ledger_paths)
    large = any(size >= config.ledger.large_file_bytes for size in sizes)
    if spill is None and sum(sizes) >= SPILL_BYTES:
        spill = _spill_folder(config)
    name = (format_name or config.ledger.format).lower()
    ledgers = []
    for p in ledger_paths:
        found = detect_format(p, fmt) if name == "auto" else name
        if found != "csv":
            ledger, found = read_ledger_file(p, found, fmt)
            ledgers.append(dataclasses.replace(ledger, format=found))
            continue
        progress = Progress(f"reading {os.path.basename(p)}", stream=stream if large else io.StringIO())
        try:
            ledgers.append(read_ledger_fast(p, fmt, progress=progress.update, spill=spill))
        except Unsupported:  # a shape only the row-by-row reader reads exactly
            row_ledger = read_ledger(p, fmt)
            ledgers.append(FrameLedger.of(row_ledger.path, row_ledger.name, row_ledger.sha256, transactions_frame(row_ledger.transactions)))
        finally:
            progress.finish()
    if not allow_empty:
        for ledger in ledgers:
            if not ledger.rows:
                raise EmptyLedgerError(
                    f"{ledger.path}: no transactions in this ledger (an export that failed?); nothing recorded"
                    " (--allow-empty records an empty night)"
                )
    return ledgers


def _sizes(ledger_paths: Sequence[str | Path]) -> list[int]:
    sizes = []
    for p in ledger_paths:
        try:
            sizes.append(os.path.getsize(p))
        except OSError:
            sizes.append(0)  # the reader reports it
    return sizes


def _spill_folder(config: Config) -> Path:
    """A private folder beside the audit database for a large run's blocks, removed at exit.

    Beside the database, not in /tmp: /tmp is often memory itself, and the database's disk
    has room for what the run is about to record anyway.
    """
    import atexit
    import shutil
    import tempfile

    folder = Path(config.db).resolve().parent
    folder.mkdir(parents=True, exist_ok=True)
    prefix = f".{Path(config.db).name}.blocks-"
    for stale in folder.glob(prefix + "*"):  # left by a run that was killed; runs hold the run lock
        shutil.rmtree(stale, ignore_errors=True)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=folder))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path
