"""The ledger: one connection, and the named parts that all of jobledger's SQL lives in.

| part | module | what |
| --- | --- | --- |
| `notices` | notices.py | recording provider notices: the write path, one transaction each |
| `submissions` | submissions.py | jobledger's own changes: submissions, answers, deadlines, notes |
| `jobs` | jobs.py | reading jobs and their events, filtered pages, counts |
| `quarantine` | quarantine.py | bodies that could not be parsed, and their status |
| `replays` | replays.py | what a bulk replay covers |
| `alerts` | alerts.py | the alert outbox, claimed per sink |
| `endpoints` | endpoints.py | where outbound messages go, their filters, secrets and health |
| `deliveries` | deliveries.py | outbound messages fanned out to endpoints, claimed, attempted |
| `polls` | polls.py | the schedule of polls, API call pacing, the deadline sweep |
| `dashboard` | dashboard.py | the health strip's and /metrics' reads |
| `rejections` | rejections.py | rejected hook deliveries, counted per minute |
| `provider_health` | provider_health.py | failure rates, durations, slow jobs per kind |
| `retention` | retention.py | pruning old payloads |

Every part shares the ledger's `Session` (store/session.py), the one way a write
transaction is run on either engine.
"""

from pathlib import Path
from typing import Any

from sqlite_utils import Database

from .alerts import Alerts
from .backend import POSTGRES, SQLITE, Backend, is_url
from .connection import connect
from .dashboard import Dashboard
from .deliveries import Deliveries
from .endpoints import Endpoints
from .jobs import Jobs
from .notices import Notices
from .polls import Polls
from .provider_health import ProviderHealth
from .quarantine import Quarantine
from .rejections import Rejections
from .replays import Replays
from .retention import Retention
from .session import Session
from .submissions import Submissions


def open_ledger(database: str | Path, durability: str = "normal") -> "Ledger":
    """Open the ledger (already migrated). Use as a context manager to close it.

    :param database: an SQLite file path, or a postgresql:// URL (one connection; web
      workers borrow theirs from a pool instead, see receiver/pgpool.py)
    :param durability: SQLite only; PostgreSQL's is the server's `synchronous_commit`
    :raises LedgerUnavailable: the PostgreSQL server cannot be reached
    """
    if is_url(database):
        from .pg import connect as connect_pg

        return Ledger(connect_pg(str(database)), POSTGRES)
    return Ledger(Database(connect(database, durability), execute_plugins=False))


class Ledger:
    """All of jobledger's SQL, by part; methods are named for what they mean.

    :param db: a sqlite-utils Database (SQLite), or a store.pg.PgConnection (PostgreSQL)
    """

    def __init__(self, db: Any, backend: Backend = SQLITE):
        self.backend = backend
        if backend is SQLITE:
            self.db, self.conn = db, db.conn
        else:
            self.db, self.conn = None, db
        self.session = Session(self.conn, backend)
        self.notices = Notices(self.session)
        self.submissions = Submissions(self.session)
        self.jobs = Jobs(self.session)
        self.quarantine = Quarantine(self.session)
        self.replays = Replays(self.session)
        self.alerts = Alerts(self.session)
        self.endpoints = Endpoints(self.session)
        self.deliveries = Deliveries(self.session)
        self.polls = Polls(self.session)
        self.dashboard = Dashboard(self.session)
        self.rejections = Rejections(self.session)
        self.retention = Retention(self.session)
        self.provider_health = ProviderHealth(self.session)

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (or give it back to its pool)."""
        (self.db or self.conn).close()
