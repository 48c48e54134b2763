"""What every provider module shares: the normalized Event and the errors of verify/parse."""

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Protocol

# The job states (docs/http-api.md) a notice can report. The state machine itself lives in
# store.states; providers stay free of the store so they test without a database.
PROCESSING, SUCCEEDED, PARTIAL, FAILED = "processing", "succeeded", "partial", "failed"
RUNNING, STOPPED = "running", "stopped"


class InvalidSignature(Exception):
    """The request's signature, timestamp or token does not authenticate it.

    :param stale: the signature may be right, but its timestamp is outside the window
    """

    def __init__(self, message: str, *, stale: bool = False):
        super().__init__(message)
        self.stale = stale


class InvalidPayload(Exception):
    """The body is not JSON, or not an event of the provider it was sent as."""


@dataclass(frozen=True, slots=True)
class Event:
    """One provider notice, normalized: everything the ledger needs to apply it."""

    provider: str  # "aliyun" | "tencent"
    service: str  # "vod" | "mps" | "live"
    event_type: str
    payload: str  # the body as received
    dedup_key: bytes | None = None
    kind: str | None = None  # job kind the notice is about; None: stored, tied to no job
    provider_job_id: str | None = None
    media_id: str | None = None
    state: str | None = None  # the state it reports; None: no state of its own
    occurred_at: str | None = None  # provider's time, ISO 8601 UTC
    # When the provider says it began the work (task created, or processing begun), ISO 8601
    # UTC; the start of a job first seen in a notice when it carries one.
    started_at: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    outputs: tuple = field(default=())
    preprocess: bool = False

    def __post_init__(self) -> None:
        # A JSON string may hold "\u0000", and PostgreSQL text cannot: such a notice would
        # fail in its transaction on one engine only. Refused here, by the one type every
        # parser builds, it is quarantined alike by every door on every engine. Outputs are
        # stored as JSON, which keeps the escape.
        for name in _TEXT_FIELDS:
            value = getattr(self, name)
            nul = b"\x00" if isinstance(value, bytes) else "\x00"  # a payload as received
            if value is not None and nul in value:
                raise InvalidPayload(
                    f"{name} holds a NUL character (\\u0000), which the ledger cannot store"
                )


_TEXT_FIELDS = (
    "event_type",
    "payload",
    "kind",
    "provider_job_id",
    "media_id",
    "state",
    "occurred_at",
    "error_code",
    "error_message",
)


class HeaderLookup(Protocol):
    """Request headers as `verify` and `parse` read them: werkzeug's case-insensitive
    `Headers` in the receiver, a plain dict in tests and tools."""

    def get(self, key: str, /) -> str | None: ...

    def __contains__(self, key: str, /) -> bool: ...


class Provider(Protocol):
    """What a provider module is: fill in these names to add a sender.

    A module satisfies this shape by defining them at its top level; the registry in
    `receiver.providers` is typed with it.
    """

    # Read-only properties: the registry only reads a module's constants, and a module's
    # `SIGNATURE_SETTINGS = ("A", "B")` then fits `tuple[str, ...]`.
    @property
    def NAME(self) -> str:
        """Registry key and URL segment: "aliyun_vod", "tencent_vod"..."""
        ...

    @property
    def PROVIDER(self) -> str:
        """The vendor: "aliyun" | "tencent"."""
        ...

    @property
    def SERVICE(self) -> str:
        """The vendor's service: "vod" | "mps" | "live"."""
        ...

    @property
    def SIGNATURE_SETTINGS(self) -> tuple[str, ...]:
        """Settings that enable signature checks; () for none."""
        ...

    def signature_secret(self, config: Mapping[str, Any]) -> Any | None:
        """Return what `verify` needs from the settings, or None when not configured."""
        ...

    def has_signature(self, body: bytes, headers: HeaderLookup) -> bool:
        """Tell whether a request carries the provider's signature at all."""
        ...

    def verify(
        self, body: bytes, headers: HeaderLookup, secret: Any, now: float | None = None
    ) -> None:
        """Raise InvalidSignature unless the request is authentic."""
        ...

    def parse(self, body: bytes | str, headers: HeaderLookup | None = None) -> Event:
        """Turn one notice into an Event; raise InvalidPayload if it is not one."""
        ...


VOLATILE_KEYS = frozenset({"EventHandle", "Sign", "T", "sign", "t"})
# Provider notices nest a few levels (the deepest documented sample: 8). Python's JSON
# functions recurse, and whether ~1000 levels fit depends on the stack in use, so a body
# could parse and then break hashing or storing it; a fixed bound decides the same way
# everywhere.
MAX_DEPTH = 100


