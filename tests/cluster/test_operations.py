"""Operating atomicops on a 3-primary cluster: every primary covered, each one named.

``load_all`` / ``atomicops_load`` load every primary and name the one that failed; the
flush check flushes and probes every primary in turn; ``scan_locks`` finds locks on
every primary; the admin dashboard lists each primary and, per script, which primaries
lack it.
"""

from __future__ import annotations

import pytest
import redis
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from atomicops import Lock, RedisUnavailable, flush_check, registry, scan_locks
from atomicops.engine import topology
from tests.cluster.load import tags_for
from tests.cluster.test_reshard import slot_range

pytestmark = pytest.mark.slow


def test_load_all_covers_every_primary_and_names_the_one_that_failed(
    cluster, atomic_cluster, fresh_registry, monkeypatch
):
    script = fresh_registry.register("one", "return 1")
    real = topology.primaries
    # (no retries: like redis-py's own cluster node clients)
    dead = redis.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    gone = ("127.0.0.1:1", dead)
    # A primary listed first that nothing answers on: the others are loaded all the same.
    monkeypatch.setattr(topology, "primaries", lambda client: [gone, *real(client)])
    with pytest.raises(RedisUnavailable, match="127.0.0.1:1"):
        fresh_registry.load_all()
    for node in cluster.primaries():
        with node.client() as client:
            assert client.script_exists(script.sha) == [True]
    assert topology.redirects["refreshes"] == 1  # the map was read again, in case
    # The command says so in the operator's terms: unreachable, and which node.
    with pytest.raises(CommandError, match="unreachable.*127.0.0.1:1"):
        call_command("atomicops_load", verbosity=0)


async def test_async_load_all_covers_every_primary(cluster, atomic_cluster, fresh_registry):
    script = fresh_registry.register("two", "return 2")
    assert await fresh_registry.aload_all() == {"two": script.sha}
    for node in cluster.primaries():
        with node.client() as client:
            assert client.script_exists(script.sha) == [True]


def test_the_flush_check_flushes_and_probes_every_primary(cluster, atomic_cluster):
    for node in cluster.primaries():
        node.command("CONFIG", "RESETSTAT")
    rows = flush_check()
    assert {row.result for row in rows} <= {"recovered", "no probe"}
    assert [row.name for row in rows if row.result == "recovered"]
    for node in cluster.primaries():
        with node.client() as client:
            stats = client.info("commandstats")
            assert stats["cmdstat_script|flush"]["calls"] >= 1, node.address
            assert all(client.script_exists(*(s.sha for s in registry)))
    call_command("atomicops_flush_check", stdout=open("/dev/null", "w"))  # noqa: SIM115


def test_scan_locks_finds_locks_on_every_primary(cluster, atomic_cluster):
    names = []
    for node in cluster.primaries():
        slot = slot_range(cluster, node)[7]
        names.append(tags_for([slot])[slot])
    held = [Lock(name, ttl=30) for name in names]
    for lock in held:
        assert lock.acquire()
    try:
        assert {cluster.owner(key_slot(lock.key.encode())).port for lock in held} == {
            node.port for node in cluster.primaries()
        }
        found = scan_locks()
        assert sorted(info.name for info in found.locks) == sorted(names)
    finally:
        for lock in held:
            lock.release()


@pytest.mark.django_db
def test_the_dashboard_names_each_primary_and_where_a_script_is_missing(
    cluster, atomic_cluster, django_user_model
):
    registry.load_all()
    lacking = cluster.primaries()[1]
    with lacking.client() as client:
        client.script_flush()
    admin = django_user_model.objects.create_superuser("root", "root@x.test", None)
    browser = Client()
    browser.force_login(admin)
    response = browser.get(reverse("admin:atomicops_dashboard_changelist"))
    assert response.status_code == 200
    servers = response.context["servers"]
    assert sorted(s.address for s in servers) == sorted(n.address for n in cluster.primaries())
    assert {row.loaded for row in response.context["scripts"]} == {
        f"2/3 primaries (not on {lacking.address})"
    }
    page = response.content.decode()
    for node in cluster.primaries():
        assert node.address in page
