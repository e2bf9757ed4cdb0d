"""Discovery of apps' ``lua/*.lua``: one bad file never stops a process, and no app's file
replaces another app's script (atomicops' above all) without ATOMICOPS['OVERRIDE_SCRIPTS']."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.core import checks

from atomicops import RegistryError, ScriptHeaderError
from atomicops import checks as atomicops_checks
from atomicops.scripts.registry import BUILTIN_LUA_DIR, ScriptRegistry

ROOT = Path(__file__).resolve().parent.parent
# The module: ``atomicops.scripts.registry`` as an attribute is the package's exported instance.
registry_module = importlib.import_module("atomicops.scripts.registry")
GOOD = "-- returns: 1\nreturn 1\n"
HUGE_INDEX = "-- KEYS[" + "1" * 5000 + "] key: too many digits for int()\n-- returns: x\nreturn 1\n"
MY_RELEASE = "-- description: my own release\n-- KEYS[1] lock: the lock\n-- returns: 1\nreturn 1\n"


def write_app(root: Path, label: str, files: dict[str, str | bytes]) -> SimpleNamespace:
    """An app folder with ``lua/<name>`` files; what discovery reads of an AppConfig."""
    folder = root / label / "lua"
    folder.mkdir(parents=True)
    for name, content in files.items():
        path = folder / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return SimpleNamespace(label=label, path=str(root / label))


def add_broken_files(folder: Path) -> dict[str, Path]:
    """The four files of issue #12 that each made ``django.setup()`` raise."""
    (folder / "latin1.lua").write_bytes(b"-- returns: caf\xe9\nreturn 1\n")
    (folder / "dir.lua").mkdir()
    (folder / "dangling.lua").symlink_to(folder / "missing-target.lua")
    (folder / "huge.lua").write_text(HUGE_INDEX, encoding="utf-8")
    return {name: folder / f"{name}.lua" for name in ("latin1", "dir", "dangling", "huge")}


@pytest.fixture
def installed(monkeypatch):
    """Make discovery see atomicops plus the given fake apps, in INSTALLED_APPS order."""
    atomicops_config = apps.get_app_config("atomicops")

    def install(*configs, atomicops_at: int = 0) -> None:
        listed = list(configs)
        listed.insert(atomicops_at, atomicops_config)
        monkeypatch.setattr(apps, "get_app_configs", lambda: listed)

    return install


@pytest.fixture
def discovered(monkeypatch):
    """A private registry that the system checks report on, like the process's own."""
    private = ScriptRegistry()
    monkeypatch.setattr(registry_module, "registry", private)
    return private


def ids(messages) -> list[tuple[str, object]]:
    return [(m.id, m.obj) for m in messages]


# -- one bad file -------------------------------------------------------------------------


def test_unreadable_files_are_e002_and_discovery_goes_on(tmp_path, installed, discovered):
    app = write_app(tmp_path, "broken", {"fine.lua": GOOD})
    paths = add_broken_files(tmp_path / "broken" / "lua")
    installed(app)

    found = discovered.discover()  # raised IsADirectoryError, ValueError... before

    assert "fine" in discovered and discovered.get("fine").app == "broken"
    assert "lock_release" in discovered  # atomicops' own scripts too
    assert {s.name for s in found} >= {"fine", "lock_release"}
    errors = dict(discovered.discovery_errors)
    assert sorted(errors) == sorted(str(p) for p in paths.values())
    for path, error in errors.items():
        assert isinstance(error, RegistryError)
        assert path in error.message
    assert "not UTF-8" in errors[str(paths["latin1"])].message
    assert "Is a directory" in errors[str(paths["dir"])].message
    assert "No such file" in errors[str(paths["dangling"])].message
    assert isinstance(errors[str(paths["huge"])], ScriptHeaderError)
    assert "KEYS index" in errors[str(paths["huge"])].message
    reported = atomicops_checks.check_lua_headers()
    assert sorted(ids(reported)) == sorted(("atomicops.E002", str(p)) for p in paths.values())
    assert all(m.level == checks.ERROR for m in reported)


