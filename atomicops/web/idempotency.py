"""``@idempotent``: Idempotency-Key handling for sync and async Django views.

A client sends ``Idempotency-Key: <key>`` with an unsafe request. The first request with
that key runs the view; its response is stored and replayed, byte for byte, to repeats
of the same request. See ``docs/idempotency.md`` for the state machine of a key.

Each key is one Redis hash, ``<KEY_PREFIX>:idem:{<client>}:<key>``, both parts HMACs
keyed with a secret derived from ``SECRET_KEY``: of the client's identity (the user,
else the session, else the address; decided after the framework authenticated), and of
the identity with the key. So the key a client chose never reaches a Redis key name, one
client cannot replay or block another's, and two projects sharing a Redis never meet.
Per request:

* ``idempotency_claim``: one round trip claims the key, or answers with the stored
  response, "still running" (409) or "a different request" (422);
* the view runs; the claim is renewed in the background every third of ``lease``;
* ``idempotency_store`` (fenced by the owner token) stores the response, within the
  client's storage bound (``IDEMPOTENCY_MAX_CLIENT_BYTES``), or
  ``idempotency_release`` gives the key up when the view raised or answered 5xx.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.utils.crypto import salted_hmac

from atomicops.conf import get_settings
from atomicops.engine import connection
from atomicops.engine import run as engine_run
from atomicops.engine.redaction import for_log
from atomicops.exceptions import (
    AtomicOpsError,
    ConfigurationError,
    InvalidInput,
    OutcomeUnknown,
    RedisUnavailable,
)
from atomicops.leases import claims
from atomicops.ops import observe
from atomicops.primitives.validate import MAX_LEASE_MS
from atomicops.scripts.registry import registry
from atomicops.web.identity import DIGEST_CHARS, aidentify, digest, identify

__all__ = [
    "MAX_KEY_LENGTH",
    "MAX_STORED_BYTES",
    "RECORD_OVERHEAD",
    "REPLAYED_HEADER",
    "client_scope",
    "idempotent",
    "record_key",
    "usage_keys",
]

logger = logging.getLogger("atomicops")

View = TypeVar("View", bound=Callable[..., Any])

MAX_KEY_LENGTH = 255
# The largest response kept for replays (body plus headers). A larger one, or a streaming
# response, is not kept: its key stays used ("done") and a repeat gets 409 saying so,
# because running the view again is what the key exists to prevent.
MAX_STORED_BYTES = 1024 * 1024
# What one stored record costs a client's bound on top of its meta and body: Redis' own
# per-key and per-field overhead, so that many tiny records cannot pass the bound unseen.
RECORD_OVERHEAD = 256
REPLAYED_HEADER = "Idempotent-Replayed"
# Headers that describe one connection, not the response (RFC 9110 section 7.6.1), and
# those the server sets per response anyway.
_NOT_STORED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "date",
        REPLAYED_HEADER.lower(),
    }
)
_FORMAT = 1  # of the stored meta JSON; a record of another format is not replayed
# The HMAC's salt: records are keyed with a secret derived from SECRET_KEY for this use.
_HMAC_SALT = "atomicops.idempotency"
# Cache-Control's "private" directive, bare or with the header names it covers
# (RFC 9111 section 5.2.2.7): ``private`` or ``private="X-A, X-B"``.
_PRIVATE = re.compile(r'(?:^|,)\s*private\s*(?:=\s*(?:"([^"]*)"|([^,\s]*)))?\s*(?:,|$)', re.I)

# Claim outcomes (the first element of idempotency_claim's reply).
RUNNING = b"running"
MISMATCH = b"mismatch"
DONE = b"done"


def _ms(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise InvalidInput(f"@idempotent {what} must be a number of seconds, got {value!r}")
    if value <= 0 or value == math.inf or value > MAX_LEASE_MS / 1000:
        raise InvalidInput(
            f"@idempotent {what} must be > 0 and at most {MAX_LEASE_MS // 1000} seconds, got {value!r}"
        )
    return max(1, math.ceil(value * 1000))


def _token(value: Any, what: str) -> str:
    # An HTTP token (RFC 9110): what a header name or a method may be made of.
    if (
        not isinstance(value, str)
        or not value
        or not all(c.isascii() and (c.isalnum() or c in "!#$%&'*+-.^_`|~") for c in value)
    ):
        raise InvalidInput(f"@idempotent {what} must be an HTTP token, got {value!r}")
    return value


def valid_key(raw: str) -> bool:
    """Whether ``raw`` is a usable Idempotency-Key: 1 to 255 printable ASCII characters
    (spaces inside allowed), without surrounding whitespace."""
    return (
        0 < len(raw) <= MAX_KEY_LENGTH
        and raw.isascii()
        and raw.isprintable()
        and raw.strip() == raw
    )


def _hmac(value: str) -> str:
    # salted_hmac derives the HMAC's key from SECRET_KEY and the salt: a project without
    # the secret cannot compute (or meet) another project's record names.
    return salted_hmac(_HMAC_SALT, value, algorithm="sha256").hexdigest()[:DIGEST_CHARS]


def client_scope(identity: str) -> str:
    """The hash tag of one client's records: an HMAC of ``identity`` (128 bits, hex)."""
    return _hmac("client\n" + identity)


