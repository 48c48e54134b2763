"""The ledger's read side: what the JSON API, the pages and the CLI ask of it."""

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from .connection import LedgerBase
from .ids import id_floor

JOB_COLUMNS = (
    "id, provider, service, kind, provider_job_id, media_id, state, preprocess, error_code,"
    " error_message, outputs, origin, operation, params, submitted_at, updated_at, finished_at,"
    " last_event_at"
)
JOB_FIELDS = tuple(JOB_COLUMNS.split(", "))
EVENT_COLUMNS = (
    "id, job_id, provider, service, source, event_type, verified, auth, duplicate_of, replay_of,"
    " state_after, received_at, occurred_at, payload"
)
_EVENT_FIELDS = EVENT_COLUMNS.split(", ")
FILTERS = ("state", "provider", "service", "kind")
MAX_LIMIT = 500
_ID_CHARS = set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")  # Crockford base32, as ids.new_id()


class BadQuery(ValueError):
    """A filter, cursor or limit that cannot be honoured."""


def job_from_row(row: Sequence) -> dict:
    """Turn a `jobs` row (in JOB_COLUMNS order) into a mutable dict of column values."""
    return dict(zip(JOB_FIELDS, row, strict=True))


def public_job(job: dict) -> dict:
    """Shape a job as the job record of the API (docs/http-api.md)."""
    return {
        "id": job["id"],
        "provider": job["provider"],
        "service": job["service"],
        "kind": job["kind"],
        "provider_job_id": job["provider_job_id"],
        "media_id": job["media_id"],
        "state": job["state"],
        "preprocess": None if job["preprocess"] is None else bool(job["preprocess"]),
        "error_code": job["error_code"],
        "error_message": job["error_message"],
        "outputs": json.loads(job["outputs"] or "[]"),
        "origin": job["origin"],
        "operation": job["operation"],
        "submitted_at": job["submitted_at"],
        "updated_at": job["updated_at"],
        "finished_at": job["finished_at"],
    }


def public_event(row: Sequence) -> dict:
    """Shape an `events` row as the event record of the API (docs/http-api.md)."""
    event = dict(zip(_EVENT_FIELDS, row, strict=True))
    event["verified"] = bool(event["verified"])
    return event


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


class LedgerReads(LedgerBase):
    """Query methods shared by the API, the pages and the CLI."""

    def get_job(self, job_id: str, *, with_events: bool = False) -> dict | None:
        """Return one job record, or None if there is no such job.

        :param with_events: also return its events, oldest first, under `events`
        """
        row = self.conn.execute(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
        if row is None:
            return None
        job = public_job(job_from_row(row))
        if with_events:
            job["events"] = self.events_for_job(job_id)
        return job

    def find_job(self, provider: str, service: str, provider_job_id: str) -> dict | None:
        """Return the job with this provider job id (Live `JobId`, MPS `JobId`...), or None."""
        row = self.conn.execute(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE provider_job_id = ? AND provider = ?"
            " AND service = ?",
            (provider_job_id, provider, service),
        ).fetchone()
        return None if row is None else public_job(job_from_row(row))

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

    def events_for_job(self, job_id: str) -> list[dict]:
        """Return a job's events, oldest first."""
        rows = self.conn.execute(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE job_id = ? ORDER BY id", (job_id,)
        )
        return [public_event(r) for r in rows]

    def get_event(self, event_id: int) -> dict | None:
        """Return one stored event, or None."""
        row = self.conn.execute(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE id = ?", (event_id,)
        ).fetchone()
        return None if row is None else public_event(row)

    def list_jobs(
        self,
        *,
        filters: dict[str, Iterable[str]] | None = None,
        q: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[dict], str | None]:
        """Return one page of jobs, newest first, and the cursor of the next page (or None).

        Every filter is a parameter; time bounds and the cursor compare ledger ids, which
        sort by creation time, so each filter walks one index in order.

        :param filters: column name (state, provider, service, kind) -> accepted values
        :param q: matches the ledger id, the provider's job id or the media id exactly
        :param since: created at or after (aware datetime)
        :param until: created at or before (aware datetime)
        :raises BadQuery: for an unknown filter, a bad limit or a foreign cursor
        """
        if not 1 <= limit <= MAX_LIMIT:
            raise BadQuery(f"limit must be between 1 and {MAX_LIMIT}")
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
        sql = f"SELECT {JOB_COLUMNS} FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        rows = self.conn.execute(sql, (*params, limit + 1)).fetchall()
        jobs = [public_job(job_from_row(r)) for r in rows[:limit]]
        next_cursor = encode_cursor(jobs[-1]["id"]) if len(rows) > limit else None
        return jobs, next_cursor

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
