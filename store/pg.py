"""PostgreSQL connections: the few sqlite3.Connection methods the store uses, over psycopg 3.

Connections run in autocommit mode and the store opens its write transactions itself
(`BEGIN` ... `COMMIT`), as it does on SQLite, so a read outside a write never holds a
snapshot or a lock. Statements keep SQLite's `?` placeholders; each distinct text is
translated to psycopg's `%s` once and cached.

Every wait on the server is bounded (docs/faults.md): connecting, each lock
(`lock_timeout`), each statement of a web request (`statement_timeout`), and on the
client's own side a whole write transaction and, on web requests, each read, so a server
that stalls or vanishes costs a 503 within seconds, never a thread held until it comes
back.
"""

import contextlib
import select
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import psycopg
from psycopg import pq

from .errors import LedgerUnavailable, is_transient
from .pg_options import connection_options, describe_failure
from .pg_watch import Guard

# A web request's write transaction, BEGIN to COMMIT, and each of its reads end within
# this many seconds: past it the client cuts the connection (store/pg_watch.py). The
# server cancels a statement still running a little sooner (WEB_STATEMENT_TIMEOUT_MS,
# store/pg_options.py), so that a server that is alive stops first and the connection
# stays usable; the client's cut is for one that answers nothing.
WRITE_TIMEOUT_S = 4.0
READ_TIMEOUT_S = WRITE_TIMEOUT_S
# A write transaction of a command (a queue consumer's batch, a reconcile pass's claims):
# it may wait for other processes' locks several times over, but a server that answers
# nothing for this long is stalled, and the batch is left for later.
COMMAND_WRITE_TIMEOUT_S = 30.0
_CACHE_SIZE = 2048  # distinct texts: `IN (?, ?, ...)` lists of many lengths must not grow it
_translated: dict[str, str] = {}


def _sql(text: str) -> str:
    out = _translated.get(text)
    if out is None:
        if len(_translated) >= _CACHE_SIZE:
            _translated.clear()
        out = _translated[text] = text.replace("%", "%%").replace("?", "%s")
    return out


@dataclass(frozen=True)
class Bounds:
    """How long a connection may wait for its server; None: as long as it takes."""

    write_s: float | None = None  # a write transaction, BEGIN to its end
    read_s: float | None = None  # one statement outside a transaction


UNBOUNDED = Bounds()  # init-db: a migration may take long, and wait for another host's
COMMAND = Bounds(COMMAND_WRITE_TIMEOUT_S)  # long reads are never cut
WEB = Bounds(WRITE_TIMEOUT_S, READ_TIMEOUT_S)


def usable(raw: psycopg.Connection) -> bool:
    """Tell whether an idle connection still works; one poll() unless the server spoke.

    Nothing arrives on a healthy idle connection. A server that restarted, or ended the
    session, has sent its last word or closed the socket, which makes it readable: only
    then is a round trip spent (an empty query) to tell.
    """
    if raw.closed or raw.broken:
        return False
    try:
        poller = select.poll()
        poller.register(raw.pgconn.socket, select.POLLIN)
        if not poller.poll(0):
            return True
        raw.execute("")
    except (psycopg.Error, OSError):
        return False
    return True


