"""`GET /api/health/providers`: failure rates, anomalies and durations per provider, service
and kind, as the last background pass worked them out (receiver/background/health.py).

Read from the snapshot the pass publishes: a few rows, whatever the ledger's size. Its
`generated_at` says how fresh it is; `reconcile` refreshes it every pass (15 s).
"""

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, current_app, jsonify

from store import Ledger

from ..auth import require_ops
from ..background.health import label, percent, rate, span, spans
from ..db import get_ledger
from . import charts, display

bp = Blueprint("provider_health", __name__, url_prefix="/api/health")


@bp.before_request
def _ops_only():
    require_ops()


def group_record(row: Mapping[str, Any]) -> dict:
    """Shape one snapshot row as the API's group."""

    def counts(part: str) -> dict:
        finished, failed = row[f"{part}_finished"] or 0, row[f"{part}_failed"] or 0
        return {"finished": finished, "failed": failed, "failure_rate": rate(failed, finished)}

    return {
        "provider": row["provider"],
        "service": row["service"],
        "kind": row["kind"],
        "window": counts("window"),
        "baseline": counts("baseline"),
        "anomaly": bool(row["anomaly"]),
        "anomaly_reason": row["anomaly_reason"],
        "anomaly_since": row["anomaly_since"],
        "slow_jobs": row["slow_jobs"] or 0,
        "duration_seconds": {
            "p50": row["p50"],
            "p95": row["p95"],
            "p99": row["p99"],
            "count": row["duration_count"] or 0,
        },
    }


def health_document(ledger: Ledger, config: Mapping[str, Any]) -> dict:
    """Return the provider health document (the API's answer, and the dashboard's data)."""
    window_s, baseline_s, _ = spans(config)
    return {
        "groups": [group_record(r) for r in ledger.provider_health.snapshot()],
        "generated_at": ledger.provider_health.generated_at(),
        "window_seconds": window_s,
        "baseline_seconds": baseline_s,
    }


@bp.get("/providers")
def providers():
    """Return failure rates, anomalies and duration percentiles per provider, service, kind."""
    return jsonify(health_document(get_ledger(), current_app.config))


STALE = timedelta(minutes=2)  # a snapshot older than this: is reconcile running?


def dashboard_view(ledger: Ledger, config: Mapping[str, Any], now: datetime) -> dict:
    """Gather what the dashboard shows of provider health: anomalies, each kind's rates,
    durations and slow jobs, and the two charts."""
    doc = health_document(ledger, config)
    rows = []
    for group in doc["groups"]:
        durations = group["duration_seconds"]
        rows.append(
            {
                **group,
                "label": f"{label(group['provider'], group['service'])} {group['kind']}",
                "window_rate": percent(group["window"]["failure_rate"]),
                "baseline_rate": percent(group["baseline"]["failure_rate"]),
                "slow": group["slow_jobs"],
                "p50": durations["p50"],
                "p95": durations["p95"],
                "p99": durations["p99"],
                "count": durations["count"],
                **{f"{p}_text": _span(durations[p]) for p in ("p50", "p95", "p99")},
            }
        )
    generated = display.parse_stamp(doc["generated_at"])
    return {
        "groups": rows,
        "anomalies": [r for r in rows if r["anomaly"]],
        "generated_at": doc["generated_at"],
        "stale": generated is None or now - generated > STALE,
        "slow_total": sum(r["slow"] for r in rows),
        "window": span(doc["window_seconds"]),
        "hourly": _hourly_charts(ledger, now),
        "percentiles": charts.percentiles(rows, "chart-durations"),
    }


def _span(seconds: float | None) -> str:
    return "—" if seconds is None else display.span(seconds)


def _hourly_charts(ledger: Ledger, now: datetime) -> list:
    """One small chart per provider's service, from the hourly tallies of the last 24 h."""
    hours = charts.hours_of(now)
    per: dict[tuple, dict[str, tuple[int, int]]] = {}
    for hour, provider, service, finished, failed in ledger.provider_health.hourly(hours[0]):
        per.setdefault((provider, service), {})[hour] = (finished, failed)
    return [
        {
            "label": label(*key),
            "svg": charts.hourly(label(*key), hours, counts, f"chart-{key[0]}-{key[1]}"),
            "rows": [(h, *counts.get(h, (0, 0))) for h in hours if h in counts],
        }
        for key, counts in sorted(per.items())
    ]
