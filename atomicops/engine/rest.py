"""One round trip over Upstash's REST API: a :class:`~atomicops.engine.ops.Send` as one
HTTPS request, sent at most once.

A batch of one command is ``POST /`` with the command as a JSON array; a longer batch
(the scripts' ``SCRIPT LOAD`` ahead of a call, or the calls of ``atomicops.batch()``) is
``POST /pipeline``, one request. Upstash's ``/pipeline`` is not atomic, and neither is a
RESP batch: each script is atomic on its own, the loads are idempotent, and a lost answer
makes every write of the batch :class:`OutcomeUnknown` on either transport.

Replies come back in the shape :mod:`~atomicops.engine.wire` gives for RESP, so
:mod:`~atomicops.scripts.registry` reads both alike: bytes (``Upstash-Encoding: base64`` keeps
binary replies intact), ints, lists, None, and an error reply as redis-py's exception
object (``NoScriptError``, ``ResponseError``...) in its slot, not raised.

What failed decides what the caller is told, as on RESP:

* the request never left (no connection could be made, the pool had no room, the
  request could not be written) or was refused in front of Redis (a 4xx that is not
  Upstash's answer): :class:`RedisUnavailable`, nothing was applied;
* it left and no answer from Redis came back (a read timeout, the connection closed,
  a 5xx from a gateway, a body that is not Upstash's): the script may have run ->
  :class:`OutcomeUnknown` for a write; a read-only batch is sent once more;
* HTTP 401/403 and an endpoint that is not Upstash's: :class:`ConfigurationError`, a
  setting to fix. A read-only token's ``NOPERM`` is the command's error reply, which
  the registry turns into the same ConfigurationError naming the script.

There is no retry anywhere below this: the official SDK's retry re-sends a write whose
response was lost (``tests/upstash/test_sdk_fidelity.py`` measures it applying an
``INCR`` twice), so atomicops takes an SDK instance's URL and token but never its
request path.

The HTTP is httpcore's connection pool (keep-alive, thread-safe; what httpx, and so
upstash-redis, is built on), without httpx's client layer: its cookies, auth, redirects
and request building cost a hit about 300 us of CPU that a script call has no use for
(``benchmarks/bench_rest.py``). httpcore is imported when a client first sends, so the
RESP-only install does not need it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import weakref
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from atomicops.engine import compat
from atomicops.engine.ops import Command, Context, Send
from atomicops.engine.redaction import MaskedBytes, Secret, ShownURL, redact_url
from atomicops.exceptions import AtomicOpsError, ConfigurationError, InvalidInput

AUTH_HINT = (
    "check ATOMICOPS['REST_TOKEN'] (or UPSTASH_REDIS_REST_TOKEN): it must be the database's "
    "REST token from the Upstash console, not the Redis password"
)
READONLY_HINT = (
    "the REST token is Upstash's read-only token: it runs read-only scripts only; "
    "configure the read-write token for scripts that write"
)


def _described(value: Any) -> str:
    """A wrong REST URL in words that never echo a secret: a URL redacted; anything else
    (a token pasted into the URL setting) only by its type and length."""
    if isinstance(value, str) and "://" in value:
        return repr(redact_url(value))
    if isinstance(value, str):
        return f"a value of {len(value)} characters without a scheme (not shown: it may be a token)"
    return f"a {type(value).__name__}"


def _httpcore() -> Any:
    try:
        import httpcore
    except ImportError as exc:  # pragma: no cover - the upstash extra installs it
        raise ConfigurationError(
            "the Upstash REST transport needs httpcore: pip install 'atomicops[upstash]'"
        ) from exc
    return httpcore


class RestEndpoint:
    """Where requests go and how long they may take: what a REST client is to the rest of
    atomicops where a redis-py client would show its connection pool.

    The registry keeps what it knows about a server per ``client.connection_pool``, and
    the lock waits cap a BLPOP below ``connection_kwargs["socket_timeout"]``; a REST
    client answers both through this object, so neither needs to know about HTTP.
    """

    __slots__ = ("url", "connection_kwargs", "__weakref__")

    def __init__(self, url: str, timeout: float | None) -> None:
        # Redacted: this is what the dashboard, the flush check and the checks show.
        self.url = redact_url(url)
        parts = urlsplit(url)
        self.connection_kwargs: dict[str, Any] = {
            "socket_timeout": timeout,
            # How the dashboard, the flush check and the checks name a server.
            "host": parts.hostname,
            "port": parts.port or (443 if parts.scheme == "https" else 80),
            "rest_url": self.url,
        }


class _Base:
    """What the sync and the async REST client share: everything but the I/O."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float | None = 5.0,
        connect_timeout: float | None = 2.0,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise ConfigurationError(
                f"the Upstash REST URL must start with https:// (or http://), got {_described(url)}"
            )
        if isinstance(token, Secret):
            token = token.reveal()
        if not isinstance(token, str) or not token:
            raise ConfigurationError(f"the Upstash REST token is empty; {AUTH_HINT}")
        # Sent as it is; shown (repr, errors, checks) redacted: a "?_token=" is a secret.
        self.url = ShownURL(url.rstrip("/"))
        self.shown_url = redact_url(self.url)
        self.token = Secret(token)
        # What is sent with every request. The token only as MaskedBytes, whose repr is
        # masked: no frame of a request (which Django's debug page prints) shows it.
        self.headers = {
            **(extra_headers or {}),
            "Upstash-Encoding": "base64",
            "Content-Type": "application/json",
        }
        self.header_list = [
            (b"Authorization", MaskedBytes(b"Bearer " + token.encode())),
            *((k.encode(), v.encode()) for k, v in self.headers.items()),
        ]
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        # httpcore's per-request timeouts: SOCKET_TIMEOUT for each read and write and for a
        # free connection, SOCKET_CONNECT_TIMEOUT to connect.
        self.extensions = {
            "timeout": {
                "connect": connect_timeout,
                "read": timeout,
                "write": timeout,
                "pool": timeout,
            }
        }
        self.connection_pool = RestEndpoint(self.url, timeout)
        self.response_callbacks = compat.resp2_response_callbacks()
        self._pool: Any = None
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.shown_url}>"


