"""HTML pages: content, escaping of provider strings, CSRF, and ops auth on every route."""

import base64
import json
import re

import pytest
from werkzeug.routing import IntegerConverter

from tests.helpers import OPS_TOKEN, fixture_json, vod_headers

pytestmark = pytest.mark.engines

XSS = '<script>alert("x")</script>'


def post_vod(client, doc: dict) -> dict:
    response = client.post("/hooks/aliyun/vod", data=json.dumps(doc), headers=vod_headers())
    assert response.status_code == 200, response.get_json()
    return response.get_json()


@pytest.fixture
def hostile_job(client) -> str:
    """A failed job whose every provider field carries markup."""
    doc = fixture_json("aliyun_vod-TranscodeComplete.json")
    doc.update(VideoId=XSS, Status="fail", ErrorCode=XSS, ErrorMessage=XSS, Extend=XSS)
    doc["StreamInfos"][0].update(FileUrl="javascript:alert(1)", Definition=XSS, Status="fail")
    doc["StreamInfos"][1].update(FileUrl='http://cdn.example.com/a.mp4?x="><script>', Format=XSS)
    return post_vod(client, doc)["job_id"]


def test_dashboard(client, hostile_job):
    post_vod(client, fixture_json("aliyun_vod-TranscodeComplete.json"))
    html = client.get("/").get_data(as_text=True)
    assert "Jobs by state" in html and "Failures, last 24 hours" in html and "<svg" in html
    assert f'href="/jobs/{hostile_job}"' in html  # the recent alert links to the job
    assert "/jobs?provider=aliyun&amp;service=vod&amp;kind=transcode&amp;state=failed" in html


@pytest.mark.parametrize("path", ["/", "/jobs", "/jobs?state=failed", "/jobs/{id}"])
def test_provider_strings_are_escaped_everywhere(client, hostile_job, path):
    html = client.get(path.format(id=hostile_job)).get_data(as_text=True)
    assert "<script>" not in html
    assert 'href="javascript:' not in html


def test_detail_shows_the_hostile_strings_as_text(client, hostile_job):
    html = client.get(f"/jobs/{hostile_job}").get_data(as_text=True)
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert 'href="http://cdn.example.com/a.mp4?x=&#34;&gt;&lt;script&gt;"' in html
    assert "javascript:alert(1)" in html  # shown, not linked


def test_detail_has_every_field_the_timeline_and_alerts(client):
    doc = fixture_json("aliyun_vod-TranscodeComplete.json")
    doc.update(Preprocess="true", Status="fail", ErrorCode="TranscodeFail")
    job_id = post_vod(client, doc)["job_id"]
    post_vod(client, doc)  # a duplicate
    html = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert "<dt>preprocess</dt><dd>yes</dd>" in html
    assert html.count('href="http://vod.aliyunsample.com/') == 2  # outputs as links
    timeline = html[html.index('id="timeline"') : html.index('id="alerts"')]
    assert timeline.count("<details>") == 2
    rows = re.findall(r'<tr id="event-(\d+)">.*?</tr>', timeline, re.S)
    assert len(rows) == 2
    assert "&#34;EventType&#34;: &#34;TranscodeComplete&#34;" in timeline  # pretty-printed raw
    assert "waiting to be sent" in html and "TranscodeFail" in html


def test_job_list_filters_and_pages(client):
    ids = [
        post_vod(client, dict(fixture_json("aliyun_vod-TranscodeComplete.json"), VideoId=f"v{i}"))[
            "job_id"
        ]
        for i in range(5)
    ]
    html = client.get("/jobs?limit=2").get_data(as_text=True)
    assert ids[4] in html and ids[3] in html and ids[2] not in html
    next_url = re.search(r'<a href="([^"]+)" rel="next">', html).group(1).replace("&amp;", "&")
    assert ids[2] in client.get(next_url).get_data(as_text=True)
    assert ids[0] in client.get("/jobs?q=v0").get_data(as_text=True)
    assert "No jobs match" in client.get("/jobs?state=failed").get_data(as_text=True)
    refreshing = client.get("/jobs?refresh=30").get_data(as_text=True)
    assert '<meta http-equiv="refresh" content="30">' in refreshing


def test_bad_filters_get_an_html_error(client):
    response = client.get("/jobs?limit=9999")
    assert response.status_code == 400 and response.mimetype == "text/html"
    assert client.get("/jobs/NOPE").status_code == 404


