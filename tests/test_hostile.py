"""Hostile input: forged and replayed signatures, token comparison, injection,
oversized and malformed bodies and headers, deeply nested JSON, invalid UTF-8, and XSS in
every provider field rendered on a page.

Each case starts from a valid request and breaks one thing; every answer must be a
deliberate 4xx (or 200 for a value that is just data), never a 500, and the service must
keep working afterwards.
"""

import hashlib
import hmac
import json
import socket
import time
import urllib.parse

import pytest

from tests.helpers import (
    AUTH_KEYS,
    CALLBACK_URL,
    OPS_TOKEN,
    SIGN_KEY,
    assert_error_shape,
    fixture_bytes,
    fixture_json,
    http,
    tencent_signed,
    vod_headers,
)

VOD = "/hooks/aliyun/vod"
TENCENT = "/hooks/tencent/vod"
AUTH = {"Authorization": f"Bearer {OPS_TOKEN}"}
TRANSCODE = fixture_bytes("aliyun_vod-TranscodeComplete.json")


def rows(ledger, table: str) -> int:
    return ledger.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def vod_signature(url: str, ts: int, key: str) -> str:
    return hashlib.md5(f"{url}|{ts}|{key}".encode()).hexdigest()


# -- signatures ---------------------------------------------------------------------------


def _forged(headers):
    return dict(headers, **{"X-VOD-SIGNATURE": "0" * 32})


def _last_char(headers):
    sig = headers["X-VOD-SIGNATURE"]
    return dict(headers, **{"X-VOD-SIGNATURE": sig[:-1] + ("0" if sig[-1] != "0" else "1")})


def _stamp(offset: int):
    def change(headers):
        ts = int(time.time()) + offset
        return dict(
            headers,
            **{
                "X-VOD-TIMESTAMP": str(ts),
                "X-VOD-SIGNATURE": vod_signature(CALLBACK_URL, ts, AUTH_KEYS[0]),
            },
        )

    return change


def _wrong_key(headers):
    ts = int(headers["X-VOD-TIMESTAMP"])
    return dict(headers, **{"X-VOD-SIGNATURE": vod_signature(CALLBACK_URL, ts, "NotOurKey")})


def _other_url(headers):
    ts = int(headers["X-VOD-TIMESTAMP"])
    other = "https://evil.example.com/hooks/aliyun/vod"
    return dict(headers, **{"X-VOD-SIGNATURE": vod_signature(other, ts, AUTH_KEYS[0])})


def _replayed_header_pair(headers):
    # a genuine signature captured 10 minutes ago, replayed as is
    return _stamp(-600)(headers)


def _non_ascii_signature(headers):
    return dict(headers, **{"X-VOD-SIGNATURE": "é" * 32})


def _signature_of_the_key_alone(headers):
    return dict(headers, **{"X-VOD-SIGNATURE": hashlib.md5(AUTH_KEYS[0].encode()).hexdigest()})


def _huge_timestamp(headers):
    return dict(headers, **{"X-VOD-TIMESTAMP": "9" * 40})


@pytest.mark.parametrize(
    "breakage",
    [
        _forged,
        _last_char,
        _stamp(-301),
        _stamp(+301),
        _replayed_header_pair,
        _wrong_key,
        _other_url,
        _non_ascii_signature,
        _signature_of_the_key_alone,
        _huge_timestamp,
    ],
    ids=lambda f: f.__name__.strip("_") if hasattr(f, "__name__") else str(f),
)
def test_forged_replayed_and_wrong_key_vod_signatures_are_401(client, ledger, breakage):
    response = client.post(VOD, data=TRANSCODE, headers=breakage(vod_headers()))
    assert_error_shape(response, 401)
    assert rows(ledger, "events") == rows(ledger, "quarantine") == rows(ledger, "jobs") == 0


@pytest.mark.parametrize("offset", [-299, 0, 299])
def test_timestamps_inside_the_window_are_accepted(client, offset):
    response = client.post(VOD, data=TRANSCODE, headers=_stamp(offset)(vod_headers()))
    assert response.status_code == 200, response.get_json()


def test_a_replayed_valid_callback_inside_the_window_changes_nothing(client, ledger):
    headers = vod_headers()
    first = client.post(VOD, data=TRANSCODE, headers=headers).get_json()
    again = client.post(VOD, data=TRANSCODE, headers=headers).get_json()
    assert again["duplicate"] is True and again["job_id"] == first["job_id"]
    assert rows(ledger, "jobs") == 1


