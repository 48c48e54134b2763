"""Task events through the pull path, and `replay` of events stored by the older parsers.

The older parsers stored API 3.0 task events (TranscodeComplete...) tied to no job; the
stored body is all `replay` needs to make the job now.
"""

import dataclasses
import json

import pytest

from receiver.providers.tencent import vod as tencent_vod
from store import open_ledger
from tests import tencent_sdk
from tests.fakes.tencent import FakeTencentAPI
from tests.helpers import SECRET_ID, SECRET_KEY, fixture_json, summaries


@pytest.fixture
def fake_api(monkeypatch):
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    with FakeTencentAPI(SECRET_ID, SECRET_KEY, confirm_timeout=5, pull_wait=0.2) as fake:
        yield fake


@pytest.fixture
def pull(make_app, fake_api):
    app = make_app(
        TENCENT_SECRET_ID=SECRET_ID,
        TENCENT_SECRET_KEY=SECRET_KEY,
        TENCENT_VOD_ENDPOINT=fake_api.endpoint,
    )
    return lambda *args: app.test_cli_runner().invoke(args=["pull-tencent", "--once", *args])


def transcode_complete(task_id: str, **changes) -> dict:
    task = tencent_sdk.sample("TranscodeTask2017") | {"TaskId": task_id} | changes
    return {"EventType": "TranscodeComplete", "TranscodeCompleteEvent": task}


def clip_complete(task_id: str, file_err: int) -> dict:
    task = tencent_sdk.sample("ClipTask2017") | {"TaskId": task_id}
    task["FileInfo"]["ErrCode"] = file_err
    return {"EventType": "ClipComplete", "ClipCompleteEvent": task}


def test_pulled_v3_task_events_make_and_settle_jobs(fake_api, pull, ledger):
    fake_api.push_event(transcode_complete("1256768367-transcode-ok"))
    fake_api.push_event(clip_complete("1256768367-clip-bad", -43001))
    result = pull()
    assert result.exit_code == 0, result.output
    assert summaries(result)["v3"]["applied"] == 2
    [ok], _ = ledger.jobs.search(q="1256768367-transcode-ok")
    [bad], _ = ledger.jobs.search(q="1256768367-clip-bad")
    assert (ok["kind"], ok["state"], ok["media_id"]) == (
        "transcode",
        "succeeded",
        "5285890784246869930",
    )
    assert (bad["kind"], bad["state"], bad["error_code"]) == ("clip", "failed", "-43001")


def _store_as_before(db_path, doc: dict, **old_fields) -> int:
    """Record a body the way the older parser did: its Event, with the old fields."""
    event = tencent_vod.parse(json.dumps(doc).encode())
    event = dataclasses.replace(event, **old_fields)
    with open_ledger(db_path) as ledger:
        return ledger.notices.record(event, source="http", verified=True).event_id


def test_replay_makes_the_job_an_older_parser_did_not(runner, db_path):
    old = {"kind": None, "provider_job_id": None, "media_id": None, "state": None, "outputs": ()}
    ok = _store_as_before(db_path, transcode_complete("1256768367-t-old"), **old)
    bad = _store_as_before(db_path, transcode_complete("1256768367-t-bad", ErrCode=30010), **old)
    with open_ledger(db_path) as ledger:
        assert ledger.jobs.event(ok)["job_id"] is None and ledger.jobs.stats()["total"] == 0
    result = runner.invoke(args=["replay", str(ok), str(bad)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(line["replay_of"], line["state"]) for line in lines] == [
        (ok, "succeeded"),
        (bad, "failed"),
    ]
    with open_ledger(db_path) as ledger:
        job = ledger.jobs.get(lines[0]["job_id"])
        assert (job["kind"], job["provider_job_id"]) == ("transcode", "1256768367-t-old")
        assert ledger.jobs.get(lines[1]["job_id"])["error_code"] == "30010"


def test_replay_joins_the_job_a_v2_twin_already_made(runner, db_path):
    twin = fixture_json("tencent_vod-v2-TranscodeComplete.json")
    task_id = twin["data"]["vodTaskId"]
    with open_ledger(db_path) as ledger:
        made = ledger.notices.record(
            tencent_vod.parse(json.dumps(twin).encode()), source="http", verified=False
        )
    old = {"kind": None, "provider_job_id": None, "media_id": None, "state": None, "outputs": ()}
    stored = _store_as_before(db_path, transcode_complete(task_id), **old)
    result = runner.invoke(args=["replay", str(stored)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["job_id"] == made.job_id
