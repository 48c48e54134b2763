"""The dead-letter view: /api/quarantine and /quarantine, discard, single replay, auth, escaping."""

import base64
import json
import re

import pytest
from sqlite_utils import Database

from store import open_ledger
from store.connection import connect
from store.migrations import migrations
from tests.helpers import OPS_TOKEN, assert_error_shape, fixture_bytes, vod_headers

pytestmark = pytest.mark.engines

XSS = '<script>alert("q")</script>'
BEARER = {"Authorization": f"Bearer {OPS_TOKEN}"}


def basic(user: str = "alice") -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{OPS_TOKEN}".encode()).decode()}


def keep(ledger, body: bytes, **fields) -> int:
    """Quarantine a body as a hook would (a parser of an older release refused it)."""
    values = dict(provider="aliyun", service="vod", source="http", reason="older parser")
    values.update(fields)
    return ledger.quarantine.keep(body=body, verified=True, auth="signature", **values)


def poison(client, body: bytes = b"{oops") -> int:
    """Send an authenticated body today's parser refuses; return its quarantine id."""
    response = client.post("/hooks/aliyun/vod", data=body, headers=vod_headers())
    assert response.status_code == 400
    return response.get_json()["quarantine_id"]


def csrf_of(client, path: str) -> str:
    html = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)


def test_list_is_newest_first_with_every_field(client, ledger):
    first = poison(client)
    second = keep(ledger, fixture_bytes("aliyun_vod-TranscodeComplete.json"))
    third = keep(ledger, b"{}", provider="tencent", source="pull", reason="no EventType")
    data = client.get("/api/quarantine").get_json()
    assert [i["id"] for i in data["items"]] == [third, second, first]
    assert data["next_cursor"] is None
    item = data["items"][2]
    assert item["received_at"].endswith("Z") and item["reason"].startswith("body is not JSON")
    assert (item["provider"], item["service"], item["source"]) == ("aliyun", "vod", "http")
    assert (item["verified"], item["status"], item["size"]) == (True, "waiting", 5)
    assert "payload" not in item  # bodies only in the detail


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("provider=tencent", ["t"]),
        ("provider=aliyun&provider=tencent", ["t", "a2", "a1"]),
        ("source=pull", ["t"]),
        ("source=http", ["a2", "a1"]),
        ("status=waiting", ["t", "a1"]),
        ("status=discarded", ["a2"]),
        ("service=vod&status=discarded", ["a2"]),
    ],
)
def test_filters(client, ledger, query, expected):
    ids = {
        "a1": keep(ledger, b"1"),
        "a2": keep(ledger, b"2"),
        "t": keep(ledger, b"3", provider="tencent", source="pull"),
    }
    ledger.quarantine.discard(ids["a2"], by="test")
    names = {v: k for k, v in ids.items()}
    items = client.get(f"/api/quarantine?{query}").get_json()["items"]
    assert [names[i["id"]] for i in items] == expected


def test_time_range(client, ledger):
    old = keep(ledger, b"old")
    ledger.conn.execute(
        "UPDATE quarantine SET received_at = '2026-01-01T00:00:00.000Z' WHERE id = ?", (old,)
    )
    ledger.conn.commit()
    new = keep(ledger, b"new")
    ids = lambda q: [i["id"] for i in client.get(f"/api/quarantine?{q}").get_json()["items"]]  # noqa: E731
    assert ids("since=2026-06-01") == [new]
    assert ids("until=2026-01-01T00:00:00Z") == [old]
    assert ids("since=2025-12-31T23:00Z&until=2026-01-02") == [old]


def test_keyset_pages_cover_everything_once(client, ledger):
    made = [keep(ledger, f"body {i}".encode()) for i in range(7)]
    seen, url = [], "/api/quarantine?limit=3"
    while url:
        data = client.get(url).get_json()
        assert len(data["items"]) <= 3
        seen += [i["id"] for i in data["items"]]
        url = data["next_cursor"] and f"/api/quarantine?limit=3&cursor={data['next_cursor']}"
    assert seen == made[::-1]


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("provider=amazon", "provider must be one of aliyun, tencent"),
        ("source=ftp", "source must be one of http, mns, pull"),
        ("status=gone", "status must be one of waiting, replayed, discarded"),
        ("service=s3", "service must be one of vod, mps, mns"),
        ("since=yesterday", "since"),
        ("until=2026-02-30", "until"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("cursor=01ABC", "cursor"),
        ("cursor=-1", "cursor"),
    ],
)
def test_a_malformed_filter_is_a_400_naming_it(client, query, named):
    data = assert_error_shape(client.get(f"/api/quarantine?{query}"), 400)
    assert named in data["error"]


