"""The dashboard's health strip: is work flowing, and what is being turned away.

Read from indexes and small counters only, so the dashboard stays cheap at millions of
events. Rejected hook deliveries (401, 503) store nothing, so they are counted per minute
in `hook_rejections`, several at a time, with one upsert; rows older than REJECTIONS_KEPT
are pruned by the first count of each new minute, which keeps the table a few thousand
rows at most.
"""

from datetime import datetime, timedelta

from .connection import LedgerBase
from .ids import iso

REJECTION_REASONS = ("bad_signature", "stale_timestamp", "bad_token", "unsigned", "not_configured")
REJECTIONS_KEPT = timedelta(days=1)
# Where notices come from: each (source, provider, service) the ledger can hear from.
FEEDS = (
    ("http", "aliyun", "vod"),
    ("http", "tencent", "vod"),
    ("mns", "aliyun", "vod"),
    ("mns", "aliyun", "mps"),
    ("pull", "tencent", "vod"),
    ("poll", "aliyun", "vod"),
    ("poll", "aliyun", "mps"),
    ("poll", "aliyun", "live"),
    ("poll", "tencent", "vod"),
)


def _minute(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%MZ")


class HealthReads(LedgerBase):
    """Health-strip queries and the rejection counter (mixed into Ledger)."""

    def count_rejection(self, provider: str, reason: str, now: datetime, n: int = 1) -> None:
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

        self._write(count)

    def count_jobs(self, filters: dict[str, list[str]]) -> int:
        """Return how many jobs match state/provider/service/kind filters, from the counters.

        :param filters: column name -> accepted values (an empty or missing list: any)
        """
        where, params = ["1 = 1"], []  # counter shards may be negative: sum them all
        for column in ("state", "provider", "service", "kind"):
            values = [v for v in filters.get(column) or [] if v]
            if values:
                where.append(f"{column} IN ({','.join('?' * len(values))})")
                params += values
        sql = (
            "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM job_counts"
            f" WHERE {' AND '.join(where)}"
        )
        return self.conn.execute(sql, params).fetchone()[0]

    def rejections_since(self, since: datetime) -> list[dict]:
        """Return rejected deliveries since `since` by provider and reason, most first."""
        rows = self.conn.execute(
            "SELECT provider, reason, SUM(n) FROM hook_rejections WHERE minute >= ?"
            " GROUP BY provider, reason ORDER BY SUM(n) DESC, provider, reason",
            (_minute(since),),
        )
        return [{"provider": p, "reason": r, "n": n} for p, r, n in rows]

    def feeds(self, since: datetime) -> list[dict]:
        """Return, per feed that was ever heard from, its last notice and its count since."""
        out = []
        for source, provider, service in FEEDS:
            where = "source = ? AND provider = ? AND service = ?"
            last = self.conn.execute(
                f"SELECT MAX(received_at) FROM events WHERE {where}", (source, provider, service)
            ).fetchone()[0]
            if last is None:
                continue
            recent = self.conn.execute(
                f"SELECT COUNT(*) FROM events WHERE {where} AND received_at >= ?",
                (source, provider, service, iso(since)),
            ).fetchone()[0]
            out.append(
                {
                    "source": source,
                    "provider": provider,
                    "service": service,
                    "last_at": last,
                    "recent": recent,
                }
            )
        return out

    def unmatched_notices(self, since: datetime, limit: int = 5) -> dict:
        """Return notices tied to no job: how many, how many since `since`, and the newest."""
        total, recent = self.conn.execute(
            "SELECT COUNT(*), COUNT(CASE WHEN received_at >= ? THEN 1 END) FROM events"
            " WHERE job_id IS NULL AND duplicate_of IS NULL",
            (iso(since),),
        ).fetchone()
        fields = ("id", "received_at", "provider", "service", "source", "event_type", "payload")
        rows = self.conn.execute(
            f"SELECT {', '.join(fields)} FROM events WHERE job_id IS NULL"
            " AND duplicate_of IS NULL ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return {
            "total": total,
            "recent": recent,
            "newest": [dict(zip(fields, row, strict=True)) for row in rows],
        }

    def quarantine_waiting(self) -> int:
        """Return how many quarantined bodies are waiting for a replay."""
        return self.conn.execute(
            "SELECT COUNT(*) FROM quarantine WHERE status = 'waiting'"
        ).fetchone()[0]

    def alerts_waiting(self) -> int:
        """Return how many alerts no sink has taken yet."""
        return self.conn.execute(
            "SELECT COUNT(*) FROM alerts a WHERE NOT EXISTS (SELECT 1 FROM alert_deliveries d"
            " WHERE d.alert_id = a.id AND d.delivered_at IS NOT NULL)"
        ).fetchone()[0]
