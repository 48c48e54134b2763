"""Every ApsaraVideo VOD event type, and the general MPS job notice, one row each.

Rows start from the documented sample callbacks (tests/fixtures, unchanged) and move a
failure into each place the event can report one.
"""

import json

import pytest

from receiver.providers.aliyun import mns as queue
from receiver.providers.aliyun import mps as aliyun_mps
from receiver.providers.aliyun import vod as aliyun_vod
from receiver.providers.base import InvalidPayload
from store import open_ledger
from tests.helpers import fixture_bytes, fixture_json

# sample -> (kind, provider_job_id key, media key, state of the sample)
JOB_EVENTS = {
    "aliyun_vod-AIMediaAuditComplete.json": ("ai_media_audit", "JobId", "MediaId", "succeeded"),
    "aliyun_vod-AIMediaDNAComplete.json": ("ai_media_dna", "JobId", "MediaId", "succeeded"),
    "aliyun_vod-AIVideoTagComplete.json": ("ai_video_tag", "JobId", "MediaId", "succeeded"),
    "aliyun_vod-VideoAnalysisComplete.json": ("video_analysis", None, "VideoId", "succeeded"),
    "aliyun_vod-VideoAnalysisComplete-fail.json": ("video_analysis", None, "VideoId", "failed"),
    "aliyun_vod-LiveRecordVideoComposeStart.json": (
        "produce_media",
        None,
        "VideoId",
        "processing",
    ),
    "aliyun_vod-ProduceMediaComplete.json": ("produce_media", None, "MediaId", "succeeded"),
    "aliyun_vod-ProduceMediaComplete-fail.json": ("produce_media", None, "MediaId", "failed"),
    "aliyun_vod-AttachedMediaUploadComplete.json": (
        "upload",
        None,
        "AttachedMediaId",
        "succeeded",
    ),
}
NO_JOB = [
    "aliyun_vod-CreateAuditComplete.json",
    "aliyun_vod-DeleteMediaComplete-fail.json",
    "aliyun_vod-MediaBaseChangeComplete.json",
]
LIVE_RECORD = {
    "EventTime": "2017-12-08T09:26:17Z",
    "EventType": "AddLiveRecordVideoComplete",
    "VideoId": "43q9fjdhef****",
    "Status": "success",
    "StreamName": "xxx",
    "RecordStartTime": "2017-12-08T07:40:56Z",
    "RecordEndTime": "2017-12-08T09:26:17Z",
}


def parse(doc: dict):
    return aliyun_vod.parse(json.dumps(doc).encode())


@pytest.mark.parametrize("name", JOB_EVENTS)
def test_documented_samples(name):
    kind, job_key, media_key, state = JOB_EVENTS[name]
    doc = fixture_json(name)
    event = aliyun_vod.parse(fixture_bytes(name))
    assert (event.kind, event.state, event.media_id) == (kind, state, doc[media_key])
    assert event.provider_job_id == (doc[job_key] if job_key else None)
    assert event.occurred_at == aliyun_vod.parse_time(doc["EventTime"])
    if state == "failed":
        assert (event.error_code, event.error_message) == (doc["ErrorCode"], doc["ErrorMessage"])


def test_ai_data_json_string_is_decoded_for_the_outputs():
    event = aliyun_vod.parse(fixture_bytes("aliyun_vod-AIMediaDNAComplete.json"))
    assert event.outputs[0]["data"]["VideoDNA"][0]["Similarity"] == "0.99"


@pytest.mark.parametrize("name", NO_JOB)
def test_media_management_events_are_stored_without_a_job(name):
    event = aliyun_vod.parse(fixture_bytes(name))
    assert event.kind is None and event.event_type == fixture_json(name)["EventType"]


def test_live_record_sample_with_its_trailing_comma_is_refused_not_guessed():
    with pytest.raises(InvalidPayload):
        aliyun_vod.parse(fixture_bytes("aliyun_vod-AddLiveRecordVideoComplete-trailing-comma.txt"))


def test_live_record_without_the_trailing_comma():
    event = parse(LIVE_RECORD)
    assert (event.kind, event.media_id, event.state) == (
        "live_record",
        "43q9fjdhef****",
        "succeeded",
    )
    assert event.outputs[0]["RecordEndTime"] == "2017-12-08T09:26:17Z"


