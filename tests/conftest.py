"""Shared fixtures: a migrated ledger per test (on each engine), the app, clients, servers.

More fixtures come from the plugins registered below: `engines` (SQLite and a throwaway
PostgreSQL cluster), `filesystems` (a small tmpfs that fills up), `proxy` (nginx),
`provider_env` (local provider fakes), `browser` (Chromium), `aws` (moto's server for SNS
and SQS). Helpers that tests import are plain functions in `tests/helpers.py`.
"""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from receiver import create_app
from receiver.db import close_ledgers
from store import open_ledger
from tests.helpers import AUTH_KEYS, CALLBACK_URL, OPS_TOKEN, ROOT, SIGN_KEY, free_port, http
from tests.receivers import Receiver

pytest_plugins = [
    "tests.engines",
    "tests.filesystems",
    "tests.proxy",
    "tests.provider_env",
    "tests.browser",
    "tests.aws",
]


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


@pytest.fixture
def receivers():
    """Make local endpoints that check each message's signature (tests/receivers.py)."""
    made: list[Receiver] = []

    def make(**kwargs) -> Receiver:
        made.append(Receiver(**kwargs))
        return made[-1]

    yield make
    for r in made:
        r.close()
