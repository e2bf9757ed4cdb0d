"""Where a Redis client comes from.

In order of precedence:

1. ``client=`` passed to a call (a redis-py client, cluster client or pipeline);
2. ``ATOMICOPS["CONNECTION"]``: a ``CACHES`` alias backed by django-redis or by
   Django's own ``RedisCache``;
3. ``ATOMICOPS["URL"]``: a client atomicops builds itself, with redis-py's automatic
   retry switched off (atomicops decides itself what may be sent twice);
4. neither: the ``"default"`` cache, if it is Redis-backed.

Nothing here connects: redis-py connects lazily on the first command.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import weakref
from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.retry import Retry

from atomicops.conf import get_settings
from atomicops.exceptions import ConfigurationError

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


def _per_type(test: Callable[[type], bool]) -> Callable[[Any], bool]:
    """``test`` of a client's type, remembered per type.

    These checks run on the hot path of every call, and an isinstance against
    redis.asyncio's generic Pipeline goes through typing's slow ``__instancecheck__``.
    """
    known: dict[type, bool] = {}

    def check(client: Any) -> bool:
        kind = type(client)
        found = known.get(kind)
        if found is None:
            found = known[kind] = test(kind)
        return found

    check.__doc__ = test.__doc__
    return check


@_per_type
def is_pipeline(kind: type) -> bool:
    """Whether a client is a (sync or asyncio) pipeline."""
    return issubclass(kind, (redis.client.Pipeline, redis.asyncio.client.Pipeline))


@_per_type
def is_async(kind: type) -> bool:
    """Whether a client is a redis.asyncio one (plain or cluster)."""
    return issubclass(
        kind, (redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster)
    ) and not issubclass(kind, redis.Redis)


def is_cluster(client: Any) -> bool:
    return isinstance(client, redis.cluster.RedisCluster)


def describe_source() -> str:
    """Human words for where the default client comes from (for errors and the admin)."""
    conf = get_settings()
    if conf["CONNECTION"]:
        return f"cache alias {conf['CONNECTION']!r}"
    if conf["URL"]:
        return f"URL {_redact(conf['URL'])}"
    return "the 'default' cache"


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def _cache_backend(alias: str) -> str:
    from django.conf import settings

    caches = getattr(settings, "CACHES", {})
    if alias not in caches:
        raise ConfigurationError(
            f"ATOMICOPS['CONNECTION'] names the cache alias {alias!r}, which is not in CACHES"
        )
    return caches[alias].get("BACKEND", "")


def _client_from_cache(alias: str) -> Any:
    backend = _cache_backend(alias)
    if backend in DJANGO_REDIS_BACKENDS or backend.startswith("django_redis."):
        from django_redis import get_redis_connection

        return get_redis_connection(alias, write=True)
    if backend == DJANGO_BUILTIN_BACKEND:
        from django.core.cache import caches

        return caches[alias]._cache.get_client(write=True)
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


def _build_sync() -> Any:
    conf = get_settings()
    if conf["CONNECTION"]:
        return _client_from_cache(conf["CONNECTION"])
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
    """Return ``client`` if given, else the configured synchronous client."""
    if client is not None:
        return client
    global _sync_client
    found = _sync_client
    if found is None:
        with _lock:
            if _sync_client is None:
                _sync_client = _build_sync()
            found = _sync_client
    return found


def _async_from_sync(sync_client: Any) -> Any:
    """An asyncio client with the same connection settings as a sync client's pool."""
    pool = sync_client.connection_pool
    name = pool.connection_class.__name__
    async_class = getattr(redis.asyncio.connection, name, None)
    if async_class is None:
        raise ConfigurationError(
            f"cannot derive an asyncio client from the {name} connections of "
            f"{describe_source()}; set ATOMICOPS['URL'] for async use"
        )
    accepted = set(inspect.signature(async_class.__init__).parameters)
    kwargs = {k: v for k, v in pool.connection_kwargs.items() if k in accepted and k != "retry"}
    kwargs["retry"] = redis.asyncio.retry.Retry(NoBackoff(), 0)
    return redis.asyncio.Redis(
        connection_pool=redis.asyncio.ConnectionPool(connection_class=async_class, **kwargs)
    )


def _build_async() -> Any:
    conf = get_settings()
    if conf["URL"] and not conf["CONNECTION"]:
        try:
            return redis.asyncio.Redis.from_url(
                conf["URL"], retry=redis.asyncio.retry.Retry(NoBackoff(), 0), **_own_client_kwargs()
            )
        except ValueError as exc:
            raise ConfigurationError(f"ATOMICOPS['URL'] is not a Redis URL: {exc}") from exc
    if is_cluster(get_client()):
        raise ConfigurationError(
            "async calls on a Redis Cluster need client= (a redis.asyncio cluster client)"
        )
    return _async_from_sync(get_client())


def get_async_client(client: Any = None) -> Any:
    """Return ``client`` if given, else a ``redis.asyncio`` client for the running loop.

    Async connections belong to one event loop, so atomicops keeps one client per loop.
    """
    if client is not None:
        return client
    loop = asyncio.get_running_loop()
    found = _async_clients.get(loop)
    if found is None:
        found = _build_async()
        with _lock:
            _async_clients[loop] = found
    return found
