"""Several hosts on one PostgreSQL ledger: three gunicorn instances on three loopback ports,
storms of duplicated and reordered notices sent to all of them at once, a host killed
mid-storm, and two `reconcile` processes delivering the alerts."""

import concurrent.futures
import json
import os
import random
import re
import signal
import time
import urllib.error
from http.client import HTTPException
from pathlib import Path

import pytest

from store import open_ledger
from tests.helpers import TimedSink, fixture_json, http, reconcile_env, run_reconciles, vod_headers

pytestmark = [pytest.mark.postgresql_only, pytest.mark.slow]
VIDEOS = 40


def notices(prefix: str) -> list[tuple[str, str, bytes]]:
    """Two notices per video (progress, then the final word), as (video, final state, body).

    Every fifth video fails, so its job raises an alert.
    """
    progress = fixture_json("aliyun_vod-StreamTranscodeComplete.json")
    final = fixture_json("aliyun_vod-TranscodeComplete.json")
    out = []
    for i in range(VIDEOS):
        video = f"{prefix}-{i}"
        state = "failed" if i % 5 == 0 else "succeeded"
        step = dict(progress, VideoId=video, EventTime="2026-11-21T00:00:01Z")
        done = dict(final, VideoId=video, EventTime="2026-11-21T00:00:02Z")
        if state == "failed":
            done.update(Status="fail", ErrorCode="TranscodeFail", ErrorMessage="no video track")
        out += [
            (video, state, json.dumps(step).encode()),
            (video, state, json.dumps(done).encode()),
        ]
    return out


def storm(bases: list[str], items: list, seed: int) -> list[tuple[str, int, dict | str]]:
    """Send every notice to every host at once, in a shuffled order; return the answers."""
    sends = [(base, body) for _, _, body in items for base in bases]
    random.Random(seed).shuffle(sends)  # progress and final word race, in either order

    def post(send):
        base, body = send
        try:
            status, answer = http("POST", base + "/hooks/aliyun/vod", body, vod_headers())
        except (urllib.error.URLError, OSError, HTTPException) as e:
            return base, 0, str(e)  # a host that died: not acknowledged
        return base, status, answer

    with concurrent.futures.ThreadPoolExecutor(max_workers=24) as pool:
        return list(pool.map(post, sends))


def kill_host(base: str, logs: Path) -> None:
    """SIGKILL a gunicorn master and its workers (their pids are in its log lines)."""
    port = base.rsplit(":", 1)[1]
    text = (logs / f"gunicorn-{port}.log").read_text()
    for pid in {int(p) for p in re.findall(r"\] \[(\d+)\] \[", text)}:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def check_ledger(database: str, items, answers) -> None:
    """No job twice, every final state right, every acknowledged notice stored."""
    expected = {video: state for video, state, _ in items}
    acked = [a for _, status, a in answers if status == 200]
    with open_ledger(database) as ledger:
        rows = ledger.conn.execute("SELECT media_id, state FROM jobs").fetchall()
        assert len(rows) == len({media for media, _ in rows}) == len(expected)
        assert dict(rows) == expected
        stored = {r[0] for r in ledger.conn.execute("SELECT id FROM events").fetchall()}
        assert {a["event_id"] for a in acked} <= stored
        originals = ledger.conn.execute(
            "SELECT COUNT(*) FROM events WHERE duplicate_of IS NULL"
        ).fetchone()[0]
        assert originals == len(items)
        assert ledger.jobs.stats()["total"] == len(expected)


def test_three_hosts_share_one_ledger(gunicorn_server, settings, tmp_path):
    bases = [gunicorn_server(workers=2) for _ in range(3)]
    items = notices("calm")
    answers = storm(bases, items, seed=1)
    assert all(status == 200 for _, status, _ in answers), [a for a in answers if a[1] != 200][:3]
    assert sum(not a["duplicate"] for _, _, a in answers) == len(items)
    check_ledger(settings["DATABASE"], items, answers)

    # Each failed job raised one alert; two reconcile processes deliver each once per sink.
    sinks = [TimedSink(delay=0.5), TimedSink()]
    try:
        run_reconciles(2, reconcile_env(settings["DATABASE"], *(s.url for s in sinks)))
        failed = sum(state == "failed" for _, state, _ in items) // 2
        with open_ledger(settings["DATABASE"]) as ledger:
            alert_ids = [r[0] for r in ledger.conn.execute("SELECT id FROM alerts").fetchall()]
            kinds = [r[0] for r in ledger.conn.execute("SELECT kind FROM alerts")]
        # One per failed job, and at most one anomaly of a kind failing with no history.
        assert kinds.count("job") == failed and kinds.count("other") <= 1
        for sink in sinks:
            assert sorted(sink.alert_ids().elements()) == sorted(alert_ids), sink.url
    finally:
        for sink in sinks:
            sink.close()


def test_a_host_killed_mid_storm_loses_nothing_acknowledged(gunicorn_server, settings, tmp_path):
    bases = [gunicorn_server(workers=2) for _ in range(3)]
    items = notices("killed")
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as sender:
        pending = sender.submit(storm, bases, items, 2)
        deadline = time.monotonic() + 60
        while not pending.done() and time.monotonic() < deadline:
            with open_ledger(settings["DATABASE"]) as ledger:
                seen = ledger.conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            if seen >= len(items):  # a third of the storm is in: kill the third host now
                break
            concurrent.futures.wait([pending], timeout=0.02)
        kill_host(bases[2], tmp_path)
        answers = pending.result(timeout=120)
    third = [status for base, status, _ in answers if base == bases[2]]
    assert 200 in third and 0 in third  # it answered some, then died mid-storm
    # Providers retry what was not acknowledged; the survivors take all of it.
    answers += storm(bases[:2], items, seed=3)
    assert all(status == 200 for base, status, _ in answers[-2 * len(items) :])
    check_ledger(settings["DATABASE"], items, answers)
