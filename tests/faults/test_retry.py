"""``RETRY_DEADLINE_MS``: calls that provably did not run are sent again until the deadline.

* a ``kill -9`` and restart of a server (AOF, ``appendfsync always``, a ``LOADING``
  phase) under 4 threads: with a 10 s deadline no error but ``OutcomeUnknown`` reaches a
  caller, without one the callers meet ``RedisUnavailable``; either way nothing is
  applied twice and nothing answered is lost;
* a server gone for good: the call raises ``RedisUnavailable`` once its deadline has
  passed (at once with 0), never ``OutcomeUnknown``, sync and async;
* a batch re-sends only its calls that were refused (a write refused with
  ``NOREPLICAS`` while a read in the same round trip was served), sync and async.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from redis.asyncio import Redis as AsyncRedis

from atomicops import (
    OutcomeUnknown,
    RedisUnavailable,
    abatch,
    abounded_incr,
    batch,
    bounded_incr,
    get_counter,
    registry,
)
from tests.faults.ride import SCRIPT, Hammer, check_history
from tests.faults.servers import fill

pytestmark = [pytest.mark.faults, pytest.mark.real]

KEY = "faults:retry:counter"


def configure(settings, url: str, deadline_ms: int, **extra) -> None:
    settings.ATOMICOPS = {
        "URL": url,
        "LOAD_ON_STARTUP": False,
        "STATS_FLUSH_INTERVAL": 0,
        "SOCKET_TIMEOUT": 2.0,
        "SOCKET_CONNECT_TIMEOUT": 0.5,
        "RETRY_DEADLINE_MS": deadline_ms,
        **extra,
    }


@pytest.mark.slow
@pytest.mark.parametrize("deadline_ms", [0, 10_000])
def test_kill9_and_restart_under_4_threads(kind, make_server, settings, figures, deadline_ms):
    server = make_server(
        kind,
        *("--appendonly", "yes", "--appendfsync", "always"),
        # Each command of the AOF is loaded this slowly (us): each restart answers LOADING
        # for a while, as a real dataset's would.
        *("--key-load-delay", "300", "--loading-process-events-interval-bytes", "1024"),
    )
    raw = server.client()
    fill(raw, 1000)
    raw.close()
    configure(settings, server.url, deadline_ms)
    down_for = []
    with Hammer(KEY) as hammer:
        time.sleep(0.5)
        for _ in range(2):
            server.kill9()
            time.sleep(0.2)
            server.launch()  # same port and dir: it loads its AOF again
            down_for.append(0.2 + server.wait_pong())
            time.sleep(0.5)
        total = hammer.stop()
        retries, reasons = hammer.retries()
    final = get_counter(KEY)
    figures(
        f"restart (4 threads, 2 kills, RETRY_DEADLINE_MS={deadline_ms})",
        kind,
        applied=total.applied,
        outcome_unknown=total.unknown,
        final=final,
        errors_to_callers=sum(total.kinds().values()),
        retries=retries,
        **{f"retried_{reason}": count for reason, count in reasons.items()},
        down_s="/".join(f"{s:.2f}" for s in down_for),
    )
    print(
        f"\n[{kind}] kill -9 + restart, deadline {deadline_ms} ms: {total.applied} applied, "
        f"{total.unknown} unknown, final {final}; errors {dict(total.kinds())}; retries "
        f"{retries} {reasons}; down {down_for}"
    )
    assert final >= total.applied, f"{total.applied} answered but only {final} survived"
    check_history(total, final, deadline_ms=deadline_ms)
    if deadline_ms:
        assert reasons.get("connect", 0) > 0  # the down time was ridden through
    else:
        assert retries == 0
        assert total.errors, "the servers were down, yet no caller noticed: proves nothing"


@pytest.mark.parametrize(("deadline_ms", "low", "high"), [(1500, 1.2, 4.0), (0, 0.0, 0.5)])
def test_a_server_gone_for_good_raises_after_the_deadline(
    kind, make_server, settings, deadline_ms, low, high
):
    server = make_server(kind)
    configure(settings, server.url, deadline_ms)
    assert bounded_incr(KEY, 10).applied  # the pool has a live connection now
    server.kill9()
    stats = registry.get(SCRIPT).stats
    before, connects = stats["retries"], stats.reasons["connect"]
    started = time.monotonic()
    with pytest.raises(RedisUnavailable) as caught:
        bounded_incr(KEY, 10)
    took = time.monotonic() - started
    assert not isinstance(caught.value, OutcomeUnknown)
    assert low <= took <= high, took
    retries = stats["retries"] - before
    assert stats.reasons["connect"] - connects == retries
    if deadline_ms:
        # Jittered pauses of 10-20 ms doubling to 250-500 ms fit 5-10 of them in 1.5 s.
        assert 4 <= retries <= 40, retries
    else:
        assert retries == 0


@pytest.mark.parametrize(("deadline_ms", "low", "high"), [(1500, 1.2, 4.0), (0, 0.0, 0.5)])
async def test_async_a_server_gone_for_good_raises_after_the_deadline(
    kind, make_server, settings, deadline_ms, low, high
):
    server = make_server(kind)
    url = server.url
    server.kill9()
    configure(settings, url, deadline_ms)
    started = time.monotonic()
    with pytest.raises(RedisUnavailable) as caught:
        await abounded_incr(KEY, 10)
    took = time.monotonic() - started
    assert not isinstance(caught.value, OutcomeUnknown)
    assert low <= took <= high, took


def _refuse_writes(port: int) -> None:
    from tests.faults.servers import raw_command

    raw_command(port, "CONFIG", "SET", "min-replicas-to-write", "1")
    raw_command(port, "CONFIG", "RESETSTAT")


def _calls(raw, command: str) -> int:
    return int(raw.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


def _accept_writes_later(port: int, after: float) -> threading.Thread:
    from tests.faults.servers import raw_command

    def accept() -> None:
        time.sleep(after)
        raw_command(port, "CONFIG", "SET", "min-replicas-to-write", "0")

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    return thread


def test_a_batch_sends_again_only_the_calls_refused(kind, make_server, settings):
    server = make_server(kind)
    configure(settings, server.url, 5000)
    assert bounded_incr("faults:retry:read", 100, amount=7).applied
    bounded_incr("faults:retry:write", 100)  # the scripts are loaded, EVALSHA_RO known
    _refuse_writes(server.port)
    stats = registry.get(SCRIPT).stats
    read_stats = registry.get("counter_get").stats
    before, reads_before = stats.reasons["noreplicas"], read_stats["retries"]
    accepting = _accept_writes_later(server.port, 0.4)
    started = time.monotonic()
    with batch() as b:
        read = b.get_counter("faults:retry:read")
        write = b.bounded_incr("faults:retry:write", 100)
    took = time.monotonic() - started
    accepting.join()
    assert read.result() == 7
    assert write.result().applied and write.result().value == 2  # once, not twice
    assert 0.35 <= took <= 3.0, took
    assert stats.reasons["noreplicas"] - before >= 2  # refused a few times, then served
    assert read_stats["retries"] == reads_before
    raw = server.client()
    assert _calls(raw, "evalsha_ro") == 1  # the read went once, in the first round trip
    assert get_counter("faults:retry:write") == 2
    raw.close()


async def test_async_batch_and_auto_pipeline_send_again_only_the_calls_refused(
    kind, make_server, settings
):
    server = make_server(kind)
    configure(settings, server.url, 5000)
    assert (await abounded_incr("faults:retry:read", 100, amount=7)).applied
    await abounded_incr("faults:retry:write", 100)
    _refuse_writes(server.port)
    accepting = _accept_writes_later(server.port, 0.4)
    async with abatch() as b:
        read = b.get_counter("faults:retry:read")
        write = b.bounded_incr("faults:retry:write", 100)
    assert read.result() == 7
    assert write.result().value == 2
    await asyncio.to_thread(accepting.join)

    # Auto-pipelined calls ride the same rounds: 8 tasks, one write each, refused, then
    # each applied exactly once.
    configure(settings, server.url, 5000, AUTO_PIPELINE=True)
    _refuse_writes(server.port)
    accepting = _accept_writes_later(server.port, 0.4)
    results = await asyncio.gather(*(abounded_incr("faults:retry:write", 100) for _ in range(8)))
    await asyncio.to_thread(accepting.join)
    assert sorted(r.value for r in results) == list(range(3, 11))
    client = AsyncRedis(port=server.port)
    try:
        info = await client.info("commandstats")
    finally:
        await client.aclose()
    assert int(info.get("cmdstat_evalsha", {}).get("calls", 0)) >= 2  # refused, then served


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_a_lock_acquire_retries_no_longer_than_its_own_timeout(
    kind, make_server, settings, asynchronous
):
    from atomicops import Lock

    server = make_server(kind)
    url = server.url
    server.kill9()
    configure(settings, url, 10_000)
    lock = Lock("faults:retry:lock", ttl=5, timeout=0.6)
    started = time.monotonic()
    with pytest.raises(RedisUnavailable) as caught:
        if asynchronous:
            await lock.aacquire()
        else:
            await asyncio.to_thread(lock.acquire)
    took = time.monotonic() - started
    assert not isinstance(caught.value, OutcomeUnknown)
    assert 0.4 <= took <= 2.0, took  # its timeout, not the 10 s deadline


async def test_a_lock_wait_rides_through_a_restart(kind, make_server, settings):
    """A waiter blocked on the wake-up list while the server restarts is not failed: its
    BLPOP's failure ends the wait, and its next acquire is retried until the server is
    back; it gets the lock once the holder's lease runs out."""
    from atomicops import Lock

    server = make_server(kind, "--appendonly", "yes", "--appendfsync", "always")
    configure(settings, server.url, 10_000)
    holder = Lock("faults:retry:wait", ttl=1.5)
    assert holder.acquire()
    waiter = Lock("faults:retry:wait", ttl=5, timeout=8)
    result: dict[str, object] = {}

    def wait() -> None:
        try:
            result["granted"] = waiter.acquire()
        except Exception as exc:  # judged below
            result["error"] = exc

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(0.3)  # refused, blocked on the wake-up list
    server.kill9()
    time.sleep(0.3)
    server.launch()
    server.wait_pong()
    await asyncio.to_thread(thread.join, 15)
    assert result == {"granted": True}
    waiter.release()


@pytest.mark.parametrize("fail_open", [True, False])
def test_rate_limit_decides_fail_open_only_after_the_deadline(
    kind, make_server, settings, fail_open
):
    """@rate_limit's fail_open (and the DRF throttles, which catch the same errors around
    the same calls) is decided once the call's retries gave up, not at the first refusal."""
    from django.http import HttpResponse
    from django.test import RequestFactory

    from atomicops import rate_limit

    server = make_server(kind)
    url = server.url
    server.kill9()
    configure(settings, url, 1500)

    @rate_limit(5, 60_000, key="ip", fail_open=fail_open, group=f"retry-{fail_open}")
    def view(request):
        return HttpResponse("ran")

    started = time.monotonic()
    response = view(RequestFactory().get("/"))
    took = time.monotonic() - started
    assert response.status_code == (200 if fail_open else 503)
    assert 1.2 <= took <= 4.0, took
