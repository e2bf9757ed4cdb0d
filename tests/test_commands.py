"""manage.py atomicops_flush_check, atomicops_load and atomicops_scripts."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from atomicops.ops.flushcheck import PROBE_KIND, flush_check
from atomicops.scripts.registry import registry
from tests.servers import free_port
from tests.test_cluster import cluster, cluster_server  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parent.parent
OTHER_APP_SCRIPT = "return 'another application'"


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def table_rows(text: str) -> dict[str, list[str]]:
    """name -> the other columns of a NAME/SHA/... table printed by a command."""
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["NAME", "SHA"] and set(lines[1]) <= {"-", " "}
    rows = {}
    for line in lines[2:]:
        if not line.strip() or ":" in line or line.startswith("All "):
            continue
        name, *rest = re.split(r"\s{2,}", line.strip())
        rows[name] = rest
    return rows


@pytest.fixture
def extra_scripts():
    """Register scripts in the global registry for one test."""
    added = []

    def add(name: str, source: str, **options):
        added.append(name)
        return registry.register(name, source, returns="test", **options)

    yield add
    for name in added:
        registry.unregister(name)


def scratch_keys(client) -> list[bytes]:
    return list(client.scan_iter(match=f"*:{PROBE_KIND}:*", count=1000))


def test_flush_check_flushes_probes_and_recovers_every_script(backend):
    kind, client = backend
    client.set("user:1", "untouched")
    other_sha = client.script_load(OTHER_APP_SCRIPT)
    fallbacks = {s.name: s.stats["fallbacks"] for s in registry}

    text = run("atomicops_flush_check")

    rows = table_rows(text)
    assert list(rows) == [s.name for s in registry]
    for script in registry:
        assert rows[script.name] == [script.sha, "yes", "yes", "recovered"]
        # Each probe met NOSCRIPT itself, because the cache is flushed before each one.
        assert script.stats["fallbacks"] == fallbacks[script.name] + 1
    assert f"All {len(registry)} scripts recovered after SCRIPT FLUSH." in text
    assert all(client.script_exists(*(s.sha for s in registry)))
    # The flush took another application's script with it (documented), and the probes
    # left no key behind and did not touch user data.
    assert client.script_exists(other_sha) == [False]
    assert scratch_keys(client) == []
    assert list(client.scan_iter(count=1000)) == [b"user:1"]
    assert client.get("user:1") == b"untouched"


def test_no_flush_keeps_the_cache_and_reports_cached(backend):
    kind, client = backend
    other_sha = client.script_load(OTHER_APP_SCRIPT)
    fallbacks = {s.name: s.stats["fallbacks"] for s in registry}

    rows = table_rows(run("atomicops_flush_check", "--no-flush"))

    assert {name: row[-1] for name, row in rows.items()} == {s.name: "cached" for s in registry}
    assert {s.name: s.stats["fallbacks"] for s in registry} == fallbacks
    assert client.script_exists(other_sha) == [True]
    assert scratch_keys(client) == []


def test_json_output_matches_the_registry(backend):
    report = json.loads(run("atomicops_flush_check", "--json"))
    assert report["ok"] is True and report["flushed"] is True
    assert [(s["name"], s["sha"], s["app"]) for s in report["scripts"]] == [
        (s.name, s.sha, s.app) for s in registry
    ]
    assert {
        (s["before"], s["after"], s["result"], s["ok"], s["error"]) for s in report["scripts"]
    } == {(True, True, "recovered", True, None)}


def test_a_failing_probe_fails_the_command_and_its_keys_are_deleted(backend, extra_scripts):
    kind, client = backend
    extra_scripts(
        "cmd_failing_probe",
        "redis.call('SET', KEYS[1], 'written')\nreturn redis.error_reply('INVALID probe refused')",
        keys=["target"],
        args=["x"],
        probe=["1"],
    )
    extra_scripts("cmd_without_probe", "return 1")
    out = StringIO()
    with pytest.raises(CommandError) as info:
        call_command("atomicops_flush_check", stdout=out)
    assert info.value.returncode == 1
    assert str(info.value) == f"1 of {len(registry)} scripts failed: cmd_failing_probe"
    rows = table_rows(out.getvalue())
    assert rows["cmd_failing_probe"][-1] == "failed"
    assert rows["cmd_without_probe"][1:] == ["yes", "-", "no probe"]
    assert "cmd_failing_probe: probe failed:" in out.getvalue()
    assert "probe refused" in out.getvalue()
    assert {row[-1] for name, row in rows.items() if not name.startswith("cmd_")} == {"recovered"}
    assert scratch_keys(client) == []  # the key the failing probe wrote is gone too


def test_a_script_that_does_not_compile_fails_before_probing(backend, extra_scripts):
    kind, client = backend
    extra_scripts("cmd_broken", "return (", probe=[])
    [row] = [r for r in flush_check() if r.name == "cmd_broken"]
    assert row.result == "failed" and not row.ok
    if kind == "fakeredis":
        # fakeredis accepts any SCRIPT LOAD; the error shows when the probe runs it.
        assert row.before is True and "probe failed" in row.error
    else:
        assert row.before is False and "Error compiling script" in row.error
    others = [r for r in flush_check() if r.name != "cmd_broken"]
    assert {r.result for r in others} == {"recovered"}


def test_unreachable_server_is_a_command_error(settings):
    port = free_port()
    settings.ATOMICOPS = {"URL": f"redis://:hunter2@127.0.0.1:{port}/0", "LOAD_ON_STARTUP": False}
    server = f"URL redis://:***@127.0.0.1:{port}/0"
    # What failed, on which server (password hidden), and why; not the internal batch's name.
    expected = {
        ("atomicops_load",): f"loading the scripts onto {server} failed",
        ("atomicops_flush_check",): f"the flush check of {server} failed",
        ("atomicops_scripts", "--server"): f"asking {server} for its scripts failed",
    }
    for args, doing in expected.items():
        with pytest.raises(CommandError) as info:
            call_command(*args, stdout=StringIO())
        message = str(info.value)
        assert message.startswith(f"{doing}: the server is unreachable (Error 111 connecting")
        assert "load_all" not in message and "on key None" not in message
        assert "was not applied" not in message and "hunter2" not in message
        assert info.value.returncode == 1


def test_flush_check_on_a_cluster(cluster):  # noqa: F811
    rows = flush_check(client=cluster)
    assert {r.name: r.result for r in rows} == {s.name: "recovered" for s in registry}
    for node in cluster.get_primaries():
        assert all(node.redis_connection.script_exists(*(s.sha for s in registry)))
    assert list(cluster.scan_iter(match=f"*:{PROBE_KIND}:*")) == []


def test_load_command_loads_everything(backend):
    kind, client = backend
    client.script_flush()
    text = run("atomicops_load")
    assert text.strip() == f"Loaded {len(registry)} scripts onto {_source()}."
    assert all(client.script_exists(*(s.sha for s in registry)))

    client.script_flush()
    assert json.loads(run("atomicops_load", "--json")) == {s.name: s.sha for s in registry}
    assert all(client.script_exists(*(s.sha for s in registry)))
    rows = table_rows(run("atomicops_load", "-v", "2"))
    assert rows == {s.name: [s.sha] for s in sorted(registry, key=lambda s: s.name)}
    assert run("atomicops_load", "-v", "0") == ""


def _source() -> str:
    from atomicops.engine import connection

    return connection.describe_source()


def test_load_command_names_a_script_that_does_not_compile(real_client, extra_scripts):
    extra_scripts("cmd_broken_load", "return (")
    with pytest.raises(CommandError, match="cmd_broken_load.*Error compiling script"):
        call_command("atomicops_load", stdout=StringIO())
    # The others were loaded anyway.
    others = [s.sha for s in registry if s.name != "cmd_broken_load"]
    assert all(real_client.script_exists(*others))


def test_scripts_command_lists_without_touching_redis(settings):
    settings.ATOMICOPS = {"URL": f"redis://127.0.0.1:{free_port()}/0", "LOAD_ON_STARTUP": False}
    rows = table_rows(run("atomicops_scripts"))
    assert list(rows) == [s.name for s in registry]
    for script in registry:
        assert rows[script.name][:3] == [script.sha, "yes" if script.readonly else "no", script.app]
    listed = json.loads(run("atomicops_scripts", "--json"))
    assert [(e["name"], e["sha"], e["keys"], e["args"]) for e in listed] == [
        (s.name, s.sha, list(s.keys), list(s.args)) for s in registry
    ]
    assert all(hashlib.sha1(s.source.encode()).hexdigest() == s.sha for s in registry)


def test_scripts_command_with_server_shows_the_cache(backend):
    kind, client = backend
    client.script_flush()
    client.script_load(registry.get("testapp_echo").source)
    listed = json.loads(run("atomicops_scripts", "--server", "--json"))
    assert {e["name"]: e["cached"] for e in listed} == {
        s.name: s.name == "testapp_echo" for s in registry
    }
    rows = table_rows(run("atomicops_scripts", "--server"))
    assert {name: row[-1] for name, row in rows.items()} == {
        s.name: "yes" if s.name == "testapp_echo" else "no" for s in registry
    }


def _manage(*args: str, redis_url: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "REDIS_URL": redis_url, "DEMO_DATA_DIR": str(tmp_path)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("real_server", ["redis"], indirect=True)
def test_exit_codes_through_manage_py(real_server, tmp_path):
    ok = _manage("atomicops_flush_check", redis_url=real_server.url, tmp_path=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "recovered after SCRIPT FLUSH" in ok.stdout
    dead = _manage(
        "atomicops_flush_check", redis_url=f"redis://127.0.0.1:{free_port()}/0", tmp_path=tmp_path
    )
    assert dead.returncode == 1
    assert "CommandError: the flush check of URL redis://127.0.0.1:" in dead.stderr
    assert "failed: the server is unreachable" in dead.stderr
