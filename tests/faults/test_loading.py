"""A restarting server answers ``-LOADING`` for seconds: a refusal, never a result.

The server is given a few thousand keys, saved (RDB) and restarted with
``--key-load-delay`` (microseconds per key) and a small
``--loading-process-events-interval-bytes``, so it answers ``-LOADING`` for about
1.5-2 s (redis-server 7 and valkey-server 9 both have these options). During that
time every primitive, sync and async, on a client that was in use before the restart
and on a fresh one (whose first call carries ``SCRIPT LOAD`` of every registered
script), must raise :class:`ServerLoading` and change nothing; once loading ends the
same clients work again.
"""

from __future__ import annotations

import random
import time
import warnings
from contextlib import ExitStack

import pytest
import redis
import redis.asyncio

from atomicops import OutcomeUnknown, RedisUnavailable, ServerLoading, compare_and_set
from atomicops.engine import connection
from tests.faults.catalogue import PRIMITIVES, WHO, Clients, describe, run_case
from tests.faults.servers import OwnServer, diff, fill, snapshot
from tests.multiproc import Background

pytestmark = [pytest.mark.faults, pytest.mark.real]

# 7000 keys at 500 us each: LOADING for about 4 s on both servers here. While loading,
# valkey-server answers about every 20 ms, so a test's ~60 calls (and the handshakes of
# the connections made after the restart) need about 1.5 s of it.
LOAD_DELAY = ("--key-load-delay", "500", "--loading-process-events-interval-bytes", "1024")
FILLER_KEYS = 7000


@pytest.fixture
def loading_server(kind, make_server) -> OwnServer:
    server = make_server(kind, *LOAD_DELAY)
    raw = server.client()
    fill(raw, FILLER_KEYS)
    raw.close()
    return server


def restart_into_loading(server: OwnServer) -> float:
    """Save, stop, start again; return once PING answers LOADING."""
    raw = server.client()
    raw.save()
    raw.close()
    server.stop()
    server.launch()
    return server.wait_loading()


def is_loading_refusal(outcome: object) -> bool:
    return isinstance(outcome, ServerLoading) and getattr(outcome, "code", None) == "LOADING"


AGES = ("warm", "fresh")  # in use before the restart / made during LOADING
CASES = [
    (p, mode, who, age) for age in AGES for p in PRIMITIVES for mode in ("sync", "async") for who in WHO
]  # fmt: skip


def case_key(primitive, mode: str, who: str, age: str) -> str:
    return f"faults:loading:{age}:{primitive.name}:{mode}:{who}"


def case_label(primitive, mode: str, who: str, age: str) -> str:
    return f"{primitive.name} {mode} {who} ({age} client)"


def check_recovered(raw: redis.Redis, primitive, key: str, outcome, label: str) -> list[str]:
    if isinstance(outcome, Exception) or not primitive.ok(outcome):
        return [f"{label} after LOADING: {describe(outcome)}"]
    applied = primitive.applied(raw, key)
    expected = 1 if primitive.write else 0
    if applied != expected:
        return [f"{label} after LOADING: applied {applied} times, expected {expected}"]
    return []