class PgConnection:
    """A psycopg connection that answers like the sqlite3 connection the store was written for.

    Never reused once its state is uncertain: a transaction that failed in pipeline mode
    (psycopg's record of the statements it prepared may no longer match the server's), a
    rollback that failed, or a wait that was cut. Such a connection is let go (a pool
    replaces it) and the next transaction, or the next read, runs on a fresh one.

    :param reopen: returns a fresh connection (from the pool, or a new one)
    :param release: lets one go (back to the pool, or closed)
    :param on_cut: called when a wait of this connection was cut (the server stalled)
    :ivar writes_end_by: a time.monotonic() by which every write transaction must end (a
      web request's budget), or None
    """

    def __init__(
        self,
        raw: psycopg.Connection,
        *,
        reopen: Callable[[], psycopg.Connection],
        release: Callable[[psycopg.Connection], None],
        bounds: Bounds = UNBOUNDED,
        on_cut: Callable[[], None] | None = None,
    ):
        self.raw, self.bounds = raw, bounds
        self._reopen, self._release, self._on_cut = reopen, release, on_cut
        self.writes_end_by: float | None = None
        self._guard = Guard(lambda: self.raw.pgconn.socket)
        self._writing = False  # inside a write transaction (or the pipeline that holds one)
        self._uncertain = False
        self._let_go = False  # `raw` was released already (a replacement failed to open)
        self._closed = False

    def execute(self, sql: str, params: Sequence = ()) -> psycopg.Cursor:
        """Run one statement; return its cursor (fetchone, fetchall, iteration, rowcount).

        A connection that broke (a server restart, a failover) or whose state is uncertain
        is replaced when the next transaction begins or before the next read outside one,
        never in the middle of a transaction.
        """
        if sql == "BEGIN":
            return self._begin()
        if self._writing:
            return self._run(self.raw.execute, _sql(sql), params)
        if self._uncertain or self.raw.closed or self.raw.broken:
            self._replace()
        if self.bounds.read_s is None:
            return self._run(self.raw.execute, _sql(sql), params)
        self._guard.arm(time.monotonic() + self.bounds.read_s)
        try:
            return self._run(self.raw.execute, _sql(sql), params)
        finally:
            self._guard.disarm()

    @contextlib.contextmanager
    def pipeline(self) -> Iterator[None]:
        """Enter pipeline mode for a write transaction: statements go out without waiting
        for their answers, until a result is fetched or the block ends (store/session.py)."""
        self._start_write()
        try:
            with self.raw.pipeline():
                yield
        except BaseException as e:
            self._uncertain = True
            timed_out = self._timed_out(e)
            if timed_out is not None:
                raise timed_out from e
            raise
        finally:
            self._end_write()

    def executemany(self, sql: str, rows: Iterable[Sequence]) -> psycopg.Cursor:
        """Run one statement for each row of parameters."""
        cursor = self.raw.cursor()
        self._run(cursor.executemany, _sql(sql), rows)
        return cursor

    @property
    def in_transaction(self) -> bool:
        """Tell whether a transaction is open (or failed and not yet rolled back)."""
        return self.raw.info.transaction_status != pq.TransactionStatus.IDLE

    def commit(self) -> None:
        """Commit the open transaction, if any."""
        pipelined = self.raw.pgconn.pipeline_status != pq.PipelineStatus.OFF
        try:
            # In pipeline mode the status is only known at the next sync: COMMIT goes out
            # anyway (without a transaction the server only warns).
            if pipelined or self.in_transaction:
                self._run(self.raw.execute, "COMMIT")
        finally:
            if not pipelined:
                self._end_write()

    def rollback(self) -> None:
        """Roll back the open transaction, if any."""
        pipelined = self.raw.pgconn.pipeline_status != pq.PipelineStatus.OFF
        try:
            if self.in_transaction and not (self.raw.closed or self.raw.broken):
                self._run(self.raw.execute, "ROLLBACK")
        except BaseException:
            self._uncertain = True
            raise
        finally:
            if not pipelined:
                self._end_write()

    def ping(self, within_s: float) -> None:
        """Make one round trip to the server, waiting at most `within_s`.

        :raises LedgerUnavailable: no answer in time (the connection is then cut)
        """
        if self._uncertain or not usable(self.raw):
            self._replace()
        self._guard.arm(time.monotonic() + within_s)
        try:
            self._run(self.raw.execute, "")
        finally:
            self._guard.disarm()

    def check_identity(self) -> None:
        """Nothing to check: a server has no file to be replaced (see store/identity.py)."""

    def close(self) -> None:
        """Give the connection back to its pool, or close it; one in doubt is closed first."""
        self._guard.disarm()
        if self._closed:
            return
        self._closed = True
        if self._uncertain:
            self.raw.close()
        if not self._let_go:
            self._release(self.raw)

    # -- bounds and replacement -------------------------------------------------------------

    def _begin(self) -> psycopg.Cursor:
        if not self._writing:  # else pipeline() began it
            self._start_write()
        return self._run(self.raw.execute, "BEGIN")

    def _start_write(self) -> None:
        """Begin a write on a connection known to work, its deadline armed."""
        if self._uncertain or not usable(self.raw):
            self._replace()
        self._writing = True
        if self.bounds.write_s is not None:
            deadline = time.monotonic() + self.bounds.write_s
            if self.writes_end_by is not None:
                deadline = min(deadline, self.writes_end_by)
            self._guard.arm(deadline)

    def _end_write(self) -> None:
        self._writing = False
        self._guard.disarm()

    def _replace(self) -> None:
        self._guard.disarm()
        old, self._uncertain = self.raw, False
        if not self._let_go:
            if not old.closed:
                old.close()
            self._release(old)  # a pool counts a closed connection as lost, opens another
            self._let_go = True
        self.raw = self._reopen()  # on failure, tried again at the next statement
        self._let_go = False

    def _run(self, call: Callable, *args):
        try:
            return call(*args)
        except psycopg.Error as e:
            if getattr(e, "sqlstate", None) == "26000":  # a prepared statement gone
                self._uncertain = True
            timed_out = self._timed_out(e)
            if timed_out is not None:
                self._uncertain = True
                raise timed_out from e
            raise

    def _timed_out(self, error: BaseException) -> LedgerUnavailable | None:
        if not self._guard.fired or not isinstance(error, psycopg.Error):
            return None
        if self._on_cut is not None:
            self._on_cut()
        return LedgerUnavailable(
            "the ledger cannot take writes now: the server did not answer in time (its"
            " connection was cut and is replaced)",
            "timeout",
        )


def connect(url: str, *, wait_for_locks: bool = False) -> PgConnection:
    """Open one connection (commands and consumers; web workers use a pool).

    :param wait_for_locks: wait for a lock however long it is held (init-db, behind another
      host's migration); otherwise a lock wait gives up after the busy timeout, and a
      write transaction after COMMAND_WRITE_TIMEOUT_S
    :raises LedgerUnavailable: the server cannot be reached (named, without the password)
    """
    options = connection_options(url, lock_timeout=not wait_for_locks)

    def reopen() -> psycopg.Connection:
        return psycopg.connect(url, **options)

    try:
        raw = reopen()
    except Exception as e:
        if is_transient(e):
            raise LedgerUnavailable(describe_failure(url, e)) from None
        raise
    bounds = UNBOUNDED if wait_for_locks else COMMAND
    return PgConnection(raw, reopen=reopen, release=_close, bounds=bounds)


def _close(raw: psycopg.Connection) -> None:
    raw.close()