def record_key(identity: str, key: str) -> str:
    """The Redis key of one client's Idempotency-Key:
    ``<KEY_PREFIX>:idem:{<client>}:<key>``.

    Both parts are HMAC-SHA-256 (128 bits) keyed with a secret derived from
    ``SECRET_KEY``: neither the identity nor the key appears raw, every client has its own
    keys, and projects with different ``SECRET_KEY`` s never share a record even with the
    same ``KEY_PREFIX``. The client's part is the hash tag, so its records and its
    storage tally (:func:`usage_keys`) share a cluster slot.
    """
    prefix = get_settings()["KEY_PREFIX"]
    scope, name = client_scope(identity), _hmac(identity + "\n" + key)
    return f"{prefix}:idem:{{{scope}}}:{name}"


def usage_keys(identity: str) -> tuple[str, str]:
    """``(sizes, used)``: the keys that tally what one client has stored.

    ``sizes`` is a sorted set of the stored records (member ``<bytes>:<ms>:<record>``,
    score: when it expires, server time in ms); ``used`` the sum of their bytes. Both
    expire with the client's last record.
    """
    prefix = get_settings()["KEY_PREFIX"]
    scope = client_scope(identity)
    return f"{prefix}:idem:{{{scope}}}:sizes", f"{prefix}:idem:{{{scope}}}:used"


def client_bound() -> int:
    """``ATOMICOPS["IDEMPOTENCY_MAX_CLIENT_BYTES"]``, checked: 0 means no bound."""
    bound = get_settings()["IDEMPOTENCY_MAX_CLIENT_BYTES"]
    if bound is None:
        return 0
    if isinstance(bound, bool) or not isinstance(bound, int) or bound < 1:
        raise ConfigurationError(
            "ATOMICOPS['IDEMPOTENCY_MAX_CLIENT_BYTES'] must be an integer >= 1 or None, "
            f"got {bound!r}"
        )
    return bound


def _with_session(request: Any, identity: str) -> tuple[str, bool]:
    """``(identity, exact)``: a signed-in user's identity as it is; an anonymous client's
    is its session when it has one, else its address (shared by everyone behind it, so
    not exact). No session is created for this."""
    if identity.startswith("user:"):
        return identity, True
    session = getattr(request, "session", None)
    session_key = getattr(session, "session_key", None) if session is not None else None
    if session_key:
        # The raw session key is a secret: it only ever enters the HMAC of the record key.
        return f"session:{session_key}", True
    return identity, False


