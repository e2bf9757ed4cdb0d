"""``RateLimitMiddleware``: a ``RateLimited`` raised anywhere in a view becomes a 429.

Service code can enforce a limit where the work happens (``token_bucket(...)
.raise_for_limit()`` before sending an SMS, deep inside a form's ``save()``) without
knowing about HTTP. Without this middleware that exception is a 500.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.utils.deprecation import MiddlewareMixin

from atomicops.exceptions import RateLimited
from atomicops.web.ratelimit_views import too_many_requests

__all__ = ["RateLimitMiddleware"]


class RateLimitMiddleware(MiddlewareMixin):
    """Answer :class:`RateLimited` with ``429``, ``Retry-After`` and ``RateLimit-*`` headers.

    Works for sync and async views (``MiddlewareMixin`` adapts). The body is JSON when the
    request's ``Accept`` asks for it. Other exceptions pass on.
    """

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, RateLimited):
            return too_many_requests(exception.result, request)
        return None
