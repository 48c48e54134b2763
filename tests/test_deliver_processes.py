"""Real `deliver` processes: killed mid-send, stopped by SIGTERM, two and three at once,
on both engines; and a property over every interleaving of notices, deliveries and
failures: each endpoint hears each job's changes in order, with no gap."""

import itertools
import json
import os
import signal
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver.background import deliver
from receiver.providers.base import Event
from store import open_ledger
from store.deliveries import webhook_id
from tests.helpers import ROOT, failed_transcode, flask_command, record, wait_for
from tests.receivers import Receiver

pytestmark = [pytest.mark.engines, pytest.mark.slow]


def deliver_env(database, **settings) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIVER_")}
    env.update(
        RECEIVER_DATABASE=str(database),
        RECEIVER_DELIVERY_ALLOW_PRIVATE="1",
        RECEIVER_DELIVERY_TIMEOUT_SECONDS="1",
        RECEIVER_DELIVERY_RETRY_SECONDS="0,0,0",
    )
    env.update({f"RECEIVER_{k}": str(v) for k, v in settings.items()})
    return env


def toggled_jobs(ledger, count: int, changes: int) -> list[str]:
    """Make Live jobs that change state `changes` times each, interleaved."""
    jobs = [
        ledger.submissions.begin(
            provider="aliyun",
            service="live",
            kind="edge_transcode",
            operation="aliyun.live.StartEdgeTranscodeJob",
            params={"JobId": f"e{i}"},
        )["id"]
        for i in range(count)
    ]
    for n in range(changes - 1):
        for i, job_id in enumerate(jobs):
            state = "running" if n % 2 == 0 else "stopped"
            ledger.submissions.finish(job_id, state=state, provider_job_id=f"e{i}")
    return jobs


def add(ledger, receiver: Receiver) -> dict:
    endpoint = ledger.endpoints.create(url=receiver.url)
    receiver.secret = endpoint["secret"]
    return endpoint


def test_a_killed_deliver_leaves_its_message_to_the_next_one(ledger, db_path, receivers, tmp_path):
    receiver = receivers(default="slow")
    receiver.delay = 0.8
    endpoint = add(ledger, receiver)
    record(ledger, failed_transcode("v1"))
    env = deliver_env(db_path)
    with flask_command(["deliver"], env, tmp_path / "first.log") as first:
        wait_for(receiver.started.is_set, what="the first send", proc=first)
        first.send_signal(signal.SIGKILL)  # mid-send: the answer has not come
        first.wait(10)
    receiver.default = "ok"
    [delivery], _ = ledger.deliveries.search(endpoint["id"])
    assert delivery["status"] == "pending" and delivery["attempts"] == []  # nothing recorded
    with flask_command(["deliver"], env, tmp_path / "second.log") as second:
        # Its claim runs out (the 1 s timeout and a margin), then another takes it over.
        wait_for(
            lambda: ledger.endpoints.get(endpoint["id"])["delivered"] == 1,
            timeout=30,
            what="the takeover",
            proc=second,
        )
        second.send_signal(signal.SIGTERM)
        assert second.wait(15) == 0
    ids = {r["headers"]["webhook-id"] for r in receiver.requests}
    assert len(receiver.requests) == 2 and len(ids) == 1  # at least once, the same id
    assert all(r["spec_ok"] and r["svix_ok"] for r in receiver.requests)


def test_sigterm_finishes_the_attempt_in_hand_and_loses_nothing(
    ledger, db_path, receivers, tmp_path
):
    receiver = receivers(default="slow")
    receiver.delay = 0.6
    endpoint = add(ledger, receiver)
    for video in ("v1", "v2", "v3"):
        record(ledger, failed_transcode(video))
    env = deliver_env(db_path)
    with flask_command(["deliver"], env, tmp_path / "deliver.log") as proc:
        wait_for(receiver.started.is_set, what="the first send", proc=proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    delivered = ledger.endpoints.get(endpoint["id"])["delivered"]
    assert delivered >= 1  # the attempt in hand was finished and recorded
    assert len(receiver.accepted) == delivered
    receiver.default = "ok"
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "deliver", "--once"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert ledger.endpoints.get(endpoint["id"])["delivered"] == 3
    assert sorted(m["data"]["id"] for m in receiver.accepted) == sorted(
        r[0] for r in ledger.conn.execute("SELECT job_id FROM messages").fetchall()
    )


@pytest.mark.parametrize("processes", [2, 3])
def test_several_delivers_send_each_message_once_in_order(ledger, db_path, receivers, processes):
    slow, fast = receivers(default="slow"), receivers()
    slow.delay = 0.02
    slow_endpoint, fast_endpoint = add(ledger, slow), add(ledger, fast)
    jobs = toggled_jobs(ledger, 8, 4)
    for video in range(6):
        record(ledger, failed_transcode(f"v{video}"))
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "deliver", "--once"]
    env = deliver_env(db_path, DELIVERY_TIMEOUT_SECONDS=5)
    procs = [
        subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(processes)
    ]
    summaries = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode(errors="replace")
        summaries.append(json.loads(out))
    # Leftovers a process left due when it stopped are sent by one more pass.
    deliver.run({**deliver_config(db_path)}, once=True)
    total = ledger.conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    assert total == 8 * 4 + 6
    for receiver, endpoint in ((slow, slow_endpoint), (fast, fast_endpoint)):
        sent = Counter(r["headers"]["webhook-id"] for r in receiver.requests)
        # Every request is an attempt its sender recorded: no message went out from two
        # processes at once (a second attempt is a retry, after a recorded failure).
        recorded = Counter(
            webhook_id(job_id, sequence)
            for job_id, sequence in ledger.conn.execute(
                "SELECT d.job_id, d.sequence FROM delivery_attempts a"
                " JOIN deliveries d ON d.id = a.delivery_id WHERE d.endpoint_id = ?",
                (endpoint["id"],),
            ).fetchall()
        )
        assert sent == recorded and len(sent) == total
        assert ledger.endpoints.get(endpoint["id"])["delivered"] == total
        assert all(r["spec_ok"] and r["svix_ok"] for r in receiver.requests)
        sequences = receiver.sequences()
        for job_id in jobs:
            assert sequences[job_id] == [1, 2, 3, 4]
    assert sum(s.get("attempts", 0) for s in summaries) <= 2 * total


