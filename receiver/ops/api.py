"""The JSON API over the ledger: jobs, one job with its events, stats, submitting jobs, and
the quarantine with single and bulk replay (docs/replay.md).

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

import base64
import logging
import math
from dataclasses import asdict

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import BadRequest, NotFound

from store import BadQuery, states
from store.jobs import FILTERS, MAX_LIMIT
from store.quarantine import QUARANTINE_FILTERS, QuarantineConflict
from submitter import NotConfigured, UsageError, submit
from submitter.calls import INTERACTIVE_BUDGET_S, NETWORK_ERROR, CallFailed

from .. import params
from ..auth import require_ops
from ..db import get_ledger
from ..errors import error_response
from . import replay
from .openapi import SPEC

bp = Blueprint("api", __name__, url_prefix="/api")
log = logging.getLogger("jobledger.api")
# Filters with a closed vocabulary; `kind` stays open (providers add kinds).
KNOWN_VALUES = {
    "state": states.ALL,
    "provider": ("aliyun", "tencent"),
    "service": ("vod", "mps", "live"),
}


def finite(value):
    """Return `value` with every NaN or infinite number (NaN, Infinity, 1e400) as None.

    Provider bodies are parsed by Python's json, which accepts those tokens, but JSON has
    no such numbers: the API answers null, as JavaScript's JSON.stringify does. The raw
    notice keeps the provider's exact text.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


@bp.before_request
def _ops_only():
    require_ops()


def job_query() -> dict:
    """Read the job filters from the query string (shared with the pages)."""
    args = request.args
    return {
        "filters": {
            f: values
            for f in FILTERS
            if (values := list(params.choices(f, args.getlist(f), KNOWN_VALUES.get(f))))
        },
        "slow": params.flag("slow", args.get("slow")),
        "q": params.text("q", args.get("q")),
        "since": params.moment("since", args.get("since")),
        "until": params.moment("until", args.get("until")),
        "limit": page_limit(args),
        "cursor": params.ledger_id("cursor", args.get("cursor")),
    }


def page_limit(args) -> int:
    """Read `limit` (1 to MAX_LIMIT; 50 when not given)."""
    limit = params.whole("limit", args.get("limit"), minimum=1, maximum=MAX_LIMIT)
    return 50 if limit is None else limit


@bp.get("/jobs")
def list_jobs():
    """List jobs newest first, filtered, one keyset page at a time."""
    try:
        jobs, next_cursor = get_ledger().jobs.search(**job_query())
    except BadQuery as e:
        raise BadRequest(str(e)) from None
    return jsonify(jobs=finite(jobs), next_cursor=next_cursor)


@bp.get("/jobs/<job_id>")
def get_job(job_id: str):
    """Return one job with its events, oldest first."""
    job = get_ledger().jobs.get(job_id, with_events=True)
    if job is None:
        raise NotFound(f"no job {job_id}")
    return jsonify(finite(job))


def failure_status(e: CallFailed) -> int:
    """Pick the HTTP status for a submission the provider did not accept."""
    if e.outcome_unknown:
        return 504
    if e.code == NETWORK_ERROR or e.retryable:
        return 502
    return 422


def submit_budget() -> float:
    """Seconds a submission may take before its outcome is reported unknown."""
    # Internal knob (tests shorten it); not a RECEIVER_* setting.
    return float(current_app.config.get("SUBMIT_BUDGET_S") or INTERACTIVE_BUDGET_S)


@bp.post("/jobs")
def create_job():
    """Submit a job: {"operation": NAME, "params": {...}, "metadata": {...}}; answer with
    the recorded job."""
    body = params.json_object("body", request.get_data())
    if not isinstance(body.get("operation"), str):
        return error_response(400, 'expected a JSON object {"operation": NAME, "params": {...}}')
    try:
        result = submit(
            get_ledger(),
            current_app.config,
            body["operation"],
            body.get("params") or {},
            budget_s=submit_budget(),
            metadata=body.get("metadata"),
        )
    except UsageError as e:
        return error_response(400, str(e))
    except NotConfigured as e:
        log.error("api.submit-not-configured", extra={"error": str(e)})
        return error_response(503, str(e))
    if result.error is None:  # accepted
        response = jsonify(finite(result.job))
        response.status_code = 201
        response.headers["Location"] = f"/api/jobs/{result.job['id']}"
        return response
    extra = {"provider_status": result.error.status} if result.error.status else {}
    job = finite(result.job)
    return error_response(failure_status(result.error), result.describe_error(), job=job, **extra)


@bp.get("/stats")
def stats():
    """Return job counts by state, provider, service and kind."""
    return jsonify(get_ledger().jobs.stats())


@bp.get("/openapi.json")
def openapi():
    """Return the OpenAPI document of this API."""
    return jsonify(SPEC)


# -- quarantine and replay ----------------------------------------------------------------

ROW_ID = "int(max=9223372036854775807)"  # larger ids cannot be in the ledger: 404, not 500
MAX_QUARANTINE_CURSOR = 10**18 - 1  # what store.quarantine reads back as a cursor


