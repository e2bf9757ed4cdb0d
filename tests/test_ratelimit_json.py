"""A 429 (and the fail-closed 503) as JSON when the client asks for JSON (issue #20).

API clients send ``Accept: application/json`` and parse the body; browsers send ``*/*`` and
keep the one line of text. Either way ``Retry-After`` and the ``RateLimit-*`` headers are
the same, and ``Vary: Accept`` keeps a cache from serving one body to the other client.
"""

from __future__ import annotations

import json

import pytest
from django.test import RequestFactory

from atomicops.primitives.ratelimit import RateLimitResult
from atomicops.web.ratelimit_views import too_many_requests, wants_json
from tests.servers import free_port

pytestmark = pytest.mark.django_db

MIDDLEWARE = "atomicops.middleware.RateLimitMiddleware"
JSON = {"Accept": "application/json"}


def rejected() -> RateLimitResult:
    return RateLimitResult(
        allowed=False, count=3, remaining=0, reset_ms=41_500, limit=2, retry_after_ms=2_100, key="k"
    )


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("application/json", True),
        ("application/json, text/plain, */*", True),  # axios
        ("application/problem+json", True),
        ("text/html;q=0.9, Application/JSON;q=0.5", True),
        ("application/json;q=0", False),
        ("application/json;q=oops", False),
        ("*/*", False),  # fetch(), curl
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", False),  # a browser
        ("", False),
    ],
)
def test_wants_json(accept, expected):
    request = RequestFactory().get("/", headers={"Accept": accept} if accept else {})
    assert wants_json(request) is expected


def test_too_many_requests_body_and_headers():
    request = RequestFactory().get("/", headers=JSON)
    response = too_many_requests(rejected(), request)
    assert response.status_code == 429
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content) == {
        "detail": "Too many requests; retry in 3 s.",
        "retry_after": 3,
        "limit": 2,
        "remaining": 0,
        "reset": 42,
    }
    assert response["Retry-After"] == "3" and response["RateLimit-Reset"] == "42"
    assert "Accept" in response["Vary"]
    text = too_many_requests(rejected())  # no request: text, as before
    assert text["Content-Type"].startswith("text/plain") and text["Retry-After"] == "3"


def test_decorated_view_answers_json_to_an_api_client(backend, client):
    for _ in range(2):
        assert client.get("/rl/ip/", headers=JSON).status_code == 200
    limited = client.get("/rl/ip/", headers=JSON)
    assert limited.status_code == 429 and limited["Content-Type"] == "application/json"
    body = limited.json()
    assert body["retry_after"] == int(limited["Retry-After"]) >= 1
    assert body["limit"] == 2 and body["remaining"] == 0
    browser = client.get("/rl/ip/", headers={"Accept": "text/html,*/*;q=0.8"})
    assert browser.status_code == 429 and browser["Content-Type"].startswith("text/plain")
    assert b"retry in" in browser.content


async def test_async_view_answers_json(backend, async_client):
    for _ in range(2):
        await async_client.get("/rl/user_async/", headers=JSON)
    limited = await async_client.get("/rl/user_async/", headers=JSON)
    assert limited.status_code == 429 and limited.json()["retry_after"] >= 1


def test_middleware_answers_json(backend, client, settings):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, MIDDLEWARE]
    assert client.get("/rl/service/", headers=JSON).content == b"sent"
    limited = client.get("/rl/service/", headers=JSON)
    assert limited.status_code == 429 and limited.json()["retry_after"] >= 90


def test_fail_closed_503_is_json_too(client, settings):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings.ATOMICOPS = {"URL": dead, "LOAD_ON_STARTUP": False, "SOCKET_CONNECT_TIMEOUT": 0.5}
    closed = client.get("/rl/fail_closed/", headers=JSON)
    assert closed.status_code == 503 and closed["Retry-After"] == "1"
    assert closed.json() == {"detail": "Rate limit unavailable; retry shortly.", "retry_after": 1}
