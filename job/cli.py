"""The `audit` command line: a thin layer that parses options, calls one core function,
and turns our errors into one line on stderr and a decided exit code."""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import sys
import time
from pathlib import Path

import typer

from job.errors import (
    EXIT_BUSY,
    EXIT_CODES_HELP,
    EXIT_DATABASE,
    EXIT_INTERNAL,
    EXIT_TAMPERED,
    EXIT_UNSENT,
    EXIT_USAGE,
    AuditError,
    ConfigError,
    MailError,
    ModelError,
)
from job.oplog import finish_log, label_log, start_log

app = typer.Typer(
    name="audit",
    help="Nightly ledger audit with email approvals.\n\n" + EXIT_CODES_HELP,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

ConfigOption = typer.Option(None, "--config", "-c", help="Config file (else $AUDIT_CONFIG, else ./audit.toml, else defaults).")
DbOption = typer.Option(None, "--db", help="Audit database (overrides the config's db).")


def _fail(message: str, code: int) -> None:
    typer.echo(f"audit: error: {message}", err=True)
    raise typer.Exit(code)


@app.callback()
def options(
    ctx: typer.Context,
    log: Path | None = typer.Option(
        None,
        "--log",
        envvar="AUDIT_LOG",
        help="Append what the command prints to this file, each line stamped with the time, command and run;"
        " print nothing else unless it fails (for cron and systemd timers).",
    ),
) -> None:
    """Options for every command."""
    _LOG.clear()
    if log is not None:
        _LOG.append((log, ctx.invoked_subcommand or ""))  # started by the command itself: help and usage errors are not logged


_LOG: list[tuple[Path, str]] = []  # the --log file and command, until the command starts


def guarded(func):
    """Run a command; our errors become one line and their exit code, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        code = 1
        if _LOG:
            path, command = _LOG.pop()
            try:
                start_log(path, command)
            except OSError as exc:
                _fail(f"--log {path}: cannot write: {exc.strerror or exc}", EXIT_USAGE)
        try:
            result = _call(func, *args, **kwargs)
            code = 0
            return result
        except typer.Exit as exc:
            code = exc.exit_code
            raise
        finally:
            finish_log(code)

    return wrapper


def _call(func, *args, **kwargs):
    """`func(*args, **kwargs)`, with our errors turned into one line and an exit code."""
    try:
        return func(*args, **kwargs)
    except typer.Exit:
        raise
    except AuditError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except BrokenPipeError:  # `audit report | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        raise typer.Exit(0) from None
    except sqlite3.DatabaseError as exc:  # e.g. a full disk: the write under way is rolled back
        busy = getattr(exc, "sqlite_errorname", "").startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))
        _fail(f"audit database: {exc}", EXIT_BUSY if busy else EXIT_DATABASE)
    except OSError as exc:  # the machine's, not ours: a full disk, a file we may not write
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(f"system error: {where}{exc.strerror or exc}", EXIT_INTERNAL)
    except Exception as exc:  # a bug: say what it was in one line
        if os.environ.get("AUDIT_DEBUG"):
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc} (please report this)", EXIT_INTERNAL)


def run_async(coro):
    """asyncio.run, with errors of background tasks a library left behind kept off stderr
    (the error that matters reaches us as an exception and is reported as one line)."""

    import asyncio

    async def main():
        if not os.environ.get("AUDIT_DEBUG"):
            asyncio.get_running_loop().set_exception_handler(lambda loop, context: None)
        return await coro

    return asyncio.run(main())


def _setup(config_path: Path | None, db_path: Path | None):
    from job.config import load_config

    return load_config(config_path, db=db_path)


@app.command()
@guarded
def run(
    ledger: list[Path] = typer.Option(..., "--ledger", "-l", help="Ledger export or bank statement; repeat for several files."),
    format: str | None = typer.Option(
        None, "--format", help="Its format (else [ledger] format, by default found from the content; see 'audit inspect')."
    ),
    allow_empty: bool = typer.Option(False, "--allow-empty", help="Record a ledger with no transactions (else exit 11)."),
    config: Path | None = ConfigOption,
    db: Path | None = DbOption,
    wait: float = typer.Option(30.0, help="Seconds to wait for another run to finish before giving up."),
) -> None:
    """Ingest, screen and record ledgers; email one approval request for what is flagged."""
    # polars (reading, screening, the policy's own rules) keeps freed memory for reuse unless told
    # to give it back at once; a large run frees a lot between its stages, and peak memory is
    # what limits the ledger size (570 -> 480 MiB at a million rows, same speed). The
    # allocator reads this when polars is first imported, so it is set before anything is.
    os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:0,muzzy_decay_ms:0")
    from job.run import read_ledgers, run_audit
    from job.screening.rules import compile_rules
    from job.screening.vendors import load_known_vendors
    from job.store.db import hold_lock, open_db

    settings = _setup(config, db)
    _warn_sender_auth(settings)
    reviewer = settings.llm.describe()
    rules = compile_rules(settings)  # a bad rule is a config error before any file is read
    with hold_lock(settings.db, "run", wait=wait):
        ledgers = read_ledgers(
            settings, ledger, format_name=format, allow_empty=allow_empty
        )  # every file read in full before the database is touched
        load_known_vendors(settings)
        database = open_db(settings.db)
        result = run_async(run_audit(database, settings, ledgers, reviewer=reviewer, rules=rules))
    if result.run_id is not None:
        label_log(f"run {result.run_id}")
    for item in result.ledgers:
        note = "already imported, skipped" if item.already_imported else f"{item.new_rows} new"
        if item.amended:
            note += f", {item.amended} of them amended"
        if item.format != "csv":
            note += f"; read as {item.format}"
        typer.echo(f"{item.name}: {item.rows} transactions ({note})")
    typer.echo(
        f"run {result.run_id}: {result.new_transactions} new, {result.flagged} flagged, "
        f"{result.auto_approved} auto-approved, {result.held} held; reviewer: {result.reviewer}"
    )
    if result.model_calls:
        typer.echo(f"model usage: {_usage(result.model_calls, result.prompt_tokens, result.completion_tokens)}")
    for problem in result.refused:
        typer.echo(f"audit: warning: reviewer output refused: {problem}", err=True)
    if result.request_id:
        typer.echo(f"request {result.request_id} queued for {', '.join(result.recipients)}")
    if result.attachment_withheld:
        from job.approval.request import format_size

        typer.echo(
            f"audit: warning: the list of {result.flagged:,} flagged items ({format_size(result.attachment_withheld)}) is over"
            f" [request] max_attachment_bytes ({format_size(settings.request.max_attachment_bytes)}), so the request"
            f" does not attach it; 'audit items {result.request_id}' exports it",
            err=True,
        )
    _report_sending(result.sent, settings, database)


def _usage(calls: int, prompt: int, completion: int) -> str:
    return f"{calls} call(s), {prompt + completion} tokens ({prompt} prompt, {completion} completion)"


def _warn_sender_auth(settings) -> None:
    from job.config import SENDER_AUTH_OFF_WARNING

    if not settings.sender_auth.enabled:
        typer.echo(f"audit: warning: {SENDER_AUTH_OFF_WARNING}", err=True)


def _report_sending(sent, settings, database) -> None:
    """Say what was sent; exit with EXIT_UNSENT while anything is still waiting in the outbox."""
    from job.mail.outbox import unsent_messages

    where = (
        f"{settings.mail.maildir / 'outbox'}"
        if settings.mail.transport == "maildir"
        else f"{settings.mail.smtp.host}:{settings.mail.smtp.port}"
    )
    if sent is not None and sent.sent:
        typer.echo(f"sent {sent.sent} message(s) via {where}")
    if sent is not None:
        for error in sent.errors:
            typer.echo(f"audit: error: {error}", err=True)
    unsent = unsent_messages(database)
    if unsent:
        typer.echo(
            f"audit: error: {len(unsent)} message(s) left unsent; they are retried by the next run or poll (see 'audit status')", err=True
        )
        raise typer.Exit(EXIT_UNSENT)


@app.command()
@guarded
def poll(
    once: bool = typer.Option(False, "--once", help="Check for replies once and exit (for cron)."),
    interval: float = typer.Option(60.0, help="Seconds between checks when not --once."),
    config: Path | None = ConfigOption,
    db: Path | None = DbOption,
    wait: float = typer.Option(0.0, help="Seconds to wait for another poll to finish before giving up."),
) -> None:
    """Read approvers' replies, record their decisions, and confirm back."""
    from job.store.db import hold_lock, open_db

    settings = _setup(config, db)
    _warn_sender_auth(settings)
    with hold_lock(settings.db, "poll", wait=wait):
        database = open_db(settings.db)
        if once:
            _poll_once(database, settings)
            return
        while True:  # a long-running poller: report a failed round and carry on
            try:
                _poll_once(database, settings)
            except typer.Exit:
                pass
            except (MailError, ModelError) as exc:
                typer.echo(f"audit: error: {exc}; retrying in {interval:g}s", err=True)
            time.sleep(interval)


def _poll_once(database, settings) -> None:
    from job.poll import poll_replies

    result = run_async(poll_replies(database, settings))
    typer.echo(
        f"poll: {result.fetched} message(s): {result.processed} processed, {result.refused} refused, "
        f"{result.ignored} ignored, {result.duplicates} already seen, {result.failed} failed; "
        f"{result.decisions} decision(s) recorded"
    )
    chased = result.chased
    for request_id in chased.reminded if chased else ():
        typer.echo(f"request {request_id}: reminder sent")
    for request_id in chased.reissued if chased else ():
        typer.echo(f"request {request_id}: sent again with fresh reply addresses (the old ones were retired)")
    for request_id in chased.escalated if chased else ():
        typer.echo(f"request {request_id}: escalated to {', '.join(settings.reminders.escalation_addresses)}")
    for request_id in result.closed_requests:
        expired = chased is not None and request_id in chased.expired
        typer.echo(f"request {request_id} closed: " + ("pending items expired" if expired else "every item decided"))
    for warning in result.warnings:
        typer.echo(f"audit: warning: {warning}", err=True)
    _report_sending(result.sent, settings, database)


@app.command()
@guarded
def report(
    format: str = typer.Option("csv", "--format", "-f", help="csv or json."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write here instead of stdout."),
    since: str | None = typer.Option(None, help="First transaction date to include (YYYY-MM-DD)."),
    until: str | None = typer.Option(None, help="Last transaction date to include (YYYY-MM-DD)."),
    unverified: bool = typer.Option(False, "--unverified", help="Export even if the audit log does not verify (the manifest says so)."),
    config: Path | None = ConfigOption,
    db: Path | None = DbOption,
) -> None:
    """Export who decided what, when and why: one row per transaction (exit 10 if the audit log does not verify)."""
    from job.errors import InputError
    from job.report.report import parse_day, write_report, write_report_file
    from job.store.auditlog import head_hash, verify_log
    from job.store.db import open_db

    if format not in ("csv", "json"):
        raise InputError(f"--format: must be csv or json, got {format!r}")
    first, last = parse_day(since, "--since"), parse_day(until, "--until")
    settings = _setup(config, db)
    database = open_db(settings.db, create=False)
    checked = verify_log(database.conn)  # a report of a tampered log would lend it credibility
    if not checked.ok and not unverified:
        _fail(
            f"{settings.db}: audit log does not verify: {checked.problem}; no report written"
            " (--unverified exports it anyway, marked as unverified)",
            EXIT_TAMPERED,
        )
    if not checked.ok:
        typer.echo(f"audit: warning: exporting an UNVERIFIED report: the audit log does not verify: {checked.problem}", err=True)
    if out is None:
        write_report(database, sys.stdout, format, since=first, until=last)  # no BOM: pipes expect plain UTF-8
        return
    count = write_report_file(database, out, format, since=first, until=last, unverified="" if checked.ok else checked.problem)
    typer.echo(f"wrote {count} row(s) to {out}; audit log head {head_hash(database.conn)} (also in {out}.manifest.json)", err=True)


@app.command()
@guarded
def items(
    request_id: str = typer.Argument(..., help="The request's id (as the email ends), or a unique beginning of it."),
    pending: bool = typer.Option(False, "--pending", help="Only the items still pending."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write here instead of stdout."),
    config: Path | None = ConfigOption,
    db: Path | None = DbOption,
) -> None:
    """Export a request's items as the CSV its email attaches: numbered as in replies, exact amounts."""
    from job.report.report import find_request, write_items, write_items_file
    from job.store.db import open_db

    settings = _setup(config, db)
    database = open_db(settings.db, create=False)
    found = find_request(database.conn, request_id)
    if out is None:
        write_items(database.conn, sys.stdout, found, pending_only=pending, bom=False)  # a BOM only in files
        return
    count = write_items_file(database.conn, out, found, pending_only=pending)
    typer.echo(f"wrote {count} item(s) of request {found} to {out}", err=True)


@app.command()
@guarded
def status(
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
    config: Path | None = ConfigOption,
    db: Path | None = DbOption,
) -> None:
    """Open requests and their age, pending items, unsent mail, and the last run."""
    from job.report.report import collect_status
    from job.store.db import open_db

    settings = _setup(config, db)
    _warn_sender_auth(settings)
    info = collect_status(open_db(settings.db, create=False))
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    last = info["last_run"]
    if last:
        typer.echo(
            f"last run: {last['run_id']} at {last['started_at']}: {last['new_transactions']} new, {last['flagged']} flagged, "
            f"{last['auto_approved']} auto-approved, {last['held']} held ({last['reviewer']})"
        )
        typer.echo(f"  model usage: {_usage(last['model_calls'], last['prompt_tokens'], last['completion_tokens'])}")
    else:
        typer.echo("last run: none")
    typer.echo(f"pending items: {info['pending_items']}")
    typer.echo(f"held items: {info['held_items']}")
    typer.echo(f"open requests: {len(info['open_requests'])}")
    for r in info["open_requests"]:
        held = f", {r['held']} held" if r["held"] else ""
        typer.echo(f"  {r['request_id']}  age {r['age']}  {r['pending']} of {r['items']} pending{held}  {r['subject']}")
    typer.echo(f"audit log head: {info['audit_log_head']}")
    typer.echo(f"unsent mail: {len(info['unsent_mail'])}")
    for m in info["unsent_mail"]:
        typer.echo(f"  #{m['id']} {m['kind']} to {m['recipients']}: {m['attempts']} attempt(s); {m['error'] or 'not tried yet'}")


@app.command()
@guarded
def verify(
    witness: list[Path] | None = typer.Option(
        None, "--witness", help="Report manifests, saved emails, a maildir or an mbox whose audit log heads must all be in the chain."
    ),
    config: Path | None = ConfigOption,
    db: Path | None = DbOption,
) -> None:
    """Recompute the audit log's hash chain and check every sealed fact, status and decision
    against it; exit 10 naming the first row that does not match, or a head kept outside the
    database (--witness) that the chain no longer holds at its position."""
    from job.store.auditlog import verify_log
    from job.store.db import open_db
    from job.store.witness import collect_heads

    settings = _setup(config, db)
    conn = open_db(settings.db, create=False).conn
    result = verify_log(conn)
    if not result.ok:
        _fail(f"{settings.db}: audit log does not verify: {result.problem}", EXIT_TAMPERED)
    heads = [found for path in witness or () for found in collect_heads(path)]
    chain = {h for (h,) in conn.execute("SELECT row_hash FROM events")} if any(h.position is None for h in heads) else set()
    for head in heads:
        if head.position is None:
            held, where = head.hash in chain, ""
        else:
            row = conn.execute("SELECT row_hash FROM events WHERE id = ?", (head.position,)).fetchone()
            held, where = bool(row) and row[0] == head.hash, f" as event {head.position}"
        if not held:
            _fail(
                f"{settings.db}: the audit log head {head.hash} published in {head.where}{where} is not in the chain:"
                " the log was rewritten after it was published",
                EXIT_TAMPERED,
            )
    typer.echo(
        f"audit log verified: {result.rows} event(s), head {result.head}"
        + (f"; all {len(heads)} head(s) kept outside it are in the chain" if heads else "")
    )
    for note in result.notes:
        typer.echo(f"note: {note}")


@app.command()
@guarded
def init(
    path: Path = typer.Argument(Path("audit.toml"), help="Where to write the config."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write a commented audit.toml with every setting and its default."""
    from job.config import DEFAULT_CONFIG_TEXT

    if path.exists() and not force:
        raise ConfigError(f"{path}: already exists (use --force to overwrite)")
    path.write_text(DEFAULT_CONFIG_TEXT, encoding="utf-8")
    typer.echo(f"wrote {path}")


@app.command()
@guarded
def inspect(
    file: Path = typer.Argument(..., help="A ledger export or bank statement."),
    format: str | None = typer.Option(
        None,
        "--format",
        help="Read it as this format instead of detecting one (csv, quickbooks, xero, "
        "netsuite, sap, datev, camt053, mt940, ofx, bai2, xlsx).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
    rows: int = typer.Option(10, "--rows", min=0, help="How many of the first rows to show."),
    config: Path | None = ConfigOption,
) -> None:
    """Show how a file will be read: its format, column mapping, rows, totals per currency, first rows and every
    problem with its line (exit 4 if there is one). The database is not touched."""
    from job.errors import EXIT_INPUT
    from job.ledger.formats.inspect import inspect_file, render_inspection
    from job.ledger.read import ledger_format

    info = inspect_file(file, format, ledger_format(_setup(config, None)), first_rows=rows)
    typer.echo(json.dumps(info, indent=2, ensure_ascii=False) if as_json else render_inspection(info))
    if info["problems"]:
        raise typer.Exit(EXIT_INPUT)


def main() -> None:
    app(prog_name="audit")
