"""Fixtures for the deployment: real gunicorn on a port or a Unix socket, real nginx in front.

nginx runs the shipped `deploy/nginx.conf` with only its marked EDIT lines (listen address,
gunicorn's socket) and its log paths pointed at the test's directory, as a foreground
process with its own prefix, pid and temporary paths.
"""

import http.client
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import AUTH_KEYS, CALLBACK_URL, OPS_TOKEN, ROOT, SIGN_KEY, free_port

NGINX_SITE = ROOT / "deploy" / "nginx.conf"
NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(p)), None
)


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket (gunicorn bound to `unix:<path>`)."""

    def __init__(self, path: str, timeout: float = 10):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def request(
    target: str, method: str, path: str, body: bytes | None = None, headers=None, timeout=10
) -> tuple[int, bytes]:
    """One request to `http://host:port` or `unix:<socket>`; return (status, body)."""
    if target.startswith("unix:"):
        conn = UnixHTTPConnection(target[5:], timeout=timeout)
    else:
        host, port = target.removeprefix("http://").rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_until_serving(target: str, proc: subprocess.Popen, log: Path, limit: float = 20) -> None:
    """Poll /healthz until it answers 200; fail with the process's log if it never does."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            if request(target, "GET", "/healthz", timeout=1)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{target} did not answer /healthz within {limit} s")


class Processes:
    """Processes a test started, stopped (TERM, then KILL) at teardown."""

    def __init__(self):
        self.procs: list[tuple[subprocess.Popen, object]] = []

    def start(self, args, log: Path, **kwargs) -> subprocess.Popen:
        out = open(log, "ab")  # noqa: SIM115 - closed in stop_all
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, **kwargs)
        self.procs.append((proc, out))
        return proc

    def stop_all(self):
        for proc, out in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            out.close()


def gunicorn_env(settings: dict, bind: str, workers: int, **overrides) -> dict:
    """The environment of a fully configured service bound to `bind`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIVER_")}
    env.update(
        {
            "GUNICORN_BIND": bind,
            "WEB_CONCURRENCY": str(workers),
            "RECEIVER_DATABASE": settings["DATABASE"],
            "RECEIVER_ALIYUN_VOD_CALLBACK_URL": CALLBACK_URL,
            "RECEIVER_ALIYUN_VOD_AUTH_KEYS": ",".join(AUTH_KEYS),
            "RECEIVER_TENCENT_VOD_SIGN_KEY": SIGN_KEY,
            "RECEIVER_OPS_TOKEN": OPS_TOKEN,
            **overrides,
        }
    )
    return {k: v for k, v in env.items() if v is not None}


@pytest.fixture
def service(settings, tmp_path):
    """Start gunicorn with the project's config on `bind` (`host:port` or `unix:<path>`).

    Returns (target, process, log path); `target` is `http://host:port` or `unix:<path>`.
    Pass an environment value of None to leave that variable unset.
    """
    procs = Processes()

    def start(bind: str | None = None, workers: int = 2, wait: bool = True, **env):
        bind = bind or f"127.0.0.1:{free_port()}"
        target = bind if bind.startswith("unix:") else f"http://{bind}"
        name = bind.rsplit("/", 1)[-1].replace(":", "-")
        log = tmp_path / f"gunicorn-{name}-{len(procs.procs)}.log"
        env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / f"metrics-{name}"))
        proc = procs.start(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            log,
            cwd=ROOT,
            env=gunicorn_env(settings, bind, workers, **env),
        )
        if wait:
            wait_until_serving(target, proc, log)
        return target, proc, log

    yield start
    procs.stop_all()


def nginx_config(prefix: Path, listen_port: int, upstream_socket: str) -> Path:
    """Write a main config around the shipped site file, its EDIT lines filled in."""
    site = NGINX_SITE.read_text()
    edits = {
        "listen 80;": f"listen 127.0.0.1:{listen_port};",
        "server unix:/run/jobledger/web.sock;": f"server unix:{upstream_socket};",
        "/var/log/nginx/jobledger.access.log": str(prefix / "access.log"),
        "/var/log/nginx/jobledger.error.log": str(prefix / "error.log"),
    }
    for old, new in edits.items():
        assert site.count(old) == 1, f"deploy/nginx.conf no longer has exactly one {old!r}"
        site = site.replace(old, new)
    (prefix / "jobledger.conf").write_text(site)
    temp_paths = "\n".join(
        f"    {kind}_temp_path {prefix / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # As root, nginx's workers would switch to an unprivileged user that cannot reach the
    # test's private directory; a user that runs the tests can.
    user = "user root;\n" if os.geteuid() == 0 else ""
    main = prefix / "nginx.conf"
    main.write_text(
        f"""{user}worker_processes 1;
pid {prefix / "nginx.pid"};
error_log {prefix / "main-error.log"} warn;
events {{ worker_connections 2048; }}
http {{
{temp_paths}
    access_log off;
    include {prefix / "jobledger.conf"};
}}
"""
    )
    return main


@pytest.fixture
def nginx(tmp_path):
    """Start nginx with the shipped config in front of gunicorn's Unix socket.

    Returns (base URL, prefix directory holding access.log and error.log).
    """
    if NGINX is None:
        pytest.skip("nginx is not installed (.ci/run installs Debian's nginx-light)")
    procs = Processes()

    def start(upstream_socket: str) -> tuple[str, Path]:
        prefix = tmp_path / f"nginx-{len(procs.procs)}"
        prefix.mkdir()
        port = free_port()
        main = nginx_config(prefix, port, upstream_socket)
        log = prefix / "stderr.log"
        args = [NGINX, "-p", str(prefix), "-c", str(main), "-e", str(prefix / "main-error.log")]
        check = subprocess.run([*args, "-t"], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr
        proc = procs.start([*args, "-g", "daemon off;"], log)
        base = f"http://127.0.0.1:{port}"
        wait_until_serving(base, proc, log)
        return base, prefix

    yield start
    procs.stop_all()
