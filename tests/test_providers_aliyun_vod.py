"""ApsaraVideo VOD: X-VOD-SIGNATURE verification and event parsing, no Flask."""

import json
import time

import pytest

from receiver.providers.aliyun import vod as aliyun_vod
from receiver.providers.base import InvalidPayload, InvalidSignature, parse_time
from tests.helpers import AUTH_KEYS, CALLBACK_URL, fixture_bytes, fixture_json, vod_headers

SECRET = (CALLBACK_URL, AUTH_KEYS)


def parse_doc(doc: dict):
    return aliyun_vod.parse(json.dumps(doc).encode())


# -- signature --------------------------------------------------------------------------


def test_documented_signature_vector():
    # the VOD documentation's vector: md5sum(https://www.example.com/your/callback|1519375990|test123)
    assert aliyun_vod.sign("https://www.example.com/your/callback", 1519375990, "test123") == (
        "c72b60894140fa98920f1279219b7ed4"
    )
    headers = {
        "X-VOD-TIMESTAMP": "1519375990",
        "X-VOD-SIGNATURE": "c72b60894140fa98920f1279219b7ed4",
    }
    aliyun_vod.verify(
        b"{}", headers, ("https://www.example.com/your/callback", ["test123"]), now=1519375990 + 299
    )


@pytest.mark.parametrize("key", AUTH_KEYS)
def test_every_active_key_verifies(key):
    aliyun_vod.verify(b"{}", vod_headers(key=key), SECRET)


def test_signature_compared_case_insensitively():
    headers = vod_headers()
    headers["X-VOD-SIGNATURE"] = headers["X-VOD-SIGNATURE"].upper()
    aliyun_vod.verify(b"{}", headers, SECRET)


def _broken(what: str) -> dict:
    now = int(time.time())
    good = vod_headers(ts=now)
    return {
        "forged": {**good, "X-VOD-SIGNATURE": "0" * 32},
        "wrong key": vod_headers(key="NotAKey123"),
        "retired key": vod_headers(key="RetiredKey2024"),
        "other URL": vod_headers(url=CALLBACK_URL + "?x=1"),
        "stale": vod_headers(ts=now - 301),
        "future": vod_headers(ts=now + 301),
        "no timestamp": {k: v for k, v in good.items() if k != "X-VOD-TIMESTAMP"},
        "no signature": {k: v for k, v in good.items() if k != "X-VOD-SIGNATURE"},
        "timestamp not digits": {**good, "X-VOD-TIMESTAMP": "12e9"},
        "milliseconds": vod_headers(ts=now * 1000),
    }[what]


@pytest.mark.parametrize(
    "what",
    [
        "forged",
        "wrong key",
        "retired key",
        "other URL",
        "stale",
        "future",
        "no timestamp",
        "no signature",
        "timestamp not digits",
        "milliseconds",
    ],
)
def test_broken_signatures_are_rejected(what):
    with pytest.raises(InvalidSignature):
        aliyun_vod.verify(b"{}", _broken(what), SECRET)


def test_window_edges():
    now = int(time.time())
    aliyun_vod.verify(b"{}", vod_headers(ts=now - 300), SECRET, now=now)
    aliyun_vod.verify(b"{}", vod_headers(ts=now + 300), SECRET, now=now)


# -- documented samples, exactly as published -------------------------------------------


def test_transcode_complete_sample():
    event = aliyun_vod.parse(fixture_bytes("aliyun_vod-TranscodeComplete.json"))
    assert (event.provider, event.service, event.kind) == ("aliyun", "vod", "transcode")
    assert event.media_id == "43q9fjsh73f****" and event.provider_job_id is None
    assert event.state == "succeeded" and event.preprocess is False
    assert event.occurred_at == "2017-03-20T07:49:17.000Z"
    assert [o["Definition"] for o in event.outputs] == ["LD", "SD"]
    assert event.outputs[0]["url"].endswith(".mp4") and event.outputs[0]["Bitrate"] == "925"
    assert event.payload == fixture_bytes("aliyun_vod-TranscodeComplete.json").decode()


