"""A TCP proxy between a Redis client and a server that injects network faults on demand.

It runs an asyncio server in a background thread and forwards bytes both ways, parsing
RESP just enough to know where each command and each reply ends. :meth:`FaultProxy.arm`
makes the next batch that carries a script call (``EVALSHA``, ``EVAL``, ``FCALL``...;
the ``SCRIPT LOAD`` commands sent in front of it go with it) meet one fault, once:

* ``drop``: the batch reaches the server and runs; its replies are read from the server
  and thrown away, then the client's connection is closed. The write was applied.
* ``reset``: the batch is never forwarded; the client's connection is reset (RST).
  Nothing was applied, but the client has already written it and cannot tell.
* ``delay``: the batch runs; its replies are held for ``delay`` seconds (past the
  client's socket timeout) and only then written, if the client is still there.
* ``half_open``: the batch is swallowed and the server side of the connection closed,
  while the client is never told: no reply, no FIN, no RST. Only a socket timeout ends
  the client's wait. Nothing was applied.

:meth:`FaultProxy.down` is the server being unreachable: open connections are reset and
new ones are reset as soon as they are accepted, so nothing can be written at all.

Faults fire on the connection that carries the batch; other connections pass through.
:meth:`FaultProxy.wait_fired` waits until the armed fault has fully happened (for
``drop`` and ``delay``: until the server's replies came back, so the data can be read).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from dataclasses import dataclass, field

MODES = ("drop", "reset", "delay", "half_open")
# The commands that run a script. A batch's SCRIPT LOADs travel with it and meet the
# same fault, but only a call makes the batch a target.
SCRIPT_CALLS = frozenset({b"EVALSHA", b"EVALSHA_RO", b"EVAL", b"EVAL_RO", b"FCALL", b"FCALL_RO"})


class Incomplete(Exception):
    """The buffer ends in the middle of a RESP value."""


def _line(buf: bytes | bytearray, pos: int) -> tuple[bytes, int]:
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise Incomplete
    return bytes(buf[pos:end]), end + 2


def parse_value(buf: bytes | bytearray, pos: int = 0) -> tuple[object, int]:
    """One RESP2/RESP3 value starting at ``pos``: (value, position after it).

    Arrays become lists, bulk strings bytes, everything else its raw line; good enough
    to find command names and to count replies.
    """
    if pos >= len(buf):
        raise Incomplete
    kind = buf[pos : pos + 1]
    if kind in (b"$", b"=", b"!"):  # bulk string, verbatim string, bulk error
        head, pos = _line(buf, pos + 1)
        size = int(head)
        if size < 0:
            return None, pos
        if len(buf) < pos + size + 2:
            raise Incomplete
        return bytes(buf[pos : pos + size]), pos + size + 2
    if kind in (b"*", b"~", b">", b"%", b"|"):  # aggregates
        head, pos = _line(buf, pos + 1)
        count = int(head)
        if count < 0:
            return None, pos
        if kind in (b"%", b"|"):
            count *= 2
        items = []
        for _ in range(count):
            item, pos = parse_value(buf, pos)
            items.append(item)
        if kind == b"|":  # an attribute precedes the real reply
            return parse_value(buf, pos)
        return items, pos
    if kind in (b"+", b"-", b":", b",", b"#", b"_", b"("):
        return _line(buf, pos + 1)
    # Inline command (``PING\r\n``): one line of words.
    line, pos = _line(buf, pos)
    return line.split(), pos


def take_values(buf: bytearray) -> list[object]:
    """Remove and return every complete RESP value at the start of ``buf``."""
    values = []
    pos = 0
    while True:
        try:
            value, end = parse_value(buf, pos)
        except Incomplete:
            break
        values.append(value)
        pos = end
    del buf[:pos]
    return values


def _command_name(command: object) -> bytes:
    if isinstance(command, list) and command and isinstance(command[0], bytes):
        return command[0].upper()
    return b""


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST instead of FIN (SO_LINGER 0)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@dataclass
class _Fault:
    mode: str
    delay: float
    done: threading.Event = field(default_factory=threading.Event)


class _Conn:
    """One client connection and its upstream connection."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.sent = 0  # commands forwarded to the server
        self.replied = 0  # replies read back from the server
        self.fault: _Fault | None = None
        self.fault_at = 0  # the fault covers replies up to this count
        self.dead = False  # client side reset or closed by us
        self.black_hole = False  # half-open: swallow everything, say nothing
        self.gone = asyncio.Event()  # set once the connection is closed or reset

    def kill(self, *, rst: bool) -> None:
        if self.dead:
            return
        self.dead = True
        self.gone.set()
        if rst:
            _reset(self.client)
        else:
            self.client.close()
        if self.upstream is not None:
            self.upstream.close()


