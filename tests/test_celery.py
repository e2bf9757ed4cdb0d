"""atomicops.celery with real Celery workers (issue #29).

The module starts its own redis-server (broker, result backend and atomicops' data, in
three databases) and three prefork worker nodes as subprocesses: w1 and w2 (2 processes
each) share the default queue, w3 alone serves the queue "kill" that the kill -9 test
owns. Tasks record what they saw in Redis lists with the server's time
(tests/celery_app.py). Every worker is killed in teardown.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from celery.exceptions import TaskRevokedError
from celery.worker.control import Panel
from celery.worker.request import Request

from tests.conftest import CI, _configure
from tests.multiproc import forget_kombu_after_fork, run_processes
from tests.servers import Server, redis_server_binary

pytestmark = [pytest.mark.slow, pytest.mark.real]

ROOT = Path(__file__).resolve().parent.parent
NODES = {"w1": "celery", "w2": "celery", "w3": "kill"}
WORKER_START_TIMEOUT = 90.0


class CeleryEnv:
    def __init__(self, server: Server, logdir: str) -> None:
        self.server = server
        self.logdir = logdir
        self.url = f"redis://127.0.0.1:{server.port}/0"
        self.workers: dict[str, subprocess.Popen] = {}
        self.client = server.client()

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DJANGO_SETTINGS_MODULE="tests.celery_settings",
            ATOMICOPS_CELERY_TEST_URL=self.url,
            ATOMICOPS_CELERY_TEST_BROKER=f"redis://127.0.0.1:{self.server.port}/1",
            ATOMICOPS_CELERY_TEST_BACKEND=f"redis://127.0.0.1:{self.server.port}/2",
            PYTHONPATH=str(ROOT),
        )
        return env

    def start(self, name: str, queue: str) -> None:
        log = open(os.path.join(self.logdir, f"{name}.log"), "wb")  # noqa: SIM115
        command = [
            sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker",
            "--pool=prefork", "-c", "2", "-n", f"{name}@atomicops-test", "-Q", queue,
            "--without-gossip", "--without-mingle", "-l", "info",
        ]  # fmt: skip
        # Its own session: teardown and the kill test signal the node's whole group
        # (the main process and its pool children), and nothing else.
        self.workers[name] = subprocess.Popen(
            command, cwd=ROOT, env=self.environment(), stdout=log, stderr=log,
            start_new_session=True,
        )  # fmt: skip

    def wait_ready(self, app, names) -> None:
        deadline = time.monotonic() + WORKER_START_TIMEOUT
        waiting = {f"{name}@atomicops-test" for name in names}
        while waiting:
            for name in names:
                if self.workers[name].poll() is not None:
                    raise AssertionError(f"worker {name} exited:\n{self.log(name)}")
            replies = app.control.ping(destination=sorted(waiting), timeout=1.0)
            for reply in replies:
                waiting -= set(reply)
            if waiting and time.monotonic() > deadline:
                raise AssertionError(f"workers {waiting} did not answer a ping")

    def kill(self, name: str) -> None:
        """kill -9 of the node: its main process and its pool children, at once."""
        process = self.workers[name]
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def log(self, name: str) -> str:
        return Path(self.logdir, f"{name}.log").read_text(errors="replace")[-4000:]

    def entries(self, name: str) -> list[dict]:
        return [json.loads(raw) for raw in self.client.lrange(f"celtest:{name}", 0, -1)]


@pytest.fixture(scope="module")
def celery_env():
    binary = redis_server_binary()
    if binary is None:
        if CI:
            pytest.fail("no redis-server on PATH; with CI=true every real server must run")
        pytest.skip("no redis-server on PATH")
    from tests.celery_app import app

    server = Server("redis-celery", binary).start()
    env = CeleryEnv(server, tempfile.mkdtemp(prefix="atomicops-celery-"))
    worker_env = env.environment()
    app.conf.broker_url = worker_env["ATOMICOPS_CELERY_TEST_BROKER"]
    app.conf.result_backend = worker_env["ATOMICOPS_CELERY_TEST_BACKEND"]
    try:
        for name, queue in NODES.items():
            env.start(name, queue)
        env.wait_ready(app, list(NODES))
        yield env
    finally:
        # Close this process's broker connections while their server still runs: kombu
        # registers its pools to close them after every fork, and a later test's forked
        # child would otherwise read a BRPOP reply from a server long gone (or from
        # another server that took its port) and hang before its target starts.
        app.pool.force_close_all()
        app.close()
        forget_kombu_after_fork()
        for name in list(env.workers):
            env.kill(name)
        env.client.close()
        server.remove()
        shutil.rmtree(env.logdir, ignore_errors=True)


@pytest.fixture(autouse=True)
def atomicops_on_test_server(celery_env, settings):
    _configure(settings, celery_env.url)


def most_in_any_span(times: list[int], span_ms: int) -> int:
    """The most of ``times`` (ms) that lie in one half-open span [t, t + span_ms)."""
    times = sorted(times)
    best = start = 0
    for end, t in enumerate(times):
        while t - times[start] >= span_ms:
            start += 1
        best = max(best, end - start + 1)
    return best


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# -- global_rate_limit ---------------------------------------------------------------


def test_forty_tasks_at_ten_per_second_start_at_most_ten_in_any_second(celery_env):
    from tests.celery_app import limited

    results = [limited.delay(n) for n in range(40)]
    assert sorted(r.get(timeout=60) for r in results) == list(range(40))

    entries = celery_env.entries("limited")
    # Each ran exactly once, under the id its caller holds, its retries untouched by
    # however many times the limiter sent it back (max_retries=0 would have stopped
    # a single counted retry).
    assert sorted(e["n"] for e in entries) == list(range(40))
    assert {e["n"]: e["id"] for e in entries} == {n: r.id for n, r in enumerate(results)}
    assert {e["retries"] for e in entries} == {0}
    admitted = [e["admitted_ms"] for e in entries]
    assert most_in_any_span(admitted, 1000) <= 10
    # 40 at 10/s: bursts of 10 at 0, 1, 2 and 3 s are the fastest the limit allows.
    first, last = min(admitted), max(admitted)
    assert 3000 <= last - first
    last_body = max(e["body_ms"] for e in entries)
    assert last_body - first <= 3000 + 5000
    bodies = [e["body_ms"] for e in entries]
    print(
        f"\natomicops global_rate_limit='10/s' on 2 nodes x 2 processes: at most "
        f"{most_in_any_span(admitted, 1000)} admitted ({most_in_any_span(bodies, 1000)} "
        f"bodies begun) in any second; 40 tasks done {(last_body - first) / 1000:.2f}s "
        "after the first start (ideal 3.0s)"
    )


def test_celery_own_rate_limit_is_per_worker_node(celery_env):
    """The comparison: Celery's rate_limit on the same two nodes (printed, not judged)."""
    from tests.celery_app import celery_limited

    results = [celery_limited.delay(n) for n in range(40)]
    assert sorted(r.get(timeout=60) for r in results) == list(range(40))
    bodies = [e["body_ms"] for e in celery_env.entries("celery_limited")]
    assert len(bodies) == 40
    print(
        f"\nCelery rate_limit='10/s' on 2 nodes: up to {most_in_any_span(bodies, 1000)} "
        f"starts in one second (about 10 per node); 40 tasks took "
        f"{(max(bodies) - min(bodies)) / 1000:.2f}s"
    )


