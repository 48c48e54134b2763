"""The deployment: nginx (deploy/nginx.conf) in front of gunicorn (gunicorn.conf.py).

Real nginx and real gunicorn, loopback and Unix sockets only. Slow clients must not starve
callbacks, secrets must not reach a log, every access line must be JSON, and a master
killed hard must be replaceable at once on the same port.
"""

import http.client
import io
import json
import logging
import os
import signal
import threading
import time

import pytest

from receiver.logs import JSONFormatter, redact
from tests.helpers import (
    OPS_TOKEN,
    alive,
    children,
    fixture_bytes,
    fixture_json,
    free_port,
    vod_headers,
)
from tests.proxy import request, wait_until_serving
from tests.slow_clients import SlowClients, raw_request

pytestmark = pytest.mark.slow
VOD = "/hooks/aliyun/vod"
HOOK_TOKEN = "hook-Secret-7f3a9c"


def notice(video: str) -> bytes:
    doc = fixture_json("aliyun_vod-TranscodeComplete.json")
    doc.update(VideoId=video, EventTime="2026-11-21T00:00:00Z")
    return json.dumps(doc).encode()


# A Tencent notice with no signature of its own: accepted on the hook token alone.
TENCENT_NOTICE = fixture_bytes("tencent_vod-v2-TranscodeComplete.json")


def json_lines(path) -> list[dict]:
    """Every line of a log file, each parsed as one JSON object (fails on any other line)."""
    raw = path.read_bytes()
    return [json.loads(line) for line in raw.splitlines() if line.strip()]


def logged_last(path) -> list[dict] | None:
    """The access lines once the request marked `last=1` is among them (each must be JSON)."""
    lines = json_lines(path) if path.exists() else []
    return lines if any("last=1" in line["request"] for line in lines) else None


def wait_for(check, limit: float = 10):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    return check()


@pytest.fixture
def proxied(service, nginx, tmp_path):
    """gunicorn on a Unix socket, nginx in front; return (base URL, nginx dir, gunicorn log)."""
    sock = tmp_path / "web.sock"
    _, _, log = service(f"unix:{sock}", workers=2, RECEIVER_HOOK_TOKEN=HOOK_TOKEN)
    base, prefix = nginx(str(sock))
    return base, prefix, log


def test_callbacks_pass_through_nginx_and_oversized_bodies_get_the_json_413(proxied):
    base, _, _ = proxied
    status, body = request(base, "POST", VOD, notice("via-nginx"), vod_headers())
    assert status == 200, body
    assert json.loads(body)["ok"] is True
    # nginx holds the app's limit: 1 MiB passes through, one byte more is refused up front
    status, body = request(base, "POST", VOD, b"x" * (1 << 20), vod_headers())
    assert status == 400 and json.loads(body)["quarantine_id"], body  # the app's answer
    status, body = request(base, "POST", VOD, b"x" * ((1 << 20) + 1), vod_headers())
    assert status == 413, body
    assert json.loads(body) == {"ok": False, "error": "body over 1048576 bytes", "status": 413}


NOT_ANSWERING = {
    "ok": False,
    "error": "the service is not answering; try again later",
    "status": 502,
}


@pytest.mark.parametrize("how", ["stopped", "killed"])
def test_with_gunicorn_down_nginx_answers_the_apps_json_error_shape(service, nginx, tmp_path, how):
    sock = tmp_path / "web.sock"
    _, gunicorn, _ = service(f"unix:{sock}", workers=1, RECEIVER_HOOK_TOKEN=HOOK_TOKEN)
    base, _ = nginx(str(sock))
    assert request(base, "GET", "/healthz")[0] == 200
    if how == "stopped":  # SIGTERM: gunicorn removes its socket
        gunicorn.terminate()
    else:  # SIGKILL of every process: the socket file stays, nobody listens on it
        for pid in [gunicorn.pid, *children(gunicorn.pid)]:
            os.kill(pid, signal.SIGKILL)
    gunicorn.wait(timeout=40)
    assert sock.exists() == (how == "killed")
    for method, path, body, headers in (
        ("POST", VOD, notice("while-down"), vod_headers()),
        ("POST", f"/hooks/tencent/vod?token={HOOK_TOKEN}", TENCENT_NOTICE, {}),
        ("GET", "/api/jobs", None, {"Authorization": f"Bearer {OPS_TOKEN}"}),
        ("GET", "/", None, {}),
    ):
        status, answer = request(base, method, path, body, headers)
        assert status == 502 and json.loads(answer) == NOT_ANSWERING, answer


