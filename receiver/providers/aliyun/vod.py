"""ApsaraVideo VOD event notifications (HTTP callbacks and MNS queue messages).

This module checks `X-VOD-SIGNATURE` and builds the Event; what each event type means for a
job is in `aliyun_vod_events`.
"""

import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any

from ..base import (
    Event,
    HeaderLookup,
    InvalidPayload,
    InvalidSignature,
    body_text,
    dedup_key,
    load_json_object,
    parse_time,
)
from . import vod_events as aliyun_vod_events

NAME = "aliyun_vod"
PROVIDER, SERVICE = "aliyun", "vod"
SIGNATURE_SETTINGS = ("ALIYUN_VOD_CALLBACK_URL", "ALIYUN_VOD_AUTH_KEYS")
WINDOW_S = 300  # the docs suggest rejecting timestamps more than 5 minutes off


def signature_secret(config: Mapping[str, Any]) -> tuple[str, list[str]] | None:
    """Return (callback URL, auth keys) when both are configured, else None."""
    url, keys = config.get("ALIYUN_VOD_CALLBACK_URL"), config.get("ALIYUN_VOD_AUTH_KEYS")
    return (url, list(keys)) if url and keys else None


def has_signature(body: bytes, headers: HeaderLookup) -> bool:
    """Tell whether the request carries VOD's signature headers at all."""
    return "X-VOD-SIGNATURE" in headers or "X-VOD-TIMESTAMP" in headers


def sign(callback_url: str, timestamp: int | str, key: str) -> str:
    """Compute X-VOD-SIGNATURE: md5 of `<callback URL>|<timestamp>|<key>`, lower-case hex."""
    return hashlib.md5(f"{callback_url}|{timestamp}|{key}".encode()).hexdigest()


def verify(
    body: bytes, headers: HeaderLookup, secret: tuple[str, list[str]], now: float | None = None
) -> None:
    """Raise InvalidSignature unless the headers sign the configured URL with an active key.

    The signature does not cover the body (VOD's scheme); it proves the sender knows a key
    and, with the timestamp window, limits replay. Every key is tried, so the time taken
    does not tell which key matched.
    """
    url, keys = secret
    stamp = (headers.get("X-VOD-TIMESTAMP") or "").strip()
    given = (headers.get("X-VOD-SIGNATURE") or "").strip().lower()
    if not stamp or not given:
        raise InvalidSignature("missing X-VOD-TIMESTAMP or X-VOD-SIGNATURE")
    # isdigit() alone also takes "²" or Arabic-Indic digits, which int() refuses or reads
    if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 12:
        raise InvalidSignature("X-VOD-TIMESTAMP is not Unix seconds")
    now = time.time() if now is None else now
    if abs(now - int(stamp)) > WINDOW_S:
        raise InvalidSignature(f"X-VOD-TIMESTAMP is more than {WINDOW_S} s from now", stale=True)
    matched = False
    for key in keys:
        # bytes: compare_digest refuses str with non-ASCII characters (TypeError -> 500)
        matched |= hmac.compare_digest(
            sign(url, stamp, key).encode(), given.encode("utf-8", "replace")
        )
    if not matched:
        raise InvalidSignature("X-VOD-SIGNATURE does not match any configured auth key")


def parse(body: bytes | str, headers: HeaderLookup | None = None) -> Event:
    """Turn one VOD notice into an Event; raise InvalidPayload if it is not one."""
    return parse_doc(load_json_object(body, "an ApsaraVideo VOD event"), body_text(body))


def parse_doc(doc: dict, payload: str) -> Event:
    """Normalize an already decoded VOD event (`payload` is what was received)."""
    event_type = doc.get("EventType")
    if not isinstance(event_type, str) or not event_type.strip():
        raise InvalidPayload("no EventType: not an ApsaraVideo VOD event")
    fields = aliyun_vod_events.READERS.get(event_type, aliyun_vod_events.other)(doc)
    return Event(
        provider=PROVIDER,
        service=SERVICE,
        event_type=event_type,
        payload=payload,
        dedup_key=dedup_key(NAME, doc),
        occurred_at=parse_time(doc.get("EventTime")),
        **fields,
    )
