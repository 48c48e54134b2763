"""Submitting jobs through `POST /api/jobs` and `flask submit`, with the real SDKs and fakes.

The fakes verify every signature as the providers do; nothing of ours is mocked. Checked
here: each operation end to end, the params that reach the provider, usage errors and
missing settings (nothing recorded, nothing sent), and Live edge Start/Stop toggling one job.
Refusals, retries, unknown outcomes, races and credentials: test_submit_failures.py.
"""

import json

import pytest

from tests.helpers import OPS_TOKEN, assert_error_shape
from tests.provider_env import (
    IN,
    IPRODUCTION,
    OUT,
    post,
    timeline,
)

pytestmark = pytest.mark.engines


@pytest.fixture
def app(build):
    return build()


# -- every operation ----------------------------------------------------------------------

OPERATIONS = [
    ("aliyun.vod.SubmitPreprocessJobs", {"VideoId": "vid1"}, "preprocess", "submitted"),
    (
        "aliyun.vod.SubmitDynamicImageJob",
        {
            "VideoId": "vid1",
            "DynamicImageTemplateId": "tpl1",
            "OverrideParams": '{"Timeline":{"Start":"1","Duration":"2"}}',
        },
        "dynamic_image",
        "submitted",
    ),
    ("aliyun.mps.SubmitIProductionJob", IPRODUCTION, "iproduction", "submitted"),
    (
        "aliyun.live.StartEdgeTranscodeJob",
        {"ClusterId": "c1", "JobId": "edge-off"},
        "edge_transcode",
        "running",
    ),
    (
        "aliyun.live.StopEdgeTranscodeJob",
        {"ClusterId": "c1", "JobId": "edge-on"},
        "edge_transcode",
        "stopped",
    ),
    (
        "tencent.vod.RunProcedure",
        {
            "inputType": "SingleFile",
            "file": {"id": "42"},
            "procedure": "QCVB_SimpleProcessFile(1,1,10,10)",
        },
        "procedure",
        "submitted",
    ),
    (
        "tencent.vod.ProcessMediaByProcedure",
        {"FileId": "5285890784246869930", "ProcedureName": "MyProc", "TasksPriority": "5"},
        "procedure",
        "submitted",
    ),
]


def known_ids(fakes, operation):
    """The job ids the fake handed out for an operation."""
    return {
        "aliyun.vod.SubmitPreprocessJobs": set(fakes.aliyun.preprocess_jobs),
        "aliyun.vod.SubmitDynamicImageJob": set(fakes.aliyun.dynamic_image_jobs),
        "aliyun.mps.SubmitIProductionJob": set(fakes.aliyun.iproduction_jobs),
        "aliyun.live.StartEdgeTranscodeJob": {"edge-off"},
        "aliyun.live.StopEdgeTranscodeJob": {"edge-on"},
        "tencent.vod.RunProcedure": set(fakes.v2.tasks),
        "tencent.vod.ProcessMediaByProcedure": set(fakes.tencent.tasks),
    }[operation]


@pytest.mark.parametrize(("operation", "params", "kind", "state"), OPERATIONS)
def test_each_operation_is_recorded_then_submitted(client, fakes, operation, params, kind, state):
    fakes.aliyun.add_edge_job("c1", "edge-off", status="0")
    fakes.aliyun.add_edge_job("c1", "edge-on", status="1")
    response = post(client, operation, params)
    assert response.status_code == 201, response.get_json()
    job = response.get_json()
    assert response.headers["Location"] == f"/api/jobs/{job['id']}"
    assert (job["kind"], job["state"], job["operation"]) == (kind, state, operation)
    assert job["provider_job_id"] in known_ids(fakes, operation)
    assert job["origin"] == ("external" if "Stop" in operation else "submitted")
    assert timeline(client, job["id"]) == [
        ("submit", f"{operation}:request", "submitting"),
        ("submit", f"{operation}:response", state),
    ]


