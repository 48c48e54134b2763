"""`pull-tencent` against the local Tencent fakes (tests/fakes/tencent.py).

API 3.0 goes through the official SDK, which the fake holds to TC3 signatures; v2 through
the submitter's v2 client. Redelivery is the fake's own: an event not confirmed within
`confirm_timeout` is handed out again with a new handle, as Tencent does after 30 s.
"""

import json
import signal
import sqlite3
import time

import pytest

import store.connection
from receiver.inbound import tencent_pull
from receiver.providers.tencent import vod as tencent_vod
from tests.engines import holding_writes
from tests.fakes.tencent import FakeTencentAPI, FakeTencentV2
from tests.helpers import (
    FIXTURES,
    SECRET_ID,
    SECRET_KEY,
    count,
    fixture_json,
    flask_command,
    summaries,
    wait_for,
)

pytestmark = pytest.mark.engines

V2_SAMPLES = sorted(p.name for p in FIXTURES.glob("tencent_vod-v2-*.json"))


def v3_samples() -> list[dict]:
    """The documented 3.0 callback body, and the event of the documented PullEvents answer."""
    pulled = fixture_json("tencent_vod-v3-PullEvents-response.json")["Response"]["EventSet"][0]
    return [fixture_json("tencent_vod-v3-ProcedureStateChanged.json"), pulled]


def procedure(task: str, status: str = "FINISH") -> dict:
    return {
        "EventType": "ProcedureStateChanged",
        "ProcedureStateChangeEvent": {"TaskId": task, "Status": status, "FileId": "5285890"},
    }


@pytest.fixture(autouse=True)
def no_proxy_fast_backoff(monkeypatch):
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("RECEIVER_TENCENT_VOD_V2_URL", raising=False)
    monkeypatch.setattr(tencent_pull, "RETRY_BASE_S", 0.01)


@pytest.fixture
def api():
    with FakeTencentAPI(SECRET_ID, SECRET_KEY, confirm_timeout=5, pull_wait=0.2) as fake:
        yield fake


@pytest.fixture
def v2():
    with FakeTencentV2(SECRET_ID, SECRET_KEY, confirm_timeout=5, pull_wait=0.2) as fake:
        yield fake


@pytest.fixture
def tencent_app(make_app, api, v2):
    app = make_app(
        TENCENT_SECRET_ID=SECRET_ID,
        TENCENT_SECRET_KEY=SECRET_KEY,
        TENCENT_VOD_ENDPOINT=api.endpoint,
        TENCENT_VOD_V2_URL=v2.url,
    )
    return app


@pytest.fixture
def pull(tencent_app):
    runner = tencent_app.test_cli_runner()
    return lambda *args: runner.invoke(args=["pull-tencent", "--once", *args])


def test_every_documented_sample_is_pulled_recorded_and_confirmed(api, v2, pull, ledger):
    for doc in v3_samples():
        api.push_event(doc)
    for name in V2_SAMPLES:
        v2.push_event(fixture_json(name))
    result = pull("--api", "both")
    assert result.exit_code == 0, result.output
    assert summaries(result)["v3"]["applied"] == 2
    assert summaries(result)["v2"]["applied"] == len(V2_SAMPLES)
    assert api.pending_events() == [] and v2.pending_events() == []
    assert len(api.confirmed) == 2 and len(v2.confirmed) == len(V2_SAMPLES)
    rows = [ledger.jobs.event(i) for (i,) in ledger.conn.execute("SELECT id FROM events")]
    expected = [{k: v for k, v in d.items() if k != "EventHandle"} for d in v3_samples()]
    expected += [fixture_json(name) for name in V2_SAMPLES]
    assert sorted(r["payload"] for r in rows) == sorted(
        json.dumps(d, ensure_ascii=False) for d in expected
    )  # the event without its handle
    for row in rows:
        assert (row["source"], row["verified"], row["auth"]) == ("pull", 1, "api")
        assert row["duplicate_of"] is None and "EventHandle" not in row["payload"]
        assert tencent_vod.parse(row["payload"]).event_type == row["event_type"]
    [job], _ = ledger.jobs.search(q="1256768367-Procedure-475b72xxxcb177t1")
    assert (job["kind"], job["state"]) == ("procedure", "succeeded")


