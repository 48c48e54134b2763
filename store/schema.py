"""Creating, migrating and checking a ledger on either engine (`init-db`, start-up checks)."""

import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from sqlite_utils import Database

from .backend import is_url
from .connection import BUSY_TIMEOUT_S, connect
from .errors import LedgerUnavailable, classify
from .identity import refuse_if_gone
from .migrations import migrations


def migrate(database: str | Path) -> list[str]:
    """Create or migrate the ledger (a file path or a postgresql:// URL); return what was applied.

    Safe to run from several hosts at once: on PostgreSQL under an advisory lock.
    """
    if is_url(database):
        from . import pg_schema
        from .pg import connect as connect_pg

        # Waits, however long, for another host's init-db to finish its migrations.
        conn = connect_pg(str(database), wait_for_locks=True)
        try:
            return pg_schema.migrate(conn)
        except Exception as e:  # a read-only server, one gone meanwhile: say so, no trace
            unavailable = classify(e)
            if unavailable is None or unavailable is e:
                raise
            raise unavailable from e
        finally:
            conn.close()
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(f"{database}-migrate.lock"):
        with Database(connect(database, create=True), execute_plugins=False) as db:
            _enable_wal(db.conn)
            pending = [m.name for m in migrations.pending(db)]
            migrations.apply(db)
    return pending


@contextlib.contextmanager
def _exclusive(lock_path: str) -> Iterator[None]:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the flock


def _enable_wal(conn: sqlite3.Connection) -> None:
    # Switching to WAL needs the file to itself, and SQLite does not wait for that: a
    # service worker reading the ledger at that moment makes it fail at once with
    # SQLITE_BUSY. Migrations run rarely, so retry for a bounded time.
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode=wal")
            return
        except sqlite3.OperationalError as e:
            if classify(e) is None or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def pending_migrations(database: str | Path) -> list[str]:
    """Return the names of the migrations the ledger still needs (all of them if new).

    :raises LedgerUnavailable: the PostgreSQL server cannot be reached
    """
    if is_url(database):
        from . import pg_schema
        from .pg import connect as connect_pg

        conn = connect_pg(str(database))
        try:
            return pg_schema.pending(conn)
        finally:
            conn.close()
    with Database(connect(database), execute_plugins=False) as db:
        return [m.name for m in migrations.pending(db)]


def ledger_problem(database: str | Path) -> str | None:
    """Return why the ledger cannot be used yet, or None if it can.

    A missing file must not be opened (SQLite would create an empty one), nor a ledger with
    pending migrations: every write would fail on a missing table or column. An unreachable
    PostgreSQL server is named by its URL, without the password.

    :raises LedgerUnavailable: this process saw the SQLite file deleted or replaced
      (store.identity)
    """
    if is_url(database):
        from .backend import redact

        where = f"ledger at RECEIVER_DATABASE={redact(str(database))}"
        try:
            pending = pending_migrations(database)
        except LedgerUnavailable as e:
            return str(e)
    else:
        refuse_if_gone(str(database))
        if not Path(database).is_file():
            return f"no ledger at {database}: run `flask --app wsgi init-db`"
        where = f"ledger at {database}"
        pending = pending_migrations(database)
    if pending:
        return f"{where} needs {', '.join(pending)}: run `flask --app wsgi init-db`"
    return None
