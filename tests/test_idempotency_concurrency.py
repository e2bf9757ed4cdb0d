"""@idempotent under real processes on a real server (redis and valkey).

* 8 processes send the same POST with the same key at once, 50 rounds: the view runs
  exactly once per key, every process ends with the same status and body, and each of
  the others first saw 409 or a replay.
* kill -9 of the process running the view: a retry gets 409 until the lease has run
  out, then runs the view.
* A view running longer than its lease keeps its claim (renewed in the background).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import time

import pytest
from django.test import Client

from atomicops import get_counter, incr
from tests.multiproc import run_processes

pytestmark = [pytest.mark.real, pytest.mark.slow, pytest.mark.urls("tests.idempotency_urls")]

PROCESSES = 8
ROUNDS = 50


def post(client: Client, path: str, key: str, body: str = '{"item": "book"}'):
    return client.post(path, data=body, content_type="application/json",
                       HTTP_IDEMPOTENCY_KEY=key)  # fmt: skip


def _racer(barrier, rounds: int, tag: str) -> list[tuple]:
    client = Client()
    seen = []
    for number in range(rounds):
        barrier.wait(30)
        key = f"{tag}-{number}"
        response = post(client, "/idem/create/?sleep=0.02", key)
        first = (response.status_code, response.get("Idempotent-Replayed"))
        while response.status_code == 409:
            time.sleep(0.005)
            response = post(client, "/idem/create/?sleep=0.02", key)
        seen.append((first, response.status_code, response.content))
    return seen


def test_eight_processes_one_key_the_view_runs_once(real_client, capsys):
    barrier = multiprocessing.get_context("fork").Barrier(PROCESSES)
    started = time.monotonic()
    results = run_processes(_racer, [(barrier, ROUNDS, "race")] * PROCESSES, timeout=120)
    elapsed = time.monotonic() - started
    saw_409 = 0
    for number in range(ROUNDS):
        assert get_counter(f"test:runs:race-{number}") == 1, number
        finals = {(status, body) for _, status, body in (r[number] for r in results)}
        assert len(finals) == 1, finals  # every process got the same status and body
        ((status, body),) = finals
        assert status == 201 and json.loads(body)["runs"] == 1
        firsts = [r[number][0] for r in results]
        originals = [f for f in firsts if f == (201, None)]
        assert len(originals) == 1, firsts  # one ran the view...
        others = [f for f in firsts if f != (201, None)]
        assert all(f in ((409, None), (201, "true")) for f in others), firsts  # ...the rest waited
        saw_409 += sum(f[0] == 409 for f in others)
    with capsys.disabled():
        print(f"\n  {ROUNDS} rounds x {PROCESSES} processes in {elapsed:.1f} s; "
              f"{saw_409} first answers were 409, the rest replays")  # fmt: skip


def _run_killable(key: str) -> None:
    post(Client(), "/idem/killable/?until=test:go", key)


def test_kill_9_mid_view_blocks_the_key_until_the_lease_ends(real_client):
    key = "killed"
    process = multiprocessing.get_context("fork").Process(target=_run_killable, args=(key,))
    process.start()
    deadline = time.monotonic() + 10
    while not get_counter(f"test:started:{key}"):
        assert time.monotonic() < deadline, "the view never started"
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    process.join(5)
    client = Client()
    incr("test:go")  # from now on the view returns at once when it runs
    response = post(client, "/idem/killable/?until=test:go", key)
    assert response.status_code == 409, response.content
    assert time.monotonic() - killed_at < 1  # the lease (1 s) had not run out
    assert get_counter(f"test:runs:{key}") == 1
    time.sleep(max(0.0, killed_at + 1.05 - time.monotonic()))
    response = post(client, "/idem/killable/?until=test:go", key)
    assert (response.status_code, response.content) == (201, b"ran 2")
    assert post(client, "/idem/killable/?until=test:go", key)["Idempotent-Replayed"] == "true"


@pytest.mark.parametrize("view", ["short_lease", "short_lease_async"])
def test_a_view_longer_than_its_lease_keeps_the_claim(real_client, view):
    # Lease 0.3 s, the view takes 1 s: without renewal the key would be free at 0.3 s.
    path = f"/idem/{view}/?sleep=1"
    first: list = []
    thread = threading.Thread(target=lambda: first.append(post(Client(), path, "long")))
    thread.start()
    time.sleep(0.6)
    assert post(Client(), path, "long").status_code == 409
    thread.join(10)
    assert first[0].status_code == 201
    again = post(Client(), path, "long")
    assert (again.status_code, again.content) == (201, first[0].content)
    assert again["Idempotent-Replayed"] == "true"
    assert get_counter("test:runs:long") == 1
