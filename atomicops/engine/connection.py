"""Where a Redis client comes from.

In order of precedence:

1. ``client=`` passed to a call (a redis-py client, cluster client or pipeline; a
   ``redis.asyncio`` one for the a-prefixed calls), checked here so that anything else
   is a :class:`ConfigurationError` before a command is built;
2. ``ATOMICOPS["CONNECTION"]``: a ``CACHES`` alias backed by django-redis or by
   Django's own ``RedisCache``;
3. ``ATOMICOPS["URL"]``: a client atomicops builds itself, with redis-py's automatic
   retry switched off (atomicops decides itself what may be sent twice);
   ``ATOMICOPS["SENTINELS"]`` and ``["SERVICE"]`` instead: a client on the primary the
   sentinels name (redis-py's ``Sentinel.master_for``), likewise without retries;
4. neither: the ``"default"`` cache, if it is Redis-backed.

``ATOMICOPS["REST_URL"]`` and ``["REST_TOKEN"]`` (or ``["REST"] = True`` with Upstash's
environment variables) replace all of these with Upstash's REST API: the client is then
an :class:`~atomicops.engine.rest.RestClient`, and ``client=`` also takes the official
SDK's ``upstash_redis.Redis`` / ``upstash_redis.asyncio.Redis`` (docs/http.md).

Nothing here connects: redis-py connects lazily on the first command.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import reprlib
import threading
import weakref
from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.sentinel
from django.core.signals import setting_changed
from redis.backoff import NoBackoff
from redis.retry import Retry

from atomicops.conf import get_settings
from atomicops.engine import compat, rest, topology
from atomicops.engine.redaction import redact_url
from atomicops.exceptions import ConfigurationError, RedisUnavailable

DJANGO_REDIS_BACKENDS = ("django_redis.cache.RedisCache",)
DJANGO_BUILTIN_BACKEND = "django.core.cache.backends.redis.RedisCache"

_lock = threading.Lock()
_sync_client: Any = None
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
    weakref.WeakKeyDictionary()
)


def reset_clients() -> None:
    """Forget cached clients (settings changed). Their pools close when collected."""
    global _sync_client
    with _lock:
        _sync_client = None
        _async_clients.clear()


def _reset(*, setting: str, **kwargs: Any) -> None:
    # Clients are built from settings: a test's override_settings must not keep using
    # the client of the settings before it.
    if setting in ("ATOMICOPS", "CACHES"):
        reset_clients()


setting_changed.connect(_reset, dispatch_uid="atomicops.engine.connection.reset")


_UNKNOWN = object()


def _per_type(test: Callable[[type], Any]) -> Callable[[Any], Any]:
    """``test`` of a client's type, remembered per type.

    These checks run on the hot path of every call, and an isinstance against
    redis.asyncio's generic Pipeline goes through typing's slow ``__instancecheck__``.
    """
    known: dict[type, Any] = {}

    def check(client: Any) -> Any:
        kind = type(client)
        found = known.get(kind, _UNKNOWN)
        if found is _UNKNOWN:
            found = known[kind] = test(kind)
        return found

    check.__doc__ = test.__doc__
    return check


# What client= may be. fakeredis' clients subclass these, and pipelines subclass their
# client (except redis.asyncio's cluster pipeline, listed on its own).
SYNC_CLIENTS = (redis.Redis, redis.cluster.RedisCluster, rest.RestClient)
ASYNC_CLIENTS = (
    redis.asyncio.Redis,
    redis.asyncio.cluster.RedisCluster,
    redis.asyncio.cluster.ClusterPipeline,
    rest.AsyncRestClient,
)
SYNC, ASYNC = "sync", "async"
# Upstash's SDK clients (upstash_redis): get_client / get_async_client swap them for a
# REST client of atomicops' own on their URL and token. A kind of their own, so that
# telling a redis-py client apart stays one lookup on the call path.
SDK_SYNC, SDK_ASYNC = "upstash sync", "upstash async"
_SDK_KINDS = {"sync": SDK_SYNC, "async": SDK_ASYNC}


@_per_type
def client_kind(kind: type) -> str | None:
    """``"sync"`` for a redis-py client, ``"async"`` for a redis.asyncio one,
    :data:`SDK_SYNC` / :data:`SDK_ASYNC` for Upstash's SDK clients, else None."""
    if issubclass(kind, SYNC_CLIENTS):
        return SYNC
    if issubclass(kind, ASYNC_CLIENTS):
        return ASYNC
    return _SDK_KINDS.get(compat.upstash_sdk_type(kind) or "")


