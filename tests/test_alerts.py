"""Alerts: the outbox, deadlines, webhook and SNS sinks, grouping, and never twice."""

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest

from receiver.background import alerts as alert_worker
from receiver.providers.aliyun import vod as aliyun_vod
from receiver.providers.base import Event
from store.alerts import queue_alert
from tests.engines import ledger_text
from tests.helpers import failed_transcode, fixture_json, free_port, record

pytestmark = pytest.mark.engines


def alert_rows(ledger):
    return ledger.conn.execute(
        "SELECT job_id, state, error_code FROM alerts ORDER BY id"
    ).fetchall()


class Sink:
    """A real local HTTP server that takes alert POSTs, or answers 503 while `down`."""

    def __init__(self, port: int = 0):
        self.received, self.down = [], False
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if sink.down:
                    self.send_response(503)
                else:
                    sink.received.append(json.loads(body))
                    self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def sink():
    s = Sink()
    yield s
    s.close()


def later(seconds: float = 61) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


# -- the outbox -------------------------------------------------------------------------


def test_a_failure_queues_one_alert_in_its_own_transaction(ledger):
    event = failed_transcode("v1")
    for _ in range(3):  # redeliveries
        record(ledger, event)
    assert alert_rows(ledger) == [(ledger.jobs.search()[0][0]["id"], "failed", "TranscodeFail")]


def test_success_and_progress_queue_no_alert(ledger):
    record(ledger, aliyun_vod.parse(json.dumps(fixture_json("aliyun_vod-TranscodeComplete.json"))))
    assert alert_rows(ledger) == []


def test_partial_and_refused_submissions_alert(ledger):
    record(ledger, failed_transcode("v2", state="partial"))
    job = ledger.submissions.begin(
        provider="aliyun",
        service="vod",
        kind="preprocess",
        operation="aliyun.vod.SubmitPreprocessJobs",
        params={"VideoId": "x"},
        media_id="x",
    )
    ledger.submissions.finish(job["id"], state="submit_failed", error_code="InvalidVideo.NotFound")
    assert [r[1:] for r in alert_rows(ledger)] == [
        ("partial", "TranscodeFail"),
        ("submit_failed", "InvalidVideo.NotFound"),
    ]


# -- deadlines --------------------------------------------------------------------------


def test_silent_jobs_time_out_once_and_can_still_be_settled(ledger, app):
    job = ledger.submissions.begin(
        provider="aliyun",
        service="vod",
        kind="preprocess",
        operation="aliyun.vod.SubmitPreprocessJobs",
        params={"VideoId": "v3"},
        media_id="v3",
    )
    config = {"DEADLINES": {"default": 3600, "preprocess": 60}}
    assert alert_worker.sweep_deadlines(config, ledger, now=later(30)) == []
    assert alert_worker.sweep_deadlines(config, ledger, now=later(61)) == [job["id"]]
    assert alert_worker.sweep_deadlines(config, ledger, now=later(120)) == []  # once
    timed_out = ledger.jobs.get(job["id"], with_events=True)
    assert timed_out["state"] == "timed_out" and timed_out["error_code"] == "DeadlineExceeded"
    assert timed_out["events"][-1]["event_type"] == "DeadlineExceeded"
    settled = record(
        ledger,
        Event(
            provider="aliyun",
            service="vod",
            event_type="TranscodeComplete",
            payload="{}",
            dedup_key=b"late-final-event",
            kind="preprocess",
            media_id="v3",
            state="succeeded",
            preprocess=True,
        ),
    )
    assert settled.job_id == job["id"] and settled.state == "succeeded"
    assert [r[1] for r in alert_rows(ledger)] == ["timed_out"]
    assert ledger.jobs.stats()["by_state"] == {"succeeded": 1}


def test_zero_deadline_never_times_out(ledger):
    ledger.submissions.begin(
        provider="aliyun",
        service="live",
        kind="edge_transcode",
        operation="aliyun.live.StartEdgeTranscodeJob",
        params={"ClusterId": "c", "JobId": "j"},
    )
    config = {"DEADLINES": {"default": 60, "edge_transcode": 0}}
    assert alert_worker.sweep_deadlines(config, ledger, now=later(10**6)) == []


# -- delivery ---------------------------------------------------------------------------


