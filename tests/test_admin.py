"""The admin dashboard: who may see and do what, what it shows, and what it never runs."""

from __future__ import annotations

import hashlib
import re
import time

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from atomicops import Lock
from atomicops.scripts.registry import registry
from tests.servers import free_port
from tests.test_cluster import cluster, cluster_server  # noqa: F401  (fixtures)

DASHBOARD = "admin:atomicops_dashboard_changelist"
LOAD = "admin:atomicops_dashboard_load"
FLUSH = "admin:atomicops_dashboard_flush_check"
ALL_PERMS = ("view_dashboard", "load_scripts", "flush_scripts")

fakeredis_only = pytest.mark.parametrize("backend", ["fakeredis"], indirect=True)


@pytest.fixture
def make_user(db, django_user_model):
    def make(*codenames: str, staff: bool = True, superuser: bool = False):
        name = f"user{django_user_model.objects.count()}"
        if superuser:
            return django_user_model.objects.create_superuser(name, f"{name}@x.test", None)
        # No password: force_login needs none, and hashing one costs ~0.3 s per user.
        user = django_user_model.objects.create_user(name, password=None, is_staff=staff)
        perms = Permission.objects.filter(
            content_type__app_label="atomicops", codename__in=codenames
        )
        # The migration created them like any model's permissions.
        assert sorted(p.codename for p in perms) == sorted(codenames)
        user.user_permissions.add(*perms)
        return user

    return make


