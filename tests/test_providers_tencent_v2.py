"""Tencent VOD legacy v2 events: every place a failure can be reported fails the job.

Starts from the documented samples (tests/fixtures, byte for byte), then moves a failure
into each place a v2 event can report one. Also: a v2 event and its API 3.0 twin for the
same task land on the same job in a real ledger.
"""

import json
import re

import pytest

from receiver.providers.base import InvalidPayload
from receiver.providers.tencent import vod as tencent_vod
from store import open_ledger
from tests import tencent_sdk
from tests.helpers import fixture_bytes, fixture_json

SAMPLES = {
    "PullComplete": "tencent_vod-v2-PullComplete.json",
    "TranscodeComplete": "tencent_vod-v2-TranscodeComplete.json",
    "ConcatComplete": "tencent_vod-v2-ConcatComplete.json",
    "ClipComplete": "tencent_vod-v2-ClipComplete.json",
    "CreateImageSpriteComplete": "tencent_vod-v2-CreateImageSpriteComplete.json",
    "CreateSnapshotByTimeOffsetComplete": "tencent_vod-v2-CreateSnapshotByTimeOffsetComplete.json",
}
KINDS = {
    "PullComplete": "pull",
    "TranscodeComplete": "transcode",
    "ConcatComplete": "concat",
    "ClipComplete": "clip",
    "CreateImageSpriteComplete": "image_sprite",
    "CreateSnapshotByTimeOffsetComplete": "snapshot",
}
# where each v2 event carries elements with a status of their own
NESTED = {
    "ConcatComplete": "fileInfo",
    "ClipComplete": "fileInfo",
    "CreateSnapshotByTimeOffsetComplete": "picInfo",
}


def parse(doc: dict):
    return tencent_vod.parse(json.dumps(doc).encode())


def elements(doc: dict, key: str) -> list[dict]:
    found = doc["data"][key]
    return found if isinstance(found, list) else [found]


@pytest.mark.parametrize("event_type", SAMPLES)
def test_documented_sample_succeeds(event_type):
    event = tencent_vod.parse(fixture_bytes(SAMPLES[event_type]))
    assert (event.kind, event.state, event.error_code) == (KINDS[event_type], "succeeded", None)
    assert event.provider_job_id and event.outputs


@pytest.mark.parametrize("value", [10008, "10008", -1, 4])
@pytest.mark.parametrize("event_type", SAMPLES)
def test_failure_in_data_status(event_type, value):
    doc = fixture_json(SAMPLES[event_type])
    doc["data"].update(status=value, message="source file error")
    event = parse(doc)
    assert (event.state, event.error_code, event.error_message) == (
        "failed",
        str(value),
        "source file error",
    )


@pytest.mark.parametrize("event_type", SAMPLES)
def test_failure_in_data_err_code_only(event_type):
    doc = fixture_json(SAMPLES[event_type])
    doc["data"]["errCode"] = 30010
    assert parse(doc).state == "failed"


@pytest.mark.parametrize("where", ["status", "errCode"])
@pytest.mark.parametrize("event_type", SAMPLES)
def test_failure_on_the_envelope(event_type, where):
    doc = fixture_json(SAMPLES[event_type])
    doc[where] = 1001
    event = parse(doc)
    assert (event.state, event.error_code) == ("failed", "1001")


@pytest.mark.parametrize("value", [-43001, "-43001", 4, -1, "FAIL"])
@pytest.mark.parametrize("event_type", NESTED)
def test_failure_only_in_every_nested_element(event_type, value):
    doc = fixture_json(SAMPLES[event_type])
    for element in elements(doc, NESTED[event_type]):
        element.update(status=value, message="clip failed")
    event = parse(doc)
    assert (event.state, event.error_code) == ("failed", str(value))


@pytest.mark.parametrize("event_type", ["ConcatComplete", "CreateSnapshotByTimeOffsetComplete"])
def test_failure_in_one_of_several_nested_elements_is_partial(event_type):
    doc = fixture_json(SAMPLES[event_type])
    elements(doc, NESTED[event_type])[1]["status"] = -43001
    assert parse(doc).state == "partial"


