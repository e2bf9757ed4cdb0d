"""@rate_limit on sync and async views (redis, valkey, fakeredis): status and headers for
users and anonymous clients, the key kinds, fail-open and fail-closed with a server we
stop, and RateLimitMiddleware for RateLimited raised by service code."""

from __future__ import annotations

import logging

import pytest
from asgiref.sync import sync_to_async
from django.http import HttpResponse

from atomicops import InvalidInput, RateLimited, rate_limit
from tests.servers import Server, redis_server_binary

pytestmark = pytest.mark.django_db

MIDDLEWARE = "atomicops.middleware.RateLimitMiddleware"


def assert_headers(response, limit: int, remaining: int, max_reset: int) -> None:
    assert response["RateLimit-Limit"] == str(limit)
    assert response["RateLimit-Remaining"] == str(remaining)
    assert 0 <= int(response["RateLimit-Reset"]) <= max_reset


def assert_limited(response, limit: int, max_retry: int) -> None:
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= max_retry
    assert_headers(response, limit, 0, max_retry)


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", password="x")


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob", password="x")


def test_signed_in_users_have_their_own_limit(backend, client, alice, bob):
    _, redis_client = backend
    client.force_login(alice)
    first, second, third = (client.get("/rl/user/") for _ in range(3))
    assert (first.status_code, first.content) == (200, b"ok 1")
    assert_headers(first, 2, 1, 60)
    assert_headers(second, 2, 0, 60)
    assert_limited(third, 2, 60)
    # The default group is the view's dotted name and a digest of the limit's arguments.
    [key] = redis_client.keys(
        f"atomicops:rl:fixed_window:{{tests.testapp.views.rl_user#*|user:{alice.pk}}}"
    )
    assert int(redis_client.get(key)) == 3
    client.force_login(bob)
    assert client.get("/rl/user/").status_code == 200


def test_anonymous_clients_are_limited_by_address(backend, client, alice):
    for _ in range(2):
        assert client.get("/rl/user/", REMOTE_ADDR="10.0.0.1").status_code == 200
    assert_limited(client.get("/rl/user/", REMOTE_ADDR="10.0.0.1"), 2, 60)
    assert client.get("/rl/user/", REMOTE_ADDR="10.0.0.2").status_code == 200
    client.force_login(alice)  # same address, signed in: the user's own limit
    assert client.get("/rl/user/", REMOTE_ADDR="10.0.0.1").status_code == 200


# The async client saves the session from another thread: an open test transaction on
# the in-memory database would lock it out.
@pytest.mark.django_db(transaction=True)
async def test_async_view_users_and_anonymous(backend, async_client, alice):
    for _ in range(2):
        assert (
            await async_client.get("/rl/user_async/", REMOTE_ADDR="10.0.0.3")
        ).status_code == 200
    limited = await async_client.get("/rl/user_async/", REMOTE_ADDR="10.0.0.3")
    assert_limited(limited, 2, 60)
    # AsyncClient.aforce_login is Django 5+; force_login in a thread works on 4.2 too.
    await sync_to_async(async_client.force_login)(alice)
    first = await async_client.get("/rl/user_async/", REMOTE_ADDR="10.0.0.3")
    assert (first.status_code, first.content) == (200, b"ok 1")
    assert_headers(first, 2, 1, 60)
    await async_client.get("/rl/user_async/")
    assert_limited(await async_client.get("/rl/user_async/"), 2, 60)


def test_ip_key_groups_ipv6_by_64(backend, client):
    for address in ("2001:db8:1:1::1", "2001:db8:1:1::2"):
        assert client.get("/rl/ip/", REMOTE_ADDR=address).status_code == 200
    assert client.get("/rl/ip/", REMOTE_ADDR="2001:db8:1:1:ffff::9").status_code == 429
    assert client.get("/rl/ip/", REMOTE_ADDR="2001:db8:1:2::1").status_code == 200


