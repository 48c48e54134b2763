"""What happens when a submission does not simply succeed, with the real SDKs and fakes.

Documented refusals recorded on the job; throttling, 5xx and network errors retried within
the budget; no answer after sending (an unknown outcome, never retried); the order of
writes (a crash leaves a `submitting` job, a callback that wins the race lands on it); and
credentials kept out of the ledger, the output and the logs.
"""

import json
import logging
import os
import subprocess
import sys
import threading
import time

import pytest

from receiver.db import close_ledgers
from receiver.logs import JSONFormatter
from receiver.providers.aliyun import mns as queue
from store import open_ledger
from tests.helpers import ROOT, assert_error_shape, fixture_json, tencent_signed
from tests.provider_env import (
    ALIYUN_SECRET,
    IPRODUCTION,
    LAUNCHER,
    TENCENT_SECRET,
    GatedProxy,
    SilentServer,
    closed_port,
    environment,
    post,
    provider_settings,
    timeline,
)


@pytest.fixture
def app(build):
    return build()


# -- documented refusals --------------------------------------------------------------------


def _fail(action, code, message, status=400, client="aliyun"):
    def setup(fakes):
        if client == "aliyun":
            fakes.aliyun.fail_next(action, code, message, status=status)
        else:
            getattr(fakes, client).fail_next(action, code, message)

    return setup


REFUSALS = [
    ("aliyun.vod.SubmitPreprocessJobs", {"VideoId": "nope"}, None, "InvalidVideo.NotFound", 404),
    (
        "aliyun.vod.SubmitDynamicImageJob",
        {"VideoId": "up", "DynamicImageTemplateId": "tpl1"},
        lambda f: f.aliyun.add_video("up", status="Uploading"),
        "Forbidden.IllegalStatus",
        400,
    ),
    (
        "aliyun.vod.SubmitDynamicImageJob",
        {"VideoId": "vid1", "DynamicImageTemplateId": "tplX"},
        None,
        "NoSuchResource",
        404,
    ),
    (
        "aliyun.mps.SubmitIProductionJob",
        IPRODUCTION,
        _fail(
            "SubmitIProductionJob", "UserTaskExceed", "The user task count exceeds the limit.", 403
        ),
        "UserTaskExceed",
        403,
    ),
    (
        "aliyun.vod.SubmitPreprocessJobs",
        {"VideoId": "vid1"},
        _fail("SubmitPreprocessJobs", "UserQuotaExceed", "The user quota exceeds the limit.", 403),
        "UserQuotaExceed",
        403,
    ),
    (
        "aliyun.live.StartEdgeTranscodeJob",
        {"ClusterId": "c1", "JobId": "ghost"},
        None,
        "JobNotFound",
        404,
    ),
    (
        "tencent.vod.RunProcedure",
        {
            "inputType": "Stream",
            "procedure": "P",
            "stream.streamId": "s",
            "stream.startTimeStamp": "soon",
            "stream.endTimeStamp": "later",
        },
        None,
        "1000",
        None,
    ),
    (
        "tencent.vod.RunProcedure",
        {"inputType": "SingleFile", "procedure": "P", "file.id": "missing-1"},
        None,
        "10008",
        None,
    ),
    (
        "tencent.vod.ProcessMediaByProcedure",
        {"FileId": "missing-1", "ProcedureName": "P"},
        None,
        "InvalidParameterValue.FileId",
        None,
    ),
    (
        "tencent.vod.ProcessMediaByProcedure",
        {"FileId": "1", "ProcedureName": "NoSuchProc"},
        _fail(
            "ProcessMediaByProcedure",
            "ResourceNotFound.ProcedureName",
            "no such procedure",
            client="tencent",
        ),
        "ResourceNotFound.ProcedureName",
        None,
    ),
]


@pytest.mark.parametrize(
    ("operation", "params", "setup", "code", "status"), REFUSALS, ids=[r[3] for r in REFUSALS]
)
def test_documented_refusal_is_recorded_on_the_job(
    client, fakes, operation, params, setup, code, status
):
    if setup:
        setup(fakes)
    data = assert_error_shape(post(client, operation, params), 422)
    job = data["job"]
    assert code in data["error"] and data.get("provider_status") == status
    assert (job["state"], job["error_code"]) == ("submit_failed", code)
    assert job["error_message"] and job["provider_job_id"] is None
    assert client.get(f"/api/jobs/{job['id']}").get_json()["error_code"] == code
    assert timeline(client, job["id"])[-1] == ("submit", f"{operation}:response", "submit_failed")
    sent = [r for r in fakes.aliyun.requests + fakes.tencent.requests + fakes.v2.requests]
    assert len(sent) == 1  # a refusal is never asked again


