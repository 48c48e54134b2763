"""ApsaraVideo VOD event notifications (HTTP callbacks and MNS queue messages).

Reference: shared/reference/aliyun.md §1 (events), §2 (X-VOD-SIGNATURE).
"""

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from . import base as states
from .base import (
    Event,
    InvalidPayload,
    InvalidSignature,
    body_text,
    dedup_key,
    load_json_object,
    parse_time,
    text,
    truthy,
)

NAME = "aliyun_vod"
PROVIDER, SERVICE = "aliyun", "vod"
SIGNATURE_SETTINGS = ("ALIYUN_VOD_CALLBACK_URL", "ALIYUN_VOD_AUTH_KEYS")
WINDOW_S = 300  # the docs suggest rejecting timestamps more than 5 minutes off


def signature_secret(config: Mapping[str, Any]) -> tuple[str, list[str]] | None:
    """Return (callback URL, auth keys) when both are configured, else None."""
    url, keys = config.get("ALIYUN_VOD_CALLBACK_URL"), config.get("ALIYUN_VOD_AUTH_KEYS")
    return (url, list(keys)) if url and keys else None


def has_signature(body: bytes, headers: Mapping[str, str]) -> bool:
    """Tell whether the request carries VOD's signature headers at all."""
    return "X-VOD-SIGNATURE" in headers or "X-VOD-TIMESTAMP" in headers


def sign(callback_url: str, timestamp: int | str, key: str) -> str:
    """Compute X-VOD-SIGNATURE: md5 of `<callback URL>|<timestamp>|<key>`, lower-case hex."""
    return hashlib.md5(f"{callback_url}|{timestamp}|{key}".encode()).hexdigest()


