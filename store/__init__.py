"""The ledger: every job, every provider notice, and the quarantine. Knows SQL, never Flask."""

from .backend import is_url
from .errors import BadQuery, JobNotFound, LedgerError, LedgerUnavailable, is_transient
from .ledger import Ledger, open_ledger
from .notices import NormalizedEvent, RecordResult
from .schema import ledger_problem, migrate, pending_migrations

__all__ = [
    "BadQuery",
    "JobNotFound",
    "Ledger",
    "LedgerError",
    "LedgerUnavailable",
    "NormalizedEvent",
    "RecordResult",
    "is_transient",
    "is_url",
    "ledger_problem",
    "migrate",
    "open_ledger",
    "pending_migrations",
]
