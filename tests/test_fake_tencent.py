"""Tests of the Tencent VOD fakes in tests/fakes/tencent.py.

API 3.0 is driven by the real official SDK, so the fake is held to what the SDK sends and
parses. The v2 API has no maintained SDK: a small signer written here from reference §1.2
(independently of the fake) calls it with urllib, and the fake's own verifier is checked
against the documented test vectors.
"""

import base64
import hashlib
import hmac
import json
import random
import threading
import time
import types
import urllib.request
from urllib.parse import urlencode, urlsplit

import pytest
import requests
from tencentcloud.common import abstract_client, credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
    TencentCloudSDKException,
)
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.vod.v20180717 import models, vod_client

from tests.fakes.tencent import FakeTencentAPI, FakeTencentV2, v2_signature

SECRET_ID, SECRET_KEY = "AKIDtest", "secret"


def procedure_event(task_id="1256768367-Procedure-abc", status="FINISH"):
    """A v3 EventContent (no EventHandle) that only uses fields the SDK model knows, so the
    SDK's "fileds are useless" UserWarning (an error under filterwarnings=error) never fires."""
    return {
        "EventType": "ProcedureStateChanged",
        "ProcedureStateChangeEvent": {"TaskId": task_id, "Status": status, "FileId": "5285890"},
    }


# --------------------------------------------------------------------------- API 3.0


@pytest.fixture
def api():
    with FakeTencentAPI(SECRET_ID, SECRET_KEY, confirm_timeout=0.5, pull_wait=0.3) as fake:
        yield fake


@pytest.fixture
def make_client(monkeypatch):
    """VodClient factory pointed at a fake. Proxies from the environment would hijack the
    SDK's plain-HTTP calls, so they are cleared; sessions are closed to avoid ResourceWarning."""
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    clients = []

    def make(fake, secret_id=SECRET_ID, secret_key=SECRET_KEY, **http):
        profile = ClientProfile(
            httpProfile=HttpProfile(protocol="http", endpoint=fake.endpoint, reqTimeout=10, **http)
        )
        client = vod_client.VodClient(credential.Credential(secret_id, secret_key), "", profile)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.request.conn._session.close()


def pull(client):
    return client.PullEvents(models.PullEventsRequest()).EventSet or []


def confirm(client, handles):
    req = models.ConfirmEventsRequest()
    req.EventHandles = list(handles)
    return client.ConfirmEvents(req)


def test_pull_returns_pushed_events_and_confirm_removes_them(api, make_client):
    client = make_client(api)
    api.push_event(procedure_event("t-1"))
    api.push_event(procedure_event("t-2", status="PROCESSING"))
    events = pull(client)
    assert [e.ProcedureStateChangeEvent.TaskId for e in events] == ["t-1", "t-2"]
    assert all(e.EventType == "ProcedureStateChanged" and e.EventHandle for e in events)
    assert len(api.pending_events()) == 2  # in flight until confirmed
    confirm(client, [e.EventHandle for e in events])
    assert api.pending_events() == []
    assert api.confirmed == [procedure_event("t-1"), procedure_event("t-2", status="PROCESSING")]
    assert api.requests == [("PullEvents", "OK"), ("ConfirmEvents", "OK")]


def test_empty_pull_waits_then_returns_empty_event_set(api, make_client):
    start = time.monotonic()
    assert pull(make_client(api)) == []
    assert time.monotonic() - start >= 0.25


def test_long_poll_wakes_up_on_push(make_client):
    with FakeTencentAPI(SECRET_ID, SECRET_KEY, pull_wait=3.0) as api:
        timer = threading.Timer(0.1, api.push_event, [procedure_event()])
        timer.start()
        start = time.monotonic()
        events = pull(make_client(api))
        timer.join()
        assert len(events) == 1 and time.monotonic() - start < 2.0


def test_pull_returns_at_most_16(api, make_client):
    client = make_client(api)
    for i in range(20):
        api.push_event(procedure_event(f"t-{i}"))
    first, second = pull(client), pull(client)
    assert (len(first), len(second)) == (16, 4)
    assert second[-1].ProcedureStateChangeEvent.TaskId == "t-19"


