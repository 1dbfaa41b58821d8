#!/usr/bin/env python3
"""Time `audit run` end to end, as the whole process a nightly cron job starts.

Each run gets a fresh temporary folder with its own config, database and maildir, and runs

    python -m job run --ledger LEDGER --config DIR/audit.toml --db DIR/audit.db

with the maildir transport and the built-in offline reviewer (no network). The wall time
covers everything from process start (interpreter, imports) to exit; the peak RSS is the
child's own ``ru_maxrss``, read with ``os.wait4``. Prints the median over the runs as a
markdown table row:

    | rows | median wall | rows/s | peak RSS |
    |---:|---:|---:|---:|
    | 1,000,000 | 12.3 s | 81k rows/s | 1,234 MB |

Without ``--ledger``, the ledger (and its known-vendors file) is generated with
``bench/generate_ledger.py`` into ``bench/out/`` the first time and reused afterwards.

    python bench/run_bench.py --rows 100000 --runs 1
    python bench/run_bench.py --ledger bench/out/ledger-1m.csv --vendors-file bench/out/vendors.csv
    python bench/run_bench.py --rows 100000 --profile      # one run under cProfile, top 40 by cumulative time
    python bench/run_bench.py --rows 1000000 --reference   # time bench/reference.py the same way, for comparison
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / "out"
GENERATOR = BENCH / "generate_ledger.py"
REFERENCE = BENCH / "reference.py"


@dataclass
class Measurement:
    wall_s: float
    cpu_s: float
    peak_rss_kib: int
    exit_code: int
    stdout: str
    stderr: str
    recorded: int | None  # transactions found in the database afterwards


def rows_label(rows: int) -> str:
    """100000 -> '100k', 1000000 -> '1m', 2500 -> '2500'."""
    for size, suffix in ((1_000_000, "m"), (1_000, "k")):
        if rows >= size and rows % size == 0:
            return f"{rows // size}{suffix}"
    return str(rows)


def ensure_ledger(rows: int, seed: int, python: str) -> tuple[Path, Path]:
    """The cached ledger and vendors file for ``rows`` and ``seed``, generated if missing."""
    stem = f"ledger-{rows_label(rows)}-seed{seed}"
    ledger, vendors = OUT / f"{stem}.csv", OUT / f"{stem}.vendors.csv"
    if ledger.is_file() and vendors.is_file():
        print(f"using cached {ledger.relative_to(ROOT)}", file=sys.stderr)
        return ledger, vendors
    OUT.mkdir(parents=True, exist_ok=True)
    command = [python, str(GENERATOR), "--rows", str(rows), "--seed", str(seed), "--out", str(ledger), "--vendors-out", str(vendors)]
    print("generating: " + " ".join(command), file=sys.stderr)
    subprocess.run(command, check=True)
    return ledger, vendors


def write_config(folder: Path, vendors_file: Path | None) -> Path:
    """A config for one run: database and maildir inside ``folder``, offline reviewer."""
    lines = ['db = "audit.db"', "", "[policy]"]
    if vendors_file is not None:
        lines.append(f"known_vendors_file = {_toml_string(str(vendors_file.resolve()))}")
    # all six rules, as in the reference pipeline (round amounts are off by default)
    lines += ["", "[policy.round_amounts]", "enabled = true"]
    lines += ["", "[mail]", 'transport = "maildir"', 'maildir = "mail"', "", "[llm]", 'model = ""  # the built-in offline reviewer', ""]
    path = folder / "audit.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def child_env() -> dict[str, str]:
    """The environment for the child: this checkout's `job` first on the path, no stray config."""
    env = dict(os.environ)
    env.pop("AUDIT_CONFIG", None)
    env.pop("AUDIT_DEBUG", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def run_once(python: str, ledger: Path, vendors_file: Path | None, *, keep: bool, extra: list[str] = (), timeout: float | None = None,
             reference: bool = False) -> Measurement:
    """One whole-process run in a fresh folder; returns its wall time, CPU time and peak RSS.

    With ``reference`` the process is bench/reference.py (the notes' fastest pipeline) instead of `audit run`.
    """
    folder = Path(tempfile.mkdtemp(prefix="audit-bench-"))
    try:
        db = folder / "audit.db"
        if reference:
            command = [python, *extra, str(REFERENCE), "--ledger", str(ledger.resolve()), "--db", str(db)]
            if vendors_file is not None:
                command += ["--vendors-file", str(vendors_file.resolve())]
        else:
            config = write_config(folder, vendors_file)
            command = [python, *extra, "-m", "job", "run", "--ledger", str(ledger.resolve()), "--config", str(config), "--db", str(db)]
        with open(folder / "stdout.txt", "w+b") as out, open(folder / "stderr.txt", "w+b") as err:
            started = time.perf_counter()
            proc = subprocess.Popen(command, cwd=folder, env=child_env(), stdout=out, stderr=err, stdin=subprocess.DEVNULL)
            status, usage = _wait(proc, timeout)
            wall = time.perf_counter() - started
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace")
        code = os.waitstatus_to_exitcode(status)
        proc.returncode = code  # tell Popen the child has been reaped
        recorded = None
        if db.is_file():
            with sqlite3.connect(db) as conn:
                recorded = conn.execute(f"SELECT count(*) FROM {'audit' if reference else 'transactions'}").fetchone()[0]
        return Measurement(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, code, stdout, stderr, recorded)
    finally:
        if keep:
            print(f"kept {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)


def _wait(proc: subprocess.Popen, timeout: float | None):
    """Reap the child with wait4 to get its own resource usage; kill it after ``timeout`` s."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG if deadline else 0)
        if pid == proc.pid:
            return status, usage
        if deadline and time.monotonic() > deadline:
            proc.kill()
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            raise SystemExit(f"run timed out after {timeout:g} s")
        time.sleep(0.05)


def count_rows(stdout: str) -> int | None:
    """Rows the tool reports reading ("<name>: N transactions ...")."""
    match = re.search(r": (\d+) transactions \(", stdout)
    return int(match.group(1)) if match else None


def _count_lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return max(0, sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b"")) - 1)


def format_row(rows: int, wall: float, peak_kib: int) -> str:
    rate = rows / wall if wall > 0 else float("inf")
    rate_text = f"{rate / 1000:,.0f}k rows/s" if rate >= 10_000 else f"{rate:,.0f} rows/s"
    return f"| {rows:,} | {wall:,.1f} s | {rate_text} | {peak_kib * 1024 / 1e6:,.0f} MB |"


def profile(python: str, ledger: Path, vendors_file: Path | None, top: int, timeout: float | None) -> int:
    """One run under cProfile; saves the stats to bench/out/ and prints the top entries."""
    OUT.mkdir(parents=True, exist_ok=True)
    stats_path = OUT / f"profile-{ledger.stem}.pstats"
    m = run_once(python, ledger, vendors_file, keep=False, extra=["-m", "cProfile", "-o", str(stats_path)], timeout=timeout)
    print(f"profiled run: exit {m.exit_code}, {m.wall_s:.1f} s wall (with profiling overhead); stats in {stats_path}", file=sys.stderr)
    if m.exit_code != 0:
        print(m.stderr, file=sys.stderr)
        return 1
    import pstats

    stats = pstats.Stats(str(stats_path))
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--rows", type=int, default=100_000, help="rows to generate when no --ledger is given (default 100000)")
    p.add_argument("--seed", type=int, default=7, help="generator seed (default 7)")
    p.add_argument("--runs", type=int, default=3, help="runs, each with a fresh database and maildir (default 3)")
    p.add_argument("--ledger", type=Path, help="use this ledger instead of a generated one")
    p.add_argument("--vendors-file", type=Path, help="known-vendors file for --ledger (default: LEDGER's .vendors.csv sibling if present)")
    p.add_argument("--python", default=sys.executable, help="interpreter to run the tool with (default: this one)")
    p.add_argument("--timeout", type=float, help="give up on a run after this many seconds")
    p.add_argument("--keep", action="store_true", help="keep each run's folder (config, db, mail, output)")
    p.add_argument("--profile", action="store_true", help="instead of timing, do one run under cProfile and print the top entries")
    p.add_argument("--top", type=int, default=40, help="entries to print with --profile (default 40)")
    p.add_argument("--no-header", action="store_true", help="print only the table row")
    p.add_argument("--reference", action="store_true", help="time bench/reference.py (the notes' reference pipeline) instead of audit run")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be at least 1")

    if args.ledger:
        ledger = args.ledger
        if not ledger.is_file():
            p.error(f"--ledger {ledger}: no such file")
        vendors_file = args.vendors_file
        if vendors_file is None:
            sibling = ledger.with_suffix(".vendors.csv")
            vendors_file = sibling if sibling.is_file() else None
        if vendors_file is None:
            print("warning: no known-vendors file; every vendor will be unfamiliar", file=sys.stderr)
    else:
        ledger, vendors_file = ensure_ledger(args.rows, args.seed, args.python)
        if args.vendors_file:
            vendors_file = args.vendors_file

    if args.profile:
        return profile(args.python, ledger, vendors_file, args.top, args.timeout)

    load = os.getloadavg()[0]
    results: list[Measurement] = []
    for n in range(1, args.runs + 1):
        m = run_once(args.python, ledger, vendors_file, keep=args.keep, timeout=args.timeout, reference=args.reference)
        summary = next((line for line in m.stdout.splitlines() if line.startswith(("run ", "reference:"))), "(no summary line)")
        print(
            f"run {n}/{args.runs}: exit {m.exit_code}, {m.wall_s:.2f} s wall, {m.cpu_s:.2f} s CPU, "
            f"peak RSS {m.peak_rss_kib / 1024:,.0f} MiB, {m.recorded} recorded; {summary}",
            file=sys.stderr,
        )
        if m.exit_code != 0:
            print(f"{'reference' if args.reference else 'audit run'} failed (exit {m.exit_code}):\n{m.stderr.strip()}", file=sys.stderr)
            return 1
        if m.stderr.strip():
            print("  stderr: " + m.stderr.strip().replace("\n", "\n  stderr: "), file=sys.stderr)
        results.append(m)

    rows = (None if args.reference else count_rows(results[0].stdout)) or _count_lines(ledger)
    if any(m.recorded != rows for m in results):
        print(f"warning: expected {rows:,} recorded transactions, found {[m.recorded for m in results]}", file=sys.stderr)
    wall = statistics.median(m.wall_s for m in results)
    peak = max(m.peak_rss_kib for m in results)
    cpu = statistics.median(m.cpu_s for m in results)
    print(
        f"median of {len(results)}: {wall:.2f} s wall, {cpu:.2f} s CPU (user+sys); load average at the start {load:.2f} "
        f"on {os.cpu_count()} CPUs (wall well above CPU means the machine was busy or waiting on disk)",
        file=sys.stderr,
    )
    if not args.no_header:
        print("| rows | median wall | rows/s | peak RSS |")
        print("|---:|---:|---:|---:|")
    print(format_row(rows, wall, peak))
    return 0


if __name__ == "__main__":
    sys.exit(main())