def test_detail_gives_the_body_as_text_or_base64(client, ledger):
    text_id = poison(client, b'{"EventType": "nope"')
    raw = b"\xff\xfe\x00binary\x80"
    binary_id = poison(client, raw)
    text = client.get(f"/api/quarantine/{text_id}").get_json()
    assert (text["payload"], text["payload_encoding"]) == ('{"EventType": "nope"', "text")
    assert text["meta"]["content_type"] == "application/json"
    binary = client.get(f"/api/quarantine/{binary_id}").get_json()
    assert binary["payload_encoding"] == "base64" and binary["size"] == len(raw)
    assert base64.b64decode(binary["payload"]) == raw
    for path in ("/api/quarantine/999", "/api/quarantine/99999999999999999999999"):
        assert_error_shape(client.get(path), 404)
    assert_error_shape(client.post("/api/quarantine/999/replay"), 404)
    assert_error_shape(client.post("/api/quarantine/999/discard"), 404)


def test_replay_of_a_body_that_now_parses(client, ledger):
    qid = keep(ledger, fixture_bytes("aliyun_vod-TranscodeComplete.json"))
    data = client.post(f"/api/quarantine/{qid}/replay").get_json()
    assert (data["ok"], data["status"], data["state"], data["changed"]) == (
        True,
        "replayed",
        "succeeded",
        True,
    )
    job = client.get(f"/api/jobs/{data['job_id']}").get_json()
    assert [e["id"] for e in job["events"]] == [data["event_id"]]
    assert job["events"][0]["source"] == "http" and job["events"][0]["verified"] is True
    item = client.get(f"/api/quarantine/{qid}").get_json()
    assert (item["status"], item["replay_event_id"], item["job_id"]) == (
        "replayed",
        data["event_id"],
        data["job_id"],
    )
    again = client.post(f"/api/quarantine/{qid}/replay").get_json()  # a retried click
    assert (again["ok"], again["event_id"], again["changed"]) == (True, data["event_id"], False)
    assert len(client.get(f"/api/jobs/{data['job_id']}").get_json()["events"]) == 1


def test_replay_of_a_body_that_still_fails_leaves_it_waiting(client):
    qid = poison(client)
    data = client.post(f"/api/quarantine/{qid}/replay").get_json()
    assert data["ok"] is False and "not JSON" in data["error"] and data["status"] == "waiting"
    assert client.get(f"/api/quarantine/{qid}").get_json()["status"] == "waiting"


def test_replay_of_a_notice_recorded_meanwhile_is_a_duplicate(client, ledger):
    body = fixture_bytes("aliyun_vod-TranscodeComplete.json")
    first = client.post("/hooks/aliyun/vod", data=body, headers=vod_headers()).get_json()
    qid = keep(ledger, body)
    data = client.post(f"/api/quarantine/{qid}/replay").get_json()
    assert (data["ok"], data["duplicate"], data["changed"]) == (True, True, False)
    assert data["job_id"] == first["job_id"]


def test_discard_keeps_the_row_and_says_who(make_app, ledger):
    client = make_app(OPS_TOKEN=OPS_TOKEN).test_client()
    ids = [keep(ledger, f"{i}".encode()) for i in range(3)]
    data = client.post(f"/api/quarantine/{ids[0]}/discard", headers=BEARER).get_json()
    assert (data["ok"], data["status"], data["discarded_by"]) == (True, "discarded", "token")
    assert data["discarded_at"] and data["payload"] == "0"
    again = client.post(f"/api/quarantine/{ids[0]}/discard", headers=BEARER).get_json()
    assert again["discarded_at"] == data["discarded_at"]  # idempotent
    assert_error_shape(client.post(f"/api/quarantine/{ids[0]}/replay", headers=BEARER), 409)
    # From the page, with HTTP Basic: the user name is recorded.
    html = client.get(f"/quarantine/{ids[1]}", headers=basic("alice")).get_data(as_text=True)
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)
    response = client.post(
        f"/quarantine/{ids[1]}/discard", data={"csrf": token}, headers=basic("alice")
    )
    assert response.status_code == 303
    assert ledger.quarantine.get(ids[1])["discarded_by"] == "basic:alice"
    rows = client.get("/api/quarantine", headers=BEARER).get_json()["items"]
    assert [r["status"] for r in rows] == ["waiting", "discarded", "discarded"]
    assert ledger.conn.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0] == 3


