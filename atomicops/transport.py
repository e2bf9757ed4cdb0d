"""One round trip to one server, with no automatic retry of anything that may write.

redis-py retries a command on timeouts and connection errors (``Retry`` on the
connection). For a script that writes, a late reply followed by a re-send applies the
script twice. atomicops therefore does not go through ``execute_command``: it takes a
connection from the client's pool, writes the whole batch once and reads every reply.

What failed decides what the caller is told:

* the batch could not be written (connect refused, broken pipe): no complete command
  reached the server. Every batch atomicops sends puts its only possible write last,
  so nothing was applied -> :class:`RedisUnavailable`;
* the batch was written and a reply did not come (timeout, connection closed): the
  script may have run -> :class:`OutcomeUnknown` for a write; a read-only batch is
  sent once more on a fresh connection.

Error replies are not exceptions here: each reply slot holds either the value or the
error instance (a ``ResponseError``, or the ``BusyLoadingError`` of a ``-LOADING``
reply), so the caller can read all replies of a batch and decide what each one means.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from atomicops.exceptions import OutcomeUnknown, RedisUnavailable
from atomicops.keys import text

Command = Sequence[Any]
# Errors the server *replied* with: the connection is fine and in step.
_REPLY_ERRORS = (ResponseError, BusyLoadingError, AuthenticationError)
_IO_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


class _Context:
    """What to name in an error: the script and the first key of the call."""

    __slots__ = ("script", "key", "write")

    def __init__(self, script: str | None, key: Any, write: bool) -> None:
        self.script = script
        self.key = key
        self.write = write

    def unavailable(self, exc: BaseException) -> RedisUnavailable:
        return RedisUnavailable(
            f"Redis unreachable; script {self.script!r} on key {self.key!r} was not applied: {exc}",
            script=self.script,
            key=text(self.key),
        )

    def unknown(self, exc: BaseException) -> OutcomeUnknown:
        return OutcomeUnknown(
            f"script {self.script!r} on key {self.key!r} was sent but no reply came ({exc}); "
            "it may or may not have been applied, and atomicops did not re-send it",
            script=self.script,
            key=text(self.key),
        )


def _pack_one(command: Command, encoder: Any) -> list[bytes] | None:
    """RESP for one command of str/bytes/int items (all a script call has); else None.

    Half the cost of redis-py's general packer, which every call would pay: it splits
    the command name on spaces and checks every item for the encoder's other types.
    """
    if " " in command[0]:  # "SCRIPT LOAD": redis-py sends the words as separate items
        return None
    encoding, errors = encoder.encoding, encoder.encoding_errors
    out = [b"*%d\r\n" % len(command)]
    for item in command:
        kind = type(item)
        if kind is str:
            data = item.encode(encoding, errors)
        elif kind is bytes:
            data = item
        elif kind is int:
            data = b"%d" % item
        else:  # floats, memoryviews...: redis-py's rules
            return None
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return [b"".join(out)]


def _pack(conn: Any, batch: Sequence[Command]) -> Any:
    if len(batch) == 1:
        # Client-side caching hands out proxy connections without an encoder.
        encoder = getattr(conn, "encoder", None)
        packed = _pack_one(batch[0], encoder) if encoder is not None else None
        return packed or conn.pack_command(*batch[0])
    return conn.pack_commands(batch)


def _read_one(client: Any, conn: Any, name: Any) -> Any:
    # redis-py raises the replies it classes as connection errors (LOADING, NOAUTH) and,
    # by default, drops the connection on them, so the batch's later replies could not
    # be read and a write behind a LOADING would look lost. The error reply itself was
    # read whole: the stream is in step, and the next reply can be read.
    try:
        reply = conn.read_response(disconnect_on_error=False)
    except _REPLY_ERRORS as exc:
        return exc
    callback = client.response_callbacks.get(name)
    return reply if callback is None else callback(reply)


def roundtrip(client: Any, batch: Sequence[Command], ctx: _Context) -> list[Any]:
    """Send ``batch`` in one write on one connection of ``client``; return every reply."""
    attempts = 1 if ctx.write else 2
    for attempt in range(attempts):
        own = getattr(client, "connection", None)  # single_connection_client
        pool = client.connection_pool
        if own is not None:
            client.single_connection_lock.acquire()
        try:
            conn = own or pool.get_connection()
        except _IO_ERRORS as exc:
            if own is not None:
                client.single_connection_lock.release()
            raise ctx.unavailable(exc) from exc
        try:
            try:
                conn.send_packed_command(_pack(conn, batch))
            except _IO_ERRORS as exc:
                conn.disconnect()
                raise ctx.unavailable(exc) from exc
            try:
                return [_read_one(client, conn, cmd[0]) for cmd in batch]
            except _IO_ERRORS as exc:
                # The stream is out of step now: never hand this connection out again as is.
                conn.disconnect()
                if attempt + 1 < attempts:
                    continue
                if ctx.write:
                    raise ctx.unknown(exc) from exc
                raise ctx.unavailable(exc) from exc
            except BaseException:
                conn.disconnect()
                raise
        finally:
            if own is not None:
                client.single_connection_lock.release()
            else:
                pool.release(conn)
    raise AssertionError("unreachable")  # pragma: no cover


async def _aread_one(client: Any, conn: Any, name: Any) -> Any:
    try:
        reply = await conn.read_response(disconnect_on_error=False)
    except _REPLY_ERRORS as exc:
        return exc
    callback = client.response_callbacks.get(name)
    if callback is None:
        return reply
    converted = callback(reply)
    return await converted if inspect.isawaitable(converted) else converted


async def aroundtrip(client: Any, batch: Sequence[Command], ctx: _Context) -> list[Any]:
    """The ``redis.asyncio`` twin of :func:`roundtrip`, with the same rules."""
    attempts = 1 if ctx.write else 2
    for attempt in range(attempts):
        if hasattr(client, "initialize"):
            await client.initialize()
        own = getattr(client, "connection", None)
        pool = client.connection_pool
        if own is not None:
            await client._single_conn_lock.acquire()
        try:
            conn = own or await pool.get_connection()
        except _IO_ERRORS as exc:
            if own is not None:
                client._single_conn_lock.release()
            raise ctx.unavailable(exc) from exc
        try:
            try:
                await conn.send_packed_command(_pack(conn, batch))
            except _IO_ERRORS as exc:
                await conn.disconnect()
                raise ctx.unavailable(exc) from exc
            try:
                return [await _aread_one(client, conn, cmd[0]) for cmd in batch]
            except _IO_ERRORS as exc:
                await conn.disconnect()
                if attempt + 1 < attempts:
                    continue
                if ctx.write:
                    raise ctx.unknown(exc) from exc
                raise ctx.unavailable(exc) from exc
            except BaseException:
                # Cancelled mid-read: the replies still in flight would desynchronise
                # the next user of this connection.
                await conn.disconnect()
                raise
        finally:
            if own is not None:
                client._single_conn_lock.release()
            else:
                await pool.release(conn)
    raise AssertionError("unreachable")  # pragma: no cover
