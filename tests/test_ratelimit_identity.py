"""Who ``@rate_limit`` counts, and what of it reaches Redis and the logs (issue #12).

Dual-stack addresses (IPv4-mapped, NAT64) count as the IPv4 client they are; stacked
decorators without ``group=`` keep separate keys with their own windows, the same in every
process; header values, callable keys and non-IP ``REMOTE_ADDR`` values are hashed, so keys
stay short and secrets stay out of Redis and the logs. Views are in tests/testapp/views.py;
the ones touching Redis run on redis, valkey and fakeredis.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.http import HttpResponse

from atomicops import InvalidInput, rate_limit
from atomicops.web.identity import client_address, client_ip, digest
from atomicops.web.ratelimit_views import default_group, limit_key
from tests.testapp import views

ROOT = Path(__file__).resolve().parent.parent
SECRET = "sk_live_TOPSECRET"
# The longest key an identity may produce: prefix, kind, the test views' group, 32 hex chars.
MAX_KEY = 160


def status(view, rf, **meta) -> int:
    return view(rf.get("/", **meta)).status_code


def all_keys(redis_client) -> list[str]:
    return sorted(k.decode() for k in redis_client.scan_iter("*"))


def rl_keys(redis_client) -> list[str]:
    return [k for k in all_keys(redis_client) if k.startswith("atomicops:rl:")]


# -- addresses ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("remote_addr", "identity"),
    [
        ("1.2.3.4", "ip:1.2.3.4"),
        ("::ffff:1.2.3.4", "ip:1.2.3.4"),  # an IPv4 client of a server listening on [::]
        ("::ffff:9.9.9.9", "ip:9.9.9.9"),
        ("64:ff9b::1.2.3.4", "ip:1.2.3.4"),  # NAT64, RFC 6052's well-known prefix
        ("64:ff9b::909:909", "ip:9.9.9.9"),
        ("2001:db8:1:1::1", "ip:2001:db8:1:1::/64"),
        ("2001:DB8:1:1:ffff::9", "ip:2001:db8:1:1::/64"),
        ("fe80::1%eth0", "ip:fe80::/64"),  # a zone id does not leak into the key
        ("64:ff9b:1::1", "ip:64:ff9b:1::/64"),  # outside the /96: plain IPv6
        ("", "ip:unknown"),
    ],
)
def test_client_ip_maps_dual_stack_addresses_to_ipv4(rf, remote_addr, identity):
    assert client_ip(rf.get("/", REMOTE_ADDR=remote_addr)) == identity


def test_an_address_that_is_no_ip_is_hashed_and_bounded(rf):
    for raw in ("unix:/run/gunicorn.sock", "1.2.3.4, 10.0.0.1", "x" * 50_000):
        identity = client_ip(rf.get("/", REMOTE_ADDR=raw))
        assert identity == f"addr:{digest(raw)}"
        assert raw not in identity and len(identity) == len("addr:") + 32
    assert client_address("not an ip") is None
    assert client_address("::ffff:1.2.3.4") == "1.2.3.4"


def test_ipv4_mapped_clients_have_their_own_limits(backend, rf):
    _, redis_client = backend
    statuses = [status(views.rl_ip, rf, REMOTE_ADDR="::ffff:1.2.3.4") for _ in range(5)]
    assert statuses == [200, 200, 429, 429, 429]
    assert status(views.rl_ip, rf, REMOTE_ADDR="::ffff:9.9.9.9") == 200
    # The same client over IPv4 and over the mapped address: one limit.
    assert status(views.rl_ip, rf, REMOTE_ADDR="1.2.3.4") == 429
    assert status(views.rl_ip, rf, REMOTE_ADDR="9.9.9.9") == 200
    assert [k.rsplit("|", 1)[1] for k in rl_keys(redis_client)] == ["ip:1.2.3.4}", "ip:9.9.9.9}"]


def test_nat64_clients_have_their_own_limits(backend, rf):
    statuses = [status(views.rl_ip, rf, REMOTE_ADDR="64:ff9b::1.2.3.4") for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert status(views.rl_ip, rf, REMOTE_ADDR="64:ff9b::9.9.9.9") == 200
    assert status(views.rl_ip, rf, REMOTE_ADDR="1.2.3.4") == 429


def test_ipv6_is_still_grouped_by_64_and_ipv4_by_address(backend, rf):
    for address in ("2001:db8:1:1::1", "2001:db8:1:1::2"):
        assert status(views.rl_ip, rf, REMOTE_ADDR=address) == 200
    assert status(views.rl_ip, rf, REMOTE_ADDR="2001:db8:1:1:ffff::9") == 429
    assert status(views.rl_ip, rf, REMOTE_ADDR="2001:db8:1:2::1") == 200
    assert [status(views.rl_ip, rf, REMOTE_ADDR="10.0.0.1") for _ in range(3)] == [200, 200, 429]
    assert status(views.rl_ip, rf, REMOTE_ADDR="10.0.0.2") == 200


def test_non_ip_remote_addr_is_bounded_and_hashed(backend, rf):
    _, redis_client = backend
    raws = ["x" * 5_000, "unix:/run/gunicorn.sock", "1.2.3.4, 10.0.0.1"]
    for raw in raws:
        assert [status(views.rl_ip, rf, REMOTE_ADDR=raw) for _ in range(3)] == [200, 200, 429]
    keys = rl_keys(redis_client)
    assert len(keys) == len(raws)  # still one limit per value
    assert all(len(k) <= MAX_KEY and "addr:" in k for k in keys)
    assert not any(raw in k for raw in raws for k in keys)


# -- stacked decorators ---------------------------------------------------------------


def test_stacked_limits_without_group_count_separately(backend, rf):
    _, redis_client = backend
    statuses = [status(views.rl_burst_sustained, rf, REMOTE_ADDR="10.0.0.1") for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    keys = rl_keys(redis_client)
    assert len(keys) == 2
    # Decided together (#17): each admitted request counted once in each, the refused
    # sixth in neither.
    assert [int(redis_client.get(k)) for k in keys] == [5, 5]
    windows = sorted(redis_client.pttl(k) for k in keys)
    assert 0 < windows[0] <= 10_000 and 10_000 < windows[1] <= 3_600_000


async def test_stacked_limits_without_group_on_an_async_view(backend, async_rf):
    _, redis_client = backend
    statuses = [
        (
            await views.rl_burst_sustained_async(async_rf.get("/", REMOTE_ADDR="10.0.0.1"))
        ).status_code
        for _ in range(6)
    ]
    assert statuses == [200] * 5 + [429]
    assert len(rl_keys(redis_client)) == 2


def test_stacked_limits_with_one_group_named(backend, rf):
    _, redis_client = backend
    view = views.rl_burst_sustained_one_named
    assert [status(view, rf, REMOTE_ADDR="10.0.0.1") for _ in range(6)] == [200] * 5 + [429]
    keys = rl_keys(redis_client)
    assert len(keys) == 2
    assert "atomicops:rl:fixed_window:{rl-sustained-named|ip:10.0.0.1}" in keys


def test_stacked_limits_with_groups_use_them_verbatim(backend, rf):
    _, redis_client = backend
    views.rl_stacked(rf.get("/", REMOTE_ADDR="10.0.0.1"))
    assert rl_keys(redis_client) == [
        "atomicops:rl:fixed_window:{rl-burst|ip:10.0.0.1}",
        "atomicops:rl:fixed_window:{rl-sustained|ip:10.0.0.1}",
    ]


def test_default_groups_differ_by_every_setting_that_changes_the_count():
    def view(request):
        return HttpResponse()

    variants = [
        {},
        {"window_ms": 20_000},
        {"limit": 6},
        {"key": "user"},
        {"key": "header:X-Api-Key"},
        {"key": views._tenant},
        {"amount": 2},
        {"methods": ["POST"]},
        {"algorithm": "sliding_window"},
        {"algorithm": "token_bucket", "window_ms": None, "refill_rate": 0.5},
    ]
    base = {"limit": 5, "window_ms": 10_000, "key": "ip"}
    groups = {default_group(view, **{**base, **variant}) for variant in variants}
    assert len(groups) == len(variants)
    assert all(g.startswith(f"{__name__}.{view.__qualname__}#") for g in groups)
    # Only what changes the count: methods in another order, another fail_open, same group.
    assert default_group(view, **base, methods=["post", "GET"]) == default_group(
        view, **base, methods=["GET", "POST"]
    )


def test_the_same_group_twice_on_one_view_is_refused():
    def view(request):
        return HttpResponse()

    with pytest.raises(InvalidInput, match="twice"):
        rate_limit(5, 10_000, key="ip")(rate_limit(5, 10_000, key="ip")(view))
    with pytest.raises(InvalidInput, match="twice"):
        rate_limit(9, 60_000, group="g")(rate_limit(5, 10_000, group="g")(view))
    # The same view decorated twice side by side (two URLs) is no stack: allowed.
    rate_limit(5, 10_000, key="ip")(view)
    rate_limit(5, 10_000, key="ip")(view)


CHILD = """
import os
import django
django.setup()
from django.test import RequestFactory, override_settings
from tests.testapp import views
with override_settings(ATOMICOPS={"URL": os.environ["URL"], "LOAD_ON_STARTUP": False}):
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.7")
    print(views.rl_burst_sustained(request).status_code, request.ratelimit.count)