# REST clients made around SDK instances: one per instance, so its server state (which
# scripts are loaded) and request count last as long as the instance.
_sdk_clients: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def rest_client_of(sdk: Any) -> Any:
    """atomicops' REST client on an ``upstash_redis`` client's URL and token.

    The SDK retries a request whose response was lost, which can apply a write twice;
    atomicops sends its own requests, at most once, with ``SOCKET_TIMEOUT``.
    """
    found = _sdk_clients.get(sdk)
    if found is None:
        conf = get_settings()
        found = rest.from_sdk(
            sdk, timeout=conf["SOCKET_TIMEOUT"], connect_timeout=conf["SOCKET_CONNECT_TIMEOUT"]
        )
        with _lock:
            _sdk_clients[sdk] = found
    return found


REST_ENV = ("UPSTASH_REDIS_REST_URL", "UPSTASH_REDIS_REST_TOKEN")


def rest_settings(conf: Any = None) -> tuple[str, str] | None:
    """``(url, token)`` of Upstash's REST API when the settings ask for it, else None.

    ``REST_URL`` and ``REST_TOKEN`` together; or ``REST = True``, which takes what is
    missing from UPSTASH_REDIS_REST_URL / UPSTASH_REDIS_REST_TOKEN. Raises
    :class:`ConfigurationError` for half a configuration or one mixed with RESP settings.
    """
    conf = conf if conf is not None else get_settings()
    url, token, on = conf["REST_URL"], conf["REST_TOKEN"], conf["REST"]
    if not isinstance(on, bool):
        raise ConfigurationError(f"ATOMICOPS['REST'] must be True or False, got {on!r}")
    if not (on or url or token):
        return None
    if on:
        url = url or os.environ.get(REST_ENV[0])
        token = token or os.environ.get(REST_ENV[1])
    if not url or not token:
        missing = "REST_URL" if not url else "REST_TOKEN"
        source = f" or the environment's {REST_ENV[0 if not url else 1]}" if on else ""
        raise ConfigurationError(
            f"the Upstash REST transport needs ATOMICOPS['{missing}']{source}: "
            "the database's REST URL and token from the Upstash console"
        )
    clash = [name for name in ("URL", "CONNECTION", "SENTINELS") if conf.get(name)] + (
        ["CLUSTER"] if conf["CLUSTER"] is True else []
    )
    if clash:
        raise ConfigurationError(
            f"ATOMICOPS sets both the Upstash REST transport and {', '.join(clash)}: "
            "every call goes over one transport; remove one of them"
        )
    return str(url), str(token)


def _rest_client(cls: type, url: str, token: str) -> Any:
    conf = get_settings()
    return cls(
        url, token, timeout=conf["SOCKET_TIMEOUT"], connect_timeout=conf["SOCKET_CONNECT_TIMEOUT"]
    )


@_per_type
def is_pipeline(kind: type) -> bool:
    """Whether a client is a (sync or asyncio, plain or cluster) pipeline."""
    return issubclass(
        kind,
        (
            redis.client.Pipeline,
            redis.asyncio.client.Pipeline,
            redis.cluster.ClusterPipeline,
            redis.asyncio.cluster.ClusterPipeline,
        ),
    )


def is_async(client: Any) -> bool:
    """Whether a client is a redis.asyncio one (plain or cluster)."""
    return bool(client_kind(client) == ASYNC)


