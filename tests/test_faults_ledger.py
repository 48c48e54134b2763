"""The ledger under faults: how errors are classified and what consumers do with them,
concurrent migrations, a broken writer lock, and a ledger file deleted, replaced or made
read-only under the running service.

The service runs for real (gunicorn with the project's config, loopback only). The promise
checked throughout: no notice is answered 200 unless it is in the ledger file at the
configured path afterwards; while the ledger cannot take writes the answer is 503 within
a bounded time, and the service recovers once the cause is gone.
"""

import fcntl
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

import store.connection
from receiver.inbound.batch import Delivery, Fatal, apply_batch
from receiver.providers.aliyun import vod as aliyun_vod
from store import migrate, open_ledger
from store.errors import LedgerUnavailable, classify
from store.writer import GroupWriter
from tests.engines import holding_writes
from tests.helpers import (
    AUTH_KEYS,
    CALLBACK_URL,
    OPS_TOKEN,
    ROOT,
    SIGN_KEY,
    count,
    fixture_json,
    free_port,
    http,
    vod_headers,
)

VOD = "/hooks/aliyun/vod"
NOBODY = 65534


def notice(video: str) -> bytes:
    doc = fixture_json("aliyun_vod-TranscodeComplete.json")
    doc.update(VideoId=video, EventTime="2026-11-21T00:00:00Z")
    return json.dumps(doc).encode()


def post(base: str, video: str, timeout: float = 20) -> tuple[int, dict | str]:
    try:
        return http("POST", base + VOD, notice(video), vod_headers(), timeout=timeout)
    except OSError as e:  # refused, reset, or timed out: not a 200
        return 0, str(e)


