"""Test settings with atomicops on fakeredis through django-redis, for the W002 check.

Used by a subprocess (``python -m django check --settings=tests.settings_fakeredis``),
where no test runner is involved, so the warning must appear.
"""

from fakeredis import FakeConnection

from tests.settings import *  # noqa: F403

CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",  # never connected: fakeredis answers
        "OPTIONS": {
            "CONNECTION_POOL_KWARGS": {"connection_class": FakeConnection},
        },
    }
}
ATOMICOPS = {"CONNECTION": "default", "LOAD_ON_STARTUP": False}
