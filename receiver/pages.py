"""HTML pages for on-call engineers: dashboard, job list, job detail with its timeline.

Server-rendered, readable without JavaScript; every provider string goes through Jinja's
autoescaping, and only http(s) URLs become links. Actions are POST forms with a
double-submit CSRF token (a random cookie echoed in a hidden field): pages are reached
with HTTP Basic credentials the browser resends by itself, so a cross-site form could
otherwise act with them.
"""

import hmac
import json
import logging
import secrets
from datetime import UTC, datetime
from urllib.parse import urlencode, urlsplit

from flask import Blueprint, current_app, g, redirect, render_template, request, url_for
from werkzeug.exceptions import BadRequest, Forbidden, NotFound

from store import JobNotFound, states
from store.polls import POLLED_STATES
from store.reads import FILTERS, BadQuery

from .api import job_query
from .auth import require_ops
from .db import get_ledger
from .providers import InvalidPayload, queue

bp = Blueprint("pages", __name__)
RESUBMITTABLE = frozenset({states.FAILED, states.PARTIAL, states.SUBMIT_FAILED, states.TIMED_OUT})
log = logging.getLogger("jobledger.pages")
CSRF_COOKIE = "jobledger_csrf"
STATE_CHOICES = list(states.ALL)


@bp.before_request
def _ops_only():
    require_ops(allow_basic=True)
    if request.method == "POST":
        _check_csrf()


def _check_csrf() -> None:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    field = request.form.get("csrf", "")
    if not cookie or not hmac.compare_digest(cookie.encode(), field.encode()):
        raise Forbidden("missing or wrong CSRF token: reload the page and try again")
    origin = request.headers.get("Origin")
    if origin and urlsplit(origin).netloc != request.host:
        raise Forbidden("cross-origin form post refused")


@bp.after_request
def _set_csrf_cookie(response):
    token = g.get("csrf_token")
    if token and request.cookies.get(CSRF_COOKIE) != token:
        response.set_cookie(
            CSRF_COOKIE, token, httponly=True, samesite="Strict", secure=request.is_secure
        )
    response.headers.setdefault(
        "Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'"
    )
    response.headers.setdefault("X-Frame-Options", "DENY")
    return response


@bp.app_context_processor
def _template_helpers():
    def csrf_token() -> str:
        if "csrf_token" not in g:
            g.csrf_token = request.cookies.get(CSRF_COOKIE) or secrets.token_hex(16)
        return g.csrf_token

    def link(value) -> str | None:
        """Return the URL if it may be a link (http or https), else None."""
        if isinstance(value, str) and urlsplit(value).scheme in ("http", "https"):
            return value
        return None

    return {"csrf_token": csrf_token, "link": link, "refresh": _refresh()}


def _refresh() -> int | None:
    raw = request.args.get("refresh", "")
    return max(5, min(int(raw), 3600)) if raw.isdigit() and int(raw) else None


def pretty(payload, source: str) -> str:
    """Show a stored body pretty-printed when it is JSON (Base64 MNS bodies decoded)."""
    if payload is None:
        return "(pruned by retention)"
    try:
        doc = queue.decode(payload) if source == "mns" else json.loads(payload)
    except (InvalidPayload, ValueError):
        return payload
    return json.dumps(doc, indent=2, ensure_ascii=False)


@bp.get("/")
def dashboard():
    """Jobs by state, failures over 24 hours, the oldest unfinished jobs, recent alerts."""
    ledger = get_ledger()
    now = datetime.now(UTC)
    groups = {}
    for provider, service, kind, state, n in ledger.metrics_snapshot()["jobs"]:
        groups.setdefault((provider, service, kind), {})[state] = n
    hours = ledger.failures_by_hour(now)
    peak = max([sum(h["by_state"].values()) for h in hours] + [1])
    return render_template(
        "dashboard.html",
        groups=sorted(groups.items()),
        states=STATE_CHOICES,
        stats=ledger.stats(),
        hours=hours,
        peak=peak,
        oldest=ledger.oldest_unfinished(),
        alerts=ledger.recent_alerts(),
    )


