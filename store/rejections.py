"""Rejected hook deliveries (401, 503), counted per minute: they store nothing else.

Web processes add their rejections up in memory and write the sums here every few seconds
(receiver/inbound/rejections.py); rows older than REJECTIONS_KEPT are pruned by the first
write of each new minute, which keeps the table a few thousand rows at most.
"""

from datetime import datetime, timedelta

from .session import Part

REJECTION_REASONS = ("bad_signature", "stale_timestamp", "bad_token", "unsigned", "not_configured")
REJECTIONS_KEPT = timedelta(days=1)


def _minute(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%MZ")


class Rejections(Part):
    """Counting rejected hook deliveries (the ledger's `rejections` part)."""

    def count(self, provider: str, reason: str, now: datetime, n: int = 1) -> None:
        """Count rejected hook deliveries in their minute; prune old minutes now and then.

        :param provider: the hook's provider name (`aliyun_vod`, `tencent_vod`)
        :param reason: one of REJECTION_REASONS
        :param now: the time of the rejections (aware)
        :param n: how many (a web process adds up its rejections and writes them at once)
        """

        def count() -> None:
            rows = self.conn.execute(
                "INSERT INTO hook_rejections (minute, provider, reason, n) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (minute, provider, reason) DO UPDATE SET n = hook_rejections.n + ?"
                " RETURNING n",
                (_minute(now), provider, reason, n, n),
            ).fetchall()
            if rows and rows[0][0] == n:  # a new row: the first of its minute for this key
                self.conn.execute(
                    "DELETE FROM hook_rejections WHERE minute < ?",
                    (_minute(now - REJECTIONS_KEPT),),
                )

        self.write(count)

    def since(self, since: datetime) -> list[dict]:
        """Return rejected deliveries since `since` by provider and reason, most first."""
        rows = self.conn.execute(
            "SELECT provider, reason, SUM(n) FROM hook_rejections WHERE minute >= ?"
            " GROUP BY provider, reason ORDER BY SUM(n) DESC, provider, reason",
            (_minute(since),),
        )
        return [{"provider": p, "reason": r, "n": n} for p, r, n in rows]
