"""The SQL of `reconcile`: which jobs are due for a poll, and when each is asked next.

Only jobs that may still change are polled: the states of the `jobs_open_poll` partial
index (migration 0003). The WHERE clause below repeats that index's condition word for
word, which is what lets SQLite use a partial index (named with INDEXED BY: without
statistics the planner prefers the state index and sorts), so a due-list stays cheap
however many finished jobs the ledger holds. A job never polled has no `next_poll_at`; it is due a
first delay after it was submitted, since a callback usually settles it before that.
"""

from .ledger import Ledger, write_transaction
from .reads import JOB_COLUMNS, job_from_row

POLLED_STATES = ("submitting", "submitted", "processing", "timed_out", "running")
_POLLED = "state IN ('submitting', 'submitted', 'processing', 'timed_out', 'running')"
_COLUMNS = f"{JOB_COLUMNS}, next_poll_at, poll_count"


def _job(row) -> dict:
    job = job_from_row(row[:-2])
    job["next_poll_at"], job["poll_count"] = row[-2], row[-1]
    return job


def due_jobs(ledger: Ledger, now: str, first_poll_before: str, limit: int) -> list[dict]:
    """Return up to `limit` jobs due for a poll, most overdue first (raw column values).

    :param now: ISO 8601 UTC; a scheduled job is due when `next_poll_at <= now`
    :param first_poll_before: a job never polled is due if submitted at or before this
    """
    scheduled = ledger.conn.execute(
        f"SELECT {_COLUMNS} FROM jobs INDEXED BY jobs_open_poll WHERE {_POLLED}"
        " AND next_poll_at <= ?"
        " ORDER BY next_poll_at LIMIT ?",
        (now, limit),
    ).fetchall()
    never = ledger.conn.execute(
        f"SELECT {_COLUMNS} FROM jobs INDEXED BY jobs_open_poll WHERE {_POLLED}"
        " AND next_poll_at IS NULL AND submitted_at <= ? ORDER BY rowid LIMIT ?",  # = creation
        (first_poll_before, limit),
    ).fetchall()
    jobs = [_job(r) for r in scheduled] + [_job(r) for r in never]
    jobs.sort(key=lambda j: j["next_poll_at"] or j["submitted_at"])
    return jobs[:limit]


def schedule_poll(ledger: Ledger, job_id: str, at: str, *, counted: bool = True) -> None:
    """Set when the job is asked next; count the poll just made unless `counted` is False.

    :param counted: False when nothing was asked (the provider was throttling us), so the
      backoff does not grow for a poll that did not happen
    """
    with write_transaction(ledger.db):
        ledger.conn.execute(
            "UPDATE jobs SET next_poll_at = ?, poll_count = poll_count + ? WHERE id = ?",
            (at, 1 if counted else 0, job_id),
        )


def answer_seen(ledger: Ledger, dedup_key: bytes) -> bool:
    """Tell whether an answer with this dedup key was recorded already (nothing new in it)."""
    row = ledger.conn.execute(
        "SELECT 1 FROM events WHERE dedup_key = ? AND duplicate_of IS NULL", (dedup_key,)
    ).fetchone()
    return row is not None


def poll_counts(ledger: Ledger, job_id: str) -> tuple[str | None, int]:
    """Return (next_poll_at, poll_count) of one job, or (None, 0) if there is no such job."""
    row = ledger.conn.execute(
        "SELECT next_poll_at, poll_count FROM jobs WHERE id = ?", (job_id,)
    ).fetchone()
    return (row[0], row[1]) if row else (None, 0)


def job_for_poll(ledger: Ledger, job_id: str) -> dict | None:
    """Return one job in the shape `due_jobs` gives (for "re-poll now"), or None."""
    row = ledger.conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return None if row is None else _job(row)
