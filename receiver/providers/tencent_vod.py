"""Tencent Cloud VOD events: legacy v2 (`version`/`eventType`/`data`) and API 3.0 (`EventType`).

Reference: shared/reference/tencent.md §0, §2.2 (v2 ProcedureStateChanged), §4.4 (v3),
§4.8 (Sign/T). The same parser serves HTTP callbacks and pulled (reliable-mode) events.
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
)

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


def has_signature(body: bytes, headers: Mapping[str, str]) -> bool:
    """Tell whether the body carries a v3 `Sign`."""
    return _sign_fields(body) is not None


def sign(sign_key: str, expiry: int | str) -> str:
    """Compute the v3 callback Sign: hex MD5 of SignKey followed by T."""
    return hashlib.md5(f"{sign_key}{expiry}".encode()).hexdigest()


def verify(body: bytes, headers: Mapping[str, str], secret: str, now: float | None = None) -> None:
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
        raise InvalidSignature("T has passed: the signature expired")
    if int(expiry) > now + MAX_AHEAD_S:
        raise InvalidSignature("T is too far in the future")
    # bytes: compare_digest refuses str with non-ASCII characters (TypeError -> 500)
    given_bytes = given.strip().lower().encode("utf-8", "replace")
    if not hmac.compare_digest(sign(secret, expiry).encode(), given_bytes):
        raise InvalidSignature("Sign does not match the configured SignKey")


def parse(body: bytes | str, headers: Mapping[str, str] | None = None) -> Event:
    """Turn one Tencent VOD notice (v2 or API 3.0) into an Event."""
    return parse_doc(load_json_object(body, "a Tencent VOD event"), body_text(body))


def parse_doc(doc: dict, payload: str) -> Event:
    """Normalize an already decoded event; detect the format from its keys."""
    if isinstance(doc.get("EventType"), str):
        event_type, fields = doc["EventType"], _v3(doc)
    elif isinstance(doc.get("eventType"), str) and isinstance(doc.get("data"), dict):
        event_type, fields = doc["eventType"], _v2(doc)
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


# -- task flows ---------------------------------------------------------------------------

_V3_RESULT_SETS = (
    "MediaProcessResultSet",
    "AiContentReviewResultSet",
    "AiAnalysisResultSet",
    "AiRecognitionResultSet",
)
_V2_RESULT_LISTS = ("processTaskList", "contentReviewList", "aIAnalysisList")
_BULKY = frozenset({"VideoStreamSet", "AudioStreamSet", "videoStreamList", "audioStreamList"})
_URL_KEYS = ("Url", "url", "CoverUrl", "imageUrl", "WebVttUrl", "webVttUrl")


def _subtask_v3(item: dict) -> dict:
    """A v3 result: `Type` plus one typed sub-object (TranscodeTask...) holding Status."""
    sub = next((v for v in item.values() if isinstance(v, dict) and "Status" in v), item)
    code = text(sub.get("ErrCodeExt")) or (
        None if sub.get("ErrCode") in (0, "0", None) else text(sub.get("ErrCode"))
    )
    return {
        "type": text(item.get("Type")),
        "status": text(sub.get("Status")),
        "code": code,
        "message": text(sub.get("Message")),
        "output": sub.get("Output"),
        "finished": parse_time(sub.get("FinishTime")),
    }


def _subtask_v2(item: dict) -> dict:
    """A v2 subtask: taskType/status/errCode/message/input/output on the item itself."""
    code = None if item.get("errCode") in (0, "0", None) else text(item.get("errCode"))
    return {
        "type": text(item.get("taskType")),
        "status": text(item.get("status")),
        "code": code,
        "message": text(item.get("message")),
        "output": item.get("output"),
        "finished": None,
    }


def _procedure(task: dict, keys: dict, subtasks: list[dict], media: list[dict]) -> dict:
    """Settle a task flow from its status, its top-level error code and every subtask."""
    task_id = text(task.get(keys["task"])) or text(task.get("TaskId"))
    status = (text(task.get(keys["status"])) or "").upper()
    if task_id is None or not status:
        raise InvalidPayload("ProcedureStateChanged without a task id or status")
    outputs = []
    for sub in media:
        out = {"type": sub["type"], "status": sub["status"]}
        if isinstance(sub["output"], dict):
            out.update(
                (k, v) for k, v in sub["output"].items() if k not in _BULKY and v is not None
            )
            url = next((sub["output"][k] for k in _URL_KEYS if sub["output"].get(k)), None)
            if url and "url" not in out:
                out["url"] = url
        if sub["code"] or sub["message"] and sub["status"] != "SUCCESS":
            out.update(error_code=sub["code"], error_message=sub["message"])
        outputs.append(out)
    fields = {
        "kind": "procedure",
        "provider_job_id": task_id,
        "media_id": text(task.get(keys["file"])),
        "outputs": tuple(outputs),
    }
    finished = [s["finished"] for s in subtasks if s["finished"]]
    fields["occurred_at"] = max(finished) if finished else None
    if status != "FINISH":
        fields["state"] = states.FAILED if status == "ABORTED" else states.PROCESSING
        return fields
    top_code = task.get(keys["code"])
    ok = [s for s in subtasks if (s["status"] or "").upper() == "SUCCESS" and not s["code"]]
    bad = [s for s in subtasks if s not in ok]
    if top_code not in (0, "0", None, ""):
        fields.update(
            state=states.FAILED,
            error_code=text(top_code),
            error_message=text(task.get(keys["message"])),
        )
    elif bad:
        first = bad[0]
        fields.update(
            state=states.PARTIAL if ok else states.FAILED,
            error_code=first["code"] or (first["status"] or "").upper() or None,
            error_message=first["message"] or f"{first['type']} subtask did not succeed",
        )
    else:
        fields["state"] = states.SUCCEEDED
    return fields


def _v3(doc: dict) -> dict:
    event_type = doc["EventType"]
    if event_type == "ProcedureStateChanged":
        task = doc.get("ProcedureStateChangeEvent")
        if not isinstance(task, dict):
            raise InvalidPayload("ProcedureStateChanged without ProcedureStateChangeEvent")
        sets = {k: [i for i in (task.get(k) or []) if isinstance(i, dict)] for k in _V3_RESULT_SETS}
        subtasks = [_subtask_v3(i) for k in _V3_RESULT_SETS for i in sets[k]]
        media = [_subtask_v3(i) for i in sets["MediaProcessResultSet"]]
        keys = {
            "task": "TaskId",
            "status": "Status",
            "file": "FileId",
            "code": "ErrCode",
            "message": "Message",
        }
        return _procedure(task, keys, subtasks, media)
    if event_type == "NewFileUpload" and isinstance(doc.get("FileUploadEvent"), dict):
        upload = doc["FileUploadEvent"]
        info = (
            upload.get("MediaBasicInfo") if isinstance(upload.get("MediaBasicInfo"), dict) else {}
        )
        url = info.get("MediaUrl")
        return {
            "kind": "upload",
            "media_id": text(upload.get("FileId")),
            "state": states.SUCCEEDED,
            "outputs": ({"url": url, "name": info.get("Name")},) if url else (),
        }
    return {}  # stored and acknowledged, tied to no job


# v2 events other than task flows: kind of job, and where their results are.
_V2_KINDS = {
    "NewFileUpload": ("upload", "fileUrl"),
    "PullComplete": ("pull", "fileUrl"),
    "TranscodeComplete": ("transcode", "playSet"),
    "ConcatComplete": ("concat", "fileInfo"),
    "ClipComplete": ("clip", "fileInfo"),
    "CreateImageSpriteComplete": ("image_sprite", "imageSpriteUrl"),
    "CreateSnapshotByTimeOffsetComplete": ("snapshot", "picInfo"),
}


def _v2(doc: dict) -> dict:
    data, event_type = doc["data"], doc["eventType"]
    if event_type == "ProcedureStateChanged":
        lists = {
            k: [i for i in (data.get(k) or []) if isinstance(i, dict)] for k in _V2_RESULT_LISTS
        }
        subtasks = [_subtask_v2(i) for k in _V2_RESULT_LISTS for i in lists[k]]
        media = [_subtask_v2(i) for i in lists["processTaskList"]]
        keys = {
            "task": "vodTaskId",
            "status": "status",
            "file": "fileId",
            "code": "errCode",
            "message": "message",
        }
        return _procedure(data, keys, subtasks, media)
    if event_type not in _V2_KINDS:
        return {}
    kind, results = _V2_KINDS[event_type]
    status = data.get("status", 0)
    found = data.get(results)
    outputs = found if isinstance(found, list) else ([found] if found else [])
    outputs = tuple({"url": o} if isinstance(o, str) else o for o in outputs)
    return {
        "kind": kind,
        "provider_job_id": text(data.get("vodTaskId")),
        "media_id": text(data.get("fileId")) or text(data.get("srcFileId")),
        "state": states.SUCCEEDED if status in (0, "0") else states.FAILED,
        "error_code": None if status in (0, "0") else text(status),
        "error_message": None if status in (0, "0") else text(data.get("message")),
        "outputs": outputs,
    }
