#!/usr/bin/env python3
"""How fast the streaming statement readers are, and how much memory they take: camt.053 and MT940.

Generates a realistic, reproducible statement with N entries into `bench/out/` (on first
use; then reused): a camt.053.001.08 document with one statement, each entry with one
transaction detail (counterparty, remittance info, the bank's reference; some names beyond
ASCII, debits and credits, a reversal now and then), and an MT940 file with the same
entries as `:61:`/`:86:` pairs in German structured form (statements of 10,000 lines each,
balances matching). Then reads each in a fresh process, the way `audit inspect` or a run
would (`job.ledger.formats.read.read_ledger_file`), and reports wall time and the child's
CPU time and peak RSS (`ru_utime + ru_stime` and `ru_maxrss` from `os.wait4`; on a
machine shared with other work the CPU time is the steadier figure). With `--compare`, also times what we decided not to
use, on the same file: lxml building the whole camt.053 tree (`etree.parse`), and the
`mt-940` package's `mt940.parse` (if installed).

    python bench/formats_bench.py --entries 1000000 [--runs 1] [--compare]

Prints one markdown table row per measurement (the median run by wall time).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
NAMES = [
    "Müller Bürobedarf GmbH", "Northwind Logistics", "Société Générale Services", "Contoso Consulting", "Zoë Ångström",
    "Łukasz Żółć", "Acme Office Supply", "Stadtwerke Köln", "Globex Travel", "Tōkyō Shōji K.K.", "Øresund Trading ApS",
] + [f"Supplier {n:04d} AG" for n in range(400)]
PURPOSES = ["Rechnung {n}", "Invoice {n} consulting", "Miete {m} Buero", "Freight order {n}", "Honorar {m}", "Lizenz {n} Q4"]
MONTHS = ["Januar", "Februar", "Maerz", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober", "November", "Dezember"]


def entries(count: int, seed: int):
    """(day, amount in cents, debit?, reversal?, name, purpose, ref) for each entry, reproducibly."""
    rng = random.Random(seed)
    start = date(2026, 1, 1)
    for n in range(count):
        day = start + timedelta(days=n * 365 // max(count, 1))
        cents = int(rng.lognormvariate(10, 1.3)) + 1
        debit = rng.random() < 0.7
        reversal = rng.random() < 0.01
        name = rng.choice(NAMES)
        purpose = rng.choice(PURPOSES).format(n=100000 + n, m=MONTHS[day.month - 1])
        yield day, cents, debit, reversal, name, purpose, f"{day:%Y%m%d}{n:09d}"


def write_camt(path: Path, count: int, seed: int) -> None:
    from xml.sax.saxutils import escape

    with open(path, "w", encoding="utf-8", buffering=1 << 20) as out:
        out.write('<?xml version="1.0" encoding="UTF-8"?>\n<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08">\n')
        out.write("<BkToCstmrStmt><GrpHdr><MsgId>BENCH</MsgId><CreDtTm>2026-12-31T22:00:00</CreDtTm></GrpHdr>\n")
        out.write("<Stmt><Id>BENCH-1</Id><Acct><Id><IBAN>DE02120300000000202051</IBAN></Id><Ccy>EUR</Ccy></Acct>\n")
        for day, cents, debit, reversal, name, purpose, ref in entries(count, seed):
            mark = "DBIT" if debit else "CRDT"
            party = "Cdtr" if debit != reversal else "Dbtr"
            out.write(
                f'<Ntry><Amt Ccy="EUR">{cents // 100}.{cents % 100:02d}</Amt><CdtDbtInd>{mark}</CdtDbtInd>'
                + ("<RvslInd>true</RvslInd>" if reversal else "")
                + f"<Sts><Cd>BOOK</Cd></Sts><BookgDt><Dt>{day}</Dt></BookgDt><ValDt><Dt>{day}</Dt></ValDt>"
                f"<AcctSvcrRef>{ref}</AcctSvcrRef><NtryDtls><TxDtls><Refs><EndToEndId>NOTPROVIDED</EndToEndId></Refs>"
                f"<RltdPties><{party}><Pty><Nm>{escape(name)}</Nm></Pty></{party}></RltdPties>"
                f"<RmtInf><Ustrd>{escape(purpose)}</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>\n"
            )
        out.write("</Stmt></BkToCstmrStmt></Document>\n")


def balance_text(balance: int) -> str:
    """An MT940 balance's mark and amount: C or D, then the amount with a decimal comma."""
    return f"{'C' if balance >= 0 else 'D'}{{day}}EUR{abs(balance) // 100},{abs(balance) % 100:02d}"


