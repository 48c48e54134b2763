"""The schedule of polls (which jobs `reconcile` asks their provider about, and when), the
pacing of API calls, and the deadline sweep (which open jobs are overdue).

Only jobs that may still change are polled: the states of the `jobs_open_poll` partial
index. The WHERE clause below repeats that index's condition word for word, which is what
lets SQLite use a partial index (named with INDEXED BY: without statistics its planner
prefers the state index and sorts), so a due-list stays cheap however many finished jobs
the ledger holds. A job never polled has no `next_poll_at`; it is due a first delay after
it was submitted, since a callback usually settles it before that.

Several `reconcile` processes may run at once: a process claims the jobs it is about to
poll by moving their `next_poll_at` to the end of a lease in the transaction that reads
them (`BEGIN IMMEDIATE` on SQLite, `FOR UPDATE SKIP LOCKED` on PostgreSQL), so each due
job is polled by one of them. Calls to each provider API family are spaced through one
shared row per family (`call_slots`), so the QPS limits hold across all of them.
"""

from datetime import datetime, timedelta

from .ids import iso
from .records import JOB_COLUMNS, job_from_row
from .session import Part

POLLED_STATES = ("submitting", "submitted", "processing", "timed_out", "running")
_POLLED = "state IN ('submitting', 'submitted', 'processing', 'timed_out', 'running')"
_COLUMNS = f"{JOB_COLUMNS}, next_poll_at, poll_count"


def _job(row) -> dict:
    job = job_from_row(row[:-2])
    job["next_poll_at"], job["poll_count"] = row[-2], row[-1]
    return job


class Polls(Part):
    """The schedule of polls and the deadline sweep (the ledger's `polls` part)."""

    def claim_due(self, now: str, first_poll_before: str, limit: int, until: str) -> list[dict]:
        """Claim up to `limit` jobs due for a poll, most overdue first, until `until`.

        The jobs are returned as they were before the claim (raw column values); the
        caller sets each one's real next poll with `schedule`. A caller that dies
        leaves its jobs due again when the claim ends.

        :param now: ISO 8601 UTC; a scheduled job is due when `next_poll_at <= now`
        :param first_poll_before: a job never polled is due if submitted at or before this
        """
        return self.write(self._claim_due, now, first_poll_before, limit, until)

    def _claim_due(self, now, first_poll_before, limit, until) -> list[dict]:
        hint, skip = self.backend.hint("jobs_open_poll"), self.backend.skip_locked
        scheduled = self.conn.execute(
            f"SELECT {_COLUMNS} FROM jobs{hint} WHERE {_POLLED}"
            f" AND next_poll_at <= ? ORDER BY next_poll_at LIMIT ?{skip}",
            (now, limit),
        ).fetchall()
        never = self.conn.execute(
            f"SELECT {_COLUMNS} FROM jobs{hint} WHERE {_POLLED}"
            " AND next_poll_at IS NULL AND submitted_at <= ?"
            f" ORDER BY {self.backend.creation_order} LIMIT ?{skip}",
            (first_poll_before, limit),
        ).fetchall()
        jobs = [_job(r) for r in scheduled] + [_job(r) for r in never]
        jobs.sort(key=lambda j: j["next_poll_at"] or j["submitted_at"])
        jobs = jobs[:limit]
        if jobs:
            self.conn.execute(
                f"UPDATE jobs SET next_poll_at = ? WHERE id IN ({','.join('?' * len(jobs))})",
                (until, *(j["id"] for j in jobs)),
            )
        return jobs

    def schedule(self, job_id: str, at: str, *, counted: bool = True) -> None:
        """Set when the job is asked next; count the poll just made unless `counted` is False.

        :param counted: False when nothing was asked (the provider was throttling us), so
          the backoff does not grow for a poll that did not happen
        """
        self.write(
            self.conn.execute,
            "UPDATE jobs SET next_poll_at = ?, poll_count = poll_count + ? WHERE id = ?",
            (at, 1 if counted else 0, job_id),
        )

    def take_call_slot(self, family: str, interval_s: float, now_s: float) -> float:
        """Reserve the next call of an API family; return when (epoch seconds) it may be made.

        One row per family holds the earliest time of the next call; each caller moves it
        on by `interval_s`, so callers in every process share one pace.
        """
        row = self.write(
            lambda: self.conn.execute(
                "INSERT INTO call_slots (family, next_at) VALUES (?, ?)"
                " ON CONFLICT (family) DO UPDATE SET next_at = CASE"
                " WHEN call_slots.next_at > ? THEN call_slots.next_at ELSE ? END + ?"
                " RETURNING next_at",
                (family, now_s + interval_s, now_s, now_s, interval_s),
            ).fetchone()
        )
        return row[0] - interval_s

    def answer_seen(self, dedup_key: bytes) -> bool:
        """Tell whether an answer with this dedup key was recorded already (nothing new)."""
        row = self.conn.execute(
            "SELECT 1 FROM events WHERE dedup_key = ? AND duplicate_of IS NULL", (dedup_key,)
        ).fetchone()
        return row is not None

    def counts(self, job_id: str) -> tuple[str | None, int]:
        """Return (next_poll_at, poll_count) of one job, or (None, 0) if there is no such job."""
        row = self.conn.execute(
            "SELECT next_poll_at, poll_count FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
        return (row[0], row[1]) if row else (None, 0)

    def job(self, job_id: str) -> dict | None:
        """Return one job in the shape `claim_due` gives (for "re-poll now"), or None."""
        row = self.conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _job(row)

    def overdue(
        self, deadlines: dict[str, int], now: datetime, limit: int = 1000
    ) -> list[tuple[str, int]]:
        """Return (job id, deadline seconds) of open jobs past their kind's deadline.

        A kind's deadline is its entry in `deadlines`, else `deadlines["default"]`; 0 means
        the kind never times out. Only the small partial index of open jobs is read.
        """
        kinds = [
            row[0]
            for row in self.conn.execute(
                "SELECT DISTINCT kind FROM jobs"
                " WHERE state IN ('submitting', 'submitted', 'processing')"
            )
        ]
        found: list[tuple[str, int]] = []
        for kind in kinds:
            seconds = deadlines.get(kind, deadlines.get("default", 0))
            if not seconds:
                continue
            cutoff = iso(now - timedelta(seconds=seconds))
            rows = self.conn.execute(
                "SELECT id FROM jobs WHERE kind = ? AND submitted_at < ?"
                " AND state IN ('submitting', 'submitted', 'processing') LIMIT ?",
                (kind, cutoff, limit - len(found)),
            )
            found += [(row[0], seconds) for row in rows]
            if len(found) >= limit:
                break
        return found