# -- actions and CSRF -------------------------------------------------------------------


def csrf_from(client, job_id: str) -> tuple[str, str]:
    html = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)
    action = re.search(r'action="(/jobs/[^"]+/replay)"', html).group(1)
    return token, action


def test_replay_action_with_the_token(client):
    job_id = post_vod(client, fixture_json("aliyun_vod-TranscodeComplete.json"))["job_id"]
    token, action = csrf_from(client, job_id)
    response = client.post(action, data={"csrf": token})
    assert response.status_code == 303 and response.headers["Location"].endswith(job_id)
    events = client.get(f"/api/jobs/{job_id}").get_json()["events"]
    assert events[-1]["replay_of"] == events[0]["id"]


@pytest.mark.parametrize("how", ["no token", "wrong token", "no cookie", "foreign origin"])
def test_actions_refuse_cross_site_posts(client, how):
    job_id = post_vod(client, fixture_json("aliyun_vod-TranscodeComplete.json"))["job_id"]
    token, action = csrf_from(client, job_id)
    data, headers = {"csrf": token}, {}
    if how == "no token":
        data = {}
    elif how == "wrong token":
        data = {"csrf": "0" * 32}
    elif how == "no cookie":
        client.delete_cookie("jobledger_csrf")
    else:
        headers = {"Origin": "https://evil.example"}
    assert client.post(action, data=data, headers=headers).status_code == 403
    assert len(client.get(f"/api/jobs/{job_id}").get_json()["events"]) == 1


# -- auth everywhere --------------------------------------------------------------------

OPEN_ROUTES = {"/healthz", "/static/<path:filename>"}


def _sample_path(rule) -> str:
    """Build a URL that matches `rule`, with a sample value for each argument."""
    values = {
        arg: 1 if isinstance(rule._converters[arg], IntegerConverter) else "x"
        for arg in rule.arguments
    }
    return rule.build(values, append_unknown=False)[1]


def test_every_ops_route_is_authenticated(make_app):
    app = make_app(OPS_TOKEN=OPS_TOKEN)
    client = app.test_client()
    checked = 0
    for rule in app.url_map.iter_rules():
        if rule.rule in OPEN_ROUTES or rule.rule.startswith("/hooks/"):
            continue
        path = _sample_path(rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            response = client.open(path, method=method, environ_base={"REMOTE_ADDR": "203.0.113.5"})
            assert response.status_code == 401, (method, path, response.status_code)
            checked += 1
    assert checked >= 8


def test_every_ops_route_refuses_remote_clients_without_a_token(app):
    client = app.test_client()
    for rule in app.url_map.iter_rules():
        if rule.rule in OPEN_ROUTES or rule.rule.startswith("/hooks/"):
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            response = client.open(
                _sample_path(rule), method=method, environ_base={"REMOTE_ADDR": "198.51.100.7"}
            )
            assert response.status_code == 403, (method, rule.rule)


def test_pages_take_basic_or_bearer(make_app):
    client = make_app(OPS_TOKEN=OPS_TOKEN).test_client()
    basic = base64.b64encode(f"oncall:{OPS_TOKEN}".encode()).decode()
    assert client.get("/", headers={"Authorization": f"Basic {basic}"}).status_code == 200
    assert client.get("/jobs", headers={"Authorization": f"Bearer {OPS_TOKEN}"}).status_code == 200
    wrong = base64.b64encode(b"oncall:guess").decode()
    response = client.get("/", headers={"Authorization": f"Basic {wrong}"})
    assert response.status_code == 401 and response.mimetype == "text/html"
    assert response.headers["WWW-Authenticate"].startswith("Basic")


@pytest.mark.parametrize(
    "text", ["poll: changed. Also: your token expired, call +1 555 0100", "<b>hi</b>", "poll"]
)
def test_the_job_page_shows_only_notices_of_its_fixed_set(client, text):
    job_id = post_vod(client, fixture_json("aliyun_vod-TranscodeComplete.json"))["job_id"]
    html = client.get(f"/jobs/{job_id}", query_string={"notice": text}).get_data(as_text=True)
    assert 'id="notice"' not in html and "555 0100" not in html and "&lt;b&gt;" not in html
    html = client.get(f"/jobs/{job_id}?notice=poll-unchanged").get_data(as_text=True)
    assert '<p class="notice" id="notice" role="status">poll: unchanged</p>' in html
