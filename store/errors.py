"""One vocabulary for the ledger's failures, whatever the database engine.

`LedgerUnavailable` is transient: the ledger cannot take the write now (busy, locked, disk
full, I/O error, read-only, the file replaced or deleted under the service) and the same
write may succeed later, so callers answer 503 or leave a queue message unacknowledged.
Anything else a driver raises (a missing table, a constraint) is not fixed by retrying.

Errors are classified by the driver's error code, never by the words of its message.
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


class LedgerUnavailable(Exception):
    """The ledger cannot take the write now; the same write may succeed later.

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
    return None


def is_transient(exc: BaseException) -> bool:
    """Tell whether `exc` is a failure that retrying later may fix."""
    return classify(exc) is not None
