"""The `reconcile` worker: ask providers about jobs without a final word; record the answers.

Where a provider has no callback (Live edge transcoding) or a callback was lost, the
answer of its status API is applied as an Event with source `poll`, through the same
state machine as a callback, so a final state is never moved back.

Pacing, so that polls cost little and never hammer an API:
* a job is first asked FIRST_POLL_S after it was submitted (callbacks usually come first),
  then after 1, 2, 4... minutes, capped at an hour (15 minutes for running Live streams);
* at most MAX_POLLS_PER_PASS jobs per pass, most overdue first;
* calls to each API family (client) are spaced to stay under its `poll_qps`
  (submitter/operations.py); a throttled family is left alone for the rest of the pass and
  its jobs are asked again THROTTLE_PAUSE_S later.

Which status API answers for which job, and how its answer is read: status_apis.py.
"""

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from store import JobNotFound, Ledger, open_ledger
from store.errors import classify
from store.ids import iso
from submitter.calls import Budget, CallFailed, NotConfigured
from submitter.operations import CLIENTS, open_client

from ..inbound.batch import Backoff, RunResult, StopSignal
from ..providers import InvalidPayload
from . import alerts as alerting
from .health import health_pass
from .status_apis import READ_BUDGET_S, plan_poll

log = logging.getLogger("jobledger.reconcile")

FIRST_POLL_S = 60
BASE_DELAY_S = 60
MAX_DELAY_S = {"edge_transcode": 900}
DEFAULT_MAX_DELAY_S = 3600
MAX_POLLS_PER_PASS = 200
PASS_INTERVAL_S = 15.0
THROTTLE_PAUSE_S = 30
CLAIM_S = 600  # a claimed job not polled by then (its process died) is due again
LEDGER_RETRY_CAP_S = 30.0  # longest wait between passes while the ledger is unavailable
QPS = {key: client.poll_qps for key, client in CLIENTS.items()}


class Pacer:
    """Space the calls of each API family at least 1/QPS seconds apart.

    With `shared` (Ledger.take_call_slot), the spacing holds across every process that
    shares the ledger: each call reserves its slot there, by the wall clock.
    """

    def __init__(
        self,
        rates: Mapping[str, float] = QPS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        shared: Callable[[str, float, float], float] | None = None,
    ):
        self._rates, self._clock, self._sleep, self._shared = rates, clock, sleep, shared
        self._next: dict[str, float] = {}

    def wait(self, family: str) -> None:
        """Return when a call of `family` may be made, waiting if the last one was too recent."""
        if self._shared is not None:
            slot = self._shared(family, 1 / self._rates.get(family, 1.0), time.time())
            if slot > time.time():
                self._sleep(slot - time.time())
            return
        now = self._clock()
        ready = self._next.get(family, now)
        if ready > now:
            self._sleep(ready - now)
        self._next[family] = max(now, ready) + 1 / self._rates.get(family, 1.0)


def next_poll_delay(kind: str, poll_count: int) -> int:
    """Return seconds until the next poll of a job already asked `poll_count` times."""
    cap = MAX_DELAY_S.get(kind, DEFAULT_MAX_DELAY_S)
    return min(cap, BASE_DELAY_S * 2 ** min(poll_count, 20))


def reconcile_pass(
    app_config: Mapping[str, Any],
    ledger: Ledger,
    now: datetime | None = None,
    *,
    stop: threading.Event | None = None,
    limit: int = MAX_POLLS_PER_PASS,
    pacer: Pacer | None = None,
) -> dict:
    """Run one pass: poll the jobs that are due; return counts of what happened.

    After the polls (which may settle a job just before its deadline): jobs past their
    deadline become `timed_out`, due alerts go to their sinks, and, with
    RECEIVER_RETENTION_DAYS set, old raw payloads are pruned.

    :param now: the pass's time (aware); the default is the clock
    :param stop: set by SIGTERM/SIGINT; the pass ends after the job in hand
    """
    now = now or datetime.now(UTC)
    pacer = pacer or Pacer()
    stats: Counter = Counter()
    # Claimed until the pass could have reached them: another reconcile skips them.
    lease = now + timedelta(seconds=CLAIM_S)
    due = ledger.polls.claim_due(
        iso(now), iso(now - timedelta(seconds=FIRST_POLL_S)), limit, iso(lease)
    )
    stats["due"] = len(due)
    clients: dict[str, Any] = {}
    throttled: set[str] = set()
    polled = 0
    try:
        for job in due:
            if stop is not None and stop.is_set():
                break
            outcome, delay, counted = _poll_job(app_config, ledger, job, clients, throttled, pacer)
            stats[outcome] += 1
            ledger.polls.schedule(job["id"], iso(now + timedelta(seconds=delay)), counted=counted)
            polled += 1
    finally:
        for client in clients.values():
            if client is not None:
                client.close()
    for job in due[polled:]:  # stopped: give back the claims, as they were, to the others
        ledger.polls.schedule(job["id"], job["next_poll_at"], counted=False)
    stats["timed_out"] += len(alerting.sweep_deadlines(app_config, ledger, now))
    stats["anomalies"] += _judge_health(app_config, ledger, now)
    # Alerts queued during this pass are newer than its start: deliver as of now.
    delivered = alerting.deliver_alerts(app_config, ledger, max(now, datetime.now(UTC)))
    stats["alerts_sent"] += sum(delivered.values())
    if app_config.get("RETENTION_DAYS"):
        cutoff = now - timedelta(days=app_config["RETENTION_DAYS"])
        stats["payloads_pruned"] += ledger.retention.prune(cutoff)
    due_count = stats.pop("due")
    return {"due": due_count, **{k: n for k, n in sorted(stats.items()) if n}}