class FaultProxy:
    """``FaultProxy(host, port).start()``; ``proxy.url`` is what the client connects to."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[_Conn] = set()
        self._handlers: set[asyncio.Task] = set()
        self._armed: _Fault | None = None
        self._last_fault: _Fault | None = None
        self._down = False
        self.faults_fired = 0

    # -- control, from the test's thread ---------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def arm(self, mode: str, *, delay: float = 1.0) -> None:
        """The next batch carrying a script command meets ``mode`` (once)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        fault = _Fault(mode, delay)

        async def set_it() -> None:
            self._armed = self._last_fault = fault

        self._call(set_it())

    def disarm(self) -> None:
        async def clear() -> None:
            self._armed = None

        self._call(clear())

    def wait_fired(self, timeout: float = 5.0) -> bool:
        """Whether the last armed fault has fully happened within ``timeout``."""
        fault = self._last_fault
        return fault is not None and fault.done.wait(timeout)

    def down(self) -> None:
        """Unreachable: reset every open connection, reset new ones on accept."""

        async def go_down() -> None:
            self._down = True
            for conn in list(self._conns):
                conn.kill(rst=True)

        self._call(go_down())

    def up(self) -> None:
        async def go_up() -> None:
            self._down = False

        self._call(go_up())

    def close(self) -> None:
        async def shut() -> None:
            if self._server is not None:
                self._server.close()
            for conn in list(self._conns):
                conn.kill(rst=True)
            if self._handlers:  # each ends once its sockets are closed
                await asyncio.wait(list(self._handlers), timeout=2)

        with contextlib.suppress(Exception):
            self._call(shut())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, coro: object, timeout: float = 5.0) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    # -- the proxy itself, on its loop ------------------------------------------

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        except Exception:  # a connection failing is what the tests provoke
            pass
        finally:
            self._handlers.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._down:
            _reset(writer)
            return
        conn = _Conn(writer)
        try:
            up_reader, conn.upstream = await asyncio.open_connection(*self.upstream)
        except OSError:
            _reset(writer)
            return
        self._conns.add(conn)
        try:
            await asyncio.gather(
                self._client_to_server(conn, reader), self._server_to_client(conn, up_reader)
            )
        finally:
            self._conns.discard(conn)
            conn.kill(rst=False)

    async def _client_to_server(self, conn: _Conn, reader: asyncio.StreamReader) -> None:
        try:
            await self._pump_commands(conn, reader)
        finally:
            conn.kill(rst=False)  # the client left (or was cut off): the server side goes too

    async def _pump_commands(self, conn: _Conn, reader: asyncio.StreamReader) -> None:
        pending = bytearray()  # bytes of a command not complete yet
        while not conn.dead:
            try:
                data = await reader.read(65536)
            except OSError:
                break
            if not data:
                break
            if conn.black_hole:
                continue  # half-open: the bytes go nowhere, and nobody says so
            pending += data
            rest = bytearray(pending)
            commands = take_values(rest)
            if not commands:
                continue
            raw = bytes(pending[: len(pending) - len(rest)])
            pending = rest
            fault = self._armed
            if fault is not None and any(_command_name(c) in SCRIPT_CALLS for c in commands):
                self._armed = None
                self.faults_fired += 1
                if await self._fire(conn, fault, raw, len(commands)):
                    continue
                break
            conn.sent += len(commands)
            conn.upstream.write(raw)
            await self._drain(conn.upstream)

    async def _fire(self, conn: _Conn, fault: _Fault, raw: bytes, count: int) -> bool:
        """Apply ``fault`` to a batch of ``count`` commands; False ends the client pump."""
        if fault.mode == "reset":
            conn.kill(rst=True)
            fault.done.set()
            return False
        if fault.mode == "half_open":
            conn.black_hole = True
            if conn.upstream is not None:
                conn.upstream.close()  # the server side is gone; the client is not told
            fault.done.set()
            return True
        # drop / delay: the batch reaches the server; the reply pump does the rest.
        conn.sent += count
        conn.fault = fault
        conn.fault_at = conn.sent
        conn.upstream.write(raw)
        await self._drain(conn.upstream)
        return True

    async def _server_to_client(self, conn: _Conn, reader: asyncio.StreamReader) -> None:
        try:
            await self._pump_replies(conn, reader)
        finally:
            if not conn.black_hole:  # half-open: the client must not hear of it
                conn.kill(rst=False)

    async def _pump_replies(self, conn: _Conn, reader: asyncio.StreamReader) -> None:
        pending = bytearray()  # bytes of a reply not complete yet
        held: list[bytes] = []  # replies a delay fault holds back
        while not conn.dead:
            try:
                data = await reader.read(65536)
            except OSError:
                break
            if not data:
                break
            if conn.black_hole:
                continue
            pending += data
            conn.replied += len(take_values(pending))
            fault = conn.fault
            if fault is None:
                conn.client.write(data)
                await self._drain(conn.client)
                continue
            if fault.mode == "delay":
                held.append(data)
                if conn.replied >= conn.fault_at:
                    conn.fault = None
                    fault.done.set()  # the batch ran: the data can be checked now
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(conn.gone.wait(), fault.delay)
                    if not conn.client.is_closing():
                        conn.client.write(b"".join(held))
                        await self._drain(conn.client)
                    held.clear()
                continue
            # drop: the replies are read and thrown away, then the connection closes.
            if conn.replied >= conn.fault_at:
                conn.kill(rst=False)
                fault.done.set()
                break

    @staticmethod
    async def _drain(writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            await writer.drain()
