"""The endpoints pages: every endpoint's health, and one endpoint's deliveries with each
attempt, a Retry button per delivery and a Recover form for what failed.

A blueprint of its own with the console's rules (`html.guard`): ops authentication, the
CSRF check on every POST and security headers. Secrets are never shown; URLs are shown as
registered, to the operators who registered them.
"""

import logging
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from flask import Blueprint, redirect, render_template, request, url_for
from werkzeug.exceptions import BadRequest, NotFound

from .. import params
from ..db import get_ledger
from .api import ROW_ID
from .endpoints_api import delivery_query
from .html import guard
from .notices import endpoint_notice

log = logging.getLogger("jobledger.pages")

bp = guard(Blueprint("endpoints", __name__))


@bp.get("/endpoints")
def endpoint_list():
    """Every endpoint with its health: last success, failing since, counts."""
    endpoints = get_ledger().endpoints.all()
    return render_template("endpoints/index.html", endpoints=endpoints)


@bp.get("/endpoints/<endpoint_id>")
def endpoint_detail(endpoint_id: str):
    """One endpoint: its health, its deliveries newest first with each attempt."""
    ledger = get_ledger()
    endpoint = ledger.endpoints.get(endpoint_id)
    if endpoint is None:
        raise NotFound(f"no endpoint {endpoint_id}")
    query = delivery_query()
    deliveries, next_cursor = ledger.deliveries.search(endpoint_id, **query)
    args = [(k, v) for k, v in request.args.items(multi=True) if k != "cursor"]
    next_url = None
    if next_cursor:
        next_url = url_for("endpoints.endpoint_detail", endpoint_id=endpoint_id) + "?"
        next_url += urlencode(args + [("cursor", next_cursor)])
    # Recover from when it started failing, else from a day ago.
    since = endpoint["failing_since"] or _iso(datetime.now(UTC) - timedelta(days=1))
    return render_template(
        "endpoints/detail.html",
        endpoint=endpoint,
        deliveries=deliveries,
        next_url=next_url,
        status=query["status"] or [],
        recover_since=since,
        notice=endpoint_notice(request.args, endpoint),
    )


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@bp.post(f"/endpoints/<endpoint_id>/deliveries/<{ROW_ID}:delivery_id>/retry")
def delivery_retry(endpoint_id: str, delivery_id: int):
    """Send one delivery again now, whatever its status."""
    ledger = get_ledger()
    delivery = ledger.deliveries.get(delivery_id)
    if delivery is None or delivery["endpoint_id"] != endpoint_id:
        raise NotFound(f"no delivery {delivery_id} to endpoint {endpoint_id}")
    ledger.deliveries.retry(delivery_id, datetime.now(UTC))
    log.info("pages.delivery-retry", extra={"endpoint": endpoint_id, "delivery_id": delivery_id})
    return _back(endpoint_id, notice="retried", delivery=delivery_id)


@bp.post("/endpoints/<endpoint_id>/recover")
def endpoint_recover(endpoint_id: str):
    """Make every delivery to this endpoint that failed since the given time pending again."""
    ledger = get_ledger()
    if ledger.endpoints.get(endpoint_id) is None:
        raise NotFound(f"no endpoint {endpoint_id}")
    since = params.moment("since", request.form.get("since"))
    if since is None:
        raise BadRequest("since must be an ISO 8601 time, such as 2026-11-20T00:00Z")
    recovered = ledger.deliveries.recover(endpoint_id, since, datetime.now(UTC))
    log.info("pages.endpoint-recover", extra={"endpoint": endpoint_id, "recovered": recovered})
    return _back(endpoint_id, notice="recovered", count=recovered)


@bp.post("/endpoints/<endpoint_id>/enable")
def endpoint_enable(endpoint_id: str):
    """Enable an endpoint again: what waited for it goes out now."""
    if get_ledger().endpoints.update(endpoint_id, {"enabled": True}) is None:
        raise NotFound(f"no endpoint {endpoint_id}")
    log.info("pages.endpoint-enabled", extra={"endpoint": endpoint_id})
    return _back(endpoint_id, notice="enabled")


def _back(endpoint_id: str, **args):
    """Redirect to the endpoint's page with the name of what happened (ops/notices.py)."""
    return redirect(url_for("endpoints.endpoint_detail", endpoint_id=endpoint_id, **args), 303)
