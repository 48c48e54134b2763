"""The `pull-tencent` worker: Tencent VOD reliable-mode events, pulled, recorded, confirmed.

In reliable mode (ModifyEventConfig Mode=PULL) Tencent keeps each event until it is
confirmed, and hands an unconfirmed one out again 30 s after it was pulled: at-least-once
delivery, the only such channel Tencent has (its event-notification documentation). So an
event is confirmed only after its commit, and every redelivery is a ledger duplicate.

API 3.0 (`PullEvents`/`ConfirmEvents`) is always pulled. The legacy v2 API
(`PullEvent`/`ConfirmEvent`) is pulled too with `--api v2` or `--api both`, or by default
when `RECEIVER_TENCENT_VOD_V2_URL` is set in the environment: an account that still has a
v2 callback configured in reliable mode is the only reason to set it. The calls go through
the submitter's clients (the official SDK for 3.0, the documented v2 signature for v2).
"""

import json
import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

from store import ledger_problem, open_ledger
from submitter.calls import Budget, CallFailed
from submitter.tencent_api import TencentAPI
from submitter.tencent_v2 import TencentV2

from ..providers.tencent import vod as tencent_vod
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

PULL_BUDGET_S = 10.0  # a pull is held up to 5 s; Tencent recommends a 10 s client timeout
CONFIRM_BUDGET_S = 5.0
RETRY_BASE_S, RETRY_CAP_S = 1.0, 60.0
ONCE_MAX_FAILURES = 5  # --once gives up (exit 1) after this many failed pulls in a row
# "Nothing to pull" as some accounts answer it (ResourceNotFound in the 3.0 error list;
# code 4000 in Tencent's own v2 demo server) rather than with an empty list.
EMPTY = frozenset({"ResourceNotFound", "4000"})
# Errors that retrying cannot fix: stop and say so (3.0 code prefixes; v2 auth codes).
FATAL_PREFIXES = ("AuthFailure", "UnauthorizedOperation", "InvalidAction", "NoSuchVersion")
FATAL_V2 = frozenset({"4100", "4101", "4102", "4103", "4104", "4300"})


def is_fatal(code: str) -> bool:
    """Tell whether an error code means wrong credentials, permissions or endpoint."""
    return code in FATAL_V2 or code.startswith(FATAL_PREFIXES)


class V3Events:
    """API 3.0 PullEvents/ConfirmEvents; events are dicts without their EventHandle."""

    name = "v3"

    def __init__(self, config):
        self.client = TencentAPI(config)

    def pull(self) -> list[tuple[str | None, object]]:
        """Long-poll for up to 16 events: (handle, event) pairs."""
        answer = self.client.call("PullEvents", {}, budget=Budget(PULL_BUDGET_S), idempotent=True)
        out: list[tuple[str | None, object]] = []
        for item in answer.get("EventSet") or []:
            if isinstance(item, dict):
                item = dict(item)
                out.append((item.pop("EventHandle", None), item))
            else:
                out.append((None, item))
        return out

    def confirm(self, handles: list[str]) -> None:
        """Confirm events whose commit is done."""
        self.client.call(
            "ConfirmEvents",
            {"EventHandles": handles},
            budget=Budget(CONFIRM_BUDGET_S),
            idempotent=True,
        )

    def close(self) -> None:
        self.client.close()


class V2Events:
    """Legacy v2 PullEvent/ConfirmEvent; `eventContent` is exactly the v2 callback body."""

    name = "v2"

    def __init__(self, config):
        self.client = TencentV2(config)

    def pull(self) -> list[tuple[str | None, object]]:
        """Long-poll for events: (msgHandle, eventContent) pairs."""
        answer = self.client.call("PullEvent", {}, budget=Budget(PULL_BUDGET_S), idempotent=True)
        return [
            (item.get("msgHandle"), item.get("eventContent"))
            if isinstance(item, dict)
            else (None, item)
            for item in answer.get("eventList") or []
        ]

    def confirm(self, handles: list[str]) -> None:
        """Confirm events whose commit is done (`msgHandle.n`, from 1 as documented)."""
        params = {f"msgHandle.{i}": h for i, h in enumerate(handles, 1)}
        self.client.call("ConfirmEvent", params, budget=Budget(CONFIRM_BUDGET_S), idempotent=True)

    def close(self) -> None:
        self.client.close()