def test_discard_from_loopback_without_a_token_and_not_after_a_replay(client, ledger):
    qid = keep(ledger, fixture_bytes("aliyun_vod-TranscodeComplete.json"))
    other = keep(ledger, b"x")
    assert client.post(f"/api/quarantine/{other}/discard").get_json()["discarded_by"] == "loopback"
    assert client.post(f"/api/quarantine/{qid}/replay").get_json()["ok"] is True
    # neither a discarded nor a replayed body waits any more (the dashboard's count)
    assert ledger.quarantine.waiting() == 0 and ledger.quarantine.bodies() == []
    assert (
        "replayed already"
        in assert_error_shape(client.post(f"/api/quarantine/{qid}/discard"), 409)["error"]
    )


NEW_API_ROUTES = [
    ("GET", "/api/quarantine"),
    ("GET", "/api/quarantine/1"),
    ("POST", "/api/quarantine/1/replay"),
    ("POST", "/api/quarantine/1/discard"),
    ("POST", "/api/replay"),
]
NEW_PAGES = [
    ("GET", "/quarantine"),
    ("GET", "/quarantine/1"),
    ("POST", "/quarantine/1/replay"),
    ("POST", "/quarantine/1/discard"),
    ("GET", "/replay"),
    ("POST", "/replay"),
]


@pytest.mark.parametrize(("method", "path"), NEW_API_ROUTES)
def test_api_routes_need_the_bearer_token(make_app, ledger, method, path):
    keep(ledger, b"x")
    client = make_app(OPS_TOKEN=OPS_TOKEN).test_client()
    for headers in ({}, basic(), {"Authorization": "Bearer wrong"}):
        assert_error_shape(client.open(path, method=method, headers=headers), 401)
    assert ledger.quarantine.get(1)["status"] == "waiting"
    assert client.open(path, method=method, headers=BEARER).status_code == 200
    open_client = make_app().test_client()  # no token: loopback only
    remote = {"REMOTE_ADDR": "203.0.113.9"}
    assert_error_shape(open_client.open(path, method=method, environ_base=remote), 403)


@pytest.mark.parametrize(("method", "path"), NEW_PAGES)
def test_pages_need_credentials_and_posts_need_csrf(make_app, ledger, method, path):
    keep(ledger, b"x")
    client = make_app(OPS_TOKEN=OPS_TOKEN).test_client()
    assert client.open(path, method=method).status_code == 401
    if method == "GET":
        for headers in (basic(), BEARER):
            assert client.get(path, headers=headers).status_code == 200
        return
    html = client.get("/quarantine/1", headers=basic()).get_data(as_text=True)
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)
    form = {"csrf": token, "target": "quarantine"}
    assert client.post(path, data={"target": "quarantine"}, headers=basic()).status_code == 403
    assert client.post(path, data={**form, "csrf": "0" * 32}, headers=basic()).status_code == 403
    assert ledger.quarantine.get(1)["status"] == "waiting"  # refused: nothing happened
    assert client.post(path, data=form, headers=basic()).status_code in (200, 303)


@pytest.fixture
def hostile(client, ledger) -> dict:
    """Bodies and strings that carry markup: JSON, not JSON, not UTF-8."""
    return {
        "json": keep(ledger, json.dumps({"EventType": XSS}).encode(), reason=XSS),
        "text": poison(client, f"<<{XSS}".encode()),
        "binary": keep(ledger, b"\xff<script>\x80", meta={"user_agent": XSS}),
    }


@pytest.mark.parametrize("path", ["/quarantine", "/quarantine/{json}", "/quarantine/{text}"])
def test_every_provider_string_is_escaped(client, hostile, path):
    html = client.get(path.format(**hostile)).get_data(as_text=True)
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


def test_hover_titles_and_bodies_are_escaped(client, hostile):
    listing = client.get("/quarantine").get_data(as_text=True)
    assert 'title="&lt;script&gt;alert(&#34;q&#34;)&lt;/script&gt;"' in listing
    detail = client.get(f"/quarantine/{hostile['json']}").get_data(as_text=True)
    assert "JSON, pretty-printed" in detail
    assert "&#34;EventType&#34;: &#34;&lt;script&gt;alert(\\&#34;q\\&#34;)" in detail
    binary = client.get(f"/quarantine/{hostile['binary']}").get_data(as_text=True)
    assert "not UTF-8" in binary and "\\xff&lt;script&gt;\\x80" in binary
    assert "<dt>user agent</dt><dd><code>&lt;script&gt;" in binary


