"""Retention: raw payloads older than a cutoff are pruned; jobs and event summaries stay.

Event ids grow with time, so a pass walks id ranges from the last id it pruned (kept in
`ledger_meta`) and stops at the first event newer than the cutoff: each pass reads only
what it prunes, however large the ledger. Pruned events keep every column but `payload`,
which becomes NULL. Quarantined bodies are pruned only once replayed: an unreplayed one is
the only copy of a notice.
"""

from datetime import datetime

from .ids import iso
from .session import Part

BATCH = 5000


class Retention(Part):
    """Pruning old payloads (the ledger's `retention` part)."""

    def prune(self, older_than: datetime) -> int:
        """Null out payloads received before `older_than`; return how many were pruned."""
        cutoff, pruned = iso(older_than), 0
        conn = self.conn
        while True:
            row = conn.execute(
                "SELECT value FROM ledger_meta WHERE key = 'pruned_through'"
            ).fetchone()
            start = int(row[0]) if row else 0
            batch = conn.execute(
                "SELECT id, received_at FROM events WHERE id > ? ORDER BY id LIMIT ?",
                (start, BATCH),
            ).fetchall()
            # Events are appended in time order: stop at the first one that is new enough.
            old = 0
            while old < len(batch) and batch[old][1] < cutoff:
                old += 1
            if old == 0:
                break
            pruned += self.write(self._prune_range, start, batch[old - 1][0])
            if old < len(batch) or len(batch) < BATCH:
                break
        pruned += self.write(
            lambda: (
                conn.execute(
                    "UPDATE quarantine SET body = NULL WHERE replayed_at IS NOT NULL"
                    " AND received_at < ? AND body IS NOT NULL",
                    (cutoff,),
                ).rowcount
            )
        )
        return pruned

    def _prune_range(self, start: int, end: int) -> int:
        count = self.conn.execute(
            "UPDATE events SET payload = NULL WHERE id > ? AND id <= ? AND payload IS NOT NULL",
            (start, end),
        ).rowcount
        self.conn.execute(
            "INSERT INTO ledger_meta (key, value) VALUES ('pruned_through', ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(end),),
        )
        return count
