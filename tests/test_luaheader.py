"""The header comment of .lua files, and the check that reports unreadable ones."""

from __future__ import annotations

import pytest

from atomicops import ScriptHeaderError
from atomicops.checks import check_lua_headers
from atomicops.luaheader import parse_header
from atomicops.registry import BUILTIN_LUA_DIR

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
