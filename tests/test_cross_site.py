"""A page from another origin must not change the ledger through the operator's browser.

Without RECEIVER_OPS_TOKEN the ops surface answers loopback clients with no credentials,
so a page served from elsewhere, opened on the operator's machine, could make Chromium
post to it. Every state-changing route, the JSON API included and routes added later, is
one rule: refused when the browser says the request is cross-site, or when a JSON body
does not say it is JSON. Scripts (no such headers) and the pages' own forms still work.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from flask import jsonify

from tests.helpers import assert_error_shape, fixture_json, http, vod_headers

pytestmark = pytest.mark.engines

VOD = "/hooks/aliyun/vod"
SAFE = {"GET", "HEAD", "OPTIONS"}


def changing_routes(app) -> list[tuple[str, str]]:
    """(method, sample path) of every route that may change something, callbacks aside."""
    out = []
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(("/hooks/", "/static/")):
            continue
        path = rule.build({arg: "1" for arg in rule.arguments}, append_unknown=False)[1]
        out += [(m, path) for m in sorted(rule.methods - SAFE)]
    return out


def seed(client) -> dict:
    """A recorded notice and two quarantined bodies, so a replay or discard would show."""
    doc = json.dumps(fixture_json("aliyun_vod-TranscodeComplete.json")).encode()
    job = client.post(VOD, data=doc, headers=vod_headers()).get_json()["job_id"]
    ids = []
    for body in (b"{oops", b"[1]"):
        ids.append(client.post(VOD, data=body, headers=vod_headers()).get_json()["quarantine_id"])
    return {"job": job, "quarantine": ids}


def unchanged(ledger) -> tuple:
    return (
        ledger.conn.execute("SELECT COUNT(*) FROM events").fetchone()[0],
        ledger.conn.execute("SELECT status FROM quarantine ORDER BY id").fetchall(),
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "http://evil.example"},
        {"Origin": "http://127.0.0.1:1"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site", "Origin": "http://localhost"},
    ],
    ids=["cross-site", "same-site", "foreign-origin", "other-port", "null-origin", "both"],
)
def test_every_state_changing_route_refuses_what_a_browser_marks_cross_site(
    app, client, ledger, headers
):
    seed(client)
    before = unchanged(ledger)
    routes = changing_routes(app)
    assert ("POST", "/api/replay") in routes and ("POST", "/quarantine/1/discard") in routes
    for method, path in routes:
        response = client.open(path, method=method, headers=headers)
        assert response.status_code == 403, (method, path, response.status_code)
        if path.startswith("/api/"):
            assert_error_shape(response, 403)
    assert unchanged(ledger) == before


def test_a_route_added_later_is_covered_by_the_same_rule(make_app):
    app = make_app()
    calls = []

    def later():
        calls.append(1)
        return jsonify(ok=True)

    app.add_url_rule("/api/later", "later", later, methods=["POST", "DELETE"])
    client = app.test_client()
    for method in ("POST", "DELETE"):
        response = client.open(
            "/api/later", method=method, headers={"Sec-Fetch-Site": "cross-site"}
        )
        assert_error_shape(response, 403)
    assert calls == []
    assert client.post("/api/later").status_code == 200 and calls == [1]  # a script's call


def test_a_json_api_body_must_say_it_is_json(client, ledger):
    seed(client)
    before = unchanged(ledger)
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        for path in ("/api/replay", "/api/jobs"):
            response = client.post(path, data=b"{}", headers={"Content-Type": content_type})
            assert_error_shape(response, 415)
    assert unchanged(ledger) == before


def test_scripts_and_same_origin_requests_still_act(client, ledger):
    ids = seed(client)["quarantine"]
    assert client.post(f"/api/quarantine/{ids[0]}/discard").status_code == 200  # curl
    same = {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"}
    assert client.post(f"/api/quarantine/{ids[1]}/discard", headers=same).status_code == 200
    statuses = ledger.conn.execute("SELECT status FROM quarantine ORDER BY id").fetchall()
    assert [s for (s,) in statuses] == ["discarded", "discarded"]


# -- a real page on another origin, in Chromium --------------------------------------------

ATTACK = """<!doctype html><html><head><title>cute cats</title></head><body>
<form id="form" method="post" action="{target}/api/replay" enctype="text/plain">
<input name='{{"target":"events","all":true,"pad":"' value='"}}'></form>
<script>
const target = "{target}";
const shots = [
  ["/api/quarantine/{q0}/discard", {{}}],
  ["/api/quarantine/{q1}/replay", {{}}],
  ["/api/replay", {{}}],
  ["/api/replay", {{body: '{{"target":"events","all":true}}',
                   headers: {{"Content-Type": "text/plain"}}}}],
  ["/quarantine/{q0}/discard", {{body: new URLSearchParams({{csrf: "x"}})}}],
];
(async () => {{
  for (const [path, init] of shots) {{
    const options = {{method: "POST", mode: "no-cors", credentials: "include", ...init}};
    try {{ await fetch(target + path, options); }} catch (e) {{}}
  }}
  document.getElementById("form").submit();
}})();
</script></body></html>"""


class AttackerSite:
    """A page served from another origin (another host name and port) than the service."""

    def __init__(self, html: str):
        page = html.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, host: str) -> str:
        return f"http://{host}:{self.server.server_port}/"

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.mark.slow
@pytest.mark.parametrize("attacker_host", ["localhost", "127.0.0.1"], ids=["cross", "same-site"])
def test_a_page_on_another_origin_cannot_act_through_chromium(
    live_server, ledger, browser, attacker_host
):
    doc = json.dumps(fixture_json("aliyun_vod-TranscodeComplete.json")).encode()
    assert http("POST", live_server + VOD, doc, vod_headers())[0] == 200
    ids = [http("POST", live_server + VOD, b"{oops", vod_headers())[1]["quarantine_id"]]
    ids.append(http("POST", live_server + VOD, b"[1]", vod_headers())[1]["quarantine_id"])
    before = unchanged(ledger)
    site = AttackerSite(ATTACK.format(target=live_server, q0=ids[0], q1=ids[1]))
    try:
        page = browser.new_page()
        answers = []
        page.on(
            "response",
            lambda r: (
                answers.append((r.request.method, r.url, r.status))
                if r.url.startswith(live_server)
                else None
            ),
        )
        with page.expect_navigation(url=live_server + "/api/replay"):
            page.goto(site.url(attacker_host))
        page.close()
    finally:
        site.close()
    posted = [(url.removeprefix(live_server), status) for method, url, status in answers]
    assert len(posted) == 6, posted  # every shot reached the service...
    assert all(status == 403 for _, status in posted), posted  # ...and was refused
    assert unchanged(ledger) == before
    # The operator's own pages still act: same origin, with their CSRF token.
    page = browser.new_page()
    page.goto(f"{live_server}/quarantine/{ids[0]}")
    with page.expect_navigation():
        page.get_by_role("button", name="Discard").click()
    assert page.locator("#notice").inner_text() == "discarded by loopback"
    assert (
        page.evaluate(
            f"fetch('/api/quarantine/{ids[1]}/discard', {{method: 'POST'}}).then(r => r.status)"
        )
        == 200
    )
    page.close()
