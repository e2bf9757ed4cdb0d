"""Django REST framework throttles that do not race (issue #20): ``atomicops.drf``.

Drop-in behaviour (rate strings, scopes, ``DEFAULT_THROTTLE_RATES``, ``wait()``, user and
anonymous keys, ``throttle_scope``) on every backend; fail open and closed; and the point of
it all, with 8 processes: DRF's own throttle on a shared Redis cache admits more than its
rate, ours exactly its rate.
"""

from __future__ import annotations

import itertools
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from rest_framework import throttling as drf_throttling
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory, force_authenticate
from rest_framework.views import APIView

from atomicops import drf
from tests.multiproc import run_processes
from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
factory = APIRequestFactory()
_addresses = itertools.count(1)


def fresh_address() -> str:
    """A client address no earlier test used, so each test starts with an empty limit."""
    n = next(_addresses)
    return f"198.18.{n // 250}.{n % 250 + 1}"


def api_view(*throttles, scope: str | None = None):
    class ThrottledView(APIView):
        authentication_classes: list = []
        permission_classes = [AllowAny]
        renderer_classes = [JSONRenderer]
        throttle_classes = list(throttles)
        throttle_scope = scope

        def get(self, request):
            return Response({"ok": True})

    return ThrottledView.as_view()


def get(view, address: str, user=None, **extra):
    request = factory.get("/", REMOTE_ADDR=address, **extra)
    if user is not None:
        force_authenticate(request, user=user)
    response = view(request)
    response.render()
    return response


class ThreePerMinute(drf.AnonRateThrottle):
    rate = "3/min"


def test_public_names_are_drfs():
    # PINNED names: the drop-in import line of the issue.
    from atomicops.drf import (  # noqa: F401
        AnonRateThrottle,
        ScopedRateThrottle,
        SimpleRateThrottle,
        UserRateThrottle,
    )

    assert issubclass(drf.SimpleRateThrottle, drf_throttling.SimpleRateThrottle)
    assert issubclass(drf.AnonRateThrottle, drf_throttling.AnonRateThrottle)
    assert issubclass(drf.UserRateThrottle, drf_throttling.UserRateThrottle)
    assert issubclass(drf.ScopedRateThrottle, drf_throttling.ScopedRateThrottle)
    assert drf.AnonRateThrottle.scope == "anon" and drf.UserRateThrottle.scope == "user"


def test_a_scope_set_on_the_base_class_does_not_reach_the_subclasses(monkeypatch):
    # Ours come before DRF's in the MRO; DRF's own tests set SimpleRateThrottle.scope.
    monkeypatch.setattr(drf.SimpleRateThrottle, "scope", "anon", raising=False)
    assert drf.UserRateThrottle.scope == "user" and drf.AnonRateThrottle.scope == "anon"


def test_rate_string_429_and_wait(backend):
    view, address = api_view(ThreePerMinute), fresh_address()
    assert [get(view, address).status_code for _ in range(3)] == [200, 200, 200]
    limited = get(view, address)
    assert limited.status_code == 429
    retry = int(limited["Retry-After"])
    assert 1 <= retry <= 60  # exact: when the first of the three leaves the minute
    assert "Expected available in" in limited.data["detail"]
    # Another client is not affected.
    assert get(view, fresh_address()).status_code == 200


def test_wait_history_and_now_are_drfs(backend):
    throttle = ThreePerMinute()
    request = factory.get("/", REMOTE_ADDR=fresh_address())
    request.user = None
    assert throttle.allow_request(request, None) is True
    # DRF's history: the admitted times in the window, newest first, in seconds (server
    # time here), and now; DRF's wait() after a success paces the rest of the window.
    assert throttle.history == [throttle.now]
    assert abs(throttle.now - time.time()) < 5
    assert throttle.wait() == pytest.approx(60 / 3)
    assert [throttle.allow_request(request, None) for _ in range(3)] == [True] * 2 + [False]
    assert len(throttle.history) == 3
    assert throttle.history == sorted(throttle.history, reverse=True)
    # Refused: DRF's wait() is when the oldest request leaves the window, and that is the
    # script's exact retry_after.
    expected = 60 - (throttle.now - throttle.history[-1])
    assert throttle.wait() == pytest.approx(expected)
    assert throttle.wait() == pytest.approx(throttle.result.retry_after_ms / 1000)
    assert 59 <= throttle.wait() <= 60


