"""Group commit without a writer thread: the request that finds no commit under way makes one.

A commit writes every page the transaction touched to the WAL (about fifteen for a notice
that creates a job), and under DURABILITY=full it also waits for an fsync. A request queues
its notice; if no other request of the process is committing, it becomes the leader: it
takes every queued notice (its own included) and commits them in one transaction on the
process's connection, in its own thread, then wakes the requests whose notices it carried.
Requests that arrive meanwhile wait for the next commit together, so its cost is paid once
per batch, and a request that meets no other pays no hand-off to another thread at all
(a dedicated writer thread cost two thread wake-ups per notice under load, bench/). Each
notice runs in its own SAVEPOINT, so a notice that fails rolls back alone; each caller
gets its answer only after the COMMIT that made its notice durable.

Between processes (gunicorn workers), the leaders take turns on an flock of
`<ledger>-writer.lock` before BEGIN IMMEDIATE: a waiting leader sleeps in the kernel and
wakes the moment the lock is free, where SQLite's own busy handler polls with sleeps of up
to 100 ms and, with four workers, put the p99 past a second (bench/). That kernel wait runs
on a small helper thread so that it is bounded: past the request's deadline the batch gets
503 and nothing of it is written.
"""

import collections
import fcntl
import logging
import os
import queue
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

from .checkpoint import BACKSTOP_PAGES, Checkpointer
from .errors import LedgerUnavailable, classify
from .ledger import Ledger, NormalizedEvent, RecordResult, open_ledger

MAX_BATCH = 64
# Longest a request waits for its commit. Past it the answer is 503 and the notice is
# withdrawn if no commit has taken it up; a sender retries, and the dedup key makes a
# notice committed after all a duplicate. Well under gunicorn's worker timeout.
WAIT_S = 10.0
log = logging.getLogger("jobledger.writer")


class _Notice:
    """One queued notice and, once its batch is over, its outcome."""

    __slots__ = ("args", "taken", "done", "result", "error")

    def __init__(self, args: tuple):
        self.args = args
        self.taken = self.done = False  # taken: in a batch under way
        self.result: RecordResult | None = None
        self.error: BaseException | None = None


