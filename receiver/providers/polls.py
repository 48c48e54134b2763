"""Provider status answers (from `reconcile`) turned into Events, like any other notice.

One function per status API. Each returns an Event (recorded with source `poll`) or None
when the answer says nothing about the job's state. The dedup key covers the answer minus
its RequestId, so an unchanged answer is a duplicate of the first one and changes nothing.
Task flows reuse the callback parser: DescribeTaskDetail's `ProcedureTask` is the v3
`ProcedureStateChangeEvent`, and GetTaskInfo's `data` the v2 callback's `data`.
Reference: aliyun.md §1.11, §4.3, §5; tencent.md §1.5, §4.6.
"""

import dataclasses
import json
from typing import Any

from . import aliyun_mps, tencent_vod
from . import base as states
from .base import Event, InvalidPayload, compact, dedup_key, parse_time, text

VOLATILE = frozenset({"RequestId", "requestId"})

# VOD transcode task status -> ledger state (GetTranscodeTask / ListTranscodeTask).
TRANSCODE_TASK_STATES = {
    "processing": states.PROCESSING,
    "partial": states.PROCESSING,  # some jobs done, others still running
    "completeallsucc": states.SUCCEEDED,
    "completeallfail": states.FAILED,
    "completepartialsucc": states.PARTIAL,
}
# Media-search protocol `PreprocessStatus` of a video (UNCONFIRMED in GetVideoInfo answers).
PREPROCESS_STATES = {
    "preprocessing": states.PROCESSING,
    "preprocesssucceed": states.SUCCEEDED,
    "preprocessfailed": states.FAILED,
}
EDGE_STATES = {"0": states.STOPPED, "1": states.RUNNING}
TASK_STATES = {"WAITING": "submitted", "PROCESSING": states.PROCESSING}


def _event(provider: str, service: str, api: str, answer: dict, **fields: Any) -> Event:
    """Build a poll Event; the payload is the answer as received."""
    stable = {k: v for k, v in answer.items() if k not in VOLATILE}
    return Event(
        provider=provider,
        service=service,
        event_type=api,
        payload=json.dumps(answer, ensure_ascii=False, sort_keys=True),
        dedup_key=dedup_key(f"poll:{provider}_{service}:{api}", stable),
        **fields,
    )


def _loads(value: Any) -> Any:
    """Decode a JSON string field; the MPS docs print a full-width colon in one sample."""
    if not isinstance(value, str) or not value.strip():
        return value
    for candidate in (value, value.replace("\uff1a", ":")):
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    return value


def vod_video(answer: dict) -> Event | None:
    """GetVideoInfo for a preprocess job: the video's `PreprocessStatus`, when given."""
    video = answer.get("Video") if isinstance(answer.get("Video"), dict) else {}
    state = PREPROCESS_STATES.get((text(video.get("PreprocessStatus")) or "").lower())
    if state is None:
        return None
    return _event(
        "aliyun",
        "vod",
        "GetVideoInfo",
        answer,
        kind="preprocess",
        media_id=text(video.get("VideoId")),
        state=state,
        preprocess=state == states.SUCCEEDED,
        occurred_at=parse_time(video.get("ModificationTime")),
    )


def vod_transcode_task(answer: dict) -> Event | None:
    """GetTranscodeTask: the task's status, and one output per transcode job."""
    task = answer.get("TranscodeTask") if isinstance(answer.get("TranscodeTask"), dict) else {}
    state = TRANSCODE_TASK_STATES.get((text(task.get("TaskStatus")) or "").lower())
    if state is None:
        return None
    jobs = [j for j in task.get("TranscodeJobInfoList") or [] if isinstance(j, dict)]
    outputs = []
    for job in jobs:
        out = dict(job.get("OutputFile") or {})
        out.update(
            compact(
                {
                    "definition": job.get("Definition"),
                    "job_id": job.get("TranscodeJobId"),
                    "status": job.get("TranscodeJobStatus"),
                    "url": out.get("OutputFileUrl"),
                }
            )
        )
        outputs.append(out)
    failed = next(
        (j for j in jobs if (text(j.get("TranscodeJobStatus")) or "").endswith("Fail")), {}
    )
    return _event(
        "aliyun",
        "vod",
        "GetTranscodeTask",
        answer,
        kind="transcode",
        media_id=text(task.get("VideoId")),
        state=state,
        outputs=tuple(outputs),
        error_code=text(failed.get("ErrorCode")),
        error_message=text(failed.get("ErrorMessage")),
        occurred_at=parse_time(task.get("CompleteTime")),
    )


