"""System checks, ids ``atomicops.E0xx`` (errors) and ``atomicops.W0xx`` (warnings).

Without network I/O (every ``manage.py check``):

* E001 no Redis client can be built from the settings;
* E002 a ``lua/*.lua`` file cannot be read (not UTF-8, not a file) or its header cannot;
* E003 ``KEY_PREFIX`` is not a non-empty string;
* E006 two apps ship a script of one name and ``OVERRIDE_SCRIPTS`` does not pick one;
* E007 an ``OVERRIDE_SCRIPTS`` entry cannot apply (no such app, or no such file in it);
* E008 ``TRUSTED_PROXY_COUNT`` / ``CLIENT_IP_HEADER`` malformed, or both set;
* E009 a rate in ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]`` that DRF cannot parse or
  the exact window cannot serve (it would fail every request of its scope);
* E010 ``IDEMPOTENCY_MAX_CLIENT_BYTES`` is not an integer >= 1 or None;
* E011 ``RETRY_DEADLINE_MS`` is not a finite number of milliseconds >= 0;
* W002 fakeredis is configured outside tests;
* W004 ``ATOMICOPS`` has a key atomicops does not know (a typo, usually);
* W005 ``KEY_PREFIX`` contains a brace (a cluster hash tag).

With ``manage.py check --deploy`` only, because they talk to the server:

* W003 the server cannot be reached, so the checks below did not run;
* W001 the server has no ``EVALSHA_RO``: read-only scripts fall back to ``EVALSHA``;
* E004 a registered script does not compile on the server (``SCRIPT LOAD``);
* E005 a Redis Cluster client with a hash tag in ``KEY_PREFIX``;
* I016 / W016 the calls go over Upstash's REST API, and whether its token can write
  (W016: a read-only token, with which every script that writes fails).
"""

from __future__ import annotations

import difflib
import sys
from typing import Any

from django.core import checks
from redis.exceptions import ResponseError

from atomicops.engine.redaction import redact_text, redact_url
from atomicops.exceptions import AtomicOpsError, ConfigurationError

