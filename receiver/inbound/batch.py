"""What the long-running workers share: apply a batch, back off, stop on a signal, report.

`consume-mns` and `pull-tencent` both receive up to 16 notices, record them in the ledger,
and acknowledge (delete, confirm) only what is committed or quarantined. A notice that
hit a transient ledger error is not acknowledged, so the provider delivers it again; the
ledger's dedup key makes every redelivery a no-op.
"""

import logging
import random
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from store import Ledger
from store.errors import classify

from ..providers import InvalidPayload

log = logging.getLogger("jobledger.consume")


class Fatal(Exception):
    """The consumer cannot go on (bad credentials, missing queue): exit 1 with this message."""


class Misconfigured(Exception):
    """A worker cannot start: a setting it needs is missing (the message names it)."""


@dataclass
class RunResult:
    """How a worker's run ended: summary lines to print, and an error if it must exit 1."""

    lines: list[dict] = field(default_factory=list)
    error: str | None = None


@dataclass
class Delivery:
    """One received notice: its text, the provider's handle on it, and ids for logs."""

    body: str
    handle: Any
    meta: dict
    event: Any = None
    error: str | None = None  # why it went to the quarantine


@dataclass
class Outcome:
    """What applying a batch did. `done` may be acknowledged; `deferred` must not be."""

    done: list = field(default_factory=list)
    deferred: list = field(default_factory=list)
    applied: int = 0
    duplicates: int = 0
    quarantined: int = 0

    def counts(self) -> dict:
        """Return the counters, for the batch log line."""
        return {
            "applied": self.applied,
            "duplicates": self.duplicates,
            "quarantined": self.quarantined,
            "deferred": len(self.deferred),
        }


@dataclass
class Stats:
    """Per-consumer counters, printed as JSON when the command ends."""

    received: int = 0
    applied: int = 0
    duplicates: int = 0
    quarantined: int = 0
    deferred: int = 0
    acked: int = 0

    def add(self, outcome: Outcome) -> None:
        """Count one applied batch."""
        self.applied += outcome.applied
        self.duplicates += outcome.duplicates
        self.quarantined += outcome.quarantined
        self.deferred += len(outcome.deferred)


class Backoff:
    """Exponential backoff with full jitter, so many consumers do not retry in step."""

    def __init__(self, base: float, cap: float):
        self.base, self.cap, self.failures = base, cap, 0

    def next(self) -> float:
        """Count a failure; return how long to wait before the next try."""
        self.failures += 1
        return random.uniform(0, min(self.cap, self.base * 2 ** (self.failures - 1)))

    def reset(self) -> None:
        """Forget past failures after a success."""
        self.failures = 0


def apply_batch(
    ledger: Ledger,
    deliveries: list[Delivery],
    *,
    parse: Callable[[str], Any],
    source: str,
    auth: str,
    quarantine_as: tuple[str, str],
    prefix: str,
) -> Outcome:
    """Parse and record a batch in one transaction; quarantine what does not parse.

    A parser or apply bug on one notice must not block the queue behind it, so any error
    other than a transient ledger error (store.errors) sends that notice to the
    quarantine, where `replay --quarantined` picks it up after the fix. Transient errors
    defer the batch (not acknowledged, delivered again); an error that leaves a notice
    neither recorded nor quarantined (a missing table) raises Fatal: the consumer stops.
    """
    out = Outcome()
    good = _parse_all(deliveries, parse, prefix)
    recorded = _record_all(ledger, good, out, source=source, auth=auth, prefix=prefix)
    if recorded is None:  # the ledger cannot take writes now: the whole batch waits
        out.deferred = list(deliveries)
        return out
    for d, result in recorded:
        out.done.append(d)
        if result.duplicate_of is not None:
            out.duplicates += 1
        else:
            out.applied += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                f"{prefix}.applied",
                extra={
                    **d.meta,
                    "event_id": result.event_id,
                    "job_id": result.job_id,
                    "state": result.state,
                    "duplicate_of": result.duplicate_of,
                },
            )
    for d in deliveries:
        if d.event is None:
            _keep(ledger, d, out, source=source, auth=auth, as_=quarantine_as, prefix=prefix)
    return out


def _parse_all(deliveries: list[Delivery], parse: Callable[[str], Any], prefix: str) -> list:
    """Parse each delivery; return those that parsed (the others carry their `error`)."""
    good = []
    for d in deliveries:
        try:
            d.event = parse(d.body)
            good.append(d)
        except InvalidPayload as e:
            d.error = str(e)
        except Exception as e:  # a parser bug: keep the body, log the trace
            log.error(f"{prefix}.parse-crashed", exc_info=True, extra=d.meta)
            d.error = f"parser error: {type(e).__name__}: {e}"
    return good


