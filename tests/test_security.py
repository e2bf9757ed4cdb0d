"""Issue 24's seven reproductions, each against a real server the suite started: idempotency
records that never cross users or projects (DRF token authentication), anonymous replays
that keep private parts private, a bound on what one client stores, metrics without user
text, secrets never printed, and atomicops' own keys out of reach of plain strings."""

from __future__ import annotations

import json
import logging

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from atomicops import get_counter, idempotent
from atomicops.exceptions import InvalidInput
from atomicops.ops import observe
from atomicops.web.idempotency import RECORD_OVERHEAD, record_key, usage_keys

pytest.importorskip("rest_framework")

from rest_framework.decorators import api_view  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from tests.testapp import security_views  # noqa: E402

pytestmark = [pytest.mark.urls("tests.security_urls"), pytest.mark.django_db]


@pytest.fixture(autouse=True)
def fresh_labels():
    """Tests here fill the per-process label tables on purpose: others start afresh."""
    yield
    observe.code_label.reset()
    observe.group_label.reset()


BODY = {"item": "book", "qty": 1}


def runs(key: str) -> int:
    return get_counter(f"test:runs:{key}")


def idem_records(client) -> list[bytes]:
    return [k for k in client.keys("*:idem:*") if not k.endswith((b":sizes", b":used"))]


# -- 1. DRF: the identity is DRF's authenticated user, whatever the form -------------------


@pytest.fixture
def users(db):
    model = get_user_model()
    return model.objects.create_user("alice"), model.objects.create_user("bob")


def drf_post(path: str, key: str, token: str | None = None):
    client = APIClient()  # a fresh client each time: no session, no cookie, same address
    headers = {"HTTP_IDEMPOTENCY_KEY": key}
    if token is not None:
        headers["HTTP_AUTHORIZATION"] = f"Token {token}"
    return client.post(path, BODY, format="json", **headers)


@pytest.mark.parametrize(
    "path", ["/drf/dispatch/", "/drf/method/", "/drf/direct-dispatch/", "/drf/api-view/"]
)
def test_drf_token_users_never_get_each_others_records(real_client, users, path):
    # Unauthenticated first: refused by DRF, and that refusal is not what users get later.
    anonymous = drf_post(path, "order-1")
    assert anonymous.status_code in (401, 403)
    assert idem_records(real_client) == []

    alice = drf_post(path, "order-1", "tok-alice")
    assert alice.status_code == 201
    assert json.loads(alice.content)["user"] == "alice"

    # Bob: same address, same key, same body. His own run, never Alice's data.
    bob = drf_post(path, "order-1", "tok-bob")
    assert bob.status_code == 201
    assert "Idempotent-Replayed" not in bob
    assert json.loads(bob.content)["user"] == "bob"

    # Alice's repeat is her own response, replayed.
    again = drf_post(path, "order-1", "tok-alice")
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == alice.content
    assert runs("order-1") == 2
    assert len(idem_records(real_client)) == 2
    alice_user, bob_user = users
    assert record_key(f"user:{alice_user.pk}", "order-1").encode() in idem_records(real_client)

    # A bad token is DRF's 401/403 again, not a replay.
    assert drf_post(path, "order-1", "tok-mallory").status_code in (401, 403)


def test_drf_view_functions_decorated_from_outside_are_refused_at_decoration():
    def view(request):  # pragma: no cover - never called
        raise AssertionError

    with pytest.raises(InvalidInput, match=r"before DRF authenticates.*below @api_view"):
        idempotent()(api_view(["POST"])(view))
    with pytest.raises(InvalidInput, match="MethodOrders"):
        idempotent()(security_views.MethodOrders.as_view())


# -- 2. anonymous clients: the session, and what is never replayed to someone else ---------


def plain_post(client: Client, name: str, key: str):
    return client.post(
        f"/idem/{name}/", data=json.dumps(BODY), content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=key,
    )  # fmt: skip


def with_session() -> Client:
    client = Client()
    client.session.save()  # what SessionMiddleware gives a visitor with a session
    return client


