"""Outbound events: one message per job state change, delivered to real local endpoints,
signed, in order per job, retried, disabled when dead, on both engines."""

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from receiver.background import deliver, transport
from receiver.providers.base import Event
from store.deliveries import webhook_id
from tests.helpers import failed_transcode, record
from tests.receivers import Receiver

pytestmark = pytest.mark.engines
FAST = [0, 0, 0]  # retry at once: a delivery fails after four attempts


@pytest.fixture
def config(make_app):
    def build(**overrides):
        settings = {
            "DELIVERY_ALLOW_PRIVATE": True,
            "DELIVERY_RETRY_SECONDS": FAST,
            "DELIVERY_TIMEOUT_SECONDS": 2,
            "PUBLIC_URL": "https://ledger.example.com",
            **overrides,
        }
        return make_app(**settings).config

    return build


def add_endpoint(ledger, receiver: Receiver, **fields) -> dict:
    endpoint = ledger.endpoints.create(url=receiver.url, **fields)
    receiver.secret = endpoint["secret"]
    return endpoint


def submitted_job(ledger, video="v1", metadata=None) -> dict:
    job = ledger.submissions.begin(
        provider="aliyun",
        service="vod",
        kind="preprocess",
        operation="aliyun.vod.SubmitPreprocessJobs",
        params={"VideoId": video},
        media_id=video,
        metadata=metadata,
    )
    return ledger.submissions.finish(job["id"], state="submitted", provider_job_id=f"pj-{video}")


def messages(ledger) -> list[tuple]:
    return ledger.conn.execute(
        "SELECT job_id, sequence, state, previous_state FROM messages ORDER BY id"
    ).fetchall()


# -- the outbox -------------------------------------------------------------------------


def test_each_state_change_writes_one_message_in_its_transaction(ledger):
    job = submitted_job(ledger)
    first = record(ledger, failed_transcode("v2"))
    for _ in range(2):
        record(ledger, failed_transcode("v2"))  # redeliveries change nothing: no message
    assert messages(ledger) == [
        (job["id"], 1, "submitting", None),
        (job["id"], 2, "submitted", "submitting"),
        (first.job_id, 1, "failed", None),
    ]
    # A change that rolls back takes its message with it.
    with pytest.raises(RuntimeError):

        def change_then_fail():
            ledger.submissions._time_out(job["id"], 1)
            raise RuntimeError("after the change, before the commit")

        ledger.session.write(change_then_fail)
    assert len(messages(ledger)) == 3
    assert ledger.jobs.get(job["id"])["state"] == "submitted"


def test_a_merge_sends_the_submitted_job_its_change(ledger):
    """An early notice makes an external job; the answer folds it into the submitted job,
    whose message says so with its own next sequence (docs/architecture.md)."""
    job = ledger.submissions.begin(
        provider="aliyun",
        service="mps",
        kind="iproduction",
        operation="aliyun.mps.SubmitIProductionJob",
        params={"FunctionName": "VideoH2V"},
        media_id="oss://b/in.mp4",
        metadata='{"order": 7}',
    )
    notice = Event(
        provider="aliyun",
        service="mps",
        event_type="IProduction",
        payload="{}",
        dedup_key=b"m" * 16,
        kind="iproduction",
        provider_job_id="ip-merge",
        state="failed",
    )
    early = ledger.notices.record(notice, source="mns", verified=True)
    assert early.job_id != job["id"]
    merged = ledger.submissions.finish(job["id"], state="submitted", provider_job_id="ip-merge")
    assert merged["state"] == "failed" and merged["metadata"] == {"order": 7}
    assert messages(ledger) == [
        (job["id"], 1, "submitting", None),
        (early.job_id, 1, "failed", None),  # sent as it happened, kept
        (job["id"], 2, "failed", "submitting"),
    ]
    # The message of the change the merge made carries the finished job's duration.
    (data,) = ledger.conn.execute(
        "SELECT data FROM messages WHERE job_id = ? AND sequence = 2", (job["id"],)
    ).fetchone()
    assert json.loads(data)["duration_seconds"] == merged["duration_seconds"] is not None


# -- delivery ----------------------------------------------------------------------------