def test_one_round_trip_per_request(backend, monkeypatch):
    # Each hit is exactly one exact-window script call, whatever the outcome.
    calls = []
    real = drf.send
    monkeypatch.setattr(drf, "send", lambda call, client: calls.append(call) or real(call, client))
    view, address = api_view(ThreePerMinute), fresh_address()
    for _ in range(5):
        get(view, address)
    assert len(calls) == 5
    assert {call.script for call in calls} == {"ratelimit_exact_window"}
    assert {c.keys[0] for c in calls} == {f"atomicops:throttle:{{throttle_anon_{address}}}"}


def test_metrics_count_each_scope_as_its_own_group(backend, monkeypatch):
    seen = []
    monkeypatch.setattr(
        drf, "rate_limit_hit", lambda group, r: seen.append((group, r.allowed)) or r
    )
    view, address = api_view(ThreePerMinute), fresh_address()
    for _ in range(4):
        get(view, address)
    assert seen == [("drf:anon", True)] * 3 + [("drf:anon", False)]


@pytest.mark.django_db
def test_user_throttle_by_user_then_by_address(backend, settings, django_user_model):
    settings.REST_FRAMEWORK = {"DEFAULT_THROTTLE_RATES": {"user": "2/hour"}}
    alice = django_user_model.objects.create_user("alice-drf")
    bob = django_user_model.objects.create_user("bob-drf")
    view, address = api_view(drf.UserRateThrottle), fresh_address()
    assert [get(view, address, alice).status_code for _ in range(3)] == [200, 200, 429]
    assert get(view, address, bob).status_code == 200  # same address, own limit
    assert [get(view, address).status_code for _ in range(3)] == [200, 200, 429]


@pytest.mark.django_db
def test_anon_throttle_leaves_signed_in_users_alone(backend, settings, django_user_model):
    settings.REST_FRAMEWORK = {"DEFAULT_THROTTLE_RATES": {"anon": "1/day"}}
    alice = django_user_model.objects.create_user("alice-anon")
    view, address = api_view(drf.AnonRateThrottle), fresh_address()
    assert [get(view, address).status_code for _ in range(2)] == [200, 429]
    assert [get(view, address, alice).status_code for _ in range(3)] == [200, 200, 200]


def test_scoped_throttle_reads_the_settings_live(backend, settings):
    # DRF's own classes copy DEFAULT_THROTTLE_RATES at import; ours read it per request.
    settings.REST_FRAMEWORK = {"DEFAULT_THROTTLE_RATES": {"uploads": "1/min", "search": "2/min"}}
    address = fresh_address()
    uploads = api_view(drf.ScopedRateThrottle, scope="uploads")
    search = api_view(drf.ScopedRateThrottle, scope="search")
    unscoped = api_view(drf.ScopedRateThrottle)
    assert [get(uploads, address).status_code for _ in range(2)] == [200, 429]
    assert [get(search, address).status_code for _ in range(3)] == [200, 200, 429]
    assert [get(unscoped, address).status_code for _ in range(5)] == [200] * 5


def test_missing_scope_rate_is_improperly_configured(settings):
    settings.REST_FRAMEWORK = {"DEFAULT_THROTTLE_RATES": {}}
    with pytest.raises(ImproperlyConfigured, match="No default throttle rate set for 'anon'"):
        drf.AnonRateThrottle()
    with pytest.raises(ImproperlyConfigured, match="No default throttle rate set for 'x'"):
        get(api_view(drf.ScopedRateThrottle, scope="x"), fresh_address())


def test_zero_rate_admits_nothing(backend):
    class Closed(drf.AnonRateThrottle):
        rate = "0/hour"

    limited = get(api_view(Closed), fresh_address())
    assert limited.status_code == 429 and limited["Retry-After"] == "3600"


def test_behind_a_proxy_the_client_is_the_forwarded_address(backend, settings):
    settings.ATOMICOPS = {**settings.ATOMICOPS, "TRUSTED_PROXY_COUNT": 1}
    view, client = api_view(ThreePerMinute), fresh_address()
    statuses = [
        get(view, "10.0.0.2", HTTP_X_FORWARDED_FOR=f"6.6.6.{n}, {client}").status_code
        for n in range(4)
    ]
    assert statuses == [200, 200, 200, 429]  # spoofed entries buy nothing
    assert get(view, "10.0.0.2", HTTP_X_FORWARDED_FOR=fresh_address()).status_code == 200


def ident(**meta) -> str | None:
    request = factory.get("/", **meta)
    if "REMOTE_ADDR" not in meta:
        del request.META["REMOTE_ADDR"]
    return drf.AnonRateThrottle().get_ident(request)


