"""The client address behind trusted proxies (issue #20): ``TRUSTED_PROXY_COUNT`` and
``CLIENT_IP_HEADER``, as ``atomicops.web.identity`` reads them for ``@rate_limit``, the DRF
throttles and idempotency.

Behind ``n`` proxies that each append to ``X-Forwarded-For`` the client is the ``n``-th
entry from the right; what a client puts in the header itself is left of that and is never
the answer, however many entries it adds.
"""

from __future__ import annotations

import pytest
from django.core.checks import run_checks
from django.test import RequestFactory

from atomicops import ConfigurationError
from atomicops.checks import BAD_PROXY_SETTINGS
from atomicops.web.identity import client_ip, identify, request_address
from tests.testapp import views

CLIENT = "203.0.113.7"
OTHER_CLIENT = "198.51.100.9"
CDN = "192.0.2.10"  # the outer proxy's address, as the inner one records it
LB = "10.0.0.2"  # the proxy that connects to Django: REMOTE_ADDR
SPOOFED = ["6.6.6.6", "7.7.7.7, 8.8.8.8", "unknown", "::1", f"{OTHER_CLIENT}, 1.2.3.4"]

rf = RequestFactory()


def request(remote: str = LB, xff: str | None = None, **headers: str):
    extra = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()}
    if xff is not None:
        extra["HTTP_X_FORWARDED_FOR"] = xff
    return rf.get("/", REMOTE_ADDR=remote, **extra)


def through(chain: list[str], client: str, sent: str | None = None) -> str:
    """X-Forwarded-For as Django sees it after ``chain`` (outermost first) forwarded
    ``client``'s request; ``sent`` is what the client put in the header itself."""
    entries = [sent] if sent else []
    for hop in [client, *chain[:-1]]:  # each proxy appends who connected to it
        entries.append(hop)
    return ", ".join(entries)


@pytest.fixture
def proxies(settings):
    def configure(**values):
        settings.ATOMICOPS = {**settings.ATOMICOPS, **values}

    return configure


# -- 0 trusted proxies (the default) ------------------------------------------------------


@pytest.mark.parametrize("sent", [None, *SPOOFED, CLIENT])
def test_no_trusted_proxy_reads_remote_addr_only(proxies, sent):
    proxies()  # the defaults: TRUSTED_PROXY_COUNT 0, no header
    req = request(remote=CLIENT, xff=sent)
    assert request_address(req) == CLIENT
    assert client_ip(req) == f"ip:{CLIENT}"


def test_no_trusted_proxy_behind_a_proxy_is_the_proxy(proxies):
    # What the setting is for: without it every client behind the balancer is one.
    proxies()
    assert client_ip(request(xff=CLIENT)) == client_ip(request(xff=OTHER_CLIENT)) == f"ip:{LB}"


# -- 1 and 2 trusted proxies --------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "chain"),
    [(1, [LB]), (2, [CDN, LB])],
    ids=["one-proxy", "two-proxies"],
)
@pytest.mark.parametrize("sent", [None, *SPOOFED, CLIENT], ids=lambda s: f"sent={s}")
def test_trusted_proxies_find_the_client_whatever_it_sent(proxies, count, chain, sent):
    proxies(TRUSTED_PROXY_COUNT=count)
    xff = through(chain, CLIENT, sent)
    req = request(remote=chain[-1], xff=xff)
    assert request_address(req) == CLIENT, xff
    assert client_ip(req) == f"ip:{CLIENT}"


@pytest.mark.parametrize(("count", "chain"), [(1, [LB]), (2, [CDN, LB])])
def test_two_clients_behind_the_same_proxies_are_two(proxies, count, chain):
    proxies(TRUSTED_PROXY_COUNT=count)
    one = client_ip(request(remote=chain[-1], xff=through(chain, CLIENT)))
    two = client_ip(request(remote=chain[-1], xff=through(chain, OTHER_CLIENT)))
    assert one == f"ip:{CLIENT}" and two == f"ip:{OTHER_CLIENT}"


def test_spoofing_many_entries_never_moves_the_answer(proxies):
    proxies(TRUSTED_PROXY_COUNT=2)
    for extra in range(0, 12):
        sent = ", ".join(f"10.9.9.{i}" for i in range(extra))
        assert request_address(request(xff=through([CDN, LB], CLIENT, sent))) == CLIENT


def test_fewer_entries_than_proxies_take_the_leftmost(proxies):
    # A request that came in behind the CDN (a health check from inside): the load
    # balancer appended its caller, which is all there is.
    proxies(TRUSTED_PROXY_COUNT=2)
    assert request_address(request(xff="10.1.2.3")) == "10.1.2.3"