def test_behind_nginx_the_ops_surface_needs_the_token_even_from_loopback(service, nginx, tmp_path):
    # Without RECEIVER_OPS_TOKEN the app trusts loopback clients. nginx talks to gunicorn over
    # a Unix socket, so a proxied client is never mistaken for a local one.
    sock = tmp_path / "web.sock"
    service(f"unix:{sock}", workers=1, RECEIVER_OPS_TOKEN=None)
    base, _ = nginx(str(sock))
    status, body = request(base, "GET", "/api/jobs")
    assert status == 403, body
    assert "RECEIVER_OPS_TOKEN" in json.loads(body)["error"]
    status, _ = request(base, "GET", "/api/jobs", headers={"X-Forwarded-For": "127.0.0.1"})
    assert status == 403


def test_behind_nginx_the_ops_surface_answers_with_the_token(proxied):
    base, _, _ = proxied
    status, _ = request(base, "GET", "/api/jobs")
    assert status == 401
    status, body = request(
        base, "GET", "/api/jobs", headers={"Authorization": f"Bearer {OPS_TOKEN}"}
    )
    assert status == 200, body


TENCENT = "/hooks/tencent/vod"
SECRET = HOOK_TOKEN.encode()
HOSTILE_TARGETS = [
    b"/hooks/tencent/vod?token=" + SECRET,
    b"/hooks/tencent/vod?a=1&token=" + SECRET + b"&b=2",
    b"/hooks/tencent/vod?%74oken=" + SECRET,
    b"/hooks/tencent/vod?TOKEN=" + SECRET,
    b"/hooks/tencent/vod?token%3D" + SECRET,
    b"/hooks/tencent/vod;token=" + SECRET,
    b'/healthz?q=a"b\\c\\"d',
    b"/healthz?q=\xff\xfe\xc3(&token=" + SECRET,
    b"/healthz?q=\x01\x7f&token=" + SECRET,
    b"/he\talthz?token=" + SECRET,
    b'/"\\?token=' + SECRET,
]


def send_hostile_requests(target: str) -> None:
    body = notice("hostile")
    for path in HOSTILE_TARGETS:
        raw_request(
            target,
            b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b'User-Agent: a"b\\c\xff\r\nContent-Type: application/json\r\n'
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body,
        )
    # a body over the limit (nginx logs these as errors, request line included)
    raw_request(
        target,
        b"POST /hooks/tencent/vod?token=" + SECRET + b" HTTP/1.1\r\nHost: x\r\n"
        b"Connection: close\r\nContent-Length: 2000000\r\n\r\n{}",
        1,
    )
    # a request line that never ends, and a header line over gunicorn's limit
    raw_request(target, b"GET /healthz?token=" + SECRET + b" HTTP/1.1\r\nX: " + b"y" * 9000, 1)
    raw_request(target, b"GET /healthz?token=" + SECRET + b"x" * 9000 + b" HTTP/1.1\r\n\r\n")


def test_gunicorn_access_lines_are_json_and_carry_no_secret(service, tmp_path):
    access = tmp_path / "access.log"
    target, proc, log = service(
        workers=1, RECEIVER_HOOK_TOKEN=HOOK_TOKEN, GUNICORN_ACCESSLOG=str(access)
    )
    send_hostile_requests(target)
    status, _ = request(target, "POST", f"{TENCENT}?token={HOOK_TOKEN}", TENCENT_NOTICE)
    assert status == 200  # accepted on the token
    assert request(target, "GET", "/healthz?last=1")[0] == 200
    lines = wait_for(lambda: logged_last(access))
    targets = [line["request"] for line in lines]
    assert f"POST {TENCENT}?token=[redacted] HTTP/1.1" in targets
    assert f"POST {TENCENT}?a=1&token=[redacted]&b=2 HTTP/1.1" in targets
    assert f"POST {TENCENT}?%74oken=[redacted] HTTP/1.1" in targets
    assert any('q=a"b\\c\\"d' in t for t in targets)
    assert {line["status"] for line in lines} >= {200, 401}
    assert all(isinstance(line["ms"], int) for line in lines)
    proc.terminate()
    proc.wait(timeout=30)
    for path in (access, log):
        assert SECRET not in path.read_bytes(), f"the hook token reached {path.name}"


