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
    return _encode((ms << 80) | (rand & ((1 << 80) - 1)))


# Two base32 digits at a time: half the steps of a digit-by-digit loop on the hot path.
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]


def _encode(value: int) -> str:
    """Return the 130-bit `value` as 26 Crockford base32 digits, most significant first."""
    pairs = []
    for _ in range(13):
        pairs.append(_PAIRS[value & 1023])
        value >>= 10
    return "".join(reversed(pairs))


_MAX_MS = (1 << 48) - 1


def id_floor(moment: datetime, after: bool = False) -> str:
    """Return the smallest id that new_id() could have produced at `moment` (for time filters).

    With `after`, the smallest id of the next millisecond (an exclusive upper bound). Times
    before 1970 or past the ids' range (year 10889) are held to its ends.
    """
    ms = min(max(int(moment.timestamp() * 1000), 0), _MAX_MS) + after
    return _encode(ms << 80)


def utcnow() -> str:
    """Return the current time as ISO 8601 UTC with milliseconds: 2026-11-21T05:35:21.123Z."""
    return iso(datetime.now(UTC))


def iso(moment: datetime) -> str:
    """Format an aware datetime the way the ledger stores every timestamp."""
    m = moment.astimezone(UTC)
    # By hand: strftime costs several times more, once or twice per notice.
    return (
        f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}"
        f".{m.microsecond // 1000:03d}Z"
    )
