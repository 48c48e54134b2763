"""Tencent VOD: v2 and API 3.0 events, and the v3 Sign/T check, no Flask."""

import json
import time
import warnings

import pytest
from tencentcloud.vod.v20180717 import models

from receiver.providers.base import InvalidPayload, InvalidSignature
from receiver.providers.tencent import vod as tencent_vod
from tests.helpers import SIGN_KEY, fixture_bytes, fixture_json, tencent_signed


def parse_doc(doc: dict):
    return tencent_vod.parse(json.dumps(doc).encode())


# -- documented samples -----------------------------------------------------------------


def test_v3_procedure_state_changed_sample():
    event = tencent_vod.parse(fixture_bytes("tencent_vod-v3-ProcedureStateChanged.json"))
    assert (event.provider, event.service, event.kind) == ("tencent", "vod", "procedure")
    assert event.provider_job_id == "1256768367-Procedure-475b72xxxcb177t1"
    assert event.media_id == "5285890784246869930" and event.state == "succeeded"
    transcode, cover = event.outputs
    assert transcode["type"] == "Transcode" and transcode["url"].endswith("v.f20.mp4")
    assert "VideoStreamSet" not in transcode  # bulky stream lists stay in the raw payload
    assert cover["url"] == cover["CoverUrl"]


def test_v3_sample_agrees_with_the_official_sdk_model():
    body = fixture_bytes("tencent_vod-v3-ProcedureStateChanged.json")
    content = models.EventContent()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        content.from_json_string(body.decode())
    task = content.ProcedureStateChangeEvent
    event = tencent_vod.parse(body)
    assert content.EventType == event.event_type
    assert (task.TaskId, task.FileId) == (event.provider_job_id, event.media_id)
    assert task.MediaProcessResultSet[0].TranscodeTask.Output.Url == event.outputs[0]["url"]


def test_v2_procedure_state_changed_sample_is_processing():
    event = tencent_vod.parse(fixture_bytes("tencent_vod-v2-ProcedureStateChanged.json"))
    assert event.state == "processing" and event.provider_job_id == "125676836723-xxx-25f5aac63"
    assert event.media_id == "14508071098244959037"
    statuses = [(o["type"], o["status"]) for o in event.outputs]
    assert statuses == [
        ("Transcode", "PROCESSING"),
        ("Transcode", "SUCCESS"),
        ("SampleSnapshot", "SUCCESS"),
    ]
    assert event.outputs[1]["url"].endswith("f20.mp4")


def _v2_finished(*statuses, err_code=0) -> dict:
    doc = fixture_json("tencent_vod-v2-ProcedureStateChanged.json")
    data = doc["data"]
    data.update(status="FINISH", errCode=err_code)
    extra = "\n".join(
        fixture_bytes("tencent_vod-v2-processTaskList-extra.txt").decode().splitlines()
    )
    data["processTaskList"] += json.loads(f"[{extra}]")  # the archived sample's elements
    data["contentReviewList"] = []
    for task, status in zip(data["processTaskList"], statuses, strict=False):
        task["status"] = status
        if status == "FAIL":
            task.update(errCode=30010, message="system error")
            task.pop("output", None)
    return doc


def test_v2_finish_all_success():
    event = parse_doc(_v2_finished("SUCCESS", "SUCCESS", "SUCCESS", "SUCCESS", "SUCCESS"))
    assert event.state == "succeeded" and len(event.outputs) == 5
    assert event.outputs[3]["url"].endswith("xx1.png")  # CoverBySnapshot imageUrl


def test_v2_finish_with_a_failed_subtask_is_partial():
    event = parse_doc(_v2_finished("SUCCESS", "FAIL", "SUCCESS", "SUCCESS", "SUCCESS"))
    assert (event.state, event.error_code, event.error_message) == (
        "partial",
        "30010",
        "system error",
    )


def test_v2_finish_with_every_subtask_failed_is_failed():
    event = parse_doc(_v2_finished("FAIL", "FAIL", "FAIL", "FAIL", "FAIL"))
    assert event.state == "failed"