def verify(
    body: bytes, headers: Mapping[str, str], secret: tuple[str, list[str]], now: float | None = None
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
        raise InvalidSignature(f"X-VOD-TIMESTAMP is more than {WINDOW_S} s from now")
    matched = False
    for key in keys:
        # bytes: compare_digest refuses str with non-ASCII characters (TypeError -> 500)
        matched |= hmac.compare_digest(
            sign(url, stamp, key).encode(), given.encode("utf-8", "replace")
        )
    if not matched:
        raise InvalidSignature("X-VOD-SIGNATURE does not match any configured auth key")


def parse(body: bytes | str, headers: Mapping[str, str] | None = None) -> Event:
    """Turn one VOD notice into an Event; raise InvalidPayload if it is not one."""
    return parse_doc(load_json_object(body, "an ApsaraVideo VOD event"), body_text(body))


def parse_doc(doc: dict, payload: str) -> Event:
    """Normalize an already decoded VOD event (`payload` is what was received)."""
    event_type = doc.get("EventType")
    if not isinstance(event_type, str) or not event_type.strip():
        raise InvalidPayload("no EventType: not an ApsaraVideo VOD event")
    fields = _PARSERS.get(event_type, _other)(doc)
    return Event(
        provider=PROVIDER,
        service=SERVICE,
        event_type=event_type,
        payload=payload,
        dedup_key=dedup_key(NAME, doc),
        occurred_at=parse_time(doc.get("EventTime")),
        **fields,
    )


def _status(value: Any) -> str | None:
    """Map VOD's `success`/`fail` (any case) to `success`/`fail`; anything else to None."""
    value = (text(value) or "").lower()
    if value in ("success", "succeed", "succeeded", "normal"):
        return "success"
    if value in ("fail", "failed", "failure", "error"):
        return "fail"
    return None


def _outcome(top: str | None, parts: list[dict]) -> str:
    """Settle a job from its top-level status and its parts' (streams, snapshots)."""
    ok = [p for p in parts if _status(p.get("Status")) == "success"]
    bad = [p for p in parts if _status(p.get("Status")) == "fail"]
    if top == "fail":
        return states.FAILED
    if bad:
        return states.PARTIAL if (ok or top == "success") else states.FAILED
    return states.SUCCEEDED


def _error(doc: dict, parts: list[dict]) -> dict:
    """Return the provider's error: the event's own, or the first failed part's."""
    source = (
        doc
        if (doc.get("ErrorCode") or doc.get("ErrorMessage"))
        else next((p for p in parts if _status(p.get("Status")) == "fail"), {})
    )
    return {
        "error_code": text(source.get("ErrorCode")),
        "error_message": text(source.get("ErrorMessage")),
    }


def _output(obj: dict, url_key: str) -> dict:
    """Keep an output as the provider gave it, adding `url` so pages can link to it."""
    out = dict(obj)
    if url_key in obj and "url" not in obj:
        out["url"] = obj[url_key]
    return out


def _list_of_objects(doc: dict, key: str) -> list[dict]:
    value = doc.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidPayload(f"{key} is not a list")
    return [v for v in value if isinstance(v, dict)]


def _video(doc: dict, required: bool = True) -> str | None:
    video = text(doc.get("VideoId"))
    if required and video is None:
        raise InvalidPayload(f"{doc.get('EventType')} without VideoId")
    return video


def _transcode_complete(doc: dict) -> dict:
    """All definitions finished: final for the video's transcode (or preprocess) job."""
    streams = _list_of_objects(doc, "StreamInfos")
    top = _status(doc.get("Status"))
    if top is None and not streams:
        raise InvalidPayload("TranscodeComplete without Status or StreamInfos")
    preprocess = truthy(doc.get("Preprocess"))
    return {
        "kind": "preprocess" if preprocess else "transcode",
        "media_id": _video(doc),
        "state": _outcome(top, streams),
        "preprocess": preprocess,
        "outputs": tuple(_output(s, "FileUrl") for s in streams),
        **_error(doc, streams),
    }


def _stream_transcode_complete(doc: dict) -> dict:
    """One definition finished: progress only, never completion (it comes first for LD)."""
    stream = {
        k: v for k, v in doc.items() if k not in ("EventType", "EventTime", "VideoId", "Extend")
    }
    return {
        "kind": "preprocess" if truthy(doc.get("Preprocess")) else "transcode",
        "media_id": _video(doc),
        "state": states.PROCESSING,
        "outputs": (_output(stream, "FileUrl"),),
    }


def _dynamic_image_complete(doc: dict) -> dict:
    """Result of SubmitDynamicImageJob; DynamicImageJobInfo is a JSON string or an object."""
    info = doc.get("DynamicImageJobInfo")
    if isinstance(info, str):
        try:
            info = json.loads(info)
        except ValueError:
            info = None  # kept in the raw payload; the outcome is in Status anyway
    info = info if isinstance(info, dict) else {}
    top = _status(doc.get("Status")) or _status(info.get("Status"))
    if top is None:
        raise InvalidPayload("DynamicImageComplete without Status")
    return {
        "kind": "dynamic_image",
        "media_id": _video(doc),
        "provider_job_id": text(doc.get("JobId")) or text(info.get("JobId")),
        "state": states.SUCCEEDED if top == "success" else states.FAILED,
        "outputs": (_output(info, "FileURL"),) if info else (),
        **_error(doc, []),
    }


def _snapshot_complete(doc: dict) -> dict:
    """Snapshots (cover, sprite, SubmitSnapshotJob); the doc sample has no VideoId."""
    infos = _list_of_objects(doc, "SnapshotInfos")
    job_id = text(doc.get("JobId")) or next(
        (text(i.get("JobId")) for i in infos if i.get("JobId")), None
    )
    video = _video(doc, required=False)
    outputs = [_output(i, "SnapshotRegular") for i in infos]
    if doc.get("CoverUrl"):
        outputs.insert(0, {"type": "cover", "url": doc["CoverUrl"]})
    return {
        "kind": "snapshot" if (job_id or video) else None,
        "media_id": video,
        "provider_job_id": job_id,
        "state": _outcome(_status(doc.get("Status")), infos),
        "outputs": tuple(outputs),
        **_error(doc, infos),
    }


def _upload(id_key: str, url_key: str, job: bool = False):
    """Uploads (file, image, URL pull) become `upload` jobs, so they are visible too."""

    def parse_upload(doc: dict) -> dict:
        media = text(doc.get(id_key))
        top = _status(doc.get("Status")) or "success"  # FileUploadComplete is only sent on success
        return {
            "kind": "upload" if (media or job) else None,
            "media_id": media,
            "provider_job_id": text(doc.get("JobId")) if job else None,
            "state": states.SUCCEEDED if top == "success" else states.FAILED,
            "outputs": ({"url": doc[url_key], "size": doc.get("Size")},)
            if doc.get(url_key)
            else (),
            **_error(doc, []),
        }

    return parse_upload


def _other(doc: dict) -> dict:
    """Any other event type: stored and acknowledged, tied to no job."""
    return {}


_PARSERS = {
    "TranscodeComplete": _transcode_complete,
    "StreamTranscodeComplete": _stream_transcode_complete,
    "DynamicImageComplete": _dynamic_image_complete,
    "SnapshotComplete": _snapshot_complete,
    "FileUploadComplete": _upload("VideoId", "FileUrl"),
    "UploadByURLComplete": _upload("VideoId", "SourceURL", job=True),
    "ImageUploadComplete": _upload("ImageId", "FileURL"),
}
