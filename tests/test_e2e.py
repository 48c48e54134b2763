"""End to end: the real service under gunicorn on a loopback port, driven over HTTP."""

import concurrent.futures
import json

import pytest

from tests.helpers import OPS_TOKEN, fixture_bytes, fixture_json, http, tencent_signed, vod_headers

pytestmark = pytest.mark.slow
AUTH = {"Authorization": f"Bearer {OPS_TOKEN}"}


def test_signed_callbacks_read_back_from_the_api(gunicorn_server):
    base = gunicorn_server(workers=2)
    status, vod = http(
        "POST",
        base + "/hooks/aliyun/vod",
        fixture_bytes("aliyun_vod-TranscodeComplete.json"),
        vod_headers(),
    )
    assert status == 200 and vod["state"] == "succeeded"
    body = tencent_signed(fixture_json("tencent_vod-v3-ProcedureStateChanged.json"))
    status, tencent = http(
        "POST", base + "/hooks/tencent/vod", body, {"Content-Type": "application/json"}
    )
    assert status == 200
    status, job = http("GET", f"{base}/api/jobs/{tencent['job_id']}", headers=AUTH)
    assert status == 200 and job["provider_job_id"] == "1256768367-Procedure-475b72xxxcb177t1"
    status, listing = http("GET", base + "/api/jobs?provider=aliyun", headers=AUTH)
    assert [j["id"] for j in listing["jobs"]] == [vod["job_id"]]
    assert http("GET", base + "/api/jobs")[0] == 401  # a token is set: bearer required
    status, error = http("POST", base + "/hooks/aliyun/vod", b"{}", {"X-VOD-TIMESTAMP": "1"})
    assert status == 401 and error["ok"] is False


def test_concurrent_deliveries_under_several_workers(gunicorn_server):
    """Distinct events and redeliveries from many clients: every 200 is in the ledger once."""
    base = gunicorn_server(workers=3)
    template = fixture_json("aliyun_vod-TranscodeComplete.json")
    bodies = []
    for i in range(40):
        doc = dict(template, VideoId=f"video-{i}", EventTime=f"2026-11-21T00:00:{i:02d}Z")
        bodies += [json.dumps(doc).encode()] * 3  # each notice delivered three times

    def post(body):
        return http("POST", base + "/hooks/aliyun/vod", body, vod_headers())

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(post, bodies))
    assert all(status == 200 for status, _ in answers), [a for a in answers if a[0] != 200][:3]
    assert sum(not a["duplicate"] for _, a in answers) == 40
    status, stats = http("GET", base + "/api/stats", headers=AUTH)
    assert stats["by_state"] == {"succeeded": 40} and stats["total"] == 40