async def test_loading_refuses_every_call_then_recovers(loading_server, settings, figures):
    """Every primitive, sync and async, on atomicops' own client and a user's, each both
    in use before the restart ("warm") and made during LOADING ("fresh": its first call
    carries SCRIPT LOAD of every registered script): ServerLoading while the server
    loads, nothing changed, and the right result on the same client once it is loaded.

    A call that is not refused with ServerLoading is a failure if the server still
    answers LOADING right after it; if loading had ended by then (a slow machine), the
    call is not judged, and counted as such in the figures.
    """
    server = loading_server
    # Each refusal itself, as a caller meets it with retries off (riding through
    # them with RETRY_DEADLINE_MS is tests/faults/test_retry.py's).
    settings.ATOMICOPS = {"URL": server.url, "LOAD_ON_STARTUP": False, "RETRY_DEADLINE_MS": 0}
    raw = server.client()
    clients = {"warm": Clients(server.port)}
    try:
        # Warm: connected, scripts loaded, the registry's state known.
        for who in WHO:
            for mode in ("sync", "async"):
                key = f"faults:warmup:{who}:{mode}"
                await run_case(PRIMITIVES[2], key, clients["warm"].pick(who, mode), mode)
        clients["warm"].pin_own()
        for primitive, mode, who, age in CASES:
            primitive.setup(raw, case_key(primitive, mode, who, age))
        before = snapshot(raw, "faults:loading:*")
        restart_into_loading(server)

        outcomes: dict[tuple, tuple[str, object]] = {}
        for primitive, mode, who, age in CASES:
            if age == "fresh" and age not in clients:
                connection.reset_clients()  # atomicops builds its client anew: a new pool
                clients["fresh"] = Clients(server.port)
            outcome = await run_case(
                primitive, case_key(primitive, mode, who, age), clients[age].pick(who, mode), mode
            )
            if is_loading_refusal(outcome):
                verdict = "refused"
            elif server.loading():
                verdict = "failed"
            else:
                verdict = "unjudged"  # loading had ended: the call may rightly have run
            outcomes[primitive, mode, who, age] = (verdict, outcome)
        clients["fresh"].pin_own()
        server.wait_pong()
        # A call made once loading had ended may rightly have run (see the docstring):
        # only the keys of calls made while the server loaded must be untouched.
        unjudged = [
            case_key(*case) for case, (verdict, _) in outcomes.items() if verdict == "unjudged"
        ]
        changes = [
            change
            for change in diff(before, snapshot(raw, "faults:loading:*"))
            if not any(f"'{key}'" in change for key in unjudged)
        ]

        failures = [
            f"{case_label(*case)} during LOADING {describe(outcome)}"
            for case, (verdict, outcome) in outcomes.items()
            if verdict == "failed"
        ]
        for primitive, mode, who, age in CASES:
            key = case_key(primitive, mode, who, age)
            outcome = await run_case(primitive, key, clients[age].pick(who, mode), mode)
            failures += check_recovered(
                raw, primitive, key, outcome, case_label(primitive, mode, who, age)
            )
    finally:
        for made in clients.values():
            await made.close()
        raw.close()

    for age, scenario in (
        ("warm", "a. LOADING: clients in use before the restart"),
        ("fresh", "a. LOADING: fresh clients (first call carries SCRIPT LOAD)"),
    ):
        verdicts = [v for (*_, a), (v, _) in outcomes.items() if a == age]
        figures(
            scenario,
            server.name,
            calls=len(verdicts),
            refused_as_ServerLoading=verdicts.count("refused"),
            not_judged_loading_over=verdicts.count("unjudged"),
            failures=sum(f"({age} client)" in failure for failure in failures) + len(changes),
        )
    assert not changes, f"calls during LOADING changed data: {changes}"
    assert not failures, f"{len(failures)} of {2 * len(CASES)} checks failed:\n" + "\n".join(
        failures
    )
    unjudged = [case_label(*c) for c, (v, _) in outcomes.items() if v == "unjudged"]
    assert len(unjudged) < len(CASES), "LOADING ended before any call was made"
    if unjudged:
        warnings.warn(
            f"LOADING ended before {len(unjudged)} calls, not judged: {unjudged[:3]}...",
            stacklevel=1,
        )


# -- 8 processes claim jobs across restarts ------------------------------------------

CLAIM_JOBS = 1200
CLAIM_WORKERS = 8
CLAIM_PAUSE = 0.025  # between attempts: the jobs last across both restarts
RESTARTS = 2