def test_duplicate_v2_procedure_is_refused_with_50005(client, fakes):
    params = {"inputType": "SingleFile", "file.id": "42", "procedure": "P"}
    assert post(client, "tencent.vod.RunProcedure", params).status_code == 201
    data = assert_error_shape(post(client, "tencent.vod.RunProcedure", params), 422)
    assert data["job"]["error_code"] == "50005"
    assert data["job"]["error_message"] == "Procedure重复任务已存在"


def test_cli_shows_a_refusal_with_the_providers_code_and_exits_1(runner, fakes):
    result = runner.invoke(args=["submit", "aliyun.vod.SubmitPreprocessJobs", "VideoId=nope"])
    assert result.exit_code == 1
    job = json.loads(result.stdout)
    assert (job["state"], job["error_code"]) == ("submit_failed", "InvalidVideo.NotFound")
    assert "InvalidVideo.NotFound: The video does not exist." in result.stderr


# -- retries, budget, unknown outcomes ------------------------------------------------------

RETRIED = [
    (
        "aliyun.vod.SubmitPreprocessJobs",
        {"VideoId": "vid1"},
        _fail(
            "SubmitPreprocessJobs",
            "Throttling.User",
            "Request was denied due to user flow control.",
            400,
        ),
        "aliyun",
    ),
    (
        "aliyun.mps.SubmitIProductionJob",
        IPRODUCTION,
        _fail(
            "SubmitIProductionJob",
            "ServiceUnavailable",
            "The request has failed due to a temporary failure of the server.",
            503,
        ),
        "aliyun",
    ),
    (
        "tencent.vod.ProcessMediaByProcedure",
        {"FileId": "1", "ProcedureName": "P"},
        _fail(
            "ProcessMediaByProcedure", "RequestLimitExceeded", "too many requests", client="tencent"
        ),
        "tencent",
    ),
    (
        "tencent.vod.ProcessMediaByProcedure",
        {"FileId": "1", "ProcedureName": "P"},
        _fail("ProcessMediaByProcedure", "InternalError", "internal error", client="tencent"),
        "tencent",
    ),
    (
        "tencent.vod.RunProcedure",
        {"inputType": "SingleFile", "file.id": "1", "procedure": "P"},
        _fail("RunProcedure", 4400, "quota exceeded", client="v2"),
        "v2",
    ),
]


@pytest.mark.parametrize(
    ("operation", "params", "setup", "fake"),
    RETRIED,
    ids=[
        "Throttling.User",
        "ServiceUnavailable",
        "RequestLimitExceeded",
        "InternalError",
        "v2-4400",
    ],
)
def test_throttling_and_5xx_are_retried(client, fakes, operation, params, setup, fake):
    setup(fakes)
    setup(fakes)  # twice: two failures, then the third attempt is accepted
    response = post(client, operation, params)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["state"] == "submitted"
    assert len(getattr(fakes, fake).requests) == 3


def test_throttled_past_the_budget_is_submit_failed_with_the_last_error(build, fakes):
    client = build(SUBMIT_BUDGET_S=1.0).test_client()
    fakes.aliyun.fail_next("SubmitPreprocessJobs", "Throttling.User", "flow control", n=100)
    started = time.monotonic()
    data = assert_error_shape(
        post(client, "aliyun.vod.SubmitPreprocessJobs", {"VideoId": "vid1"}), 502
    )
    assert time.monotonic() - started < 1.5
    assert (data["job"]["state"], data["job"]["error_code"]) == ("submit_failed", "Throttling.User")
    assert 2 <= len(fakes.aliyun.requests) < 10


def test_unreachable_provider_is_retried_then_submit_failed(build, fakes):
    client = build(SUBMIT_BUDGET_S=1.0, ALIYUN_VOD_ENDPOINT=closed_port()).test_client()
    started = time.monotonic()
    data = assert_error_shape(
        post(client, "aliyun.vod.SubmitPreprocessJobs", {"VideoId": "vid1"}), 502
    )
    assert time.monotonic() - started < 1.5
    job = data["job"]
    assert (job["state"], job["error_code"]) == ("submit_failed", "NetworkError")
    assert "refused" in job["error_message"].lower()


