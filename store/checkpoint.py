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

A PASSIVE checkpoint never empties the log, though: SQLite starts writing it from the top
again only when a writer finds every frame copied and no reader left in it, which under a
steady stream of callbacks never happens, so the log would grow by every page every notice
writes until the disk is full; and with the disk full a checkpoint cannot grow the ledger
file to take the log's pages in. So the log is also emptied (a TRUNCATE checkpoint) when
the writers let it: at once when no commit came since the last turn, and, under load, once
it passes TRUNCATE_PAGES, holding the writers' flock (store/writer.py) for the few
milliseconds it takes. A reader in the middle of a read makes it give up after
TRUNCATE_WAIT_MS, to try again at the next turn.
"""

import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import cast

from .connection import connect
from .errors import LedgerError
from .identity import LedgerConnection

INTERVAL_S = 1.0
BACKSTOP_PAGES = 10_000
TRUNCATE_PAGES = 1_000  # about 4 MB: past it the log is emptied even under load
TRUNCATE_WAIT_MS = 100  # how long an emptying checkpoint waits for readers to move on
LOOK_S = 0.025  # how often the log's size is looked at between turns (a stat)
log = logging.getLogger("jobledger.checkpoint")


class Checkpointer:
    """A daemon thread that checkpoints the ledger's WAL every `interval_s`, and at once when
    the log grows past TRUNCATE_PAGES (a burst of callbacks can write that in well under a
    second)."""

    def __init__(self, path: str | Path, interval_s: float | None = None):
        self.path = str(path)
        self.interval_s = INTERVAL_S if interval_s is None else interval_s
        self.runs = 0  # checkpoints run by this process (tests)
        self.truncations = 0  # of them, those that emptied the log
        self._frames = 0  # the log's length at the last turn
        self._size = 0  # its file's size then
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
        last = time.monotonic()
        try:
            while not self._stop.wait(min(LOOK_S, self.interval_s)):
                if time.monotonic() - last < self.interval_s and not self._growing():
                    continue
                last = time.monotonic()
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
                            conn.execute(f"PRAGMA busy_timeout={TRUNCATE_WAIT_MS}")
                        conn.check_identity()
                        self._turn(conn)
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

    def _growing(self) -> bool:
        """Tell whether the log's file is long and longer than at the last turn.

        SQLite writes a log it started again from the top over the old file without
        growing it: only a longer file means a long log.
        """
        try:
            size = os.path.getsize(f"{self.path}-wal")
        except OSError:
            return False
        return size >= TRUNCATE_PAGES * 4096 and size > self._size

    def _turn(self, conn: LedgerConnection) -> None:
        """Copy the log into the ledger; empty it when the writers let it (see above)."""
        _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.runs += 1
        with contextlib.suppress(OSError):
            self._size = os.path.getsize(f"{self.path}-wal")
        idle = frames > 0 and frames == self._frames
        self._frames = frames
        if not (idle or frames >= TRUNCATE_PAGES):
            return
        lock = os.open(f"{self.path}-writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                # Idle: only if no writer is at it. Under load: wait for a commit to end.
                fcntl.flock(lock, fcntl.LOCK_EX | (fcntl.LOCK_NB if idle else 0))
            except BlockingIOError:
                return
            busy, frames, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            os.close(lock)  # lets go of the flock
        if not busy:
            self.truncations += 1
            self._frames, self._size = frames, 0
