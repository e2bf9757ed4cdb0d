"""@idempotent through Django's test client, on redis, valkey and fakeredis.

Multi-process proofs (8 processes racing one key, kill -9 mid-view) are in
test_idempotency_concurrency.py; the real HTTP server and DRF are here too.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import pytest
from django.test import AsyncClient, Client, RequestFactory

from atomicops import InvalidInput, get_counter, idempotent, registry
from atomicops.web.idempotency import MAX_KEY_LENGTH, fingerprint, record_key, usage_keys

pytestmark = [pytest.mark.urls("tests.idempotency_urls"), pytest.mark.django_db]

BODY = json.dumps({"item": "book", "qty": 1})


def post(client, name, key=None, body=BODY, query="", **extra):
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    return client.post(
        f"/idem/{name}/{query}", data=body, content_type="application/json", **headers, **extra
    )


def runs(key: str) -> int:
    return get_counter(f"test:runs:{key}")


def same_response(a, b) -> None:
    assert (a.status_code, a.content) == (b.status_code, b.content)
    assert a.reason_phrase == b.reason_phrase


# -- the first request, replays ------------------------------------------------------------


@pytest.mark.parametrize("view", ["create", "create_async"])
def test_repeat_gets_the_stored_response_byte_for_byte(backend, client, view):
    # A session makes the client exactly one client: its cookies are replayed to it
    # (to a client known only by its address they are not, see test_idempotency_privacy).
    client.session.save()
    first = post(client, view, "k1")
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    again = post(client, view, "k1")
    same_response(first, again)
    assert again["Idempotent-Replayed"] == "true"
    # The headers a client needs come back too: type, location, the view's own, cookies.
    for name in ("Content-Type", "Location", "X-Order"):
        assert again[name] == first[name]
    assert again.cookies["last_order"].value == "1"
    assert again.cookies["last_order"]["httponly"]
    assert runs("k1") == 1


def test_each_key_runs_the_view_once(backend, client):
    a, b = post(client, "create", "a"), post(client, "create", "b")
    assert a.content != b.content
    assert (runs("a"), runs("b")) == (1, 1)


def test_binary_bodies_replay_exactly(backend, client):
    first = post(client, "binary", "bin")
    assert post(client, "binary", "bin").content == first.content
    assert first.content[:256] == bytes(range(256))


def test_template_responses_are_rendered_and_stored(backend, client):
    first = post(client, "template", "t")
    assert first.content.startswith(b"order ")
    same_response(first, post(client, "template", "t"))
    assert runs("t") == 1


def multipart(boundary: str, fields: dict[str, str], upload: bytes = b"PDF") -> bytes:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="doc"; filename="a.pdf"\r\n'
        "Content-Type: application/pdf\r\n\r\n".encode()
        + upload
        + b"\r\n"
    )
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


def test_multipart_forms_compare_by_fields_not_boundaries(backend, client):
    def send(boundary, fields, upload=b"PDF"):
        return client.post(
            "/idem/create/",
            data=multipart(boundary, fields, upload),
            content_type=f"multipart/form-data; boundary={boundary}",
            HTTP_IDEMPOTENCY_KEY="form",
        )

    first = send("aaaa", {"item": "book", "qty": "1"})
    assert first.status_code == 201
    # A browser's retry: same fields, another random boundary, another field order.
    again = send("bbbbbbbb", {"qty": "1", "item": "book"})
    assert again["Idempotent-Replayed"] == "true"
    assert send("cccc", {"item": "book", "qty": "2"}).status_code == 422
    assert send("dddd", {"item": "book", "qty": "1"}, upload=b"other").status_code == 422
    assert runs("form") == 1


def test_multipart_read_by_middleware_can_still_be_fingerprinted():
    body = multipart("zz", {"a": "1"})
    make = lambda: RequestFactory().post(  # noqa: E731
        "/x/", data=body, content_type="multipart/form-data; boundary=zz"
    )
    parsed = make()
    assert parsed.POST["a"] == "1"  # as CsrfViewMiddleware does: request.body now raises
    assert fingerprint(parsed) == fingerprint(make())
    assert parsed.FILES["doc"].read() == b"PDF"  # the upload is rewound for the view


def test_methods_outside_the_list_run_as_usual(backend, client):
    for _ in range(2):
        assert client.get("/idem/create/", HTTP_IDEMPOTENCY_KEY="g").status_code == 201
    assert runs("g") == 2


def test_no_key_runs_the_view_as_usual(backend, client):
    post(client, "create")
    post(client, "create")
    assert runs("-") == 2


# -- 409, 422, 400 ------------------------------------------------------------------------


def test_repeat_while_the_first_runs_gets_409(backend, client):
    # The claim of the same request, still running in another process, made by hand.
    request = RequestFactory().post("/idem/create/", data=BODY, content_type="application/json")
    key = record_key("ip:127.0.0.1", "busy")
    registry.get("idempotency_claim")(keys=[key], args=["other", fingerprint(request), 5000])
    response = post(client, "create", "busy")
    assert response.status_code == 409
    assert response["Retry-After"] == "1"
    assert runs("busy") == 0
    # Its owner's response is what the repeat gets once stored.
    meta = json.dumps({"v": 1, "kept": True, "status": 201, "reason": "Created",
                       "headers": [["Content-Type", "text/plain"]], "cookies": []})  # fmt: skip
    store = registry.get("idempotency_store")
    usage = usage_keys("ip:127.0.0.1")
    assert store(keys=[key, *usage], args=["other", 60_000, meta, b"done", 0, 0, "r"])
    replay = post(client, "create", "busy")
    assert (replay.status_code, replay.content) == (201, b"done")
    assert runs("busy") == 0


def test_only_the_owner_stores_or_releases(backend):
    key = record_key("ip:127.0.0.1", "fenced")
    keys = [key, *usage_keys("ip:127.0.0.1")]
    assert registry.get("idempotency_claim")(keys=[key], args=["me", "fp", 5000]) == [b"claimed"]
    assert (
        registry.get("idempotency_store")(keys=keys, args=["thief", 60_000, "{}", b"", 0, 0, "r"])
        == 0
    )
    assert registry.get("idempotency_release")(keys=[key], args=["thief"]) == 0
    assert registry.get("claim_extend")(keys=[key], args=["thief", 9000]) == 0
    assert registry.get("claim_extend")(keys=[key], args=["me", 9000]) == 1
    assert (
        registry.get("idempotency_store")(keys=keys, args=["me", 60_000, "{}", b"", 0, 0, "r"]) == 1
    )
    # Stored: neither a release nor a late renewal changes it any more.
    assert registry.get("idempotency_release")(keys=[key], args=["me"]) == 0
    assert registry.get("claim_extend")(keys=[key], args=["me", 9000]) == 0
    assert 50_000 < backend[1].pttl(key) <= 60_000


def test_same_key_other_request_gets_422(backend, client):
    post(client, "create", "k")
    other_body = post(client, "create", "k", body=json.dumps({"item": "pen"}))
    other_query = post(client, "create", "k", query="?x=1")
    other_path = post(client, "create_async", "k")
    assert [r.status_code for r in (other_body, other_query, other_path)] == [422, 422, 422]
    assert runs("k") == 1
    # The first request still replays.
    assert post(client, "create", "k")["Idempotent-Replayed"] == "true"


@pytest.mark.parametrize(
    "key",
    ["", " ", " lead", "trail ", "x" * (MAX_KEY_LENGTH + 1), "tab\there", "nul\x00", "é"],
    ids=["empty", "space", "lead", "trail", "long", "tab", "nul", "latin1"],
)
def test_malformed_keys_get_400_and_nothing_runs(backend, client, key):
    response = post(client, "create", key)
    assert response.status_code == 400
    assert b"Idempotency-Key" in response.content
    assert runs(key) == 0
    assert backend[1].keys("*idem*") == []


def test_longest_key_is_fine_and_never_stored_raw(backend, client):
    key = "k" * MAX_KEY_LENGTH
    assert post(client, "create", key).status_code == 201
    names = [k.decode() for k in backend[1].keys("*") if not k.startswith(b"test:")]
    assert not any(key in name for name in names)
    assert record_key("ip:127.0.0.1", key) in names


def test_required_key_is_400_without_the_header(backend, client):
    assert client.post("/idem/required/").status_code == 400
    response = client.post("/idem/required/", HTTP_X_REQUEST_KEY="r")
    assert response.status_code == 200
    assert client.post("/idem/required/", HTTP_X_REQUEST_KEY="r").content == response.content
    assert get_counter("test:runs:required") == 1


# -- failures release the key ---------------------------------------------------------------


@pytest.mark.parametrize("view", ["create", "create_async"])
def test_5xx_releases_the_key_so_a_retry_runs(backend, client, view):
    assert post(client, view, "e", query="?status=503").status_code == 503
    # The same request again (the query is part of it) runs the view again.
    assert post(client, view, "e", query="?status=503").status_code == 503
    assert runs("e") == 2
    assert backend[1].keys("*idem*") == []


@pytest.mark.parametrize("view", ["create", "create_async"])
def test_an_exception_releases_the_key(backend, view):
    client = Client(raise_request_exception=False)
    assert post(client, view, "x", query="?raise=1").status_code == 500
    assert post(client, view, "x", query="?raise=1").status_code == 500
    assert runs("x") == 2
    assert backend[1].keys("*idem*") == []


def test_4xx_answers_are_kept(backend, client):
    first = post(client, "create", "four", query="?status=404")
    assert first.status_code == 404
    assert post(client, "create", "four", query="?status=404")["Idempotent-Replayed"] == "true"
    assert runs("four") == 1


def test_unkept_responses_keep_the_key_used(backend, client):
    for view, key in (("big", "big"), ("stream", "st")):
        first = post(client, view, key)
        assert first.status_code == 200
        again = post(client, view, key)
        assert again.status_code == 409
        assert "Retry-After" not in again
        assert b"not kept" in again.content
        assert runs(key) == 1


# -- scoping ---------------------------------------------------------------------------------


def test_keys_are_per_user(backend, django_user_model):
    alice, bob = Client(), Client()
    alice.force_login(django_user_model.objects.create_user("alice", password=None))
    bob.force_login(django_user_model.objects.create_user("bob", password=None))
    a = post(alice, "create", "shared")
    b = post(bob, "create", "shared")
    assert a.status_code == b.status_code == 201
    assert a.content != b.content
    assert runs("shared") == 2
    # Neither replays the other's; each replays its own.
    same_response(post(alice, "create", "shared"), a)
    same_response(post(bob, "create", "shared"), b)
    # Another body under bob's key is bob's business only: alice's still replays.
    assert post(bob, "create", "shared", body="{}").status_code == 422
    same_response(post(alice, "create", "shared"), a)


def test_anonymous_clients_are_scoped_by_address(backend):
    here = Client(REMOTE_ADDR="10.0.0.1")
    there = Client(REMOTE_ADDR="10.0.0.2")
    a, b = post(here, "create", "anon"), post(there, "create", "anon")
    assert a.content != b.content
    assert post(here, "create", "anon").content == a.content


# -- Redis unavailable ----------------------------------------------------------------------


def test_unreachable_redis_answers_503_and_the_view_does_not_run(settings, client):
    settings.ATOMICOPS = {"URL": "redis://127.0.0.1:1/0", "SOCKET_CONNECT_TIMEOUT": 0.2}
    response = post(client, "required", None, HTTP_X_REQUEST_KEY="down")
    assert response.status_code == 503
    assert response["Retry-After"] == "1"


# -- async client, real HTTP, DRF --------------------------------------------------------------


async def test_async_client_replays(backend):
    client = AsyncClient()
    first, again = [
        await client.post(
            "/idem/create_async/", data=BODY, content_type="application/json",
            headers={"Idempotency-Key": "ak"},
        )
        for _ in range(2)
    ]  # fmt: skip
    same_response(first, again)
    assert again["Idempotent-Replayed"] == "true"


async def test_async_requests_racing_one_key(backend):
    client = AsyncClient()

    async def send():
        return await client.post(
            "/idem/create_async/?sleep=0.2", data=BODY, content_type="application/json",
            headers={"Idempotency-Key": "race"},
        )  # fmt: skip

    results = await asyncio.gather(*(send() for _ in range(5)))
    statuses = sorted(r.status_code for r in results)
    assert statuses == [201] + [409] * 4


def test_real_http_server(real_client, live_server):
    url = f"{live_server.url}/idem/echo_json/"

    def send(key: str, body: dict) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(
            url,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Idempotency-Key": key},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    status, headers, body = send("http-1", {"n": 1})
    assert status == 200 and "Idempotent-Replayed" not in headers
    again = send("http-1", {"n": 1})
    assert again[0] == 200 and again[2] == body
    assert again[1]["Idempotent-Replayed"] == "true"
    assert send("http-1", {"n": 2})[0] == 422
    assert send("", {"n": 1})[0] == 400
    assert get_counter("test:runs:http-1") == 1


def test_drf_apiview_method(backend):
    pytest.importorskip("rest_framework")
    from rest_framework.test import APIClient

    client = APIClient()
    send = lambda data: client.post(  # noqa: E731
        "/idem/drf/", data, format="json", HTTP_IDEMPOTENCY_KEY="drf"
    )
    first = send({"item": "book"})
    assert first.status_code == 201
    assert json.loads(first.content)["data"] == {"item": "book"}
    again = send({"item": "book"})
    same_response(first, again)
    assert again["Idempotent-Replayed"] == "true"
    assert again["Content-Type"] == "application/json"
    assert send({"item": "pen"}).status_code == 422
    assert runs("drf") == 1
    # Forms through DRF's parsers too (multipart: compared by fields).
    form = lambda: client.post(  # noqa: E731
        "/idem/drf/", {"item": "mug"}, format="multipart", HTTP_IDEMPOTENCY_KEY="drf-form"
    )
    first_form = form()
    assert first_form.status_code == 201
    assert json.loads(first_form.content)["data"] == {"item": "mug"}
    assert form().content == first_form.content


# -- bad arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ttl": 0},
        {"ttl": -1},
        {"ttl": float("nan")},
        {"ttl": float("inf")},
        {"ttl": True},
        {"ttl": "60"},
        {"ttl": 2**60},
        {"lease": 0},
        {"lease": None},
        {"methods": "POST"},
        {"methods": []},
        {"methods": ["PO ST"]},
        {"header": ""},
        {"header": "Bad Header"},
        {"header": None},
        {"required": "yes"},
    ],
)
def test_bad_arguments_raise_when_decorating(kwargs):
    with pytest.raises(InvalidInput):
        idempotent(**kwargs)


def test_a_view_without_a_request_is_refused():
    @idempotent()
    def not_a_view(x):
        return x

    with pytest.raises(InvalidInput):
        not_a_view(1)
