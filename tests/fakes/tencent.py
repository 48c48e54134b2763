"""Local fakes of the Tencent Cloud VOD APIs, for tests.

Two threaded HTTP servers on 127.0.0.1 (port 0), modelled on Tencent's API documentation:

* ``FakeTencentAPI``: API 3.0 (``POST /`` + JSON, TC3-HMAC-SHA256), driven by the official
  ``tencentcloud-sdk-python-vod`` SDK via ``HttpProfile(protocol="http", endpoint=api.endpoint)``.
* ``FakeTencentV2``: the legacy ``/v2/index.php`` API (HmacSHA1/HmacSHA256, ``{"code": ...}``).

Both check signatures strictly, because a fake that accepts anything would hide signing bugs
in the project's clients. Both model reliable-callback delivery (PullEvents/ConfirmEvents):
a long poll that returns at most 16 events, each delivery with a fresh handle, and
redelivery with a new handle when a handle is not confirmed within ``confirm_timeout``.

Choices where Tencent's docs are silent or ambiguous:

* An empty long poll answers success with an empty list (v3 ``EventSet: []``, v2
  ``eventList: []``), as the docs' long-poll description and Tencent's own demo server
  (tencentyun/vod-xiaoshipin-server, which logs "not callback event" on an empty EventSet)
  imply. The per-action error lists in tencentcloud-sdk-go also name ``ResourceNotFound``
  for PullEvents, and that demo's v2 version treated PullEvent ``code == 4000`` as "nothing
  to pull": simulate those answers with ``fail_next``.
* Error codes follow the per-action lists in tencentcloud-sdk-go's vod client: unknown or
  expired ConfirmEvents handle -> ``InvalidParameterValue`` (the only parameter error listed;
  the docs say "parameter error (4000)", which is the v2 code the v2 fake uses), unknown
  DescribeTaskDetail TaskId -> ``InvalidParameterValue.TaskId`` ("task ID does not exist").
  Confirmation is all-or-nothing: if any handle is bad, none is confirmed.
* ``submissions`` only holds accepted submissions; ``requests`` records every attempt.
"""

from __future__ import annotations

import base64
import bisect
import copy
import hashlib
import hmac
import json
import sys
import threading
import time
import traceback
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

API_VERSION = "2018-07-17"
V2_PATH = "/v2/index.php"
MAX_EVENTS_PER_PULL = 16  # PullEvents doc: "at most 16 events per call"
SIGNATURE_WINDOW = 300  # seconds of allowed clock skew (API 3.0 doc: five minutes)


def v2_signature(method: str, host: str, path: str, params: dict, secret_key: str) -> str:
    """Signature of a v2 request (reference §1.2): raw values, ``_`` -> ``.`` in names,
    names sorted bytewise, ``METHOD + host + path + "?" + k=v&...``, base64 HMAC-SHA1, or
    HMAC-SHA256 when ``SignatureMethod`` is exactly ``HmacSHA256``."""
    p = {k.replace("_", "."): str(v) for k, v in params.items() if k != "Signature"}
    alg = hashlib.sha256 if p.get("SignatureMethod") == "HmacSHA256" else hashlib.sha1
    query = "&".join(f"{k}={p[k]}" for k in sorted(p))
    msg = f"{method.upper()}{host}{path}?{query}"
    return base64.b64encode(hmac.new(secret_key.encode(), msg.encode(), alg).digest()).decode()


