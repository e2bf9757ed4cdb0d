"""The demo's own Lua scripts (``demo/lua/*.lua``), found whether or not discovery ran.

Discovery registers them at start-up; a project that sets
``ATOMICOPS["DISCOVER_SCRIPTS"] = False`` would not have them, so look them up here and
register the file on first use in that case.
"""

from __future__ import annotations

from pathlib import Path

from atomicops import Script, registry

LUA_DIR = Path(__file__).resolve().parent / "lua"


def script(name: str) -> Script:
    """The registered script ``name``, registering ``lua/<name>.lua`` if needed."""
    if name in registry:
        return registry.get(name)
    return registry.register_file(LUA_DIR / f"{name}.lua", app="demo")
