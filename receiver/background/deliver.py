"""The `deliver` process: send every job's messages to the endpoints that want them,
signed, in order per job and endpoint, at least once.

The main thread fans new messages out to endpoints and hands each endpoint that has due
work to a sender thread; an endpoint is worked on by one sender of this process at a
time, and a sender claims at most BATCH of its deliveries (a lease in the ledger), at most
one per job, sends them side by side and records their attempts in one transaction. So a
slow or dead endpoint holds only its own sender, and memory stays bounded: at most
MAX_SENDERS batches of BATCH messages are held at once. Several `deliver` processes share
the work through the claims (store/deliveries.py).

Each attempt is recorded as soon as its batch ends. A failed attempt is retried after the next
wait of RECEIVER_DELIVERY_RETRY_SECONDS (plus up to 20 % jitter, never less); a
`Retry-After` on 429 or 503 is honoured between that wait and twice it. After the last
wait the delivery is `failed`. `410 Gone` disables the endpoint at once; an endpoint that
failed every attempt for RECEIVER_DELIVERY_DISABLE_AFTER_SECONDS is disabled, with an
alert. On SIGTERM, senders finish the attempt in hand and give back the rest of their
claims: nothing is lost, and what was in flight is sent again by whoever claims it next.
"""

import logging
import queue
import random
import threading
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from store import Ledger, LedgerUnavailable, open_ledger
from store.deliveries import message_body, webhook_id
from store.endpoints import shown_url
from store.errors import classify

from ..inbound.batch import RunResult, StopSignal
from . import signing, transport

log = logging.getLogger("jobledger.deliver")
BATCH = 16  # deliveries one sender claims, and sends side by side, at a time
MAX_SENDERS = 32  # endpoints this process sends to at once
FANOUT_LIMIT = 500  # messages fanned out per transaction
IDLE_S = 0.1  # the main loop's wait when nothing happened
LEASE_MARGIN_S = 10
RETRY_PAUSE_S = 2  # after the ledger could not be reached
# The ledger's bookkeeping of deliveries need not reach the disk before going on: a record
# lost in a crash means a message sent again (store/deliveries.py).
DURABILITY = "normal"


@dataclass(frozen=True)
class Policy:
    """The delivery settings, read once."""

    waits: tuple[int, ...]
    timeout: int
    disable_after: int
    allow_private: bool
    source: str

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "Policy":
        """Read the RECEIVER_DELIVERY_* settings and the public URL (the message source)."""
        return cls(
            waits=tuple(config["DELIVERY_RETRY_SECONDS"]),
            timeout=config["DELIVERY_TIMEOUT_SECONDS"],
            disable_after=config["DELIVERY_DISABLE_AFTER_SECONDS"],
            allow_private=config["DELIVERY_ALLOW_PRIVATE"],
            source=config["PUBLIC_URL"],
        )

    @property
    def lease(self) -> timedelta:
        """How long a claim lasts: a batch's attempts (side by side) at their longest, and a
        margin for recording them."""
        return timedelta(seconds=self.timeout + LEASE_MARGIN_S)


def decide(policy: Policy, series: int, answer: transport.Answer, now: datetime) -> dict:
    """Work out what follows an attempt: the delivery's status, its next attempt, and
    whether the endpoint is to be disabled.

    :param series: attempts made before this one since the delivery was (re)queued
    """
    outcome: dict[str, Any] = {
        "status": "delivered",
        "next_attempt_at": None,
        "disable": None,
        "disable_if_failing_since": now - timedelta(seconds=policy.disable_after),
    }
    if answer.ok:
        return outcome
    if answer.status_code == 410:
        outcome["disable"] = "answered 410 Gone"
    if series >= len(policy.waits):
        outcome["status"] = "failed"
        return outcome
    scheduled = policy.waits[series]
    wait = scheduled * random.uniform(1.0, 1.2)
    if answer.status_code in (429, 503) and answer.retry_after is not None:
        wait = max(wait, min(answer.retry_after, 2 * scheduled))
    outcome.update(status="pending", next_attempt_at=now + timedelta(seconds=wait))
    return outcome


def send(policy: Policy, target: dict, message: dict) -> transport.Answer:
    """Make one attempt to send a message to an endpoint (HTTP, SNS or SQS)."""
    body = message_body(message, policy.source)
    mid = webhook_id(message["job_id"], message["sequence"])
    headers = signing.headers(mid, body, target["keys"], datetime.now(UTC))
    url = target["url"]
    if transport.kind_of(url) == "http":
        return transport.post(
            url,
            body.encode(),
            headers,
            timeout=policy.timeout,
            allow_private=policy.allow_private,
        )
    return transport.publish(
        url,
        body,
        timeout=policy.timeout,
        attributes=headers,
        group_id=message["job_id"],
        dedup_id=mid,
    )


