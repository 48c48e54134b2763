"""The health strip's feeds count deliveries: a replay is the ledger's own doing, and must
not make a feed that went silent look alive (on both engines)."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from store.ids import iso
from tests.helpers import fixture_json, vod_headers

pytestmark = pytest.mark.engines
VOD = "/hooks/aliyun/vod"


def vod(video: str) -> str:
    return json.dumps(dict(fixture_json("aliyun_vod-TranscodeComplete.json"), VideoId=video))


def make_old(ledger, hours: int) -> str:
    """Move every stored event back in time, as if the feed had gone quiet since."""
    then = iso(datetime.now(UTC) - timedelta(hours=hours))
    ledger.conn.execute("BEGIN")
    ledger.conn.execute("UPDATE events SET received_at = ?", (then,))
    ledger.conn.commit()
    return then


def vod_feed(ledger) -> dict | None:
    feeds = ledger.dashboard.feeds(datetime.now(UTC) - timedelta(hours=1))
    return next((f for f in feeds if (f["source"], f["service"]) == ("http", "vod")), None)


def test_replaying_events_does_not_make_a_silent_feed_look_alive(client, ledger, runner):
    first = client.post(VOD, data=vod("quiet"), headers=vod_headers()).get_json()
    then = make_old(ledger, hours=5)
    assert runner.invoke(args=["replay", str(first["event_id"])]).exit_code == 0
    assert runner.invoke(args=["replay", "--all"]).exit_code == 0
    assert ledger.conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 3
    feed = vod_feed(ledger)
    assert feed["last_at"] == then and feed["recent"] == 0
    page = client.get("/").get_data(as_text=True)
    strip = page[page.index('id="feeds"') : page.index('id="rejections"')]
    assert "5 h ago" in strip and '<span class="num">0</span> in the last hour' in strip

    # A real delivery still counts, whatever replays came before it.
    client.post(VOD, data=vod("loud"), headers=vod_headers())
    feed = vod_feed(ledger)
    assert feed["last_at"] > then and feed["recent"] == 1


def test_replaying_a_quarantined_body_is_not_a_delivery(client, ledger):
    qid = ledger.quarantine.keep(
        provider="aliyun",
        service="vod",
        source="http",
        body=vod("kept").encode(),
        reason="an older parser refused it",
        verified=True,
        auth="signature",
    )
    replayed = client.post(f"/api/quarantine/{qid}/replay").get_json()
    assert replayed["ok"] is True and replayed["event_id"]
    assert vod_feed(ledger) is None  # nothing was ever delivered to this ledger
