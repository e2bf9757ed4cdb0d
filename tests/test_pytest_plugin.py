"""atomicops' pytest plugin as an adopter uses it (issue #20): a small sample project in a
temp dir, run by pytest in a subprocess, with both fixtures.

``atomicops_fakeredis`` and ``atomicops_valkey`` each reset between tests, keep the
project's other ``ATOMICOPS`` settings, and have the scripts loaded; the real server has
``EVALSHA_RO`` and real expiry. The plugin is off unless asked: by ``pytest_plugins`` in a
conftest, by ``-p atomicops.testing``, or through the ``pytest11`` entry point with
``--atomicops`` or ``atomicops = true`` in the ini file.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SETTINGS = """
SECRET_KEY = "sample-only"
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "atomicops"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
# Never reached: the fixtures point atomicops elsewhere; KEY_PREFIX must survive them.
ATOMICOPS = {"URL": "redis://127.0.0.1:1/0", "LOAD_ON_STARTUP": False, "KEY_PREFIX": "sample"}
"""

SAMPLE_TESTS = """
import time

from atomicops import (
    Lock, abounded_incr, bounded_incr, fixed_window, get_counter, registry,
)


def test_fake_counts_to_the_limit(atomicops_fakeredis):
    assert all(atomicops_fakeredis.script_exists(*[s.sha for s in registry]))
    assert [bounded_incr("count", 10).value for _ in range(12)] == [*range(1, 11), 10, 10]
    assert atomicops_fakeredis.get("count") == b"10"


def test_fake_is_fresh_for_each_test(atomicops_fakeredis):
    assert atomicops_fakeredis.dbsize() == 0
    assert get_counter("count") == 0


async def test_fake_async(atomicops_fakeredis):
    assert (await abounded_incr("acount", 2)).value == 1
    assert atomicops_fakeredis.get("acount") == b"1"


def test_real_server_has_eval_ro_and_the_projects_prefix(atomicops_valkey):
    assert all(atomicops_valkey.script_exists(*[s.sha for s in registry]))
    bounded_incr("count", 10)
    before = atomicops_valkey.info("commandstats").get("cmdstat_evalsha_ro", {}).get("calls", 0)
    assert get_counter("count") == 1  # a read-only script
    after = atomicops_valkey.info("commandstats")["cmdstat_evalsha_ro"]["calls"]
    assert after == before + 1
    with Lock("report", ttl=5):
        assert any(key.startswith(b"sample:") for key in atomicops_valkey.keys("*"))


def test_real_server_expires_in_real_time(atomicops_valkey):
    assert fixed_window("rl", 1, 300).allowed
    assert not fixed_window("rl", 1, 300).allowed
    time.sleep(0.4)
    assert fixed_window("rl", 1, 300).allowed


def test_real_server_is_emptied_for_each_test(atomicops_valkey):
    assert atomicops_valkey.dbsize() == 0
    assert get_counter("count") == 0
"""

INI = """
[pytest]
DJANGO_SETTINGS_MODULE = sample_settings
pythonpath = .
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
{extra}
"""


def sample_project(root: Path, *, conftest: str = "", ini: str = "") -> Path:
    root.mkdir()
    (root / "pytest.ini").write_text(textwrap.dedent(INI.format(extra=ini)))
    (root / "sample_settings.py").write_text(textwrap.dedent(SETTINGS))
    (root / "test_sample.py").write_text(textwrap.dedent(SAMPLE_TESTS))
    if conftest:
        (root / "conftest.py").write_text(conftest)
    return root


def run_pytest(root: Path, *args: str) -> subprocess.CompletedProcess:
    # The project's own settings and plugins only: nothing from this suite's environment.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST_"))}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def entry_point_installed() -> bool:
    return any(
        ep.name == "atomicops" and ep.value == "atomicops.pytest_optin"
        for ep in importlib.metadata.entry_points(group="pytest11")
    )


def test_sample_project_with_both_fixtures(tmp_path):
    root = sample_project(
        tmp_path / "conftest", conftest='pytest_plugins = ["atomicops.testing"]\n'
    )
    done = run_pytest(root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "6 passed" in done.stdout


def test_off_unless_asked(tmp_path):
    if not entry_point_installed():
        pytest.fail("the pytest11 entry point is not installed: run pip install -e . again")
    done = run_pytest(sample_project(tmp_path / "plain"))
    assert done.returncode != 0
    assert "fixture 'atomicops_fakeredis' not found" in done.stdout
    assert "fixture 'atomicops_valkey' not found" in done.stdout


@pytest.mark.slow  # a pytest run in a subprocess each; the default-off proof above is not
@pytest.mark.parametrize(
    ("how", "args", "ini"),
    [
        ("command line", ["--atomicops"], ""),
        ("ini file", [], "atomicops = true"),
        # Explicitly, and through the entry point as well: loaded once, no clash.
        ("-p and --atomicops", ["-p", "atomicops.testing", "--atomicops"], ""),
    ],
)
def test_opt_in(tmp_path, how, args, ini):
    if not entry_point_installed():
        pytest.fail("the pytest11 entry point is not installed: run pip install -e . again")
    root = sample_project(tmp_path / "opt-in", ini=ini)
    done = run_pytest(root, *args, "-k", "fake")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout
