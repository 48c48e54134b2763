"""The ledger on its own: state machine, idempotency, ordering, matching, transactions."""

import multiprocessing

import pytest

from receiver.providers import base as provider_states
from receiver.providers.aliyun import vod as aliyun_vod
from receiver.providers.base import Event
from receiver.providers.tencent import vod as tencent_vod
from store import migrate, open_ledger, states
from tests.helpers import fixture_bytes, fixture_json

pytestmark = pytest.mark.engines


def vod_event(**overrides) -> Event:
    fields = {
        "provider": "aliyun",
        "service": "vod",
        "event_type": "TranscodeComplete",
        "payload": "{}",
        "dedup_key": b"k" * 16,
        "kind": "transcode",
        "media_id": "video-1",
        "state": "succeeded",
        "occurred_at": "2026-11-20T10:00:00.000Z",
    }
    fields.update(overrides)
    return Event(**fields)


def counted(ledger) -> dict:
    """Counts from the counters table, checked against a real COUNT(*)."""
    real = dict(ledger.conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())
    assert ledger.jobs.stats()["by_state"] == real
    return real


# -- the state machine ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "incoming", "expected"),
    [
        (None, "processing", "processing"),
        ("submitting", "submitted", "submitted"),
        ("submitted", "processing", "processing"),
        ("processing", "submitted", "processing"),  # a late API answer does not go back
        ("processing", "succeeded", "succeeded"),
        ("succeeded", "processing", "succeeded"),  # FINISH then an older PROCESSING
        ("succeeded", "failed", "succeeded"),  # a final word is never undone
        ("failed", "succeeded", "failed"),
        ("partial", "processing", "partial"),
        ("submit_failed", "processing", "submit_failed"),
        ("processing", "timed_out", "timed_out"),
        ("timed_out", "succeeded", "succeeded"),  # a late final event still settles it
        ("timed_out", "processing", "timed_out"),
        ("submitting", "running", "running"),
        ("running", "submitted", "running"),
        ("processing", None, "processing"),
    ],
)
def test_advance(current, incoming, expected):
    assert states.advance(current, incoming) == expected


def test_edge_jobs_take_the_newest_word():
    assert states.advance("running", "stopped", newer=True) == "stopped"
    assert states.advance("stopped", "running", newer=True) == "running"
    assert states.advance("running", "stopped", newer=False) == "running"


def test_provider_state_names_are_the_ledgers():
    for name in ("PROCESSING", "SUCCEEDED", "PARTIAL", "FAILED", "RUNNING", "STOPPED"):
        assert getattr(provider_states, name) == getattr(states, name)


# -- recording notices ------------------------------------------------------------------


def test_migrate_is_idempotent(tmp_path):
    path = tmp_path / "ledger.db"
    assert migrate(path)[:2] == ["0001_enable_wal", "0002_jobs_events_quarantine"]
    assert migrate(path) == []
    with open_ledger(path) as led:
        assert led.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_redelivery_is_idempotent(ledger):
    event = aliyun_vod.parse(fixture_bytes("aliyun_vod-TranscodeComplete.json"))
    results = [ledger.notices.record(event, source="http", verified=True) for _ in range(5)]
    first = results[0]
    assert first.created_job and first.changed and first.state == "succeeded"
    for again in results[1:]:
        assert again.duplicate_of == first.event_id
        assert again.job_id == first.job_id and not again.changed
    assert ledger.conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 1
    events = ledger.jobs.events(first.job_id)
    assert [e["duplicate_of"] for e in events] == [None] + [first.event_id] * 4
    assert counted(ledger) == {"succeeded": 1}


def test_key_order_and_spacing_do_not_defeat_deduplication(ledger):
    doc = fixture_json("aliyun_vod-TranscodeComplete.json")
    import json

    a = aliyun_vod.parse(json.dumps(doc))
    b = aliyun_vod.parse(json.dumps(dict(reversed(list(doc.items()))), indent=2))
    assert ledger.notices.record(a, source="http", verified=True).duplicate_of is None
    assert ledger.notices.record(b, source="mns", verified=True).duplicate_of is not None


