"""Opening SQLite ledger connections (PostgreSQL's are in store/pg.py)."""

import os
import sqlite3
from pathlib import Path

from .errors import LedgerUnavailable
from .identity import LedgerConnection, refuse_if_gone

BUSY_TIMEOUT_S = 5.0
WAL_SIZE_LIMIT = 4 * 1024 * 1024


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
    # 8 MiB per connection (a worker has one per thread) bounds a worker's memory.
    conn.execute("PRAGMA cache_size=-8000")
    # When SQLite starts the write-ahead log from the top again, it cuts the file back to
    # this size instead of keeping the longest it ever was (store/checkpoint.py).
    conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
    return conn
