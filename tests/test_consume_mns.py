"""`consume-mns` against the local MNS server (tests/fakes/mns.py), through the real SDK.

Failures are real, not mocked: the fake answers with MNS error XML (`fail_next`), a second
SQLite connection holds the write lock, and the subprocess tests kill a real consumer.
"""

import base64
import json
import signal
import sqlite3
import threading
import time
import uuid
from dataclasses import replace

import pytest
from mns.account import Account

import store.connection
from receiver.inbound import mns as mns_worker
from receiver.inbound.batch import Fatal
from receiver.providers import InvalidPayload
from receiver.providers.aliyun import mns as mns_parser
from store import migrate, open_ledger
from tests.engines import holding_writes
from tests.fakes.mns import FakeMNS
from tests.helpers import FIXTURES, count, fixture_bytes, flask_command, free_port, wait_for

pytestmark = pytest.mark.engines

AK, SK, QUEUE = "MnsTestAK", "MnsTestSecret", "media-events"
VALID = sorted(p.name for p in FIXTURES.glob("aliyun_*.json"))  # documented VOD and MPS samples
INVALID = sorted(p.name for p in FIXTURES.glob("aliyun_*.txt"))  # cut or elided as printed


def text(name: str) -> str:
    return fixture_bytes(name).decode()


def b64(body: str) -> str:
    return base64.b64encode(body.encode()).decode()


def unique_bodies(n: int) -> list[str]:
    """MPS and VOD notices, each about its own job; every third one Base64-encoded."""
    templates = [
        json.loads(text(name))
        for name in (
            "aliyun_mps-IProduction-VideoH2V.json",
            "aliyun_vod-TranscodeComplete.json",
            "aliyun_mps-TextToSpeech.json",
            "aliyun_vod-FileUploadComplete.json",
        )
    ]
    out = []
    for i in range(n):
        doc = dict(templates[i % len(templates)])
        for key in ("JobId", "jobId", "VideoId"):
            if key in doc:
                doc[key] = uuid.uuid4().hex
        body = json.dumps(doc)
        out.append(b64(body) if i % 3 == 2 else body)
    return out


def in_flight(fake: FakeMNS) -> int:
    return sum(1 for m in fake.messages(QUEUE) if not m["visible"])


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(mns_worker, "RETRY_BASE_S", 0.01)


@pytest.fixture
def mns():
    with FakeMNS(AK, SK) as fake:
        fake.create_queue(QUEUE, visibility_timeout=30)
        yield fake


@pytest.fixture
def mns_settings(mns, db_path) -> dict:
    return {
        "MNS_ENDPOINT": mns.endpoint,
        "MNS_ACCESS_KEY_ID": AK,
        "MNS_ACCESS_KEY_SECRET": SK,
        "DATABASE": str(db_path),
        "DURABILITY": "normal",
    }


@pytest.fixture
def mns_app(make_app, mns):
    app = make_app(
        MNS_ENDPOINT=mns.endpoint, MNS_ACCESS_KEY_ID=AK, MNS_ACCESS_KEY_SECRET=SK, MNS_QUEUES=QUEUE
    )
    return app


@pytest.fixture
def consume(mns_app):
    """Run `consume-mns --once` in-process, stopping at the first empty receive."""
    runner = mns_app.test_cli_runner()

    def run(*args: str):
        return runner.invoke(args=["consume-mns", "--once", "--wait-seconds", "0", *args])

    return run


