"""GET /api/*: filters, search, keyset pagination, stats, errors, and ops authentication."""

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest

from receiver.providers.base import Event
from tests.helpers import OPS_TOKEN, assert_error_shape

pytestmark = pytest.mark.engines


def add(ledger, n: int, **fields) -> list[str]:
    """Record n distinct notices; return their job ids, oldest first."""
    ids = []
    for i in range(n):
        base = {
            "provider": "aliyun",
            "service": "vod",
            "event_type": "TranscodeComplete",
            "payload": "{}",
            "kind": "transcode",
            "state": "succeeded",
        }
        base.update(fields)
        base["media_id"] = f"{fields.get('media_id', 'video')}-{i}"
        key = hashlib.sha256(json.dumps(base, sort_keys=True).encode()).digest()[:16]
        event = Event(**base, dedup_key=key)
        ids.append(ledger.notices.record(event, source="http", verified=True).job_id)
    return ids


@pytest.fixture
def jobs(ledger):
    made = {
        "ok": add(ledger, 3),
        "failed": add(ledger, 2, state="failed", media_id="broken", error_code="X"),
        "tencent": add(
            ledger,
            2,
            provider="tencent",
            kind="procedure",
            state="processing",
            media_id="file",
            provider_job_id=None,
        ),
        "mps": add(
            ledger, 1, service="mps", kind="iproduction", provider_job_id="ip-job-1", media_id="oss"
        ),
    }
    return made


def get(client, path, **params):
    response = client.get(path, query_string=params or None)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_newest_first_with_every_documented_field(client, jobs):
    listed = get(client, "/api/jobs")["jobs"]
    assert len(listed) == 8
    assert [j["id"] for j in listed] == sorted((j["id"] for j in listed), reverse=True)
    assert listed[0]["id"] == jobs["mps"][0]
    assert set(listed[0]) >= {
        "id",
        "provider",
        "service",
        "kind",
        "provider_job_id",
        "media_id",
        "state",
        "preprocess",
        "error_code",
        "error_message",
        "outputs",
        "origin",
        "submitted_at",
        "updated_at",
        "finished_at",
    }


@pytest.mark.parametrize(
    ("params", "group"),
    [
        ({"state": "failed"}, "failed"),
        ({"provider": "tencent"}, "tencent"),
        ({"service": "mps"}, "mps"),
        ({"kind": "procedure"}, "tencent"),
        ({"q": "ip-job-1"}, "mps"),
        ({"q": "broken-1"}, None),
    ],
)
def test_single_filters(client, jobs, params, group):
    found = {j["id"] for j in get(client, "/api/jobs", **params)["jobs"]}
    expected = set(jobs[group]) if group else {jobs["failed"][1]}
    assert found == expected


def test_repeated_filter_values_and_combinations(client, jobs):
    both = get(client, "/api/jobs?state=failed&state=processing")["jobs"]
    assert {j["id"] for j in both} == set(jobs["failed"] + jobs["tencent"])
    none = get(client, "/api/jobs", state="failed", provider="tencent")["jobs"]
    assert none == []


def test_q_matches_the_ledger_id(client, jobs):
    job_id = jobs["ok"][1]
    assert [j["id"] for j in get(client, "/api/jobs", q=job_id)["jobs"]] == [job_id]