def tc3_signature(secret_key: str, date: str, service: str, string_to_sign: str) -> str:
    """Hex TC3-HMAC-SHA256 signature, keyed as in the SDK's ``Sign.sign_tc3``."""

    def mac(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()

    key = mac(mac(mac(("TC3" + secret_key).encode(), date), service), "tc3_request")
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


class _Error(Exception):
    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class _EventQueue:
    """At-least-once event queue with the reliable-callback semantics of both API versions."""

    def __init__(self, confirm_timeout: float, pull_wait: float):
        self.confirm_timeout, self.pull_wait = confirm_timeout, pull_wait
        self.cond = threading.Condition()
        self.confirmed: list[dict] = []
        self._seq = 0
        self._events: dict[int, dict] = {}  # seq -> every unconfirmed event
        self._ready: list[int] = []  # seqs waiting to be pulled, ascending (= push order)
        self._inflight: dict[str, tuple[int, float]] = {}  # handle -> (seq, deadline)
        self._closing = False

    def push(self, event: dict) -> None:
        with self.cond:
            self._seq += 1
            self._events[self._seq] = copy.deepcopy(event)
            self._ready.append(self._seq)
            self.cond.notify_all()

    def pending(self) -> list[dict]:
        with self.cond:
            return [copy.deepcopy(self._events[s]) for s in sorted(self._events)]

    def _requeue_expired(self, now: float) -> None:
        for handle, (seq, deadline) in list(self._inflight.items()):
            if deadline <= now:  # the handle dies; the event becomes pullable again
                del self._inflight[handle]
                bisect.insort(self._ready, seq)

    def pull(self) -> list[tuple[str, dict]]:
        """Long poll: return at once if events are ready, else wait up to ``pull_wait``,
        waking up for pushes and for in-flight events whose confirm window lapses."""
        with self.cond:
            end = time.monotonic() + self.pull_wait
            while True:
                now = time.monotonic()
                self._requeue_expired(now)
                if self._ready or self._closing or now >= end:
                    break
                wake = min([end] + [d for _, d in self._inflight.values()])
                self.cond.wait(max(wake - now, 0.001))
            batch = self._ready[:MAX_EVENTS_PER_PULL]
            del self._ready[:MAX_EVENTS_PER_PULL]
            out = []
            for seq in batch:
                handle = uuid.uuid4().hex
                self._inflight[handle] = (seq, time.monotonic() + self.confirm_timeout)
                out.append((handle, copy.deepcopy(self._events[seq])))
            return out

    def confirm(self, handles: list[str]) -> list[str]:
        """Confirm all handles, or none: returns the unknown/expired ones (empty on success)."""
        with self.cond:
            self._requeue_expired(time.monotonic())
            handles = list(dict.fromkeys(handles))
            bad = [h for h in handles if h not in self._inflight]
            if not bad:
                for h in handles:
                    seq, _ = self._inflight.pop(h)
                    self.confirmed.append(self._events.pop(seq))
            return bad

    def close(self) -> None:
        with self.cond:
            self._closing = True
            self.cond.notify_all()


class _Handler(BaseHTTPRequestHandler):
    fake: _FakeServer  # set on a per-server subclass

    def _dispatch(self):
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            status, payload = self.fake._handle(self.command, url, self.headers, body)
        except Exception:  # a bug in the fake: show it, and fail the call loudly
            traceback.print_exc(file=sys.stderr)
            status, payload = 500, {"fake": "internal error, see stderr"}
        data = json.dumps(payload, ensure_ascii=False).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")  # exactly: reference §4.10
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # client gave up on a long poll
            pass

    def log_message(self, format, *args):  # keep test output quiet
        pass

    do_GET = do_POST = _dispatch  # http.server calls do_<METHOD>


class _FakeServer:
    """Server lifecycle, event queue, failure injection and request log shared by both fakes."""

    ACTIONS: dict[str, str] = {}  # action -> name of the method implementing it

    def __init__(
        self, secret_id="AKIDtest", secret_key="secret", confirm_timeout=30.0, pull_wait=5.0
    ):
        self.secret_id, self.secret_key = secret_id, secret_key
        self._seen: set = set()  # dedupe keys of accepted submissions
        self._nonces: dict[tuple[str, str], float] = {}  # v2 replay protection
        self._queue = _EventQueue(confirm_timeout, pull_wait)
        self.confirmed = self._queue.confirmed
        self.submissions: list[dict] = []
        self.tasks: dict[str, dict] = {}
        self.requests: list[tuple] = []
        self._failures: dict[str, list[tuple]] = {}
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self):
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._queue.close()  # release long polls so their handlers finish
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(5)
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def push_event(self, event: dict) -> None:
        """Queue an event for the pull API (a copy is stored)."""
        self._queue.push(event)

    def pending_events(self) -> list[dict]:
        """Events not yet confirmed, queued or in flight, in push order."""
        return self._queue.pending()

    def fail_next(self, action: str, code, message: str, n: int = 1) -> None:
        """Answer the next ``n`` authenticated calls of ``action`` with this documented error."""
        with self._lock:
            self._failures.setdefault(self._canonical(action), []).extend([(code, message)] * n)

    def _canonical(self, action: str) -> str:
        return action

    def _inject_failure(self, action: str) -> None:
        with self._lock:
            pending = self._failures.get(self._canonical(action))
            failure = pending.pop(0) if pending else None
        if failure:
            raise _Error(*failure)

    def _record(self, action: str, status) -> None:
        with self._lock:
            self.requests.append((action, status))

    def _action(self, action: str):
        name = self.ACTIONS.get(self._canonical(action))
        return getattr(self, name) if name else None

    def _handle(self, method, url, headers, body):
        raise NotImplementedError


