"""DRF's throttling tests on a real server, with the throttles on DRF's fake ``timer()``.

DRF's tests are ``django.test.TestCase`` classes, which take no parametrized fixtures:
they run on the suite's redis-server only (tests/test_drf.py covers valkey and
fakeredis for the same classes).
"""

from __future__ import annotations

import pytest
import redis
from rest_framework.settings import api_settings

from atomicops.drf import SimpleRateThrottle
from tests.conftest import CI


@pytest.fixture(autouse=True)
def _drf_throttles_on_redis(servers, settings, atomicops_throttle_timer):
    server = servers.get("redis")
    if server is None:
        message = "no redis-server binary on this machine"
        if CI:
            pytest.fail(f"{message}; with CI=true every real server must run")
        pytest.skip(message)
    if server.process is None or server.process.poll() is not None:
        server.start()
    client = redis.Redis(port=server.port)
    # DRF's setUp clears Django's cache to start each test with no history; the
    # throttles' history is in Redis.
    client.flushall()
    client.close()
    settings.ATOMICOPS = {"URL": server.url, "LOAD_ON_STARTUP": False, "STATS_FLUSH_INTERVAL": 0}
    yield
    # DRF's tests leave state behind on shared objects (SimpleRateThrottle.scope = 'anon',
    # setattr(api_settings, 'NUM_PROXIES', n)); in DRF's suite nothing after them minds,
    # here other test modules use the same classes and settings.
    if "scope" in vars(SimpleRateThrottle):
        del SimpleRateThrottle.scope
    api_settings.reload()
    vars(api_settings).pop("NUM_PROXIES", None)
