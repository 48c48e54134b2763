"""The dead-letter view in a real browser (Debian's Chromium through Playwright): find a
quarantined body, replay it by clicking, discard another, on a desktop and a phone width."""

import json

import pytest

from tests.browser import ARTIFACTS
from tests.helpers import fixture_json, http, vod_headers

pytestmark = pytest.mark.slow
XSS = "<script>alert('q')</script>"


def no_horizontal_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


@pytest.mark.parametrize("width", [1400, 400])
def test_replay_and_discard_by_clicking(live_server, ledger, browser, width):
    good = json.dumps(dict(fixture_json("aliyun_vod-TranscodeComplete.json"), VideoId=XSS))
    good_id = ledger.quarantine.keep(
        provider="aliyun",
        service="vod",
        source="http",
        body=good.encode(),
        reason="refused by an older parser: " + XSS,
        verified=True,
        auth="signature",
    )
    status, answer = http(
        "POST", live_server + "/hooks/aliyun/vod", b'{"EventType": ' + XSS.encode(), vod_headers()
    )
    assert status == 400
    bad_id = answer["quarantine_id"]

    page = browser.new_page(viewport={"width": width, "height": 900})
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(live_server + "/jobs")
    with page.expect_navigation():
        page.get_by_role("link", name="Quarantine", exact=True).click()
    assert page.title() == "Quarantine · jobledger"
    rows = page.locator("#quarantine tr")
    assert rows.count() == 3  # header + two bodies, newest first
    assert rows.nth(1).get_attribute("id") == f"q-{bad_id}"
    assert no_horizontal_scroll(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"quarantine-list-{width}.png"), full_page=True)

    with page.expect_navigation():
        page.locator(f"#q-{good_id} a").first.click()
    assert XSS in page.locator("#reason").inner_text()  # shown as text, not run
    assert f'"VideoId": "{XSS}"' in page.locator("#body").inner_text()  # pretty-printed JSON
    with page.expect_navigation():
        page.get_by_role("button", name="Replay").click()
    assert "replayed as event" in page.locator("#notice").inner_text()
    assert "changed the job" in page.locator("#notice").inner_text()
    assert page.locator("h1 .q-status").inner_text() == "replayed"
    assert page.get_by_role("button", name="Replay").count() == 0
    assert no_horizontal_scroll(page)
    page.screenshot(path=str(ARTIFACTS / f"quarantine-replayed-{width}.png"), full_page=True)
    with page.expect_navigation():
        page.get_by_role("link", name=ledger.jobs.search()[0][0]["id"]).click()
    assert page.locator("h1").inner_text().endswith("succeeded")

    page.goto(live_server + "/quarantine?status=waiting")
    assert page.locator("#quarantine tr").count() == 2
    with page.expect_navigation():
        page.locator(f"#q-{bad_id} a").first.click()
    with page.expect_navigation():
        page.get_by_role("button", name="Discard").click()
    assert page.locator("#notice").inner_text() == "discarded by loopback"
    assert page.locator("h1 .q-status").inner_text() == "discarded"
    assert "not JSON" in page.locator("#reason").inner_text()
    assert no_horizontal_scroll(page)
    page.screenshot(path=str(ARTIFACTS / f"quarantine-discarded-{width}.png"), full_page=True)

    page.goto(live_server + "/quarantine")
    statuses = page.locator("#quarantine .q-status").all_inner_texts()
    assert statuses == ["discarded", "replayed"]  # kept, never deleted
    assert dialogs == []  # no script ran
    page.close()
