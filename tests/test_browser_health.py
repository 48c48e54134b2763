"""Provider health on the dashboard, and a failed job's page, in Chromium at desk and phone
widths: the anomaly banner, the charts, nothing that scrolls sideways, no outside script."""

import json
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest

from receiver.background.health import health_pass
from tests.browser import ARTIFACTS
from tests.helpers import fixture_json, http, tencent_signed, vod_headers
from tests.test_browser import check_page
from tests.test_provider_health import PROCEDURE, TRANSCODE, running_job, steady

pytestmark = pytest.mark.slow


def seed_anomaly(base: str, ledger, config) -> None:
    """A week of 2 % failures, then 9 of 20 transcodes failing; a slow Tencent flow."""
    now = datetime.now(UTC)
    steady(ledger, TRANSCODE, now)
    steady(ledger, PROCEDURE, now, took=lambda i: 60.0 * (i % 10 + 1))
    doc = fixture_json("aliyun_vod-TranscodeComplete.json")
    for i in range(20):
        body = dict(doc, VideoId=f"burst-{i}")
        if i < 9:
            body.update(Status="fail", ErrorCode="TranscodeFail", ErrorMessage="no video")
        status, _ = http(
            "POST", base + "/hooks/aliyun/vod", json.dumps(body).encode(), vod_headers()
        )
        assert status == 200
    running_job(ledger, PROCEDURE, now, took=1 * 3600)
    health_pass(config, ledger, datetime.now(UTC))


@pytest.mark.parametrize("width", [1400, 400])
def test_dashboard_shows_the_anomaly_and_the_charts(app, live_server, ledger, browser, width):
    seed_anomaly(live_server, ledger, app.config)
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.goto(live_server + "/")
    banner = page.locator("#anomaly-aliyun-vod-transcode")
    assert banner.is_visible()
    assert banner.inner_text().startswith(
        "Alibaba VOD transcode failing 45 % in the last 15 min (baseline 2 %)"
    )
    assert page.locator("#slow-jobs").inner_text().startswith("1 job running longer")
    charts = page.locator("#provider-health svg[role=img]")
    assert charts.count() == 3  # two providers' hours, and the durations
    for i in range(charts.count()):
        labelled = charts.nth(i).get_attribute("aria-labelledby").split()
        assert all(page.locator(f"#{ident}").text_content() for ident in labelled)
        box = charts.nth(i).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= width
    here = urlsplit(live_server).netloc
    assert {urlsplit(url).netloc for url in requested} == {here}  # nothing from outside
    scripts = page.locator("script").evaluate_all("s => s.map(e => e.src)")
    assert scripts and all(urlsplit(src).netloc == here for src in scripts)
    check_page(page, "dashboard-anomaly", width, "light")
    page.get_by_role("link", name="show them").click()
    page.wait_for_url("**slow=true**")
    assert page.locator("#jobs tbody tr").count() == 1
    assert page.locator("#jobs .state-slow").inner_text() == "slow"
    check_page(page, "jobs-slow", width, "light")
    context.close()


def test_a_failed_jobs_page_fits_a_phone(live_server, browser):
    long_word = "InvalidParameter.TemplateNotFoundForDefinition" * 3
    doc = fixture_json("tencent_vod-v3-ProcedureStateChanged.json")
    task = doc["ProcedureStateChangeEvent"]
    sub = task["MediaProcessResultSet"][0]["TranscodeTask"]
    sub.update(Status="FAIL", ErrCodeExt=long_word, Message=long_word)
    # The provider's clock: the flow ran years before this ledger first heard of it.
    sub.update(BeginProcessTime="2019-02-21T08:27:43Z", FinishTime="2019-02-21T08:29:44Z")
    sub["Input"]["Definition"] = "definition-" + "x" * 60
    sub["Output"] = dict(
        sub["Output"], Url="cos://bucket/" + "segment/" * 20, Container="mov,mp4,m4a,3gp,3g2,mj2"
    )
    status, body = http("POST", live_server + "/hooks/tencent/vod", tencent_signed(doc))
    assert status == 200, body
    context = browser.new_context(viewport={"width": 400, "height": 900})
    page = context.new_page()
    page.goto(live_server + f"/jobs/{body['job_id']}")
    page.locator("#outputs details summary").first.click()  # the provider's other fields too
    assert page.locator("#outputs").is_visible()
    finish = page.locator("#time-finish").inner_text()
    assert "2019-02-21 08:29:44 UTC, the provider's event time" in finish
    assert "before it was first seen here" in finish
    assert "jobledger's clock" in page.locator("#time-start").inner_text()
    assert (
        "2019-02-21 08:27:43 UTC, the provider's clock"
        in page.locator("#time-provider-start").inner_text()
    )
    assert page.locator("#time-took").inner_text() == "2 min from the provider's own start time"
    check_page(page, "job-failed-outputs", 400, "light")
    ARTIFACTS.mkdir(exist_ok=True)
    context.close()