def test_unconfirmed_event_comes_back_with_new_handle(make_client):
    with FakeTencentAPI(SECRET_ID, SECRET_KEY, confirm_timeout=0.5, pull_wait=2.0) as api:
        client = make_client(api)
        api.push_event(procedure_event())
        (first,) = pull(client)
        start = time.monotonic()
        (again,) = pull(client)  # long poll wakes when the confirm window lapses
        assert 0.3 < time.monotonic() - start < 1.5
        assert again.EventHandle != first.EventHandle
        assert again.ProcedureStateChangeEvent.TaskId == first.ProcedureStateChangeEvent.TaskId
        with pytest.raises(TencentCloudSDKException) as exc:
            confirm(client, [first.EventHandle])  # the old handle is dead
        assert exc.value.get_code() == "InvalidParameterValue"
        assert len(api.pending_events()) == 1
        confirm(client, [again.EventHandle])
        assert api.pending_events() == [] and api.confirmed == [procedure_event()]


def test_confirm_is_all_or_nothing(api, make_client):
    client = make_client(api)
    api.push_event(procedure_event())
    (event,) = pull(client)
    with pytest.raises(TencentCloudSDKException) as exc:
        confirm(client, [event.EventHandle, "bogus"])
    assert exc.value.get_code() == "InvalidParameterValue"
    assert api.confirmed == []
    confirm(client, [event.EventHandle])
    assert api.confirmed == [procedure_event()]


def test_get_method_is_signed_and_unflattened(api, make_client):
    client = make_client(api, reqMethod="GET")
    api.push_event(procedure_event())
    (event,) = pull(client)
    confirm(client, [event.EventHandle])
    assert api.pending_events() == []


@pytest.mark.parametrize(
    ("secret_id", "secret_key", "code"),
    [
        (SECRET_ID, "wrong", "AuthFailure.SignatureFailure"),
        ("AKIDother", SECRET_KEY, "AuthFailure.SecretIdNotFound"),
    ],
)
def test_bad_credentials(api, make_client, secret_id, secret_key, code):
    api.push_event(procedure_event())
    with pytest.raises(TencentCloudSDKException) as exc:
        pull(make_client(api, secret_id=secret_id, secret_key=secret_key))
    assert exc.value.get_code() == code
    assert exc.value.get_request_id()
    assert len(api.pending_events()) == 1 and api.requests == [("PullEvents", code)]


def test_signature_covers_the_body(api, make_client):
    """Sign with the SDK's own request builder, then alter the body before sending."""
    client = make_client(api)
    req = abstract_client.RequestInternal(api.endpoint, "POST", "/", header={})
    client._build_req_inter("ConfirmEvents", {"EventHandles": ["a"]}, req)
    url = f"http://{api.endpoint}/"
    with requests.Session() as session:
        session.trust_env = False
        ok = session.post(url, data=req.data, headers=req.header).json()["Response"]
        tampered = session.post(url, data=req.data.replace('"a"', '"b"'), headers=req.header)
    assert ok["Error"]["Code"] == "InvalidParameterValue"  # authenticated; handle unknown
    assert tampered.headers["Content-Type"] == "application/json"
    assert tampered.json()["Response"]["Error"]["Code"] == "AuthFailure.SignatureFailure"


def test_stale_timestamp(api, make_client, monkeypatch):
    # Only the SDK's clock is moved back (abstract_client's `time` global), not the fake's.
    stale = types.SimpleNamespace(time=lambda: time.time() - 1000)
    monkeypatch.setattr(abstract_client, "time", stale)
    with pytest.raises(TencentCloudSDKException) as exc:
        pull(make_client(api))
    assert exc.value.get_code() == "AuthFailure.SignatureExpire"


