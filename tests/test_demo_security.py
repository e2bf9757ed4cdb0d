"""The demo deployed as it is: no debug page, no fixed secret key, no secrets shown.

* DEBUG is off unless DJANGO_DEBUG=1 asks for it (bin/demo does, for 127.0.0.1).
* The secret key is DJANGO_SECRET_KEY or generated per data directory, kept 0600.
* A request with an unknown Host gets a short 400, DEBUG or not, and no response (or
  debug page) carries the Redis password.
* The demo password file is tightened to 0600 and never followed through a symlink.

Anonymous resets and naive bookings are refused in test_demo_views.py.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import stat
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from demo_project.demo import users
from demo_project.private_files import UnsafeSecretFile, read_or_create_secret, read_secret
from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
SECRET = "s3cret-redis-password"


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DJANGO_DEBUG", "DJANGO_SECRET_KEY", "ATOMICOPS_EMBEDDED", "REDIS_URL")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="demo_project.settings",
        DEMO_DATA_DIR=str(data_dir),
        # Set, so manage.py starts no embedded server; nothing listens there.
        REDIS_URL=f"redis://:{SECRET}@127.0.0.1:{free_port()}/0",
        PYTHONPATH=str(ROOT),
        **extra,
    )
    return env


def _settings(data_dir: Path, **extra: str) -> dict:
    code = (
        "import json, demo_project.settings as s; "
        "print(json.dumps({'DEBUG': s.DEBUG, 'SECRET_KEY': s.SECRET_KEY}))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        env=_env(data_dir, **extra),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


# -- settings -------------------------------------------------------------------------


def test_debug_is_off_unless_asked_for(tmp_path):
    assert _settings(tmp_path)["DEBUG"] is False
    assert _settings(tmp_path, DJANGO_DEBUG="0")["DEBUG"] is False
    assert _settings(tmp_path, DJANGO_DEBUG="true")["DEBUG"] is False  # only "1" asks
    assert _settings(tmp_path, DJANGO_DEBUG="1")["DEBUG"] is True


def test_bin_demo_asks_for_debug_explicitly():
    script = (ROOT / "bin" / "demo").read_text()
    assert 'export DJANGO_DEBUG="${DJANGO_DEBUG:-1}"' in script
    assert script.index("export DJANGO_DEBUG") < script.index("manage.py rundemo")


def test_secret_key_is_generated_per_data_dir_and_kept_owner_only(tmp_path):
    first = _settings(tmp_path / "a")["SECRET_KEY"]
    key_file = tmp_path / "a" / "secret-key.txt"
    assert key_file.read_text().strip() == first and len(first) >= 50
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700
    assert _settings(tmp_path / "a")["SECRET_KEY"] == first  # kept: sessions survive restarts
    assert _settings(tmp_path / "b")["SECRET_KEY"] != first  # never one fixed string
    assert first not in (ROOT / "demo_project" / "settings.py").read_text()


def test_secret_key_from_the_environment_wins(tmp_path):
    assert _settings(tmp_path, DJANGO_SECRET_KEY="from-env-" + "x" * 50)["SECRET_KEY"] == (
        "from-env-" + "x" * 50
    )
    assert not (tmp_path / "secret-key.txt").exists()


def test_a_symlinked_secret_key_is_refused(tmp_path):
    target = tmp_path / "elsewhere.txt"
    target.write_text("attacker-chosen-key\n")
    data = tmp_path / "data"
    data.mkdir()
    (data / "secret-key.txt").symlink_to(target)
    run = subprocess.run(
        [sys.executable, "-c", "import demo_project.settings"],
        env=_env(data),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0 and "UnsafeSecretFile" in run.stderr
    assert "symbolic link" in run.stderr
    assert target.read_text() == "attacker-chosen-key\n"


def test_concurrent_first_starts_agree_on_one_key(tmp_path):
    code = (
        "import sys; from pathlib import Path; import secrets;"
        "from demo_project.private_files import read_or_create_secret as r;"
        "print(r(Path(sys.argv[1]), lambda: secrets.token_hex(20)))"
    )
    path = tmp_path / "key.txt"
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(path)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        for _ in range(6)
    ]
    keys = {run.communicate(timeout=60)[0].strip() for run in runs}
    assert keys == {path.read_text().strip()}


# -- the running demo, asked for a Host it does not serve ------------------------------


def _serve(data_dir: Path, **extra: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        env=_env(data_dir, PYTHONUNBUFFERED="1", **extra),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process, port
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(process.stderr.read()) from None
            time.sleep(0.1)


def _request(port: int, method: str, path: str, host: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.putrequest(method, path, skip_host=True)
        conn.putheader("Host", host)
        conn.putheader("Accept", "text/html")
        conn.putheader("Content-Length", "0")
        conn.endheaders()
        response = conn.getresponse()
        headers = "\n".join(f"{k}: {v}" for k, v in response.getheaders())
        return response.status, headers + "\n\n" + response.read().decode("utf-8", "replace")
    finally:
        conn.close()


BAD_HOST_REQUESTS = [
    ("GET", "/"),
    ("GET", "/likes/"),
    ("GET", "/admin/"),
    ("GET", "/no-such-page/"),
    ("POST", "/events/1/reset/"),
    ("GET", "/api/stats/"),
]


@pytest.mark.slow
@pytest.mark.parametrize("debug", ["", "1"], ids=["default", "DJANGO_DEBUG=1"])
def test_no_response_to_a_bad_host_carries_a_secret(tmp_path, debug):
    extra = {"DJANGO_DEBUG": debug} if debug else {}
    process, port = _serve(tmp_path, **extra)
    seen = []
    try:
        for method, path in BAD_HOST_REQUESTS:
            for host in ("evil.example", "evil.example:80", "127.0.0.1.nip.io"):
                status, text = _request(port, method, path, host)
                seen.append(text)
                assert status == 400, (method, path, host, text[:500])
                assert SECRET not in text, (method, path, host)
                assert "Traceback" not in text and "REDIS_URL" not in text
        if debug:
            # A good Host and a real error (the database is not migrated) does get the
            # debug page, with the environment and settings: the password is masked there.
            status, text = _request(port, "GET", "/likes/", "127.0.0.1")
            seen.append(text)
            assert status == 500 and "REDIS_URL" in text and "no such table" in text
            assert SECRET not in text and "redis://:***@127.0.0.1" in text
    finally:
        process.terminate()
        process.wait(15)
    secret_key = (tmp_path / "secret-key.txt").read_text().strip()
    assert secret_key and not any(secret_key in text for text in seen)


# -- the demo password file -------------------------------------------------------------


@pytest.fixture
def password_file(settings, tmp_path) -> Path:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.DEBUG = True
    settings.DEMO_PASSWORD_FILE = tmp_path / "data" / "demo-password.txt"
    return settings.DEMO_PASSWORD_FILE


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.django_db
def test_an_existing_password_file_is_tightened_to_0600(password_file):
    password_file.parent.mkdir()
    password_file.write_text("kept-password\n")
    password_file.chmod(0o644)  # as an older demo, or a careless copy, left it
    assert users.stored_password() == "kept-password"
    assert _mode(password_file) == 0o600
    password_file.chmod(0o664)
    out = StringIO()
    call_command("demo_user", stdout=out)
    assert "password: kept-password" in out.getvalue()
    assert _mode(password_file) == 0o600


@pytest.mark.django_db
def test_a_symlinked_password_file_is_refused_and_its_target_untouched(
    password_file, tmp_path, django_user_model
):
    target = tmp_path / "victim.txt"
    target.write_text("not the demo's\n")
    target.chmod(0o644)
    password_file.parent.mkdir()
    password_file.symlink_to(target)
    with pytest.raises(CommandError, match="symbolic link"):
        call_command("demo_user", stdout=StringIO())
    with pytest.raises(CommandError, match="symbolic link"):
        call_command("demo_user", "--password", "chosen", stdout=StringIO())
    assert target.read_text() == "not the demo's\n" and _mode(target) == 0o644
    assert not django_user_model.objects.exists()


@pytest.mark.django_db
def test_a_dangling_symlink_is_not_followed_to_create_a_file(password_file, tmp_path):
    target = tmp_path / "created-elsewhere.txt"
    password_file.parent.mkdir()
    password_file.symlink_to(target)
    with pytest.raises(CommandError, match="symbolic link"):
        call_command("demo_user", "--password", "chosen", stdout=StringIO())
    assert not target.exists()


def test_secret_files_refuse_what_is_not_a_regular_file(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(UnsafeSecretFile, match="not a regular file"):
        read_secret(fifo)  # returns at once: opened non-blocking
    with pytest.raises(UnsafeSecretFile, match="not a regular file"):
        read_or_create_secret(tmp_path, lambda: "x")
