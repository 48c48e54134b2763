"""Provider health: failure-rate anomalies and their alerts, durations, percentiles, slow jobs.

Histories are generated on both engines: settled jobs written through the ledger's own row
helper (`insert_job`, which derives `settled_at` and `duration_seconds` as every change
does), spread over the past week; the recent burst arrives as real provider notices.
"""

import json
import math
import random
import threading
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.background import alerts as alert_worker
from receiver.background.health import anomalous, health_pass, wilson_lower
from receiver.config import ConfigError, from_environ
from receiver.providers.aliyun import vod as aliyun_vod
from receiver.providers.tencent import vod as tencent_vod
from store import open_ledger
from store.ids import iso
from store.notices import insert_job, new_job
from tests.helpers import failed_transcode, fixture_json, record
from tests.test_alerts import Sink

pytestmark = pytest.mark.engines

CONFIG = {
    "ANOMALY_WINDOW_SECONDS": 900,
    "ANOMALY_BASELINE_SECONDS": 604800,
    "ANOMALY_MIN_FAILURES": 5,
}
TRANSCODE = ("aliyun", "vod", "transcode")
PROCEDURE = ("tencent", "vod", "procedure")
IPRODUCTION = ("aliyun", "mps", "iproduction")


def settled_job(session, group, *, at: datetime, state: str, took: float, origin="submitted"):
    """Write one job that was submitted `took` seconds before it settled at `at`."""
    provider, service, kind = group
    job = new_job(
        provider=provider, service=service, kind=kind, state=state, origin=origin, now=iso(at)
    )
    job["submitted_at"] = iso(at - timedelta(seconds=took))
    if state != "timed_out":
        job["finished_at"] = iso(at)
    insert_job(session, job)
    return job


def steady(ledger, group, now, *, per_hour=6, fail_every=50, took=lambda i: 120.0, hours=168):
    """A week of settled jobs before the window: one in `fail_every` failed."""
    start = now - timedelta(seconds=900) - timedelta(hours=hours)

    def write():
        for i in range(hours * per_hour):
            at = start + timedelta(minutes=60 / per_hour * i + 1)
            state = "failed" if fail_every and i % fail_every == fail_every - 1 else "succeeded"
            settled_job(ledger.session, group, at=at, state=state, took=took(i))

    ledger.session.write(write)


def running_job(ledger, group, now: datetime, *, took: float) -> str:
    """Write one job of `group` submitted `took` seconds before `now`, still running."""
    provider, service, kind = group
    job = new_job(
        provider=provider,
        service=service,
        kind=kind,
        state="processing",
        origin="submitted",
        now=iso(now),
    )
    job["submitted_at"] = iso(now - timedelta(seconds=took))
    ledger.session.write(insert_job, ledger.session, job)
    return job["id"]


def transcode_success(video: str):
    doc = fixture_json("aliyun_vod-TranscodeComplete.json")
    doc["VideoId"] = video
    return aliyun_vod.parse(json.dumps(doc))


def snapshot(ledger) -> dict:
    return {(g["provider"], g["service"], g["kind"]): g for g in ledger.provider_health.snapshot()}


def anomaly_alerts(sink) -> list[dict]:
    out = []
    for message in sink.received:
        for alert in message.get("alerts", [message]):
            if alert.get("type", "").startswith("provider.anomaly"):
                out.append(alert)
    return out


