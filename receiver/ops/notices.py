"""The status banners pages show after an action, chosen by name with `?notice=`.

An action redirects to its page with the name of what happened; the banner's words come
from this fixed set and from the ledger, never from the URL, so a link cannot put text of
its own on a page. An unknown name, or one that does not fit the record (a "replayed"
banner on a body still waiting), shows no banner.
"""

from collections.abc import Callable

from store.quarantine import DISCARDED, REPLAYED, WAITING

from .. import params
from .display import plural

# What `reconcile.poll_now` can answer.
POLL_OUTCOMES = (
    "changed",
    "unchanged",
    "failed",
    "throttled",
    "deferred",
    "no_status_api",
    "not_configured",
)
JOB_NOTICES = {f"poll-{outcome}": f"poll: {outcome}" for outcome in POLL_OUTCOMES}
_REPLAY_EFFECTS = {
    "replayed": "changed the job",
    "unchanged": "changed nothing",
    "duplicate": "a duplicate of a notice already recorded: changed nothing",
}
QUARANTINE_NOTICES = {**dict.fromkeys(_REPLAY_EFFECTS, REPLAYED), "waiting": WAITING}
QUARANTINE_NOTICES["discarded"] = DISCARDED
ENDPOINT_NOTICES = ("retried", "recovered", "enabled")


def job_notice(raw) -> str | None:
    """Return the job page's banner for `?notice=`, or None."""
    name = params.one_of(raw, JOB_NOTICES)
    return JOB_NOTICES[name] if name else None


def poll_notice(outcome: str) -> str | None:
    """Name the banner for a poll's outcome (None for an outcome without one)."""
    name = f"poll-{outcome}"
    return name if name in JOB_NOTICES else None


def replay_notice(ok: bool, changed: bool, duplicate: bool) -> str:
    """Name the banner for a quarantined body's replay."""
    if not ok:
        return "waiting"
    return "duplicate" if duplicate else "replayed" if changed else "unchanged"


def quarantine_notice(raw, item: dict, state_of: Callable[[int], str | None]) -> str | None:
    """Return the quarantine page's banner for `?notice=`, or None.

    :param item: the quarantined item shown (its status must fit the notice)
    :param state_of: the state a stored event left its job in (for "replayed as ...")
    """
    name = params.one_of(raw, QUARANTINE_NOTICES)
    if name is None or item["status"] != QUARANTINE_NOTICES[name]:
        return None
    if name == "waiting":
        return "still waiting: does not parse with today's parsers either"
    if name == "discarded":
        return f"discarded by {item['discarded_by']}"
    event_id = item["replay_event_id"]
    state = state_of(event_id) if event_id else None
    return f"replayed as event {event_id} ({state or 'no state'}): {_REPLAY_EFFECTS[name]}"


def endpoint_notice(args, endpoint: dict) -> str | None:
    """Return the endpoint page's banner for `?notice=`, or None.

    The URL carries only a name and a number (`delivery`, `count`); an "enabled" banner
    shows only while the endpoint is enabled.
    """
    name = params.one_of(args.get("notice"), dict.fromkeys(ENDPOINT_NOTICES))
    if name == "retried":
        delivery = params.bounded(args.get("delivery"), 1, params.MAX_ROW_ID)
        return f"delivery {delivery} will be sent again now" if delivery else None
    if name == "recovered":
        count = params.bounded(args.get("count"), 0, params.MAX_ROW_ID) or 0
        return f"{count} failed {plural(count, 'delivery', 'deliveries')} will be sent again"
    if name == "enabled" and endpoint["enabled"]:
        return "enabled: what waited is being sent"
    return None
