"""A PostgreSQL server that fills its disk, stalls, takes no writes or restarts under the
running service (gunicorn with the project's config, several workers, one server).

The server is a cluster of this module's own (tests/engines.py), also listening on TCP,
so that it can be paused (SIGSTOP of its processes), restarted and made read-only without
disturbing the other tests. The promise checked throughout: whatever the server does,
every callback is answered 200 with its notice committed, or 503, within 5 s; nothing is
ever 500; and the service recovers by itself once the server does.
"""

import contextlib
import json
import signal
import threading
import time
from collections import Counter

import psycopg
import pytest

from receiver.inbound.batch import Delivery, apply_batch
from receiver.providers.aliyun import vod as aliyun_vod
from store import LedgerUnavailable, ledger_problem, migrate, open_ledger
from tests.engines import TEMPLATE
from tests.fakes.mns import FakeMNS
from tests.fakes.tencent import FakeTencentAPI
from tests.helpers import (
    SECRET_ID,
    SECRET_KEY,
    fixture_json,
    flask_command,
    http,
    vod_headers,
    wait_for,
)
from tests.helpers import vod_notice as notice

pytestmark = [pytest.mark.faults, pytest.mark.slow]

VOD = "/hooks/aliyun/vod"
ANSWER_WITHIN_S = 5.0  # Alibaba VOD's window for a callback
_names = iter(range(10**6))


def post(base: str, video: str, pad: int = 0) -> tuple[int, object, float]:
    """POST one signed notice; return (status, body, seconds). 0: no HTTP answer at all."""
    started = time.monotonic()
    try:
        status, body = http("POST", base + VOD, notice(video, pad), vod_headers(), timeout=30)
    except OSError as e:
        status, body = 0, str(e)
    return status, body, time.monotonic() - started


class Load:
    """Threads posting distinct notices until stopped; every answer is kept, with its time."""

    def __init__(self, base: str, threads: int, prefix: str, pad: int = 0):
        self.base, self.prefix, self.pad = base, prefix, pad
        self.answers: list[tuple[float, str, int, object, float]] = []
        self.lock, self.stopped = threading.Lock(), threading.Event()
        self.threads = [threading.Thread(target=self._send, args=(k,)) for k in range(threads)]
        for t in self.threads:
            t.start()

    def _send(self, k: int) -> None:
        i = 0
        while not self.stopped.is_set():
            video = f"{self.prefix}-{k}-{i}"
            sent = time.monotonic()
            status, body, took = post(self.base, video, self.pad)
            with self.lock:
                self.answers.append((sent, video, status, body, took))
            i += 1

    def wait_until(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate(self.answers):
                    return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}: {self.summary()}")

    def summary(self) -> Counter:
        with self.lock:
            return Counter(status for _, _, status, _, _ in self.answers)

    def stop(self) -> list:
        self.stopped.set()
        for t in self.threads:
            t.join(timeout=60)
        return list(self.answers)


def committed(url: str) -> Counter:
    """How many original notices the ledger holds, per video."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT j.media_id FROM events e JOIN jobs j ON j.id = e.job_id"
            " WHERE e.duplicate_of IS NULL"
        ).fetchall()
    return Counter(r[0] for r in rows)


def assert_every_200_committed_once(url: str, answers: list) -> None:
    ok = {video for _, video, status, _, _ in answers if status == 200}
    held = committed(url)
    assert ok <= set(held), f"{len(ok - set(held))} notices answered 200 are not in the ledger"
    assert all(n == 1 for n in held.values()), "a notice recorded twice"


@pytest.fixture
def fresh_db(own_cluster):
    """A fresh migrated database on the module's cluster: `database(tablespace=None)`."""
    made = []

    def make(tablespace: str | None = None) -> str:
        name = f"faults_{next(_names)}"
        where = f" TABLESPACE {tablespace}" if tablespace else ""
        own_cluster.admin(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}{where}")
        made.append(name)
        return name

    yield make
    for name in made:
        own_cluster.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# -- a tablespace that fills up, then grows ----------------------------------------------------


@pytest.fixture
def small_tablespace(own_cluster, small_fs):
    """A tablespace on an 8 MiB file system of its own; yields (name, file system)."""
    fs = small_fs("8m", owner="postgres")
    own_cluster.admin(f"CREATE TABLESPACE small LOCATION '{fs.path}'")
    yield "small", fs
    own_cluster.admin(
        *(
            f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            for (name,) in _databases_in(own_cluster, "small")
        ),
        "DROP TABLESPACE small",
    )


