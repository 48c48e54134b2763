"""Opening ledger connections, and running write transactions on either engine."""

import contextlib
import os
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from .backend import SQLITE, Backend
from .errors import LedgerError, LedgerUnavailable, classify, is_retryable_in_place
from .identity import LedgerConnection, refuse_if_gone

BUSY_TIMEOUT_S = 5.0
WAL_SIZE_LIMIT = 4 * 1024 * 1024
MAX_RETRIES = 8
T = TypeVar("T")


def connect(
    path: str | Path, durability: str = "normal", *, create: bool = False
) -> sqlite3.Connection:
    """Open an SQLite connection with the ledger's pragmas (WAL is a property of the file).

    The file is opened read-write or not at all. SQLite would otherwise fall back to a
    read-only connection, and create the `-wal` and `-shm` files with the read-only file's
    mode, so that writes keep failing after the ledger is writable again; or create an
    empty file where the ledger went missing. The connection remembers which file it
    opened (`check_identity`, see store/identity.py).

    :param durability: `normal` survives a process crash; `full` fsyncs every commit so an
      acknowledged notice also survives a power loss
    :param create: create the file if missing (migrations only)
    """
    refuse_if_gone(str(path))
    if os.path.exists(path) and not os.access(path, os.R_OK | os.W_OK):
        raise LedgerUnavailable(
            f"the ledger cannot take writes now: the file {path} is not writable", "read-only"
        )
    uri = Path(path).absolute().as_uri() + ("?mode=rwc" if create else "?mode=rw")
    conn = sqlite3.connect(
        uri, timeout=BUSY_TIMEOUT_S, check_same_thread=False, uri=True, factory=LedgerConnection
    )
    conn.remember_file(str(path))
    conn.execute("PRAGMA synchronous=" + ("FULL" if durability == "full" else "NORMAL"))
    conn.execute("PRAGMA temp_store=MEMORY")
    # 8 MiB per connection (a worker has one per thread): bounds worker RSS (bench/).
    conn.execute("PRAGMA cache_size=-8000")
    # When SQLite starts the write-ahead log from the top again, it cuts the file back to
    # this size instead of keeping the longest it ever was (store/checkpoint.py).
    conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
    return conn


@contextlib.contextmanager
def write_transaction(target: Any) -> Iterator[Any]:
    """Run a read-then-write block in one write transaction; commit, or roll back on error.

    `target` is a Ledger (or anything with `.conn`, such as a sqlite-utils Database).
    SQLite begins with `BEGIN IMMEDIATE` (a deferred transaction that has read cannot
    always become a writer); PostgreSQL with `BEGIN`, its reads locking rows as needed.
    """
    conn = target.conn
    conn.execute(getattr(target, "backend", SQLITE).begin)
    try:
        yield target
        conn.commit()
    except BaseException:
        _quiet_rollback(conn)
        raise


def _quiet_rollback(conn: Any) -> None:
    try:
        conn.rollback()
    except Exception:  # noqa: BLE001 - the connection is gone; the first error is the news
        pass


class LedgerBase:
    """The connection and engine a Ledger works with, and its transaction runner."""

    backend: Backend = SQLITE
    conn: Any = None  # sqlite3.Connection, or store.pg.PgConnection
    db: Any = None  # the sqlite-utils Database on SQLite, else None

    def _write(self, fn: Callable[..., T], *args: Any, pipelined: bool = False) -> T:
        """Run `fn(*args)` in one write transaction and commit it.

        PostgreSQL rolls back one side of a deadlock or serialization conflict; that
        transaction is run again from the start, after a short random pause. A transient
        error (busy, disk full, server gone) becomes LedgerUnavailable.

        :param pipelined: on PostgreSQL, run the transaction in pipeline mode: a statement
          whose result `fn` does not fetch goes out with the next one that it does, and
          COMMIT with them. Only for `fn` that reads nothing but fetched rows (a cursor's
          `rowcount` is not known until its result arrives).
        """
        conn, backend = self.conn, self.backend
        batched = pipelined and backend.pipelines
        attempt = 0
        while True:
            try:
                try:
                    with conn.pipeline() if batched else contextlib.nullcontext():
                        conn.execute(backend.begin)
                        result = fn(*args)
                        conn.commit()
                except BaseException:
                    _quiet_rollback(conn)
                    raise
                return result
            except LedgerError:
                raise
            except Exception as e:
                if backend.retries and attempt < MAX_RETRIES and is_retryable_in_place(e):
                    attempt += 1
                    time.sleep(random.uniform(0, 0.005 * 2**attempt))
                    continue
                unavailable = classify(e)
                if unavailable is not None:
                    raise unavailable from e
                raise