def ops_principal() -> str:
    """Name who is acting on the ops surface: `token`, `basic:<user>` or `loopback`."""
    if not current_app.config.get("OPS_TOKEN"):
        return "loopback"
    auth = request.authorization
    if auth is not None and auth.type == "basic":
        return f"basic:{(auth.username or '')[:64]}"
    return "token"


def quarantine_query() -> dict:
    """Read the quarantine filters from the query string (shared with the pages)."""
    args = request.args
    return {
        "filters": {
            name: values
            for name, allowed in QUARANTINE_FILTERS.items()
            if (values := list(params.choices(name, args.getlist(name), allowed)))
        },
        "since": params.moment("since", args.get("since")),
        "until": params.moment("until", args.get("until")),
        "limit": page_limit(args),
        "cursor": _quarantine_cursor(args.get("cursor")),
    }


def _quarantine_cursor(raw) -> str | None:
    cursor = params.whole("cursor", raw, minimum=1, maximum=MAX_QUARANTINE_CURSOR)
    return None if cursor is None else str(cursor)


def public_item(item: dict) -> dict:
    """Shape a quarantined item for the API: its body as text, or Base64 if not UTF-8."""
    out = {k: v for k, v in item.items() if k != "body"}
    if "body" in item:
        body = item["body"]
        try:
            out["payload"] = None if body is None else body.decode("utf-8")
            out["payload_encoding"] = "text"
        except UnicodeDecodeError:
            out["payload"] = base64.b64encode(body).decode("ascii")
            out["payload_encoding"] = "base64"
    return out


@bp.get("/quarantine")
def list_quarantine():
    """List quarantined bodies newest first, filtered, one keyset page at a time."""
    try:
        items, next_cursor = get_ledger().quarantine.search(**quarantine_query())
    except BadQuery as e:
        raise BadRequest(str(e)) from None
    return jsonify(items=[public_item(i) for i in items], next_cursor=next_cursor)


@bp.get(f"/quarantine/<{ROW_ID}:quarantine_id>")
def get_quarantined(quarantine_id: int):
    """Return one quarantined item with its body."""
    item = get_ledger().quarantine.get(quarantine_id)
    if item is None:
        raise NotFound(f"no quarantined body {quarantine_id}")
    return jsonify(public_item(item))


def _replayed_answer(result):
    """Answer one replay: 200 with what happened, 404 if unknown, 409 if discarded."""
    if result.problem == "not_found":
        raise NotFound(f"no quarantined body {result.id}")
    if result.problem == "discarded":
        return error_response(409, f"quarantined body {result.id} was {result.error}")
    fields = result.as_dict()
    del fields["target"]
    if result.ok:
        del fields["error"]
    else:
        fields = {k: fields[k] for k in ("id", "ok", "status", "error") if k in fields}
    return jsonify(fields)


@bp.post(f"/quarantine/<{ROW_ID}:quarantine_id>/replay")
def replay_quarantined(quarantine_id: int):
    """Parse one quarantined body again and record it; it stays waiting if it still fails."""
    result = replay.replay_quarantined(get_ledger(), quarantine_id)
    log.info("api.quarantine-replay", extra={"quarantine_id": quarantine_id, "ok": result.ok})
    return _replayed_answer(result)


@bp.post(f"/quarantine/<{ROW_ID}:quarantine_id>/discard")
def discard_quarantined(quarantine_id: int):
    """Mark one quarantined body discarded (it is kept); say who and when."""
    try:
        item = get_ledger().quarantine.discard(quarantine_id, by=ops_principal())
    except QuarantineConflict as e:
        return error_response(409, str(e))
    if item is None:
        raise NotFound(f"no quarantined body {quarantine_id}")
    log.info("api.quarantine-discard", extra={"quarantine_id": quarantine_id})
    return jsonify(ok=True, **public_item(item))


@bp.post("/replay")
def bulk_replay():
    """Replay what a JSON filter selects; answer the counts, each item, and how to continue.

    Body: {"target": "quarantine" | "events", "provider", "service", "source",
    "event_type", "since", "until", "ids", "all", "after", "through", "limit", "dry_run"}.
    """
    doc = params.json_object("body", request.get_data())
    if isinstance(doc.get("limit"), str):  # JSON has numbers for numbers
        raise params.BadParameter("limit", "limit must be a JSON number")
    limit = params.whole("limit", doc.get("limit"), minimum=1, maximum=replay.MAX_API_LIMIT)
    selection = replay.selection_from(doc)
    ledger = get_ledger()
    if doc.get("dry_run") is True:
        return jsonify(ok=True, dry_run=True, matched=replay.count(ledger, selection))
    totals = replay.run(ledger, selection, limit=limit or replay.MAX_API_LIMIT)
    log.info("api.replay", extra={"summary": totals.summary()})
    return jsonify(ok=True, dry_run=False, **asdict(totals))