def test_a_change_reaches_the_endpoint_signed_with_the_job_and_its_metadata(
    ledger, config, receivers
):
    app_config = config()
    receiver = receivers()
    endpoint = add_endpoint(ledger, receiver)
    job = submitted_job(ledger, metadata='{"order": "A-1042", "n": [1, 2]}')
    summary = deliver.run(app_config, once=True).lines[0]
    assert summary["delivered"] == 2 and summary["pending"] == 0
    assert [r["spec_ok"] and r["svix_ok"] for r in receiver.requests] == [True, True]
    first, second = receiver.accepted
    headers = receiver.requests[1]["headers"]
    assert headers["webhook-id"] == second["id"] == webhook_id(job["id"], 2)
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 30
    assert headers["content-type"] == "application/json"
    assert second["type"] == "job.submitted" and second["specversion"] == "1.0"
    assert second["source"] == "https://ledger.example.com"
    assert second["time"] == second["timestamp"]
    record_now = ledger.jobs.get(job["id"])
    data = second["data"]
    assert data["previous_state"] == "submitting" and data["sequence"] == 2
    assert {k: v for k, v in data.items() if k not in ("previous_state", "sequence")} == {
        k: v for k, v in record_now.items() if k != "updated_at"
    } | {"updated_at": data["updated_at"]}
    assert data["metadata"] == {"order": "A-1042", "n": [1, 2]}
    assert first["data"]["previous_state"] is None and first["type"] == "job.submitting"
    shown = ledger.endpoints.get(endpoint["id"])
    assert shown["delivered"] == 2 and shown["last_success_at"] and "secret" not in shown


def test_filters_and_creation_time_decide_who_hears_what(ledger, config, receivers):
    early = receivers()
    everything = add_endpoint(ledger, early)
    before = submitted_job(ledger, "before")
    failures, late = receivers(), receivers()
    add_endpoint(ledger, failures, filter={"state": ["failed"], "provider": ["aliyun"]})
    add_endpoint(ledger, late, filter={"origin": ["submitted"]})
    after = record(ledger, failed_transcode("after"))  # external, failed
    submitted_job(ledger, "after2")
    deliver.run(config(), once=True)
    assert before["id"] in early.sequences() and after.job_id in early.sequences()
    assert list(failures.sequences()) == [after.job_id]
    assert before["id"] not in late.sequences() and after.job_id not in late.sequences()
    assert len(late.accepted) == 2
    assert ledger.endpoints.get(everything["id"])["delivered"] == 5


def test_failures_are_retried_then_kept_failed_with_every_attempt(ledger, config, receivers):
    receiver = receivers(default="fail")
    endpoint = add_endpoint(ledger, receiver)
    record(ledger, failed_transcode("v1"))
    summary = deliver.run(config(), once=True).lines[0]
    assert summary["failed"] == 1 and summary["failed_attempts"] == 4
    [delivery], _ = ledger.deliveries.search(endpoint["id"])
    assert delivery["status"] == "failed" and delivery["next_attempt_at"] is None
    assert [a["status_code"] for a in delivery["attempts"]] == [500] * 4
    assert delivery["attempts"][0]["error"] == "HTTP 500"
    assert delivery["attempts"][0]["response_excerpt"] == "no thanks"
    assert all(a["duration_ms"] >= 0 for a in delivery["attempts"])
    # Every attempt carried the same webhook-id.
    assert len({r["headers"]["webhook-id"] for r in receiver.requests}) == 1
    health = ledger.endpoints.get(endpoint["id"])
    assert health["failed"] == 1 and health["failing_since"] and health["enabled"]


def test_a_redirect_is_a_failed_attempt_and_is_not_followed(ledger, config, receivers):
    target = receivers()
    receiver = receivers(default="redirect")
    receiver.redirect_to = target.url
    endpoint = add_endpoint(ledger, receiver)
    record(ledger, failed_transcode("v1"))
    deliver.run(config(DELIVERY_RETRY_SECONDS=[]), once=True)
    [delivery], _ = ledger.deliveries.search(endpoint["id"])
    assert delivery["status"] == "failed"
    assert delivery["attempts"][0]["error"] == "HTTP 302: a redirect, not followed"
    assert target.requests == []


def test_an_answer_later_than_the_timeout_is_a_failed_attempt(ledger, config, receivers):
    receiver = receivers(default="slow")
    receiver.delay = 3
    endpoint = add_endpoint(ledger, receiver)
    record(ledger, failed_transcode("v1"))
    started = time.monotonic()
    deliver.run(config(DELIVERY_RETRY_SECONDS=[], DELIVERY_TIMEOUT_SECONDS=1), once=True)
    assert time.monotonic() - started < 2.9
    [delivery], _ = ledger.deliveries.search(endpoint["id"])
    attempt = delivery["attempts"][0]
    assert attempt["error"] == "timed out after 1 s" and attempt["status_code"] is None
    assert 900 <= attempt["duration_ms"] < 2000


