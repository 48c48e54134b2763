"""Alert delivery and the deadline sweep, run by the `reconcile` worker (never in a request).

Each alert is delivered at least once to every configured sink: a JSON POST to each
RECEIVER_ALERT_WEBHOOK_URLS entry, and an AWS SNS publish to RECEIVER_ALERT_SNS_TOPIC_ARN.
A delivered alert is never sent to that sink again, and with several `reconcile`
processes each alert is claimed by one of them before it is sent. A failing sink is
retried with growing backoff (30 s doubling to 10 min) for a day, so a sink down for an
hour gets everything when it is back; a sink is never disabled. Alerts are held until
the oldest waiting one is RECEIVER_ALERT_GROUP_SECONDS old and then go out together: one
alert alone, several as one summary. Alerts are an outbox of their own, apart from
endpoint messages; the two share the transport (receiver/background/transport.py).
"""

import json
import logging
import random
from datetime import UTC, datetime, timedelta

from store import Ledger

from . import transport

log = logging.getLogger("jobledger.alerts")
MAX_AGE = timedelta(days=1)
MAX_BACKOFF_S = 600
WEBHOOK_TIMEOUT_S = 5
# How long a claim on alerts lasts: well past a send's own timeouts. A sender that dies
# mid-send leaves its alerts to be sent again by another after this.
CLAIM = timedelta(minutes=5)


class SinkError(Exception):
    """A sink did not take the message."""


def sweep_deadlines(config, ledger: Ledger, now: datetime | None = None) -> list[str]:
    """Mark open jobs past their kind's deadline `timed_out`; return their ids."""
    now = now or datetime.now(UTC)
    timed_out = [
        job_id
        for job_id, seconds in ledger.polls.overdue(config["DEADLINES"], now)
        if ledger.submissions.time_out(job_id, seconds)
    ]
    if timed_out:
        log.warning("alerts.timed-out", extra={"job_ids": timed_out})
    return timed_out


def sinks(config) -> list[tuple[str, str]]:
    """Return the configured sinks as (kind, target)."""
    out = [("webhook", url) for url in config.get("ALERT_WEBHOOK_URLS") or []]
    if config.get("ALERT_SNS_TOPIC_ARN"):
        out.append(("sns", config["ALERT_SNS_TOPIC_ARN"]))
    return out


def warn_if_no_sink(config, ledger: Ledger) -> int:
    """Log a warning when alerts are recorded but no sink is set; return alerts waiting."""
    waiting = ledger.alerts.waiting()
    if waiting and not sinks(config):
        log.warning(
            "alerts.no-sink",
            extra={
                "alerts_waiting": waiting,
                "hint": "set RECEIVER_ALERT_WEBHOOK_URLS or RECEIVER_ALERT_SNS_TOPIC_ARN",
            },
        )
    return waiting


def deliver_alerts(config, ledger: Ledger, now: datetime | None = None) -> dict[str, int]:
    """Send every due alert to every sink; return how many alerts each sink took."""
    now = now or datetime.now(UTC)
    hold = timedelta(seconds=config.get("ALERT_GROUP_SECONDS", 60))
    sent = {}
    for kind, target in sinks(config):
        sink = f"{kind}:{target}"
        due = ledger.alerts.due(sink, now, MAX_AGE)
        if not due or now - _parse(min(a["created_at"] for a in due)) < hold:
            continue
        # Another reconcile process may be sending the same alerts: send only what this
        # one claimed, so each sink gets each alert once.
        claimed = ledger.alerts.claim([a["id"] for a in due], sink, now, now + CLAIM)
        due = [a for a in due if a["id"] in claimed]
        if not due:
            continue
        message = _message(config, due)
        ids = [a["id"] for a in due]
        try:
            (_post if kind == "webhook" else _publish)(target, message)
        except SinkError as e:
            attempts = max(a["attempts"] for a in due) + 1
            delay = min(30 * 2 ** (attempts - 1), MAX_BACKOFF_S) * random.uniform(1.0, 1.1)
            ledger.alerts.record_delivery(
                ids, sink, now, error=str(e)[:500], retry_at=now + timedelta(seconds=delay)
            )
            log.warning(
                "alerts.sink-failed",
                extra={"sink": kind, "alerts": len(ids), "error": str(e)[:200]},
            )
            continue
        ledger.alerts.record_delivery(ids, sink, now)
        sent[sink] = len(ids)
        log.info("alerts.sent", extra={"sink": kind, "alerts": len(ids)})
    return sent


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _one(config, alert: dict) -> dict:
    base = config.get("PUBLIC_URL", "").rstrip("/")
    if alert["job_id"] is None:  # about a provider or an endpoint, not one job
        return {
            "alert_id": alert["id"],
            "type": alert["state"],
            "summary": alert["summary"],
            "created_at": alert["created_at"],
            "url": base + (alert["detail"] or {}).get("path", "/"),
            "detail": alert["detail"],
        }
    return {
        "alert_id": alert["id"],
        "job_id": alert["job_id"],
        "state": alert["state"],
        "provider": alert["provider"],
        "service": alert["service"],
        "kind": alert["kind"],
        "provider_job_id": alert["provider_job_id"],
        "media_id": alert["media_id"],
        "error_code": alert["error_code"],
        "error_message": alert["error_message"],
        "created_at": alert["created_at"],
        "url": f"{base}/jobs/{alert['job_id']}",
    }


def _message(config, due: list[dict]) -> dict:
    """One alert as itself; several as one summary that lists them all."""
    if len(due) == 1:
        one = _one(config, due[0])
        return one if due[0]["job_id"] is None else {"type": "job.alert", **one}
    by_state: dict[str, int] = {}
    for alert in due:
        if alert["job_id"] is not None:
            by_state[alert["state"]] = by_state.get(alert["state"], 0) + 1
    base = config.get("PUBLIC_URL", "").rstrip("/")
    states = "&".join(f"state={s}" for s in sorted(by_state))
    return {
        "type": "job.alert.summary",
        "count": len(due),
        "by_state": by_state,
        "others": [a["summary"] for a in due if a["job_id"] is None],
        "url": f"{base}/jobs?{states}" if by_state else f"{base}/",
        "alerts": [_one(config, a) for a in due],
    }


def _subject(message: dict) -> str:
    if "summary" in message:
        return f"jobledger: {message['summary']}"
    if message["type"] == "job.alert":
        return f"jobledger: {message['kind']} job {message['state']} ({message['provider']})"
    parts = [f"{n} {s}" for s, n in sorted(message["by_state"].items())] + message["others"]
    what = "alerts" if message["others"] else "jobs need attention"
    return f"jobledger: {message['count']} {what} ({', '.join(parts)})"


def _post(url: str, message: dict) -> None:
    body = json.dumps(message, ensure_ascii=False).encode()
    # The operator's own setting names the sink, so a private address is allowed.
    answer = transport.post(
        url,
        body,
        {"User-Agent": "jobledger-alerts"},
        timeout=WEBHOOK_TIMEOUT_S,
        allow_private=True,
    )
    if answer.status_code is not None and not answer.ok:
        raise SinkError(f"{answer.error} from the webhook")
    if not answer.ok:
        raise SinkError(f"webhook unreachable: {answer.error}")


def _publish(topic_arn: str, message: dict) -> None:
    answer = transport.publish(
        topic_arn,
        json.dumps(message, ensure_ascii=False),
        timeout=WEBHOOK_TIMEOUT_S,
        subject=_subject(message),
    )
    if not answer.ok:
        raise SinkError(answer.error or "SNS publish failed")
