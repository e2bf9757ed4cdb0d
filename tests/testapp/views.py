"""Views for tests. Rate limits: see tests/test_ratelimit_views.py."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from atomicops import rate_limit, token_bucket

# -- rate limits ----------------------------------------------------------------------


@rate_limit(2, 60_000)
def rl_user(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"ok {request.ratelimit.remaining}")


@rate_limit(2, 60_000)
async def rl_user_async(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"ok {request.ratelimit.remaining}")


@rate_limit(2, 60_000, key="ip")
def rl_ip(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


@rate_limit(2, 60_000, key="header:X-Api-Key")
def rl_header(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


def _tenant(request: HttpRequest) -> str | None:
    return request.GET.get("tenant")  # no tenant: not limited


@rate_limit(2, 60_000, key=_tenant)
def rl_callable(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


async def _atenant(request: HttpRequest) -> str | None:
    return request.GET.get("tenant")


@rate_limit(2, 60_000, key=_atenant)
async def rl_callable_async(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


@csrf_exempt
@rate_limit(1, 60_000, key="ip", methods=["POST"])
def rl_post_only(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


@rate_limit(2, 60_000, key="ip", algorithm="sliding_window")
def rl_sliding(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


@rate_limit(2, key="ip", algorithm="token_bucket", refill_rate=0.01)
def rl_bucket(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


# Two limits on one view: a burst limit and a sustained one. Headers show the tighter.
@rate_limit(10, 60_000, key="ip", group="rl-sustained")
@rate_limit(3, 10_000, key="ip", group="rl-burst")
def rl_stacked(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


# Views sharing a group share a limit.
@rate_limit(2, 60_000, key="ip", group="rl-shared")
def rl_shared_a(request: HttpRequest) -> HttpResponse:
    return HttpResponse("a")


@rate_limit(2, 60_000, key="ip", group="rl-shared")
def rl_shared_b(request: HttpRequest) -> HttpResponse:
    return HttpResponse("b")


@rate_limit(5, 60_000, key="ip")
def rl_default_fail(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ran")


@rate_limit(5, 60_000, key="ip", fail_open=False)
def rl_fail_closed(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ran")


@rate_limit(5, 60_000, key="ip", fail_open=True)
def rl_fail_open(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ran")


@rate_limit(5, 60_000, key="ip")
async def rl_default_fail_async(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ran")


def rl_service(request: HttpRequest) -> HttpResponse:
    # Service code enforcing a limit where the work happens, unaware of HTTP.
    token_bucket("tests:sms:{42}", 1, 0.01).raise_for_limit()
    return HttpResponse("sent")


async def rl_service_async(request: HttpRequest) -> HttpResponse:
    from atomicops import atoken_bucket

    (await atoken_bucket("tests:sms:{43}", 1, 0.01)).raise_for_limit()
    return HttpResponse("sent")


# -- client identity (tests/test_ratelimit_identity.py) --------------------------------


# Burst + sustained without group=: each limit must count in its own key, with its own window.
@rate_limit(100, 3_600_000, key="ip")
@rate_limit(5, 10_000, key="ip")
def rl_burst_sustained(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


@rate_limit(100, 3_600_000, key="ip")
@rate_limit(5, 10_000, key="ip")
async def rl_burst_sustained_async(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


@rate_limit(100, 3_600_000, key="ip", group="rl-sustained-named")
@rate_limit(5, 10_000, key="ip")
def rl_burst_sustained_one_named(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


@rate_limit(2, 60_000, key="header:X-Api-Key")
async def rl_header_async(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")