def logged_in(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def test_migration_creates_the_three_permissions(db):
    found = Permission.objects.filter(content_type__app_label="atomicops")
    assert sorted(p.codename for p in found) == sorted(ALL_PERMS)


@fakeredis_only
def test_admin_index_has_an_atomicops_section_linking_to_the_dashboard(backend, make_user):
    response = logged_in(make_user("view_dashboard")).get(reverse("admin:index"))
    assert response.status_code == 200
    html = response.content.decode()
    assert f'<a href="{reverse("admin:app_list", args=["atomicops"])}"' in html
    assert f'<a href="{reverse(DASHBOARD)}">Scripts dashboard</a>' in html


@fakeredis_only
def test_staff_without_permissions_see_no_section_and_get_403(backend, make_user):
    client = logged_in(make_user())
    assert reverse(DASHBOARD) not in client.get(reverse("admin:index")).content.decode()
    assert client.get(reverse(DASHBOARD)).status_code == 403
    assert client.post(reverse(LOAD)).status_code == 403
    assert client.post(reverse(FLUSH)).status_code == 403


@fakeredis_only
@pytest.mark.parametrize("name", [DASHBOARD, LOAD, FLUSH])
@pytest.mark.parametrize("method", ["get", "post"])
def test_anonymous_and_non_staff_users_go_to_the_admin_login(backend, make_user, name, method):
    url = reverse(name)
    for client in (Client(), logged_in(make_user(*ALL_PERMS, staff=False))):
        response = getattr(client, method)(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
        assert f"next={url}" in response["Location"]


def _rows(html: str) -> dict[str, str]:
    """script name -> the HTML of its dashboard row."""
    rows = re.findall(r'<tr class="atomicops-script" data-script="([^"]+)">(.*?)</tr>', html, re.S)
    return dict(rows)


def test_dashboard_shows_each_scripts_retries_by_reason(backend, make_user, settings, monkeypatch):
    """A call that met LOADING and was sent again shows as a retry, under its reason."""
    from redis.exceptions import BusyLoadingError

    from atomicops.engine import wire

    kind, client = backend
    script = registry.get("testapp_echo")
    retries, loading = script.stats["retries"], script.stats.reasons["loading"]
    refused = []
    real_roundtrip = wire.roundtrip

    def roundtrip(send):  # the server answers -LOADING once, as after a restart
        replies = real_roundtrip(send)
        if send.context.what == "testapp_echo" and not refused:
            refused.append(send)
            return [*replies[:-1], BusyLoadingError("Redis is loading the dataset in memory")]
        return replies

    settings.ATOMICOPS = {**settings.ATOMICOPS, "RETRY_DEADLINE_MS": 2000}
    monkeypatch.setattr(wire, "roundtrip", roundtrip)
    script(["k"], ["w"], client=client)
    monkeypatch.undo()
    assert refused
    assert script.stats["retries"] == retries + 1
    assert script.stats.reasons["loading"] == loading + 1
    html = logged_in(make_user("view_dashboard")).get(reverse(DASHBOARD)).content.decode()
    row = _rows(html)["testapp_echo"]
    assert f'<span data-reason="loading">loading {loading + 1}</span>' in row
    assert f'RETRY_DEADLINE_MS)">{retries + 1}</span>' in row


def test_dashboard_lists_every_script_with_sha_loaded_state_and_stats(backend, make_user):
    kind, client = backend
    script = registry.get("testapp_echo")
    calls = script.stats["calls"]
    for _ in range(3):
        script(["k"], ["w"], client=client)
    client.script_flush()
    browser = logged_in(make_user("view_dashboard"))

    response = browser.get(reverse(DASHBOARD))
    assert response.status_code == 200
    html = response.content.decode()
    rows = _rows(html)
    assert list(rows) == [s.name for s in registry]
    for each in registry:
        assert f'data-sha="{each.sha}"' in rows[each.name]
        assert ">no<" in rows[each.name].split('class="loaded"')[1][:80]
        assert ("read-only" in rows[each.name]) == each.readonly
        for key in each.keys:
            assert f"<code>{key}</code>" in rows[each.name]
    row = response.context["scripts"][[s.name for s in registry].index("testapp_echo")]
    assert row.stats["calls"] == calls + 3
    assert f'<span class="calls" title="calls">{calls + 3}</span>' in rows["testapp_echo"]
    # No action forms for a view-only user.
    assert reverse(LOAD) not in html and reverse(FLUSH) not in html

    registry.load_all(client=client)
    rows = _rows(browser.get(reverse(DASHBOARD)).content.decode())
    for each in registry:
        assert ">yes<" in rows[each.name].split('class="loaded"')[1][:80]

    [server] = browser.get(reverse(DASHBOARD)).context["servers"]
    assert server.error is None
    if kind == "fakeredis":  # no INFO in fakeredis: facts unknown, page still renders
        assert server.version is None and server.cached_scripts is None
    else:
        info = client.info()
        assert server.version == str(info.get("valkey_version") or info["redis_version"])
        assert server.cached_scripts == info["number_of_cached_scripts"] == len(registry)
        assert server.used_memory_scripts == info["used_memory_scripts_human"]


def test_dashboard_lists_held_locks(backend, make_user):
    kind, client = backend
    lock = Lock("nightly <report>", ttl=30, client=client)
    assert lock.acquire(blocking=False)
    try:
        response = logged_in(make_user("view_dashboard")).get(reverse(DASHBOARD))
        html = response.content.decode()
        [info] = response.context["locks"]
        owner = client.hget(lock.key, "owner").decode()
        assert (info.name, info.owner, info.fencing_token) == (
            "nightly <report>",
            owner,
            lock.fencing_token,
        )
        assert 0 < info.ttl_ms <= 30_000
        assert 'data-lock="nightly &lt;report&gt;"' in html and owner in html
        assert "nightly <report>" not in html  # escaped
    finally:
        lock.release()
    html = logged_in(make_user("view_dashboard")).get(reverse(DASHBOARD)).content.decode()
    assert "No lock is held." in html


def test_dashboard_lists_fair_and_read_write_locks_with_their_kind(backend, make_user):
    from atomicops import FairLock, ReadWriteLock

    fair = FairLock("exports", ttl=30)
    assert fair.acquire(blocking=False)
    rw = ReadWriteLock("doc <7>", ttl=30)
    readers = [rw.read(), rw.read()]
    assert all(reader.acquire(blocking=False) for reader in readers)
    response = logged_in(make_user("view_dashboard")).get(reverse(DASHBOARD))
    html = response.content.decode()
    assert [(i.kind, i.name, i.readers) for i in response.context["locks"]] == [
        ("rwlock", "doc <7>", 2),
        ("fairlock", "exports", 0),
    ]
    assert "2 readers" in html and "(rwlock)" in html and "(fairlock)" in html
    assert "doc <7>" not in html  # escaped


# Fills n keys matching the lock pattern that are no locks (strings) in one server-side
# loop: a test server the suite started, standalone, so a script may name its own keys.
FILL_LOCK_LIKE = """
for i = 1, tonumber(ARGV[1]) do redis.call('SET', ARGV[2] .. i .. '}', 'x') end
return redis.call('DBSIZE')
"""


def commandstats(client) -> dict[str, int]:
    """Calls per command on a real server, e.g. {'scan': 3, 'hmget': 10}."""
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): v["calls"] for name, v in stats.items()}


