"""get_or_set / aget_or_set on redis, valkey and fakeredis (threads; processes are in
test_getorset_concurrency.py)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from django.core.cache import caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT

from atomicops import InvalidInput, aget_or_set, get_or_set
from atomicops.web.getorset import FRESH_MS, claim_key


@pytest.fixture(autouse=True)
def _empty_cache():
    caches["default"].clear()
    yield
    caches["default"].clear()


def claim_of(key: str) -> str:
    return claim_key("default", caches["default"].make_key(key))


class Compute:
    """A compute() that counts its calls; ``pause`` seconds each, optionally failing."""

    def __init__(self, value="v", pause=0.0, fail=False):
        self.value, self.pause, self.fail = value, pause, fail
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self):
        with self._lock:
            self.calls += 1
        time.sleep(self.pause)
        if self.fail:
            raise ValueError("compute failed")
        return self.value


def test_miss_computes_and_stores_hit_reads_only(backend):
    compute = Compute({"rows": [1, 2]})
    assert get_or_set("report", compute, 60) == {"rows": [1, 2]}
    assert caches["default"].get("report") == {"rows": [1, 2]}
    # Right after: the claim says "fresh" for a moment, and nothing else stays.
    client = backend[1]
    assert client.hgetall(claim_of("report")) == {b"done": b"1"}
    assert 0 < client.pttl(claim_of("report")) <= FRESH_MS
    assert get_or_set("report", Compute("other"), 60) == {"rows": [1, 2]}
    assert compute.calls == 1


def test_a_hit_sends_nothing_to_redis(real_client, settings):
    caches["default"].set("hot", 42)
    before = real_client.info("commandstats")
    assert get_or_set("hot", Compute(), 60) == 42
    after = real_client.info("commandstats")
    # INFO itself is the only command between the two readings.
    changed = {k for k in after if after[k]["calls"] != before.get(k, {}).get("calls")}
    assert changed == {"cmdstat_info"}


def test_none_is_a_value(backend):
    compute = Compute(None)
    assert get_or_set("nothing", compute, 60) is None
    assert get_or_set("nothing", compute, 60) is None
    assert compute.calls == 1


def test_timeout_none_and_default(backend):
    get_or_set("forever", Compute(1), None)
    get_or_set("default", Compute(2), DEFAULT_TIMEOUT)
    assert caches["default"].get("forever") == 1
    assert caches["default"].get("default") == 2


def test_an_exception_reaches_the_caller_and_nothing_is_stored(backend):
    with pytest.raises(ValueError, match="compute failed"):
        get_or_set("boom", Compute(fail=True), 60)
    assert caches["default"].get("boom", "missing") == "missing"
    assert backend[1].exists(claim_of("boom")) == 0
    assert get_or_set("boom", Compute("ok"), 60) == "ok"


def test_threads_compute_once(backend):
    compute = Compute("shared", pause=0.2)
    results: list = []
    threads = [
        threading.Thread(target=lambda: results.append(get_or_set("t", compute, 60)))
        for _ in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == ["shared"] * 6
    assert compute.calls == 1


def test_waiters_retry_when_compute_raises(backend):
    failing = Compute(pause=0.3, fail=True)
    fine = Compute("second", pause=0.05)
    errors, results = [], []

    def first():
        try:
            get_or_set("flaky", failing, 60)
        except ValueError as exc:
            errors.append(exc)

    thread = threading.Thread(target=first)
    thread.start()
    time.sleep(0.1)  # the first caller is computing
    waiters = [
        threading.Thread(target=lambda: results.append(get_or_set("flaky", fine, 60)))
        for _ in range(3)
    ]
    for waiter in waiters:
        waiter.start()
    for t in (thread, *waiters):
        t.join(10)
    assert len(errors) == 1 and failing.calls == 1
    assert results == ["second"] * 3
    assert fine.calls == 1  # one waiter took over, the others waited for it


def test_unreachable_redis_computes_without_coordination(settings, caplog):
    settings.ATOMICOPS = {"URL": "redis://127.0.0.1:1/0", "SOCKET_CONNECT_TIMEOUT": 0.2}
    assert get_or_set("down", Compute("computed"), 60) == "computed"
    assert caches["default"].get("down") == "computed"
    assert "without coordination" in caplog.text


async def test_async_miss_and_hit(backend):
    calls = []

    async def compute():
        calls.append(1)
        await asyncio.sleep(0.01)
        return "async value"

    assert await aget_or_set("a", compute, 60) == "async value"
    assert await aget_or_set("a", compute, 60) == "async value"
    assert await aget_or_set("b", lambda: "plain", 60) == "plain"
    assert calls == [1]


async def test_async_tasks_compute_once(backend):
    calls = []

    async def compute():
        calls.append(1)
        await asyncio.sleep(0.2)
        return len(calls)

    results = await asyncio.gather(*(aget_or_set("many", compute, 60) for _ in range(8)))
    assert results == [1] * 8
    assert calls == [1]


async def test_async_exception_reaches_the_caller(backend):
    async def compute():
        raise KeyError("nope")

    with pytest.raises(KeyError):
        await aget_or_set("k", compute, 60)
    assert backend[1].exists(claim_of("k")) == 0


def test_a_lease_longer_compute_keeps_its_claim(backend):
    # Lease 0.3 s, compute 1 s: renewed, so a second caller waits instead of computing.
    slow, other = Compute("slow", pause=1.0), Compute("other")
    results: list = []
    thread = threading.Thread(
        target=lambda: results.append(get_or_set("long", slow, 60, lease=0.3))
    )
    thread.start()
    time.sleep(0.6)
    assert get_or_set("long", other, 60, lease=0.3) == "slow"
    thread.join(10)
    assert results == ["slow"] and other.calls == 0


@pytest.mark.parametrize(
    "args, kwargs",
    [
        (("", Compute(), 60), {}),
        ((None, Compute(), 60), {}),
        ((b"key", Compute(), 60), {}),
        (("k", "not callable", 60), {}),
        (("k", Compute(), 0), {}),
        (("k", Compute(), -1), {}),
        (("k", Compute(), float("inf")), {}),
        (("k", Compute(), float("nan")), {}),
        (("k", Compute(), True), {}),
        (("k", Compute(), "60"), {}),
        (("k", Compute(), 60), {"lease": 0}),
        (("k", Compute(), 60), {"lease": float("nan")}),
        (("k", Compute(), 60), {"lease": 2**60}),
        (("k", Compute(), 60), {"lease": "30"}),
        (("k", Compute(), 60), {"cache": "nope"}),
        (("k", Compute(), 60), {"cache": None}),
    ],
)
def test_bad_input_is_refused_before_anything_happens(backend, args, kwargs):
    compute = args[1]
    with pytest.raises(InvalidInput):
        get_or_set(*args, **kwargs)
    if isinstance(compute, Compute):
        assert compute.calls == 0
    assert backend[1].keys("*") == []
    assert caches["default"].get("k", "missing") == "missing"


async def test_async_bad_input(backend):
    with pytest.raises(InvalidInput):
        await aget_or_set("k", Compute(), 0)


def test_sync_refuses_an_async_compute(backend):
    async def compute():
        return 1

    with pytest.raises(InvalidInput, match="aget_or_set"):
        get_or_set("k", compute, 60)
