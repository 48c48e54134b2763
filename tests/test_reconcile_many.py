"""Several `reconcile` processes at once, on one ledger: each alert reaches each sink once,
and each due job is polled by one of them."""

import os
import threading
from collections import Counter

import pytest

from tests.helpers import TimedSink, failed_transcode, reconcile_env, record, run_reconciles
from tests.provider_env import (
    IPRODUCTION,
    environment,
    provider_settings,
)

pytestmark = [pytest.mark.engines, pytest.mark.slow]


@pytest.fixture
def sinks():
    made = [TimedSink(delay=0.5), TimedSink()]
    yield made
    for sink in made:
        sink.close()


@pytest.mark.parametrize("processes", [2, 3])
def test_each_alert_reaches_each_sink_once(ledger, db_path, sinks, processes):
    env = reconcile_env(db_path, *(s.url for s in sinks))
    for wave in range(3):  # alerts keep arriving while reconciles come and go
        for i in range(4):
            record(ledger, failed_transcode(f"wave{wave}-video{i}"))
        run_reconciles(processes, env)
    alert_ids = [row[0] for row in ledger.conn.execute("SELECT id FROM alerts").fetchall()]
    kinds = [row[0] for row in ledger.conn.execute("SELECT kind FROM alerts ORDER BY id")]
    # One alert per failed job, and one more when the kind's failure rate turned anomalous
    # (a dozen failures of a dozen, against no history): each reaches each sink once.
    assert kinds.count("job") == 12 and kinds.count("other") == 1
    for sink in sinks:
        assert sink.alert_ids() == Counter({i: 1 for i in alert_ids}), sink.url
    delivered = ledger.conn.execute(
        "SELECT COUNT(*) FROM alert_deliveries WHERE delivered_at IS NOT NULL AND attempts = 1"
    ).fetchone()[0]
    assert delivered == 2 * len(alert_ids)


def test_claimed_polls_go_to_one_caller(ledger):
    jobs = [
        ledger.submissions.begin(
            provider="aliyun",
            service="vod",
            kind="transcode",
            operation="SubmitTranscodeJobs",
            params={"VideoId": f"v{i}"},
            media_id=f"v{i}",
        )
        for i in range(30)
    ]
    now, before = "2100-01-01T00:00:00.000Z", "2100-01-01T00:00:00.000Z"
    until = "2100-01-01T00:10:00.000Z"
    first = ledger.polls.claim_due(now, before, 20, until)
    second = ledger.polls.claim_due(now, before, 20, until)
    assert len(first) == 20 and len(second) == 10
    assert {j["id"] for j in first} | {j["id"] for j in second} == {j["id"] for j in jobs}
    assert ledger.polls.claim_due(now, before, 20, until) == []
    # A claim that ran out (its process died) makes the job due again.
    assert len(ledger.polls.claim_due(until, before, 50, "2100-01-01T00:20:00.000Z")) == 30


def test_call_slots_are_shared_across_callers(ledger):
    slots = [ledger.polls.take_call_slot("aliyun.vod", 0.1, 1000.0) for _ in range(5)]
    assert slots == pytest.approx([1000.0, 1000.1, 1000.2, 1000.3, 1000.4])
    assert ledger.polls.take_call_slot("aliyun.vod", 0.1, 2000.0) == pytest.approx(2000.0)


def test_a_stopped_pass_gives_its_claims_back(ledger, monkeypatch):
    from datetime import UTC, datetime, timedelta

    from receiver.background.reconcile import reconcile_pass

    for i in range(3):
        ledger.submissions.begin(
            provider="aliyun",
            service="vod",
            kind="transcode",
            operation="SubmitTranscodeJobs",
            params={"VideoId": f"stop{i}"},
            media_id=f"stop{i}",
        )
    stop = threading.Event()
    stop.set()  # SIGTERM before the first poll
    later = datetime.now(UTC) + timedelta(hours=1)
    assert reconcile_pass({"DEADLINES": {"default": 0}}, ledger, later, stop=stop)["due"] == 3
    rows = ledger.conn.execute("SELECT next_poll_at, poll_count FROM jobs").fetchall()
    assert rows == [(None, 0)] * 3  # due again at once for another reconcile


def test_each_due_job_is_polled_by_one_of_three_reconciles(build, fakes, ledger, db_path):
    client = build().test_client()
    jobs = []
    for _ in range(12):
        response = client.post(
            "/api/jobs",
            json={"operation": "aliyun.mps.SubmitIProductionJob", "params": IPRODUCTION},
        )
        assert response.status_code == 201, response.get_json()
        jobs.append(response.get_json())
    for job in jobs:  # all due now, not a minute after their submission
        ledger.polls.schedule(job["id"], "2000-01-01T00:00:00.000Z", counted=False)
        fakes.aliyun.set_iproduction(job["provider_job_id"], "Analysing")
    env = environment(os.environ, {"DATABASE": db_path, **provider_settings(fakes)})
    run_reconciles(3, env)
    asked = Counter(
        p["JobId"] for action, p in fakes.aliyun.calls if action == "QueryIProductionJob"
    )
    assert asked == Counter({job["provider_job_id"]: 1 for job in jobs})
    assert {ledger.jobs.get(job["id"])["state"] for job in jobs} == {"processing"}


def test_pacers_of_several_processes_share_one_pace(db_path):
    """Three reconcilers, each with its own connection: the calls of one API family are
    spaced 1/QPS apart across all of them, each made no earlier than its slot."""
    import time as clock

    from receiver.background.reconcile import Pacer
    from store import open_ledger

    interval, calls, lock = 0.05, [], threading.Lock()

    def reconciler() -> None:
        slots: list[float] = []
        with open_ledger(db_path) as ledger:

            def shared(family: str, step: float, now: float) -> float:
                slots.append(ledger.polls.take_call_slot(family, step, now))
                return slots[-1]

            pacer = Pacer({"aliyun.mps": 1 / interval}, shared=shared)
            for _ in range(5):
                pacer.wait("aliyun.mps")
                made_at = clock.time()  # the call would be made now
                with lock:
                    calls.append((slots[-1], made_at))

    threads = [threading.Thread(target=reconciler) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    slots = sorted(slot for slot, _ in calls)
    assert len(slots) == 15
    assert all(b - a >= interval - 1e-6 for a, b in zip(slots, slots[1:], strict=False))
    assert all(made_at >= slot - 1e-3 for slot, made_at in calls)
