"""What the dashboard's health strip and /metrics read: is work flowing, what is stuck.

Read from indexes and small counters only, so the dashboard stays cheap at millions of
events.
"""

from datetime import datetime

from .ids import iso
from .records import JOB_COLUMNS, job_from_row, public_job
from .session import Part

_UNFINISHED = "state IN ('submitting', 'submitted', 'processing', 'timed_out')"
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


class Dashboard(Part):
    """The dashboard's and /metrics' reads (the ledger's `dashboard` part)."""

    def feeds(self, since: datetime) -> list[dict]:
        """Return, per feed that was ever heard from, its last notice and its count since.

        A replay (of a stored event, or of a quarantined body) is the ledger's own doing,
        not a delivery: it is left out, so that it never makes a silent feed look alive.
        """
        out = []
        for source, provider, service in FEEDS:
            where = (
                "source = ? AND provider = ? AND service = ? AND replay_of IS NULL AND id NOT IN"
                " (SELECT replay_event_id FROM quarantine WHERE replay_event_id IS NOT NULL)"
            )
            # Newest first on events_feed: stops at the first delivery past any replays.
            row = self.conn.execute(
                f"SELECT received_at FROM events WHERE {where} ORDER BY received_at DESC LIMIT 1",
                (source, provider, service),
            ).fetchone()
            if row is None:
                continue
            last = row[0]
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

    def oldest_unfinished(self, limit: int = 10) -> list[dict]:
        """Return the oldest jobs without a final word (timed-out ones included).

        INDEXED BY on SQLite, here and in metrics_snapshot: its planner would prefer
        jobs_state_id to the small partial index (docs/benchmarks.md). PostgreSQL's planner
        picks the partial index itself.
        """
        rows = self.conn.execute(
            f"SELECT {JOB_COLUMNS} FROM jobs{self.backend.hint('jobs_unfinished')}"
            f" WHERE {_UNFINISHED} ORDER BY submitted_at LIMIT ?",
            (limit,),
        )
        return [public_job(job_from_row(row)) for row in rows]

    def metrics_snapshot(self) -> dict:
        """Return the ledger-side figures /metrics exposes, all from counters and indexes."""
        conn = self.conn
        oldest = conn.execute(
            f"SELECT MIN(submitted_at) FROM jobs{self.backend.hint('jobs_unfinished')}"
            f" WHERE {_UNFINISHED}"
        ).fetchone()[0]
        return {
            "jobs": conn.execute(
                "SELECT provider, service, kind, state, CAST(SUM(n) AS BIGINT) FROM job_counts"
                " GROUP BY provider, service, kind, state HAVING SUM(n) > 0"
            ).fetchall(),
            "notices": conn.execute(
                "SELECT source, provider, event_type, outcome, CAST(SUM(n) AS BIGINT)"
                " FROM notice_counts GROUP BY source, provider, event_type, outcome"
            ).fetchall(),
            "oldest_unfinished": oldest,
            "alerts": conn.execute(
                "SELECT sink, COUNT(*) FILTER (WHERE delivered_at IS NOT NULL),"
                " CAST(SUM(attempts) AS BIGINT) - COUNT(*) FILTER (WHERE delivered_at IS NOT NULL)"
                " FROM alert_deliveries GROUP BY sink"
            ).fetchall(),
            "alerts_pending": conn.execute(
                "SELECT COUNT(*) FROM alerts a WHERE NOT EXISTS (SELECT 1 FROM alert_deliveries d"
                " WHERE d.alert_id = a.id AND d.delivered_at IS NOT NULL)"
            ).fetchone()[0],
        }
