"""Tests of the MNS fake (tests/fakes/mns.py), driven through the real aliyun-mns-sdk.

The point is that the fake is faithful to what the SDK sends and parses, so every test goes
through ``mns.account.Account`` except the ones about raw wire details (Date skew, headers).
"""

import base64
import email.utils
import hashlib
import http.client
import json
import select
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
from mns.account import Account
from mns.auth import StaticCredentialsProvider
from mns.mns_client import MNSClient
from mns.mns_exception import MNSServerException
from mns.mns_xml_handler import ErrorDecoder
from mns.queue import Message, QueueMeta

from tests.fakes.mns import FakeMNS

AKID, SECRET, QUEUE = "AKID", "secret", "vod-events"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake():
    with FakeMNS(access_key_id=AKID, access_key_secret=SECRET) as server:
        server.create_queue(QUEUE, visibility_timeout=30)
        yield server


@pytest.fixture
def connect(fake):
    """Make SDK accounts on the fake and close their keep-alive sockets afterwards."""
    accounts = []

    def _connect(key_id=AKID, secret=SECRET, endpoint=None):
        accounts.append(Account(endpoint or fake.endpoint, key_id, secret))
        return accounts[-1]

    yield _connect
    for account in accounts:
        account.mns_client.close_connection()


def raw_queue(account, name=QUEUE):
    queue = account.get_queue(name)
    queue.set_encoding(False)
    return queue


def server_error(call, *args, **kwargs) -> MNSServerException:
    with pytest.raises(MNSServerException) as info:
        call(*args, **kwargs)
    return info.value


def wait_until(predicate, timeout=5.0):
    """Poll a condition (not a fixed sleep) so tests stay fast and deterministic."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_round_trip_raw_and_base64_bodies(fake, connect):
    account = connect()
    raw, encoded = raw_queue(account), account.get_queue(QUEUE)  # set_encoding(True) default
    event = json.dumps({"EventType": "TranscodeComplete", "Note": "a<b&c]]>", "Name": "vidéo"})
    raw.send_message(Message(event))
    encoded.send_message(Message("héllo wörld"))
    wire_b64 = base64.b64encode("héllo wörld".encode()).decode()
    assert [m["body"] for m in fake.messages(QUEUE)] == [event, wire_b64]

    msgs = raw.batch_receive_message(16, wait_seconds=1)
    assert [m.message_body for m in msgs] == [event, wire_b64]
    assert base64.b64decode(msgs[1].message_body).decode() == "héllo wörld"
    for m in msgs:
        assert m.dequeue_count == 1
        assert m.message_body_md5 == hashlib.md5(m.message_body.encode()).hexdigest().upper()
        assert m.next_visible_time - m.first_dequeue_time == 30_000
    assert [m["visible"] for m in fake.messages(QUEUE)] == [False, False]

    raw.batch_delete_message([m.receipt_handle for m in msgs])
    assert fake.pending(QUEUE) == 0
    assert fake.deleted(QUEUE) == [event, wire_b64]


def test_sdk_default_encoding_decodes_base64_and_batch_send(fake, connect):
    queue = connect().get_queue(QUEUE)
    sent = queue.batch_send_message([Message(f"job-{i}") for i in range(3)])
    assert len({m.message_id for m in sent}) == 3
    got = queue.batch_receive_message(16, wait_seconds=0)
    assert [m.message_body for m in got] == [b"job-0", b"job-1", b"job-2"]  # bytes: SDK quirk


def test_server_side_send_keeps_body_exactly(fake, connect):
    body = 'a\r\nb <x a="1"/> & ]]> 中文'
    mid = fake.send(QUEUE, body)
    msg = raw_queue(connect()).receive_message(wait_seconds=0)
    assert (msg.message_id, msg.message_body) == (mid, body)
    with pytest.raises(ValueError):
        fake.send(QUEUE, "bell \x07")


def test_wrong_secret_and_wrong_key_id_are_rejected(fake, connect):
    err = server_error(raw_queue(connect(secret="wrong")).send_message, Message("x"))
    assert err.type == "SignatureDoesNotMatch"
    err = server_error(raw_queue(connect(key_id="OTHER")).receive_message, 0)
    assert err.type in ("InvalidAccessKeyId", "AccessDenied")
    assert [status for _, _, status in fake.requests] == [403, 403]
    assert fake.pending(QUEUE) == 0


def signed_request(fake, method, path, date=None):
    """A body-less request signed with the SDK's own signer, with a chosen Date header."""
    date = date or email.utils.formatdate(time.time(), usegmt=True)
    headers = {"x-mns-version": "2015-06-06", "date": date}
    creds = StaticCredentialsProvider(AKID, SECRET).get_credentials()
    headers["Authorization"] = MNSClient(fake.endpoint).get_signature(method, headers, path, creds)
    conn = http.client.HTTPConnection(fake.endpoint[len("http://") :], timeout=10)
    try:
        conn.request(method, path, headers=headers)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read().decode()
    finally:
        conn.close()