def _judge_health(app_config: Mapping[str, Any], ledger: Ledger, now: datetime) -> int:
    """Run the provider health pass; return how many anomalies there are now.

    A failure here is logged and leaves polls, deadlines and alerts to go on: the next
    pass tries again.
    """
    try:
        return health_pass(app_config, ledger, max(now, datetime.now(UTC)))["anomalies"]
    except Exception:  # noqa: BLE001 - health must never stop the polls and alerts
        log.exception("health.pass-failed")
        return 0


def poll_now(app_config: Mapping[str, Any], ledger: Ledger, job_id: str) -> str:
    """Ask the provider about one job at once (the page's "re-poll now"); return the outcome.

    :returns: `changed`, `unchanged`, `no_status_api`, `not_configured`, `throttled` or
      `failed`, as a pass counts them; the job's next poll is scheduled as after any poll
    :raises JobNotFound: no such job
    """
    job = ledger.polls.job(job_id)
    if job is None:
        raise JobNotFound(job_id)
    clients: dict[str, Any] = {}
    try:
        pacer = Pacer(shared=ledger.polls.take_call_slot)
        outcome, delay, counted = _poll_job(app_config, ledger, job, clients, set(), pacer)
    finally:
        for client in clients.values():
            if client is not None:
                client.close()
    at = datetime.now(UTC) + timedelta(seconds=delay)
    ledger.polls.schedule(job_id, iso(at), counted=counted)
    return outcome


def _poll_job(config, ledger, job, clients, throttled, pacer) -> tuple[str, int, bool]:
    """Ask about one job and record the answer; return (outcome, seconds to next poll, counted)."""
    delay = next_poll_delay(job["kind"], job["poll_count"])
    poll = plan_poll(job)
    if poll is None:
        return "no_status_api", MAX_DELAY_S.get(job["kind"], DEFAULT_MAX_DELAY_S), True
    if poll.client in throttled:
        return "deferred", THROTTLE_PAUSE_S, False
    if poll.client not in clients:
        try:
            clients[poll.client] = open_client(poll.client, config)
        except NotConfigured as e:
            log.warning("reconcile.not-configured", extra={"family": poll.client, "error": str(e)})
            clients[poll.client] = None
    client = clients[poll.client]
    if client is None:
        return "not_configured", DEFAULT_MAX_DELAY_S, False
    pacer.wait(poll.client)
    try:
        answer = poll.ask(client, Budget(READ_BUDGET_S))
    except CallFailed as e:
        extra = {"job_id": job["id"], "api": poll.api.name, "code": e.code, "status": e.status}
        if e.throttled:
            throttled.add(poll.client)
            log.warning("reconcile.throttled", extra=extra)
            return "throttled", THROTTLE_PAUSE_S, False
        log.warning("reconcile.poll-failed", extra={**extra, "error": e.message[:300]})
        return "failed", delay, True
    try:
        event = poll.read(answer) if answer else None
    except InvalidPayload as e:  # an answer the ledger cannot store (a NUL in a field)
        log.warning("reconcile.answer-refused", extra={"job_id": job["id"], "error": str(e)})
        return "failed", delay, True
    if (
        event is None
        or event.state is None
        or (event.dedup_key is not None and ledger.polls.answer_seen(event.dedup_key))
    ):
        return "unchanged", delay, True
    result = ledger.notices.record(event, source="poll", verified=True, auth="api")
    if not result.changed:
        return "unchanged", delay, True
    log.info(
        "reconcile.applied",
        extra={
            "job_id": result.job_id,
            "api": poll.api.name,
            "state": result.state,
            "event_id": result.event_id,
        },
    )
    return "changed", delay, True