def request_identity(request: Any) -> tuple[str, bool]:
    """Who a request's records belong to, and whether that names exactly one client."""
    return _with_session(request, identify(request, "user") or "ip:unknown")


async def arequest_identity(request: Any) -> tuple[str, bool]:
    """:func:`request_identity` for async views."""
    return _with_session(request, await aidentify(request, "user") or "ip:unknown")


def fingerprint(request: Any) -> str:
    """What makes two requests "the same": method, path with query string, body digest.

    The user is not in it: it is in the record's key already. A DRF ``Request`` is read
    through the ``HttpRequest`` it wraps.
    """
    request = getattr(request, "_request", request)
    return digest(f"{request.method}\n{request.get_full_path()}\n{_body_digest(request)}")


def _body_digest(request: HttpRequest) -> str:
    """SHA-256 of the body; of the parsed fields and files for ``multipart/form-data``.

    A multipart body cannot be compared byte for byte: browsers pick a new random
    boundary for every submit, so a retry's bytes differ. And by the time a view runs,
    ``CsrfViewMiddleware`` has usually parsed it (reading ``request.POST``), after which
    the raw body can no longer be read.
    """
    if request.content_type != "multipart/form-data":
        return hashlib.sha256(request.body).hexdigest()
    hasher = hashlib.sha256(b"multipart")

    def add(*parts: str | bytes) -> None:
        for part in parts:
            data = part.encode("utf-8", "surrogatepass") if isinstance(part, str) else part
            # Length-prefixed, so no two different forms can run together into one text.
            hasher.update(len(data).to_bytes(8, "big") + data)

    for name in sorted(request.POST):
        for value in request.POST.getlist(name):
            add("field", name, value)
    for name in sorted(request.FILES):
        for upload in request.FILES.getlist(name):
            content = hashlib.sha256()
            for chunk in upload.chunks():
                content.update(chunk)
            upload.seek(0)  # the view reads it next
            add("file", name, upload.name or "", upload.content_type or "", content.digest())
    return hasher.hexdigest()


# -- responses -------------------------------------------------------------------------


def _text_response(status: int, message: str) -> HttpResponse:
    return HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8")


def _in_flight() -> HttpResponse:
    response = _text_response(
        409, "A request with this Idempotency-Key is still being processed; retry shortly."
    )
    # The view's duration is unknown; a second is short enough not to keep a client
    # waiting long and long enough not to hammer the server.
    response["Retry-After"] = "1"
    return response


def _unavailable() -> HttpResponse:
    # Closed, not open: running the view without the key would do what the key prevents.
    response = _text_response(
        503, "Idempotency-Key could not be checked; nothing was done. Retry shortly."
    )
    response["Retry-After"] = "1"
    return response


def private_headers(response: HttpResponseBase) -> frozenset[str] | None:
    """The header names (lower case) the view marked private with
    ``Cache-Control: private="X-A, X-B"``; ``None`` for a bare ``private`` (the whole
    response is for one client)."""
    names: set[str] = set()
    for match in _PRIVATE.finditer(response.get("Cache-Control", "")):
        listed = match.group(1) if match.group(1) is not None else match.group(2)
        if not listed:
            return None
        names.update(name.strip().lower() for name in listed.split(",") if name.strip())
    return frozenset(names)