def test_nginx_access_lines_are_json_and_carry_no_secret(proxied):
    base, prefix, gunicorn_log = proxied
    send_hostile_requests(base)
    status, _ = request(base, "POST", f"{TENCENT}?token={HOOK_TOKEN}", TENCENT_NOTICE)
    assert status == 200
    assert request(base, "GET", "/healthz?last=1")[0] == 200
    access = prefix / "access.log"
    lines = wait_for(lambda: logged_last(access))
    targets = [line["request"] for line in lines]
    assert f"POST {TENCENT}?[redacted] HTTP/1.1" in targets
    assert any('q=a"b\\c\\"d' in t for t in targets)
    assert {line["status"] for line in lines} >= {200, 400}
    for path in [gunicorn_log, *prefix.glob("*.log")]:
        assert SECRET not in path.read_bytes(), f"the hook token reached {path.name}"


def percent(text: str, twice: bool = False) -> str:
    """Every byte of `text` percent-encoded (lower-case hex), once or twice."""
    once = "".join(f"%{b:02x}" for b in text.encode())
    return once.replace("%", "%25") if twice else once


# Where a sender (or a typo in its configuration) may put the hook token, and where no
# parameter name gives it away: only its value can.
LEAKING_TARGETS = [
    f"{TENCENT}?token%3D{HOOK_TOKEN}",
    f"{TENCENT};token={HOOK_TOKEN}",
    f"{TENCENT}?t={percent(HOOK_TOKEN)}",
    f"{TENCENT}?t={percent(HOOK_TOKEN, twice=True)}",
    f"{TENCENT}/{HOOK_TOKEN}",
    f"/api/jobs?q={HOOK_TOKEN}",
    f"/{HOOK_TOKEN}",
]


def leaked_forms(secret: str) -> list[bytes]:
    forms = [secret, percent(secret), percent(secret).upper(), percent(secret, twice=True)]
    return [f.encode() for f in forms]


def test_a_secret_anywhere_in_a_request_reaches_no_log(service, tmp_path):
    access = tmp_path / "access.log"
    target, proc, log = service(
        workers=1, RECEIVER_HOOK_TOKEN=HOOK_TOKEN, GUNICORN_ACCESSLOG=str(access)
    )
    for path in LEAKING_TARGETS:
        status, _ = request(target, "POST", path, TENCENT_NOTICE, {"User-Agent": HOOK_TOKEN})
        assert 400 <= status < 500, (path, status)
    # the ops token, given where it does not belong, and a request line gunicorn refuses
    request(target, "GET", f"/api/jobs?q={OPS_TOKEN}", headers={"Referer": OPS_TOKEN})
    raw_request(target, f"GET /x;token={HOOK_TOKEN}\x01 HTTP/1.1\r\n\r\n".encode())
    assert request(target, "GET", "/healthz?last=1")[0] == 200
    lines = wait_for(lambda: logged_last(access))
    requests = [line["request"] for line in lines]
    assert f"POST {TENCENT}?token%3D[redacted] HTTP/1.1" in requests
    assert f"POST {TENCENT};token=[redacted] HTTP/1.1" in requests
    assert f"POST {TENCENT}/[redacted] HTTP/1.1" in requests
    assert sum(line["agent"] == "[redacted]" for line in lines) == len(LEAKING_TARGETS)
    proc.terminate()
    proc.wait(timeout=30)
    for path in (access, log):
        text = path.read_bytes()
        for form in leaked_forms(HOOK_TOKEN) + leaked_forms(OPS_TOKEN)[:1]:
            assert form not in text, f"{form!r} reached {path.name}"


