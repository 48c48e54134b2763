"""Fault injection: crashes, a long read during ingest, a disk that fills up.

The service runs for real (gunicorn with the project's config, loopback only) and senders
behave like Alibaba VOD: a notice is sent again until it is answered 200. Afterwards the
ledger must hold every notice that was ever answered 200 exactly once, and nothing
half-written.
"""

import http.client as http_client
import os
import random
import signal
import sqlite3
import threading
import time
import urllib.error
from collections import Counter

import pytest

from store import migrate
from tests.helpers import OPS_TOKEN, children, http, vod_headers
from tests.helpers import vod_notice as notice

pytestmark = [pytest.mark.faults, pytest.mark.slow]
VOD = "/hooks/aliyun/vod"


def post(base: str, body: bytes, timeout: float = 5) -> int:
    try:
        return http("POST", base + VOD, body, vod_headers(), timeout=timeout)[0]
    except (OSError, urllib.error.URLError, ValueError, http_client.HTTPException):
        return 0  # connection refused or reset, or a cut answer: not a 200


def master_of(base: str) -> int:
    """The gunicorn master serving `base`: our child process with that PORT."""
    port = base.rsplit(":", 1)[1]
    for pid in children(os.getpid()):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if f"PORT={port}".encode() in f.read().split(b"\0"):
                    return pid
        except OSError:
            pass
    raise LookupError(f"no gunicorn master for {base}")


