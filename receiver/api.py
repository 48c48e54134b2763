"""The JSON API over the ledger: jobs, one job with its events, stats."""

from datetime import UTC, datetime

from flask import Blueprint, jsonify, request
from werkzeug.exceptions import BadRequest, NotFound

from store.reads import FILTERS, BadQuery

from .auth import require_ops
from .db import get_ledger

bp = Blueprint("api", __name__, url_prefix="/api")


@bp.before_request
def _ops_only():
    require_ops()


def _time_arg(name: str) -> datetime | None:
    raw = request.args.get(name)
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw.strip().upper().replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{name} is not an ISO 8601 time: {raw[:40]!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def job_query() -> dict:
    """Read the contract's job filters from the query string (shared with the pages)."""
    raw_limit = request.args.get("limit", "50")
    if not raw_limit.isdigit():
        raise BadRequest("limit must be a whole number")
    return {
        "filters": {f: request.args.getlist(f) for f in FILTERS if request.args.getlist(f)},
        "q": (request.args.get("q") or "").strip() or None,
        "since": _time_arg("since"),
        "until": _time_arg("until"),
        "limit": int(raw_limit),
        "cursor": request.args.get("cursor") or None,
    }


@bp.get("/jobs")
def list_jobs():
    """List jobs newest first, filtered, one keyset page at a time."""
    try:
        jobs, next_cursor = get_ledger().list_jobs(**job_query())
    except BadQuery as e:
        raise BadRequest(str(e)) from None
    return jsonify(jobs=jobs, next_cursor=next_cursor)


@bp.get("/jobs/<job_id>")
def get_job(job_id: str):
    """Return one job with its events, oldest first."""
    job = get_ledger().get_job(job_id, with_events=True)
    if job is None:
        raise NotFound(f"no job {job_id}")
    return jsonify(job)


@bp.get("/stats")
def stats():
    """Return job counts by state, provider, service and kind."""
    return jsonify(get_ledger().stats())


@bp.get("/openapi.json")
def openapi():
    """Return the OpenAPI document of this API."""
    from .openapi import SPEC

    return jsonify(SPEC)