def test_app_log_lines_never_show_a_configured_secret(make_app):
    make_app(HOOK_TOKEN="S3cret-hook/token", TENCENT_VOD_SIGN_KEY='sign key "7"')
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    log = logging.getLogger("jobledger.test-deploy-values")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning(
            "ledger.unavailable", extra={"path": "/hooks/tencent/vod;token=S3cret-hook/token"}
        )
        log.warning("hooks.seen %s", "/hooks/tencent/vod?token%3DS3cret-hook%2Ftoken")
        log.warning("odd", extra={"key": 'sign key "7"', "also": "sign+key+%22%37%22"})
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert "S3cret" not in text and "sign key" not in text and "%37" not in text, text
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0]["path"] == "/hooks/tencent/vod;token=[redacted]"
    assert lines[1]["event"] == "hooks.seen /hooks/tencent/vod?token%3D[redacted]"
    assert lines[2]["key"] == lines[2]["also"] == "[redacted]"


@pytest.mark.parametrize("credentials", [b"\xff", b"\xff\xfe==", b"\xc3\xa9", b"%%%", b"=="])
def test_basic_credentials_that_are_not_base64_text_are_a_401_behind_nginx(proxied, credentials):
    base, _, _ = proxied
    head = b"GET /jobs HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
    answer = raw_request(base, head + b"Authorization: Basic " + credentials + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:300]
    assert b"WWW-Authenticate: Basic" in answer


def test_app_log_lines_are_redacted():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    log = logging.getLogger("jobledger.test-deploy")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("hooks.seen %s", f"/hooks/tencent/vod?x=1&token={HOOK_TOKEN}&y=2")
        log.warning("hooks.extra", extra={"url": f"https://h/p?%74oken={HOOK_TOKEN}"})
        log.warning("hooks.hint: pass ?token= (RECEIVER_HOOK_TOKEN)")
    finally:
        log.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert HOOK_TOKEN not in stream.getvalue()
    assert lines[0]["event"] == "hooks.seen /hooks/tencent/vod?x=1&token=[redacted]&y=2"
    assert lines[1]["url"] == "https://h/p?%74oken=[redacted]"
    assert lines[2]["event"] == "hooks.hint: pass ?token= (RECEIVER_HOOK_TOKEN)"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("/p?token=s3cr%20t", "/p?token=[redacted]"),
        ("/p?a=b", "/p?a=b"),
        ("/p?q=token", "/p?q=token"),
        (
            "/p?api_key=k&sign=s&ops_token=t",
            "/p?api_key=[redacted]&sign=[redacted]&ops_token=[redacted]",
        ),
        ("GET /p?Token=x HTTP/1.1", "GET /p?Token=[redacted] HTTP/1.1"),
        ("/p?to%6Ben=x", "/p?to%6Ben=[redacted]"),
        ("no query token=x", "no query token=x"),
    ],
)
def test_redact(text, expected):
    assert redact(text) == expected


def probe(base: str, seconds: float, limit: float = 3) -> list[tuple[str, int, float]]:
    """Call /healthz and send a signed callback in turn for `seconds`; (what, status, s)."""
    results = []
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        for what, method, path, body, headers in (
            ("healthz", "GET", "/healthz", None, None),
            ("callback", "POST", VOD, notice(f"probe-{n}"), vod_headers()),
        ):
            started = time.monotonic()
            try:
                status = request(base, method, path, body, headers, timeout=limit)[0]
            except OSError:
                status = 0  # timed out or refused: no answer
            results.append((what, status, time.monotonic() - started))
        n += 1
        time.sleep(0.1)
    return results


def summary(results) -> str:
    worst = max(s for _, _, s in results)
    failed = sum(1 for _, status, s in results if status != 200 or s >= 1)
    return f"{len(results)} probes, {failed} failed or >= 1 s, slowest {worst:.3f} s"