def test_a_burst_in_one_kind_alerts_once_when_it_starts_and_once_when_it_ends(ledger):
    now = datetime.now(UTC)
    steady(ledger, TRANSCODE, now)  # 2 % of a week's transcodes failed
    steady(ledger, PROCEDURE, now)
    steady(ledger, IPRODUCTION, now, per_hour=1, fail_every=0)  # small, never failed

    def normal_window():  # Tencent keeps its usual rate in the window
        for i in range(20):
            at = now - timedelta(minutes=10, seconds=-i)
            settled_job(ledger.session, PROCEDURE, at=at, state="succeeded", took=90)
        for i in range(4):  # four failures of four: under the minimum, never an anomaly
            at = now - timedelta(minutes=5, seconds=-i)
            settled_job(ledger.session, IPRODUCTION, at=at, state="failed", took=30)

    ledger.session.write(normal_window)
    for i in range(9):  # Alibaba VOD starts failing: 9 transcodes of 20
        record(ledger, failed_transcode(f"burst-fail-{i}"))
    for i in range(11):
        record(ledger, transcode_success(f"burst-ok-{i}"))
    sink = Sink()
    config = {**CONFIG, "ALERT_WEBHOOK_URLS": [sink.url], "ALERT_GROUP_SECONDS": 0}
    try:
        now = datetime.now(UTC)  # the notices are in: judge as of now
        result = health_pass(config, ledger, now)
        assert result["anomalies"] == 1 and result["anomaly_alerts"] == 1
        groups = snapshot(ledger)
        assert groups[TRANSCODE]["anomaly"] == 1
        assert groups[TRANSCODE]["anomaly_reason"].startswith(
            "Alibaba VOD transcode failing 45 % in the last 15 min (baseline 2 %)"
        )
        assert (groups[TRANSCODE]["window_finished"], groups[TRANSCODE]["window_failed"]) == (20, 9)
        assert groups[TRANSCODE]["baseline_finished"] == 1008
        assert groups[TRANSCODE]["baseline_failed"] == 20
        assert groups[PROCEDURE]["anomaly"] == 0 and groups[IPRODUCTION]["anomaly"] == 0
        assert groups[IPRODUCTION]["window_failed"] == 4
        # Still failing a pass later, and another process judging it too: no second alert.
        assert health_pass(config, ledger, now + timedelta(seconds=16))["anomaly_alerts"] == 0
        alert_worker.deliver_alerts(config, ledger, now + timedelta(seconds=20))
        (started,) = anomaly_alerts(sink)
        assert started["type"] == "provider.anomaly.started"
        assert started["summary"] == (
            "Alibaba VOD transcode failing 45 % in the last 15 min (baseline 2 %)"
        )
        assert started["detail"]["window"] == {"finished": 20, "failed": 9, "failure_rate": 0.45}
        # The burst has left the window; the all-clear comes once, a little later.
        later = now + timedelta(minutes=16)
        assert health_pass(config, ledger, later)["anomaly_alerts"] == 1
        assert snapshot(ledger)[TRANSCODE]["anomaly"] == 0
        assert health_pass(config, ledger, later + timedelta(seconds=15))["anomaly_alerts"] == 0
        alert_worker.deliver_alerts(config, ledger, later + timedelta(seconds=20))
        assert [a["type"] for a in anomaly_alerts(sink)] == [
            "provider.anomaly.started",
            "provider.anomaly.ended",
        ]
        ended = anomaly_alerts(sink)[-1]
        assert ended["summary"].startswith("Alibaba VOD transcode back to normal")
    finally:
        sink.close()


def test_an_anomaly_flickering_off_for_a_pass_is_still_one_anomaly(ledger):
    now = datetime.now(UTC)
    steady(ledger, TRANSCODE, now)
    for i in range(8):
        record(ledger, failed_transcode(f"flicker-{i}"))
    now = datetime.now(UTC)
    assert health_pass(CONFIG, ledger, now)["anomaly_alerts"] == 1
    # Three minutes on the burst is still in the window, but the rule stops holding for a
    # pass (as a rate hovering at the threshold does): the anomaly goes on, unannounced.
    quiet = {**CONFIG, "ANOMALY_MIN_FAILURES": 50}  # the rule stops holding for a pass
    assert health_pass(quiet, ledger, now + timedelta(minutes=3))["anomaly_alerts"] == 0
    assert snapshot(ledger)[TRANSCODE]["anomaly"] == 1  # within the clearing time
    assert health_pass(CONFIG, ledger, now + timedelta(minutes=4))["anomaly_alerts"] == 0
    kinds = [r[0] for r in ledger.conn.execute("SELECT state FROM alerts WHERE job_id IS NULL")]
    assert kinds == ["provider.anomaly.started"]


def test_processes_judging_at_once_queue_each_start_once(db_path):
    now = datetime.now(UTC)
    with open_ledger(db_path) as ledger:
        steady(ledger, TRANSCODE, now)
        for i in range(8):
            record(ledger, failed_transcode(f"race-{i}"))
    now = datetime.now(UTC)
    errors = []

    def judge(offset: int):
        try:
            with open_ledger(db_path) as mine:
                health_pass(CONFIG, mine, now + timedelta(milliseconds=offset))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=judge, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    with open_ledger(db_path) as ledger:
        rows = ledger.conn.execute("SELECT state FROM alerts WHERE job_id IS NULL").fetchall()
        assert [r[0] for r in rows] == ["provider.anomaly.started"]
        # every settled job counted once, whoever counted it
        hours = ledger.conn.execute("SELECT SUM(finished) FROM health_hours").fetchone()[0]
        assert hours == 1008


