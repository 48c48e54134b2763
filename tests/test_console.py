"""The console: health strip, job list and job page as an on-call engineer reads them.

Everything goes through the real hooks (signed bodies) and the real pages; odd provider
values (numbers where objects belong, NaN, Infinity, 1e400) arrive the way a provider
would send them.
"""

import copy
import html as htmlib
import json
import logging
import re
from datetime import UTC, datetime, timedelta

import pytest
from markupsafe import escape

from tests.helpers import (
    AUTH_KEYS,
    fixture_json,
    tencent_signed,
    vod_headers,
)

VOD = "/hooks/aliyun/vod"
TENCENT = "/hooks/tencent/vod"
HOOK_TOKEN = "hook-token-7"
XSS = '"><script>alert(1)</script>'


def esc(text: str) -> str:
    """Escape as the templates do (Jinja's autoescape)."""
    return str(escape(text))


def strict_json(text: str):
    """Parse JSON as the standard defines it: NaN and Infinity are not JSON."""

    def refuse(token):
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def post_vod(client, doc: dict, **headers) -> dict:
    response = client.post(VOD, data=json.dumps(doc), headers={**vod_headers(), **headers})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def failed_vod(**changes) -> dict:
    doc = fixture_json("aliyun_vod-TranscodeComplete.json")
    doc.update(Status="fail", ErrorCode="InvalidVideo.NoneStream", **changes)
    doc.setdefault("ErrorMessage", "The source file has no video stream to transcode")
    return doc


def tencent_generic_failure() -> dict:
    """A v3 task flow that failed with Tencent's generic code; the subtask says why."""
    doc = fixture_json("tencent_vod-v3-ProcedureStateChanged.json")
    task = doc["ProcedureStateChangeEvent"]
    task.update(ErrCode=30010, Message="")
    sub = task["MediaProcessResultSet"][0]["TranscodeTask"]
    sub.update(Status="FAIL", ErrCodeExt="InvalidVideo.NoneStream", Message="no video stream")
    return doc


@pytest.fixture
def console(make_app):
    """An app that also takes unsigned Tencent v2 callbacks with the hook token."""
    return make_app(HOOK_TOKEN=HOOK_TOKEN).test_client()


# -- health strip -----------------------------------------------------------------------------


def test_health_strip_shows_each_feed_with_its_last_notice_and_hourly_count(console):
    post_vod(console, fixture_json("aliyun_vod-TranscodeComplete.json"))
    post_vod(console, dict(fixture_json("aliyun_vod-TranscodeComplete.json"), VideoId="v2"))
    page = console.get("/").get_data(as_text=True)
    feeds = page[page.index('id="feeds"') : page.index('id="rejections"')]
    # Named with its provider: both Alibaba and Tencent have a VOD.
    assert "<strong>Alibaba VOD callback</strong>" in feeds and "just now" in feeds
    assert '<span class="num">2</span> in the last hour' in feeds
    assert "Tencent" not in feeds  # never heard from: not listed as if it were


def test_rejected_deliveries_are_counted_by_reason_and_store_nothing(console, ledger, make_app):
    doc = json.dumps(fixture_json("aliyun_vod-TranscodeComplete.json"))
    for _ in range(3):  # a key rotated on one side only
        bad = vod_headers(key="RotatedAwayKey")
        assert console.post(VOD, data=doc, headers=bad).status_code == 401
    stale = vod_headers(ts=int(datetime.now(UTC).timestamp()) - 3600)
    assert console.post(VOD, data=doc, headers=stale).status_code == 401
    v2 = json.dumps(fixture_json("tencent_vod-v2-TranscodeComplete.json"))
    assert console.post(TENCENT + "?token=wrong", data=v2).status_code == 401
    bare = make_app(TENCENT_VOD_SIGN_KEY=None).test_client()
    assert bare.post(TENCENT, data=v2).status_code == 503
    assert ledger.conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 0
    page = console.get("/").get_data(as_text=True)
    strip = page[page.index('id="rejections"') : page.index('id="waiting"')]
    found = {
        (label, provider): int(n)
        for n, label, provider in re.findall(
            r'<span class="num">(\d+)</span> ([a-z ]+) <span class="muted">\((\w+)\)', strip
        )
    }
    assert found == {
        ("bad signatures", "aliyun_vod"): 3,
        ("stale timestamp", "aliyun_vod"): 1,
        ("bad token", "tencent_vod"): 1,
        ("not configured", "tencent_vod"): 1,
    }


