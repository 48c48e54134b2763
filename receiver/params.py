"""Every parameter the ops surface reads, through one validator.

Query strings, form fields, JSON bodies and the replay command's options are all read
with these functions, so a value is refused the same way wherever it comes in: a 400
(`BadParameter`, whose message starts with the parameter's name and whose JSON error
carries it as `parameter`) instead of a value that breaks a query further down. What
every request must satisfy, whatever its route reads, is checked once for the whole
surface by `screen()`: no NUL characters (PostgreSQL text cannot hold them) and at most
MAX_VALUES values per name (a database takes at most 65,535 bound values per statement).
"""

import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask, request
from werkzeug.exceptions import BadRequest, NotFound

MAX_VALUES = 1000  # values of one parameter in one request
MAX_ROW_ID = 2**63 - 1  # the largest id either engine can store
MAX_DEPTH = 16  # nesting of an ops JSON body: a replay filter needs 2
# Aware times outside these bounds cannot be turned into UTC, or moved by the millisecond
# an upper bound adds, without overflowing: a bound past them selects the same rows.
EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC) - timedelta(milliseconds=1)
_DIGITS = re.compile(r"[0-9]{1,19}")  # ASCII only: str.isdigit() also takes "²"
_LEDGER_ID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")  # as store.ids.new_id() makes them
# Callbacks answer by their own rules (401 before anything, quarantine what is signed).
UNSCREENED = ("/hooks/", "/static/")
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class BadParameter(BadRequest):
    """A parameter that cannot be honoured: 400, naming it (`parameter`) in the message."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.parameter = name

    def __str__(self) -> str:  # the message alone, as a ValueError says it (the CLI shows it)
        return self.description or ""


def screen(values: Iterable[tuple[str, str]], path_values: Mapping[str, Any]) -> None:
    """Refuse what no route can take: NUL characters, and too many values of one name.

    :param values: (name, value) pairs of the query string and form fields
    :param path_values: the values taken from the URL's path (a route's view arguments)
    :raises BadParameter: a NUL in a name or value, or over MAX_VALUES values of a name
    :raises NotFound: a NUL in a path value (no ledger record has one)
    """
    counts: dict[str, int] = {}
    for name, value in values:
        if "\x00" in name or "\x00" in value:
            shown = name.replace("\x00", "\\x00")[:40]
            raise BadParameter(shown, f"{shown} holds a NUL character, which nothing can match")
        counts[name] = counts.get(name, 0) + 1
        if counts[name] > MAX_VALUES:
            raise BadParameter(name, f"{name} is given more than {MAX_VALUES} times")
    for name, value in path_values.items():
        if isinstance(value, str) and "\x00" in value:
            raise NotFound(f"no such {name.replace('_', ' ')}: {value[:40]!r}")


def text(name: str, raw: Any) -> str | None:
    """Read a free-text value (stripped; None when empty)."""
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise BadParameter(name, f"{name} must be text")
    if "\x00" in raw:
        raise BadParameter(name, f"{name} holds a NUL character, which nothing can match")
    return raw.strip() or None


def whole(name: str, raw: Any, *, minimum: int = 0, maximum: int = MAX_ROW_ID) -> int | None:
    """Read a whole number given as ASCII digits (or a JSON integer); None when empty.

    :raises BadParameter: anything else, or a number outside minimum..maximum
    """
    if raw is None or raw == "":
        return None
    if isinstance(raw, str) and _DIGITS.fullmatch(raw):
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, int) or not minimum <= raw <= maximum:
        raise BadParameter(name, f"{name} must be a whole number between {minimum} and {maximum}")
    return raw


def row_id(name: str, raw: Any) -> int:
    """Read one ledger row id (1 up to MAX_ROW_ID); an empty one is an error too."""
    ident = whole(name, raw, minimum=1)
    if ident is None:
        raise BadParameter(name, f"{name} must be a whole number between 1 and {MAX_ROW_ID}")
    return ident


def moment(name: str, raw: Any) -> datetime | None:
    """Read an ISO 8601 time as an aware UTC datetime (UTC when no offset is given).

    Times past the calendar's ends in UTC (year 1 with a positive offset, the last
    millisecond of year 9999) are held to EARLIEST and LATEST.
    """
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise BadParameter(name, f"{name} must be an ISO 8601 time")
    try:
        parsed = datetime.fromisoformat(raw.strip().upper().replace("Z", "+00:00"))
    except ValueError:
        raise BadParameter(name, f"{name} is not an ISO 8601 time: {raw[:40]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        parsed = parsed.astimezone(UTC)
    except OverflowError:  # before 0001-01-01 or after 9999-12-31 in UTC
        parsed = EARLIEST if parsed.year == 1 else LATEST
    return min(max(parsed, EARLIEST), LATEST)


def choices(name: str, raw: Any, allowed: Iterable[str] | None) -> tuple[str, ...]:
    """Read one value or a list of values (blank ones dropped), each one of `allowed`.

    :param allowed: the accepted values, or None for any text
    """
    if raw is None or raw == "":
        return ()
    values = [raw] if isinstance(raw, str) else raw
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
        raise BadParameter(name, f"{name} must be a string or a list of strings")
    if len(values) > MAX_VALUES:
        raise BadParameter(name, f"{name} is given more than {MAX_VALUES} times")
    picked = tuple(t for t in (text(name, v) for v in values) if t)
    known = tuple(allowed) if allowed is not None else None
    for value in picked:
        if known is not None and value not in known:
            raise BadParameter(
                name, f"{name} must be one of {', '.join(known)}; got {value[:40]!r}"
            )
    return picked


def flag(name: str, raw: Any) -> bool:
    """Read `true` or `false` (any case); False when absent or empty."""
    word = (text(name, raw) or "false").lower()
    if word not in ("true", "false"):
        raise BadParameter(name, f"{name} must be true or false; got {word[:40]!r}")
    return word == "true"


def ledger_id(name: str, raw: Any) -> str | None:
    """Read a ledger id (a job's id, or a job list cursor): 26 characters of Crockford base32."""
    value = text(name, raw)
    if value is not None and not _LEDGER_ID.fullmatch(value):
        raise BadParameter(name, f"{name} is not one this server made")
    return value


def json_object(name: str, body: bytes) -> dict:
    """Decode a request body that must be a JSON object; an empty body is {}.

    Strings (keys included) must not hold NUL, and nesting is bounded by MAX_DEPTH, so no
    later step recurses or stores what it cannot.
    """
    if not body.strip():
        return {}
    try:
        doc = json.loads(body)
    except RecursionError:
        raise BadParameter(name, f"{name} nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as e:  # UnicodeDecodeError is one
        raise BadParameter(name, f"{name} is not JSON: {str(e)[:120]}") from None
    if not isinstance(doc, dict):
        raise BadParameter(name, f"{name} must be a JSON object")
    # Walked without recursion; a problem is named by the top-level key it is under.
    stack: list[tuple[Any, int, str]] = [(doc, 1, name)]
    while stack:
        value, level, where = stack.pop()
        if isinstance(value, dict):
            if any("\x00" in key for key in value):
                raise BadParameter(where, f"{where} holds a NUL character in a key")
            items = [(v, k if level == 1 else where) for k, v in value.items()]
        elif isinstance(value, list):
            items = [(v, where) for v in value]
        else:
            if isinstance(value, str) and "\x00" in value:
                raise BadParameter(where, f"{where} holds a NUL character, which nothing can match")
            continue
        if level > MAX_DEPTH:
            raise BadParameter(where, f"{where} nests deeper than {MAX_DEPTH} levels")
        stack.extend((item, level + 1, key) for item, key in items)
    return doc


def one_of(raw: Any, known: Mapping[str, Any]) -> str | None:
    """Return `raw` if it is a key of `known`, else None (for display-only parameters)."""
    return raw if isinstance(raw, str) and raw in known else None


def bounded(raw: Any, minimum: int, maximum: int) -> int | None:
    """Return a whole number held to minimum..maximum, or None if `raw` is not one (or 0).

    For display preferences (a page's refresh interval), where a bad value is ignored
    rather than refused: the page is shown without it.
    """
    try:
        number = whole("value", raw)
    except BadParameter:
        return None
    return max(minimum, min(number, maximum)) if number else None


def init_app(app: Flask) -> None:
    """Screen every request to the ops surface (callbacks read their own bodies)."""
    app.before_request(_screen_request)


def _screen_request() -> None:
    if request.path.startswith(UNSCREENED):
        return
    pairs = list(request.args.items(multi=True))
    if request.mimetype in FORM_TYPES:
        pairs += request.form.items(multi=True)
    screen(pairs, request.view_args or {})