def claim_jobs(stop, index: int) -> dict:
    """Claim jobs with compare_and_set(job, None, me) until told to stop."""
    me = f"worker-{index}"
    order = list(range(CLAIM_JOBS))
    random.Random(index).shuffle(order)
    claimed, unknown = [], []
    loading = unavailable = 0
    position = 0
    while not stop.is_set() and position < len(order):
        job = order[position]
        try:
            if compare_and_set(f"faults:claims:{job}", None, me):
                claimed.append(job)
            position += 1
        except OutcomeUnknown:
            unknown.append(job)  # may or may not be ours: the final data says
            position += 1
        except ServerLoading:
            loading += 1  # refused, nothing applied: try the same job again
        except RedisUnavailable:
            unavailable += 1
        time.sleep(CLAIM_PAUSE)
    return {
        "me": me,
        "claimed": claimed,
        "unknown": unknown,
        "loading": loading,
        "unavailable": unavailable,
    }


@pytest.mark.slow
def test_claims_across_restarts(kind, make_server, settings, figures):
    """Every claim answered True is in the final data; no job is claimed twice."""
    server = make_server(kind, *LOAD_DELAY)
    raw = server.client()
    fill(raw, 1000)  # ~0.5 s of LOADING before the claims' own keys
    raw.close()
    # Each refusal itself, as a caller meets it with retries off (riding through
    # them with RETRY_DEADLINE_MS is tests/faults/test_retry.py's).
    settings.ATOMICOPS = {
        "URL": server.url,
        "LOAD_ON_STARTUP": False,
        "SOCKET_TIMEOUT": 2.0,
        "RETRY_DEADLINE_MS": 0,
    }
    loading_seen = []
    failures = []
    results = []
    with ExitStack() as stack:
        workers = [stack.enter_context(Background(claim_jobs, i)) for i in range(CLAIM_WORKERS)]
        time.sleep(0.5)
        for _ in range(RESTARTS):
            server.shutdown_save()  # every claim answered before it is in the RDB
            server.launch()
            loading = server.wait_loading()
            loading_seen.append(loading + server.wait_pong())
            time.sleep(0.5)
        for worker in workers:
            try:
                results.append(worker.stop())
            except AssertionError as exc:  # the worker raised: an error we did not expect
                failures.append(str(exc))
    assert not failures, "\n".join(failures)

    raw = server.client()
    final = {}
    for job, value in zip(
        range(CLAIM_JOBS),
        raw.mget([f"faults:claims:{j}" for j in range(CLAIM_JOBS)]),
        strict=True,
    ):
        if value is not None:
            final[job] = value.decode()
    raw.close()

    owners: dict[int, list[str]] = {}
    for result in results:
        for job in result["claimed"]:
            owners.setdefault(job, []).append(result["me"])
    twice = {job: who for job, who in owners.items() if len(who) > 1}
    lost = {
        job: who[0] for job, who in owners.items() if len(who) == 1 and final.get(job) != who[0]
    }
    unexplained = {
        job: holder
        for job, holder in final.items()
        if job not in owners and not any(r["me"] == holder and job in r["unknown"] for r in results)
    }
    figures(
        "a. LOADING: 8 processes claim jobs across 2 restarts",
        kind,
        claims_true=sum(len(r["claimed"]) for r in results),
        outcome_unknown=sum(len(r["unknown"]) for r in results),
        refused_as_ServerLoading=sum(r["loading"] for r in results),
        unavailable=sum(r["unavailable"] for r in results),
        loading_s="/".join(f"{s:.1f}" for s in loading_seen),
        lost_claims=len(lost),
        claimed_twice=len(twice),
    )
    assert not twice, f"jobs claimed by two workers: {dict(list(twice.items())[:10])}"
    assert not lost, (
        f"{len(lost)} claims answered True are not in the final data (job: claimant), "
        f"e.g. {dict(list(lost.items())[:10])}"
    )
    assert not unexplained, f"jobs held by a worker that never claimed them: {unexplained}"
    assert sum(r["loading"] for r in results) > 0, "no worker ever met LOADING"
