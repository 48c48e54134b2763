"""Tests for tests/fakes/aliyun_rpc.py, driven by the real legacy SDK (aliyunsdkcore 2.16.1)."""

from __future__ import annotations

import json
import re
import threading
from http.client import HTTPConnection
from urllib.parse import parse_qsl, urlsplit

import pytest
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.auth.composer import rpc_signature_composer
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.request import CommonRequest
from aliyunsdkcore.retry.backoff_strategy import NoDelayStrategy
from aliyunsdkcore.retry.retry_condition import DefaultConfigRetryCondition
from aliyunsdkcore.retry.retry_policy import RetryPolicy
from aliyunsdkcore.utils import parameter_helper
from aliyunsdklive.request.v20161101.GetEdgeTranscodeJobRequest import GetEdgeTranscodeJobRequest
from aliyunsdklive.request.v20161101.StartEdgeTranscodeJobRequest import (
    StartEdgeTranscodeJobRequest,
)
from aliyunsdklive.request.v20161101.StopEdgeTranscodeJobRequest import StopEdgeTranscodeJobRequest
from aliyunsdkmts.request.v20140618.QueryIProductionJobRequest import QueryIProductionJobRequest
from aliyunsdkmts.request.v20140618.SubmitIProductionJobRequest import SubmitIProductionJobRequest
from aliyunsdkvod.request.v20170321.GetTranscodeTaskRequest import GetTranscodeTaskRequest
from aliyunsdkvod.request.v20170321.GetVideoInfoRequest import GetVideoInfoRequest
from aliyunsdkvod.request.v20170321.ListTranscodeTaskRequest import ListTranscodeTaskRequest
from aliyunsdkvod.request.v20170321.SubmitDynamicImageJobRequest import (
    SubmitDynamicImageJobRequest,
)
from aliyunsdkvod.request.v20170321.SubmitPreprocessJobsRequest import SubmitPreprocessJobsRequest

from tests.fakes.aliyun_rpc import FakeAliyunRPC, percent_encode, rpc_signature, string_to_sign

HEX32 = re.compile(r"^[0-9a-f]{32}$")
OSS_IN = "oss://bucket.oss-cn-shanghai.aliyuncs.com/in/a.mp4"
OSS_OUT = "oss://bucket.oss-cn-shanghai.aliyuncs.com/out/{source}.mp4"


@pytest.fixture
def rpc(monkeypatch):
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)  # the SDK honours these even for 127.0.0.1
    with FakeAliyunRPC(access_key_id="LTAItest", access_key_secret="secret") as fake:
        yield fake


def _client(secret="secret", ak="LTAItest"):
    return AcsClient(ak, secret, "cn-shanghai")


@pytest.fixture
def client():
    c = _client()
    yield c
    c.session.close()


def make(rpc, cls, **params):
    req = cls()
    req.set_endpoint(rpc.endpoint)
    for key, value in params.items():
        getattr(req, f"set_{key}")(value)
    return req


def call(client, req):
    return json.loads(client.do_action_with_exception(req))


def server_error(client, req) -> ServerException:
    with pytest.raises(ServerException) as info:
        client.do_action_with_exception(req)
    return info.value


def raw(rpc, method, params, query=None):
    """Send a hand-made request; returns (status, parsed JSON body)."""
    host, port = rpc.endpoint.split(":")
    conn = HTTPConnection(host, int(port), timeout=10)
    if query is None:
        query = "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in params.items())
    try:
        conn.request(method, "/?" + query)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def signed(params, method="GET", secret="secret", nonce="n-1"):
    p = {"Format": "JSON", "Version": "2017-03-21", "AccessKeyId": "LTAItest"}
    p.update({"SignatureMethod": "HMAC-SHA1", "SignatureVersion": "1.0", "SignatureNonce": nonce})
    p["Timestamp"] = parameter_helper.get_iso_8061_date()
    p.update(params)
    p["Signature"] = rpc_signature(method, p, secret)
    return p


# ---- signature ----
def test_doc_test_vector():
    params = {
        "AccessKeyId": "testAccessKeyId",
        "Action": "GetVideoPlayAuth",
        "Format": "JSON",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "8f8a035d-6496-4268-afd4-67c22837e38d",
        "SignatureVersion": "1.0",
        "Timestamp": "2017-10-10T12:02:54Z",
        "Version": "2017-03-21",
        "VideoId": "5aed81b74ba84920be578cdfe004af4b",
    }
    assert string_to_sign("GET", params).startswith(
        "GET&%2F&AccessKeyId%3DtestAccessKeyId%26Action%3DGetVideoPlayAuth%26Format%3DJSON"
    )
    assert "Timestamp%3D2017-10-10T12%253A02%253A54Z" in string_to_sign("GET", params)
    assert rpc_signature("GET", params, "testAccessKeySecret") == "Ibgh7y8Vp47LBuAsf5Xhi1SvDss="