def test_anonymous_sessions_behind_one_address_do_not_share_records(real_client):
    first, second = with_session(), with_session()
    a = plain_post(first, "private_headers", "k")
    b = plain_post(second, "private_headers", "k")
    assert (a.status_code, b.status_code) == (201, 201)
    assert "Idempotent-Replayed" not in b
    assert a.content != b.content
    assert a.cookies["cart"].value != b.cookies["cart"].value
    assert runs("k") == 2
    # Each session's repeat is its own response, private parts included.
    again = plain_post(first, "private_headers", "k")
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == a.content
    assert again.cookies["cart"].value == a.cookies["cart"].value
    assert again["X-Account"] == a["X-Account"]


def test_without_a_session_cookies_and_private_headers_are_not_replayed(real_client):
    a = plain_post(Client(), "private_headers", "k")
    b = plain_post(Client(), "private_headers", "k")  # another client, same address
    assert b["Idempotent-Replayed"] == "true"
    assert b.content == a.content  # the body is the one thing an address shares
    assert "cart" in a.cookies and "cart" not in b.cookies
    assert "X-Account" in a and "X-Account" not in b
    assert b["X-Public"] == "yes"
    assert runs("k") == 1
    stored = real_client.hget(idem_records(real_client)[0], "meta")
    assert a["X-Account"].encode() not in stored
    assert a.cookies["cart"].value.encode() not in stored


def test_a_wholly_private_response_is_not_kept_for_an_address(real_client):
    a = plain_post(Client(), "wholly_private", "k")
    assert a.status_code == 201
    b = plain_post(Client(), "wholly_private", "k")
    assert b.status_code == 409 and b"not kept" in b.content
    assert a.content.decode() not in b.content.decode()
    assert runs("k") == 1
    # With a session it is the session's, and replayed to it.
    mine = with_session()
    c = plain_post(mine, "wholly_private", "k")
    assert plain_post(mine, "wholly_private", "k").content == c.content


# -- 3. two projects on one Redis never meet ------------------------------------------------


def test_projects_with_different_secret_keys_never_share_a_record(real_client, settings, users):
    alice = users[0]
    assert alice.pk is not None
    client = Client()
    settings.SECRET_KEY = "project-a-" + "a" * 50
    client.force_login(alice)
    a = plain_post(client, "private_headers", "pay-1")
    key_a = record_key(f"user:{alice.pk}", "pay-1")
    # Project B: same KEY_PREFIX (the default), same user pk, another SECRET_KEY.
    settings.SECRET_KEY = "project-b-" + "b" * 50
    client.force_login(alice)
    b = plain_post(client, "private_headers", "pay-1")
    assert "Idempotent-Replayed" not in b
    assert b.content != a.content
    assert runs("pay-1") == 2
    assert record_key(f"user:{alice.pk}", "pay-1") != key_a
    assert len(idem_records(real_client)) == 2


# -- 4. what one client can store is bounded -------------------------------------------------


@pytest.fixture
def prometheus():
    """Metrics on (the collector in the default registry): what the test changed there."""
    pytest.importorskip("prometheus_client")
    from tests.observe_worker import Scraped

    observe.configure()
    return Scraped()


