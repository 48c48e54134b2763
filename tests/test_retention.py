"""Retention prunes old raw payloads and keeps jobs, summaries and unreplayed quarantine."""

from datetime import UTC, datetime, timedelta

import pytest

from receiver.providers.base import Event
from store import retention

pytestmark = pytest.mark.engines


def add(ledger, n: int, received_at: str, start: int = 0) -> None:
    for i in range(start, start + n):
        event = Event(
            provider="aliyun",
            service="vod",
            event_type="TranscodeComplete",
            payload=f'{{"n": {i}}}',
            dedup_key=i.to_bytes(16, "big"),
            kind="transcode",
            media_id=f"v{i}",
            state="succeeded",
        )
        result = ledger.notices.record(event, source="http", verified=True)
        ledger.conn.execute(
            "UPDATE events SET received_at = ? WHERE id = ?", (received_at, result.event_id)
        )
        ledger.conn.commit()


def test_prunes_only_old_payloads_and_keeps_jobs(ledger, monkeypatch):
    monkeypatch.setattr(retention, "BATCH", 7)  # several batches
    add(ledger, 20, "2026-01-01T00:00:00.000Z")
    add(ledger, 5, "2026-11-20T00:00:00.000Z", start=20)
    cutoff = datetime(2026, 6, 1, tzinfo=UTC)
    assert ledger.retention.prune(cutoff) == 20
    payloads = [r[0] for r in ledger.conn.execute("SELECT payload FROM events ORDER BY id")]
    assert payloads[:20] == [None] * 20 and all(payloads[20:])
    assert ledger.conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 25
    job = ledger.jobs.search(q="v3")[0][0]
    assert (
        ledger.jobs.get(job["id"], with_events=True)["events"][0]["event_type"]
        == "TranscodeComplete"
    )
    assert ledger.retention.prune(cutoff) == 0  # nothing left, and cheap
    add(ledger, 3, "2026-02-01T00:00:00.000Z", start=25)  # (only id order matters)
    assert ledger.retention.prune(datetime.now(UTC) + timedelta(days=1)) == 8


def test_unreplayed_quarantine_is_kept(ledger):
    kept = ledger.quarantine.keep(
        provider="aliyun", service="vod", source="http", body=b"{bad", reason="x", verified=True
    )
    done = ledger.quarantine.keep(
        provider="aliyun", service="vod", source="http", body=b"{}", reason="x", verified=True
    )
    assert ledger.quarantine.mark_replayed(done, 1)
    ledger.retention.prune(datetime.now(UTC) + timedelta(days=1))
    bodies = dict(ledger.conn.execute("SELECT id, body FROM quarantine").fetchall())
    assert bytes(bodies[kept]) == b"{bad" and bodies[done] is None
