"""Tencent VOD legacy v2 events (`version`/`eventType`/`data`, lowerCamel fields).

A v2 event can report a failure in five places, and any one of them fails the job: the
envelope's `status`/`errCode` (the oldest pull format), `data.status` (an integer error
code, except in ProcedureStateChanged where it is a word), `data.errCode`, the `status` or
`errCode` of each element of `data.fileInfo` (ClipComplete: one object; ConcatComplete and
FileDeleted: a list) and of `data.picInfo`, and the status of each subtask of a task flow.

Some documented samples put API 3.0 fields (`TaskId`, `FileId`, `Status`) inside the v2
envelope; both casings are read.
"""

from .. import base as states
from ..base import InvalidPayload, compact, text
from .procedure import v2_flow
from .tasks import DONE, RUNNING, error_code, get, message, outputs, settle, status_word

# eventType -> (kind, keys of the results, keys of elements with their own status).
# The kinds are those of the API 3.0 twins, so both land on the same job.
EVENTS = {
    "PullComplete": ("pull", ("fileUrl", "FileUrl"), ()),
    "TranscodeComplete": ("transcode", ("playSet", "PlayInfoSet"), ()),
    "ConcatComplete": ("concat", ("fileInfo", "FileInfoSet"), ("fileInfo", "FileInfoSet")),
    "ClipComplete": ("clip", ("fileInfo", "FileInfo"), ("fileInfo", "FileInfo")),
    "CreateImageSpriteComplete": (
        "image_sprite",
        ("imageSpriteUrl", "ImageSpriteUrlSet", "webVttUrl"),
        (),
    ),
    "CreateSnapshotByTimeOffsetComplete": (
        "snapshot",
        ("picInfo", "SnapshotInfoSet"),
        ("picInfo", "SnapshotInfoSet"),
    ),
}
NO_JOB = frozenset({"FileDeleted"})  # reports on media, not on a task


def parse(doc: dict) -> dict:
    """Return the Event fields of a v2 event (`doc` has `eventType` and a `data` object)."""
    data, event_type = doc["data"], doc["eventType"]
    if event_type == "ProcedureStateChanged":
        fields = v2_flow(data)
        envelope = _failure(doc)
        if envelope is not None:
            fields |= {
                "state": states.FAILED,
                "error_code": envelope,
                "error_message": message(doc) or message(data),
            }
        return fields
    if event_type == "NewFileUpload":
        return _upload(doc, data)
    if event_type not in EVENTS:
        return {}  # FileDeleted and unknown types: stored, tied to no job
    kind, results, part_keys = EVENTS[event_type]
    task_id = text(get(data, "vodTaskId", "TaskId"))
    if task_id is None:
        raise InvalidPayload(f"v2 {event_type} without vodTaskId")
    parts = []
    for key in part_keys:
        found = data.get(key)
        parts.extend(found if isinstance(found, list) else [found])
    return {
        "kind": kind,
        "provider_job_id": task_id,
        "media_id": text(get(data, "fileId", "srcFileId", "FileId", "SrcFileId")),
        "outputs": outputs(data.get(k) for k in results),
        **_outcome(doc, data, parts),
    }


def _failure(obj: dict) -> str | None:
    """Return the failure a v2 envelope or `data` reports: an error code, or a status word
    that is neither success nor progress (v2 completion events have no other words)."""
    code = error_code(obj)
    if code is not None:
        return code
    word = status_word(obj)
    return word if word is not None and word not in DONE | RUNNING else None


def _outcome(doc: dict, data: dict, parts: list) -> dict:
    """Settle from the envelope, then `data`, then the nested elements."""
    for obj in (doc, data):
        failure = _failure(obj)
        if failure is not None:
            return {
                "state": states.FAILED,
                "error_code": failure,
                "error_message": message(obj) or message(data) or f"the event reported {failure}",
            }
    return settle(data, parts)


def _upload(doc: dict, data: dict) -> dict:
    """NewFileUpload: an upload job of the file; no task id of its own."""
    url = text(get(data, "fileUrl", "FileUrl"))
    return {
        "kind": "upload",
        "media_id": text(get(data, "fileId", "FileId")),
        "outputs": (compact({"url": url, "name": text(data.get("fileName"))}),) if url else (),
        **_outcome(doc, data, []),
    }
