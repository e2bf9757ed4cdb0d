"""Turn "Redis is not reachable" into a page that says so, instead of a traceback.

Which server was tried, and what it answered, is shown to staff only: a visitor learns
that Redis is down, not where it lives.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from atomicops import RedisUnavailable
from atomicops.engine import connection


def can_see_servers(request: HttpRequest) -> bool:
    """Whether the page may name the Redis server (host, port, errors): staff only."""
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_active and user.is_staff)


class RedisDownMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, RedisUnavailable):
            return None
        context = {"error": None, "source": None}
        if can_see_servers(request):
            context = {"error": exception, "source": connection.describe_source()}
        return render(request, "demo/redis_down.html", context, status=503)