def test_stale_date_is_time_expired_and_wire_headers(fake):
    stale = email.utils.formatdate(time.time() - 20 * 60, usegmt=True)
    path = f"/queues/{QUEUE}/messages?waitseconds=0"
    status, headers, body = signed_request(fake, "GET", path, stale)
    assert status == 408
    assert ErrorDecoder.decodeError(body)[0] == "TimeExpired"
    assert headers["x-mns-request-id"] and headers["x-mns-version"] == "2015-06-06"
    assert headers["Content-Type"] == "text/xml;charset=utf-8"
    assert int(headers["Content-Length"]) == len(body.encode())

    status, headers, body = signed_request(fake, "GET", path)
    code, message, request_id, host_id, _ = ErrorDecoder.decodeError(body)
    assert (status, code, message) == (404, "MessageNotExist", "Message not exist.")
    assert request_id == headers["x-mns-request-id"] and host_id

    status, headers, body = signed_request(fake, "DELETE", "/queues/gone")  # DeleteQueue
    assert (status, body, headers["Content-Length"]) == (204, "", "0")
    assert headers["x-mns-request-id"] and "Content-Type" not in headers


def test_unreceived_message_reappears_after_visibility_timeout(fake, connect):
    fake.create_queue("short", visibility_timeout=1)
    fake.send("short", "retry me")
    queue = raw_queue(connect(), "short")
    first = queue.receive_message(wait_seconds=0)
    assert first.dequeue_count == 1
    assert server_error(queue.receive_message, 0).type == "MessageNotExist"  # invisible now

    second = queue.receive_message(wait_seconds=5)  # long poll wakes when it turns visible
    assert second.message_id == first.message_id and second.dequeue_count == 2
    assert second.receipt_handle != first.receipt_handle
    assert second.first_dequeue_time == first.first_dequeue_time
    assert second.enqueue_time == first.enqueue_time
    assert second.first_dequeue_time >= first.next_visible_time - 1000 - 5  # roughly 1 s later

    assert server_error(queue.delete_message, first.receipt_handle).type == "MessageNotExist"
    queue.delete_message(second.receipt_handle)
    assert fake.deleted("short") == ["retry me"]


def test_change_visibility_issues_new_handle_and_old_one_dies(fake, connect):
    fake.send(QUEUE, "slow job")
    queue = raw_queue(connect())
    msg = queue.receive_message(wait_seconds=0)
    before = int(time.time() * 1000)
    changed = queue.change_message_visibility(msg.receipt_handle, 60)
    assert changed.receipt_handle != msg.receipt_handle
    assert isinstance(changed.next_visible_time, str)  # SDK quirk: not converted to int
    assert int(changed.next_visible_time) >= before + 60_000
    assert fake.messages(QUEUE)[0]["next_visible_time"] == int(changed.next_visible_time)

    assert server_error(queue.delete_message, msg.receipt_handle).type == "MessageNotExist"
    err = server_error(queue.change_message_visibility, msg.receipt_handle, 10)
    assert err.type == "MessageNotExist"
    assert server_error(queue.delete_message, "not+a/handle==").type == "ReceiptHandleError"
    queue.delete_message(changed.receipt_handle)
    assert fake.pending(QUEUE) == 0


def test_batch_delete_partial_failure_reports_sub_errors(fake, connect):
    fake.send(QUEUE, "a")
    fake.send(QUEUE, "b")
    queue = raw_queue(connect())
    a, b = queue.batch_receive_message(16, wait_seconds=0)
    queue.delete_message(a.receipt_handle)
    err = server_error(queue.batch_delete_message, [a.receipt_handle, b.receipt_handle])
    assert err.type == "MessageNotExist"
    assert err.sub_errors == [
        {
            "ErrorCode": "MessageNotExist",
            "ErrorMessage": "Message not exist.",
            "ReceiptHandle": a.receipt_handle,
        }
    ]
    assert fake.pending(QUEUE) == 0 and fake.deleted(QUEUE) == ["a", "b"]


def test_empty_queue_long_poll_and_missing_queue(fake, connect):
    queue = raw_queue(connect())
    started = time.monotonic()
    assert server_error(queue.receive_message, 0).type == "MessageNotExist"
    assert time.monotonic() - started < 0.5

    started = time.monotonic()
    err = server_error(queue.batch_receive_message, 16, wait_seconds=1)
    assert (err.type, err.message) == ("MessageNotExist", "Message not exist.")
    assert 0.9 <= time.monotonic() - started < 3

    assert server_error(raw_queue(connect(), "nope").receive_message, 0).type == "QueueNotExist"


def test_long_poll_wakes_on_send_and_on_delay_expiry(fake, connect):
    queue, result = raw_queue(connect()), {}
    started = time.monotonic()
    poller = threading.Thread(target=lambda: result.update(msg=queue.receive_message(10)))
    poller.start()
    wait_until(lambda: fake.waiters(QUEUE) == 1)
    fake.send(QUEUE, "wake up")
    poller.join(10)
    assert result["msg"].message_body == "wake up" and time.monotonic() - started < 5

    fake.send(QUEUE, "later", delay_seconds=1)
    assert server_error(queue.receive_message, 0).type == "MessageNotExist"
    started = time.monotonic()
    assert queue.receive_message(wait_seconds=5).message_body == "later"
    assert 0.5 < time.monotonic() - started < 4


