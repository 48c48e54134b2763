"""PostgreSQL specifics: the URL setting, an unreachable server, concurrent init-db, error
classification by SQLSTATE, and query plans that stay on the indexes."""

import json
import subprocess
import sys

import psycopg
import pytest

from receiver import create_app
from receiver.config import ConfigError, from_environ
from receiver.providers.aliyun import vod as aliyun_vod
from store import LedgerUnavailable, is_transient, migrate, open_ledger, pending_migrations
from tests.helpers import ROOT, fixture_json, free_port, vod_headers

PASSWORD = "s3cret-Pw"


def unreachable() -> str:
    return f"postgresql://jobledger:{PASSWORD}@127.0.0.1:{free_port()}/ledger?sslmode=disable"


def json_body() -> bytes:
    return json.dumps(fixture_json("aliyun_vod-TranscodeComplete.json")).encode()


def json_event(video: str):
    doc = fixture_json("aliyun_vod-TranscodeComplete.json")
    doc["VideoId"] = video
    return aliyun_vod.parse(json.dumps(doc))


def flask(*args: str, database: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "RECEIVER_DATABASE": database},
        capture_output=True,
        text=True,
        timeout=60,
    )


# -- the setting ------------------------------------------------------------------------


def test_a_url_is_taken_and_a_path_still_means_sqlite():
    url = "postgresql://app@db.internal:5432/jobledger?sslmode=require"
    assert from_environ({"RECEIVER_DATABASE": url})["DATABASE"] == url
    assert from_environ({"RECEIVER_DATABASE": "var/ledger.db"})["DATABASE"] == "var/ledger.db"


@pytest.mark.parametrize(
    "value",
    [
        f"postgresql://app:{PASSWORD}@db:notaport/jobledger",
        f"postgresql://app:{PASSWORD}@db/jobledger?sslmode=sometimes&nonsense=1",
        f"mysql://app:{PASSWORD}@db/jobledger",
    ],
)
def test_a_malformed_url_stops_start_up_without_showing_the_password(value):
    with pytest.raises(ConfigError) as raised:
        from_environ({"RECEIVER_DATABASE": value})
    assert "RECEIVER_DATABASE" in str(raised.value)
    assert PASSWORD not in str(raised.value)
    with pytest.raises(ConfigError):
        create_app({"TESTING": True, "DATABASE": value})


# -- an unreachable server --------------------------------------------------------------


@pytest.mark.parametrize(
    "command", [("init-db",), ("reconcile", "--once"), ("replay", "--quarantined")]
)
def test_commands_name_the_setting_when_the_server_is_unreachable(command):
    result = flask(*command, database=unreachable())
    assert result.returncode == 1, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "RECEIVER_DATABASE=postgresql://jobledger:***@127.0.0.1" in output
    assert PASSWORD not in output and "Traceback" not in output


def test_a_hook_answers_503_when_the_server_is_unreachable(settings):
    app = create_app({**settings, "DATABASE": unreachable()})
    body = json_body()
    response = app.test_client().post("/hooks/aliyun/vod", data=body, headers=vod_headers())
    assert response.status_code == 503
    error = response.get_json()["error"]
    assert "RECEIVER_DATABASE" in error and PASSWORD not in error


# -- migrations -------------------------------------------------------------------------


def test_init_db_from_several_hosts_at_once_migrates_once(pg_cluster):
    pg_cluster.admin("CREATE DATABASE fresh_init")
    url = pg_cluster.url("fresh_init")
    try:
        command = [sys.executable, "-m", "flask", "--app", "wsgi", "init-db"]
        env = {"PATH": "/usr/bin:/bin", "RECEIVER_DATABASE": url}
        procs = [
            subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
            for _ in range(3)
        ]
        outputs = [p.communicate(timeout=60)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0]
        assert sum("applied 0001_schema" in o for o in outputs) == 1
        assert sum("up to date" in o for o in outputs) == 2
        assert pending_migrations(url) == [] and migrate(url) == []
    finally:
        pg_cluster.admin("DROP DATABASE IF EXISTS fresh_init WITH (FORCE)")


