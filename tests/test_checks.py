"""System checks: ids, hints, and which ones need ``--deploy`` (the network)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core import checks
from django.core.checks import run_checks

from atomicops import checks as atomicops_checks
from atomicops.conf import DEFAULTS
from atomicops.scripts.registry import registry
from tests.servers import free_port
from tests.test_cluster import cluster, cluster_server  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parent.parent
NO_RO_HINT = (
    "Read-only scripts fall back to EVALSHA: they still work, but the server no longer rejects "
    "a stray write in them and they cannot run on replicas. Upgrade to Redis 7 or Valkey 7.2+."
)
FAKEREDIS_HINT = (
    "fakeredis keeps data in this process only: locks, limits and counters are not shared "
    "between workers and vanish on restart. Point ATOMICOPS['URL'] or ATOMICOPS['CONNECTION'] "
    "at a real Redis or Valkey server."
)


def atomicops_checks_run(deploy: bool = False) -> list[checks.CheckMessage]:
    return run_checks(tags=["atomicops"], include_deployment_checks=deploy)


def dead_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.fixture
def extra_scripts():
    added = []

    def add(name: str, source: str):
        added.append(name)
        return registry.register(name, source, returns="test")

    yield add
    for name in added:
        registry.unregister(name)


def test_a_good_configuration_passes_every_check(backend):
    kind, client = backend
    expected = (
        [checks.Warning("the Redis server has no EVALSHA_RO (Redis < 7.0, or an emulator)",
                        hint=NO_RO_HINT, id="atomicops.W001")]
        if kind == "fakeredis" else []
    )  # fmt: skip
    assert atomicops_checks_run() == []
    assert atomicops_checks_run(deploy=True) == expected


def test_network_checks_run_only_with_deploy(settings):
    url = dead_url()
    settings.ATOMICOPS = {"URL": url, "LOAD_ON_STARTUP": False}
    assert atomicops_checks_run() == []
    [message] = atomicops_checks_run(deploy=True)
    assert (message.id, message.level, message.obj) == ("atomicops.W003", checks.WARNING, None)
    assert message.msg.startswith(f"cannot reach Redis (URL {url}): Error ")
    assert "Connection refused" in message.msg
    assert message.hint == (
        "The network checks (EVAL_RO support, scripts compiling on the server, cluster hash "
        "tags) did not run. Run 'manage.py check --deploy' where Redis is reachable."
    )


def test_missing_connection_is_e001(settings):
    settings.ATOMICOPS = {}
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    [error] = atomicops_checks_run(deploy=True)  # and the deploy check stays quiet
    assert error == checks.Error(
        "atomicops has no Redis connection: set ATOMICOPS['URL'] or ATOMICOPS['CONNECTION'], "
        "or make the 'default' cache Redis-backed (cache alias 'default' uses "
        "'django.core.cache.backends.locmem.LocMemCache'; atomicops needs django-redis or "
        "django.core.cache.backends.redis.RedisCache)",
        hint="Set ATOMICOPS = {'URL': 'redis://localhost:6379/0'} or "
        "{'CONNECTION': '<alias of a django-redis or RedisCache cache>'}, or for Upstash's "
        "REST API {'REST_URL': 'https://<db>.upstash.io', 'REST_TOKEN': '<token>'}.",
        id="atomicops.E001",
    )


def test_unknown_settings_key_is_w004_with_a_suggestion(settings):
    settings.ATOMICOPS = {"URL": dead_url(), "KEY_PREFX": "shop", "LOAD_ON_STARTUP": False}
    assert atomicops_checks_run() == [
        checks.Warning(
            "ATOMICOPS has an unknown key 'KEY_PREFX'; it is ignored",
            hint=f"Did you mean 'KEY_PREFIX'? Known keys: {', '.join(DEFAULTS)}.",
            id="atomicops.W004",
        )
    ]
    settings.ATOMICOPS = {"URL": dead_url(), "ZZZ": 1}
    [warning] = atomicops_checks_run()
    assert warning.id == "atomicops.W004" and warning.hint.startswith("Known keys: ")


@pytest.mark.parametrize("prefix", ["", None, 3])
def test_unusable_key_prefix_is_e003(settings, prefix):
    settings.ATOMICOPS = {"URL": dead_url(), "KEY_PREFIX": prefix}
    assert atomicops_checks_run() == [
        checks.Error(
            f"ATOMICOPS['KEY_PREFIX'] must be a non-empty string, got {prefix!r}",
            hint="Use a short name such as 'atomicops' or your project's name.",
            id="atomicops.E003",
        )
    ]


@pytest.mark.parametrize("deadline", [-1, "2000", True, float("nan"), float("inf"), None])
def test_unusable_retry_deadline_is_e011(settings, deadline):
    settings.ATOMICOPS = {"URL": dead_url(), "RETRY_DEADLINE_MS": deadline}
    assert atomicops_checks_run() == [
        checks.Error(
            "ATOMICOPS['RETRY_DEADLINE_MS'] must be a number of milliseconds >= 0 (0 turns "
            f"retries off), got {deadline!r}",
            hint=(
                "How long (ms) a call that provably did not run may be sent again, e.g. 2000 "
                "(the default); 0 turns retries off. See docs/reliability.md."
            ),
            id="atomicops.E011",
        )
    ]


@pytest.mark.parametrize("deadline", [0, 1, 1500.5, 60_000])
def test_usable_retry_deadlines_pass(settings, deadline):
    settings.ATOMICOPS = {"URL": dead_url(), "RETRY_DEADLINE_MS": deadline}
    assert atomicops_checks_run() == []


BRACE_HINT = (
    "Braces are Redis Cluster hash tags: every atomicops key would share the prefix's tag "
    "(one slot, one node) instead of the per-object tags atomicops builds. Remove the braces."
)


def test_braces_in_key_prefix_are_w005(settings):
    settings.ATOMICOPS = {"URL": dead_url(), "KEY_PREFIX": "shop{1}"}
    assert atomicops_checks_run() == [
        checks.Warning(
            "ATOMICOPS['KEY_PREFIX'] 'shop{1}' contains a brace",
            hint=BRACE_HINT,
            id="atomicops.W005",
        )
    ]


@pytest.mark.parametrize("cluster_server", ["redis"], indirect=True)
def test_cluster_client_with_a_hash_tagged_prefix_is_e005(cluster, settings, monkeypatch):  # noqa: F811
    from atomicops.engine import connection

    monkeypatch.setattr(connection, "get_client", lambda c=None: c if c is not None else cluster)
    # A URL satisfies E001 (built without connecting); calls use the patched cluster client.
    settings.ATOMICOPS = {"URL": dead_url(), "KEY_PREFIX": "shop{1}", "LOAD_ON_STARTUP": False}
    assert atomicops_checks_run(deploy=True) == [
        checks.Warning(
            "ATOMICOPS['KEY_PREFIX'] 'shop{1}' contains a brace",
            hint=BRACE_HINT,
            id="atomicops.W005",
        ),
        checks.Error(
            "ATOMICOPS['KEY_PREFIX'] 'shop{1}' contains a hash tag and the client is a Redis "
            "Cluster client: every atomicops key would hash to one slot",
            hint="Remove the braces from KEY_PREFIX; atomicops tags each object's keys itself.",
            id="atomicops.E005",
        ),
    ]
    settings.ATOMICOPS = {"URL": dead_url(), "KEY_PREFIX": "shop", "LOAD_ON_STARTUP": False}
    assert atomicops_checks_run(deploy=True) == []
    # The deploy check loaded every script onto the cluster's primaries.
    for node in cluster.get_primaries():
        assert all(node.redis_connection.script_exists(*(s.sha for s in registry)))


def test_script_that_does_not_compile_on_the_server_is_e004(real_client, extra_scripts):
    extra_scripts("chk_broken", "return (")
    assert atomicops_checks_run() == []  # compiling needs the server
    assert atomicops_checks_run(deploy=True) == [
        checks.Error(
            "script 'chk_broken': Error compiling script (new function): user_script:1: "
            "unexpected symbol near '<eof>'",
            hint="Fix the script's Lua; calls of it fail until then.",
            obj="chk_broken",
            id="atomicops.E004",
        )
    ]


def test_fakeredis_outside_tests_is_w002(backend, monkeypatch):
    kind, client = backend
    monkeypatch.setattr(atomicops_checks, "_running_tests", lambda: False)
    expected = (
        [checks.Warning("atomicops is configured with fakeredis outside tests",
                        hint=FAKEREDIS_HINT, id="atomicops.W002")]
        if kind == "fakeredis" else []
    )  # fmt: skip
    assert atomicops_checks_run() == expected


def test_fakeredis_under_a_test_runner_is_fine(backend):
    kind, client = backend
    assert atomicops_checks._running_tests()  # pytest is running this
    assert atomicops_checks_run() == []


def _django(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    return subprocess.run(
        [sys.executable, "-m", "django", *args],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_manage_py_check_warns_about_fakeredis_and_eval_ro():
    # A real process, no test runner: the detection of "outside tests" itself is tested.
    plain = _django("check", "--settings=tests.settings_fakeredis")
    assert plain.returncode == 0, plain.stderr
    assert "(atomicops.W002) atomicops is configured with fakeredis outside tests" in plain.stderr
    assert "atomicops.W001" not in plain.stderr  # network check: --deploy only
    deploy = _django(
        "check", "--deploy", "--tag", "atomicops", "--settings=tests.settings_fakeredis"
    )
    assert deploy.returncode == 0, deploy.stderr
    assert "(atomicops.W001) the Redis server has no EVALSHA_RO" in deploy.stderr
    assert "(atomicops.W002)" in deploy.stderr
    failing = _django(
        "check", "--deploy", "--tag", "atomicops", "--fail-level", "WARNING",
        "--settings=tests.settings_fakeredis",
    )  # fmt: skip
    assert failing.returncode == 1