@pytest.mark.parametrize(
    "change",
    ["wrong_key", "expired", "far_future", "last_char", "non_ascii", "number", "no_t"],
)
def test_forged_and_replayed_tencent_signatures_are_401(client, ledger, change):
    doc = fixture_json("tencent_vod-v3-ProcedureStateChanged.json")
    now = int(time.time())
    if change == "wrong_key":
        body = tencent_signed(doc, key="NotOurKey")
    elif change == "expired":
        body = tencent_signed(doc, expiry=now - 301)
    elif change == "far_future":
        body = tencent_signed(doc, expiry=now + 3600)
    else:
        signed = json.loads(tencent_signed(doc))
        if change == "last_char":
            signed["Sign"] = signed["Sign"][:-1] + ("0" if signed["Sign"][-1] != "0" else "1")
        elif change == "non_ascii":
            signed["Sign"] = "ü" * 32
        elif change == "number":
            signed["Sign"] = 12345
        elif change == "no_t":
            del signed["T"]
        body = json.dumps(signed, ensure_ascii=False).encode()
    response = client.post(TENCENT, data=body)
    assert_error_shape(response, 401)
    assert rows(ledger, "events") == rows(ledger, "quarantine") == 0


# -- tokens: compared with hmac.compare_digest, over bytes ------------------------------------


@pytest.fixture
def compare_spy(monkeypatch):
    """Record every hmac.compare_digest call (the code under test calls it through `hmac`)."""
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    return calls


def _near_miss(token: str) -> str:
    return token[:-1] + ("x" if token[-1] != "x" else "y")


@pytest.mark.parametrize(
    "given",
    [_near_miss(OPS_TOKEN), OPS_TOKEN + "0", OPS_TOKEN[:-1], "é" * len(OPS_TOKEN), "", "\x00"],
    ids=["last-char", "longer", "shorter", "non-ascii", "empty", "nul"],
)
def test_ops_token_near_misses_are_refused_through_compare_digest(make_app, compare_spy, given):
    client = make_app(OPS_TOKEN=OPS_TOKEN).test_client()
    response = client.get("/api/stats", headers={"Authorization": f"Bearer {given}"})
    assert_error_shape(response, 401)
    if given:  # an empty credential may be refused before any comparison
        assert compare_spy, "the ops token was not compared with hmac.compare_digest"
        assert all(isinstance(a, bytes) and isinstance(b, bytes) for a, b in compare_spy)
    assert client.get("/api/stats", headers=AUTH).status_code == 200


@pytest.mark.parametrize(
    "given", [_near_miss("hook-secret-1"), "hook-secret-1 ", "hóok-secret-1", "%FF%FE"]
)
def test_hook_token_near_misses_are_refused_through_compare_digest(make_app, compare_spy, given):
    client = make_app(HOOK_TOKEN="hook-secret-1", ALIYUN_VOD_AUTH_KEYS=[]).test_client()
    body = fixture_bytes("tencent_vod-v2-NewFileUpload.json")
    query = urllib.parse.quote(given, safe="%")
    response = client.post(f"{TENCENT}?token={query}", data=body)
    assert_error_shape(response, 401)
    assert compare_spy, "the hook token was not compared with hmac.compare_digest"
    assert client.post(f"{TENCENT}?token=hook-secret-1", data=body).status_code == 200


def test_vod_signature_is_compared_with_compare_digest(client, compare_spy):
    response = client.post(VOD, data=TRANSCODE, headers=_last_char(vod_headers()))
    assert response.status_code == 401
    assert len(compare_spy) >= len(AUTH_KEYS), "every configured key is tried, in constant time"


def test_page_basic_auth_near_miss_is_refused(make_app):
    import base64

    client = make_app(OPS_TOKEN=OPS_TOKEN).test_client()
    for password in (_near_miss(OPS_TOKEN), "ö" * 10):
        raw = base64.b64encode(f"ops:{password}".encode()).decode()
        response = client.get("/jobs", headers={"Authorization": f"Basic {raw}"})
        assert response.status_code == 401
    for raw in ("%%%", base64.b64encode(b"\xff\xfe:\xff").decode()):
        response = client.get("/jobs", headers={"Authorization": f"Basic {raw}"})
        assert response.status_code == 401


