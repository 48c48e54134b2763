"""Hostile input that reached a 500: digits that are not ASCII, time bounds at the ends of
the calendar, JSON nested just shallow enough to parse, the Host header, settings' error
messages, and methods Flask answers on its own.

Every answer must be a deliberate 4xx (or a correct 200), never a 500 or a traceback.
"""

import hashlib
import json
import os
import subprocess
import sys
import time

import pytest

from receiver import create_app
from receiver.config import SECRETS, SETTINGS, ConfigError, _url, from_environ
from tests.helpers import (
    AUTH_KEYS,
    CALLBACK_URL,
    OPS_TOKEN,
    ROOT,
    SIGN_KEY,
    assert_error_shape,
    fixture_bytes,
    fixture_json,
    http,
    vod_headers,
)

VOD = "/hooks/aliyun/vod"
TENCENT = "/hooks/tencent/vod"
AUTH = {"Authorization": f"Bearer {OPS_TOKEN}"}
TRANSCODE = fixture_bytes("aliyun_vod-TranscodeComplete.json")
# isdigit() is true for each, and int() refuses the first two and reads the last
NOT_ASCII_DIGITS = ["²", "17²", "١٧٠٠٠٠٠٠٠٠"]


def rows(ledger, table: str) -> int:
    return ledger.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


# -- digits that are not ASCII ----------------------------------------------------------------


@pytest.mark.parametrize("stamp", ["²", "17²", "¹²³⁴⁵⁶⁷⁸⁹⁰"])
def test_a_vod_timestamp_of_superscript_digits_is_401(client, ledger, stamp):
    signature = hashlib.md5(f"{CALLBACK_URL}|{stamp}|{AUTH_KEYS[0]}".encode()).hexdigest()
    headers = dict(vod_headers(), **{"X-VOD-TIMESTAMP": stamp, "X-VOD-SIGNATURE": signature})
    response = client.post(VOD, data=TRANSCODE, headers=headers)
    assert_error_shape(response, 401)
    assert rows(ledger, "events") == rows(ledger, "quarantine") == 0


@pytest.mark.parametrize("expiry", NOT_ASCII_DIGITS)
def test_a_tencent_expiry_of_digits_that_are_not_ascii_is_401(client, ledger, expiry):
    doc = fixture_json("tencent_vod-v3-ProcedureStateChanged.json")
    sign = hashlib.md5(f"{SIGN_KEY}{expiry}".encode()).hexdigest()
    body = json.dumps(dict(doc, Sign=sign, T=expiry), ensure_ascii=False).encode()
    response = client.post(TENCENT, data=body)
    assert_error_shape(response, 401)
    assert rows(ledger, "events") == rows(ledger, "quarantine") == 0


@pytest.mark.parametrize("limit", ["²", "%C2%B2", "１０", "9" * 5000, "-1", " 5"])
def test_a_limit_that_is_not_ascii_digits_is_400(client, limit):
    response = client.get(f"/api/jobs?limit={limit}", headers=AUTH)
    assert_error_shape(response, 400)


def test_the_pages_take_the_same_limit_check(client):
    response = client.get("/jobs?limit=%C2%B2", headers=AUTH)
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RETENTION_DAYS", "²"),
        ("RETENTION_DAYS", "３"),
        ("ALERT_GROUP_SECONDS", "⁶⁰"),
        ("ALERT_GROUP_SECONDS", "9" * 5000),
        ("DEADLINES", "default=²"),
        ("DEADLINES", "snapshot=١٠"),
    ],
)
def test_settings_of_digits_that_are_not_ascii_stop_start_up_by_name(name, value):
    with pytest.raises(ConfigError, match=f"RECEIVER_{name} is malformed"):
        from_environ({f"RECEIVER_{name}": value})


# -- time bounds at the ends of the calendar --------------------------------------------------


@pytest.fixture
def two_jobs(client):
    for name in ("aliyun_vod-TranscodeComplete.json", "aliyun_vod-SnapshotComplete.json"):
        assert client.post(VOD, data=fixture_bytes(name), headers=vod_headers()).status_code == 200


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("until=9999-12-31T23:59:59.999999", 2),
        ("until=9999-12-31T23:59:59.999999%2B00:00", 2),
        ("until=9999-12-31T23:59:59-12:00", 2),
        ("since=0001-01-01T00:00:00", 2),
        ("since=0001-01-01T00:00:00%2B14:00", 2),
        ("since=9999-12-31T23:59:59.999999", 0),
        ("until=0001-01-01T00:00:00", 0),
        ("until=1969-12-31T23:59:59Z", 0),
    ],
)
def test_time_bounds_at_the_ends_of_the_calendar_filter(client, two_jobs, query, expected):
    response = client.get(f"/api/jobs?{query}", headers=AUTH)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert len(response.get_json()["jobs"]) == expected


def test_a_normal_time_window_still_finds_the_jobs(client, two_jobs):
    soon = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + 60))
    response = client.get(f"/api/jobs?since=2000-01-01T00:00:00Z&until={soon}Z", headers=AUTH)
    assert response.status_code == 200
    assert len(response.get_json()["jobs"]) == 2


# -- JSON nested just shallow enough to parse -------------------------------------------------