def summary(result) -> dict:
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize("encoding", ["raw", "base64"])
def test_every_documented_sample_is_recorded_from_the_queue(mns, consume, ledger, encoding):
    bodies = [text(n) if encoding == "raw" else b64(text(n)) for n in VALID]
    for body in bodies:
        mns.send(QUEUE, body)
    result = consume()
    assert result.exit_code == 0, result.output
    assert mns.pending(QUEUE) == 0
    assert summary(result) | {"queue": QUEUE} == {
        "queue": QUEUE,
        "received": len(VALID),
        "applied": len(VALID),
        "duplicates": 0,
        "quarantined": 0,
        "deferred": 0,
        "acked": len(VALID),
    }
    rows = {
        r["payload"]: r
        for r in (ledger.jobs.event(i) for (i,) in ledger.conn.execute("SELECT id FROM events"))
    }
    assert len(rows) == len(VALID)
    for body in bodies:
        expected, row = mns_parser.parse(body), rows[body]  # stored exactly as received
        assert (row["source"], row["verified"], row["auth"]) == ("mns", 1, "queue")
        assert (row["event_type"], row["duplicate_of"]) == (expected.event_type, None)
        if expected.kind is None:  # media-management events are stored, tied to no job
            assert row["job_id"] is None
            continue
        job = ledger.jobs.get(row["job_id"])
        assert (job["provider"], job["service"], job["kind"]) == (
            expected.provider,
            expected.service,
            expected.kind,
        )
        if expected.provider_job_id:
            assert job["provider_job_id"] == expected.provider_job_id
    h2v, _ = ledger.jobs.search(q="39f8e0bc005e4f309379701645f4****")
    assert [(j["kind"], j["state"], j["origin"]) for j in h2v] == [
        ("iproduction", "succeeded", "external")
    ]


def test_poison_messages_are_quarantined_with_their_metadata_then_deleted(
    mns, consume, ledger, mns_app
):
    poison = [text(n) for n in INVALID] + [
        "not JSON at all",
        b64("[1, 2]"),
        '{"Foo": "bar"}',
        b64('{"NoType": true}'),
    ]
    ids = {mns.send(QUEUE, body): body for body in poison}
    mns.send(QUEUE, text("aliyun_mps-IProduction-AudioMixing.json"))
    result = consume()
    assert result.exit_code == 0, result.output
    assert summary(result)["quarantined"] == len(poison)
    assert summary(result)["applied"] == 1
    assert mns.pending(QUEUE) == 0  # deleted: never redelivered forever
    rows = ledger.quarantine.bodies()
    assert sorted(r["body"].decode() for r in rows) == sorted(poison)
    for row in rows:
        meta = json.loads(row["meta"])
        assert (row["provider"], row["service"], row["source"]) == ("aliyun", "mns", "mns")
        assert ids[meta["message_id"]] == row["body"].decode()
        assert meta["queue"] == QUEUE and meta["dequeue_count"] == 1
        assert meta["enqueue_time"] > 1_600_000_000_000  # epoch milliseconds
        assert row["reason"]
    replay = mns_app.test_cli_runner().invoke(args=["replay", "--quarantined"])
    assert replay.exit_code == 1  # still unparseable with today's parser, and still kept
    assert replay.stderr.count("still unparseable") == len(poison)
    assert len(ledger.quarantine.bodies()) == len(poison)


@pytest.mark.parametrize("failure", [InvalidPayload("unknown notice shape"), KeyError("State")])
def test_a_message_the_old_parser_refused_is_replayed_after_the_fix(
    mns, consume, ledger, mns_app, monkeypatch, failure
):
    body = b64(text("aliyun_mps-IProduction-VideoH2V.json"))
    mns.send(QUEUE, body)
    mns.send(QUEUE, text("aliyun_mps-TextToSpeech.json"))

    def old_parser(message: str):  # the release before the parser fix
        if message == body:
            raise failure
        return real_parse(message)

    real_parse = mns_parser.parse
    with monkeypatch.context() as patch:
        patch.setattr(mns_parser, "parse", old_parser)
        result = consume()
    assert result.exit_code == 0, result.output
    assert (summary(result)["quarantined"], summary(result)["applied"]) == (1, 1)
    assert mns.pending(QUEUE) == 0
    [row] = ledger.quarantine.bodies()
    assert row["reason"].startswith("parser error: KeyError") == isinstance(failure, KeyError)
    replay = mns_app.test_cli_runner().invoke(args=["replay", "--quarantined"])
    assert replay.exit_code == 0, replay.output
    event = ledger.jobs.event(json.loads(replay.stdout)["event_id"])
    assert (event["source"], event["payload"]) == ("mns", body)
    assert ledger.jobs.get(event["job_id"])["state"] == "succeeded"
    assert ledger.quarantine.bodies() == []