# Ids are public and stable (docs/admin.md lists them); hints say what to do.
NO_CONNECTION = "atomicops.E001"
NO_CONNECTION_HINT = (
    "Set ATOMICOPS = {'URL': 'redis://localhost:6379/0'} or "
    "{'CONNECTION': '<alias of a django-redis or RedisCache cache>'}, or for Upstash's "
    "REST API {'REST_URL': 'https://<db>.upstash.io', 'REST_TOKEN': '<token>'}."
)
UNREADABLE_SCRIPT = "atomicops.E002"
UNREADABLE_SCRIPT_HINT = (
    "Save the file as UTF-8 text with a header; see the header format in "
    "atomicops/scripts/header.py and the README."
)
BAD_KEY_PREFIX = "atomicops.E003"
BAD_KEY_PREFIX_HINT = "Use a short name such as 'atomicops' or your project's name."
SCRIPT_DOES_NOT_COMPILE = "atomicops.E004"
SCRIPT_DOES_NOT_COMPILE_HINT = "Fix the script's Lua; calls of it fail until then."
HASH_TAG_ON_CLUSTER = "atomicops.E005"
HASH_TAG_ON_CLUSTER_HINT = (
    "Remove the braces from KEY_PREFIX; atomicops tags each object's keys itself."
)
SCRIPT_CLASH = "atomicops.E006"
SCRIPT_CLASH_HINT = (
    "Rename one of the files (a script is named after its file), or choose one "
    "explicitly: ATOMICOPS['OVERRIDE_SCRIPTS'] = {{{name!r}: {app!r}}}."
)
BAD_OVERRIDE = "atomicops.E007"
BAD_OVERRIDE_HINT = (
    "OVERRIDE_SCRIPTS maps a script name to the label of the installed app whose "
    "lua/<name>.lua is registered under that name, e.g. {'lock_release': 'myapp'}."
)
BAD_PROXY_SETTINGS = "atomicops.E008"
BAD_PROXY_SETTINGS_HINT = (
    "Behind N reverse proxies that append to X-Forwarded-For set TRUSTED_PROXY_COUNT = N; "
    "behind one that sets a header to the client's address (overwriting the client's), "
    "set CLIENT_IP_HEADER to its name. See 'Behind proxies' in docs/ratelimit.md."
)
BAD_THROTTLE_RATE = "atomicops.E009"
BAD_THROTTLE_RATE_HINT = (
    "Write the rate as DRF does: '<requests>/<period>', the period s, sec, m, min, h, "
    "hour, d or day, e.g. '100/min' or '30000000/day'."
)
BAD_IDEMPOTENCY_BOUND = "atomicops.E010"
BAD_IDEMPOTENCY_BOUND_HINT = (
    "The most bytes of stored @idempotent responses one client may have, e.g. "
    "8 * 1024 * 1024 (the default); None for no bound. See docs/idempotency.md."
)
BAD_RETRY_DEADLINE = "atomicops.E011"
BAD_RETRY_DEADLINE_HINT = (
    "How long (ms) a call that provably did not run may be sent again, e.g. 2000 (the "
    "default); 0 turns retries off. See docs/reliability.md."
)
NO_EVAL_RO = "atomicops.W001"
NO_EVAL_RO_HINT = (
    "Read-only scripts fall back to EVALSHA: they still work, but the server no "
    "longer rejects a stray write in them and they cannot run on replicas. "
    "Upgrade to Redis 7 or Valkey 7.2+."
)
FAKEREDIS = "atomicops.W002"
FAKEREDIS_HINT = (
    "fakeredis keeps data in this process only: locks, limits and counters are "
    "not shared between workers and vanish on restart. Point ATOMICOPS['URL'] or "
    "ATOMICOPS['CONNECTION'] at a real Redis or Valkey server."
)
REST_TRANSPORT = "atomicops.I016"
REST_READONLY_TOKEN = "atomicops.W016"
REST_READONLY_TOKEN_HINT = (
    "Only read-only scripts (get_counter, Lock.locked...) work with Upstash's read-only "
    "token; set ATOMICOPS['REST_TOKEN'] (or UPSTASH_REDIS_REST_TOKEN) to the read-write one."
)
UNREACHABLE = "atomicops.W003"
UNREACHABLE_HINT = (
    "The network checks (EVAL_RO support, scripts compiling on the server, cluster "
    "hash tags) did not run. Run 'manage.py check --deploy' where Redis is reachable."
)
UNKNOWN_SETTING = "atomicops.W004"
BRACE_IN_PREFIX = "atomicops.W005"
BRACE_IN_PREFIX_HINT = (
    "Braces are Redis Cluster hash tags: every atomicops key would share the "
    "prefix's tag (one slot, one node) instead of the per-object tags atomicops "
    "builds. Remove the braces."
)


