"""The scripts: the registry of Lua scripts, their headers, and how replies convert.

* :mod:`.registry`: every registered script by name, its SHA, loading onto servers,
  discovery of installed apps' ``lua/*.lua``;
* :mod:`.header`: the ``-- KEYS[1] ...`` header every script file starts with.
"""