def _databases_in(cluster, tablespace: str) -> list:
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
        return conn.execute(
            "SELECT datname FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace"
            " WHERE t.spcname = %s",
            (tablespace,),
        ).fetchall()


def test_a_full_tablespace_is_503_never_500_and_the_service_recovers_once_it_grows(
    own_cluster, fresh_db, small_tablespace, gunicorn_server
):
    tablespace, fs = small_tablespace
    url = own_cluster.url(fresh_db(tablespace))
    base = gunicorn_server(workers=3, RECEIVER_DATABASE=url)  # three web instances
    load = Load(base, threads=9, prefix="fill", pad=20_000)
    # Every pooled connection has run each statement of a notice more than five times
    # (psycopg prepares a statement on its fifth run) before the disk fills up; then each
    # meets the full disk again and again, at every point of a notice's pipeline.
    load.wait_until(lambda a: any(s == 503 for _, _, s, _, _ in a), 120, "a full disk")
    filled = load.stop()
    load = Load(base, threads=9, prefix="full", pad=2_000)
    load.wait_until(lambda a: sum(s == 503 for _, _, s, _, _ in a) >= 300, 120, "300 503s")
    filled += load.stop()
    refused = [(video, body) for _, video, status, body, _ in filled if status == 503]
    assert all("server out of resources (53100" in body["error"] for _, body in refused)

    fs.grow("64m")  # space again: no restart of anything
    grown_at = time.monotonic()
    load = Load(base, threads=9, prefix="grown", pad=2_000)
    load.wait_until(
        lambda a: sum(sent > grown_at + 2 for sent, *_ in a) >= 300, 120, "300 answers 2 s on"
    )
    after = load.stop()
    # Like Alibaba VOD: each refused notice is sent again, up to three times, 1 s apart.
    retried = []
    for video, _ in refused:
        for _ in range(3):
            status, body, _ = post(base, video, 20_000)
            if status == 200:
                break
            time.sleep(1)
        retried.append((video, status, body))

    everything = filled + after
    assert {s for _, _, s, _, _ in everything} <= {200, 503}, Counter(
        (s, str(b)[:120]) for _, _, s, b, _ in everything if s not in (200, 503)
    )
    settled = [a for a in after if a[0] > grown_at + 2]
    assert len(settled) >= 300 and {a[2] for a in settled} == {200}, Counter(
        (s, str(b)[:120]) for _, _, s, b, _ in settled
    )
    assert [r for r in retried if r[1] != 200] == []
    assert max(took for *_, took in everything) < ANSWER_WITHIN_S
    assert_every_200_committed_once(url, everything + [(0, v, s, b, 0) for v, s, b in retried])


# -- a restarted server ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_after_a_restart_no_idle_pooled_connection_answers_503(
    own_cluster, fresh_db, gunicorn_server, mode
):
    url = own_cluster.url(fresh_db())
    base = gunicorn_server(workers=2, RECEIVER_DATABASE=url)
    load = Load(base, threads=8, prefix="warm")  # every worker's pool grows to its threads
    load.wait_until(lambda a: len(a) >= 400, 60, "400 answers")
    warm = load.stop()
    own_cluster.restart(mode)  # every pooled connection is now dead, and idle
    time.sleep(1)
    answers = [post(base, f"after-{mode}-{i}") for i in range(40)]
    load = Load(base, threads=8, prefix=f"after-{mode}")
    load.wait_until(lambda a: len(a) >= 200, 60, "200 answers")
    answers += [(s, b, took) for _, _, s, b, took in load.stop()]
    assert Counter(s for s, _, _ in answers) == {200: len(answers)}, Counter(
        (s, str(b)[:120]) for s, b, _ in answers
    )
    assert_every_200_committed_once(url, warm)


def test_callbacks_during_a_restart_are_answered_in_time_and_the_service_recovers(
    own_cluster, fresh_db, gunicorn_server
):
    url = own_cluster.url(fresh_db())
    base = gunicorn_server(workers=2, RECEIVER_DATABASE=url)
    load = Load(base, threads=6, prefix="restart")
    load.wait_until(lambda a: len(a) >= 100, 60, "100 answers")
    own_cluster.restart("fast")
    restarted_at = time.monotonic()
    load.wait_until(
        lambda a: sum(sent > restarted_at + 5 for sent, *_ in a) >= 200, 60, "200 answers 5 s on"
    )
    answers = load.stop()
    assert {s for _, _, s, _, _ in answers} <= {200, 503}
    assert max(took for *_, took in answers) < ANSWER_WITHIN_S
    assert {s for sent, _, s, _, _ in answers if sent > restarted_at + 5} == {200}
    assert_every_200_committed_once(url, answers)