def test_a_notice_that_breaks_the_apply_is_quarantined_alone(mns, consume, ledger, monkeypatch):
    bodies = unique_bodies(4)
    for body in bodies:
        mns.send(QUEUE, body)
    real_parse = mns_parser.parse

    def parse_with_a_bug(message: str):  # a parser that yields something the ledger rejects
        event = real_parse(message)
        return replace(event, outputs=(object(),)) if message == bodies[1] else event

    with monkeypatch.context() as patch:
        patch.setattr(mns_parser, "parse", parse_with_a_bug)
        result = consume()
    assert result.exit_code == 0, result.output
    assert (summary(result)["applied"], summary(result)["quarantined"]) == (3, 1)
    [row] = ledger.quarantine.bodies()
    assert row["body"].decode() == bodies[1]
    assert row["reason"].startswith("apply error: TypeError")
    assert mns.pending(QUEUE) == 0


def test_the_same_message_delivered_twice_is_recorded_once(mns, consume, ledger):
    body = text("aliyun_mps-IProduction-AudioMixing.json")
    mns.send(QUEUE, body)
    mns.send(QUEUE, b64(body))  # a redelivery is a duplicate however it is encoded
    assert consume().exit_code == 0
    mns.send(QUEUE, body)  # and in a later batch too
    assert consume().exit_code == 0
    rows = ledger.conn.execute("SELECT id, job_id, duplicate_of FROM events ORDER BY id").fetchall()
    first = rows[0]
    assert [r[2] for r in rows] == [None, first[0], first[0]]
    assert {r[1] for r in rows} == {first[1]}
    assert ledger.jobs.stats()["total"] == 1
    assert mns.pending(QUEUE) == 0


def test_a_message_whose_delete_failed_comes_back_as_a_duplicate(
    mns, consume, ledger, mns_settings, db_path
):
    for body in unique_bodies(3):
        mns.send(QUEUE, body)
    consumer = mns_worker.QueueConsumer(
        QUEUE, mns_settings, threading.Event(), once=True, wait_seconds=0
    )
    other = Account(mns.endpoint, AK, SK)
    try:
        messages = consumer.receive()
        assert len(messages) == 3
        # Someone else changes one message's visibility: our receipt handle for it is void.
        other.get_queue(QUEUE).change_message_visibility(messages[0].receipt_handle, 1)
        mns.fail_next(2, 503, "ServiceUnavailable")  # and the delete needs three tries
        consumer.handle(ledger, messages)
    finally:
        consumer.account.mns_client.close_connection()
        other.mns_client.close_connection()
    assert consumer.stats.acked == 2
    assert [r[2] for r in mns.requests if r[0] == "DELETE"] == [503, 503, 404]
    assert mns.pending(QUEUE) == 1
    wait_for(lambda: in_flight(mns) == 0, what="the message to be visible again")
    result = consume()
    assert result.exit_code == 0, result.output
    assert (summary(result)["duplicates"], mns.pending(QUEUE)) == (1, 0)
    assert (count(db_path), count(db_path, "duplicate_of IS NOT NULL")) == (3, 1)


def test_a_delete_refused_for_good_stops_the_consumer(mns, ledger, mns_settings):
    mns.send(QUEUE, unique_bodies(1)[0])
    consumer = mns_worker.QueueConsumer(
        QUEUE, mns_settings, threading.Event(), once=True, wait_seconds=0
    )
    try:
        messages = consumer.receive()
        mns.fail_next(1, 403, "AccessDenied", "no mns:DeleteMessage")
        with pytest.raises(Fatal, match="deleting: AccessDenied"):
            consumer.handle(ledger, messages)
    finally:
        consumer.account.mns_client.close_connection()
    assert ledger.jobs.stats()["total"] == 1  # recorded; it comes back later as a duplicate


