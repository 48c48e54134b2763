"""The ledger: every job, every provider notice, and the quarantine. Knows SQL, never Flask."""

from .backend import is_url
from .connection import write_transaction
from .errors import JobNotFound, LedgerError, LedgerUnavailable, is_transient
from .ledger import Ledger, RecordResult, open_ledger
from .schema import ledger_problem, migrate, pending_migrations

__all__ = [
    "JobNotFound",
    "Ledger",
    "LedgerError",
    "LedgerUnavailable",
    "RecordResult",
    "is_transient",
    "is_url",
    "ledger_problem",
    "migrate",
    "open_ledger",
    "pending_migrations",
    "write_transaction",
]