def deliver_config(database, **overrides) -> dict:
    return {
        "DATABASE": str(database),
        "DURABILITY": "normal",
        "DELIVERY_RETRY_SECONDS": [0] * 8,
        "DELIVERY_TIMEOUT_SECONDS": 2,
        "DELIVERY_DISABLE_AFTER_SECONDS": 432000,
        "DELIVERY_ALLOW_PRIVATE": True,
        "PUBLIC_URL": "http://localhost:8000",
        **overrides,
    }


# -- the property -----------------------------------------------------------------------

_examples = itertools.count()
STEP = st.one_of(
    st.tuples(st.just("notice"), st.integers(0, 3)),
    st.tuples(st.just("deliver"), st.integers(0, 0)),
    st.tuples(st.just("fail"), st.integers(1, 3)),
)


@settings(
    max_examples=20,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(STEP, min_size=1, max_size=25))
def test_each_job_is_heard_in_sequence_order_with_no_gap(db_path, steps):
    example = next(_examples)
    receiver = Receiver()
    try:
        with open_ledger(db_path) as ledger:
            endpoint = add(ledger, receiver)
            config = deliver_config(db_path)
            clock = itertools.count(1)
            for what, arg in steps:
                if what == "notice":  # a Live stream toggles: every notice is a change
                    n = next(clock)
                    notice = Event(
                        provider="aliyun",
                        service="live",
                        event_type="EdgeTranscode",
                        payload="{}",
                        dedup_key=f"x{example}-{n}".encode(),
                        kind="edge_transcode",
                        provider_job_id=f"p{example}-{arg}",
                        state="running" if n % 2 else "stopped",
                        occurred_at=f"2026-01-01T00:00:{n:02d}.000Z",
                    )
                    ledger.notices.record(notice, source="poll", verified=True)
                elif what == "fail":  # never enough in a row to exhaust the retries
                    receiver.plan = (receiver.plan + ["fail"] * arg)[:6]
                else:
                    deliver.run(config, once=True)
            receiver.plan.clear()
            deliver.run(config, once=True)
            expected: dict[str, list[int]] = {}
            for job_id, sequence in ledger.conn.execute(
                "SELECT job_id, sequence FROM messages WHERE id > (SELECT message_mark FROM"
                " endpoints WHERE id = ?) ORDER BY id",
                (endpoint["id"],),
            ).fetchall():
                expected.setdefault(job_id, []).append(sequence)
            assert receiver.sequences() == expected
            assert all(seqs == list(range(1, len(seqs) + 1)) for seqs in expected.values())
            ledger.endpoints.delete(endpoint["id"])
    finally:
        receiver.close()


@pytest.mark.sqlite_only
def test_deliver_waits_out_a_ledger_it_cannot_write_and_goes_on(ledger, db_path, receivers, caplog):
    import threading

    from tests.engines import holding_writes

    receiver = receivers()
    add(ledger, receiver)
    record(ledger, failed_transcode("v1"))
    stop = threading.Event()
    worker = threading.Thread(
        target=deliver.run, args=(deliver_config(db_path),), kwargs={"once": False, "stop": stop}
    )
    with holding_writes(db_path):  # past the 5 s busy timeout: the fan-out cannot write
        worker.start()
        wait_for(
            lambda: any(r.getMessage() == "deliver.ledger-unavailable" for r in caplog.records),
            timeout=20,
            what="the ledger-unavailable warning",
        )
        assert receiver.requests == []
    try:
        wait_for(lambda: len(receiver.accepted) == 1, timeout=20, what="the delivery")
        assert worker.is_alive()
    finally:
        stop.set()
        worker.join(15)
    assert not worker.is_alive()
