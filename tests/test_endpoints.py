"""The endpoints surface: API, commands, pages and metrics; private addresses refused, at
registration and at every connection; job metadata from submission to message."""

import base64
import json
import logging
import re
import socket
import threading
from datetime import UTC, datetime

import pytest

from receiver.background import deliver, transport
from tests.helpers import OPS_TOKEN, assert_error_shape, failed_transcode, record
from tests.provider_env import post
from tests.receivers import Receiver

pytestmark = pytest.mark.engines


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def open_app(make_app):
    """An app whose endpoints may be on loopback (the test receivers are)."""
    return make_app(DELIVERY_ALLOW_PRIVATE=True, DELIVERY_RETRY_SECONDS=[])


def create(client, **doc):
    return client.post("/api/endpoints", json=doc)


# -- the API ----------------------------------------------------------------------------


def test_an_endpoint_is_created_listed_changed_and_deleted(open_app, receiver):
    client = open_app.test_client()
    response = create(client, url=receiver.url, description="orders", filter={"state": "failed"})
    assert response.status_code == 201
    endpoint = response.get_json()
    assert response.headers["Location"] == f"/api/endpoints/{endpoint['id']}"
    secret = endpoint["secret"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 24
    assert endpoint["filter"] == {"state": ["failed"]} and endpoint["enabled"] is True
    listed = client.get("/api/endpoints").get_json()["endpoints"]
    assert [e["id"] for e in listed] == [endpoint["id"]]
    assert secret not in json.dumps(listed) and "secret" not in listed[0]
    one = client.get(f"/api/endpoints/{endpoint['id']}").get_json()
    for field in ("last_success_at", "last_failure_at", "failing_since", "disabled_reason"):
        assert one[field] is None
    assert (one["pending"], one["delivered"], one["failed"]) == (0, 0, 0)
    changed = client.patch(
        f"/api/endpoints/{endpoint['id']}", json={"enabled": False, "filter": {}}
    ).get_json()
    assert changed["enabled"] is False and changed["filter"] == {}
    assert changed["disabled_reason"] == "disabled by an operator"
    rotated = client.post(f"/api/endpoints/{endpoint['id']}/rotate-secret")
    assert rotated.status_code == 200 and rotated.get_json()["secret"] != secret
    assert client.delete(f"/api/endpoints/{endpoint['id']}").status_code == 204
    assert_error_shape(client.get(f"/api/endpoints/{endpoint['id']}"), 404)
    assert_error_shape(client.delete(f"/api/endpoints/{endpoint['id']}"), 404)


@pytest.mark.parametrize(
    "doc, field",
    [
        ({}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "arn:aws:s3:::bucket"}, "url"),
        ({"url": "https://example.com/h", "filter": {"colour": ["red"]}}, "filter"),
        ({"url": "https://example.com/h", "filter": {"state": ["done"]}}, "filter"),
        ({"url": "https://example.com/h", "filter": ["failed"]}, "filter"),
        ({"url": "https://example.com/h", "secret": "hunter2"}, "secret"),
        ({"url": "https://example.com/h", "secret": "whsec_c2hvcnQ="}, "secret"),
        ({"url": "https://example.com/h", "enabled": "yes"}, "enabled"),
        ({"url": "https://example.com/h", "colour": "red"}, "colour"),
    ],
)
def test_a_malformed_endpoint_is_a_400_naming_the_field(client, doc, field, monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", public_resolver({"example.com": "93.184.216.34"}))
    data = assert_error_shape(create(client, **doc), 400)
    assert data["error"].startswith(field), data["error"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hooks",
        "http://localhost/hooks",
        "http://10.1.2.3/hooks",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hooks",
        "http://[::ffff:127.0.0.1]/hooks",
        "http://100.64.0.1/hooks",
        "http://0.0.0.0/hooks",
    ],
)
def test_an_endpoint_on_a_private_address_is_refused(client, make_app, url):
    data = assert_error_shape(create(client, url=url), 400)
    assert data["error"].startswith("url:") and "non-public" in data["error"]
    assert "RECEIVER_DELIVERY_ALLOW_PRIVATE" in data["error"]
    allowed = make_app(DELIVERY_ALLOW_PRIVATE=True).test_client()
    assert create(allowed, url=url).status_code == 201


def test_sns_and_sqs_targets_are_endpoints_too(client):
    for url in (
        "arn:aws:sns:cn-north-1:123456789012:jobs.fifo",
        "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs",
    ):
        assert create(client, url=url).status_code == 201, url