def describe_source() -> str:
    """Human words for where the default client comes from (for errors and the admin)."""
    conf = get_settings()
    try:
        found = rest_settings(conf)
    except ConfigurationError:
        found = None
    if found is not None:
        return f"Upstash REST API at {redact_url(found[0])}"
    if conf["SENTINELS"]:
        return f"the sentinels of {conf['SERVICE']!r}"
    if conf["CONNECTION"]:
        return f"cache alias {conf['CONNECTION']!r}"
    if conf["URL"]:
        return f"URL {redact_url(conf['URL'])}"
    return "the 'default' cache"


_ACCEPTED = {
    SYNC: "redis.Redis, redis.cluster.RedisCluster or a pipeline of one (or upstash_redis.Redis)",
    ASYNC: (
        "redis.asyncio.Redis, redis.asyncio.RedisCluster or a pipeline of one "
        "(or upstash_redis.asyncio.Redis)"
    ),
}


def _given(client: Any) -> str:
    """What was passed, in words that never print a secret (a URL's, a dict's, a client's)."""
    kind = type(client)
    name = kind.__qualname__
    if kind.__module__ != "builtins":
        name = f"{kind.__module__}.{name}"
    if isinstance(client, str):
        return f"the str {reprlib.repr(redact_url(client))}"
    if isinstance(client, (int, float)):
        return f"the {name} {client!r}"
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def wrong_client(client: Any, wanted: str) -> ConfigurationError:
    """The error for a ``client=`` that is not a ``wanted`` (SYNC or ASYNC) client."""
    found = client_kind(client)
    found = {SDK_SYNC: SYNC, SDK_ASYNC: ASYNC}.get(found or "", found)
    given = _given(client)
    if found == ASYNC:
        message = (
            f"client= is a redis.asyncio client ({given}) but this call is synchronous: "
            f"use its a-prefixed twin, or pass {_ACCEPTED[SYNC]}"
        )
    elif found == SYNC:
        message = (
            f"client= is a synchronous client ({given}): the a-prefixed methods need "
            f"{_ACCEPTED[ASYNC]}"
        )
    else:
        calls = "synchronous calls take" if wanted == SYNC else "the a-prefixed calls take"
        message = (
            f"client= must be a redis-py client, got {given}; {calls} {_ACCEPTED[wanted]} "
            "(fakeredis' clients are fine)"
        )
    return ConfigurationError(message)


def _cache_backend(alias: str) -> str:
    from django.conf import settings

    caches = getattr(settings, "CACHES", {})
    if alias not in caches:
        raise ConfigurationError(
            f"ATOMICOPS['CONNECTION'] names the cache alias {alias!r}, which is not in CACHES"
        )
    return str(caches[alias].get("BACKEND", ""))


def _client_from_cache(alias: str) -> Any:
    backend = _cache_backend(alias)
    if backend in DJANGO_REDIS_BACKENDS or backend.startswith("django_redis."):
        from django_redis import get_redis_connection

        return get_redis_connection(alias, write=True)
    if backend == DJANGO_BUILTIN_BACKEND:
        return compat.django_redis_cache_client(alias)
    raise ConfigurationError(
        f"cache alias {alias!r} uses {backend!r}; atomicops needs django-redis "
        f"or {DJANGO_BUILTIN_BACKEND}"
    )


def _own_client_kwargs() -> dict[str, Any]:
    conf = get_settings()
    return {
        "socket_timeout": conf["SOCKET_TIMEOUT"],
        "socket_connect_timeout": conf["SOCKET_CONNECT_TIMEOUT"],
    }


def _check_cluster_setting(conf: Any) -> bool:
    """Whether ``ATOMICOPS['CLUSTER']`` asks for a cluster client built from ``URL``."""
    cluster = conf["CLUSTER"]
    if not isinstance(cluster, bool):
        raise ConfigurationError(f"ATOMICOPS['CLUSTER'] must be True or False, got {cluster!r}")
    if cluster and (conf["CONNECTION"] or not conf["URL"]):
        raise ConfigurationError(
            "ATOMICOPS['CLUSTER'] = True needs ATOMICOPS['URL'] (any node of the cluster) "
            "and no CONNECTION: a cache alias's client is used as it is"
        )
    return cluster


