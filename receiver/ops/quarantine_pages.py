"""The dead-letter pages: quarantined bodies, one body with Replay and Discard, bulk replay.

A blueprint of its own with the console's rules (`html.guard`): ops authentication, the
CSRF check on every POST and security headers. Bodies are provider bytes: shown
pretty-printed when they are JSON, as text with `\\xNN` escapes when they are not UTF-8,
always through autoescaping. A bulk replay shows how many items it will touch and runs
only after a confirming POST, at most CHUNK items per click, each in its own transaction.
"""

import json
import logging
from urllib.parse import urlencode

from flask import Blueprint, redirect, render_template, request, url_for
from werkzeug.exceptions import BadRequest, Conflict, NotFound

from store import BadQuery
from store.quarantine import QUARANTINE_FILTERS, QuarantineConflict

from ..db import get_ledger
from . import display, notices, replay
from .api import ROW_ID, ops_principal, quarantine_query
from .html import guard, pretty

log = logging.getLogger("jobledger.pages")
CHUNK = 500  # items one click replays; the result page offers to continue
LIST_KEYS = ("provider", "service", "source", "event_type", "ids")

bp = guard(Blueprint("quarantine", __name__))


# What each field a receiver keeps with a body is called on the page, and which ones are
# times (MNS gives epoch milliseconds), shown like every other time.
META_LABELS = {
    "content_type": "content type",
    "user_agent": "user agent",
    "remote_addr": "client address",
    "queue": "MNS queue",
    "message_id": "message id",
    "dequeue_count": "times received",
    "enqueue_time": "sent to the queue",
    "first_dequeue_time": "first received",
    "api": "API",
    "event_handle": "event handle",
    "event_type": "event type",
}
META_TIMES = frozenset({"enqueue_time", "first_dequeue_time"})


def meta_rows(meta: dict) -> list[dict]:
    """The body's receiving details as rows: a human label, the value, or a time."""
    rows = []
    for key, value in meta.items():
        if value is None:
            continue
        stamp = display.epoch_ms_stamp(value) if key in META_TIMES else None
        label = META_LABELS.get(key, key.replace("_", " "))
        rows.append({"label": label, "value": value, "stamp": stamp})
    return rows


def show_body(body: bytes | None, source: str) -> tuple[str, str | None]:
    """Return a body as display text and a note on how it is shown (or None)."""
    if body is None:
        return "(pruned by retention after its replay)", None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return body.decode("utf-8", "backslashreplace"), "not UTF-8: bytes shown as \\xNN"
    shown = pretty(text, source)
    try:
        shown.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate escape decoded by json: show the source
        return text, "holds a lone UTF-16 surrogate escape: shown as received"
    return shown, ("JSON, pretty-printed" if shown != text else None)


@bp.get("/quarantine")
def quarantine_list():
    """Quarantined bodies, newest first, filtered, a keyset page at a time."""
    try:
        items, next_cursor = get_ledger().quarantine.search(**quarantine_query())
    except BadQuery as e:
        raise BadRequest(str(e)) from None
    args = [(k, v) for k, v in request.args.items(multi=True) if k != "cursor"]
    next_url = (
        url_for("quarantine.quarantine_list") + "?" + urlencode(args + [("cursor", next_cursor)])
    )
    replay_args = [
        (k, v) for k, v in args if k in ("provider", "service", "source", "since", "until")
    ]
    return render_template(
        "quarantine/index.html",
        items=items,
        next_url=next_url if next_cursor else None,
        args=request.args,
        choices=QUARANTINE_FILTERS,
        replay_url=url_for("quarantine.bulk_replay")
        + "?"
        + urlencode([("target", "quarantine")] + replay_args),
    )


def _state_after(event_id: int) -> str | None:
    event = get_ledger().jobs.event(event_id)
    return event["state_after"] if event else None