def test_no_forwarded_header_is_remote_addr(proxies):
    proxies(TRUSTED_PROXY_COUNT=1)
    assert request_address(request(remote="127.0.0.1")) == "127.0.0.1"
    assert request_address(request(remote="127.0.0.1", xff="")) == "127.0.0.1"


@pytest.mark.parametrize(
    ("entry", "address", "identity"),
    [
        ("203.0.113.7:5123", CLIENT, f"ip:{CLIENT}"),
        ("[2001:db8:1:1::9]:443", "2001:db8:1:1::9", "ip:2001:db8:1:1::/64"),
        ("2001:db8:1:1::9", "2001:db8:1:1::9", "ip:2001:db8:1:1::/64"),
        ("::ffff:203.0.113.7", "::ffff:203.0.113.7", f"ip:{CLIENT}"),
        ("  203.0.113.7  ", CLIENT, f"ip:{CLIENT}"),
    ],
)
def test_forwarded_entries_with_ports_brackets_and_spaces(proxies, entry, address, identity):
    proxies(TRUSTED_PROXY_COUNT=1)
    req = request(xff=f"6.6.6.6,{entry}")
    assert request_address(req) == address
    assert client_ip(req) == identity


def test_an_entry_that_is_no_address_is_hashed(proxies):
    proxies(TRUSTED_PROXY_COUNT=1)
    identity = client_ip(request(xff="_hidden_by_proxy"))
    assert identity.startswith("addr:") and "hidden" not in identity


# -- a header set by the proxy ------------------------------------------------------------


def test_client_ip_header(proxies):
    proxies(CLIENT_IP_HEADER="X-Real-IP")
    assert request_address(request(xff="6.6.6.6", **{"X-Real-IP": CLIENT})) == CLIENT
    # The proxy appended instead of overwriting: its entry is the last.
    assert request_address(request(**{"X-Real-IP": f"6.6.6.6, {CLIENT}"})) == CLIENT
    # Without the header (a request that did not pass the proxy): REMOTE_ADDR.
    assert request_address(request(remote="127.0.0.1", xff=CLIENT)) == "127.0.0.1"


def test_client_ip_header_ignores_forwarded_for(proxies):
    proxies(CLIENT_IP_HEADER="CF-Connecting-IP")
    req = request(xff=f"6.6.6.6, {OTHER_CLIENT}", **{"CF-Connecting-IP": CLIENT})
    assert client_ip(req) == f"ip:{CLIENT}"


# -- the settings are checked -------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        {"TRUSTED_PROXY_COUNT": -1},
        {"TRUSTED_PROXY_COUNT": True},
        {"TRUSTED_PROXY_COUNT": "1"},
        {"CLIENT_IP_HEADER": ""},
        {"CLIENT_IP_HEADER": 5},
        {"TRUSTED_PROXY_COUNT": 1, "CLIENT_IP_HEADER": "X-Real-IP"},
    ],
)
def test_bad_settings_are_e008_and_refused_on_a_request(proxies, values):
    proxies(**values)
    errors = [m for m in run_checks(tags=["atomicops"]) if m.id == BAD_PROXY_SETTINGS]
    assert len(errors) == 1 and errors[0].hint
    with pytest.raises(ConfigurationError):
        request_address(request())


def test_good_settings_pass_the_check(proxies):
    proxies(TRUSTED_PROXY_COUNT=2)
    assert not [m for m in run_checks(tags=["atomicops"]) if m.id == BAD_PROXY_SETTINGS]


# -- what @rate_limit makes of it -----------------------------------------------------------


def test_identify_ip_and_anonymous_user_follow_the_setting(proxies):
    proxies(TRUSTED_PROXY_COUNT=1)
    req = request(xff=f"6.6.6.6, {CLIENT}")
    assert identify(req, "ip") == f"ip:{CLIENT}"
    req.user = None
    assert identify(req, "user") == f"ip:{CLIENT}"
    # A header key falls back to the client's address, not the proxy's.
    assert identify(req, "header:X-Api-Key") == f"ip:{CLIENT}"


def test_rate_limit_behind_a_proxy_limits_clients_not_the_site(backend, settings):
    settings.ATOMICOPS = {**settings.ATOMICOPS, "TRUSTED_PROXY_COUNT": 1}
    codes = [views.rl_ip(request(xff=f"{n}.{n}.{n}.{n}, {CLIENT}")).status_code for n in range(4)]
    # Spoofed entries do not buy a fresh limit: two allowed (the view's limit), then 429.
    assert codes == [200, 200, 429, 429]
    # Another client behind the same balancer has its own limit.
    assert views.rl_ip(request(xff=OTHER_CLIENT)).status_code == 200