def test_a_web_host_on_an_unmigrated_database_answers_503(pg_cluster, settings):
    pg_cluster.admin("CREATE DATABASE empty_ledger")
    try:
        app = create_app({**settings, "DATABASE": pg_cluster.url("empty_ledger")})
        response = app.test_client().post(
            "/hooks/aliyun/vod", data=json_body(), headers=vod_headers()
        )
        assert response.status_code == 503 and "init-db" in response.get_json()["error"]
    finally:
        from receiver.db import close_ledgers

        close_ledgers()
        pg_cluster.admin("DROP DATABASE IF EXISTS empty_ledger WITH (FORCE)")


# -- errors -----------------------------------------------------------------------------


def test_errors_are_classified_by_sqlstate(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as missing:
            conn.execute("SELECT * FROM no_such_table")
        assert missing.value.sqlstate == "42P01" and not is_transient(missing.value)
        conn.execute("SET statement_timeout = 10")
        with pytest.raises(psycopg.Error) as cancelled:
            conn.execute("SELECT pg_sleep(1)")
        assert cancelled.value.sqlstate == "57014" and is_transient(cancelled.value)
        conn.execute("SET default_transaction_read_only = on")  # a standby, a failover
        with pytest.raises(psycopg.Error) as read_only:
            conn.execute("CREATE TABLE t (x int)")
        assert read_only.value.sqlstate == "25006" and is_transient(read_only.value)
        with pytest.raises(psycopg.Error) as out_of_step:
            conn.execute("EXECUTE _pg3_9")  # a statement the client thinks it prepared
        assert out_of_step.value.sqlstate == "26000" and is_transient(out_of_step.value)
    with pytest.raises(LedgerUnavailable):
        open_ledger(unreachable())


# -- plans ------------------------------------------------------------------------------


def plan(ledger, sql: str, params: tuple = ()) -> str:
    rows = ledger.conn.execute("EXPLAIN " + sql, params).fetchall()
    return "\n".join(r[0] for r in rows)


def test_hot_queries_use_the_indexes(pg_url):
    """A few thousand finished jobs and a few open ones: the due-list, the oldest unfinished
    job, a filtered page and a retention pass read indexes, never the whole table."""
    with open_ledger(pg_url) as ledger:
        ledger.conn.execute(
            "INSERT INTO jobs (id, provider, service, kind, state, origin, submitted_at,"
            " updated_at, media_id)"
            " SELECT lpad(to_hex(i), 26, '0'), 'aliyun', 'vod', 'transcode',"
            " CASE WHEN i % 500 = 0 THEN 'processing' ELSE 'succeeded' END, 'external',"
            " '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z', 'm' || i"
            " FROM generate_series(1, 5000) i"
        )
        ledger.conn.execute(
            "INSERT INTO events (job_id, provider, service, source, verified, received_at,"
            " payload) SELECT lpad(to_hex(i), 26, '0'), 'aliyun', 'vod', 'http', 1,"
            " '2026-01-01T00:00:00.000Z', '{}' FROM generate_series(1, 5000) i"
        )
        ledger.conn.execute("ANALYZE")
        open_states = "('submitting', 'submitted', 'processing', 'timed_out', 'running')"
        due = plan(
            ledger,
            f"SELECT id FROM jobs WHERE state IN {open_states} AND next_poll_at IS NULL"
            " AND submitted_at <= ? ORDER BY id LIMIT 200",
            ("2030-01-01T00:00:00.000Z",),
        )
        assert "jobs_open_poll" in due, due
        oldest = plan(
            ledger,
            "SELECT MIN(submitted_at) FROM jobs WHERE state IN ('submitting', 'submitted',"
            " 'processing', 'timed_out')",
        )
        assert "jobs_unfinished" in oldest or "jobs_open" in oldest, oldest
        page = plan(
            ledger, "SELECT id FROM jobs WHERE state IN (?) ORDER BY id DESC LIMIT 51", ("failed",)
        )
        assert "Seq Scan" not in page, page
        media = plan(
            ledger, "SELECT id FROM jobs WHERE media_id = ? AND kind = ?", ("m7", "transcode")
        )
        assert "jobs_media" in media, media
        prune = plan(
            ledger, "SELECT id, received_at FROM events WHERE id > ? ORDER BY id LIMIT 5000", (10,)
        )
        assert "events_pkey" in prune, prune


def test_a_notice_finds_its_videos_job_through_jobs_media_before_any_analyze(pg_url):
    """A young table has no statistics: the lookup of a video's job must not depend on them
    (it once walked jobs_kind_id through every job of the kind)."""
    with open_ledger(pg_url) as ledger:
        ledger.conn.execute("ALTER TABLE jobs SET (autovacuum_enabled = false)")
        ledger.notices.record_many(
            [json_event(f"young-{i}") for i in range(2000)], source="http", verified=True
        )
        ledger.conn.execute("SELECT pg_stat_reset()")
        ledger.notices.record(json_event("young-new"), source="http", verified=True)
        ledger.notices.record(json_event("young-7"), source="http", verified=True)  # a duplicate
        ledger.conn.execute("SELECT pg_stat_force_next_flush()")
        ledger.conn.execute("SELECT 1")  # the flush happens at the end of a transaction
        read = dict(
            ledger.conn.execute(
                "SELECT indexrelname, idx_tup_read FROM pg_stat_user_indexes WHERE relname = 'jobs'"
            ).fetchall()
        )
    assert read["jobs_kind_id"] == 0, read
    assert read["jobs_media"] < 10, read


def test_a_recorded_notice_is_committed_when_recording_returns(pg_url):
    """Notices go out in pipeline mode; the COMMIT must have gone out and succeeded too."""
    with open_ledger(pg_url) as ledger, psycopg.connect(pg_url, autocommit=True) as other:
        for i in range(3):
            ledger.notices.record(json_event(f"seen-{i}"), source="http", verified=True)
            assert other.execute("SELECT COUNT(*) FROM events").fetchone()[0] == i + 1
        ledger.notices.record_many(
            [json_event("seen-a"), json_event("seen-b")], source="mns", verified=True
        )
        assert other.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 5
        assert not ledger.conn.in_transaction


def test_a_command_reconnects_after_the_server_dropped_its_connection(pg_url, pg_cluster):
    with open_ledger(pg_url) as ledger:
        pid = ledger.conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        pg_cluster.admin(f"SELECT pg_terminate_backend({pid}, 10000)")  # gone when it returns
        # Seen dropped before the transaction begins: a new connection, nothing refused.
        result = ledger.notices.record(json_event("after"), source="mns", verified=True)
        assert result.state == "succeeded" and result.duplicate_of is None
        assert ledger.conn.execute("SELECT pg_backend_pid()").fetchone()[0] != pid
        # Dropped in the middle of a transaction: that batch is left for redelivery.
        ledger.conn.execute("BEGIN")
        pid = ledger.conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        pg_cluster.admin(f"SELECT pg_terminate_backend({pid}, 10000)")
        with pytest.raises(psycopg.OperationalError):
            ledger.conn.execute("SELECT 1")
        ledger.conn.rollback()
        result = ledger.notices.record(json_event("again"), source="mns", verified=True)
        assert result.state == "succeeded" and result.duplicate_of is None


def test_a_web_host_replaces_a_connection_the_server_dropped(pg_url, pg_cluster, settings):
    app = create_app({**settings, "DATABASE": pg_url})
    client = app.test_client()
    try:

        def deliver(video: str) -> int:
            doc = dict(fixture_json("aliyun_vod-TranscodeComplete.json"), VideoId=video)
            body = json.dumps(doc).encode()
            return client.post("/hooks/aliyun/vod", data=body, headers=vod_headers()).status_code

        assert deliver("before") == 200
        dbname = pg_url.split("/")[3].split("?")[0]
        pg_cluster.admin(  # each waited for until it is gone
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity"
            f" WHERE datname = '{dbname}' AND pid <> pg_backend_pid()"
        )
        # The pool passes over the dropped connection instead of answering 503 with it.
        answers = [deliver(f"after-{i}") for i in range(3)]
        assert answers == [200, 200, 200]
    finally:
        from receiver.db import close_ledgers

        close_ledgers()