def test_unconfirmed_events_come_back_and_are_applied_once(ledger, make_app, db_path):
    with FakeTencentAPI(SECRET_ID, SECRET_KEY, confirm_timeout=0.5, pull_wait=1.5) as api:
        app = make_app(
            TENCENT_SECRET_ID=SECRET_ID,
            TENCENT_SECRET_KEY=SECRET_KEY,
            TENCENT_VOD_ENDPOINT=api.endpoint,
        )
        for i in range(3):
            api.push_event(procedure(f"1256768367-Procedure-t{i}"))
        # The batch confirm and the three one-by-one retries fail; the events lapse.
        api.fail_next("ConfirmEvents", "FailedOperation", "confirm failed", n=4)
        result = app.test_cli_runner().invoke(args=["pull-tencent", "--once"])
        assert result.exit_code == 0, result.output
        assert api.pending_events() == []
    assert summaries(result)["v3"] | {"api": "v3"} == {
        "api": "v3",
        "received": 6,
        "applied": 3,
        "duplicates": 3,
        "quarantined": 0,
        "deferred": 0,
        "acked": 3,
    }
    assert (count(db_path), ledger.jobs.stats()["total"]) == (3, 3)


def test_poison_events_are_quarantined_confirmed_and_replayable(
    api, pull, ledger, tencent_app, monkeypatch
):
    bad, good = {"Foo": "not an event"}, procedure("1256768367-Procedure-fixed")
    api.push_event(bad)
    api.push_event(good)
    real_parse = tencent_vod.parse
    with monkeypatch.context() as patch:  # the release before a parser fix refuses `good`
        patch.setattr(
            tencent_vod, "parse", lambda body: real_parse(body if "fixed" not in body else "{}")
        )
        result = pull()
    assert result.exit_code == 0, result.output
    assert summaries(result)["v3"]["quarantined"] == 2
    assert api.pending_events() == []  # confirmed: never pulled forever
    rows = ledger.quarantine.bodies()
    assert [json.loads(r["body"]) for r in rows] == [bad, good]
    for row in rows:
        assert (row["provider"], row["service"], row["source"]) == ("tencent", "vod", "pull")
        assert json.loads(row["meta"])["api"] == "v3"
    replay = tencent_app.test_cli_runner().invoke(args=["replay", "--quarantined"])
    assert replay.exit_code == 1  # `bad` is still unparseable; `good` is recorded now
    [line] = replay.stdout.splitlines()
    event = ledger.jobs.event(json.loads(line)["event_id"])
    assert event["source"] == "pull" and json.loads(event["payload"]) == good
    assert [json.loads(r["body"]) for r in ledger.quarantine.bodies()] == [bad]


def test_a_busy_ledger_leaves_events_unconfirmed(make_app, db_path, monkeypatch):
    # SQLite's busy timeout, and PostgreSQL's lock_timeout (store/pg.py)
    monkeypatch.setattr(store.connection, "BUSY_TIMEOUT_S", 0.2)
    # pull_wait < confirm_timeout: the run ends before Tencent would hand the event out again
    with FakeTencentAPI(SECRET_ID, SECRET_KEY, confirm_timeout=1, pull_wait=0.3) as api:
        app = make_app(
            TENCENT_SECRET_ID=SECRET_ID,
            TENCENT_SECRET_KEY=SECRET_KEY,
            TENCENT_VOD_ENDPOINT=api.endpoint,
        )
        api.push_event(procedure("1256768367-Procedure-busy"))
        with holding_writes(db_path):
            result = app.test_cli_runner().invoke(args=["pull-tencent", "--once"])
        assert result.exit_code == 1
        assert "1 event(s) left unconfirmed" in result.output
        assert api.confirmed == [] and count(db_path) == 0
        runner = app.test_cli_runner()  # again until the event is handed out again
        wait_for(
            lambda: (
                runner.invoke(args=["pull-tencent", "--once"]).exit_code == 0
                and count(db_path) == 1
            ),
            what="the redelivered event",
        )
        assert api.pending_events() == [] and len(api.confirmed) == 1


@pytest.mark.parametrize("code", ["InternalError", "FailedOperation", "RequestLimitExceeded"])
def test_pull_errors_are_retried(api, pull, db_path, code):
    api.push_event(procedure("1256768367-Procedure-retry"))
    api.fail_next("PullEvents", code, "try again", n=2)
    result = pull()
    assert result.exit_code == 0, result.output
    assert api.requests[:2] == [("PullEvents", code)] * 2
    assert count(db_path) == 1 and api.pending_events() == []


def test_nothing_to_pull_may_be_an_error_code(api, v2, pull):
    api.fail_next("PullEvents", "ResourceNotFound", "no event")
    v2.fail_next("PullEvent", 4000, "no event")
    result = pull("--api", "both")
    assert result.exit_code == 0, result.output
    assert [s["received"] for s in summaries(result).values()] == [0, 0]