def test_real_transcode_complete_as_printed_with_streams_elided():
    raw = fixture_bytes("aliyun_vod-TranscodeComplete-real.txt")
    with pytest.raises(InvalidPayload):  # the printed sample elides two streams with "..."
        aliyun_vod.parse(raw)
    event = aliyun_vod.parse(raw.replace(b", ...]}", b"]}"))
    assert event.state == "succeeded" and event.outputs[0]["Encrypt"] is True
    assert event.outputs[0]["url"].endswith("-sd-encrypt-stream.m3u8")


def test_stream_transcode_complete_is_progress_only():
    event = aliyun_vod.parse(fixture_bytes("aliyun_vod-StreamTranscodeComplete.json"))
    assert event.state == "processing" and event.kind == "transcode"
    assert event.outputs[0]["JobId"] == "ddddddddddd" and "VideoId" not in event.outputs[0]


def test_dynamic_image_object_sample():
    event = aliyun_vod.parse(fixture_bytes("aliyun_vod-DynamicImageComplete-object.json"))
    assert (event.kind, event.state) == ("dynamic_image", "succeeded")
    assert event.provider_job_id == "3af7e9705cb24js83j231d4c3719****"
    assert event.outputs[0]["url"].endswith(".gif") and event.outputs[0]["FileSize"] == "1834831"


def test_dynamic_image_2021_sample_is_invalid_json_as_printed():
    with pytest.raises(InvalidPayload, match="not JSON"):
        aliyun_vod.parse(fixture_bytes("aliyun_vod-DynamicImageComplete-2021-string.txt"))


def test_dynamic_image_info_as_a_json_string():
    doc = fixture_json("aliyun_vod-DynamicImageComplete-object.json")
    doc["DynamicImageJobInfo"] = json.dumps(doc["DynamicImageJobInfo"])
    event = parse_doc(doc)
    assert event.outputs[0]["FileURL"].endswith(".gif") and event.state == "succeeded"


def test_dynamic_image_failure():
    doc = fixture_json("aliyun_vod-DynamicImageComplete-object.json")
    del doc["DynamicImageJobInfo"]
    doc.update(Status="fail", ErrorCode="InvalidParameter", ErrorMessage="bad template")
    event = parse_doc(doc)
    assert (event.state, event.error_code, event.error_message) == (
        "failed",
        "InvalidParameter",
        "bad template",
    )
    assert event.outputs == ()


@pytest.mark.parametrize(
    "name",
    [
        "aliyun_vod-FileUploadComplete-2021.json",
        "aliyun_vod-FileUploadComplete.json",
        "aliyun_vod-FileUploadComplete-real.json",
    ],
)
def test_file_upload_samples(name):
    event = aliyun_vod.parse(fixture_bytes(name))
    assert (event.kind, event.state) == ("upload", "succeeded")
    assert event.media_id and event.outputs[0]["url"].startswith("http://")


def test_snapshot_sample_without_video_id():
    event = aliyun_vod.parse(fixture_bytes("aliyun_vod-SnapshotComplete.json"))
    assert event.media_id is None and event.provider_job_id == "ee16d4bbf3f7*****e094bcb8cf8ddde"
    assert event.kind == "snapshot" and event.state == "succeeded"
    assert [o.get("type") or o["SnapshotType"] for o in event.outputs] == [
        "cover",
        "CoverSnapshot",
        "SpriteSnapshot",
    ]


def test_image_upload_sample_with_colon_milliseconds():
    event = aliyun_vod.parse(fixture_bytes("aliyun_vod-ImageUploadComplete.json"))
    assert event.occurred_at == "2024-04-10T01:37:14.627Z"
    assert event.media_id == "59bdbf10df76a8d8b6137a5ad12****" and event.kind == "upload"


