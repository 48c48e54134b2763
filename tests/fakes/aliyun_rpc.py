"""Local fake of the Alibaba Cloud RPC-style APIs that jobledger calls.

One threaded HTTP server on 127.0.0.1 (port 0) answers VOD (2017-03-21), MPS "mts"
(2014-06-18) and Live (2016-11-01), routed on ``Action`` + ``Version``, the way the
legacy ``aliyunsdkcore`` 2.16.1 talks to the real gateway:

* every parameter (also for POST) arrives in the query string; a form body is merged
  in too and is covered by the signature (reference §7.1);
* signature v1.0 (HMAC-SHA1) is verified byte for byte, with the timestamp window and
  nonce replay checks of the real gateway;
* errors are ``{"RequestId", "HostId", "Code", "Message"}`` with the HTTP status.

Why the SignatureDoesNotMatch message carries ``server string to sign is:<sts>``: the
real gateway does this, and ``AcsClient._get_server_exception`` depends on it. It does
``message.split(':')[1]`` (IndexError without the colon) and, when the server's string
to sign equals its own, rewrites the code to ``InvalidAccessKeySecret``. So a wrong
secret surfaces through the SDK as ``InvalidAccessKeySecret`` (HTTP 400), while a
tampered request surfaces as ``SignatureDoesNotMatch``.

Sources for codes/statuses are cited next to the constants below.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, quote, unquote, urlsplit

VOD, MTS, LIVE = "2017-03-21", "2014-06-18", "2016-11-01"
HOSTS = {VOD: "vod.cn-shanghai.aliyuncs.com", MTS: "mts.cn-shanghai.aliyuncs.com"}
HOSTS[LIVE] = "live.aliyuncs.com"
TIMESTAMP_WINDOW = 15 * 60  # InvalidTimeStamp.Expired beyond 15 min (EMAS/POP error table)

# VOD doc "Common errors" tables (SubmitPreprocessJobs / SubmitDynamicImageJob, 2021 mirror).
VIDEO_NOT_FOUND = (404, "InvalidVideo.NotFound", "The video does not exist.")
ILLEGAL_STATUS = (400, "Forbidden.IllegalStatus", "Status of the video is illegal.")
# The docs spell it "UploadSucces"; GetVideoInfo reports "UploadSucc". Accept both.
PREPROCESS_OK = {"UploadSucces", "UploadSucc", "Normal", "Checking", "Transcoding"}
DYNAMIC_IMAGE_OK = PREPROCESS_OK | {"Blocked"}


class ApiError(Exception):
    """An error answer: HTTP status, Alibaba ``Code`` and ``Message``."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code} {message}")
        self.status, self.code, self.message = status, code, message


def percent_encode(value: str) -> str:
    """RFC 3986 encoding as §7.1: only A-Za-z0-9-_.~ stay; space -> %20, * -> %2A."""
    return quote(value, safe="-_.~")


def string_to_sign(method: str, params: dict) -> str:
    """``METHOD&%2F&pct(sorted k=v joined by &)``, all params except Signature."""
    items = sorted((k, v) for k, v in params.items() if k != "Signature")
    canonical = "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in items)
    return f"{method.upper()}&{percent_encode('/')}&{percent_encode(canonical)}"


def rpc_signature(method: str, params: dict, secret: str) -> str:
    """Signature v1.0: base64(HMAC-SHA1(secret + "&", string_to_sign))."""
    mac = hmac.new((secret + "&").encode(), string_to_sign(method, params).encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def _new_id() -> str:
    return uuid.uuid4().hex  # job ids are 32 lowercase hex chars, like the doc samples


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _parse_query(query: str) -> dict:
    """Query string: '+' stays a literal plus (RFC 3986); only %XX is decoded.

    The SDK never sends a raw '+' (it rewrites them to %20), so a raw '+' means a
    literal plus; ``parse_qsl`` would wrongly turn it into a space and break the
    signature check.
    """
    out = {}
    for part in query.split("&"):
        if part:
            key, _, value = part.partition("=")
            out[unquote(key)] = unquote(value)
    return out


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server naming)
        self.server.fake._serve(self)

    do_POST = do_GET

    def log_message(self, *args):  # keep pytest output clean
        pass