def config_for(*urls, **extra):
    return {
        "ALERT_WEBHOOK_URLS": list(urls),
        "ALERT_GROUP_SECONDS": 60,
        "PUBLIC_URL": "https://jobs.example.com",
        **extra,
    }


def test_one_failure_is_one_alert_with_a_link_to_the_job(ledger, sink):
    result = record(ledger, failed_transcode("v4"))
    config = config_for(sink.url)
    assert alert_worker.deliver_alerts(config, ledger, now=later(10)) == {}  # held to group
    assert alert_worker.deliver_alerts(config, ledger, now=later()) == {f"webhook:{sink.url}": 1}
    (message,) = sink.received
    assert message["type"] == "job.alert" and message["job_id"] == result.job_id
    assert (message["state"], message["error_code"], message["media_id"]) == (
        "failed",
        "TranscodeFail",
        "v4",
    )
    assert message["url"] == f"https://jobs.example.com/jobs/{result.job_id}"
    assert alert_worker.deliver_alerts(config, ledger, now=later(600)) == {}  # never twice
    assert len(sink.received) == 1


def test_a_burst_becomes_one_summary(ledger, sink):
    for i in range(20):
        record(ledger, failed_transcode(f"burst-{i}"))
    alert_worker.deliver_alerts(config_for(sink.url), ledger, now=later())
    (summary,) = sink.received
    assert summary["type"] == "job.alert.summary" and summary["count"] == 20
    assert summary["by_state"] == {"failed": 20} and len(summary["alerts"]) == 20


def queue_other(ledger, subject="anomaly:aliyun/vod/transcode:1:started"):
    return ledger.session.write(
        lambda: queue_alert(
            ledger.session,
            subject=subject,
            kind="provider.anomaly.started",
            summary="Alibaba VOD transcode failing 45 % (baseline 2 %)",
            detail={"provider": "aliyun", "path": "/#health"},
        )
    )


def test_an_alert_about_no_job_is_queued_once_and_sent_as_itself(ledger, sink, client):
    assert queue_other(ledger) is True
    assert queue_other(ledger) is False  # the same news, noticed again
    alert_worker.deliver_alerts(config_for(sink.url), ledger, now=later())
    (message,) = sink.received
    assert message["type"] == "provider.anomaly.started"
    assert message["summary"] == "Alibaba VOD transcode failing 45 % (baseline 2 %)"
    assert message["detail"] == {"provider": "aliyun", "path": "/#health"}
    assert message["url"] == "https://jobs.example.com/#health"
    assert "Alibaba VOD transcode failing 45 %" in client.get("/").get_data(as_text=True)


def test_a_summary_counts_job_states_apart_from_other_alerts(ledger, sink):
    record(ledger, failed_transcode("v-mixed"))
    queue_other(ledger)
    alert_worker.deliver_alerts(config_for(sink.url), ledger, now=later())
    (summary,) = sink.received
    assert summary["type"] == "job.alert.summary" and summary["count"] == 2
    assert summary["by_state"] == {"failed": 1}
    assert summary["others"] == ["Alibaba VOD transcode failing 45 % (baseline 2 %)"]
    assert summary["url"] == "https://jobs.example.com/jobs?state=failed"
    assert ledger.alerts.by_hour(datetime.now(UTC))[-1]["by_state"] == {"failed": 1}


def test_a_sink_that_is_down_gets_everything_when_it_is_back(ledger, sink):
    other = Sink()
    try:
        record(ledger, failed_transcode("v5"))
        config = config_for(sink.url, other.url)
        sink.down = True
        sent = alert_worker.deliver_alerts(config, ledger, now=later())
        assert sent == {f"webhook:{other.url}": 1}  # the healthy sink is not held back
        record(ledger, failed_transcode("v6"))
        # the healthy sink takes the new alert; the down one fails again
        assert alert_worker.deliver_alerts(config, ledger, now=later(65)) == {
            f"webhook:{other.url}": 1
        }
        sink.down = False
        sent = alert_worker.deliver_alerts(config, ledger, now=later(3600))  # an hour later
        assert sent[f"webhook:{sink.url}"] == 2
        assert {a["media_id"] for a in sink.received[0]["alerts"]} == {"v5", "v6"}
        assert [m["type"] for m in other.received] == ["job.alert", "job.alert"]
        deliveries = ledger.alerts.for_job(ledger.jobs.search(q="v5")[0][0]["id"])
        attempts = {d["sink"]: d["attempts"] for d in deliveries[0]["deliveries"]}
        assert attempts == {f"webhook:{sink.url}": 2, f"webhook:{other.url}": 1}
    finally:
        other.close()