def _record_all(
    ledger: Ledger, good: list[Delivery], out: Outcome, *, source: str, auth: str, prefix: str
) -> list | None:
    """Record the parsed deliveries in one transaction; return (delivery, result) pairs.

    If the ledger cannot take writes now, return None: the batch is deferred. If one
    notice breaks the apply, they are recorded one at a time to find it; it goes to the
    quarantine (its `event` is dropped), and a transient error defers the rest.
    """
    try:
        _check_file(ledger)
        results = ledger.notices.record_many(
            [d.event for d in good], source=source, verified=True, auth=auth
        )
        _check_file(ledger)
        return list(zip(good, results, strict=True))
    except Exception as e:
        if _unavailable(e, prefix):
            return None
        log.error(f"{prefix}.batch-failed", exc_info=True)
    recorded = []
    for i, d in enumerate(good):
        try:
            recorded.append(
                (d, ledger.notices.record(d.event, source=source, verified=True, auth=auth))
            )
        except Exception as e:
            if _unavailable(e, prefix):
                out.deferred.extend(good[i:])
                break
            log.error(f"{prefix}.apply-crashed", exc_info=True, extra=d.meta)
            d.error = f"apply error: {type(e).__name__}: {e}"
            d.event = None
    return recorded


def _keep(
    ledger: Ledger,
    d: Delivery,
    out: Outcome,
    *,
    source: str,
    auth: str,
    as_: tuple[str, str],
    prefix: str,
) -> None:
    """Quarantine one delivery that was not recorded, or defer it if the ledger is down.

    :raises Fatal: it could be neither recorded nor kept, and retrying cannot help
    """
    try:
        _quarantine(ledger, d, source, auth, as_, prefix)
    except Exception as e:
        if _unavailable(e, prefix):
            out.deferred.append(d)
            return
        # Neither recorded nor kept: going on would drop it, retrying cannot help.
        log.error(f"{prefix}.quarantine-failed", exc_info=True, extra=d.meta)
        raise Fatal(f"cannot quarantine a notice: {type(e).__name__}: {e}") from e
    out.done.append(d)
    out.quarantined += 1


def _check_file(ledger: Ledger) -> None:
    check = getattr(ledger.conn, "check_identity", None)
    if check is not None:
        check()


def _unavailable(e: Exception, prefix: str) -> bool:
    """Tell whether `e` is transient (defer the batch); raise Fatal if only a restart helps.

    A ledger file deleted or replaced under the consumer stays open in its connection:
    retrying would commit to a file nobody reads, so the consumer stops (exit 1) and its
    supervisor starts it again on the file now at the path.
    """
    unavailable = classify(e)
    if unavailable is None:
        return False
    if unavailable.reason in ("deleted", "replaced"):
        log.error(f"{prefix}.ledger-replaced", extra={"error": str(unavailable)})
        raise Fatal(str(unavailable)) from e
    log.warning(f"{prefix}.ledger-unavailable", extra={"error": str(unavailable)})
    return True


def _quarantine(
    ledger: Ledger, d: Delivery, source: str, auth: str, where: tuple[str, str], prefix: str
) -> None:
    provider, service = where
    reason = d.error or "unparseable"
    qid = ledger.quarantine.find(provider=provider, service=service, source=source, body=d.body)
    if qid is None:
        qid = ledger.quarantine.keep(
            provider=provider,
            service=service,
            source=source,
            body=d.body,
            reason=reason,
            verified=True,
            auth=auth,
            meta=d.meta,
        )
    log.warning(f"{prefix}.quarantined", extra={**d.meta, "quarantine_id": qid, "reason": reason})


class StopSignal:
    """SIGTERM/SIGINT set `event`; a second signal gets the previous handlers (kill at once).

    Handlers only set an event: logging from a signal handler could deadlock on a lock the
    interrupted code holds. Outside the main thread (tests, bench) no handler is installed.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, event: threading.Event):
        self.event = event
        self.received: str | None = None  # the name of the signal that stopped it
        self._previous: dict[signal.Signals, Any] = {}  # handlers to put back

    def __enter__(self) -> "StopSignal":
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def _handle(self, signum, frame) -> None:
        self.received = signal.Signals(signum).name
        self.event.set()
        self._restore()

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def __exit__(self, *exc) -> None:
        self._restore()