def test_dashboard_lock_list_is_bounded_by_work_not_by_locks_found(real_client, make_user):
    """Issue #12: 1M lock-like keys took 25 s and about 2M commands to render."""
    from atomicops.leases.locks import SCAN_LOCKS_MAX_CALLS, SCAN_LOCKS_MAX_KEYS

    assert real_client.eval(FILL_LOCK_LIKE, 0, 200_000, "atomicops:lock:{filler") == 200_000
    lock = Lock("real one", ttl=30, client=real_client)
    assert lock.acquire(blocking=False)
    browser = logged_in(make_user("view_dashboard"))
    real_client.config_resetstat()
    started = time.monotonic()
    response = browser.get(reverse(DASHBOARD))
    elapsed = time.monotonic() - started
    calls = commandstats(real_client)
    real_client.flushall()  # 200,000 keys: free the memory now, not at the next test

    assert response.status_code == 200
    scan = response.context["lock_scan"]
    assert scan.cut
    assert calls["scan"] == scan.scan_calls <= SCAN_LOCKS_MAX_CALLS
    assert calls["hmget"] == calls["pttl"] == scan.keys_read <= SCAN_LOCKS_MAX_KEYS
    # The whole page: INFO, SCRIPT EXISTS and the bounded lock scan, nothing per key beyond.
    assert sum(calls.values()) <= SCAN_LOCKS_MAX_CALLS + 2 * SCAN_LOCKS_MAX_KEYS + 10
    assert elapsed < 10, elapsed  # generous: the bound is about one second of Redis work
    html = response.content.decode()
    assert "The list was cut: " in html
    assert f"{scan.scan_calls} SCAN calls read {scan.keys_read} matching keys in " in html


@fakeredis_only
def test_dashboard_says_when_the_lock_limit_cut_the_list(backend, make_user):
    from atomicops.ops.dashboard import LOCKS_SHOWN

    kind, client = backend
    for i in range(LOCKS_SHOWN + 10):
        client.hset(f"atomicops:lock:{{n{i:03}}}", mapping={"owner": f"o{i}", "token": i})
    response = logged_in(make_user("view_dashboard")).get(reverse(DASHBOARD))
    html = response.content.decode()
    assert html.count('<tr class="atomicops-lock"') == LOCKS_SHOWN
    assert "The list was cut: the limit of locks to list was reached" in html


def test_dashboard_shows_script_clashes_and_override_errors(backend, make_user, monkeypatch):
    from atomicops.exceptions import RegistryError
    from atomicops.scripts.registry import ScriptClash

    clash = ScriptClash("lock_release", "atomicops", "/a/lock_release.lua", "x", "/x/r.lua")
    monkeypatch.setattr(registry, "discovery_clashes", [clash])
    monkeypatch.setattr(registry, "override_errors", [RegistryError("bad <override>")])
    html = logged_in(make_user("view_dashboard")).get(reverse(DASHBOARD)).content.decode()
    assert "Script file not registered (/x/r.lua): script &#x27;lock_release&#x27;" in html
    assert "Script override not applied: bad &lt;override&gt;" in html