def test_defaults_and_pass_through_params_reach_the_provider(client, fakes):
    assert post(client, "aliyun.vod.SubmitPreprocessJobs", {"VideoId": "vid1"}).status_code == 201
    assert fakes.aliyun.calls[-1][1]["PreprocessType"] == "LivePreprocess"
    job = post(
        client, "aliyun.mps.SubmitIProductionJob", dict(IPRODUCTION, UserData="u1")
    ).get_json()
    sent = fakes.aliyun.calls[-1][1]
    assert sent["PipelineId"] == "pipeline-1" and sent["UserData"] == "u1"
    assert sent["JobParams"] == '{"Width":720}'  # an object param travels as JSON text
    assert job["media_id"] == IN
    post(
        client,
        "tencent.vod.ProcessMediaByProcedure",
        {"FileId": "77", "ProcedureName": "P", "TasksPriority": "-3", "SessionContext": "ctx"},
    )
    assert fakes.tencent.submissions[-1] == {
        "FileId": "77",
        "ProcedureName": "P",
        "TasksPriority": -3,
        "SessionContext": "ctx",
    }


@pytest.mark.parametrize(
    ("params", "sent"),
    [
        (
            {
                "inputType": "SingleFile",
                "file": {"id": "1", "startTimeOffset": 10, "endTimeOffset": 25},
            },
            {"file.id": "1", "file.startTimeOffset": "10", "file.endTimeOffset": "25"},
        ),
        (
            {
                "inputType": "MultiFile",
                "fileList": [{"id": "1", "startTimeOffset": 30}, {"id": "2"}],
            },
            {"fileList.0.id": "1", "fileList.0.startTimeOffset": "30", "fileList.1.id": "2"},
        ),
        (
            {
                "inputType": "Stream",
                "stream.streamId": "s1",
                "stream.startTimeStamp": "1502087538",
                "stream.endTimeStamp": "1502087638",
            },
            {"stream.streamId": "s1", "stream.startTimeStamp": "1502087538"},
        ),
        (
            {
                "inputType": "PullFile",
                "pull": {"url": "https://example.com/a.mp4", "fileName": "a"},
            },
            {"pull.url": "https://example.com/a.mp4", "pull.fileName": "a"},
        ),
    ],
    ids=["SingleFile", "MultiFile", "Stream", "PullFile"],
)
def test_run_procedure_sends_every_input_type_flattened(client, fakes, params, sent):
    response = post(client, "tencent.vod.RunProcedure", {**params, "procedure": "P"})
    assert response.status_code == 201, response.get_json()
    submitted = fakes.v2.submissions[-1]
    assert submitted["Action"] == "RunProcedure" and submitted["procedure"] == "P"
    assert sent.items() <= submitted.items()


def test_cli_submit_prints_the_job_and_takes_json_values(runner, fakes, ledger):
    result = runner.invoke(
        args=[
            "submit",
            "tencent.vod.RunProcedure",
            "inputType=MultiFile",
            "procedure=QCVB_SimpleProcessFile(1,1,10,10)",
            'fileList:=[{"id": "1"}, {"id": "2", "endTimeOffset": 9}]',
        ]
    )
    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)
    assert job["state"] == "submitted" and job["provider_job_id"] in fakes.v2.tasks
    assert fakes.v2.submissions[-1]["fileList.1.endTimeOffset"] == "9"
    # A JSON text given as a plain value works too for the nested v2 objects.
    result = runner.invoke(
        args=[
            "submit",
            "tencent.vod.RunProcedure",
            "inputType=MultiFile",
            "procedure=P",
            'fileList=[{"id": "3"}]',
        ]
    )
    assert result.exit_code == 0, result.output
    assert fakes.v2.submissions[-1]["fileList.0.id"] == "3"
    assert ledger.jobs.get(job["id"])["state"] == "submitted"


# -- params are checked before anything is recorded or sent -------------------------------