def _cluster_kwargs(retry: Any) -> dict[str, Any]:
    # redis-py's own retries off: atomicops sends its calls itself, at most once, and
    # follows the cluster's redirects only when they prove nothing ran.
    return {"retry": retry, **_own_client_kwargs()}


def check_cluster_url(url: str) -> None:
    """:class:`ConfigurationError` unless ``url`` can name a cluster node (no network I/O)."""
    try:
        options = redis.connection.parse_url(url)  # type: ignore[no-untyped-call, unused-ignore]
    except ValueError as exc:
        raise ConfigurationError(f"ATOMICOPS['URL'] is not a Redis URL: {exc}") from exc
    if "path" in options or options.get("db", 0) != 0:
        raise ConfigurationError(
            "ATOMICOPS['URL'] of a cluster names a node by host and port, with database 0 "
            f"(a cluster has no other), got {redact_url(url)}"
        )


def check_settings() -> None:
    """:class:`ConfigurationError` when the settings cannot give a client, with no network
    I/O: a cluster client is not built for it, since redis-py's reads its slot map then."""
    conf = get_settings()
    if rest_settings(conf) is not None:
        build_client()  # builds no HTTP session: that waits for the first call
    elif _check_sentinel_settings(conf):
        check_replication_settings(conf)  # a sentinel client is built with no I/O either
    elif _check_cluster_setting(conf):
        check_replication_settings(conf)
        check_cluster_url(conf["URL"])
    else:
        build_client()


def build_cluster_client(url: str) -> Any:
    """A ``redis.cluster.RedisCluster`` from one node's URL. It reads the slot map now
    (redis-py's sync cluster client does so when built): :class:`RedisUnavailable` when
    no node answers."""
    check_cluster_url(url)
    try:
        return redis.cluster.RedisCluster.from_url(url, **_cluster_kwargs(Retry(NoBackoff(), 0)))
    except (redis.RedisError, redis.exceptions.RedisClusterException, OSError) as exc:
        raise RedisUnavailable(
            f"cannot read the slot map of the Redis Cluster at {redact_url(url)}: {exc}"
        ) from exc


def build_async_cluster_client(url: str) -> Any:
    """A ``redis.asyncio.cluster.RedisCluster`` from one node's URL (it connects on first use)."""
    check_cluster_url(url)
    return redis.asyncio.cluster.RedisCluster.from_url(
        url, **_cluster_kwargs(redis.asyncio.retry.Retry(NoBackoff(), 0))
    )


# -- Sentinel -------------------------------------------------------------------------


def _check_sentinel_settings(conf: Any) -> bool:
    """Whether ``SENTINELS`` asks for a sentinel-managed client; :class:`ConfigurationError`
    when the sentinel settings cannot give one (no network I/O)."""
    sentinels = conf["SENTINELS"]
    if sentinels is None:
        if conf["SERVICE"] is not None:
            raise ConfigurationError(
                "ATOMICOPS['SERVICE'] is set but ATOMICOPS['SENTINELS'] is not: name the "
                "sentinels, [(host, port), ...]"
            )
        return False
    if (
        isinstance(sentinels, (str, bytes))
        or not isinstance(sentinels, (list, tuple))
        or not sentinels
        or not all(_is_address(address) for address in sentinels)
    ):
        raise ConfigurationError(
            "ATOMICOPS['SENTINELS'] must be a non-empty list of (host, port) pairs, got "
            f"{reprlib.repr(sentinels)}"
        )
    service = conf["SERVICE"]
    if not isinstance(service, str) or not service:
        raise ConfigurationError(
            "ATOMICOPS['SENTINELS'] needs ATOMICOPS['SERVICE']: the name the sentinels "
            f"monitor (their 'sentinel monitor <name> ...' line), got {service!r}"
        )
    others = [name for name in ("URL", "CONNECTION", "CLUSTER", "REST_URL", "REST") if conf[name]]
    if others:
        raise ConfigurationError(
            f"ATOMICOPS['SENTINELS'] cannot be combined with {', '.join(others)}: the "
            "sentinels say where the primary is (for a cache alias on django-redis' "
            "SentinelClient, set CONNECTION alone)"
        )
    kwargs = conf["SENTINEL_KWARGS"]
    if kwargs is not None and not isinstance(kwargs, dict):
        raise ConfigurationError(
            f"ATOMICOPS['SENTINEL_KWARGS'] must be a dict or None, got {type(kwargs).__name__}"
        )
    return True