def _serialize(response: HttpResponseBase, exact: bool = True) -> tuple[str, bytes]:
    """``(meta JSON, body)`` of a response to store; a note instead when it cannot be kept.

    ``exact``: the record belongs to exactly one client (a user, a session). Otherwise
    (an address, shared by every client behind it) the cookies the view set and the
    headers it marked private are not stored, and a response marked private as a whole
    is not kept at all: a replay may reach another client.
    """
    if response.streaming:
        return json.dumps({"v": _FORMAT, "kept": False, "why": "a streaming response"}), b""
    private: frozenset[str] = frozenset()
    if not exact:
        found = private_headers(response)
        if found is None:
            why = "marked Cache-Control: private, for a client known only by its address"
            return json.dumps({"v": _FORMAT, "kept": False, "why": why}), b""
        private = found | {"set-cookie"}
    body = response.content  # type: ignore[attr-defined]
    headers = [
        [k, v]
        for k, v in response.items()
        if k.lower() not in _NOT_STORED and k.lower() not in private
    ]
    cookies = [] if not exact else [m.OutputString() for m in response.cookies.values()]
    meta = json.dumps(
        {
            "v": _FORMAT,
            "kept": True,
            "status": response.status_code,
            "reason": response.reason_phrase,
            "headers": headers,
            "cookies": cookies,
        },
        separators=(",", ":"),
    )
    if len(body) + len(meta) > MAX_STORED_BYTES:
        why = f"{len(body)} bytes, more than the {MAX_STORED_BYTES} kept"
        return json.dumps({"v": _FORMAT, "kept": False, "why": why}), b""
    return meta, body


def _replay(meta_raw: Any, body: Any) -> HttpResponse:
    meta = json.loads(meta_raw)
    if meta.get("v") != _FORMAT or not meta.get("kept"):
        why = meta.get("why", "a format this version does not read")
        return _text_response(
            409,
            f"The request with this Idempotency-Key was processed, but its response ({why}) "
            "was not kept, so it cannot be replayed. Use a new key to send a new request.",
        )
    if isinstance(body, str):  # a client with decode_responses=True
        body = body.encode("utf-8")
    response = HttpResponse(body or b"", status=meta["status"], reason=meta["reason"])
    for name, value in meta["headers"]:
        response[name] = value
    for cookie in meta["cookies"]:
        response.cookies.load(cookie)
    response[REPLAYED_HEADER] = "true"
    return response


def _write_failed(op: claims.Op, error: AtomicOpsError, key: str) -> None:
    """A store or release that could not be sent: the client has its answer already, so
    this is logged, not raised. The claim stays until its lease runs out."""
    logger.warning(
        "atomicops: %s of Idempotency-Key record %s failed (%s); the key stays claimed until "
        "its lease runs out, and a retry after that runs the view again",
        "storing the response" if op[0] == "store" else "releasing the claim",
        key,
        for_log(error),
    )


# -- the flow --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    key: str  # the record's Redis key
    owner: str
    fingerprint: str
    lease_ms: int
    ttl_ms: int
    client: Any
    usage: tuple[str, str]  # the client's storage tally (usage_keys)
    scope: str  # the client's HMAC (client_scope): how logs name it
    bound: int  # IDEMPOTENCY_MAX_CLIENT_BYTES, 0: none
    exact: bool  # the identity names one client (a user, a session)


# idempotency_store's answer when the client's bound would be passed.
OVER_BOUND = 2


def _flow(plan: _Plan, client: Any) -> claims.Flow[HttpResponseBase]:
    """One request's decisions, written once for sync and async views: the scripts'
    flows on ``client``, and ``("view",)`` for the runner's ``perform`` to run the view."""
    try:
        reply = yield from _script(plan, client, ("claim",))
    except OutcomeUnknown:
        # The claim may have been written: give it back (fenced by the owner token, so
        # this frees nothing of anyone else's), and let the client retry.
        yield from _script(plan, client, ("release",))
        return _unavailable()
    except RedisUnavailable as exc:
        logger.warning("atomicops: Idempotency-Key not checked (%s); answered 503", for_log(exc))
        return _unavailable()
    outcome = reply[0].encode() if isinstance(reply[0], str) else reply[0]
    if outcome == DONE:
        return _replay(reply[1], reply[2])
    if outcome == RUNNING:
        return _in_flight()
    if outcome == MISMATCH:
        return _text_response(
            422, "This Idempotency-Key was already used with a different request."
        )
    try:
        response: HttpResponseBase = yield ("view",)
    except BaseException:
        yield from _script(plan, client, ("release",))
        raise
    if response.status_code >= 500:
        yield from _script(plan, client, ("release",))
        return response
    meta, body = _serialize(response, plan.exact)
    yield from _script(plan, client, ("store", meta, body))
    return response