def test_out_of_order_finish_then_processing(ledger):
    finish = vod_event(
        dedup_key=b"f" * 16, state="succeeded", occurred_at="2026-11-20T10:05:00.000Z"
    )
    older = vod_event(
        dedup_key=b"p" * 16,
        state="processing",
        occurred_at="2026-11-20T10:01:00.000Z",
        event_type="StreamTranscodeComplete",
        outputs=({"url": "http://x/ld.mp4"},),
    )
    done = ledger.notices.record(finish, source="http", verified=True)
    late = ledger.notices.record(older, source="http", verified=True)
    assert late.job_id == done.job_id  # the stale progress note joins the finished job
    assert late.state == "succeeded" and not late.changed
    assert ledger.jobs.get(done.job_id)["outputs"] == []  # and changes nothing on it
    assert counted(ledger) == {"succeeded": 1}


def test_progress_then_finish_on_one_job(ledger):
    stream = aliyun_vod.parse(fixture_bytes("aliyun_vod-StreamTranscodeComplete.json"))
    first = ledger.notices.record(stream, source="http", verified=True)
    assert first.state == "processing" and first.created_job
    job = ledger.jobs.get(first.job_id)
    assert job["origin"] == "external" and job["outputs"][0]["Definition"] == "LD"
    done = vod_event(
        media_id=stream.media_id,
        occurred_at="2026-11-21T00:00:00.000Z",
        outputs=({"url": "a"}, {"url": "b"}),
    )
    second = ledger.notices.record(done, source="http", verified=True)
    assert second.job_id == first.job_id and second.state == "succeeded"
    job = ledger.jobs.get(first.job_id)
    assert [o["url"] for o in job["outputs"]] == ["a", "b"]  # the final list replaces progress
    assert job["finished_at"] == "2026-11-21T00:00:00.000Z"


def test_a_new_transcode_of_a_finished_video_is_a_new_job(ledger):
    first = ledger.notices.record(vod_event(dedup_key=b"1" * 16), source="http", verified=True)
    later = vod_event(dedup_key=b"2" * 16, occurred_at="2026-11-22T00:00:00.000Z", state="failed")
    second = ledger.notices.record(later, source="http", verified=True)
    assert second.job_id != first.job_id and second.state == "failed"


def test_preprocess_notice_completes_the_open_preprocess_job(ledger):
    job = ledger.submissions.begin(
        provider="aliyun",
        service="vod",
        kind="preprocess",
        operation="aliyun.vod.SubmitPreprocessJobs",
        params={"VideoId": "video-1"},
        media_id="video-1",
    )
    ledger.submissions.finish(job["id"], state="submitted", provider_job_id="pre-job-1")
    plain = ledger.notices.record(vod_event(dedup_key=b"t" * 16), source="http", verified=True)
    assert plain.job_id != job["id"]  # a normal transcode is another job
    pre = vod_event(dedup_key=b"p" * 16, kind="preprocess", preprocess=True)
    result = ledger.notices.record(pre, source="http", verified=True)
    assert result.job_id == job["id"] and result.state == "succeeded"
    assert ledger.jobs.get(job["id"])["preprocess"] is True


def test_unknown_events_are_stored_without_a_job(ledger):
    event = Event(
        provider="aliyun",
        service="vod",
        event_type="AIMediaDNAComplete",
        payload='{"EventType":"AIMediaDNAComplete"}',
        dedup_key=b"u" * 16,
    )
    result = ledger.notices.record(event, source="http", verified=True)
    assert result.job_id is None and result.state is None
    assert ledger.jobs.event(result.event_id)["payload"] == '{"EventType":"AIMediaDNAComplete"}'


# -- submissions and early notices ------------------------------------------------------


def test_notice_before_the_job_id_is_recorded_lands_on_the_submitted_job(ledger):
    job = ledger.submissions.begin(
        provider="aliyun",
        service="vod",
        kind="dynamic_image",
        operation="aliyun.vod.SubmitDynamicImageJob",
        params={"VideoId": "v9", "DynamicImageTemplateId": "t"},
        media_id="v9",
    )
    notice = vod_event(
        event_type="DynamicImageComplete",
        kind="dynamic_image",
        media_id="v9",
        provider_job_id="dyn-1",
    )
    early = ledger.notices.record(notice, source="http", verified=True)
    assert early.job_id == job["id"] and early.state == "succeeded"
    final = ledger.submissions.finish(job["id"], state="submitted", provider_job_id="dyn-1")
    assert final["state"] == "succeeded" and final["provider_job_id"] == "dyn-1"
    assert counted(ledger) == {"succeeded": 1}