@pytest.mark.parametrize(
    ("operation", "params", "setting"),
    [
        ("aliyun.vod.SubmitPreprocessJobs", {"VideoId": "vid1"}, "ALIYUN_VOD_ENDPOINT"),
        (
            "tencent.vod.ProcessMediaByProcedure",
            {"FileId": "5285890784246869930", "ProcedureName": "P"},
            "TENCENT_VOD_ENDPOINT",
        ),
        (
            "tencent.vod.RunProcedure",
            {"inputType": "SingleFile", "file.id": "5285890784246869930", "procedure": "P"},
            "TENCENT_VOD_V2_URL",
        ),
    ],
)
def test_no_answer_after_sending_is_an_unknown_outcome_not_retried(
    build, operation, params, setting
):
    with SilentServer() as silent:
        where = (
            f"http://{silent.endpoint}/v2/index.php" if setting.endswith("URL") else silent.endpoint
        )
        client = build(SUBMIT_BUDGET_S=0.6, **{setting: where}).test_client()
        data = assert_error_shape(post(client, operation, params), 504)
        assert silent.received.is_set()
    job = data["job"]
    assert (job["state"], job["error_code"]) == ("submitting", "OutcomeUnknown")
    assert "may have accepted it" in job["error_message"]
    assert "outcome unknown" in data["error"]
    if operation == "tencent.vod.ProcessMediaByProcedure":
        # The provider did take it: its callback settles the job that never got an answer.
        doc = fixture_json("tencent_vod-v3-ProcedureStateChanged.json")
        doc["ProcedureStateChangeEvent"]["FileId"] = "5285890784246869930"
        hook = client.post(
            "/hooks/tencent/vod",
            data=tencent_signed(doc),
            headers={"Content-Type": "application/json"},
        )
        assert hook.get_json()["job_id"] == job["id"]
        assert client.get(f"/api/jobs/{job['id']}").get_json()["state"] == "succeeded"


# -- order of writes --------------------------------------------------------------------------


def _submit_in_thread(app, operation, params):
    """POST in another thread (its own client and ledger connection); return (thread, result)."""
    result = {}

    def run():
        try:
            result["response"] = post(app.test_client(), operation, params)
        finally:
            close_ledgers()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def test_callback_that_beats_the_api_answer_lands_on_the_same_job(build, fakes, ledger):
    with GatedProxy(fakes.tencent.endpoint) as gate:
        app = build(TENCENT_VOD_ENDPOINT=gate.endpoint)
        thread, result = _submit_in_thread(
            app,
            "tencent.vod.ProcessMediaByProcedure",
            {"FileId": "5285890784246869930", "ProcedureName": "P"},
        )
        assert gate.answered.wait(10)
        (waiting,) = ledger.jobs.search()[0]
        assert (waiting["state"], waiting["provider_job_id"]) == ("submitting", None)
        doc = fixture_json("tencent_vod-v3-ProcedureStateChanged.json")
        task_id = gate.answers[0]["Response"]["TaskId"]
        doc["ProcedureStateChangeEvent"].update(TaskId=task_id, FileId="5285890784246869930")
        hook = app.test_client().post(
            "/hooks/tencent/vod",
            data=tencent_signed(doc),
            headers={"Content-Type": "application/json"},
        )
        assert hook.status_code == 200 and hook.get_json()["job_id"] == waiting["id"]
        gate.release()
        thread.join(10)
    job = result["response"].get_json()
    assert result["response"].status_code == 201
    assert (job["id"], job["provider_job_id"], job["state"]) == (
        waiting["id"],
        task_id,
        "succeeded",
    )
    assert job["outputs"] and ledger.jobs.stats()["total"] == 1


def test_queue_notice_that_beats_the_api_answer_is_merged_into_the_job(build, fakes, ledger):
    with GatedProxy(fakes.aliyun.endpoint) as gate:
        app = build(ALIYUN_MTS_ENDPOINT=gate.endpoint)
        thread, result = _submit_in_thread(app, "aliyun.mps.SubmitIProductionJob", IPRODUCTION)
        assert gate.answered.wait(10)
        job_id = gate.answers[0]["JobId"]
        notice = {
            "Code": "Success",
            "Details": [],
            "FunctionName": "VideoH2V",
            "JobId": job_id,
            "Message": "success",
            "State": "Success",
            "Type": "IProduction",
        }
        early = ledger.notices.record(
            queue.parse(json.dumps(notice)), source="mns", verified=True, auth="queue"
        )
        assert early.created_job  # MPS notices carry no media id: a job of its own, for now
        gate.release()
        thread.join(10)
    job = result["response"].get_json()
    assert (job["provider_job_id"], job["state"], job["origin"]) == (
        job_id,
        "succeeded",
        "submitted",
    )
    assert ledger.jobs.get(early.job_id) is None and ledger.jobs.stats()["total"] == 1
    sources = [e["source"] for e in ledger.jobs.get(job["id"], with_events=True)["events"]]
    assert sorted(sources) == ["mns", "submit", "submit"]