def _is_address(address: Any) -> bool:
    return (
        isinstance(address, (list, tuple))
        and len(address) == 2
        and isinstance(address[0], str)
        and bool(address[0])
        and isinstance(address[1], int)
        and not isinstance(address[1], bool)
        and 0 < address[1] < 65536
    )


def check_replication_settings(conf: Any) -> None:
    """:class:`ConfigurationError` unless READ_FROM_REPLICAS, WAIT_REPLICAS and
    WAIT_TIMEOUT_MS are usable (no network I/O)."""
    reads = conf["READ_FROM_REPLICAS"]
    if not isinstance(reads, bool):
        raise ConfigurationError(
            f"ATOMICOPS['READ_FROM_REPLICAS'] must be True or False, got {reads!r}"
        )
    if reads and not conf["SENTINELS"] and not conf["CONNECTION"]:
        raise ConfigurationError(
            "ATOMICOPS['READ_FROM_REPLICAS'] needs replicas atomicops can find: set "
            "SENTINELS and SERVICE (or a CONNECTION alias on django-redis' SentinelClient)"
        )
    watch = conf["SENTINEL_WATCH"]
    if not isinstance(watch, bool):
        raise ConfigurationError(
            f"ATOMICOPS['SENTINEL_WATCH'] must be True or False, got {watch!r}"
        )
    wanted, timeout_ms = conf["WAIT_REPLICAS"], conf["WAIT_TIMEOUT_MS"]
    if isinstance(wanted, bool) or not isinstance(wanted, int) or wanted < 0:
        raise ConfigurationError(
            f"ATOMICOPS['WAIT_REPLICAS'] must be an int >= 0 (0: no WAIT), got {wanted!r}"
        )
    if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or timeout_ms < 1:
        # WAIT n 0 blocks until n replicas answer, forever: never what a request wants.
        raise ConfigurationError(
            f"ATOMICOPS['WAIT_TIMEOUT_MS'] must be an int >= 1, got {timeout_ms!r}"
        )
    socket_timeout = conf["SOCKET_TIMEOUT"]
    if wanted and socket_timeout and timeout_ms >= float(socket_timeout) * 1000:
        raise ConfigurationError(
            f"ATOMICOPS['WAIT_TIMEOUT_MS'] ({timeout_ms}) must be below SOCKET_TIMEOUT "
            f"({socket_timeout} s): a WAIT that outlasts the socket timeout reads as a lost "
            "reply (OutcomeUnknown) instead of NotReplicated"
        )


def _sentinel_kwargs(conf: Any, retry: Any) -> dict[str, Any]:
    kwargs = dict(conf["SENTINEL_KWARGS"] or {})
    for name, value in _own_client_kwargs().items():
        kwargs.setdefault(name, value)
    kwargs.setdefault("retry", retry)
    return kwargs


def build_sentinel_client(conf: Any) -> Any:
    """A ``redis.Redis`` on the primary the sentinels name (no network I/O: each new
    connection asks the sentinels, so a failover is followed when a connection drops)."""
    retry = Retry(NoBackoff(), 0)
    sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
        [tuple(address) for address in conf["SENTINELS"]],
        sentinel_kwargs=_sentinel_kwargs(conf, Retry(NoBackoff(), 0)),
        retry=retry,
        **_own_client_kwargs(),
    )
    return sentinel.master_for(conf["SERVICE"])  # type: ignore[no-untyped-call, unused-ignore]


