"""Tell the operator what to run when the ledger is not set up: one line, no traceback.

A command that meets a ledger nobody has set up yet (no role, no database, no privilege to
create tables, no `init-db`) is not a bug of jobledger: the fix is a command to run, and
the message says which. PostgreSQL reports a failed connection without an SQLSTATE, so
those cases are recognised by the server's message (English, libpq's default); with a
translated server the line is still one line, only without the advice.
"""

import getpass
import os
import re
import shlex
import sqlite3
from pathlib import Path

from store import is_url
from store.backend import redact

INIT_DB = "flask --app wsgi init-db"
_SIMPLE_NAME = re.compile(r"[a-z_][a-z0-9_]*")


def _sql_name(name: str) -> str:
    return name if _SIMPLE_NAME.fullmatch(name) else '"' + name.replace('"', '""') + '"'


def _as_postgres(command: str) -> str:
    return f"on the database server, as the postgres user, run: {command}"


def _chain(error: BaseException) -> list[BaseException]:
    """The error and the ones it was raised from (a LedgerUnavailable wraps the driver's)."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen and len(seen) < 5:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _role_and_database(url: str) -> tuple[str, str]:
    """The role and database a URL connects as, with libpq's defaults."""
    from psycopg import conninfo

    params = conninfo.conninfo_to_dict(url)
    role = params.get("user") or os.environ.get("PGUSER") or getpass.getuser()
    return str(role), str(params.get("dbname") or os.environ.get("PGDATABASE") or role)


def _postgresql(url: str, errors: list[BaseException]) -> str | None:
    if not any(type(e).__module__.startswith("psycopg") for e in errors):
        return None  # not the server's answer: nothing here is about the database
    role, database = _role_and_database(url)
    text = " ".join(str(e) for e in errors)
    psql = f"psql -d {shlex.quote(database)} -c"
    if m := re.search(r'role "([^"]+)" does not exist', text):
        return f'role "{m[1]}" does not exist; ' + _as_postgres(
            f"createuser --pwprompt {shlex.quote(m[1])}"
        )
    if m := re.search(r'database "([^"]+)" does not exist', text):
        return f'database "{m[1]}" does not exist; ' + _as_postgres(
            f"createdb --owner={shlex.quote(role)} {shlex.quote(m[1])}"
        )
    if m := re.search(r'password authentication failed for user "([^"]+)"', text):
        # A server that asks for passwords says the same of a role that does not exist.
        return (
            f'the server refused the password of role "{m[1]}", or has no such role: set'
            " PGPASSWORD (or ~/.pgpass) to the password given to createuser; to create the"
            f" role, {_as_postgres(f'createuser --pwprompt {shlex.quote(m[1])}')}"
        )
    if m := re.search(r'[Pp]eer authentication failed for user "([^"]+)"', text):
        return (
            f'the server lets role "{m[1]}" in over its Unix socket only from the system user'
            " of that name: run jobledger as that user, or connect through TCP (a host name"
            " in RECEIVER_DATABASE) with a password"
        )
    if "no password supplied" in text:
        return f'role "{role}" needs a password: set PGPASSWORD, or put it in ~/.pgpass'
    if m := re.search(r'no pg_hba.conf entry for host "([^"]+)"', text):
        return (
            f"the server does not let this host ({m[1]}) in: add a line to its pg_hba.conf,"
            f" such as `hostssl {database} {role} {m[1]}/32 scram-sha-256`, then reload it"
            " (systemctl reload postgresql)"
        )
    codes = {getattr(e, "sqlstate", None) for e in errors}
    if "42501" in codes and "schema" in text:  # PostgreSQL 15: public is its owner's only
        grant = f"GRANT CREATE ON SCHEMA public TO {_sql_name(role)}"
        return f'role "{role}" may not create tables in database "{database}"; ' + _as_postgres(
            f'{psql} "{grant}"'
        )
    if "42501" in codes:
        return (
            f'role "{role}" does not own the ledger\'s tables; as the role that ran init-db,'
            f' run: {psql} "REASSIGN OWNED BY CURRENT_USER TO {_sql_name(role)}"'
        )
    if "42P01" in codes:  # undefined_table
        return f"the ledger has no tables yet (or misses a migration): run {INIT_DB}"
    return None


def _refused_folder(file: Path, errors: list[BaseException]) -> OSError | None:
    """Return the OS's refusal of a folder on the way to the ledger file, if that failed."""
    for error in errors:
        if isinstance(error, OSError) and error.filename:
            if file.is_relative_to(os.fsdecode(error.filename)):
                return error
    return None


def _sqlite(path: str, errors: list[BaseException]) -> str | None:
    file = Path(path)
    folder = file.parent
    failed = _refused_folder(file, errors)
    if failed is not None:  # init-db could not make the ledger's folder
        return (
            f"cannot create the folder {folder} ({failed.strerror or failed}); make it the"
            f" service user's, as root: install -d -o {shlex.quote(getpass.getuser())}"
            f" {shlex.quote(str(folder))}"
        )
    if not any(isinstance(e, sqlite3.Error) for e in errors):
        return None
    if not file.exists():
        return (
            f"no ledger file there yet: run {INIT_DB} as the service user, who must be"
            f" able to write to {folder}"
        )
    if any("no such table" in str(e) for e in errors):
        return f"the ledger has no tables yet (or misses a migration): run {INIT_DB}"
    return None


def explain(database: object, error: BaseException) -> str | None:
    """Return one line saying what to run when `error` means the ledger is not set up.

    :param database: the RECEIVER_DATABASE setting (a path, or a postgresql:// URL)
    :returns: None when the error is something else (left as it is)
    """
    errors = _chain(error)
    if is_url(database):
        advice = _postgresql(str(database), errors)
        shown = redact(str(database))
    else:
        advice = _sqlite(str(database), errors)
        shown = str(database)
    if advice is None:
        return None
    return f"cannot use the ledger at RECEIVER_DATABASE={shown}: {advice}"