@fakeredis_only
def test_script_source_is_shown_escaped(backend, make_user):
    source = '-- returns: 1\n-- <script>alert("x")</script> & co\nreturn 1\n'
    registry.register("admin_escape_probe", source, returns="1")
    try:
        html = logged_in(make_user("view_dashboard")).get(reverse(DASHBOARD)).content.decode()
    finally:
        registry.unregister("admin_escape_probe")
    assert '<script>alert("x")</script>' not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co" in html


@fakeredis_only
def test_view_permission_alone_cannot_run_actions(backend, make_user):
    kind, client = backend
    registry.load_all(client=client)
    browser = logged_in(make_user("view_dashboard"))
    assert browser.post(reverse(LOAD)).status_code == 403
    assert browser.post(reverse(FLUSH)).status_code == 403
    assert all(client.script_exists(*(s.sha for s in registry)))
    # Each action needs its own permission.
    assert (
        logged_in(make_user("view_dashboard", "load_scripts")).post(reverse(FLUSH)).status_code
        == 403
    )
    client.script_flush()
    assert (
        logged_in(make_user("view_dashboard", "flush_scripts")).post(reverse(LOAD)).status_code
        == 403
    )
    assert not any(client.script_exists(*(s.sha for s in registry)))


def test_load_action_loads_every_script(backend, make_user):
    kind, client = backend
    client.script_flush()
    browser = logged_in(make_user("view_dashboard", "load_scripts"))
    html = browser.get(reverse(DASHBOARD)).content.decode()
    assert f'action="{reverse(LOAD)}"' in html and reverse(FLUSH) not in html
    assert browser.get(reverse(LOAD)).status_code == 405
    assert not any(client.script_exists(*(s.sha for s in registry)))

    response = browser.post(reverse(LOAD), follow=True)
    assert response.redirect_chain == [(reverse(DASHBOARD), 302)]
    assert f"Loaded {len(registry)} scripts onto the server." in response.content.decode()
    assert all(client.script_exists(*(s.sha for s in registry)))


def test_flush_action_shows_the_flush_check_table(backend, make_user):
    kind, client = backend
    client.set("user-data", "keep")
    browser = logged_in(make_user("view_dashboard", "flush_scripts"))
    # No result to show yet: back to the dashboard.
    nothing = browser.get(reverse(FLUSH), follow=True)
    assert nothing.redirect_chain == [(reverse(DASHBOARD), 302)]
    assert "No recent flush check to show" in nothing.content.decode()

    # Post/redirect/get: the POST answers with a redirect to the result page.
    posted = browser.post(reverse(FLUSH))
    assert (posted.status_code, posted["Location"]) == (302, reverse(FLUSH))
    response = browser.get(posted["Location"])
    assert response.status_code == 200
    html = response.content.decode()
    found = dict(
        re.findall(
            r'<tr class="atomicops-flush-row" data-script="([^"]+)" data-result="([^"]+)"', html
        )
    )
    assert found == {s.name: "recovered" for s in registry}
    assert f"All {len(registry)} scripts passed the flush check." in html
    assert all(client.script_exists(*(s.sha for s in registry)))
    assert [k for k in client.scan_iter(count=1000)] == [b"user-data"]

    # Reloading the result page shows it again and flushes nothing.
    marker = client.script_load("return 'marker'")
    again = browser.get(reverse(FLUSH))
    assert again.status_code == 200 and "Ran at " in again.content.decode()
    assert client.script_exists(marker) == [True]
    assert browser.put(reverse(FLUSH)).status_code == 405