def videos_in(db: Path) -> set[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return {r[0] for r in conn.execute("SELECT media_id FROM jobs")}
    finally:
        conn.close()


@pytest.fixture
def workdir():
    """A directory an unprivileged user can reach (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="jobledger-faults-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def service(workdir):
    """Start and stop gunicorn with the project's config; optionally as an unprivileged user."""
    running = {}

    def start(db: Path, workers: int = 1, as_user: int | None = None) -> str:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIVER_")}
        env.update(
            PORT=str(port),
            HOST="127.0.0.1",
            WEB_CONCURRENCY=str(workers),
            PROMETHEUS_MULTIPROC_DIR=str(workdir / f"metrics-{port}"),
            PYTHONDONTWRITEBYTECODE="1",
            RECEIVER_DATABASE=str(db),
            RECEIVER_ALIYUN_VOD_CALLBACK_URL=CALLBACK_URL,
            RECEIVER_ALIYUN_VOD_AUTH_KEYS=",".join(AUTH_KEYS),
            RECEIVER_TENCENT_VOD_SIGN_KEY=SIGN_KEY,
            RECEIVER_OPS_TOKEN=OPS_TOKEN,
        )
        command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
        if as_user is not None:
            if os.geteuid() != 0 or not shutil.which("setpriv"):
                pytest.skip("needs root and setpriv to run the service as another user")
            ids = [f"--reuid={as_user}", f"--regid={as_user}", "--clear-groups"]
            command = ["setpriv", *ids, *command]
        log_path = workdir / f"gunicorn-{port}.log"
        log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        running[base] = (proc, log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(log_path.read_text())
            try:
                if http("GET", base + "/healthz", timeout=1)[0] == 200:
                    return base
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("gunicorn did not answer /healthz within 20 s")

    def stop(base: str) -> None:
        proc, log = running.pop(base)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()

    start.stop = stop
    yield start
    for base in list(running):
        stop(base)


class Senders:
    """Threads posting distinct signed notices until stopped; every answer is kept."""

    def __init__(self, base: str, threads: int = 6):
        self.base, self.answers, self.lock = base, [], threading.Lock()
        self.stopped, self.count = threading.Event(), 0
        self.threads = [threading.Thread(target=self._send, args=(k,)) for k in range(threads)]
        for t in self.threads:
            t.start()

    def _send(self, k: int) -> None:
        i = 0
        while not self.stopped.is_set():
            video = f"load-{k}-{i}"
            started = time.monotonic()
            status, body = post(self.base, video)
            with self.lock:
                self.answers.append((started, time.monotonic(), video, status, body))
            i += 1

    def wait_for(self, n: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while len(self.answers) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.answers) >= n, f"only {len(self.answers)} answers in {timeout} s"

    def stop(self) -> list:
        self.stopped.set()
        for t in self.threads:
            t.join(timeout=60)
        return list(self.answers)


# -- the error vocabulary -------------------------------------------------------------------


def test_errors_are_classified_by_the_drivers_code_not_by_words(db_path):
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(db_path, timeout=0)
    try:
        with pytest.raises(sqlite3.OperationalError) as busy:
            other.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError) as missing:
            other.execute("SELECT * FROM no_such_table")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        other.close()
    assert classify(busy.value).reason == "busy"
    assert "SQLITE_BUSY" in str(classify(busy.value))
    assert classify(missing.value) is None  # retrying cannot create a table
    assert classify(sqlite3.OperationalError("database is locked")) is None  # no code: no guess
    assert classify(ValueError("disk I/O error")) is None
    gone = LedgerUnavailable("the ledger file was replaced", "replaced")
    assert classify(gone) is gone


def _deliveries(n: int) -> list[Delivery]:
    doc = fixture_json("aliyun_vod-TranscodeComplete.json")
    return [Delivery(json.dumps(dict(doc, VideoId=f"q-{i}")), i, {}) for i in range(n)]


def _apply(ledger, deliveries):
    return apply_batch(
        ledger,
        deliveries,
        parse=aliyun_vod.parse,
        source="mns",
        auth="signature",
        quarantine_as=("aliyun", "vod"),
        prefix="test",
    )


@pytest.mark.engines
def test_a_consumer_defers_a_batch_while_the_ledger_is_busy(db_path, monkeypatch):
    # SQLite's busy timeout, and PostgreSQL's lock_timeout (store/pg.py)
    monkeypatch.setattr(store.connection, "BUSY_TIMEOUT_S", 0.05)
    deliveries = _deliveries(3)
    with holding_writes(db_path), open_ledger(db_path) as ledger:
        out = _apply(ledger, deliveries)
    assert out.done == [] and out.deferred == deliveries  # nothing acknowledged
    with open_ledger(db_path) as ledger:
        out = _apply(ledger, deliveries)  # the same batch, redelivered, once the lock is free
    assert out.deferred == [] and len(out.done) == 3
    assert count(db_path) == 3


def test_a_consumer_stops_when_a_notice_can_be_neither_recorded_nor_quarantined(db_path):
    with open_ledger(db_path) as ledger:
        ledger.conn.execute("DROP TABLE quarantine")
        ledger.conn.execute("DROP TABLE events")
        with pytest.raises(Fatal, match="cannot quarantine"):
            _apply(ledger, _deliveries(2))  # not deferred forever: a missing table stays


def test_a_consumer_stops_when_its_ledger_file_was_replaced(db_path, tmp_path):
    with open_ledger(db_path) as ledger:
        fresh = tmp_path / "restored.db"
        migrate(fresh)
        os.replace(fresh, db_path)
        with pytest.raises(Fatal, match="was replaced"):
            _apply(ledger, _deliveries(2))  # nothing acknowledged into the old file
    assert Path(f"{db_path}-replaced").exists()
    assert videos_in(db_path) == set()


# -- migrations -----------------------------------------------------------------------------


def init_db(db_path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIVER_")}
    env["RECEIVER_DATABASE"] = str(db_path)
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "init-db"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.faults
@pytest.mark.slow
@pytest.mark.parametrize("round_", range(5))
def test_concurrent_init_db_runs_all_succeed_and_apply_each_migration_once(tmp_path, round_):
    db = tmp_path / "fresh" / "ledger.db"
    procs = [init_db(db) for _ in range(4)]
    outputs = [(p.wait(timeout=60), p.stdout.read()) for p in procs]
    for p in procs:
        p.stdout.close()
    assert [rc for rc, _ in outputs] == [0] * 4, outputs
    applied = [out for _, out in outputs if "applied" in out]
    assert len(applied) == 1, outputs  # one run migrated, the others found it up to date
    conn = sqlite3.connect(db)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations")]
        assert len(names) == len(set(names)) and "0005_retention" in names
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


# -- the writer's lock ----------------------------------------------------------------------


@pytest.mark.faults
@pytest.mark.slow
@pytest.mark.parametrize("cause", ["another-users-lock", "a-directory"])
def test_an_unopenable_writer_lock_is_503_at_once_and_the_writer_recovers(service, workdir, cause):
    db = workdir / "ledger.db"
    migrate(db)
    lock = Path(f"{db}-writer.lock")
    if cause == "a-directory":
        lock.mkdir()  # as root, mode bits deny nothing: a directory cannot be opened to write
        base = service(db, workers=1)  # four threads: more callbacks than threads at once
    else:
        lock.touch(mode=0o600)  # left by root; the service runs as an unprivileged user
        os.chown(db, NOBODY, NOBODY)
        base = service(db, workers=1, as_user=NOBODY)

    results, threads = [], []
    for i in range(12):
        t = threading.Thread(target=lambda i=i: results.append(post(base, f"locked-{i}")))
        threads.append(t)
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 12
    for status, body in results:
        assert status == 503, (status, body)
        assert "writer.lock" in body["error"]
    started = time.monotonic()
    assert http("GET", base + "/healthz", timeout=5)[0] == 200
    assert time.monotonic() - started < 2
    assert videos_in(db) == set()

    # the cause is gone: the same worker takes notices again, no restart
    if cause == "a-directory":
        lock.rmdir()
    else:
        os.chown(lock, NOBODY, NOBODY)
    for i in range(12):
        status, body = post(base, f"locked-{i}")
        assert status == 200, body
    assert videos_in(db) == {f"locked-{i}" for i in range(12)}


@pytest.mark.faults
def test_a_writer_held_off_its_lock_answers_within_the_bound(db_path):
    doc = fixture_json("aliyun_vod-TranscodeComplete.json")
    event = [aliyun_vod.parse(json.dumps(dict(doc, VideoId=f"held-{i}"))) for i in range(3)]
    writer = GroupWriter(db_path, wait_s=1.0)
    fd = os.open(f"{db_path}-writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another process's writer, stuck
        errors = {}

        def send(i):
            try:
                writer.record_event(event[i], source="http", verified=True)
            except LedgerUnavailable as e:
                errors[i] = (str(e), time.monotonic() - started)

        started = time.monotonic()
        first = threading.Thread(target=send, args=(0,))
        first.start()
        while not writer._leading:  # the first request leads a commit, waiting for the lock
            time.sleep(0.01)
        second = threading.Thread(target=send, args=(1,))
        second.start()
        first.join(10)
        second.join(10)
        assert set(errors) == {0, 1}
        assert all(took < 5 for _, took in errors.values()), errors
        assert "another process held the writers' lock" in errors[0][0]  # nothing written
        assert "may still be recorded" not in errors[0][0]
        assert "may still be recorded" not in errors[1][0]  # withdrawn before it was taken
    finally:
        os.close(fd)
    assert writer.record_event(event[2], source="http", verified=True).state == "succeeded"
    writer.close()
    assert videos_in(db_path) == {"held-2"}  # a 503 left nothing behind


# -- the ledger file deleted, replaced or made read-only under load ---------------------------


@pytest.mark.faults
@pytest.mark.slow
@pytest.mark.parametrize("fault", ["deleted", "replaced"])
def test_a_ledger_deleted_or_replaced_under_load_is_503_until_cleaned_up(service, workdir, fault):
    db = workdir / "ledger.db"
    migrate(db)
    base = service(db, workers=2)
    senders = Senders(base)
    senders.wait_for(40)
    old = workdir / "old.db"
    os.link(db, old)  # keep the old inode reachable, to read what was committed to it
    if fault == "deleted":
        db.unlink()
    else:
        fresh = workdir / "restored.db"
        migrate(fresh)
        os.replace(fresh, db)
    broken_at = time.monotonic()
    senders.wait_for(len(senders.answers) + 60)
    answers = senders.stop()

    ok_before = {v for s, e, v, status, _ in answers if status == 200 and s < broken_at}
    after = [(v, status, body) for s, e, v, status, body in answers if s > broken_at]
    assert ok_before and len(after) >= 30
    for video, status, body in after:
        assert status == 503, (video, status, body)  # never a 200 into a file nobody reads
        assert f"was {fault}" in body["error"] or "-replaced exists" in body["error"], body
    marker = Path(f"{db}-replaced")
    assert marker.exists()
    # A worker started now (gunicorn replacing one) must not take the old log for the new
    # file's: the marker keeps the whole service refusing until an operator cleans up.
    restarted = service(db, workers=1)
    status, body = post(restarted, "during-cleanup")
    assert status == 503 and "-replaced exists" in body["error"], body
    service.stop(restarted)
    service.stop(base)

    # The operator's procedure (docs/faults.md): everything stopped, the old file's log
    # goes with the old file, the marker is removed, then init-db and start.
    for side in ("-wal", "-shm"):
        if Path(f"{db}{side}").exists():
            os.replace(f"{db}{side}", f"{old}{side}")
    assert videos_in(old) >= ok_before  # acknowledged before the fault: in the old file
    marker.unlink()
    migrate(db)
    assert videos_in(db) == set()  # nothing answered after the fault landed anywhere

    base = service(db, workers=2)
    for video, _, _ in after[:10]:
        status, body = post(base, video)
        assert status == 200, body
    assert videos_in(db) == {video for video, _, _ in after[:10]}


@pytest.mark.faults
@pytest.mark.slow
def test_a_ledger_made_read_only_is_503_and_recovers_by_itself(service, workdir):
    db = workdir / "ledger.db"
    migrate(db)
    os.chown(db, NOBODY, NOBODY)
    base = service(db, workers=2, as_user=NOBODY)
    db.chmod(0o444)  # before the service opened it: every connection opens now
    senders = Senders(base)
    senders.wait_for(40)
    refused = list(senders.answers)
    db.chmod(0o644)  # writable again: no restart
    fixed_at = time.monotonic()
    deadline = fixed_at + 20
    while time.monotonic() < deadline:
        with senders.lock:
            recent = [a for a in senders.answers if a[0] > fixed_at]
        if len(recent) >= 20 and all(a[3] == 200 for a in recent[-20:]):
            break
        time.sleep(0.05)
    answers = senders.stop()

    for _, _, video, status, body in refused:
        assert status == 503, (video, status, body)
        assert "cannot take writes" in body["error"], body
    recent = [a for a in answers if a[0] > fixed_at]
    assert len(recent) >= 20 and all(a[3] == 200 for a in recent[-20:]), recent[-20:]
    ok = {a[2] for a in answers if a[3] == 200}
    assert {a[3] for a in answers} <= {200, 503}
    service.stop(base)
    assert videos_in(db) == ok  # every 200 is in the file, and nothing refused is


@pytest.mark.faults
def test_a_callback_behind_a_stuck_command_is_answered_within_five_seconds(db_path):
    """Another command (a consumer's batch, a script) holds SQLite's write lock: the web
    workers' writer gives up inside VOD's 5 s window, with its default settings."""
    doc = fixture_json("aliyun_vod-TranscodeComplete.json")
    event = aliyun_vod.parse(json.dumps(dict(doc, VideoId="behind-a-command")))
    writer = GroupWriter(db_path)
    stuck = sqlite3.connect(db_path)
    stuck.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with pytest.raises(LedgerUnavailable):
            writer.record_event(event, source="http", verified=True)
        assert time.monotonic() - started < 5
    finally:
        stuck.rollback()
        stuck.close()
    assert writer.record_event(event, source="http", verified=True).state == "succeeded"
    writer.close()