def public_resolver(table: dict[str, str | list[str]], calls: list | None = None):
    """A resolver for names the test controls, as a DNS server answering them would."""

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        if calls is not None:
            calls.append(host)
        answer = table[host]
        addresses = answer if isinstance(answer, list) else [answer]
        if callable(addresses[0]):
            addresses = addresses[0]()
        out = []
        for address in addresses:
            fam = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (address, port, 0, 0) if fam == socket.AF_INET6 else (address, port)
            out.append((fam, socket.SOCK_STREAM, 6, "", sockaddr))
        return out

    return getaddrinfo


def test_dns_rebinding_is_refused_at_connect_time(ledger, make_app, receiver, monkeypatch):
    """The name resolved to a public address when registered, and to loopback when sent to:
    the sender checks what it resolves at that moment, and connects to nothing."""
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])
    calls: list[str] = []
    resolver = public_resolver({"rebind.test": [lambda: next(answers)]}, calls)
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    port = receiver.server.server_port
    client = make_app(DELIVERY_RETRY_SECONDS=[]).test_client()
    endpoint = create(client, url=f"http://rebind.test:{port}/hooks").get_json()
    record(ledger, failed_transcode("v1"))
    deliver.run(make_app(DELIVERY_RETRY_SECONDS=[]).config, once=True)
    assert calls == ["rebind.test", "rebind.test"]
    assert receiver.requests == []
    [delivery], _ = ledger.deliveries.search(endpoint["id"])
    error = delivery["attempts"][0]["error"]
    assert error == "refused: rebind.test resolves to a non-public address (127.0.0.1)"


def test_one_private_address_among_public_ones_is_refused(monkeypatch):
    resolver = public_resolver({"mixed.test": ["93.184.216.34", "10.0.0.7"]})
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    answer = transport.post("http://mixed.test/h", b"{}", {}, timeout=2, allow_private=False)
    assert answer.error == "refused: mixed.test resolves to a non-public address (10.0.0.7)"
    with pytest.raises(transport.NotAllowed):
        transport.check_target("http://mixed.test/h", False)


def test_addresses_are_public_only_on_the_internet():
    for address in ("8.8.8.8", "2606:4700::1111", "93.184.216.34"):
        assert transport.is_public(address), address
    for address in (
        "127.0.0.1",
        "10.0.0.1",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:10.0.0.1",
        "64:ff9b::a00:1",
        "2002:0a00:0001::1",
    ):
        assert not transport.is_public(address), address


def test_deliveries_are_listed_retried_by_id_and_recovered(open_app, ledger, receiver):
    client = open_app.test_client()
    receiver.default = "fail"
    endpoint = create(client, url=receiver.url).get_json()
    receiver.secret = endpoint["secret"]
    for video in ("v1", "v2", "v3"):
        record(ledger, failed_transcode(video))
    deliver.run(open_app.config, once=True)
    base = f"/api/endpoints/{endpoint['id']}/deliveries"
    page = client.get(base + "?status=failed&limit=2").get_json()
    assert len(page["deliveries"]) == 2 and page["next_cursor"]
    rest = client.get(f"{base}?status=failed&cursor={page['next_cursor']}").get_json()
    assert len(rest["deliveries"]) == 1 and rest["next_cursor"] is None
    newest = page["deliveries"][0]
    assert newest["type"] == "job.failed" and newest["status"] == "failed"
    assert newest["message_id"].startswith("msg_") and newest["next_attempt_at"] is None
    [attempt] = newest["attempts"]
    assert attempt["status_code"] == 500 and attempt["error"] == "HTTP 500"
    assert set(attempt) >= {"at", "status_code", "error", "duration_ms"}
    assert client.get(base + "?status=pending").get_json()["deliveries"] == []
    for bad in ("status=done", "limit=0", "cursor=abc", "since=yesterday"):
        assert_error_shape(client.get(f"{base}?{bad}"), 400)
    receiver.default = "ok"
    assert client.post(f"/api/deliveries/{newest['id']}/retry").status_code == 202
    assert_error_shape(client.post("/api/deliveries/999999/retry"), 404)
    deliver.run(open_app.config, once=True)
    assert len(receiver.accepted) == 1
    recover = f"/api/endpoints/{endpoint['id']}/recover"
    assert_error_shape(client.post(recover, json={}), 400)
    assert_error_shape(client.post(recover, json={"since": "last week"}), 400)
    answer = client.post(recover, json={"since": "2000-01-01T00:00:00Z"})
    assert answer.status_code == 200 and answer.get_json() == {"recovered": 2}
    deliver.run(open_app.config, once=True)
    assert len(receiver.accepted) == 3
    assert client.get(f"/api/endpoints/{endpoint['id']}").get_json()["delivered"] == 3