@checks.register("atomicops")
def check_connection(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E001: the settings must give a Redis client (no network I/O)."""
    from atomicops.engine import connection

    try:
        connection.check_settings()
    except ConfigurationError as exc:
        return [checks.Error(exc.message, hint=NO_CONNECTION_HINT, id=NO_CONNECTION)]
    return []


@checks.register("atomicops")
def check_lua_headers(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E002: every discovered ``lua/*.lua`` file must be readable text with a header."""
    from atomicops.scripts.registry import registry

    return [
        checks.Error(error.message, hint=UNREADABLE_SCRIPT_HINT, obj=path, id=UNREADABLE_SCRIPT)
        for path, error in registry.discovery_errors
    ]


@checks.register("atomicops")
def check_script_clashes(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E006: a script name shipped by two apps, with no ``OVERRIDE_SCRIPTS`` entry for it."""
    from atomicops.scripts.registry import registry

    return [
        checks.Error(
            clash.message,
            hint=SCRIPT_CLASH_HINT.format(name=clash.name, app=clash.ignored_app),
            obj=clash.ignored,
            id=SCRIPT_CLASH,
        )
        for clash in registry.discovery_clashes
    ]


@checks.register("atomicops")
def check_script_overrides(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E007: each ``OVERRIDE_SCRIPTS`` entry must name an installed app shipping the file."""
    from atomicops.scripts.registry import OVERRIDE_SETTING, registry

    return [
        checks.Error(error.message, hint=BAD_OVERRIDE_HINT, obj=OVERRIDE_SETTING, id=BAD_OVERRIDE)
        for error in registry.override_errors
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
                    id=UNKNOWN_SETTING,
                )
            )
    prefix = user.get("KEY_PREFIX", DEFAULTS["KEY_PREFIX"])
    if not isinstance(prefix, str) or not prefix:
        messages.append(
            checks.Error(
                f"ATOMICOPS['KEY_PREFIX'] must be a non-empty string, got {prefix!r}",
                hint=BAD_KEY_PREFIX_HINT,
                id=BAD_KEY_PREFIX,
            )
        )
    elif "{" in prefix or "}" in prefix:
        messages.append(
            checks.Warning(
                f"ATOMICOPS['KEY_PREFIX'] {prefix!r} contains a brace",
                hint=BRACE_IN_PREFIX_HINT,
                id=BRACE_IN_PREFIX,
            )
        )
    return messages


@checks.register("atomicops")
def check_idempotency_bound(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E010: the per-client bound on stored @idempotent responses must be usable."""
    from atomicops.web.idempotency import client_bound

    try:
        client_bound()
    except ConfigurationError as exc:
        return [
            checks.Error(exc.message, hint=BAD_IDEMPOTENCY_BOUND_HINT, id=BAD_IDEMPOTENCY_BOUND)
        ]
    return []


@checks.register("atomicops")
def check_retry_deadline(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E011: ``RETRY_DEADLINE_MS`` must be a number of milliseconds >= 0."""
    from atomicops.scripts.registry import retry_deadline

    try:
        retry_deadline()
    except ConfigurationError as exc:
        return [checks.Error(exc.message, hint=BAD_RETRY_DEADLINE_HINT, id=BAD_RETRY_DEADLINE)]
    return []


@checks.register("atomicops")
def check_proxy_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E008: the trusted-proxy settings must say one thing about who the client is."""
    from atomicops.web.identity import proxy_settings

    try:
        proxy_settings()
    except ConfigurationError as exc:
        return [checks.Error(exc.message, hint=BAD_PROXY_SETTINGS_HINT, id=BAD_PROXY_SETTINGS)]
    return []


@checks.register("atomicops")
def check_throttle_rates(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E009: every DRF throttle rate in the settings can be parsed and served.

    Read from ``settings.REST_FRAMEWORK`` directly: importing DRF here would import it
    in every project, and only ``atomicops.drf`` may.
    """
    from django.conf import settings

    from atomicops.primitives.ratelimit import parse_drf_rate

    rates = (getattr(settings, "REST_FRAMEWORK", None) or {}).get("DEFAULT_THROTTLE_RATES")
    messages: list[checks.CheckMessage] = []
    for scope, rate in (rates or {}).items():
        if rate is None:  # DRF: a scope with rate None is not throttled
            continue
        try:
            parse_drf_rate(rate)
        except AtomicOpsError as exc:
            messages.append(
                checks.Error(
                    f"REST_FRAMEWORK['DEFAULT_THROTTLE_RATES'][{scope!r}]: {exc.message}",
                    hint=BAD_THROTTLE_RATE_HINT,
                    id=BAD_THROTTLE_RATE,
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
    from atomicops.conf import get_settings
    from atomicops.engine import connection

    if get_settings()["CLUSTER"] is True:
        return []  # atomicops' own cluster client, whose building would read the slot map
    try:
        client = connection.get_client()
    except ConfigurationError:
        return []  # atomicops.E001 says why
    if not _is_fakeredis(client) or _running_tests():
        return []
    return [
        checks.Warning(
            "atomicops is configured with fakeredis outside tests",
            hint=FAKEREDIS_HINT,
            id=FAKEREDIS,
        )
    ]


# A SHA no script has: EVALSHA_RO of it answers NOSCRIPT where the command exists and
# "unknown command" where it does not, without running any Lua.
_ABSENT_SHA = "0" * 40


@checks.register("atomicops", deploy=True)
def check_server(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Network checks, with ``--deploy`` only: W003 unreachable, W001 no EVAL_RO, E004, E005."""
    from redis.exceptions import RedisError

    from atomicops.engine import compat, connection, wire
    from atomicops.engine.ops import Context, Send
    from atomicops.ops.flushcheck import primaries
    from atomicops.primitives import keys
    from atomicops.scripts.registry import registry

    try:
        client = connection.get_client()
        servers = primaries(client)  # a cluster client may connect here
    except ConfigurationError:
        return []  # atomicops.E001 says why
    except (RedisError, OSError, AtomicOpsError) as exc:  # a cluster reads its map here
        return [_unreachable(exc)]
    messages: list[checks.CheckMessage] = []
    prefix = keys.prefix()
    if compat.is_cluster_client(client) and ("{" in prefix or "}" in prefix):
        messages.append(
            checks.Error(
                f"ATOMICOPS['KEY_PREFIX'] {prefix!r} contains a hash tag and the client is a "
                "Redis Cluster client: every atomicops key would hash to one slot",
                hint=HASH_TAG_ON_CLUSTER_HINT,
                id=HASH_TAG_ON_CLUSTER,
            )
        )
    scripts = list(registry)
    no_ro = False
    failed: dict[str, str] = {}
    context = Context("check --deploy", write=False, script=False)
    for server in servers:
        batch = [("EVALSHA_RO", _ABSENT_SHA, 0)] + [("SCRIPT LOAD", s.source) for s in scripts]
        try:
            replies = wire.roundtrip(Send(server, batch, context))
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
                hint=NO_EVAL_RO_HINT,
                id=NO_EVAL_RO,
            )
        )
    for name, message in failed.items():
        messages.append(
            checks.Error(
                message,
                hint=SCRIPT_DOES_NOT_COMPILE_HINT,
                obj=name,
                id=SCRIPT_DOES_NOT_COMPILE,
            )
        )
    return messages


@checks.register("atomicops", deploy=True)
def check_rest_transport(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """I016 / W016 (``--deploy``): the REST transport in use, and whether its token can write.

    One request: ``DEL`` of a reserved probe key that never holds data, a write that
    changes nothing; a read-only token answers NOPERM.
    """
    from redis.exceptions import NoPermissionError

    from atomicops.engine import connection, wire
    from atomicops.engine.ops import Context, Send
    from atomicops.primitives import keys

    try:
        found = connection.rest_settings()
        client = connection.get_client() if found is not None else None
    except ConfigurationError:
        return []  # atomicops.E001 says why
    if client is None:
        return []
    where = f"Upstash's REST API at {redact_url(client.url)}"
    probe = f"{keys.prefix()}:__probe__:token-can-write"
    context = Context("checking whether the REST token can write", write=False, script=False)
    try:
        [reply] = wire.roundtrip(Send(client, [("DEL", probe)], context))
    except AtomicOpsError as exc:
        return [_unreachable(exc)]
    if isinstance(reply, NoPermissionError):
        return [
            checks.Warning(
                f"atomicops calls go over {where} with a read-only token",
                hint=REST_READONLY_TOKEN_HINT,
                id=REST_READONLY_TOKEN,
            )
        ]
    return [
        checks.Info(
            f"atomicops calls go over {where}; the token can write",
            id=REST_TRANSPORT,
        )
    ]


def _unreachable(exc: BaseException) -> checks.CheckMessage:
    from atomicops.engine import connection

    # RedisUnavailable's own words name the internal batch; the cause says what failed.
    # Both parts redacted: the cause's words may quote a URL (a REST URL's "?_token=").
    return checks.Warning(
        redact_text(f"cannot reach Redis ({connection.describe_source()}): {exc.__cause__ or exc}"),
        hint=UNREACHABLE_HINT,
        id=UNREACHABLE,
    )
