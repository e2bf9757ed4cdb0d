"""The demo in a real browser: headless Chromium (Playwright) against the live server.

Clicks the like button past its limit, books an event until it is sold out, saves a
document from two tabs, and runs the rate-limit page's twelve calls. On valkey, the
demo's default server. Chromium comes from the ``browser`` fixture (tests/conftest.py).
"""

from __future__ import annotations

import pytest

from tests.factories import DocumentFactory, EventFactory, PostFactory

pytestmark = [
    pytest.mark.browser,
    pytest.mark.parametrize("real_server", ["valkey"], indirect=True),
]


@pytest.fixture
def context(browser):
    """A fresh browser context (cookies, tabs) per test."""
    ctx = browser.new_context()
    yield ctx
    ctx.close()


@pytest.fixture
def signed_in(context, live_server, django_user_model, settings):
    """The browser context with a signed-in user's session (reset and the naive rush need one)."""
    from django.test import Client

    user = django_user_model.objects.create_user("visitor", password=None)
    client = Client()
    client.force_login(user)
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": live_server.url}]
    )
    return context


@pytest.fixture
def demo(transactional_db, settings, real_client):
    """Demo content for one test, with instant payments."""
    settings.DEMO_PAYMENT_DELAY = 0
    return {
        "post": PostFactory(title="Click me"),
        "event": EventFactory(name="Last seats", seats=2),
        "document": DocumentFactory(title="Shared doc", body="v1"),
    }


def test_like_button_stops_at_ten(demo, live_server, context):
    post = demo["post"]
    page = context.new_page()
    page.goto(f"{live_server.url}/demo/likes/")
    count = page.get_by_test_id(f"likes-{post.pk}")
    assert count.inner_text() == "0"
    for expected in range(1, 11):
        page.get_by_test_id(f"like-{post.pk}").click()
        page.wait_for_load_state()
        assert count.inner_text() == str(expected)
    assert page.get_by_test_id(f"like-{post.pk}").inner_text().strip() == "Full"
    page.get_by_test_id(f"like-{post.pk}").click()  # the eleventh: refused, count holds
    page.wait_for_load_state()
    assert "is full at 10 of 10: the like was not counted" in page.content()
    assert count.inner_text() == "10"


def test_booking_page_sells_the_last_seats_once(demo, live_server, signed_in):
    event = demo["event"]
    page = signed_in.new_page()
    url = f"{live_server.url}/demo/events/{event.pk}/"
    page.goto(url)
    assert page.get_by_test_id("seats-left").inner_text() == "2"
    for buyer in ("ann", "bob"):
        page.get_by_test_id("buyer").fill(buyer)
        page.get_by_test_id("book").click()
        page.wait_for_load_state()
        assert f"Booked a seat for {buyer} (fencing token" in page.content()
    assert page.get_by_test_id("seats-left").inner_text() == "0"
    assert page.get_by_test_id("book").is_disabled()
    rows = page.get_by_test_id("bookings").locator("tr").all_inner_texts()
    assert [row.split("\t")[1] for row in rows] == ["ann", "bob"]
    tokens = [int(row.split("\t")[2]) for row in rows]
    assert tokens[0] < tokens[1] and page.get_by_test_id("fence").inner_text() == str(tokens[1])
    assert page.get_by_test_id("oversold").count() == 0

    page.get_by_test_id("reset").click()
    page.wait_for_load_state()
    assert page.get_by_test_id("seats-left").inner_text() == "2"


def test_second_tab_is_shown_the_conflict(demo, live_server, context):
    document = demo["document"]
    url = f"{live_server.url}/demo/documents/{document.pk}/"
    first, second = context.new_page(), context.new_page()
    first.goto(url)
    second.goto(url)
    first.fill("textarea[name=body]", "saved from tab one")
    first.get_by_test_id("save").click()
    first.wait_for_load_state()
    assert "Saved revision 2." in first.content()

    second.fill("textarea[name=body]", "saved from tab two")
    second.get_by_test_id("save").click()
    second.wait_for_load_state()
    conflict = second.get_by_test_id("conflict")
    assert "someone else saved revision 2 first" in conflict.inner_text()
    assert "saved from tab one" in conflict.inner_text()
    assert second.input_value("textarea[name=body]") == "saved from tab two"  # kept


def test_rate_limit_page_shows_429_and_headers(demo, live_server, context):
    page = context.new_page()
    page.goto(f"{live_server.url}/demo/ratelimit/")
    page.click("#ping")
    rows = page.locator("#ping-table tbody tr")
    rows.nth(11).wait_for()
    cells = [row.split("\t") for row in rows.all_inner_texts()]
    assert [c[1] for c in cells] == ["200 allow"] * 10 + ["429 reject"] * 2
    assert [c[3] for c in cells] == [str(9 - i) for i in range(10)] + ["0", "0"]
    assert all(c[2] == "10" for c in cells)
    assert all(1 <= int(c[5]) <= 20 for c in cells[10:])  # Retry-After on the rejections