def test_process_media_by_procedure_and_describe_task_detail(api, make_client):
    client = make_client(api)
    req = models.ProcessMediaByProcedureRequest()
    req.FileId, req.ProcedureName, req.SessionContext = "5285890784246869930", "MyProc", "ctx"
    task_id = client.ProcessMediaByProcedure(req).TaskId
    assert task_id.startswith("1256768367-Procedure-") and task_id.endswith("t0")
    assert api.submissions == [
        {"FileId": "5285890784246869930", "ProcedureName": "MyProc", "SessionContext": "ctx"}
    ]
    detail_req = models.DescribeTaskDetailRequest()
    detail_req.TaskId = task_id
    detail = client.DescribeTaskDetail(detail_req)
    assert (detail.TaskType, detail.Status) == ("Procedure", "PROCESSING")
    task = detail.ProcedureTask
    assert (task.TaskId, task.FileId, task.SessionContext) == (task_id, req.FileId, "ctx")

    api.tasks[task_id]["Status"] = "FINISH"  # tests may drive the task state directly
    assert client.DescribeTaskDetail(detail_req).Status == "FINISH"

    detail_req.TaskId = "1256768367-Procedure-nope"
    with pytest.raises(TencentCloudSDKException) as exc:
        client.DescribeTaskDetail(detail_req)
    assert exc.value.get_code() == "InvalidParameterValue.TaskId"


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"FileId": "5285890784246869930"}, "MissingParameter"),
        ({"ProcedureName": "MyProc"}, "MissingParameter"),
        ({"FileId": "missing-1", "ProcedureName": "MyProc"}, "InvalidParameterValue.FileId"),
    ],
)
def test_process_media_by_procedure_validation(api, make_client, fields, code):
    req = models.ProcessMediaByProcedureRequest()
    for name, value in fields.items():
        setattr(req, name, value)
    with pytest.raises(TencentCloudSDKException) as exc:
        make_client(api).ProcessMediaByProcedure(req)
    assert exc.value.get_code() == code
    assert api.submissions == [] and api.tasks == {}


def test_session_id_dedupe(api, make_client):
    client = make_client(api)
    req = models.ProcessMediaByProcedureRequest()
    req.FileId, req.ProcedureName, req.SessionId = "528589", "MyProc", "job-1"
    client.ProcessMediaByProcedure(req)
    with pytest.raises(TencentCloudSDKException) as exc:
        client.ProcessMediaByProcedure(req)
    assert exc.value.get_code() == "InvalidParameterValue.SessionId"
    assert len(api.submissions) == 1


def test_fail_next(api, make_client):
    client = make_client(api)
    api.fail_next("PullEvents", "InternalError", "boom", n=2)
    for _ in range(2):
        with pytest.raises(TencentCloudSDKException) as exc:
            pull(client)
        assert (exc.value.get_code(), exc.value.get_message()) == ("InternalError", "boom")
    api.push_event(procedure_event())
    assert len(pull(client)) == 1
    assert api.requests == [
        ("PullEvents", "InternalError"),
        ("PullEvents", "InternalError"),
        ("PullEvents", "OK"),
    ]


# --------------------------------------------------------------------------- v2


def sign_v2(method, host, path, params, secret_key):
    """Test-local signer, written from reference §1.2 (not shared with the fake)."""
    pairs = sorted((name.replace("_", "."), str(value)) for name, value in params.items())
    text = method + host + path + "?" + "&".join(f"{n}={v}" for n, v in pairs)
    algo = hashlib.sha256 if params.get("SignatureMethod") == "HmacSHA256" else hashlib.sha1
    return base64.b64encode(hmac.new(secret_key.encode(), text.encode(), algo).digest()).decode()


def v2_request(fake, action, params=None, *, method="GET", secret_key=SECRET_KEY, **common):
    """Build a signed (url, body) pair; `common` overrides the common parameters."""
    p = {
        "Action": action,
        "Region": "gz",
        "Timestamp": int(time.time()),
        "Nonce": random.randint(1, 2**62),
        "SecretId": SECRET_ID,
        **common,
        **(params or {}),
    }
    url = urlsplit(fake.url)
    p["Signature"] = sign_v2(method, url.netloc, url.path, p, secret_key)
    encoded = urlencode(p)  # percent-encodes '+', '/', '=' in the signature and values
    return (fake.url + "?" + encoded, None) if method == "GET" else (fake.url, encoded.encode())


_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def send(url, body=None):
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if body is not None else {}
    with _opener.open(urllib.request.Request(url, data=body, headers=headers), timeout=10) as r:
        assert r.status == 200 and r.headers["Content-Type"] == "application/json"
        return json.loads(r.read())


def call_v2(fake, action, params=None, **kw):
    return send(*v2_request(fake, action, params, **kw))


