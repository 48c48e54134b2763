"""What differs between SQLite and PostgreSQL, in one small object per engine.

The SQL itself is written once, in the dialect both engines accept (`ON CONFLICT`,
`RETURNING`, `COUNT(*) FILTER (WHERE ...)`, `?` placeholders, which the PostgreSQL
connection translates once per statement text). What cannot be written once is here.
"""

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

URL_SCHEMES = ("postgresql://", "postgres://")
COUNTER_SHARDS = 16


def is_url(database: object) -> bool:
    """Tell whether a RECEIVER_DATABASE value names a PostgreSQL server (else an SQLite file)."""
    return isinstance(database, str) and database.startswith(URL_SCHEMES)


def redact(url: str) -> str:
    """Return the URL with any password replaced by `***`, for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "postgresql://(unparseable)"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, sep, _ = userinfo.partition(":")
        netloc = f"{user}{':***' if sep else ''}@{host}"
    query = "&".join(
        "password=***" if item.lower().startswith("password=") else item
        for item in parts.query.split("&")
        if item
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


@dataclass(frozen=True)
class Backend:
    """One engine's answers to the questions the shared SQL cannot settle."""

    name: str
    # How a transaction that reads then writes begins. SQLite: take the write lock first
    # (a deferred transaction that has read cannot always become a writer). PostgreSQL:
    # rows are locked as they are read, with `for_update`.
    begin: str
    # Appended to a read whose row the transaction then writes (per-job serialization).
    for_update: str
    # Appended to a claim's read, so concurrent claimers pass over each other's rows.
    skip_locked: str
    # Take transaction-scoped advisory locks on dedup and job keys before check-then-insert.
    advisory_locks: bool
    # Rows per counter key: writers on many hosts spread over them; reads sum them.
    counter_shards: int
    # The column that orders rows by insertion cheaply.
    creation_order: str
    # Whether the planner needs `INDEXED BY` to pick a partial index.
    index_hints: bool
    # Whether deadlocks and serialization failures are rolled back for a retry.
    retries: bool
    # Whether a notice's statements can be sent without waiting for each answer
    # (psycopg's pipeline mode: one network round trip until a result is needed).
    pipelines: bool = False

    def hint(self, index: str) -> str:
        """Return ` INDEXED BY <index>` where the engine needs it, else nothing."""
        return f" INDEXED BY {index}" if self.index_hints else ""


SQLITE = Backend(
    name="sqlite",
    begin="BEGIN IMMEDIATE",
    for_update="",
    skip_locked="",
    advisory_locks=False,
    counter_shards=1,
    creation_order="rowid",
    index_hints=True,
    retries=False,
)

POSTGRES = Backend(
    name="postgresql",
    begin="BEGIN",
    for_update=" FOR UPDATE",
    skip_locked=" FOR UPDATE SKIP LOCKED",
    advisory_locks=True,
    counter_shards=COUNTER_SHARDS,
    creation_order="id",
    index_hints=False,
    retries=True,
    pipelines=True,
)
