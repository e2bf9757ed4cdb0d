"""System checks, ids ``atomicops.E0xx`` (errors) and ``atomicops.W0xx`` (warnings)."""

from __future__ import annotations

from typing import Any

from django.core import checks

from atomicops.exceptions import ConfigurationError


@checks.register("atomicops")
def check_connection(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E001: the settings must give a Redis client (no network I/O)."""
    from atomicops import connection

    try:
        connection._build_sync()
    except ConfigurationError as exc:
        return [
            checks.Error(
                exc.message,
                hint=(
                    "Set ATOMICOPS = {'URL': 'redis://localhost:6379/0'} or "
                    "{'CONNECTION': '<alias of a django-redis or RedisCache cache>'}."
                ),
                id="atomicops.E001",
            )
        ]
    return []


@checks.register("atomicops")
def check_lua_headers(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E002: every discovered ``lua/*.lua`` file must have a readable header."""
    from atomicops.registry import registry

    return [
        checks.Error(
            error.message,
            hint="See the header format in atomicops/luaheader.py and the README.",
            obj=path,
            id="atomicops.E002",
        )
        for path, error in registry.discovery_errors
    ]
