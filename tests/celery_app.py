"""The Celery app and tasks of tests/test_celery.py, imported by its workers too.

Workers get the broker, the result backend and atomicops' URL from the environment the
test module sets; in the pytest process the module's fixture configures the same app.
Each task records what the test checks in Redis lists (server time, task id, retries,
pid), so the proof is read from the server, not from any one process.
"""

from __future__ import annotations

import json
import os
import time

import django
import redis
from celery import Celery
from celery.signals import worker_process_init
from django.apps import apps

if not apps.ready:  # a worker: pytest has set Django up already
    django.setup()

from atomicops.celery import AtomicTask  # noqa: E402  (needs Django's settings)

app = Celery(
    "atomicops_tests",
    broker=os.environ.get("ATOMICOPS_CELERY_TEST_BROKER", "memory://"),
    backend=os.environ.get("ATOMICOPS_CELERY_TEST_BACKEND", "cache+memory://"),
)
app.conf.update(
    task_acks_late=False,
    worker_prefetch_multiplier=4,
    broker_connection_retry_on_startup=True,
    result_expires=600,
    # long_singleton goes to the node the kill test owns; its later calls name a queue.
    task_routes={"tests.celery_app.long_singleton": {"queue": "kill"}},
)

_clients: dict[int, redis.Redis] = {}


def store() -> redis.Redis:
    """This process's client of the test server (one per pid: workers fork)."""
    pid = os.getpid()
    if pid not in _clients:
        _clients[pid] = redis.Redis.from_url(os.environ["ATOMICOPS_CELERY_TEST_URL"])
    return _clients[pid]


@worker_process_init.connect
def _connect(**_: object) -> None:
    # Connect before the first task, so a body's first connect does not delay its record.
    store().ping()


def server_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return seconds * 1000 + micros // 1000


def record(list_name: str, task: AtomicTask | None, **fields: object) -> None:
    client = store()
    request = task.request if task is not None else None
    entry = {
        "body_ms": server_ms(client),
        "pid": os.getpid(),
        "id": getattr(request, "id", None),
        "retries": getattr(request, "retries", None),
        "admitted_ms": getattr(request, "atomicops_admitted_ms", None),
        "token": getattr(request, "atomicops_fencing_token", None),
        **fields,
    }
    client.rpush(f"celtest:{list_name}", json.dumps(entry))


@app.task(bind=True, base=AtomicTask, global_rate_limit="10/s", max_retries=0)
def limited(self, n):
    record("limited", self, n=n)
    return n


@app.task(bind=True, rate_limit="10/s")
def celery_limited(self, n):
    # Celery's own rate_limit, for the comparison: per worker node, not global.
    record("celery_limited", self, n=n)
    return n


@app.task(bind=True, base=AtomicTask, singleton=True, singleton_ttl=10)
def rebuild(self, account_id, full=False):
    record("rebuild", self, account_id=account_id, token_property=self.fencing_token)
    time.sleep(float(store().get("celtest:rebuild_sleep") or 0))
    return self.request.atomicops_fencing_token


@app.task(bind=True, base=AtomicTask, singleton=True)
def failing(self, account_id):
    record("failing", self, account_id=account_id)
    raise ValueError("the body failed")


@app.task(bind=True, base=AtomicTask, singleton=True, singleton_ttl=3)
def long_singleton(self, account_id):
    record("long", self, account_id=account_id)
    time.sleep(float(store().get("celtest:long_sleep") or 0))
    return account_id


@app.task(bind=True, base=AtomicTask, singleton=True, global_rate_limit="5/s")
def both(self, n):
    record("both", self, n=n)
    time.sleep(0.2)
    return n


@app.task(bind=True, base=AtomicTask, singleton=True, max_retries=3)
def retried(self, account_id):
    # Retries itself once: queued again under its id, it keeps its claim meanwhile.
    record("retried", self, account_id=account_id)
    if self.request.retries == 0:
        raise self.retry(countdown=1.5)
    return self.request.retries
