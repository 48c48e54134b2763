"""Deliveries of outbound messages: fan-out, claims, attempts, and what an operator reads.

A job's state change writes one `messages` row (store/notices.py `queue_message`). The
`deliver` process then:

1. **fans out** messages not yet fanned out, oldest first, to every endpoint created
   before them whose filter matches, as `pending` deliveries. One process at a time does
   it (an advisory lock on PostgreSQL; SQLite's write lock), in message id order, so a
   job's earlier message always has its delivery before a later one does;
2. **claims** due deliveries of one endpoint with a lease (`claimed_until`, and a `claim`
   token), skipping rows other processes hold (`FOR UPDATE SKIP LOCKED`). A delivery is
   due only when no earlier message of its job to that endpoint is still `pending`: that
   is the per-job order, and a retried or recovered one holds the later ones back;
3. **records** each attempt with its outcome in one transaction: the attempt row, the
   delivery's status and next attempt, the endpoint's health, the counters of /metrics,
   and, when the endpoint must be disabled, that and its alert. A claim that ran out and
   was taken over by another process changes no status: the attempt is still recorded.

These bookkeeping transactions do not wait for their commit to reach the disk (on
PostgreSQL `synchronous_commit = off`; the `deliver` process opens SQLite with normal
durability): a crash can lose the last of them, and then a message is sent again, with the
same `webhook-id`, as at-least-once allows; an fsync per attempt would cap a sender at the
disk's flush rate. Messages themselves are written by the state change, durably.
"""

import json
import random
from datetime import datetime, timedelta
from typing import Any

from .alerts import queue_alert
from .endpoints import shown_url
from .ids import iso
from .session import Part

FANOUT_LOCK = 0x6A6C2D66616E6F75  # one advisory lock id: one fan-out at a time
# Bounds (seconds) of the attempt duration histogram; the last bucket is +Inf.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0)
EXCERPT_CHARS = 1024
STATUSES = ("pending", "delivered", "failed")
# Due: pending, its time come, nobody's lease running, and the earliest message of its job
# still pending to that endpoint. Written as a scalar subquery, not NOT EXISTS: no planner
# can turn it into a join that reads every pending delivery of the endpoint (PostgreSQL
# did, before its statistics came); it is one probe of deliveries_job per row looked at
# (deliveries_due, the other index of pending rows, cannot answer it: see the migration).
_DUE = (
    "d.status = 'pending' AND d.next_attempt_at <= ?"
    " AND (d.claimed_until IS NULL OR d.claimed_until <= ?)"
    " AND d.sequence = (SELECT MIN(p.sequence) FROM deliveries p"
    " WHERE p.endpoint_id = d.endpoint_id AND p.job_id = d.job_id AND p.status = 'pending')"
)
_MESSAGE = "id, job_id, sequence, state, previous_state, created_at, data"
_LISTED = (
    "d.id, d.message_id, d.job_id, d.sequence, m.state, d.status, d.next_attempt_at,"
    " d.created_at, d.attempts"
)


def webhook_id(job_id: str, sequence: int) -> str:
    """Return a message's id (`webhook-id`, CloudEvents `id`): unique, stable, no dots."""
    return f"msg_{job_id}_{sequence}"


def message_body(message: dict, source: str) -> str:
    """Return the JSON body of a message: the same text for every attempt and endpoint.

    The job record is spliced in as it was stored, so it is sent exactly as written at
    the change, without parsing it again.
    """
    mid, at = webhook_id(message["job_id"], message["sequence"]), message["created_at"]
    head = json.dumps({"type": f"job.{message['state']}", "timestamp": at})
    tail = json.dumps(
        {"previous_state": message["previous_state"], "sequence": message["sequence"]}
    )
    cloud = json.dumps({"specversion": "1.0", "id": mid, "source": source, "time": at})
    data = message["data"][:-1] + ", " + tail[1:]
    return head[:-1] + ', "data": ' + data + ", " + cloud[1:]


def bucket_of(seconds: float) -> int:
    """Return the histogram bucket index of an attempt's duration."""
    for i, bound in enumerate(BUCKETS):
        if seconds <= bound:
            return i
    return len(BUCKETS)


