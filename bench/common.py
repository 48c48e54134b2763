"""What the benchmarks share: starting gunicorn, driving wrk, reading /proc.

Benchmarks never run in CI. They need `wrk` (Debian/Ubuntu: `apt-get install -y wrk`;
`ensure_wrk()` installs it when run as root) and the project's requirements.
"""

import hashlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
CALLBACK_URL = "https://bench.example.com/hooks/aliyun/vod"
AUTH_KEY = "BenchKey2026"
OPS_TOKEN = "bench-ops-token"
CLK_TCK = os.sysconf("SC_CLK_TCK")
TEMPLATE = json.loads(
    (ROOT / "tests" / "fixtures" / "aliyun_vod-TranscodeComplete.json").read_text()
)


def ensure_wrk() -> str:
    """Return the path of wrk, installing the Debian package when possible."""
    path = shutil.which("wrk")
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk not found: apt-get install -y wrk", file=sys.stderr)
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
        path = shutil.which("wrk")
        if path:
            return path
    sys.exit(
        "wrk is required: install it"
        " (Debian/Ubuntu: apt-get install -y wrk; macOS: brew install wrk)"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, token: str | None = OPS_TOKEN, timeout: float = 30) -> tuple[int, bytes]:
    """GET a URL; return (status, body) without raising for HTTP errors."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        body = e.read()
        e.close()
        return e.code, body


def vod_headers(ts: int | None = None) -> dict:
    ts = int(time.time()) if ts is None else ts
    sig = hashlib.md5(f"{CALLBACK_URL}|{ts}|{AUTH_KEY}".encode()).hexdigest()
    return {"X-VOD-TIMESTAMP": str(ts), "X-VOD-SIGNATURE": sig, "Content-Type": "application/json"}


@dataclass
class Server:
    """One gunicorn master started with the project's gunicorn.conf.py."""

    app: str
    env: dict
    logdir: Path
    port: int = 0
    proc: subprocess.Popen | None = None
    files: list = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def access_log(self) -> Path:
        return self.logdir / f"{self.name}-{self.port}.access.log"

    @property
    def name(self) -> str:
        return self.app.split(":")[0].replace(".", "_")

    def start(self) -> "Server":
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIVER_")}
        env.update(self.env)
        env.update({"HOST": "127.0.0.1", "PORT": str(self.port)})
        self.logdir.mkdir(parents=True, exist_ok=True)
        out = open(self.access_log, "wb")  # noqa: SIM115 - closed in stop()
        err = open(self.logdir / f"{self.name}-{self.port}.error.log", "wb")  # noqa: SIM115
        self.files = [out, err]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", self.app],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=err,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.app} exited: see {err.name}")
            try:
                if http_get(self.base + "/healthz", token=None, timeout=1)[0] == 200:
                    # Let every worker boot before measuring anything.
                    while len(self.workers()) < int(env.get("WEB_CONCURRENCY", "0") or 0):
                        time.sleep(0.05)
                    time.sleep(0.5)
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.app} did not answer /healthz within 60 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # graceful: requests in flight finish
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in self.files:
            f.close()
        self.files = []

    def workers(self) -> list[int]:
        return children(self.proc.pid) if self.proc else []

    def cpu_seconds(self) -> float:
        """CPU used so far by the master, its live workers and its reaped (recycled) workers."""
        total = cpu_of(self.proc.pid, with_children=True)
        return total + sum(cpu_of(pid) for pid in self.workers())

    def worker_rss_mb(self) -> list[float]:
        return [rss_mb(pid) for pid in self.workers()]

    def count_status(self, status: int = 200, method_path: str = "POST /hooks/") -> int:
        n = 0
        with open(self.access_log, "rb") as f:
            for line in f:
                if method_path.encode() in line and f'"status": {status},'.encode() in line:
                    n += 1
        return n


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(entry))
    return sorted(out)


def cpu_of(pid: int, with_children: bool = False) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # fields[0] is state (stat field 3): utime is field 14, stime 15, cutime 16, cstime 17.
    ticks = int(fields[11]) + int(fields[12])
    if with_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


