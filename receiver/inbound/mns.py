"""The `consume-mns` worker: MNS queue messages (VOD events, MPS notices) into the ledger.

One thread per queue, each with its own SDK connection and ledger connection (neither is
thread-safe). A batch of up to 16 messages is recorded in one transaction and deleted in
one call only after the commit, so a crash at any moment loses nothing: undeleted
messages come back after the queue's visibility timeout and are recorded as duplicates.
Bodies are read raw (`set_encoding(False)`) because the SDK's Base64 decoding fails, or
returns garbage, on raw JSON; `providers.aliyun.mns` accepts both, since Alibaba's VOD and MPS
documentation does not say which one they write.
"""

import logging
import random
import socket
import threading
from collections.abc import Mapping
from typing import Any

from mns.account import Account
from mns.mns_exception import MNSClientNetworkException, MNSExceptionBase, MNSServerException

from store import ledger_problem, open_ledger

from ..providers.aliyun import mns as mns_queue
from .batch import (
    Backoff,
    Delivery,
    Fatal,
    Misconfigured,
    RunResult,
    Stats,
    StopSignal,
    apply_batch,
)

log = logging.getLogger("jobledger.consume")

BATCH_SIZE = 16  # the most MNS returns per receive
WAIT_SECONDS = 30  # long poll while running: the MNS maximum, fewest empty requests
ONCE_WAIT_SECONDS = 2  # --once: how long an empty queue is listened to before stopping
SOCKET_TIMEOUT_S = 60  # above the long poll; the SDK's HTTPS connection has none at all
RETRY_BASE_S, RETRY_CAP_S = 0.5, 30.0  # receive errors: network, 5xx, QpsLimitExceeded
DEFER_BASE_S, DEFER_CAP_S = 5, 300  # visibility of a message hit by a transient ledger error
ONCE_MAX_FAILURES = 5  # --once gives up (exit 1) after this many receive errors in a row
DELETE_ATTEMPTS = 4
# Errors that retrying cannot fix: stop and say so.
FATAL = frozenset({"QueueNotExist", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"})


class QueueConsumer:
    """Receive, apply and delete the messages of one queue until stopped (or empty, --once)."""

    def __init__(
        self, name: str, settings: dict, stop: threading.Event, *, once: bool, wait_seconds: int
    ):
        self.name, self.settings, self.stop = name, settings, stop
        self.once, self.wait_seconds = once, wait_seconds
        self.stats = Stats()
        self.error: str | None = None
        self.retry = Backoff(RETRY_BASE_S, RETRY_CAP_S)
        self.recover = Backoff(1.0, RETRY_CAP_S)  # pause after the ledger failed a batch
        self.account = Account(
            settings["MNS_ENDPOINT"],
            settings["MNS_ACCESS_KEY_ID"],
            settings["MNS_ACCESS_KEY_SECRET"],
        )
        self.account.mns_client.http.conn.timeout = SOCKET_TIMEOUT_S
        self.queue = self.account.get_queue(name)
        self.queue.set_encoding(False)
        self._lock, self._polling = threading.Lock(), False

    def run(self) -> None:
        """Consume until stopped; a fatal error stops every consumer of the command."""
        log.info("consume.mns.started", extra={"queue": self.name, "once": self.once})
        try:
            with open_ledger(self.settings["DATABASE"], self.settings["DURABILITY"]) as ledger:
                while (messages := self.receive()) is not None:
                    if messages:
                        self.handle(ledger, messages)
        except Fatal as e:
            self.error = str(e)
        except Exception as e:  # never die silently: log it, stop the command with exit 1
            log.error("consume.mns.crashed", exc_info=True, extra={"queue": self.name})
            self.error = f"queue {self.name}: {type(e).__name__}: {e}"
        finally:
            self.account.mns_client.close_connection()
        if self.error:
            log.error("consume.mns.fatal", extra={"queue": self.name, "error": self.error})
            self.stop.set()
        log.info("consume.mns.stopped", extra={"queue": self.name, **vars(self.stats)})

    def interrupt(self) -> None:
        """End a long poll in progress (called from the main thread after a stop signal).

        Messages the server handed to that poll stay invisible for the visibility timeout
        and then come back: delayed, never lost. Called repeatedly, because the SDK retries
        a request once on a fresh connection when the first one drops.
        """
        with self._lock:
            sock = getattr(self.account.mns_client.http.conn, "sock", None)
            if self._polling and sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def receive(self) -> list | None:
        """Return a batch, [] to go round again, or None when the loop should end."""
        with self._lock:
            if self.stop.is_set() or (self.once and self.stats.deferred):
                return None  # --once: the ledger is unavailable, so stop here
            self._polling = True
        try:
            messages = self.queue.batch_receive_message(BATCH_SIZE, wait_seconds=self.wait_seconds)
        except MNSServerException as e:
            if e.type == "MessageNotExist":  # an empty queue, not an error
                self.retry.reset()
                return None if self.once else []
            if e.type in FATAL:
                raise Fatal(f"queue {self.name}: {e.type}: {e.message}") from None
            return self._pause(e)
        except MNSClientNetworkException as e:
            return None if self.stop.is_set() else self._pause(e)
        finally:
            with self._lock:
                self._polling = False
        self.retry.reset()
        self.stats.received += len(messages)
        return messages

    def _pause(self, error: MNSExceptionBase) -> list:
        delay = self.retry.next()
        log.warning(
            "consume.mns.receive-failed",
            extra={
                "queue": self.name,
                "error": error.type,
                "detail": str(error.message)[:200],
                "failures": self.retry.failures,
                "retry_in": round(delay, 2),
            },
        )
        if self.once and self.retry.failures >= ONCE_MAX_FAILURES:
            raise Fatal(
                f"queue {self.name}: gave up after {self.retry.failures} failed"
                f" receives, last: {error.type}: {error.message}"
            )
        self.stop.wait(delay)
        return []

    def handle(self, ledger, messages) -> None:
        """Apply a received batch, delete what is recorded, hide what must come back later."""
        deliveries = [Delivery(m.message_body, m, self._meta(m)) for m in messages]
        outcome = apply_batch(
            ledger,
            deliveries,
            parse=mns_queue.parse,
            source="mns",
            auth="queue",
            quarantine_as=("aliyun", "mns"),
            prefix="consume.mns",
        )
        self.stats.add(outcome)
        if outcome.done:
            self._delete([d.handle.receipt_handle for d in outcome.done])
        log.info(
            "consume.mns.batch",
            extra={"queue": self.name, "received": len(messages), **outcome.counts()},
        )
        if not outcome.deferred:
            self.recover.reset()
            return
        for d in outcome.deferred:
            self._defer(d)
        if not self.once:
            self.stop.wait(self.recover.next())  # let the ledger recover before the next batch

    def _meta(self, m) -> dict:
        """The message's MNS metadata: kept with a quarantined body, and logged."""
        return {
            "queue": self.name,
            "message_id": m.message_id,
            "dequeue_count": m.dequeue_count,
            "enqueue_time": m.enqueue_time,
            "first_dequeue_time": m.first_dequeue_time,
        }

    def _delete(self, handles: list[str]) -> None:
        """Delete committed messages in one call; retry network and server errors briefly.

        A message that cannot be deleted is not lost: it comes back and is recorded as a
        duplicate. So errors here are logged; only a permission error stops the consumer.
        """
        backoff = Backoff(0.2, 2.0)
        for attempt in range(1, DELETE_ATTEMPTS + 1):
            try:
                self.queue.batch_delete_message(handles)
                self.stats.acked += len(handles)
                return
            except MNSServerException as e:
                if e.sub_errors:  # some were deleted; the others are listed with a reason
                    self.stats.acked += len(handles) - len(e.sub_errors)
                    for sub in e.sub_errors:
                        log.warning(
                            "consume.mns.delete-failed",
                            extra={
                                "queue": self.name,
                                "error": sub.get("ErrorCode"),
                                "detail": sub.get("ErrorMessage"),
                                "receipt_handle": sub.get("ReceiptHandle"),
                            },
                        )
                    return
                if e.type in FATAL:  # e.g. no mns:DeleteMessage permission
                    raise Fatal(f"queue {self.name}: deleting: {e.type}: {e.message}") from None
                error = e
            except MNSClientNetworkException as e:
                error = e
            log.warning(
                "consume.mns.delete-retry",
                extra={
                    "queue": self.name,
                    "error": error.type,
                    "attempt": attempt,
                    "messages": len(handles),
                },
            )
            if attempt < DELETE_ATTEMPTS:
                threading.Event().wait(backoff.next())  # not self.stop: finish the batch
        log.error(
            "consume.mns.delete-gave-up", extra={"queue": self.name, "messages": len(handles)}
        )

    def _defer(self, d: Delivery) -> None:
        """Hide a message the ledger could not take for a while, longer at each delivery.

        change_message_visibility returns a new receipt handle and voids the old one; the
        message is out of our hands from here, so the new handle is not kept.
        """
        count = max(1, d.handle.dequeue_count)
        delay = min(DEFER_CAP_S, DEFER_BASE_S * 2 ** min(count - 1, 16))
        delay = max(1, round(delay * random.uniform(0.8, 1.2)))
        try:
            self.queue.change_message_visibility(d.handle.receipt_handle, delay)
        except MNSExceptionBase as e:  # it comes back after the visibility timeout anyway
            log.warning("consume.mns.defer-failed", extra={**d.meta, "error": e.type})
            return
        log.warning("consume.mns.deferred", extra={**d.meta, "retry_in": delay})


def consume(
    settings: dict,
    queues: list[str],
    stop: threading.Event,
    *,
    once: bool = False,
    wait_seconds: int | None = None,
) -> list[QueueConsumer]:
    """Run one consumer thread per queue until `stop` is set (or, with `once`, all are empty)."""
    wait = (ONCE_WAIT_SECONDS if once else WAIT_SECONDS) if wait_seconds is None else wait_seconds
    consumers = [
        QueueConsumer(name, settings, stop, once=once, wait_seconds=wait)
        for name in dict.fromkeys(queues)
    ]
    threads = [
        threading.Thread(target=c.run, name=f"consume-mns-{c.name}", daemon=True) for c in consumers
    ]
    for thread in threads:
        thread.start()
    while alive := [t for t in threads if t.is_alive()]:
        if stop.is_set():
            for consumer in consumers:
                consumer.interrupt()
        alive[0].join(0.1)
    return consumers


def run(config: Mapping[str, Any], queues: list[str], *, once: bool, wait_seconds: int | None):
    """Consume MNS queues until SIGTERM/SIGINT (or, with `once`, until every queue is empty).

    :returns: a RunResult: one summary line per queue, and an error if the run must exit 1
    :raises Misconfigured: MNS settings or queue names are missing
    """
    needed = ("MNS_ENDPOINT", "MNS_ACCESS_KEY_ID", "MNS_ACCESS_KEY_SECRET")
    missing = [f"RECEIVER_{k}" for k in needed if not config.get(k)]
    if missing:
        raise Misconfigured(f"MNS is not configured: set {', '.join(missing)}")
    names = list(queues) or list(config.get("MNS_QUEUES") or [])
    if not names:
        raise Misconfigured("no queue to consume: set RECEIVER_MNS_QUEUES or pass --queue")
    problem = ledger_problem(config["DATABASE"])
    if problem:
        return RunResult([], problem)
    settings = {k: config[k] for k in (*needed, "DATABASE", "DURABILITY")}
    stop = threading.Event()
    with StopSignal(stop) as signals:
        consumers = consume(settings, names, stop, once=once, wait_seconds=wait_seconds)
    if signals.received:
        log.info("consume.mns.signal", extra={"signal": signals.received})
    lines = [{"queue": c.name, **vars(c.stats)} for c in consumers]
    errors = [c.error for c in consumers if c.error]
    if errors:
        return RunResult(lines, "; ".join(errors))
    deferred = sum(c.stats.deferred for c in consumers)
    if once and deferred:
        return RunResult(
            lines,
            f"{deferred} message(s) left for redelivery: the ledger was"
            " busy or unwritable; run again",
        )
    return RunResult(lines)
