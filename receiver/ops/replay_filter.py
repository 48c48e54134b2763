"""What a bulk replay covers: a Selection, read from a JSON object, form fields or options.

Every value is checked here, so a bad one is refused before anything is replayed, with a
message that names the parameter (and the accepted values of an enumeration).
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from store.quarantine import EVENT_FILTERS, QUARANTINE_FILTERS, TARGETS


class BadSelection(ValueError):
    """A replay filter that cannot be honoured; the message names the parameter."""


@dataclass(frozen=True)
class Selection:
    """What a bulk replay covers: explicit ids, or every match of the filters."""

    target: str = "quarantine"
    filters: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    since: datetime | None = None
    until: datetime | None = None
    ids: tuple[int, ...] = ()
    after: int = 0  # resume after this id
    through: int | None = None  # the highest id when the run began

    def describe(self) -> dict:
        """Return the selection as JSON (what to POST again to continue)."""
        out: dict = {"target": self.target, **{k: list(v) for k, v in self.filters.items()}}
        for name in ("since", "until"):
            moment = getattr(self, name)
            if moment is not None:
                out[name] = moment.isoformat().replace("+00:00", "Z")
        if self.ids:
            out["ids"] = list(self.ids)
        elif self.target == "events" and not self.filters and not (self.since or self.until):
            out["all"] = True
        if self.after:
            out["after"] = self.after
        if self.through is not None:
            out["through"] = self.through
        return out


def _values(raw, name: str, allowed: tuple[str, ...] | None) -> tuple[str, ...]:
    if raw is None or raw == "":
        return ()
    values = [raw] if isinstance(raw, str) else raw
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
        raise BadSelection(f"{name} must be a string or a list of strings")
    values = tuple(v.strip() for v in values if v and v.strip())
    for value in values:
        if allowed is not None and value not in allowed:
            raise BadSelection(f"{name} must be one of {', '.join(allowed)}; got {value[:40]!r}")
    return values


def parse_time(name: str, raw) -> datetime | None:
    """Read an ISO 8601 time (UTC when no offset is given); raise BadSelection naming `name`."""
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise BadSelection(f"{name} must be an ISO 8601 time")
    try:
        moment = datetime.fromisoformat(raw.strip().upper().replace("Z", "+00:00"))
    except ValueError:
        raise BadSelection(f"{name} is not an ISO 8601 time: {raw[:40]!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _whole(name: str, raw, minimum: int = 0) -> int | None:
    if raw is None or raw == "":
        return None
    # isascii(): isdigit() alone also takes "²", which int() refuses (a 500, not a 400)
    if isinstance(raw, str) and raw.strip().isascii() and raw.strip().isdigit():
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < minimum:
        raise BadSelection(f"{name} must be a whole number of at least {minimum}")
    return raw


def _id(raw) -> int:
    """Read one item of `ids`: an empty one is an error too, never a wildcard."""
    ident = _whole("ids", raw, 1)
    if ident is None:
        raise BadSelection("ids must be a whole number of at least 1")
    return ident


def selection_from(doc: Mapping) -> Selection:
    """Build a Selection from a JSON object or form fields (values: text or lists of text).

    Keys: target (`quarantine`, the default, or `events`), provider, service, source,
    event_type (events only), since, until, ids, all (needed to replay every stored event
    without a filter), after, through.

    :raises BadSelection: naming the parameter that is wrong
    """
    target = doc.get("target") or "quarantine"
    if target not in TARGETS:
        raise BadSelection(f"target must be one of {', '.join(TARGETS)}")
    allowed = QUARANTINE_FILTERS if target == "quarantine" else EVENT_FILTERS
    if target == "quarantine" and doc.get("event_type"):
        raise BadSelection("event_type filters stored events only: a quarantined body has none")
    if target == "quarantine" and doc.get("status"):
        raise BadSelection("status: a bulk replay takes waiting bodies only")
    filters = {}
    for name, valid in allowed.items():
        if name != "status":
            values = _values(doc.get(name), name, valid)
            if values:
                filters[name] = values
    raw_ids = doc.get("ids") or []
    if isinstance(raw_ids, (str, int)):
        raw_ids = [raw_ids]
    if not isinstance(raw_ids, list):
        raise BadSelection("ids must be a list of whole numbers")
    ids = tuple(_id(i) for i in raw_ids)
    selection = Selection(
        target=target,
        filters=filters,
        since=parse_time("since", doc.get("since")),
        until=parse_time("until", doc.get("until")),
        ids=ids,
        after=_whole("after", doc.get("after")) or 0,
        through=_whole("through", doc.get("through")),
    )
    narrowed = bool(filters or selection.since or selection.until)
    if ids and narrowed:
        raise BadSelection("ids: give ids or filters, not both")
    everything = doc.get("all") in (True, "1", "true", "on")
    if target == "events" and not (ids or narrowed or everything):
        raise BadSelection("all: replaying every stored event needs all=true, or a filter")
    return selection
