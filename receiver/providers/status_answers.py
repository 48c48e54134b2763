"""Provider status answers (from `reconcile`) turned into Events, like any other notice.

One function per status API (the table that says which is which, and how each API is
called and paced, is receiver/background/status_apis.py; it passes the API's name, the
event's type). Each returns an Event (recorded with source `poll`) or None when the answer
says nothing about the job's state. The dedup key covers the answer minus
its RequestId, so an unchanged answer is a duplicate of the first one and changes nothing.
Tencent answers reuse the callback readers: DescribeTaskDetail's task object of each
`TaskType` is the event object of the matching API 3.0 event (one table,
`tencent_v3_tasks.SPECS`, reads both), and GetTaskInfo's `data` is the v2 callback's `data`.
"""

import json
from collections.abc import Callable
from typing import Any

from . import base as states
from .aliyun import mps as aliyun_mps
from .base import (
    Event,
    InvalidPayload,
    as_dict,
    as_list,
    compact,
    dedup_key,
    earliest,
    parse_time,
    text,
)
from .tencent import v3_tasks as tencent_v3_tasks
from .tencent.procedure import v2_flow
from .tencent.tasks import FAILED

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


def vod_video(answer: dict, api: str) -> Event | None:
    """GetVideoInfo for a preprocess job: the video's `PreprocessStatus`, when given."""
    video = as_dict(answer.get("Video"))
    state = PREPROCESS_STATES.get((text(video.get("PreprocessStatus")) or "").lower())
    if state is None:
        return None
    return _event(
        "aliyun",
        "vod",
        api,
        answer,
        kind="preprocess",
        media_id=text(video.get("VideoId")),
        state=state,
        preprocess=state == states.SUCCEEDED,
        occurred_at=parse_time(video.get("ModificationTime")),
    )


def vod_transcode_task(answer: dict, api: str) -> Event | None:
    """GetTranscodeTask: the task's status, and one output per transcode job."""
    task = as_dict(answer.get("TranscodeTask"))
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
        api,
        answer,
        kind="transcode",
        media_id=text(task.get("VideoId")),
        state=state,
        outputs=tuple(outputs),
        error_code=text(failed.get("ErrorCode")),
        error_message=text(failed.get("ErrorMessage")),
        occurred_at=parse_time(task.get("CompleteTime")),
        started_at=parse_time(task.get("CreationTime")),
    )


def mps_iproduction(answer: dict, api: str) -> Event | None:
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
        items = as_list(result.get("Details"))
    failed = state == states.FAILED
    return _event(
        "aliyun",
        "mps",
        api,
        answer,
        kind="iproduction",
        provider_job_id=job_id,
        state=state,
        outputs=tuple(i if isinstance(i, dict) else {"value": i} for i in items),
        error_code=text(result.get("Code")) if failed else None,
        error_message=text(result.get("Message")) if failed else None,
    )


def live_edge_job(answer: dict, api: str) -> Event | None:
    """GetEdgeTranscodeJob: `Status` "1" is running, "0" is stopped (the newest word wins)."""
    job = as_dict(answer.get("Job"))
    state = EDGE_STATES.get(text(job.get("Status")) or "")
    if state is None or not text(job.get("JobId")):
        return None
    moments = [
        t for t in (parse_time(job.get("LastStartAt")), parse_time(job.get("LastStopAt"))) if t
    ]
    return _event(
        "aliyun",
        "live",
        api,
        answer,
        kind="edge_transcode",
        provider_job_id=text(job.get("JobId")),
        state=state,
        occurred_at=max(moments) if moments else None,
    )


def _tencent(api: str, answer: dict, read: Callable[[], dict], status: str) -> Event | None:
    """Read a Tencent task with the callback reader; the answer's own status has the say.

    WAITING is `submitted`, PROCESSING is `processing` (unless the task already reports a
    failure), ABORTED is a failure, FINISH is whatever the task object says.
    """
    try:
        fields = read()
    except InvalidPayload:
        return None
    # The answer's own creation time (3.0 `CreateTime`, v2 `createTime` in Unix seconds).
    fields["started_at"] = earliest(
        [answer.get("CreateTime"), answer.get("createTime"), fields.get("started_at")]
    )
    if status in TASK_STATES and fields.get("state") != states.FAILED:
        fields |= {"state": TASK_STATES[status], "error_code": None, "error_message": None}
    elif status == "ABORTED":
        fields |= {
            "state": states.FAILED,
            "error_code": fields.get("error_code") or "ABORTED",
            "error_message": fields.get("error_message") or "the task was aborted",
        }
    return _event("tencent", "vod", api, answer, **fields)


def _settled(task: dict, key: str, status: str) -> dict:
    """Give a settled task a status word the reader counts as finished (not a failure)."""
    word = (text(task.get(key)) or "").upper()
    if status in ("FINISH", "ABORTED") and word not in FAILED:
        return dict(task, **{key: "FINISH"})
    if not word:
        return dict(task, **{key: status})  # 2017 task objects carry no status of their own
    return task


def tencent_task_detail(answer: dict, api: str) -> Event | None:
    """DescribeTaskDetail: `TaskType`, `Status` (WAITING/PROCESSING/FINISH/ABORTED), and the
    task object of that type, read like the event that reports the same task."""
    status = (text(answer.get("Status")) or "").upper()
    spec = tencent_v3_tasks.BY_DETAIL_TYPE.get(text(answer.get("TaskType")) or "")
    if spec is None:  # an unknown TaskType: find the task object by its key
        spec = next(
            (s for s in tencent_v3_tasks.SPECS if s.detail[1] and answer.get(s.detail[1])),
            None,
        )
    task = answer.get(spec.detail[1]) if spec is not None else None
    if spec is None or not isinstance(task, dict) or not status:
        return None
    task = _settled(task, "Status", status)
    return _tencent(api, answer, lambda: tencent_v3_tasks.read(spec, task), status)


def tencent_v2_task(answer: dict, api: str) -> Event | None:
    """GetTaskInfo (v2): top-level `status`, and `data` as in the v2 callback."""
    data = answer.get("data")
    if not isinstance(data, dict):
        return None
    status = (text(answer.get("status")) or text(data.get("status")) or "").upper()
    status = "FINISH" if status == "FINISHED" else status  # the doc table says FINISHED
    if not status:
        return None
    data = _settled(data, "status", status)
    return _tencent(api, answer, lambda: v2_flow(data), status)