@pytest.mark.parametrize("event_type", NESTED)
def test_nested_error_code_without_status(event_type):
    doc = fixture_json(SAMPLES[event_type])
    element = elements(doc, NESTED[event_type])[0]
    element.pop("status", None)
    element["errCode"] = 70000
    assert parse(doc).state in ("failed", "partial")


def test_pull_event_concat_sample_without_per_file_status_succeeds():
    """The PullEvent sample's ConcatComplete has no per-file status at all."""
    text = fixture_bytes("tencent_vod-v2-PullEvent-response.txt").decode()
    doc = json.loads(re.sub(r",?\s+//[^\n]*", lambda m: "," if m[0][0] == "," else "", text))
    event = tencent_vod.parse_doc(doc["eventList"][1]["eventContent"], "")
    assert (event.kind, event.state) == ("concat", "succeeded")


@pytest.mark.parametrize("event_type", SAMPLES)
def test_missing_optional_objects_and_unknown_fields(event_type):
    doc = fixture_json(SAMPLES[event_type])
    task_id = doc["data"]["vodTaskId"]
    doc["data"] = {"vodTaskId": task_id, "surprise": {"x": [1]}, "fileInfo": None}
    doc["future"] = True
    event = parse(doc)
    assert (event.kind, event.provider_job_id, event.state) == (
        KINDS[event_type],
        task_id,
        "succeeded",
    )


@pytest.mark.parametrize("event_type", SAMPLES)
def test_no_task_id_is_refused(event_type):
    doc = fixture_json(SAMPLES[event_type])
    doc["data"].pop("vodTaskId")
    with pytest.raises(InvalidPayload):
        parse(doc)


def test_procedure_fails_on_the_envelope_too():
    doc = fixture_json("tencent_vod-v2-ProcedureStateChanged.json")
    doc["data"]["status"] = "FINISH"
    doc["data"]["processTaskList"] = [doc["data"]["processTaskList"][1]]
    doc["data"]["contentReviewList"] = []
    assert parse(doc).state == "succeeded"
    doc["errCode"] = 1000
    assert parse(doc).state == "failed"


def test_procedure_error_code_fails_even_while_processing():
    doc = fixture_json("tencent_vod-v2-ProcedureStateChanged.json")
    doc["data"].update(errCode=10008, message="file does not exist")
    assert (parse(doc).state, parse(doc).error_code) == ("failed", "10008")


def test_file_deleted_still_makes_no_job():
    doc = fixture_json("tencent_vod-v2-FileDeleted.json")
    doc["data"]["fileInfo"][0]["status"] = -1
    assert parse(doc).kind is None


# -- v2 and API 3.0 twins ---------------------------------------------------------------

TWINS = {
    "TranscodeComplete": ("TranscodeCompleteEvent", "TranscodeTask2017"),
    "ClipComplete": ("ClipCompleteEvent", "ClipTask2017"),
    "ConcatComplete": ("ConcatCompleteEvent", "ConcatTask2017"),
    "CreateImageSpriteComplete": ("CreateImageSpriteCompleteEvent", "CreateImageSpriteTask2017"),
    "CreateSnapshotByTimeOffsetComplete": (
        "SnapshotByTimeOffsetCompleteEvent",
        "SnapshotByTimeOffsetTask2017",
    ),
    "PullComplete": ("PullCompleteEvent", "PullUploadTask"),
}


@pytest.mark.parametrize("event_type", TWINS)
def test_a_v2_event_and_its_v3_twin_land_on_one_job(event_type, db_path):
    v2 = fixture_json(SAMPLES[event_type])
    key, sdk_class = TWINS[event_type]
    task = tencent_sdk.sample(sdk_class) | {"TaskId": v2["data"]["vodTaskId"]}
    v3 = {"EventType": event_type, key: task}
    with open_ledger(db_path) as ledger:
        first = ledger.notices.record(parse(v3), source="http", verified=True)
        second = ledger.notices.record(parse(v2), source="http", verified=False)
        assert first.job_id == second.job_id and second.created_job is False
        job = ledger.jobs.get(first.job_id)
        assert (job["kind"], job["state"]) == (KINDS[event_type], "succeeded")
