"""One vocabulary for the ledger's failures, whatever the database engine.

`LedgerUnavailable` is transient: the ledger cannot take the write now (busy, locked, disk
full, I/O error, read-only, the file replaced or deleted under the service, the server
gone) and the same write may succeed later, so callers answer 503 or leave a queue
message unacknowledged. Anything else a driver raises (a missing table, a constraint) is
not fixed by retrying.

Errors are classified by the driver's error code, never by the words of its message:
SQLite's primary result codes, and PostgreSQL's SQLSTATE classes 08 (connection), 40
(transaction rollback: deadlock, serialization), 53 (insufficient resources) and 57
(operator intervention: shutdown, cancel), and the codes 55P03 (a lock wait that ran past
`lock_timeout`, PostgreSQL's counterpart of SQLITE_BUSY), 25006 (a server that takes no
writes: a standby, `default_transaction_read_only`, a provider's read-only mode on a full
disk) and 26000 (a prepared statement the server no longer has: the client's connection
was out of step with it, and is replaced).
"""

import sqlite3

# SQLite's primary result codes (the low byte of an extended code) that mean "not now".
_SQLITE_TRANSIENT = {
    5: "busy",  # SQLITE_BUSY: another writer holds the lock past the busy timeout
    6: "locked",  # SQLITE_LOCKED
    8: "read-only",  # SQLITE_READONLY and its extended codes
    10: "I/O error",  # SQLITE_IOERR and its extended codes
    13: "disk full",  # SQLITE_FULL
    14: "cannot open",  # SQLITE_CANTOPEN
}
_PG_TRANSIENT = {
    "08": "connection lost",
    "40": "conflict",
    "53": "server out of resources",
    "57": "server shutting down",
}
_PG_TRANSIENT_CODES = {
    # lock_not_available: a row, advisory or table lock held past lock_timeout (store/pg.py).
    # Not run again in place: that would wait out the timeout once per attempt.
    "55P03": "busy",
    # query_canceled: a web request's statement_timeout (store/pg_options.py), or
    # pg_cancel_backend().
    "57014": "cancelled",
    # read_only_sql_transaction: the server takes no writes now (a standby after a
    # failover, default_transaction_read_only); like SQLite's read-only file.
    "25006": "read-only",
    # invalid_sql_statement_name: the driver's prepared statements no longer match the
    # server's (a pipelined transaction that failed); the connection is not used again.
    "26000": "connection out of step",
}
_PG_RETRY_IN_PLACE = frozenset({"40001", "40P01"})  # serialization failure, deadlock


class LedgerError(Exception):
    """Base of the store's own errors."""


class BadQuery(ValueError):
    """A filter, cursor or limit that cannot be honoured."""


class JobNotFound(LedgerError, LookupError):
    """No job has this id."""


class LedgerUnavailable(LedgerError):
    """The ledger cannot take the write now; the same write may succeed later.

    Raised in place of the driver error (kept as `__cause__`), for the callers to catch
    without knowing which engine is underneath.

    :ivar reason: a short name of the cause (`busy`, `read-only`, `replaced`, ...)
    """

    def __init__(self, message: str, reason: str = "unavailable"):
        super().__init__(message)
        self.reason = reason


def classify(exc: BaseException) -> LedgerUnavailable | None:
    """Return the transient failure `exc` stands for, or None if retrying cannot fix it."""
    if isinstance(exc, LedgerUnavailable):
        return exc
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        reason = _SQLITE_TRANSIENT.get(code & 0xFF) if isinstance(code, int) else None
        if reason is None:
            return None
        name = getattr(exc, "sqlite_errorname", "") or "SQLITE_ERROR"
        return LedgerUnavailable(
            f"the ledger cannot take writes now: {reason} ({name}: {exc})", reason
        )
    if not type(exc).__module__.startswith(("psycopg", "psycopg_pool")):
        return None
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate is not None:
        reason = _PG_TRANSIENT_CODES.get(sqlstate) or _PG_TRANSIENT.get(sqlstate[:2])
    elif any(c.__name__ == "OperationalError" for c in type(exc).__mro__):
        # psycopg raises OperationalError without a SQLSTATE when it cannot connect at
        # all, and psycopg_pool's PoolTimeout is one: the server is down or busy.
        reason = "server unreachable"
    else:
        reason = None
    if reason is None:
        return None
    detail = str(exc).strip().splitlines()
    return LedgerUnavailable(
        f"the ledger cannot take writes now: {reason} ({sqlstate or 'no SQLSTATE'}:"
        f" {detail[0] if detail else type(exc).__name__})",
        reason,
    )


def is_transient(exc: BaseException) -> bool:
    """Tell whether `exc` is a failure that retrying later may fix."""
    return classify(exc) is not None


def is_retryable_in_place(error: BaseException) -> bool:
    """Tell whether a transaction that failed this way can be run again at once.

    PostgreSQL aborts one side of a deadlock, or of a serialization conflict, and expects
    the client to run that transaction again.
    """
    return getattr(error, "sqlstate", None) in _PG_RETRY_IN_PLACE


def driver_errors() -> tuple[type[Exception], ...]:
    """Return the base error classes of the drivers installed (for error handlers)."""
    classes: list[type[Exception]] = [sqlite3.Error]
    try:
        import psycopg

        classes.append(psycopg.Error)
    except ImportError:  # an SQLite-only install
        pass
    return tuple(classes)
