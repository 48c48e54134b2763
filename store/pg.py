"""PostgreSQL connections: the few sqlite3.Connection methods the store uses, over psycopg 3.

Connections run in autocommit mode and the store opens its write transactions itself
(`BEGIN` ... `COMMIT`), as it does on SQLite, so a read outside a write never holds a
snapshot or a lock. Statements keep SQLite's `?` placeholders; each distinct text is
translated to psycopg's `%s` once and cached.
"""

import contextlib
import os
from collections.abc import Callable, Iterable, Sequence
from urllib.parse import urlsplit

import psycopg
from psycopg import conninfo, pq

from . import connection as _sqlite
from .backend import redact
from .errors import LedgerUnavailable, is_transient

CONNECT_TIMEOUT_S = 5
_CACHE_SIZE = 2048  # distinct texts: `IN (?, ?, ...)` lists of many lengths must not grow it
_translated: dict[str, str] = {}


def _sql(text: str) -> str:
    out = _translated.get(text)
    if out is None:
        if len(_translated) >= _CACHE_SIZE:
            _translated.clear()
        out = _translated[text] = text.replace("%", "%%").replace("?", "%s")
    return out


class PgConnection:
    """A psycopg connection that answers like the sqlite3 connection the store was written for."""

    def __init__(
        self,
        raw: psycopg.Connection,
        release: Callable[[psycopg.Connection], None] | None = None,
        url: str | None = None,
        options: dict | None = None,
    ):
        self.raw = raw
        self._release = release  # give the connection back to its pool instead of closing
        self._url = url  # a connection of its own reconnects after the server went away
        self._options = options if options is not None else {}  # ... with the same options

    def execute(self, sql: str, params: Sequence = ()) -> psycopg.Cursor:
        """Run one statement; return its cursor (fetchone, fetchall, iteration, rowcount).

        A long-running command's connection that broke (a server restart, a failover) is
        replaced when the next transaction begins, never in the middle of one.
        """
        if sql == "BEGIN":
            self._reconnect_if_broken()
        return self.raw.execute(_sql(sql), params)

    def pipeline(self) -> contextlib.AbstractContextManager:
        """Enter pipeline mode for a transaction: statements go out without waiting for
        their answers, until a result is fetched or the block ends (see store/session.py)."""
        self._reconnect_if_broken()
        return self.raw.pipeline()

    def _reconnect_if_broken(self) -> None:
        if self.raw.broken and self._url is not None:
            self.raw.close()
            self.raw = psycopg.connect(self._url, **self._options)

    def executemany(self, sql: str, rows: Iterable[Sequence]) -> psycopg.Cursor:
        """Run one statement for each row of parameters."""
        cursor = self.raw.cursor()
        cursor.executemany(_sql(sql), rows)
        return cursor

    @property
    def in_transaction(self) -> bool:
        """Tell whether a transaction is open (or failed and not yet rolled back)."""
        return self.raw.info.transaction_status != pq.TransactionStatus.IDLE

    def commit(self) -> None:
        """Commit the open transaction, if any."""
        # In pipeline mode the status is only known at the next sync: COMMIT goes out anyway
        # (without a transaction the server only warns).
        if self.in_transaction or self.raw.pgconn.pipeline_status != pq.PipelineStatus.OFF:
            self.raw.execute("COMMIT")

    def rollback(self) -> None:
        """Roll back the open transaction, if any."""
        if self.in_transaction and not (self.raw.closed or self.raw.broken):
            self.raw.execute("ROLLBACK")

    def check_identity(self) -> None:
        """Nothing to check: a server has no file to be replaced (see store/identity.py)."""

    def close(self) -> None:
        """Give the connection back to its pool, or close it."""
        if self._release is not None:
            release, self._release = self._release, None
            release(self.raw)
        else:
            self.raw.close()


def connect(url: str, *, wait_for_locks: bool = False) -> PgConnection:
    """Open one connection (commands and consumers; web workers use a pool).

    :param wait_for_locks: wait for a lock however long it is held (init-db, behind another
      host's migration); otherwise a lock wait gives up after the busy timeout
    :raises LedgerUnavailable: the server cannot be reached (named, without the password)
    """
    options = connection_options(url, lock_timeout=not wait_for_locks)
    try:
        return PgConnection(psycopg.connect(url, **options), url=url, options=options)
    except Exception as e:
        if is_transient(e):
            raise LedgerUnavailable(describe_failure(url, e)) from None
        raise


def connection_options(url: str, *, lock_timeout: bool = True) -> dict:
    """Return the psycopg.connect keyword arguments every ledger connection to `url` uses.

    Every lock wait (a row, an advisory lock, an uncommitted duplicate key) gives up after
    SQLite's busy timeout, so a ledger held by a stuck transaction answers "busy" (503, a
    deferred batch) as SQLite does, instead of holding a request thread forever. It is a
    startup parameter, not a SET after connecting: the pool passes these arguments to every
    connection it opens, it costs no round trip, and RESET ALL keeps it. The options the
    URL (or PGOPTIONS) already has come after it, so they still apply and a `-c
    lock_timeout=...` of the operator's own wins; psycopg would otherwise replace them.
    """
    options: dict = {
        "autocommit": True,
        "connect_timeout": CONNECT_TIMEOUT_S,
        "application_name": "jobledger",
    }
    if lock_timeout:
        params = conninfo.conninfo_to_dict(url)
        own = params["options"] if "options" in params else os.environ.get("PGOPTIONS", "")
        lock_timeout_ms = max(1, round(_sqlite.BUSY_TIMEOUT_S * 1000))
        options["options"] = f"-c lock_timeout={lock_timeout_ms} {own}".strip()
    return options


SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def check_url(url: str) -> None:
    """Raise ValueError (never showing a password) unless libpq accepts the URL."""
    try:
        params = conninfo.conninfo_to_dict(url)
    except psycopg.Error as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else "malformed"
        password = urlsplit(url).password if "@" in url else None
        if (password and password in reason) or "password" in reason.lower():
            reason = "malformed"
        raise ValueError(f"not a libpq URI ({reason})") from None
    # libpq itself checks these only when it connects; say so at start-up instead.
    ports = str(params.get("port") or "")
    if ports and not all(p.isdigit() and 0 < int(p) < 65536 for p in ports.split(",")):
        raise ValueError("not a libpq URI (the port is not a number)")
    if params.get("sslmode", "prefer") not in SSLMODES:
        raise ValueError(f"not a libpq URI (sslmode must be one of {', '.join(SSLMODES)})")


def describe_failure(url: str, error: BaseException) -> str:
    """Say why the server named by the URL cannot be used, naming the setting, no password."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    detail = lines[0] if lines else type(error).__name__
    return f"cannot use the ledger at RECEIVER_DATABASE={redact(url)}: {detail}"
