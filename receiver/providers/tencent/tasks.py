"""How a Tencent VOD task reports its outcome, in either API generation.

A task object (API 3.0 `EditMediaTask`, a 2017 `TranscodeTask2017`, a v2 `data` object...)
says how it went in up to four places: a status word, an integer error code, a newer string
error code, and the status or error code of each nested element (files, snapshots,
subtasks). Any failure in any of these places fails the task; the task succeeds only when
it is finished and no place reports a failure.
"""

from collections.abc import Iterable, Mapping
from typing import Any

from .. import base as states
from ..base import text

# Status words. Everything not listed is read as "still running": an unknown word never
# settles a job, its deadline or a poll does.
DONE = frozenset({"FINISH", "FINISHED", "SUCCESS", "SUCCEED", "SUCCEEDED", "COMPLETE", "DONE"})
FAILED = frozenset({"FAIL", "FAILED", "FAILURE", "ERROR", "ABORTED", "ABORT"})
RUNNING = frozenset({"PROCESSING", "WAITING", "RUNNING"})

_BULKY = frozenset(
    {
        "VideoStreamSet",
        "AudioStreamSet",
        "videoStreamList",
        "audioStreamList",
        "MetaData",
        "metaData",
        "MediaBasicInfo",
    }
)
URL_KEYS = (
    "Url",
    "url",
    "FileUrl",
    "fileUrl",
    "MediaUrl",
    "CoverUrl",
    "imageUrl",
    "WechatUrl",
    "WebVttUrl",
    "webVttUrl",
)


def get(obj: Any, *keys: str) -> Any:
    """Return the first present, non-null value among `keys` of a dict (any casing given)."""
    if not isinstance(obj, Mapping):
        return None
    for key in keys:
        if obj.get(key) is not None:
            return obj[key]
    return None


def path(obj: Any, dotted: str) -> Any:
    """Follow `Input.FileId`-style paths through dicts; None where one is missing."""
    for key in dotted.split("."):
        obj = obj.get(key) if isinstance(obj, Mapping) else None
    return obj


def error_code(obj: Any) -> str | None:
    """Return the error an object reports, or None when it reports none.

    `ErrCodeExt` (the newer code, empty on success) wins over `ErrCode`/`errCode` (0 on
    success). For v2 objects an integer `status` is an error code too; a status *word*
    is not an error code and is read by `status_word`.
    """
    ext = text(get(obj, "ErrCodeExt", "errCodeExt"))
    if ext is not None:
        return ext
    for key in ("ErrCode", "errCode", "ErrorCode", "errorCode"):
        code = text(get(obj, key))
        if code is not None and code not in ("0", "0.0"):
            return code
    status = get(obj, "status", "Status")
    if isinstance(status, (int, float)) and not isinstance(status, bool) and status != 0:
        return text(status)
    if isinstance(status, str) and _is_number(status) and float(status) != 0:
        return status.strip()
    return None


def status_word(obj: Any) -> str | None:
    """Return an object's status word in upper case; numbers (v2 codes) are not words."""
    value = get(obj, "Status", "status")
    if not isinstance(value, str) or _is_number(value):
        return None
    return value.strip().upper() or None


def message(obj: Any) -> str | None:
    """Return the provider's error message of an object, if any."""
    return text(get(obj, "Message", "message", "ErrMsg", "errMsg", "msg"))


def part_failed(part: Any) -> bool:
    """Tell whether a nested element (a file, a snapshot, a subtask) of a finished task did
    not succeed: an error code, or a status word other than a success word."""
    if not isinstance(part, Mapping):
        return False
    word = status_word(part)
    return error_code(part) is not None or (word is not None and word not in DONE)


def settle(task: Mapping, parts: Iterable[Any] = ()) -> dict:
    """Return state/error_code/error_message of a task object and its nested elements.

    A non-zero error code is a failure whatever the status word says. A task without any
    status word (the 2017 `*Task2017` objects, most v2 events) is finished by being sent.
    """
    parts = [p for p in parts if isinstance(p, Mapping)]
    word = status_word(task)
    code = error_code(task)
    if code is not None or word in FAILED:
        return {
            "state": states.FAILED,
            "error_code": code or word,
            "error_message": message(task) or f"the task reported {code or word}",
        }
    if word is not None and word not in DONE:
        return {"state": states.PROCESSING}
    bad = [p for p in parts if part_failed(p)]
    if not bad:
        return {"state": states.SUCCEEDED}
    first = bad[0]
    return {
        "state": states.PARTIAL if len(bad) < len(parts) else states.FAILED,
        "error_code": error_code(first) or status_word(first),
        "error_message": message(first) or "a file of the task did not succeed",
    }


def output(obj: Any) -> dict | None:
    """Keep an output as the provider gave it, minus bulky metadata, plus a `url` key."""
    if isinstance(obj, str):
        return {"url": obj}
    if not isinstance(obj, Mapping):
        return None
    out = {k: v for k, v in obj.items() if k not in _BULKY and v is not None}
    url = next((obj[k] for k in URL_KEYS if isinstance(obj.get(k), str) and obj[k]), None)
    if url and "url" not in out:
        out["url"] = url
    return out


def outputs(values: Iterable[Any]) -> tuple:
    """Flatten output objects and lists of them into a tuple of output dicts."""
    found = []
    for value in values:
        for item in value if isinstance(value, list) else [value]:
            out = output(item)
            if out:
                found.append(out)
    return tuple(found)


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True