def test_the_endpoints_api_needs_the_ops_token(make_app):
    client = make_app(OPS_TOKEN=OPS_TOKEN).test_client()
    assert_error_shape(client.get("/api/endpoints"), 401)
    assert_error_shape(create(client, url="https://example.com/h"), 401)
    good = client.get("/api/endpoints", headers={"Authorization": f"Bearer {OPS_TOKEN}"})
    assert good.status_code == 200


def test_secrets_and_signatures_appear_in_no_log(open_app, ledger, receiver, caplog):
    caplog.set_level(logging.DEBUG)
    client = open_app.test_client()
    receiver.plan = ["fail"]
    endpoint = create(client, url=receiver.url).get_json()
    rotated = client.post(f"/api/endpoints/{endpoint['id']}/rotate-secret").get_json()
    record(ledger, failed_transcode("v1"))
    deliver.run({**open_app.config, "DELIVERY_RETRY_SECONDS": [0]}, once=True)
    assert len(receiver.requests) == 2
    logs = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "deliver.attempt-failed" in logs
    signature = receiver.requests[0]["headers"]["webhook-signature"]
    for secret in (endpoint["secret"], rotated["secret"], signature.split(",")[1][:20]):
        assert secret[6:] not in logs


# -- job metadata --------------------------------------------------------------------------


def test_metadata_is_kept_on_the_job_and_returned(build, fakes, receiver):
    app = build(DELIVERY_ALLOW_PRIVATE=True)
    client = app.test_client()
    meta = {"order": "A-1042", "tags": ["a", "b"], "nested": {"n": 1}}
    response = client.post(
        "/api/jobs",
        json={
            "operation": "aliyun.vod.SubmitPreprocessJobs",
            "params": {"VideoId": "vid1"},
            "metadata": meta,
        },
    )
    assert response.status_code == 201, response.get_json()
    job = response.get_json()
    assert job["metadata"] == meta
    assert client.get(f"/api/jobs/{job['id']}").get_json()["metadata"] == meta
    plain = post(client, "aliyun.vod.SubmitPreprocessJobs", {"VideoId": "vid1"}).get_json()
    assert plain["metadata"] == {}
    assert all("metadata" in j for j in client.get("/api/jobs").get_json()["jobs"])


@pytest.mark.parametrize("meta", [["a"], "text", 7, {"big": "x" * 4100}, {"nan": float("nan")}])
def test_bad_metadata_is_a_400_naming_it_and_records_nothing(build, fakes, meta):
    client = build().test_client()
    body = json.dumps(
        {
            "operation": "aliyun.vod.SubmitPreprocessJobs",
            "params": {"VideoId": "vid1"},
            "metadata": meta,
        }
    )
    response = client.post("/api/jobs", data=body, content_type="application/json")
    data = assert_error_shape(response, 400)
    assert data["error"].startswith("metadata"), data["error"]
    assert client.get("/api/stats").get_json()["total"] == 0
    assert fakes.aliyun.calls == []


def test_metadata_of_exactly_4_kib_is_taken(build, fakes):
    client = build().test_client()
    meta = {"k": "x" * (4096 - len('{"k":""}'))}
    response = client.post(
        "/api/jobs",
        json={
            "operation": "aliyun.vod.SubmitPreprocessJobs",
            "params": {"VideoId": "vid1"},
            "metadata": meta,
        },
    )
    assert response.status_code == 201


# -- commands ------------------------------------------------------------------------------


def test_endpoint_commands(make_app, receiver, ledger):
    runner = make_app(DELIVERY_ALLOW_PRIVATE=True).test_cli_runner()
    added = runner.invoke(
        args=[
            "endpoints",
            "add",
            receiver.url,
            "--filter",
            "state=failed",
            "--filter",
            "state=partial",
            "--filter",
            "provider=aliyun",
            "--description",
            "failures",
        ]
    )
    assert added.exit_code == 0, added.output
    endpoint = json.loads(added.stdout)
    assert endpoint["filter"] == {"provider": ["aliyun"], "state": ["failed", "partial"]}
    assert endpoint["secret"].startswith("whsec_")
    listed = runner.invoke(args=["endpoints", "list"])
    assert json.loads(listed.stdout)[0]["id"] == endpoint["id"]
    assert endpoint["secret"] not in listed.stdout
    off = runner.invoke(args=["endpoints", "disable", endpoint["id"]])
    assert off.exit_code == 0 and json.loads(off.stdout)["enabled"] is False
    on = runner.invoke(args=["endpoints", "enable", endpoint["id"]])
    assert on.exit_code == 0 and json.loads(on.stdout)["enabled"] is True
    missing = runner.invoke(args=["endpoints", "enable", "nope"])
    assert missing.exit_code == 1 and "no endpoint nope" in missing.output
    bad = runner.invoke(args=["endpoints", "add", receiver.url, "--filter", "colour=red"])
    assert bad.exit_code == 2 and "filter: unknown key" in bad.output
    private = make_app().test_cli_runner().invoke(args=["endpoints", "add", receiver.url])
    assert private.exit_code == 2 and "non-public" in private.output
    record(ledger, failed_transcode("v1"))
    ran = runner.invoke(args=["deliver", "--once"])
    assert ran.exit_code == 0, ran.output
    summary = json.loads(ran.stdout)
    assert summary["fanned_out"] == 1 and summary["delivered"] == 1 and summary["pending"] == 0


