"""SQL of the alert outbox, the deadline sweep and the dashboard's summaries.

Alerts are written by Ledger in the transaction of the state change that causes them;
this module reads them out for delivery and records what each sink made of them.
"""

from datetime import datetime, timedelta

from .ids import iso
from .ledger import Ledger, write_transaction
from .reads import JOB_COLUMNS, job_from_row, public_job

_ALERT_COLUMNS = (
    "a.id, a.job_id, a.state, a.created_at, a.error_code, a.error_message,"
    " j.provider, j.service, j.kind, j.provider_job_id, j.media_id"
)
_ALERT_FIELDS = [c.split(".")[1] for c in _ALERT_COLUMNS.split(", ")]


def overdue_jobs(ledger: Ledger, deadlines: dict[str, int], now: datetime, limit: int = 1000):
    """Return (job id, deadline seconds) of open jobs past their kind's deadline.

    A kind's deadline is its entry in `deadlines`, else `deadlines["default"]`; 0 means the
    kind never times out. Only the small partial index of open jobs is read.
    """
    kinds = [
        row[0]
        for row in ledger.conn.execute(
            "SELECT DISTINCT kind FROM jobs"
            " WHERE state IN ('submitting', 'submitted', 'processing')"
        )
    ]
    found = []
    for kind in kinds:
        seconds = deadlines.get(kind, deadlines.get("default", 0))
        if not seconds:
            continue
        cutoff = iso(now - timedelta(seconds=seconds))
        rows = ledger.conn.execute(
            "SELECT id FROM jobs WHERE kind = ? AND submitted_at < ?"
            " AND state IN ('submitting', 'submitted', 'processing') LIMIT ?",
            (kind, cutoff, limit - len(found)),
        )
        found += [(row[0], seconds) for row in rows]
        if len(found) >= limit:
            break
    return found


def due_alerts(ledger: Ledger, sink: str, now: datetime, max_age: timedelta) -> list[dict]:
    """Return alerts not yet delivered to `sink` whose next attempt is due, oldest first.

    Alerts older than `max_age` are no longer offered: a sink configured today does not get
    last month's backlog, and one that stays down past it gives up visibly.
    """
    rows = ledger.conn.execute(
        f"SELECT {_ALERT_COLUMNS}, COALESCE(d.attempts, 0) FROM alerts a"
        " JOIN jobs j ON j.id = a.job_id"
        " LEFT JOIN alert_deliveries d ON d.alert_id = a.id AND d.sink = ?"
        " WHERE a.created_at >= ? AND d.delivered_at IS NULL"
        " AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= ?)"
        " ORDER BY a.id LIMIT 1000",
        (sink, iso(now - max_age), iso(now)),
    )
    return [dict(zip([*_ALERT_FIELDS, "attempts"], row, strict=True)) for row in rows]


def record_delivery(
    ledger: Ledger,
    alert_ids: list[int],
    sink: str,
    now: datetime,
    *,
    error: str | None = None,
    retry_at: datetime | None = None,
) -> None:
    """Record one attempt to deliver alerts to `sink`: delivered, or failed until `retry_at`."""
    delivered = None if error else iso(now)
    with write_transaction(ledger.db):
        ledger.conn.executemany(
            "INSERT INTO alert_deliveries (alert_id, sink, delivered_at, attempts,"
            " next_attempt_at, last_error) VALUES (?, ?, ?, 1, ?, ?)"
            " ON CONFLICT (alert_id, sink) DO UPDATE SET delivered_at = excluded.delivered_at,"
            " attempts = attempts + 1, next_attempt_at = excluded.next_attempt_at,"
            " last_error = excluded.last_error",
            [(i, sink, delivered, retry_at and iso(retry_at), error) for i in alert_ids],
        )


