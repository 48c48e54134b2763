"""The alert outbox: what each sink has been sent, claimed so that each alert goes out once.

Alerts are written in the transaction of the state change that causes them
(store/notices.py `state_changed`); these methods read them out for delivery and record
what each sink made of them. A sender first claims the alerts it is about to send (a lease
in `alert_deliveries.claimed_until`, set by one conditional upsert), so when several
`reconcile` processes run, on one host or many, each alert goes to each sink once: the
other processes skip claimed alerts.
"""

import json
from datetime import datetime, timedelta

from .ids import iso, utcnow
from .session import Part, Session

_ALERT_COLUMNS = (
    "a.id, a.job_id, a.state, a.created_at, a.error_code, a.error_message,"
    " j.provider, j.service, j.kind, j.provider_job_id, j.media_id, a.subject, a.summary,"
    " a.detail"
)
_ALERT_FIELDS = [c.split(".")[1] for c in _ALERT_COLUMNS.split(", ")]
CLAIM_CHUNK = 500


def queue_alert(session: Session, *, subject: str, kind: str, summary: str, detail: dict) -> bool:
    """Queue an alert about something other than one job, in the caller's transaction.

    The same `subject` is queued once, whoever notices it first: return False if it was
    queued already.

    :param subject: what it is about, unique (`anomaly:<group>:<started at>:started`)
    :param kind: what happened, the alert's type for programs (`provider.anomaly.started`)
    :param summary: one line for people
    :param detail: a JSON object for programs
    """
    rows = session.conn.execute(
        "INSERT INTO alerts (job_id, state, created_at, kind, subject, summary, detail)"
        " VALUES (NULL, ?, ?, 'other', ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id",
        (kind, utcnow(), subject, summary, json.dumps(detail, ensure_ascii=False)),
    ).fetchall()
    return bool(rows)


def _alert(fields: list[str], row: tuple) -> dict:
    alert = dict(zip(fields, row, strict=True))
    alert["detail"] = json.loads(alert["detail"]) if alert["detail"] else None
    return alert