def dedup_key(provider: str, doc: Any) -> bytes:
    """Return a stable key for a notice: its content, whatever the key order or spacing.

    Keys that change between deliveries of one event (a pull handle, a fresh signature)
    are left out, so a redelivery is a duplicate however it arrives.
    """
    if isinstance(doc, dict) and VOLATILE_KEYS.intersection(doc):
        doc = {k: v for k, v in doc.items() if k not in VOLATILE_KEYS}
    try:
        canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except RecursionError:
        raise InvalidPayload(f"body nests deeper than {MAX_DEPTH} levels") from None
    try:
        return hashlib.sha256(f"{provider}\n{canonical}".encode()).digest()[:16]
    except UnicodeEncodeError:
        # A lone surrogate escape ("\ud800") is valid JSON but no text: nothing could store it.
        raise InvalidPayload("body holds a lone UTF-16 surrogate escape") from None


def load_json_object(body: bytes | str, what: str) -> dict:
    """Decode a JSON object or raise InvalidPayload saying why.

    Bodies must be UTF-8: json.loads would also take UTF-16/32 bytes, which could then not
    be stored as the text they claim to be.
    """
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InvalidPayload(f"body is not UTF-8: {e.reason} at byte {e.start}") from None
    try:
        doc = json.loads(body)
    except RecursionError:
        raise InvalidPayload(f"body nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as e:  # UnicodeDecodeError is a ValueError
        raise InvalidPayload(f"body is not JSON: {str(e)[:120]}") from e
    if not isinstance(doc, dict):
        raise InvalidPayload(f"body is JSON but not {what}: expected an object")
    # Nesting needs an opening bracket per level: a body with few cannot be too deep, and
    # counting them is far cheaper than walking the document.
    if body.count("{") + body.count("[") > MAX_DEPTH and _depth(doc) > MAX_DEPTH:
        raise InvalidPayload(f"body nests deeper than {MAX_DEPTH} levels")
    return doc


def _depth(doc: Any) -> int:
    """Return how deep containers nest in `doc` (without recursing, whatever the depth)."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict):
            value = value.values()
        elif not isinstance(value, list):
            continue
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            break
        stack.extend((v, level + 1) for v in value)
    return deepest


def body_text(body: bytes | str) -> str:
    """Return the body as text for storage (parsing already proved it is UTF-8)."""
    return body.decode("utf-8") if isinstance(body, bytes) else body


_TIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.:](\d{1,6}))?(Z|[+-]\d{2}:?\d{2})?$"
)


def parse_time(value: Any) -> str | None:
    """Read a provider timestamp leniently; return ISO 8601 UTC with milliseconds, or None.

    Accepts `2017-03-20T07:49:17Z`, the `2024-04-10T01:37:14:627Z` form (a colon before
    the milliseconds, as on VOD's ImageUploadComplete page), fractions, offsets, and Unix
    seconds or milliseconds (numbers or digit strings). Anything else is None: a notice is
    not refused for a bad clock field.
    """
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if abs(value) >= 100_000_000_000:  # milliseconds: seconds reach this in year 5138
            value = value / 1000
        try:
            moment = datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    elif isinstance(value, str):
        m = _TIME.match(value.strip())
        if not m:
            return None
        y, mo, d, h, mi, s, frac, tz = m.groups()
        tzinfo = UTC
        if tz and tz != "Z":
            offset = timedelta(hours=int(tz[1:3]), minutes=int(tz[-2:]))
            tzinfo = timezone(offset if tz[0] == "+" else -offset)
        try:
            moment = datetime(
                int(y),
                int(mo),
                int(d),
                int(h),
                int(mi),
                int(s),
                int((frac or "0").ljust(6, "0")),
                tzinfo=tzinfo,
            ).astimezone(UTC)
        except (ValueError, OverflowError):
            return None
    else:
        return None
    # The ledger's timestamp form: ISO 8601 UTC with milliseconds, `2026-11-21T05:35:21.123Z`.
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def earliest(values: Any) -> str | None:
    """Return the earliest of provider timestamps (any form parse_time reads), or None."""
    moments = [m for m in (parse_time(v) for v in values) if m]
    return min(moments) if moments else None


def text(value: Any) -> str | None:
    """Return a provider field as a non-empty string, or None (numbers become text)."""
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    value = str(value).strip()
    return value or None


def as_dict(value: Any) -> dict:
    """Return a provider field that should be a JSON object, or {} when it is not one."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list:
    """Return a provider field that should be a JSON array, or [] when it is not one."""
    return value if isinstance(value, list) else []


def truthy(value: Any) -> bool:
    """Read a flag sent as `true`, `"true"`, `"True"`, `1` or `"1"`."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return value is True or (isinstance(value, int) and value == 1)


def compact(mapping: dict) -> dict:
    """Drop keys whose value is None, to keep output objects to what the provider gave."""
    return {k: v for k, v in mapping.items() if v is not None}
