"""The order page's double submit and the report's stampede button in headless Chromium,
against the live server on valkey (the demo's default server)."""

from __future__ import annotations

import pytest

from demo_project.demo import orders, reports

pytestmark = [
    pytest.mark.browser,
    pytest.mark.parametrize("real_server", ["valkey"], indirect=True),
]


@pytest.fixture
def page(browser, transactional_db, settings, real_client, live_server):
    settings.DEMO_ORDER_DELAY = 0.3
    settings.DEMO_REPORT_DELAY = 0.3
    from django.core.cache import cache

    cache.clear()
    context = browser.new_context()
    yield context.new_page()
    context.close()
    cache.clear()


def test_double_submit_places_one_order(page, live_server):
    page.goto(f"{live_server.url}/demo/orders/")
    page.get_by_test_id("double-submit").click()
    rows = page.locator("[data-testid=answers] tr")
    rows.nth(orders.SUBMITS - 1).wait_for()
    cells = [row.split("\t") for row in rows.all_inner_texts()]
    answers = sorted((c[1], c[2]) for c in cells)
    # One submit placed the order; each repeat met it still running (409) or, on a slow
    # machine, arrived after it finished and got its stored answer replayed.
    placed = [a for a in answers if a[0] == "201" and a[1] != "true"]
    assert len(placed) == 1, answers
    assert all(
        a in (("409", ""), ("409", "false"), ("201", "true")) for a in answers if a not in placed
    ), answers
    page.wait_for_function("document.querySelector('[data-testid=placed]').textContent === '1'")
    # The same form again: the stored answer, not a second order.
    page.get_by_test_id("place").click()
    rows.nth(orders.SUBMITS).wait_for()
    last = rows.nth(orders.SUBMITS).inner_text().split("\t")
    assert last[1:3] == ["201", "true"]
    assert orders.orders_placed() == 1


def test_stampede_button_computes_the_report_once(page, live_server):
    page.goto(f"{live_server.url}/demo/report/")
    assert page.get_by_test_id("computed").inner_text() == "1"
    page.get_by_test_id("stampede").click()
    result = page.get_by_test_id("stampede-result")
    page.wait_for_function(
        "document.querySelector('[data-testid=stampede-result]').textContent.includes('loads,')"
    )
    assert f"{reports.LOADS} loads, 1 computation(s); computed 2 times in all." in (
        result.inner_text()
    )
    assert reports.times_computed() == 2
