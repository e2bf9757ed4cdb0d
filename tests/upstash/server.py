"""A local stand-in for Upstash's REST API, in front of a real redis-server the suite started.

There is no Upstash here, so the tests of the REST transport and the fidelity tests of
the official ``upstash-redis`` SDK run against this. It speaks the documented protocol:

* ``POST /`` with a JSON array ``["SET", "k", "v"]``: ``{"result": ...}`` with 200, or
  ``{"error": "..."}`` with 400 when the command failed;
* ``POST /pipeline`` and ``POST /multi-exec`` with an array of such arrays: 200 and an
  array of ``{"result"}`` / ``{"error"}`` objects (``/multi-exec`` runs them in
  MULTI/EXEC on one connection; ``/pipeline`` is not atomic);
* ``Authorization: Bearer <token>`` (or ``?_token=``): a missing or unknown token gets
  401 ``WRONGPASS invalid or missing auth token``; the read-only token gets
  ``NOPERM this user has no permissions to run the '<cmd>' command`` for any command
  Redis flags ``write``, and for EVAL/EVALSHA/FCALL/SCRIPT FLUSH/..., which could write
  (EVAL_RO, EVALSHA_RO and SCRIPT LOAD are let through, as for Upstash's ``default_ro``
  user);
* ``Upstash-Encoding: base64``: every string in a result base64-encoded, except the
  ``OK`` status reply.

It talks RESP to Redis itself (not through redis-py) so status replies and bulk strings
stay distinguishable, as they are for Upstash.

Faults, for the at-most-once tests: :meth:`RestServer.inject` makes the next matching
request ``drop`` its response after the commands ran (the connection is closed),
``delay`` it past the client's timeout, or answer ``502`` before anything ran.
"""

from __future__ import annotations

import base64
import json
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "local-rest-token"
READONLY_TOKEN = "local-rest-readonly-token"

# Not flagged "write" by Redis, yet able to write or to change the server.
_READONLY_REFUSED = {
    "EVAL",
    "EVALSHA",
    "FCALL",
    "FUNCTION",
    "FLUSHALL",
    "FLUSHDB",
    "CONFIG",
    "SHUTDOWN",
    "DEBUG",
    "MULTI",
    "EXEC",
}


class RedisError(Exception):
    """An error reply, with the server's words."""


class Status(str):
    """A simple-string reply (``+OK``), told apart from a bulk string."""


