"""/metrics: ledger counters and per-request metrics, summed across gunicorn workers."""

import concurrent.futures
import json
import re

import pytest

from tests.helpers import OPS_TOKEN, fixture_bytes, fixture_json, http, vod_headers

pytestmark = pytest.mark.engines


def sample(text: str, name: str, **labels) -> float:
    """Return one sample's value from Prometheus text (0 if absent)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_from_the_ledger(client):
    body = fixture_bytes("aliyun_vod-TranscodeComplete.json")
    for _ in range(2):
        client.post("/hooks/aliyun/vod", data=body, headers=vod_headers())
    client.post("/hooks/aliyun/vod", data=b"not json", headers=vod_headers())
    client.post("/hooks/aliyun/vod", data=body, headers={"X-VOD-TIMESTAMP": "1"})
    stream = fixture_json("aliyun_vod-StreamTranscodeComplete.json")
    client.post("/hooks/aliyun/vod", data=json.dumps(stream), headers=vod_headers())
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    assert (
        sample(
            text,
            "jobledger_notices_total",
            source="http",
            event_type="TranscodeComplete",
            outcome="recorded",
        )
        == 1
    )
    assert sample(text, "jobledger_notices_total", outcome="duplicate") == 1
    assert sample(text, "jobledger_notices_total", outcome="quarantined") == 1
    assert sample(text, "jobledger_jobs", kind="transcode", state="succeeded") == 1
    assert sample(text, "jobledger_jobs", kind="transcode", state="processing") == 1
    assert sample(text, "jobledger_oldest_unfinished_job_age_seconds") >= 0
    assert "jobledger_apply_seconds_bucket" in text
    assert sample(text, "jobledger_hook_requests_total", outcome="unauthorized") >= 1


def test_metrics_need_the_ops_token(make_app):
    client = make_app(OPS_TOKEN=OPS_TOKEN).test_client()
    assert client.get("/metrics").status_code == 401
    ok = client.get("/metrics", headers={"Authorization": f"Bearer {OPS_TOKEN}"})
    assert ok.status_code == 200


@pytest.mark.slow
def test_counts_add_up_across_gunicorn_workers(gunicorn_server):
    base = gunicorn_server(workers=3)
    template = fixture_json("aliyun_vod-TranscodeComplete.json")
    bodies = [json.dumps(dict(template, VideoId=f"m-{i}")).encode() for i in range(60)]

    def post(body):
        return http("POST", base + "/hooks/aliyun/vod", body, vod_headers())[0]

    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        assert set(pool.map(post, bodies)) == {200}
    status, text = http("GET", base + "/metrics", headers={"Authorization": f"Bearer {OPS_TOKEN}"})
    assert status == 200
    # Every worker's requests count, whichever worker answers the scrape.
    assert (
        sample(text, "jobledger_hook_requests_total", provider="aliyun_vod", outcome="recorded")
        == 60
    )
    assert sample(text, "jobledger_apply_seconds_count", provider="aliyun_vod") == 60
    assert sample(text, "jobledger_jobs", state="succeeded") == 60