@pytest.mark.parametrize("credentials", ["\xff", "\xff\xfe==", "é", "\x00", "Zm9v\u00e9"])
def test_basic_credentials_that_are_not_ascii_are_a_401_on_every_page(make_app, credentials):
    client = make_app(OPS_TOKEN=OPS_TOKEN).test_client()
    for path in ("/", "/jobs", "/quarantine", "/api/jobs", "/metrics"):
        response = client.get(path, headers={"Authorization": f"Basic {credentials}"})
        assert response.status_code == 401, (path, response.status_code)
        assert "WWW-Authenticate" in response.headers


# -- SQL injection in every filter ---------------------------------------------------------

INJECTIONS = [
    "' OR '1'='1",
    "' OR 1=1 --",
    "x'); DROP TABLE jobs; --",
    '" OR ""="',
    "succeeded' UNION SELECT * FROM events --",
    "1; DELETE FROM events",
    "%' OR id LIKE '%",
    "\\'; --",
    "succeeded\x00' OR 1=1",
]


@pytest.fixture
def recorded(client):
    """Two real jobs, so a filter that leaked would return them."""
    for name in ("aliyun_vod-TranscodeComplete.json", "aliyun_vod-SnapshotComplete.json"):
        assert client.post(VOD, data=fixture_bytes(name), headers=vod_headers()).status_code == 200


@pytest.mark.parametrize("value", INJECTIONS)
@pytest.mark.parametrize(
    "param", ["state", "provider", "service", "kind", "q", "since", "until", "cursor", "limit"]
)
def test_sql_injection_in_every_filter_is_just_a_value(client, ledger, recorded, param, value):
    response = client.get("/api/jobs?" + urllib.parse.urlencode({param: value}), headers=AUTH)
    if param in ("state", "provider", "service", "since", "until", "cursor", "limit"):
        assert_error_shape(response, 400)  # not a known value, a time, our cursor, a number
    elif "\x00" in value:  # matches nothing on SQLite, cannot even be sent to PostgreSQL
        assert assert_error_shape(response, 400)["parameter"] == param
    else:
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["jobs"] == []  # matched nothing: the value was data
    page = client.get("/jobs?" + urllib.parse.urlencode({param: value}), headers=AUTH)
    assert page.status_code in (200, 400, 404)
    assert rows(ledger, "jobs") == 2 and rows(ledger, "events") == 2


@pytest.mark.parametrize("value", INJECTIONS)
def test_sql_injection_in_the_job_id_is_404(client, ledger, recorded, value):
    response = client.get("/api/jobs/" + urllib.parse.quote(value, safe=""), headers=AUTH)
    assert response.status_code == 404
    assert rows(ledger, "jobs") == 2


def test_injection_in_repeated_filters_and_combinations(client, ledger, recorded):
    clean = [v for v in INJECTIONS if "\x00" not in v]
    query = [("kind", v) for v in clean] + [("state", "failed"), ("q", INJECTIONS[1])]
    response = client.get("/api/jobs?" + urllib.parse.urlencode(query), headers=AUTH)
    assert response.status_code == 200 and response.get_json()["jobs"] == []
    query = [("state", "failed"), ("state", INJECTIONS[0])]  # one unknown among known ones
    assert_error_shape(client.get("/api/jobs?" + urllib.parse.urlencode(query), headers=AUTH), 400)
    assert rows(ledger, "jobs") == 2


# -- bodies: size, nesting, encoding --------------------------------------------------------


def test_oversized_body_is_413_and_stores_nothing(client, ledger):
    doc = fixture_json("aliyun_vod-TranscodeComplete.json")
    doc["Extend"] = "x" * (1024 * 1024)
    response = client.post(VOD, data=json.dumps(doc).encode(), headers=vod_headers())
    assert_error_shape(response, 413)
    assert rows(ledger, "events") == rows(ledger, "quarantine") == 0


