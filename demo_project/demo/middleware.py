"""Turn "Redis is not reachable" into a page that says so, instead of a traceback."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from atomicops import RedisUnavailable, connection


class RedisDownMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, RedisUnavailable):
            return None
        context = {"error": exception, "source": connection.describe_source()}
        return render(request, "demo/redis_down.html", context, status=503)
