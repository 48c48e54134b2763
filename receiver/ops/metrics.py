"""`/metrics` in Prometheus text format, correct under several gunicorn workers.

Two sources: per-request figures (hook outcomes, apply latency) are prometheus-client
metrics, aggregated across workers in multiprocess mode when PROMETHEUS_MULTIPROC_DIR is
set (gunicorn.conf.py sets it); ledger figures (notices by type and outcome, jobs by
state, the oldest unfinished job, alerts, queue messages, outbound deliveries) are read
from the counters the ledger keeps in its own transactions, so they are exact across every
process (web workers, consumers, reconcile, deliver) and survive restarts.
"""

import os
from datetime import UTC, datetime

from flask import Blueprint, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from store.deliveries import BUCKETS
from store.provider_health import PROM_BUCKETS

from ..auth import require_ops
from ..db import get_ledger

bp = Blueprint("metrics", __name__)

HOOK_REQUESTS = Counter(
    "jobledger_hook_requests_total",
    "Callback requests by provider and outcome (recorded, duplicate, quarantined, "
    "unauthorized, not_configured, error).",
    ["provider", "outcome"],
)
APPLY_SECONDS = Histogram(
    "jobledger_apply_seconds",
    "Time from a callback's body being read to its ledger commit.",
    ["provider"],
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


class LedgerCollector:
    """Expose the ledger's own counters as metrics, read at scrape time."""

    def __init__(self, snapshot: dict, now: datetime):
        self.snapshot, self.now = snapshot, now

    def collect(self):
        notices = CounterMetricFamily(
            "jobledger_notices",
            "Provider notices stored, by source, provider, type, outcome.",
            labels=["source", "provider", "event_type", "outcome"],
        )
        consumed = CounterMetricFamily(
            "jobledger_queue_messages_consumed",
            "Queue messages (MNS) and pulled events (Tencent) taken in.",
            labels=["source"],
        )
        per_source: dict[str, int] = {}
        for source, provider, event_type, outcome, n in self.snapshot["notices"]:
            notices.add_metric([source, provider, event_type, outcome], n)
            if source in ("mns", "pull"):
                per_source[source] = per_source.get(source, 0) + n
        for source, n in sorted(per_source.items()):
            consumed.add_metric([source], n)
        jobs = GaugeMetricFamily(
            "jobledger_jobs", "Jobs by state.", labels=["provider", "service", "kind", "state"]
        )
        for provider, service, kind, state, n in self.snapshot["jobs"]:
            jobs.add_metric([provider, service, kind, state], n)
        oldest = GaugeMetricFamily(
            "jobledger_oldest_unfinished_job_age_seconds",
            "Age of the oldest job without a final word (0 when there is none).",
        )
        stamp = self.snapshot["oldest_unfinished"]
        age = 0.0
        if stamp:
            since = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            age = max((self.now - since).total_seconds(), 0.0)
        oldest.add_metric([], age)
        sent = CounterMetricFamily(
            "jobledger_alerts_sent", "Alerts delivered, by sink type.", labels=["sink"]
        )
        failed = CounterMetricFamily(
            "jobledger_alert_failures",
            "Failed alert delivery attempts, by sink type.",
            labels=["sink"],
        )
        totals: dict[str, tuple[int, int]] = {}
        for sink, delivered, failures in self.snapshot["alerts"]:
            kind = sink.split(":", 1)[0]
            done, bad = totals.get(kind, (0, 0))
            totals[kind] = (done + (delivered or 0), bad + (failures or 0))
        for kind, (done, bad) in sorted(totals.items()):
            sent.add_metric([kind], done)
            failed.add_metric([kind], bad)
        pending = GaugeMetricFamily(
            "jobledger_alerts_pending", "Alerts not yet delivered to every sink."
        )
        pending.add_metric([], self.snapshot["alerts_pending"])
        yield from (notices, consumed, jobs, oldest, sent, failed, pending)
        if "health" in self.snapshot:
            yield from health_metrics(self.snapshot["health"])
        if "deliveries" in self.snapshot:
            yield from self._deliveries(self.snapshot["deliveries"])

    def _deliveries(self, snapshot: dict):
        """Outbound events: attempts by endpoint and outcome, their durations, what waits."""
        by_outcome = CounterMetricFamily(
            "jobledger_deliveries",
            "Delivery attempts by endpoint and outcome (delivered, failed_attempt), and"
            " deliveries given up after the last retry (failed).",
            labels=["endpoint", "outcome"],
        )
        totals: dict[tuple[str, str], int] = {}
        buckets = [0] * (len(BUCKETS) + 1)
        total_ms = 0
        for endpoint, outcome, bucket, n, ms in snapshot["counts"]:
            totals[(endpoint, outcome)] = totals.get((endpoint, outcome), 0) + n
            if bucket >= 0:
                buckets[bucket] += n
                total_ms += ms
        for (endpoint, outcome), n in sorted(totals.items()):
            by_outcome.add_metric([endpoint, outcome], n)
        cumulative, running = [], 0
        for bound, n in zip([*map(str, BUCKETS), "+Inf"], buckets, strict=True):
            running += n
            cumulative.append((bound, running))
        durations = HistogramMetricFamily(
            "jobledger_delivery_attempt_seconds",
            "Time of each delivery attempt, connect to last byte.",
            buckets=cumulative,
            sum_value=total_ms / 1000,
        )
        pending = GaugeMetricFamily(
            "jobledger_deliveries_pending",
            "Deliveries not yet delivered or given up, by endpoint.",
            labels=["endpoint"],
        )
        for endpoint, n in sorted(snapshot["pending"].items()):
            pending.add_metric([endpoint], n)
        oldest = GaugeMetricFamily(
            "jobledger_oldest_pending_message_age_seconds",
            "Age of the change behind the oldest message not yet delivered (0 when none).",
        )
        oldest.add_metric([], self._age(snapshot["oldest_pending"]))
        yield from (by_outcome, durations, pending, oldest)

    def _age(self, stamp: str | None) -> float:
        if not stamp:
            return 0.0
        since = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        return max((self.now - since).total_seconds(), 0.0)


GROUP = ["provider", "service", "kind"]


def health_metrics(health: dict):
    """Provider health as metrics: settled jobs by outcome, the duration histogram (both
    cumulative, counted once by the background pass, so correct across every process), slow
    jobs and anomalies now."""
    finished = CounterMetricFamily(
        "jobledger_jobs_finished",
        "Jobs settled, by outcome (succeeded, partial, failed, submit_failed, timed_out),"
        " counted by the reconcile pass a minute after they settle.",
        labels=[*GROUP, "outcome"],
    )
    durations = HistogramMetricFamily(
        "jobledger_job_duration_seconds",
        "Time to complete of jobs that succeeded, partly succeeded or failed: finished_at"
        " minus the submission (or the provider's start of an external job).",
        labels=GROUP,
    )
    per_group: dict[tuple, dict[str, float]] = {}
    for provider, service, kind, name, n in health["totals"]:
        per_group.setdefault((provider, service, kind), {})[name] = n
    for group, values in sorted(per_group.items()):
        for name, n in values.items():
            if name.startswith("outcome:"):
                finished.add_metric([*group, name.split(":", 1)[1]], n)
        count = values.get("duration:count", 0.0)
        if count:
            buckets = [(str(b), values.get(f"le:{b}", 0.0)) for b in PROM_BUCKETS]
            durations.add_metric(
                list(group), [*buckets, ("+Inf", count)], values.get("duration:sum", 0.0)
            )
    slow = GaugeMetricFamily(
        "jobledger_jobs_slow",
        "Jobs running longer than their kind's p95 without a final word, as of the last"
        " reconcile pass.",
        labels=GROUP,
    )
    anomaly = GaugeMetricFamily(
        "jobledger_provider_anomaly",
        "1 while a kind's failure rate is anomalous (the dashboard's banner), else 0.",
        labels=GROUP,
    )
    for row in health["snapshot"]:
        labels = [row["provider"], row["service"], row["kind"]]
        slow.add_metric(labels, row["slow_jobs"] or 0)
        anomaly.add_metric(labels, row["anomaly"] or 0)
    generated = GaugeMetricFamily(
        "jobledger_health_generated_timestamp_seconds",
        "When the reconcile pass last worked out provider health (Unix time; 0: never).",
    )
    stamp = health["generated_at"]
    when = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() if stamp else 0.0
    generated.add_metric([], when)
    yield from (finished, durations, slow, anomaly, generated)


@bp.before_request
def _ops_only():
    # Here rather than in the view: Flask answers OPTIONS itself, without calling the view.
    require_ops()


@bp.get("/metrics")
def metrics():
    """Answer Prometheus' scrape."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        process = CollectorRegistry()
        multiprocess.MultiProcessCollector(process)
    else:
        process = REGISTRY
    ledger = CollectorRegistry(auto_describe=False)
    now = datetime.now(UTC)
    snapshot = get_ledger().dashboard.metrics_snapshot()
    health = get_ledger().provider_health
    snapshot["health"] = {
        "totals": health.totals(),
        "snapshot": health.snapshot(),
        "generated_at": health.generated_at(),
    }
    snapshot["deliveries"] = get_ledger().deliveries.snapshot()
    ledger.register(LedgerCollector(snapshot, now))
    body = generate_latest(process) + generate_latest(ledger)
    return Response(body, mimetype=CONTENT_TYPE_LATEST)
