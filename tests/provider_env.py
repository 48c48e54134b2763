"""Local provider fakes for submit/reconcile tests, and the settings that aim the SDKs at them.

The real SDKs talk to the fakes through the endpoint settings; nothing of ours is
mocked. Also here: a gate that holds a provider's answer (to let a callback win the race),
a server that never answers, and a launcher for CLI subprocesses.
"""

import contextlib
import http.client
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.fakes.aliyun_rpc import FakeAliyunRPC
from tests.fakes.tencent import FakeTencentAPI, FakeTencentV2

ALIYUN_KEY_ID, ALIYUN_SECRET = "LTAIjobledger", "AliSecret-zq8x4Kp2Wv"
TENCENT_ID, TENCENT_SECRET = "AKIDjobledger", "TcSecret-Vb7n3Lm9Qs"
PROXY_VARS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
# Runs a CLI command in a fresh process with the app built from RECEIVER_* variables.
LAUNCHER = (
    "import sys\n"
    "from receiver import create_app\n"
    "app = create_app()\n"
    "with app.app_context():\n"
    "    app.cli.main(args=sys.argv[1:], prog_name='flask')\n"
)


@dataclass
class Fakes:
    """The three provider fakes, running."""

    aliyun: FakeAliyunRPC
    tencent: FakeTencentAPI
    v2: FakeTencentV2


@contextlib.contextmanager
def running_fakes() -> Iterator[Fakes]:
    """Start the Alibaba RPC, Tencent API 3.0 and Tencent v2 fakes; stop them afterwards.

    They stop side by side: each shutdown waits for its server's poll interval, and one
    after the other that would add a tenth of a second to every test.
    """
    fakes = [
        FakeAliyunRPC(access_key_id=ALIYUN_KEY_ID, access_key_secret=ALIYUN_SECRET),
        FakeTencentAPI(secret_id=TENCENT_ID, secret_key=TENCENT_SECRET),
        FakeTencentV2(secret_id=TENCENT_ID, secret_key=TENCENT_SECRET),
    ]
    started = []
    try:
        for fake in fakes:
            started.append(fake.__enter__())
        yield Fakes(*started)
    finally:
        stoppers = [
            threading.Thread(target=fake.__exit__, args=(None, None, None)) for fake in started
        ]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join(10)


def provider_settings(fakes: Fakes) -> dict:
    """Return the settings (without the RECEIVER_ prefix) that point every SDK at the fakes."""
    return {
        "ALIYUN_ACCESS_KEY_ID": ALIYUN_KEY_ID,
        "ALIYUN_ACCESS_KEY_SECRET": ALIYUN_SECRET,
        "ALIYUN_VOD_ENDPOINT": fakes.aliyun.endpoint,
        "ALIYUN_MTS_ENDPOINT": fakes.aliyun.endpoint,
        "ALIYUN_LIVE_ENDPOINT": fakes.aliyun.endpoint,
        "MPS_PIPELINE_ID": "pipeline-1",
        "TENCENT_SECRET_ID": TENCENT_ID,
        "TENCENT_SECRET_KEY": TENCENT_SECRET,
        "TENCENT_VOD_ENDPOINT": fakes.tencent.endpoint,
        "TENCENT_VOD_V2_URL": fakes.v2.url,
    }


def environment(base: dict, settings: dict) -> dict:
    """Return a process environment: `base` without RECEIVER_*/proxies, plus `settings`."""
    env = {k: v for k, v in base.items() if not k.startswith("RECEIVER_") and k not in PROXY_VARS}
    env.update({f"RECEIVER_{k}": str(v) for k, v in settings.items()})
    return env


class GatedProxy:
    """Forward requests to `upstream`, but hold each answer until `release()`.

    While an answer is held, `answered` is set and `answers` has it: the test knows the
    provider's job id and can deliver the job's callback before the submitter sees it.
    Headers go through untouched (Host included), so the signatures still verify.
    """

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.answers: list[dict] = []
        self.answered, self.gate = threading.Event(), threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                conn = http.client.HTTPConnection(proxy.upstream, timeout=10)
                try:
                    conn.request(self.command, self.path, body, headers=dict(self.headers))
                    response = conn.getresponse()
                    data, status = response.read(), response.status
                    content_type = response.getheader("Content-Type")
                finally:
                    conn.close()
                proxy.answers.append(json.loads(data))
                proxy.answered.set()
                proxy.gate.wait(10)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def release(self) -> None:
        """Let held and future answers through."""
        self.gate.set()

    def __enter__(self) -> "GatedProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class SilentServer:
    """Accept connections and read requests, but never answer (until closed)."""

    def __init__(self):
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"127.0.0.1:{self._sock.getsockname()[1]}"
        self.received = threading.Event()
        self._closing = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        self._sock.settimeout(0.05)  # close() does not wake a blocked accept() on Linux
        while not self._closing.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._conns.append(conn)
            conn.settimeout(5)
            with contextlib.suppress(OSError):
                conn.recv(65536)
            self.received.set()

    def __enter__(self) -> "SilentServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._closing.set()
        self._thread.join(5)
        self._sock.close()
        for conn in self._conns:
            conn.close()


def closed_port() -> str:
    """Return host:port where nothing listens (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


# -- shared by test_submit.py and test_submit_failures.py ------------------------------

IN, OUT = "oss://bucket.oss-cn-shanghai.aliyuncs.com/in/a.mp4", "oss://bucket/out/{source}.mp4"
IPRODUCTION = {"FunctionName": "VideoH2V", "JobParams": {"Width": 720}, "Input": IN, "Output": OUT}


@pytest.fixture
def fakes(monkeypatch):
    """The Alibaba and Tencent fakes, with no proxy in the way (both SDKs honour one)."""
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    with running_fakes() as running:
        running.aliyun.add_video("vid1", status="Normal")
        yield running


@pytest.fixture
def build(make_app, fakes):
    """Build an app aimed at the fakes (its factory registers submit/reconcile)."""

    def build_app(**overrides):
        return make_app(**{**provider_settings(fakes), "SUBMIT_BUDGET_S": 1.5, **overrides})

    return build_app


def post(client, operation, params, **headers):
    return client.post(
        "/api/jobs", json={"operation": operation, "params": params}, headers=headers
    )


def timeline(client, job_id):
    job = client.get(f"/api/jobs/{job_id}").get_json()
    return [(e["source"], e["event_type"], e["state_after"]) for e in job["events"]]