# -- singleton -----------------------------------------------------------------------


def _delay_five(index: int) -> list[str]:
    from tests.celery_app import rebuild

    # delay(7) and delay(account_id=7) bind to the same arguments: one instance.
    calls = [lambda: rebuild.delay(7), lambda: rebuild.delay(account_id=7)]
    return [calls[(index + i) % 2]().id for i in range(5)]


def test_twenty_duplicates_share_one_id_and_run_once(celery_env):
    from tests.celery_app import rebuild

    celery_env.client.set("celtest:rebuild_sleep", 1.5)
    ids = [task_id for batch in run_processes(_delay_five, [(i,) for i in range(4)])
           for task_id in batch]  # fmt: skip
    assert len(ids) == 20 and len(set(ids)) == 1
    first = rebuild.AsyncResult(ids[0])
    token = first.get(timeout=60)
    runs = [e for e in celery_env.entries("rebuild") if e["account_id"] == 7]
    assert [e["id"] for e in runs] == [first.id]
    # The fencing token: on the request and on the task, an int.
    assert isinstance(token, int) and runs[0]["token"] == runs[0]["token_property"] == token

    # The claim was freed before the result was stored: a call right after runs.
    celery_env.client.set("celtest:rebuild_sleep", 0)
    again = rebuild.delay(7)
    assert again.id != first.id
    assert again.get(timeout=60) > token  # a later holder, a larger fencing token
    assert len([e for e in celery_env.entries("rebuild") if e["account_id"] == 7]) == 2


async def test_async_producers_share_one_id(celery_env):
    from tests.celery_app import rebuild

    celery_env.client.set("celtest:rebuild_sleep", 1.0)
    results = await asyncio.gather(
        *[rebuild.adelay(8) for _ in range(5)],
        *[rebuild.aapply_async(kwargs={"account_id": 8}) for _ in range(5)],
    )
    assert len({r.id for r in results}) == 1
    assert isinstance(await asyncio.to_thread(results[0].get, timeout=60), int)
    assert [e["id"] for e in celery_env.entries("rebuild") if e["account_id"] == 8] == [
        results[0].id
    ]
    celery_env.client.set("celtest:rebuild_sleep", 0)


