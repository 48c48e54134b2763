"""What the console works out from the ledger and the settings, for the pages to show.

The health strip (is work flowing, what is turned away, what is waiting), the filter
description of the job list, and which actions a job page can offer, with the reason
when one cannot work. No SQL here: the ledger's methods; no Flask: plain values.
"""

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from store import Ledger, open_ledger, states
from store.polls import POLLED_STATES
from submitter.operations import OPERATIONS, missing_settings

from ..background import alerts
from ..background.alerts import sinks
from ..background.status_apis import plan_poll
from ..inbound import rejections

log = logging.getLogger("jobledger.pages")
RESUBMITTABLE = frozenset({states.FAILED, states.PARTIAL, states.SUBMIT_FAILED, states.TIMED_OUT})
SOURCE_LABELS = {"http": "callback", "mns": "MNS queue", "pull": "pull", "poll": "poll"}
SERVICE_LABELS = {
    ("aliyun", "vod"): "Alibaba VOD",
    ("aliyun", "mps"): "Alibaba MPS",
    ("aliyun", "live"): "Alibaba Live",
    ("tencent", "vod"): "Tencent VOD",
}
REASON_LABELS = {  # (one, several): "1 bad signature", "3 bad signatures"
    "bad_signature": ("bad signature", "bad signatures"),
    "stale_timestamp": ("stale timestamp", "stale timestamps"),
    "bad_token": ("bad token", "bad tokens"),
    "unsigned": ("without a signature", "without a signature"),
    "not_configured": ("not configured", "not configured"),
}


def feed_label(feed: dict) -> str:
    """Name a feed the way an operator says it: `Alibaba VOD callback`, `Alibaba MPS MNS
    queue`, `Tencent VOD callback` (never a bare `VOD`, which both providers have)."""
    service = SERVICE_LABELS.get((feed["provider"], feed["service"]), feed["service"])
    return f"{service} {SOURCE_LABELS.get(feed['source'], feed['source'])}"


def health(ledger: Ledger, config: Mapping[str, Any], now: datetime) -> dict:
    """Gather the health strip: feeds, rejections, quarantine, unmatched notices, alerts,
    and outbound events (endpoints failing, the oldest message waiting)."""
    hour_ago = now - timedelta(hours=1)
    rejections.TALLY.flush_into(ledger, config)  # this process's latest, at least
    return {
        "feeds": [dict(f, label=feed_label(f)) for f in ledger.dashboard.feeds(hour_ago)],
        "rejections": [
            dict(r, label=REASON_LABELS.get(r["reason"], (r["reason"], r["reason"])))
            for r in ledger.rejections.since(hour_ago)
        ],
        "quarantined": ledger.quarantine.waiting(),
        "unmatched": ledger.dashboard.unmatched_notices(hour_ago),
        "alerts_waiting": ledger.alerts.waiting(),
        "sinks": [kind for kind, _ in sinks(config)],
        "endpoints_failing": ledger.endpoints.failing(),
        "deliveries": ledger.deliveries.waiting(),
    }


def warn_if_no_sink(config: Mapping[str, Any]) -> None:
    """At the web app's start, say so when alerts are recorded but no sink would send them."""
    path = config.get("DATABASE")
    if sinks(config) or not path or not Path(str(path)).is_file():
        return
    try:
        with open_ledger(path) as ledger:
            alerts.warn_if_no_sink(config, ledger)
    except Exception:  # not migrated yet, or not a file ledger: nothing to say at start-up
        return


def describe_filters(args) -> str:
    """Say in words what the list shows: `failed or partial · aliyun · kind transcode`."""
    parts = []
    for name in ("state", "provider", "service"):
        values = [v for v in args.getlist(name) if v]
        if values:
            parts.append(" or ".join(values))
    kinds = [v for v in args.getlist("kind") if v]
    if kinds:
        parts.append("kind " + " or ".join(kinds))
    if args.get("slow") == "true":
        parts.append("slow")
    if args.get("q"):
        parts.append(f"id {args['q']}")
    if args.get("since"):
        parts.append(f"since {args['since']}")
    if args.get("until"):
        parts.append(f"until {args['until']}")
    return " · ".join(parts)


def _credentials_missing(config: Mapping[str, Any], client: str) -> str | None:
    """Name the settings a submitter client lacks, or None when they are set."""
    return " and ".join(missing_settings(config, client)) or None


def job_actions(ledger: Ledger, config: Mapping[str, Any], job: dict) -> dict:
    """Which actions the job page offers: name -> reason it cannot work (None: it can)."""
    actions: dict[str, str | None] = {}
    if job["state"] in POLLED_STATES:
        raw = ledger.polls.job(job["id"])
        poll = plan_poll(raw) if raw else None
        if poll is None:
            actions["repoll"] = f"{job['provider']} {job['kind']} jobs have no status API"
        else:
            missing = _credentials_missing(config, poll.client)
            actions["repoll"] = f"set {missing} to poll" if missing else None
    op = OPERATIONS.get(job["operation"] or "")
    if job["origin"] == "submitted" and op is not None and job["state"] in RESUBMITTABLE:
        missing = _credentials_missing(config, op.client)
        actions["resubmit"] = f"set {missing} to resubmit" if missing else None
    return actions