def test_signature_equals_sdk_composer_on_awkward_values():
    params = {"UserData": 'a b+c*d~e/f=g&h "中文" %20', "Action": "X", "Version": "1"}
    url, sdk_sts = rpc_signature_composer.get_signed_url(params, "ak", "sk", "JSON", "POST", {})
    sent = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    assert string_to_sign("POST", params) == sdk_sts
    assert rpc_signature("POST", params, "sk") == sent["Signature"]


# ---- VOD ----
def test_submit_preprocess_jobs(rpc, client):
    rpc.add_video("vid1", status="Normal")
    body = call(
        client,
        make(rpc, SubmitPreprocessJobsRequest, VideoId="vid1", PreprocessType="LivePreprocess"),
    )
    (job,) = body["PreprocessJobs"]["PreprocessJob"]
    assert HEX32.match(job["JobId"]) and body["RequestId"]
    action, params = rpc.calls[-1]
    assert action == "SubmitPreprocessJobs" and params["VideoId"] == "vid1"
    assert params["RegionId"] == "cn-shanghai" and params["SignatureType"] == ""
    assert rpc.requests == [("SubmitPreprocessJobs", 200)]


def test_submit_preprocess_errors(rpc, client):
    rpc.add_video("up", status="Uploading")
    err = server_error(
        client,
        make(rpc, SubmitPreprocessJobsRequest, VideoId="nope", PreprocessType="LivePreprocess"),
    )
    assert (err.get_http_status(), err.get_error_code()) == (404, "InvalidVideo.NotFound")
    assert err.get_error_msg() == "The video does not exist." and err.get_request_id()
    err = server_error(
        client,
        make(rpc, SubmitPreprocessJobsRequest, VideoId="up", PreprocessType="LivePreprocess"),
    )
    assert (err.get_http_status(), err.get_error_code()) == (400, "Forbidden.IllegalStatus")
    err = server_error(client, make(rpc, SubmitPreprocessJobsRequest, VideoId="up"))
    assert (err.get_http_status(), err.get_error_code()) == (400, "MissingPreprocessType")


def test_submit_dynamic_image_job(rpc, client):
    rpc.add_video("blocked", status="Blocked")
    rpc.add_dynamic_image_template("tpl2")
    for template in ("tpl1", "tpl2"):
        body = call(
            client,
            make(
                rpc,
                SubmitDynamicImageJobRequest,
                VideoId="blocked",
                DynamicImageTemplateId=template,
                OverrideParams='{"Timeline":{"Start":"1","Duration":"2"}}',
            ),
        )
        assert HEX32.match(body["DynamicImageJob"]["JobId"])
    assert rpc.calls[-1][1]["OverrideParams"] == '{"Timeline":{"Start":"1","Duration":"2"}}'


@pytest.mark.parametrize(
    ("video", "template", "status", "code", "message"),
    [
        ("missing", "tpl1", 404, "InvalidVideo.NotFound", "The video does not exist."),
        ("failed", "tpl1", 400, "Forbidden.IllegalStatus", "Status of the video is illegal."),
        ("ok", "tplX", 404, "NoSuchResource", "The specified resource tplX does not exist."),
    ],
)
def test_submit_dynamic_image_errors(rpc, client, video, template, status, code, message):
    rpc.add_video("failed", status="UploadFail")
    rpc.add_video("ok", status="UploadSucc")
    err = server_error(
        client,
        make(rpc, SubmitDynamicImageJobRequest, VideoId=video, DynamicImageTemplateId=template),
    )
    assert (err.get_http_status(), err.get_error_code(), err.get_error_msg()) == (
        status,
        code,
        message,
    )