class RestClient(_Base):
    """A synchronous client of Upstash's REST API: one keep-alive connection pool.

    Built by :mod:`atomicops.engine.connection` from ``ATOMICOPS["REST_URL"]`` and
    ``["REST_TOKEN"]`` (one per process), or from the URL and token of an
    ``upstash_redis.Redis`` passed as ``client=``. Thread-safe (httpcore's pool).
    """

    def pool(self) -> Any:
        # A forked worker must not share its parent's sockets.
        if self._pool is None or self._pid != os.getpid():
            # No bound, as redis-py's pools: a threaded server's every thread may call at once.
            self._pool = _httpcore().ConnectionPool(max_connections=None)
            self._pid = os.getpid()
        return self._pool

    # A little of redis-py's client surface, for tools that take "a client" (the admin's
    # lock listing, the demo's raw commands). atomicops' own calls never use it.

    def execute_command(self, *args: Any, **options: Any) -> Any:
        """One command as one request, never re-sent; an error reply raised as redis-py's
        exception (``ResponseError``...), a reply converted by redis-py's callbacks."""
        name = args[0] if isinstance(args[0], str) else str(args[0])
        context = Context(name, args[1] if len(args) > 1 else None, script=False)
        [reply] = roundtrip(Send(self, [(name.upper(), *args[1:])], context))
        if isinstance(reply, Exception):
            raise reply
        return reply

    def get(self, key: Any) -> Any:
        return self.execute_command("GET", key)

    def set(self, key: Any, value: Any) -> Any:
        return self.execute_command("SET", key, value)

    def delete(self, *keys: Any) -> Any:
        return self.execute_command("DEL", *keys)

    def pttl(self, key: Any) -> Any:
        return self.execute_command("PTTL", key)

    def info(self, section: str | None = None) -> Any:
        return self.execute_command("INFO", *([section] if section else []))

    def script_flush(self) -> Any:
        return self.execute_command("SCRIPT FLUSH")

    # The lock listing (atomicops.leases.locks.scan_locks): SCAN, and HMGET/PTTL batched.

    def scan(self, cursor: int = 0, match: Any = None, count: Any = None) -> Any:
        """``SCAN`` as one request: ``(next cursor, keys)`` like redis-py's."""
        command: list[Any] = ["SCAN", cursor]
        if match is not None:
            command += ["MATCH", match]
        if count is not None:
            command += ["COUNT", count]
        context = Context("SCAN", write=False, script=False)
        [reply] = roundtrip(Send(self, [tuple(command)], context))
        if isinstance(reply, Exception):
            raise reply
        return reply

    def pipeline(self, transaction: bool = False) -> RestPipeline:
        if transaction:
            raise ConfigurationError("atomicops' REST client has no MULTI/EXEC pipeline")
        return RestPipeline(self)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None


class RestPipeline:
    """Commands queued and sent as one ``/pipeline`` request (not atomic, as Upstash's)."""

    def __init__(self, client: RestClient) -> None:
        self.client = client
        self.commands: list[tuple[Any, ...]] = []

    def execute_command(self, *args: Any) -> RestPipeline:
        self.commands.append((str(args[0]).upper(), *args[1:]))
        return self

    def hmget(self, key: Any, *fields: Any) -> RestPipeline:
        return self.execute_command("HMGET", key, *fields)

    def pttl(self, key: Any) -> RestPipeline:
        return self.execute_command("PTTL", key)

    def get(self, key: Any) -> RestPipeline:
        return self.execute_command("GET", key)

    def set(self, key: Any, value: Any) -> RestPipeline:
        return self.execute_command("SET", key, value)

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        """Every queued command in one ``/pipeline`` request, sent once (it may write)."""
        if not self.commands:
            return []
        context = Context("a pipeline", script=False)
        replies = roundtrip(Send(self.client, self.commands, context))
        self.commands = []
        if raise_on_error:
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        return replies