JOB_DOCS = [*(n for n in JOB_EVENTS if not n.endswith("-fail.json")), "live"]


def _doc(name: str) -> dict:
    return dict(LIVE_RECORD) if name == "live" else fixture_json(name)


@pytest.mark.parametrize("name", JOB_DOCS)
@pytest.mark.parametrize("status", ["fail", "FAIL", "failed"])
def test_failure_by_status(name, status):
    doc = _doc(name) | {"Status": status}
    assert parse(doc).state == "failed"


@pytest.mark.parametrize("name", JOB_DOCS)
@pytest.mark.parametrize(("key", "value"), [("ErrorCode", "Internal.Error"), ("Code", "403")])
def test_failure_by_error_code_only(name, key, value):
    doc = _doc(name) | {key: value}  # Status still says success
    event = parse(doc)
    assert (event.state, event.error_code) == ("failed", value)


@pytest.mark.parametrize("name", JOB_DOCS)
@pytest.mark.parametrize("when", ["2024-04-10T01:37:14:627Z", 1712713034627, "1712713034627"])
def test_unknown_fields_and_millisecond_times(name, when):
    doc = _doc(name) | {"AppId": "app-1000000", "Future": {"x": [1]}, "EventTime": when}
    event = parse(doc)
    assert event.state != "failed" and event.occurred_at == "2024-04-10T01:37:14.627Z"


# uploads are only announced on success, so they need no Status
@pytest.mark.parametrize("name", [n for n in JOB_DOCS if "Upload" not in n])
def test_no_status_at_all_is_refused(name):
    doc = {k: v for k, v in _doc(name).items() if k not in ("Status", "Code", "ErrorCode")}
    with pytest.raises(InvalidPayload):
        parse(doc)


def test_production_started_then_finished_is_one_job(db_path):
    start = fixture_json("aliyun_vod-LiveRecordVideoComposeStart.json")
    done = fixture_json("aliyun_vod-ProduceMediaComplete-fail.json")
    done["MediaId"] = start["VideoId"]
    with open_ledger(db_path) as ledger:
        first = ledger.notices.record(parse(start), source="http", verified=True)
        second = ledger.notices.record(parse(done), source="http", verified=True)
        assert first.job_id == second.job_id
        assert ledger.jobs.get(first.job_id)["state"] == "failed"


# -- MPS general job notices --------------------------------------------------------------


@pytest.mark.parametrize(
    ("job_type", "kind"),
    [
        ("Transcode", "transcode"),
        ("Snapshot", "snapshot"),
        ("Analysis", "analysis"),
        ("MediaInfo", "media_info"),
    ],
)
def test_mps_general_notice_settles_its_job(job_type, kind, db_path):
    doc = fixture_json("aliyun_mps-Transcode-notice.json")
    doc.update(Type=job_type, type=job_type, State="Analysing", state="Analysing")
    failed = dict(doc, State="Fail", state="Fail", code="InvalidInput", msg="bad input")
    with open_ledger(db_path) as ledger:
        first = ledger.notices.record(queue.parse(json.dumps(doc)), source="mns", verified=True)
        second = ledger.notices.record(queue.parse(json.dumps(failed)), source="mns", verified=True)
        job = ledger.jobs.get(first.job_id)
        assert first.job_id == second.job_id and job["kind"] == kind
        assert (job["state"], job["error_code"]) == ("failed", "InvalidInput")


@pytest.mark.parametrize("code", [{"code": "InvalidInput"}, {"Code": "InternalError"}])
def test_mps_failure_by_code_only(code):
    doc = fixture_json("aliyun_mps-Transcode-notice.json") | code
    assert aliyun_mps.parse(json.dumps(doc)).state == "failed"


def test_mps_iproduction_failure_by_code_only():
    doc = fixture_json("aliyun_mps-IProduction-VideoH2V.json") | {"Code": "Throttling"}
    assert aliyun_mps.parse(json.dumps(doc)).state == "failed"


def test_mps_sample_still_succeeds():
    event = aliyun_mps.parse(fixture_bytes("aliyun_mps-Transcode-notice.json"))
    assert (event.kind, event.state) == ("transcode", "succeeded")
