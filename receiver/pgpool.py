"""Web workers' PostgreSQL connections: one pool per process, opened after gunicorn forks.

A request borrows a connection when it first needs the ledger and gives it back when the
request ends. The pool holds up to GUNICORN_THREADS + 1 connections (each request thread
holds at most one, plus one spare), so a host needs workers x (threads + 1) server
connections at most; see docs/postgresql.md.

A callback's wait for a connection and its writes share one budget (WRITE_TIMEOUT_S from
the moment it asks for a connection), so that it is answered, 200 or 503, within it.
A connection is looked at before it is handed out: one the server dropped while it sat
idle (a restart, a failover, a terminated session) is passed over, not used for a 503.
"""

import os
import threading
import time

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from store import Ledger, LedgerUnavailable
from store.backend import POSTGRES
from store.pg import WEB, WRITE_TIMEOUT_S, PgConnection, usable
from store.pg_options import (
    WEB_STATEMENT_TIMEOUT_MS,
    connection_options,
    describe_failure,
    redact,
)
from store.pg_schema import pending

POOL_TIMEOUT_S = WRITE_TIMEOUT_S  # how long a request waits for a connection, at most
# Once a wait was cut (the server did not answer in time), each request first makes one
# round trip bounded by this, until one is answered: while the server stays stalled,
# requests get their 503 in a fraction of a second instead of each waiting out its budget.
PROBE_S = 0.25
STALLED = (
    "the ledger cannot take writes now: the server at RECEIVER_DATABASE={} did not answer"
    " in time lately, and no connection to it is free"
)
_stalled: set[tuple[int, str]] = set()
_pools: dict[tuple[int, str], ConnectionPool] = {}
_ready: set[tuple[int, str]] = set()
_lock = threading.Lock()


class NotReady(RuntimeError):
    """The PostgreSQL ledger has pending migrations."""


def pool_size() -> int:
    """Return the connections one worker process may hold (its threads, plus one)."""
    threads = os.environ.get("GUNICORN_THREADS", "4")
    return (int(threads) if threads.isdigit() and int(threads) > 0 else 4) + 1


def _pool(url: str) -> ConnectionPool:
    key = (os.getpid(), url)
    with _lock:
        pool = _pools.get(key)
        if pool is None:
            pool = ConnectionPool(
                url,
                min_size=1,
                max_size=pool_size(),
                kwargs=connection_options(url, statement_timeout_ms=WEB_STATEMENT_TIMEOUT_MS),
                timeout=POOL_TIMEOUT_S,
                name="jobledger",
                open=False,
            )
            pool.open(wait=False)
            _pools[key] = pool
        return pool


def borrow(url: str, *, budget: bool = False) -> Ledger:
    """Return a Ledger on a pooled connection; its close() gives the connection back.

    :param budget: the wait for the connection and every write on it end within
      WRITE_TIMEOUT_S of this call (a callback, to be answered in time); otherwise each
      write transaction has WRITE_TIMEOUT_S of its own (an ops action may write many)
    :raises LedgerUnavailable: no working connection within POOL_TIMEOUT_S (server down,
      or busy)
    :raises NotReady: the schema needs `init-db`
    """
    started = time.monotonic()
    pool = _pool(url)

    def take() -> psycopg.Connection:
        return _take(pool, url, time.monotonic() + POOL_TIMEOUT_S)

    key = (os.getpid(), url)
    stalled = key in _stalled  # then no long wait for the pool either
    conn = PgConnection(
        _take(pool, url, started + (PROBE_S if stalled else POOL_TIMEOUT_S), stalled),
        reopen=take,
        release=pool.putconn,
        bounds=WEB,
        on_cut=lambda: _stalled.add(key),
    )
    if budget:
        conn.writes_end_by = started + WRITE_TIMEOUT_S
    ledger = Ledger(conn, POSTGRES)
    try:
        if stalled:
            conn.ping(PROBE_S)
            _stalled.discard(key)
        missing = pending(conn) if key not in _ready else []
    except BaseException:
        ledger.close()
        raise
    if key not in _ready:
        if missing:
            ledger.close()
            raise NotReady(
                f"the ledger at RECEIVER_DATABASE={redact(url)} needs {', '.join(missing)}:"
                " run `flask --app wsgi init-db`"
            )
        _ready.add(key)
    return ledger


def _take(
    pool: ConnectionPool, url: str, deadline: float, stalled: bool = False
) -> psycopg.Connection:
    """Take a working connection from the pool, passing over any the server dropped.

    Each one passed over is closed and given back, and the pool opens another in its place.
    The wait is taken in slices of PROBE_S: when another request's wait is cut meanwhile
    (the server stalls), this one ends at once too, instead of waiting out its deadline.
    """
    key, began = (os.getpid(), url), time.monotonic()
    while True:
        left = deadline - time.monotonic()
        try:
            raw = pool.getconn(timeout=max(0.001, min(left, PROBE_S)))
        except PoolTimeout:
            if stalled or key in _stalled:
                raise LedgerUnavailable(STALLED.format(redact(url)), "timeout") from None
            now = time.monotonic()
            if now < deadline:
                continue
            waited = PoolTimeout(f"couldn't get a connection after {now - began:.2f} sec")
            raise LedgerUnavailable(describe_failure(url, waited)) from None
        if usable(raw):
            return raw
        raw.close()
        pool.putconn(raw)


def close_pools() -> None:
    """Close this process's pools (tests, and before a process exits)."""
    with _lock:
        mine = [k for k in _pools if k[0] == os.getpid()]
        pools = [_pools.pop(k) for k in mine]
        _ready.difference_update(mine)
        _stalled.difference_update(mine)
    for pool in pools:
        pool.close()
