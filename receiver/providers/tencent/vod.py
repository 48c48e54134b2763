"""Tencent Cloud VOD events: legacy v2 (`version`/`eventType`/`data`) and API 3.0 (`EventType`).

The same parser serves HTTP callbacks and pulled (reliable-mode) events. Reading the events
themselves is left to `tencent_v2` (legacy) and `tencent_v3_tasks` (API 3.0 task events);
this module detects the format, checks the API 3.0 `Sign`/`T` and builds the Event.
"""

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from .. import base as states
from ..base import (
    Event,
    HeaderLookup,
    InvalidPayload,
    InvalidSignature,
    body_text,
    compact,
    dedup_key,
    load_json_object,
    text,
)
from . import v2 as tencent_v2
from . import v3_tasks as tencent_v3_tasks

NAME = "tencent_vod"
PROVIDER, SERVICE = "tencent", "vod"
SIGNATURE_SETTINGS = ("TENCENT_VOD_SIGN_KEY",)
SKEW_S = 300  # clock skew tolerated around T
MAX_AHEAD_S = 600 + SKEW_S  # T is the expiry, 10 minutes after sending by default


def signature_secret(config: Mapping[str, Any]) -> str | None:
    """Return the v3 callback SignKey, or None when not configured."""
    return config.get("TENCENT_VOD_SIGN_KEY") or None


def _sign_fields(body: bytes) -> tuple[Any, Any] | None:
    """Return (Sign, T) from the body's top level, accepting either casing; None if absent."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or not ("Sign" in doc or "sign" in doc):
        return None
    return doc.get("Sign", doc.get("sign")), doc.get("T", doc.get("t"))


def has_signature(body: bytes, headers: HeaderLookup) -> bool:
    """Tell whether the body carries a v3 `Sign`."""
    return _sign_fields(body) is not None


def sign(sign_key: str, expiry: int | str) -> str:
    """Compute the v3 callback Sign: hex MD5 of SignKey followed by T."""
    return hashlib.md5(f"{sign_key}{expiry}".encode()).hexdigest()


def verify(body: bytes, headers: HeaderLookup, secret: str, now: float | None = None) -> None:
    """Raise InvalidSignature unless `Sign` = MD5(SignKey + T) and T has not passed."""
    fields = _sign_fields(body)
    if fields is None:
        raise InvalidSignature("missing Sign")
    given, expiry = fields
    expiry = str(expiry) if isinstance(expiry, (int, str)) and not isinstance(expiry, bool) else ""
    # isdigit() alone also takes "²" or Arabic-Indic digits, which int() refuses or reads
    if not isinstance(given, str) or not (expiry.isascii() and expiry.isdigit()):
        raise InvalidSignature("Sign or T missing or malformed")
    if len(expiry) > 12:
        raise InvalidSignature("Sign or T missing or malformed")
    now = time.time() if now is None else now
    if now > int(expiry) + SKEW_S:
        raise InvalidSignature("T has passed: the signature expired", stale=True)
    if int(expiry) > now + MAX_AHEAD_S:
        raise InvalidSignature("T is too far in the future", stale=True)
    # bytes: compare_digest refuses str with non-ASCII characters (TypeError -> 500)
    given_bytes = given.strip().lower().encode("utf-8", "replace")
    if not hmac.compare_digest(sign(secret, expiry).encode(), given_bytes):
        raise InvalidSignature("Sign does not match the configured SignKey")


def parse(body: bytes | str, headers: HeaderLookup | None = None) -> Event:
    """Turn one Tencent VOD notice (v2 or API 3.0) into an Event."""
    return parse_doc(load_json_object(body, "a Tencent VOD event"), body_text(body))


def parse_doc(doc: dict, payload: str) -> Event:
    """Normalize an already decoded event; detect the format from its keys."""
    if isinstance(doc.get("EventType"), str):
        event_type, fields = doc["EventType"], _v3(doc)
    elif isinstance(doc.get("eventType"), str) and isinstance(doc.get("data"), dict):
        event_type, fields = doc["eventType"], tencent_v2.parse(doc)
    else:
        raise InvalidPayload(
            "not a Tencent VOD event: neither v2 (version/eventType/data) nor API 3.0 (EventType)"
        )
    return Event(
        provider=PROVIDER,
        service=SERVICE,
        event_type=event_type,
        payload=payload,
        dedup_key=dedup_key(NAME, doc),
        **fields,
    )


# -- API 3.0 ------------------------------------------------------------------------------

# MediaCastStatusChanged: a media cast is a long-running stream, like a live edge job.
_CAST_STATES = {
    "WORKING": states.RUNNING,
    "STOPPED": states.STOPPED,
    "IDLE": states.STOPPED,
    "SCHEDULED": "submitted",
}


def _v3(doc: dict) -> dict:
    """Read an API 3.0 event: a task event by its row in the task table, or an upload."""
    event_type = doc["EventType"]
    spec = tencent_v3_tasks.spec_of(event_type, doc)
    if spec is not None:
        return tencent_v3_tasks.read(spec, doc.get(spec.key))
    if event_type == "NewFileUpload" and isinstance(doc.get("FileUploadEvent"), dict):
        upload = doc["FileUploadEvent"]
        info = upload.get("MediaBasicInfo")
        info = info if isinstance(info, dict) else {}
        url = text(info.get("MediaUrl"))
        return {
            "kind": "upload",
            "media_id": text(upload.get("FileId")),
            "state": states.SUCCEEDED,
            "outputs": (compact({"url": url, "name": text(info.get("Name"))}),) if url else (),
        }
    cast = doc.get("MediaCastStatusChangedEvent")
    if event_type == "MediaCastStatusChanged" and isinstance(cast, dict):
        state = _CAST_STATES.get((text(cast.get("Status")) or "").upper())
        if text(cast.get("CastId")) is None or state is None:
            raise InvalidPayload("MediaCastStatusChanged without a CastId or a known Status")
        return {"kind": "media_cast", "provider_job_id": text(cast["CastId"]), "state": state}
    return {}  # FileDeleted, RestoreMediaComplete, PersistenceComplete...: tied to no job
