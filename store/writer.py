"""Group commit for the web workers on SQLite: the request that finds no commit under way
makes one.

A request queues its write (a notice to record, a body to quarantine); if no other request
of the process is committing, it becomes the leader: it takes every queued write (its own
included) and commits them in one transaction on the process's connection, through the
ledger's one transaction runner (store/session.py), each write in a SAVEPOINT of its own so
that one that fails rolls back alone. Requests that arrive meanwhile wait for the next
commit together, so its cost (the WAL pages, and an fsync under DURABILITY=full) is paid
once per batch. Each caller gets its answer only after the COMMIT that made its write
durable.

Between processes (gunicorn workers), leaders take turns on an flock of
`<ledger>-writer.lock` before BEGIN IMMEDIATE: a waiting leader sleeps in the kernel and
wakes the moment the lock is free, where SQLite's busy handler polls with sleeps. That wait
runs on a small helper thread so that it is bounded: past the request's deadline the batch
gets 503 and nothing of it is written.
"""

import collections
import fcntl
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, TypeVar

from .checkpoint import BACKSTOP_PAGES, Checkpointer
from .errors import LedgerUnavailable, classify
from .ledger import Ledger, open_ledger
from .notices import NormalizedEvent, RecordResult

MAX_BATCH = 64
# Longest a request waits for its commit: its answer, 200 or 503, must reach a sender
# that gives up after 5 s (Alibaba VOD). Past it the write is withdrawn if no commit has
# taken it up; a sender retries, and the dedup key makes a notice committed after all a
# duplicate.
WAIT_S = 4.0
log = logging.getLogger("jobledger.writer")
T = TypeVar("T")


class _Write:
    """One queued write and, once its batch is over, its outcome."""

    __slots__ = ("fn", "taken", "done", "result", "error")

    def __init__(self, fn: Callable[[Ledger], Any]):
        self.fn = fn
        self.taken = self.done = False  # taken: in a batch under way
        self.result: Any = None
        self.error: BaseException | None = None


class Front:
    """What a request writes through: a notice to record, a body to quarantine.

    Subclasses say how one write is run (`write`); the rest is the same on both engines.
    """

    def write(self, fn: Callable[[Ledger], T]) -> T:
        """Run `fn(ledger)` in a write transaction; return its result once committed."""
        raise NotImplementedError

    def record_event(
        self, event: NormalizedEvent, *, source: str, verified: bool, auth: str | None = None
    ) -> RecordResult:
        """Record one notice as `Ledger.notices.record` does; return once it is committed."""
        return self.write(
            lambda ledger: ledger.notices.record_in_transaction(event, source, verified, auth)
        )

    def quarantine(self, **item: Any) -> int:
        """Keep a body as `Ledger.quarantine.keep` does; return its id once committed."""
        return self.write(lambda ledger: ledger.quarantine.keep_in_transaction(**item))


class DirectWriter(Front):
    """Each write in a transaction of its own on one ledger connection (PostgreSQL, whose
    server groups concurrent commits by itself)."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def write(self, fn: Callable[[Ledger], T]) -> T:
        """Run `fn(ledger)` in a (pipelined) transaction of its own."""
        return self.ledger.session.write(fn, self.ledger, pipelined=True)


class GroupWriter(Front):
    """Write through one connection per process, committing the writes of requests in batches.

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
        self.batches = self.writes = 0  # for tests and benchmarks
        self._cond = threading.Condition(threading.Lock())
        self._queue: collections.deque[_Write] = collections.deque()
        self._leading = False
        self._ledger: Ledger | None = None
        self._lock_fd: int | None = None
        self._lock_waiter: _LockWaiter | None = None
        self._checkpointer = Checkpointer(path)

    def write(self, fn: Callable[[Ledger], T]) -> T:
        """Run `fn(ledger)` in the next group commit; return its result once committed.

        `fn` runs in a SAVEPOINT of the batch's transaction (store/session.py), so if it
        raises, what it did is rolled back alone and its caller gets the error.

        :raises LedgerUnavailable: the ledger could not take it, or not within `wait_s`
        """
        queued = _Write(fn)
        deadline = time.monotonic() + self.wait_s
        with self._cond:
            self._queue.append(queued)
            while not queued.done:
                if not self._leading:
                    self._lead(queued, deadline)
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._give_up(queued)
                self._cond.wait(remaining)
        if queued.error is not None:
            raise queued.error
        return queued.result

    def _give_up(self, queued: _Write) -> None:
        """Withdraw a write whose wait ran out (called with `_cond` held); raise 503's error."""
        if not queued.taken:
            self._queue.remove(queued)
        raise LedgerUnavailable(
            f"the ledger did not commit the write within {self.wait_s:g} s"
            + ("; it may still be recorded (a retry is a duplicate)" if queued.taken else ""),
            "timeout",
        )

    def _lead(self, own: _Write, deadline: float) -> None:
        """Commit what is queued, in this thread; called and returning with `_cond` held.

        The batch is taken only once this process holds the writers' lock: writes that
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
                    for queued in batch:
                        queued.taken = True
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

    def _write(self, ledger: Ledger, batch: list[_Write]) -> None:
        """Commit `batch` (the caller holds the writers' lock) and hand out the outcomes."""
        try:
            outcomes = self._commit(ledger, batch)
        except BaseException as e:  # nothing of the batch is known durable: every request fails
            failure = self._failure(e)
            for queued in batch:
                queued.error, queued.done = failure, True
            if not isinstance(e, Exception):
                raise
            return
        self.batches += 1
        self.writes += len(batch)
        for queued, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Exception):
                queued.error = outcome
            else:
                queued.result = outcome
            queued.done = True

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
            # A leader waits for a lock another command holds (a queue consumer's batch)
            # inside SQLite's busy handler, where its own deadline cannot reach it.
            busy_ms = round(self.wait_s * 750)
            self._ledger.conn.execute(f"PRAGMA busy_timeout={busy_ms}")
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
                f"the ledger did not commit the write within {self.wait_s:g} s: another"
                " process held the writers' lock all that time",
                "timeout",
            ) from None

    @staticmethod
    def _commit(ledger: Ledger, batch: list[_Write]) -> list:
        """Run every write of `batch` in one transaction; return each one's result or error.

        A write alone in its batch runs in the transaction itself (no SAVEPOINT to pay for):
        if it fails, the batch fails. The path must still name the file this connection
        writes to, before and after the commit: a write committed to a replaced or deleted
        file is not acknowledged.
        """
        ledger.conn.check_identity()
        if len(batch) == 1:
            outcomes = [ledger.session.write(batch[0].fn, ledger)]
        else:

            def each() -> list:
                return [_outcome(ledger, queued) for queued in batch]

            outcomes = ledger.session.write(each)
        ledger.conn.check_identity()
        return outcomes


def _outcome(ledger: Ledger, queued: _Write) -> Any:
    """Run one write of a batch in its own SAVEPOINT; return its result, or its error."""
    try:
        return ledger.session.write(queued.fn, ledger)
    except Exception as e:  # noqa: BLE001 - handed to that write's request
        return e


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
