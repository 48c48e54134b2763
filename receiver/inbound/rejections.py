"""Rejected hook deliveries (401, 503), counted in memory and written a few at a time.

A rejection stores nothing, but the dashboard shows how many there were, by minute, hook
and reason (`hook_rejections`). Written one by one, every rejected request updated the
same row of its minute: a flood of forged callbacks queued on that row and slowed the
signed callbacks beside it. So each process adds its rejections up in memory, per
minute, hook and reason, and a thread adds the sums to the rows every FLUSH_SECONDS (one
upsert per key, exact however many processes add to the same row), and once more when the
process exits. The dashboard writes its own process's sums before it reads; another
process's arrive within FLUSH_SECONDS. A process killed outright loses at most that long
of counts; if the ledger cannot take them, they are kept and tried again.
"""

import atexit
import logging
import os
import threading
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from store import Ledger, is_url, open_ledger
from store.rejections import REJECTIONS_KEPT

from .. import pgpool

log = logging.getLogger("jobledger.hooks")
FLUSH_SECONDS = 5.0
Key = tuple[datetime, str, str]  # minute, hook, reason
Where = tuple[str, str]  # the ledger: DATABASE, DURABILITY


class Tally:
    """One process's rejection counts not yet written, per ledger."""

    def __init__(self, flush_seconds: float = FLUSH_SECONDS):
        self.flush_seconds = flush_seconds
        self._lock = threading.Lock()
        self._pending: dict[Where, Counter[Key]] = {}
        self._timer: threading.Timer | None = None
        self._pid = os.getpid()

    def add(self, config: Mapping[str, Any], hook: str, reason: str, now: datetime) -> None:
        """Count one rejection (memory only: the request never waits on the ledger)."""
        where = (str(config["DATABASE"]), str(config.get("DURABILITY") or "normal"))
        minute = now.astimezone(UTC).replace(second=0, microsecond=0)
        with self._lock:
            self._forget_parent()
            self._pending.setdefault(where, Counter())[(minute, hook, reason)] += 1
            self._schedule()

    def _forget_parent(self) -> None:
        # After a fork the parent's counts are the parent's to write, and its timer thread
        # does not exist here.
        if self._pid != os.getpid():
            self._pid, self._pending, self._timer = os.getpid(), {}, None

    def _take(self, where: Where | None = None) -> dict[Where, Counter[Key]]:
        with self._lock:
            self._forget_parent()
            if where is None:
                if self._timer is not None:
                    self._timer.cancel()  # harmless when the timer is what runs this
                taken, self._pending, self._timer = self._pending, {}, None
                return taken
            counts = self._pending.pop(where, None)
            return {where: counts} if counts else {}

    def _put_back(self, where: Where, counts: Counter[Key]) -> None:
        oldest = datetime.now(UTC) - REJECTIONS_KEPT  # pruned from the table anyway
        with self._lock:
            self._forget_parent()
            pending = self._pending.setdefault(where, Counter())
            pending.update({k: n for k, n in counts.items() if k[0] >= oldest})
            self._schedule()

    def _schedule(self) -> None:
        """Start the flush timer unless one is running (call with the lock held)."""
        if self._timer is None:
            self._timer = threading.Timer(self.flush_seconds, self.flush_all)
            self._timer.daemon = True
            self._timer.start()

    def flush_into(self, ledger: Ledger, config: Mapping[str, Any]) -> None:
        """Write this process's counts for the app's ledger through `ledger` (the dashboard)."""
        where = (str(config["DATABASE"]), str(config.get("DURABILITY") or "normal"))
        for key, counts in self._take(where).items():
            self._write(ledger, key, counts)

    def flush_all(self) -> None:
        """Write every count held (the timer, and the process's exit)."""
        for where, counts in self._take().items():
            try:
                ledger = _open(*where)
            except Exception:
                log.warning("hooks.rejections-not-counted", exc_info=True)
                self._put_back(where, counts)
                continue
            try:
                self._write(ledger, where, counts)
            finally:
                ledger.close()

    def _write(self, ledger: Ledger, where: Where, counts: Counter[Key]) -> None:
        done: list[Key] = []
        try:
            for key, n in counts.items():
                minute, hook, reason = key
                ledger.rejections.count(hook, reason, minute, n)
                done.append(key)
        except Exception:  # a ledger that is down: keep the rest for the next try
            log.warning("hooks.rejections-not-counted", exc_info=True)
            for key in done:
                del counts[key]
            self._put_back(where, counts)


def _open(database: str, durability: str) -> Ledger:
    """A ledger for a flush outside any request: pooled on PostgreSQL, a connection of its
    own on SQLite (closed after the flush)."""
    if is_url(database):
        return pgpool.borrow(database)
    return open_ledger(database, durability)


TALLY = Tally()
atexit.register(TALLY.flush_all)