@pytest.mark.parametrize("real_server", ["redis"], indirect=True)
def test_fifty_anonymous_megabyte_responses_stay_under_16_mb(real_client, caplog, prometheus):
    before = real_client.info("memory")["used_memory"]
    skips = observe.idempotency_skips.get("client_bound", 0)
    client = Client()
    with caplog.at_level(logging.WARNING, logger="atomicops"):
        answers = [
            client.post(f"/idem/sized/?size={1_000_000}", HTTP_IDEMPOTENCY_KEY=f"big-{i}")
            for i in range(50)
        ]
    assert all(a.status_code == 201 for a in answers)  # the view ran for every one
    grown = real_client.info("memory")["used_memory"] - before
    assert grown < 16 * 1024 * 1024, grown
    sizes, used = usage_keys("ip:127.0.0.1")
    assert int(real_client.get(used)) <= 8 * 1024 * 1024
    stored = len(idem_records(real_client))
    assert 5 <= stored < 50
    not_stored = 50 - stored
    assert observe.idempotency_skips["client_bound"] - skips == not_stored
    counted = prometheus.get_sample_value(
        "atomicops_idempotency_not_stored_total", {"reason": "client_bound"}
    )
    assert counted == not_stored
    refusals = [r.getMessage() for r in caplog.records if "IDEMPOTENCY_MAX" in r.getMessage()]
    assert len(refusals) == not_stored
    assert not any("127.0.0.1" in message for message in refusals)  # the client is hashed
    # A key whose response was not stored runs again on a retry (nothing was kept).
    retry = client.post(f"/idem/sized/?size={1_000_000}", HTTP_IDEMPOTENCY_KEY="big-49")
    assert "Idempotent-Replayed" not in retry and runs("big-49") == 2
    # The tally expires with the records it counts.
    assert 0 < real_client.pttl(used) <= 60_000 and 0 < real_client.pttl(sizes) <= 60_000


def test_the_bound_is_per_client_and_frees_as_records_expire(real_client, settings):
    settings.ATOMICOPS = {**settings.ATOMICOPS, "IDEMPOTENCY_MAX_CLIENT_BYTES": 2 * 2000}
    one, other = with_session(), with_session()
    post = lambda c, key: c.post("/idem/sized_short/?size=1500", HTTP_IDEMPOTENCY_KEY=key)  # noqa: E731
    for key in ("a", "b", "c"):
        post(one, key)
    # 1500 bytes + headers + RECORD_OVERHEAD each: two fit in 4000, the third does not.
    assert 3 * (RECORD_OVERHEAD + 1500) > 4000
    assert post(one, "a")["Idempotent-Replayed"] == "true"
    assert post(one, "b")["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in post(one, "c")
    # Another client has a bound of its own.
    post(other, "a")
    assert post(other, "a")["Idempotent-Replayed"] == "true"
    # Once the one-second records expire the client can store again.
    import time

    time.sleep(1.3)
    post(one, "d")
    assert post(one, "d")["Idempotent-Replayed"] == "true"


# -- 5. metrics never carry user-chosen text --------------------------------------------------


def test_lock_names_never_reach_metrics_raw_and_labels_stay_bounded(real_client, settings):
    pytest.importorskip("prometheus_client")
    from atomicops import Lock

    settings.ATOMICOPS = {**settings.ATOMICOPS, "PROMETHEUS": True}
    observe.configure()
    observe.code_label.reset()
    with Lock("alice@example.com", ttl=5):
        pass
    with Lock("order:42", ttl=5):
        pass
    scrape = lambda: Client().get("/metrics").content.decode()  # noqa: E731
    first = scrape()
    for i in range(2000):
        with Lock(f"user{i}-{i * 7919}:{i}", ttl=5):
            pass
    for i in range(200):  # code-like prefixes beyond the per-process bound
        with Lock(f"job_{chr(97 + i % 26)}{chr(97 + i // 26)}:x", ttl=5):
            pass
    after = scrape()
    assert "alice" not in after and "example.com" not in after
    assert 'prefix="order"' in after and 'prefix="other"' in after

    def prefixes(scraped: str) -> set[str]:
        return {
            line.split('prefix="')[1].split('"')[0]
            for line in scraped.splitlines()
            if line.startswith("atomicops_lock_hold_seconds_count")
        }

    # The process-wide registry keeps the series earlier tests made: count what this one
    # added since the table was reset.
    assert len(prefixes(after) - prefixes(first)) <= observe.LABEL_LIMIT + 1
    # 2,200 lock names: a bounded number of series (the issue saw 8.2 MB for 2,000).
    assert len(after) - len(first) < 1_000_000, len(after) - len(first)
    # And bounded for good: 300 more names, code-like or not, add no series at all.
    for i in range(300):
        name = f"late{chr(97 + i % 26)}{chr(97 + i // 26 % 26)}" if i % 2 else f"x{i}@y.z"
        with Lock(f"{name}:1", ttl=5):
            pass
    assert len(scrape().splitlines()) == len(after.splitlines())


@pytest.mark.parametrize(
    "prefix, label",
    [
        ("order", "order"),
        ("shop.order", "shop.order"),
        ("alice@example.com", "other"),
        ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "other"),  # upper case, digits, long
        ("a1b2c3d4", "other"),  # digit-heavy
        ("550e8400-e29b-41d4-a716-446655440000", "other"),
        ("42", "other"),
        ("Report", "other"),
        ("x" * 33, "other"),
    ],
)
def test_lease_prefix_rule(prefix, label):
    observe.code_label.reset()
    assert observe.lease_prefix(f"{prefix}:rest") == label


