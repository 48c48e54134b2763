"""The shapes of the ledger's rows: which columns a job and an event have, and how each
becomes the record the API, the pages and the CLI show."""

import json
from collections.abc import Sequence

JOB_COLUMNS = (
    "id, provider, service, kind, provider_job_id, media_id, state, preprocess, error_code,"
    " error_message, outputs, origin, operation, params, submitted_at, updated_at, finished_at,"
    " last_event_at, started_at, settled_at, duration_seconds, metadata"
)
JOB_FIELDS = tuple(JOB_COLUMNS.split(", "))
EVENT_COLUMNS = (
    "id, job_id, provider, service, source, event_type, verified, auth, duplicate_of, replay_of,"
    " state_after, received_at, occurred_at, payload"
)
_EVENT_FIELDS = EVENT_COLUMNS.split(", ")


def job_from_row(row: Sequence) -> dict:
    """Turn a `jobs` row (in JOB_COLUMNS order) into a mutable dict of column values."""
    return dict(zip(JOB_FIELDS, row, strict=True))


def public_job(job: dict, *, slow: bool = False) -> dict:
    """Shape a job as the job record of the API (docs/http-api.md).

    :param slow: whether it has run past its kind's p95 without a final word (the caller
      knows the thresholds: store/provider_health.py)
    """
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
        "duration_seconds": job["duration_seconds"],
        "slow": slow,
        "metadata": json.loads(job["metadata"]) if job.get("metadata") else {},
    }


def public_event(row: Sequence) -> dict:
    """Shape an `events` row as the event record of the API (docs/http-api.md)."""
    event = dict(zip(_EVENT_FIELDS, row, strict=True))
    event["verified"] = bool(event["verified"])
    return event