def test_410_disables_the_endpoint_at_once_with_an_alert(ledger, config, receivers):
    receiver = receivers(default="gone")
    endpoint = add_endpoint(ledger, receiver)
    for video in ("v1", "v2", "v3"):
        record(ledger, failed_transcode(video))
    deliver.run(config(), once=True)
    sent = len(receiver.requests)  # one batch, sent side by side, and nothing after it
    assert 1 <= sent <= deliver.BATCH
    record(ledger, failed_transcode("v4"))
    deliver.run(config(), once=True)
    assert len(receiver.requests) == sent  # nothing more once it said Gone
    shown = ledger.endpoints.get(endpoint["id"])
    assert shown["enabled"] is False and shown["disabled_reason"] == "answered 410 Gone"
    assert shown["pending"] == 4  # they wait for it to be enabled again
    alert = ledger.conn.execute(
        "SELECT state, summary, detail FROM alerts WHERE kind = 'other'"
    ).fetchone()
    assert alert[0] == "endpoint.disabled" and "410" in alert[1]
    assert json.loads(alert[2])["endpoint_id"] == endpoint["id"]
    # Enabled again: what waited goes out.
    receiver.default = "ok"
    ledger.endpoints.update(endpoint["id"], {"enabled": True})
    deliver.run(config(), once=True)
    assert len(receiver.accepted) == 4
    assert ledger.endpoints.get(endpoint["id"])["disabled_reason"] is None


def test_an_endpoint_failing_every_attempt_long_enough_is_disabled(ledger, config, receivers):
    receiver = receivers(default="fail")
    endpoint = add_endpoint(ledger, receiver)
    record(ledger, failed_transcode("v1"))
    app_config = config(DELIVERY_RETRY_SECONDS=[1, 1, 1], DELIVERY_DISABLE_AFTER_SECONDS=1)
    deliver.run(app_config, once=True)
    assert ledger.endpoints.get(endpoint["id"])["enabled"] is True  # failing for 0 s
    time.sleep(1.3)
    deliver.run(app_config, once=True)
    shown = ledger.endpoints.get(endpoint["id"])
    assert shown["enabled"] is False
    assert shown["disabled_reason"].startswith("every attempt failed since")
    assert ledger.conn.execute(
        "SELECT COUNT(*) FROM alerts WHERE state = 'endpoint.disabled'"
    ).fetchone() == (1,)


def test_retry_after_is_honoured_between_the_wait_and_twice_it(ledger, config, receivers):
    policy = deliver.Policy((10, 20), 15, 3600, True, "x")
    now = datetime.now(UTC)

    def wait(code, retry_after, series=0):
        answer = transport.Answer(code, f"HTTP {code}", 5, None, retry_after)
        return (deliver.decide(policy, series, answer, now)["next_attempt_at"] - now).seconds

    assert wait(429, 15) == 15  # within [10, 20]
    assert wait(503, 100) == 20  # never later than twice the wait
    assert 10 <= wait(429, 1) <= 12  # never sooner than the schedule
    assert 10 <= wait(500, 100) <= 12  # only 429 and 503 carry it
    assert 20 <= wait(429, 100, series=1) <= 40
    # A real 429 with Retry-After: 60 (the first wait being 30) is due in about 60 s.
    receiver = receivers(default="throttle")
    endpoint = add_endpoint(ledger, receiver)
    record(ledger, failed_transcode("v1"))
    deliver.run(config(DELIVERY_RETRY_SECONDS=[30]), once=True)
    [delivery], _ = ledger.deliveries.search(endpoint["id"])
    due = datetime.fromisoformat(delivery["next_attempt_at"].replace("Z", "+00:00"))
    assert 58 <= (due - datetime.now(UTC)).total_seconds() <= 61


def test_retry_by_id_and_recover_since(ledger, config, receivers):
    receiver = receivers(default="fail")
    endpoint = add_endpoint(ledger, receiver)
    start = datetime.now(UTC) - timedelta(seconds=1)
    for video in ("v1", "v2", "v3"):
        record(ledger, failed_transcode(video))
    deliver.run(config(DELIVERY_RETRY_SECONDS=[]), once=True)
    assert ledger.endpoints.get(endpoint["id"])["failed"] == 3
    receiver.default = "ok"
    deliveries, _ = ledger.deliveries.search(endpoint["id"])
    assert ledger.deliveries.retry(deliveries[0]["id"], datetime.now(UTC))
    deliver.run(config(), once=True)
    assert len(receiver.accepted) == 1
    later = datetime.now(UTC) + timedelta(seconds=5)
    assert ledger.deliveries.recover(endpoint["id"], later, datetime.now(UTC)) == 0
    assert ledger.deliveries.recover(endpoint["id"], start, datetime.now(UTC)) == 2
    deliver.run(config(), once=True)
    assert len(receiver.accepted) == 3
    assert ledger.endpoints.get(endpoint["id"])["delivered"] == 3