def test_submit_takes_metadata(build, fakes):
    runner = build().test_cli_runner()
    args = ["submit", "aliyun.vod.SubmitPreprocessJobs", "VideoId=vid1"]
    ok = runner.invoke(args=[*args, "--metadata", '{"order": 5}'])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["metadata"] == {"order": 5}
    bad = runner.invoke(args=[*args, "--metadata", "[1]"])
    assert bad.exit_code == 2 and "metadata must be a JSON object" in bad.output
    broken = runner.invoke(args=[*args, "--metadata", "{"])
    assert broken.exit_code == 2 and "--metadata" in broken.output


# -- pages and metrics ---------------------------------------------------------------------


def press(client, page: str, action: str, **fields):
    html = client.get(page).get_data(as_text=True)
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)
    assert f'action="{action}"' in html, action
    return client.post(action, data={"csrf": token, **fields})


def test_pages_show_health_and_retry_and_recover_in_one_click(open_app, ledger, receiver):
    client = open_app.test_client()
    receiver.default = "fail"
    endpoint = create(client, url=receiver.url, description="orders <app>").get_json()
    for video in ("v1", "v2"):
        record(ledger, failed_transcode(video))
    deliver.run(open_app.config, once=True)
    listing = client.get("/endpoints").get_data(as_text=True)
    assert receiver.url in listing and "orders &lt;app&gt;" in listing and "failing" in listing
    page = f"/endpoints/{endpoint['id']}"
    detail = client.get(page).get_data(as_text=True)
    assert "HTTP 500" in detail and detail.count(">Retry</button>") == 2
    assert endpoint["secret"] not in detail and endpoint["secret"] not in listing
    dashboard = client.get("/").get_data(as_text=True)
    assert 'id="outbound"' in dashboard and f"/endpoints/{endpoint['id']}" in dashboard
    # Without the CSRF token a button press is refused.
    deliveries, _ = ledger.deliveries.search(endpoint["id"])
    retry = f"/endpoints/{endpoint['id']}/deliveries/{deliveries[0]['id']}/retry"
    assert client.post(retry, data={"csrf": "forged"}).status_code == 403
    receiver.default = "ok"
    assert press(client, page, retry).status_code == 303
    deliver.run(open_app.config, once=True)
    assert len(receiver.accepted) == 1
    answer = press(client, page, f"/endpoints/{endpoint['id']}/recover", since="2000-01-01")
    assert answer.status_code == 303
    banner = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "1 failed delivery will be sent again" in banner
    # The banner's words are the server's: a link cannot put its own on the page.
    forged = client.get(f"/endpoints/{endpoint['id']}?notice=Pay+now&count=x")
    assert 'id="notice"' not in forged.get_data(as_text=True)
    deliver.run(open_app.config, once=True)
    assert len(receiver.accepted) == 2
    healthy = client.get("/endpoints").get_data(as_text=True)
    assert ">ok<" in healthy
    assert client.get("/endpoints/nope").status_code == 404


