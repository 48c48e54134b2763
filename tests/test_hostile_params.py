"""Fuzzed parameters, on both engines: one list of values that every route reading
parameters is walked with (every GET route of the API and the pages, the bulk replay in
JSON and as a form, the quarantine's and the endpoints' routes, ids in paths), and
`flask replay` with the same values. No answer may be a 5xx; every refusal has the one
error shape and names the parameter it refuses.
"""

import json
import re
import urllib.parse
from datetime import UTC, datetime

import pytest

from tests.helpers import assert_error_shape, fixture_json, vod_headers

pytestmark = pytest.mark.engines

VOD = "/hooks/aliyun/vod"
# Each one reached a 500 (or a 503 from a driver) on some route and engine.
FUZZ = [
    "²",
    "１０",
    "9" * 5000,
    "-1",
    "0",
    " 5",
    "",
    "18446744073709551616",
    "9223372036854775808",
    "0001-01-01T00:00:00+05:00",
    "0001-01-01T00:00:00",
    "9999-12-31T23:59:59.9999",
    "9999-12-31T23:59:59.999999-12:00",
    "\x00",
    "failed\x00",
    "' OR 1=1 --",
    "x" * 3000,
    "NaN",
    "true",
]
# Sent as they stand in a query string: bytes that are not UTF-8, a NUL, a superscript.
RAW = ["%00", "%FF%FE", "%ED%A0%80", "%C2%B2", "a%00b"]
# Every name any route reads (and a few no route reads).
NAMES = (
    "limit",
    "cursor",
    "since",
    "until",
    "q",
    "state",
    "provider",
    "service",
    "kind",
    "source",
    "status",
    "target",
    "ids",
    "after",
    "through",
    "event_type",
    "all",
    "dry_run",
    "refresh",
    "notice",
    "trail",
    "csrf",
)
REPLAY_NAMES = (
    "target",
    "provider",
    "service",
    "source",
    "event_type",
    "since",
    "until",
    "ids",
    "after",
    "through",
    "all",
    "limit",
    "status",
)
OPEN = ("/hooks/", "/static/", "/healthz")


@pytest.fixture
def seeded(client, ledger):
    """A job with an event, a quarantined body and an endpoint with a delivery: real values
    for every path argument."""
    doc = fixture_json("aliyun_vod-TranscodeComplete.json")
    answer = client.post(VOD, data=json.dumps(doc), headers=vod_headers()).get_json()
    bad = client.post(VOD, data=b'{"EventType": ', headers=vod_headers()).get_json()
    endpoint = ledger.endpoints.create(url="https://app.example.com/hooks")
    ledger.deliveries.fan_out(datetime.now(UTC))
    return {
        "job_id": answer["job_id"],
        "event_id": answer["event_id"],
        "quarantine_id": bad["quarantine_id"],
        "endpoint_id": endpoint["id"],
    }


def is_json_route(path: str) -> bool:
    return path.startswith(("/api", "/metrics"))


def check(response, path: str, name: str | None) -> None:
    """No 5xx; a refusal in the one shape, naming the parameter when it is one."""
    where = (path, name, response.status_code, response.get_data(as_text=True)[:300])
    assert response.status_code < 500, where
    if response.status_code < 400:
        return
    if is_json_route(path):
        data = assert_error_shape(response, response.status_code)
        if response.status_code == 400 and name is not None:
            assert data["parameter"] == name, where
            assert name in data["error"], where
    elif response.status_code == 400 and name is not None:
        assert name in response.get_data(as_text=True), where


def get_routes(app, seeded) -> list[str]:
    paths = []
    for rule in app.url_map.iter_rules():
        if "GET" in rule.methods and not rule.rule.startswith(OPEN):
            paths.append(rule.build({a: seeded[a] for a in rule.arguments})[1])
    return sorted(paths)


def test_every_get_route_takes_every_fuzzed_value_of_every_parameter(app, client, seeded):
    paths = get_routes(app, seeded)
    assert {"/api/jobs", "/api/quarantine", "/jobs", "/quarantine", "/replay", "/"} <= set(paths)
    assert {"/api/endpoints", "/endpoints", f"/endpoints/{seeded['endpoint_id']}"} <= set(paths)
    for path in paths:
        for name in NAMES:
            queries = [urllib.parse.urlencode({name: v}) for v in FUZZ]
            queries += [f"{name}={raw}" for raw in RAW]
            for query in queries:
                check(client.get(f"{path}?{query}"), path, name)


