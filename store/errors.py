"""The store's own errors, and which driver errors mean "try again later".

Transient errors are told apart by the driver's error code, never by the words of a
message: SQLite's primary result codes BUSY, LOCKED, READONLY, IOERR and FULL, and
PostgreSQL's SQLSTATE classes 08 (connection), 40 (transaction rollback: deadlock,
serialization), 53 (insufficient resources) and 57 (operator intervention: shutdown).
Anything else (a missing table, a constraint a bug broke) is not fixed by retrying.
"""

import sqlite3

# SQLite primary result codes (sqlite3.h): the low byte of an extended code.
_SQLITE_TRANSIENT = frozenset({5, 6, 8, 10, 13})  # BUSY LOCKED READONLY IOERR FULL
_PG_TRANSIENT_CLASSES = frozenset({"08", "40", "53", "57"})
_PG_RETRY_IN_PLACE = frozenset({"40001", "40P01"})  # serialization failure, deadlock


class LedgerError(Exception):
    """Base of the store's errors."""


class JobNotFound(LedgerError, LookupError):
    """No job has this id."""


class LedgerUnavailable(LedgerError):
    """The ledger cannot take this read or write right now; the caller retries later.

    Raised in place of the driver error (kept as `__cause__`), for the callers to catch
    without knowing which engine is underneath.
    """


def is_transient(error: BaseException) -> bool:
    """Tell whether a driver error is one that waiting and retrying can fix."""
    if isinstance(error, LedgerUnavailable):
        return True
    if isinstance(error, sqlite3.Error):
        code = getattr(error, "sqlite_errorcode", None)
        return code is not None and code & 0xFF in _SQLITE_TRANSIENT
    sqlstate = getattr(error, "sqlstate", None)
    if sqlstate is not None:
        return sqlstate[:2] in _PG_TRANSIENT_CLASSES
    # psycopg raises OperationalError without a SQLSTATE when it cannot connect at all,
    # and psycopg_pool's PoolTimeout is one: the server is down or every connection busy.
    return type(error).__module__.startswith(("psycopg", "psycopg_pool")) and any(
        c.__name__ == "OperationalError" for c in type(error).__mro__
    )


def is_retryable_in_place(error: BaseException) -> bool:
    """Tell whether a transaction that failed this way can be run again at once.

    PostgreSQL aborts one side of a deadlock, or of a serialization conflict, and expects
    the client to run that transaction again.
    """
    return getattr(error, "sqlstate", None) in _PG_RETRY_IN_PLACE


def driver_errors() -> tuple[type[BaseException], ...]:
    """Return the base error classes of the drivers installed (for error handlers)."""
    classes: list[type[BaseException]] = [sqlite3.Error]
    try:
        import psycopg

        classes.append(psycopg.Error)
    except ImportError:  # an SQLite-only install
        pass
    return tuple(classes)