class GroupWriter:
    """Record notices through one connection per process, committing them in batches.

    Never left broken by a ledger failure: the batch that met it fails (each caller gets
    the error), the connection and lock file are closed, and the next batch opens them
    again, so the writer recovers by itself once the cause is gone.
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
        self._cond = threading.Condition(threading.Lock())
        self._queue: collections.deque[_Notice] = collections.deque()
        self._leading = False
        self._ledger: Ledger | None = None
        self._lock_fd: int | None = None
        self._lock_waiter: _LockWaiter | None = None
        self._checkpointer = Checkpointer(path)

    def record_event(
        self, event: NormalizedEvent, *, source: str, verified: bool, auth: str | None = None
    ) -> RecordResult:
        """Record one notice as Ledger.record_event does; return once it is committed.

        :raises LedgerUnavailable: the ledger could not take it, or not within `wait_s`
        """
        notice = _Notice((event, source, verified, auth))
        deadline = time.monotonic() + self.wait_s
        with self._cond:
            self._queue.append(notice)
            while not notice.done:
                if not self._leading:
                    self._lead(notice, deadline)
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if not notice.taken:
                        self._queue.remove(notice)
                    raise LedgerUnavailable(
                        f"the ledger did not commit the notice within {self.wait_s:g} s"
                        + (
                            "; it may still be recorded (a retry is a duplicate)"
                            if notice.taken
                            else ""
                        ),
                        "timeout",
                    )
                self._cond.wait(remaining)
        if notice.error is not None:
            raise notice.error
        assert notice.result is not None
        return notice.result

    def _lead(self, own: _Notice, deadline: float) -> None:
        """Commit what is queued, in this thread; called and returning with `_cond` held.

        The batch is taken only once this process holds the writers' lock: notices that
        arrive while another process commits join it.
        """
        self._leading = True
        self._cond.release()
        try:
            try:
                ledger = self._open()
                self._lock(deadline)
            except BaseException as e:
                with self._cond:
                    if not own.taken:  # still queued: nobody takes while this one leads
                        self._queue.remove(own)
                    own.error, own.done = self._failure(e), True
                if not isinstance(e, Exception):
                    raise
                return
            fd = self._lock_fd
            try:
                with self._cond:
                    size = min(len(self._queue), self.max_batch)
                    batch = [self._queue.popleft() for _ in range(size)]
                    for notice in batch:
                        notice.taken = True
                self._write(ledger, batch)
            finally:
                if fd is not None and self._lock_fd == fd:  # a failure closed it: let go
                    fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            self._cond.acquire()
            self._leading = False
            self._cond.notify_all()

    def close(self) -> None:
        """Wait for a commit under way, then close the connection and the lock file."""
        with self._cond:
            while self._leading:
                self._cond.wait()
            self._release()
            if self._lock_waiter is not None:
                self._lock_waiter.stop()
                self._lock_waiter = None
        self._checkpointer.stop()

    def _failure(self, e: BaseException) -> BaseException:
        """Log a ledger failure, drop the connection and lock file, and return what to raise."""
        failure = classify(e) or e
        if isinstance(failure, LedgerUnavailable):
            log.error("writer.unavailable", extra={"error": str(failure)})
        else:
            log.error("writer.failed", exc_info=e)
        self._release()  # reopened for the next batch: a failed connection is not reused
        return failure

    def _write(self, ledger: Ledger, batch: list[_Notice]) -> None:
        """Commit `batch` (the caller holds the writers' lock) and hand out the outcomes."""
        try:
            done = self._commit(ledger, batch)
        except BaseException as e:  # nothing of the batch is known durable: every request fails
            failure = self._failure(e)
            for notice in batch:
                notice.error, notice.done = failure, True
            if not isinstance(e, Exception):
                raise
            return
        self.batches += 1
        self.notices += len(batch)
        for notice, outcome in done:
            if isinstance(outcome, Exception):
                notice.error = outcome
            else:
                notice.result = outcome
            notice.done = True

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
            # Checkpoints run on their own thread (store/checkpoint.py); past this many
            # pages a commit still runs one itself.
            self._ledger.conn.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
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

    def _lock(self, deadline: float) -> None:
        """Take the writers' flock; wait for another process's commit at most until `deadline`."""
        fd = self._lock_fd
        if fd is None:  # _open() sets it first
            raise LedgerUnavailable("the writers' lock file is not open", "lock")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        if self._lock_waiter is None:
            self._lock_waiter = _LockWaiter()
        taken = self._lock_waiter.flock(fd)
        try:
            taken.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            # The flock may still be granted later: this descriptor is given up, and closed
            # (which lets go of the lock) once the wait ends.
            self._lock_fd = None
            taken.add_done_callback(lambda _: os.close(fd))
            raise LedgerUnavailable(
                f"the ledger did not commit the notice within {self.wait_s:g} s: another"
                " process held the writers' lock all that time",
                "timeout",
            ) from None

    @staticmethod
    def _record(ledger: Ledger, notice: _Notice) -> RecordResult:
        event, source, verified, auth = notice.args
        return ledger.record_in_transaction(event, source=source, verified=verified, auth=auth)

    def _commit(self, ledger: Ledger, batch: list[_Notice]) -> list:
        conn = ledger.conn
        done: list[tuple[_Notice, RecordResult | Exception]] = []
        # The path must still name the file this connection writes to, before and after
        # the commit: a notice committed to a replaced or deleted file is not acked.
        conn.check_identity()
        conn.execute("BEGIN IMMEDIATE")
        try:
            if len(batch) == 1:  # alone: its own transaction, no savepoint needed
                notice = batch[0]
                try:
                    done.append((notice, self._record(ledger, notice)))
                except Exception as e:  # noqa: BLE001 - handed to that notice's request
                    conn.execute("ROLLBACK")
                    return [(notice, e)]
            else:
                for notice in batch:
                    conn.execute("SAVEPOINT notice")
                    try:
                        done.append((notice, self._record(ledger, notice)))
                    except Exception as e:  # noqa: BLE001 - handed to that notice's request
                        conn.execute("ROLLBACK TO notice")
                        done.append((notice, e))
                    conn.execute("RELEASE notice")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.check_identity()
        return done


class _LockWaiter:
    """A daemon thread that waits for flocks in the kernel, so the waiter can give up."""

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="ledger-lock-wait", daemon=True)
        self._thread.start()

    def flock(self, fd: int) -> Future:
        taken: Future = Future()
        self._requests.put((fd, taken))
        return taken

    def stop(self) -> None:
        self._requests.put((None, None))

    def _run(self) -> None:
        while True:
            fd, taken = self._requests.get()
            if fd is None:
                return
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as e:
                taken.set_exception(e)
            else:
                taken.set_result(None)


_writers: dict = {}
_lock = threading.Lock()


def writer_for(path: str | Path, durability: str = "normal") -> GroupWriter:
    """Return this process's writer for a ledger, made on first use (after a fork)."""
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