class Deliveries(Part):
    """Fan-out, claims and attempts of outbound messages (the ledger's `deliveries` part)."""

    # -- fan-out ---------------------------------------------------------------------------

    def fan_out(self, now: datetime, limit: int = 500) -> int:
        """Make the deliveries of up to `limit` messages not fanned out yet; return how many
        messages were fanned out (0 when none waits, or another process is at it)."""
        return self.write(self._fan_out, iso(now), limit, pipelined=True)

    def _relax(self) -> None:
        """Let this transaction commit without waiting for the disk (see the module doc)."""
        if self.backend.name == "postgresql":
            self.conn.execute("SET LOCAL synchronous_commit = off")

    def _fan_out(self, now: str, limit: int) -> int:
        self._relax()
        if self.backend.advisory_locks:
            got = self.conn.execute("SELECT pg_try_advisory_xact_lock(?)", (FANOUT_LOCK,))
            if not got.fetchone()[0]:
                return 0
        hint = self.backend.hint("messages_unfanned")
        rows = self.conn.execute(
            f"SELECT id, job_id, sequence, state, created_at, data FROM messages{hint}"
            " WHERE fanned = 0 ORDER BY id LIMIT ?",
            (limit,),
        ).fetchall()
        if not rows:
            return 0
        endpoints = [
            (eid, mark, json.loads(flt or "{}"))
            for eid, mark, flt in self.conn.execute(
                "SELECT id, message_mark, filter FROM endpoints"
            ).fetchall()
        ]
        made = []
        for mid, job_id, sequence, _state, created_at, data in rows:
            record = None
            for eid, mark, flt in endpoints:
                if mid <= mark:
                    continue  # made before the endpoint was
                if flt:
                    record = record or json.loads(data)
                    if not all(record.get(k) in values for k, values in flt.items()):
                        continue
                made.append((eid, mid, job_id, sequence, created_at, now))
        if made:
            self.conn.executemany(
                "INSERT INTO deliveries (endpoint_id, message_id, job_id, sequence, status,"
                " created_at, next_attempt_at) VALUES (?, ?, ?, ?, 'pending', ?, ?)"
                " ON CONFLICT (endpoint_id, message_id) DO NOTHING",
                made,
            )
        ids = [r[0] for r in rows]
        self.conn.execute(
            f"UPDATE messages SET fanned = 1 WHERE id IN ({','.join('?' * len(ids))})",
            tuple(ids),
        )
        return len(rows)

    # -- claims ----------------------------------------------------------------------------

    def due_endpoints(self, now: datetime) -> list[str]:
        """Return the enabled endpoints that have a delivery to send now."""
        stamp = iso(now)
        rows = self.conn.execute(
            "SELECT e.id FROM endpoints e WHERE e.enabled = 1 AND EXISTS"
            f" (SELECT 1 FROM deliveries d WHERE d.endpoint_id = e.id AND {_DUE})",
            (stamp, stamp),
        )
        return [r[0] for r in rows.fetchall()]

    def claim(
        self, endpoint_id: str, now: datetime, until: datetime, token: str, limit: int
    ) -> list[dict]:
        """Claim up to `limit` due deliveries of an enabled endpoint until `until`.

        At most one message per job is due at a time, so a claim holds no two messages of
        one job. Returns each with its message, oldest first.
        """
        stamp = iso(now)

        def claim() -> list[tuple]:
            self._relax()
            return self.conn.execute(
                "UPDATE deliveries SET claimed_until = ?, claim = ? WHERE id IN"
                f" (SELECT d.id FROM deliveries d WHERE d.endpoint_id = ? AND {_DUE}"
                " AND EXISTS (SELECT 1 FROM endpoints e WHERE e.id = d.endpoint_id"
                " AND e.enabled = 1)"
                f" ORDER BY d.next_attempt_at LIMIT ?{self.backend.skip_locked})"
                " RETURNING id, message_id, attempts, series",
                (iso(until), token, endpoint_id, stamp, stamp, limit),
            ).fetchall()

        rows = self.write(claim)
        if not rows:
            return []
        marks = ",".join("?" * len(rows))
        messages = {
            m[0]: dict(zip([c.strip() for c in _MESSAGE.split(",")], m, strict=True))
            for m in self.conn.execute(
                f"SELECT {_MESSAGE} FROM messages WHERE id IN ({marks})",
                tuple(r[1] for r in rows),
            ).fetchall()
        }
        claimed = [
            {**messages[mid], "delivery_id": did, "attempts": attempts, "series": series}
            for did, mid, attempts, series in rows
        ]
        return sorted(claimed, key=lambda c: c["delivery_id"])

    def release(self, delivery_ids: list[int], token: str) -> None:
        """Give back claimed deliveries not attempted (a stop): due again for anyone."""
        if not delivery_ids:
            return
        marks = ",".join("?" * len(delivery_ids))
        self.write(
            self.conn.execute,
            "UPDATE deliveries SET claimed_until = NULL, claim = NULL"
            f" WHERE id IN ({marks}) AND claim = ?",
            (*delivery_ids, token),
        )

    # -- attempts --------------------------------------------------------------------------

    def record_attempts(self, attempts: list[tuple[dict, dict]]) -> list[dict]:
        """Record a batch's attempts (`record_attempt`'s arguments) in one transaction.

        Pipelined on PostgreSQL: the statements whose answers are not read go out together.
        """
        return self.write(lambda: [self._record(a, o) for a, o in attempts], pipelined=True)

    def record_attempt(self, attempt: dict, outcome: dict) -> dict:
        """Record one attempt and what follows from it, in one transaction.

        :param attempt: `delivery_id`, `endpoint_id`, `claim`, `at` (aware), `status_code`,
          `error`, `duration_ms`, `excerpt`
        :param outcome: `status` (delivered, pending, failed), `next_attempt_at` (aware or
          None), `disable` (a reason to disable the endpoint at once, or None) and
          `disable_if_failing_since` (aware: disable if it has failed every attempt since
          then)
        :returns: {"recorded": bool, "disabled": reason or None}
        """
        return self.write(self._record, attempt, outcome)

    def _record(self, attempt: dict, outcome: dict) -> dict:
        self._relax()
        at = iso(attempt["at"])
        did, eid = attempt["delivery_id"], attempt["endpoint_id"]
        following = outcome["next_attempt_at"]
        owned = self.conn.execute(
            "UPDATE deliveries SET status = ?, attempts = attempts + 1, series = series + 1,"
            " next_attempt_at = ?, claimed_until = NULL, claim = NULL, last_attempt_at = ?"
            " WHERE id = ? AND claim = ? RETURNING id",
            (outcome["status"], following and iso(following), at, did, attempt["claim"]),
        ).fetchall()
        if not owned:
            exists = self.conn.execute("SELECT 1 FROM deliveries WHERE id = ?", (did,))
            if exists.fetchone() is None:
                return {"recorded": False, "disabled": None}  # its endpoint was deleted
        self.conn.execute(
            "INSERT INTO delivery_attempts (delivery_id, at, status_code, error, duration_ms,"
            " excerpt) VALUES (?, ?, ?, ?, ?, ?)",
            (
                did,
                at,
                attempt["status_code"],
                attempt["error"],
                attempt["duration_ms"],
                (attempt["excerpt"] or "")[:EXCERPT_CHARS] or None,
            ),
        )
        result = "delivered" if outcome["status"] == "delivered" else "failed_attempt"
        self._count(eid, result, attempt["duration_ms"])
        if outcome["status"] == "failed" and owned:
            self._count(eid, "failed", None)
        disabled = self._endpoint_health(eid, attempt["at"], outcome) if owned else None
        return {"recorded": bool(owned), "disabled": disabled}

    def _count(self, endpoint_id: str, outcome: str, duration_ms: int | None) -> None:
        bucket = -1 if duration_ms is None else bucket_of(duration_ms / 1000)
        shards = self.backend.counter_shards
        self.conn.execute(
            "INSERT INTO delivery_counts (endpoint_id, outcome, bucket, shard, n, ms)"
            " VALUES (?, ?, ?, ?, 1, ?) ON CONFLICT (endpoint_id, outcome, bucket, shard)"
            " DO UPDATE SET n = delivery_counts.n + 1, ms = delivery_counts.ms + excluded.ms",
            (
                endpoint_id,
                outcome,
                bucket,
                random.randrange(shards) if shards > 1 else 0,
                duration_ms or 0,
            ),
        )

    def _endpoint_health(self, endpoint_id: str, moment: datetime, outcome: dict) -> str | None:
        """Update an endpoint's health after an attempt; disable it if it must be."""
        at = iso(moment)
        if outcome["status"] == "delivered":
            # Every success would write the endpoint's one row, the busiest row of all
            # senders to it: the time is written only once it is a second old.
            self.conn.execute(
                "UPDATE endpoints SET last_success_at = ?, failing_since = NULL WHERE id = ?"
                " AND (last_success_at IS NULL OR last_success_at < ?"
                " OR failing_since IS NOT NULL)",
                (at, endpoint_id, iso(moment - timedelta(seconds=1))),
            )
            return None
        row = self.conn.execute(
            "UPDATE endpoints SET last_failure_at = CASE WHEN last_failure_at > ?"
            " THEN last_failure_at ELSE ? END, failing_since = CASE WHEN failing_since <= ?"
            " THEN failing_since ELSE ? END WHERE id = ? RETURNING enabled, failing_since, url",
            (at, at, at, at, endpoint_id),
        ).fetchone()
        if row is None or not row[0]:
            return None
        enabled, failing_since, url = row
        reason = outcome.get("disable")
        threshold = outcome.get("disable_if_failing_since")
        if reason is None and threshold is not None and failing_since <= iso(threshold):
            reason = f"every attempt failed since {failing_since}"
        if reason is None:
            return None
        self.conn.execute(
            "UPDATE endpoints SET enabled = 0, disabled_reason = ?, updated_at = ? WHERE id = ?",
            (reason, at, endpoint_id),
        )
        queue_alert(
            self.session,
            subject=f"endpoint:{endpoint_id}:disabled:{at}",
            kind="endpoint.disabled",
            summary=f"endpoint {shown_url(url)} disabled: {reason}",
            detail={
                "endpoint_id": endpoint_id,
                "url": shown_url(url),
                "reason": reason,
                "path": f"/endpoints/{endpoint_id}",
            },
        )
        return reason

    # -- operators -------------------------------------------------------------------------

    def retry(self, delivery_id: int, now: datetime) -> bool:
        """Make one delivery due now, whatever its status; False if there is none."""
        return bool(
            self.write(
                lambda: self.conn.execute(
                    "UPDATE deliveries SET status = 'pending', series = 0, next_attempt_at = ?"
                    " WHERE id = ? RETURNING id",
                    (iso(now), delivery_id),
                ).fetchall()
            )
        )

    def recover(self, endpoint_id: str, since: datetime, now: datetime) -> int:
        """Make every delivery to an endpoint that failed since `since` pending and due now;
        return how many."""
        rows = self.write(
            lambda: self.conn.execute(
                "UPDATE deliveries SET status = 'pending', series = 0, next_attempt_at = ?"
                " WHERE endpoint_id = ? AND status = 'failed' AND last_attempt_at >= ?"
                " RETURNING id",
                (iso(now), endpoint_id, iso(since)),
            ).fetchall()
        )
        return len(rows)

    def get(self, delivery_id: int) -> dict | None:
        """Return one delivery with its attempts and its endpoint id, or None."""
        row = self.conn.execute(
            f"SELECT {_LISTED}, d.endpoint_id FROM deliveries d"
            " JOIN messages m ON m.id = d.message_id WHERE d.id = ?",
            (delivery_id,),
        ).fetchone()
        if row is None:
            return None
        delivery = self._shape([row[:-1]])[0]
        delivery["endpoint_id"] = row[-1]
        return delivery

    def search(
        self,
        endpoint_id: str,
        *,
        status: list[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        cursor: int | None = None,
        limit: int = 50,
    ) -> tuple[list[dict], str | None]:
        """Return one page of an endpoint's deliveries, newest first, and the next cursor.

        `since`/`until` bound the time of the change the message is about.
        """
        where: list[str] = ["d.endpoint_id = ?"]
        params: list[Any] = [endpoint_id]
        if status:
            where.append(f"d.status IN ({','.join('?' * len(status))})")
            params += status
        if since is not None:
            where.append("d.created_at >= ?")
            params.append(iso(since))
        if until is not None:
            where.append("d.created_at <= ?")
            params.append(iso(until))
        if cursor is not None:
            where.append("d.id < ?")
            params.append(cursor)
        rows = self.conn.execute(
            f"SELECT {_LISTED} FROM deliveries d JOIN messages m ON m.id = d.message_id"
            f" WHERE {' AND '.join(where)} ORDER BY d.id DESC LIMIT ?",
            (*params, limit + 1),
        ).fetchall()
        page = self._shape(rows[:limit])
        return page, (str(page[-1]["id"]) if len(rows) > limit else None)

    def _shape(self, rows: list) -> list[dict]:
        attempts: dict[int, list[dict]] = {r[0]: [] for r in rows}
        if rows:
            marks = ",".join("?" * len(rows))
            for did, at, code, error, ms, excerpt in self.conn.execute(
                "SELECT delivery_id, at, status_code, error, duration_ms, excerpt"
                f" FROM delivery_attempts WHERE delivery_id IN ({marks}) ORDER BY id",
                tuple(attempts),
            ):
                attempts[did].append(
                    {
                        "at": at,
                        "status_code": code,
                        "error": error,
                        "duration_ms": ms,
                        "response_excerpt": excerpt,
                    }
                )
        out = []
        for did, _mid, job_id, sequence, state, status, next_at, created_at, _n in rows:
            out.append(
                {
                    "id": did,
                    "message_id": webhook_id(job_id, sequence),
                    "job_id": job_id,
                    "sequence": sequence,
                    "type": f"job.{state}",
                    "status": status,
                    "created_at": created_at,
                    "attempts": attempts[did],
                    "next_attempt_at": next_at if status == "pending" else None,
                }
            )
        return out

    def waiting(self) -> dict[str, Any]:
        """Return how many deliveries are pending and since when the oldest message waits."""
        pending = self.conn.execute(
            "SELECT COUNT(*) FROM deliveries WHERE status = 'pending'"
        ).fetchone()[0]
        return {"pending": pending, "oldest_pending": self._oldest_pending()}

    def _oldest_pending(self) -> str | None:
        """Return the time of the change behind the oldest message not yet delivered."""
        oldest_delivery = self.conn.execute(
            "SELECT MIN(created_at) FROM deliveries WHERE status = 'pending'"
        ).fetchone()[0]
        # Messages not fanned out yet wait for someone only if there is an endpoint at all.
        hint = self.backend.hint("messages_unfanned")
        unfanned = self.conn.execute(
            f"SELECT created_at FROM messages{hint} WHERE fanned = 0"
            " AND EXISTS (SELECT 1 FROM endpoints) ORDER BY id LIMIT 1"
        ).fetchone()
        stamps = [s for s in (oldest_delivery, unfanned and unfanned[0]) if s]
        return min(stamps) if stamps else None

    def snapshot(self) -> dict[str, Any]:
        """Return the figures /metrics and the dashboard read: attempts by endpoint, outcome
        and duration bucket, pending deliveries per endpoint, and the oldest pending time."""
        counts = self.conn.execute(
            "SELECT endpoint_id, outcome, bucket, CAST(SUM(n) AS BIGINT), CAST(SUM(ms) AS BIGINT)"
            " FROM delivery_counts GROUP BY endpoint_id, outcome, bucket"
        ).fetchall()
        pending = self.conn.execute(
            "SELECT endpoint_id, COUNT(*) FROM deliveries WHERE status = 'pending'"
            " GROUP BY endpoint_id"
        ).fetchall()
        return {
            "counts": counts,
            "pending": dict(pending),
            "oldest_pending": self._oldest_pending(),
        }