@pytest.mark.parametrize("dry_run", [True, False])
def test_the_json_bulk_replay_takes_every_fuzzed_value(client, seeded, dry_run):
    numbers = [2**63, 2**64, -1, 0, 10**30, 1.5, True, None, [], {}]
    for name in REPLAY_NAMES:
        for value in [*FUZZ, *numbers, [*FUZZ[:3]], [2**63], ["events", "\x00"]]:
            for target in ("quarantine", "events"):
                doc = {"target": target, name: value, "dry_run": dry_run}
                response = client.post("/api/replay", json=doc)
                where = ("/api/replay", name, value)
                assert response.status_code < 500, (where, response.get_data(as_text=True))
                if response.status_code == 400:
                    data = assert_error_shape(response, 400)
                    assert data["parameter"] in (name, "target", "all", "ids"), (where, data)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"ids": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"provider": ' + b"[" * 50 + b"]" * 50 + b"}",
        b'{"limit": ' + b"9" * 5000 + b"}",
        b'{"since": "\\u0000"}',
        b'{"\\u0000": 1}',
        b"\xff\xfe",
        b"[]",
    ],
    ids=[
        "array-100k-deep",
        "ids-100k-deep",
        "provider-50-deep",
        "5000-digit-number",
        "nul-value",
        "nul-key",
        "not-utf8",
        "not-an-object",
    ],
)
@pytest.mark.parametrize("path", ["/api/replay", "/api/jobs"])
def test_hostile_json_bodies_are_a_400_naming_the_body(client, body, path):
    response = client.post(path, data=body, headers={"Content-Type": "application/json"})
    data = assert_error_shape(response, 400)
    assert data.get("parameter") in ("body", "since", "provider", "limit"), data


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/api/jobs", "kind"),
        ("/api/jobs", "state"),
        ("/jobs", "kind"),
        ("/api/quarantine", "provider"),
        ("/quarantine", "status"),
        ("/replay", "provider"),
    ],
)
def test_more_values_than_a_statement_can_bind_are_a_400(client, seeded, path, name):
    value = {"state": "failed", "status": "waiting", "provider": "aliyun"}.get(name, "transcode")
    query = urllib.parse.urlencode([(name, value)] * 70_000)
    check(client.get(f"{path}?{query}"), path, name)
    assert client.get(f"{path}?{query}").status_code == 400


@pytest.mark.parametrize("name", ["ids", "provider", "event_type"])
def test_a_replay_filter_of_70000_values_is_a_400(client, seeded, name):
    value = {"ids": 1, "provider": "aliyun", "event_type": "X"}[name]
    doc = {"target": "events", name: [value] * 70_000, "dry_run": True}
    data = assert_error_shape(client.post("/api/replay", json=doc), 400)
    assert data["parameter"] == name


def csrf(client, seeded) -> str:
    html = client.get(f"/quarantine/{seeded['quarantine_id']}").get_data(as_text=True)
    return re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)


def test_the_bulk_replay_form_takes_every_fuzzed_value(client, seeded):
    token = csrf(client, seeded)
    for name in REPLAY_NAMES:
        for value in FUZZ:
            form = {"csrf": token, "target": "events", "all": "1", name: value}
            check(client.post("/replay", data=form), "/replay", name)
    form = {"csrf": token, "target": "events", "kind": ["x"] * 1001}
    assert client.post("/replay", data=form).status_code == 400


def test_ids_in_paths_take_every_fuzzed_value(client, seeded):
    token = csrf(client, seeded)
    values = [urllib.parse.quote(v, safe="") for v in FUZZ if v] + RAW
    for value in values:
        for path in (f"/api/jobs/{value}", f"/jobs/{value}"):
            check(client.get(path), path, None)
        for action in ("repoll", "resubmit", "events/1/replay"):
            path = f"/jobs/{value}/{action}"
            check(client.post(path, data={"csrf": token}), path, None)
        for path in (f"/api/quarantine/{value}", f"/quarantine/{value}"):
            check(client.get(path), path, None)
        for action in ("replay", "discard"):
            for path in (f"/api/quarantine/{value}/{action}", f"/quarantine/{value}/{action}"):
                check(client.post(path, data={"csrf": token}), path, None)
        reads = (f"/api/endpoints/{value}", f"/endpoints/{value}")
        for path in (*reads, f"/api/endpoints/{value}/deliveries"):
            check(client.get(path), path, None)
        check(client.patch(reads[0], json={}), reads[0], None)
        for action in ("rotate-secret", "recover"):
            path = f"/api/endpoints/{value}/{action}"
            check(client.post(path, json={}), path, None)
        path = f"/api/deliveries/{value}/retry"
        check(client.post(path), path, None)
        for action in ("recover", "enable", f"deliveries/{value}/retry"):
            path = f"/endpoints/{seeded['endpoint_id']}/{action}"
            check(client.post(path, data={"csrf": token, "since": value}), path, None)
    job = seeded["job_id"]
    for event_id in (2**63, 2**64):
        path = f"/jobs/{job}/events/{event_id}/replay"
        assert client.post(path, data={"csrf": token}).status_code == 404


@pytest.mark.parametrize(
    "args",
    [
        ["--since", "0001-01-01T00:00:00+05:00", "--all"],
        ["--until", "9999-12-31T23:59:59.9999", "--all"],
        ["--until", "9999-12-31T23:59:59.999999-12:00", "--quarantined"],
        ["18446744073709551616"],
        ["9223372036854775808", "--quarantined"],
        ["--since", "²", "--all"],
        ["--event-type", "x" * 3000],
        ["--provider", "' OR 1=1 --"],
        ["--source", "１０"],
    ],
)
def test_flask_replay_answers_the_same_values_without_a_traceback(runner, seeded, args):
    result = runner.invoke(args=["replay", *args])
    assert result.exit_code in (0, 1, 2), result.output
    assert isinstance(result.exception, SystemExit | None), repr(result.exception)
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert "Usage:" in result.output
