"""The demo's idempotency-key order page and its get_or_set report, through Django's test
client on redis, valkey and fakeredis (the buttons are driven in a browser in
test_demo_orders_browser.py)."""

from __future__ import annotations

import json
import threading

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from demo_project.demo import orders, reports
from tests.factories import PostFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.DEMO_ORDER_DELAY = 0
    settings.DEMO_REPORT_DELAY = 0
    cache.clear()
    yield
    cache.clear()


def place(client, key=None, item="tea", quantity="2"):
    headers = {"HTTP_ACCEPT": "application/json"}
    if key is not None:
        headers["HTTP_IDEMPOTENCY_KEY"] = key
    return client.post(reverse("demo:place_order"), {"item": item, "quantity": quantity}, **headers)


def test_home_and_menu_link_the_new_pages(client):
    html = client.get(reverse("demo:home")).content.decode()
    for name in ("demo:orders", "demo:report"):
        assert html.count(f'href="{reverse(name)}"') == 2  # its card and the menu
    assert "@idempotent()" in html and "get_or_set(" in html


def test_order_page_gives_each_form_its_own_key(backend, client):
    first = client.get(reverse("demo:orders"))
    second = client.get(reverse("demo:orders"))
    assert first.status_code == 200
    assert first.context["key"] != second.context["key"]
    html = first.content.decode()
    assert f'data-key="{first.context["key"]}"' in html
    assert 'data-testid="placed">0<' in html
    assert "orders.js" in html


def test_same_key_places_one_order(backend, client):
    answers = [place(client, "form-1") for _ in range(3)]
    assert [a.status_code for a in answers] == [201] * 3
    assert [a.get("Idempotent-Replayed") for a in answers] == [None, "true", "true"]
    assert {a.content for a in answers} == {answers[0].content}
    assert json.loads(answers[0].content)["order"] == 1
    assert orders.orders_placed() == 1
    # A new form (a new key) is a new order; the same key with another form is refused.
    assert json.loads(place(client, "form-2").content)["order"] == 2
    assert place(client, "form-2", quantity="3").status_code == 422
    assert orders.orders_placed() == 2


def test_double_submit_at_once_places_one_order(backend, settings):
    settings.DEMO_ORDER_DELAY = 0.3
    statuses: list[int] = []

    def submit():
        statuses.append(place(Client(), "double").status_code)

    threads = [threading.Thread(target=submit) for _ in range(orders.SUBMITS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(statuses) == [201] + [409] * (orders.SUBMITS - 1)
    assert orders.orders_placed() == 1


def test_without_a_key_every_submit_places_an_order(backend, client):
    response = client.post(reverse("demo:place_order"), {"item": "mug", "quantity": "1"})
    assert response.status_code == 302
    client.post(reverse("demo:place_order"), {"item": "mug", "quantity": "1"})
    assert orders.orders_placed() == 2
    page = client.get(reverse("demo:orders")).content.decode()
    assert "Order #2 placed" in page


def test_invalid_order_is_refused_and_the_refusal_replayed(backend, client):
    first = place(client, "bad", item="car")
    assert first.status_code == 400
    assert place(client, "bad", item="car")["Idempotent-Replayed"] == "true"
    assert orders.orders_placed() == 0


def test_report_is_computed_once_then_read_from_the_cache(backend, client):
    PostFactory()
    first = client.get(reverse("demo:report"))
    assert first.status_code == 200
    assert first.context["computed"] == 1 and first.context["report"]["run"] == 1
    assert ["Posts", 1] in first.context["report"]["rows"]
    again = client.get(reverse("demo:report"), HTTP_ACCEPT="application/json")
    assert json.loads(again.content)["run"] == 1
    assert reports.times_computed() == 1
    assert client.post(reverse("demo:expire_report")).status_code == 302
    assert client.get(reverse("demo:report")).context["report"]["run"] == 2


def test_ten_loads_at_once_compute_the_report_once(backend, settings):
    settings.DEMO_REPORT_DELAY = 0.3
    runs: list[int] = []

    def load():
        response = Client().get(reverse("demo:report"), HTTP_ACCEPT="application/json")
        runs.append(json.loads(response.content)["run"])

    threads = [threading.Thread(target=load) for _ in range(reports.LOADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert runs == [1] * reports.LOADS
    assert reports.times_computed() == 1
