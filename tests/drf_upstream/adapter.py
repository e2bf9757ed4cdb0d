"""The names DRF's tests/test_throttling.py imports, as atomicops.drf provides them.

``BaseThrottle`` is DRF's own: atomicops.drf's throttles subclass it through DRF's
``SimpleRateThrottle`` and have no base of their own.
"""

from rest_framework.throttling import BaseThrottle

from atomicops.drf import (
    AnonRateThrottle,
    ScopedRateThrottle,
    SimpleRateThrottle,
    UserRateThrottle,
)

__all__ = [
    "AnonRateThrottle",
    "BaseThrottle",
    "ScopedRateThrottle",
    "SimpleRateThrottle",
    "UserRateThrottle",
]