class FakeAliyunRPC:
    """Threaded fake gateway; use as a context manager. See the module docstring.

    ``calls``: (Action, params without Signature) for every request that passed
    authentication and named a known action or one with a queued ``fail_next``; it
    includes calls answered with an injected or business error. ``requests``:
    (Action or None, HTTP status) for every request, rejected ones included.
    State dicts (``videos``, ``transcode_tasks``, ``iproduction_jobs``, ``edge_jobs``)
    may be read or edited by tests between calls.
    """

    def __init__(self, access_key_id="LTAItest", access_key_secret="secret", templates=("tpl1",)):
        self.access_keys = {access_key_id: access_key_secret}
        self.videos: dict[str, dict] = {}
        self.templates = set(templates)
        self.iproduction_jobs: dict[str, dict] = {}
        self.edge_jobs: dict[tuple[str, str], dict] = {}
        self.transcode_tasks: dict[str, dict] = {}
        self.preprocess_jobs: dict[str, str] = {}  # JobId -> VideoId
        self.dynamic_image_jobs: dict[str, dict] = {}  # JobId -> request params
        self.calls: list[tuple[str, dict]] = []
        self.requests: list[tuple[str | None, int]] = []
        self._failures: dict[str, list[tuple[int, str, str]]] = {}
        self._nonces: dict[tuple[str, str], float] = {}
        self._lock = threading.RLock()
        self._server = None
        self._thread = None
        self.endpoint = None
        self._routes = {
            ("SubmitPreprocessJobs", VOD): (self._submit_preprocess, ("VideoId", "PreprocessType")),
            ("SubmitDynamicImageJob", VOD): (
                self._submit_dynamic_image,
                ("VideoId", "DynamicImageTemplateId"),
            ),
            ("GetVideoInfo", VOD): (self._get_video_info, ("VideoId",)),
            ("GetTranscodeTask", VOD): (self._get_transcode_task, ("TranscodeTaskId",)),
            ("ListTranscodeTask", VOD): (self._list_transcode_task, ()),
            ("SubmitIProductionJob", MTS): (
                self._submit_iproduction,
                ("FunctionName", "Input", "Output"),
            ),
            ("QueryIProductionJob", MTS): (self._query_iproduction, ("JobId",)),
            ("StartEdgeTranscodeJob", LIVE): (self._start_edge, ("ClusterId", "JobId")),
            ("StopEdgeTranscodeJob", LIVE): (self._stop_edge, ("ClusterId", "JobId")),
            ("GetEdgeTranscodeJob", LIVE): (self._get_edge, ("ClusterId", "JobId")),
        }

    # ---- lifecycle ----
    def __enter__(self):
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self
        self.endpoint = f"127.0.0.1:{self._server.server_address[1]}"
        # A short poll interval keeps shutdown() (and so each test's teardown) fast.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    # ---- state set-up used by tests ----------------------------------------------
    def add_video(self, video_id, status="Normal", **fields):
        """Register a VOD media; extra keyword fields go into GetVideoInfo's ``Video``."""
        now = _now_iso()
        video = {"VideoId": video_id, "Title": video_id, "Status": status, "Duration": 10.0}
        video.update({"Size": 1024, "CreationTime": now, "ModificationTime": now})
        video.update({"StorageLocation": "outin-fake.oss-cn-shanghai.aliyuncs.com"})
        with self._lock:
            self.videos[video_id] = {**video, **fields}

    def add_dynamic_image_template(self, template_id):
        with self._lock:
            self.templates.add(template_id)

    def set_iproduction(self, job_id, state="Success", result=None, code=None):
        """Create or update a smart-production job as QueryIProductionJob reports it.

        ``result`` (dict) becomes the ``Result`` string; a dict/list ``Data`` inside is
        JSON-encoded first, reproducing the doc's double encoding (§4.3). With no
        ``result`` a terminal state gets a minimal one built from ``code``.
        """
        with self._lock:
            job = self.iproduction_jobs.setdefault(job_id, self._new_iproduction(job_id, {}))
            job["State"] = state
            if result is not None:
                result = dict(result)
                if isinstance(result.get("Data"), (dict, list)):
                    result["Data"] = json.dumps(result["Data"], ensure_ascii=False)
                if code is not None:
                    result.setdefault("Code", code)
                job["Result"] = json.dumps(result, ensure_ascii=False)
            elif state == "Success":
                ok = {"Details": [], "Message": "success", "Code": code or "Success"}
                job["Result"] = json.dumps(ok)
            elif state == "Fail":  # failure shape UNCONFIRMED (§4.2, open question 5)
                job["Result"] = json.dumps({"Message": "fail", "Code": code or "Fail"})
            else:
                job["Result"] = ""

    def add_edge_job(self, cluster_id, job_id, status="0", **fields):
        """Register a Live edge transcoding job; Status is the string "0" or "1"."""
        job = {"JobId": job_id, "Name": job_id, "Status": status, "Type": "common"}
        job.update({"StreamInput": "rtmp://mydomain/app/stream1", "TemplateName": "tpl"})
        job.update({"StreamOutput": "rtmp://testdomain/app/stream2", "TemplateId": _new_id()})
        job.update({"CreateTime": _now_iso(), "LastStartAt": "", "LastStopAt": ""})
        with self._lock:
            self.edge_jobs[(cluster_id, job_id)] = {**job, **fields}

    def fail_next(self, action, code, message, status=400, n=1):
        """The next ``n`` authenticated calls of ``action`` answer this error instead."""
        with self._lock:
            self._failures.setdefault(action, []).extend([(status, code, message)] * n)

    # ---- HTTP plumbing ----
    def _serve(self, handler):
        url = urlsplit(handler.path)
        params = _parse_query(url.query)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length).decode("utf-8", "replace") if length else ""
        if body and "x-www-form-urlencoded" in (handler.headers.get("Content-Type") or ""):
            params.update(parse_qsl(body, keep_blank_values=True))  # form: '+' is a space
        action = params.get("Action") or handler.headers.get("x-acs-action")
        host = HOSTS.get(params.get("Version", ""), handler.headers.get("Host", ""))
        request_id = str(uuid.uuid4()).upper()
        try:
            payload = self._dispatch(handler, handler.command, params)
            status, payload = 200, {"RequestId": request_id, **payload}
        except Exception as exc:  # a fake bug must still answer, not drop the connection
            err = exc if isinstance(exc, ApiError) else ApiError(500, "InternalError", repr(exc))
            status = err.status
            payload = {"RequestId": request_id, "HostId": host}
            payload.update({"Code": err.code, "Message": err.message})
        raw = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        with self._lock:
            self.requests.append((action, status))
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json;charset=utf-8")
        handler.send_header("Content-Length", str(len(raw)))
        handler.send_header("x-acs-request-id", request_id)
        handler.end_headers()
        handler.wfile.write(raw)

    def _dispatch(self, handler, method, params):
        if "Action" not in params and handler.headers.get("x-acs-action"):
            raise ApiError(
                400,
                "IncompleteSignature",
                "This fake verifies signature v1.0 only; "
                "use the legacy SDK or a Tea client with signature_algorithm='v2'.",
            )
        self._authenticate(method, params)
        action, version = params["Action"], params["Version"]
        with self._lock:
            queued = self._failures.get(action)
            route = self._routes.get((action, version))
            if queued or route:
                self.calls.append((action, {k: v for k, v in params.items() if k != "Signature"}))
            if queued:
                raise ApiError(*queued.pop(0))
        if route is None:
            if any(a == action for a, _ in self._routes):
                raise ApiError(400, "InvalidVersion", "Specified parameter Version is not valid.")
            raise ApiError(
                404,
                "InvalidAction.NotFound",
                "Specified api is not found, please check your url and method.",
            )
        handler_fn, required = route
        for name in required:
            if not params.get(name):  # POP gateway style, e.g. real "MissingChannel"
                raise ApiError(400, f"Missing{name}", f"{name} is mandatory for this action.")
        with self._lock:
            return handler_fn(params)

    def _authenticate(self, method, params):
        """Gateway checks, in the order: presence, timestamp, key, signature, nonce."""
        for name in ("Action", "Version", "AccessKeyId", "Signature", "SignatureNonce"):
            if not params.get(name):
                raise ApiError(400, f"Missing{name}", f"{name} is mandatory for this action.")
        if params.get("SignatureMethod") != "HMAC-SHA1" or params.get("SignatureVersion") != "1.0":
            raise ApiError(
                400,
                "IncompleteSignature",
                "The request signature does not conform to Aliyun standards.",
            )
        stamp = params.get("Timestamp")
        if not stamp:
            raise ApiError(
                400,
                "IllegalTimestamp",
                'The input parameter "Timestamp" that is '
                "mandatory for processing this request is not supplied.",
            )
        try:
            sent = calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))
        except ValueError:
            raise ApiError(
                400,
                "InvalidTimeStamp.Format",
                "Specified time stamp or date value is not well formatted.",
            ) from None
        now = time.time()
        if abs(now - sent) > TIMESTAMP_WINDOW:
            raise ApiError(
                400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired."
            )
        secret = self.access_keys.get(params["AccessKeyId"])
        if secret is None:
            raise ApiError(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        expected = rpc_signature(method, params, secret)
        if not hmac.compare_digest(expected.encode(), params["Signature"].encode()):
            raise ApiError(
                400,
                "SignatureDoesNotMatch",
                "Specified signature is not matched with our calculation. "
                "server string to sign is:" + string_to_sign(method, params),
            )
        key = (params["AccessKeyId"], params["SignatureNonce"])
        with self._lock:
            self._nonces = {k: t for k, t in self._nonces.items() if t > now}
            if key in self._nonces:
                raise ApiError(
                    400, "SignatureNonceUsed", "Specified signature nonce was used already."
                )
            self._nonces[key] = now + TIMESTAMP_WINDOW

    # ---- VOD ----
    def _video(self, video_id, allowed=None):
        video = self.videos.get(video_id)
        if video is None:
            raise ApiError(*VIDEO_NOT_FOUND)
        if allowed is not None and video["Status"] not in allowed:
            raise ApiError(*ILLEGAL_STATUS)
        return video

    def _submit_preprocess(self, p):
        self._video(p["VideoId"], PREPROCESS_OK)
        job_id = _new_id()
        self.preprocess_jobs[job_id] = p["VideoId"]
        return {"PreprocessJobs": {"PreprocessJob": [{"JobId": job_id}]}}

    def _submit_dynamic_image(self, p):
        self._video(p["VideoId"], DYNAMIC_IMAGE_OK)
        template = p["DynamicImageTemplateId"]
        if template not in self.templates:
            raise ApiError(
                404, "NoSuchResource", f"The specified resource {template} does not exist."
            )
        job_id = _new_id()
        self.dynamic_image_jobs[job_id] = dict(p)
        return {"DynamicImageJob": {"JobId": job_id}}

    def _get_video_info(self, p):
        return {"Video": dict(self._video(p["VideoId"]))}

    def _get_transcode_task(self, p):
        task = self.transcode_tasks.get(p["TranscodeTaskId"])
        if task is None:  # code for an unknown task id: UNCONFIRMED, VOD's generic 404
            raise ApiError(
                404,
                "NoSuchResource",
                f"The specified resource {p['TranscodeTaskId']} does not exist.",
            )
        return {"TranscodeTask": {"TranscodeTaskId": p["TranscodeTaskId"], **task}}

    def _list_transcode_task(self, p):
        page_no, page_size = int(p.get("PageNo") or 1), int(p.get("PageSize") or 10)
        tasks = [
            {"TranscodeTaskId": tid, **{k: v for k, v in t.items() if k != "TranscodeJobInfoList"}}
            for tid, t in self.transcode_tasks.items()
            if not p.get("VideoId") or t.get("VideoId") == p["VideoId"]
        ]
        return {"TranscodeTaskList": tasks[(page_no - 1) * page_size : page_no * page_size]}

    # ---- MPS smart production ----
    @staticmethod
    def _new_iproduction(job_id, p):
        job = {"JobId": job_id, "State": "Queuing", "Result": ""}
        for key in ("FunctionName", "Input", "Output", "JobParams", "PipelineId", "UserData"):
            job[key] = p.get(key, "")
        return job

    def _submit_iproduction(self, p):
        job_id = _new_id()
        self.iproduction_jobs[job_id] = self._new_iproduction(job_id, p)
        return {"JobId": job_id}

    def _query_iproduction(self, p):
        job = self.iproduction_jobs.get(p["JobId"])
        if job is None:  # MPS error list; HTTP status not documented, 404 chosen
            raise ApiError(
                404,
                "InvalidParameter.ResourceNotFound",
                'The resource operated "JobId" cannot be found.',
            )
        return dict(job)

    # ---- Live edge transcoding ----
    def _edge(self, p):
        job = self.edge_jobs.get((p["ClusterId"], p["JobId"]))
        if job is None:  # Live API page: 404 JobNotFound
            raise ApiError(404, "JobNotFound", f"Job {p['JobId']} not found.")
        return job

    def _start_edge(self, p):
        job = self._edge(p)
        if job["Status"] == "1":  # "the specified transcoding job is not running" (doc)
            raise ApiError(
                403, "OperationDenied", "Job is running, please check and try again later."
            )
        job.update(Status="1", LastStartAt=_now_iso())
        return {"JobId": p["JobId"]}

    def _stop_edge(self, p):
        job = self._edge(p)
        if job["Status"] != "1":
            raise ApiError(
                403, "OperationDenied", "Job is not running, please check and try again later."
            )
        job.update(Status="0", LastStopAt=_now_iso())
        return {"JobId": p["JobId"]}

    def _get_edge(self, p):
        return {"Job": dict(self._edge(p))}