@fakeredis_only
def test_actions_need_a_csrf_token(backend, make_user):
    kind, client = backend
    registry.load_all(client=client)
    browser = logged_in(make_user(*ALL_PERMS), enforce_csrf_checks=True)
    assert browser.post(reverse(FLUSH)).status_code == 403
    assert browser.post(reverse(LOAD)).status_code == 403
    assert all(client.script_exists(*(s.sha for s in registry)))  # nothing was flushed
    token = re.search(
        r'name="csrfmiddlewaretoken" value="([^"]+)"',
        browser.get(reverse(DASHBOARD)).content.decode(),
    )[1]
    assert browser.post(reverse(FLUSH), {"csrfmiddlewaretoken": token}).status_code == 302


@fakeredis_only
def test_posted_lua_is_never_run(backend, make_user):
    kind, client = backend
    lua = "return redis.call('SET', 'pwned', 1)"
    browser = logged_in(make_user(*ALL_PERMS))
    for url in (reverse(LOAD), reverse(FLUSH)):
        browser.post(url, {"source": lua, "script": lua, "name": "evil", "sha": "0" * 40})
    assert client.script_exists(hashlib.sha1(lua.encode()).hexdigest()) == [False]
    assert client.exists("pwned") == 0
    assert "evil" not in registry


def test_dashboard_renders_when_redis_is_down(settings, make_user, servers):
    settings.ATOMICOPS = {"URL": f"redis://127.0.0.1:{free_port()}/0", "LOAD_ON_STARTUP": False}
    browser = logged_in(make_user(*ALL_PERMS))
    response = browser.get(reverse(DASHBOARD))
    assert response.status_code == 200
    [server] = response.context["servers"]
    assert server.error and "unreachable" in server.error.lower()
    assert {row.loaded for row in response.context["scripts"]} == {"unknown"}
    assert response.context["locks_error"] == "server unreachable"

    response = browser.post(reverse(FLUSH), follow=True)
    assert response.redirect_chain == [(reverse(FLUSH), 302)]
    assert "The flush check could not run" in response.content.decode()
    response = browser.post(reverse(LOAD), follow=True)
    assert "Loading the scripts failed" in response.content.decode()


def test_dashboard_says_when_redis_is_not_configured(settings, make_user):
    settings.ATOMICOPS = {"LOAD_ON_STARTUP": False}
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    response = logged_in(make_user("view_dashboard")).get(reverse(DASHBOARD))
    assert response.status_code == 200
    assert "No Redis connection: atomicops has no Redis connection" in (response.content.decode())
    assert len(response.context["scripts"]) == len(registry)


@pytest.mark.parametrize("cluster_server", ["redis"], indirect=True)
def test_cluster_dashboard_reads_every_primary(cluster, make_user, monkeypatch):  # noqa: F811
    from atomicops.engine import connection

    monkeypatch.setattr(connection, "get_client", lambda c=None: c if c is not None else cluster)
    registry.load_all(client=cluster)
    response = logged_in(make_user("view_dashboard")).get(reverse(DASHBOARD))
    assert [s.address for s in response.context["servers"]] == [
        node.name for node in cluster.get_primaries()
    ]
    assert {row.loaded for row in response.context["scripts"]} == {"yes"}


def test_a_script_in_a_template_is_not_run(backend):
    from django.template import Context, Template

    script = registry.get("testapp_echo")
    calls = script.stats["calls"]
    text = Template("{{ script.name }} {{ script.sha }}").render(Context({"script": script}))
    assert text == f"testapp_echo {script.sha}"
    assert script.stats["calls"] == calls


@fakeredis_only
def test_an_old_flush_result_is_not_shown(backend, make_user, monkeypatch):
    from atomicops.ops import dashboard as admin_views

    browser = logged_in(make_user("view_dashboard", "flush_scripts"))
    browser.post(reverse(FLUSH))
    monkeypatch.setattr(admin_views, "FLUSH_RESULT_MAX_AGE", -1)
    response = browser.get(reverse(FLUSH), follow=True)
    assert response.redirect_chain == [(reverse(DASHBOARD), 302)]
    assert admin_views.FLUSH_RESULT_SESSION_KEY not in browser.session
