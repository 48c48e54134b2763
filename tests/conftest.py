"""Shared fixtures: a migrated ledger file per test, the app, clients, and signing helpers.

The signing helpers compute signatures from the providers' documented algorithms
(reference/aliyun.md §2, reference/tencent.md §4.8), independently of receiver/, so a
mistake in our verification cannot be mirrored by the test.
"""

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
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from receiver import create_app
from receiver.db import close_ledgers
from store import open_ledger

pytest_plugins = ["tests.engines", "tests.proxy"]

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


@pytest.fixture
def db_path(database) -> Path | str:
    """The test's migrated ledger: a file path, or a PostgreSQL URL (see tests/engines.py)."""
    return database


@pytest.fixture
def settings(db_path) -> dict:
    """Settings of a fully configured receiver; tests change copies of it."""
    return {
        "TESTING": True,
        "DATABASE": str(db_path),
        "ALIYUN_VOD_CALLBACK_URL": CALLBACK_URL,
        "ALIYUN_VOD_AUTH_KEYS": list(AUTH_KEYS),
        "TENCENT_VOD_SIGN_KEY": SIGN_KEY,
    }


@pytest.fixture
def make_app(settings):
    """Build an app from the default settings plus overrides."""
    apps = []

    def build(**overrides):
        app = create_app({**settings, **overrides})
        apps.append(app)
        return app

    yield build
    close_ledgers()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def ledger(db_path):
    with open_ledger(db_path) as led:
        yield led


@pytest.fixture
def live_server(app):
    """Serve the app on a loopback port in a thread; yield its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)
    server.server_close()


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


@pytest.fixture
def gunicorn_server(settings, tmp_path):
    """Start the real service: gunicorn with the project's config, on a loopback port."""
    procs = []

    def start(workers: int = 2, **env_overrides) -> str:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIVER_")}
        env.update(
            {
                "PORT": str(port),
                "HOST": "127.0.0.1",
                "WEB_CONCURRENCY": str(workers),
                "RECEIVER_DATABASE": settings["DATABASE"],
                "RECEIVER_ALIYUN_VOD_CALLBACK_URL": CALLBACK_URL,
                "RECEIVER_ALIYUN_VOD_AUTH_KEYS": ",".join(AUTH_KEYS),
                "RECEIVER_TENCENT_VOD_SIGN_KEY": SIGN_KEY,
                "RECEIVER_OPS_TOKEN": OPS_TOKEN,
                **env_overrides,
            }
        )
        log = open(tmp_path / f"gunicorn-{port}.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        procs.append((proc, log))
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError((tmp_path / f"gunicorn-{port}.log").read_text())
            try:
                if http("GET", base + "/healthz", timeout=1)[0] == 200:
                    return base
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("gunicorn did not answer /healthz within 20 s")

    yield start
    for proc, log in procs:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