def nested(depth: int, shape: str) -> bytes:
    if shape == "array":
        return ("[" * depth + "]" * depth).encode()
    inner = '{"a":' * depth + "1" + "}" * depth
    if shape == "object":
        return inner.encode()
    return (
        '{"EventType":"TranscodeComplete","VideoId":"deep-video","Status":"success",'
        f'"EventTime":"2026-11-21T00:00:00Z","Extend":{inner}}}'
    ).encode()


@pytest.mark.slow
def test_json_nested_near_the_recursion_limit_is_400_and_quarantined(gunicorn_server, ledger):
    # Through the real server: how deep json.loads gets depends on the stack in use, and
    # under gunicorn ~980 levels parsed and then broke the dedup key (a 500, nothing kept).
    base = gunicorn_server(workers=1)
    depths = [101, 500, *range(940, 1001, 4), 10_000]
    for shape in ("object", "array", "inside-an-event"):
        for depth in depths:
            status, body = http("POST", base + VOD, nested(depth, shape), vod_headers())
            assert status == 400, (shape, depth, body)
            assert body["quarantine_id"], (shape, depth, body)
    assert rows(ledger, "quarantine") == 3 * len(depths)
    assert rows(ledger, "events") == 0
    status, body = http("POST", base + VOD, nested(90, "inside-an-event"), vod_headers())
    assert status == 200, body  # deep, but within the bound: just data

    # Replaying the quarantine after an upgrade must not crash on them either.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIVER_")}
    env["RECEIVER_DATABASE"] = str(ledger.db.conn.execute("PRAGMA database_list").fetchone()[2])
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "replay", "--quarantined"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr  # some are still unparseable: said, not crashed
    assert "Traceback" not in done.stderr
    assert done.stderr.count("still unparseable") == 3 * len(depths)


# -- every ops route, every method; the Host header without a token ---------------------------

OPEN = {"/healthz", "/static/<path:filename>"}


def ops_routes(app) -> list[tuple[str, str]]:
    """(method, sample path) of every route of the ops surface, every method Flask answers."""
    out = []
    for rule in app.url_map.iter_rules():
        if rule.rule in OPEN or rule.rule.startswith("/hooks/"):
            continue
        values = {arg: "1" for arg in rule.arguments}
        path = rule.build(values, append_unknown=False)[1]
        out += [(method, path) for method in sorted(rule.methods)]
    return out


def test_every_ops_route_requires_the_token_for_every_method(make_app):
    app = make_app(OPS_TOKEN=OPS_TOKEN)
    client = app.test_client()
    routes = ops_routes(app)
    assert {"OPTIONS", "HEAD", "GET", "POST"} <= {m for m, _ in routes}
    assert ("OPTIONS", "/metrics") in routes
    for method, path in routes:
        response = client.open(path, method=method)
        assert response.status_code == 401, (method, path, response.status_code)
        assert "Allow" not in response.headers, (method, path)


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8000", "127.0.0.1.nip.io", "localhost.evil.example"]
)
def test_without_a_token_only_loopback_host_names_reach_the_ops_surface(app, host):
    client = app.test_client()
    routes = ops_routes(app)
    for method, path in routes:
        response = client.open(path, method=method, headers={"Host": host})
        assert response.status_code == 403, (method, path, host, response.status_code)


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:8000", "127.0.0.1:5000", "[::1]:80"])
def test_without_a_token_loopback_host_names_with_any_port_are_served(client, host):
    assert client.get("/api/stats", headers={"Host": host}).status_code == 200
    assert client.get("/metrics", headers={"Host": host}).status_code == 200
    assert client.get("/", headers={"Host": host}).status_code == 200


def test_callbacks_take_any_host(client):
    headers = dict(vod_headers(), Host="media.example.com")
    assert client.post(VOD, data=TRANSCODE, headers=headers).status_code == 200


# -- settings' error messages -----------------------------------------------------------------


def test_a_malformed_webhook_url_list_names_the_item_and_shows_no_url(monkeypatch):
    monkeypatch.setenv(
        "RECEIVER_ALERT_WEBHOOK_URLS",
        "https://chat.example/hooks/T0S3CR3T/B0S3CR3T,ftp://files.example/S3CR3T-path",
    )
    with pytest.raises(ConfigError) as info:
        create_app()
    message = str(info.value)
    assert "RECEIVER_ALERT_WEBHOOK_URLS" in message and "item 2 of 2" in message
    assert "S3CR3T" not in message and "chat.example" not in message


@pytest.mark.parametrize(
    "value",
    [
        "ftp://user:S3CR3T@host.example/x",
        "https://host.example:99999/hook?token=S3CR3T",  # a bad port
        "host.example/hook?token=S3CR3T",
        "http://[S3CR3T",
        "S3CR3T",
    ],
)
@pytest.mark.parametrize("name", sorted(n for n, (p, _) in SETTINGS.items() if p is _url))
def test_no_malformed_url_setting_shows_credentials(name, value):
    try:
        from_environ({f"RECEIVER_{name}": value})
    except ConfigError as e:
        assert f"RECEIVER_{name}" in str(e)
        assert "S3CR3T" not in str(e), str(e)


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_no_malformed_secret_setting_shows_its_value(name):
    parse = SETTINGS[name][0]
    for value in ("S3CR3T", "ftp://S3CR3T", "S3CR3T,,ftp://x"):
        try:
            parse(value)
        except ValueError:
            with pytest.raises(ConfigError) as info:
                from_environ({f"RECEIVER_{name}": value})
            assert "S3CR3T" not in str(info.value)
