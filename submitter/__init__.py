"""Outbound provider API calls: submit jobs, and ask providers how their jobs are doing.

Knows the providers' APIs and SDKs and the ledger's store, never Flask or the receiver, so
the CLI, the HTTP API and tests drive it the same way.
"""

from .calls import CallFailed, NotConfigured, UsageError
from .operations import OPERATIONS, Operation, UnknownOperation, get_operation
from .submit import Submission, submit

__all__ = [
    "CallFailed",
    "NotConfigured",
    "OPERATIONS",
    "Operation",
    "Submission",
    "UnknownOperation",
    "UsageError",
    "get_operation",
    "submit",
]
