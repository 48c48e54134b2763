"""Group commit: concurrent notices share transactions; a bad one fails alone."""

import json
import os
import threading
import time

import pytest

import store.checkpoint
from receiver.providers.aliyun import vod as aliyun_vod
from store import open_ledger
from store.writer import GroupWriter
from tests.helpers import fixture_json, wait_for


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
    assert writer.writes == 200 and writer.batches < 200  # some commits carried several
    with open_ledger(db_path) as led:
        assert led.conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 200
        assert led.jobs.stats()["by_state"] == {"succeeded": 200}


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
        assert led.jobs.search(q="bad-0")[0] == []


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


def test_commits_leave_checkpoints_to_the_checkpoint_thread(db_path, monkeypatch):
    monkeypatch.setattr(store.checkpoint, "INTERVAL_S", 3600.0)  # this test's thread only
    monkeypatch.setattr(store.checkpoint, "TRUNCATE_PAGES", 10**9)  # however long the log
    writer = GroupWriter(db_path)
    try:
        size = os.path.getsize(db_path)
        for event in notices(150):  # about 2,000 WAL pages: past SQLite's default of 1,000
            writer.record_event(event, source="http", verified=True)
        # No commit copied its pages back into the ledger file: it has not grown.
        assert os.path.getsize(db_path) == size
        checkpointer = store.checkpoint.Checkpointer(db_path, interval_s=0.05)
        try:
            wait_for(lambda: checkpointer.runs > 0, what="a checkpoint")
        finally:
            checkpointer.stop()
        assert os.path.getsize(db_path) > size
        with open_ledger(db_path) as led:
            busy, log, done = led.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            assert busy == 0 and log == done  # nothing left to copy
            assert led.conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 150
    finally:
        writer.close()


def test_the_log_is_emptied_once_the_writers_are_idle(db_path):
    wal = f"{db_path}-wal"
    writer = GroupWriter(db_path)
    try:
        for event in notices(40):  # a log shorter than the bound it is emptied at under load
            writer.record_event(event, source="http", verified=True)
        assert os.path.getsize(wal) > 500_000
        # A PASSIVE checkpoint copies the log but leaves the file as long as it was; with
        # nothing written for a turn, the checkpoint thread empties it.
        wait_for(lambda: os.path.getsize(wal) == 0, 5, "the log to be emptied")
        writer.record_event(notices(1, "after")[0], source="http", verified=True)
    finally:
        writer.close()
    with open_ledger(db_path) as led:
        assert led.conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 41
        assert led.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_under_steady_load_the_log_is_emptied_past_its_bound(db_path):
    wal, stop, sizes = f"{db_path}-wal", threading.Event(), []
    writer = GroupWriter(db_path)

    def send(k: int) -> None:
        i = 0
        while not stop.is_set():  # never a second without a commit: never idle
            event = notices(1, f"load-{k}-{i}")[0]
            writer.record_event(event, source="http", verified=True)
            i += 1

    threads = [threading.Thread(target=send, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            sizes.append(os.path.getsize(wal) if os.path.exists(wal) else 0)
            time.sleep(0.02)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        written = writer.writes
        writer.close()
    bound = 4_000_000  # about a thousand pages (docs/faults.md)
    assert max(sizes) >= bound, f"too little written to mean anything ({written} notices)"
    # Emptied while the load goes on: the file drops back below its bound, again and again
    # (how far past it the log gets between two looks depends on this machine's speed).
    drops = sum(1 for a, b in zip(sizes, sizes[1:], strict=False) if b < a and b < bound)
    assert drops >= 2, f"{written} notices, the log grew to {max(sizes)} bytes"


def test_a_checkpointer_on_a_missing_ledger_says_so_once_and_keeps_going(tmp_path, caplog):
    db = tmp_path / "gone.db"  # never created: every turn fails the same way
    caplog.set_level("WARNING", logger="jobledger.checkpoint")
    checkpointer = store.checkpoint.Checkpointer(db, interval_s=0.02)
    try:
        wait_for(lambda: caplog.records, what="the first failure to be logged")
        time.sleep(0.2)  # ten more turns, all failing
        assert checkpointer._thread.is_alive()
    finally:
        checkpointer.stop()
    failures = [r for r in caplog.records if r.getMessage() == "checkpoint.failed"]
    assert len(failures) == 1 and checkpointer.runs == 0
    assert not db.exists()  # a checkpoint never creates the ledger