def write_mt940(path: Path, count: int, seed: int, per_statement: int = 10_000) -> None:
    balance = 10_000_000_00
    with open(path, "w", encoding="utf-8", newline="\r\n", buffering=1 << 20) as out:
        for n, (day, cents, debit, reversal, name, purpose, _) in enumerate(entries(count, seed)):
            if n % per_statement == 0:
                if n:
                    out.write(f":62F:{balance_text(balance).format(day=f'{day:%y%m%d}')}\n-\n")
                out.write(f":20:BENCH{n // per_statement:06d}\n:25:10020030/1234567890\n:28C:{n // per_statement + 1:05d}/001\n")
                out.write(f":60F:{balance_text(balance).format(day=f'{day:%y%m%d}')}\n")
            mark = ("RC" if reversal else "D") if debit else ("RD" if reversal else "C")
            balance += -cents if debit else cents
            out.write(f":61:{day:%y%m%d}{day:%m%d}{mark}{cents // 100},{cents % 100:02d}NTRFNONREF//B{n:09d}\n")
            text = f"SVWZ+{purpose}"
            parts = "".join(f"?2{i}{text[i * 27:(i + 1) * 27]}" for i in range((len(text) + 26) // 27))
            out.write(f":86:166?00SEPA-UEBERWEISUNG{parts}?32{name[:27]}" + (f"?33{name[27:54]}" if len(name) > 27 else "") + "\n")
        out.write(f":62F:{balance_text(balance).format(day=f'{day:%y%m%d}')}\n-\n")


READ = (
    "import sys; from job.ledger.formats.read import read_ledger_file;"
    " ledger, used = read_ledger_file(sys.argv[1]); print(used, ledger.rows)"
)
COMPARE = {
    "camt053": ("lxml etree.parse (whole tree)", "import sys; from lxml import etree; t = etree.parse(sys.argv[1]); print(len(t.getroot()[0][1]) - 2)"),
    "mt940": ("mt-940 package, mt940.parse", "import sys, mt940; print(len(mt940.parse(sys.argv[1])))"),
}


def measure(code: str, path: Path) -> tuple[float, float, int, str]:
    """Wall seconds, CPU seconds, peak RSS (KiB) and output of `code` run in a fresh interpreter on `path`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", code, str(path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    out = process.stdout.read().decode().strip() + process.stderr.read().decode().strip()[-300:]
    if os.waitstatus_to_exitcode(status) != 0:
        out = f"FAILED: {out}"
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--compare", action="store_true", help="also time lxml's whole tree and the mt-940 package")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    files = {
        "camt053": (OUT / f"camt053-{args.entries}-seed{args.seed}.xml", write_camt),
        "mt940": (OUT / f"mt940-{args.entries}-seed{args.seed}.sta", write_mt940),
    }
    print("| format | entries | file | reader | wall | CPU | entries/CPU s | peak RSS |")
    print("|---|---:|---:|---|---:|---:|---:|---:|")
    for name, (path, write) in files.items():
        if not path.exists():
            started = time.perf_counter()
            write(path.with_suffix(".tmp"), args.entries, args.seed)
            path.with_suffix(".tmp").rename(path)
            print(f"(generated {path.name} in {time.perf_counter() - started:.0f} s)", file=sys.stderr)
        size = f"{path.stat().st_size / 1e6:,.0f} MB"
        readers = [("read_ledger_file", READ)] + ([COMPARE[name]] if args.compare else [])
        for label, code in readers:
            runs = sorted(measure(code, path) for _ in range(args.runs))
            wall, cpu, peak, out = runs[len(runs) // 2]
            rate = f"{args.entries / cpu:,.0f}" if not out.startswith("FAILED") else "-"
            print(f"| {name} | {args.entries:,} | {size} | {label} | {wall:,.1f} s | {cpu:,.1f} s | {rate} | {peak / 1024:,.0f} MiB |")
            print(f"  ({label}: {out[:200]})", file=sys.stderr)


if __name__ == "__main__":
    main()