# -- a server that stalls ----------------------------------------------------------------------


class Probes:
    """A thread asking /healthz every 0.25 s, keeping (status, seconds) of each answer."""

    def __init__(self, base: str):
        self.base, self.answers, self.stopped = base, [], threading.Event()
        self.thread = threading.Thread(target=self._probe)
        self.thread.start()

    def _probe(self) -> None:
        while not self.stopped.wait(0.25):
            started = time.monotonic()
            try:
                status = http("GET", self.base + "/healthz", timeout=5)[0]
            except OSError:
                status = 0
            self.answers.append((status, time.monotonic() - started))

    def stop(self) -> list:
        self.stopped.set()
        self.thread.join(timeout=10)
        return self.answers


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_a_paused_server_costs_503s_within_5_s_and_healthz_answers_throughout(
    own_cluster, fresh_db, gunicorn_server, transport
):
    url = own_cluster.url(fresh_db(), tcp=transport == "tcp")
    # Two threads, three times as many senders: every request thread is taken while the
    # server does not answer, and callbacks queue behind them.
    base = gunicorn_server(workers=1, RECEIVER_DATABASE=url, GUNICORN_THREADS="2")
    load = Load(base, threads=6, prefix="before")
    load.wait_until(lambda a: len(a) >= 100, 60, "100 answers")
    probes = Probes(base)
    own_cluster.pause()
    paused_at = time.monotonic()
    try:
        # Long enough that, on a busy machine too, several seconds pass between the first
        # wait cut (within 5 s) and the end of the window the 503s are counted in.
        time.sleep(16)
    finally:
        own_cluster.resume()
    resumed_at = time.monotonic()
    load.wait_until(
        lambda a: sum(sent > resumed_at + 5 for sent, *_ in a) >= 100, 60, "100 answers 5 s on"
    )
    answers, probed = load.stop(), probes.stop()

    stalled = [a for a in answers if paused_at < a[0] < resumed_at - ANSWER_WITHIN_S]
    assert len(stalled) >= 6 and {s for _, _, s, _, _ in stalled} == {503}, Counter(
        (s, str(b)[:100]) for _, _, s, b, _ in stalled
    )
    assert all("did not answer in time" in b["error"] for _, _, _, b, _ in stalled)
    slowest = max(took for *_, took in answers)
    assert slowest < ANSWER_WITHIN_S, f"a callback took {slowest:.2f} s"
    assert {s for _, _, s, _, _ in answers} <= {200, 503}
    assert {s for sent, _, s, _, _ in answers if sent > resumed_at + 5} == {200}
    assert len(probed) >= 30 and {s for s, _ in probed} == {200}, Counter(s for s, _ in probed)
    assert max(took for _, took in probed) < 1.0
    assert_every_200_committed_once(url, answers)


# -- a server that takes no writes -------------------------------------------------------------


def apply_to(url: str, deliveries: list[Delivery]):
    """Apply one MNS batch to the ledger at `url`, as the consumer does."""
    with open_ledger(url) as ledger:
        return apply_batch(
            ledger,
            deliveries,
            parse=aliyun_vod.parse,
            source="mns",
            auth="queue",
            quarantine_as=("aliyun", "mns"),
            prefix="test",
        )


def test_a_read_only_database_is_unavailable_not_broken(own_cluster, fresh_db):
    name = fresh_db()
    url = own_cluster.url(name)
    own_cluster.admin(f"ALTER DATABASE {name} SET default_transaction_read_only = on")
    # A consumer's start-up check reads; it neither writes nor dies on the read-only server.
    assert ledger_problem(url) is None
    with pytest.raises(LedgerUnavailable, match="read-only"):
        migrate(url)  # init-db: a message, not a traceback
    doc = fixture_json("aliyun_vod-TranscodeComplete.json")
    deliveries = [Delivery(json.dumps(dict(doc, VideoId=f"ro-{i}")), i, {}) for i in range(3)]
    deliveries.append(Delivery("{not json", 3, {}))  # would go to the quarantine
    out = apply_to(url, deliveries)
    assert out.done == [] and out.deferred == deliveries  # all left for redelivery
    own_cluster.admin(f"ALTER DATABASE {name} RESET default_transaction_read_only")
    out = apply_to(url, deliveries)
    assert (out.applied, out.quarantined, out.deferred) == (3, 1, [])