def test_get_ident_is_drfs_format_and_honours_num_proxies(settings):
    settings.REST_FRAMEWORK = {"DEFAULT_THROTTLE_RATES": {"anon": "3/min"}}
    assert ident(REMOTE_ADDR="203.0.113.7") == "203.0.113.7"  # plain, as DRF's
    assert ident() is None  # DRF: REMOTE_ADDR's None ("throttle_anon_None")
    forwarded = {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "1.1.1.1, 2.2.2.2"}
    # NUM_PROXIES unset: REMOTE_ADDR (DRF would use the whole header, which the client
    # writes: the documented exception).
    assert ident(**forwarded) == "10.0.0.2"
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    assert ident(**forwarded) == "2.2.2.2"
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 2}
    assert ident(**forwarded) == "1.1.1.1"
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 0}
    assert ident(**forwarded) == "10.0.0.2"
    # atomicops' own proxy setting, when set, wins over NUM_PROXIES.
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 2}
    settings.ATOMICOPS = {**settings.ATOMICOPS, "TRUSTED_PROXY_COUNT": 1}
    assert ident(**forwarded) == "2.2.2.2"
    settings.ATOMICOPS = {k: v for k, v in settings.ATOMICOPS.items() if k != "TRUSTED_PROXY_COUNT"}
    # IPv6 by its /64 (one client usually holds one); not an address: a digest.
    assert ident(REMOTE_ADDR="2001:db8:1:1::7") == "2001:db8:1:1::/64"
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    odd = ident(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="1.1.1.1, <script>")
    assert odd is not None and odd.startswith("addr:") and "script" not in odd


@pytest.mark.parametrize(
    ("rate", "seconds"),
    [
        ("2/s", 1), ("2/sec", 1), ("2/second", 1), ("2/m", 60), ("2/min", 60),
        ("2/minute", 60), ("2/h", 3600), ("2/hour", 3600), ("2/d", 86400), ("2/day", 86400),
    ],
)  # fmt: skip
def test_every_rate_string_drf_accepts(backend, rate, seconds):
    class Throttle(drf.AnonRateThrottle):
        pass

    Throttle.rate = rate
    throttle = Throttle()
    assert (throttle.num_requests, throttle.duration) == (2, seconds)
    request = factory.get("/", REMOTE_ADDR=fresh_address())
    request.user = None
    assert [throttle.allow_request(request, None) for _ in range(3)] == [True, True, False]
    assert seconds - 5 < throttle.wait() <= seconds


def test_a_huge_rate_serves(backend):
    class Huge(drf.AnonRateThrottle):
        rate = "30000000/day"

    view, address = api_view(Huge), fresh_address()
    assert [get(view, address).status_code for _ in range(5)] == [200] * 5
    throttle = Huge()
    request = factory.get("/", REMOTE_ADDR=address)
    request.user = None
    assert throttle.allow_request(request, None)
    assert len(throttle.history) == 6 and throttle.result.remaining == 30000000 - 6
    assert throttle.wait() == pytest.approx(
        (86400 - (throttle.now - throttle.history[-1])) / (30000000 - 6 + 1)
    )


def test_a_long_history_is_read_as_far_as_history_runs(backend):
    class Short(drf.AnonRateThrottle):
        rate = "5/min"
        history_runs = 2

    throttle = Short()
    request = factory.get("/", REMOTE_ADDR=fresh_address())
    request.user = None
    stamps = []
    for _ in range(5):
        assert throttle.allow_request(request, None)
        stamps.append(throttle.now)
        time.sleep(0.003)  # each in its own server ms: five runs
    history = throttle.history
    assert isinstance(history, drf.ThrottleHistory)
    assert len(history) == 5
    assert history[0] == stamps[-1] and history[1] == stamps[-2]
    assert history[-1] == history[4] == stamps[0]
    with pytest.raises(IndexError):
        history[2]  # only the two newest runs were read
    assert not throttle.allow_request(request, None)
    assert throttle.wait() == pytest.approx(60 - (throttle.now - stamps[0]))


