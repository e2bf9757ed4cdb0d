"""``kill -9`` of a server with ``appendonly yes`` and ``appendfsync always`` under load.

Eight processes run ``bounded_incr`` and ``incr`` on two shared counters while the server
is killed twice and restarted on the same port and dir (it reloads its AOF). Each process
counts the calls that answered (applied) and those that raised ``OutcomeUnknown``. With
every answered write fsynced before its reply, and nothing applied twice:

    sum(applied) <= final <= sum(applied) + count(OutcomeUnknown)

A call that raised any other ``RedisUnavailable`` (connection refused while the server
was down, ``ServerLoading`` while it reloaded) promised that nothing was applied, so it
has no room in that sum. The AOF is loaded with ``--key-load-delay``, so each restart
answers ``-LOADING`` for the better part of a second while the processes keep calling.
"""

from __future__ import annotations

import time
from contextlib import ExitStack

import pytest

from atomicops import OutcomeUnknown, RedisUnavailable, ServerLoading, bounded_incr, incr
from tests.faults.servers import fill
from tests.multiproc import Background

pytestmark = [pytest.mark.faults, pytest.mark.real, pytest.mark.slow]

WORKERS = 8
KILLS = 2
BOUNDED, PLAIN = "faults:kill9:bounded", "faults:kill9:plain"
LIMIT = 10**12  # never reached: every answered bounded_incr is applied


def hammer(stop, index: int) -> dict:
    applied = {BOUNDED: 0, PLAIN: 0}
    unknown = {BOUNDED: 0, PLAIN: 0}
    unavailable = loading = refused = 0
    turn = index
    while not stop.is_set():
        key = BOUNDED if turn % 2 else PLAIN
        turn += 1
        try:
            if key == BOUNDED:
                if not bounded_incr(BOUNDED, LIMIT).applied:
                    refused += 1  # the limit is never reached: a wrong answer
                    continue
            else:
                incr(PLAIN)
            applied[key] += 1
        except OutcomeUnknown:
            unknown[key] += 1
        except ServerLoading:  # refused while it reloads the AOF: not applied
            loading += 1
            time.sleep(0.01)
        except RedisUnavailable:  # down: not applied
            unavailable += 1
            time.sleep(0.01)
    return {
        "applied": applied,
        "unknown": unknown,
        "unavailable": unavailable,
        "loading": loading,
        "refused": refused,
    }


def test_kill9_under_load(kind, make_server, settings, figures):
    server = make_server(
        kind,
        *("--appendonly", "yes", "--appendfsync", "always"),
        # Each command of the AOF is loaded with this delay (us): the fillers and the
        # counters' own writes make each restart answer LOADING for 0.5-1 s.
        *("--key-load-delay", "300", "--loading-process-events-interval-bytes", "1024"),
    )
    raw = server.client()
    fill(raw, 1000)
    raw.close()
    settings.ATOMICOPS = {"URL": server.url, "LOAD_ON_STARTUP": False, "SOCKET_TIMEOUT": 2.0}
    results, failures = [], []
    with ExitStack() as stack:
        workers = [stack.enter_context(Background(hammer, i)) for i in range(WORKERS)]
        time.sleep(0.5)
        down_for = []
        for _ in range(KILLS):
            server.kill9()
            time.sleep(0.1)
            server.launch()  # same port, same dir: the AOF is loaded again
            down_for.append(0.1 + server.wait_pong())
            time.sleep(0.5)
        for worker in workers:
            try:
                results.append(worker.stop())
            except AssertionError as exc:
                failures.append(str(exc))
    assert not failures, "\n".join(failures)

    raw = server.client()
    final = {key: int(raw.get(key) or 0) for key in (BOUNDED, PLAIN)}
    raw.close()
    applied = {key: sum(r["applied"][key] for r in results) for key in final}
    unknown = {key: sum(r["unknown"][key] for r in results) for key in final}
    figures(
        "d. kill -9 with appendfsync always (8 processes, 2 kills)",
        kind,
        applied=sum(applied.values()),
        outcome_unknown=sum(unknown.values()),
        final=sum(final.values()),
        unavailable=sum(r["unavailable"] for r in results),
        refused_as_ServerLoading=sum(r["loading"] for r in results),
        restart_s="/".join(f"{s:.2f}" for s in down_for),
    )
    refused = sum(r["refused"] for r in results)
    assert not refused, f"{refused} bounded_incr calls answered 'not applied' far below the limit"
    for key in final:
        assert applied[key] > 0, f"{key}: no call was applied, the test proves nothing"
        assert final[key] >= applied[key], (
            f"{key}: {applied[key]} calls answered but only {final[key]} survived the kills"
        )
        assert final[key] <= applied[key] + unknown[key], (
            f"{key}: {final[key]} applied, more than the {applied[key]} answered plus "
            f"{unknown[key]} unknown: a call that said nothing was applied (RedisUnavailable, "
            "ServerLoading) was applied, or a call was applied twice"
        )
