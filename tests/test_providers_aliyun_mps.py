"""MPS job notices and MNS message decoding (raw or Base64), no Flask."""

import base64
import json

import pytest

from receiver.providers.aliyun import mns as queue
from receiver.providers.aliyun import mps as aliyun_mps
from receiver.providers.base import InvalidPayload
from tests.helpers import fixture_bytes, fixture_json


@pytest.mark.parametrize(
    ("name", "function", "user_data"),
    [
        ("aliyun_mps-IProduction-VideoH2V.json", "VideoH2V", None),
        ("aliyun_mps-IProduction-AudioMixing.json", "AudioMixing", "test"),
    ],
)
def test_iproduction_samples(name, function, user_data):
    event = aliyun_mps.parse(fixture_bytes(name))
    doc = fixture_json(name)
    assert (event.service, event.kind, event.state) == ("mps", "iproduction", "succeeded")
    assert event.provider_job_id == doc["JobId"] and event.error_code is None
    assert doc["FunctionName"] == function and doc.get("UserData") == user_data


def test_cut_caption_extraction_sample_is_not_json():
    with pytest.raises(InvalidPayload):
        aliyun_mps.parse(fixture_bytes("aliyun_mps-IProduction-CaptionExtraction-cut.txt"))


def test_iproduction_failure():
    doc = fixture_json("aliyun_mps-IProduction-VideoH2V.json")
    doc.update(State="Fail", Code="InvalidParameter.JobParams", Message="JobParams is invalid")
    event = aliyun_mps.parse(json.dumps(doc))
    assert (event.state, event.error_code, event.error_message) == (
        "failed",
        "InvalidParameter.JobParams",
        "JobParams is invalid",
    )


def test_text_to_speech_lower_case_shape():
    event = aliyun_mps.parse(fixture_bytes("aliyun_mps-TextToSpeech.json"))
    assert (event.kind, event.state) == ("iproduction", "succeeded")
    assert event.provider_job_id == "612de0df37c84f8cabe4d856378e****"


def test_general_mps_notice():
    event = aliyun_mps.parse(fixture_bytes("aliyun_mps-Transcode-notice.json"))
    assert (event.kind, event.state, event.provider_job_id) == (
        "transcode",
        "succeeded",
        "0ceb045cd8df4db49f1c5bd4ace5****",
    )
    doc = fixture_json("aliyun_mps-Transcode-notice.json")
    doc.update(state="Fail", State="Fail", code="InvalidInput", msg="no such file")
    failed = aliyun_mps.parse(json.dumps(doc))
    assert (failed.state, failed.error_code, failed.error_message) == (
        "failed",
        "InvalidInput",
        "no such file",
    )


@pytest.mark.parametrize(
    "name",
    [
        "aliyun_mps-IProduction-VideoH2V.json",
        "aliyun_vod-TranscodeComplete.json",
        "aliyun_mps-TextToSpeech.json",
    ],
)
@pytest.mark.parametrize("encoding", ["raw", "base64"])
def test_queue_messages_route_on_content(name, encoding):
    raw = fixture_bytes(name).decode()
    body = raw if encoding == "raw" else base64.b64encode(raw.encode()).decode()
    event = queue.parse(body)
    assert event.service == ("mps" if name.startswith("aliyun_mps") else "vod")
    assert event.payload == body  # stored as received
    assert event.dedup_key == queue.parse(raw).dedup_key  # same event however encoded


@pytest.mark.parametrize(
    "body",
    [
        "",
        "not base64 or json!",
        base64.b64encode(b"[1]").decode(),
        base64.b64encode(b"\xff\xfe").decode(),
        '{"hello": 1}',
        json.dumps({"Type": "IProduction"}),
    ],
)
def test_poison_queue_messages(body):
    with pytest.raises(InvalidPayload):
        queue.parse(body)
