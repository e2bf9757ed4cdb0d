"""Replies read straight off a pinned connection's socket: RESP2 and RESP3.

redis-py's pure-Python parsers read a reply a line at a time through a socket buffer
that can rewind (to resume after a timeout), one method call per element: for a
script's two-integer reply that is most of the client-side time of the read. This
reader takes what the socket has in one ``recv`` and parses it in place, with the
same results as redis-py's parser for the same connection (``tests/test_resp.py``
checks both on the same bytes): values decoded as the client's encoder says, error
replies as the exception objects redis-py builds (``parse_error`` of the connection's
parser), a ``-LOADING`` or ``-NOAUTH`` (redis-py's ``ConnectionError`` kinds) returned,
not raised, as every error reply is to the planner.

It is used only where it is the only reader of its socket: a pinned sync connection
(:mod:`atomicops.engine.pins`) without hiredis, which redis-py uses when installed
(``atomicops[fast]``: faster still), without health checks (redis-py's own PING reads
go through its parser), and on a stream it leaves in step. RESP3 push messages
(``>``, such as maintenance notifications, which atomicops does not act on) and
attributes (``|``) are read past. A reply cut short (the server closed the socket, a
timeout) raises ``ConnectionError`` / the socket's ``TimeoutError``: the wire then
drops the connection, as it does after redis-py's parser fails.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse
from redis.exceptions import TimeoutError as RedisTimeoutError

try:
    from asyncio import timeout as compat_timeout  # Python 3.11+
except ImportError:  # pragma: no cover - Python 3.10: redis-py depends on the backport
    from async_timeout import timeout as compat_timeout  # type: ignore[no-redef, import-not-found, unused-ignore]

__all__ = ["AsyncReader", "Reader"]

_CLOSED = "Connection closed by server."
_CHUNK = 65536


class Reader:
    """Reads the replies of one connection's socket (made again when it reconnects)."""

    __slots__ = ("buf", "decode", "parse_error", "pos", "resp3", "sock")

    def __init__(self, conn: Any) -> None:
        self.sock: Any = getattr(conn, "_sock", None)  # the async reader reads its stream
        self.buf = b""
        self.pos = 0
        encoder = conn.encoder
        self.decode = encoder.decode if encoder.decode_responses else None
        self.parse_error = conn._parser.parse_error
        self.resp3 = conn.protocol in (3, "3")

    @property
    def idle(self) -> bool:
        """Whether no byte of a later reply was read ahead (the stream is in step)."""
        return self.pos == len(self.buf)

    def _more(self) -> None:
        chunk = self.sock.recv(_CHUNK)
        if not chunk:
            raise RedisConnectionError(_CLOSED)
        self.buf = self.buf[self.pos :] + chunk
        self.pos = 0

    def _line(self) -> bytes:
        end = self.buf.find(b"\r\n", self.pos)
        while end < 0:
            self._more()
            end = self.buf.find(b"\r\n", self.pos)
        line = self.buf[self.pos : end]
        self.pos = end + 2
        return line

    def _bytes(self, size: int) -> bytes:
        end = self.pos + size
        while len(self.buf) < end + 2:
            self._more()
            end = self.pos + size
        data = self.buf[self.pos : end]
        self.pos = end + 2
        return data

    def read(self) -> Any:
        """The next reply, as redis-py's parser for this connection would return it."""
        try:
            if self.pos == len(self.buf):
                # The usual case: nothing read ahead. One recv brings a whole small reply.
                self.buf = self.sock.recv(_CHUNK)
                self.pos = 0
                if not self.buf:
                    raise RedisConnectionError(_CLOSED)
            return self._reply()
        except TimeoutError as exc:  # as redis-py's connection reports them
            raise RedisTimeoutError("Timeout reading from socket") from exc
        except OSError as exc:
            raise RedisConnectionError(f"Error while reading from socket: {exc.args}") from exc

    def _reply(self) -> Any:
        while True:
            line = self._line()
            kind, rest = line[:1], line[1:]
            if kind == b":":
                return int(rest)
            if kind == b"$":
                size = int(rest)
                if size < 0:
                    return None
                data = self._bytes(size)
                return data if self.decode is None else self.decode(data)
            if kind == b"*" or kind == b"~":
                count = int(rest)
                if count < 0:
                    return None
                return [self._reply() for _ in range(count)]
            if kind == b"+":
                return rest if self.decode is None else self.decode(rest)
            if kind == b"-" or kind == b"!":
                if kind == b"!":
                    rest = self._bytes(int(rest))
                return self.parse_error(rest.decode("utf-8", errors="replace"))
            if self.resp3:
                if kind == b"_":
                    return None
                if kind == b"(":
                    return int(rest)
                if kind == b",":
                    return float(rest)
                if kind == b"#":
                    return rest == b"t"
                if kind == b"=":
                    data = self._bytes(int(rest))[4:]
                    return data if self.decode is None else self.decode(data)
                if kind == b"%":
                    pairs = {}
                    for _ in range(int(rest)):
                        key = self._reply()
                        pairs[key] = self._reply()
                    return pairs
                if kind == b">" or kind == b"|":
                    # A push message or an attribute: not this call's reply.
                    for _ in range(int(rest) * (2 if kind == b"|" else 1)):
                        self._reply()
                    continue
            raise InvalidResponse(f"Protocol Error: {line!r}")


class _Short(Exception):
    """The buffer ends inside a reply (the async reader fetches more and starts over)."""


class AsyncReader(Reader):
    """The same reader over a ``redis.asyncio`` connection's stream: it parses what the
    stream has, and when a reply is not all there yet, awaits more and parses again
    (replies are small: parsing twice costs less than suspending per element, as
    redis-py's parser does)."""

    __slots__ = ("stream", "timeout")

    def __init__(self, conn: Any) -> None:
        super().__init__(conn)
        self.stream = conn._reader
        self.sock = self.stream  # what the wire compares to find a reconnected stream
        self.timeout = conn.socket_timeout

    def _more(self) -> None:
        raise _Short

    async def aread(self) -> Any:
        """The next reply, under the connection's socket timeout."""
        try:
            if self.timeout is None:
                return await self._aread()
            async with compat_timeout(self.timeout):
                return await self._aread()
        except asyncio.TimeoutError as exc:  # TimeoutError itself from Python 3.11
            raise RedisTimeoutError("Timeout reading from socket") from exc
        except OSError as exc:
            raise RedisConnectionError(f"Error while reading from socket: {exc.args}") from exc

    async def _aread(self) -> Any:
        while True:
            start = self.pos
            if start < len(self.buf):
                try:
                    return self._reply()
                except _Short:
                    self.pos = start
            chunk = await self.stream.read(_CHUNK)
            if not chunk:
                raise RedisConnectionError(_CLOSED)
            self.buf = self.buf[self.pos :] + chunk
            self.pos = 0
