"""A Django cache that notes when each value was stored, for tests/test_getorset*.py."""

from __future__ import annotations

import time
from typing import Any

from django.core.cache.backends.redis import RedisCache


class RecordingRedisCache(RedisCache):
    """Django's RedisCache; each ``set`` also writes the time it finished to
    ``test:set-at:<key>`` (on the same server), so waiters can be timed against it."""

    def set(self, key: Any, value: Any, timeout: Any = None, version: Any = None) -> None:
        super().set(key, value, timeout, version)
        self._cache.get_client(key, write=True).set(f"test:set-at:{key}", repr(time.time()))