def test_concurrent_consumers_get_distinct_messages(fake, connect):
    sent = {fake.send(QUEUE, f"event-{i}") for i in range(80)}
    seen: list[list[str]] = [[] for _ in range(4)]

    def consume(out, queue):
        while True:
            try:
                out.extend(m.message_id for m in queue.batch_receive_message(5, wait_seconds=0))
            except MNSServerException as err:
                assert err.type == "MessageNotExist"
                return

    threads = [threading.Thread(target=consume, args=(out, raw_queue(connect()))) for out in seen]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    received = [mid for out in seen for mid in out]
    assert len(received) == len(set(received)) and set(received) == sent
    assert all(not m["visible"] and m["dequeue_count"] == 1 for m in fake.messages(QUEUE))


def test_fail_next_makes_sdk_raise_that_code(fake, connect):
    queue = raw_queue(connect())
    fake.fail_next(2, status=503, code="QpsLimitExceeded", message="slow down")
    for _ in range(2):
        err = server_error(queue.send_message, Message("x"))
        assert (err.type, err.message) == ("QpsLimitExceeded", "slow down")
        assert err.request_id and err.host_id
    queue.send_message(Message("x"))
    assert [s for _, _, s in fake.requests] == [503, 503, 201]
    assert fake.requests[0][:2] == ("POST", f"/queues/{QUEUE}/messages")
    fake.fail_next(1)
    assert server_error(queue.receive_message, 0).type == "InternalError"


def test_peek_does_not_change_visibility(fake, connect):
    fake.send(QUEUE, "first")
    fake.send(QUEUE, "second")
    queue = raw_queue(connect())
    peeked = queue.peek_message()
    assert (peeked.message_body, peeked.dequeue_count) == ("first", 0)
    assert [m.message_body for m in queue.batch_peek_message(16)] == ["first", "second"]
    assert queue.receive_message(0).message_body == "first"
    assert [m.message_body for m in queue.batch_peek_message(16)] == ["second"]


def test_priority_orders_delivery(fake, connect):
    fake.send(QUEUE, "normal")
    fake.send(QUEUE, "urgent", priority=1)
    got = raw_queue(connect()).batch_receive_message(16, wait_seconds=0)
    assert [(m.message_body, m.priority) for m in got] == [("urgent", 1), ("normal", 8)]


def test_queue_create_get_delete_through_sdk(fake, connect):
    queue = raw_queue(connect(), "made-by-sdk")
    url = queue.create(QueueMeta(vis_timeout=45))
    assert url == f"{fake.endpoint}/queues/made-by-sdk"
    assert queue.create(QueueMeta(vis_timeout=45)) == url  # same attributes: idempotent
    assert server_error(queue.create, QueueMeta(vis_timeout=50)).type == "QueueAlreadyExist"
    queue.send_message(Message("m"))
    with warnings.catch_warnings():  # SDK quirk: get_attributes warns about its own fields
        warnings.simplefilter("ignore", DeprecationWarning)
        meta = queue.get_attributes()
        assert (meta.visibility_timeout, meta.active_messages) == (45, 1)
    assert meta.queue_name == "made-by-sdk" and meta.polling_wait_seconds == 0
    queue.delete()
    assert server_error(queue.receive_message, 0).type == "QueueNotExist"


def test_keep_alive_off_closes_sdk_socket_after_each_response():
    with FakeMNS(access_key_id=AKID, access_key_secret=SECRET, keep_alive=False) as fake:
        fake.create_queue(QUEUE)
        account = Account(fake.endpoint, AKID, SECRET)  # deliberately never closed
        queue = raw_queue(account)
        for i in range(3):
            queue.send_message(Message(f"m{i}"))
        assert len(queue.batch_receive_message(16, wait_seconds=0)) == 3
        assert account.mns_client.http.conn.sock is None  # nothing left to leak


@pytest.mark.slow
def test_standalone_process_serves_until_sigterm(tmp_path):
    cmd = [sys.executable, "-m", "tests.fakes.mns", "--port", "0", "--queues", "a,b"]
    cmd += ["--access-key-id", "AK", "--access-key-secret", "SK"]
    with subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert select.select([proc.stdout], [], [], 20)[0], "no endpoint printed"
            endpoint = proc.stdout.readline().strip()
            assert endpoint.startswith("http://127.0.0.1:")
            account = Account(endpoint, "AK", "SK")
            try:
                for name in ("a", "b"):
                    queue = raw_queue(account, name)
                    queue.send_message(Message(f"to {name}"))
                    msg = queue.receive_message(wait_seconds=1)
                    assert msg.message_body == f"to {name}"
                    queue.delete_message(msg.receipt_handle)
            finally:
                account.mns_client.close_connection()
        finally:
            proc.terminate()
            assert proc.wait(timeout=10) == 0
        assert proc.stdout.read() == ""  # exactly one line on stdout
