"""Web workers' PostgreSQL connections: one pool per process, opened after gunicorn forks.

A request borrows a connection when it first needs the ledger and gives it back when the
request ends. The pool holds up to GUNICORN_THREADS + 1 connections (each request thread
holds at most one, plus one spare for the readiness check), so a host needs
workers x (threads + 1) server connections at most; see docs/postgresql.md.
"""

import os
import threading

from psycopg_pool import ConnectionPool, PoolTimeout

from store import Ledger, LedgerUnavailable, pending_migrations
from store.backend import POSTGRES
from store.pg import PgConnection, connection_options, describe_failure, redact

POOL_TIMEOUT_S = 5.0  # how long a request waits for a connection before answering 503
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
                kwargs=connection_options(url),
                timeout=POOL_TIMEOUT_S,
                name="jobledger",
                open=False,
            )
            pool.open(wait=False)
            _pools[key] = pool
        return pool


def borrow(url: str) -> Ledger:
    """Return a Ledger on a pooled connection; its close() gives the connection back.

    :raises LedgerUnavailable: no connection within POOL_TIMEOUT_S (server down, or busy)
    :raises NotReady: the schema needs `init-db`
    """
    key = (os.getpid(), url)
    if key not in _ready:
        pending = pending_migrations(url)  # LedgerUnavailable if the server is down
        if pending:
            raise NotReady(
                f"the ledger at RECEIVER_DATABASE={redact(url)} needs {', '.join(pending)}:"
                " run `flask --app wsgi init-db`"
            )
        _ready.add(key)
    pool = _pool(url)
    try:
        raw = pool.getconn()
    except PoolTimeout as e:
        raise LedgerUnavailable(describe_failure(url, e)) from None
    return Ledger(PgConnection(raw, release=pool.putconn), POSTGRES)


def close_pools() -> None:
    """Close this process's pools (tests, and before a process exits)."""
    with _lock:
        mine = [k for k in _pools if k[0] == os.getpid()]
        pools = [_pools.pop(k) for k in mine]
        _ready.difference_update(mine)
    for pool in pools:
        pool.close()
