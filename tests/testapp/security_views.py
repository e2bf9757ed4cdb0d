"""Views for tests/test_security.py (issue 24), mounted by tests/security_urls.py.

Every idempotent view counts its runs in Redis under ``test:runs:<Idempotency-Key>`` and
answers with a fresh random id, so a replay is told from a second run by its body.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from rest_framework.authentication import BaseAuthentication
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from atomicops import idempotent, incr
from tests.testapp.idempotency_views import csrf_exempt, runs_key

TOKEN_PREFIX = "tok-"


class TokenAuthentication(BaseAuthentication):
    """DRF authentication by ``Authorization: Token tok-<username>``: the shape of DRF's
    own TokenAuthentication (a bearer token in a header, no session, no cookie), with
    the token derived from the user name so the test app needs no token table."""

    keyword = "Token"

    def authenticate(self, request: Any) -> tuple[Any, str] | None:
        words = request.META.get("HTTP_AUTHORIZATION", "").split()
        if len(words) != 2 or words[0] != self.keyword:
            return None
        token = words[1]
        if not token.startswith(TOKEN_PREFIX):
            raise AuthenticationFailed("Invalid token.")
        user = get_user_model().objects.filter(username=token[len(TOKEN_PREFIX) :]).first()
        if user is None:
            raise AuthenticationFailed("Invalid token.")
        return user, token

    def authenticate_header(self, request: Any) -> str:
        return self.keyword


def _order(request: Any) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex,
        "runs": incr(runs_key(request)),
        "user": request.user.username,
        "data": request.data,
    }


class _Authenticated(APIView):
    authentication_classes = [TokenAuthentication]
    permission_classes = [IsAuthenticated]


@method_decorator(idempotent(ttl=60), name="dispatch")
class DispatchOrders(_Authenticated):
    """The form docs/idempotency.md shows: the whole dispatch decorated."""

    def post(self, request: Any) -> Response:
        return Response(_order(request), status=201)


class MethodOrders(_Authenticated):
    """The handler decorated."""

    @idempotent(ttl=60)
    def post(self, request: Any) -> Response:
        return Response(_order(request), status=201)


class DirectDispatchOrders(_Authenticated):
    """``@idempotent`` written on an overridden ``dispatch`` itself."""

    @idempotent(ttl=60)
    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return super().dispatch(request, *args, **kwargs)

    def post(self, request: Any) -> Response:
        return Response(_order(request), status=201)


@api_view(["POST"])
@authentication_classes([TokenAuthentication])
@permission_classes([IsAuthenticated])
@idempotent(ttl=60)
def api_orders(request: Any) -> Response:
    """A function view: ``@idempotent`` below ``@api_view``."""
    return Response(_order(request), status=201)


# -- privacy of anonymous replays --------------------------------------------------------


@csrf_exempt
@idempotent(ttl=60)
def private_headers(request: HttpRequest) -> HttpResponse:
    """Sets a cookie and a header it marks private; the body is shareable."""
    runs = incr(runs_key(request))
    response = JsonResponse({"id": uuid.uuid4().hex, "runs": runs}, status=201)
    response.set_cookie("cart", uuid.uuid4().hex, httponly=True)
    response["X-Account"] = f"account-{uuid.uuid4().hex}"
    response["X-Public"] = "yes"
    response["Cache-Control"] = 'private="X-Account"'
    return response


@csrf_exempt
@idempotent(ttl=60)
def wholly_private(request: HttpRequest) -> HttpResponse:
    """A response marked ``Cache-Control: private`` as a whole."""
    runs = incr(runs_key(request))
    response = JsonResponse({"id": uuid.uuid4().hex, "runs": runs}, status=201)
    response["Cache-Control"] = "private"
    return response


@csrf_exempt
@idempotent(ttl=60)
def sized(request: HttpRequest) -> HttpResponse:
    """Answers ``?size=`` bytes."""
    runs = incr(runs_key(request))
    body = uuid.uuid4().hex.encode() + b"x" * int(request.GET["size"])
    return HttpResponse(body, status=201 if runs else 200, content_type="application/octet-stream")


@csrf_exempt
@idempotent(ttl=1)
def sized_short(request: HttpRequest) -> HttpResponse:
    """``sized`` with a one-second replay window."""
    incr(runs_key(request))
    return HttpResponse(b"y" * int(request.GET["size"]), status=201)