class AsyncRestClient(_Base):
    """The asyncio twin of :class:`RestClient`: one connection pool per event loop.

    An asyncio connection belongs to the loop that opened it. atomicops keeps one client
    per loop for its own settings, but a client made for an SDK instance lives as long as
    that instance, which code may use from several loops (``async_to_sync`` makes one
    per call): so the pool is the running loop's.
    """

    def pool(self) -> Any:
        loop = asyncio.get_running_loop()
        found = self._pools.get(loop)
        if found is None:
            found = self._pools[loop] = _httpcore().AsyncConnectionPool(max_connections=None)
        return found

    @property
    def _pools(self) -> weakref.WeakKeyDictionary[Any, Any]:
        if self._pool is None:
            self._pool = weakref.WeakKeyDictionary()
        return self._pool  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        """Close the running loop's pool."""
        found = self._pools.pop(asyncio.get_running_loop(), None)
        if found is not None:
            await found.aclose()


# -- requests ------------------------------------------------------------------------


def _item(item: Any, context: Context) -> str:
    kind = type(item)
    if kind is str:
        return item  # type: ignore[no-any-return]
    if kind is bytes:
        try:
            return item.decode("utf-8")  # type: ignore[no-any-return]
        except UnicodeDecodeError:
            # JSON carries text only, and Upstash has no base64 form for arguments.
            raise InvalidInput(
                f"{context.subject()}: an argument is bytes that are not UTF-8, which "
                "Upstash's REST API (JSON) cannot carry; nothing was sent",
                key=None if context.key is None else str(context.key),
                script=context.what if context.script else None,
            ) from None
    if kind is int:
        return str(item)  # a JSON number above 2**53 would not survive a JS parser
    if kind is float:
        return repr(item)  # redis-py's encoding of a float
    return str(item)


def _command(command: Command, context: Context) -> list[str]:
    head = command[0]
    words = head.split(" ") if isinstance(head, str) else [_item(head, context)]
    return [*words, *(_item(item, context) for item in command[1:])]


def request_of(batch: Sequence[Command], context: Context) -> tuple[str, bytes]:
    """The path and JSON body of one request carrying ``batch``."""
    if len(batch) == 1:
        return "", json.dumps(_command(batch[0], context)).encode()
    return "/pipeline", json.dumps([_command(c, context) for c in batch]).encode()


# -- replies -------------------------------------------------------------------------


def decode(raw: Any) -> Any:
    """A base64-mode result as RESP would give it: bytes, ints, lists, None."""
    if type(raw) is str:
        return b"OK" if raw == "OK" else base64.b64decode(raw)
    if type(raw) is list:
        return [decode(item) for item in raw]
    return raw


def _reply(client: _Base, item: Any, command: Command) -> Any:
    if not isinstance(item, dict):
        raise ValueError(f"not an Upstash reply: {item!r}")
    error = item.get("error")
    if error is not None:
        return error_reply(str(error))
    value = decode(item["result"])
    callback = client.response_callbacks.get(command[0])
    return value if callback is None else callback(value)


def error_reply(message: str) -> Exception:
    """An error reply as redis-py's exception object (NOSCRIPT -> NoScriptError...)."""
    reply = compat.parse_error(message)
    if message.startswith("NOPERM"):
        # reply_error makes this a ConfigurationError naming the script: say what to fix.
        reply = type(reply)(f"{reply} ({READONLY_HINT})")
    return reply


class _Lost(Exception):
    """The request left and no answer from Redis came back."""


