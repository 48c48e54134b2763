"""Test helpers: plain functions and constants the test modules import.

Signing helpers compute signatures from the providers' documented algorithms, independently
of receiver/, so a mistake in our verification cannot be mirrored by a test. Fixtures are
not here: they live in conftest.py and the plugins it registers (`pytest_plugins`).
"""

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from receiver.providers.aliyun import vod as aliyun_vod
from receiver.providers.base import Event
from store import open_ledger

ROOT = Path(__file__).resolve().parent.parent

FIXTURES = Path(__file__).parent / "fixtures"

CALLBACK_URL = "https://media.example.com/hooks/aliyun/vod"

AUTH_KEYS = ["NewKey2026Abc", "OldKey2025Xyz"]  # rotation: both active

SIGN_KEY = "TencentSignKey9"

OPS_TOKEN = "0123456789"  # digits on purpose: settings are text, never JSON


def fixture_bytes(name: str) -> bytes:
    """Return a documented sample exactly as stored."""
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> dict:
    """Return a documented sample, decoded, for building variants."""
    return json.loads(fixture_bytes(name))


def vod_headers(url: str = CALLBACK_URL, key: str = AUTH_KEYS[0], ts: int | None = None) -> dict:
    """Sign like VOD: md5 of `<callback URL>|<X-VOD-TIMESTAMP>|<key>`, lower-case hex."""
    ts = int(time.time()) if ts is None else ts
    signature = hashlib.md5(f"{url}|{ts}|{key}".encode()).hexdigest()
    return {
        "X-VOD-TIMESTAMP": str(ts),
        "X-VOD-SIGNATURE": signature,
        "Content-Type": "application/json",
    }


def tencent_signed(doc: dict, key: str = SIGN_KEY, expiry: int | None = None) -> bytes:
    """Add Tencent v3 `Sign` = MD5(SignKey + T) and `T` (expiry, 10 minutes ahead)."""
    expiry = int(time.time()) + 600 if expiry is None else expiry
    signed = dict(doc, Sign=hashlib.md5(f"{key}{expiry}".encode()).hexdigest(), T=expiry)
    return json.dumps(signed).encode()


def assert_error_shape(response, status: int) -> dict:
    """Check the one JSON error shape every error source must use."""
    assert response.status_code == status, response.get_data(as_text=True)
    data = response.get_json()
    assert data["ok"] is False
    assert isinstance(data["error"], str) and data["error"]
    assert data["status"] == status
    return data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict | None = None,
    timeout: float = 10,
) -> tuple[int, dict | str]:
    """Make one HTTP request with urllib; return (status, JSON or text)."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw, kind = (
                response.status,
                response.read(),
                response.headers.get_content_type(),
            )
    except urllib.error.HTTPError as e:
        status, raw, kind = e.code, e.read(), e.headers.get_content_type()
        e.close()
    return status, (json.loads(raw) if kind == "application/json" else raw.decode())


# -- waiting on and running real processes -------------------------------------------------


def children(pid: int) -> list[int]:
    """The ids of the processes whose parent is `pid`."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return out


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def count(db_path, where: str = "duplicate_of IS NULL") -> int:
    """Count events (originals by default) with a connection of its own."""
    with open_ledger(db_path) as ledger:
        return ledger.conn.execute(f"SELECT count(*) FROM events WHERE {where}").fetchone()[0]


def wait_for(predicate, timeout: float = 15.0, what: str = "condition", proc=None) -> None:
    """Poll until `predicate()`; fail fast, with its log, if `proc` exits meanwhile."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(
                f"exited {proc.returncode} before {what}:\n" + proc.log_path.read_text()[-2000:]
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def drain_terminal(leader: int) -> bytes:
    """Read what a command wrote to a pseudo-terminal until it is gone; close our end."""
    terminal = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the command and its terminal are gone
            break
        if not chunk:
            break
        terminal += chunk
    os.close(leader)
    return terminal


@contextlib.contextmanager
def flask_command(args: list[str], env: dict, log_path):
    """Run `python -m flask --app wsgi ARGS` with RECEIVER_* `env`; kill and reap it on exit."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("RECEIVER_") and "proxy" not in k.lower()
    }
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "wsgi", *args],
            cwd=ROOT,
            env={**clean, **env},
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    proc.log_path = log_path
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


# -- queue consumers, alerts and reconcile --------------------------------------------------

SECRET_ID, SECRET_KEY = "AKIDpullTest", "PullTestKey"


def summaries(result) -> dict:
    return {line["api"]: line for line in map(json.loads, result.stdout.splitlines())}


def failed_transcode(video: str, *, state: str = "failed") -> Event:
    doc = fixture_json("aliyun_vod-TranscodeComplete.json")
    doc.update(
        VideoId=video,
        Status="fail" if state == "failed" else "success",
        ErrorCode="TranscodeFail",
        ErrorMessage="the source has no video track",
    )
    if state == "partial":
        doc["StreamInfos"][0]["Status"] = "fail"
    return aliyun_vod.parse(json.dumps(doc))


def record(ledger, event: Event):
    return ledger.notices.record(event, source="http", verified=True)


class TimedSink:
    """A local webhook that takes `delay` seconds to answer each alert POST."""

    def __init__(self, delay: float = 0.0):
        self.received: list[dict] = []
        self.delay = delay
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(sink.delay)  # the sink's own latency, not a wait for the test
                sink.received.append(json.loads(body))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def alert_ids(self) -> Counter:
        """Count how many times each alert id arrived, alone or in a summary."""
        ids: Counter = Counter()
        for message in self.received:
            for alert in message.get("alerts", [message]):
                ids[alert["alert_id"]] += 1
        return ids

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def reconcile_env(database, *urls: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIVER_")}
    env.update(
        RECEIVER_DATABASE=str(database),
        RECEIVER_ALERT_WEBHOOK_URLS=",".join(urls),
        RECEIVER_ALERT_GROUP_SECONDS="0",
    )
    return env


def run_reconciles(count: int, env: dict) -> None:
    """Start `count` reconcile --once processes together; wait for all of them."""
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "reconcile", "--once"]
    procs = [
        subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for _ in range(count)
    ]
    for proc in procs:
        output, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, output.decode(errors="replace")


def vod_notice(video: str, pad: int = 0) -> bytes:
    """A VOD TranscodeComplete for `video`, its body padded by `pad` bytes when asked."""
    doc = fixture_json("aliyun_vod-TranscodeComplete.json")
    doc.update(VideoId=video, EventTime="2026-11-21T00:00:00Z")
    if pad:
        doc["Extend"] = "p" * pad
    return json.dumps(doc).encode()
