"""Experimental variants of the jobledger app, for measuring proposed hot-path changes.

    .venv/bin/python -m bench.ingest --app bench.variants:app --env BENCH_VARIANT=group

Nothing here is used by the service. Each variant patches the real app at import time so a
proposal can be measured with the same harness before anyone changes store/ or receiver/.
BENCH_VARIANT is a comma-separated list of:

- `nolog`: no `hooks.*.applied` info line per notice (warnings and errors stay).
- `tlock`: one writer per process: a threading.Lock around `write_transaction`.
- `flock`: one writer per machine: the thread lock plus an flock() on `<db>.writer-lock`
  taken before `BEGIN IMMEDIATE`. A waiting writer sleeps in the kernel and is woken when the
  lock is released, instead of SQLite's busy handler polling with sleeps of up to 100 ms.
- `group`: group commit: each worker process has one writer thread that takes every notice
  queued while the previous commit ran and records them in one transaction (one SAVEPOINT
  each, so one failing notice does not fail the others); each request is answered only
  after the COMMIT that holds its notice. Implies `flock` for the writer thread.
- `mmap`: `PRAGMA mmap_size=1 GiB` on every connection, so a page the per-connection cache
  lost (SQLite empties a connection's cache whenever another connection committed) is read
  from the shared mapping instead of by a pread() copy.
"""

import contextlib
import fcntl
import logging
import os
import queue
import threading
from concurrent.futures import Future

import store.ledger as ledger_module
from store import open_ledger
from store.connection import LedgerBase
from store.ledger import Ledger
from wsgi import app

VARIANTS = {v.strip() for v in os.environ.get("BENCH_VARIANT", "").split(",") if v.strip()}
DATABASE = app.config["DATABASE"]
DURABILITY = app.config["DURABILITY"]
_original_write = LedgerBase._write
_original_record_event = Ledger.record_event
_thread_lock = threading.Lock()
_flock = {"pid": None, "fd": None}


def _lock_fd() -> int:
    if _flock["pid"] != os.getpid():
        _flock["fd"] = os.open(DATABASE + ".writer-lock", os.O_RDWR | os.O_CREAT, 0o600)
        _flock["pid"] = os.getpid()
    return _flock["fd"]


@contextlib.contextmanager
def _serialized(use_flock: bool):
    with _thread_lock:
        if use_flock:
            fcntl.flock(_lock_fd(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if use_flock:
                fcntl.flock(_lock_fd(), fcntl.LOCK_UN)


def _write(self, fn, *args):
    """Nest inside an open transaction (as a savepoint); serialize writers if asked."""
    if self.conn.in_transaction:
        return fn(*args)  # the group committer opened the transaction and a savepoint for us
    if VARIANTS & {"tlock", "flock"}:
        with _serialized("flock" in VARIANTS):
            return _original_write(self, fn, *args)
    return _original_write(self, fn, *args)


class GroupCommitter:
    """One writer thread per process; concurrent notices share one transaction."""

    def __init__(self, max_batch: int = 128):
        self.max_batch = max_batch
        self.pid = None
        self.queue = None
        self.lock = threading.Lock()

    def run(self, fn):
        with self.lock:
            if self.pid != os.getpid():
                self.pid, self.queue = os.getpid(), queue.SimpleQueue()
                threading.Thread(target=self._loop, args=(self.queue,), daemon=True).start()
            q = self.queue
        future = Future()
        q.put((fn, future))
        return future.result()

    def _loop(self, q):
        led = open_ledger(DATABASE, DURABILITY)
        conn = led.conn
        while True:
            items = [q.get()]
            while len(items) < self.max_batch:
                try:
                    items.append(q.get_nowait())
                except queue.Empty:
                    break
            done = []
            try:
                with _serialized(True):
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        for fn, future in items:
                            conn.execute("SAVEPOINT notice")
                            try:
                                done.append((future, fn(led), None))
                            except Exception as e:  # noqa: BLE001 - handed to the request
                                conn.execute("ROLLBACK TO notice")
                                done.append((future, None, e))
                            conn.execute("RELEASE notice")
                        conn.execute("COMMIT")
                    except BaseException:
                        if conn.in_transaction:
                            conn.execute("ROLLBACK")
                        raise
            except Exception as e:  # noqa: BLE001 - the whole batch failed: every request 5xx
                for _, future in items:
                    future.set_exception(e)
                continue
            for future, result, error in done:
                if error is None:
                    future.set_result(result)
                else:
                    future.set_exception(error)


LedgerBase._write = _write
if "mmap" in VARIANTS:
    _original_connect = ledger_module.connect

    def connect(path, durability="normal"):
        conn = _original_connect(path, durability)
        conn.execute("PRAGMA mmap_size=1073741824")
        return conn

    ledger_module.connect = connect
if "nolog" in VARIANTS:
    logging.getLogger("jobledger.hooks").setLevel(logging.WARNING)
if "group" in VARIANTS:
    _committer = GroupCommitter()

    def record_event(self, event, **kwargs):
        return _committer.run(lambda led: _original_record_event(led, event, **kwargs))

    Ledger.record_event = record_event