class Puller:
    """Pull from each configured API in turn until stopped (or all empty, with --once)."""

    def __init__(self, config: dict, apis: list[str], stop: threading.Event, *, once: bool):
        self.config, self.stop, self.once = config, stop, once
        self.sources = [V3Events(config) if api == "v3" else V2Events(config) for api in apis]
        self.stats = {s.name: Stats() for s in self.sources}
        self.retry = Backoff(RETRY_BASE_S, RETRY_CAP_S)
        self.recover = Backoff(1.0, RETRY_CAP_S)  # pause after the ledger failed a batch
        self.error: str | None = None

    def run(self) -> None:
        """Pull, apply, confirm; a fatal error ends the run with `self.error` set."""
        log.info(
            "consume.tencent.started",
            extra={"apis": [s.name for s in self.sources], "once": self.once},
        )
        empty = set()
        try:
            with open_ledger(self.config["DATABASE"], self.config["DURABILITY"]) as ledger:
                while not (self.stop.is_set() or self._gave_up()):
                    for source in self.sources:
                        events = self._pull(source)
                        if events:
                            empty.discard(source.name)
                            self._handle(source, ledger, events)
                        elif events is not None:
                            empty.add(source.name)
                        if self.stop.is_set() or self._gave_up():
                            break
                    if self.once and len(empty) == len(self.sources):
                        break
        except Fatal as e:
            self.error = str(e)
            log.error("consume.tencent.fatal", extra={"error": self.error})
        finally:
            for source in self.sources:
                source.close()
        log.info(
            "consume.tencent.stopped",
            extra={name: vars(stats) for name, stats in self.stats.items()},
        )

    def _gave_up(self) -> bool:
        """--once stops at the first batch the ledger could not take: retrying is for later."""
        return self.once and any(s.deferred for s in self.stats.values())

    def _pull(self, source) -> list | None:
        """Return events, [] when there are none, None after an error (retry later)."""
        try:
            events = source.pull()
        except CallFailed as e:
            if e.code in EMPTY:
                self.retry.reset()
                return []
            if is_fatal(e.code):
                raise Fatal(f"Tencent {source.name}: {e.code}: {e.message}") from None
            delay = self.retry.next()
            log.warning(
                "consume.tencent.pull-failed",
                extra={
                    "api": source.name,
                    "error": e.code,
                    "detail": e.message[:200],
                    "failures": self.retry.failures,
                    "retry_in": round(delay, 2),
                },
            )
            if self.once and self.retry.failures >= ONCE_MAX_FAILURES:
                raise Fatal(
                    f"Tencent {source.name}: gave up after {self.retry.failures} failed"
                    f" pulls, last: {e.code}: {e.message}"
                ) from None
            self.stop.wait(delay)
            return None
        self.retry.reset()
        self.stats[source.name].received += len(events)
        return events

    def _handle(self, source, ledger, events) -> None:
        deliveries = []
        for handle, content in events:
            meta = {"api": source.name, "event_handle": handle}
            if isinstance(content, dict):
                meta["event_type"] = content.get("EventType") or content.get("eventType")
            body = json.dumps(content, ensure_ascii=False)
            deliveries.append(Delivery(body, handle, meta))
        # tencent_vod.parse is what `replay` uses on the stored payload: same result.
        outcome = apply_batch(
            ledger,
            deliveries,
            parse=tencent_vod.parse,
            source="pull",
            auth="api",
            quarantine_as=("tencent", "vod"),
            prefix="consume.tencent",
        )
        stats = self.stats[source.name]
        stats.add(outcome)
        handles = [d.handle for d in outcome.done if d.handle]
        if handles:
            stats.acked += self._confirm(source, handles)
        log.info(
            "consume.tencent.batch",
            extra={"api": source.name, "received": len(events), **outcome.counts()},
        )
        if not outcome.deferred:
            self.recover.reset()
        elif not self.once:  # not confirmed: Tencent hands them out again after 30 s
            self.stop.wait(self.recover.next())

    def _confirm(self, source, handles: list[str]) -> int:
        """Confirm committed events; return how many were confirmed.

        A confirmation that fails is not retried beyond the client's own budget: the event
        comes back and is recorded as a duplicate. Confirmation is all-or-nothing, so when
        one handle has expired the others are confirmed one by one.
        """
        try:
            source.confirm(handles)
            return len(handles)
        except CallFailed as e:
            error = e
        if is_fatal(error.code):  # e.g. no vod:ConfirmEvents permission
            raise Fatal(f"Tencent {source.name}: confirming: {error.code}: {error.message}")
        if len(handles) > 1 and not error.retryable:
            return sum(self._confirm(source, [h]) for h in handles)
        log.warning(
            "consume.tencent.confirm-failed",
            extra={
                "api": source.name,
                "error": error.code,
                "detail": error.message[:200],
                "event_handles": handles,
            },
        )
        return 0


def _apis(choice: str) -> list[str]:
    if choice == "auto":
        return ["v3", "v2"] if os.environ.get("RECEIVER_TENCENT_VOD_V2_URL") else ["v3"]
    return ["v3", "v2"] if choice == "both" else [choice]


def run(config: Mapping[str, Any], *, once: bool, api: str = "auto") -> RunResult:
    """Pull Tencent events until SIGTERM/SIGINT (or, with `once`, until none is waiting).

    :param api: `auto` (API 3.0, plus v2 when RECEIVER_TENCENT_VOD_V2_URL is set), `v3`,
      `v2` or `both`
    :returns: a RunResult: one summary line per API, and an error if the run must exit 1
    :raises Misconfigured: Tencent credentials are missing
    """
    missing = [
        f"RECEIVER_{k}" for k in ("TENCENT_SECRET_ID", "TENCENT_SECRET_KEY") if not config.get(k)
    ]
    if missing:
        raise Misconfigured(f"Tencent Cloud is not configured: set {', '.join(missing)}")
    problem = ledger_problem(config["DATABASE"])
    if problem:
        return RunResult([], problem)
    stop = threading.Event()
    puller = Puller(dict(config), _apis(api), stop, once=once)
    with StopSignal(stop) as signals:
        puller.run()
    if signals.received:
        log.info("consume.tencent.signal", extra={"signal": signals.received})
    lines = [{"api": name, **vars(stats)} for name, stats in puller.stats.items()]
    if puller.error:
        return RunResult(lines, puller.error)
    deferred = sum(s.deferred for s in puller.stats.values())
    if once and deferred:
        return RunResult(
            lines,
            f"{deferred} event(s) left unconfirmed: the ledger was busy"
            " or unwritable; Tencent delivers them again after 30 s",
        )
    return RunResult(lines)
