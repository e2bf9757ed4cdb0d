"""A server at ``maxmemory`` with ``noeviction`` refuses writes (``-OOM``): a refusal.

Writes that would grow the data must raise :class:`ServerOutOfMemory` (a
``RedisUnavailable``: nothing applied) and change nothing; reads still work, and so do
deletes, which the server lets through to free memory. Once memory is available again
the same clients work.
"""

from __future__ import annotations

import pytest
import redis

from atomicops import Lock, Semaphore, ServerOutOfMemory
from tests.faults.catalogue import PRIMITIVES, WHO, Clients, describe, run_case
from tests.faults.servers import diff, snapshot

pytestmark = [pytest.mark.faults, pytest.mark.real]

CASES = [(p, mode, who) for p in PRIMITIVES for mode in ("sync", "async") for who in WHO]


def case_key(primitive, mode: str, who: str) -> str:
    return f"faults:oom:{primitive.name}:{mode}:{who}"


def fill_to_the_limit(raw: redis.Redis) -> int:
    """Set maxmemory 1 MB above what is used and write until the server says OOM."""
    used = raw.info("memory")["used_memory"]
    raw.config_set("maxmemory", used + 1_000_000)
    value = b"x" * 10_000
    for index in range(10_000):
        try:
            raw.set(f"faults:fill:{index}", value)
        except redis.exceptions.OutOfMemoryError:
            return index
    raise AssertionError("the server never ran out of memory")


def is_oom_refusal(outcome: object) -> bool:
    return isinstance(outcome, ServerOutOfMemory) and getattr(outcome, "code", None) == "OOM"


async def test_out_of_memory_refuses_writes_and_serves_reads(kind, make_server, settings, figures):
    server = make_server(kind, "--maxmemory-policy", "noeviction")
    settings.ATOMICOPS = {"URL": server.url, "LOAD_ON_STARTUP": False}
    raw = server.client()
    warm = Clients(server.port)
    fresh = None
    failures = []
    try:
        for who in WHO:  # scripts loaded and connections made while memory was there
            await run_case(PRIMITIVES[2], f"faults:warm:{who}", warm.pick(who, "sync"), "sync")
            await run_case(PRIMITIVES[2], f"faults:awarm:{who}", warm.pick(who, "async"), "async")
        for primitive, mode, who in CASES:
            primitive.setup(raw, case_key(primitive, mode, who))
        filled = fill_to_the_limit(raw)
        before = snapshot(raw, "faults:oom:*")

        outcomes = {}
        for primitive, mode, who in CASES:
            key = case_key(primitive, mode, who)
            outcomes[primitive, mode, who] = await run_case(
                primitive, key, warm.pick(who, mode), mode
            )
        # A fresh user client: its first call carries SCRIPT LOAD of every script.
        fresh = Clients(server.port)
        for primitive in PRIMITIVES:
            for mode in ("sync", "async"):
                key = case_key(primitive, mode, "user")
                outcomes[primitive, mode, "fresh"] = await run_case(
                    primitive, key, fresh.pick("user", mode), mode
                )
        # Reads that atomicops offers besides get_counter.
        lock, semaphore = Lock("faults:oom:lock", 30), Semaphore("faults:oom:sem", 2, 30)
        for label, read in [("Lock.locked", lock.locked), ("Semaphore.holders", semaphore.holders)]:
            try:
                if read() not in (False, 0):
                    failures.append(f"{label} under OOM: wrong answer")
            except Exception as exc:
                failures.append(f"{label} under OOM {describe(exc)}")
        after = snapshot(raw, "faults:oom:*")
        deleted = {
            case_key(p, mode, who).encode()
            for (p, mode, who), outcome in outcomes.items()
            if not p.grows and not isinstance(outcome, Exception) and p.write
        }
        for (primitive, mode, who), outcome in outcomes.items():
            label = f"{primitive.name} {mode} {who} under OOM"
            if primitive.grows:
                if not is_oom_refusal(outcome):
                    failures.append(f"{label} {describe(outcome)}")
            elif who != "fresh" or not primitive.write:
                # Reads and deletes are let through: they must simply work.
                if isinstance(outcome, Exception) or not primitive.ok(outcome):
                    failures.append(f"{label} (a read or a delete) {describe(outcome)}")
        changed = [c for c in diff(before, after) if not any(repr(k) in c for k in deleted)]

        raw.config_set("maxmemory", 0)
        recovered = 0
        for primitive, mode, who in CASES:
            if not primitive.grows:
                continue
            key = case_key(primitive, mode, who)
            outcome = await run_case(primitive, key, warm.pick(who, mode), mode)
            if isinstance(outcome, Exception) or not primitive.ok(outcome):
                failures.append(f"{primitive.name} {mode} {who} after OOM {describe(outcome)}")
            elif primitive.applied(raw, key) != 1:
                failures.append(f"{primitive.name} {mode} {who} after OOM: not applied once")
            else:
                recovered += 1
    finally:
        await warm.close()
        if fresh is not None:
            await fresh.close()
        raw.close()

    writes = [o for (p, _, _), o in outcomes.items() if p.grows]
    figures(
        "b. OOM (maxmemory, noeviction)",
        kind,
        filler_writes_until_oom=filled,
        writes_refused_as_ServerOutOfMemory=f"{sum(map(is_oom_refusal, writes))}/{len(writes)}",
        reads_and_deletes_served=sum(
            1
            for (p, _, who), o in outcomes.items()
            if not p.grows and who != "fresh" and not isinstance(o, Exception)
        ),
        recovered_after=recovered,
        failures=len(failures) + len(changed),
    )
    assert not changed, f"calls under OOM changed data: {changed}"
    assert not failures, f"{len(failures)} checks failed:\n" + "\n".join(failures)