# -- variants built from the documented fields ------------------------------------------


def _transcode(**changes) -> dict:
    doc = fixture_json("aliyun_vod-TranscodeComplete.json")
    doc.update(changes)
    return doc


def test_top_level_success_with_a_failed_stream_is_partial():
    doc = _transcode()
    doc["StreamInfos"][1].update(Status="fail", ErrorCode="TranscodeFail", ErrorMessage="codec")
    event = parse_doc(doc)
    assert (event.state, event.error_code, event.error_message) == (
        "partial",
        "TranscodeFail",
        "codec",
    )


def test_every_stream_failed_is_failed():
    doc = _transcode(Status="fail", ErrorCode="InvalidSource", ErrorMessage="no video track")
    for stream in doc["StreamInfos"]:
        stream["Status"] = "fail"
    event = parse_doc(doc)
    assert (event.state, event.error_code) == ("failed", "InvalidSource")


def test_failure_without_stream_infos():
    event = parse_doc(
        {
            "EventType": "TranscodeComplete",
            "VideoId": "v1",
            "Status": "fail",
            "ErrorCode": "InternalError",
            "ErrorMessage": "x",
            "EventTime": "2026-01-01T00:00:00Z",
        }
    )
    assert event.state == "failed" and event.outputs == ()


@pytest.mark.parametrize("flag", [True, "true", "True", "TRUE", 1])
def test_preprocess_flag_in_any_documented_form(flag):
    event = parse_doc(_transcode(Preprocess=flag))
    assert event.preprocess is True and event.kind == "preprocess"


@pytest.mark.parametrize("flag", [False, "false", None, 0])
def test_preprocess_false_is_a_normal_transcode(flag):
    assert parse_doc(_transcode(Preprocess=flag)).kind == "transcode"


def test_quirks_are_tolerated():
    doc = _transcode(EventTime="2017-03-20T07:49:17:123Z", AppId="app-1000000", NewKey={"a": 1})
    del doc["Extend"]
    doc["StreamInfos"][0].update(Size="1815321", Height="960", Duration="15.0", Surprise=None)
    event = parse_doc(doc)
    assert event.occurred_at == "2017-03-20T07:49:17.123Z" and event.state == "succeeded"
    assert event.outputs[0]["Size"] == "1815321"  # kept as the provider gave it


@pytest.mark.parametrize("event_type", ["SomeFutureComplete", "DeleteMediaComplete"])
def test_unknown_event_types_are_kept_but_tied_to_no_job(event_type):
    event = parse_doc({"EventType": event_type, "VideoId": "v", "Status": "success"})
    assert event.kind is None and event.event_type == event_type


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b"42",
        b'{"VideoId": "v"}',
        b'{"EventType": ""}',
        b'{"EventType": 7}',
        b'{"EventType": "TranscodeComplete", "Status": "success"}',
        b'{"EventType": "TranscodeComplete", "VideoId": "v"}',
        b'{"EventType": "TranscodeComplete", "VideoId": "v", '
        b'"Status": "success", "StreamInfos": {}}',
        b"\xff\xfe{}",
        b"[" * 100000,
    ],
)
def test_bad_bodies_raise_invalid_payload(body):
    with pytest.raises(InvalidPayload):
        aliyun_vod.parse(body)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2017-03-20T07:49:17Z", "2017-03-20T07:49:17.000Z"),
        ("2024-04-10T01:37:14:627Z", "2024-04-10T01:37:14.627Z"),
        ("2024-04-10T01:37:14.5Z", "2024-04-10T01:37:14.500Z"),
        ("2024-04-10 09:37:14+08:00", "2024-04-10T01:37:14.000Z"),
        (1519375990, "2018-02-23T08:53:10.000Z"),
        ("yesterday", None),
        ("2024-13-40T00:00:00Z", None),
        (None, None),
        (True, None),
    ],
)
def test_parse_time(raw, expected):
    assert parse_time(raw) == expected