class RespConnection:
    """A raw RESP2 connection: enough of the protocol for a proxy."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.file = self.sock.makefile("rb")

    def send(self, commands: list[list[Any]]) -> None:
        out = []
        for command in commands:
            out.append(b"*%d\r\n" % len(command))
            for item in command:
                data = item if isinstance(item, bytes) else str(item).encode()
                out.append(b"$%d\r\n%b\r\n" % (len(data), data))
        self.sock.sendall(b"".join(out))

    def read(self) -> Any:
        line = self.file.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return Status(rest.decode())
        if kind == b"-":
            return RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            data = self.file.read(size + 2)
            return data[:-2]
        if kind == b"*":
            size = int(rest)
            if size < 0:
                return None
            return [self.read() for _ in range(size)]
        raise ConnectionError(f"unexpected RESP line {line!r}")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


@dataclass
class Fault:
    kind: str  # "drop", "delay" or "502"
    match: Callable[[list[list[Any]]], bool]
    seconds: float = 0.0
    count: int = 1


@dataclass
class Request:
    path: str
    commands: list[list[Any]]
    token: str
    size: int = 0  # bytes of the request body


class RestServer:
    """The local REST server; ``with RestServer(redis_port) as rest: rest.url ...``."""

    def __init__(self, redis_port: int) -> None:
        self.redis_port = redis_port
        self.requests: list[Request] = []
        self.connections = 0  # TCP connections accepted (keep-alive reuses one)
        self.faults: list[Fault] = []
        self._lock = threading.Lock()
        self._pool: queue.SimpleQueue[RespConnection] = queue.SimpleQueue()
        self._writes: dict[str, bool] = {}
        self.httpd: ThreadingHTTPServer | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> RestServer:
        handler = type("Handler", (_Handler,), {"rest": self})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        httpd.handle_error = lambda request, address: None  # type: ignore[method-assign]
        self.httpd = httpd
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None
        while True:
            try:
                self._pool.get_nowait().close()
            except queue.Empty:
                break

    def __enter__(self) -> RestServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self.httpd is not None
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    # -- what tests use ----------------------------------------------------------------

    def inject(
        self,
        kind: str,
        match: Callable[[list[list[Any]]], bool] | None = None,
        *,
        seconds: float = 0.0,
        count: int = 1,
    ) -> None:
        """The next ``count`` requests whose commands ``match`` meet fault ``kind``."""
        assert kind in ("drop", "delay", "502"), kind
        with self._lock:
            self.faults.append(Fault(kind, match or (lambda commands: True), seconds, count))

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()
            self.requests.clear()
            self.connections = 0

    def names(self) -> list[list[str]]:
        """The command names of each request seen, in order (``SCRIPT LOAD`` as one)."""
        return [[_name(c) for c in request.commands] for request in self.requests]

    # -- serving -----------------------------------------------------------------------

    def _fault_for(self, commands: list[list[Any]]) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.match(commands):
                    fault.count -= 1
                    if fault.count <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def _conn(self) -> RespConnection:
        try:
            return self._pool.get_nowait()
        except queue.Empty:
            return RespConnection(self.redis_port)

    def run(self, commands: list[list[Any]], *, multi: bool = False) -> list[Any]:
        conn = self._conn()
        try:
            if multi:
                conn.send([["MULTI"], *commands, ["EXEC"]])
                conn.read()
                queued = [conn.read() for _ in commands]
                result = conn.read()
                if isinstance(result, RedisError):  # EXECABORT: nothing ran
                    errors = [q for q in queued if isinstance(q, RedisError)]
                    raise errors[0] if errors else result
                replies = result
            else:
                conn.send(commands)
                replies = [conn.read() for _ in commands]
        except BaseException:
            conn.close()
            raise
        self._pool.put(conn)
        return replies

    def is_write(self, command: list[Any]) -> bool:
        name = _name(command)
        if name.split(" ")[0] in _READONLY_REFUSED or name in ("SCRIPT FLUSH", "SCRIPT KILL"):
            return True
        found = self._writes.get(name)
        if found is None:
            [info] = self.run([["COMMAND", "INFO", name.split(" ")[0]]])
            flags = info[0][2] if info and info[0] else []
            found = self._writes[name] = any(str(flag) == "write" for flag in flags) or any(
                flag == b"write" for flag in flags
            )
        return found


def _name(command: list[Any]) -> str:
    name = str(command[0]).upper()
    if name in ("SCRIPT", "FUNCTION", "CONFIG", "CLIENT") and len(command) > 1:
        name = f"{name} {str(command[1]).upper()}"
    return name


def _encode(value: Any, base64_mode: bool) -> Any:
    if isinstance(value, Status):
        if base64_mode and value != "OK":
            return base64.b64encode(value.encode()).decode()
        return str(value)
    if isinstance(value, bytes):
        if base64_mode:
            return base64.b64encode(value).decode()
        return value.decode("utf-8", "replace")
    if isinstance(value, list):
        return [_encode(item, base64_mode) for item in value]
    return value  # int, None


def _item(reply: Any, base64_mode: bool) -> dict[str, Any]:
    if isinstance(reply, RedisError):
        return {"error": str(reply)}
    return {"result": _encode(reply, base64_mode)}


def _arg(item: Any) -> Any:
    if isinstance(item, bool) or not isinstance(item, (str, int, float)):
        raise ValueError(f"ERR arguments must be strings or numbers, got {item!r}")
    return item.encode() if isinstance(item, str) else str(item).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like Upstash's endpoint
    rest: RestServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.rest._lock:
            self.rest.connections += 1

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        # Headers and body in one write: two small writes meet Nagle and delayed ACKs
        # (40 ms a request), which would make every figure here a figure of the kernel.
        self._headers_buffer.append(b"\r\n" + data)
        self.flush_headers()

    def _token(self) -> str:
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return auth[len("Bearer ") :]
        return parse_qs(urlsplit(self.path).query).get("_token", [""])[0]

    def do_GET(self) -> None:  # noqa: N802
        # Counts for a client in another process (benchmarks/bench_rest.py); not Upstash's.
        if urlsplit(self.path).path == "/__stats__":
            requests = self.rest.requests
            self._answer(200, {"requests": len(requests), "bytes": sum(r.size for r in requests)})
        else:
            self._answer(405, {"error": "ERR only POST is served here"})

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        path = urlsplit(self.path).path.rstrip("/") or "/"
        if path == "/__clear__":
            self.rest.clear()
            self._answer(200, {"result": "OK"})
            return
        token = self._token()
        if token not in (TOKEN, READONLY_TOKEN):
            self._answer(401, {"error": "WRONGPASS invalid or missing auth token"})
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self._answer(400, {"error": "ERR failed to parse command"})
            return
        single = path == "/"
        if path not in ("/", "/pipeline", "/multi-exec"):
            self._answer(404, {"error": f"ERR unknown endpoint {path}"})
            return
        commands = [body] if single else body
        if not isinstance(commands, list) or not all(isinstance(c, list) and c for c in commands):
            self._answer(400, {"error": "ERR a command is a non-empty JSON array"})
            return
        rest = self.rest
        rest.requests.append(Request(path, commands, token, len(raw)))
        fault = rest._fault_for(commands)
        if fault is not None and fault.kind == "502":
            self._answer(502, b"<html><body>502 Bad Gateway</body></html>")
            return
        base64_mode = self.headers.get("Upstash-Encoding", "").lower() == "base64"
        replies: list[Any] = []
        to_run: list[list[Any]] = []
        try:
            for command in commands:
                if token == READONLY_TOKEN and rest.is_write(command):
                    what = str(command[0]).lower()
                    replies.append(
                        RedisError(
                            f"NOPERM this user has no permissions to run the '{what}' command"
                        )
                    )
                else:
                    to_run.append([_arg(item) for item in command])
                    replies.append(None)
        except ValueError as exc:
            self._answer(400, {"error": str(exc)})
            return
        if path == "/multi-exec" and any(isinstance(r, RedisError) for r in replies):
            refused = next(r for r in replies if isinstance(r, RedisError))
            self._answer(400, {"error": str(refused)})
            return
        try:
            ran = iter(rest.run(to_run, multi=path == "/multi-exec")) if to_run else iter(())
        except RedisError as exc:
            self._answer(400, {"error": str(exc)})
            return
        except OSError as exc:
            self._answer(500, {"error": f"ERR redis unreachable: {exc}"})
            return
        replies = [r if isinstance(r, RedisError) else next(ran) for r in replies]
        if fault is not None and fault.kind == "drop":
            self.close_connection = True  # the commands ran; the answer never leaves
            return
        if fault is not None and fault.kind == "delay":
            time.sleep(fault.seconds)
        try:
            if single:
                reply = replies[0]
                self._answer(
                    400 if isinstance(reply, RedisError) else 200, _item(reply, base64_mode)
                )
            else:
                self._answer(200, [_item(reply, base64_mode) for reply in replies])
        except OSError:
            self.close_connection = True  # the client gave up (a delay past its timeout)


def main() -> None:
    """``python -m tests.upstash.server REDIS_PORT``: serve until killed; prints the URL."""
    import sys

    rest = RestServer(int(sys.argv[1])).start()
    print(rest.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        rest.stop()


if __name__ == "__main__":
    main()
