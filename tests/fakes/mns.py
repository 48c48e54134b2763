"""A local fake of the Alibaba Cloud MNS (Simple Message Queue) queue REST API.

Why it exists: jobledger consumes MNS only through the official SDK ``aliyun-mns-sdk`` (module
``mns``). Tests, benchmarks and kill tests need a queue that behaves like the real one
(signatures, visibility timeouts, receipt handles, long polling, error XML) without network
access or an account. The fake speaks API version 2015-06-06 exactly as SDK 1.3.0 sends and
parses it (MNS API reference: request signing, queue and message operations).

In-process: ``with FakeMNS(access_key_id=..., access_key_secret=...) as mns: ...``.
As a process (prints one line, the endpoint, once listening; serves until SIGTERM/SIGINT)::

    python -m tests.fakes.mns --port 0 --queues a,b --access-key-id AK --access-key-secret SK

Not implemented: topics, subscriptions, ListQueue, account attributes, message properties, FIFO
message groups, message retention expiry and QPS limits.
"""

from __future__ import annotations

import argparse
import base64
import email.utils
import hashlib
import heapq
import hmac
import itertools
import re
import secrets
import signal
import socket
import sys
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote
from xml.sax.saxutils import escape

XMLNS = "http://mns.aliyuncs.com/doc/v1/"
API_VERSION = "2015-06-06"
MAX_BATCH = 16  # batch send / receive / delete / peek limit in the MNS docs
MAX_WAIT_SECONDS = 30  # waitseconds and PollingWaitSeconds range 0-30
MAX_CLOCK_SKEW_S = 15 * 60  # the service rejects a Date more than 15 minutes off
DEFAULT_PRIORITY = 8
# Handles are hex because the SDK puts them into the URL without encoding them.
_HANDLE_RE = re.compile(r"[0-9a-f]{32}")
# Characters XML 1.0 cannot carry, so a real queue cannot hold them either.
_XML_INVALID_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
# (element, _Queue attribute, low, high): queue attributes with their documented ranges.
_QUEUE_ATTRS = [
    ("VisibilityTimeout", "visibility_timeout", 1, 43200),
    ("MaximumMessageSize", "maximum_message_size", 1024, 65536),
    ("MessageRetentionPeriod", "message_retention_period", 60, 604800),
    ("DelaySeconds", "delay_seconds", 0, 604800),
    ("PollingWaitSeconds", "polling_wait_seconds", 0, MAX_WAIT_SECONDS),
]
# Status and message of every error code the fake answers with, as documented in
# https://www.alibabacloud.com/help/doc-detail/27501.html ("Degist" is the service's spelling).
_ERRORS = {
    "MissingAuthorizationHeader": (400, "Authorization header is required."),
    "InvalidAuthorizationHeader": (400, "The Authorization header format is invalid."),
    "MissingDateHeader": (400, "Date header is required."),
    "InvalidDateHeader": (400, "The Date header format is invalid."),
    "InvalidAccessKeyId": (403, "The AccessKey Id you provided is not exist."),
    "SignatureDoesNotMatch": (403, "The request signature does not match the one calculated."),
    "TimeExpired": (408, "The http request you sent is expired."),
    "InvalidDegist": (400, "The Content-MD5 you specified is invalid."),
    "InvalidRequestURL": (400, "Http request URL format invalid."),
    "MalformedXML": (400, "The XML you provided was not well-formed."),
    "InvalidArgument": (400, "The XML you provided did not validate against our schema."),
    "MissingReceiptHandle": (400, "ReceiptHandle is required."),
    "MissingVisibilityTimeout": (400, "VisibilityTimeout is required."),
    "ReceiptHandleError": (400, "The receipt handle you provide is not valid."),
    "QueueNotExist": (404, "The queue name you provided is not exist."),
    "MessageNotExist": (404, "Message not exist."),
    "QueueAlreadyExist": (409, "The queue you want to create is already exist."),
}