@pytest.mark.parametrize("depth", [50, 500, 990, 1000, 5000, 100_000])
@pytest.mark.parametrize("shape", ["array", "object", "inside-an-event"])
def test_deeply_nested_json_is_never_a_500(client, ledger, depth, shape):
    if shape == "array":
        body = ("[" * depth + "]" * depth).encode()
    elif shape == "object":
        body = ('{"a":' * depth + "1" + "}" * depth).encode()
    else:
        nested = '{"a":' * depth + "1" + "}" * depth
        body = (
            '{"EventType":"TranscodeComplete","VideoId":"deep-video","Status":"success",'
            f'"EventTime":"2026-11-21T00:00:00Z","Extend":{nested}}}'
        ).encode()
    response = client.post(VOD, data=body, headers=vod_headers())
    if len(body) > 1024 * 1024:
        assert_error_shape(response, 413)
        return
    assert response.status_code in (200, 400), response.get_data(as_text=True)[:300]
    if response.status_code == 400:
        data = assert_error_shape(response, 400)
        assert data["quarantine_id"]  # authenticated: kept for replay
    else:
        assert shape == "inside-an-event"
    # and the service still answers a normal callback
    ok = client.post(VOD, data=TRANSCODE, headers=vod_headers())
    assert ok.status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        b'{"EventType": "TranscodeComplete", "VideoId": "\xff\xfe", "Status": "success"}',
        b"\xef\xbb\xbf" + TRANSCODE,  # a UTF-8 byte order mark
        b'{"EventType": "\xed\xa0\x80"}',  # an encoded surrogate
        b"\xc3\x28",
        TRANSCODE.replace(b"test data", b"\x80\x81\x82"),
        b'{"EventType": "TranscodeComplete", "VideoId": "\\ud800", "Status": "success"}',
        TRANSCODE.decode().encode("utf-16"),
    ],
    ids=[
        "invalid-utf8",
        "bom",
        "surrogate-bytes",
        "truncated",
        "latin1",
        "lone-surrogate-escape",
        "utf16",
    ],
)
@pytest.mark.parametrize("path", [VOD, TENCENT])
def test_invalid_utf8_and_odd_encodings_are_never_a_500(client, ledger, body, path):
    headers = vod_headers() if path == VOD else {"Content-Type": "application/json"}
    response = client.post(path, data=body, headers=headers)
    assert response.status_code in (200, 400, 401), response.get_data(as_text=True)[:300]
    assert response.is_json
    if path == VOD and response.status_code == 400:
        assert rows(ledger, "quarantine") >= 1
    if response.status_code == 200:
        # stored and shown back without breaking the API's JSON
        job = client.get(f"/api/jobs/{response.get_json()['job_id']}", headers=AUTH)
        assert job.status_code == 200 and job.is_json


def test_invalid_utf8_in_query_strings_and_paths(client, recorded):
    for path in ("/api/jobs?q=%FF%FE", "/api/jobs?state=%C3%28", "/api/jobs/%FF", "/jobs?q=%FF"):
        response = client.get(path, headers=AUTH)
        assert response.status_code in (200, 400, 404), (path, response.status_code)


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", ""]
)
def test_any_content_type_is_read_as_the_raw_body(client, content_type):
    headers = dict(vod_headers(), **{"Content-Type": content_type})
    response = client.post(VOD, data=TRANSCODE, headers=headers)
    assert response.status_code == 200, response.get_json()


# -- through the real server: header limits -------------------------------------------------


def raw_request(base: str, data: bytes, timeout: float = 10) -> bytes:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/") else 0


@pytest.mark.slow
def test_oversized_headers_are_refused_and_the_service_keeps_working(gunicorn_server, ledger):
    base = gunicorn_server(workers=1)
    signed = vod_headers()
    head = "".join(f"{k}: {v}\r\n" for k, v in signed.items())

    def post(extra_headers: str, target: str = VOD) -> int:
        request = (
            f"POST {target} HTTP/1.1\r\nHost: x\r\n{head}{extra_headers}"
            f"Content-Length: {len(TRANSCODE)}\r\nConnection: close\r\n\r\n"
        ).encode() + TRANSCODE
        return status_of(raw_request(base, request))

    one_big_header = f"X-Big: {'a' * 9000}\r\n"
    many_headers = "".join(f"X-H{i}: v\r\n" for i in range(150))
    huge_line = VOD + "?pad=" + "b" * 9000
    # gunicorn bounds headers by count x size (100 x 8190 bytes), not by their total
    big_and_many = "".join(f"X-Part{i}: {'c' * 8000}\r\n" for i in range(101))
    for status in (
        post(one_big_header),
        post(many_headers),
        post("", target=huge_line),
        post(big_and_many),
    ):
        assert status in (400, 414, 431), status
    assert rows(ledger, "events") == 0
    # the service is still there and records the next callback
    status, answer = http("POST", base + VOD, TRANSCODE, vod_headers())
    assert status == 200 and answer["ok"] is True