def test_a_busy_ledger_leaves_the_batch_for_redelivery(mns, consume, ledger, db_path, monkeypatch):
    # SQLite's busy timeout, and PostgreSQL's lock_timeout (store/pg.py)
    monkeypatch.setattr(store.connection, "BUSY_TIMEOUT_S", 0.2)
    monkeypatch.setattr(mns_worker, "DEFER_BASE_S", 1)
    for body in unique_bodies(3):
        mns.send(QUEUE, body)
    with holding_writes(db_path):  # another writer holds the lock past the timeout
        result = consume()
    assert result.exit_code == 1
    assert "3 message(s) left for redelivery" in result.output
    assert count(db_path) == 0
    messages = mns.messages(QUEUE)
    assert [(m["visible"], m["dequeue_count"]) for m in messages] == [(False, 1)] * 3
    puts = [r for r in mns.requests if r[0] == "PUT"]
    assert len(puts) == 3 and all("VisibilityTimeout=1" in r[1] and r[2] == 200 for r in puts)
    wait_for(lambda: in_flight(mns) == 0, what="the messages to be visible again")
    result = consume()
    assert result.exit_code == 0, result.output
    assert (count(db_path), mns.pending(QUEUE)) == (3, 0)


@pytest.mark.parametrize(
    "status,code", [(500, "InternalError"), (503, "ServiceUnavailable"), (403, "QpsLimitExceeded")]
)
def test_receive_errors_are_retried(mns, consume, db_path, status, code):
    for body in unique_bodies(2):
        mns.send(QUEUE, body)
    mns.fail_next(3, status, code)
    result = consume()
    assert result.exit_code == 0, result.output
    assert [r[2] for r in mns.requests[:4]] == [status, status, status, 200]
    assert (count(db_path), mns.pending(QUEUE)) == (2, 0)


@pytest.mark.parametrize(
    "how,error",
    [
        ("queue", "QueueNotExist"),
        ("secret", "SignatureDoesNotMatch"),
        ("endpoint", "gave up after 5 failed receives, last: NetWorkException"),
        ("5xx", "gave up after 5 failed receives, last: InternalError"),
    ],
)
def test_errors_retrying_cannot_fix_exit_1(mns, make_app, how, error):
    port = free_port()  # nothing listens there
    app = make_app(
        MNS_ENDPOINT=f"http://127.0.0.1:{port}" if how == "endpoint" else mns.endpoint,
        MNS_ACCESS_KEY_ID=AK,
        MNS_ACCESS_KEY_SECRET="wrong" if how == "secret" else SK,
        MNS_QUEUES="no-such-queue" if how == "queue" else QUEUE,
    )
    if how == "5xx":
        mns.fail_next(5)
    result = app.test_cli_runner().invoke(args=["consume-mns", "--once"])
    assert result.exit_code == 1
    assert error in result.stderr


@pytest.mark.parametrize(
    "settings,missing",
    [
        ({}, "RECEIVER_MNS_ENDPOINT, RECEIVER_MNS_ACCESS_KEY_ID, RECEIVER_MNS_ACCESS_KEY_SECRET"),
        (
            {
                "MNS_ENDPOINT": "http://127.0.0.1:9",
                "MNS_ACCESS_KEY_ID": AK,
                "MNS_ACCESS_KEY_SECRET": SK,
            },
            "RECEIVER_MNS_QUEUES",
        ),
    ],
)
def test_an_unconfigured_consumer_names_the_settings(make_app, settings, missing):
    app = make_app(**settings)
    result = app.test_cli_runner().invoke(args=["consume-mns", "--once"])
    assert result.exit_code == 2
    assert missing in result.stderr