@pytest.mark.parametrize(
    ("operation", "params", "named"),
    [
        ("aliyun.vod.SubmitPreprocessJobs", {}, "VideoId"),
        ("aliyun.vod.SubmitPreprocessJobs", {"VideoId": "  "}, "VideoId"),
        ("aliyun.vod.SubmitDynamicImageJob", {"VideoId": "vid1"}, "DynamicImageTemplateId"),
        (
            "aliyun.mps.SubmitIProductionJob",
            {"FunctionName": "F", "Input": IN, "Output": OUT},
            "JobParams",
        ),
        ("aliyun.live.StopEdgeTranscodeJob", {"JobId": "e1"}, "ClusterId"),
        ("tencent.vod.RunProcedure", {"inputType": "SingleFile", "procedure": "P"}, "file.id"),
        (
            "tencent.vod.RunProcedure",
            {"inputType": "Stream", "procedure": "P", "stream.streamId": "s"},
            "stream.startTimeStamp",
        ),
        (
            "tencent.vod.RunProcedure",
            {"inputType": "PullFile", "procedure": "P", "pull": {"url": "https://x/a.mp4"}},
            "pull.fileName",
        ),
        (
            "tencent.vod.RunProcedure",
            {
                "inputType": "MultiFile",
                "procedure": "P",
                "fileList": [{"id": "1"}, {"startTimeOffset": 3}],
            },
            "fileList.1.id",
        ),
        ("tencent.vod.RunProcedure", {"inputType": "Folder", "procedure": "P"}, "inputType"),
        ("tencent.vod.ProcessMediaByProcedure", {"FileId": "1"}, "ProcedureName"),
        (
            "tencent.vod.ProcessMediaByProcedure",
            {"FileId": "1", "ProcedureName": "P", "SubAppId": "abc"},
            "SubAppId",
        ),
        ("aliyun.vod.SubmitPreprocessJobs", {"VideoId": "vid1", "AccessKeyId": "x"}, "AccessKeyId"),
        ("aliyun.vod.DeleteVideo", {"VideoIds": "vid1"}, "unknown operation"),
        ("aliyun.vod.SubmitPreprocessJobs", {"VideoId": ["vid1"]}, "VideoId must be text"),
    ],
)
def test_bad_params_are_a_usage_error_and_call_nothing(
    client, fakes, ledger, operation, params, named
):
    data = assert_error_shape(post(client, operation, params), 400)
    assert named in data["error"]
    assert ledger.jobs.search()[0] == []
    assert fakes.aliyun.requests == fakes.tencent.requests == fakes.v2.requests == []


def test_cli_usage_error_exits_2_and_records_nothing(runner, fakes, ledger):
    result = runner.invoke(args=["submit", "aliyun.vod.SubmitPreprocessJobs", "PreprocessType=X"])
    assert result.exit_code == 2 and "VideoId" in result.output
    assert runner.invoke(args=["submit", "aliyun.vod.SubmitPreprocessJobs", "oops"]).exit_code == 2
    assert ledger.jobs.search()[0] == [] and fakes.aliyun.requests == []


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"params": {}}'])
def test_malformed_body_is_400(client, ledger, body):
    response = client.post("/api/jobs", data=body, headers={"Content-Type": "application/json"})
    assert_error_shape(response, 400)
    assert ledger.jobs.search()[0] == []


def test_unconfigured_credentials_are_503_naming_the_setting(build, fakes, ledger):
    app = build(
        ALIYUN_ACCESS_KEY_ID=None,
        ALIYUN_ACCESS_KEY_SECRET=None,
        TENCENT_SECRET_ID=None,
        TENCENT_SECRET_KEY=None,
    )
    for operation, params, *_ in OPERATIONS:
        data = assert_error_shape(post(app.test_client(), operation, params), 503)
        setting = (
            "RECEIVER_ALIYUN_ACCESS_KEY_ID"
            if operation.startswith("aliyun")
            else "RECEIVER_TENCENT_SECRET_ID"
        )
        assert setting in data["error"]
    result = app.test_cli_runner().invoke(
        args=["submit", "aliyun.vod.SubmitPreprocessJobs", "VideoId=vid1"]
    )
    assert result.exit_code == 1 and "RECEIVER_ALIYUN_ACCESS_KEY_SECRET" in result.output
    assert ledger.jobs.search()[0] == [] and fakes.aliyun.requests == []


