"""What a bulk replay covers: a Selection, read from a JSON object, form fields or options.

Every value is checked here, through the parameter reader every route uses
(`receiver.params`), so a bad one is refused before anything is replayed, with a message
that names the parameter (and the accepted values of an enumeration).
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from store.quarantine import EVENT_FILTERS, QUARANTINE_FILTERS, TARGETS

from ..params import MAX_VALUES, BadParameter, choices, moment, row_id, whole

BadSelection = BadParameter  # the name callers of a replay know it by


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


def selection_from(doc: Mapping) -> Selection:
    """Build a Selection from a JSON object or form fields (values: text or lists of text).

    Keys: target (`quarantine`, the default, or `events`), provider, service, source,
    event_type (events only), since, until, ids, all (needed to replay every stored event
    without a filter), after, through.

    :raises BadSelection: naming the parameter that is wrong
    """
    target = doc.get("target") or "quarantine"
    if target not in TARGETS:
        raise BadSelection("target", f"target must be one of {', '.join(TARGETS)}")
    allowed = QUARANTINE_FILTERS if target == "quarantine" else EVENT_FILTERS
    if target == "quarantine" and doc.get("event_type"):
        raise BadSelection(
            "event_type", "event_type filters stored events only: a quarantined body has none"
        )
    if target == "quarantine" and doc.get("status"):
        raise BadSelection("status", "status: a bulk replay takes waiting bodies only")
    filters = {}
    for name, valid in allowed.items():
        if name != "status":
            values = choices(name, doc.get(name), valid)
            if values:
                filters[name] = values
    raw_ids = doc.get("ids") or []
    if isinstance(raw_ids, (str, int)):
        raw_ids = [raw_ids]
    if not isinstance(raw_ids, list):
        raise BadSelection("ids", "ids must be a list of whole numbers")
    if len(raw_ids) > MAX_VALUES:
        raise BadSelection("ids", f"ids is given more than {MAX_VALUES} times")
    selection = Selection(
        target=target,
        filters=filters,
        since=moment("since", doc.get("since")),
        until=moment("until", doc.get("until")),
        ids=tuple(row_id("ids", i) for i in raw_ids),
        after=whole("after", doc.get("after")) or 0,
        through=whole("through", doc.get("through")),
    )
    narrowed = bool(filters or selection.since or selection.until)
    if selection.ids and narrowed:
        raise BadSelection("ids", "ids: give ids or filters, not both")
    everything = doc.get("all") in (True, "1", "true", "on")
    if target == "events" and not (selection.ids or narrowed or everything):
        raise BadSelection("all", "all: replaying every stored event needs all=true, or a filter")
    return selection