@bp.get("/jobs")
def job_list():
    """The job list with the API's filters as a form, newest first, a keyset page at a time."""
    query = job_query()
    try:
        jobs, next_cursor = get_ledger().list_jobs(**query)
    except BadQuery as e:
        raise BadRequest(str(e)) from None
    args = [(k, v) for k, v in request.args.items(multi=True) if k != "cursor"]
    next_url = (
        url_for("pages.job_list") + "?" + urlencode(args + [("cursor", next_cursor)])
        if next_cursor
        else None
    )
    return render_template(
        "jobs/index.html",
        jobs=jobs,
        next_url=next_url,
        args=request.args,
        states=STATE_CHOICES,
        filters=FILTERS,
    )


@bp.get("/jobs/<job_id>")
def job_detail(job_id: str):
    """Every field of a job, its outputs, its timeline with raw notices, and its alerts."""
    ledger = get_ledger()
    job = ledger.get_job(job_id, with_events=True)
    if job is None:
        raise NotFound(f"no job {job_id}")
    for event in job["events"]:
        event["pretty"] = pretty(event["payload"], event["source"])
    return render_template(
        "jobs/detail.html",
        job=job,
        alerts=ledger.alerts_for_job(job_id),
        resubmissions=ledger.resubmissions(job_id),
        can_repoll=job["state"] in POLLED_STATES,
        can_resubmit=job["origin"] == "submitted"
        and job["operation"] is not None
        and job["state"] in RESUBMITTABLE,
        notice=request.args.get("notice"),
    )


@bp.post("/jobs/<job_id>/events/<int:event_id>/replay")
def replay_event(job_id: str, event_id: int):
    """Re-apply one stored notice through today's parser (never undoes a final state)."""
    from .replay import replay_event as replay_one

    result = replay_one(get_ledger(), event_id, job_id=job_id)
    if result.problem == "not_found":
        raise NotFound(f"no replayable event {event_id} on job {job_id}")
    if not result.ok:
        raise BadRequest(f"event {event_id}: {result.error}")
    log.info("pages.replayed", extra={"job_id": job_id, "event_id": event_id})
    return redirect(url_for("pages.job_detail", job_id=job_id), code=303)


@bp.post("/jobs/<job_id>/repoll")
def repoll(job_id: str):
    """Ask the provider about this job now, as reconcile would, and show what came of it."""
    from .workers.reconcile import poll_now

    try:
        outcome = poll_now(current_app.config, get_ledger(), job_id)
    except JobNotFound:
        raise NotFound(f"no job {job_id}") from None
    log.info("pages.repolled", extra={"job_id": job_id, "outcome": outcome})
    return redirect(url_for("pages.job_detail", job_id=job_id, notice=f"poll: {outcome}"), 303)


@bp.post("/jobs/<job_id>/resubmit")
def resubmit(job_id: str):
    """Submit a failed job's operation again, as a new job linked to the old one."""
    from submitter import NotConfigured, UsageError, submit

    ledger = get_ledger()
    job = ledger.get_job(job_id)
    if job is None:
        raise NotFound(f"no job {job_id}")
    if job["origin"] != "submitted" or job["state"] not in RESUBMITTABLE:
        raise BadRequest(
            "only a failed, partial, refused or timed-out submitted job is resubmitted"
        )
    params = ledger.submission_params(job_id)
    try:
        result = submit(ledger, current_app.config, job["operation"], params)
    except (UsageError, NotConfigured) as e:
        raise BadRequest(f"cannot resubmit: {e}") from None
    ledger.link_resubmission(result.job["id"], job_id)
    log.info("pages.resubmitted", extra={"job_id": job_id, "new_job_id": result.job["id"]})
    return redirect(url_for("pages.job_detail", job_id=result.job["id"]), 303)


from . import quarantine_pages  # noqa: E402, F401 - its routes join this blueprint
