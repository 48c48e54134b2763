"""One connection, its engine, and the one way to run a write transaction on it.

Every write of the ledger goes through `Session.write(fn)`, whoever calls it: the ledger's
parts, the web workers' group commit (store/writer.py), the queue consumers' batches. Like
sqlite-utils' `Database.atomic()`, it nests: called inside a write it runs `fn` in a
SAVEPOINT, so a failing step rolls back alone and the outer transaction goes on.
"""

import contextlib
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .backend import SQLITE, Backend
from .errors import LedgerError, classify, is_retryable_in_place

MAX_RETRIES = 8
T = TypeVar("T")


class Session:
    """A ledger connection (sqlite3, or store.pg.PgConnection) and its engine.

    :param conn: the connection; the session never closes it
    :param backend: what differs between the engines (store/backend.py)
    """

    def __init__(self, conn: Any, backend: Backend = SQLITE):
        self.conn, self.backend = conn, backend
        self._depth = 0  # how many write() calls are under way on this session

    def write(self, fn: Callable[..., T], *args: Any, pipelined: bool = False) -> T:
        """Run `fn(*args)` in one write transaction, commit it and return what `fn` returned.

        Outside a transaction it begins one: `BEGIN IMMEDIATE` on SQLite (a deferred
        transaction that has read cannot always become a writer), `BEGIN` on PostgreSQL,
        whose reads lock the rows they will write. There a deadlock or serialization
        conflict rolls back one side, which is run again from the start after a short
        random pause. A transient failure (busy, disk full, server gone) is raised as
        LedgerUnavailable.

        Inside a write it runs `fn` in a SAVEPOINT of the transaction under way: an error
        rolls back what `fn` did, and is raised to the caller, who may go on.

        :param pipelined: on PostgreSQL, run the transaction in pipeline mode: a statement
          whose result `fn` does not fetch goes out with the next one that it does, and
          COMMIT with them. Only for `fn` that reads nothing but fetched rows (a cursor's
          `rowcount` is not known until its result arrives).
        """
        if self._depth:
            return self._nested(fn, args)
        attempt = 0
        while True:
            try:
                return self._transaction(fn, args, pipelined)
            except LedgerError:
                raise
            except Exception as e:
                retry = self.backend.retries and attempt < MAX_RETRIES
                if retry and is_retryable_in_place(e):
                    attempt += 1
                    time.sleep(random.uniform(0, 0.005 * 2**attempt))
                    continue
                unavailable = classify(e)
                if unavailable is not None:
                    raise unavailable from e
                raise

    def _transaction(self, fn: Callable[..., T], args: tuple, pipelined: bool) -> T:
        conn = self.conn
        batched = pipelined and self.backend.pipelines
        self._depth += 1
        try:
            with conn.pipeline() if batched else contextlib.nullcontext():
                conn.execute(self.backend.begin)
                result = fn(*args)
                conn.commit()
            return result
        except BaseException:
            quiet_rollback(conn)
            raise
        finally:
            self._depth -= 1

    def _nested(self, fn: Callable[..., T], args: tuple) -> T:
        name = f"step{self._depth}"
        self.conn.execute(f"SAVEPOINT {name}")
        self._depth += 1
        try:
            result = fn(*args)
        except BaseException:
            self.conn.execute(f"ROLLBACK TO {name}")
            self.conn.execute(f"RELEASE {name}")
            raise
        finally:
            self._depth -= 1
        self.conn.execute(f"RELEASE {name}")
        return result


def quiet_rollback(conn: Any) -> None:
    """Roll back whatever is open; a connection that is gone has nothing left to undo."""
    try:
        conn.rollback()
    except Exception:  # noqa: BLE001 - the connection is gone; the first error is the news
        pass


class Part:
    """Base of the ledger's parts (notices, jobs, quarantine, ...): they share one session."""

    def __init__(self, session: Session):
        self.session = session
        self.conn, self.backend = session.conn, session.backend

    def write(self, fn: Callable[..., T], *args: Any, pipelined: bool = False) -> T:
        """Run `fn(*args)` in a write transaction (see Session.write)."""
        return self.session.write(fn, *args, pipelined=pipelined)
