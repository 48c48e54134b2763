"""Tencent VOD task flows (procedures): one status for the flow, one per subtask.

Shared by the v2 and API 3.0 `ProcedureStateChanged` events, by the 3.0
`ReduceMediaBitrateComplete` event (a flow of the same shape) and by the status answers
of `DescribeTaskDetail` and `GetTaskInfo`.
"""

from collections.abc import Mapping

from .. import base as states
from ..base import InvalidPayload, earliest, parse_time, text
from .tasks import FAILED, error_code, message, output, status_word

V3_RESULT_SETS = (
    "MediaProcessResultSet",
    "AiContentReviewResultSet",
    "AiAnalysisResultSet",
    "AiRecognitionResultSet",
)
V2_RESULT_LISTS = ("processTaskList", "contentReviewList", "aIAnalysisList")
V3_KEYS = {"task": "TaskId", "file": "FileId", "code": "ErrCode"}
V2_KEYS = {"task": "vodTaskId", "file": "fileId", "code": "errCode"}


def _items(task: Mapping, keys: tuple[str, ...]) -> dict[str, list[dict]]:
    return {k: [i for i in (task.get(k) or []) if isinstance(i, dict)] for k in keys}


def subtask_v3(item: dict) -> dict:
    """A 3.0 result: `Type` plus one typed sub-object (TranscodeTask...) holding Status."""
    sub = next(
        (v for v in item.values() if isinstance(v, dict) and ("Status" in v or "ErrCode" in v)),
        item,
    )
    return {
        "type": text(item.get("Type")),
        "status": status_word(sub),
        "code": error_code(sub),
        "message": message(sub),
        "output": sub.get("Output"),
        "finished": parse_time(sub.get("FinishTime")),
        "began": parse_time(sub.get("BeginProcessTime")),
    }


def subtask_v2(item: dict) -> dict:
    """A v2 subtask: taskType/status/errCode/message/input/output on the item itself."""
    return {
        "type": text(item.get("taskType")),
        "status": status_word(item),
        "code": error_code(item),
        "message": message(item),
        "output": item.get("output"),
        "finished": None,
        "began": None,
    }


def v3_flow(task: Mapping, kind: str = "procedure") -> dict:
    """Settle an API 3.0 task flow (`ProcedureTask`, `ReduceMediaBitrateTask`)."""
    sets = _items(task, V3_RESULT_SETS)
    subtasks = [subtask_v3(i) for k in V3_RESULT_SETS for i in sets[k]]
    media = [subtask_v3(i) for i in sets["MediaProcessResultSet"]]
    return flow(task, V3_KEYS, subtasks, media, kind)


def v2_flow(data: Mapping) -> dict:
    """Settle a v2 task flow (`data` of ProcedureStateChanged, or of GetTaskInfo)."""
    lists = _items(data, V2_RESULT_LISTS)
    subtasks = [subtask_v2(i) for k in V2_RESULT_LISTS for i in lists[k]]
    media = [subtask_v2(i) for i in lists["processTaskList"]]
    return flow(data, V2_KEYS, subtasks, media, "procedure")


def flow(task: Mapping, keys: dict, subtasks: list[dict], media: list[dict], kind: str) -> dict:
    """Settle a task flow from its status, its own error code and every subtask.

    A non-zero error code of the flow fails it whatever its status. A finished flow whose
    subtasks did not all succeed is `partial` (some did) or `failed` (none did).
    """
    task_id = text(task.get(keys["task"])) or text(task.get("TaskId"))
    status = status_word(task)
    if task_id is None or not status:
        raise InvalidPayload(f"{kind} task flow without a task id or status")
    outputs = []
    for sub in media:
        out = {"type": sub["type"], "status": sub["status"]}
        out.update((output(sub["output"]) or {}) if isinstance(sub["output"], dict) else {})
        if sub["code"] or (sub["status"] in FAILED):
            out.update(error_code=sub["code"] or sub["status"], error_message=sub["message"])
        outputs.append(out)
    finished = [s["finished"] for s in subtasks if s["finished"]]
    fields = {
        "kind": kind,
        "provider_job_id": task_id,
        "media_id": text(task.get(keys["file"])) or text(task.get("FileId")),
        "outputs": tuple(outputs),
        "occurred_at": max(finished) if finished else None,
        # The flow's own creation time (DescribeTaskDetail, GetTaskInfo), else its first
        # subtask's start.
        "started_at": earliest(
            [task.get("CreateTime"), task.get("createTime")] + [s["began"] for s in subtasks]
        ),
    }
    top_code = error_code({"ErrCode": task.get(keys["code"], task.get("ErrCode"))})
    if top_code is not None:
        return fields | {
            "state": states.FAILED,
            "error_code": top_code,
            "error_message": message(task) or f"the task flow reported {top_code}",
        }
    if status in FAILED:
        return fields | {
            "state": states.FAILED,
            "error_code": status,
            "error_message": message(task) or f"the task flow is {status.lower()}",
        }
    if status != "FINISH":
        return fields | {"state": states.PROCESSING}
    ok = [s for s in subtasks if s["status"] == "SUCCESS" and not s["code"]]
    bad = [s for s in subtasks if s not in ok]
    if not bad:
        return fields | {"state": states.SUCCEEDED}
    first = bad[0]
    return fields | {
        "state": states.PARTIAL if ok else states.FAILED,
        "error_code": first["code"] or first["status"] or None,
        "error_message": first["message"] or f"{first['type']} subtask did not succeed",
    }
