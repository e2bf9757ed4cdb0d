"""A slow report cached with ``get_or_set``: computed once however many ask at once.

Django's ``cache.get_or_set`` lets every request that misses compute the value: when a
popular cached page expires, all its visitors run the slow query at the same moment (a
cache stampede). ``atomicops.get_or_set`` lets one of them compute; the others wait on
Redis and are woken with the value the moment it is stored.

The report lives in the demo's default Django cache; Redis only coordinates. A Redis
counter (``demo:report:computed``) counts how often the report was really
computed, so the page can show that ten loads computed it once.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from atomicops import get_counter, get_or_set, incr
from demo_project.demo.models import Booking, Document, Event, Post
from demo_project.demo.orders import orders_placed

CACHE_KEY = "demo:report"
# How long the report is cached, and how many loads the page's button sends at once.
REPORT_TIMEOUT = 30
LOADS = 10


COMPUTED = "demo:report:computed"


def times_computed() -> int:
    return get_counter(COMPUTED)


def build_report() -> dict:
    """The slow part: a few counts, after ``DEMO_REPORT_DELAY`` seconds (the slow query)."""
    time.sleep(float(getattr(settings, "DEMO_REPORT_DELAY", 1.5)))
    run = incr(COMPUTED)
    return {
        "run": run,
        "computed_at": timezone.now().isoformat(timespec="milliseconds"),
        "rows": [
            ["Posts", Post.objects.count()],
            ["Documents", Document.objects.count()],
            ["Events", Event.objects.count()],
            ["Seats booked", Booking.objects.count()],
            ["Orders placed", orders_placed()],
        ],
    }


@require_GET
def report_page(request: HttpRequest) -> HttpResponse:
    started = time.monotonic()
    report = get_or_set(CACHE_KEY, build_report, REPORT_TIMEOUT)
    waited_ms = round((time.monotonic() - started) * 1000)
    if "application/json" in request.headers.get("Accept", ""):
        return JsonResponse({**report, "waited_ms": waited_ms, "computed": times_computed()})
    context = {
        "report": report,
        "waited_ms": waited_ms,
        "computed": times_computed(),
        "timeout": REPORT_TIMEOUT,
        "loads": LOADS,
    }
    return render(request, "demo/report.html", context)


@require_POST
def expire_report(request: HttpRequest) -> HttpResponse:
    cache.delete(CACHE_KEY)
    return redirect("demo:report")