# -- 7. plain strings do not reach atomicops' own keys ---------------------------------------


def test_reset_counter_cannot_unblock_a_rate_limited_client(real_client, sends):
    from atomicops import fixed_window, reset_counter
    from atomicops.web.ratelimit_views import limit_key

    key = limit_key("fixed", "login", "ip:203.0.113.7")
    for _ in range(3):
        fixed_window(key, 2, 60_000)
    assert not fixed_window(key, 2, 60_000).allowed
    before = len(sends)
    for plain in (str.__str__(key), key.encode(), f"{key}"):
        with pytest.raises(InvalidInput, match="KEY_PREFIX") as caught:
            reset_counter(plain)
        assert caught.value.key == str.__str__(key)
    assert len(sends) == before  # nothing was sent
    assert not fixed_window(key, 2, 60_000).allowed  # still limited


def test_a_held_locks_fence_cannot_be_reset(real_client):
    from atomicops import Lock, reset_counter

    with Lock("report", ttl=10) as lock:
        fence = f"{lock.key}:fence"
        with pytest.raises(InvalidInput):
            reset_counter(fence)
        assert real_client.exists(fence) == 1
        assert lock.locked()


def test_every_counter_cas_and_rate_limit_function_refuses_plain_prefixed_keys(real_client, sends):
    import atomicops as ao

    key = "atomicops:anything"
    calls = [
        lambda: ao.incr(key), lambda: ao.incr_float(key, 1.5), lambda: ao.get_counter(key),
        lambda: ao.reset_counter(key), lambda: ao.bounded_incr(key, 5),
        lambda: ao.bounded_decr(key, 0), lambda: ao.compare_and_set(key, None, "v"),
        lambda: ao.compare_and_delete(key, "v"), lambda: ao.fixed_window(key, 1, 1000),
        lambda: ao.sliding_window(key, 1, 1000), lambda: ao.token_bucket(key, 1, 1.0),
    ]  # fmt: skip
    for call in calls:
        with pytest.raises(InvalidInput):
            call()
    assert sends == []
    assert real_client.keys("*") == []


async def test_async_twins_refuse_them_too(real_client):
    import atomicops as ao

    with pytest.raises(InvalidInput):
        await ao.areset_counter("atomicops:rl:x")
    with pytest.raises(InvalidInput):
        await ao.acompare_and_set("atomicops:x", None, "v")
    with pytest.raises(InvalidInput):
        await ao.afixed_window(b"atomicops:x", 1, 1000)


def test_built_keys_pairs_and_other_prefixes_still_work(real_client, settings):
    import atomicops as ao
    from atomicops.primitives import keys
    from tests.testapp.models import Article

    article = Article.objects.create(title="t")
    assert ao.incr((article, "views")) == 1
    assert ao.incr(ao.key_for(article, "views")) == 2
    assert ao.incr(keys.prefixed("demo", "race")) == 1
    assert ao.incr(keys.tagged("mine", "x")) == 1
    assert ao.incr("views:1") == 1  # outside the prefix: any string
    assert ao.incr("atomicopsx:1") == 1  # only "<KEY_PREFIX>:" is reserved
    settings.ATOMICOPS = {**settings.ATOMICOPS, "KEY_PREFIX": "shop"}
    assert ao.incr("atomicops:free-now") == 1
    with pytest.raises(InvalidInput, match="'shop'"):
        ao.incr("shop:rl:x")


