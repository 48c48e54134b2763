"""`GET /api/health/providers`: failure rates, anomalies and durations per provider, service
and kind, as the last background pass worked them out (receiver/background/health.py).

Read from the snapshot the pass publishes: a few rows, whatever the ledger's size. Its
`generated_at` says how fresh it is; `reconcile` refreshes it every pass (15 s).
"""

from collections.abc import Mapping
from typing import Any

from flask import Blueprint, current_app, jsonify

from store import Ledger

from ..auth import require_ops
from ..background.health import rate
from ..db import get_ledger

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
        "duration_seconds": {
            "p50": row["p50"],
            "p95": row["p95"],
            "p99": row["p99"],
            "count": row["duration_count"] or 0,
        },
    }


def health_document(ledger: Ledger, config: Mapping[str, Any]) -> dict:
    """Return the provider health document (the API's answer, and the dashboard's data)."""
    return {
        "groups": [group_record(r) for r in ledger.provider_health.snapshot()],
        "generated_at": ledger.provider_health.generated_at(),
        "window_seconds": config["ANOMALY_WINDOW_SECONDS"],
        "baseline_seconds": config["ANOMALY_BASELINE_SECONDS"],
    }


@bp.get("/providers")
def providers():
    """Return failure rates, anomalies and duration percentiles per provider, service, kind."""
    return jsonify(health_document(get_ledger(), current_app.config))