def test_submitting_needs_the_ops_token_when_one_is_set(build, ledger):
    client = build(OPS_TOKEN=OPS_TOKEN).test_client()
    assert_error_shape(post(client, "aliyun.vod.SubmitPreprocessJobs", {"VideoId": "vid1"}), 401)
    assert ledger.jobs.search()[0] == []
    response = post(
        client,
        "aliyun.vod.SubmitPreprocessJobs",
        {"VideoId": "vid1"},
        Authorization=f"Bearer {OPS_TOKEN}",
    )
    assert response.status_code == 201


# -- Live edge transcoding -------------------------------------------------------------------

START, STOP = "aliyun.live.StartEdgeTranscodeJob", "aliyun.live.StopEdgeTranscodeJob"
EDGE = {"ClusterId": "c1", "JobId": "e1"}


def test_start_and_stop_toggle_one_job(client, fakes, ledger):
    fakes.aliyun.add_edge_job("c1", "e1", status="0")
    first = post(client, START, EDGE).get_json()
    assert (first["state"], first["origin"], first["provider_job_id"]) == (
        "running",
        "submitted",
        "e1",
    )
    stopped = post(client, STOP, EDGE).get_json()
    again = post(client, START, EDGE).get_json()
    assert first["id"] == stopped["id"] == again["id"]
    assert (stopped["state"], again["state"]) == ("stopped", "running")
    assert ledger.jobs.stats()["by_state"] == {"running": 1}
    assert [e[1] for e in timeline(client, first["id"])] == [
        f"{START}:request",
        f"{START}:response",
        f"{STOP}:request",
        f"{STOP}:response",
        f"{START}:request",
        f"{START}:response",
    ]


def test_stop_of_an_unknown_job_adopts_it_as_external(client, fakes):
    fakes.aliyun.add_edge_job("c1", "made-elsewhere", status="1")
    response = post(client, STOP, {"ClusterId": "c1", "JobId": "made-elsewhere"})
    job = response.get_json()
    assert response.status_code == 201
    assert (job["origin"], job["state"], job["provider_job_id"]) == (
        "external",
        "stopped",
        "made-elsewhere",
    )
    assert fakes.aliyun.edge_jobs[("c1", "made-elsewhere")]["Status"] == "0"


def test_refused_toggle_of_a_known_job_keeps_its_state(client, fakes):
    fakes.aliyun.add_edge_job("c1", "e1", status="0")
    job = post(client, START, EDGE).get_json()
    data = assert_error_shape(post(client, START, EDGE), 422)
    assert "OperationDenied" in data["error"] and data["job"]["id"] == job["id"]
    assert data["job"]["state"] == "running" and data["job"]["error_code"] is None
    assert timeline(client, job["id"])[-1] == ("submit", f"{START}:response", "running")


def test_refused_stop_of_an_unknown_job_claims_no_job_id(client, fakes):
    data = assert_error_shape(post(client, STOP, {"ClusterId": "c1", "JobId": "ghost"}), 422)
    refused = data["job"]
    assert (refused["state"], refused["error_code"], refused["provider_job_id"]) == (
        "submit_failed",
        "JobNotFound",
        None,
    )
    fakes.aliyun.add_edge_job("c1", "ghost", status="1")  # created meanwhile: a retry works
    job = post(client, STOP, {"ClusterId": "c1", "JobId": "ghost"}).get_json()
    assert job["id"] != refused["id"] and job["state"] == "stopped"
