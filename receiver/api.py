"""The JSON API over the ledger: jobs, one job with its events, stats, and submitting jobs.

Answers of `POST /api/jobs`:

| outcome | status | body |
| --- | --- | --- |
| accepted | 201 | the job |
| unknown operation, bad or missing params | 400 | error, nothing recorded |
| provider credentials not configured | 503 | error naming the settings, nothing recorded |
| the provider refused (its code, message) | 422 | error, provider_status, job (`submit_failed`) |
| throttled or 5xx past the 5 s budget, or unreachable | 502 | error, job (`submit_failed`) |
| sent, but no answer: outcome unknown | 504 | error, job (still `submitting`) |

A refusal is 422 rather than the provider's own 403/404: those would read as "no such
route" or "your ops token may not do this". The provider's HTTP status is in the body.
"""

import logging
from datetime import UTC, datetime

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import BadRequest, NotFound

from store.reads import FILTERS, BadQuery
from submitter import NotConfigured, Submission, UsageError, submit
from submitter.calls import INTERACTIVE_BUDGET_S, NETWORK_ERROR

from .auth import require_ops
from .db import get_ledger
from .errors import error_response

bp = Blueprint("api", __name__, url_prefix="/api")
log = logging.getLogger("jobledger.api")


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


def failure_status(result: Submission) -> int:
    """Pick the HTTP status for a submission the provider did not accept."""
    e = result.error
    if e.outcome_unknown:
        return 504
    if e.code == NETWORK_ERROR or e.retryable:
        return 502
    return 422


def submit_budget() -> float:
    """Seconds a submission may take before its outcome is reported unknown."""
    # Internal knob (tests shorten it); not a RECEIVER_* setting of the contract.
    return float(current_app.config.get("SUBMIT_BUDGET_S") or INTERACTIVE_BUDGET_S)


@bp.post("/jobs")
def create_job():
    """Submit a job: {"operation": NAME, "params": {...}}; answer with the recorded job."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("operation"), str):
        return error_response(400, 'expected a JSON object {"operation": NAME, "params": {...}}')
    try:
        result = submit(
            get_ledger(),
            current_app.config,
            body["operation"],
            body.get("params") or {},
            budget_s=submit_budget(),
        )
    except UsageError as e:
        return error_response(400, str(e))
    except NotConfigured as e:
        log.error("api.submit-not-configured", extra={"error": str(e)})
        return error_response(503, str(e))
    if result.accepted:
        response = jsonify(result.job)
        response.status_code = 201
        response.headers["Location"] = f"/api/jobs/{result.job['id']}"
        return response
    extra = {"provider_status": result.error.status} if result.error.status else {}
    return error_response(failure_status(result), result.describe_error(), job=result.job, **extra)


@bp.get("/stats")
def stats():
    """Return job counts by state, provider, service and kind."""
    return jsonify(get_ledger().stats())


@bp.get("/openapi.json")
def openapi():
    """Return the OpenAPI document of this API."""
    from .openapi import SPEC

    return jsonify(SPEC)
