"""Provider health, judged in the background: failure-rate anomalies, durations, slow jobs.

Run by every `reconcile` pass (every 15 s), never on the notice path. One pass:

1. counts the jobs settled more than COUNT_LAG ago into the hourly tallies, once each
   (store/provider_health.py);
2. per provider, service and kind, puts the window (the last RECEIVER_ANOMALY_WINDOW_SECONDS,
   read straight from the jobs settled in it) beside the baseline (the
   RECEIVER_ANOMALY_BASELINE_SECONDS before the window, from the tallies of its whole hours
   and the jobs settled since the last of them), and reads the duration percentiles of both;
3. judges each window with `anomalous` and publishes the snapshot, queueing one alert when
   an anomaly starts and one when it ends.

**The rule.** A window is anomalous when it holds at least RECEIVER_ANOMALY_MIN_FAILURES
failures (`failed`, `partial`, `submit_failed`, `timed_out`) and the lower end of the 95 %
Wilson score interval of its failure rate is above max(2 × baseline, baseline + 5 points).
The Wilson interval keeps its coverage at small counts, where the plain rate p ± 1.96·√(p(1-p)/n)
does not: 2 failures of 3 is 67 %, but could well be a 21 % rate; the lower bound only
clears the threshold when the evidence does. The threshold asks for a real effect (double,
and at least 5 points more), so a large window cannot fire on a rise from 2.0 % to 2.4 %.
docs/operations.md has worked numbers.
"""

import logging
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from store import Ledger
from store.ids import iso
from store.provider_health import Tally, cutoffs_of, hour_of, quantiles

from ..config import SETTINGS

log = logging.getLogger("jobledger.health")
DEFAULTS = {name: default for name, (_, default) in SETTINGS.items()}

Z = 1.96  # the 95 % Wilson interval's lower end (two-sided)
# Settled jobs are counted into the tallies once they are this old: a transaction that
# settles a job commits well within it, so the watermark never passes an uncommitted one.
COUNT_LAG = timedelta(seconds=60)
TALLY_DAYS = 2  # hourly tallies are kept this long past the baseline (the charts need 24 h)
LABELS = {
    ("aliyun", "vod"): "Alibaba VOD",
    ("aliyun", "mps"): "Alibaba MPS",
    ("aliyun", "live"): "Alibaba Live",
    ("tencent", "vod"): "Tencent VOD",
}


def wilson_lower(failed: int, total: int, z: float = Z) -> float:
    """Return the lower end of the Wilson score interval of `failed` out of `total`."""
    if total <= 0:
        return 0.0
    p = failed / total
    z2 = z * z
    centre = p + z2 / (2 * total)
    margin = z * math.sqrt(p * (1 - p) / total + z2 / (4 * total * total))
    return max(0.0, (centre - margin) / (1 + z2 / total))


def threshold(baseline_rate: float) -> float:
    """Return the failure rate a window must be above, with confidence: max(2p, p + 5 pts)."""
    return max(2 * baseline_rate, baseline_rate + 0.05)


def anomalous(
    window_failed: int,
    window_finished: int,
    baseline_failed: int,
    baseline_finished: int,
    min_failures: int,
) -> bool:
    """Judge a window against its baseline (see the module's docstring).

    A kind with no baseline yet is judged against 0 %: its first window fires only on at
    least `min_failures` failures making up a rate whose lower bound is above 5 %.
    """
    if window_failed < min_failures or window_finished <= 0:
        return False
    base = baseline_failed / baseline_finished if baseline_finished else 0.0
    return wilson_lower(window_failed, window_finished) > threshold(base)


def rate(failed: int, finished: int) -> float | None:
    """Return a failure rate, or None when nothing finished."""
    return round(failed / finished, 4) if finished else None


def percent(value: float | None) -> str:
    """Say a rate as people do: `45 %`, `2 %`, `0.4 %`."""
    if value is None:
        return "—"
    pct = value * 100
    shown = f"{pct:.0f}" if pct >= 10 else f"{pct:.1f}".removesuffix(".0")
    return f"{shown} %"


def span(seconds: float) -> str:
    """Say a window's length: `15 min`, `2 h`, `45 s`."""
    if seconds % 3600 == 0:
        return f"{seconds // 3600:.0f} h"
    if seconds % 60 == 0:
        return f"{seconds // 60:.0f} min"
    return f"{seconds:.0f} s"


def label(provider: str, service: str) -> str:
    """Name a provider's service unmistakably: `Alibaba VOD`, `Tencent VOD`."""
    return LABELS.get((provider, service), f"{provider} {service}")


def gather(ledger: Ledger, now: datetime, window_s: int, baseline_s: int, mark: str) -> list:
    """Return per group (window, baseline, durations) tallies as of `now`.

    The baseline's whole hours come from the hourly tallies (its oldest hour is taken whole,
    so it may reach up to an hour further back); everything from the start of the hour the
    window begins in (or of the hour of the counting watermark `mark`, if earlier) is read
    from the jobs themselves.
    """
    window_start = now - timedelta(seconds=window_s)
    base_start = window_start - timedelta(seconds=baseline_s)
    cut = hour_of(min(iso(window_start), mark)) + ":00:00.000Z"
    groups: dict[tuple, tuple[Tally, Tally, Tally]] = {}

    def of(key: tuple) -> tuple[Tally, Tally, Tally]:
        return groups.setdefault(key, (Tally(), Tally(), Tally()))

    for key, hours in ledger.provider_health.hours(hour_of(iso(base_start)), hour_of(cut)).items():
        for tally in hours.values():
            of(key)[1].add(tally)
            of(key)[2].add(tally)
    window_from = iso(window_start)
    for provider, service, kind, state, duration, settled in ledger.provider_health.settled_since(
        cut, iso(now)
    ):
        window, baseline, durations = of((provider, service, kind))
        (window if settled >= window_from else baseline).add_job(state, duration)
        durations.add_job(state, duration)
    return sorted(groups.items())


