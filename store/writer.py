"""Group commit: one writer thread per process, concurrent notices share one transaction.

A commit writes every page the transaction touched to the WAL (about fifteen for a notice
that creates a job), and under DURABILITY=full it also waits for an fsync. Requests that
arrive while a commit is under way wait for the next one together, so that cost is paid
once per batch instead of once per notice, and the process holds SQLite's write lock once
per batch instead of each request thread queuing for it with SQLite's sleeping busy
handler. Each notice runs in its own SAVEPOINT, so a notice that fails rolls back alone;
each caller gets its answer only after the COMMIT that made its notice durable.

Between processes (gunicorn workers), the writers take turns on an flock of
`<ledger>-writer.lock` before BEGIN IMMEDIATE: a waiting writer sleeps in the kernel and
wakes the moment the lock is free, where SQLite's own busy handler polls with sleeps of up
to 100 ms and, with four workers, put the p99 past a second (bench/).
"""

import fcntl
import logging
import os
import queue
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

from .errors import LedgerUnavailable, classify
from .ledger import Ledger, NormalizedEvent, RecordResult, open_ledger

MAX_BATCH = 64
# Longest a request waits for its commit. Past it the answer is 503 and the notice is
# withdrawn if the writer has not started on it; a sender retries, and the dedup key makes
# a notice committed after all a duplicate. Well under gunicorn's worker timeout.
WAIT_S = 10.0
_STOP = object()
log = logging.getLogger("jobledger.writer")


class GroupWriter:
    """Record notices through one connection and thread, committing them in batches.

    The thread never dies of a ledger failure: the batch that met it fails (each caller
    gets the error), the connection and lock file are closed, and the next batch opens
    them again, so the writer recovers by itself once the cause is gone.
    """

    def __init__(
        self,
        path: str | Path,
        durability: str = "normal",
        max_batch: int = MAX_BATCH,
        wait_s: float = WAIT_S,
    ):
        self.path, self.durability, self.max_batch = path, durability, max_batch
        self.wait_s = wait_s
        self.batches = self.notices = 0  # for tests and benchmarks
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._ledger: Ledger | None = None
        self._lock_fd: int | None = None
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """Tell whether the writer thread is running."""
        return self._thread.is_alive()

    def record_event(
        self, event: NormalizedEvent, *, source: str, verified: bool, auth: str | None = None
    ) -> RecordResult:
        """Record one notice as Ledger.record_event does; return once it is committed.

        :raises LedgerUnavailable: the ledger could not take it, or not within `wait_s`
        """
        future: Future = Future()
        self._queue.put(((event, source, verified, auth), future))
        try:
            return future.result(timeout=self.wait_s)
        except FutureTimeout:
            withdrawn = future.cancel()  # only if the writer has not taken it up yet
            raise LedgerUnavailable(
                f"the ledger did not commit the notice within {self.wait_s:g} s"
                + ("" if withdrawn else "; it may still be recorded (a retry is a duplicate)"),
                "timeout",
            ) from None

    def close(self) -> None:
        """Finish what is queued, then stop the thread and close its connection."""
        self._queue.put((_STOP, None))
        self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            while True:
                items = [self._queue.get()]
                while len(items) < self.max_batch:
                    try:
                        items.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                stop = any(args is _STOP for args, _ in items)
                # A request that gave up waiting cancelled its future: leave it out.
                items = [
                    item
                    for item in items
                    if item[0] is not _STOP and item[1].set_running_or_notify_cancel()
                ]
                if items:
                    self._write(items)
                if stop:
                    return
        finally:
            self._release()

    def _write(self, items: list) -> None:
        try:
            done = self._commit(self._open(), items)
        except BaseException as e:  # nothing of the batch is known durable: every request fails
            failure = classify(e) or e
            if isinstance(failure, LedgerUnavailable):
                log.error("writer.unavailable", extra={"error": str(failure)})
            else:
                log.error("writer.failed", exc_info=True)
            self._release()  # reopened for the next batch: a failed connection is not reused
            for _, future in items:
                future.set_exception(failure)
            if not isinstance(e, Exception):
                raise
            return
        self.batches += 1
        self.notices += len(items)
        for future, outcome in done:
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    def _open(self) -> Ledger:
        if self._lock_fd is None:
            lock = f"{self.path}-writer.lock"
            try:
                self._lock_fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as e:
                raise LedgerUnavailable(
                    f"cannot open the writers' lock file {lock}: {e.strerror}", "lock"
                ) from None
        if self._ledger is None:
            self._ledger = open_ledger(self.path, self.durability)
        return self._ledger

    def _release(self) -> None:
        ledger, fd, self._ledger, self._lock_fd = self._ledger, self._lock_fd, None, None
        if ledger is not None:
            try:
                ledger.close()
            except Exception:  # noqa: BLE001 - closing a failed connection may fail too
                pass
        if fd is not None:
            os.close(fd)

    def _commit(self, ledger: Ledger, items: list) -> list:
        conn, fd = ledger.conn, self._lock_fd
        done: list[tuple[Future, RecordResult | Exception]] = []
        if fd is None:  # _open() sets it before any commit
            raise LedgerUnavailable("the writers' lock file is not open", "lock")
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            # The path must still name the file this connection writes to, before and after
            # the commit: a notice committed to a replaced or deleted file is not acked.
            conn.check_identity()
            conn.execute("BEGIN IMMEDIATE")
            try:
                for (event, source, verified, auth), future in items:
                    conn.execute("SAVEPOINT notice")
                    try:
                        result = ledger.record_in_transaction(
                            event, source=source, verified=verified, auth=auth
                        )
                        done.append((future, result))
                    except Exception as e:  # noqa: BLE001 - handed to that notice's request
                        conn.execute("ROLLBACK TO notice")
                        done.append((future, e))
                    conn.execute("RELEASE notice")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.check_identity()
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
        return done


_writers: dict = {}
_lock = threading.Lock()


def writer_for(path: str | Path, durability: str = "normal") -> GroupWriter:
    """Return this process's writer for a ledger, starting it on first use (after a fork)."""
    key = (os.getpid(), str(path), durability)
    with _lock:
        writer = _writers.get(key)
        if writer is None or not writer.alive:  # a thread that died is replaced
            writer = _writers[key] = GroupWriter(path, durability)
        return writer


def close_writers() -> None:
    """Stop every writer of this process (tests, and before a process exits)."""
    with _lock:
        writers = [w for (pid, *_), w in _writers.items() if pid == os.getpid()]
        _writers.clear()
    for writer in writers:
        writer.close()
