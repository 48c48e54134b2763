"""The ledger: every job, every provider notice, and the quarantine. Knows SQL, never Flask."""

from .ledger import Ledger, RecordResult, ledger_problem, migrate, open_ledger, write_transaction

__all__ = [
    "Ledger",
    "RecordResult",
    "ledger_problem",
    "migrate",
    "open_ledger",
    "write_transaction",
]
