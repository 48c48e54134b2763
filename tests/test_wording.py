"""Counts, times and progress as a person reads them: "1 job", "—" for a duration the
ledger never saw, relative times with the exact one on hover, and a progress bar nothing
else writes over."""

import json
import os
import pty
import re
import signal
import subprocess
import sys

import pytest

from receiver.ops.display import duration, plural
from tests.helpers import ROOT, drain_terminal, fixture_json, tencent_signed, vod_headers

VOD = "/hooks/aliyun/vod"
TENCENT = "/hooks/tencent/vod"


def vod(video: str) -> bytes:
    return json.dumps(dict(fixture_json("aliyun_vod-TranscodeComplete.json"), VideoId=video))


def test_plural_nouns():
    assert [plural(n, "job") for n in (0, 1, 2)] == ["jobs", "job", "jobs"]
    assert plural(1, "body", "bodies") == "body" and plural(3, "body", "bodies") == "bodies"


def test_the_dashboard_counts_one_thing_in_the_singular(client, ledger):
    assert client.post(VOD, data=vod("one"), headers=vod_headers()).status_code == 200
    ledger.quarantine.keep(
        provider="aliyun",
        service="vod",
        source="http",
        body=b"{}",
        reason="test",
        verified=True,
        auth="signature",
    )
    bad = vod_headers(key="RotatedAwayKey")  # one bad signature
    assert client.post(VOD, data=vod("one"), headers=bad).status_code == 401
    page = client.get("/").get_data(as_text=True)
    assert '<p class="muted">1 job.' in page
    assert '<span class="num">1</span> quarantined body waiting for a replay' in page
    assert '<span class="num">1</span> bad signature <span' in page
    assert '<span class="num">0</span> notices tied to no job' in page
    assert '<span class="num">0</span> alerts waiting to be sent' in page
    assert not re.search(r">1</span> [a-z ]*(jobs|bodies|notices|alerts|signatures)\b", page)


def test_an_empty_failure_chart_says_none_not_peak_one(client):
    page = client.get("/").get_data(as_text=True)
    assert "none in the last 24 hours." in page and "peak" not in page


def test_a_job_first_seen_finished_took_a_dash_not_zero_seconds(client):
    # The Tencent task flow of the README: finished when first heard of, no time of its own.
    doc = fixture_json("tencent_vod-v3-ProcedureStateChanged.json")
    answer = client.post(TENCENT, data=tencent_signed(doc)).get_json()
    assert answer["state"] == "succeeded"
    job = client.get(f"/api/jobs/{answer['job_id']}").get_json()
    assert job["submitted_at"] == job["finished_at"]  # the ledger never saw it run
    assert job["duration_seconds"] is None  # not 0 s, which would drag the percentiles down
    for path in ("/jobs", f"/jobs/{answer['job_id']}"):
        page = client.get(path).get_data(as_text=True)
        assert "0 s" not in page
        assert re.search(r"took</(?:th|dt)>", page)
    listing = client.get("/jobs").get_data(as_text=True)
    assert '<td data-label="took">—</td>' in listing


def test_durations():
    from datetime import UTC, datetime

    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    start = "2026-11-21T11:00:00.000Z"
    assert duration(start, start, now) == "—"
    assert duration(start, "2026-11-21T10:59:00.000Z", now) == "—"
    assert duration(start, "2026-11-21T11:04:00.000Z", now) == "4 min"
    assert duration(start, None, now) == "1 h so far"


def test_the_quarantine_pages_show_times_and_fields_as_people_say_them(client):
    bad = client.post(VOD, data=b'{"EventType": 1', headers=vod_headers())
    qid = bad.get_json()["quarantine_id"]
    listing = client.get("/quarantine").get_data(as_text=True)
    row = listing[listing.index(f'id="q-{qid}"') :]
    assert re.search(r'<time datetime="[^"]+Z" title="\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"', row)
    assert "just now</time>" in row
    page = client.get(f"/quarantine/{qid}").get_data(as_text=True)
    assert "<dt>content type</dt>" in page and "<dt>client address</dt>" in page
    assert "<dt>user agent</dt>" in page
    assert "content_type" not in page and "remote_addr" not in page
    received = page[page.index("<dt>received</dt>") :]
    assert re.match(r'<dt>received</dt><dd><time datetime="[^"]+" title="[^"]+ UTC"', received)
    assert "15 bytes" in page


def test_mns_times_of_a_quarantined_message_are_shown_as_times(client, ledger):
    qid = ledger.quarantine.keep(
        provider="aliyun",
        service="mns",
        source="mns",
        body=b"not json",
        reason="not JSON",
        verified=True,
        auth="queue",
        meta={"queue": "vod-events", "dequeue_count": 2, "enqueue_time": 1763700000000},
    )
    page = client.get(f"/quarantine/{qid}").get_data(as_text=True)
    assert "<dt>MNS queue</dt><dd><code>vod-events</code>" in page
    assert "<dt>times received</dt><dd><code>2</code>" in page
    assert '<dt>sent to the queue</dt><dd><time datetime="2025-11-21T04:40:00.000Z"' in page
    assert "1763700000000" not in page


@pytest.mark.slow
def test_replay_on_a_terminal_keeps_its_bar_clear_of_log_lines(db_path, client):
    """stdout and stderr on one terminal, as a person runs it: each item's JSON line whole
    on its own line, the bar drawn around them, no log line on top of it."""
    doc = fixture_json("tencent_vod-v3-ProcedureStateChanged.json")
    answer = client.post(TENCENT, data=tencent_signed(doc)).get_json()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIVER_")}
    env["RECEIVER_DATABASE"] = str(db_path)
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "replay", str(answer["event_id"])],
        cwd=ROOT,
        env=env,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    terminal = drain_terminal(leader)
    assert proc.wait(timeout=60) == 0, terminal
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", terminal.decode())
    lines = [line.strip() for line in re.split(r"[\r\n]+", text) if line.strip()]
    assert "logger" not in text, text  # no JSON log line drawn over the bar
    items = [line for line in lines if line.startswith("{")]
    assert len(items) == 1 and json.loads(items[0])["replay_of"] == answer["event_id"], lines
    assert any(line.startswith("Replaying 1 stored event ") for line in lines), lines
    assert "replayed 1 of 1 stored event: 0 changed, 1 unchanged, 0 failed" in lines, lines
    assert "stored events" not in text


@pytest.mark.slow
def test_a_looping_reconcile_says_what_it_will_do_at_start(db_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIVER_")}
    env.update(
        RECEIVER_DATABASE=str(db_path),
        RECEIVER_ALERT_WEBHOOK_URLS="https://hooks.example.com/services/T0KEN-in-path",
        RECEIVER_DEADLINES="default=21600,iproduction=3600",
        RECEIVER_RETENTION_DAYS="30",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "reconcile"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = json.loads(proc.stderr.readline())
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert first["event"] == "reconcile.started", first
    assert first["plan"] == (
        "polls due jobs every 15 s (at most 200 a pass); times out a job without a final"
        " word after 6 h (iproduction 1 h); sends alerts to 1 webhook, grouped over 60 s;"
        " prunes raw payloads older than 30 days"
    )
    assert first["alert_sinks"] == {"webhook": 1} and first["every_s"] == 15
    assert "T0KEN" not in json.dumps(first) + err + out