@pytest.mark.sqlite_only
@pytest.mark.parametrize("state", ["missing", "unmigrated"])
def test_a_consumer_refuses_a_ledger_that_is_not_ready(make_app, mns, tmp_path, state):
    path = tmp_path / "elsewhere.db"
    if state == "unmigrated":
        sqlite3.connect(path).close()
    app = make_app(
        DATABASE=str(path),
        MNS_ENDPOINT=mns.endpoint,
        MNS_ACCESS_KEY_ID=AK,
        MNS_ACCESS_KEY_SECRET=SK,
        MNS_QUEUES=QUEUE,
    )
    result = app.test_cli_runner().invoke(args=["consume-mns", "--once"])
    assert result.exit_code == 1
    assert "run `flask --app wsgi init-db`" in result.stderr
    assert path.exists() == (state == "unmigrated")  # never creates an empty ledger
    assert mns.requests == []


def test_several_consumers_on_one_queue_apply_each_message_once(mns, mns_settings, ledger):
    bodies = unique_bodies(150)
    for body in bodies + bodies[:30]:  # 30 messages sent twice by the producer
        mns.send(QUEUE, body)
    runs = []

    def run():
        runs.extend(
            mns_worker.consume(mns_settings, [QUEUE], threading.Event(), once=True, wait_seconds=1)
        )

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert [c.error for c in runs] == [None] * 3
    assert sum(c.stats.applied for c in runs) == 150
    assert sum(c.stats.duplicates for c in runs) == 30
    assert ledger.jobs.stats()["total"] == 150
    assert mns.pending(QUEUE) == 0


def test_a_stop_ends_an_idle_long_poll_at_once(mns, mns_settings):
    stop, runs = threading.Event(), []
    thread = threading.Thread(
        target=lambda: runs.extend(mns_worker.consume(mns_settings, [QUEUE], stop, wait_seconds=30))
    )
    thread.start()
    wait_for(lambda: mns.waiters(QUEUE) == 1, what="the long poll")
    started = time.monotonic()
    stop.set()
    thread.join(10)
    assert not thread.is_alive() and time.monotonic() - started < 3
    assert runs[0].error is None


def test_record_events_matches_record_event(tmp_path):
    """A batch in one transaction gives the same rows and results as one notice at a time."""
    docs = [p for p in sorted(FIXTURES.glob("*.json")) if "PullEvents" not in p.name]
    events = []
    for path in docs + docs[:3]:  # the repeats are duplicates
        body = path.read_text()
        if path.name.startswith("tencent"):
            from receiver.providers.tencent import vod as tencent_vod

            events.append(tencent_vod.parse(body))
        else:
            events.append(mns_parser.parse(body))
    tables = []
    for batched in (False, True):
        path = tmp_path / f"ledger-{batched}.db"
        migrate(path)
        with open_ledger(path) as led:
            if batched:
                results = [
                    r
                    for i in range(0, len(events), 5)
                    for r in led.notices.record_many(
                        events[i : i + 5], source="mns", verified=True, auth="queue"
                    )
                ]
            else:
                results = [
                    led.notices.record(e, source="mns", verified=True, auth="queue") for e in events
                ]
            jobs = led.conn.execute(
                "SELECT provider, service, kind, provider_job_id, media_id, state, preprocess,"
                " error_code, error_message, outputs, finished_at IS NULL FROM jobs ORDER BY id"
            ).fetchall()
            rows = led.conn.execute(
                "SELECT event_type, dedup_key, duplicate_of, state_after, occurred_at, payload,"
                " job_id IS NULL FROM events ORDER BY id"
            ).fetchall()
            counts = led.conn.execute("SELECT * FROM job_counts ORDER BY 1, 2, 3, 4").fetchall()
        shape = [
            (r.event_id, r.state, r.previous_state, r.duplicate_of, r.created_job) for r in results
        ]
        tables.append((jobs, rows, counts, shape))
    assert tables[0] == tables[1]