def test_register_file_names_the_file_for_each_kind_of_unreadable_file(tmp_path):
    paths = add_broken_files(tmp_path)
    private = ScriptRegistry()
    for path in paths.values():
        with pytest.raises(RegistryError) as info:
            private.register_file(path, app="x")
        assert str(path) in info.value.message
        if not isinstance(info.value, ScriptHeaderError):  # the parser knows no name
            assert info.value.script == path.stem
        assert not isinstance(info.value.__cause__, RegistryError)  # chained from the OS/codec
    assert len(private) == 0


def _python(code: str, settings: str, extra_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env={**env, "PYTHONPATH": os.pathsep.join([str(ROOT), str(extra_path)]),
             "DJANGO_SETTINGS_MODULE": settings},
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip


def test_a_process_starts_and_manage_py_check_names_each_bad_file(tmp_path):
    """The issue's report, end to end: ``django.setup()`` in a fresh process."""
    package = tmp_path / "badluaapp"
    (package / "lua").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "lua" / "badluaapp_ok.lua").write_text(GOOD)
    paths = add_broken_files(package / "lua")
    (tmp_path / "badlua_settings.py").write_text(
        "from tests.settings import *  # noqa\nINSTALLED_APPS = [*INSTALLED_APPS, 'badluaapp']\n"
    )
    started = _python(
        """
        import json, django
        django.setup()
        from django.core.checks import run_checks
        from atomicops import registry
        print(json.dumps({
            "ok": "badluaapp_ok" in registry,
            "checks": [[m.id, m.obj] for m in run_checks(tags=["atomicops"])],
        }))
        """,
        "badlua_settings",
        tmp_path,
    )
    assert started.returncode == 0, started.stderr
    result = json.loads(started.stdout)
    assert result["ok"]
    assert sorted(map(tuple, result["checks"])) == sorted(
        ("atomicops.E002", str(p)) for p in paths.values()
    )
    check = _python(
        "from django.core.management import execute_from_command_line\n"
        "execute_from_command_line(['manage.py', 'check', '--tag', 'atomicops'])\n",
        "badlua_settings",
        tmp_path,
    )
    assert check.returncode == 1  # errors fail the check, as they should
    assert "Traceback" not in check.stderr
    assert "SystemCheckError: System check identified some issues" in check.stderr
    for path in paths.values():
        assert f"{path}: (atomicops.E002) " in check.stderr


# -- shadowing ----------------------------------------------------------------------------


def test_an_app_listed_before_atomicops_cannot_replace_its_lock_script(
    tmp_path, installed, discovered
):
    shadow = write_app(tmp_path, "shadow", {"lock_release.lua": MY_RELEASE})
    installed(shadow, atomicops_at=1)  # INSTALLED_APPS = ["shadow", "atomicops"]

    discovered.discover()

    builtin = BUILTIN_LUA_DIR / "lock_release.lua"
    mine = tmp_path / "shadow" / "lua" / "lock_release.lua"
    script = discovered.get("lock_release")
    assert (script.app, script.origin) == ("atomicops", str(builtin))
    assert script.source == builtin.read_text()
    assert discovered.discovery_errors == []
    [clash] = discovered.discovery_clashes
    assert (clash.name, clash.kept, clash.ignored) == ("lock_release", str(builtin), str(mine))
    assert atomicops_checks.check_lua_headers() == []
    [message] = atomicops_checks.check_script_clashes()
    assert message == checks.Error(
        f"script 'lock_release': {mine} (app 'shadow') is not registered, because "
        f"{builtin} (app 'atomicops') is registered under that name",
        hint=(
            "Rename one of the files (a script is named after its file), or choose one "
            "explicitly: ATOMICOPS['OVERRIDE_SCRIPTS'] = {'lock_release': 'shadow'}."
        ),
        obj=str(mine),
        id="atomicops.E006",
    )