def _script(plan: _Plan, client: Any, op: claims.Op) -> claims.Flow[Any]:
    """One of the record's scripts as a flow. A claim's error is the caller's; a store's
    or a release's is logged (the client has its answer already)."""
    name, args = _script_args(plan, op)
    try:
        result = yield from registry.get(name).flow(_script_keys(plan, op), args, client)
    except AtomicOpsError as exc:
        if op[0] == "claim":
            raise
        _write_failed(op, exc, plan.key)
        return None
    _after_write(plan, op, result)
    return result


def _script_args(plan: _Plan, op: claims.Op) -> tuple[str, list[Any]]:
    kind = op[0]
    if kind == "claim":
        return "idempotency_claim", [plan.owner, plan.fingerprint, plan.lease_ms]
    if kind == "store":
        member = plan.key.rpartition(":")[2]
        return "idempotency_store", [
            plan.owner, plan.ttl_ms, op[1], op[2], plan.bound, RECORD_OVERHEAD, member,
        ]  # fmt: skip
    return "idempotency_release", [plan.owner]


def _script_keys(plan: _Plan, op: claims.Op) -> list[str]:
    return [plan.key, *plan.usage] if op[0] == "store" else [plan.key]


def _after_write(plan: _Plan, op: claims.Op, result: Any) -> None:
    if op[0] == "store" and result == OVER_BOUND:
        # The client's part of the key is already an HMAC: the log names no one.
        observe.idempotency_not_stored("client_bound")
        logger.warning(
            "atomicops: the response for Idempotency-Key record %s was not stored: client "
            "%s is past IDEMPOTENCY_MAX_CLIENT_BYTES (%d bytes); the view ran, and a retry "
            "with the same key runs it again",
            plan.key,
            plan.scope,
            plan.bound,
        )
        return
    if op[0] == "store" and not result:
        logger.warning(
            "atomicops: the response for Idempotency-Key record %s was not stored: the claim "
            "had run out (the process stalled past the lease) and a retry may run the view "
            "again",
            plan.key,
        )


# -- finding the request, DRF, rendering ----------------------------------------------


def _request_index(args: tuple[Any, ...]) -> int:
    """Where the request is among a view's positional arguments.

    A function view gets it first; a method (a DRF ``APIView.post`` decorated directly)
    second, after ``self``. DRF's ``Request`` wraps an ``HttpRequest`` in ``_request``.
    """
    for index in (0, 1):
        if index < len(args):
            candidate = args[index]
            if isinstance(candidate, HttpRequest) or isinstance(
                getattr(candidate, "_request", None), HttpRequest
            ):
                return index
    raise InvalidInput("@idempotent decorates a view: it takes the request first (or after self)")


def _drf_apiview() -> type | None:
    """DRF's ``APIView`` when DRF is imported (no DRF view can exist before it is)."""
    module = sys.modules.get("rest_framework.views")
    return getattr(module, "APIView", None) if module is not None else None


def _drf_instance(view: Any, args: tuple[Any, ...], index: int) -> Any:
    """The DRF view instance whose ``dispatch`` is being called with a plain Django
    ``HttpRequest`` (DRF has not authenticated yet), or None.

    ``method_decorator(idempotent(), name="dispatch")`` calls the decorated function
    with a ``partial`` of the bound ``dispatch`` and the request first;
    ``@idempotent()`` written on ``def dispatch(self, request)`` gets ``self`` first.
    """
    apiview = _drf_apiview()
    if apiview is None or hasattr(args[index], "_request"):
        return None
    owner = args[0] if index == 1 else getattr(getattr(view, "func", view), "__self__", None)
    return owner if isinstance(owner, apiview) else None


