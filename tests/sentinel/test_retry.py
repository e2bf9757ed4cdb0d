"""``RETRY_DEADLINE_MS`` behind Sentinel: a ``SENTINEL FAILOVER`` under 4 threads.

The old primary keeps serving until Sentinel reconfigures it (up to ~10 s); then it
answers ``READONLY`` or drops its clients, and until a connection asks the sentinels
again the calls meet a demoted node or a refused connection: nothing ran. With a 10 s
deadline they are sent again (the pool's idle connections dropped, so the next ones ask
the sentinels) and no error but ``OutcomeUnknown`` reaches a caller. Nothing is applied
twice. What the old primary acknowledged after the promotion is lost when it resyncs
(Sentinel does not pause it first, see docs/replication.md): that loss is printed, not
held against the retries, which cannot prevent it.
"""

from __future__ import annotations

import time

import pytest

from atomicops import get_counter
from tests.faults.ride import Hammer, check_history
from tests.sentinel.conftest import configure

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("deadline_ms", [0, 10_000])
def test_sentinel_failover_under_4_threads(sentinel_set, atomic_sentinel, settings, deadline_ms):
    key = f"sentinel:retry:{deadline_ms}"
    configure(
        settings,
        sentinel_set,
        SOCKET_TIMEOUT=2.0,
        SOCKET_CONNECT_TIMEOUT=0.5,
        RETRY_DEADLINE_MS=deadline_ms,
    )
    with Hammer(key) as hammer:
        time.sleep(1.0)
        started = time.monotonic()
        old = sentinel_set.primary()
        sentinel_set.sentinels[0].command("SENTINEL", "FAILOVER", sentinel_set.service)
        sentinel_set.wait_promoted(old)
        promoted = time.monotonic() - started
        sentinel_set.wait_healthy()  # until the old primary was told to replicate
        demoted = time.monotonic() - started
        time.sleep(1.0)
        total = hammer.stop()
        retries, reasons = hammer.retries()
    final = get_counter(key)
    print(
        f"\n[{sentinel_set.kind}] SENTINEL FAILOVER, deadline {deadline_ms} ms: promoted "
        f"{promoted:.2f}s, old primary demoted {demoted:.2f}s after the command; "
        f"{total.applied} applied, {total.unknown} unknown, final {final} "
        f"(>= {max(0, total.applied - final)} acknowledged by the old primary and lost); "
        f"errors {dict(total.kinds())}; retries {retries} {reasons}"
    )
    check_history(total, final, deadline_ms=deadline_ms)
    if not deadline_ms:
        assert retries == 0
