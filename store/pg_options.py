"""How jobledger connects to PostgreSQL: the URL's checks, the connection settings, and
how a failure to connect is named (never showing a password)."""

import os
from urllib.parse import urlsplit

import psycopg
from psycopg import conninfo

from . import connection as _sqlite
from .backend import redact

CONNECT_TIMEOUT_S = 5
# statement_timeout of a web worker's connections: every statement of a web request (a
# callback's write, a page's read) is cancelled by the server at this point, so that a
# callback is answered within Alibaba VOD's 5 s; commands set none (long reads go on).
WEB_STATEMENT_TIMEOUT_MS = 3500
# For a server host that vanished without a word (no FIN, no RST): keepalive probes on an
# idle connection after 5 s, and data or probes left unacknowledged for 5 s end it. libpq
# applies them over TCP only.
TCP_SETTINGS = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 2,
    "tcp_user_timeout": 5000,
}


def connection_options(
    url: str, *, lock_timeout: bool = True, statement_timeout_ms: int | None = None
) -> dict:
    """Return the psycopg.connect keyword arguments every ledger connection to `url` uses.

    Every lock wait (a row, an advisory lock, an uncommitted duplicate key) gives up after
    SQLite's busy timeout, so a ledger held by a stuck transaction answers "busy" (503, a
    deferred batch) as SQLite does, instead of holding a request thread forever. It is a
    startup parameter, not a SET after connecting: the pool passes these arguments to every
    connection it opens, it costs no round trip, and RESET ALL keeps it. The options the
    URL (or PGOPTIONS) already has come after it, so they still apply and a `-c
    lock_timeout=...` of the operator's own wins; psycopg would otherwise replace them.
    A `connect_timeout` or TCP setting (TCP_SETTINGS) in the URL keeps its value too.

    :param statement_timeout_ms: also bound every statement (web workers), the same way
    """
    params = conninfo.conninfo_to_dict(url)
    bounds = {"connect_timeout": CONNECT_TIMEOUT_S, **TCP_SETTINGS}
    options: dict = {
        "autocommit": True,
        "application_name": "jobledger",
        **{key: value for key, value in bounds.items() if key not in params},
    }
    if lock_timeout:
        own = params["options"] if "options" in params else os.environ.get("PGOPTIONS", "")
        lock_timeout_ms = max(1, round(_sqlite.BUSY_TIMEOUT_S * 1000))
        ours = f"-c lock_timeout={lock_timeout_ms}"
        if statement_timeout_ms is not None:
            ours += f" -c statement_timeout={statement_timeout_ms}"
        options["options"] = f"{ours} {own}".strip()
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