def _unflatten(flat: dict) -> dict:
    """``{"EventHandles.0": "a"}`` -> ``{"EventHandles": ["a"]}``: the SDK's GET encoding."""
    root: dict = {}
    for key, value in flat.items():
        node, parts = root, key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value

    def fix(node):
        if not isinstance(node, dict):
            return node
        if node and all(k.isdigit() for k in node):
            return [fix(node[k]) for k in sorted(node, key=int)]
        return {k: fix(v) for k, v in node.items()}

    return fix(root)


class FakeTencentAPI(_FakeServer):
    """API 3.0 fake: PullEvents, ConfirmEvents, ProcessMediaByProcedure, DescribeTaskDetail.

    ``tasks`` maps TaskId -> DescribeTaskDetail ``Response`` body without ``RequestId``;
    ``requests`` holds ``(action, "OK" | error code)``.
    """

    APP_ID = "1256768367"
    ACTIONS = {
        "PullEvents": "_pull_events",
        "ConfirmEvents": "_confirm_events",
        "ProcessMediaByProcedure": "_process_media_by_procedure",
        "DescribeTaskDetail": "_describe_task_detail",
    }

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _handle(self, method, url, headers, body):
        action = headers.get("X-TC-Action", "")
        request_id = str(uuid.uuid4())
        try:
            self._authenticate(method, url.path, url.query, headers, body)
            if headers.get("X-TC-Version") != API_VERSION:
                raise _Error("NoSuchVersion", f"version {headers.get('X-TC-Version')!r} not found")
            handler = self._action(action)
            if handler is None:
                raise _Error("InvalidAction", f"action {action!r} not found")
            if method == "GET":
                params = _unflatten(dict(parse_qsl(url.query, keep_blank_values=True)))
            else:
                try:
                    params = json.loads(body or b"{}")
                except ValueError as e:
                    raise _Error("InvalidParameter", f"request body is not JSON: {e}") from e
            self._inject_failure(action)
            result = handler(params)
        except _Error as e:
            self._record(action, e.code)
            error = {"Code": e.code, "Message": e.message}
            return 200, {"Response": {"Error": error, "RequestId": request_id}}
        self._record(action, "OK")
        return 200, {"Response": {**result, "RequestId": request_id}}

    def _authenticate(self, method, path, query, headers, body):
        """Recompute the SDK's TC3 signature (abstract_client._get_tc3_signature)."""
        algorithm, _, rest = headers.get("Authorization", "").partition(" ")
        fields = dict(p.strip().split("=", 1) for p in rest.split(",") if "=" in p)
        try:
            secret_id, date, service, term = fields["Credential"].split("/")
            signed_headers, signature = fields["SignedHeaders"], fields["Signature"]
        except (KeyError, ValueError):
            algorithm = ""
        if algorithm != "TC3-HMAC-SHA256":
            raise _Error("AuthFailure.InvalidAuthorization", "Authorization header is invalid.")
        if secret_id != self.secret_id:
            raise _Error("AuthFailure.SecretIdNotFound", "The SecretId is not found.")
        timestamp = headers.get("X-TC-Timestamp", "")
        if not timestamp.isdigit():
            raise _Error("MissingParameter", "X-TC-Timestamp is missing or invalid.")
        if abs(time.time() - int(timestamp)) > SIGNATURE_WINDOW:
            raise _Error("AuthFailure.SignatureExpire", "Signature expired.")
        names = signed_headers.split(";")
        canonical_headers = "".join(f"{n}:{(headers.get(n) or '').strip()}\n" for n in names)
        if headers.get("X-TC-Content-SHA256") == "UNSIGNED-PAYLOAD":
            body = b"UNSIGNED-PAYLOAD"
        elif method == "GET":
            body = b""
        payload_hash = hashlib.sha256(body).hexdigest()
        canonical_request = "\n".join(
            [method, path, query, canonical_headers, signed_headers, payload_hash]
        )
        expected_date = datetime.fromtimestamp(int(timestamp), UTC).strftime("%Y-%m-%d")
        string_to_sign = "\n".join(
            [
                "TC3-HMAC-SHA256",
                timestamp,
                f"{date}/{service}/{term}",
                hashlib.sha256(canonical_request.encode()).hexdigest(),
            ]
        )
        expected = tc3_signature(self.secret_key, date, service, string_to_sign)
        scope_ok = (date, service, term) == (expected_date, "vod", "tc3_request")
        if not (hmac.compare_digest(expected, signature) and scope_ok and "host" in names):
            raise _Error(
                "AuthFailure.SignatureFailure",
                "The provided credentials could not be validated. "
                "Please check your signature is correct.",
            )

    def _pull_events(self, params):
        events = self._queue.pull()
        return {"EventSet": [dict(event, EventHandle=handle) for handle, event in events]}

    def _confirm_events(self, params):
        handles = params.get("EventHandles")
        if not handles:
            raise _Error("MissingParameter", "EventHandles is required.")
        if not isinstance(handles, list) or len(handles) > MAX_EVENTS_PER_PULL:
            raise _Error("InvalidParameterValue", "EventHandles must be a list of at most 16.")
        bad = self._queue.confirm([str(h) for h in handles])
        if bad:
            raise _Error("InvalidParameterValue", f"EventHandle invalid or expired: {bad[0]}")
        return {}

    def _process_media_by_procedure(self, params):
        if not params.get("ProcedureName"):
            raise _Error("MissingParameter", "ProcedureName is required.")
        file_id = str(params.get("FileId") or "")
        if not file_id and not params.get("MediaStoragePath"):
            raise _Error("MissingParameter", "FileId or MediaStoragePath is required.")
        if file_id.startswith("missing"):
            raise _Error("InvalidParameterValue.FileId", f"FileId {file_id} does not exist.")
        session_id = params.get("SessionId")
        with self._lock:
            if session_id and session_id in self._seen:
                raise _Error("InvalidParameterValue.SessionId", "SessionId is duplicated.")
            if session_id:
                self._seen.add(session_id)
            task_id = f"{self.APP_ID}-Procedure-{uuid.uuid4().hex}t0"
            self.submissions.append(copy.deepcopy(params))
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            self.tasks[task_id] = {
                "TaskType": "Procedure",
                "Status": "PROCESSING",
                "CreateTime": now,
                "BeginProcessTime": now,
                "FinishTime": "",
                "ProcedureTask": {
                    "TaskId": task_id,
                    "Status": "PROCESSING",
                    "ErrCode": 0,
                    "Message": "",
                    "FileId": file_id,
                    "FileName": "",
                    "FileUrl": "",
                    "MediaProcessResultSet": [],
                    "TasksPriority": params.get("TasksPriority", 0),
                    "TasksNotifyMode": params.get("TasksNotifyMode", "Finish"),
                    "SessionContext": params.get("SessionContext", ""),
                    "SessionId": session_id or "",
                    "Operator": "",
                    "OperationType": "",
                },
            }
        return {"TaskId": task_id}

    def _describe_task_detail(self, params):
        task_id = params.get("TaskId")
        if not task_id:
            raise _Error("MissingParameter", "TaskId is required.")
        with self._lock:
            if task_id not in self.tasks:
                raise _Error("InvalidParameterValue.TaskId", f"TaskId {task_id} does not exist.")
            return copy.deepcopy(self.tasks[task_id])