def build_async_sentinel_client(conf: Any) -> Any:
    """The ``redis.asyncio.sentinel`` twin of :func:`build_sentinel_client`."""
    sentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
        [tuple(address) for address in conf["SENTINELS"]],
        sentinel_kwargs=_sentinel_kwargs(conf, redis.asyncio.retry.Retry(NoBackoff(), 0)),
        retry=redis.asyncio.retry.Retry(NoBackoff(), 0),
        **_own_client_kwargs(),
    )
    return sentinel.master_for(conf["SERVICE"])


def async_sentinel_twin(sync_client: Any) -> Any:
    """An asyncio client on the same sentinels, service and credentials as a sync
    sentinel-managed client (a CONNECTION alias on django-redis' SentinelClient)."""
    pool = sync_client.connection_pool
    manager = pool.sentinel_manager
    addresses = [
        (s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
        for s in manager.sentinels
    ]
    sentinel_kwargs = async_connection_kwargs(
        dict(manager.sentinel_kwargs), redis.asyncio.connection.Connection
    )
    kwargs = async_connection_kwargs(
        {k: v for k, v in pool.connection_kwargs.items() if k != "connection_pool"},
        redis.asyncio.connection.Connection,
    )
    for where in ("host", "port", "path"):
        kwargs.pop(where, None)
    sentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
        addresses, min_other_sentinels=manager.min_other_sentinels, sentinel_kwargs=sentinel_kwargs
    )
    return sentinel.master_for(pool.service_name, **kwargs)


_replica_clients: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def replica_client(client: Any) -> Any:
    """A client on the replicas of a sentinel-managed ``client`` (``slave_for``: each new
    connection goes to the next replica the sentinels list, the primary when none is
    up), made once per client; ``client`` itself when it is not sentinel-managed."""
    found = _replica_clients.get(client)
    if found is not None:
        return found
    if not compat.is_sentinel_client(client) or not client.connection_pool.is_master:
        return client
    pool = client.connection_pool
    kwargs = {
        k: v
        for k, v in pool.connection_kwargs.items()
        if k not in ("connection_pool", "host", "port")
    }
    found = pool.sentinel_manager.slave_for(pool.service_name, **kwargs)
    with _lock:
        _replica_clients[client] = found
    return found


def build_client() -> Any:
    """A new sync client from the settings (no network I/O, except a cluster client, which
    reads its slot map); :class:`ConfigurationError` when they cannot give one.
    :func:`get_client` caches what this builds."""
    conf = get_settings()
    found = rest_settings(conf)
    if found is not None:
        return _rest_client(rest.RestClient, *found)
    check_replication_settings(conf)
    if _check_sentinel_settings(conf):
        return build_sentinel_client(conf)
    if _check_cluster_setting(conf):
        return build_cluster_client(conf["URL"])
    if conf["CONNECTION"]:
        client = _client_from_cache(conf["CONNECTION"])
        if conf["READ_FROM_REPLICAS"] and not compat.is_sentinel_client(client):
            raise ConfigurationError(
                "ATOMICOPS['READ_FROM_REPLICAS'] needs replicas atomicops can find: set "
                "SENTINELS and SERVICE, or a CONNECTION alias on django-redis' SentinelClient "
                f"(cache alias {conf['CONNECTION']!r} is not)"
            )
        return client
    if conf["URL"]:
        try:
            return redis.Redis.from_url(
                conf["URL"], retry=Retry(NoBackoff(), 0), **_own_client_kwargs()
            )
        except ValueError as exc:
            raise ConfigurationError(f"ATOMICOPS['URL'] is not a Redis URL: {exc}") from exc
    try:
        return _client_from_cache("default")
    except ConfigurationError as exc:
        raise ConfigurationError(
            "atomicops has no Redis connection: set ATOMICOPS['URL'] or ATOMICOPS['CONNECTION'], "
            f"or make the 'default' cache Redis-backed ({exc.message})"
        ) from exc


