"""The request's ledger connection.

One connection per worker thread, reused across requests, opened after gunicorn forks (the
cache is keyed by process id, so a forked child never reuses its parent's connection).
Opening a connection and setting its pragmas costs more than a callback's whole ledger
transaction (docs/benchmarks.md). sqlite3 objects stay
on the thread that made them, as objects kept on `flask.g` must. On PostgreSQL a request takes
a connection from its process's pool instead (`receiver/pgpool.py`).
"""

import os
import sqlite3
import threading

from flask import Flask, current_app, g

from store import Ledger, is_url, ledger_problem, open_ledger
from store.errors import LedgerUnavailable
from store.writer import DirectWriter, Front, close_writers, writer_for

from . import pgpool

_local = threading.local()


class LedgerNotReady(RuntimeError):
    """The ledger file has not been created or migrated yet."""


def get_ledger(*, budget: bool = False) -> Ledger:
    """Return this thread's ledger for the app's DATABASE, checked to still be the file there.

    :param budget: on PostgreSQL, the request is a callback, to be answered within a
      budget (receiver/pgpool.py); the first call of a request decides
    :raises LedgerUnavailable: the file was deleted or replaced since the connection was
      opened; the connection is dropped, and the path refused until an operator has
      cleaned up (store/identity.py)
    """
    if "ledger" not in g:
        config = current_app.config
        ledger = _ledger_for(config["DATABASE"], config["DURABILITY"], budget)
        try:
            ledger.conn.check_identity()  # one stat per request
        except LedgerUnavailable:
            forget_ledger(ledger)
            raise
        g.ledger = ledger
    return g.ledger


def _ledger_for(path: str, durability: str, budget: bool) -> Ledger:
    if is_url(path):
        # PostgreSQL: a pooled connection for this request, given back when it ends.
        try:
            return pgpool.borrow(path, budget=budget)
        except pgpool.NotReady as e:
            raise LedgerNotReady(str(e)) from None
    cache = getattr(_local, "ledgers", None)
    if cache is None or getattr(_local, "pid", None) != os.getpid():
        cache = _local.ledgers = {}
        _local.pid = os.getpid()
    key = (path, durability)
    ledger = cache.get(key)
    if ledger is None:
        problem = ledger_problem(path)
        if problem:
            raise LedgerNotReady(problem)
        ledger = open_ledger(path, durability)
        cache[key] = ledger
    return ledger


_ready: set[tuple[int, str]] = set()  # (process, SQLite path) found migrated


def get_writer() -> Front:
    """Return what a hook request writes through (see store/writer.py).

    On SQLite, this process's group-commit writer: the request needs no connection of its
    own, and the writer checks, around each commit, that the file is still the one it
    opened. On PostgreSQL, the request's own pooled connection: each write commits in its
    own transaction and the server groups concurrent commits itself.
    """
    path, durability = current_app.config["DATABASE"], current_app.config["DURABILITY"]
    if is_url(path):
        return DirectWriter(get_ledger(budget=True))
    key = (os.getpid(), path)
    if key not in _ready:  # once per process, as a thread's connection checks on opening
        problem = ledger_problem(path)
        if problem:
            raise LedgerNotReady(problem)
        _ready.add(key)
    return writer_for(path, durability)


def forget_ledger(ledger: Ledger | None = None) -> None:
    """Close and drop this thread's cached connection (the request's, by default).

    Called after the ledger failed, so the next request starts from a fresh connection:
    one opened to a since replaced file, or left in a failed state, is never reused.
    """
    ledger = ledger if ledger is not None else g.pop("ledger", None)
    if ledger is not None and ledger.db is None:  # PostgreSQL: back to the pool, which
        ledger.close()  # drops a broken connection and rolls back an open transaction
        return
    cache = getattr(_local, "ledgers", None)
    if ledger is None or cache is None or getattr(_local, "pid", None) != os.getpid():
        return
    for key, cached in list(cache.items()):
        if cached is ledger:
            del cache[key]
    try:
        if ledger.conn.in_transaction:
            ledger.conn.rollback()
        ledger.close()
    except sqlite3.Error:
        pass


def close_ledgers() -> None:
    """Write the rejection counts held, then close this thread's cached connections and the
    process's writers (tests, exit)."""
    from .inbound.rejections import TALLY

    TALLY.flush_all()
    close_writers()
    pgpool.close_pools()
    for ledger in getattr(_local, "ledgers", {}).values():
        try:
            ledger.close()
        except sqlite3.Error:
            pass
    _local.ledgers = {}


def _end_request(exc: BaseException | None) -> None:
    ledger = g.pop("ledger", None)
    if ledger is not None and ledger.conn.in_transaction:
        try:
            ledger.conn.rollback()  # never carry a half-done transaction into the next request
        except sqlite3.Error:
            forget_ledger(ledger)
            return
    if ledger is not None and ledger.db is None:
        ledger.close()  # PostgreSQL: the connection goes back to the pool


def init_app(app: Flask) -> None:
    """Register the per-request cleanup."""
    app.teardown_appcontext(_end_request)
