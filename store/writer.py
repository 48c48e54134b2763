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
import os
import queue
import threading
from concurrent.futures import Future
from pathlib import Path

from .ledger import Ledger, NormalizedEvent, RecordResult, open_ledger

MAX_BATCH = 64
_STOP = object()


class GroupWriter:
    """Record notices through one connection and thread, committing them in batches."""

    def __init__(self, path: str | Path, durability: str = "normal", max_batch: int = MAX_BATCH):
        self.path, self.durability, self.max_batch = path, durability, max_batch
        self.batches = self.notices = 0  # for tests and benchmarks
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._thread.start()

    def record_event(
        self, event: NormalizedEvent, *, source: str, verified: bool, auth: str | None = None
    ) -> RecordResult:
        """Record one notice as Ledger.record_event does; return once it is committed."""
        future: Future = Future()
        self._queue.put(((event, source, verified, auth), future))
        return future.result()

    def close(self) -> None:
        """Finish what is queued, then stop the thread and close its connection."""
        self._queue.put((_STOP, None))
        self._thread.join(timeout=10)

    def _run(self) -> None:
        self._lock_fd = os.open(f"{self.path}-writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
        with open_ledger(self.path, self.durability) as ledger:
            while True:
                items = [self._queue.get()]
                while len(items) < self.max_batch:
                    try:
                        items.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                stop = any(args is _STOP for args, _ in items)
                items = [item for item in items if item[0] is not _STOP]
                if items:
                    self._commit(ledger, items)
                if stop:
                    os.close(self._lock_fd)
                    return

    def _commit(self, ledger: Ledger, items: list) -> None:
        conn, done = ledger.conn, []
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for (event, source, verified, auth), future in items:
                    conn.execute("SAVEPOINT notice")
                    try:
                        done.append((future, ledger._record(event, source, verified, auth, None)))
                    except Exception as e:  # noqa: BLE001 - handed to that notice's request
                        conn.execute("ROLLBACK TO notice")
                        done.append((future, e))
                    conn.execute("RELEASE notice")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except Exception as e:  # noqa: BLE001 - nothing of the batch is durable: every request fails
            for _, future in items:
                future.set_exception(e)
            return
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        self.batches += 1
        self.notices += len(items)
        for future, outcome in done:
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)


_writers: dict = {}
_lock = threading.Lock()


def writer_for(path: str | Path, durability: str = "normal") -> GroupWriter:
    """Return this process's writer for a ledger, starting it on first use (after a fork)."""
    key = (os.getpid(), str(path), durability)
    with _lock:
        writer = _writers.get(key)
        if writer is None:
            writer = _writers[key] = GroupWriter(path, durability)
        return writer


def close_writers() -> None:
    """Stop every writer of this process (tests, and before a process exits)."""
    with _lock:
        writers = [w for (pid, *_), w in _writers.items() if pid == os.getpid()]
        _writers.clear()
    for writer in writers:
        writer.close()
