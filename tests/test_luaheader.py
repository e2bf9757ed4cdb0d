"""The header comment of .lua files, and the check that reports unreadable ones."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from atomicops import ScriptHeaderError
from atomicops.checks import check_lua_headers
from atomicops.scripts.header import parse_header
from atomicops.scripts.registry import BUILTIN_LUA_DIR

GOOD = """\
-- description: Add to a counter.
-- readonly: no
-- KEYS[1] counter: the counter
-- ARGV[1] limit: upper bound
-- ARGV[2] amount: how much
-- returns: {value, applied}
-- result: raw
-- probe: 10 1

return 1
"""


def test_a_full_header_is_read():
    header = parse_header(GOOD, origin="good.lua")
    assert header.description == "Add to a counter."
    assert header.readonly is False
    assert header.keys == ("counter",)
    assert header.args == ("limit", "amount")
    assert header.returns == "{value, applied}"
    assert header.probe == ("10", "1")
    assert header.docs["ARGV[2]"] == "how much"


@pytest.mark.parametrize(
    "text, message",
    [
        ("return 1", "no '-- returns:' line"),
        ("-- returns: x\n-- KEYS[2] b: skipped one\n", "numbered 1, 2, 3"),
        ("-- returns: x\n-- readonly: perhaps\n", "readonly must be yes or no"),
        ("-- returns: x\n-- result: complex\n", "result must be one of"),
        ("-- returns: x\n-- returns: y\n", "given twice"),
        ("-- returns: x\n-- ARGV[1] a: one\n-- probe: 1 2\n", "probe gives 2 args"),
        # int() of more than 4300 digits raises ValueError (Python's conversion limit).
        ("-- returns: x\n-- KEYS[" + "1" * 5000 + "] a: one\n", "KEYS index of 5000 digits"),
    ],
)
def test_bad_headers_name_the_file(text, message):
    with pytest.raises(ScriptHeaderError, match=message) as info:
        parse_header(text, origin="app/lua/bad.lua")
    assert "app/lua/bad.lua" in str(info.value)


def test_header_stops_at_the_first_code_line():
    header = parse_header("-- returns: x\nlocal a = 1\n-- KEYS[1] late: not header\n", origin="f")
    assert header.keys == ()


def test_every_shipped_script_has_a_readable_header_and_a_probe():
    for path in sorted(BUILTIN_LUA_DIR.glob("*.lua")):
        header = parse_header(path.read_text(), origin=str(path))
        assert header.probe is not None, f"{path.name} declares no probe"


def test_discovery_errors_become_check_errors(monkeypatch):
    from atomicops import registry

    error = ScriptHeaderError("app/lua/bad.lua: header has no '-- returns:' line")
    monkeypatch.setattr(registry, "discovery_errors", [("app/lua/bad.lua", error)])
    [message] = check_lua_headers()
    assert message.id == "atomicops.E002" and message.obj == "app/lua/bad.lua"
    assert "returns" in message.msg


# -- misspelled fields and unnamed slots (issue #20) ---------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("-- read_only: yes", "unknown header field 'read_only' (did you mean 'readonly'?)"),
        ("-- return: x", "unknown header field 'return' (did you mean 'returns'?)"),
        ("-- probes: 1", "unknown header field 'probes' (did you mean 'probe'?)"),
        ("-- results: int", "unknown header field 'results' (did you mean 'result'?)"),
        ("-- author: me", "unknown header field 'author'; the fields are description, readonly"),
    ],
)
def test_an_unknown_field_is_an_error_naming_the_closest(line, message):
    text = f"-- returns: x\n-- ARGV[1] who: the caller\n{line}\nreturn 1\n"
    with pytest.raises(ScriptHeaderError) as info:
        parse_header(text, origin="app/lua/typo.lua")
    assert info.value.message.startswith("app/lua/typo.lua:3: ")
    assert message in info.value.message


def test_prose_and_urls_in_a_header_are_still_prose():
    text = "-- Returns nothing: it logs.\n-- see https://redis.io/docs\n-- returns: x\n"
    assert parse_header(text, origin="f").returns == "x"


@pytest.mark.parametrize("line", ["-- ARGV[1]: who", "-- KEYS[1]:", "-- ARGV [1] who: x"])
def test_a_slot_line_without_a_name_says_so(line):
    text = f"-- returns: x\n{line}\n-- ARGV[2] b: the second\n"
    with pytest.raises(ScriptHeaderError) as info:
        parse_header(text, origin="app/lua/slot.lua")
    kind = "ARGV" if "ARGV" in line else "KEYS"
    assert info.value.message == (
        f"app/lua/slot.lua:2: a {kind} line names its slot, "
        f"'-- {kind}[<i>] <name>: <what it is>'; got {line!r}"
    )
    assert "numbered" not in info.value.message


def test_a_misspelled_readonly_fails_manage_py_but_not_the_process(tmp_path):
    """The README's promise: E002 is an error, so management commands that run the checks
    refuse (Django's meaning of an error); a process that does not run them goes on."""
    root = Path(__file__).resolve().parent.parent
    package = tmp_path / "typoapp"
    (package / "lua").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "lua" / "typo_read.lua").write_text(
        "-- read_only: yes\n-- KEYS[1] k: a key\n-- returns: its value\n"
        "return redis.call('GET', KEYS[1])\n"
    )
    (tmp_path / "typo_settings.py").write_text(
        "from tests.settings import *  # noqa\nINSTALLED_APPS = [*INSTALLED_APPS, 'typoapp']\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(PYTHONPATH=os.pathsep.join([str(root), str(tmp_path)]))

    def manage(*args: str, settings: str = "typo_settings") -> subprocess.CompletedProcess:
        code = "import sys\nfrom django.core.management import execute_from_command_line\n"
        code += "execute_from_command_line(['manage.py', *sys.argv[1:]])\n"
        return subprocess.run(
            [sys.executable, "-c", code, *args, f"--settings={settings}"],
            cwd=root, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    migrate = manage("migrate", "--noinput")
    assert migrate.returncode == 1
    assert "(atomicops.E002)" in migrate.stderr and "did you mean 'readonly'?" in migrate.stderr
    shell = manage("shell", "-c", "from atomicops import registry; print('typo_read' in registry)")
    assert shell.returncode == 0
    assert shell.stdout.strip().splitlines()[-1] == "False"  # not registered
    (tmp_path / "silenced.py").write_text(
        "from typo_settings import *  # noqa\nSILENCED_SYSTEM_CHECKS = ['atomicops.E002']\n"
    )
    assert manage("migrate", "--noinput", settings="silenced").returncode == 0