def alerts_for_job(ledger: Ledger, job_id: str) -> list[dict]:
    """Return a job's alerts with how each sink took them."""
    alerts = [
        dict(zip(("id", "state", "created_at", "error_code", "error_message"), row, strict=True))
        for row in ledger.conn.execute(
            "SELECT id, state, created_at, error_code, error_message FROM alerts"
            " WHERE job_id = ? ORDER BY id",
            (job_id,),
        )
    ]
    for alert in alerts:
        alert["deliveries"] = [
            dict(zip(("sink", "delivered_at", "attempts", "last_error"), row, strict=True))
            for row in ledger.conn.execute(
                "SELECT sink, delivered_at, attempts, last_error FROM alert_deliveries"
                " WHERE alert_id = ? ORDER BY sink",
                (alert["id"],),
            )
        ]
    return alerts


def recent_alerts(ledger: Ledger, limit: int = 20) -> list[dict]:
    """Return the newest alerts, with counts of sinks delivered and failing."""
    rows = ledger.conn.execute(
        f"SELECT {_ALERT_COLUMNS},"
        " (SELECT COUNT(*) FROM alert_deliveries d WHERE d.alert_id = a.id"
        "  AND d.delivered_at IS NOT NULL),"
        " (SELECT COUNT(*) FROM alert_deliveries d WHERE d.alert_id = a.id"
        "  AND d.delivered_at IS NULL)"
        " FROM alerts a JOIN jobs j ON j.id = a.job_id ORDER BY a.id DESC LIMIT ?",
        (limit,),
    )
    fields = [*_ALERT_FIELDS, "delivered", "failing"]
    return [dict(zip(fields, row, strict=True)) for row in rows]


def failures_by_hour(ledger: Ledger, now: datetime) -> list[dict]:
    """Return alert counts for each of the last 24 hours, oldest hour first."""
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
    counts = {}
    for hour, state, n in ledger.conn.execute(
        "SELECT substr(created_at, 1, 13), state, COUNT(*) FROM alerts"
        " WHERE created_at >= ? GROUP BY 1, 2",
        (iso(start),),
    ):
        counts.setdefault(hour, {})[state] = n
    hours = []
    for i in range(24):
        key = iso(start + timedelta(hours=i))[:13]
        hours.append({"hour": key, "by_state": counts.get(key, {})})
    return hours


def oldest_unfinished(ledger: Ledger, limit: int = 10) -> list[dict]:
    """Return the oldest jobs without a final word (timed-out ones included).

    INDEXED BY here and in metrics_snapshot: the planner prefers jobs_state_id, which
    took 20 ms at 1M jobs against under 0.1 ms for the small partial index (bench/).
    """
    rows = ledger.conn.execute(
        f"SELECT {JOB_COLUMNS} FROM jobs INDEXED BY jobs_unfinished"
        " WHERE state IN ('submitting', 'submitted', 'processing', 'timed_out')"
        " ORDER BY submitted_at LIMIT ?",
        (limit,),
    )
    return [public_job(job_from_row(row)) for row in rows]


def metrics_snapshot(ledger: Ledger) -> dict:
    """Return the ledger-side figures /metrics exposes, all from counters and indexes."""
    conn = ledger.conn
    oldest = conn.execute(
        "SELECT MIN(submitted_at) FROM jobs INDEXED BY jobs_unfinished"
        " WHERE state IN ('submitting', 'submitted', 'processing', 'timed_out')"
    ).fetchone()[0]
    return {
        "jobs": conn.execute(
            "SELECT provider, service, kind, state, n FROM job_counts WHERE n > 0"
        ).fetchall(),
        "notices": conn.execute(
            "SELECT source, provider, event_type, outcome, n FROM notice_counts"
        ).fetchall(),
        "oldest_unfinished": oldest,
        "alerts": conn.execute(
            "SELECT sink, SUM(delivered_at IS NOT NULL), SUM(attempts - (delivered_at IS NOT NULL))"
            " FROM alert_deliveries GROUP BY sink"
        ).fetchall(),
        "alerts_pending": conn.execute(
            "SELECT COUNT(*) FROM alerts a WHERE NOT EXISTS (SELECT 1 FROM alert_deliveries d"
            " WHERE d.alert_id = a.id AND d.delivered_at IS NOT NULL)"
        ).fetchone()[0],
    }