# -- the real command in a subprocess ------------------------------------------------------


def consumer(mns: FakeMNS, db_path, log_path, *args: str):
    env = {
        "RECEIVER_DATABASE": str(db_path),
        "RECEIVER_MNS_ENDPOINT": mns.endpoint,
        "RECEIVER_MNS_ACCESS_KEY_ID": AK,
        "RECEIVER_MNS_ACCESS_KEY_SECRET": SK,
        "RECEIVER_MNS_QUEUES": QUEUE,
    }
    return flask_command(["consume-mns", *args], env, log_path)


@pytest.mark.sqlite_only
@pytest.mark.slow
def test_a_killed_consumer_loses_nothing_and_applies_nothing_twice(mns, db_path, tmp_path):
    mns.create_queue(QUEUE, visibility_timeout=2)  # a killed consumer's batch is back in 2 s
    bodies = unique_bodies(600)
    for body in bodies:
        mns.send(QUEUE, body)
    log = tmp_path / "consumer.log"
    # 1. SIGKILL at an arbitrary point of the flow.
    with consumer(mns, db_path, log, "--wait-seconds", "1") as proc:
        wait_for(lambda: count(db_path) >= 150, what="150 events", proc=proc)
        proc.kill()
    # 2. SIGKILL with a batch in hand: received, its transaction waiting for the lock.
    with consumer(mns, db_path, log, "--wait-seconds", "1") as proc:
        wait_for(lambda: count(db_path) >= 300, what="300 events", proc=proc)
        blocker = sqlite3.connect(db_path, timeout=10)
        blocker.execute("BEGIN IMMEDIATE")
        before = count(db_path)
        wait_for(lambda: in_flight(mns) > 0, what="a batch in hand", proc=proc)
        time.sleep(0.2)  # well inside the consumer's 5 s busy timeout
        proc.kill()
        proc.wait()
        blocker.rollback()
        blocker.close()
    assert count(db_path) == before  # the batch in hand was never committed
    # 3. Restart: redelivered messages are duplicates; the queue drains.
    with consumer(mns, db_path, log, "--once", "--wait-seconds", "3") as proc:
        proc.communicate(timeout=60)
    assert proc.returncode == 0, log.read_text()[-2000:]
    assert mns.pending(QUEUE) == 0
    with open_ledger(db_path) as led:
        originals = [
            r[0] for r in led.conn.execute("SELECT payload FROM events WHERE duplicate_of IS NULL")
        ]
        assert led.jobs.stats()["total"] == len(bodies)  # no job twice
    assert sorted(originals) == sorted(bodies)  # each message applied exactly once in effect


@pytest.mark.sqlite_only
@pytest.mark.slow
def test_sigterm_finishes_the_batch_in_hand_then_exits_0(mns, db_path, tmp_path):
    bodies = unique_bodies(5)
    for body in bodies:
        mns.send(QUEUE, body)
    blocker = sqlite3.connect(db_path, timeout=10)
    blocker.execute("BEGIN IMMEDIATE")
    with consumer(mns, db_path, tmp_path / "consumer.log", "--wait-seconds", "1") as proc:
        try:
            wait_for(lambda: in_flight(mns) == 5, what="the batch to be received", proc=proc)
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            assert proc.poll() is None  # still holding its batch, waiting for the ledger
        finally:
            blocker.rollback()
            blocker.close()
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, (tmp_path / "consumer.log").read_text()
    assert json.loads(out.splitlines()[-1])["applied"] == 5
    assert (count(db_path), mns.pending(QUEUE)) == (5, 0)


@pytest.mark.slow
def test_sigterm_ends_an_idle_consumer_at_once(mns, db_path, tmp_path):
    with consumer(mns, db_path, tmp_path / "consumer.log") as proc:  # 30 s long polls
        wait_for(lambda: mns.waiters(QUEUE) == 1, what="the long poll", proc=proc)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert time.monotonic() - started < 3