def test_a_rate_that_cannot_be_served_is_a_check_error(settings):
    from atomicops.checks import BAD_THROTTLE_RATE, check_throttle_rates

    settings.REST_FRAMEWORK = {
        "DEFAULT_THROTTLE_RATES": {
            "fine": "30000000/day",
            "off": None,
            "typo": "10/fortnight",
            "words": "ten/min",
            "huge": f"{2**53}/day",
        }
    }
    found = check_throttle_rates()
    assert [m.id for m in found] == [BAD_THROTTLE_RATE] * 3
    assert ["'typo'" in found[0].msg, "'words'" in found[1].msg, "'huge'" in found[2].msg] == [
        True
    ] * 3
    settings.REST_FRAMEWORK = {"DEFAULT_THROTTLE_RATES": {"anon": "100/min"}}
    assert check_throttle_rates() == []


def test_fail_open_and_closed(settings, caplog):
    settings.ATOMICOPS = {
        "URL": f"redis://127.0.0.1:{free_port()}/0",
        "LOAD_ON_STARTUP": False,
        "SOCKET_CONNECT_TIMEOUT": 0.5,
        "RETRY_DEADLINE_MS": 300,
    }

    class Closed(ThreePerMinute):
        fail_open = False

    # Open or closed is decided once the call's retries gave up, not at the first refusal.
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="atomicops"):
        assert get(api_view(ThreePerMinute), fresh_address()).status_code == 200
    assert 0.25 <= time.monotonic() - started <= 3.0
    assert "throttle ThreePerMinute not checked" in caplog.text and "fail open" in caplog.text
    started = time.monotonic()
    refused = get(api_view(Closed), fresh_address())
    assert 0.25 <= time.monotonic() - started <= 3.0
    assert refused.status_code == 503
    assert refused.data["detail"] == "Rate limit unavailable; retry shortly."
    settings.ATOMICOPS = {**settings.ATOMICOPS, "RATELIMIT_FAIL_OPEN": False}
    assert get(api_view(ThreePerMinute), fresh_address()).status_code == 503


# -- 8 processes: DRF's throttle races, ours does not -----------------------------------------

RATE = 20
PROCESSES = 8
REQUESTS_EACH = 30  # 240 requests for a rate of 20
ROUNDS = 5  # DRF's race is a race: give it a few chances to show


class DrfAnon(drf_throttling.AnonRateThrottle):
    # A day, so no window ends while the test runs (DRF's log and our windows alike).
    rate = f"{RATE}/day"


class OursAnon(drf.AnonRateThrottle):
    rate = f"{RATE}/day"


VIEWS = {"drf": api_view(DrfAnon), "atomicops": api_view(OursAnon)}


def hammer(kind: str, address: str) -> int:
    view = VIEWS[kind]
    return sum(get(view, address).status_code == 200 for _ in range(REQUESTS_EACH))


def admitted(kind: str) -> int:
    address = fresh_address()
    return sum(run_processes(hammer, [(kind, address)] * PROCESSES))


@pytest.mark.slow
def test_drf_throttle_races_ours_admits_exactly_its_rate(real_client, settings, capsys):
    url = real_client.connection_pool.connection_kwargs
    settings.CACHES = {
        **settings.CACHES,
        "shared": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://{url['host']}:{url['port']}/0",
        },
    }
    DrfAnon.cache = caches["shared"]  # DRF's throttle on a Redis cache every process shares
    try:
        drf_counts, ours_counts = [], []
        for _ in range(ROUNDS):
            drf_counts.append(admitted("drf"))
            ours_counts.append(admitted("atomicops"))
            if drf_counts[-1] > RATE:
                break
    finally:
        del DrfAnon.cache
    with capsys.disabled():
        print(
            f"\n{PROCESSES} processes x {REQUESTS_EACH} requests, rate {RATE}/day: "
            f"DRF's AnonRateThrottle admitted {drf_counts}, atomicops.drf admitted {ours_counts}"
        )
    assert ours_counts == [RATE] * len(ours_counts)
    assert max(drf_counts) > RATE, f"DRF's throttle never overshot in {ROUNDS} rounds"


def test_nothing_imports_drf_or_pytest_unless_asked():
    """DRF is optional, and so is the pytest plugin: importing every other atomicops module
    (with Django set up) brings in neither."""
    code = (
        "import importlib, pkgutil, sys, django\n"
        "django.setup()\n"
        "import atomicops\n"
        "skip = {'atomicops.drf', 'atomicops.testing'}\n"
        "for m in pkgutil.walk_packages(atomicops.__path__, 'atomicops.'):\n"
        "    if m.name not in skip:\n"
        "        importlib.import_module(m.name)\n"
        "bad = sorted(n for n in ('rest_framework', 'pytest', '_pytest') if n in sys.modules)\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    env = {"DJANGO_SETTINGS_MODULE": "demo_project.settings", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