def get_client(client: Any = None) -> Any:
    """Return ``client`` if given, else the configured synchronous client.

    Raises :class:`ConfigurationError` when ``client`` is not a synchronous redis-py
    client or pipeline, before anything is sent. A redis.asyncio *pipeline* is let
    through: queuing a script on it sends nothing (``await pipe.execute()`` does).
    """
    if client is not None:
        kind = client_kind(client)
        if kind != SYNC:
            if kind == SDK_SYNC:
                return rest_client_of(client)
            if not is_pipeline(client):
                raise wrong_client(client, SYNC)
        return client
    global _sync_client
    found = _sync_client
    if found is None:
        with _lock:
            if _sync_client is None:
                _sync_client = build_client()
            found = _sync_client
    return found


# The settings an asyncio connection takes over from a sync pool's connections. Named
# one by one rather than "whatever the async class accepts": a sync pool also holds
# objects bound to itself or to blocking I/O (a parser class, a connect callback, an
# event dispatcher, maintenance-notification handlers) that must not reach asyncio
# connections, and redis-py's retry settings, which atomicops replaces.
CARRIED_SETTINGS = frozenset(
    {
        # where
        "host", "port", "path", "db",
        # who
        "username", "password", "credential_provider", "client_name", "driver_info",
        "lib_name", "lib_version",
        # how long, how
        "socket_timeout", "socket_connect_timeout", "socket_keepalive",
        "socket_keepalive_options", "socket_type", "socket_read_size",
        "health_check_interval", "protocol", "legacy_responses",
        # how replies are decoded
        "encoding", "encoding_errors", "decode_responses",
        # TLS; the OCSP ones have no asyncio counterpart and are refused when set
        "ssl_keyfile", "ssl_certfile", "ssl_cert_reqs", "ssl_include_verify_flags",
        "ssl_exclude_verify_flags", "ssl_ca_certs", "ssl_ca_data", "ssl_ca_path",
        "ssl_check_hostname", "ssl_min_version", "ssl_ciphers", "ssl_password",
        "ssl_validate_ocsp", "ssl_validate_ocsp_stapled", "ssl_ocsp_context",
        "ssl_ocsp_expected_cert",
    }
)  # fmt: skip


def init_parameters(cls: type) -> set[str]:
    """Every keyword an ``__init__`` along ``cls``'s MRO names (they pass ``**kwargs`` up)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for name, param in inspect.signature(init).parameters.items():
            if param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
                names.add(name)
    names.discard("self")
    return names


def async_connection_kwargs(sync_kwargs: dict[str, Any], async_class: type) -> dict[str, Any]:
    """The asyncio twin of a sync pool's ``connection_kwargs``, with redis-py's retry off.

    Raises :class:`ConfigurationError` when a setting that is in use cannot be carried
    over (a TLS check asyncio connections lack): silently dropping it would make the
    async connection weaker than the sync one.
    """
    accepted = init_parameters(async_class)
    kwargs = {}
    for name, value in sync_kwargs.items():
        if name not in CARRIED_SETTINGS:
            continue
        if name in accepted:
            kwargs[name] = value
        elif value not in (None, False):
            raise ConfigurationError(
                f"{describe_source()} sets {name!r}, which redis.asyncio's "
                f"{async_class.__name__} does not support: async calls cannot use the same "
                "connection settings; set ATOMICOPS['URL'] or pass client= for async use"
            )
    kwargs["retry"] = redis.asyncio.retry.Retry(NoBackoff(), 0)
    return kwargs


def async_twin(sync_client: Any) -> Any:
    """An asyncio client for the same server, database and credentials as a sync client's."""
    pool = sync_client.connection_pool
    name = pool.connection_class.__name__
    async_class = getattr(redis.asyncio.connection, name, None)
    if async_class is None:
        raise ConfigurationError(
            f"cannot derive an asyncio client from the {name} connections of "
            f"{describe_source()}; set ATOMICOPS['URL'] for async use"
        )
    kwargs = async_connection_kwargs(pool.connection_kwargs, async_class)
    if isinstance(pool, redis.BlockingConnectionPool):
        async_pool: Any = redis.asyncio.BlockingConnectionPool(
            connection_class=async_class,
            max_connections=pool.max_connections,
            timeout=pool.timeout,
            **kwargs,
        )
    else:
        async_pool = redis.asyncio.ConnectionPool(
            connection_class=async_class, max_connections=pool.max_connections, **kwargs
        )
    return redis.asyncio.Redis(connection_pool=async_pool)


