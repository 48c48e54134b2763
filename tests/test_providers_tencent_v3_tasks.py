"""Tencent VOD API 3.0 task events and DescribeTaskDetail answers, one row per task type.

Bodies are built from the official SDK's field list of each task object (tests/tencent_sdk),
then varied: success, failure by status, by error code only, only in a nested element,
missing optional objects, null task objects, string numbers, unknown extra fields.
"""

import copy
import json
import warnings
from pathlib import Path

import pytest
from tencentcloud.vod.v20180717 import models

from receiver.background.status_apis import plan_poll
from receiver.providers import status_answers
from receiver.providers.base import InvalidPayload
from receiver.providers.tencent import v3_tasks as tencent_v3_tasks
from receiver.providers.tencent import vod as tencent_vod
from receiver.providers.tencent.v3_table import SPECS
from tests import tencent_sdk

EVENT_CLASSES = tencent_sdk.event_classes()
DETAIL_CLASSES = tencent_sdk.detail_classes()
EVENT_SPECS = [s for s in SPECS if s.events]
DETAIL_SPECS = [s for s in SPECS if s.detail[0]]
FILE_ID = "5285890784246869930"


def ids(specs):
    return [s.kind for s in specs]


def task_of(spec) -> dict:
    return tencent_sdk.sample(EVENT_CLASSES[spec.key])


def body(spec, task, event_type: str | None = None) -> dict:
    """A callback: the task under its key, every other event object an explicit null."""
    doc = {"EventType": event_type or spec.events[0]}
    doc.update(dict.fromkeys(EVENT_CLASSES))
    doc[spec.key] = task
    return doc


def parse(doc: dict):
    return tencent_vod.parse(json.dumps(doc).encode())


def fields_of(spec) -> dict:
    return tencent_sdk.fields(EVENT_CLASSES[spec.key])


# -- the table follows the SDK ---------------------------------------------------------


def test_every_sdk_event_object_with_a_task_id_has_a_row():
    with_task = {k for k, c in EVENT_CLASSES.items() if "TaskId" in tencent_sdk.fields(c)}
    assert with_task == set(tencent_v3_tasks.BY_KEY)


def test_every_sdk_task_type_of_describe_task_detail_has_a_row():
    void = {"ReduceMediaBitrateTask"}  # the SDK: "this field is no longer valid"
    with_task = {k for k, c in DETAIL_CLASSES.items() if "TaskId" in tencent_sdk.fields(c)}
    assert with_task - void == {s.detail[1] for s in DETAIL_SPECS}


def test_every_tencent_kind_with_a_task_status_is_polled():
    for kind in tencent_v3_tasks.POLLED_KINDS:
        job = {"provider": "tencent", "service": "vod", "kind": kind, "provider_job_id": "t-1"}
        poll = plan_poll(job)
        assert (poll.api.name, poll.params) == ("DescribeTaskDetail", {"TaskId": "t-1"}), kind


# -- events ------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", EVENT_SPECS, ids=ids(EVENT_SPECS))
def test_success(spec):
    task = task_of(spec)
    event = parse(body(spec, task))
    assert (event.kind, event.state, event.error_code) == (spec.kind, "succeeded", None)
    assert event.provider_job_id == task["TaskId"]
    if any(tencent_v3_tasks.path(task, f) for f in spec.files):
        assert event.media_id == FILE_ID
    content = models.EventContent()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        content._deserialize(body(spec, task))
    assert getattr(content, spec.key).TaskId == event.provider_job_id  # the SDK agrees


@pytest.mark.parametrize("spec", EVENT_SPECS, ids=ids(EVENT_SPECS))
def test_every_spelling_of_the_event_type_and_an_unknown_one(spec):
    task = task_of(spec)
    for event_type in (*spec.events, "SomeRenamedComplete"):
        assert parse(body(spec, task, event_type)).kind == spec.kind


STATUS_SPECS = [s for s in EVENT_SPECS if "Status" in fields_of(s)]


@pytest.mark.parametrize("word", ["FAIL", "ABORTED", "failed"])
@pytest.mark.parametrize("spec", STATUS_SPECS, ids=ids(STATUS_SPECS))
def test_failure_by_status(spec, word):
    task = task_of(spec)
    task["Status"] = word
    event = parse(body(spec, task))
    assert event.state == "failed" and event.error_code