def test_metrics_count_deliveries_by_endpoint_and_outcome(open_app, ledger, receiver):
    client = open_app.test_client()
    receiver.plan = ["fail"]
    endpoint = create(client, url=receiver.url).get_json()
    record(ledger, failed_transcode("v1"))
    record(ledger, failed_transcode("v2"))
    # Run in another thread's ledger connections: the figures come from the ledger.
    worker = threading.Thread(
        target=deliver.run,
        args=({**open_app.config, "DELIVERY_RETRY_SECONDS": [0]},),
        kwargs={"once": True},
    )
    worker.start()
    worker.join(30)
    text = client.get("/metrics").get_data(as_text=True)
    eid = endpoint["id"]
    assert f'jobledger_deliveries_total{{endpoint="{eid}",outcome="delivered"}} 2.0' in text
    assert f'jobledger_deliveries_total{{endpoint="{eid}",outcome="failed_attempt"}} 1.0' in text
    assert "jobledger_delivery_attempt_seconds_count 3.0" in text
    assert f'jobledger_deliveries_pending{{endpoint="{eid}"}}' not in text
    assert "jobledger_oldest_pending_message_age_seconds 0.0" in text
    record(ledger, failed_transcode("v3"))
    ledger.deliveries.fan_out(datetime.now(UTC))
    text = client.get("/metrics").get_data(as_text=True)
    assert f'jobledger_deliveries_pending{{endpoint="{eid}"}} 1.0' in text


# -- SNS topics and SQS queues, through boto3, against moto's server ------------------------


def test_sqs_fifo_and_sns_endpoints_get_signed_messages(ledger, make_app, moto_server):
    import boto3

    from tests.receivers import spec_verify

    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    fifo = sqs.create_queue(QueueName="jobs.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    plain = sqs.create_queue(QueueName="topic-copy")["QueueUrl"]
    topic = sns.create_topic(Name="jobs")["TopicArn"]
    plain_arn = sqs.get_queue_attributes(QueueUrl=plain, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=plain_arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    client = make_app().test_client()
    queue_url = "https://sqs.us-east-1.amazonaws.com/123456789012/jobs.fifo"
    to_queue = create(client, url=queue_url).get_json()
    to_topic = create(client, url=topic).get_json()
    job = ledger.submissions.begin(
        provider="aliyun",
        service="vod",
        kind="preprocess",
        operation="aliyun.vod.SubmitPreprocessJobs",
        params={"VideoId": "v1"},
        metadata='{"order": 1}',
    )
    ledger.submissions.finish(job["id"], state="submitted", provider_job_id="pj1")
    summary = deliver.run(make_app().config, once=True).lines[0]
    assert summary["delivered"] == 4, summary
    got = sqs.receive_message(
        QueueUrl=fifo,
        MaxNumberOfMessages=10,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
        WaitTimeSeconds=1,
    )["Messages"]
    assert [json.loads(m["Body"])["data"]["sequence"] for m in got] == [1, 2]
    for message in got:
        body = json.loads(message["Body"])
        headers = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
        assert message["Attributes"]["MessageGroupId"] == job["id"]
        assert message["Attributes"]["MessageDeduplicationId"] == body["id"]
        assert headers["webhook-id"] == body["id"]
        assert spec_verify(to_queue["secret"], headers, message["Body"].encode())
        assert body["data"]["metadata"] == {"order": 1}
    copied = sqs.receive_message(
        QueueUrl=plain, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=1
    )["Messages"]
    assert sorted(json.loads(m["Body"])["type"] for m in copied) == [
        "job.submitted",
        "job.submitting",
    ]
    message = copied[0]
    headers = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
    assert spec_verify(to_topic["secret"], headers, message["Body"].encode())
    sns.close()
    sqs.close()


def test_a_missing_queue_is_a_failed_attempt(ledger, make_app, moto_server):
    client = make_app().test_client()
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/missing"
    endpoint = create(client, url=url).get_json()
    record(ledger, failed_transcode("v1"))
    deliver.run(make_app(DELIVERY_RETRY_SECONDS=[]).config, once=True)
    [delivery], _ = ledger.deliveries.search(endpoint["id"])
    assert delivery["status"] == "failed"
    assert delivery["attempts"][0]["error"].startswith("SQS send failed")


@pytest.mark.parametrize(
    "name, value",
    [
        ("DELIVERY_RETRY_SECONDS", "5,soon,60"),
        ("DELIVERY_TIMEOUT_SECONDS", "0"),
        ("DELIVERY_TIMEOUT_SECONDS", "15s"),
        ("DELIVERY_DISABLE_AFTER_SECONDS", "five days"),
        ("DELIVERY_ALLOW_PRIVATE", "maybe"),
    ],
)
def test_malformed_delivery_settings_stop_start_up_naming_the_variable(name, value):
    from receiver import config

    with pytest.raises(config.ConfigError, match=f"RECEIVER_{name} is malformed"):
        config.from_environ({f"RECEIVER_{name}": value})
    assert config.from_environ({"RECEIVER_DELIVERY_RETRY_SECONDS": "1, 2,3"}) == {
        "DELIVERY_RETRY_SECONDS": [1, 2, 3]
    }
