"""Ledger ids that sort by creation time, and the one timestamp format the ledger uses."""

import os
import threading
import time
from datetime import UTC, datetime

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_lock = threading.Lock()
_last = [0, 0]  # last millisecond used, last random part: keeps ids monotonic in one process


def new_id() -> str:
    """Return a 26-character ULID: 48-bit milliseconds then 80 random bits, Crockford base32.

    Ids made in one process are strictly increasing; ids from different processes in the same
    millisecond sort arbitrarily but stably, which is all keyset pagination needs.
    """
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last[0]:
            ms, rand = _last[0], _last[1] + 1
        else:
            rand = int.from_bytes(os.urandom(10), "big") >> 1  # headroom for increments
        _last[0], _last[1] = ms, rand
    value = (ms << 80) | (rand & ((1 << 80) - 1))
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


_MAX_MS = (1 << 48) - 1


def id_floor(moment: datetime, after: bool = False) -> str:
    """Return the smallest id that new_id() could have produced at `moment` (for time filters).

    With `after`, the smallest id of the next millisecond (an exclusive upper bound). Times
    before 1970 or past the ids' range (year 10889) are held to its ends.
    """
    ms = min(max(int(moment.timestamp() * 1000), 0), _MAX_MS) + after
    value = ms << 80
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def utcnow() -> str:
    """Return the current time as ISO 8601 UTC with milliseconds: 2026-11-21T05:35:21.123Z."""
    return iso(datetime.now(UTC))


def iso(moment: datetime) -> str:
    """Format an aware datetime the way the ledger stores every timestamp."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