def test_a_rotated_secret_signs_beside_the_new_one_for_a_day(ledger, config, receivers):
    receiver = receivers()
    endpoint = add_endpoint(ledger, receiver)
    old = endpoint["secret"]
    new = ledger.endpoints.rotate_secret(endpoint["id"])
    assert new != old and new.startswith("whsec_")
    record(ledger, failed_transcode("v1"))
    deliver.run(config(), once=True)
    request = receiver.requests[0]
    assert len(request["headers"]["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        receiver.secret = secret
        assert receiver.requests[0]["spec_ok"] or secret == new
    from tests.receivers import spec_verify, svix_verify

    for secret in (old, new):
        assert spec_verify(secret, request["headers"], request["body"])
        assert svix_verify(secret, request["headers"], request["body"])
    # After the overlap, only the new secret signs.
    ledger.conn.execute("UPDATE endpoints SET previous_secret_until = '2000-01-01T00:00:00.000Z'")
    ledger.conn.commit()
    record(ledger, failed_transcode("v2"))
    deliver.run(config(), once=True)
    last = receiver.requests[-1]
    assert len(last["headers"]["webhook-signature"].split(" ")) == 1
    assert spec_verify(new, last["headers"], last["body"])
    assert not spec_verify(old, last["headers"], last["body"])


def test_a_dead_endpoint_delays_no_other(ledger, config, receivers):
    dead, healthy = receivers(default="hang"), receivers()
    add_endpoint(ledger, dead)
    add_endpoint(ledger, healthy)
    stop = threading.Event()
    app_config = config(DELIVERY_TIMEOUT_SECONDS=10)
    worker = threading.Thread(
        target=deliver.run, args=(app_config,), kwargs={"once": False, "stop": stop}
    )
    worker.start()
    try:
        started = time.monotonic()
        for i in range(20):
            record(ledger, failed_transcode(f"v{i}"))
        deadline = time.monotonic() + 8
        while len(healthy.accepted) < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(healthy.accepted) == 20
        assert time.monotonic() - started < 8  # while the dead one still hangs (10 s)
        assert 1 <= len(dead.requests) <= deliver.BATCH  # one batch in flight, no more
    finally:
        stop.set()
        worker.join(timeout=15)
    assert not worker.is_alive()


def test_a_jobs_quick_changes_arrive_in_order_while_its_endpoint_fails(ledger, config, receivers):
    receiver = receivers()
    receiver.plan = ["fail", "fail", "ok", "fail", "ok", "fail", "fail", "fail"]
    add_endpoint(ledger, receiver)
    job = ledger.submissions.begin(
        provider="aliyun",
        service="live",
        kind="edge_transcode",
        operation="aliyun.live.StartEdgeTranscodeJob",
        params={"JobId": "e1"},
    )
    for state in ("running", "stopped", "running", "stopped", "running"):
        ledger.submissions.finish(job["id"], state=state, provider_job_id="e1")
    deliver.run(config(DELIVERY_RETRY_SECONDS=[0] * 5), once=True)
    assert receiver.sequences() == {job["id"]: [1, 2, 3, 4, 5, 6]}
    # No message was even tried before the one before it was delivered.
    tried = [json.loads(r["body"])["data"]["sequence"] for r in receiver.requests]
    assert tried == sorted(tried)


def test_the_stored_record_is_the_job_record_even_with_tricky_values():
    from store.notices import record_text
    from store.records import public_job

    job = {
        "id": "J1",
        "provider": "aliyun",
        "service": "vod",
        "kind": "transcode",
        "provider_job_id": None,
        "media_id": "m",
        "state": "processing",
        "preprocess": None,
        "error_code": '"outputs": []',
        "error_message": '"metadata": {} ünïcode',
        "outputs": json.dumps([{"url": "u", "metadata": {}, "size": 1.5}], ensure_ascii=False),
        "origin": "external",
        "operation": None,
        "submitted_at": "2026-01-01T00:00:00.000Z",
        "updated_at": "2026-01-01T00:00:00.000Z",
        "finished_at": None,
        "started_at": None,
        "duration_seconds": None,
        "metadata": '{"outputs":[],"k":"v"}',
    }
    assert json.loads(record_text(job, "succeeded")) == public_job({**job, "state": "succeeded"})
    job["outputs"] = '[{"size": NaN, "bitrate": Infinity, "name": "NaNa.mp4"}]'
    outputs = json.loads(record_text(job, "failed"))["outputs"]  # strict JSON: no NaN
    assert outputs == [{"size": None, "bitrate": None, "name": "NaNa.mp4"}]
