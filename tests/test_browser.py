"""The pages in a real browser: Debian's Chromium driven by Playwright (no browser download)."""

import json
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.conftest import ROOT, fixture_json, http, vod_headers

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser():
    assert Path(CHROMIUM).exists(), "install Debian's chromium (.ci/run does)"
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield launched
        launched.close()


def test_dashboard_list_detail_in_chromium(live_server, browser):
    ok = fixture_json("aliyun_vod-TranscodeComplete.json")
    bad = dict(
        ok,
        VideoId="<script>alert('pwned')</script>",
        Status="fail",
        ErrorCode="TranscodeFail",
        ErrorMessage="<img src=x onerror=alert(1)>",
    )
    for doc in (ok, bad):
        status, _ = http(
            "POST", live_server + "/hooks/aliyun/vod", json.dumps(doc).encode(), vod_headers()
        )
        assert status == 200

    page = browser.new_page()
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(live_server + "/")
    assert page.title() == "Dashboard · jobledger"
    assert page.locator("svg[role=img]").count() == 1
    assert page.get_by_role("heading", name="Recent alerts").is_visible()

    page.get_by_role("link", name="Jobs", exact=True).click()
    page.select_option("select[name=state]", ["failed"])
    page.get_by_role("button", name="Apply").click()
    assert "state=failed" in page.url
    rows = page.locator("#jobs tr")
    assert rows.count() == 2  # header + the failed job
    rows.nth(1).locator("a").first.click()

    assert page.locator("h1").inner_text().endswith("failed")
    body = page.locator("main").inner_text()
    assert "<script>alert('pwned')</script>" in body  # shown as text
    assert "<img src=x onerror=alert(1)>" in body
    page.locator("details summary").first.click()
    assert '"EventType": "TranscodeComplete"' in page.locator("pre").first.inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "job-detail.png"), full_page=True)
    assert dialogs == []  # no script ran

    page.get_by_role("button", name="Replay").first.click()  # a CSRF-protected action
    assert page.locator("#timeline").inner_text().count("replay of") == 1
    page.close()
