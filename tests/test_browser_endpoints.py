"""The endpoints pages in a real browser (Debian's Chromium through Playwright): see which
endpoint fails and why, then Retry one delivery and Recover the rest by clicking, on a
desktop and a phone width, light and dark, with no serious accessibility problem."""

import pytest
from axe_playwright_python.sync_playwright import Axe

from receiver.background import deliver
from tests.browser import ARTIFACTS
from tests.helpers import failed_transcode, record
from tests.receivers import Receiver

pytestmark = pytest.mark.slow


@pytest.fixture
def app(make_app):
    return make_app(DELIVERY_ALLOW_PRIVATE=True, DELIVERY_RETRY_SECONDS=[])


@pytest.fixture
def receiver():
    r = Receiver(default="fail")
    yield r
    r.close()


def accessible(page, name: str) -> None:
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{name} scrolls sideways by {overflow}px"
    violations = Axe().run(page).response["violations"]
    bad = [(v["id"], v["impact"]) for v in violations if v["impact"] in ("serious", "critical")]
    assert bad == [], f"{name}: {bad}"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.mark.parametrize(("width", "scheme"), [(1400, "light"), (400, "dark")])
def test_an_operator_sees_a_failing_endpoint_and_recovers_it_by_clicking(
    app, live_server, ledger, browser, receiver, width, scheme
):
    endpoint = ledger.endpoints.create(url=receiver.url, description="orders service")
    for video in ("v1", "v2", "v3"):
        record(ledger, failed_transcode(video))
    deliver.run(app.config, once=True)
    context = browser.new_context(viewport={"width": width, "height": 900}, color_scheme=scheme)
    page = context.new_page()
    page.goto(live_server + "/")
    outbound = page.locator("#outbound")
    assert "3 deliveries pending" not in outbound.inner_text()
    assert "failing since" in outbound.inner_text()
    accessible(page, f"dashboard-endpoints-{width}-{scheme}")
    outbound.locator("a", has_text=receiver.url).click()
    assert page.url.endswith(f"/endpoints/{endpoint['id']}")
    assert page.locator("#deliveries tbody tr").count() == 3
    assert "HTTP 500" in page.locator("#deliveries").inner_text()
    accessible(page, f"endpoint-{width}-{scheme}")
    receiver.default = "ok"
    page.locator("#deliveries tbody tr").first.get_by_role("button", name="Retry").click()
    assert "will be sent again now" in page.locator("#notice").inner_text()
    deliver.run(app.config, once=True)
    assert len(receiver.accepted) == 1
    page.get_by_role("button", name="Recover").click()
    assert "2 failed deliveries will be sent again" in page.locator("#notice").inner_text()
    deliver.run(app.config, once=True)
    assert len(receiver.accepted) == 3
    page.goto(live_server + "/endpoints")
    assert "ok" in page.locator("#endpoints tbody tr").first.inner_text()
    accessible(page, f"endpoints-{width}-{scheme}")
    context.close()
