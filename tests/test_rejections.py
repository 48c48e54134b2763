"""Rejected callbacks are counted without a ledger write per request, and exactly.

Each process adds its rejections up in memory and writes the sums every few seconds and
when it exits (receiver/inbound/rejections.py); the dashboard reads the sums of every
process, its own written first.
"""

import json
import re
import threading
from datetime import UTC, datetime, timedelta

import pytest

from receiver.inbound import rejections
from store import migrate, open_ledger
from tests.helpers import fixture_json, vod_headers, wait_for
from tests.proxy import request

pytestmark = pytest.mark.engines

VOD = "/hooks/aliyun/vod"
BODY = json.dumps(fixture_json("aliyun_vod-TranscodeComplete.json")).encode()


def forged() -> dict:
    return dict(vod_headers(), **{"X-VOD-SIGNATURE": "0" * 32})


def counted(db_path) -> int:
    with open_ledger(db_path) as ledger:
        total = ledger.conn.execute("SELECT COALESCE(SUM(n), 0) FROM hook_rejections")
        return int(total.fetchone()[0])


def shown(page: str) -> dict:
    strip = page[page.index('id="rejections"') : page.index('id="waiting"')]
    return {
        (label, hook): int(n)
        for n, label, hook in re.findall(
            r'<span class="num">(\d+)</span> ([a-z ]+) <span class="muted">\((\w+)\)', strip
        )
    }


def test_a_401_writes_nothing_and_the_dashboard_still_counts_it(client, db_path, monkeypatch):
    monkeypatch.setattr(rejections.TALLY, "flush_seconds", 3600)  # only the dashboard writes
    for _ in range(40):
        assert client.post(VOD, data=BODY, headers=forged()).status_code == 401
    assert counted(db_path) == 0  # no write per rejected request
    assert shown(client.get("/").get_data(as_text=True)) == {("bad signatures", "aliyun_vod"): 40}
    assert counted(db_path) == 40
    for _ in range(2):
        assert client.post(VOD, data=BODY, headers=forged()).status_code == 401
    assert shown(client.get("/").get_data(as_text=True)) == {("bad signatures", "aliyun_vod"): 42}


def test_counts_the_ledger_cannot_take_are_kept_for_the_next_flush(db_path, tmp_path):
    tally = rejections.Tally(flush_seconds=3600)
    later = tmp_path / "not-created-yet.db"
    now = datetime.now(UTC)
    for database in (db_path, later, db_path, later):
        tally.add({"DATABASE": str(database)}, "aliyun_vod", "bad_signature", now)
    tally.flush_all()
    assert counted(db_path) == 2  # written; the two for the missing ledger are held
    migrate(later)
    tally.flush_all()
    assert counted(later) == 2 and counted(db_path) == 2


def flood(base: str, requests: int, threads: int = 4) -> None:
    def send():
        for _ in range(requests // threads):
            assert request(base, "POST", VOD, BODY, forged())[0] == 401

    running = [threading.Thread(target=send) for _ in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join()


@pytest.mark.slow
def test_counts_from_several_processes_add_up_exactly(service, db_path):
    base, _, _ = service(workers=2)
    flood(base, 240)
    # Each worker's timer writes its sums within a flush interval; none is counted twice.
    wait_for(lambda: counted(db_path) == 240, timeout=3 * rejections.FLUSH_SECONDS + 5)
    flood(base, 40)
    wait_for(lambda: counted(db_path) == 280, timeout=3 * rejections.FLUSH_SECONDS + 5)


@pytest.mark.slow
def test_counts_held_when_the_server_stops_are_written_on_the_way_out(service, db_path):
    base, proc, _ = service(workers=2)
    flood(base, 24)
    assert request(base, "POST", "/hooks/tencent/vod", b"{}")[0] == 401  # unsigned
    proc.terminate()  # well within a flush interval: only the exit can write them
    proc.wait(timeout=40)
    with open_ledger(db_path) as ledger:
        rows = ledger.rejections.since(datetime.now(UTC) - timedelta(hours=1))
    assert {(r["provider"], r["reason"]): r["n"] for r in rows} == {
        ("aliyun_vod", "bad_signature"): 24,
        ("tencent_vod", "unsigned"): 1,
    }