@pytest.mark.parametrize(
    "case,error",
    [
        ("secret", "AuthFailure.SignatureFailure"),
        ("failing", "gave up after 5 failed pulls, last: FailedOperation"),
    ],
)
def test_errors_retrying_cannot_fix_exit_1(api, make_app, case, error):
    app = make_app(
        TENCENT_SECRET_ID=SECRET_ID,
        TENCENT_VOD_ENDPOINT=api.endpoint,
        TENCENT_SECRET_KEY="wrong" if case == "secret" else SECRET_KEY,
    )
    if case == "confirm":
        api.push_event(procedure("1256768367-Procedure-noconfirm"))
        api.fail_next("ConfirmEvents", "UnauthorizedOperation", "no vod:ConfirmEvents")
    else:
        api.fail_next("PullEvents", "FailedOperation", "broken", n=5)
    result = app.test_cli_runner().invoke(args=["pull-tencent", "--once"])
    assert result.exit_code == 1
    assert error in result.stderr


def test_an_unconfigured_puller_names_the_settings(make_app):
    app = make_app()
    result = app.test_cli_runner().invoke(args=["pull-tencent", "--once"])
    assert result.exit_code == 2
    assert "RECEIVER_TENCENT_SECRET_ID, RECEIVER_TENCENT_SECRET_KEY" in result.stderr


def test_a_puller_refuses_a_missing_ledger(api, make_app, tmp_path):
    app = make_app(
        DATABASE=str(tmp_path / "none.db"),
        TENCENT_SECRET_ID=SECRET_ID,
        TENCENT_SECRET_KEY=SECRET_KEY,
        TENCENT_VOD_ENDPOINT=api.endpoint,
    )
    result = app.test_cli_runner().invoke(args=["pull-tencent", "--once"])
    assert result.exit_code == 1
    assert "no ledger at" in result.stderr and api.requests == []


@pytest.mark.parametrize("explicit", [True, False])
def test_v2_is_pulled_by_default_only_when_its_url_is_set(api, v2, pull, monkeypatch, explicit):
    if explicit:
        monkeypatch.setenv("RECEIVER_TENCENT_VOD_V2_URL", v2.url)
    v2.push_event(fixture_json("tencent_vod-v2-NewFileUpload.json"))
    result = pull()
    assert result.exit_code == 0, result.output
    assert sorted(summaries(result)) == (["v2", "v3"] if explicit else ["v3"])
    assert len(v2.confirmed) == (1 if explicit else 0)


# -- the real command in a subprocess ------------------------------------------------------


def puller(api: FakeTencentAPI, db_path, log_path):
    env = {
        "RECEIVER_DATABASE": str(db_path),
        "RECEIVER_TENCENT_SECRET_ID": SECRET_ID,
        "RECEIVER_TENCENT_SECRET_KEY": SECRET_KEY,
        "RECEIVER_TENCENT_VOD_ENDPOINT": api.endpoint,
    }
    return flask_command(["pull-tencent"], env, log_path)


def pulled(api: FakeTencentAPI) -> bool:
    return ("PullEvents", "OK") in api.requests


@pytest.mark.sqlite_only
@pytest.mark.slow
def test_a_puller_killed_before_confirming_gets_the_events_again(make_app, db_path, tmp_path):
    with FakeTencentAPI(SECRET_ID, SECRET_KEY, confirm_timeout=1, pull_wait=2) as api:
        for i in range(3):
            api.push_event(procedure(f"1256768367-Procedure-k{i}"))
        blocker = sqlite3.connect(db_path, timeout=10)
        blocker.execute("BEGIN IMMEDIATE")  # the puller will hold its events, uncommitted
        try:
            with puller(api, db_path, tmp_path / "puller.log") as proc:
                wait_for(lambda: pulled(api), what="the pull", proc=proc)
                proc.kill()
        finally:
            blocker.rollback()
            blocker.close()
        assert api.confirmed == [] and count(db_path) == 0
        app = make_app(
            TENCENT_SECRET_ID=SECRET_ID,
            TENCENT_SECRET_KEY=SECRET_KEY,
            TENCENT_VOD_ENDPOINT=api.endpoint,
        )
        result = app.test_cli_runner().invoke(args=["pull-tencent", "--once"])
        assert result.exit_code == 0, result.output
        assert api.pending_events() == [] and count(db_path) == 3


@pytest.mark.sqlite_only
@pytest.mark.slow
def test_sigterm_confirms_the_events_in_hand_then_exits_0(api, db_path, tmp_path):
    for i in range(3):
        api.push_event(procedure(f"1256768367-Procedure-s{i}"))
    blocker = sqlite3.connect(db_path, timeout=10)
    blocker.execute("BEGIN IMMEDIATE")
    with puller(api, db_path, tmp_path / "puller.log") as proc:
        try:
            wait_for(lambda: pulled(api), what="the pull", proc=proc)
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            assert proc.poll() is None  # still holding its events, waiting for the ledger
        finally:
            blocker.rollback()
            blocker.close()
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, (tmp_path / "puller.log").read_text()
    assert json.loads(out.splitlines()[-1])["acked"] == 3
    assert api.pending_events() == [] and count(db_path) == 3