@pytest.mark.parametrize("mode", ["headers", "body"])
def test_slow_clients_do_not_starve_callbacks_behind_nginx(mode, proxied, service):
    base, _, _ = proxied
    host, port = base.removeprefix("http://").rsplit(":", 1)
    with SlowClients((host, int(port)), 200, mode):
        time.sleep(1)  # let every slow connection send its first bytes and a few more
        results = probe(base, seconds=8)
    print(f"\n{mode}, 200 slow clients, through nginx: {summary(results)}")
    # The same attack straight at gunicorn (same config, same worker count), for the record:
    # its threads are all held by slow clients, and probes wait or time out.
    direct, _, _ = service(workers=2, RECEIVER_HOOK_TOKEN=HOOK_TOKEN)
    host, port = direct.removeprefix("http://").rsplit(":", 1)
    with SlowClients((host, int(port)), 200, mode):
        time.sleep(1)
        unproxied = probe(direct, seconds=5)
    print(f"{mode}, 200 slow clients, gunicorn alone: {summary(unproxied)}")

    assert len(results) >= 20, "too few probes to mean anything"
    assert {status for _, status, _ in results} == {200}, summary(results)
    assert max(s for _, _, s in results) < 1.0, summary(results)


def test_a_master_killed_hard_is_replaced_at_once_on_the_same_port(service):
    port = free_port()
    base, master, old_log = service(f"127.0.0.1:{port}", workers=2)
    answered: dict[str, str] = {}  # video -> job id, for every notice answered 200
    stop = threading.Event()

    def sender(name: str):
        # Like VOD: each notice is sent again until it is answered 200.
        i = 0
        while not stop.is_set():
            video = f"{name}-{i}"
            while not stop.is_set():
                try:
                    status, body = request(base, "POST", VOD, notice(video), vod_headers(), 5)
                except (OSError, http.client.HTTPException):
                    status = 0
                if status == 200:
                    answered[video] = json.loads(body)["job_id"]
                    break
                time.sleep(0.05)
            i += 1
            time.sleep(0.02)

    senders = [threading.Thread(target=sender, args=(f"restart-{n}",)) for n in range(2)]
    for t in senders:
        t.start()
    try:
        assert wait_for(lambda: len(answered) >= 20), "no load before the kill"
        orphans = children(master.pid)
        # Requests still arriving on the old workers keep them draining after the kill.
        with SlowClients(("127.0.0.1", port), 3, "headers", interval=0.5):
            time.sleep(0.5)
            os.kill(master.pid, signal.SIGKILL)
            master.wait()
            killed = time.monotonic()
            # restarted at once, on the same port
            _, restarted, log = service(f"127.0.0.1:{port}", workers=2, wait=False)
            stopped = lambda: old_log.read_text().count("Parent changed") == len(orphans)  # noqa: E731
            assert wait_for(stopped), "the old workers never noticed their master was gone"
            # From here on only the new server accepts: every connection must be answered.
            wait_until_serving(base, restarted, log, limit=10)
            took = time.monotonic() - killed
            results = probe(base, seconds=3)
            draining = [pid for pid in orphans if alive(pid)]
        before = len(answered)
        assert wait_for(lambda: len(answered) >= before + 20), "no notice answered after restart"
        assert restarted.poll() is None
    finally:
        stop.set()
        for t in senders:
            t.join(30)
    print(f"\nnew server serving {took:.2f} s after SIGKILL; {summary(results)}")
    assert "Connection in use" not in log.read_text(), "the new server had to wait for the port"
    assert draining, "no old worker was still draining: the test proved nothing"
    assert took < 8, f"{took:.2f} s without service"
    assert {status for _, status, _ in results} == {200}, summary(results)
    assert max(s for _, _, s in results) < 1.0, summary(results)
    assert wait_for(lambda: not any(alive(pid) for pid in orphans), 40), "old workers linger"
    # every notice answered 200, by the old workers or the new ones, is in the ledger
    auth = {"Authorization": f"Bearer {OPS_TOKEN}"}
    for video, job_id in answered.items():
        status, body = request(base, "GET", f"/api/jobs/{job_id}", headers=auth)
        assert status == 200, (video, body)
        assert json.loads(body)["media_id"] == video
