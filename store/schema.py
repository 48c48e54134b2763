"""Creating, migrating and checking a ledger on either engine (`init-db`, start-up checks)."""

from pathlib import Path

from sqlite_utils import Database

from .backend import is_url
from .connection import connect
from .errors import LedgerUnavailable
from .migrations import migrations


def migrate(database: str | Path) -> list[str]:
    """Create or migrate the ledger (a file path or a postgresql:// URL); return what was applied.

    Safe to run from several hosts at once: on PostgreSQL under an advisory lock.
    """
    if is_url(database):
        from . import pg_schema
        from .pg import connect as connect_pg

        conn = connect_pg(database)
        try:
            return pg_schema.migrate(conn)
        finally:
            conn.close()
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    with Database(connect(database), execute_plugins=False) as db:
        pending = [m.name for m in migrations.pending(db)]
        migrations.apply(db)
    return pending


def pending_migrations(database: str | Path) -> list[str]:
    """Return the names of the migrations the ledger still needs (all of them if new).

    :raises LedgerUnavailable: the PostgreSQL server cannot be reached
    """
    if is_url(database):
        from . import pg_schema
        from .pg import connect as connect_pg

        conn = connect_pg(database)
        try:
            return pg_schema.pending(conn)
        finally:
            conn.close()
    with Database(connect(database), execute_plugins=False) as db:
        return [m.name for m in migrations.pending(db)]


def ledger_problem(database: str | Path) -> str | None:
    """Return why the ledger cannot be used yet, or None if it can.

    A missing file must not be opened (SQLite would create an empty one), nor a ledger with
    pending migrations: every write would fail on a missing table or column. An unreachable
    PostgreSQL server is named by its URL, without the password.
    """
    if is_url(database):
        from .pg import redact

        where = f"ledger at RECEIVER_DATABASE={redact(database)}"
    elif not Path(database).is_file():
        return f"no ledger at {database}: run `flask --app wsgi init-db`"
    else:
        where = f"ledger at {database}"
    try:
        pending = pending_migrations(database)
    except LedgerUnavailable as e:
        return str(e)
    if pending:
        return f"{where} needs {', '.join(pending)}: run `flask --app wsgi init-db`"
    return None