def test_v2_finish_with_an_error_code_is_failed():
    doc = _v2_finished("SUCCESS", "SUCCESS", "SUCCESS", "SUCCESS", "SUCCESS", err_code=10008)
    doc["data"]["message"] = "file does not exist"
    event = parse_doc(doc)
    assert (event.state, event.error_code, event.error_message) == (
        "failed",
        "10008",
        "file does not exist",
    )


def test_v3_finish_with_a_failed_subtask():
    doc = fixture_json("tencent_vod-v3-ProcedureStateChanged.json")
    cover = doc["ProcedureStateChangeEvent"]["MediaProcessResultSet"][1]["CoverBySnapshotTask"]
    cover.update(
        Status="FAIL",
        ErrCode=30010,
        ErrCodeExt="FailedOperation.Cover",
        Message="boom",
        Output=None,
    )
    event = parse_doc(doc)
    assert (event.state, event.error_code, event.error_message) == (
        "partial",
        "FailedOperation.Cover",
        "boom",
    )
    assert event.outputs[1]["error_code"] == "FailedOperation.Cover"


def test_v3_failed_ai_review_counts_too():
    doc = fixture_json("tencent_vod-v3-ProcedureStateChanged.json")
    doc["ProcedureStateChangeEvent"]["AiContentReviewResultSet"] = [
        {
            "Type": "Porn",
            "PornTask": {
                "Status": "FAIL",
                "ErrCodeExt": "",
                "ErrCode": 70000,
                "Message": "review failed",
            },
        }
    ]
    assert parse_doc(doc).state == "partial"


def test_v3_processing_and_finish_time():
    doc = fixture_json("tencent_vod-v3-ProcedureStateChanged.json")
    task = doc["ProcedureStateChangeEvent"]
    task["Status"] = "PROCESSING"
    task["MediaProcessResultSet"][0]["TranscodeTask"]["FinishTime"] = "2026-11-20T01:02:03Z"
    event = parse_doc(doc)
    assert event.state == "processing" and event.occurred_at == "2026-11-20T01:02:03.000Z"


def test_v3_explicit_nulls_are_tolerated():
    doc = fixture_json("tencent_vod-v3-ProcedureStateChanged.json")
    task = doc["ProcedureStateChangeEvent"]
    task["AiAnalysisResultSet"] = None
    # the tccli sample's SampleSnapshot element, with explicit nulls for the other tasks
    task["MediaProcessResultSet"].append(
        json.loads(fixture_bytes("tencent_vod-v3-SampleSnapshot-element.txt"))
    )
    event = parse_doc(doc)
    assert event.state == "succeeded" and event.outputs[2]["ImageUrlSet"][0].endswith(".jpg")


def test_hybrid_envelope_from_the_pull_complete_page():
    doc = {
        "version": "4.0",
        "eventType": "ProcedureStateChanged",
        "data": {"TaskId": "t-1", "status": "FINISH", "errCode": 0, "fileId": "f"},
    }
    event = parse_doc(doc)
    assert event.provider_job_id == "t-1" and event.state == "succeeded"


@pytest.mark.parametrize(
    ("name", "kind", "state", "job_id"),
    [
        ("tencent_vod-v2-NewFileUpload.json", "upload", "succeeded", None),
        ("tencent_vod-v2-NewFileUpload-real.json", "upload", "succeeded", None),
        (
            "tencent_vod-v2-PullComplete.json",
            "pull",
            "succeeded",
            "Pull-f5ac8127b3b6b85cdc13f237c6005d8",
        ),
        (
            "tencent_vod-v2-TranscodeComplete.json",
            "transcode",
            "succeeded",
            "Transcode-1edb7eb88a599d05abe451cfc541cfbd",
        ),
        (
            "tencent_vod-v2-CreateSnapshotByTimeOffsetComplete.json",
            "snapshot",
            "succeeded",
            "CreateSnapshotByTimeOffset-1edb7eb88a599d05abe451cfc541cfbd",
        ),
        (
            "tencent_vod-v2-CreateImageSpriteComplete.json",
            "image_sprite",
            "succeeded",
            "CreateImageSprite-1edb7eb88a599d05abe451cfc541cfbd",
        ),
        ("tencent_vod-v2-ClipComplete.json", "clip", "succeeded", "clipVideo-0a78cf44c4285026a4c"),
        (
            "tencent_vod-v2-ConcatComplete.json",
            "concat",
            "succeeded",
            "concat-1edb7eb88a599d05abe451cfc541cfbd",
        ),
        ("tencent_vod-v2-FileDeleted.json", None, None, None),
    ],
)
def test_other_v2_samples(name, kind, state, job_id):
    event = tencent_vod.parse(fixture_bytes(name))
    assert (event.kind, event.state, event.provider_job_id) == (kind, state, job_id)