def test_get_video_info_and_transcode_tasks(rpc, client):
    rpc.add_video("vid1", status="Transcoding", Title="t")
    video = call(client, make(rpc, GetVideoInfoRequest, VideoId="vid1"))["Video"]
    assert (video["VideoId"], video["Status"], video["Title"]) == ("vid1", "Transcoding", "t")
    err = server_error(client, make(rpc, GetVideoInfoRequest, VideoId="nope"))
    assert (err.get_http_status(), err.get_error_code()) == (404, "InvalidVideo.NotFound")

    job = {"TranscodeJobId": "j1", "TranscodeJobStatus": "TranscodeSuccess", "Definition": "SD"}
    rpc.transcode_tasks["t1"] = {
        "VideoId": "vid1",
        "TaskStatus": "CompleteAllSucc",
        "Trigger": "Auto",
        "TranscodeJobInfoList": [job],
    }
    rpc.transcode_tasks["t2"] = {"VideoId": "other", "TaskStatus": "Processing"}
    task = call(client, make(rpc, GetTranscodeTaskRequest, TranscodeTaskId="t1"))["TranscodeTask"]
    assert task["TranscodeTaskId"] == "t1" and task["TaskStatus"] == "CompleteAllSucc"
    assert task["TranscodeJobInfoList"][0]["TranscodeJobStatus"] == "TranscodeSuccess"
    listed = call(client, make(rpc, ListTranscodeTaskRequest, VideoId="vid1"))["TranscodeTaskList"]
    assert [t["TranscodeTaskId"] for t in listed] == ["t1"]
    err = server_error(client, make(rpc, GetTranscodeTaskRequest, TranscodeTaskId="zz"))
    assert (err.get_http_status(), err.get_error_code()) == (404, "NoSuchResource")


# ---- MPS smart production ----
def test_iproduction_submit_then_query(rpc, client):
    body = call(
        client,
        make(
            rpc,
            SubmitIProductionJobRequest,
            FunctionName="VideoClip",
            Input=OSS_IN,
            Output=OSS_OUT,
            JobParams='{"Duration": 10}',
            PipelineId="p1",
            UserData="ud 1+1",
        ),
    )
    job_id = body["JobId"]
    assert HEX32.match(job_id)
    q = call(client, make(rpc, QueryIProductionJobRequest, JobId=job_id))
    assert q["State"] == "Queuing" and q["Result"] == ""
    assert (q["FunctionName"], q["Input"], q["Output"]) == ("VideoClip", OSS_IN, OSS_OUT)
    assert (q["PipelineId"], q["UserData"], q["JobParams"]) == ("p1", "ud 1+1", '{"Duration": 10}')

    rpc.set_iproduction(job_id, state="Analysing")
    assert call(client, make(rpc, QueryIProductionJobRequest, JobId=job_id))["State"] == "Analysing"
    data = {"result": [{"file": "videoclip/x-origin.mp4"}]}
    rpc.set_iproduction(
        job_id, state="Success", result={"Code": "Success", "Message": "Successful.", "Data": data}
    )
    q = call(client, make(rpc, QueryIProductionJobRequest, JobId=job_id))
    assert q["State"] == "Success" and isinstance(q["Result"], str)
    outer = json.loads(q["Result"])
    assert isinstance(outer["Data"], str) and json.loads(outer["Data"]) == data  # §4.3

    rpc.set_iproduction("seeded", state="Fail", code="InternalError")
    q = call(client, make(rpc, QueryIProductionJobRequest, JobId="seeded"))
    assert q["State"] == "Fail" and json.loads(q["Result"])["Code"] == "InternalError"


def test_iproduction_errors(rpc, client):
    err = server_error(client, make(rpc, SubmitIProductionJobRequest, Input=OSS_IN, Output=OSS_OUT))
    assert (err.get_http_status(), err.get_error_code()) == (400, "MissingFunctionName")
    assert err.get_error_msg() == "FunctionName is mandatory for this action."
    assert not rpc.iproduction_jobs
    err = server_error(client, make(rpc, QueryIProductionJobRequest, JobId="nope"))
    assert (err.get_http_status(), err.get_error_code()) == (
        404,
        "InvalidParameter.ResourceNotFound",
    )


# ---- Live edge transcoding ----
def test_edge_transcode_start_stop_get(rpc, client):
    rpc.add_edge_job("c1", "j1")
    ids = {"ClusterId": "c1", "JobId": "j1"}
    job = call(client, make(rpc, GetEdgeTranscodeJobRequest, **ids))["Job"]
    expected = {
        "JobId",
        "Name",
        "Status",
        "Type",
        "StreamInput",
        "StreamOutput",
        "TemplateId",
        "TemplateName",
        "CreateTime",
        "LastStartAt",
        "LastStopAt",
    }
    assert set(job) == expected and job["Status"] == "0"
    assert call(client, make(rpc, StartEdgeTranscodeJobRequest, **ids))["JobId"] == "j1"
    job = call(client, make(rpc, GetEdgeTranscodeJobRequest, **ids))["Job"]
    assert job["Status"] == "1" and job["LastStartAt"].endswith("Z")
    err = server_error(client, make(rpc, StartEdgeTranscodeJobRequest, **ids))
    assert (err.get_http_status(), err.get_error_code()) == (403, "OperationDenied")
    call(client, make(rpc, StopEdgeTranscodeJobRequest, **ids))
    assert call(client, make(rpc, GetEdgeTranscodeJobRequest, **ids))["Job"]["Status"] == "0"
    err = server_error(client, make(rpc, StopEdgeTranscodeJobRequest, **ids))
    assert (err.get_http_status(), err.get_error_code()) == (403, "OperationDenied")
    err = server_error(client, make(rpc, GetEdgeTranscodeJobRequest, ClusterId="c2", JobId="j1"))
    assert (err.get_http_status(), err.get_error_code()) == (404, "JobNotFound")