def test_an_unreachable_sink_is_retried_with_backoff(ledger):
    url = f"http://127.0.0.1:{free_port()}/nobody-listens"
    record(ledger, failed_transcode("v7"))
    alert_worker.deliver_alerts(config_for(url), ledger, now=later())
    row = ledger.conn.execute(
        "SELECT attempts, next_attempt_at, last_error FROM alert_deliveries"
    ).fetchone()
    assert row[0] == 1 and "unreachable" in row[2]
    retry_at = datetime.fromisoformat(row[1].replace("Z", "+00:00"))
    assert timedelta(seconds=25) < retry_at - later() < timedelta(seconds=40)


# -- SNS, through boto3, against moto's server over HTTP --------------------------------


# The `moto_server` fixture is in tests/aws.py.


def test_sns_alerts_arrive_in_a_subscribed_queue(ledger, moto_server):
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic = sns.create_topic(Name="jobledger-alerts")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="oncall")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    result = record(ledger, failed_transcode("v8"))
    config = config_for(ALERT_SNS_TOPIC_ARN=topic)
    assert alert_worker.deliver_alerts(config, ledger, now=later()) == {f"sns:{topic}": 1}
    messages = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=2)["Messages"]
    envelope = json.loads(messages[0]["Body"])
    assert envelope["Subject"].startswith("jobledger: transcode job failed")
    alert = json.loads(envelope["Message"])
    assert alert["job_id"] == result.job_id and alert["state"] == "failed"
    assert alert_worker.deliver_alerts(config, ledger, now=later(900)) == {}
    sns.close()
    sqs.close()


def test_sns_failure_is_recorded_for_retry(ledger, moto_server):
    record(ledger, failed_transcode("v9"))
    config = config_for(ALERT_SNS_TOPIC_ARN="arn:aws:sns:us-east-1:123456789012:missing")
    assert alert_worker.deliver_alerts(config, ledger, now=later()) == {}
    error = ledger.conn.execute("SELECT last_error FROM alert_deliveries").fetchone()[0]
    assert "SNS publish failed" in error


def test_credentials_never_reach_the_ledger(ledger, moto_server, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sEcReT-sns-key-42")
    record(ledger, failed_transcode("v10"))
    alert_worker.deliver_alerts(
        config_for(ALERT_SNS_TOPIC_ARN="arn:aws:sns:us-east-1:1:x"), ledger, now=later()
    )
    assert ledger.conn.execute("SELECT COUNT(*) FROM alert_deliveries").fetchone()[0] == 1
    assert "sEcReT-sns-key-42" not in ledger_text(ledger)


def test_reconcile_command_times_out_and_alerts(make_app, ledger, sink):
    app = make_app(
        ALERT_WEBHOOK_URLS=[sink.url],
        ALERT_GROUP_SECONDS=0,
        DEADLINES={"default": 3600, "snapshot": 60},
    )
    job = ledger.submissions.begin(
        provider="aliyun",
        service="vod",
        kind="snapshot",
        operation="aliyun.vod.SubmitSnapshotJob",
        params={"VideoId": "v11"},
        media_id="v11",
    )
    # Submitted two minutes ago, and nothing heard since.
    ledger.conn.execute(
        "UPDATE jobs SET submitted_at = ? WHERE id = ?",
        ((datetime.now(UTC) - timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%S.000Z"), job["id"]),
    )
    ledger.conn.commit()
    result = app.test_cli_runner().invoke(args=["reconcile", "--once"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output.strip().splitlines()[-1])
    assert stats["timed_out"] == 1 and stats["alerts_sent"] == 1
    (message,) = sink.received
    assert (message["job_id"], message["state"]) == (job["id"], "timed_out")
    again = app.test_cli_runner().invoke(args=["reconcile", "--once"])
    assert json.loads(again.output.strip().splitlines()[-1])["alerts_sent"] == 0
    assert len(sink.received) == 1