def test_crash_between_record_and_answer_leaves_a_submitting_job(settings):
    with SilentServer() as silent:
        env = environment(
            os.environ,
            {
                "DATABASE": settings["DATABASE"],
                "ALIYUN_ACCESS_KEY_ID": "LTAIjobledger",
                "ALIYUN_ACCESS_KEY_SECRET": ALIYUN_SECRET,
                "ALIYUN_VOD_ENDPOINT": silent.endpoint,
            },
        )
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                LAUNCHER,
                "submit",
                "aliyun.vod.SubmitPreprocessJobs",
                "VideoId=vid1",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            assert silent.received.wait(20), "the submit never reached the provider"
        finally:
            proc.kill()  # the crash: between the request and its answer
            proc.communicate(timeout=10)
    with open_ledger(settings["DATABASE"]) as led:
        (job,) = led.jobs.search()[0]
        events = led.jobs.get(job["id"], with_events=True)["events"]
    assert (job["state"], job["media_id"], job["origin"]) == ("submitting", "vid1", "submitted")
    assert [e["event_type"] for e in events] == ["aliyun.vod.SubmitPreprocessJobs:request"]


# -- credentials --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "params", "setting", "code"),
    [
        (
            "aliyun.vod.SubmitPreprocessJobs",
            {"VideoId": "vid1"},
            "ALIYUN_ACCESS_KEY_SECRET",
            "InvalidAccessKeySecret",
        ),
        (
            "tencent.vod.ProcessMediaByProcedure",
            {"FileId": "1", "ProcedureName": "P"},
            "TENCENT_SECRET_KEY",
            "AuthFailure.SignatureFailure",
        ),
        (
            "tencent.vod.RunProcedure",
            {"inputType": "SingleFile", "file.id": "1", "procedure": "P"},
            "TENCENT_SECRET_KEY",
            "4100",
        ),
    ],
)
def test_wrong_secret_is_refused_and_never_shown(build, db_path, operation, params, setting, code):
    wrong = "Wrong-Secret-4kq9ZxP"
    client = build(**{setting: wrong}).test_client()
    response = post(client, operation, params)
    data = assert_error_shape(response, 422)
    assert (data["job"]["state"], data["job"]["error_code"]) == ("submit_failed", code)
    assert wrong not in response.get_data(as_text=True)
    assert wrong.encode() not in _ledger_bytes(db_path)


def _ledger_bytes(db_path) -> bytes:
    return b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*"))


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.setFormatter(JSONFormatter())
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))


@pytest.fixture
def every_log_line():
    """Collect every log line, SDK debug output included, formatted as production does."""
    collect = _Collect()
    names = ("jobledger", "aliyunsdkcore", "tencentcloud_sdk_common", "")
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(collect)
        logger.setLevel(logging.DEBUG)
    yield collect.lines
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(collect)
        logger.setLevel(level)


def test_secrets_never_reach_the_ledger_the_output_or_the_logs(
    runner, fakes, db_path, capfd, every_log_line
):
    outputs = [
        runner.invoke(args=args)
        for args in (
            ["submit", "aliyun.vod.SubmitPreprocessJobs", "VideoId=vid1"],
            ["submit", "aliyun.vod.SubmitPreprocessJobs", "VideoId=nope"],
            ["submit", "tencent.vod.ProcessMediaByProcedure", "FileId=1", "ProcedureName=P"],
            [
                "submit",
                "tencent.vod.RunProcedure",
                "inputType=SingleFile",
                "file.id=missing-2",
                "procedure=P",
            ],
        )
    ]
    assert [r.exit_code for r in outputs] == [0, 1, 0, 1]
    assert any("submitter.accepted" in line for line in every_log_line)
    assert any("ServerException" in line for line in every_log_line)  # the SDK's own log
    streams = capfd.readouterr()
    for secret in (ALIYUN_SECRET, TENCENT_SECRET):
        assert secret.encode() not in _ledger_bytes(db_path)
        assert all(secret not in r.output for r in outputs)
        assert all(secret not in line for line in every_log_line)
        assert secret not in streams.out + streams.err


def test_flask_cli_submit_from_a_fresh_checkout(fakes, tmp_path):
    env = environment(
        os.environ, {"DATABASE": tmp_path / "new" / "ledger.db", **provider_settings(fakes)}
    )
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    init = subprocess.run([*flask, "init-db"], cwd=ROOT, env=env, capture_output=True, timeout=60)
    assert init.returncode == 0, init.stderr
    done = subprocess.run(
        [*flask, "submit", "aliyun.vod.SubmitPreprocessJobs", "VideoId=vid1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["state"] == "submitted"
    assert ALIYUN_SECRET not in done.stdout + done.stderr