POLLED = ("changed", "unchanged", "failed", "throttled")


def summary(config: Mapping[str, Any], ledger: Ledger, stats: dict) -> dict:
    """Return a pass's counts with what an operator asks first, each always present:
    jobs polled, timed out, alerts sent and still waiting, and how many sinks there are.
    """
    return {
        **stats,
        "polled": sum(stats.get(k, 0) for k in POLLED),
        "timed_out": stats.get("timed_out", 0),
        "alerts_sent": stats.get("alerts_sent", 0),
        "alerts_waiting": ledger.alerts.waiting(),
        "sinks": len(alerting.sinks(config)),
    }


def _span(seconds: int) -> str:
    if not seconds:
        return "never"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def plan(config: Mapping[str, Any]) -> dict:
    """Say what a looping reconcile will do, from the settings (no URL, no secret)."""
    kinds = Counter(kind for kind, _ in alerting.sinks(config))
    deadlines = dict(config["DEADLINES"])
    default = deadlines.pop("default", 0)
    others = ", ".join(
        f"{kind} {_span(s)}" for kind, s in sorted(deadlines.items()) if s != default
    )
    sinks = " and ".join(f"{n} {kind}{'s' if n > 1 else ''}" for kind, n in kinds.items())
    retention = config.get("RETENTION_DAYS")
    words = [
        f"polls due jobs every {PASS_INTERVAL_S:g} s (at most {MAX_POLLS_PER_PASS} a pass)",
        f"times out a job without a final word after {_span(default)}"
        + (f" ({others})" if others else ""),
        f"sends alerts to {sinks}, grouped over {config['ALERT_GROUP_SECONDS']} s"
        if kinds
        else "sends no alerts: no sink is set (RECEIVER_ALERT_WEBHOOK_URLS,"
        " RECEIVER_ALERT_SNS_TOPIC_ARN)",
        f"prunes raw payloads older than {retention} days" if retention else "keeps every payload",
    ]
    return {
        "plan": "; ".join(words),
        "every_s": PASS_INTERVAL_S,
        "alert_sinks": dict(kinds),
        "deadlines_s": dict(config["DEADLINES"]),
        "retention_days": retention,
    }


def run(config: Mapping[str, Any], *, once: bool) -> RunResult:
    """Run passes until SIGTERM/SIGINT (finishing the job in hand), or one pass with `once`.

    While the ledger is unavailable (busy, read-only, its server down or stalled), the
    pass is tried again later, with backoff, instead of ending the process; with `once`,
    the command ends with exit 1 and the reason.

    :returns: with `once`, the pass's counts as the one summary line
    :raises LedgerUnavailable: with `once`, the ledger could not be used
    """
    stop, lines = threading.Event(), []
    recover = Backoff(1.0, LEDGER_RETRY_CAP_S)
    warned = False
    with StopSignal(stop), open_ledger(config["DATABASE"], config["DURABILITY"]) as led:
        # Calls are spaced through the ledger: the pace holds across passes, and across
        # every reconcile process sharing it.
        pacer = Pacer(shared=led.polls.take_call_slot)
        if not once:
            log.info("reconcile.started", extra=plan(config))
        while True:
            try:
                if not warned:
                    alerting.warn_if_no_sink(config, led)
                    warned = True
                stats = reconcile_pass(config, led, stop=stop, pacer=pacer)
                if once:
                    lines.append(summary(config, led, stats))
                    break
            except Exception as e:
                if stop.wait(_ledger_retry(e, recover, once)):
                    break
                continue
            recover.reset()
            log.info("reconcile.pass", extra=stats)
            if stop.wait(0 if stats["due"] >= MAX_POLLS_PER_PASS else PASS_INTERVAL_S):
                break
    return RunResult(lines)


def _ledger_retry(error: Exception, recover: Backoff, once: bool) -> float:
    """Return how long to wait before the next pass after `error`; raise what cannot wait."""
    unavailable = classify(error)
    if unavailable is None:
        raise error
    if once:
        if unavailable is error:
            raise error
        raise unavailable from error
    delay = recover.next()
    log.warning(
        "reconcile.ledger-unavailable",
        extra={"error": str(unavailable), "retry_in": round(delay, 2)},
    )
    return delay
