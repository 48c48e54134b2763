"""ApsaraVideo VOD event readers: one per event type, each returning Event fields.

Every event that reports on a job (transcode, snapshot, dynamic image, AI jobs, uploads,
analysis, live recording, production) becomes or settles one; events that confirm a
media-management call (DeleteMediaComplete, MediaBaseChangeComplete, CreateAuditComplete)
and unknown types are stored, tied to no job. A failure is read from `Status`, from an
error code (`ErrorCode`, or `Code` on AI events, other than `0`), and from each part's
`Status` (streams, snapshots).
"""

import json
from typing import Any

from .. import base as states
from ..base import InvalidPayload, earliest, text, truthy


def _status(value: Any) -> str | None:
    """Map VOD's `success`/`fail` (any case) to `success`/`fail`; anything else to None."""
    value = (text(value) or "").lower()
    if value in ("success", "succeed", "succeeded", "normal"):
        return "success"
    if value in ("fail", "failed", "failure", "error"):
        return "fail"
    return None


def _code(doc: dict) -> str | None:
    """Return the error code an event reports, or None (`0` is VOD's AI success code)."""
    code = text(doc.get("ErrorCode")) or text(doc.get("Code"))
    return None if code is None or code.lower() in ("0", "ok", "success") else code


def _outcome(top: str | None, parts: list[dict], doc: dict | None = None) -> str:
    """Settle a job from its top-level status, its parts' statuses and its error code.

    Top-level `success` with some failed parts is `partial` (the event's error code then
    describes them); an error code that no failed part explains is a failure.
    """
    ok = [p for p in parts if _status(p.get("Status")) == "success"]
    bad = [p for p in parts if _status(p.get("Status")) == "fail" or _code(p)]
    if top == "fail":
        return states.FAILED
    if bad:
        return states.PARTIAL if (ok or top == "success") else states.FAILED
    if doc is not None and _code(doc):
        return states.FAILED
    return states.SUCCEEDED


def _error(doc: dict, parts: list[dict]) -> dict:
    """Return the provider's error: the event's own, or the first failed part's."""
    failed = [p for p in parts if _status(p.get("Status")) == "fail" or _code(p)]
    source = doc if (_code(doc) or doc.get("ErrorMessage")) else next(iter(failed), {})
    return {
        "error_code": _code(source),
        "error_message": text(source.get("ErrorMessage")) or text(source.get("Message")),
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
        "state": _outcome(top, streams, doc),
        "preprocess": preprocess,
        "outputs": tuple(_output(s, "FileUrl") for s in streams),
        # Each stream says when its transcoding began (newer payloads): the first began the job.
        "started_at": earliest(s.get("StartTime") for s in streams),
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
        "started_at": earliest([doc.get("StartTime")]),
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
        "state": _outcome(top, [], doc),
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
        "state": _outcome(_status(doc.get("Status")), infos, doc),
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
            "state": _outcome(top, [], doc),
            "outputs": ({"url": doc[url_key], "size": doc.get("Size")},)
            if doc.get(url_key)
            else (),
            **_error(doc, []),
        }

    return parse_upload


def _data(value: Any) -> Any:
    """An AI event's `Data`: documented as a JSON string, printed as an object once."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _ai_job(kind: str):
    """AI jobs (review, video DNA, smart tags): JobId, MediaId, Status, Code/Message, Data."""

    def parse_ai(doc: dict) -> dict:
        top = _status(doc.get("Status"))
        job_id = text(doc.get("JobId"))
        if top is None and _code(doc) is None:
            raise InvalidPayload(f"{doc.get('EventType')} without Status")
        data = _data(doc.get("Data"))
        return {
            "kind": kind,
            "provider_job_id": job_id,
            "media_id": text(doc.get("MediaId")),
            "state": _outcome(top, [], doc),
            "outputs": ({"data": data},) if data not in (None, "", {}) else (),
            **_error(doc, []),
        }

    return parse_ai


def _media_job(kind: str, id_key: str, result_keys: tuple[str, ...], started: bool = False):
    """A job known by its media only: analysis, live recording, production.

    `started`: the event says the job began (LiveRecordVideoComposeStart), so success is
    `processing`; the production's own ProduceMediaComplete settles it.
    """

    def parse_media(doc: dict) -> dict:
        top = _status(doc.get("Status"))
        if top is None and _code(doc) is None:
            raise InvalidPayload(f"{doc.get('EventType')} without Status")
        state = _outcome(top, [], doc)
        result = {k: doc[k] for k in result_keys if doc.get(k) is not None}
        return {
            "kind": kind,
            "media_id": _video({"VideoId": doc.get(id_key), "EventType": doc.get("EventType")}),
            "state": states.PROCESSING if started and state == states.SUCCEEDED else state,
            "outputs": (result,) if result else (),
            **_error(doc, []),
        }

    return parse_media


def other(doc: dict) -> dict:
    """Any other event type: stored and acknowledged, tied to no job."""
    return {}


READERS = {
    "TranscodeComplete": _transcode_complete,
    "StreamTranscodeComplete": _stream_transcode_complete,
    "DynamicImageComplete": _dynamic_image_complete,
    "SnapshotComplete": _snapshot_complete,
    "FileUploadComplete": _upload("VideoId", "FileUrl"),
    "UploadByURLComplete": _upload("VideoId", "SourceURL", job=True),
    "ImageUploadComplete": _upload("ImageId", "FileURL"),
    "AttachedMediaUploadComplete": _upload("AttachedMediaId", "FileURL"),
    "AIMediaAuditComplete": _ai_job("ai_media_audit"),
    "AIMediaDNAComplete": _ai_job("ai_media_dna"),
    "AIVideoTagComplete": _ai_job("ai_video_tag"),
    "VideoAnalysisComplete": _media_job(
        "video_analysis", "VideoId", ("Width", "Height", "Duration", "Bitrate", "Fps", "Size")
    ),
    "AddLiveRecordVideoComplete": _media_job(
        "live_record",
        "VideoId",
        ("StreamName", "DomainName", "AppName", "RecordStartTime", "RecordEndTime"),
    ),
    "LiveRecordVideoComposeStart": _media_job(
        "produce_media", "VideoId", ("StreamName", "DomainName", "AppName"), started=True
    ),
    "ProduceMediaComplete": _media_job("produce_media", "MediaId", ("ProjectId",)),
}