def test_rejection_counters_stay_bounded(ledger):
    long_ago = datetime.now(UTC) - timedelta(days=3)
    for minute in range(5):
        ledger.rejections.count("aliyun_vod", "bad_signature", long_ago + timedelta(minutes=minute))
    ledger.rejections.count("aliyun_vod", "bad_signature", datetime.now(UTC))
    rows = ledger.conn.execute("SELECT minute, n FROM hook_rejections").fetchall()
    assert len(rows) == 1 and rows[0][1] == 1  # the first of a new minute pruned the old ones
    ledger.rejections.count("aliyun_vod", "bad_signature", datetime.now(UTC))
    assert ledger.rejections.since(datetime.now(UTC) - timedelta(hours=1))[0]["n"] == 2


def test_notices_tied_to_no_job_are_shown_escaped(console):
    doc = {"EventType": "FileDeleteComplete" + XSS, "FileDeleteEvent": {"FileIdSet": ["f1"]}}
    response = console.post(TENCENT, data=tencent_signed(doc))
    assert response.status_code == 200 and response.get_json()["job_id"] is None
    page = console.get("/").get_data(as_text=True)
    assert '<span class="num">1</span> notice tied to no job (1 in the last hour)' in page
    assert 'id="unmatched"' in page and "<script>" not in page
    assert esc("FileDeleteComplete" + XSS) in page  # in the text and the title


def test_alerts_with_no_sink_raise_a_banner_and_a_startup_warning(make_app, caplog):
    client = make_app().test_client()
    post_vod(client, failed_vod())
    page = client.get("/").get_data(as_text=True)
    assert 'id="no-sink"' in page and "1 alert recorded, but no alert sink" in page
    with caplog.at_level(logging.WARNING):
        make_app()  # start-up of the web app
    assert [r for r in caplog.records if r.getMessage() == "alerts.no-sink"]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        sinked = make_app(ALERT_WEBHOOK_URLS=["http://127.0.0.1:9/alerts"])
    assert not [r for r in caplog.records if r.getMessage() == "alerts.no-sink"]
    assert 'id="no-sink"' not in sinked.test_client().get("/").get_data(as_text=True)