def test_keyset_pagination_walks_everything_once(client, jobs, ledger):
    add(ledger, 7, media_id="more")
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        page = get(client, "/api/jobs", **params)
        seen += [j["id"] for j in page["jobs"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 4 and len(seen) == 15 == len(set(seen))
    assert seen == sorted(seen, reverse=True)


def test_time_range(client, jobs):
    now = datetime.now(UTC)
    assert (
        len(get(client, "/api/jobs", since=(now - timedelta(minutes=5)).isoformat())["jobs"]) == 8
    )
    assert get(client, "/api/jobs", since=(now + timedelta(minutes=5)).isoformat())["jobs"] == []
    assert get(client, "/api/jobs", until=(now - timedelta(minutes=5)).isoformat())["jobs"] == []
    assert (
        len(
            get(
                client,
                "/api/jobs",
                until=(now + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            )["jobs"]
        )
        == 8
    )


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=501",
        "limit=ten",
        "limit=-1",
        "cursor=zzz",
        "cursor=" + base64.b64encode(b"x" * 26).decode(),
        "since=yesterday",
        "until=2026-13-01",
    ],
)
def test_bad_queries_are_400(client, query):
    assert_error_shape(client.get(f"/api/jobs?{query}"), 400)


@pytest.mark.parametrize("value", ["' OR 1=1 --", "failed'); DROP TABLE jobs; --", "%", "*"])
def test_injection_strings_are_just_values(client, jobs, ledger, value):
    for name in ("kind", "q"):
        assert get(client, "/api/jobs", **{name: value})["jobs"] == []
    for name in ("state", "provider", "service"):  # closed vocabularies: a 400 naming them
        error = assert_error_shape(client.get("/api/jobs", query_string={name: value}), 400)
        assert error["error"].startswith(f"{name} must be one of") and error["parameter"] == name
    assert ledger.conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 8


def test_job_detail_and_404(client, jobs):
    job = get(client, f"/api/jobs/{jobs['failed'][0]}")
    assert job["state"] == "failed" and job["error_code"] == "X"
    assert [e["event_type"] for e in job["events"]] == ["TranscodeComplete"]
    assert_error_shape(client.get("/api/jobs/NOPE"), 404)
    assert_error_shape(client.get("/api/nothing-here"), 404)


def test_stats(client, jobs):
    stats = get(client, "/api/stats")
    assert stats == {
        "total": 8,
        "by_state": {"succeeded": 4, "failed": 2, "processing": 2},
        "by_provider": {"aliyun": 6, "tencent": 2},
        "by_service": {"vod": 7, "mps": 1},
        "by_kind": {"transcode": 5, "procedure": 2, "iproduction": 1},
    }


def test_healthz_needs_neither_auth_nor_database(make_app, tmp_path):
    client = make_app(DATABASE=str(tmp_path / "absent.db"), OPS_TOKEN=OPS_TOKEN).test_client()
    response = client.get("/healthz", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert response.status_code == 200 and response.get_json() == {"ok": True}


# -- ops authentication -----------------------------------------------------------------

REMOTE = {"REMOTE_ADDR": "203.0.113.9"}


def test_without_a_token_only_loopback_is_served(client):
    assert client.get("/api/stats").status_code == 200  # the test client is 127.0.0.1
    assert client.get("/api/stats", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    data = assert_error_shape(client.get("/api/stats", environ_base=REMOTE), 403)
    assert "RECEIVER_OPS_TOKEN" in data["error"]


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer wrong",
        "Bearer " + OPS_TOKEN + "0",
        "Basic " + base64.b64encode(f"x:{OPS_TOKEN}".encode()).decode(),
        "Token " + OPS_TOKEN,
    ],
)
def test_with_a_token_the_api_wants_the_bearer(make_app, header):
    client = make_app(OPS_TOKEN=OPS_TOKEN).test_client()
    headers = {"Authorization": header} if header else {}
    response = client.get("/api/jobs", headers=headers)  # even from loopback
    assert_error_shape(response, 401)
    assert response.headers["WWW-Authenticate"].lower().startswith("bearer")


def test_bearer_token_works_from_anywhere(make_app):
    client = make_app(OPS_TOKEN=OPS_TOKEN).test_client()
    response = client.get(
        "/api/stats", headers={"Authorization": f"Bearer {OPS_TOKEN}"}, environ_base=REMOTE
    )
    assert response.status_code == 200 and json.loads(response.data)["total"] == 0


def test_hooks_are_not_behind_ops_auth(make_app):
    client = make_app(OPS_TOKEN=OPS_TOKEN).test_client()
    response = client.post("/hooks/aliyun/vod", data=b"{}", environ_base=REMOTE)
    assert response.status_code == 401 and "signature" in response.get_json()["error"]