def ledger_state(db_path) -> dict:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        return {
            "integrity": one("PRAGMA integrity_check"),
            "originals": one("SELECT COUNT(*) FROM events WHERE duplicate_of IS NULL"),
            "events": one("SELECT COUNT(*) FROM events"),
            "jobs": one("SELECT COUNT(*) FROM jobs"),
            "videos": {
                r[0]: r[1]
                for r in conn.execute("SELECT media_id, COUNT(*) FROM jobs GROUP BY media_id")
            },
            "orphans": one(
                "SELECT COUNT(*) FROM events WHERE job_id IS NOT NULL"
                " AND job_id NOT IN (SELECT id FROM jobs)"
            ),
            "jobs_without_events": one(
                "SELECT COUNT(*) FROM jobs WHERE id NOT IN (SELECT job_id FROM events"
                " WHERE job_id IS NOT NULL)"
            ),
            "counted": dict(
                conn.execute(
                    "SELECT state, SUM(n) FROM job_counts GROUP BY state HAVING SUM(n) != 0"
                ).fetchall()
            ),
            "by_state": dict(conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state")),
        }
    finally:
        conn.close()


def assert_consistent(state: dict) -> None:
    assert state["integrity"] == "ok"
    assert state["orphans"] == 0 and state["jobs_without_events"] == 0
    assert state["counted"] == state["by_state"], "job_counts disagree with COUNT(*)"


def test_sigkill_workers_and_master_under_load_loses_and_doubles_nothing(gunicorn_server, settings):
    seed = int(os.environ.get("FAULT_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    print(f"FAULT_SEED={seed}")
    current = {"base": gunicorn_server(workers=2)}
    videos = [f"crash-video-{i}" for i in range(1500)]
    todo = list(videos)
    answered: dict[str, int] = {}
    lock = threading.Lock()
    deadline = time.monotonic() + 40

    def sender():
        while time.monotonic() < deadline:
            with lock:
                if not todo:
                    return
                video = todo.pop()
            body = notice(video)
            while time.monotonic() < deadline:  # like VOD: again until answered 200
                status = post(current["base"], body, timeout=5)
                if status == 200:
                    with lock:
                        answered[video] = answered.get(video, 0) + 1
                    break
                time.sleep(0.02)
            else:
                with lock:
                    todo.append(video)

    threads = [threading.Thread(target=sender) for _ in range(8)]
    for t in threads:
        t.start()
    kills = {"worker": 0, "service": 0}
    try:
        # Kill at random moments while the senders are busy: single workers (the master
        # replaces them), then the whole service (master and workers), restarted at once.
        for step in range(9):
            time.sleep(rng.uniform(0.05, 0.3))
            if not any(t.is_alive() for t in threads):
                break
            master = master_of(current["base"])
            workers = children(master)
            if step % 3 == 1:
                for pid in [master, *workers]:
                    os.kill(pid, signal.SIGKILL)
                kills["service"] += 1
                current["base"] = gunicorn_server(workers=2)
            elif workers:
                os.kill(rng.choice(workers), signal.SIGKILL)
                kills["worker"] += 1
    finally:
        for t in threads:
            t.join(timeout=60)
    print(f"kills: {kills}")
    assert kills["service"] >= 1 and kills["worker"] >= 1, kills
    assert sorted(answered) == sorted(videos), f"not all answered 200 (seed {seed})"

    state = ledger_state(settings["DATABASE"])
    assert_consistent(state)
    # every notice answered 200 is there exactly once; retries after a crash are duplicates
    assert state["originals"] == len(videos), f"seed {seed}"
    assert state["jobs"] == len(videos)
    assert all(n == 1 for n in state["videos"].values()), f"a job twice (seed {seed})"
    assert set(state["videos"]) == set(videos)
    assert state["events"] >= sum(answered.values())


def test_a_long_read_during_ingest_delays_no_callback_past_one_second(gunicorn_server, settings):
    base = gunicorn_server(workers=2)
    for i in range(20):  # something to read
        assert post(base, notice(f"before-{i}", pad=2000)) == 200
    holding = threading.Event()
    released = threading.Event()
    seen = {}

    def long_read():
        # An ops query holding one read transaction for 3 s (WAL: readers never block the
        # writer, but they pin the snapshot and stop checkpoints from finishing).
        reader = sqlite3.connect(settings["DATABASE"], isolation_level=None)
        reader.execute("BEGIN")
        seen["before"] = reader.execute(
            "SELECT COUNT(*), SUM(LENGTH(payload)) FROM events"
        ).fetchone()[0]
        holding.set()
        time.sleep(3)
        seen["inside"] = reader.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        reader.execute("COMMIT")
        reader.close()
        released.set()

    def heavy_api_reads():
        auth = {"Authorization": f"Bearer {OPS_TOKEN}"}
        while not released.is_set():
            http("GET", base + "/api/jobs?limit=500", headers=auth, timeout=10)

    latencies = []
    statuses = []

    def sender(worker: int):
        i = 0
        while not released.is_set():
            started = time.monotonic()
            statuses.append(post(base, notice(f"during-{worker}-{i}"), timeout=5))
            latencies.append(time.monotonic() - started)
            i += 1

    read_thread = threading.Thread(target=long_read)
    read_thread.start()
    assert holding.wait(10)
    others = [threading.Thread(target=heavy_api_reads)] + [
        threading.Thread(target=sender, args=(w,)) for w in range(4)
    ]
    for t in others:
        t.start()
    read_thread.join(30)
    for t in others:
        t.join(30)
    assert seen["inside"] == seen["before"], "the read transaction did not hold its snapshot"
    assert len(latencies) >= 50, "too few callbacks during the read to mean anything"
    assert set(statuses) == {200}
    assert max(latencies) < 1.0, f"slowest callback {max(latencies):.3f} s"
    assert_consistent(ledger_state(settings["DATABASE"]))


@pytest.fixture
def tiny_fs(small_fs):
    """A 2 MiB tmpfs mounted for this test only (tests/filesystems.py)."""
    return small_fs("2m").path


def test_a_full_disk_answers_503_writes_nothing_half_and_recovers(gunicorn_server, tiny_fs):
    db = tiny_fs / "ledger.db"
    migrate(db)
    free = os.statvfs(tiny_fs).f_bavail * os.statvfs(tiny_fs).f_frsize
    filler = tiny_fs / "filler"
    filler.write_bytes(b"\0" * max(free - 400 * 1024, 0))
    base = gunicorn_server(workers=1, RECEIVER_DATABASE=str(db))

    answered, refused = [], []
    for i in range(200):
        video = f"full-{i}"
        status, body = http("POST", base + VOD, notice(video, pad=40_000), vod_headers())
        assert status in (200, 503), (status, body)
        if status == 200:
            answered.append(video)
        else:
            assert body["ok"] is False and body["status"] == 503
            refused.append(video)
            if len(refused) >= 5:
                break
    assert answered, "the disk was full before the first callback"
    assert len(refused) >= 5, "the disk never filled up"

    state = ledger_state(db)
    assert_consistent(state)
    assert set(state["videos"]) == set(answered)  # nothing refused was half-written
    assert state["originals"] == len(answered)

    filler.unlink()  # space comes back: the service takes notices again, no restart
    for video in refused:
        status, body = http("POST", base + VOD, notice(video, pad=40_000), vod_headers())
        assert status == 200, body
    state = ledger_state(db)
    assert_consistent(state)
    assert set(state["videos"]) == set(answered) | set(refused)
    assert state["originals"] == len(answered) + len(refused)


def test_a_full_disk_that_grows_takes_notices_again_and_the_log_stays_bounded(
    gunicorn_server, small_fs
):
    fs = small_fs("16m")
    db = fs.path / "ledger.db"
    migrate(db)
    base = gunicorn_server(workers=2, RECEIVER_DATABASE=str(db))
    wal, sizes, sampling = fs.path / "ledger.db-wal", [], threading.Event()

    def sample() -> None:
        while not sampling.wait(0.02):
            sizes.append(wal.stat().st_size if wal.exists() else 0)

    def load(prefix: str, until) -> list[tuple[str, int, object]]:
        answers: list[tuple[str, int, object]] = []

        def send(k: int) -> None:
            i = 0
            while not until(answers):
                video = f"{prefix}-{k}-{i}"
                status, body = http("POST", base + VOD, notice(video, pad=1000), vod_headers())
                answers.append((video, status, body))
                i += 1

        threads = [threading.Thread(target=send, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        return answers

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        filled = load("fill", lambda a: sum(s == 503 for _, s, _ in a) >= 20)
        assert all("disk full" in b["error"] for _, s, b in filled if s == 503)
        fs.grow("64m")  # four times the room; nothing restarted
        grown = time.monotonic()
        while http("POST", base + VOD, notice("first-after"), vod_headers())[0] != 200:
            assert time.monotonic() < grown + 5, "no recovery 5 s after the disk grew"
            time.sleep(0.1)
        sizes.clear()
        after = load("after", lambda a: len(a) >= 2000)
    finally:
        sampling.set()
        sampler.join(10)
    assert Counter(s for _, s, _ in after) == {200: len(after)}, Counter(
        (s, str(b)[:100]) for _, s, b in after
    )
    assert max(sizes) < 16_000_000, f"the log grew to {max(sizes)} bytes under load"
    deadline = time.monotonic() + 5
    while wal.stat().st_size != 0:  # the writers idle: the log is emptied
        assert time.monotonic() < deadline, f"the log still holds {wal.stat().st_size} bytes"
        time.sleep(0.1)
    state = ledger_state(db)
    assert_consistent(state)
    ok = {v for v, s, _ in filled + after if s == 200} | {"first-after"}
    assert set(state["videos"]) == ok and state["originals"] == len(ok)