def test_reconcile_once_says_alerts_are_waiting_with_no_sink(make_app, caplog):
    app = make_app()
    post_vod(app.test_client(), failed_vod())
    with caplog.at_level(logging.WARNING, logger="jobledger.alerts"):
        result = app.test_cli_runner().invoke(args=["reconcile", "--once"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["alerts_waiting"] == 1 and summary["sinks"] == 0
    assert summary["polled"] == 0 and summary["alerts_sent"] == 0
    assert [r for r in caplog.records if r.getMessage() == "alerts.no-sink"]


# -- job list ---------------------------------------------------------------------------------


def test_job_list_shows_code_and_message_relative_times_and_duration(console):
    soon = (datetime.now(UTC) + timedelta(seconds=65)).strftime("%Y-%m-%dT%H:%M:%SZ")
    job_id = post_vod(console, failed_vod(ErrorMessage="no stream " + XSS, EventTime=soon))[
        "job_id"
    ]
    page = console.get("/jobs").get_data(as_text=True)
    row = re.search(
        r'<tr>\s*<td data-label="job"><a href="/jobs/' + job_id + ".*?</tr>", page, re.S
    )
    row = row.group(0)
    whole = "InvalidVideo.NoneStream — no stream " + XSS
    assert f'title="{esc(whole)}"' in row  # the whole error on hover, escaped
    assert "<script>" not in page
    assert re.search(r'<time datetime="[^"]+" title="\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"', row)
    assert "just now" in row
    assert 'data-label="took">1 min<' in row  # finished: how long it took
    assert f'title="{job_id}"' in row and 'class="clip mono"' in row  # cut, never broken


def test_job_list_heading_and_count_say_what_is_filtered(console):
    post_vod(console, failed_vod())
    post_vod(console, dict(fixture_json("aliyun_vod-TranscodeComplete.json"), VideoId="ok1"))
    page = console.get("/jobs?state=failed&state=partial&provider=aliyun").get_data(as_text=True)
    assert "<title>Jobs: failed or partial · aliyun · jobledger</title>" in page
    assert "1 job matches these filters; showing 1" in page
    assert 'type="checkbox" name="state" value="failed" checked' in page
    assert "<select" not in page  # chips, not a scrolled multi-select


def test_job_list_links_back_to_newer_pages(console):
    ids = [
        post_vod(console, dict(fixture_json("aliyun_vod-TranscodeComplete.json"), VideoId=f"v{i}"))[
            "job_id"
        ]
        for i in range(5)
    ]

    def link(page: str, rel: str) -> str:
        return htmlib.unescape(re.search(rf'<a href="([^"]+)" rel="{rel}">', page).group(1))

    first = console.get("/jobs?limit=2&state=succeeded").get_data(as_text=True)
    assert 'rel="prev"' not in first
    second = console.get(link(first, "next")).get_data(as_text=True)
    third = console.get(link(second, "next")).get_data(as_text=True)
    assert ids[0] in third and "Newest" in third
    back = console.get(link(third, "prev")).get_data(as_text=True)
    assert ids[2] in back and ids[1] in back and ids[0] not in back
    top = console.get(link(back, "prev")).get_data(as_text=True)
    assert ids[4] in top and ids[3] in top and "state=succeeded" in link(back, "prev")


@pytest.mark.parametrize("name", ["state", "provider", "service"])
def test_unknown_filter_values_are_a_400_listing_the_valid_ones(console, name):
    page = console.get("/jobs", query_string={name: XSS})
    assert page.status_code == 400 and page.mimetype == "text/html"
    text = page.get_data(as_text=True)
    assert f"{name} must be one of" in text and "<script>" not in text and "console.css" in text
    api = console.get("/api/jobs", query_string={name: "nope"})
    assert api.status_code == 400 and f"{name} must be one of" in api.get_json()["error"]
    assert console.get("/api/jobs", query_string={"kind": "brand_new_kind"}).status_code == 200


# -- job page ---------------------------------------------------------------------------------


def test_outputs_are_a_table_with_links_only_for_http(console):
    doc = failed_vod()
    doc["StreamInfos"][0].update(Status="fail", ErrorCode="TranscodeFail", ErrorMessage="codec")
    doc["StreamInfos"][1]["FileUrl"] = "javascript:alert(1)"
    job_id = post_vod(console, doc)["job_id"]
    page = console.get(f"/jobs/{job_id}").get_data(as_text=True)
    outputs = page[page.index('id="outputs"') : page.index('id="timeline"')]
    assert "540×960" in outputs or "540×" in outputs  # resolution
    assert "925 kbit/s" in outputs and "1.8 MB" in outputs and "15 s" in outputs
    assert outputs.count('<tr class="failed">') == 1 and "TranscodeFail — codec" in outputs
    assert 'href="javascript:' not in outputs and "javascript:alert(1)" in outputs


def test_a_generic_tencent_error_takes_the_failed_subtasks_message(console):
    response = console.post(TENCENT, data=tencent_signed(tencent_generic_failure()))
    job_id = response.get_json()["job_id"]
    page = console.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert re.search(
        r'id="error-detail">Transcode subtask: InvalidVideo.NoneStream — no video stream<', page
    )
    listing = console.get("/jobs").get_data(as_text=True)
    assert "Transcode subtask: InvalidVideo.NoneStream — no video stream" in listing


def test_timeline_shows_provider_time_and_how_each_notice_was_authenticated(console):
    job_id = post_vod(console, fixture_json("aliyun_vod-TranscodeComplete.json"))["job_id"]
    page = console.get(f"/jobs/{job_id}").get_data(as_text=True)
    timeline = page[page.index('id="timeline"') : page.index('id="alerts"')]
    assert re.search(r'data-label="provider time"><span title="[^"]+ UTC">\d{4}-', timeline)
    assert 'data-label="authenticated by">signature<' in timeline
    assert 'data-copy="' in page and "Copy media id" in page  # copyable ids


ODD_PLAYSETS = {
    "numbers": [1, 2.5, 3],
    "lists": [[1, 2], ["a"]],
    "null": [None],
    "mixed": [{"url": "javascript:x", "definition": [1]}, 7, None, {"nested": {"a": [1]}}],
    "not a list": 42,
}


@pytest.mark.parametrize("shape", ODD_PLAYSETS)
def test_odd_playsets_render_and_serialize(console, shape):
    doc = fixture_json("tencent_vod-v2-TranscodeComplete.json")
    doc["data"]["playSet"] = ODD_PLAYSETS[shape]
    response = console.post(f"{TENCENT}?token={HOOK_TOKEN}", data=json.dumps(doc))
    assert response.status_code == 200, response.get_data(as_text=True)
    job_id = response.get_json()["job_id"]
    page = console.get(f"/jobs/{job_id}")
    assert page.status_code == 200
    assert 'href="javascript:' not in page.get_data(as_text=True)
    strict_json(console.get(f"/api/jobs/{job_id}").get_data(as_text=True))


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_become_null_in_the_api_and_text_on_the_page(console, token):
    doc = fixture_json("tencent_vod-v2-TranscodeComplete.json")
    raw = json.dumps(doc).replace('"vbitrate": 246000', f'"vbitrate": {token}', 1)
    raw = raw.replace('"duration": 599', f'"duration": {token}', 1)
    assert token in raw
    response = console.post(f"{TENCENT}?token={HOOK_TOKEN}", data=raw)
    assert response.status_code == 200, response.get_data(as_text=True)
    job_id = response.get_json()["job_id"]
    assert console.get(f"/jobs/{job_id}").status_code == 200
    job = strict_json(console.get(f"/api/jobs/{job_id}").get_data(as_text=True))
    assert job["outputs"][0]["vbitrate"] is None
    assert token in job["events"][0]["payload"]  # the raw notice keeps the provider's text
    listing = strict_json(console.get("/api/jobs").get_data(as_text=True))
    assert listing["jobs"][0]["outputs"][0]["vbitrate"] is None


def test_every_provider_string_is_escaped_in_titles_too(console):
    doc = failed_vod(VideoId="vid" + XSS, ErrorMessage=XSS)
    doc["ErrorCode"] = "E" + XSS
    doc["StreamInfos"][0].update(Definition=XSS, Status="fail", ErrorMessage=XSS)
    job_id = post_vod(console, doc)["job_id"]
    post_vod(console, copy.deepcopy(doc))  # a duplicate, in the timeline too
    for path in ("/", "/jobs", f"/jobs/{job_id}", "/jobs?q=vid" + XSS):
        page = console.get(path).get_data(as_text=True)
        assert "<script>" not in page, path
        for title in re.findall(r'title="([^"]*)"', page):
            assert "<" not in title and ">" not in title, (path, title)
    page = console.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert f'title="{esc("vid" + XSS)}"' in page
    assert f'data-copy="{esc("vid" + XSS)}"' in page


def test_pages_send_a_strict_content_security_policy(console):
    post_vod(console, fixture_json("aliyun_vod-TranscodeComplete.json"))
    for path in ("/", "/jobs"):
        policy = console.get(path).headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    page = console.get("/").get_data(as_text=True)
    assert "<script>" not in page and " style=" not in page  # no inline script or style
    for name in ("console.js", "console.css"):  # served from the package, no CDN
        with console.get(f"/static/{name}") as response:
            assert response.status_code == 200


def test_an_accepted_delivery_is_not_a_rejection(console):
    # The health strip counts only failures: a delivery signed with the other active key of
    # a rotation is accepted and is not a rejection.
    doc = fixture_json("aliyun_vod-TranscodeComplete.json")
    post_vod(console, doc, **vod_headers(key=AUTH_KEYS[1]))
    assert "None." in console.get("/").get_data(as_text=True).split('id="rejections"')[1][:400]