@bp.get(f"/quarantine/<{ROW_ID}:quarantine_id>")
def quarantine_detail(quarantine_id: int):
    """One quarantined body: why, from where, its bytes, and what to do with it."""
    item = get_ledger().quarantine.get(quarantine_id)
    if item is None:
        raise NotFound(f"no quarantined body {quarantine_id}")
    body, note = show_body(item["body"], item["source"])
    return render_template(
        "quarantine/detail.html",
        item=item,
        body=body,
        body_note=note,
        notice=notices.quarantine_notice(request.args.get("notice"), item, _state_after),
        meta=meta_rows(item["meta"] or {}),
    )


@bp.post(f"/quarantine/<{ROW_ID}:quarantine_id>/replay")
def quarantine_replay(quarantine_id: int):
    """Parse this body again and record it; say what came of it on its page."""
    result = replay.replay_quarantined(get_ledger(), quarantine_id)
    if result.problem == "not_found":
        raise NotFound(f"no quarantined body {quarantine_id}")
    if result.problem == "discarded":
        raise Conflict(f"quarantined body {quarantine_id} was {result.error}")
    notice = notices.replay_notice(result.ok, result.changed, result.duplicate)
    log.info("pages.quarantine-replayed", extra={"quarantine_id": quarantine_id, "ok": result.ok})
    return redirect(
        url_for("quarantine.quarantine_detail", quarantine_id=quarantine_id, notice=notice), 303
    )


@bp.post(f"/quarantine/<{ROW_ID}:quarantine_id>/discard")
def quarantine_discard(quarantine_id: int):
    """Mark this body discarded: kept and readable, never replayed in bulk."""
    try:
        item = get_ledger().quarantine.discard(quarantine_id, by=ops_principal())
    except QuarantineConflict as e:
        raise Conflict(str(e)) from None
    if item is None:
        raise NotFound(f"no quarantined body {quarantine_id}")
    log.info("pages.quarantine-discarded", extra={"quarantine_id": quarantine_id})
    return redirect(
        url_for("quarantine.quarantine_detail", quarantine_id=quarantine_id, notice="discarded"),
        303,
    )


def _selection_doc(fields) -> dict:
    """Read a replay filter from query or form fields (lists where a filter may repeat)."""
    return {
        key: fields.getlist(key) if key in LIST_KEYS else fields.get(key)
        for key in fields
        if key != "csrf"
    }


def _hidden_fields(described: dict) -> list[tuple[str, str]]:
    """Flatten Selection.describe() into (name, value) pairs for hidden inputs."""
    pairs = []
    for key, value in described.items():
        for one in value if isinstance(value, list) else [value]:
            pairs.append((key, "1" if one is True else str(one)))
    return pairs


@bp.get("/replay")
def bulk_replay():
    """Choose what to replay, and see how many items that is before confirming."""
    selection, matched, error = None, None, None
    given = {key for key, value in request.args.items(multi=True) if value}
    if (given and given != {"target"}) or request.args.get("target") == "quarantine":
        try:
            selection = replay.selection_from(_selection_doc(request.args))
            matched = replay.count(get_ledger(), selection)
        except (replay.BadSelection, BadQuery) as e:
            error = str(e)
    return render_template(
        "quarantine/replay.html",
        args=request.args,
        selection=selection,
        hidden=_hidden_fields(selection.describe()) if selection else [],
        matched=matched,
        error=error,
        totals=None,
        chunk=CHUNK,
        quarantine_choices=QUARANTINE_FILTERS,
    ), (400 if error else 200)


@bp.post("/replay")
def bulk_replay_run():
    """Replay what the confirmed filter selects (up to CHUNK items), then show the totals."""
    selection = replay.selection_from(_selection_doc(request.form))
    try:
        totals = replay.run(get_ledger(), selection, limit=CHUNK)
    except BadQuery as e:
        raise BadRequest(str(e)) from None
    log.info("pages.bulk-replayed", extra={"summary": totals.summary()})
    return render_template(
        "quarantine/replay.html",
        args={},
        selection=selection,
        hidden=_hidden_fields(totals.next) if totals.next else [],
        matched=None,
        error=None,
        totals=totals,
        chunk=CHUNK,
        quarantine_choices=QUARANTINE_FILTERS,
        as_json=json.dumps,
    )