class Senders:
    """The sender threads of one process: each takes an endpoint, claims a batch of its
    due deliveries, sends them in order and records each attempt."""

    def __init__(self, config: Mapping[str, Any], stop: threading.Event):
        self.config, self.stop = config, stop
        self.policy = Policy.from_config(config)
        self.busy: set[str] = set()
        self.work: queue.Queue[str] = queue.Queue()
        self.woke = threading.Event()  # a batch ended: look for more work at once
        self.stats: Counter = Counter(attempts=0, delivered=0, failed_attempts=0, failed=0)
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0  # sender threads waiting for an endpoint
        self._waiting = 0  # endpoints handed over but not yet taken by a sender

    def dispatch(self, endpoint_id: str) -> None:
        """Hand an endpoint to a sender, unless one of this process has it already."""
        with self._lock:
            if endpoint_id in self.busy:
                return
            self.busy.add(endpoint_id)
            self._waiting += 1
            if self._waiting > self._idle and len(self._threads) < MAX_SENDERS:
                thread = threading.Thread(target=self._run, name="sender", daemon=True)
                self._threads.append(thread)
                self._idle += 1
                thread.start()
            self.work.put(endpoint_id)

    def idle(self) -> bool:
        """Tell whether no endpoint is being worked on."""
        with self._lock:
            return not self.busy

    def join(self) -> None:
        """Wait for every sender to finish the attempt in hand (after `stop` is set)."""
        for thread in self._threads:
            thread.join()

    def _run(self) -> None:
        ledger: Ledger | None = None
        try:
            while not self.stop.is_set():
                try:
                    endpoint_id = self.work.get(timeout=0.2)
                except queue.Empty:
                    continue
                with self._lock:
                    self._idle -= 1
                    self._waiting -= 1
                try:
                    ledger = ledger or open_ledger(self.config["DATABASE"], DURABILITY)
                    self._batch(ledger, endpoint_id)
                except Exception as e:  # noqa: BLE001 - one endpoint's trouble stops no other
                    # Its claims run out and are taken again; a ledger that failed is
                    # opened afresh for the next batch (a server restarted, a file replaced).
                    ledger = _forget(ledger, e)
                    extra = {"endpoint": endpoint_id, "error": str(e)[:300]}
                    log.error("deliver.batch-failed", exc_info=True, extra=extra)
                    self.stop.wait(RETRY_PAUSE_S)
                finally:
                    with self._lock:
                        self.busy.discard(endpoint_id)
                        self._idle += 1
                    self.woke.set()
        finally:
            if ledger is not None:
                ledger.close()

    def _batch(self, ledger: Ledger, endpoint_id: str) -> None:
        token, now = uuid.uuid4().hex, datetime.now(UTC)
        claimed = ledger.deliveries.claim(endpoint_id, now, now + self.policy.lease, token, BATCH)
        if not claimed:
            return
        target = ledger.endpoints.target(endpoint_id, now)
        if target is None or self.stop.is_set():
            ledger.deliveries.release([m["delivery_id"] for m in claimed], token)
            return
        sent = self._send_all(target, claimed)
        attempts = []
        for message, (answer, at) in zip(claimed, sent, strict=True):
            attempt = {
                "delivery_id": message["delivery_id"],
                "endpoint_id": endpoint_id,
                "claim": token,
                "at": at,
                "status_code": answer.status_code,
                "error": answer.error,
                "duration_ms": answer.duration_ms,
                "excerpt": answer.excerpt,
            }
            attempts.append((attempt, decide(self.policy, message["series"], answer, at)))
        results = ledger.deliveries.record_attempts(attempts)
        for message, (answer, _), (_, outcome), result in zip(
            claimed, sent, attempts, results, strict=True
        ):
            self._note(endpoint_id, target["url"], message, answer, outcome, result)

    def _send_all(self, target: dict, messages: list[dict]) -> list[tuple]:
        """Send a batch side by side; return each (answer, time it ended), in order.

        A batch holds at most one message per job (store/deliveries.py), so its messages
        are independent of each other: order holds, and a slow receiver costs one timeout
        per batch, not one per message.
        """
        sent: list[Any] = [None] * len(messages)

        def one(i: int) -> None:
            try:
                answer = send(self.policy, target, messages[i])
            except Exception as e:  # noqa: BLE001 - recorded as the attempt's error
                log.error("deliver.send-failed", exc_info=True)
                answer = transport.Answer(None, f"{type(e).__name__}: {e}"[:300], 0)
            sent[i] = (answer, datetime.now(UTC))

        others = [threading.Thread(target=one, args=(i,)) for i in range(1, len(messages))]
        for thread in others:
            thread.start()
        one(0)
        for thread in others:
            thread.join()
        return sent

    def _note(self, endpoint_id, url, message, answer, outcome, result) -> None:
        """Count an attempt, and log it unless it simply worked."""
        with self._lock:
            self.stats["attempts"] += 1
            self.stats["delivered" if answer.ok else "failed_attempts"] += 1
            if outcome["status"] == "failed":
                self.stats["failed"] += 1
        if answer.ok:
            return
        extra = {
            "endpoint": endpoint_id,
            "url": shown_url(url),
            "delivery_id": message["delivery_id"],
            "status_code": answer.status_code,
            "error": answer.error,
            "outcome": outcome["status"],
        }
        log.warning("deliver.attempt-failed", extra=extra)
        if result["disabled"]:
            log.error("deliver.endpoint-disabled", extra={**extra, "reason": result["disabled"]})


