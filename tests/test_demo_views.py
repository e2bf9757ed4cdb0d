"""The demo site's pages, through Django's test client, on redis, valkey and fakeredis.

The demo is mounted under /demo/ in tests/urls.py. Browser tests are in
test_demo_browser.py, multi-process booking proofs in test_demo_booking.py.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from atomicops import DataError, RedisUnavailable, registry
from demo_project.demo import documents, likes
from demo_project.demo.models import Booking, Document, Event, Post
from tests.factories import BookingFactory, DocumentFactory, EventFactory, PostFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_payments(settings):
    settings.DEMO_PAYMENT_DELAY = 0


@pytest.fixture
def staff_client(client, django_user_model):
    """The test client, signed in as a staff user (resets, the naive path, server names)."""
    # No password: force_login needs none, and hashing one is slow.
    user = django_user_model.objects.create_user("staff", password=None, is_staff=True)
    client.force_login(user)
    return client


def commandstats(client) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): v["calls"] for name, v in stats.items()}


# -- home -----------------------------------------------------------------------------


def test_home_links_every_pattern(client):
    html = client.get(reverse("demo:home")).content.decode()
    for name in ("demo:likes", "demo:documents", "demo:events", "demo:ratelimit", "demo:stats"):
        assert f'href="{reverse(name)}"' in html
    assert f'href="{reverse("admin:index")}"' in html
    for words in ("AtomicCounter(limit=10)", "compare_and_set", "fencing token", "EVALSHA_RO"):
        assert words in html


# -- bounded counter ------------------------------------------------------------------


def test_like_button_counts_up_to_the_limit_and_then_holds(backend, client):
    post = PostFactory()
    other = PostFactory()
    url = reverse("demo:like", args=[post.pk])
    seen = []
    for _ in range(12):
        response = client.post(url, HTTP_ACCEPT="application/json")
        data = response.json()
        seen.append(data["likes"])
        assert data["applied"] is (len(seen) <= 10)
    assert seen == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 10]
    assert post.likes.value == Post.LIKE_LIMIT == 10
    assert other.likes.value == 0  # each post has its own counter

    page = client.get(reverse("demo:likes")).content.decode()
    assert f'data-testid="likes-{post.pk}">10<' in page
    assert f'data-testid="likes-{other.pk}">0<' in page


def test_like_form_post_redirects_with_a_message(backend, client):
    post = PostFactory()
    response = client.post(reverse("demo:like", args=[post.pk]), follow=True)
    assert response.redirect_chain[-1][0] == reverse("demo:likes")
    assert f"Liked “{post.title}”: 1 of 10." in response.content.decode()
    for _ in range(9):
        post.likes.incr()
    response = client.post(reverse("demo:like", args=[post.pk]), follow=True)
    assert "is full at 10 of 10: the like was not counted" in response.content.decode()


def test_like_is_post_only(backend, client):
    post = PostFactory()
    assert client.get(reverse("demo:like", args=[post.pk])).status_code == 405
    assert post.likes.value == 0


# -- read-only stats ------------------------------------------------------------------


def test_stats_endpoint_reads_every_post_through_the_read_only_script(backend, client):
    kind, redis_client = backend
    posts = [PostFactory(), PostFactory()]
    for _ in range(7):
        posts[0].likes.incr()
    before = commandstats(redis_client) if kind != "fakeredis" else {}
    data = client.get(reverse("demo:stats")).json()
    script = registry.get(likes.STATS_SCRIPT)
    assert script.readonly and data["readonly"] is True and data["sha"] == script.sha
    assert data["posts"] == [
        {
            "post": posts[0].pk,
            "title": posts[0].title,
            "likes": 7,
            "limit": 10,
            "remaining": 3,
            "percent_full": "70.0",
        },
        {
            "post": posts[1].pk,
            "title": posts[1].title,
            "likes": 0,
            "limit": 10,
            "remaining": 10,
            "percent_full": "0.0",
        },
    ]
    if kind != "fakeredis":  # fakeredis has no EVALSHA_RO; atomicops falls back to EVALSHA
        after = commandstats(redis_client)
        assert after.get("evalsha_ro", 0) - before.get("evalsha_ro", 0) == 2


def test_stats_script_reports_a_corrupt_counter_as_data_error(backend):
    kind, redis_client = backend
    post = PostFactory()
    redis_client.set(post.likes.key, "not a number")
    with pytest.raises(DataError, match="does not hold an integer") as info:
        likes.stats(post)
    assert info.value.script == likes.STATS_SCRIPT and info.value.key == post.likes.key


def test_demo_scripts_are_found_without_discovery(backend):
    # DISCOVER_SCRIPTS=False leaves app scripts unregistered; the demo registers its file.
    post = PostFactory()
    post.likes.incr()
    original = registry.get(likes.STATS_SCRIPT)
    registry.unregister(likes.STATS_SCRIPT)
    assert likes.STATS_SCRIPT not in registry
    assert likes.stats(post).likes == 1
    again = registry.get(likes.STATS_SCRIPT)
    assert again.sha == original.sha and again.readonly


# -- compare-and-set ------------------------------------------------------------------


def _expected(response) -> str:
    return response.context["current"].raw


def test_second_tab_save_is_refused_and_shown_the_conflict(backend, client):
    document = DocumentFactory(title="Plan", body="v1")
    url = reverse("demo:document", args=[document.pk])
    tab1 = _expected(client.get(url))
    tab2 = _expected(client.get(url))
    assert tab1 == tab2

    first = client.post(
        url, {"expected": tab1, "title": "Plan", "body": "tab one", "saved_by": "ann"}
    )
    assert first.status_code == 302
    second = client.post(
        url, {"expected": tab2, "title": "Plan B", "body": "tab two", "saved_by": "bob"}
    )
    assert second.status_code == 409
    html = second.content.decode()
    assert "someone else saved revision 2 first" in html
    assert "tab one" in html and "tab two" in html  # theirs, and yours kept in the form
    assert second.context["current"].body == "tab one"
    assert second.context["current"].saved_by == "ann"

    current = documents.load(document)
    assert (current.rev, current.title, current.body, current.saved_by) == (
        2,
        "Plan",
        "tab one",
        "ann",
    )
    document.refresh_from_db()
    assert (document.revision, document.body, document.saved_by) == (2, "tab one", "ann")

    # Saving from the conflict page replaces revision 2 on purpose.
    third = client.post(
        url,
        {"expected": second.context["current"].raw, "title": "Plan B", "body": "tab two"},
    )
    assert third.status_code == 302
    assert documents.load(document).body == "tab two"
    document.refresh_from_db()
    assert (document.revision, document.title, document.saved_by) == (3, "Plan B", "anonymous")


def test_same_text_saved_twice_is_still_a_conflict(backend, client):
    # The revision inside the value: A -> B -> A is a new value, not the loaded one.
    document = DocumentFactory(body="A")
    loaded = documents.load(document)
    one = documents.save(document, loaded.raw, document.title, "B", "x")
    two = documents.save(document, one.current.raw, document.title, "A", "x")
    assert one.saved and two.saved and two.current.body == loaded.body
    stale = documents.save(document, loaded.raw, document.title, "C", "y")
    assert not stale.saved and stale.current.rev == 3


def test_document_is_seeded_from_the_database_when_redis_lost_it(backend, client):
    kind, redis_client = backend
    document = DocumentFactory(body="v1")
    url = reverse("demo:document", args=[document.pk])
    loaded = _expected(client.get(url))
    saved = client.post(url, {"expected": loaded, "title": "T", "body": "v2", "saved_by": "ann"})
    assert saved.status_code == 302
    before_loss = _expected(client.get(url))

    redis_client.delete(documents.content_key(document))  # a restart of the demo's server
    page = client.get(url)
    assert page.context["current"].raw == before_loss  # the row mirrored revision 2 exactly

    redis_client.delete(documents.content_key(document))
    # A tab loaded before the loss: nobody else saved, so its save goes through.
    again = client.post(url, {"expected": before_loss, "title": "T", "body": "v3"})
    assert again.status_code == 302
    assert documents.load(document).rev == 3


def test_a_forged_expected_value_changes_nothing(backend, client):
    document = DocumentFactory(body="v1")
    url = reverse("demo:document", args=[document.pk])
    client.get(url)
    response = client.post(url, {"expected": "not json", "title": "x", "body": "x"}, follow=True)
    assert "was not loaded from this page" in response.content.decode()
    assert documents.load(document).body == "v1"
    assert Document.objects.get(pk=document.pk).revision == 1


def test_document_list_shows_revisions(backend, client):
    document = DocumentFactory(title="Agenda", revision=4, saved_by="ann")
    html = client.get(reverse("demo:documents")).content.decode()
    assert "Agenda" in html and "revision 4, saved by ann" in html
    assert f'href="{reverse("demo:document", args=[document.pk])}"' in html


# -- lock and fencing -----------------------------------------------------------------


def test_booking_until_sold_out(backend, client):
    event = EventFactory(seats=2)
    url = reverse("demo:book", args=[event.pk])
    replies = [
        client.post(url, {"buyer": f"b{i}"}, HTTP_ACCEPT="application/json").json()
        for i in range(4)
    ]
    assert [r["status"] for r in replies] == ["booked", "booked", "sold_out", "sold_out"]
    tokens = [r["fencing_token"] for r in replies]
    assert tokens == sorted(tokens) and len(set(tokens)) == 4  # one new token per holder
    event.refresh_from_db()
    assert (event.booked, event.seats_left, event.fence_token) == (2, 0, tokens[1])
    assert list(Booking.objects.values_list("buyer", "fencing_token")) == [
        ("b0", tokens[0]),
        ("b1", tokens[1]),
    ]

    page = client.get(reverse("demo:event", args=[event.pk])).content.decode()
    assert 'data-testid="seats-left">0<' in page and "oversold" not in page.lower()
    form = client.post(url, {"buyer": "late"}, follow=True).content.decode()
    assert "Sold out: late was not charged." in form


def test_reset_frees_the_seats_and_moves_the_fence_forward(backend, staff_client):
    client = staff_client
    event = EventFactory(seats=1)
    BookingFactory(event=event, fencing_token=5)
    Event.objects.filter(pk=event.pk).update(booked=1, fence_token=5)
    response = client.post(reverse("demo:reset_event", args=[event.pk]), follow=True)
    assert f"{event.name} is empty again." in response.content.decode()
    event.refresh_from_db()
    assert event.booked == 0 and not event.bookings.exists()
    booked = client.post(
        reverse("demo:book", args=[event.pk]), {"buyer": "x"}, HTTP_ACCEPT="application/json"
    ).json()
    assert booked["status"] == "booked"
    assert booked["fencing_token"] > event.fence_token  # the reset wrote its own token


def test_naive_booking_path_is_only_used_when_asked(backend, staff_client):
    client = staff_client
    event = EventFactory(seats=1)
    reply = client.post(
        reverse("demo:book", args=[event.pk]),
        {"buyer": "n", "naive": "1"},
        HTTP_ACCEPT="application/json",
    ).json()
    assert reply == {"status": "booked", "buyer": "n", "fencing_token": None, "reason": ""}
    assert Booking.objects.get().fencing_token == 0


def test_a_visitor_cannot_reset_an_event_or_book_without_the_lock(backend, client):
    event = EventFactory(seats=1)
    BookingFactory(event=event, fencing_token=5)
    Event.objects.filter(pk=event.pk).update(booked=1, fence_token=5)
    reset = client.post(reverse("demo:reset_event", args=[event.pk]))
    assert reset.status_code == 403 and b"Sign in to reset an event" in reset.content
    event.refresh_from_db()
    assert (event.booked, event.bookings.count()) == (1, 1)

    book = reverse("demo:book", args=[event.pk])
    naive = client.post(book, {"buyer": "n", "naive": "1"}, HTTP_ACCEPT="application/json")
    assert naive.status_code == 403 and naive.json()["status"] == "forbidden"
    form = client.post(book, {"buyer": "n", "naive": "1"})
    assert form.status_code == 403
    assert Booking.objects.count() == 1  # oversold by nobody
    # Booking with the lock stays open to everyone.
    locked = client.post(book, {"buyer": "v"}, HTTP_ACCEPT="application/json").json()
    assert locked["status"] == "sold_out"


def test_the_event_page_offers_reset_and_the_naive_rush_to_signed_in_users(backend, staff_client):
    event = EventFactory()
    url = reverse("demo:event", args=[event.pk])
    visitor = Client().get(url).content.decode()
    assert 'data-testid="reset"' not in visitor and 'data-naive="1"' not in visitor
    assert 'data-testid="sign-in-hint"' in visitor and 'data-naive="0"' in visitor
    signed_in = staff_client.get(url).content.decode()
    assert 'data-testid="reset"' in signed_in and 'data-naive="1"' in signed_in


# -- rate limit -----------------------------------------------------------------------


def test_ping_gives_ten_then_429_with_headers(backend, client):
    kind, redis_client = backend
    url = reverse("demo:ping")
    responses = [client.get(url) for _ in range(12)]
    assert [r.status_code for r in responses] == [200] * 10 + [429] * 2
    assert [r["RateLimit-Remaining"] for r in responses] == [str(9 - i) for i in range(10)] + [
        "0",
        "0",
    ]
    assert all(r["RateLimit-Limit"] == "10" for r in responses)
    assert json.loads(responses[0].content) == {"pong": True, "count": 1, "remaining": 9}
    for rejected in responses[10:]:
        assert 1 <= int(rejected["Retry-After"]) <= 20
        assert 1 <= int(rejected["RateLimit-Reset"]) <= 20
    page = client.get(reverse("demo:ratelimit")).content.decode()
    assert 'data-calls="12"' in page and "@rate_limit(10, 20_000" in page


# -- Redis down -----------------------------------------------------------------------


def test_redis_down_renders_a_page_that_says_so(settings, staff_client):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "demo_project.demo.middleware.RedisDownMiddleware"]
    settings.ATOMICOPS = {"URL": "redis://127.0.0.1:1/0", "LOAD_ON_STARTUP": False}
    post = PostFactory()
    response = staff_client.post(reverse("demo:like", args=[post.pk]))
    assert response.status_code == 503
    html = response.content.decode()
    assert "Redis is not reachable" in html and "redis://127.0.0.1:1/0" in html
    assert isinstance(response.context["error"], RedisUnavailable)


def test_redis_down_page_names_no_server_to_a_visitor(settings, client):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "demo_project.demo.middleware.RedisDownMiddleware"]
    settings.ATOMICOPS = {"URL": "redis://:s3cret@127.0.0.1:1/0", "LOAD_ON_STARTUP": False}
    post = PostFactory()
    response = client.post(reverse("demo:like", args=[post.pk]))
    assert response.status_code == 503
    html = response.content.decode()
    assert "Redis is not reachable" in html
    for detail in ("127.0.0.1", ":1", "s3cret", "redis://", "connecting"):
        assert detail not in html, detail


def test_home_names_the_server_to_staff_only(settings, staff_client):
    settings.ATOMICOPS = {"URL": "redis://:s3cret@10.1.2.3:6379/0", "LOAD_ON_STARTUP": False}
    visitor = Client().get(reverse("demo:home")).content.decode()
    assert "10.1.2.3" not in visitor and "Redis: " not in visitor
    staff = staff_client.get(reverse("demo:home")).content.decode()
    assert "Redis: URL redis://:***@10.1.2.3:6379/0" in staff and "s3cret" not in staff


# -- admin ----------------------------------------------------------------------------


def test_demo_superuser_reaches_the_admin_dashboard_and_the_demo_models(backend, client, settings):
    from demo_project.demo.users import USERNAME, ensure_demo_user

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    password, created = ensure_demo_user(password="for-this-test")
    assert created and client.login(username=USERNAME, password=password)
    index = client.get(reverse("admin:index")).content.decode()
    for url in (
        "/admin/atomicops/dashboard/",
        "/admin/demo/post/",
        "/admin/demo/document/",
        "/admin/demo/event/",
        "/admin/demo/booking/",
    ):
        assert f'href="{url}"' in index
    assert client.get("/admin/atomicops/dashboard/").status_code == 200
    post = PostFactory()
    post.likes.incr()
    changelist = client.get(reverse("admin:demo_post_changelist")).content.decode()
    assert "Likes (Redis)" in changelist
    assert '<td class="field-like_count">1</td>' in changelist


@pytest.mark.urls("demo_project.urls")
def test_metrics_are_for_staff_and_count_the_demo_calls(backend, client, staff_client):
    pytest.importorskip("prometheus_client")
    anonymous = Client().get("/metrics")
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    post = PostFactory()
    client.post(reverse("demo:like", args=[post.pk]))
    text = staff_client.get("/metrics").content.decode()
    assert 'atomicops_script_calls_total{script="counter_bounded_incr"}' in text
