"""The client side of a run: what each forked client process does, recording every call.

A client configures atomicops from its own Django settings (the deployment's, with a
short socket timeout), then calls in a loop until told to stop, recording an
:class:`~tests.jepsen.history.Op` per call. How a call ended decides its type:

* it answered: ``ok`` with its output;
* ``OutcomeUnknown`` (sent, no reply) or ``NotReplicated`` (applied on the primary, not
  confirmed by the replicas, so a failover may drop it): ``info``;
* any other ``RedisUnavailable`` (refused, unreachable, loading: nothing was run): ``fail``;
* ``LockNotOwned`` on a release: ``fail`` (nothing changed);
* anything else is a harness bug (a configuration error, bad input): the client fails
  and so does the run.

Each client waits 0-4 ms between calls (about 2,000 calls a second from six clients):
enough to keep every fault busy with calls in flight, without starving the servers,
the sentinels and the other users of a shared machine of CPU.

``control=True`` replaces the atomic operation with a client-side read, then write
(plain GET and SET on the same connection settings, a millisecond of "work" between
them), which concurrent clients break: the checker must say so.
"""

from __future__ import annotations

import random
import time
from functools import partial
from typing import Any

from django.conf import settings

from atomicops import (
    Lock,
    LockNotOwned,
    NotReplicated,
    OutcomeUnknown,
    RedisUnavailable,
    bounded_incr,
    compare_and_set,
    connection,
    get_counter,
    replication,
)
from tests.jepsen.history import Op

REGISTER_KEYS = [f"jepsen:register:{i}" for i in range(3)]
COUNTER_LIMIT = 200  # per counter key; the clients move on to the next key once it is full
LOCK_NAME = "jepsen"
FENCE_TOKEN, FENCE_LOG = "jepsen:resource:token", "jepsen:resource:log"

# The fenced resource, a stand-in for a storage service outside Redis: it runs on a
# server of its own that no nemesis touches, and accepts a write only with a fencing
# token at least the last one accepted (a holder writes twice with its token), logging
# each accepted write in the order it accepted them.
FENCED_WRITE = """
local last = tonumber(redis.call('GET', KEYS[1]) or '-1')
local token = tonumber(ARGV[1])
if token < last then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. ARGV[3])
return 1
"""


def configure(atomicops: dict[str, Any]) -> None:
    """This process's ATOMICOPS setting (a forked child's settings are its own copy)."""
    settings.ATOMICOPS = {
        "LOAD_ON_STARTUP": False,
        "STATS_FLUSH_INTERVAL": 0,
        "PROMETHEUS": False,
        "OPENTELEMETRY": False,
        **atomicops,
    }
    from atomicops.conf import get_settings

    get_settings.cache_clear()
    connection.reset_clients()
    replication.refresh()


def outcome(exc: BaseException) -> str:
    if isinstance(exc, (OutcomeUnknown, NotReplicated)):
        return "info"
    if isinstance(exc, (RedisUnavailable, LockNotOwned)):
        return "fail"
    raise exc


class Recorder:
    def __init__(self, process: int) -> None:
        self.process = process
        self.rng = random.Random(process)
        self.ops: list[Op] = []

    def call(self, f: str, key: str, value: Any, run: Any) -> Any:
        """Run ``run()``, record it; returns its output, or None when it raised."""
        start = time.monotonic_ns()
        try:
            output = run()
        except Exception as exc:
            kind = outcome(exc)  # raises what is no outcome of a call: a harness bug
            end = time.monotonic_ns() if kind == "fail" else None
            self.ops.append(
                Op(self.process, f, key, value, kind, None, start, end, type(exc).__name__)  # type: ignore[arg-type]
            )
            time.sleep(0.02)  # the server may be down: do not spin
            return None
        self.ops.append(Op(self.process, f, key, value, "ok", output, start, time.monotonic_ns()))
        time.sleep(self.rng.random() * 0.004)
        return output


def raw_client() -> Any:
    return connection.get_client()


# -- register ---------------------------------------------------------------------------


