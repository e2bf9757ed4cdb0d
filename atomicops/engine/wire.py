"""One round trip to one server, with no automatic retry of anything that may write.

redis-py retries a command on timeouts and connection errors (``Retry`` on the
connection). For a script that writes, a late reply followed by a re-send applies the
script twice. atomicops therefore does not go through ``execute_command``: it borrows a
connection of the client, writes the whole batch once and reads every reply.

What failed decides what the caller is told:

* the batch could not be written (connect refused, broken pipe): no complete command
  reached the server. Every batch atomicops sends puts its only possible write last,
  so nothing was applied -> :class:`RedisUnavailable`;
* the batch was written and a reply did not come (timeout, connection closed): the
  script may have run -> :class:`OutcomeUnknown` for a write; a read-only batch is
  sent once more on a fresh connection.

Error replies are not exceptions here: each reply slot holds either the value or the
error instance (a ``ResponseError``, or the ``BusyLoadingError`` of a ``-LOADING``
reply), so the flow can read all replies of a batch and decide what each one means.

:func:`roundtrip` and :func:`aroundtrip` are the only sync/async twins of the engine:
they are the I/O. What to send and what a failure means is shared.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from atomicops.engine import compat, failover, pins, resp, rest
from atomicops.engine.ops import Command, Context, Send
from atomicops.exceptions import AtomicOpsError

_IO_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


# The RESP head of a script call (``*<n>``, the command, the SHA, the key count) is the same
# for every call of one script with as many keys and args: packed once. Bounded, since a
# project registers a fixed set of scripts, but ``registry.register`` at run time could
# add more.
_HEADS: dict[tuple[Any, ...], bytes] = {}
_HEADS_MAX = 4096
_SCRIPT_CALLS = frozenset({"EVALSHA", "EVALSHA_RO"})


def pack_one(command: Command, encoder: Any) -> list[bytes] | None:
    """RESP for one command of str/bytes/int/float items (all atomicops sends); else None.

    Half the cost of redis-py's general packer, which every call would pay: it checks
    every item for the encoder's other types. Text is encoded with the client's encoding
    (redis-py's hiredis packer would write UTF-8 whatever the client says).
    """
    name = command[0]
    if name in _SCRIPT_CALLS:
        shape = (name, command[1], command[2], len(command))
        head = _HEADS.get(shape)
        if head is None:
            head = _pack_items((name, command[1], command[2]), len(command), encoder)
            if head is None:
                return None
            if len(_HEADS) >= _HEADS_MAX:
                _HEADS.clear()
            _HEADS[shape] = head
        out = [head]
        # The keys and args, written out: this loop is most of a call's packing.
        encoding = encoder.encoding
        for item in command[3:]:
            kind = type(item)
            if kind is str:
                data = item.encode(encoding, encoder.encoding_errors)
            elif kind is int:
                data = b"%d" % item
            elif kind is bytes:
                data = item
            else:
                tail = _pack_items((item,), 0, encoder)
                if tail is None:
                    return None
                out.append(tail)
                continue
            out.append(b"$%d\r\n%b\r\n" % (len(data), data))
        return [b"".join(out)]
    if " " in name:  # "SCRIPT LOAD": the words go as separate items, as redis-py's
        command = (*name.split(), *command[1:])
    packed = _pack_items(command, len(command), encoder)
    return None if packed is None else [packed]


def _pack_items(items: Sequence[Any], count: int, encoder: Any) -> bytes | None:
    """``items`` in RESP, after a ``*count`` array header when ``count``; None for an item
    of another type (memoryviews, bools refused by redis-py...: redis-py's rules then)."""
    encoding, errors = encoder.encoding, encoder.encoding_errors
    out = [b"*%d\r\n" % count] if count else []
    for item in items:
        kind = type(item)
        if kind is str:
            data = item.encode(encoding, errors)
        elif kind is bytes:
            data = item
        elif kind is int:
            data = b"%d" % item
        elif kind is float:
            data = repr(item).encode()  # redis-py's Encoder: the shortest exact form
        elif isinstance(item, str):  # a key built by key_for() / tagged(): a str subclass
            data = item.encode(encoding, errors)
        else:  # memoryviews, bools (refused by redis-py)...: redis-py's rules
            return None
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


def pack(conn: Any, batch: Sequence[Command]) -> Any:
    """The whole batch as bytes to write at once, every command packed alike."""
    # Client-side caching hands out proxy connections without an encoder.
    encoder = getattr(conn, "encoder", None)
    if encoder is not None:
        if len(batch) == 1:
            packed = pack_one(batch[0], encoder)
            if packed is not None:
                return packed
        else:
            parts = [pack_one(command, encoder) for command in batch]
            if None not in parts:
                return [b"".join(part[0] for part in parts if part is not None)]
    if len(batch) == 1:
        return conn.pack_command(*batch[0])
    return conn.pack_commands(batch)


def _lost(context: Context, exc: BaseException, last_try: bool) -> Exception | None:
    """The error for a reply that never came, or None to send a read-only batch again."""
    if not last_try:
        return None
    return context.unknown(exc) if context.write else context.unavailable(exc)


def roundtrip(send: Send) -> list[Any]:
    """Write ``send.commands`` at once on one connection of ``send.target``; every reply."""
    client, batch, context = send
    if type(client) is rest.RestClient:  # Upstash's REST API: one HTTP request instead
        return rest.roundtrip(send)
    try:
        held = pins.pin(client)
    except _IO_ERRORS as exc:  # its first connection could not be made: nothing written
        raise context.unavailable(exc) from exc
    if held is None:
        failover.check(client, context)  # a sentinel-managed pool: not while it fails over
        return _roundtrip(None, client, batch, context)
    try:
        return _roundtrip(held, client, batch, context)
    except AtomicOpsError:
        # Its server failed: the pin goes back to the pool (the next call pins afresh),
        # so a cluster node that left is not kept alive by this thread.
        pins.unpin(client)
        raise


def _roundtrip(
    held: pins.Pin | None, client: Any, batch: Sequence[Command], context: Context
) -> list[Any]:
    attempts = 1 if context.write else 2
    for attempt in range(attempts):
        if held is not None:
            conn = held.conn
            if held.stale():  # closed by the server while idle: write on a new one
                conn.disconnect()
        else:
            try:
                conn = compat.borrow(client)
            except _IO_ERRORS as exc:  # no connection could be had: nothing was written
                raise context.unavailable(exc) from exc
        try:
            try:
                conn.send_packed_command(pack(conn, batch))
            except _IO_ERRORS as exc:
                conn.disconnect()
                raise context.unavailable(exc) from exc
            try:
                if held is not None and held.readable:
                    return _read(held, client, conn, batch)
                return [compat.read_reply(client, conn, cmd[0]) for cmd in batch]
            except _IO_ERRORS as exc:
                # The stream is out of step now: never lend this connection out as is.
                conn.disconnect()
                error = _lost(context, exc, attempt + 1 == attempts)
                if error is not None:
                    raise error from exc
            except BaseException:
                conn.disconnect()
                raise
        finally:
            if held is None:
                compat.give_back(client, conn)
    raise AssertionError("unreachable")  # pragma: no cover


def _read(held: pins.Pin, client: Any, conn: Any, batch: Sequence[Command]) -> list[Any]:
    """Every reply of ``batch`` through the pin's own reader (:mod:`atomicops.engine.resp`),
    converted as :func:`compat.read_reply` converts them."""
    reader = held.reader
    if reader is None or reader.sock is not conn._sock:  # connected anew
        reader = held.reader = resp.Reader(conn)
    callbacks = client.response_callbacks
    replies = []
    for command in batch:
        reply = reader.read()
        if isinstance(reply, RedisConnectionError) and not isinstance(reply, compat.REPLY_ERRORS):
            raise reply  # e.g. "max number of clients reached": redis-py raises it too
        callback = None if isinstance(reply, Exception) else callbacks.get(command[0])
        replies.append(reply if callback is None else callback(reply))
    if not reader.idle:  # bytes nobody asked for: the stream is not in step any more
        conn.disconnect()
    return replies


async def aroundtrip(send: Send) -> list[Any]:
    """The ``redis.asyncio`` twin of :func:`roundtrip`, with the same rules."""
    client, batch, context = send
    if type(client) is rest.AsyncRestClient:
        return await rest.aroundtrip(send)
    held = pins.apin(client)
    if held is None:
        await failover.acheck(client, context)
    else:
        held.busy = True  # other tasks of this loop borrow from the pool meanwhile
    try:
        return await _aroundtrip(held, client, batch, context)
    finally:
        if held is not None:
            held.busy = False


async def _aroundtrip(
    held: pins.Pin | None, client: Any, batch: Sequence[Command], context: Context
) -> list[Any]:
    attempts = 1 if context.write else 2
    for attempt in range(attempts):
        fresh = context.write or attempt > 0
        try:
            if held is not None:
                conn = await pins.atake(held)
                if fresh and compat.socket_closed_under(conn):
                    await conn.disconnect()  # send_packed_command connects it afresh
            else:
                conn = await compat.aborrow(client, fresh=fresh)
        except _IO_ERRORS as exc:
            raise context.unavailable(exc) from exc
        try:
            try:
                await compat.awrite(conn, pack(conn, batch))
            except _IO_ERRORS as exc:
                await conn.disconnect()
                raise context.unavailable(exc) from exc
            try:
                if held is not None and held.readable:
                    return await _aread(held, client, conn, batch)
                return [await compat.aread_reply(client, conn, cmd[0]) for cmd in batch]
            except _IO_ERRORS as exc:
                await conn.disconnect()
                error = _lost(context, exc, attempt + 1 == attempts)
                if error is not None:
                    raise error from exc
            except BaseException:
                # Cancelled mid-read: the replies still in flight would desynchronise
                # the next user of this connection.
                await conn.disconnect()
                raise
        finally:
            if held is None:
                await compat.agive_back(client, conn)
    raise AssertionError("unreachable")  # pragma: no cover


async def _aread(held: pins.Pin, client: Any, conn: Any, batch: Sequence[Command]) -> list[Any]:
    """The async twin of :func:`_read`."""
    reader = held.reader
    if reader is None or reader.sock is not conn._reader:  # connected anew
        if not conn.is_connected:
            await conn.connect()
        reader = held.reader = resp.AsyncReader(conn)
    callbacks = client.response_callbacks
    replies = []
    for command in batch:
        reply = await reader.aread()
        if isinstance(reply, RedisConnectionError) and not isinstance(reply, compat.REPLY_ERRORS):
            raise reply
        callback = None if isinstance(reply, Exception) else callbacks.get(command[0])
        if callback is not None:
            reply = callback(reply)
            if inspect.isawaitable(reply):
                reply = await reply
        replies.append(reply)
    if not reader.idle:
        await conn.disconnect()
    return replies