def mps_iproduction(answer: dict) -> Event | None:
    """QueryIProductionJob: `State`, and `Result` (JSON text whose `Data` is JSON text too)."""
    state = aliyun_mps.state_of(answer.get("State"))
    job_id = text(answer.get("JobId"))
    if state is None or job_id is None:
        return None
    result = _loads(answer.get("Result"))
    result = result if isinstance(result, dict) else {}
    data = _loads(result.get("Data"))
    items = data.get("result") if isinstance(data, dict) else data
    if not isinstance(items, list):
        items = result.get("Details") if isinstance(result.get("Details"), list) else []
    failed = state == states.FAILED
    return _event(
        "aliyun",
        "mps",
        "QueryIProductionJob",
        answer,
        kind="iproduction",
        provider_job_id=job_id,
        state=state,
        outputs=tuple(i if isinstance(i, dict) else {"value": i} for i in items),
        error_code=text(result.get("Code")) if failed else None,
        error_message=text(result.get("Message")) if failed else None,
    )


def live_edge_job(answer: dict) -> Event | None:
    """GetEdgeTranscodeJob: `Status` "1" is running, "0" is stopped (the newest word wins)."""
    job = answer.get("Job") if isinstance(answer.get("Job"), dict) else {}
    state = EDGE_STATES.get(text(job.get("Status")) or "")
    if state is None or not text(job.get("JobId")):
        return None
    moments = [
        t for t in (parse_time(job.get("LastStartAt")), parse_time(job.get("LastStopAt"))) if t
    ]
    return _event(
        "aliyun",
        "live",
        "GetEdgeTranscodeJob",
        answer,
        kind="edge_transcode",
        provider_job_id=text(job.get("JobId")),
        state=state,
        occurred_at=max(moments) if moments else None,
    )


def _procedure(api: str, answer: dict, doc: dict, status: str) -> Event | None:
    """Settle a task flow with the callback parser, then make it a poll Event."""
    try:
        parsed = tencent_vod.parse_doc(doc, "")
    except InvalidPayload:
        return None
    fields = {}
    if status in TASK_STATES:
        fields["state"] = TASK_STATES[status] if parsed.state != states.FAILED else parsed.state
    elif status == "ABORTED":
        fields = {
            "state": states.FAILED,
            "error_code": parsed.error_code or "ABORTED",
            "error_message": parsed.error_message or "the task flow was aborted",
        }
    base = _event("tencent", "vod", api, answer)
    return dataclasses.replace(
        parsed, event_type=base.event_type, payload=base.payload, dedup_key=base.dedup_key, **fields
    )


def tencent_task_detail(answer: dict) -> Event | None:
    """DescribeTaskDetail: `Status` WAITING/PROCESSING/FINISH/ABORTED; `ProcedureTask`."""
    status = (text(answer.get("Status")) or "").upper()
    task = answer.get("ProcedureTask")
    if not isinstance(task, dict) or not status:
        return None
    settled = status in ("FINISH", "ABORTED")
    task = dict(task, Status="FINISH" if settled else task.get("Status") or status)
    doc = {"EventType": "ProcedureStateChanged", "ProcedureStateChangeEvent": task}
    return _procedure("DescribeTaskDetail", answer, doc, status)


def tencent_v2_task(answer: dict) -> Event | None:
    """GetTaskInfo (v2): top-level `status`, and `data` as in the v2 callback."""
    data = answer.get("data")
    if not isinstance(data, dict):
        return None
    status = (text(answer.get("status")) or text(data.get("status")) or "").upper()
    status = "FINISH" if status == "FINISHED" else status  # the doc table says FINISHED
    if not status:
        return None
    settled = status in ("FINISH", "ABORTED")
    data = dict(data, status="FINISH" if settled else data.get("status") or status)
    doc = {"version": "4.0", "eventType": "ProcedureStateChanged", "data": data}
    return _procedure("GetTaskInfo", answer, doc, status)
