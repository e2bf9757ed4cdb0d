"""The one settings object: ``settings.ATOMICOPS`` merged over documented defaults.

Read through :func:`get_settings`, cached, and reset on ``setting_changed`` so that
``override_settings`` works. The user's dict is never mutated.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed

DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        # Name of a CACHES alias backed by django-redis or Django's RedisCache.
        "CONNECTION": None,
        # redis://, rediss:// or unix:// URL for atomicops' own client (used when
        # CONNECTION is None). When both are None the "default" cache is used if
        # it is Redis-backed.
        "URL": None,
        # URL names one node of a Redis Cluster (any node): atomicops builds a
        # redis.cluster.RedisCluster (and a redis.asyncio one for async calls) from it.
        "CLUSTER": False,
        # Upstash's REST API instead of RESP (docs/http.md): every call is an HTTPS request
        # to REST_URL ("https://<db>.upstash.io") with REST_TOKEN. REST = True takes both
        # from UPSTASH_REDIS_REST_URL / UPSTASH_REDIS_REST_TOKEN when they are not set here.
        # SOCKET_TIMEOUT bounds each request, SOCKET_CONNECT_TIMEOUT its connect.
        "REST_URL": None,
        "REST_TOKEN": None,
        "REST": False,
        # Redis Sentinel (docs/replication.md): [(host, port), ...] of the sentinels that
        # watch SERVICE (the name in their "sentinel monitor" line). atomicops asks them
        # for the primary (redis-py's Sentinel.master_for) and follows failovers. Not with
        # URL or CLUSTER. SENTINEL_KWARGS: connection options for the sentinels themselves
        # (password, socket_timeout...); the primary gets SOCKET_TIMEOUT and friends.
        "SENTINELS": None,
        "SERVICE": None,
        "SENTINEL_KWARGS": None,
        # Listen to the sentinels' announcements and hold calls (unsent, so retried within
        # RETRY_DEADLINE_MS) from a failover's start until every sentinel names the new
        # primary: Sentinel leaves the old one accepting writes for ~10 s and then drops
        # them (atomicops.engine.failover). One pub/sub connection per sentinel and process.
        "SENTINEL_WATCH": True,
        # Read-only scripts (get_counter, lock checks, user scripts with "readonly: yes")
        # run with EVALSHA_RO on a replica instead of the primary. Needs SENTINELS (or a
        # CONNECTION alias on django-redis' SentinelClient). Off: a replica's answer can be
        # as old as its replication lag (docs/replication.md).
        "READ_FROM_REPLICAS": False,
        # Every write script is followed by WAIT WAIT_REPLICAS WAIT_TIMEOUT_MS in the same
        # round trip; fewer acknowledgements raise NotReplicated (the write WAS applied on
        # the primary and a failover may lose it). 0: no WAIT. The timeout must stay below
        # SOCKET_TIMEOUT, or a slow WAIT would read as a lost reply.
        "WAIT_REPLICAS": 0,
        "WAIT_TIMEOUT_MS": 1000,
        # Socket timeouts for clients atomicops creates itself (seconds).
        "SOCKET_TIMEOUT": 5.0,
        "SOCKET_CONNECT_TIMEOUT": 2.0,
        # Prefix of every key atomicops builds (model keys, locks, probes).
        "KEY_PREFIX": "atomicops",
        # Discover ``lua/*.lua`` in every installed app when the app registry is ready.
        "DISCOVER_SCRIPTS": True,
        # {script name: app label}: the explicit opt-in that lets that app's
        # lua/<name>.lua replace the script of that name (atomicops' own, or another
        # app's). Without it, two apps shipping one name is the check atomicops.E006.
        "OVERRIDE_SCRIPTS": MappingProxyType({}),
        # Load every registered script onto the server when a process serves its
        # first request (in a background thread; a dead server only logs a warning).
        "LOAD_ON_STARTUP": True,
        # What @rate_limit does when Redis cannot be reached: True lets the request
        # through (logged), False answers 503. Open by default because a limiter guards
        # against overuse; refusing everything would turn a Redis outage into a site
        # outage. Set fail_open=False on views where abuse costs more (login, OTP).
        "RATELIMIT_FAIL_OPEN": True,
        # atomicops.celery when Redis cannot be reached (docs/celery.md): a task's
        # global_rate_limit lets it run (logged) when True, sends it back to its queue
        # when False; a singleton enqueues and runs unclaimed (logged) when True, raises
        # RedisUnavailable to the producer and holds queued ones back when False. A rate
        # limit guards against overuse (open); a singleton against a second concurrent
        # run, which Redis alone can rule out (closed).
        "CELERY_RATE_LIMIT_FAIL_OPEN": True,
        "CELERY_SINGLETON_FAIL_OPEN": False,
        # Who the client is behind reverse proxies (atomicops.web.identity.request_address,
        # used by @rate_limit, the DRF throttles and idempotency). Behind a proxy every
        # request has the proxy's REMOTE_ADDR, and key="ip" would limit the whole site as
        # one client. TRUSTED_PROXY_COUNT: how many proxies append to X-Forwarded-For in
        # front of Django (0: not read, since a client can send any value). Or
        # CLIENT_IP_HEADER: a header your proxy sets to the client's address, overwriting
        # what the client sent ("X-Real-IP", "CF-Connecting-IP"). Not both.
        "TRUSTED_PROXY_COUNT": 0,
        "CLIENT_IP_HEADER": None,
        # Observability (docs/observability.md). Prometheus metrics and OpenTelemetry
        # spans are recorded when their package is installed, unless turned off here.
        "PROMETHEUS": True,
        "OPENTELEMETRY": True,
        # Seconds between the background flushes of this process's counts to Redis, where
        # the admin dashboard sums every process (atomicops.ops.timeline). Read when Django
        # starts (0 or None: no flusher thread) and by each flush after that.
        "STATS_FLUSH_INTERVAL": 10.0,
        # The most bytes of stored responses one client may have in @idempotent's records
        # at a time (body, headers and RECORD_OVERHEAD per record), across its keys. Past
        # it the view runs and its response is not stored (logged and counted); None: no
        # bound. The default keeps one client's records (with Redis' own overhead on
        # top) well under 16 MB.
        "IDEMPOTENCY_MAX_CLIENT_BYTES": 8 * 1024 * 1024,
        # How long (ms, from the call's start) a call whose failure proves it did not run
        # (connection refused, LOADING, READONLY, CLUSTERDOWN, no primary named yet...;
        # docs/reliability.md lists them) is sent again, after jittered pauses, before its
        # error is raised. A call that may have been applied (OutcomeUnknown) is never sent
        # again. 2000: rides through a restart and the loading of a modest dataset, or a
        # cluster failover with cluster-node-timeout 1000, while a web worker is not held
        # long when Redis is gone for good. Behind Sentinel (a failover takes
        # down-after-milliseconds plus the election, 5-30 s by default) raise it if your
        # workers may wait that long. 0: no retries (every such failure raised at once).
        "RETRY_DEADLINE_MS": 2000,
        # Async calls made while another is in flight on the same client and event loop
        # share the next write (atomicops.primitives.autopipeline); a lone call is written
        # at once, so it costs a lone caller nothing.
        "AUTO_PIPELINE": True,
    }
)


@lru_cache(maxsize=1)
def get_settings() -> Mapping[str, Any]:
    """Return the merged, read-only settings mapping."""
    user = getattr(django_settings, "ATOMICOPS", None) or {}
    merged = dict(DEFAULTS)
    merged.update(user)
    return MappingProxyType(merged)


def _reset(*, setting: str, **kwargs: Any) -> None:
    # CACHES too: a CONNECTION alias reads it. (atomicops.engine.connection drops its cached
    # clients on the same signal, with a receiver of its own.)
    if setting in ("ATOMICOPS", "CACHES"):
        get_settings.cache_clear()


setting_changed.connect(_reset, dispatch_uid="atomicops.conf.reset")