def spans(config: Mapping[str, Any]) -> tuple[int, int, int]:
    """Return (window seconds, baseline seconds, minimum failures) from the settings."""
    return (
        config.get("ANOMALY_WINDOW_SECONDS") or DEFAULTS["ANOMALY_WINDOW_SECONDS"],
        config.get("ANOMALY_BASELINE_SECONDS") or DEFAULTS["ANOMALY_BASELINE_SECONDS"],
        config.get("ANOMALY_MIN_FAILURES") or DEFAULTS["ANOMALY_MIN_FAILURES"],
    )


def judge(config: Mapping[str, Any], ledger: Ledger, now: datetime, mark: str) -> list[dict]:
    """Return the snapshot rows of every group that settled a job in the baseline or window."""
    window_s, baseline_s, min_failures = spans(config)
    rows = []
    for (provider, service, kind), (window, baseline, durations) in gather(
        ledger, now, window_s, baseline_s, mark
    ):
        p50, p95, p99 = quantiles(durations.durations, (0.5, 0.95, 0.99))
        verdict = anomalous(
            window.failed,
            window.finished,
            baseline.failed,
            baseline.finished,
            min_failures,
        )
        row = {
            "provider": provider,
            "service": service,
            "kind": kind,
            "window_finished": window.finished,
            "window_failed": window.failed,
            "baseline_finished": baseline.finished,
            "baseline_failed": baseline.failed,
            "p50": p50,
            "p95": p95,
            "p99": p99,
            "duration_count": sum(durations.durations.values()),
            "anomalous": verdict,
        }
        row["anomaly_reason"] = reason(row, window_s) if verdict else None
        rows.append(row)
    return rows


def reason(row: Mapping[str, Any], window_s: int) -> str:
    """Say why a group is anomalous: `Alibaba VOD transcode failing 45 % in the last
    15 min (baseline 2 %): 9 of 20 jobs failed`."""
    window = rate(row["window_failed"], row["window_finished"])
    baseline = rate(row["baseline_failed"], row["baseline_finished"])
    return (
        f"{label(row['provider'], row['service'])} {row['kind']} failing {percent(window)}"
        f" in the last {span(window_s)}"
        f" (baseline {percent(baseline) if baseline is not None else 'none yet'}):"
        f" {row['window_failed']} of {row['window_finished']} jobs failed"
    )


def alert_words(config: Mapping[str, Any]):
    """Return the function that words an anomaly's start or end alert (for `publish`)."""
    window_s, baseline_s, _ = spans(config)

    def words(row: dict, kind: str) -> tuple[str, dict]:
        window = rate(row["window_failed"], row["window_finished"])
        baseline = rate(row["baseline_failed"], row["baseline_finished"])
        name = f"{label(row['provider'], row['service'])} {row['kind']}"
        base = percent(baseline) if baseline is not None else "none yet"
        if kind.endswith("started"):
            summary = f"{name} failing {percent(window)} in the last {span(window_s)}"
        else:
            now_rate = percent(window or 0.0)
            summary = f"{name} back to normal: {now_rate} in the last {span(window_s)}"
        detail = {
            "provider": row["provider"],
            "service": row["service"],
            "kind": row["kind"],
            "window": _counts(row, "window"),
            "baseline": _counts(row, "baseline"),
            "window_seconds": window_s,
            "baseline_seconds": baseline_s,
            "anomaly_since": row["anomaly_since"],
            "path": "/#provider-health",
        }
        return f"{summary} (baseline {base})", detail

    return words


def _counts(row: Mapping[str, Any], part: str) -> dict:
    finished, failed = row[f"{part}_finished"], row[f"{part}_failed"]
    return {"finished": finished, "failed": failed, "failure_rate": rate(failed, finished)}


def health_pass(config: Mapping[str, Any], ledger: Ledger, now: datetime | None = None) -> dict:
    """Count, judge and publish provider health as of `now`; return what it did."""
    now = now or datetime.now(UTC)
    window_s, baseline_s, _ = spans(config)
    history = timedelta(seconds=window_s + baseline_s)
    mark = ledger.provider_health.count_settled(
        through=now - COUNT_LAG, start=now - history - timedelta(hours=1)
    )
    rows = judge(config, ledger, now, mark)
    slow = ledger.provider_health.count_slow(cutoffs_of(rows, now))
    for row in rows:
        row["slow_jobs"] = slow.get((row["provider"], row["service"], row["kind"]), 0)
    clear_after = timedelta(seconds=max(window_s / 3, 1))
    queued = ledger.provider_health.publish(rows, now, clear_after, alert_words(config))
    ledger.provider_health.prune(now - history - timedelta(days=TALLY_DAYS))
    for kind in queued:
        log.warning("health.%s", kind.rsplit(".", 1)[-1], extra={"alert": kind})
    return {
        "groups": len(rows),
        "anomalies": sum(1 for r in rows if r["anomalous"]),
        "anomaly_alerts": len(queued),
    }