@contextlib.contextmanager
def read_only(cluster):
    """Make the whole server read-only, open sessions included (as a failover to a standby,
    or a provider's read-only mode on a full disk, would)."""
    cluster.admin("ALTER SYSTEM SET default_transaction_read_only = on", "SELECT pg_reload_conf()")
    try:
        yield
    finally:
        cluster.admin("ALTER SYSTEM RESET default_transaction_read_only", "SELECT pg_reload_conf()")


def worker_env(url: str, mns: FakeMNS, tencent: FakeTencentAPI) -> dict:
    return {
        "RECEIVER_DATABASE": url,
        "RECEIVER_MNS_ENDPOINT": mns.endpoint,
        "RECEIVER_MNS_ACCESS_KEY_ID": "AK",
        "RECEIVER_MNS_ACCESS_KEY_SECRET": "SK",
        "RECEIVER_MNS_QUEUES": "events",
        "RECEIVER_TENCENT_SECRET_ID": SECRET_ID,
        "RECEIVER_TENCENT_SECRET_KEY": SECRET_KEY,
        "RECEIVER_TENCENT_VOD_ENDPOINT": tencent.endpoint,
    }


WORKERS = {
    "consume-mns": ["consume-mns", "--wait-seconds", "1"],
    "pull-tencent": ["pull-tencent"],
    "reconcile": ["reconcile"],
}


def tencent_event(task: str) -> dict:
    return {
        "EventType": "ProcedureStateChanged",
        "ProcedureStateChangeEvent": {"TaskId": task, "Status": "FINISH", "FileId": "52858"},
    }


def test_on_a_read_only_server_hooks_answer_503_and_every_worker_waits_then_catches_up(
    own_cluster, fresh_db, gunicorn_server, tmp_path
):
    url = own_cluster.url(fresh_db())
    base = gunicorn_server(workers=2, RECEIVER_DATABASE=url)
    assert [post(base, f"before-{i}")[0] for i in range(20)] == [200] * 20  # pools filled
    with (
        FakeMNS("AK", "SK") as mns,
        FakeTencentAPI(SECRET_ID, SECRET_KEY, confirm_timeout=2, pull_wait=0.2) as tencent,
        contextlib.ExitStack() as running,
    ):
        mns.create_queue("events", visibility_timeout=5)
        env = worker_env(url, mns, tencent)
        with read_only(own_cluster):
            refused = [post(base, f"refused-{i}") for i in range(20)]
            for i in range(3):
                mns.send("events", notice(f"queued-{i}").decode())
                tencent.push_event(tencent_event(f"1256768367-Procedure-ro{i}"))
            mns.send("events", "{not json")  # for the quarantine, read-only as well
            # Started now, each worker meets the read-only server from its first batch on.
            procs = {
                name: running.enter_context(flask_command(args, env, tmp_path / f"{name}.log"))
                for name, args in WORKERS.items()
            }
            wait_for(
                lambda: all(m["dequeue_count"] >= 2 for m in mns.messages("events")),
                30,
                "every message tried twice",
                proc=procs["consume-mns"],
            )
            time.sleep(2)
            for name, proc in procs.items():
                assert proc.poll() is None, f"{name} exited:\n" + proc.log_path.read_text()
                assert "ledger-unavailable" in proc.log_path.read_text(), name
            assert mns.pending("events") == 4 and len(tencent.pending_events()) == 3
        # Writable again: every worker catches up by itself, and the hooks take notices.
        wait_for(lambda: mns.pending("events") == 0, 60, "the queue drained")
        wait_for(lambda: not tencent.pending_events(), 60, "every Tencent event confirmed")
        assert [post(base, f"refused-{i}")[0] for i in range(20)] == [200] * 20
        log = procs["reconcile"].log_path
        wait_for(lambda: '"reconcile.pass"' in log.read_text(), 40, "a reconcile pass")
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for name, proc in procs.items():
            assert proc.wait(timeout=30) == 0, f"{name}:\n" + proc.log_path.read_text()
    for status, body, took in refused:
        assert status == 503 and "read-only (25006" in body["error"], body
        assert took < ANSWER_WITHIN_S
    held = committed(url)
    assert {f"queued-{i}" for i in range(3)} | {f"refused-{i}" for i in range(20)} <= set(held)
    with open_ledger(url) as ledger:
        sources = dict(ledger.conn.execute("SELECT source, COUNT(*) FROM events GROUP BY source"))
        quarantined = ledger.conn.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0]
    assert sources == {"http": 40, "mns": 3, "pull": 3} and quarantined == 1
