"""WAL checkpoints off the request path.

In WAL mode each commit appends the pages it changed to `<ledger>-wal`, and a checkpoint
copies them back into the ledger file. By default SQLite runs one inside the commit that
takes the log past 1,000 pages, while that commit holds the write lock: about every 75
notices one callback paid for copying several hundred pages and two fsyncs while every
other writer waited (bench/: about 100 µs per notice on average, all of it in the tail).

The web workers' writer instead checkpoints by itself only past 10,000 pages, a backstop,
and a thread per process runs a PASSIVE checkpoint every second on a connection of its
own. A PASSIVE checkpoint copies what no reader still needs and blocks neither writers nor
readers; pages that changed several times in that second are copied once. One process
at a time checkpoints (an flock on `<ledger>-checkpoint.lock`; the others skip their
turn). Queue consumers and the other commands keep SQLite's default.
"""

import fcntl
import logging
import os
import sqlite3
import threading
from pathlib import Path
from typing import cast

from .connection import connect
from .errors import LedgerError
from .identity import LedgerConnection

INTERVAL_S = 1.0
BACKSTOP_PAGES = 10_000
log = logging.getLogger("jobledger.checkpoint")


class Checkpointer:
    """A daemon thread that checkpoints the ledger's WAL every `interval_s`."""

    def __init__(self, path: str | Path, interval_s: float | None = None):
        self.path = str(path)
        self.interval_s = INTERVAL_S if interval_s is None else interval_s
        self.runs = 0  # checkpoints run by this process (tests)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ledger-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread, waiting for a checkpoint under way."""
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        conn: LedgerConnection | None = None
        fd: int | None = None
        failing = False
        try:
            while not self._stop.wait(self.interval_s):
                try:
                    if fd is None:
                        fd = os.open(f"{self.path}-checkpoint.lock", os.O_RDWR | os.O_CREAT, 0o600)
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        continue  # another process is checkpointing
                    try:
                        if conn is None:
                            conn = cast(LedgerConnection, connect(self.path))
                        conn.check_identity()
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                        self.runs += 1
                    finally:
                        fcntl.flock(fd, fcntl.LOCK_UN)
                    failing = False
                except (OSError, sqlite3.Error, LedgerError) as e:
                    # The writers meet the same fault and answer 503 naming it; say it once.
                    if not failing:
                        log.warning("checkpoint.failed", extra={"error": str(e)})
                    failing = True
                    if conn is not None:
                        conn.close()
                        conn = None
        finally:
            if conn is not None:
                conn.close()
            if fd is not None:
                os.close(fd)
