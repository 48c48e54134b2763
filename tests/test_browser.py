"""The pages in a real browser: Debian's Chromium driven by Playwright (no browser download)."""

import json

import pytest
from axe_playwright_python.sync_playwright import Axe

from tests.browser import ARTIFACTS
from tests.helpers import fixture_json, http, tencent_signed, vod_headers

pytestmark = pytest.mark.slow


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
    page.get_by_label("failed", exact=True).check()
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url("**state=failed**")
    rows = page.locator("#jobs tbody tr")
    assert rows.count() == 1  # the failed job
    rows.nth(0).locator("a").first.click()
    page.wait_for_url("**/jobs/*")

    assert page.locator("h1").inner_text().endswith("failed")
    body = page.locator("main").inner_text()
    assert "<script>alert('pwned')</script>" in body  # shown as text
    assert "<img src=x onerror=alert(1)>" in body
    page.locator("#timeline details summary").first.click()
    assert '"EventType": "TranscodeComplete"' in page.locator("#timeline pre").first.inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "job-detail.png"), full_page=True)
    assert dialogs == []  # no script ran

    with page.expect_navigation():
        page.get_by_role("button", name="Replay").first.click()  # a CSRF-protected action
    assert page.locator("#timeline").inner_text().count("replay of") == 1
    page.close()


# -- the console at desk and phone widths -------------------------------------------------------

LONG_ERROR = "The source file has no video stream that the transcoding template could use " * 2


def seed_console(base: str) -> dict:
    """A succeeded job, a failed one with a long error, and a Tencent generic failure."""
    ok = fixture_json("aliyun_vod-TranscodeComplete.json")
    failed = dict(
        ok,
        VideoId="a-rather-long-video-identifier-0123456789abcdef",
        Status="fail",
        ErrorCode="InvalidVideo.NoneStream",
        ErrorMessage=LONG_ERROR,
    )
    failed["StreamInfos"] = [
        dict(
            ok["StreamInfos"][0],
            FileUrl="https://cdn.example.com/" + "very-long-path-segment/" * 12 + "v.mp4",
        )
    ]
    ids = {}
    for name, doc in (("ok", ok), ("failed", failed)):
        status, body = http(
            "POST", base + "/hooks/aliyun/vod", json.dumps(doc).encode(), vod_headers()
        )
        assert status == 200, body
        ids[name] = body["job_id"]
    tencent = fixture_json("tencent_vod-v3-ProcedureStateChanged.json")
    task = tencent["ProcedureStateChangeEvent"]
    task.update(ErrCode=30010, Message="")
    task["MediaProcessResultSet"][0]["TranscodeTask"].update(
        Status="FAIL", ErrCodeExt="InvalidVideo.NoneStream", Message="no video stream"
    )
    status, body = http("POST", base + "/hooks/tencent/vod", tencent_signed(tencent))
    assert status == 200, body
    ids["tencent"] = body["job_id"]
    status, _ = http("POST", base + "/hooks/aliyun/vod", b"{}", vod_headers(key="Rotated"))
    assert status == 401  # shows in the health strip
    return ids


def check_page(page, name: str, width: int, scheme: str) -> None:
    """No sideways scroll, no serious accessibility problem, and a screenshot."""
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{name} at {width}px scrolls sideways by {overflow}px"
    results = Axe().run(page)
    bad = [
        (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert bad == [], f"{name} at {width}px ({scheme}): {bad}"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}-{width}-{scheme}.png"), full_page=True)


def visible_in_viewport(page, locator) -> bool:
    """Tell whether an element is shown and lies within the viewport's width."""
    if not locator.is_visible():
        return False
    box = locator.bounding_box()
    return (
        box is not None
        and box["x"] >= 0
        and box["x"] + box["width"] <= page.viewport_size["width"] + 1
    )


@pytest.mark.parametrize(
    ("width", "scheme"), [(1400, "light"), (400, "light"), (400, "dark"), (1400, "dark")]
)
def test_console_fits_and_is_accessible(live_server, browser, width, scheme):
    ids = seed_console(live_server)
    context = browser.new_context(viewport={"width": width, "height": 900}, color_scheme=scheme)
    page = context.new_page()

    page.goto(live_server + "/")
    assert page.locator("#health").is_visible()
    assert "bad signature" in page.locator("#rejections").inner_text()
    check_page(page, "dashboard", width, scheme)

    page.goto(live_server + "/jobs")
    row = page.locator("#jobs tbody tr", has=page.locator(f'a[href="/jobs/{ids["failed"]}"]'))
    state = row.locator("td[data-label=state] .state")
    error = row.locator("td[data-label=error] .clip")
    age = row.locator("td[data-label=age] time")
    kind = row.locator("td[data-label=kind]")
    for part in (state, error, age, kind):
        assert visible_in_viewport(page, part), part
    assert state.inner_text() == "failed"
    assert error.inner_text().startswith("InvalidVideo.NoneStream — The source file")
    assert error.get_attribute("title") == "InvalidVideo.NoneStream — " + LONG_ERROR.strip()
    check_page(page, "jobs", width, scheme)

    page.goto(live_server + f"/jobs/{ids['tencent']}")
    assert "InvalidVideo.NoneStream — no video stream" in page.locator("#error").inner_text()
    check_page(page, "job-tencent", width, scheme)
    page.goto(live_server + f"/jobs/{ids['failed']}")
    assert page.locator("#error").is_visible()
    check_page(page, "job-failed", width, scheme)
    context.close()


def test_console_works_without_javascript(live_server, browser):
    ids = seed_console(live_server)
    context = browser.new_context(java_script_enabled=False, viewport={"width": 400, "height": 900})
    page = context.new_page()
    page.goto(live_server + "/jobs")
    page.get_by_label("failed", exact=True).check()
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url("**state=failed**")  # the form's GET; without JavaScript a new page
    assert page.locator("#jobs tbody tr").count() == 2  # the VOD and the Tencent failure
    assert page.locator("button.copy").first.evaluate("b => b.hidden")  # copy needs the script
    assert page.locator("time[data-rel]").first.inner_text().endswith(("ago", "just now"))
    page.goto(live_server + f"/jobs/{ids['failed']}")
    assert page.locator("h1").inner_text().endswith("failed")
    context.close()


def test_live_refresh_keeps_the_scroll_position(live_server, browser):
    seed_console(live_server)
    for i in range(30):  # enough rows to scroll
        doc = dict(fixture_json("aliyun_vod-TranscodeComplete.json"), VideoId=f"scroll-{i}")
        assert (
            http(
                "POST", live_server + "/hooks/aliyun/vod", json.dumps(doc).encode(), vod_headers()
            )[0]
            == 200
        )
    context = browser.new_context(viewport={"width": 400, "height": 700})
    page = context.new_page()
    page.goto(live_server + "/jobs?refresh=5")
    assert page.locator("button.copy").first.evaluate("b => !b.hidden")  # the script runs
    page.evaluate("window.scrollTo(0, 1500)")
    y = page.evaluate("window.scrollY")
    assert y > 1000
    doc = dict(fixture_json("aliyun_vod-TranscodeComplete.json"), VideoId="arrived-later")
    status, body = http(
        "POST", live_server + "/hooks/aliyun/vod", json.dumps(doc).encode(), vod_headers()
    )
    assert status == 200
    page.wait_for_function(
        "id => document.querySelector(`a[href='/jobs/${id}']`) !== null",
        arg=body["job_id"],
        timeout=30000,
    )
    assert page.evaluate("window.scrollY") == y
    assert page.url.endswith("/jobs?refresh=5")  # swapped in place, not reloaded
    context.close()