def async_cluster_twin(sync_cluster: Any) -> Any:
    """An asyncio cluster client for the nodes, credentials and timeouts of a sync one."""
    nodes = topology.primaries(sync_cluster)
    names = [name for name, _ in nodes]
    first = nodes[0][1]
    kwargs = async_connection_kwargs(
        first.connection_pool.connection_kwargs, redis.asyncio.connection.Connection
    )
    for where in ("host", "port", "path", "db"):
        kwargs.pop(where, None)
    # Before redis-py 8.0 the asyncio RedisCluster names its settings one by one and lacks
    # driver_info, which its connections take; lib_name and lib_version say the same there.
    takes = _ASYNC_CLUSTER_TAKES
    if takes is not None:
        kwargs = {name: value for name, value in kwargs.items() if name in takes}
    startup = [
        redis.asyncio.cluster.ClusterNode(host, int(port))
        for host, port in (name.rsplit(":", 1) for name in names)
    ]
    return redis.asyncio.cluster.RedisCluster(startup_nodes=startup, **kwargs)


def _keywords_taken(cls: type) -> set[str] | None:
    """The keywords ``cls()`` takes, or None when it takes any (``**kwargs``)."""
    params = inspect.signature(cls).parameters.values()
    if any(param.kind is param.VAR_KEYWORD for param in params):
        return None
    return init_parameters(cls)


_ASYNC_CLUSTER_TAKES = _keywords_taken(redis.asyncio.cluster.RedisCluster)


def _build_async() -> Any:
    conf = get_settings()
    found = rest_settings(conf)
    if found is not None:
        return _rest_client(rest.AsyncRestClient, *found)
    if _check_sentinel_settings(conf):
        return build_async_sentinel_client(conf)
    if _check_cluster_setting(conf):
        return build_async_cluster_client(conf["URL"])
    if conf["URL"] and not conf["CONNECTION"]:
        try:
            return redis.asyncio.Redis.from_url(
                conf["URL"], retry=redis.asyncio.retry.Retry(NoBackoff(), 0), **_own_client_kwargs()
            )
        except ValueError as exc:
            raise ConfigurationError(f"ATOMICOPS['URL'] is not a Redis URL: {exc}") from exc
    if compat.is_cluster_client(get_client()):
        return async_cluster_twin(get_client())
    if compat.is_sentinel_client(get_client()):
        return async_sentinel_twin(get_client())
    return async_twin(get_client())


def get_async_client(client: Any = None) -> Any:
    """Return ``client`` if given, else a ``redis.asyncio`` client for the running loop.

    Async connections belong to one event loop, so atomicops keeps one client per loop.
    Raises :class:`ConfigurationError` when ``client`` is not a redis.asyncio client or
    pipeline, before anything is sent.
    """
    if client is not None:
        kind = client_kind(client)
        if kind != ASYNC:
            if kind == SDK_ASYNC:
                return rest_client_of(client)
            raise wrong_client(client, ASYNC)
        return client
    loop = asyncio.get_running_loop()
    found = _async_clients.get(loop)
    if found is None:
        found = _build_async()
        with _lock:
            _async_clients[loop] = found
    return found
