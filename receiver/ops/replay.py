"""Replay: parse stored bodies again with today's parsers and record what they say.

The one implementation behind `flask --app wsgi replay`, the pages' Replay buttons and
`POST /api/quarantine/<id>/replay` / `POST /api/replay`. Two things can be replayed:

- a quarantined body (`waiting`): parsed as it first arrived and recorded like a new
  notice, so the ledger's dedup key makes it a duplicate (changing nothing) if the same
  notice was recorded meanwhile; it then becomes `replayed`. One that still does not
  parse stays `waiting`.
- a stored provider notice: re-applied with `Ledger.notices.record(..., replay_of=...)`,
  which never moves a final state back.

Recording and marking a body `replayed` are two commits: after a crash between them the
body is still `waiting`, and replaying it again records a duplicate, which changes nothing.
"""

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

from store import Ledger
from store.quarantine import DISCARDED, REPLAYABLE_SOURCES, REPLAYED, WAITING

from ..providers import InvalidPayload, get_provider
from ..providers.aliyun import mns as queue
from .display import plural
from .replay_filter import BadSelection, Selection, selection_from

__all__ = [
    "BadSelection",
    "ReplayResult",
    "Selection",
    "Totals",
    "count",
    "parse_stored",
    "replay_event",
    "replay_one",
    "replay_quarantined",
    "run",
    "selection_from",
]

log = logging.getLogger("jobledger.replay")
CHUNK = 500  # ids read per query while walking a selection
MAX_API_LIMIT = 1000  # items one HTTP request replays (a request must end well within 30 s)


@dataclass
class ReplayResult:
    """What replaying one quarantined body or stored event did."""

    target: str  # "quarantine" | "events"
    id: int
    ok: bool
    status: str | None = None  # the quarantined body's status afterwards
    event_id: int | None = None
    job_id: str | None = None
    state: str | None = None
    previous_state: str | None = None
    changed: bool = False  # a job was created or its state moved
    duplicate: bool = False  # recorded as a duplicate of a notice already in the ledger
    error: str | None = None
    problem: str | None = None  # not_found | not_replayable | unparseable | discarded

    def as_dict(self) -> dict:
        """Return the result as JSON-ready fields (problem omitted: callers map it)."""
        out = asdict(self)
        del out["problem"]
        if self.status is None:  # a stored event, or a body that does not exist
            del out["status"]
        return out


def item_noun(target: str, n: int) -> str:
    """Name `n` items of a target: `1 stored event`, `2 quarantined bodies`."""
    if target == "quarantine":
        return plural(n, "quarantined body", "quarantined bodies")
    return plural(n, "stored event")


@dataclass
class Totals:
    """What a bulk replay did: counts, each item, and where to continue (or None)."""

    target: str
    matched: int = 0
    replayed: int = 0
    changed: int = 0
    unchanged: int = 0
    failed: int = 0
    items: list = field(default_factory=list)
    next: dict | None = None

    def add(self, result: ReplayResult) -> None:
        """Count one item."""
        self.items.append(result.as_dict())
        if not result.ok:
            self.failed += 1
            return
        self.replayed += 1
        if result.changed:
            self.changed += 1
        else:
            self.unchanged += 1

    def summary(self) -> str:
        """One line for people: how many, and what came of them."""
        noun = item_noun(self.target, self.matched)
        line = (
            f"replayed {self.replayed} of {self.matched} {noun}: {self.changed} changed,"
            f" {self.unchanged} unchanged, {self.failed} failed"
        )
        return line + (" (more remain)" if self.next else "")


def parse_stored(provider: str, service: str, source: str, body: str | bytes):
    """Parse a stored body again with today's parsers, the way it first arrived.

    :raises InvalidPayload, LookupError, UnicodeDecodeError: it does not parse
    """
    if source == "mns":
        return queue.parse(body if isinstance(body, str) else body.decode("utf-8"))
    return get_provider(f"{provider}_{service}").parse(body)


def _parse(target: str, ident: int, provider, service, source, body):
    """Parse, or return a failed ReplayResult that says why."""
    try:
        return parse_stored(provider, service, source, body), None
    except Exception as e:  # parser bugs included: the body stays where it is, and says why
        if not isinstance(e, (InvalidPayload, ValueError, LookupError)):
            log.error("replay.parse-crashed", exc_info=True, extra={"target": target, "id": ident})
        error = f"does not parse: {e}" if str(e) else f"does not parse: {type(e).__name__}"
        return None, ReplayResult(target, ident, False, error=error, problem="unparseable")


