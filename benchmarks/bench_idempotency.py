"""What ``@idempotent`` and ``get_or_set`` cost, on one redis-server started for the run.

* ``@idempotent`` on a view that answers a small JSON body at once (the worst case for
  the ratio: the view itself costs nothing), against the same view undecorated:
  - the first request with a key (claim, view, store: two round trips);
  - a replay (claim, which answers with the stored response: one round trip).
  Measured twice: calling the view directly (the decorator's whole overhead), and through
  Django's handler and middleware with the test client (what a request costs end to end
  inside Django, still without a network).
* ``get_or_set`` on a hit against Django's ``cache.get_or_set`` on a hit, for LocMemCache
  (on the backend object, and through the ``django.core.cache.cache`` proxy most code
  uses, which looks the backend up per call as ``cache=`` does) and for Django's
  RedisCache on the same server. A hit is the cache's ``get`` in both; the difference is
  argument checking and the lookup of the alias.

Rounds of the contenders are interleaved; "paired" is the median of per-round ratios.
Run: .venv/bin/python benchmarks/bench_idempotency.py
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import sys

from _common import compare_rounds, paired, setup_django, start_server

N = int(os.environ.get("BENCH_N", "2000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "11"))
BODY = json.dumps({"item": "book", "quantity": 1}).encode()


def show(title: str, rates: dict[str, list[float]], anchor: str) -> dict[str, float]:
    print(f"\n{title}")
    base = statistics.median(rates[anchor])
    ratios = {}
    for name, values in rates.items():
        rate = statistics.median(values)
        ratios[name] = paired(values, rates[anchor])
        extra = (1 / rate - 1 / base) * 1e6
        print(
            f"  {name:<44} {rate:>9,.0f}/s  ratio {rate / base:.3f} (paired "
            f"{ratios[name]:.3f})  {extra:+7.1f} us per call"
        )
    return ratios


def main() -> None:
    server = start_server()
    try:
        setup_django(
            server.url,
            ROOT_URLCONF=__name__,
            ALLOWED_HOSTS=["*"],
            MIDDLEWARE=[
                "django.middleware.security.SecurityMiddleware",
                "django.middleware.common.CommonMiddleware",
            ],
            CACHES={
                "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
                "redis": {
                    "BACKEND": "django.core.cache.backends.redis.RedisCache",
                    "LOCATION": server.url,
                },
            },
        )
        import django
        from django.core.cache import caches
        from django.http import JsonResponse
        from django.test import Client, RequestFactory
        from django.urls import path

        from atomicops import get_or_set, idempotent

        def plain(request):
            return JsonResponse({"order": 1, "item": "book"}, status=201)

        decorated = idempotent(ttl=3600)(plain)
        module = sys.modules[__name__]
        module.urlpatterns = [  # type: ignore[attr-defined]
            path("plain/", plain),
            path("idem/", decorated),
        ]

        factory = RequestFactory()
        fresh = itertools.count()

        def request(key: str | None):
            headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
            return factory.post("/idem/", BODY, content_type="application/json", **headers)

        client = Client()

        def post(url: str, key: str | None):
            headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
            return client.post(url, BODY, content_type="application/json", **headers)

        decorated(request("replayed"))
        post("/idem/", "replayed-client")
        print(
            f"server {server.name} {server.version()}, Django {django.__version__}, "
            f"{N} calls x {ROUNDS} interleaved rounds, medians"
        )
        view_rates = compare_rounds(
            {
                "plain view": lambda: plain(request(None)),
                "@idempotent, first request (new key)": lambda: decorated(
                    request(f"k{next(fresh)}")
                ),
                "@idempotent, replay": lambda: decorated(request("replayed")),
            },
            N,
            ROUNDS,
        )
        view = show("@idempotent, the view called directly", view_rates, "plain view")
        client_rates = compare_rounds(
            {
                "plain view": lambda: post("/plain/", None),
                "@idempotent, first request (new key)": lambda: post("/idem/", f"c{next(fresh)}"),
                "@idempotent, replay": lambda: post("/idem/", "replayed-client"),
            },
            N // 2,
            ROUNDS,
        )
        through = show(
            "@idempotent, through Django's handler (test client)", client_rates, "plain view"
        )

        import redis

        pinger = redis.Redis(port=server.port)
        ping = statistics.median(compare_rounds({"ping": pinger.ping}, N, ROUNDS)["ping"])

        def in_pings(name: str) -> float:
            """How many PINGs' time a contender adds to the plain view."""
            extra = 1 / statistics.median(view_rates[name])
            return (extra - 1 / statistics.median(view_rates["plain view"])) * ping

        print(
            f"\none redis-py PING (one round trip, for scale): {ping:,.0f}/s, {1e6 / ping:.0f} us;"
            f" the decorator adds {in_pings('@idempotent, first request (new key)'):.1f} PINGs' "
            f"time to a first request, {in_pings('@idempotent, replay'):.1f} to a replay"
        )

        from django.core.cache import cache as default_proxy

        caches["default"].set("hot", {"rows": list(range(10))})
        caches["redis"].set("hot", {"rows": list(range(10))})
        locmem, rcache = caches["default"], caches["redis"]

        def compute():
            raise AssertionError("a hit must not compute")

        hit_rates = compare_rounds(
            {
                "LocMemCache: cache.get_or_set": lambda: locmem.get_or_set("hot", compute, 60),
                # What most code writes: the default-cache proxy looks the backend up per
                # call, as atomicops' get_or_set does with its cache= alias.
                "LocMemCache: django.core.cache.cache proxy": lambda: default_proxy.get_or_set(
                    "hot", compute, 60
                ),
                "LocMemCache: atomicops get_or_set": lambda: get_or_set("hot", compute, 60),
                "RedisCache: cache.get_or_set": lambda: rcache.get_or_set("hot", compute, 60),
                "RedisCache: atomicops get_or_set": lambda: get_or_set(
                    "hot", compute, 60, cache="redis"
                ),
            },
            N * 5,
            ROUNDS,
        )
        locmem_ratio = show(
            "get_or_set on a hit, LocMemCache",
            {k: v for k, v in hit_rates.items() if k.startswith("LocMem")},
            "LocMemCache: cache.get_or_set",
        )
        redis_ratio = show(
            "get_or_set on a hit, Django's RedisCache",
            {k: v for k, v in hit_rates.items() if k.startswith("Redis")},
            "RedisCache: cache.get_or_set",
        )
        print(
            "\nsummary (paired ratios, rate vs the anchor): "
            f"@idempotent direct first {view['@idempotent, first request (new key)']:.3f}, "
            f"replay {view['@idempotent, replay']:.3f}; through the handler first "
            f"{through['@idempotent, first request (new key)']:.3f}, "
            f"replay {through['@idempotent, replay']:.3f}; get_or_set hit LocMem "
            f"{locmem_ratio['LocMemCache: atomicops get_or_set']:.3f} (vs the proxy "
            f"{paired(hit_rates['LocMemCache: atomicops get_or_set'], hit_rates['LocMemCache: django.core.cache.cache proxy']):.3f}), "
            f"RedisCache {redis_ratio['RedisCache: atomicops get_or_set']:.3f}"
        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