def test_a_failed_singleton_frees_its_claim(celery_env):
    from tests.celery_app import failing

    first = failing.delay(3)
    with pytest.raises(ValueError):
        first.get(timeout=60)
    again = failing.delay(3)
    assert again.id != first.id
    with pytest.raises(ValueError):
        again.get(timeout=60)
    assert len(celery_env.entries("failing")) == 2


def test_a_singleton_retrying_itself_keeps_its_claim(celery_env):
    from tests.celery_app import retried

    first = retried.delay(4)
    wait_for(lambda: celery_env.entries("retried"), 60, "the first run")
    time.sleep(0.2)  # the retry is sent and the claim handed back to the queue
    assert retried.delay(account_id=4).id == first.id  # waiting to retry: no duplicate
    assert first.get(timeout=60) == 1
    runs = celery_env.entries("retried")
    assert [(e["id"], e["retries"]) for e in runs] == [(first.id, 0), (first.id, 1)]
    assert retried.delay(4).id != first.id  # done: the next call runs


def test_a_revoked_singleton_frees_its_claim_before_revoked_is_stored(celery_env):
    from tests.celery_app import rebuild

    # Celery reports revoked in one method; if a release renames it, claims of revoked
    # tasks would stay until singleton_queued_ttl: fail here instead.
    assert callable(getattr(Request, "_announce_revoked", None))
    assert callable(Panel.data.get("revoke"))  # the control command the hook wraps
    celery_env.client.set("celtest:rebuild_sleep", 0)
    first = rebuild.apply_async((11,), countdown=2)
    assert rebuild.delay(11).id == first.id  # queued: a duplicate is not sent
    first.revoke()
    with pytest.raises(TaskRevokedError):
        first.get(timeout=60)
    again = rebuild.delay(11)
    assert again.id != first.id
    again.get(timeout=60)
    assert [e["id"] for e in celery_env.entries("rebuild") if e["account_id"] == 11] == [again.id]


def test_an_expired_singleton_frees_its_claim_before_revoked_is_stored(celery_env):
    from tests.celery_app import rebuild

    celery_env.client.set("celtest:rebuild_sleep", 0)
    # Due in 1.5 s but expiring after 0.5 s: the worker discards it when it is due.
    first = rebuild.apply_async((12,), countdown=1.5, expires=0.5)
    assert rebuild.delay(12).id == first.id
    with pytest.raises(TaskRevokedError):
        first.get(timeout=60)
    again = rebuild.delay(12)
    assert again.id != first.id
    again.get(timeout=60)
    assert [e["id"] for e in celery_env.entries("rebuild") if e["account_id"] == 12] == [again.id]


def test_rate_limit_and_singleton_together(celery_env):
    from tests.celery_app import both

    first = [both.delay(n) for n in range(10)]
    duplicates = [both.delay(n=n) for n in range(10)]
    assert [r.id for r in duplicates] == [r.id for r in first]
    assert sorted(r.get(timeout=60) for r in first) == list(range(10))
    entries = celery_env.entries("both")
    assert sorted(e["n"] for e in entries) == list(range(10))
    assert most_in_any_span([e["admitted_ms"] for e in entries], 1000) <= 5
    assert {e["retries"] for e in entries} == {0}
    assert all(isinstance(e["token"], int) for e in entries)


def test_kill_minus_9_of_the_worker_frees_the_singleton_within_its_ttl(celery_env):
    from tests.celery_app import long_singleton

    ttl = long_singleton.singleton_ttl
    celery_env.client.set("celtest:long_sleep", 60)
    first = long_singleton.delay(5)  # to queue "kill": node w3 alone
    wait_for(lambda: celery_env.entries("long"), 60, "the task to start on w3")
    assert long_singleton.delay(5).id == first.id  # running: a duplicate is not sent

    celery_env.kill("w3")
    killed = time.monotonic()
    celery_env.client.set("celtest:long_sleep", 0)
    while True:
        # To the shared queue: w3 is gone.
        result = long_singleton.apply_async((5,), queue="celery")
        if result.id != first.id:
            break
        assert time.monotonic() - killed < ttl + 5, "the claim outlived its ttl"
        time.sleep(0.05)
    freed = time.monotonic() - killed
    print(f"\nsingleton freed {freed:.2f}s after kill -9 of its worker (ttl {ttl:g}s)")
    assert freed <= ttl + 2  # the lease runs out within the ttl; the rest is polling
    assert result.get(timeout=60) == 5
    assert [e["id"] for e in celery_env.entries("long")] == [first.id, result.id]