def _refuse_drf_view_function(view: Any) -> None:
    """A DRF view function (``as_view()``, ``@api_view``) runs DRF's authentication
    inside it: decorated from outside, the identity would be read before it."""
    apiview = _drf_apiview()
    cls = getattr(view, "cls", None)
    if apiview is not None and isinstance(cls, type) and issubclass(cls, apiview):
        raise InvalidInput(
            f"@idempotent cannot decorate the DRF view function of {cls.__name__} "
            "(as_view() or @api_view): it would run before DRF authenticates, so every "
            "client would look anonymous. Put @idempotent() below @api_view (on the "
            "function itself), on the APIView's handler (def post), or use "
            'method_decorator(idempotent(), name="dispatch")'
        )


def _view_of(request: Any, default: Any) -> Any:
    """The DRF view instance a DRF ``Request`` was made for (its parser context)."""
    context = getattr(request, "parser_context", None)
    found = context.get("view") if isinstance(context, dict) else None
    return found if found is not None else default


def _render(response: Any, request: Any, view_self: Any) -> Any:
    """Render a template response now: the bytes must be stored before returning it.

    A DRF ``Response`` returned by a handler (``APIView.post``, an ``@api_view``
    function) has no renderer yet (``dispatch()`` finalizes it after the handler
    returns): finalize it with the view's own ``finalize_response`` first.
    ``dispatch()`` finalizing it again changes nothing.
    """
    if getattr(response, "is_rendered", True):
        return response
    finalize = getattr(_view_of(request, view_self), "finalize_response", None)
    if finalize is not None and not hasattr(response, "accepted_renderer"):
        response = finalize(request, response)
    response.render()
    return response


def _check_response(response: Any) -> HttpResponseBase:
    if not isinstance(response, HttpResponseBase):
        raise TypeError(f"an @idempotent view returned {type(response).__name__}, not a response")
    return response


# -- the decorator ---------------------------------------------------------------------