@pytest.fixture
def v2():
    with FakeTencentV2(SECRET_ID, SECRET_KEY, confirm_timeout=0.5, pull_wait=0.3) as fake:
        yield fake


def test_v2_signature_reproduces_documented_vectors():
    key = "Gu5t9xGARNpq86cd98joQYCN3Cozk1qA"
    common = {
        "Action": "DescribeInstances",
        "Nonce": "11886",
        "SecretId": "AKIDz8krbsJ5yKBZQpn74WFkmLPx3gnPhESA",
        "Timestamp": "1465185768",
    }
    sha1 = {**common, "Region": "gz", "instanceIds.0": "ins-09dx96dg", "limit": 20, "offset": 0}
    sha256 = {
        **common,
        "Region": "ap-guangzhou",
        "InstanceIds.0": "ins-09dx96dg",
        "SignatureMethod": "HmacSHA256",
    }
    host, path = "cvm.api.qcloud.com", "/v2/index.php"
    assert v2_signature("GET", host, path, sha1, key) == "NSI3UqqD99b/UJb4tbG/xZpRW64="
    assert (
        v2_signature("GET", host, path, sha256, key)
        == "0EEm/HtGRr/VJXTAD9tYMth1Bzm3lLHz5RCDv1GdM8s="
    )
    sha256_as_sha1 = {**sha256, "SignatureMethod": "HmacSHA1"}
    assert v2_signature("GET", host, path, sha256_as_sha1, key) == "nPVnY6njQmwQ8ciqbPl5Qe+Oru4="
    assert sign_v2("GET", host, path, sha1, key) == "NSI3UqqD99b/UJb4tbG/xZpRW64="


PROCEDURE = "QCVB_SimpleProcessFile({210,220}, 10, 10, 10)"
INPUTS = {
    "SingleFile": {"file.id": "12345", "file.startTimeOffset": "10", "file.endTimeOffset": "25"},
    "MultiFile": {
        "fileList.0.id": "12345",
        "fileList.0.startTimeOffset": "30",
        "fileList.1.id": "67899",
    },
    "Stream": {
        "stream.streamId": "12345",
        "stream.startTimeStamp": "1502087538",
        "stream.endTimeStamp": "1502087638",
    },
    "PullFile": {"pull.url": "http://example.com/a+b c.mp4?x=1&y=/2=", "pull.fileName": "a b"},
}


@pytest.mark.parametrize("input_type", sorted(INPUTS))
@pytest.mark.parametrize(("method", "sig"), [("GET", "HmacSHA1"), ("POST", "HmacSHA256")])
def test_v2_run_procedure_and_get_task_info(v2, input_type, method, sig):
    params = {"inputType": input_type, "procedure": PROCEDURE, **INPUTS[input_type]}
    answer = call_v2(v2, "RunProcedure", params, method=method, SignatureMethod=sig)
    assert answer["code"] == 0 and answer["message"] == ""
    task_id = answer["vodTaskId"]
    assert task_id.startswith("1251989944-Procedure-") and len(task_id.split("-")[-1]) == 32
    (submitted,) = v2.submissions
    assert {k: submitted[k] for k in params} == params  # '+', '/', '=', spaces survive
    info = call_v2(v2, "GetTaskInfo", {"vodTaskId": task_id})
    assert (info["code"], info["type"], info["data"]["vodTaskId"]) == (0, "procedure", task_id)
    assert info["data"]["status"] == "PROCESSING"


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"inputType": "SingleFile", "procedure": PROCEDURE}, 1000),
        ({"inputType": "Bogus", "procedure": PROCEDURE, "file.id": "1"}, 1000),
        ({"inputType": "SingleFile", "file.id": "1"}, 1000),
        ({"inputType": "MultiFile", "procedure": PROCEDURE, "fileList.1.id": "1"}, 1000),
        ({"inputType": "Stream", "procedure": PROCEDURE, "stream.streamId": "s"}, 1000),
        ({"inputType": "PullFile", "procedure": PROCEDURE, "pull.url": "http://x"}, 1000),
        ({"inputType": "SingleFile", "procedure": PROCEDURE, "file.id": "missing-7"}, 10008),
        (
            {
                "inputType": "MultiFile",
                "procedure": PROCEDURE,
                "fileList.0.id": "1",
                "fileList.1.id": "missing",
            },
            10008,
        ),
    ],
)
def test_v2_run_procedure_errors(v2, params, code):
    assert call_v2(v2, "RunProcedure", params)["code"] == code
    assert v2.submissions == [] and v2.tasks == {}


