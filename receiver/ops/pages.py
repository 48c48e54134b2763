"""HTML pages for on-call engineers: dashboard with a health strip, job list, job detail.

Server-rendered and complete without JavaScript; a small script from `static/` adds
relative times that keep up, copy buttons and a live refresh. Every provider string goes
through Jinja's autoescaping (hover titles included), and only http(s) URLs become links.
Actions that cannot work (no credentials, no status API) are shown disabled with the
reason. Authentication, CSRF and headers are shared by every page: see `html.py`.
"""

import logging
from datetime import UTC, datetime
from urllib.parse import urlencode

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from werkzeug.exceptions import BadRequest, Conflict, NotFound, ServiceUnavailable

from store import BadQuery, JobNotFound, states
from store.jobs import FILTERS
from submitter import NotConfigured, UsageError, submit

from ..background.reconcile import poll_now
from ..db import get_ledger
from . import console, display, notices
from .api import KNOWN_VALUES, ROW_ID, job_query
from .html import guard, pretty
from .provider_health import dashboard_view
from .replay import replay_event as replay_one

bp = guard(Blueprint("pages", __name__))
bp.record_once(lambda state: console.warn_if_no_sink(state.app.config))
RESUBMITTABLE = console.RESUBMITTABLE
log = logging.getLogger("jobledger.pages")
STATE_CHOICES = list(states.ALL)
MAX_TRAIL = 50  # newer-page links kept while paging back through the list


@bp.get("/")
def dashboard():
    """Health strip, jobs by state, failures over 24 hours, oldest unfinished, alerts."""
    ledger = get_ledger()
    now = datetime.now(UTC)
    groups: dict[tuple[str, str, str], dict[str, int]] = {}
    for provider, service, kind, state, n in ledger.dashboard.metrics_snapshot()["jobs"]:
        groups.setdefault((provider, service, kind), {})[state] = n
    hours = ledger.alerts.by_hour(now)
    most = max((sum(h["by_state"].values()) for h in hours), default=0)
    health = console.health(ledger, current_app.config, now)
    for event in health["unmatched"]["newest"]:
        event["pretty"] = pretty(event["payload"], event["source"])
    return render_template(
        "dashboard.html",
        groups=sorted(groups.items()),
        states=STATE_CHOICES,
        stats=ledger.jobs.stats(),
        hours=hours,
        most=most,
        peak=max(most, 1),  # the chart's scale
        oldest=ledger.dashboard.oldest_unfinished(),
        alerts=ledger.alerts.recent(),
        health=health,
        provider_health=dashboard_view(ledger, current_app.config, now),
    )


@bp.get("/jobs")
def job_list():
    """The job list with the API's filters as a form, newest first, a keyset page at a time."""
    query = job_query()
    ledger = get_ledger()
    try:
        jobs, next_cursor = ledger.jobs.search(**query)
    except BadQuery as e:
        raise BadRequest(str(e)) from None
    trail = [t for t in request.args.get("trail", "").split(",") if t][-MAX_TRAIL:]
    kept = [(k, v) for k, v in request.args.items(multi=True) if k not in ("cursor", "trail")]
    base = url_for("pages.job_list")

    def page_url(cursor: str | None, new_trail: list[str]) -> str:
        extra = [("cursor", cursor)] if cursor else []
        extra += [("trail", ",".join(new_trail))] if new_trail else []
        return base + ("?" + urlencode(kept + extra) if kept or extra else "")

    here = query["cursor"]
    next_url = page_url(next_cursor, trail + [here or "-"]) if next_cursor else None
    newer_url = None
    if here:
        previous = trail[-1] if trail else "-"
        newer_url = page_url(None if previous == "-" else previous, trail[:-1])
    exact_total = None
    if not (query["q"] or query["since"] or query["until"] or query["slow"]):
        exact_total = ledger.jobs.count(query["filters"])
    return render_template(
        "jobs/index.html",
        jobs=jobs,
        next_url=next_url,
        newer_url=newer_url,
        first_url=page_url(None, []) if here else None,
        args=request.args,
        states=STATE_CHOICES,
        known=KNOWN_VALUES,
        filters=FILTERS,
        described=console.describe_filters(request.args),
        total=exact_total,
    )


@bp.get("/jobs/<job_id>")
def job_detail(job_id: str):
    """Every field of a job, its outputs, its timeline with raw notices, and its alerts."""
    ledger = get_ledger()
    job = ledger.jobs.get(job_id, with_events=True)
    if job is None:
        raise NotFound(f"no job {job_id}")
    for event in job["events"]:
        event["pretty"] = pretty(event["payload"], event["source"])
    return render_template(
        "jobs/detail.html",
        job=job,
        times=display.job_times(job, ledger.jobs.started_at(job_id)),
        error=display.job_error(job),
        outputs=display.output_rows(job["outputs"], job["provider"]),
        alerts=ledger.alerts.for_job(job_id),
        resubmissions=ledger.jobs.resubmissions(job_id),
        actions=console.job_actions(ledger, current_app.config, job),
        notice=notices.job_notice(request.args.get("notice")),
    )


@bp.post(f"/jobs/<job_id>/events/<{ROW_ID}:event_id>/replay")
def replay_event(job_id: str, event_id: int):
    """Re-apply one stored notice through today's parser (never undoes a final state)."""
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
    try:
        outcome = poll_now(current_app.config, get_ledger(), job_id)
    except JobNotFound:
        raise NotFound(f"no job {job_id}") from None
    log.info("pages.repolled", extra={"job_id": job_id, "outcome": outcome})
    if outcome == "not_configured":  # an old tab: the page no longer offers the button
        job = get_ledger().jobs.get(job_id)
        if job is None:  # merged into another job meanwhile
            raise NotFound(f"no job {job_id}")
        reason = console.job_actions(get_ledger(), current_app.config, job).get("repoll")
        raise ServiceUnavailable(f"cannot poll: {reason or 'credentials are not configured'}")
    notice = notices.poll_notice(outcome)
    return redirect(url_for("pages.job_detail", job_id=job_id, notice=notice), 303)


@bp.post("/jobs/<job_id>/resubmit")
def resubmit(job_id: str):
    """Submit a failed job's operation again, as a new job linked to the old one.

    Statuses as the API gives them: 503 when the provider's credentials are not set, 409
    when the job is not one that can be resubmitted, 400 when its stored params are refused.
    """
    ledger = get_ledger()
    job = ledger.jobs.get(job_id)
    if job is None:
        raise NotFound(f"no job {job_id}")
    if job["origin"] != "submitted" or job["state"] not in RESUBMITTABLE:
        raise Conflict("only a failed, partial, refused or timed-out submitted job is resubmitted")
    params = ledger.jobs.submission_params(job_id)
    try:
        result = submit(
            ledger, current_app.config, job["operation"], params, metadata=job["metadata"]
        )
    except NotConfigured as e:
        log.error("pages.resubmit-not-configured", extra={"job_id": job_id, "error": str(e)})
        raise ServiceUnavailable(f"cannot resubmit: {e}") from None
    except UsageError as e:
        raise BadRequest(f"cannot resubmit: {e}") from None
    ledger.submissions.link_resubmission(result.job["id"], job_id)
    log.info("pages.resubmitted", extra={"job_id": job_id, "new_job_id": result.job["id"]})
    return redirect(url_for("pages.job_detail", job_id=result.job["id"]), 303)
