"""The hand-written Tencent VOD v2 client: its signature and its flattened params.

The vectors are the documented ones (Tencent's v2 signature page); the round trips go to the
v2 fake, which verifies signatures as the v2 gateway does, so a wrong key must fail.
"""

import pytest

from submitter.calls import Budget, CallFailed
from submitter.tencent_v2 import TencentV2, flatten, sign
from tests.fakes.tencent import FakeTencentV2, v2_signature

SECRET_KEY = "Gu5t9xGARNpq86cd98joQYCN3Cozk1qA"
HOST, PATH = "cvm.api.qcloud.com", "/v2/index.php"
SHA1_PARAMS = {
    "Action": "DescribeInstances",
    "Nonce": "11886",
    "Region": "gz",
    "SecretId": "AKIDz8krbsJ5yKBZQpn74WFkmLPx3gnPhESA",
    "Timestamp": "1465185768",
    "instanceIds.0": "ins-09dx96dg",
    "limit": "20",
    "offset": "0",
}
SHA256_PARAMS = {
    "Action": "DescribeInstances",
    "InstanceIds.0": "ins-09dx96dg",
    "Nonce": "11886",
    "Region": "ap-guangzhou",
    "SecretId": "AKIDz8krbsJ5yKBZQpn74WFkmLPx3gnPhESA",
    "SignatureMethod": "HmacSHA256",
    "Timestamp": "1465185768",
}


def test_hmac_sha1_documented_vector():
    assert sign("GET", HOST, PATH, SHA1_PARAMS, SECRET_KEY) == "NSI3UqqD99b/UJb4tbG/xZpRW64="


def test_hmac_sha256_documented_vector():
    signature = sign("GET", HOST, PATH, SHA256_PARAMS, SECRET_KEY)
    assert signature == "0EEm/HtGRr/VJXTAD9tYMth1Bzm3lLHz5RCDv1GdM8s="


def test_hmac_sha1_selected_by_name_documented_vector():
    params = dict(SHA256_PARAMS, SignatureMethod="HmacSHA1")
    assert sign("GET", HOST, PATH, params, SECRET_KEY) == "nPVnY6njQmwQ8ciqbPl5Qe+Oru4="


def test_signature_excludes_itself_and_reads_underscore_as_dot():
    with_sig = dict(SHA1_PARAMS, Signature="anything")
    assert sign("GET", HOST, PATH, with_sig, SECRET_KEY) == "NSI3UqqD99b/UJb4tbG/xZpRW64="
    underscored = {k.replace(".", "_"): v for k, v in SHA1_PARAMS.items()}
    assert sign("GET", HOST, PATH, underscored, SECRET_KEY) == "NSI3UqqD99b/UJb4tbG/xZpRW64="


def test_signature_agrees_with_the_fakes_independent_verifier():
    params = {
        "Action": "RunProcedure",
        "fileList.0.id": "a b+c/中文",
        "SignatureMethod": "HmacSHA256",
    }
    assert sign("POST", "127.0.0.1:9", PATH, params, "k") == v2_signature(
        "POST", "127.0.0.1:9", PATH, params, "k"
    )


@pytest.mark.parametrize(
    ("nested", "flat"),
    [
        (
            {"file": {"id": "1", "startTimeOffset": 10}},
            {"file.id": "1", "file.startTimeOffset": "10"},
        ),
        (
            {"fileList": [{"id": "1", "endTimeOffset": 5}, {"id": "2"}]},
            {"fileList.0.id": "1", "fileList.0.endTimeOffset": "5", "fileList.1.id": "2"},
        ),
        (
            {"stream": {"streamId": "s", "startTimeStamp": 1}},
            {"stream.streamId": "s", "stream.startTimeStamp": "1"},
        ),
        (
            {"pull": {"url": "http://x/y.mp4", "classId": 3}},
            {"pull.url": "http://x/y.mp4", "pull.classId": "3"},
        ),
        (
            {"transcode": {"definition": [210, 220]}},
            {"transcode.definition.0": "210", "transcode.definition.1": "220"},
        ),
        ({"file.id": "already-flat", "skip": None}, {"file.id": "already-flat"}),
    ],
)
def test_flatten_nested_params(nested, flat):
    assert flatten(nested) == flat


@pytest.fixture
def v2():
    with FakeTencentV2(secret_id="AKIDv2", secret_key="v2-secret") as fake:
        yield fake


def client(v2, secret="v2-secret"):
    return TencentV2(
        {"TENCENT_SECRET_ID": "AKIDv2", "TENCENT_SECRET_KEY": secret, "TENCENT_VOD_V2_URL": v2.url}
    )


def test_signed_request_is_accepted_by_the_v2_fake(v2):
    answer = client(v2).call(
        "RunProcedure",
        {
            "inputType": "SingleFile",
            "file.id": "42",
            "procedure": "QCVB_SimpleProcessFile(1,1,10,10)",
        },
        budget=Budget(5),
    )
    assert answer["code"] == 0 and answer["vodTaskId"]
    (sent,) = v2.submissions
    assert sent["SignatureMethod"] == "HmacSHA256" and sent["Region"] == "gz"
    assert sent["file.id"] == "42"


def test_wrong_secret_key_is_refused_with_4100(v2):
    with pytest.raises(CallFailed) as info:
        client(v2, secret="not-the-key").call("GetTaskInfo", {"vodTaskId": "x"}, budget=Budget(5))
    assert info.value.code == "4100" and not info.value.retryable
    assert v2.requests == [("GetTaskInfo", 4100)]