@pytest.mark.parametrize("spec", STATUS_SPECS, ids=ids(STATUS_SPECS))
def test_processing(spec):
    task = task_of(spec)
    task["Status"] = "PROCESSING"
    assert parse(body(spec, task)).state == "processing"


CODE_CASES = [
    (s, key, value)
    for s in EVENT_SPECS
    for key, value in (("ErrCode", 10008), ("ErrCode", "10008"), ("ErrCodeExt", "Failed.X"))
    if key in fields_of(s)
]


@pytest.mark.parametrize(
    ("spec", "key", "value"), CODE_CASES, ids=[f"{c[0].kind}-{c[1]}-{c[2]!r}" for c in CODE_CASES]
)
def test_failure_by_error_code_only(spec, key, value):
    task = task_of(spec)
    task[key] = value  # the status still says FINISH (or there is none)
    task["Message"] = "source file error"
    event = parse(body(spec, task))
    assert (event.state, event.error_code) == ("failed", str(value))
    assert event.error_message == "source file error"


@pytest.mark.parametrize("spec", EVENT_SPECS, ids=ids(EVENT_SPECS))
def test_string_numbers_that_mean_success(spec):
    task = task_of(spec)
    for key in ("ErrCode", "Progress"):
        if key in task:
            task[key] = str(task[key])
    assert parse(body(spec, task)).state == "succeeded"


NESTED = [s for s in EVENT_SPECS if s.parts or s.flow]


def _fail_nested(spec, task: dict, how: str) -> None:
    if spec.flow:
        item = task["MediaProcessResultSet"][0]
        element = next(v for v in item.values() if isinstance(v, dict) and "Status" in v)
    else:
        found = tencent_v3_tasks.path(task, spec.parts[0])
        element = found[0] if isinstance(found, list) else found
    if how == "code" and "ErrCode" in element:
        element["ErrCode"] = -43001
    elif how == "ext" and "ErrCodeExt" in element:
        element["ErrCodeExt"] = "FailedOperation.Clip"
    elif "Status" in element or how == "status":
        element["Status"] = "FAIL"
    else:
        element["ErrCode"] = -43001


@pytest.mark.parametrize("how", ["code", "ext", "status"])
@pytest.mark.parametrize("spec", NESTED, ids=ids(NESTED))
def test_failure_only_in_a_nested_element(spec, how):
    task = task_of(spec)
    _fail_nested(spec, task, how)
    event = parse(body(spec, task))
    assert event.state in ("failed", "partial") and event.error_code


@pytest.mark.parametrize("spec", EVENT_SPECS, ids=ids(EVENT_SPECS))
def test_missing_optional_objects(spec):
    task = {k: v for k, v in task_of(spec).items() if k in ("TaskId", "Status")}
    event = parse(body(spec, task))
    assert (event.kind, event.provider_job_id, event.state) == (
        spec.kind,
        "1256768367-task-0001",
        "succeeded",
    )


@pytest.mark.parametrize("spec", EVENT_SPECS, ids=ids(EVENT_SPECS))
def test_null_nested_objects(spec):
    task = {k: (None if isinstance(v, (dict, list)) else v) for k, v in task_of(spec).items()}
    assert parse(body(spec, task)).state == "succeeded"


@pytest.mark.parametrize("spec", EVENT_SPECS, ids=ids(EVENT_SPECS))
@pytest.mark.parametrize("task", [None, [], "x", {}, {"Status": "FINISH"}])
def test_a_null_or_empty_task_object_is_refused(spec, task):
    with pytest.raises(InvalidPayload):
        parse(body(spec, task))


@pytest.mark.parametrize("spec", EVENT_SPECS, ids=ids(EVENT_SPECS))
def test_unknown_extra_fields_change_nothing(spec):
    task = task_of(spec)
    plain = parse(body(spec, task))
    task = copy.deepcopy(task) | {"FutureField": {"a": [1, None]}, "FutureFlag": True}
    doc = body(spec, task) | {"FutureEventObject": None, "Extra": [1, 2]}
    event = parse(doc)
    assert (event.kind, event.state, event.provider_job_id, event.media_id) == (
        plain.kind,
        plain.state,
        plain.provider_job_id,
        plain.media_id,
    )