LUA = r"""
-- Generated by bench/common.py: distinct signed VOD TranscodeComplete callbacks.
local sigs = {%(sigs)s}
local pre, post = %(pre)s, %(post)s
local prefix = %(prefix)s
local path = %(path)s
local threads = {}
local counter = 0

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  n200 = 0
  nother = 0
end

function request()
  counter = counter + 1
  local ts = os.time()
  local body = pre .. prefix .. "-" .. tid .. "-" .. counter .. post
  return wrk.format("POST", path, {
    ["Content-Type"] = "application/json",
    ["X-VOD-TIMESTAMP"] = tostring(ts),
    ["X-VOD-SIGNATURE"] = sigs[ts] or "0",
  }, body)
end

function response(status, headers, body)
  if status == 200 then n200 = n200 + 1 else nother = nother + 1 end
end

function done(summary, latency, requests)
  local ok, other = 0, 0
  for _, t in ipairs(threads) do
    ok = ok + t:get("n200")
    other = other + t:get("nother")
  end
  local e = summary.errors
  io.write(string.format(
    'JSON {"requests": %%d, "duration_us": %%d, "ok": %%d, "other": %%d, "p50_us": %%d, '
    .. '"p90_us": %%d, "p99_us": %%d, "max_us": %%d, "mean_us": %%f, "connect_errors": %%d, '
    .. '"read_errors": %%d, "write_errors": %%d, "timeouts": %%d, "status_errors": %%d}\n',
    summary.requests, summary.duration, ok, other, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    e.connect, e.read, e.write, e.timeout, e.status))
end
"""


def lua_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def write_lua(
    path: Path, prefix: str, seconds: int = 900, url_path: str = "/hooks/aliyun/vod"
) -> Path:
    """Write a wrk script sending distinct TranscodeComplete bodies, VideoId = prefix-thread-n.

    VOD's signature covers `<URL>|<timestamp>|<key>` and not the body, so one signature per
    second, computed here for the next `seconds`, signs every request of that second.
    """
    marker = "@@VIDEO@@"
    body = json.dumps(dict(TEMPLATE, VideoId=marker, EventTime="2026-11-21T00:00:00Z"))
    pre, post = body.split(marker)
    now = int(time.time())
    sigs = ", ".join(
        f"[{ts}] = {lua_string(vod_headers(ts)['X-VOD-SIGNATURE'])}"
        for ts in range(now - 5, now + seconds)
    )
    path.write_text(
        LUA
        % {
            "sigs": sigs,
            "pre": lua_string(pre),
            "post": lua_string(post),
            "prefix": lua_string(prefix),
            "path": lua_string(url_path),
        }
    )
    return path


def run_wrk(
    base: str,
    script: Path,
    duration: float,
    connections: int = 32,
    threads: int = 2,
    timeout_s: int = 10,
) -> dict:
    """Run wrk once; return its done() summary plus req/s."""
    cmd = [
        ensure_wrk(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        f"--timeout={timeout_s}s",
        "-s",
        str(script),
        base + "/",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{done.stdout}\n{done.stderr}")
    out = json.loads(line[5:])
    out["rps"] = out["requests"] / (out["duration_us"] / 1e6)
    return out


def median(values):
    values = list(values)
    return statistics.median(values) if values else float("nan")


def ledger_env(db: Path, durability: str = "normal", **extra) -> dict:
    return {
        "RECEIVER_DATABASE": str(db),
        "RECEIVER_ALIYUN_VOD_CALLBACK_URL": CALLBACK_URL,
        "RECEIVER_ALIYUN_VOD_AUTH_KEYS": AUTH_KEY,
        "RECEIVER_OPS_TOKEN": OPS_TOKEN,
        "RECEIVER_DURABILITY": durability,
        **extra,
    }


def machine() -> str:
    """Describe the machine the figures come from."""
    import platform
    import sqlite3

    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = next(ln for ln in open("/proc/meminfo") if ln.startswith("MemTotal")).split()[1]
        mem = f"{int(mem) / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration):
        mem = "?"
    wrk = subprocess.run([shutil.which("wrk") or "true", "-v"], capture_output=True, text=True)
    wrk_version = (wrk.stdout or wrk.stderr).split("Copyright")[0].strip()
    from importlib.metadata import version

    return (
        f"{os.cpu_count()} vCPU {cpu}, {mem} RAM; Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, Flask {version('flask')}, "
        f"gunicorn {version('gunicorn')}, sqlite-utils {version('sqlite-utils')}, "
        f"{wrk_version}"
    )
