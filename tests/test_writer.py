"""Group commit: concurrent notices share transactions; a bad one fails alone."""

import json
import threading

import pytest

from receiver.providers import aliyun_vod
from store import open_ledger
from store.writer import GroupWriter
from tests.helpers import fixture_json


def notices(n: int, prefix: str = "g"):
    doc = fixture_json("aliyun_vod-TranscodeComplete.json")
    return [aliyun_vod.parse(json.dumps(dict(doc, VideoId=f"{prefix}-{i}"))) for i in range(n)]


@pytest.fixture
def writer(db_path):
    w = GroupWriter(db_path)
    yield w
    w.close()


def test_concurrent_notices_share_commits_and_all_land(writer, db_path):
    events = notices(200)
    results, gate = [None] * len(events), threading.Barrier(20)

    def send(k):
        gate.wait()
        for i in range(k, len(events), 20):
            results[i] = writer.record_event(events[i], source="http", verified=True)

    threads = [threading.Thread(target=send, args=(k,)) for k in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert all(r is not None and r.state == "succeeded" and r.created_job for r in results)
    assert writer.notices == 200 and writer.batches < 200  # some commits carried several
    with open_ledger(db_path) as led:
        assert led.conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 200
        assert led.stats()["by_state"] == {"succeeded": 200}


def test_a_failing_notice_rolls_back_alone(writer, db_path):
    good = notices(3)
    bad = notices(1, prefix="bad")[0]
    bad = type(bad)(
        **{**{f: getattr(bad, f) for f in bad.__dataclass_fields__}, "outputs": (object(),)}
    )  # cannot be written as JSON
    outcomes, gate = {}, threading.Barrier(4)

    def send(name, event):
        gate.wait()
        try:
            outcomes[name] = writer.record_event(event, source="http", verified=True).state
        except TypeError:
            outcomes[name] = "error"

    threads = [threading.Thread(target=send, args=(f"good{i}", e)) for i, e in enumerate(good)]
    threads.append(threading.Thread(target=send, args=("bad", bad)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert outcomes == {
        "good0": "succeeded",
        "good1": "succeeded",
        "good2": "succeeded",
        "bad": "error",
    }
    with open_ledger(db_path) as led:
        assert led.conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 3
        assert led.list_jobs(q="bad-0")[0] == []


def test_a_failed_commit_fails_every_caller(db_path):
    writer = GroupWriter(db_path)
    try:
        with open_ledger(db_path) as blocker:
            blocker.conn.execute("BEGIN IMMEDIATE")  # hold the write lock past the busy timeout
            with pytest.raises(Exception, match="locked"):
                writer.record_event(notices(1)[0], source="http", verified=True)
            blocker.conn.rollback()
        assert (
            writer.record_event(notices(1, "after")[0], source="http", verified=True).state
            == "succeeded"
        )
    finally:
        writer.close()
