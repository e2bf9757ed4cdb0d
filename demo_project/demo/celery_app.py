"""The demo's Celery app: one task held to a global rate by atomicops, one by Celery.

``manage.py demo_celery`` starts four worker nodes on this app and sends both tasks
(demo_project/demo/celery_rate.py). Workers load the demo's Django settings; the broker,
the result backend and atomicops share the demo's Redis (REDIS_URL).
"""

from __future__ import annotations

import os
import socket

import django
import redis
from celery import Celery
from celery.signals import worker_process_init
from django.apps import apps

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_project.settings")
if not apps.ready:  # a worker; manage.py has set Django up already
    django.setup()

from atomicops.celery import AtomicTask  # noqa: E402  (needs Django's settings)

QUEUE = "demo-celery"
RATE = os.environ.get("DEMO_CELERY_RATE", "10/s")
URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

app = Celery("atomicops_demo", broker=URL, backend=URL)
app.conf.update(
    task_default_queue=QUEUE,
    broker_connection_retry_on_startup=True,
    result_expires=600,
    worker_hijack_root_logger=False,
)

_clients: dict[int, redis.Redis] = {}


@worker_process_init.connect
def _connect(**_: object) -> None:
    # Connect before the first task: a body's first connect would make it begin late,
    # which reads as starts bunched into the next second.
    _client().ping()


def _client() -> redis.Redis:
    pid = os.getpid()
    if pid not in _clients:
        _clients[pid] = redis.Redis.from_url(URL)
    return _clients[pid]


def _started(task: AtomicTask | None) -> dict[str, object]:
    """Where and when (the server's clock, ms) this body started."""
    seconds, micros = _client().time()
    request = task.request if task is not None else None
    return {
        "node": str(getattr(request, "hostname", None) or socket.gethostname()).split("@")[0],
        "body_ms": seconds * 1000 + micros // 1000,
        "admitted_ms": getattr(request, "atomicops_admitted_ms", None),
    }


@app.task(bind=True, base=AtomicTask, global_rate_limit=RATE, name="demo.global_call")
def global_call(self, n):
    return _started(self)


@app.task(bind=True, rate_limit=RATE, name="demo.celery_call")
def celery_call(self, n):
    return _started(self)