class Alerts(Part):
    """Alerts for delivery, and what happened to them (the ledger's `alerts` part)."""

    def due(self, sink: str, now: datetime, max_age: timedelta) -> list[dict]:
        """Return alerts not yet delivered to `sink` whose next attempt is due, oldest first.

        Alerts claimed by another sender are left out. Alerts older than `max_age` are no
        longer offered: a sink configured today does not get last month's backlog, and one
        that stays down past it gives up visibly.
        """
        stamp = iso(now)
        rows = self.conn.execute(
            f"SELECT {_ALERT_COLUMNS}, COALESCE(d.attempts, 0) FROM alerts a"
            " LEFT JOIN jobs j ON j.id = a.job_id"
            " LEFT JOIN alert_deliveries d ON d.alert_id = a.id AND d.sink = ?"
            " WHERE a.created_at >= ? AND d.delivered_at IS NULL"
            " AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= ?)"
            " AND (d.claimed_until IS NULL OR d.claimed_until <= ?)"
            " ORDER BY a.id LIMIT 1000",
            (sink, iso(now - max_age), stamp, stamp),
        )
        return [_alert([*_ALERT_FIELDS, "attempts"], row) for row in rows]

    def claim(self, alert_ids: list[int], sink: str, now: datetime, until: datetime) -> set[int]:
        """Claim alerts for delivery to `sink` until `until`; return the ids this caller got.

        An alert is claimed only if it is not delivered to `sink`, not claimed by another
        sender whose lease still runs, and due: one conditional upsert per chunk decides,
        atomically on either engine (on PostgreSQL a concurrent claimer of the same row
        waits for the first one's commit, then finds the lease taken).
        """
        stamp, claimed = iso(now), set[int]()

        def claim(chunk: list[int]) -> list[tuple]:
            marks = ",".join("?" * len(chunk))
            return self.conn.execute(
                "INSERT INTO alert_deliveries (alert_id, sink, attempts, claimed_until)"
                f" SELECT id, ?, 0, ? FROM alerts WHERE id IN ({marks})"
                " ON CONFLICT (alert_id, sink) DO UPDATE SET claimed_until = excluded.claimed_until"
                " WHERE alert_deliveries.delivered_at IS NULL"
                " AND (alert_deliveries.claimed_until IS NULL"
                "  OR alert_deliveries.claimed_until <= ?)"
                " AND (alert_deliveries.next_attempt_at IS NULL"
                "  OR alert_deliveries.next_attempt_at <= ?)"
                " RETURNING alert_id",
                (sink, iso(until), *chunk, stamp, stamp),
            ).fetchall()

        for start in range(0, len(alert_ids), CLAIM_CHUNK):
            rows = self.write(claim, list(alert_ids[start : start + CLAIM_CHUNK]))
            claimed.update(row[0] for row in rows)
        return claimed

    def record_delivery(
        self,
        alert_ids: list[int],
        sink: str,
        now: datetime,
        *,
        error: str | None = None,
        retry_at: datetime | None = None,
    ) -> None:
        """Record one attempt to deliver alerts to `sink` (delivered, or failed until
        `retry_at`), and release their claim."""
        delivered = None if error else iso(now)
        rows = [(i, sink, delivered, retry_at and iso(retry_at), error) for i in alert_ids]
        self.write(
            self.conn.executemany,
            "INSERT INTO alert_deliveries (alert_id, sink, delivered_at, attempts,"
            " next_attempt_at, last_error) VALUES (?, ?, ?, 1, ?, ?)"
            " ON CONFLICT (alert_id, sink) DO UPDATE SET delivered_at = excluded.delivered_at,"
            " attempts = alert_deliveries.attempts + 1,"
            " next_attempt_at = excluded.next_attempt_at, last_error = excluded.last_error,"
            " claimed_until = NULL",
            rows,
        )

    def for_job(self, job_id: str) -> list[dict]:
        """Return a job's alerts with how each sink took them."""
        alerts = [
            dict(
                zip(("id", "state", "created_at", "error_code", "error_message"), row, strict=True)
            )
            for row in self.conn.execute(
                "SELECT id, state, created_at, error_code, error_message FROM alerts"
                " WHERE job_id = ? ORDER BY id",
                (job_id,),
            )
        ]
        for alert in alerts:
            alert["deliveries"] = [
                dict(zip(("sink", "delivered_at", "attempts", "last_error"), row, strict=True))
                for row in self.conn.execute(
                    "SELECT sink, delivered_at, attempts, last_error FROM alert_deliveries"
                    " WHERE alert_id = ? AND attempts > 0 ORDER BY sink",
                    (alert["id"],),
                )
            ]
        return alerts

    def recent(self, limit: int = 20) -> list[dict]:
        """Return the newest alerts, with counts of sinks delivered and failing."""
        rows = self.conn.execute(
            f"SELECT {_ALERT_COLUMNS},"
            " (SELECT COUNT(*) FROM alert_deliveries d WHERE d.alert_id = a.id"
            "  AND d.delivered_at IS NOT NULL),"
            " (SELECT COUNT(*) FROM alert_deliveries d WHERE d.alert_id = a.id"
            "  AND d.delivered_at IS NULL AND d.attempts > 0)"
            " FROM alerts a LEFT JOIN jobs j ON j.id = a.job_id ORDER BY a.id DESC LIMIT ?",
            (limit,),
        )
        fields = [*_ALERT_FIELDS, "delivered", "failing"]
        return [_alert(fields, row) for row in rows]

    def by_hour(self, now: datetime) -> list[dict]:
        """Return job alerts for each of the last 24 hours by state, oldest hour first."""
        start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
        counts: dict[str, dict] = {}
        for hour, state, n in self.conn.execute(
            "SELECT substr(created_at, 1, 13), state, COUNT(*) FROM alerts"
            " WHERE created_at >= ? AND job_id IS NOT NULL GROUP BY 1, 2",
            (iso(start),),
        ):
            counts.setdefault(hour, {})[state] = n
        hours = []
        for i in range(24):
            key = iso(start + timedelta(hours=i))[:13]
            hours.append({"hour": key, "by_state": counts.get(key, {})})
        return hours

    def waiting(self) -> int:
        """Return how many alerts no sink has taken yet."""
        return self.conn.execute(
            "SELECT COUNT(*) FROM alerts a WHERE NOT EXISTS (SELECT 1 FROM alert_deliveries d"
            " WHERE d.alert_id = a.id AND d.delivered_at IS NOT NULL)"
        ).fetchone()[0]