# ---- authentication ----
def test_wrong_secret_fails(rpc):
    bad = _client(secret="wrong")
    try:
        err = server_error(bad, make(rpc, GetVideoInfoRequest, VideoId="v"))
    finally:
        bad.session.close()
    # The gateway says SignatureDoesNotMatch; SDK 2.16.1 sees its own string to sign echoed
    # back and rewrites the code (client.py::_get_server_exception).
    assert (err.get_http_status(), err.get_error_code()) == (400, "InvalidAccessKeySecret")
    assert rpc.requests == [("GetVideoInfo", 400)] and rpc.calls == []
    status, body = raw(
        rpc, "GET", signed({"Action": "GetVideoInfo", "VideoId": "v"}, secret="wrong")
    )
    assert (status, body["Code"]) == (400, "SignatureDoesNotMatch")
    assert set(body) == {"RequestId", "HostId", "Code", "Message"}
    assert body["Message"].startswith("Specified signature is not matched with our calculation.")


def test_tampered_request_is_signature_does_not_match(rpc, client, monkeypatch):
    real = rpc_signature_composer.get_signed_url

    def tamper(*args, **kwargs):
        url, sts = real(*args, **kwargs)
        return url + "&VideoId=other", sts

    monkeypatch.setattr(rpc_signature_composer, "get_signed_url", tamper)
    err = server_error(client, make(rpc, GetVideoInfoRequest, VideoId="v"))
    assert (err.get_http_status(), err.get_error_code()) == (400, "SignatureDoesNotMatch")


def test_unknown_access_key(rpc):
    other = _client(ak="LTAIother")
    try:
        err = server_error(other, make(rpc, GetVideoInfoRequest, VideoId="v"))
    finally:
        other.session.close()
    assert (err.get_http_status(), err.get_error_code()) == (404, "InvalidAccessKeyId.NotFound")


def test_replayed_nonce_rejected(rpc, client, monkeypatch):
    rpc.add_video("v")
    monkeypatch.setattr(parameter_helper, "get_uuid", lambda: "same-nonce")
    call(client, make(rpc, GetVideoInfoRequest, VideoId="v"))
    err = server_error(client, make(rpc, GetVideoInfoRequest, VideoId="v"))
    assert (err.get_http_status(), err.get_error_code()) == (400, "SignatureNonceUsed")
    assert err.get_error_msg() == "Specified signature nonce was used already."
    assert len(rpc.calls) == 1


@pytest.mark.parametrize(
    ("stamp", "code"),
    [
        ("2017-10-10T12:02:54Z", "InvalidTimeStamp.Expired"),
        ("2017-10-10 12:02:54", "InvalidTimeStamp.Format"),
    ],
)
def test_bad_timestamp(rpc, client, monkeypatch, stamp, code):
    monkeypatch.setattr(parameter_helper, "get_iso_8061_date", lambda: stamp)
    err = server_error(client, make(rpc, GetVideoInfoRequest, VideoId="v"))
    assert (err.get_http_status(), err.get_error_code()) == (400, code)


def test_post_form_body_is_signed_and_plus_is_not_space(rpc, client):
    req = make(rpc, SubmitIProductionJobRequest, FunctionName="Cover", Input=OSS_IN, Output=OSS_OUT)
    req.add_body_params("UserData", "a b+c*~/中")  # SDK sends form body with '+' for space
    job_id = call(client, req)["JobId"]
    assert rpc.iproduction_jobs[job_id]["UserData"] == "a b+c*~/中"
    params = signed({"Action": "GetVideoInfo", "VideoId": "a+b"}, nonce="n-plus")
    rpc.add_video("a+b")
    query = "&".join(
        f"{k}={v}" if k == "VideoId" else f"{k}={percent_encode(v)}" for k, v in params.items()
    )
    assert "VideoId=a+b" in query  # a literal, unencoded '+'
    status, body = raw(rpc, "GET", params, query=query)
    assert (status, body["Video"]["VideoId"]) == (200, "a+b")