def replies_of(
    client: _Base, batch: Sequence[Command], context: Context, status: int, body: bytes
) -> list[Any]:
    """Every reply of ``batch`` from an HTTP answer; raises for what is not a reply."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if status in (401, 403) and not _is_noperm(data):
        words = data.get("error") if isinstance(data, dict) else None
        raise ConfigurationError(
            f"{context.subject()}: Upstash refused the REST credentials (HTTP {status}"
            f"{': ' + str(words) if words else ''}); nothing was applied; {AUTH_HINT}",
            script=context.what if context.script else None,
        )
    if status >= 500:
        raise _Lost(f"HTTP {status} without an answer from Redis")
    if status in (404, 405):
        raise ConfigurationError(
            f"{context.subject()}: {client.shown_url} answered HTTP {status}: it is not an Upstash "
            "REST endpoint (ATOMICOPS['REST_URL'] is the database's REST URL, "
            "https://<name>.upstash.io); nothing was applied"
        )
    upstash = isinstance(data, list) or (
        isinstance(data, dict) and ("result" in data or "error" in data)
    )
    if not upstash:
        if status >= 400:  # refused in front of Redis (413, 429...): nothing ran
            raise context.unavailable(Exception(f"HTTP {status} from {client.shown_url}"))
        raise _Lost(f"HTTP {status} with a body that is not Upstash's")
    try:
        if isinstance(data, dict):
            if len(batch) == 1:
                return [_reply(client, data, batch[0])]
            # The whole pipeline was refused (a malformed request): no command ran.
            return [error_reply(str(data.get("error")))] * len(batch)
        if len(data) != len(batch):
            raise ValueError(f"{len(data)} replies to {len(batch)} commands")
        return [_reply(client, item, command) for item, command in zip(data, batch, strict=True)]
    except (ValueError, KeyError, TypeError) as exc:  # binascii.Error is a ValueError
        raise _Lost(f"an unreadable reply ({exc})") from exc


def _is_noperm(data: Any) -> bool:
    if isinstance(data, dict):
        return str(data.get("error", "")).startswith("NOPERM")
    if isinstance(data, list):
        return any(isinstance(item, dict) and _is_noperm(item) for item in data)
    return False


def _classify(exc: Exception, context: Context, last_try: bool) -> AtomicOpsError | None:
    """The error for a failed request, or None to send a read-only batch again."""
    httpcore = _httpcore()
    if isinstance(exc, (httpcore.UnsupportedProtocol, httpcore.LocalProtocolError)):
        return ConfigurationError(f"{context.subject()}: cannot send to Upstash: {exc}")
    # Nothing reached the server: no connection, no room in the pool, or the request
    # could not be written whole (a server reads a request's whole body before running it).
    if isinstance(
        exc,
        (httpcore.ConnectError, httpcore.ConnectTimeout, httpcore.PoolTimeout,
         httpcore.WriteError, httpcore.WriteTimeout, httpcore.ProxyError),
    ):  # fmt: skip
        return context.unavailable(exc)
    if not last_try:
        return None
    return context.unknown(exc) if context.write else context.unavailable(exc)


def _transport_errors() -> tuple[type[Exception], ...]:
    httpcore = _httpcore()
    # OSError: what a socket raises that httpcore does not map (an unknown host's
    # gaierror is mapped to ConnectError).
    return (httpcore.NetworkError, httpcore.TimeoutException, httpcore.ProtocolError,
            httpcore.UnsupportedProtocol, httpcore.ProxyError, _Lost)  # fmt: skip


def roundtrip(send: Send) -> list[Any]:
    """Send ``send.commands`` as one request to the REST client ``send.target``; every reply."""
    client, batch, context = send
    path, body = request_of(batch, context)
    pool = client.pool()
    url = ShownURL(client.url + path)
    errors = _transport_errors()
    attempts = 1 if context.write else 2
    for attempt in range(attempts):
        try:
            response = pool.request(
                "POST", url, headers=client.header_list, content=body, extensions=client.extensions
            )
            return replies_of(client, batch, context, response.status, response.content)
        except errors as exc:
            error = _classify(exc, context, attempt + 1 == attempts)
            if error is not None:
                raise error from exc
    raise AssertionError("unreachable")  # pragma: no cover


async def aroundtrip(send: Send) -> list[Any]:
    """The async twin of :func:`roundtrip`, with the same rules."""
    client, batch, context = send
    path, body = request_of(batch, context)
    pool = client.pool()
    url = ShownURL(client.url + path)
    errors = _transport_errors()
    attempts = 1 if context.write else 2
    for attempt in range(attempts):
        try:
            response = await pool.request(
                "POST", url, headers=client.header_list, content=body, extensions=client.extensions
            )
            return replies_of(client, batch, context, response.status, response.content)
        except errors as exc:
            error = _classify(exc, context, attempt + 1 == attempts)
            if error is not None:
                raise error from exc
    raise AssertionError("unreachable")  # pragma: no cover


# -- the official SDK ------------------------------------------------------------------


def from_sdk(sdk: Any, *, timeout: float | None, connect_timeout: float | None) -> _Base:
    """A REST client on an ``upstash_redis`` (or ``upstash_redis.asyncio``) ``Redis``'s URL
    and token, with atomicops' own requests: no retry, and a timeout (the SDK's have
    none). Its HTTP session is not borrowed: httpx's client layer costs a call more CPU
    than the request itself, and its connections stay the SDK's."""
    url, token = compat.upstash_sdk_parts(sdk)
    cls = AsyncRestClient if compat.is_upstash_async(sdk) else RestClient
    return cls(url, token, timeout=timeout, connect_timeout=connect_timeout)