def test_override_scripts_is_the_explicit_opt_in(tmp_path, installed, discovered):
    shadow = write_app(tmp_path, "shadow", {"lock_release.lua": MY_RELEASE})
    installed(shadow)  # order does not matter with an override

    discovered.discover(overrides={"lock_release": "shadow"})

    script = discovered.get("lock_release")
    assert (script.app, script.description) == ("shadow", "my own release")
    assert discovered.discovery_errors == discovered.discovery_clashes == []
    assert atomicops_checks.check_script_clashes() == []
    assert discovered.get("lock_acquire").app == "atomicops"  # only the named script


def test_two_apps_shipping_one_name_is_e006_and_the_first_listed_wins(
    tmp_path, installed, discovered
):
    first = write_app(tmp_path, "first", {"report.lua": GOOD})
    second = write_app(tmp_path, "second", {"report.lua": "-- returns: 2\nreturn 2\n"})
    same = write_app(tmp_path, "same", {"report.lua": GOOD})  # identical bytes: no clash
    installed(first, second, same)

    discovered.discover()

    assert discovered.get("report").app == "first"
    [clash] = discovered.discovery_clashes
    assert (clash.kept_app, clash.ignored_app) == ("first", "second")
    [message] = atomicops_checks.check_script_clashes()
    assert message.id == "atomicops.E006" and message.obj == clash.ignored
    assert str(tmp_path / "first" / "lua" / "report.lua") in message.msg
    assert str(tmp_path / "second" / "lua" / "report.lua") in message.msg
    assert "{'report': 'second'}" in message.hint

    again = ScriptRegistry()
    again.discover(overrides={"report": "second"})
    assert again.get("report").app == "second" and again.discovery_clashes == []


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["lock_release"], "must be a dict {script name: app label}, got ['lock_release']"),
        ({"lock_release": 3}, "maps 'lock_release' to 3: app labels are strings"),
        ({"lock_release": "nosuchapp"}, "no installed app has the label 'nosuchapp'"),
        ({"lock_relase": "shadow"}, "app 'shadow' has no lua/lock_relase.lua"),
    ],
)
def test_an_override_that_cannot_apply_is_e007_and_changes_nothing(
    tmp_path, installed, discovered, overrides, message
):
    shadow = write_app(tmp_path, "shadow", {"lock_release.lua": MY_RELEASE})
    installed(shadow, atomicops_at=1)

    discovered.discover(overrides=overrides)

    assert discovered.get("lock_release").app == "atomicops"
    [error] = atomicops_checks.check_script_overrides()
    assert error.id == "atomicops.E007" and error.level == checks.ERROR
    assert error.obj == "ATOMICOPS['OVERRIDE_SCRIPTS']"
    assert message in error.msg
    assert error.hint == atomicops_checks.BAD_OVERRIDE_HINT
    [clash] = atomicops_checks.check_script_clashes()  # the clash is still reported
    assert clash.id == "atomicops.E006"


def test_overrides_have_no_effect_without_discovery(tmp_path, installed, discovered):
    installed(write_app(tmp_path, "shadow", {"lock_release.lua": MY_RELEASE}))
    discovered.discover(all_apps=False, overrides={"lock_release": "shadow"})
    assert discovered.get("lock_release").app == "atomicops"
    [error] = atomicops_checks.check_script_overrides()
    assert "DISCOVER_SCRIPTS is False" in error.msg


def test_the_setting_reaches_discovery_through_app_ready(settings, monkeypatch):
    from atomicops.apps import AtomicOpsConfig

    seen = {}
    monkeypatch.setattr(registry_module.registry, "discover", lambda **kw: seen.update(kw))
    settings.ATOMICOPS = {**settings.ATOMICOPS, "OVERRIDE_SCRIPTS": {"lock_release": "x"}}
    AtomicOpsConfig.ready(apps.get_app_config("atomicops"))
    assert seen == {"all_apps": True, "overrides": {"lock_release": "x"}}