def test_v2_duplicate_submission(v2):
    params = {"inputType": "SingleFile", "procedure": PROCEDURE, "file.id": "12345"}
    assert call_v2(v2, "RunProcedure", params)["code"] == 0
    assert call_v2(v2, "RunProcedure", params)["code"] == 50005  # new Nonce/Timestamp, same job
    assert len(v2.submissions) == 1


def test_v2_auth_errors(v2):
    assert call_v2(v2, "GetTaskInfo", {"vodTaskId": "x"}, secret_key="wrong")["code"] == 4100
    assert call_v2(v2, "GetTaskInfo", {"vodTaskId": "x"}, SecretId="AKIDother")["code"] == 4104
    stale = int(time.time()) - 1000
    assert call_v2(v2, "GetTaskInfo", {"vodTaskId": "x"}, Timestamp=stale)["code"] == 4500
    url, _ = v2_request(v2, "GetTaskInfo", {"vodTaskId": "x"})
    assert send(url)["code"] == 5000  # authenticated; unknown task
    assert send(url)["code"] == 4500  # same Nonce again: replay
    assert call_v2(v2, "NoSuchAction")["code"] == 6100
    assert [status for _, status in v2.requests] == [4100, 4104, 4500, 5000, 4500, 6100]


def test_v2_post_ignores_query_parameters(v2):
    url, body = v2_request(v2, "GetTaskInfo", {"vodTaskId": "x"})  # a valid signed GET...
    query = urlsplit(url).query
    answer = send(v2.url + "?" + query, body=b"")  # ...sent as a POST with an empty body
    assert answer["code"] == 4000 and "Action" in answer["message"]


def v2_event(task_id):
    return {"version": "4.0", "eventType": "ProcedureStateChanged", "data": {"vodTaskId": task_id}}


def test_v2_pull_confirm_and_redelivery():
    with FakeTencentV2(SECRET_ID, SECRET_KEY, confirm_timeout=0.5, pull_wait=2.0) as v2:
        v2.push_event(v2_event("a"))
        v2.push_event(v2_event("b"))
        answer = call_v2(v2, "PullEvent")
        assert answer["code"] == 0
        assert [e["eventContent"] for e in answer["eventList"]] == [v2_event("a"), v2_event("b")]
        handles = [e["msgHandle"] for e in answer["eventList"]]
        ok = {"code": 0, "message": ""}
        assert call_v2(v2, "ConfirmEvent", {"msgHandle.1": handles[0]}) == ok
        assert v2.confirmed == [v2_event("a")] and v2.pending_events() == [v2_event("b")]

        start = time.monotonic()
        again = call_v2(v2, "PullVodEvent")["eventList"]  # wakes when b's window lapses
        assert 0.3 < time.monotonic() - start < 1.5
        assert [e["eventContent"] for e in again] == [v2_event("b")]
        assert again[0]["msgHandle"] not in handles
        assert call_v2(v2, "ConfirmVodEvent", {"msgHandle.1": handles[1]})["code"] == 4000
        assert call_v2(v2, "ConfirmEvent", {"msgHandle.0": again[0]["msgHandle"]}) == ok
        assert v2.pending_events() == [] and v2.confirmed == [v2_event("a"), v2_event("b")]


def test_v2_empty_pull_and_confirm_without_handles(v2):
    start = time.monotonic()
    assert call_v2(v2, "PullEvent") == {"code": 0, "message": "", "eventList": []}
    assert time.monotonic() - start >= 0.25
    assert call_v2(v2, "ConfirmEvent")["code"] == 1000


def test_v2_fail_next_matches_aliases(v2):
    v2.fail_next("PullEvent", 4000, "no message", n=1)
    assert call_v2(v2, "PullVodEvent") == {"code": 4000, "message": "no message"}
    assert call_v2(v2, "PullVodEvent")["code"] == 0
    assert v2.requests == [("PullVodEvent", 4000), ("PullVodEvent", 0)]
