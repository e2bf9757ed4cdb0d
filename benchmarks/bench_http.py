"""A Django view under HTTP load: undecorated, atomicops @rate_limit, django-ratelimit.

A small Django project (written to a temp dir) is served by gunicorn (``WORKERS`` sync
workers) and driven by ``wrk`` (``CONNECTIONS`` connections, ``SECONDS`` per variant),
all against one redis-server started for the run. Variants, each view returning a few
bytes:

* ``undecorated``;
* ``atomicops x1`` / ``x2``: ``@rate_limit(..., key="ip")``, one limit and two stacked
  (decided together by one script);
* ``django-ratelimit x1`` / ``x2``: ``@ratelimit(key="ip", rate=..., block=True)`` on a
  django-redis cache, one and two stacked.

Limits are never reached (every request is allowed: the path a site pays on every
request). Rounds are interleaved; printed are the median requests per second and the
median p50 / p99 latency over rounds, and the ratios. Needs ``wrk`` (Debian: ``apt-get
install wrk``) and the bench extra (gunicorn, django-ratelimit). Run:
    .venv/bin/python benchmarks/bench_http.py
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

from _common import ROOT, start_server

SECONDS = int(os.environ.get("BENCH_SECONDS", "4"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "4"))
VARIANTS = {
    "undecorated": "/plain/",
    "atomicops x1": "/ao1/",
    "django-ratelimit x1": "/dr1/",
    "atomicops x2": "/ao2/",
    "django-ratelimit x2": "/dr2/",
}

PROJECT = """
SECRET_KEY = "bench"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "benchproj"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "atomicops",
                  "django_ratelimit"]
MIDDLEWARE = []
DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}}}
CACHES = {{"default": {{"BACKEND": "django_redis.cache.RedisCache", "LOCATION": "{url}/1"}}}}
RATELIMIT_USE_CACHE = "default"
# The defaults, as a user has them (metrics on: prometheus_client is installed).
ATOMICOPS = {{"URL": "{url}/0"}}
USE_TZ = True
"""

URLS = """
from django.http import HttpResponse
from django.urls import path
from django_ratelimit.decorators import ratelimit

from atomicops import rate_limit

BIG = 10**9


def plain(request):
    return HttpResponse("ok")


@rate_limit(BIG, 60_000, key="ip")
def ao1(request):
    return HttpResponse("ok")


@rate_limit(BIG, 3_600_000, key="ip")
@rate_limit(BIG, 60_000, key="ip")
def ao2(request):
    return HttpResponse("ok")


@ratelimit(key="ip", rate=f"{BIG}/m", block=True)
def dr1(request):
    return HttpResponse("ok")


@ratelimit(key="ip", rate=f"{BIG}/h", block=True)
@ratelimit(key="ip", rate=f"{BIG}/m", block=True)
def dr2(request):
    return HttpResponse("ok")


urlpatterns = [
    path("plain/", plain), path("ao1/", ao1), path("ao2/", ao2),
    path("dr1/", dr1), path("dr2/", dr2),
]
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def to_ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(url: str) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) of one wrk run; fails on any non-2xx answer."""
    out = subprocess.run(
        ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"{url}: some requests were refused:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = to_ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = to_ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    return rps, p50, p99


def main() -> None:
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install -y wrk")
    server = start_server()
    workdir = Path(tempfile.mkdtemp(prefix="atomicops-http-load-"))
    gunicorn = None
    try:
        url = f"redis://127.0.0.1:{server.port}"
        (workdir / "benchproj_settings.py").write_text(PROJECT.format(url=url))
        (workdir / "benchproj.py").write_text(textwrap.dedent(URLS))
        port = free_port()
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(workdir), str(ROOT)]),
            "DJANGO_SETTINGS_MODULE": "benchproj_settings",
        }
        gunicorn = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-w",
                str(WORKERS),
                "-b",
                f"127.0.0.1:{port}",
                "--log-level",
                "warning",
                "django.core.wsgi:get_wsgi_application()",
            ],
            env=env,
            cwd=workdir,
        )
        base = f"http://127.0.0.1:{port}"
        for path in VARIANTS.values():
            wait_http(base + path)
            for _ in range(50):  # every worker warm: connections, loaded scripts
                urllib.request.urlopen(base + path).read()
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in VARIANTS}
        for _ in range(ROUNDS):
            for name, path in VARIANTS.items():
                results[name].append(run_wrk(base + path))
        print(
            f"server {server.name} {server.version()}; gunicorn {WORKERS} sync workers, "
            f"wrk {CONNECTIONS} connections, {SECONDS} s per variant, {ROUNDS} interleaved "
            "rounds; medians"
        )
        rps = {name: statistics.median(r[0] for r in runs) for name, runs in results.items()}
        print(f"  {'variant':<22} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}  vs undecorated")
        for name, runs in results.items():
            p50 = statistics.median(r[1] for r in runs)
            p99 = statistics.median(r[2] for r in runs)
            cost = 1 - rps[name] / rps["undecorated"]
            print(f"  {name:<22} {rps[name]:>8,.0f} {p50:>8.2f} {p99:>8.2f}  -{cost:.0%}")
        for n in ("x1", "x2"):
            ratio = rps[f"atomicops {n}"] / rps[f"django-ratelimit {n}"]
            print(f"  atomicops / django-ratelimit, {n}: {ratio:.2f}x")
    finally:
        if gunicorn is not None:
            gunicorn.terminate()
            gunicorn.wait(10)
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