@pytest.mark.parametrize("bound", [0, -1, 1.5, "8MB", True])
def test_a_bad_client_bound_is_a_system_check_error(settings, bound):
    from django.core import checks

    from atomicops.checks import BAD_IDEMPOTENCY_BOUND

    settings.ATOMICOPS = {"URL": "redis://127.0.0.1:1/0", "IDEMPOTENCY_MAX_CLIENT_BYTES": bound}
    found = [m for m in checks.run_checks() if m.id == BAD_IDEMPOTENCY_BOUND]
    assert len(found) == 1 and repr(bound) in found[0].msg
    settings.ATOMICOPS = {"URL": "redis://127.0.0.1:1/0", "IDEMPOTENCY_MAX_CLIENT_BYTES": None}
    assert not [m for m in checks.run_checks() if m.id == BAD_IDEMPOTENCY_BOUND]


@pytest.mark.parametrize(
    "group, label",
    [
        ("drf:anon", "drf:anon"),
        ("fixed_window", "fixed_window"),
        ("shop.views.make.<locals>.create#1a2b3c4d", "shop.views.make.<locals>.create#1a2b3c4d"),
        ("login:alice@example.com", "other"),
        ("a group with spaces", "other"),
        ("g" * 129, "other"),
    ],
)
def test_rate_limit_group_rule(group, label):
    observe.group_label.reset()
    assert observe.group_label(group) == label


def test_rate_limit_groups_are_bounded_per_process():
    observe.group_label.reset()
    observe.rate_limits.reset()

    class Hit:
        allowed = True

    try:
        for i in range(500):
            observe.rate_limit_hit(f"group_{i}", Hit())
        observe.rate_limit_hit("user:bob@example.com", Hit())
        groups = {group for group, _ in observe.rate_limits}
        limit = observe.GROUP_LABEL_LIMIT
        assert len(groups) == limit + 1 and "other" in groups
        assert observe.rate_limits["other", True] == 500 - limit + 1
    finally:
        observe.group_label.reset()
        observe.rate_limits.reset()


def test_logs_of_a_redis_outage_name_no_key_a_user_chose(settings, caplog):
    """Failing open and computing without coordination are logged, with the error's
    class, code, script and a digest of the key: never the key itself (an e-mail address
    here), which every atomicops error message quotes."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from atomicops import fixed_window, get_or_set, rate_limit
    from atomicops.engine.redaction import for_log, key_digest
    from atomicops.exceptions import RedisUnavailable
    from tests.servers import free_port

    secret = "alice@example.com"
    settings.ATOMICOPS = {"URL": f"redis://127.0.0.1:{free_port()}/0", "RETRY_DEADLINE_MS": 0}
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    with pytest.raises(RedisUnavailable) as refused:
        fixed_window(secret, 5, 60_000)
    assert secret in str(refused.value)  # the caller's own error names its key...
    assert secret not in for_log(refused.value) and key_digest(secret) in for_log(refused.value)
    assert isinstance(refused.value.__cause__, RedisConnectionError)

    @rate_limit(5, 60_000, key=lambda request: secret, fail_open=True)
    def view(request):
        from django.http import HttpResponse

        return HttpResponse("ok")

    from django.test import RequestFactory

    with caplog.at_level(logging.WARNING, logger="atomicops"):
        assert view(RequestFactory().get("/")).status_code == 200  # let through
        assert get_or_set(secret, lambda: 42, 60) == 42  # computed without coordination
    messages = [record.getMessage() for record in caplog.records]
    assert any("not checked" in m for m in messages)
    assert any("without coordination" in m for m in messages)
    assert not any(secret in m for m in messages), messages  # ...the logs never do