def test_millisecond_timestamps():
    spec = tencent_v3_tasks.BY_EVENT["ProcedureStateChanged"]
    task = task_of(spec)
    element = task["MediaProcessResultSet"][0]["TranscodeTask"]
    element["FinishTime"] = 1800000000123
    assert parse(body(spec, task)).occurred_at == "2027-01-15T08:00:00.123Z"
    element["FinishTime"] = "1800000000123"
    assert parse(body(spec, task)).occurred_at == "2027-01-15T08:00:00.123Z"


def test_outputs_of_a_transcode_come_from_its_play_info():
    spec = tencent_v3_tasks.BY_EVENT["TranscodeComplete"]
    (output,) = parse(body(spec, task_of(spec))).outputs
    assert output["url"] == output["Url"] and output["Definition"] == 1


def test_media_cast_is_a_running_or_stopped_stream():
    doc = {"EventType": "MediaCastStatusChanged", "MediaCastStatusChangedEvent": None}
    for status, state in (("Working", "running"), ("Stopped", "stopped"), ("Idle", "stopped")):
        doc["MediaCastStatusChangedEvent"] = {"CastId": "cast-1", "Status": status}
        event = parse(doc)
        assert (event.kind, event.provider_job_id, event.state) == ("media_cast", "cast-1", state)


@pytest.mark.parametrize(
    ("event_type", "key"),
    [
        ("FileDeleted", "FileDeleteEvent"),
        ("RestoreMediaComplete", "RestoreMediaCompleteEvent"),
        ("PersistenceComplete", "PersistenceCompleteEvent"),
    ],
)
def test_events_that_report_no_task_make_no_job(event_type, key):
    doc = {"EventType": event_type, key: tencent_sdk.sample(EVENT_CLASSES[key])}
    assert parse(doc).kind is None


# -- DescribeTaskDetail ------------------------------------------------------------------


def answer(spec, status: str = "FINISH", **changes) -> dict:
    task = tencent_sdk.sample(DETAIL_CLASSES[spec.detail[1]])
    task.update(changes)
    return {"TaskType": spec.detail[0][0], "Status": status, spec.detail[1]: task, "RequestId": "r"}


@pytest.mark.parametrize("spec", DETAIL_SPECS, ids=ids(DETAIL_SPECS))
def test_task_detail_settles_like_the_event(spec):
    event = status_answers.tencent_task_detail(answer(spec), "DescribeTaskDetail")
    assert (event.kind, event.state, event.provider_job_id) == (
        spec.kind,
        "succeeded",
        "1256768367-task-0001",
    )
    assert event.event_type == "DescribeTaskDetail"


@pytest.mark.parametrize("spec", DETAIL_SPECS, ids=ids(DETAIL_SPECS))
def test_task_detail_failures(spec):
    fields = tencent_sdk.fields(DETAIL_CLASSES[spec.detail[1]])
    if "ErrCode" in fields:
        event = status_answers.tencent_task_detail(
            answer(spec, ErrCode=70000), "DescribeTaskDetail"
        )
        assert (event.state, event.error_code) == ("failed", "70000")
    if "ErrCodeExt" in fields:
        event = status_answers.tencent_task_detail(
            answer(spec, ErrCodeExt="Failed.Y"), "DescribeTaskDetail"
        )
        assert (event.state, event.error_code) == ("failed", "Failed.Y")
    event = status_answers.tencent_task_detail(answer(spec, "ABORTED"), "DescribeTaskDetail")
    assert event.state == "failed"


@pytest.mark.parametrize(
    ("status", "state"), [("WAITING", "submitted"), ("PROCESSING", "processing")]
)
@pytest.mark.parametrize("spec", DETAIL_SPECS, ids=ids(DETAIL_SPECS))
def test_task_detail_not_finished(spec, status, state):
    task_status = {"Status": status} if "Status" in answer(spec)[spec.detail[1]] else {}
    assert (
        status_answers.tencent_task_detail(
            answer(spec, status, **task_status), "DescribeTaskDetail"
        ).state
        == state
    )


def test_the_provider_docs_name_every_kind():
    docs = (Path(__file__).parent.parent / "docs" / "providers.md").read_text(encoding="utf-8")
    missing = sorted(s.kind for s in SPECS if f"`{s.kind}`" not in docs)
    assert missing == []