class FakeTencentV2(_FakeServer):
    """Legacy v2 fake: RunProcedure, PullEvent/PullVodEvent, ConfirmEvent/ConfirmVodEvent,
    GetTaskInfo.

    ``tasks`` maps vodTaskId -> GetTaskInfo body (``code``/``message`` default to success);
    ``submissions`` holds the decoded flat params of accepted RunProcedure calls;
    ``requests`` holds ``(action as sent, code)``.
    """

    APP_ID = "1251989944"
    ALIASES = {"PullVodEvent": "PullEvent", "ConfirmVodEvent": "ConfirmEvent"}
    COMMON = {"Action", "Region", "Timestamp", "Nonce", "SecretId", "Signature"}
    COMMON_OPTIONAL = {"SignatureMethod", "Token", "RequestClient"}
    ACTIONS = {
        "RunProcedure": "_run_procedure",
        "PullEvent": "_pull_event",
        "ConfirmEvent": "_confirm_event",
        "GetTaskInfo": "_get_task_info",
    }

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{V2_PATH}"

    def _canonical(self, action: str) -> str:
        return self.ALIASES.get(action, action)

    def _handle(self, method, url, headers, body):
        if url.path != V2_PATH:
            return 404, {"code": 4000, "message": f"unknown path {url.path}"}
        # GET: everything in the query; POST: everything in the body, query ignored.
        raw = url.query if method == "GET" else body.decode("utf-8", "replace")
        params = dict(parse_qsl(raw, keep_blank_values=True))
        action = params.get("Action", "")
        try:
            self._authenticate(method, url.path, headers.get("Host", ""), params)
            handler = self._action(action)
            if handler is None:
                raise _Error(6100, f"unsupported action {action!r}")
            self._inject_failure(action)
            result = handler(params)
        except _Error as e:
            self._record(action, e.code)
            return 200, {"code": e.code, "message": e.message}
        self._record(action, 0)
        return 200, {"code": 0, "message": "", **result}

    def _authenticate(self, method, path, host, params):
        missing = sorted(k for k in self.COMMON if not params.get(k))
        if missing:
            raise _Error(4000, f"missing parameter(s): {', '.join(missing)}")
        if params["SecretId"] != self.secret_id:
            raise _Error(4104, "SecretId does not exist")
        now = time.time()
        ts = params["Timestamp"]
        if not ts.isdigit() or abs(now - int(ts)) > SIGNATURE_WINDOW:
            raise _Error(4500, "request expired: Timestamp too far from server time")
        expected = v2_signature(method, host, path, params, self.secret_key)
        if not hmac.compare_digest(expected, params["Signature"]):
            raise _Error(4100, "authentication failed: signature mismatch")
        with self._lock:  # replay check last, so unauthenticated requests burn no nonce
            self._nonces = {k: t for k, t in self._nonces.items() if now - t <= SIGNATURE_WINDOW}
            key = (params["SecretId"], params["Nonce"])
            if key in self._nonces:
                raise _Error(4500, "replayed request: Nonce already used")
            self._nonces[key] = now

    def _run_procedure(self, p):
        def need(*keys):
            absent = [k for k in keys if not p.get(k)]
            if absent:
                raise _Error(1000, f"invalid parameter: {absent[0]} is required")

        need("procedure", "inputType")
        input_type, file_ids = p["inputType"], []
        if input_type == "SingleFile":
            need("file.id")
            file_ids = [p["file.id"]]
        elif input_type == "MultiFile":
            indexes = {k.split(".")[1] for k in p if k.startswith("fileList.")}
            if not indexes or not all(i.isdigit() for i in indexes) or "0" not in indexes:
                raise _Error(1000, "invalid parameter: fileList.0.id is required")
            need(*(f"fileList.{i}.id" for i in sorted(indexes, key=int)))
            file_ids = [p[f"fileList.{i}.id"] for i in sorted(indexes, key=int)]
        elif input_type == "Stream":
            need("stream.streamId", "stream.startTimeStamp", "stream.endTimeStamp")
            if not (p["stream.startTimeStamp"].isdigit() and p["stream.endTimeStamp"].isdigit()):
                raise _Error(1000, "invalid parameter: stream timestamps must be integers")
        elif input_type == "PullFile":
            need("pull.url", "pull.fileName")
        else:
            raise _Error(1000, f"invalid parameter: inputType {input_type!r}")
        for file_id in file_ids:
            if file_id.startswith("missing"):
                raise _Error(10008, f"file {file_id} does not exist")
        business = frozenset(
            (k, v) for k, v in p.items() if k not in self.COMMON | self.COMMON_OPTIONAL
        )
        with self._lock:
            if business in self._seen:
                raise _Error(50005, "Procedure重复任务已存在")
            self._seen.add(business)
            task_id = f"{self.APP_ID}-Procedure-{uuid.uuid4().hex}"
            self.submissions.append(dict(p))
            now = int(time.time())
            self.tasks[task_id] = {
                "type": "procedure",
                "status": "PROCESSING",
                "createTime": now,
                "beginProcessTime": now,
                "finishTime": now,  # doc: "time the task info was last updated"
                "data": {
                    "vodTaskId": task_id,
                    "status": "PROCESSING",
                    "errCode": 0,
                    "message": "",
                    "fileId": file_ids[0] if input_type == "SingleFile" else "",
                    "metaData": {},
                    "processTaskList": [],
                },
            }
        return {"vodTaskId": task_id}

    def _pull_event(self, p):
        events = self._queue.pull()
        return {"eventList": [{"msgHandle": h, "eventContent": e} for h, e in events]}

    def _confirm_event(self, p):
        handles = [p[k] for k in p if k.startswith("msgHandle.") and k[10:].isdigit()]
        if not handles:
            raise _Error(1000, "invalid parameter: msgHandle.n is required")
        bad = self._queue.confirm(handles)
        if bad:
            raise _Error(4000, f"invalid parameter: msgHandle invalid or expired: {bad[0]}")
        return {}

    def _get_task_info(self, p):
        task_id = p.get("vodTaskId")
        if not task_id:
            raise _Error(4000, "missing parameter: vodTaskId")
        with self._lock:
            if task_id not in self.tasks:
                raise _Error(5000, f"NotFound: task {task_id}")
            return {"code": 0, "message": "", **copy.deepcopy(self.tasks[task_id])}
