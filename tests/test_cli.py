"""Commands through the test runner: init-db and replay."""

import json

import pytest

from store import open_ledger
from tests.helpers import fixture_bytes, vod_headers

pytestmark = pytest.mark.engines


def test_init_db_runs_twice_cleanly(runner, tmp_path, make_app):
    fresh = make_app(DATABASE=str(tmp_path / "sub" / "new.db")).test_cli_runner()
    first = fresh.invoke(args=["init-db"])
    assert first.exit_code == 0 and "applied 0001_enable_wal" in first.output
    again = fresh.invoke(args=["init-db"])
    assert again.exit_code == 0 and "up to date" in again.output


def test_replay_quarantined_records_what_now_parses(runner, ledger, client):
    good = fixture_bytes("aliyun_vod-TranscodeComplete.json")
    # A body an older parser refused (kept by the store exactly as a hook would keep it),
    # and one that still fails.
    kept = ledger.quarantine.keep(
        provider="aliyun",
        service="vod",
        source="http",
        body=good,
        reason="older parser",
        verified=True,
        auth="signature",
    )
    bad = client.post("/hooks/aliyun/vod", data=b"{oops", headers=vod_headers())
    assert bad.status_code == 400
    result = runner.invoke(args=["replay", "--quarantined"])
    assert result.exit_code == 1  # one body is still unparseable, and says so
    assert f"quarantine {bad.get_json()['quarantine_id']}: still unparseable" in result.output
    line = json.loads(result.stdout.splitlines()[0])
    assert line["quarantine_id"] == kept and line["state"] == "succeeded"
    rows = ledger.quarantine.bodies(pending_only=False)
    assert [r["replay_event_id"] is not None for r in rows] == [True, False]
    assert runner.invoke(args=["replay", "--quarantined", str(kept)]).exit_code == 0  # done: no-op


def test_replay_events_reapplies_without_moving_a_final_state(runner, client, db_path):
    body = fixture_bytes("aliyun_vod-TranscodeComplete.json")
    first = client.post("/hooks/aliyun/vod", data=body, headers=vod_headers()).get_json()
    result = runner.invoke(args=["replay", str(first["event_id"])])
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout)
    assert line["replay_of"] == first["event_id"] and line["job_id"] == first["job_id"]
    with open_ledger(db_path) as led:
        events = led.jobs.events(first["job_id"])
        assert [e["replay_of"] for e in events] == [None, first["event_id"]]
        assert led.jobs.get(first["job_id"])["state"] == "succeeded"


def test_replay_needs_ids_or_the_flag(runner):
    result = runner.invoke(args=["replay"])
    assert result.exit_code == 2 and "--quarantined" in result.output
    assert runner.invoke(args=["replay", "999"]).exit_code == 1
