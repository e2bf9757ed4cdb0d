"""Servers the fault tests own alone: restarted on the same port and dir, killed, made busy.

:class:`OwnServer` extends the suite's :class:`tests.servers.Server` with what faults
need: a restart that keeps the data directory (RDB and AOF survive), ``kill -9``, and
waiting for ``-LOADING`` or ``+PONG`` with raw sockets, so no client library's own
retries or error mapping can blur what the server said.
"""

from __future__ import annotations

import shutil
import signal
import socket
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import redis

from tests.faultproxy import Incomplete, parse_value
from tests.servers import Server


def encode(*args: Any) -> bytes:
    """One RESP command."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


def read_reply(sock: socket.socket) -> bytes:
    """The raw bytes of one complete reply (``b"-LOADING ..."``, ``b"+PONG"``...)."""
    buf = bytearray()
    while True:
        try:
            _, end = parse_value(buf)
            return bytes(buf[:end]).rstrip(b"\r\n")
        except Incomplete:
            pass
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed by the server")
        buf += data


def raw_command(port: int, *args: Any, timeout: float = 2.0) -> bytes:
    """Send one command on a new connection and return its raw reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(encode(*args))
        return read_reply(sock)


def probe(port: int) -> bytes:
    """What a PING gets now: ``b"+PONG"``, ``b"-LOADING..."``, ``b"-BUSY..."`` or ``b""``
    when nothing listens or answers."""
    try:
        return raw_command(port, "PING", timeout=0.5)
    except OSError:
        return b""


@dataclass
class OwnServer(Server):
    """A server one test (or one module) owns: same port and dir across restarts.

    :meth:`launch` starts it without waiting (it may be loading for a while)."""

    start_timeout: ClassVar[float] = 30.0  # a restart may load a large AOF first

    def ready(self) -> None:
        # Raw sockets: a -LOADING reply is "not ready yet", whatever a client makes of it.
        if not probe(self.port).startswith(b"+PONG"):
            raise redis.ConnectionError(f"{self.name} does not answer PONG yet")

    def wait_pong(self, timeout: float = 30.0) -> float:
        """Wait until PING answers PONG; return the seconds waited."""
        started = time.monotonic()
        while True:
            if probe(self.port).startswith(b"+PONG"):
                return time.monotonic() - started
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log()}")
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"{self.name} did not answer PONG in {timeout}s: {self.log()}")
            time.sleep(0.01)

    def wait_loading(self, timeout: float = 10.0) -> float:
        """Wait until PING answers ``-LOADING``; return the seconds since the launch."""
        started = time.monotonic()
        while True:
            reply = probe(self.port)
            if reply.startswith(b"-LOADING"):
                return time.monotonic() - started
            if reply.startswith(b"+PONG"):
                raise RuntimeError(
                    f"{self.name} came up without a LOADING phase: give it more keys to load"
                )
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"{self.name} never answered LOADING: {self.log()}")
            time.sleep(0.005)

    def loading(self) -> bool:
        return probe(self.port).startswith(b"-LOADING")

    def client(self, **kwargs: Any) -> redis.Redis:
        return redis.Redis(port=self.port, **kwargs)

    def kill9(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def shutdown_save(self) -> None:
        """``SHUTDOWN SAVE``: every write answered before it is in the RDB."""
        try:
            raw_command(self.port, "SHUTDOWN", "SAVE", timeout=30)
        except OSError:
            pass  # the server closes the connection as it exits
        if self.process is not None:
            self.process.wait(30)

    def remove(self) -> None:
        self.stop()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def fill(client: redis.Redis, count: int, prefix: str = "filler", size: int = 16) -> None:
    """``count`` string keys of ``size`` bytes, in pipelined batches."""
    value = b"x" * size
    for start in range(0, count, 1000):
        pipe = client.pipeline(transaction=False)
        for index in range(start, min(count, start + 1000)):
            pipe.set(f"{prefix}:{index}", value)
        pipe.execute()


def snapshot(client: redis.Redis, match: str = "*") -> dict[bytes, tuple[Any, int]]:
    """Every key matching ``match`` -> (its DUMP, its PTTL in ms: -1 when it has none)."""
    keys = sorted(client.scan_iter(match=match, count=1000))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.dump(key)
        pipe.pttl(key)
    replies = pipe.execute() if keys else []
    return {key: (replies[2 * i], replies[2 * i + 1]) for i, key in enumerate(keys)}


def diff(before: dict, after: dict, *, expiring_ms: int = 2000) -> list[str]:
    """What changed between two snapshots: created, deleted, a value changed, a TTL set
    or removed. A key that had under ``expiring_ms`` to live and is gone has expired,
    which is no change of anyone's making."""
    changes = []
    for key in sorted(set(before) | set(after)):
        if key not in after:
            pttl = before[key][1]
            if not 0 <= pttl < expiring_ms:
                changes.append(f"{key!r} deleted")
        elif key not in before:
            changes.append(f"{key!r} created")
        elif before[key][0] != after[key][0]:
            changes.append(f"{key!r} changed")
        elif (before[key][1] >= 0) != (after[key][1] >= 0):
            changes.append(f"{key!r} TTL {'removed' if before[key][1] >= 0 else 'set'}")
    return changes


class BusyScript:
    """A Lua script that spins until ``SCRIPT KILL``, run on its own raw connection."""

    SPIN = "local n = 0 while true do n = n + 1 end"

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)

    def start(self, timeout: float = 10.0) -> float:
        """Send the script; return once other clients get ``-BUSY`` (seconds waited)."""
        started = time.monotonic()
        self.sock.sendall(encode("EVAL", self.SPIN, 0))
        while not probe(self.port).startswith(b"-BUSY"):
            if time.monotonic() - started > timeout:
                raise RuntimeError("the server never answered BUSY")
            time.sleep(0.01)
        return time.monotonic() - started

    def kill(self) -> bytes:
        """``SCRIPT KILL``; returns the script's own reply (an error: killed)."""
        raw_command(self.port, "SCRIPT", "KILL")
        try:
            return read_reply(self.sock)
        finally:
            self.sock.close()