def register(index: int, stop: Any, atomicops: dict[str, Any], control: bool, seed: int) -> list:
    configure(atomicops)
    rng = random.Random(seed * 1000 + index)
    record = Recorder(index)
    seen: dict[str, int | None] = dict.fromkeys(REGISTER_KEYS)
    serial = 0
    raw = raw_client() if control else None

    def read(key: str) -> int | None:
        return get_counter(key) or None  # 0: the key does not exist (no one writes 0)

    def cas(key: str, expected: int | None, new: int) -> bool:
        if raw is None:
            return compare_and_set(key, None if expected is None else str(expected), str(new))
        current = raw.get(key)
        if (int(current) if current is not None else None) != expected:
            return False
        time.sleep(0.001)
        try:
            raw.set(key, str(new))
        except Exception as exc:  # the write may have landed
            raise OutcomeUnknown(f"control SET {key}") from exc
        return True

    while not stop.is_set():
        key = rng.choice(REGISTER_KEYS)
        if rng.random() < 0.5:
            value = record.call("read", key, None, lambda key=key: read(key))
            if record.ops[-1].type == "ok":
                seen[key] = value
        else:
            serial += 1
            new = index * 10**9 + serial  # every value written once in the whole run
            expected = seen[key]
            applied = record.call("cas", key, [expected, new], partial(cas, key, expected, new))
            if applied:
                seen[key] = new
    return record.ops


# -- counter ----------------------------------------------------------------------------


def counter_key(n: int) -> str:
    return f"jepsen:counter:{n}"


def counter(index: int, stop: Any, atomicops: dict[str, Any], control: bool, seed: int) -> list:
    configure(atomicops)
    record = Recorder(index)
    raw = raw_client() if control else None
    current = 0  # the counter key this client works on

    def incr(key: str) -> list:
        if raw is None:
            result = bounded_incr(key, COUNTER_LIMIT)
            return [result.value, result.applied]
        value = int(raw.get(key) or 0)
        if value + 1 > COUNTER_LIMIT:
            return [value, False]
        time.sleep(0.001)
        try:
            raw.set(key, value + 1)
        except Exception as exc:
            raise OutcomeUnknown(f"control SET {key}") from exc
        return [value + 1, True]

    while not stop.is_set():
        key = counter_key(current)
        output = record.call("incr", key, 1, lambda key=key: incr(key))
        if output is not None and not output[1]:
            current += 1  # full: the next one (the others follow as they find it full)
    return record.ops


def counter_finals(client: Any, ops: list[Op]) -> dict[str, int]:
    keys = sorted({op.key for op in ops})
    return {key: int(client.get(key) or 0) for key in keys}


# -- lock -------------------------------------------------------------------------------


def lock(
    index: int, stop: Any, atomicops: dict[str, Any], control: bool, seed: int, resource: str
) -> list:
    import redis

    configure(atomicops)
    record = Recorder(index)
    store = redis.Redis.from_url(resource, socket_timeout=10)
    fenced = store.register_script(FENCED_WRITE)
    raw = raw_client() if control else None
    sections = 0

    def write(token: int, holder: int, phase: str) -> bool:
        return bool(fenced(keys=[FENCE_TOKEN, FENCE_LOG], args=[token, holder, phase]))

    def take(lock: Lock) -> int | None:
        """The fencing token, or None when not granted."""
        if raw is None:
            return lock.fencing_token if lock.acquire(timeout=3.0) else None
        # Control: look, then take, then count: three round trips anyone can slip into.
        if raw.get(f"jepsen:control:{LOCK_NAME}") is not None:
            time.sleep(0.002)
            return None
        time.sleep(0.001)
        raw.set(f"jepsen:control:{LOCK_NAME}", "x", px=2000)
        token = int(raw.get(f"jepsen:control:{LOCK_NAME}:fence") or 0) + 1
        raw.set(f"jepsen:control:{LOCK_NAME}:fence", token)
        return token

    def give_back(lock: Lock) -> None:
        if raw is None:
            lock.release()
        else:
            raw.delete(f"jepsen:control:{LOCK_NAME}")

    while not stop.is_set():
        sections += 1
        holder = index * 1_000_000 + sections  # one id per critical section
        mutex = Lock(LOCK_NAME, ttl=2.0)
        started = time.monotonic_ns()
        token = record.call("acquire", LOCK_NAME, holder, lambda mutex=mutex: take(mutex))
        if token is None:
            continue
        entered = time.monotonic_ns()
        begun = write(token, holder, "begin")
        time.sleep(0.002)  # the work the lock protects
        ended = write(token, holder, "end")
        record.call("release", LOCK_NAME, holder, lambda mutex=mutex: give_back(mutex))
        record.ops.append(
            Op(
                index,
                "section",
                LOCK_NAME,
                token,
                "ok",
                {"holder": holder, "begin": begun, "end": ended, "since": started},
                entered,
                time.monotonic_ns(),
            )  # fmt: skip
        )
    store.close()
    return record.ops


def resource_log(client: Any) -> list[tuple[int, int, str]]:
    entries = []
    for raw in client.lrange(FENCE_LOG, 0, -1):
        token, holder, phase = raw.decode().split()
        entries.append((int(token), int(holder), phase))
    return entries
