"""System checks, ids ``atomicops.E0xx`` (errors) and ``atomicops.W0xx`` (warnings).

Without network I/O (every ``manage.py check``):

* E001 no Redis client can be built from the settings;
* E002 a ``lua/*.lua`` file's header cannot be read;
* E003 ``KEY_PREFIX`` is not a non-empty string;
* W002 fakeredis is configured outside tests;
* W004 ``ATOMICOPS`` has a key atomicops does not know (a typo, usually);
* W005 ``KEY_PREFIX`` contains a brace (a cluster hash tag).

With ``manage.py check --deploy`` only, because they talk to the server:

* W003 the server cannot be reached, so the checks below did not run;
* W001 the server has no ``EVALSHA_RO``: read-only scripts fall back to ``EVALSHA``;
* E004 a registered script does not compile on the server (``SCRIPT LOAD``);
* E005 a Redis Cluster client with a hash tag in ``KEY_PREFIX``.
"""

from __future__ import annotations

import difflib
import sys
from typing import Any

from django.core import checks
from redis.exceptions import ResponseError

from atomicops.exceptions import AtomicOpsError, ConfigurationError


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


def _running_tests() -> bool:
    # Django's test runner and pytest both configure fakeredis legitimately.
    return (len(sys.argv) > 1 and sys.argv[1] == "test") or "pytest" in sys.modules


def _user_settings() -> Any:
    from django.conf import settings

    return getattr(settings, "ATOMICOPS", None) or {}


@checks.register("atomicops")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E003 KEY_PREFIX malformed; W004 unknown keys; W005 braces in KEY_PREFIX."""
    from atomicops.conf import DEFAULTS

    # (A non-dict ATOMICOPS never gets here: get_settings() fails in AppConfig.ready().)
    user = _user_settings()
    messages: list[checks.CheckMessage] = []
    for name in user:
        if name not in DEFAULTS:
            close = difflib.get_close_matches(str(name), list(DEFAULTS), n=1)
            messages.append(
                checks.Warning(
                    f"ATOMICOPS has an unknown key {name!r}; it is ignored",
                    hint=(f"Did you mean {close[0]!r}? " if close else "")
                    + f"Known keys: {', '.join(DEFAULTS)}.",
                    id="atomicops.W004",
                )
            )
    prefix = user.get("KEY_PREFIX", DEFAULTS["KEY_PREFIX"])
    if not isinstance(prefix, str) or not prefix:
        messages.append(
            checks.Error(
                f"ATOMICOPS['KEY_PREFIX'] must be a non-empty string, got {prefix!r}",
                hint="Use a short name such as 'atomicops' or your project's name.",
                id="atomicops.E003",
            )
        )
    elif "{" in prefix or "}" in prefix:
        messages.append(
            checks.Warning(
                f"ATOMICOPS['KEY_PREFIX'] {prefix!r} contains a brace",
                hint=(
                    "Braces are Redis Cluster hash tags: every atomicops key would share the "
                    "prefix's tag (one slot, one node) instead of the per-object tags atomicops "
                    "builds. Remove the braces."
                ),
                id="atomicops.W005",
            )
        )
    return messages


def _is_fakeredis(client: Any) -> bool:
    pool = getattr(client, "connection_pool", None)
    classes = [type(client), getattr(pool, "connection_class", None), type(pool)]
    return any(cls is not None and cls.__module__.split(".")[0] == "fakeredis" for cls in classes)


@checks.register("atomicops")
def check_fakeredis(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """W002: fakeredis configured outside tests (no network I/O)."""
    from atomicops import connection

    try:
        client = connection.get_client()
    except ConfigurationError:
        return []  # atomicops.E001 says why
    if not _is_fakeredis(client) or _running_tests():
        return []
    return [
        checks.Warning(
            "atomicops is configured with fakeredis outside tests",
            hint=(
                "fakeredis keeps data in this process only: locks, limits and counters are "
                "not shared between workers and vanish on restart. Point ATOMICOPS['URL'] or "
                "ATOMICOPS['CONNECTION'] at a real Redis or Valkey server."
            ),
            id="atomicops.W002",
        )
    ]


# A SHA no script has: EVALSHA_RO of it answers NOSCRIPT where the command exists and
# "unknown command" where it does not, without running any Lua.
_ABSENT_SHA = "0" * 40


@checks.register("atomicops", deploy=True)
def check_server(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Network checks, with ``--deploy`` only: W003 unreachable, W001 no EVAL_RO, E004, E005."""
    from redis.exceptions import RedisError

    from atomicops import connection, keys, transport
    from atomicops.flushcheck import primaries
    from atomicops.registry import registry

    try:
        client = connection.get_client()
        servers = primaries(client)  # a cluster client may connect here
    except ConfigurationError:
        return []  # atomicops.E001 says why
    except (RedisError, OSError) as exc:
        return [_unreachable(exc)]
    messages: list[checks.CheckMessage] = []
    prefix = keys.prefix()
    if connection.is_cluster(client) and ("{" in prefix or "}" in prefix):
        messages.append(
            checks.Error(
                f"ATOMICOPS['KEY_PREFIX'] {prefix!r} contains a hash tag and the client is a "
                "Redis Cluster client: every atomicops key would hash to one slot",
                hint="Remove the braces from KEY_PREFIX; atomicops tags each object's keys itself.",
                id="atomicops.E005",
            )
        )
    scripts = list(registry)
    no_ro = False
    failed: dict[str, str] = {}
    ctx = transport._Context("check --deploy", None, write=False)
    for server in servers:
        batch = [("EVALSHA_RO", _ABSENT_SHA, 0)] + [("SCRIPT LOAD", s.source) for s in scripts]
        try:
            replies = transport.roundtrip(server, batch, ctx)
        except AtomicOpsError as exc:
            return [*messages, _unreachable(exc)]
        ro = replies[0]
        if isinstance(ro, ResponseError) and "unknown command" in str(ro).lower():
            no_ro = True
        for script, reply in zip(scripts, replies[1:], strict=True):
            if isinstance(reply, ResponseError) and script.name not in failed:
                failed[script.name] = script.error_from_reply(reply).message
    if no_ro:
        messages.append(
            checks.Warning(
                "the Redis server has no EVALSHA_RO (Redis < 7.0, or an emulator)",
                hint=(
                    "Read-only scripts fall back to EVALSHA: they still work, but the server no "
                    "longer rejects a stray write in them and they cannot run on replicas. "
                    "Upgrade to Redis 7 or Valkey 7.2+."
                ),
                id="atomicops.W001",
            )
        )
    for name, message in failed.items():
        messages.append(
            checks.Error(
                message,
                hint="Fix the script's Lua; calls of it fail until then.",
                obj=name,
                id="atomicops.E004",
            )
        )
    return messages


def _unreachable(exc: BaseException) -> checks.CheckMessage:
    from atomicops import connection

    # RedisUnavailable's own words name the internal batch; the cause says what failed.
    return checks.Warning(
        f"cannot reach Redis ({connection.describe_source()}): {exc.__cause__ or exc}",
        hint=(
            "The network checks (EVAL_RO support, scripts compiling on the server, cluster "
            "hash tags) did not run. Run 'manage.py check --deploy' where Redis is reachable."
        ),
        id="atomicops.W003",
    )
