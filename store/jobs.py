"""Reading jobs and their events: one job, a filtered page of jobs, counts.

Every list is a keyset page over ledger ids, which sort by creation time, so each filter
walks one index newest first however large the ledger.
"""

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from .errors import BadQuery
from .ids import id_floor
from .provider_health import RUNNING, SLOW_INDEX, is_slow, slow_condition, slow_cutoffs
from .records import EVENT_COLUMNS, JOB_COLUMNS, job_from_row, public_event, public_job
from .session import Part

FILTERS = ("state", "provider", "service", "kind")
MAX_LIMIT = 500
_ID_CHARS = set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")  # Crockford base32, as ids.new_id()


def encode_cursor(job_id: str) -> str:
    """Make the `next_cursor` for the page that ends at `job_id`.

    It is the last job's ledger id: any id is a valid keyset bound, so any string of that
    shape is a cursor, and the API document can say exactly which strings are.
    """
    return job_id


def decode_cursor(cursor: str) -> str:
    """Check a cursor's shape; raise BadQuery for anything that is not a ledger id."""
    if len(cursor) != 26 or not set(cursor) <= _ID_CHARS:
        raise BadQuery("cursor is not one this server made")
    return cursor


class Jobs(Part):
    """Reading jobs and their events (the ledger's `jobs` part): what the API, the pages
    and the CLI ask."""

    def records(
        self,
        rows: Sequence[Sequence],
        now: datetime | None = None,
        cutoffs: dict[tuple, str] | None = None,
    ) -> list[dict]:
        """Shape `jobs` rows as job records, `slow` worked out against each kind's p95.

        :param cutoffs: the `slow_cutoffs` at `now`, when the caller has them already
        """
        jobs = [job_from_row(r) for r in rows]
        if cutoffs is None:
            cutoffs = {}
            if any(j["state"] in RUNNING for j in jobs):
                cutoffs = slow_cutoffs(self.session, now or datetime.now(UTC))
        return [public_job(j, slow=is_slow(j, cutoffs)) for j in jobs]

    def get(self, job_id: str, *, with_events: bool = False) -> dict | None:
        """Return one job record, or None if there is no such job.

        :param with_events: also return its events, oldest first, under `events`
        """
        row = self.conn.execute(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
        if row is None:
            return None
        job = self.records([row])[0]
        if with_events:
            job["events"] = self.events(job_id)
        return job

    def find(self, provider: str, service: str, provider_job_id: str) -> dict | None:
        """Return the job with this provider job id (Live `JobId`, MPS `JobId`...), or None."""
        row = self.conn.execute(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE provider_job_id = ? AND provider = ?"
            " AND service = ?",
            (provider_job_id, provider, service),
        ).fetchone()
        return None if row is None else self.records([row])[0]

    def started_at(self, job_id: str) -> str | None:
        """Return the provider's own start time of a job first seen in a notice, or None."""
        row = self.conn.execute("SELECT started_at FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return row[0] if row else None

    def submission_params(self, job_id: str) -> dict:
        """Return the parameters a job was submitted with ({} for an external job)."""
        row = self.conn.execute("SELECT params FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return json.loads(row[0]) if row and row[0] else {}

    def resubmissions(self, job_id: str) -> dict:
        """Return what a job was resubmitted from and as: {"from": id or None, "as": [ids]}."""
        row = self.conn.execute("SELECT resubmitted_from FROM jobs WHERE id = ?", (job_id,))
        found = row.fetchone()
        later = self.conn.execute(
            "SELECT id FROM jobs WHERE resubmitted_from = ? ORDER BY id", (job_id,)
        ).fetchall()
        return {"from": found and found[0], "as": [r[0] for r in later]}

    def events(self, job_id: str) -> list[dict]:
        """Return a job's events, oldest first."""
        rows = self.conn.execute(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE job_id = ? ORDER BY id", (job_id,)
        )
        return [public_event(r) for r in rows]

    def event(self, event_id: int) -> dict | None:
        """Return one stored event, or None."""
        row = self.conn.execute(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE id = ?", (event_id,)
        ).fetchone()
        return None if row is None else public_event(row)

    def search(
        self,
        *,
        filters: dict[str, Iterable[str]] | None = None,
        q: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
        slow: bool = False,
        now: datetime | None = None,
    ) -> tuple[list[dict], str | None]:
        """Return one page of jobs, newest first, and the cursor of the next page (or None).

        Every filter is a parameter; time bounds and the cursor compare ledger ids, which
        sort by creation time, so each filter walks one index in order.

        :param filters: column name (state, provider, service, kind) -> accepted values
        :param q: matches the ledger id, the provider's job id or the media id exactly
        :param since: created at or after (aware datetime)
        :param until: created at or before (aware datetime)
        :param slow: only jobs running past their kind's p95 (store/provider_health.py)
        :param now: the time `slow` is judged at (default: the clock)
        :raises BadQuery: for an unknown filter, a bad limit or a foreign cursor
        """
        if not 1 <= limit <= MAX_LIMIT:
            raise BadQuery(f"limit must be between 1 and {MAX_LIMIT}")
        where, params = _conditions(filters, q, since, until, cursor)
        sql = f"SELECT {JOB_COLUMNS} FROM jobs"
        now = now or datetime.now(UTC)
        cutoffs = None
        if slow:
            cutoffs = slow_cutoffs(self.session, now)
            condition, slow_params = slow_condition(cutoffs)
            if condition is None:  # no kind has a p95 yet: nothing is slow
                return [], None
            sql += self.backend.hint(SLOW_INDEX)
            where.insert(0, condition)
            params = slow_params + params
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        rows = self.conn.execute(sql, (*params, limit + 1)).fetchall()
        jobs = self.records(rows[:limit], now, cutoffs)
        next_cursor = encode_cursor(jobs[-1]["id"]) if len(rows) > limit else None
        return jobs, next_cursor

    def count(self, filters: dict[str, list[str]]) -> int:
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

    def stats(self) -> dict:
        """Return job counts in total and by state, provider, service and kind."""
        out: dict[str, Any] = {
            "total": 0,
            "by_state": {},
            "by_provider": {},
            "by_service": {},
            "by_kind": {},
        }
        rows = self.conn.execute(
            "SELECT provider, service, kind, state, CAST(SUM(n) AS BIGINT) FROM job_counts"
            " GROUP BY provider, service, kind, state HAVING SUM(n) != 0"
        )
        for provider, service, kind, state, n in rows:
            out["total"] += n
            for key, value in (
                ("by_state", state),
                ("by_provider", provider),
                ("by_service", service),
                ("by_kind", kind),
            ):
                out[key][value] = out[key].get(value, 0) + n
        return out


def _conditions(
    filters: dict[str, Iterable[str]] | None,
    q: str | None,
    since: datetime | None,
    until: datetime | None,
    cursor: str | None,
) -> tuple[list[str], list]:
    """Turn a job search's filters into SQL conditions and their parameters."""
    where, params = [], []
    for column, values in (filters or {}).items():
        if column not in FILTERS:
            raise BadQuery(f"unknown filter {column!r}")
        values = [v for v in values if v]
        if values:
            where.append(f"{column} IN ({','.join('?' * len(values))})")
            params += values
    if q:
        where.append("(id = ? OR provider_job_id = ? OR media_id = ?)")
        params += [q, q, q]
    if since is not None:
        where.append("id >= ?")
        params.append(id_floor(since))
    if until is not None:
        where.append("id < ?")
        params.append(id_floor(until, after=True))  # until + 1 ms overflows at year 9999
    if cursor:
        where.append("id < ?")
        params.append(decode_cursor(cursor))
    return where, params
