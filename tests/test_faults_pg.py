"""A busy PostgreSQL ledger: lock waits end after the busy timeout, as on SQLite.

A hook whose notice needs a lock that another transaction holds (another host's notice
about the same job, an operator's `SELECT ... FOR UPDATE` left open) answers 503 once
`lock_timeout` runs out, writes nothing, and records the notice when it comes again after
the holder let go. init-db alone waits for its lock however long another host migrates.
The consumers' side of it runs on both engines in test_consume_mns.py,
test_pull_tencent.py and test_faults_ledger.py.
"""

import json
import threading
import time
from urllib.parse import quote

import psycopg
import pytest

import store.connection
from receiver import pgpool
from receiver.providers.aliyun import vod as aliyun_vod
from store import migrate, open_ledger
from store.notices import lock_id
from store.pg_schema import MIGRATION_LOCK
from tests.helpers import assert_error_shape, count, fixture_json, vod_headers

pytestmark = pytest.mark.postgresql_only

VOD = "/hooks/aliyun/vod"
TIMEOUT_S = 0.5  # the busy timeout under test; 5 s in service
VIDEO = "busy-video-1"


def notice(name: str) -> bytes:
    doc = fixture_json(name)
    doc["VideoId"] = VIDEO
    return json.dumps(doc).encode()


def post_within(client, body: bytes, limit: float = 20.0):
    """POST a signed VOD notice; return (response, seconds), failing if it takes over `limit`."""
    answer: list = []
    started = time.monotonic()
    worker = threading.Thread(
        target=lambda: answer.append(client.post(VOD, data=body, headers=vod_headers())),
        daemon=True,
    )
    worker.start()
    worker.join(limit)
    assert answer, f"the hook did not answer within {limit} s while a lock was held"
    return answer[0], time.monotonic() - started


@pytest.fixture
def client(app, monkeypatch):
    monkeypatch.setattr(store.connection, "BUSY_TIMEOUT_S", TIMEOUT_S)
    return app.test_client()


def hold_job_row(conn: psycopg.Connection) -> None:
    """An operator's transaction left open on the job the notice is about."""
    row = conn.execute("SELECT id FROM jobs WHERE media_id = %s FOR UPDATE", (VIDEO,)).fetchone()
    assert row is not None


def hold_notice_key(conn: psycopg.Connection) -> None:
    """Another host's transaction in the middle of recording the same notice."""
    event = aliyun_vod.parse(notice("aliyun_vod-TranscodeComplete.json").decode())
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_id(("dedup", event.dedup_key)),))


@pytest.mark.parametrize("hold", [hold_job_row, hold_notice_key], ids=["row", "advisory"])
def test_a_hook_answers_503_while_a_lock_it_needs_is_held(client, db_path, hold):
    first = client.post(
        VOD, data=notice("aliyun_vod-StreamTranscodeComplete.json"), headers=vod_headers()
    )
    assert first.status_code == 200, first.get_data(as_text=True)
    body = notice("aliyun_vod-TranscodeComplete.json")
    with psycopg.connect(db_path, autocommit=True) as holder:
        holder.execute("BEGIN")
        hold(holder)
        try:
            response, took = post_within(client, body)
        finally:
            holder.execute("ROLLBACK")
    error = assert_error_shape(response, 503)
    assert response.headers["Retry-After"] == "5"
    assert "busy (55P03" in error["error"]
    # waited out the lock timeout once: not run again in place, as a deadlock would be
    assert TIMEOUT_S * 0.9 <= took < TIMEOUT_S * 6
    assert count(db_path, "1 = 1") == 1  # only the first notice
    with open_ledger(db_path) as ledger:
        assert ledger.conn.execute("SELECT state FROM jobs").fetchall() == [("processing",)]
    again, _ = post_within(client, body)  # the sender's retry, once the holder let go
    assert again.status_code == 200 and again.get_json()["duplicate"] is False
    assert again.get_json()["state"] == "succeeded"
    assert count(db_path, "1 = 1") == 2


def test_user_options_in_the_url_apply_together_with_the_lock_timeout(pg_url, monkeypatch):
    url = pg_url + "&options=" + quote("-c work_mem=7MB -c jobledger.probe=yes")
    with open_ledger(url) as ledger:
        settings = ledger.conn.execute(
            "SELECT current_setting('work_mem'), current_setting('jobledger.probe'),"
            " current_setting('lock_timeout')"
        ).fetchone()
    assert settings == ("7MB", "yes", "5s")
    with open_ledger(url) as ledger:  # a command's long reads are never cut by the server
        assert ledger.conn.execute("SHOW statement_timeout").fetchone() == ("0",)
    try:
        pooled = pgpool.borrow(url)  # the web workers' connections
        try:
            shown = pooled.conn.execute(
                "SELECT current_setting('work_mem'), current_setting('lock_timeout'),"
                " current_setting('statement_timeout')"
            ).fetchone()
        finally:
            pooled.close()
    finally:
        pgpool.close_pools()
    assert shown == ("7MB", "5s", "3500ms")  # a web request's statements are bounded too
    monkeypatch.setenv("PGOPTIONS", "-c work_mem=9MB")  # libpq's own, without options=
    with open_ledger(pg_url) as ledger:
        settings = ledger.conn.execute("SHOW work_mem").fetchone()
        assert settings == ("9MB",)
        assert ledger.conn.execute("SHOW lock_timeout").fetchone() == ("5s",)


def test_an_operators_own_lock_timeout_wins(pg_url):
    url = pg_url + "&options=" + quote("-c lock_timeout=2min")
    with open_ledger(url) as ledger:
        assert ledger.conn.execute("SHOW lock_timeout").fetchone() == ("2min",)


def test_init_db_waits_for_another_hosts_migrations_past_the_busy_timeout(pg_url, monkeypatch):
    monkeypatch.setattr(store.connection, "BUSY_TIMEOUT_S", TIMEOUT_S)
    outcome: list = []

    def init_db() -> None:
        try:
            outcome.append(migrate(pg_url))
        except Exception as e:  # noqa: BLE001 - the failure is what the test reports
            outcome.append(e)

    with psycopg.connect(pg_url, autocommit=True) as other_host:
        other_host.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        waiter = threading.Thread(target=init_db, daemon=True)
        waiter.start()
        waiter.join(TIMEOUT_S * 4)
        assert outcome == []  # still waiting, well past the busy timeout
        other_host.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    waiter.join(20)
    assert outcome == [[]]  # then found the other host had migrated everything