@pytest.mark.slow
def test_oversized_chunked_body_is_413_through_gunicorn(gunicorn_server, ledger):
    base = gunicorn_server(workers=1)
    signed = vod_headers()
    head = "".join(f"{k}: {v}\r\n" for k, v in signed.items())
    chunk = b"x" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(20)) + b"0\r\n\r\n"
    request = (
        f"POST {VOD} HTTP/1.1\r\nHost: x\r\n{head}Transfer-Encoding: chunked\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body
    assert status_of(raw_request(base, request)) == 413
    assert rows(ledger, "events") == rows(ledger, "quarantine") == 0
    status, _ = http("POST", base + VOD, TRANSCODE, vod_headers())
    assert status == 200


@pytest.mark.slow
def test_slow_or_truncated_clients_do_not_break_the_service(gunicorn_server, ledger):
    base = gunicorn_server(workers=1)
    signed = vod_headers()
    head = "".join(f"{k}: {v}\r\n" for k, v in signed.items())
    # announces more body than it sends, then hangs up
    request = (
        f"POST {VOD} HTTP/1.1\r\nHost: x\r\n{head}Content-Length: 5000\r\n\r\n"
    ).encode() + TRANSCODE[:100]
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(request)
    # a TLS hello sent to the plain-HTTP port
    garbage = raw_request(
        base,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 200 + b"\r\n\r\n",
        timeout=5,
    )
    assert status_of(garbage) in (0, 400)
    status, _ = http("POST", base + VOD, TRANSCODE, vod_headers())
    assert status == 200
    assert rows(ledger, "events") == 1  # only the complete, signed callback


# -- XSS: every provider string is escaped on the pages -----------------------------------

XSS = "<script>alert(1)</script>"
XSS_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def _xss_vod() -> dict:
    doc = fixture_json("aliyun_vod-TranscodeComplete.json")
    doc.update(VideoId="vid" + XSS, Extend=XSS, ErrorCode=XSS, ErrorMessage=XSS, Status="fail")
    for stream in doc["StreamInfos"]:
        for key, value in list(stream.items()):
            if isinstance(value, str) and key != "Status":
                stream[key] = value + XSS
        stream["FileUrl"] = "javascript:alert(1)//" + XSS
    return doc


def _xss_tencent() -> dict:
    doc = fixture_json("tencent_vod-v3-ProcedureStateChanged.json")
    task = doc["ProcedureStateChangeEvent"]
    task.update(TaskId="task" + XSS, FileId="file" + XSS, ErrCode=1, Message=XSS)
    for item in task.get("MediaProcessResultSet") or []:
        item["Type"] = XSS
        for sub in item.values():
            if isinstance(sub, dict):
                sub["Message"] = XSS
                sub["ErrCodeExt"] = XSS
                if isinstance(sub.get("Output"), dict):
                    sub["Output"]["Url"] = "javascript:alert(1)//" + XSS
    return doc


@pytest.fixture
def hostile_jobs(client):
    ids = []
    vod = client.post(VOD, data=json.dumps(_xss_vod()).encode(), headers=vod_headers())
    assert vod.status_code == 200, vod.get_json()
    ids.append(vod.get_json()["job_id"])
    tencent = client.post(TENCENT, data=tencent_signed(_xss_tencent(), key=SIGN_KEY))
    assert tencent.status_code == 200, tencent.get_json()
    ids.append(tencent.get_json()["job_id"])
    return ids


@pytest.mark.parametrize("page", ["detail", "list", "list-filtered", "dashboard"])
def test_xss_in_every_provider_field_is_escaped_on_the_pages(client, hostile_jobs, page):
    if page == "detail":
        paths = [f"/jobs/{job_id}" for job_id in hostile_jobs]
    elif page == "list":
        paths = ["/jobs"]
    elif page == "list-filtered":
        paths = ["/jobs?" + urllib.parse.urlencode({"q": "vid" + XSS, "kind": XSS})]
    else:
        paths = ["/"]
    for path in paths:
        response = client.get(path, headers=AUTH)
        assert response.status_code == 200, path
        html = response.get_data(as_text=True)
        assert "<script>" not in html.lower(), path
        assert 'href="javascript:' not in html.lower(), path
        if page != "dashboard":
            assert XSS_ESCAPED in html or "&lt;script&gt;" in html, path


def test_xss_strings_round_trip_unchanged_in_the_json_api(client, hostile_jobs):
    job = client.get(f"/api/jobs/{hostile_jobs[0]}", headers=AUTH)
    assert job.mimetype == "application/json"
    data = job.get_json()
    assert data["media_id"] == "vid" + XSS and data["error_message"] == XSS
