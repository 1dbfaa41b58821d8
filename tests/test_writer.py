"""db.Writer: a run's writes in order, inline or on a background thread, inside one transaction.

A real SQLite file; the run's own pattern (transaction, submit, compose meanwhile, close) is
what these tests drive.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from job.store.db import Writer, open_db, transaction

LONG_INSERT = (  # minutes of work unless interrupted
    "INSERT INTO t (x) WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 1000000000) SELECT x FROM c"
)


@pytest.fixture()
def db(tmp_path: Path):
    database = open_db(tmp_path / "audit.db")
    database.conn.execute("CREATE TABLE t (x INTEGER)")
    yield database
    database.conn.close()


def rows(db) -> list[int]:
    return [x for (x,) in db.conn.execute("SELECT x FROM t ORDER BY rowid")]


@pytest.mark.parametrize("background", [False, True])
def test_writes_happen_in_the_order_submitted_and_commit_together(db, background: bool) -> None:
    threads = set()

    def put(conn, value: int) -> None:
        threads.add(threading.current_thread().name)
        conn.execute("INSERT INTO t (x) VALUES (?)", (value,))

    with transaction(db) as conn:
        writer = Writer(conn, background=background)
        for value in range(1, 6):
            writer.submit(put, value)
        writer.close()
        conn.execute("INSERT INTO t (x) VALUES (6)")  # the caller's own write, after the writer's
    assert rows(db) == [1, 2, 3, 4, 5, 6]
    assert threads == ({"audit-writer"} if background else {threading.current_thread().name})


def test_a_failing_write_stops_the_rest_and_the_transaction_rolls_back(db) -> None:
    def fail(conn) -> None:
        conn.execute("INSERT INTO no_such_table VALUES (1)")

    with pytest.raises(Exception, match="no_such_table"):
        with transaction(db) as conn:
            writer = Writer(conn, background=True)
            writer.submit(lambda c: c.execute("INSERT INTO t (x) VALUES (1)"))
            writer.submit(fail)
            writer.submit(lambda c: c.execute("INSERT INTO t (x) VALUES (3)"))
            writer.close()
    assert rows(db) == []


def test_the_caller_failing_meanwhile_interrupts_the_write_and_nothing_is_recorded(db) -> None:
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="composing failed"):
        with transaction(db) as conn:
            writer = Writer(conn, background=True)
            writer.submit(lambda c: c.execute("INSERT INTO t (x) VALUES (1)"))
            writer.submit(lambda c: c.execute(LONG_INSERT))
            writer.submit(lambda c: c.execute("INSERT INTO t (x) VALUES (2)"))
            try:
                time.sleep(0.3)  # the long insert is under way
                raise RuntimeError("composing failed")
            except BaseException:
                writer.close(cancel=True)
                raise
    assert time.monotonic() - started < 30  # interrupted, not waited for
    assert rows(db) == []
    assert not db.conn.in_transaction
    with transaction(db) as conn:  # the connection is usable again
        conn.execute("INSERT INTO t (x) VALUES (7)")
    assert rows(db) == [7]


def test_an_interrupt_while_waiting_stops_the_write_before_the_rollback(db, monkeypatch) -> None:
    with pytest.raises(KeyboardInterrupt):
        with transaction(db) as conn:
            writer = Writer(conn, background=True)
            writer.submit(lambda c: c.execute("INSERT INTO t (x) VALUES (1)"))
            writer.submit(lambda c: c.execute(LONG_INSERT))
            time.sleep(0.3)
            thread = writer._thread
            real_join = thread.join
            calls = []

            def join(timeout=None):  # the first wait is cut short, as Ctrl-C would
                calls.append(timeout)
                if len(calls) == 1:
                    raise KeyboardInterrupt
                return real_join(timeout)

            monkeypatch.setattr(thread, "join", join)
            writer.close()
    assert len(calls) == 2 and not thread.is_alive()
    assert rows(db) == [] and not db.conn.in_transaction