def test_notice_without_media_before_the_answer_is_merged_into_one_job(ledger):
    job = ledger.submissions.begin(
        provider="aliyun",
        service="mps",
        kind="iproduction",
        operation="aliyun.mps.SubmitIProductionJob",
        params={"FunctionName": "VideoH2V"},
        media_id="oss://b/in.mp4",
    )
    notice = Event(
        provider="aliyun",
        service="mps",
        event_type="IProduction",
        payload="{}",
        dedup_key=b"i" * 16,
        kind="iproduction",
        provider_job_id="ip-1",
        state="failed",
        error_code="InvalidInput",
        error_message="bad input",
    )
    early = ledger.notices.record(notice, source="mns", verified=True)
    assert early.job_id != job["id"]  # nothing tied the notice to our job yet
    merged = ledger.submissions.finish(job["id"], state="submitted", provider_job_id="ip-1")
    assert merged["state"] == "failed" and merged["error_code"] == "InvalidInput"
    assert ledger.jobs.get(early.job_id) is None
    assert [e["source"] for e in ledger.jobs.events(job["id"])] == ["submit", "mns", "submit"]
    assert counted(ledger) == {"failed": 1}


def test_refused_submission_keeps_the_providers_error(ledger):
    job = ledger.submissions.begin(
        provider="aliyun",
        service="vod",
        kind="preprocess",
        operation="aliyun.vod.SubmitPreprocessJobs",
        params={"VideoId": "nope"},
        media_id="nope",
    )
    assert job["state"] == "submitting"
    refused = ledger.submissions.finish(
        job["id"],
        state="submit_failed",
        error_code="InvalidVideo.NotFound",
        error_message="The video does not exist.",
    )
    assert (refused["state"], refused["error_code"]) == ("submit_failed", "InvalidVideo.NotFound")
    assert refused["finished_at"] is not None


def test_a_failed_transaction_leaves_nothing(ledger):
    event = vod_event(outputs=(object(),))  # cannot be written as JSON: fails mid-transaction
    with pytest.raises(TypeError):
        ledger.notices.record(event, source="http", verified=True)
    for table in ("jobs", "events", "job_counts"):
        assert ledger.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0
    assert not ledger.conn.in_transaction


def test_tencent_change_mode_events_accumulate_then_finish(ledger):
    import json

    doc = fixture_json("tencent_vod-v2-ProcedureStateChanged.json")
    processing = tencent_vod.parse(json.dumps(doc))
    first = ledger.notices.record(processing, source="http", verified=True)
    doc["data"]["status"] = "FINISH"
    doc["data"]["processTaskList"][0].update(status="SUCCESS", output={"url": "http://x/f10.mp4"})
    finished = ledger.notices.record(
        tencent_vod.parse(json.dumps(doc)), source="pull", verified=True
    )
    assert finished.job_id == first.job_id and finished.state == "succeeded"


# -- concurrency ------------------------------------------------------------------------


def _deliver(path: str, body: bytes, rounds: int, queue) -> None:
    try:
        with open_ledger(path) as led:
            for _ in range(rounds):
                led.notices.record(aliyun_vod.parse(body), source="http", verified=True)
        queue.put("ok")
    except Exception as e:  # pragma: no cover - the failure this test exists to catch
        queue.put(repr(e))


def test_concurrent_delivery_from_several_processes(db_path):
    import json

    stream = fixture_json("aliyun_vod-StreamTranscodeComplete.json")
    stream["VideoId"] = fixture_json("aliyun_vod-TranscodeComplete.json")["VideoId"]
    # Progress and completion of one video race each other: whoever wins, one job.
    bodies = [fixture_bytes("aliyun_vod-TranscodeComplete.json"), json.dumps(stream).encode()]
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_deliver, args=(str(db_path), bodies[i % 2], 25, queue))
        for i in range(6)
    ]
    for p in procs:
        p.start()
    outcomes = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=10)
    assert outcomes == ["ok"] * 6
    with open_ledger(db_path) as led:
        originals = led.conn.execute(
            "SELECT COUNT(*) FROM events WHERE duplicate_of IS NULL"
        ).fetchone()[0]
        assert originals == 2
        assert led.conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 150
        jobs = led.conn.execute("SELECT media_id, state FROM jobs").fetchall()
        assert jobs == [("43q9fjsh73f****", "succeeded")]