# -- durations and percentiles ---------------------------------------------------------------


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def test_percentiles_match_the_durations_within_the_bucket_precision(ledger, client):
    now = datetime.now(UTC)
    rng = random.Random(21)
    durations = [round(rng.lognormvariate(6, 1.2), 3) for _ in range(300)]
    steady(ledger, TRANSCODE, now, per_hour=2, hours=150, took=lambda i: durations[i])
    health_pass(CONFIG, ledger, now)
    body = client.get("/api/health/providers").get_json()
    (group,) = body["groups"]
    assert group["duration_seconds"]["count"] == 300  # failed jobs took their time too
    for q, name in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
        exact = nearest_rank(durations, q)
        assert abs(group["duration_seconds"][name] - exact) <= 0.045 * exact, name
    assert body["generated_at"] is not None
    assert group["window"] == {"finished": 0, "failed": 0, "failure_rate": None}
    assert group["baseline"]["finished"] == 300 and group["anomaly"] is False


def test_durations_run_from_the_start_the_job_record_can_know(ledger, client):
    job = ledger.submissions.begin(
        provider="aliyun",
        service="vod",
        kind="preprocess",
        operation="aliyun.vod.SubmitPreprocessJobs",
        params={"VideoId": "v-d"},
        media_id="v-d",
    )
    ledger.submissions.finish(job["id"], state="submit_failed", error_code="Forbidden")
    refused = client.get(f"/api/jobs/{job['id']}").get_json()
    start = datetime.fromisoformat(refused["submitted_at"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(refused["finished_at"].replace("Z", "+00:00"))
    assert refused["duration_seconds"] == round((end - start).total_seconds(), 3)
    # A Tencent task flow first heard of finished: its subtasks say when they began.
    doc = fixture_json("tencent_vod-v3-ProcedureStateChanged.json")
    task = doc["ProcedureStateChangeEvent"]
    sub = task["MediaProcessResultSet"][0]["TranscodeTask"]
    sub["BeginProcessTime"], sub["FinishTime"] = "2026-11-02T08:00:00Z", "2026-11-02T08:12:30Z"
    result = record(ledger, tencent_vod.parse(json.dumps(doc)))
    flow = client.get(f"/api/jobs/{result.job_id}").get_json()
    assert flow["origin"] == "external" and flow["duration_seconds"] == 750.0
    # First seen finished, with nothing saying when it began: no duration, never negative.
    old = record(ledger, transcode_success("v-old"))
    assert client.get(f"/api/jobs/{old.job_id}").get_json()["duration_seconds"] is None
    running = client.get("/api/jobs?state=submitting").get_json()["jobs"]
    assert all(j["duration_seconds"] is None and j["slow"] is False for j in running)


def test_jobs_running_past_their_kinds_p95_are_slow(ledger, client):
    now = datetime.now(UTC)
    steady(ledger, PROCEDURE, now, per_hour=1, hours=30, took=lambda i: 60.0 * (i % 10 + 1))
    health_pass(CONFIG, ledger, now)
    (group,) = client.get("/api/health/providers").get_json()["groups"]
    p95 = group["duration_seconds"]["p95"]
    assert abs(p95 - 600) <= 0.045 * 600

    def running(took: float, kind=PROCEDURE) -> str:
        return running_job(ledger, kind, now, took=took)

    late, early = running(p95 + 120), running(p95 - 120)
    other = running(10**5, TRANSCODE)  # a kind without 20 durations is never slow
    slow = client.get("/api/jobs?slow=true").get_json()["jobs"]
    assert [j["id"] for j in slow] == [late] and slow[0]["slow"] is True
    records = {j["id"]: j["slow"] for j in client.get("/api/jobs").get_json()["jobs"]}
    assert records[late] is True and records[early] is False and records[other] is False
    assert client.get(f"/api/jobs/{late}").get_json()["slow"] is True
    assert client.get("/api/jobs?slow=false").get_json()["jobs"][0]["id"] == other
    answer = client.get("/api/jobs?slow=maybe")
    assert answer.status_code == 400 and "slow" in answer.get_json()["error"]
    health_pass(CONFIG, ledger, datetime.now(UTC))  # the pass counts them for the dashboard
    (group,) = client.get("/api/health/providers").get_json()["groups"]
    assert group["slow_jobs"] == 1


# -- the rule --------------------------------------------------------------------------------


def test_wilson_lower_bound_worked_numbers():
    # The numbers docs/operations.md gives.
    assert round(wilson_lower(9, 20), 3) == 0.258
    assert round(wilson_lower(2, 3), 3) == 0.208
    assert round(wilson_lower(5, 5), 3) == 0.566
    assert round(wilson_lower(5, 100), 3) == 0.022
    assert anomalous(9, 20, 20, 1000, 5) and not anomalous(5, 100, 20, 1000, 5)
    assert not anomalous(4, 4, 0, 1000, 5)  # too few failures, however high the rate
    assert not anomalous(12, 15, 300, 1000, 5)  # 80 % of 15 against a 30 % baseline
    assert anomalous(20, 20, 300, 1000, 5)


counts = st.integers(min_value=0, max_value=5000)


@pytest.mark.sqlite_only
@given(data=st.data(), extra=counts, base_failed=counts, base_extra=counts)
def test_the_rule_never_fires_below_the_minimum(data, extra, base_failed, base_extra):
    minimum = data.draw(st.integers(1, 50), label="minimum")
    failed = data.draw(st.integers(0, minimum - 1), label="failed")  # always below it
    assert not anomalous(failed, failed + extra, base_failed, base_failed + base_extra, minimum)


@pytest.mark.sqlite_only
@given(failed=st.integers(1, 5000), base_finished=st.integers(0, 10**6), minimum=st.integers(1, 50))
def test_the_rule_always_fires_on_all_failures_against_a_clean_baseline(
    failed, base_finished, minimum
):
    assert anomalous(failed, failed, 0, base_finished, minimum) is (failed >= minimum)


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    "name, value",
    [
        ("ANOMALY_WINDOW_SECONDS", "15m"),
        ("ANOMALY_BASELINE_SECONDS", "0"),
        ("ANOMALY_MIN_FAILURES", "-1"),
    ],
)
def test_malformed_anomaly_settings_stop_start_up_naming_the_variable(name, value):
    with pytest.raises(ConfigError, match=f"RECEIVER_{name} is malformed"):
        from_environ({f"RECEIVER_{name}": value})
    assert from_environ({f"RECEIVER_{name}": "30"}) == {name: 30}


def test_reconcile_judges_health_and_sends_the_anomaly_within_its_pass(make_app, ledger):
    now = datetime.now(UTC)
    steady(ledger, TRANSCODE, now)
    for i in range(9):
        record(ledger, failed_transcode(f"cli-{i}"))
    sink = Sink()
    try:
        app = make_app(ALERT_WEBHOOK_URLS=[sink.url], ALERT_GROUP_SECONDS=0)
        result = app.test_cli_runner().invoke(args=["reconcile", "--once"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output.strip().splitlines()[-1])["anomalies"] == 1
        (started,) = anomaly_alerts(sink)
        assert started["summary"].startswith("Alibaba VOD transcode failing 100 %")
        page = app.test_client().get("/").get_data(as_text=True)
        assert 'id="anomaly-aliyun-vod-transcode"' in page
        again = app.test_cli_runner().invoke(args=["reconcile", "--once"])
        assert json.loads(again.output.strip().splitlines()[-1])["anomalies"] == 1
        assert len(anomaly_alerts(sink)) == 1  # still the same anomaly: nothing more sent
    finally:
        sink.close()


# -- the provider's own start times -------------------------------------------------------


@pytest.mark.sqlite_only
def test_notices_and_answers_carry_the_providers_start_time():
    from receiver.providers import status_answers

    # Newer payloads give each stream a StartTime (the real sample in aliyun_vod-
    # TranscodeComplete-real.txt does): the first began the job.
    doc = fixture_json("aliyun_vod-TranscodeComplete.json")
    doc["EventTime"] = "2020-07-10T06:49:51Z"
    doc["StreamInfos"][0]["StartTime"] = "2020-07-10T06:49:30Z"
    doc["StreamInfos"][1]["StartTime"] = "2020-07-10T06:49:24Z"
    real = aliyun_vod.parse(json.dumps(doc))
    assert real.started_at == "2020-07-10T06:49:24.000Z"
    assert real.occurred_at == "2020-07-10T06:49:51.000Z"
    detail = {
        "TaskType": "Procedure",
        "Status": "FINISH",
        "CreateTime": "2019-02-21T08:27:42Z",
        "BeginProcessTime": "2019-02-21T08:27:43Z",
        "FinishTime": "2019-02-21T08:27:44Z",
        "ProcedureTask": dict(
            fixture_json("tencent_vod-v3-ProcedureStateChanged.json")["ProcedureStateChangeEvent"]
        ),
    }
    answer = status_answers.tencent_task_detail(detail, "DescribeTaskDetail")
    assert answer is not None and answer.started_at == "2019-02-21T08:27:42.000Z"
    task = {
        "TranscodeTask": {
            "TranscodeTaskId": "t",
            "VideoId": "v",
            "TaskStatus": "CompleteAllSucc",
            "CreationTime": "2026-11-02T08:00:00Z",
            "CompleteTime": "2026-11-02T08:04:00Z",
        }
    }
    vod = status_answers.vod_transcode_task(task, "GetTranscodeTask")
    assert vod is not None and vod.started_at == "2026-11-02T08:00:00.000Z"
    plain = fixture_json("aliyun_vod-TranscodeComplete.json")  # no StartTime in the sample
    assert aliyun_vod.parse(json.dumps(plain)).started_at is None
