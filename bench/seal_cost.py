#!/usr/bin/env python3
"""Time what tamper-evidence costs on a database a run left: its seal, and `audit verify`.

    python bench/run_bench.py --ledger bench/out/ledger-1m-d1.csv --runs 1 --keep   # prints "kept DIR"
    python bench/seal_cost.py --db DIR/audit.db

- **seal**: `seal.seal_run` for the database's last run, as the run calls it, on a copy
  of the database (its seal blocks removed, inside a transaction that is rolled back), so
  it reads back and hashes exactly what the run did. Wall and CPU time (the hashing runs
  on a second thread, so CPU can exceed wall), median of `--repeat`.
- **verify**: `audit verify --db DB` as a whole process, median of `--repeat`.

The run's own time with and without seals is `run_bench.py` against a checkout of the
commit before them; this script isolates the seal from the rest of the run, which on a
shared machine moves by more than the seal costs.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def time_seal(db: Path, repeat: int) -> tuple[float, float, int]:
    from job.store.seal import seal_run

    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "copy.db"
        with sqlite3.connect(db) as source, sqlite3.connect(copy) as target:
            source.backup(target)
        conn = sqlite3.connect(copy, isolation_level=None, check_same_thread=False)
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'seal_blocks'").fetchall():
            conn.execute(f'DROP TRIGGER "{name}"')
        run_id, rows = conn.execute("SELECT id, new_transactions FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        conn.execute("SELECT count(*), sum(length(memo)) FROM transactions").fetchone()  # warm the page cache, as the run's was
        walls, cpus = [], []
        for _ in range(repeat):
            conn.execute("BEGIN")
            conn.execute("DELETE FROM seal_blocks WHERE owner = ? OR part = 'transcript'", (run_id,))
            wall, cpu = time.perf_counter(), time.process_time()
            seal_run(conn, run_id)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
            conn.execute("ROLLBACK")
        conn.close()
    return statistics.median(walls), statistics.median(cpus), rows


def time_verify(db: Path, repeat: int) -> tuple[float, float]:
    """Median wall and CPU (user + system, of the child alone) of `audit verify` as a process."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
    walls, cpus = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "job", "verify", "--db", str(db)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        walls.append(time.perf_counter() - started)
        cpus.append(usage.ru_utime + usage.ru_stime)
        if proc.returncode != 0:
            raise SystemExit(f"audit verify failed: {proc.stderr.read().decode().strip()}")
    return statistics.median(walls), statistics.median(cpus)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--db", type=Path, required=True, help="an audit database a run wrote (run_bench.py --keep)")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    wall, cpu, rows = time_seal(args.db, args.repeat)
    print(f"seal of the last run ({rows:,} transactions): {wall:.2f} s wall, {cpu:.2f} s CPU (median of {args.repeat})")
    wall, cpu = time_verify(args.db, args.repeat)
    print(f"audit verify: {wall:.2f} s wall, {cpu:.2f} s CPU (median of {args.repeat})")
    print(f"load average now: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