def _forget(ledger: Ledger | None, error: Exception) -> Ledger | None:
    """Close a ledger whose connection may be broken by `error`; keep it otherwise."""
    if ledger is None or (classify(error) is None and not isinstance(error, LedgerUnavailable)):
        return ledger
    try:
        ledger.close()
    except Exception:  # noqa: BLE001 - already broken: nothing more to release
        pass
    return None


def plan(config: Mapping[str, Any]) -> dict:
    """What a looping `deliver` says it will do, in its first log line (no URL, no secret)."""
    return {
        "retry_seconds": list(config["DELIVERY_RETRY_SECONDS"]),
        "timeout_s": config["DELIVERY_TIMEOUT_SECONDS"],
        "disable_after_s": config["DELIVERY_DISABLE_AFTER_SECONDS"],
        "allow_private": bool(config["DELIVERY_ALLOW_PRIVATE"]),
    }


def run(config: Mapping[str, Any], *, once: bool, stop: threading.Event | None = None) -> RunResult:
    """Deliver until SIGTERM/SIGINT (or `stop` is set), or with `once` until nothing is due.

    :returns: with `once`, the counts of what was done, as the one summary line
    """
    stop = stop or threading.Event()
    senders = Senders(config, stop)
    fanned = 0
    ledger: Ledger | None = open_ledger(config["DATABASE"], DURABILITY)
    if not once:
        log.info("deliver.started", extra=plan(config))
    with StopSignal(stop):
        try:
            while not stop.is_set():
                try:
                    ledger = ledger or open_ledger(config["DATABASE"], DURABILITY)
                    n, finished = _round(ledger, senders, once)
                except Exception as e:
                    if classify(e) is None and not isinstance(e, LedgerUnavailable):
                        raise
                    # A ledger that cannot be reached now is tried again shortly.
                    log.warning("deliver.ledger-unavailable", extra={"error": str(e)[:300]})
                    ledger = _forget(ledger, e)
                    stop.wait(RETRY_PAUSE_S)
                    continue
                fanned += n
                if finished:
                    break
                if n < FANOUT_LIMIT:
                    senders.woke.wait(IDLE_S)
                    senders.woke.clear()
        finally:
            stop.set()
            senders.join()
            pending = ledger.deliveries.waiting()["pending"] if ledger and once else None
            if ledger is not None:
                ledger.close()
    line = {"fanned_out": fanned, **senders.stats, "pending": pending}
    return RunResult([line] if once else [])


def _round(ledger: Ledger, senders: Senders, once: bool) -> tuple[int, bool]:
    """Fan new messages out and hand each endpoint with due work to a sender; return how
    many messages were fanned out, and whether a `--once` run is done."""
    # Read before the queries: idle then means every attempt is recorded.
    idle = senders.idle()
    now = datetime.now(UTC)
    n = ledger.deliveries.fan_out(now, FANOUT_LIMIT)
    due = ledger.deliveries.due_endpoints(now)
    for endpoint_id in due:
        senders.dispatch(endpoint_id)
    return n, once and idle and not n and not due