def test_v2_integer_status_failure():
    doc = fixture_json("tencent_vod-v2-PullComplete.json")
    doc["data"].update(status=10008, message="file not found")
    event = parse_doc(doc)
    assert (event.state, event.error_code, event.error_message) == (
        "failed",
        "10008",
        "file not found",
    )


def test_v2_version_as_a_number():
    doc = fixture_json("tencent_vod-v2-PullComplete.json")
    doc["version"] = 4
    assert parse_doc(doc).kind == "pull"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{}",
        b"[]",
        b'{"version":"4.0","eventType":"X"}',
        b'{"EventType":"ProcedureStateChanged"}',
        b'{"EventType":"ProcedureStateChanged","ProcedureStateChangeEvent":{}}',
        b'{"eventType":"ProcedureStateChanged","data":{"status":"FINISH"}}',
    ],
)
def test_bad_bodies_raise_invalid_payload(body):
    with pytest.raises(InvalidPayload):
        tencent_vod.parse(body)


def test_dedup_key_ignores_sign_and_t():
    doc = fixture_json("tencent_vod-v3-ProcedureStateChanged.json")
    first = tencent_vod.parse(tencent_signed(doc, expiry=int(time.time()) + 600))
    second = tencent_vod.parse(tencent_signed(doc, expiry=int(time.time()) + 650))
    assert first.dedup_key == second.dedup_key == parse_doc(doc).dedup_key


# -- Sign / T ---------------------------------------------------------------------------


def test_valid_signature():
    body = tencent_signed(fixture_json("tencent_vod-v3-ProcedureStateChanged.json"))
    assert tencent_vod.has_signature(body, {})
    tencent_vod.verify(body, {}, SIGN_KEY)


def test_lower_case_sign_and_t_are_accepted():
    expiry = int(time.time()) + 600
    body = json.dumps({"EventType": "X", "sign": tencent_vod.sign(SIGN_KEY, expiry), "t": expiry})
    tencent_vod.verify(body.encode(), {}, SIGN_KEY)


@pytest.mark.parametrize(
    "what", ["wrong key", "expired", "far future", "no T", "T not a number", "tampered Sign"]
)
def test_broken_signatures_are_rejected(what):
    doc = {"EventType": "ProcedureStateChanged"}
    now = int(time.time())
    body = {
        "wrong key": tencent_signed(doc, key="OtherKey"),
        "expired": tencent_signed(doc, expiry=now - 301),
        "far future": tencent_signed(doc, expiry=now + 3600),
        "no T": json.dumps({**doc, "Sign": "a" * 32}).encode(),
        "T not a number": json.dumps({**doc, "Sign": "a" * 32, "T": "soon"}).encode(),
        "tampered Sign": tencent_signed(doc).replace(b'"Sign": "', b'"Sign": "0'),
    }[what]
    with pytest.raises(InvalidSignature):
        tencent_vod.verify(body, {}, SIGN_KEY)


def test_unsigned_bodies_have_no_signature():
    assert not tencent_vod.has_signature(fixture_bytes("tencent_vod-v2-PullComplete.json"), {})
    assert not tencent_vod.has_signature(b"not json", {})