def test_unknown_action_and_missing_common_params(rpc, client):
    req = CommonRequest(domain=rpc.endpoint, version="2017-03-21", action_name="NoSuchAction")
    err = server_error(client, req)
    assert (err.get_http_status(), err.get_error_code()) == (404, "InvalidAction.NotFound")
    status, body = raw(rpc, "GET", {"Action": "GetVideoInfo", "Version": "2017-03-21"})
    assert (status, body["Code"]) == (400, "MissingAccessKeyId")
    assert rpc.requests[-1] == ("GetVideoInfo", 400)


# ---- injected failures and SDK retry behaviour ----
def test_throttling_is_not_retried_by_sdk_for_vod_mts_live(rpc, client):
    rpc.add_video("v")
    rpc.add_edge_job("c1", "j1")
    msg = "Request was denied due to user flow control."
    cases = [
        (make(rpc, GetVideoInfoRequest, VideoId="v"), "GetVideoInfo", "Throttling.User", 503),
        (
            make(rpc, QueryIProductionJobRequest, JobId="x"),
            "QueryIProductionJob",
            "Throttling",
            400,
        ),
        (
            make(rpc, StartEdgeTranscodeJobRequest, ClusterId="c1", JobId="j1"),
            "StartEdgeTranscodeJob",
            "InternalError",
            500,
        ),
    ]
    for req, action, code, status in cases:
        rpc.fail_next(action, code, msg, status=status, n=2)
        err = server_error(client, req)  # default AcsClient: auto_retry=True, max 3
        assert (err.get_http_status(), err.get_error_code(), err.get_error_msg()) == (
            status,
            code,
            msg,
        )
        assert rpc.requests.count((action, status)) == 1  # exactly one attempt: no auto-retry
    # n=2 and one attempt each: the second queued failure is still there for the next call.
    err = server_error(client, make(rpc, GetVideoInfoRequest, VideoId="v"))
    assert err.get_error_code() == "Throttling.User"
    assert call(client, make(rpc, GetVideoInfoRequest, VideoId="v"))["Video"]["VideoId"] == "v"


def test_quota_errors_surface(rpc, client):
    rpc.add_edge_job("c1", "j1")
    rpc.fail_next(
        "StartEdgeTranscodeJob",
        "UserTaskExceed",
        "User task exceed, please check and try again later.",
        status=400,
    )
    rpc.fail_next("StartEdgeTranscodeJob", "UserQuotaExceed", "Quota exceeded: jobs.", status=403)
    req = {"ClusterId": "c1", "JobId": "j1"}
    err = server_error(client, make(rpc, StartEdgeTranscodeJobRequest, **req))
    assert (err.get_http_status(), err.get_error_code()) == (400, "UserTaskExceed")
    err = server_error(client, make(rpc, StartEdgeTranscodeJobRequest, **req))
    assert (err.get_http_status(), err.get_error_code()) == (403, "UserQuotaExceed")
    assert rpc.edge_jobs[("c1", "j1")]["Status"] == "0"
    call(client, make(rpc, StartEdgeTranscodeJobRequest, **req))
    assert [a for a, _ in rpc.calls] == ["StartEdgeTranscodeJob"] * 3


def test_sdk_retries_only_products_in_its_retry_config(rpc, client):
    """Contrast case: ECS 2014-05-26 is the only product in retry_config.json."""
    client._retry_policy = RetryPolicy(DefaultConfigRetryCondition(), NoDelayStrategy())
    rpc.fail_next(
        "DescribeInstances", "Throttling", "Request was denied due to request throttling."
    )
    req = CommonRequest(
        domain=rpc.endpoint, version="2014-05-26", action_name="DescribeInstances", product="Ecs"
    )
    err = server_error(client, req)
    assert err.get_error_code() == "InvalidAction.NotFound"  # the retry reached the fake
    assert rpc.requests == [("DescribeInstances", 400), ("DescribeInstances", 404)]


def test_concurrent_submits(rpc):
    rpc.add_video("v")
    results, errors = [], []

    def worker():
        c = _client()
        try:
            for _ in range(5):
                req = make(
                    rpc, SubmitPreprocessJobsRequest, VideoId="v", PreprocessType="LivePreprocess"
                )
                results.append(call(c, req)["PreprocessJobs"]["PreprocessJob"][0]["JobId"])
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            c.session.close()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 30 and len(rpc.preprocess_jobs) == 30