def replay_quarantined(ledger: Ledger, quarantine_id: int) -> ReplayResult:
    """Parse one quarantined body again and record it; it stays `waiting` if it fails."""
    item = ledger.quarantine.get(quarantine_id)
    if item is None:
        return ReplayResult(
            "quarantine", quarantine_id, False, error="not found", problem="not_found"
        )
    if item["status"] == DISCARDED:
        error = f"discarded by {item['discarded_by']} at {item['discarded_at']}"
        return ReplayResult(
            "quarantine", quarantine_id, False, DISCARDED, error=error, problem="discarded"
        )
    if item["status"] == REPLAYED:
        event = ledger.jobs.event(item["replay_event_id"]) if item["replay_event_id"] else None
        return ReplayResult(
            "quarantine",
            quarantine_id,
            True,
            REPLAYED,
            event_id=item["replay_event_id"],
            job_id=item["job_id"],
            state=event["state_after"] if event else None,
            previous_state=event["state_after"] if event else None,
        )
    event, failure = _parse(
        "quarantine", quarantine_id, item["provider"], item["service"], item["source"], item["body"]
    )
    if failure is not None:
        failure.status = WAITING
        return failure
    result = ledger.notices.record(
        event, source=item["source"], verified=item["verified"], auth=item["auth"]
    )
    ledger.quarantine.mark_replayed(quarantine_id, result.event_id)
    duplicate = result.duplicate_of is not None
    log.info(
        "replay.quarantine",
        extra={
            "quarantine_id": quarantine_id,
            "event_id": result.event_id,
            "job_id": result.job_id,
        },
    )
    return ReplayResult(
        "quarantine",
        quarantine_id,
        True,
        REPLAYED,
        event_id=result.event_id,
        job_id=result.job_id,
        state=result.state,
        previous_state=result.previous_state,
        changed=not duplicate and result.changed,
        duplicate=duplicate,
    )


def replay_event(ledger: Ledger, event_id: int, job_id: str | None = None) -> ReplayResult:
    """Re-apply one stored provider notice (never moves a final state back).

    :param job_id: when given, the event must belong to this job
    """
    stored = ledger.jobs.event(event_id)
    if stored is None or (job_id is not None and stored["job_id"] != job_id):
        where = f" on job {job_id}" if job_id else ""
        return ReplayResult(
            "events", event_id, False, error=f"no event{where}", problem="not_found"
        )
    if stored["source"] not in REPLAYABLE_SOURCES or stored["payload"] is None:
        why = "its payload was pruned" if stored["payload"] is None else "it is not a notice"
        return ReplayResult(
            "events", event_id, False, error=f"not replayable: {why}", problem="not_replayable"
        )
    event, failure = _parse(
        "events",
        event_id,
        stored["provider"],
        stored["service"],
        stored["source"],
        stored["payload"],
    )
    if failure is not None:
        return failure
    result = ledger.notices.record(
        event,
        source=stored["source"],
        verified=stored["verified"],
        auth=stored["auth"],
        replay_of=event_id,
    )
    log.info("replay.event", extra={"replay_of": event_id, "event_id": result.event_id})
    return ReplayResult(
        "events",
        event_id,
        True,
        event_id=result.event_id,
        job_id=result.job_id,
        state=result.state,
        previous_state=result.previous_state,
        changed=result.changed or result.created_job,
    )


def replay_one(ledger: Ledger, target: str, ident: int) -> ReplayResult:
    """Replay one quarantined body or one stored event."""
    if target == "quarantine":
        return replay_quarantined(ledger, ident)
    return replay_event(ledger, ident)


def count(ledger: Ledger, selection: Selection) -> int:
    """Return how many items the selection covers (what a confirmation step shows)."""
    if selection.ids:
        return len(selection.ids)
    return ledger.replays.count(
        selection.target,
        filters=selection.filters,
        since=selection.since,
        until=selection.until,
        after=selection.after,
        through=selection.through,
    )


def run(
    ledger: Ledger,
    selection: Selection,
    *,
    limit: int | None = None,
    each: Callable[[ReplayResult], None] | None = None,
) -> Totals:
    """Replay what the selection covers, oldest first, each item in its own transaction.

    :param limit: stop after this many items; `Totals.next` then says how to continue
    :param each: called with every item's result as it is done (progress, output)
    """
    if not selection.ids and selection.through is None:
        selection = replace(selection, through=ledger.replays.bound(selection.target))
    totals = Totals(selection.target, matched=count(ledger, selection))
    budget = totals.matched if limit is None else min(limit, totals.matched)
    last, pending = selection.after, list(selection.ids)
    while budget > 0:
        if selection.ids:
            chunk, pending = pending[:budget], pending[budget:]
        else:
            chunk = ledger.replays.select(
                selection.target,
                filters=selection.filters,
                since=selection.since,
                until=selection.until,
                after=last,
                through=selection.through,
                limit=min(CHUNK, budget),
            )
        if not chunk:
            break
        for ident in chunk:
            result = replay_one(ledger, selection.target, ident)
            totals.add(result)
            if each is not None:
                each(result)
            last, budget = ident, budget - 1
    if selection.ids and pending:
        totals.next = replace(selection, ids=tuple(pending)).describe()
    elif not selection.ids and count(ledger, replace(selection, after=last)):
        totals.next = replace(selection, after=last).describe()
    return totals