class MNSError(Exception):
    """An error answer. ``body`` replaces the <Error> document (BatchDeleteMessage's <Errors>)."""

    def __init__(self, status: int, code: str, message: str, body: str | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.body = status, code, message, body


def _fail(code: str, message: str | None = None) -> MNSError:
    status, default = _ERRORS[code]
    return MNSError(status, code, message or default)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _elems(pairs) -> str:
    """XML elements with escaped text; CR is a character reference so a parser keeps it."""
    return "".join(f"<{k}>{escape(str(v)).replace(chr(13), '&#13;')}</{k}>" for k, v in pairs)


def _doc(root: str, inner: str) -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<{root} xmlns="{XMLNS}">{inner}</{root}>'


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _parse_xml(body: bytes, *root_tags: str) -> ET.Element:
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        raise _fail("MalformedXML") from None
    if _local(root.tag) not in root_tags:
        raise _fail("InvalidArgument")
    return root


def _int_arg(raw: str | None, name: str, low: int, high: int, default: int | None = None) -> int:
    """An integer parameter, range-checked as the service does (400 InvalidArgument)."""
    if raw is None:
        if default is None:
            raise _fail(f"Missing{name}")
        return default
    value = int(raw) if re.fullmatch(r"-?\d+", raw) else low - 1
    if not low <= value <= high:
        raise _fail("InvalidArgument", f"The value of {name} should between {low} and {high}.")
    return value


@dataclass
class _Message:
    message_id: str
    body: str
    body_md5: str
    seq: int
    enqueue_time: int
    priority: int
    next_visible: int
    dequeue_count: int = 0
    first_dequeue_time: int = 0  # 0 until first received
    handle: str | None = None

    def fields(self, received: bool) -> str:
        """Children of <Message>. The SDK requires all of them (else RespDataDamaged); a peek
        has no ReceiptHandle / NextVisibleTime."""
        pairs = [("MessageId", self.message_id)]
        pairs += [("ReceiptHandle", self.handle)] if received else []
        pairs += [("MessageBodyMD5", self.body_md5), ("MessageBody", self.body)]
        pairs += [("EnqueueTime", self.enqueue_time)]
        pairs += [("NextVisibleTime", self.next_visible)] if received else []
        pairs += [("FirstDequeueTime", self.first_dequeue_time)]
        return _elems(pairs + [("DequeueCount", self.dequeue_count), ("Priority", self.priority)])


@dataclass
class _Queue:
    """One queue. ``ready`` is a heap of visible messages by (priority, seq); ``waiting`` a heap
    of invisible ones by next visible time. Stale heap entries are skipped when popped."""

    name: str
    visibility_timeout: int = 30
    maximum_message_size: int = 65536
    message_retention_period: int = 345600
    delay_seconds: int = 0
    polling_wait_seconds: int = 0
    logging_enabled: bool = False
    create_time: int = field(default_factory=lambda: int(time.time()))
    messages: dict[str, _Message] = field(default_factory=dict)
    handles: dict[str, str] = field(default_factory=dict)  # receipt handle -> message id
    ready: list = field(default_factory=list)
    waiting: list = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    waiters: int = 0

    def promote(self, now: int) -> None:
        """Move messages whose NextVisibleTime has passed from ``waiting`` to ``ready``."""
        while self.waiting and self.waiting[0][0] <= now:
            when, seq, mid = heapq.heappop(self.waiting)
            msg = self.messages.get(mid)
            if msg is not None and msg.next_visible == when:
                heapq.heappush(self.ready, (msg.priority, seq, mid))

    def hide(self, msg: _Message, until: int) -> None:
        msg.next_visible = until
        heapq.heappush(self.waiting, (until, msg.seq, msg.message_id))

    def counts(self, now: int) -> dict[str, int]:
        """Visible, in-flight and delayed (invisible, never received) message counts."""
        counts = {"ActiveMessages": 0, "InactiveMessages": 0, "DelayMessages": 0}
        for m in self.messages.values():
            if m.next_visible <= now:
                counts["ActiveMessages"] += 1
            else:
                counts["InactiveMessages" if m.dequeue_count else "DelayMessages"] += 1
        return counts


class FakeMNS:
    """A threaded HTTP/1.1 MNS server on ``host:port`` (port 0: ephemeral), started at once.

    All state lives under one ``threading.Condition``; long polls wait on it, so concurrent
    consumers (threads or processes) always get distinct messages and nothing busy-loops.

    The SDK never closes its keep-alive socket, and an unclosed socket is a ResourceWarning (an
    error under filterwarnings=error): close it (``account.mns_client.close_connection()``), or
    pass ``keep_alive=False`` to answer "Connection: close" so http.client closes it after each
    response (the SDK reconnects by itself).
    """

    def __init__(
        self,
        access_key_id: str = "AKID",
        access_key_secret: str = "secret",
        host: str = "127.0.0.1",
        port: int = 0,
        keep_alive: bool = True,
    ):
        self.access_key_id, self.access_key_secret = access_key_id, access_key_secret
        self.keep_alive = keep_alive
        self._cond = threading.Condition()
        self._queues: dict[str, _Queue] = {}
        self._requests: list[tuple[str, str, int]] = []
        self._failures: list[tuple[int, str, str]] = []
        self._seq = itertools.count(1)
        self._node = secrets.token_hex(8).upper()
        self._closed = False
        self._server = _Server((host, port), self)
        self.endpoint = f"http://{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    # ------------------------------------------------------------------ test-facing helpers
    def __enter__(self) -> FakeMNS:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop: end long polls, drop keep-alive connections, join the handler threads."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._server.shutdown()
        self._thread.join()
        self._server.drop_connections()
        self._server.server_close()

    def create_queue(self, name: str, visibility_timeout: int = 30, **attrs) -> None:
        """Create a queue, or reset its attributes (``attrs``: other ``_Queue`` fields)."""
        with self._cond:
            queue = self._queues.setdefault(name, _Queue(name))
            for key, value in {"visibility_timeout": visibility_timeout, **attrs}.items():
                setattr(queue, key, value)

    def send(self, queue: str, body: str, delay_seconds: int = 0, priority: int = 8) -> str:
        """Enqueue ``body`` exactly as given (no base64) without HTTP; return its MessageId."""
        if not body or _XML_INVALID_RE.search(body):
            raise ValueError("an MNS message body must be non-empty XML 1.0 text")
        with self._cond:
            return self._enqueue(self._queue(queue), body, delay_seconds, priority).message_id

    def pending(self, queue: str) -> int:
        """Messages not yet deleted, visible or in flight."""
        with self._cond:
            return len(self._queue(queue).messages)

    def messages(self, queue: str) -> list[dict]:
        """Snapshots of the undeleted messages in enqueue order (times in epoch ms)."""
        with self._cond:
            now, msgs = _now_ms(), sorted(self._queue(queue).messages.values(), key=lambda m: m.seq)
            keys = ("message_id", "body", "dequeue_count", "first_dequeue_time", "enqueue_time")
            return [
                {k: getattr(m, k) for k in keys}
                | {"visible": m.next_visible <= now, "next_visible_time": m.next_visible}
                | {"priority": m.priority}
                for m in msgs
            ]

    def deleted(self, queue: str) -> list[str]:
        """Bodies deleted so far, in delete order (for exactly-once assertions)."""
        with self._cond:
            return list(self._queue(queue).deleted)

    def waiters(self, queue: str) -> int:
        """Receive requests now held in a long poll on ``queue`` (to sync tests, not sleep)."""
        with self._cond:
            return self._queue(queue).waiters

    @property
    def requests(self) -> list[tuple[str, str, int]]:
        """(method, path_with_query, status) of every request, in the order they finished."""
        with self._cond:
            return list(self._requests)

    def fail_next(
        self, n: int = 1, status: int = 500, code: str = "InternalError", message: str = ""
    ) -> None:
        """Answer the next ``n`` requests with this MNS error XML, before authentication."""
        with self._cond:
            self._failures.extend([(status, code, message or "Interal error.")] * n)

    # ------------------------------------------------------------------ HTTP request handling
    def handle(self, method: str, target: str, headers, body: bytes):
        """Answer one request: (status, XML text or "", extra headers). Never raises MNSError."""
        request_id = secrets.token_hex(12).upper()
        try:
            with self._cond:
                failure = self._failures.pop(0) if self._failures else None
            if failure:
                raise MNSError(*failure)
            self._authenticate(method, target, headers, body)
            with self._cond:
                status, payload, extra = self._route(method, target, body, headers)
        except MNSError as err:
            host_id = f"http://{headers.get('Host', self.endpoint[7:])}"
            pairs = [("Code", err.code), ("Message", err.message)]
            pairs += [("RequestId", request_id), ("HostId", host_id)]  # the SDK requires all 4
            status, payload, extra = err.status, err.body or _doc("Error", _elems(pairs)), {}
        with self._cond:
            self._requests.append((method, target, status))
        return status, payload, {"x-mns-request-id": request_id, **extra}

    def _authenticate(self, method: str, target: str, headers, body: bytes) -> None:
        """Check ``Authorization: MNS <id>:base64(HMAC-SHA1(secret, string-to-sign))`` where
        string-to-sign = VERB, Content-MD5, Content-Type, Date, each + "\\n", then the sorted
        lower-case ``x-mns-*: value\\n`` headers, then the path with query exactly as sent."""
        auth, date = headers.get("Authorization"), headers.get("Date")
        match = re.fullmatch(r"MNS ([^:\s]+):(\S+)", (auth or "").strip())
        if not auth or not match or not date:
            missing = "MissingAuthorizationHeader" if not auth else "MissingDateHeader"
            raise _fail("InvalidAuthorizationHeader" if auth and not match else missing)
        try:
            sent_at = email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            raise _fail("InvalidDateHeader") from None
        if not hmac.compare_digest(match.group(1).encode(), self.access_key_id.encode()):
            raise _fail("InvalidAccessKeyId")
        md5 = headers.get("Content-MD5", "")
        x_mns = sorted((k.lower(), v) for k, v in headers.items() if k.lower()[:6] == "x-mns-")
        canonical = "".join(f"{k}:{v}\n" for k, v in x_mns)
        to_sign = f"{method}\n{md5}\n{headers.get('Content-Type', '')}\n{date}\n{canonical}{target}"
        digest = hmac.new(self.access_key_secret.encode(), to_sign.encode(), hashlib.sha1).digest()
        if not hmac.compare_digest(base64.b64encode(digest), match.group(2).encode()):
            raise _fail("SignatureDoesNotMatch")
        if abs(time.time() - sent_at) > MAX_CLOCK_SKEW_S:
            raise _fail("TimeExpired")
        if md5:  # the SDK sends base64 of the *hex* digest; the standard form is accepted too
            raw = hashlib.md5(body)
            forms = (raw.hexdigest().encode(), raw.digest())
            if md5 not in {base64.b64encode(form).decode() for form in forms}:
                raise _fail("InvalidDegist")

    def _route(self, method: str, target: str, body: bytes, headers):
        path, _, query = target.partition("?")
        params = {}
        for item in filter(None, query.split("&")):  # not parse_qs, which turns "+" into " "
            key, _, value = item.partition("=")
            params[unquote(key).lower()] = unquote(value)  # the SDK and the docs differ in case
        parts = path.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "queues" and parts[1]:
            return self._queue_op(method, parts[1], params, body, headers)
        if len(parts) == 3 and parts[0] == "queues" and parts[2] == "messages":
            return self._message_op(method, self._queue(parts[1]), params, body)
        raise _fail("InvalidRequestURL")

    def _queue(self, name: str) -> _Queue:
        if name not in self._queues:
            raise _fail("QueueNotExist")
        return self._queues[name]

    def _queue_op(self, method: str, name: str, params: dict, body: bytes, headers):
        """CreateQueue (PUT), SetQueueAttributes (PUT ?metaoverride=true), Get, Delete."""
        if method == "GET":
            q = self._queue(name)
            pairs = [("QueueName", q.name), ("CreateTime", q.create_time)]
            pairs += [("LastModifyTime", q.create_time), *q.counts(_now_ms()).items()]
            pairs += [(tag, getattr(q, attr)) for tag, attr, _, _ in _QUEUE_ATTRS]
            pairs += [("LoggingEnabled", str(q.logging_enabled))]
            return 200, _doc("Queue", _elems(pairs)), {}
        if method == "DELETE":
            self._queues.pop(name, None)
            self._cond.notify_all()  # long polls on it now answer QueueNotExist
            return 204, "", {}
        if method != "PUT":
            raise _fail("InvalidRequestURL")
        fields = {_local(e.tag): e.text or "" for e in _parse_xml(body or b"<Queue/>", "Queue")}
        wanted = {a: _int_arg(fields[t], t, lo, hi) for t, a, lo, hi in _QUEUE_ATTRS if t in fields}
        if "LoggingEnabled" in fields:
            wanted["logging_enabled"] = fields["LoggingEnabled"].lower() == "true"
        location = {"Location": f"http://{headers.get('Host')}/queues/{name}"}
        override = params.get("metaoverride") == "true"
        if not override and name in self._queues:  # create again: same attributes 204, else 409
            if any(getattr(self._queues[name], a) != v for a, v in wanted.items()):
                raise _fail("QueueAlreadyExist")
            return 204, "", location
        q = self._queue(name) if override else self._queues.setdefault(name, _Queue(name))
        for attr, value in wanted.items():
            setattr(q, attr, value)
        return (204 if override else 201), "", location

    def _message_op(self, method: str, q: _Queue, params: dict, body: bytes):
        if method == "POST":  # SendMessage / BatchSendMessage
            root = _parse_xml(body, "Message", "Messages")
            single = _local(root.tag) == "Message"
            items = [root] if single else list(root)
            if not 1 <= len(items) <= MAX_BATCH:
                raise _fail("InvalidArgument", f"Batch size should between 1 and {MAX_BATCH}.")
            parsed = [self._parse_send(q, item) for item in items]  # validate all, then enqueue
            sent = [self._enqueue(q, *args) for args in parsed]
            ids = [
                _elems([("MessageId", m.message_id), ("MessageBodyMD5", m.body_md5)]) for m in sent
            ]
            if single:
                return 201, _doc("Message", ids[0]), {}
            return 201, _doc("Messages", "".join(f"<Message>{i}</Message>" for i in ids)), {}
        if method == "GET":  # ReceiveMessage / BatchReceiveMessage / PeekMessage / BatchPeek
            n = _int_arg(params.get("numofmessages"), "numOfMessages", 1, MAX_BATCH, 1)
            peek = params.get("peekonly", "").lower() == "true"
            wait = 0 if peek else q.polling_wait_seconds  # no waitseconds: the queue's default
            wait = _int_arg(params.get("waitseconds"), "waitseconds", 0, MAX_WAIT_SECONDS, wait)
            got = self._take(q.name, n, wait, peek)
            if "numofmessages" in params:
                inner = "".join(f"<Message>{m.fields(not peek)}</Message>" for m in got)
                return 200, _doc("Messages", inner), {}
            return 200, _doc("Message", got[0].fields(not peek)), {}
        if method == "DELETE" and "receipthandle" in params:  # DeleteMessage
            self._delete(q, params["receipthandle"])
            return 204, "", {}
        if method == "DELETE":  # BatchDeleteMessage: 204 only if every handle was deleted
            handles = [e.text or "" for e in _parse_xml(body, "ReceiptHandles")]
            if not 1 <= len(handles) <= MAX_BATCH:
                raise _fail("InvalidArgument", f"Batch size should between 1 and {MAX_BATCH}.")
            errors = []
            for handle in handles:
                try:
                    self._delete(q, handle)
                except MNSError as err:
                    pairs = [("ErrorCode", err.code), ("ErrorMessage", err.message)]
                    errors.append(f"<Error>{_elems([*pairs, ('ReceiptHandle', handle)])}</Error>")
            if errors:  # the SDK turns these into MNSServerException.sub_errors
                raise MNSError(404, "", "", body=_doc("Errors", "".join(errors)))
            return 204, "", {}
        if method == "PUT":  # ChangeMessageVisibility: new handle, the old one dies
            if "receipthandle" not in params:
                raise _fail("MissingReceiptHandle")
            timeout = _int_arg(params.get("visibilitytimeout"), "VisibilityTimeout", 1, 43200)
            msg = self._check_handle(q, params["receipthandle"])
            self._new_handle(q, msg)
            q.hide(msg, _now_ms() + timeout * 1000)
            self._cond.notify_all()  # a long poll may now have a nearer wake-up time
            pairs = [("ReceiptHandle", msg.handle), ("NextVisibleTime", msg.next_visible)]
            return 200, _doc("ChangeVisibility", _elems(pairs)), {}  # root the SDK looks for
        raise _fail("InvalidRequestURL")

    # ------------------------------------------------------------------ queue mechanics (locked)
    def _parse_send(self, q: _Queue, elem: ET.Element) -> tuple[str, int, int]:
        fields = {_local(e.tag): e.text or "" for e in elem}
        body = fields.get("MessageBody", "")
        if not 1 <= len(body.encode()) <= q.maximum_message_size:
            limit = q.maximum_message_size
            raise _fail("InvalidArgument", f"MessageBody should be 1 to {limit} bytes.")
        delay = _int_arg(fields.get("DelaySeconds"), "DelaySeconds", 0, 604800, q.delay_seconds)
        return body, delay, _int_arg(fields.get("Priority"), "Priority", 1, 16, DEFAULT_PRIORITY)

    def _enqueue(self, q: _Queue, body: str, delay_seconds: int, priority: int) -> _Message:
        now, seq = _now_ms(), next(self._seq)
        md5 = hashlib.md5(body.encode()).hexdigest().upper()  # upper-case as the service sends
        msg = _Message(f"{self._node}-1-{now:X}-{seq:09d}", body, md5, seq, now, priority, now)
        q.messages[msg.message_id] = msg
        if delay_seconds:
            q.hide(msg, now + delay_seconds * 1000)
        else:
            heapq.heappush(q.ready, (priority, seq, msg.message_id))
        self._cond.notify_all()
        return msg

    def _take(self, name: str, n: int, wait_seconds: int, peek: bool) -> list[_Message]:
        """Receive (or peek) up to n visible messages, holding the request up to wait_seconds.

        Receiving hides each message for the queue's VisibilityTimeout, counts the dequeue,
        stamps FirstDequeueTime once and issues a new receipt handle."""
        deadline = time.monotonic() + wait_seconds
        while True:
            q, now = self._queue(name), _now_ms()  # looked up again: it may have been deleted
            q.promote(now)
            if peek:
                ids = dict.fromkeys(e[2] for e in sorted(q.ready) if e[2] in q.messages)
                got = [q.messages[mid] for mid in list(ids)[:n]]
            else:
                got = []
                while q.ready and len(got) < n:
                    msg = q.messages.get(heapq.heappop(q.ready)[2])
                    if msg is None or msg.next_visible > now:
                        continue  # stale heap entry
                    msg.dequeue_count += 1
                    msg.first_dequeue_time = msg.first_dequeue_time or now
                    self._new_handle(q, msg)
                    q.hide(msg, now + q.visibility_timeout * 1000)
                    got.append(msg)
            if got:
                return got
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closed:
                raise _fail("MessageNotExist")
            if q.waiting:  # wake up when the next invisible message turns visible
                remaining = min(remaining, (q.waiting[0][0] - now) / 1000 + 0.001)
            q.waiters += 1
            try:
                self._cond.wait(remaining)
            finally:
                q.waiters -= 1

    def _new_handle(self, q: _Queue, msg: _Message) -> None:
        q.handles.pop(msg.handle or "", None)
        msg.handle = secrets.token_hex(16)
        q.handles[msg.handle] = msg.message_id

    def _check_handle(self, q: _Queue, handle: str) -> _Message:
        """A handle is valid only for the latest receive, and only before NextVisibleTime."""
        if not _HANDLE_RE.fullmatch(handle):
            raise _fail("ReceiptHandleError")
        msg = q.messages.get(q.handles.get(handle, ""))
        if msg is None or msg.handle != handle or msg.next_visible <= _now_ms():
            raise _fail("MessageNotExist")
        return msg

    def _delete(self, q: _Queue, handle: str) -> None:
        msg = self._check_handle(q, handle)
        del q.messages[msg.message_id], q.handles[handle]
        q.deleted.append(msg.body)


class _Handler(BaseHTTPRequestHandler):
    """Thin HTTP/1.1 adapter. It always reads the whole body and always sends Content-Length,
    204s included, because the SDK reuses one connection for all its requests."""

    protocol_version = "HTTP/1.1"
    server_version = "FakeMNS/1.0"
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid 40 ms stalls

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        fake = self.server.fake
        status, payload, headers = fake.handle(self.command, self.path, self.headers, body)
        data = payload.encode("utf-8")
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("x-mns-version", API_VERSION)
        if data:
            self.send_header("Content-Type", "text/xml;charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        if not fake.keep_alive:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = _serve

    def log_message(self, format, *args) -> None:  # quiet; FakeMNS.requests has the log
        pass


class _Server(ThreadingHTTPServer):
    """Tracks open connections so close() can end idle keep-alive handlers, then join them."""

    daemon_threads = True

    def __init__(self, address, fake: FakeMNS):
        self.fake, self._conns, self._conns_lock = fake, set(), threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request, client_address) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # a client hanging up is no error
            super().handle_error(request, client_address)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.mns", description="Fake MNS.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--queues", default="", help="comma-separated queues to create")
    parser.add_argument("--visibility-timeout", type=int, default=30)
    parser.add_argument("--access-key-id", default="AKID")
    parser.add_argument("--access-key-secret", default="secret")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with FakeMNS(args.access_key_id, args.access_key_secret, args.host, args.port) as fake:
        for name in filter(None, (n.strip() for n in args.queues.split(","))):
            fake.create_queue(name, visibility_timeout=args.visibility_timeout)
        print(fake.endpoint, flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