def test_a_lone_surrogate_escape_is_shown_as_received(client):
    qid = poison(client, b'{"EventType": "\\ud800"}')
    html = client.get(f"/quarantine/{qid}").get_data(as_text=True)
    assert "{&#34;EventType&#34;: &#34;\\ud800&#34;}" in html


def test_page_replay_and_discard_buttons(client, ledger):
    good = keep(ledger, fixture_bytes("aliyun_vod-TranscodeComplete.json"))
    bad = poison(client)
    token = csrf_of(client, f"/quarantine/{good}")
    response = client.post(f"/quarantine/{good}/replay", data={"csrf": token})
    assert response.status_code == 303
    html = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "replayed as event 1 (succeeded): changed the job" in html
    assert f'action="/quarantine/{good}/replay"' not in html  # done: no buttons
    response = client.post(f"/quarantine/{bad}/replay", data={"csrf": token})
    assert "still waiting: does not parse" in client.get(response.headers["Location"]).get_data(
        as_text=True
    )
    response = client.post(f"/quarantine/{bad}/discard", data={"csrf": token})
    assert "discarded by loopback" in client.get(response.headers["Location"]).get_data(
        as_text=True
    )
    assert client.post(f"/quarantine/{bad}/replay", data={"csrf": token}).status_code == 409


def test_the_nav_links_the_quarantine(client):
    assert 'href="/quarantine"' in client.get("/jobs").get_data(as_text=True)


def test_rows_kept_before_the_status_migration_stay_readable(tmp_path, make_app):
    path = tmp_path / "old.db"
    with Database(connect(path, create=True), execute_plugins=False) as db:
        migrations.apply(db, stop_before="0006_quarantine_status")
        for replayed_at in (None, "2026-11-01T00:00:00.000Z"):
            db.execute(
                "INSERT INTO quarantine (received_at, provider, service, source, reason, body,"
                " meta, verified, auth, replayed_at) VALUES"
                " ('2026-10-01T00:00:00.000Z', 'aliyun', 'vod', 'http', 'r', ?, NULL, 1,"
                " 'signature', ?)",
                (b"{}", replayed_at),
            )
        db.conn.commit()
        migrations.apply(db)
    client = make_app(DATABASE=str(path)).test_client()
    items = client.get("/api/quarantine").get_json()["items"]
    assert [(i["id"], i["status"], i["meta"]) for i in items] == [
        (2, "replayed", {}),
        (1, "waiting", {}),
    ]
    with open_ledger(path) as led:
        assert led.quarantine.search(filters={"status": ["waiting"]})[0][0]["id"] == 1


def test_the_openapi_document_covers_every_json_route(app, client):
    spec = client.get("/api/openapi.json").get_json()
    documented = {(p, m.upper()) for p, ops in spec["paths"].items() for m in ops}
    missing = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(("/api", "/hooks", "/metrics", "/healthz")):
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        paths = (
            ["/hooks/aliyun/vod", "/hooks/tencent/vod"] if path.startswith("/hooks/") else [path]
        )
        for one in paths:
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                if (one, method) not in documented:
                    missing.append((one, method))
    assert missing == []
    assert {"/api/quarantine", "/api/replay", "/metrics", "/hooks/tencent/vod"} <= set(
        spec["paths"]
    )


CHOSEN_TEXT = ["Your session expired: call +1 555 0100", "replayed as event 7: changed the job"]


@pytest.mark.parametrize("text", CHOSEN_TEXT)
def test_a_notice_in_the_url_is_a_name_from_a_fixed_set_not_text(client, ledger, text):
    qid = poison(client)
    for notice in [text, "replayed", "discarded", "duplicate"]:  # none fits a waiting body
        html = client.get(f"/quarantine/{qid}", query_string={"notice": notice}).get_data(
            as_text=True
        )
        assert 'id="notice"' not in html and text not in html
    html = client.get(f"/quarantine/{qid}?notice=waiting").get_data(as_text=True)
    assert "still waiting: does not parse" in html
    token = csrf_of(client, f"/quarantine/{qid}")
    done = client.post(f"/quarantine/{qid}/discard", data={"csrf": token})
    assert done.headers["Location"].endswith("?notice=discarded")
    assert "discarded by loopback" in client.get(done.headers["Location"]).get_data(as_text=True)
    html = client.get(f"/quarantine/{qid}", query_string={"notice": text}).get_data(as_text=True)
    assert 'id="notice"' not in html and text not in html