"""


@pytest.mark.real
def test_default_groups_are_the_same_in_every_process(real_server, real_client, rf):
    """Limits survive restarts and deploys: another interpreter (another hash seed) builds
    the same keys."""
    for count, seed in enumerate(("1", "2"), start=1):
        env = {
            **os.environ,
            "PYTHONHASHSEED": seed,
            "URL": real_server.url,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
        }
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(CHILD)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["200", str(count)]  # counted on the server
    assert status(views.rl_burst_sustained, rf, REMOTE_ADDR="10.0.0.7") == 200
    keys = rl_keys(real_client)
    assert len(keys) == 2
    assert [int(real_client.get(k)) for k in keys] == [3, 3]


def test_limit_key_is_the_one_place_keys_are_built():
    assert (
        limit_key("fixed_window", "g", "ip:1.2.3.4") == "atomicops:rl:fixed_window:{g|ip:1.2.3.4}"
    )


# -- header, callable and what reaches Redis and the logs ------------------------------


def test_header_values_never_reach_redis_or_the_logs(backend, rf, caplog):
    _, redis_client = backend
    with caplog.at_level(logging.DEBUG):
        hits = [status(views.rl_header, rf, HTTP_X_API_KEY=SECRET) for _ in range(3)]
    assert hits == [200, 200, 429]
    assert status(views.rl_header, rf, HTTP_X_API_KEY=SECRET + "2") == 200
    keys = all_keys(redis_client)
    assert len(rl_keys(redis_client)) == 2
    assert not any("TOPSECRET" in k for k in keys)
    assert "TOPSECRET" not in caplog.text


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def redis_down(settings):
    """atomicops pointed at a port nobody listens on."""
    settings.ATOMICOPS = {
        "URL": f"redis://127.0.0.1:{free_port()}/0",
        "LOAD_ON_STARTUP": False,
        "SOCKET_CONNECT_TIMEOUT": 0.5,
    }


def _logged(caplog) -> str:
    parts = []
    for record in caplog.records:
        parts.append(record.getMessage())
        if record.exc_info:
            parts.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(parts)


def test_header_value_is_not_logged_when_redis_is_down(redis_down, rf, caplog):
    with caplog.at_level(logging.DEBUG):
        assert status(views.rl_header, rf, HTTP_X_API_KEY=SECRET) == 200  # fail open
    assert "not checked" in caplog.text  # the warning was logged...
    assert "TOPSECRET" not in _logged(caplog)  # ...without the key's value


async def test_header_value_is_not_logged_by_an_async_view(redis_down, async_rf, caplog):
    with caplog.at_level(logging.DEBUG):
        response = await views.rl_header_async(async_rf.get("/", headers={"X-Api-Key": SECRET}))
    assert response.status_code == 200
    assert "not checked" in caplog.text
    assert "TOPSECRET" not in _logged(caplog)


def test_key_length_is_bounded_for_any_header_length(backend, rf):
    _, redis_client = backend
    lengths = [1, 64, 2_700, 100_000]
    for length in lengths:
        assert status(views.rl_header, rf, HTTP_X_API_KEY="k" * length) == 200
    keys = rl_keys(redis_client)
    assert len(keys) == len(lengths)  # distinct values, distinct limits
    assert len({len(k) for k in keys}) == 1 and len(keys[0]) <= MAX_KEY


def test_callable_key_values_are_bounded_and_hashed(backend, rf):
    _, redis_client = backend
    tenant = "tenant-" + "t" * 10_000
    hits = [views.rl_callable(rf.get("/", {"tenant": tenant})).status_code for _ in range(3)]
    assert hits == [200, 200, 429]
    [key] = rl_keys(redis_client)
    assert len(key) <= MAX_KEY and "tenant-" not in key and "|key:" in key
