"""A Django cache that notes when each value was stored, for tests/test_getorset*.py."""

from __future__ import annotations

import time
from typing import Any

from django.core.cache.backends.redis import RedisCache


class RecordingRedisCache(RedisCache):
    """Django's RedisCache; each ``set`` first writes the time it starts to
    ``test:set-at:<key>`` (on the same server), so callers can be timed against it (and
    nobody can read the value before that time)."""

    def set(self, key: Any, value: Any, timeout: Any = None, version: Any = None) -> None:
        self._cache.get_client(key, write=True).set(f"test:set-at:{key}", repr(time.time()))
        super().set(key, value, timeout, version)