def idempotent(
    ttl: float = 86400,
    *,
    methods: Iterable[str] = ("POST", "PUT", "PATCH", "DELETE"),
    required: bool = False,
    header: str = "Idempotency-Key",
    lease: float = 30,
    client: Any = None,
) -> Callable[[View], View]:
    """Make a view (sync or async, function or ``APIView`` method) honour Idempotency-Key.

    For requests of ``methods`` carrying the ``header``:

    * the first request with a key runs the view; its response (status, reason, body,
      headers, cookies) is kept ``ttl`` seconds;
    * a repeat with the same key and request (method, path and query, body digest) from
      the same client gets that response again, byte for byte, with
      ``Idempotent-Replayed: true``; the view does not run. The client is the signed-in
      user (on a DRF view: DRF's authenticated user, whichever way it is decorated),
      else the session, else the address; with the address alone, cookies the view set
      and headers it marked ``Cache-Control: private`` are not stored;
    * a repeat while the first still runs: ``409`` with ``Retry-After``;
    * the same key with a different request: ``422``;
    * a malformed key (empty, over 255 characters, not printable ASCII): ``400``;
      no header: the view runs as usual, or ``400`` with ``required=True``.

    A view that raises or answers 5xx gives the key up, so the client's retry runs it
    again. The claim has a lease of ``lease`` seconds, renewed in the background while
    the view runs: a process that dies mid-view blocks the key (409) until the lease
    runs out, then the next retry runs the view. Responses over ``MAX_STORED_BYTES`` and
    streaming responses are not kept: repeats get ``409`` without ``Retry-After``. A
    client past ``IDEMPOTENCY_MAX_CLIENT_BYTES`` of stored responses gets its view run
    without the response stored (logged, counted): a retry runs it again.

    Two round trips when the view runs (claim, then store), one for a replay, 409 or
    422. When Redis cannot be reached the request is answered ``503`` (the view does not
    run). ``client``: a redis-py client for sync views, a ``redis.asyncio`` one for
    async views. Raises :class:`InvalidInput` at decoration time for bad arguments, and
    for a DRF view function (``as_view()``, ``@api_view``) decorated from outside.
    """
    ttl_ms = _ms(ttl, "ttl")
    lease_ms = _ms(lease, "lease")
    header = _token(header, "header")
    if isinstance(methods, str):
        raise InvalidInput(f"@idempotent methods must be a list of methods, got {methods!r}")
    only = frozenset(_token(m, "method").upper() for m in methods)
    if not only:
        raise InvalidInput("@idempotent methods must name at least one method")
    if not isinstance(required, bool):
        raise InvalidInput(f"@idempotent required must be True or False, got {required!r}")

    def refusal(raw: str | None) -> HttpResponse | None:
        if raw is None:
            if required:
                return _text_response(400, f"This request needs an {header} header.")
            return None
        if not valid_key(raw):
            return _text_response(
                400,
                f"{header} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters.",
            )
        return None

    def plan_for(request: Any, identity: str, exact: bool, raw: str) -> _Plan:
        return _Plan(
            key=record_key(identity, raw),
            owner=claims.new_owner(),
            fingerprint=fingerprint(request),
            lease_ms=lease_ms,
            ttl_ms=ttl_ms,
            client=client,
            usage=usage_keys(identity),
            scope=client_scope(identity),
            bound=client_bound(),
            exact=exact,
        )

    def decorate(view: View, view_self: Any = None) -> View:
        _refuse_drf_view_function(view)
        if iscoroutinefunction(view):

            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                index = _request_index(args)
                request = args[index]
                if request.method not in only:
                    return await view(*args, **kwargs)
                raw = request.headers.get(header)
                refused = refusal(raw)
                if refused is not None or raw is None:
                    return refused if refused is not None else await view(*args, **kwargs)
                identity, exact = await arequest_identity(request)
                plan = plan_for(request, identity, exact, raw)
                owner = view_self if view_self is not None else (args[0] if index else None)

                async def perform(op: claims.Op) -> Any:  # ("view",): run the view
                    held = claims.ahold(plan.key, plan.owner, plan.lease_ms, plan.client)
                    try:
                        response = await view(*args, **kwargs)
                    finally:
                        held.stop()
                    if not getattr(response, "is_rendered", True):
                        response = await sync_to_async(_render)(response, request, owner)
                    return _check_response(response)

                client = connection.get_async_client(plan.client)
                return await engine_run.arun(_flow(plan, client), perform)

            return wraps(view)(async_wrapper)  # type: ignore[return-value]

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            index = _request_index(args)
            request = args[index]
            if request.method not in only:
                return view(*args, **kwargs)
            drf_view = _drf_instance(view, args, index)
            if drf_view is not None:
                # DRF's dispatch, called before DRF authenticated: decide nothing now.
                # The handler dispatch() picks after authentication and permissions is
                # guarded instead, on this request's own view instance (as_view() makes
                # one per request), so the identity is DRF's user and a refused request
                # (401, 403) is never stored.
                handler_name = request.method.lower()
                handler = getattr(drf_view, handler_name, None)
                if handler is not None and handler_name in drf_view.http_method_names:
                    setattr(drf_view, handler_name, decorate(handler, drf_view))
                return view(*args, **kwargs)
            raw = request.headers.get(header)
            refused = refusal(raw)
            if refused is not None or raw is None:
                return refused if refused is not None else view(*args, **kwargs)
            identity, exact = request_identity(request)
            plan = plan_for(request, identity, exact, raw)
            owner = view_self if view_self is not None else (args[0] if index else None)

            def perform(op: claims.Op) -> Any:  # ("view",): run the view
                held = claims.hold(plan.key, plan.owner, plan.lease_ms, plan.client)
                try:
                    response = _render(view(*args, **kwargs), request, owner)
                finally:
                    held.stop()
                return _check_response(response)

            client = connection.get_client(plan.client)
            return engine_run.run(_flow(plan, client), perform)

        return wraps(view)(wrapper)  # type: ignore[return-value]

    return decorate
