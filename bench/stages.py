#!/usr/bin/env python3
"""Where a large `audit run` spends its time: one run, in this process, with the run's
stage functions timed (wall seconds, in the order they finished).

    python bench/stages.py --ledger bench/out/ledger-1m-seed7.csv [--vendors-file PATH]

The stages are the functions `run.run_audit` calls (`read_ledgers`, `choose_new_rows`,
`screen_batch`, `insert_rows`, `draft_request`, ...), wrapped by name in `job.run`; `commit`
is the COMMIT of the run's transaction (with the WAL checkpoint that follows a large commit). Start-up
(interpreter and imports before `main`) is not included: `run_bench.py` measures the
whole process. Timing by wrapping adds a little; compare runs of this script with each
other, not with `run_bench.py`.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import shutil
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

TIMED = [
    ("job.run", None, name)
    for name in (
        "read_ledgers",
        "choose_new_rows",
        "compact_rows",
        "find_history",
        "screen_batch",
        "annotate",
        "make_digests",
        "write_digests",
        "record_vendors",
        "insert_rows",
        "finish_run",
        "draft_request",
        "record_request",
        "seal_run",
    )
]
NAMES: dict[str, str] = {}


def _wrap(found: list, module: str, owner: str | None, name: str) -> None:
    import importlib

    target = importlib.import_module(module)
    if owner:
        target = getattr(target, owner)
    original = getattr(target, name)
    label = NAMES.get(name, name)
    if inspect.iscoroutinefunction(original):

        @functools.wraps(original)
        async def timed_async(*args, **kwargs):
            start = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                found.append((label, time.perf_counter() - start))

        setattr(target, name, timed_async)
        return

    @functools.wraps(original)
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            found.append((label, time.perf_counter() - start))

    setattr(target, name, timed)


def main(argv: list[str] | None = None) -> int:
    from run_bench import write_config

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ledger", type=Path, required=True)
    p.add_argument("--vendors-file", type=Path, help="default: <ledger>.vendors.csv next to it, if present")
    args = p.parse_args(argv)
    vendors = args.vendors_file or args.ledger.with_suffix(".vendors.csv")
    folder = Path(tempfile.mkdtemp(prefix="audit-stages-"))
    try:
        import contextlib

        from job import cli

        from job.store import db

        from job import run

        found: list = []
        for module, owner, name in TIMED:
            _wrap(found, module, owner, name)
        original = db.transaction

        @contextlib.contextmanager
        def timed_transaction(database):  # the time of the COMMIT that ends the run's transaction
            with original(database) as conn:
                yield conn
                commit_started = time.perf_counter()
            found.append(("commit", time.perf_counter() - commit_started))

        run.transaction = timed_transaction
        config = write_config(folder, vendors if vendors.is_file() else None)
        sys.argv = ["audit", "run", "--ledger", str(args.ledger.resolve()), "--config", str(config)]
        started = time.perf_counter()
        try:
            cli.main()
        except SystemExit as exc:
            if exc.code:
                print(f"audit run exited {exc.code}", file=sys.stderr)
                return 1
        total = time.perf_counter() - started
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print("| stage | wall s |\n|---|---:|")
    for label, seconds in found:
        print(f"| {label} | {seconds:.2f} |")
    print(f"| **`audit run` from `main` to exit** | **{total:.2f}** |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