def test_header_key_and_fallback_to_address(backend, client):
    for _ in range(2):
        assert client.get("/rl/header/", headers={"X-Api-Key": "a"}).status_code == 200
    assert client.get("/rl/header/", headers={"X-Api-Key": "a"}).status_code == 429
    assert client.get("/rl/header/", headers={"X-Api-Key": "b"}).status_code == 200
    statuses = [client.get("/rl/header/", REMOTE_ADDR="10.0.0.9").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_callable_key_and_none_means_unlimited(backend, client):
    assert [client.get("/rl/callable/?tenant=t1").status_code for _ in range(3)] == [200, 200, 429]
    assert client.get("/rl/callable/?tenant=t2").status_code == 200
    unlimited = [client.get("/rl/callable/") for _ in range(5)]
    assert {r.status_code for r in unlimited} == {200}
    assert "RateLimit-Limit" not in unlimited[0]


async def test_async_callable_key(backend, async_client):
    statuses = [
        (await async_client.get("/rl/callable_async/?tenant=t")).status_code for _ in range(3)
    ]
    assert statuses == [200, 200, 429]


def test_methods_limits_only_those(backend, client):
    assert {client.get("/rl/post_only/").status_code for _ in range(3)} == {200}
    assert [client.post("/rl/post_only/").status_code for _ in range(2)] == [200, 429]


def test_sliding_window_and_token_bucket_views(backend, client):
    assert [client.get("/rl/sliding/").status_code for _ in range(2)] == [200, 200]
    assert_limited(client.get("/rl/sliding/"), 2, 120)
    assert [client.get("/rl/bucket/").status_code for _ in range(2)] == [200, 200]
    limited = client.get("/rl/bucket/")
    assert_limited(limited, 2, 200)
    assert int(limited["Retry-After"]) >= 90  # one token at 0.01/s takes ~100 s


def test_stacked_limits_report_the_tighter(backend, client):
    responses = [client.get("/rl/stacked/") for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert [r["RateLimit-Remaining"] for r in responses[:3]] == ["2", "1", "0"]
    assert {r["RateLimit-Limit"] for r in responses[:3]} == {"3"}


def test_views_in_one_group_share_a_limit(backend, client):
    assert client.get("/rl/shared_a/").status_code == 200
    assert client.get("/rl/shared_b/").status_code == 200
    assert client.get("/rl/shared_a/").status_code == 429


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((0, 1_000), {}, "limit"),
        ((2, 0), {}, "window_ms"),
        ((2,), {}, "takes window_ms"),
        ((2, 1_000), {"algorithm": "token_bucket", "refill_rate": 1.0}, "not window_ms"),
        ((2,), {"algorithm": "token_bucket"}, "takes refill_rate"),
        ((2,), {"algorithm": "token_bucket", "refill_rate": 0}, "refill_rate"),
        ((2, 1_000), {"amount": 1.5}, "amount"),
        ((2, 1_000), {"algorithm": "leaky"}, "algorithm"),
        ((2, 1_000), {"key": "session"}, "key"),
        ((2, 1_000), {"key": "header:"}, "key"),
    ],
)
def test_bad_decorator_arguments_fail_at_decoration(args, kwargs, match):
    with pytest.raises(InvalidInput, match=match):
        rate_limit(*args, **kwargs)


def test_a_view_without_a_qualname_needs_a_group():
    import functools

    view = functools.partial(lambda request, word: HttpResponse(word), word="hi")
    with pytest.raises(InvalidInput, match="group"):
        rate_limit(2, 1_000)(view)
    assert callable(rate_limit(2, 1_000, group="partial")(view))


# -- Redis down -----------------------------------------------------------------------


@pytest.fixture
def own_server(settings):
    """A server only this test uses, so stopping it disturbs nobody."""
    binary = redis_server_binary()
    if binary is None:
        pytest.skip("no redis-server on PATH")
    server = Server("redis-ratelimit", binary).start()
    settings.ATOMICOPS = {
        "URL": server.url,
        "LOAD_ON_STARTUP": False,
        "SOCKET_TIMEOUT": 1.0,
        "SOCKET_CONNECT_TIMEOUT": 0.5,
    }
    yield server
    server.remove()


def test_fail_open_and_fail_closed_with_the_server_stopped(own_server, client, settings, caplog):
    up = client.get("/rl/default_fail/")
    assert up.status_code == 200 and "RateLimit-Limit" in up
    own_server.stop()

    with caplog.at_level(logging.WARNING, logger="atomicops"):
        opened = client.get("/rl/default_fail/")  # default: RATELIMIT_FAIL_OPEN = True
    assert (opened.status_code, opened.content) == (200, b"ran")
    assert "RateLimit-Limit" not in opened
    assert "fail open" in caplog.text and "rl_default_fail" in caplog.text

    closed = client.get("/rl/fail_closed/")  # fail_open=False on the view wins
    assert closed.status_code == 503 and closed["Retry-After"] == "1"
    assert b"ran" not in closed.content

    settings.ATOMICOPS = {**settings.ATOMICOPS, "RATELIMIT_FAIL_OPEN": False}
    assert client.get("/rl/default_fail/").status_code == 503
    assert client.get("/rl/fail_open/").status_code == 200  # fail_open=True on the view wins

    own_server.start()  # same port: limiting resumes
    assert [client.get("/rl/fail_closed/").status_code for _ in range(6)] == [200] * 5 + [429]


async def test_async_fail_open_and_closed_with_the_server_stopped(
    own_server, async_client, settings
):
    assert (await async_client.get("/rl/default_fail_async/")).status_code == 200
    own_server.stop()
    opened = await async_client.get("/rl/default_fail_async/")
    assert (opened.status_code, opened.content) == (200, b"ran")
    settings.ATOMICOPS = {**settings.ATOMICOPS, "RATELIMIT_FAIL_OPEN": False}
    assert (await async_client.get("/rl/default_fail_async/")).status_code == 503


# -- RateLimited from service code ----------------------------------------------------


def test_middleware_turns_rate_limited_into_429(backend, client, settings):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, MIDDLEWARE]
    assert client.get("/rl/service/").content == b"sent"
    limited = client.get("/rl/service/")
    assert_limited(limited, 1, 200)
    assert int(limited["Retry-After"]) >= 90


async def test_middleware_on_an_async_view(backend, async_client, settings):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, MIDDLEWARE]
    assert (await async_client.get("/rl/service_async/")).content == b"sent"
    assert_limited(await async_client.get("/rl/service_async/"), 1, 200)


def test_without_middleware_rate_limited_propagates(backend, client):
    client.get("/rl/service/")
    with pytest.raises(RateLimited):
        client.get("/rl/service/")


def test_decorated_view_keeps_its_name_and_works_with_plain_requests(backend, rf):
    from tests.testapp import views

    assert views.rl_ip.__name__ == "rl_ip"
    request = rf.get("/", REMOTE_ADDR="10.1.1.1")
    response = views.rl_ip(request)
    assert isinstance(response, HttpResponse) and response.status_code == 200
    assert request.ratelimit.remaining == 1
