"""Views for tests/test_idempotency*.py, mounted by tests/idempotency_urls.py.

Every view counts its runs in Redis under ``test:runs:<Idempotency-Key>`` (atomicops'
``incr``, so the count is shared by processes and works on fakeredis), and answers with
a fresh random id, so a replay is told from a second run by its body.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.template.response import TemplateResponse

from atomicops import aincr, get_counter, idempotent, incr
from atomicops.web.idempotency import MAX_STORED_BYTES


def csrf_exempt(view: Any) -> Any:
    """Django's csrf_exempt, for async views too: on Django 4.2 its wrapper is a plain
    function, so an async view under it returns an unawaited coroutine. The attribute
    is all the CSRF middleware reads."""
    view.csrf_exempt = True
    return view


HEADER = "Idempotency-Key"


def runs_key(request: HttpRequest) -> str:
    return f"test:runs:{request.headers.get(HEADER, '-')}"


def _created(request: HttpRequest, runs: int) -> JsonResponse:
    if request.content_type == "multipart/form-data":
        body = json.dumps(request.POST)
    else:
        body = request.body.decode()
    response = JsonResponse({"id": uuid.uuid4().hex, "runs": runs, "body": body}, status=201)
    response["Location"] = f"/orders/{runs}"
    response["X-Order"] = "yes"
    response.set_cookie("last_order", str(runs), httponly=True, samesite="Lax")
    return response


def _behave(request: HttpRequest) -> HttpResponse | None:
    """What the query string asks for: a pause, an error status or an exception."""
    if "sleep" in request.GET:
        time.sleep(float(request.GET["sleep"]))
    if "status" in request.GET:
        return HttpResponse(f"status {request.GET['status']}", status=int(request.GET["status"]))
    if "raise" in request.GET:
        raise RuntimeError("the view failed")
    return None


@csrf_exempt
@idempotent(ttl=60, lease=2)
def create(request: HttpRequest) -> HttpResponse:
    runs = incr(runs_key(request))
    return _behave(request) or _created(request, runs)


@csrf_exempt
@idempotent(ttl=60, lease=2)
async def create_async(request: HttpRequest) -> HttpResponse:
    runs = await aincr(runs_key(request))
    if "sleep" in request.GET:
        await asyncio.sleep(float(request.GET["sleep"]))
    if "status" in request.GET:
        return HttpResponse("failed", status=int(request.GET["status"]))
    if "raise" in request.GET:
        raise RuntimeError("the view failed")
    return _created(request, runs)


@csrf_exempt
@idempotent(required=True, header="X-Request-Key")
def required(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"ran {incr('test:runs:required')}")


@csrf_exempt
@idempotent(ttl=60, lease=0.3)
def short_lease(request: HttpRequest) -> HttpResponse:
    """Runs ``?sleep=`` seconds, longer than its lease (renewed meanwhile)."""
    runs = incr(runs_key(request))
    _behave(request)
    return HttpResponse(f"ran {runs}", status=201)


@csrf_exempt
@idempotent(ttl=60, lease=0.3)
async def short_lease_async(request: HttpRequest) -> HttpResponse:
    runs = await aincr(runs_key(request))
    await asyncio.sleep(float(request.GET.get("sleep", 0)))
    return HttpResponse(f"ran {runs}", status=201)


@csrf_exempt
@idempotent(ttl=60, lease=1)
def killable(request: HttpRequest) -> HttpResponse:
    """Says it started, then waits until the counter ``?until=<name>`` is set (the kill -9
    test kills the process while it waits)."""
    runs = incr(runs_key(request))
    incr(f"test:started:{request.headers.get(HEADER)}")
    while not get_counter(request.GET["until"]):
        time.sleep(0.01)
    return HttpResponse(f"ran {runs}", status=201)


@csrf_exempt
@idempotent()
def template(request: HttpRequest) -> TemplateResponse:
    incr(runs_key(request))
    return TemplateResponse(request, "testapp/idempotency.txt", {"id": uuid.uuid4().hex})


@csrf_exempt
@idempotent()
def big(request: HttpRequest) -> HttpResponse:
    incr(runs_key(request))
    return HttpResponse(b"x" * (MAX_STORED_BYTES + 1), content_type="application/octet-stream")


@csrf_exempt
@idempotent()
def stream(request: HttpRequest) -> StreamingHttpResponse:
    incr(runs_key(request))
    return StreamingHttpResponse(iter([b"a", b"b"]))


@csrf_exempt
@idempotent()
def binary(request: HttpRequest) -> HttpResponse:
    incr(runs_key(request))
    return HttpResponse(bytes(range(256)) + uuid.uuid4().bytes, content_type="image/x-test")


@csrf_exempt
@idempotent()
def echo_json(request: HttpRequest) -> JsonResponse:
    """For the real-HTTP test: the body it got, and a fresh id."""
    runs = incr(runs_key(request))
    return JsonResponse({"id": uuid.uuid4().hex, "runs": runs, "got": json.loads(request.body)})


try:
    from rest_framework.response import Response
    from rest_framework.views import APIView
except ImportError:  # DRF is in the test extra; without it the DRF test is skipped
    APIView = None  # type: ignore[assignment,misc]
else:

    class OrderAPI(APIView):
        authentication_classes: list = []
        permission_classes: list = []

        @idempotent(ttl=60)
        def post(self, request):  # type: ignore[no-untyped-def]
            runs = incr(runs_key(request))
            return Response({"id": uuid.uuid4().hex, "runs": runs, "data": request.data}, 201)
