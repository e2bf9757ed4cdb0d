"""Claims held while user code runs: what ``@idempotent`` and ``get_or_set`` share.

A claim is a hash in Redis whose ``owner`` field names the caller that runs the code
(a view, a ``compute()``), with the lease as its TTL. This module holds what both uses
need around their scripts:

* :func:`new_owner`: a fresh owner token;
* :func:`hold` / :func:`ahold`: renewal in the background (``claim_extend``) while the
  code runs, so a claim outlives its lease only while its process is alive. The renewal
  is one flow on the engine's ``Pause`` (:func:`renewal_flow`), written once: sync code's
  run on the process's background runner (:mod:`atomicops.engine.background`, which
  renews the locks too), so a request pays a heap push instead of a thread start; async
  code's in one task per claim, which costs microseconds;
* :data:`Flow`: what both write their decision logic as, once for sync and async: a
  flow that ``yield from``-s its scripts' flows and the locks' wake-up wait
  (:func:`atomicops.leases.lease.wake_wait`), and yields its own operations (run the
  code, read or write the cache) for the runner to hand to a ``perform`` callback
  (``engine.run.run(flow, perform)``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Generator
from typing import Any, TypeVar

from atomicops.engine import background, connection
from atomicops.engine import run as engine_run
from atomicops.engine.ops import Flow as EngineFlow
from atomicops.engine.ops import Pause
from atomicops.exceptions import AtomicOpsError
from atomicops.leases.renewal import log_name
from atomicops.scripts.registry import registry

logger = logging.getLogger("atomicops")

T = TypeVar("T")
Op = tuple[Any, ...]
Flow = Generator[Op, Any, T]

# Renew at a third of the lease: two renewals may fail (a Redis blip) before it runs out.
RENEW_FRACTION = 1 / 3
# After a failed renewal, try again this soon (or at the next third, if sooner).
RETRY_S = 0.5


def new_owner() -> str:
    """A fresh owner token: 128 random bits in hex, unique per claim attempt."""
    return secrets.token_hex(16)


# -- renewal ---------------------------------------------------------------------------


class Hold:
    """One claim being renewed in the background; :meth:`stop` ends the renewal."""

    __slots__ = ("key", "owner", "lease_ms", "client", "interval", "lost", "_stopped", "_job",
                 "_task")  # fmt: skip

    def __init__(self, key: str, owner: str, lease_ms: int, client: Any) -> None:
        self.key = key
        self.owner = owner
        self.lease_ms = lease_ms
        self.client = client
        self.interval = lease_ms / 1000 * RENEW_FRACTION
        # True once a renewal found the claim gone: the code is still running, but
        # another caller may have taken over (this process stalled past the lease).
        self.lost = False
        self._stopped = False
        self._job: background.Job | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def log_name(self) -> str:
        """The claim as logs name it: a digest of its key (which may carry a client's
        identity or a cache key), never the key in clear."""
        return log_name("claim", self.key)

    def renewal_name(self) -> str:
        return f"renewal of {self.log_name}"

    def stop(self) -> None:
        """Stop renewing (the code finished). A renewal already sent may still arrive;
        ``claim_extend`` then finds no owner (or another one) and does nothing, and its
        reply is never read."""
        self._stopped = True
        if self._job is not None:
            self._job.stop()
        if self._task is not None:
            self._task.cancel()


def renewal_flow(held: Hold, resolve: Callable[[Any], Any]) -> EngineFlow[None]:
    """Renew ``held`` every third of its lease until stopped; after a failure retry
    within :data:`RETRY_S`, and give up (``lost``) once the lease surely ran out, or at
    once when the claim is found gone. ``resolve``: ``held.client`` to the client to use
    (asked at the first renewal: most claims end before it)."""
    renewed = time.monotonic()
    yield Pause(held.interval)
    extend, client = registry.get("claim_extend"), resolve(held.client)
    keys, args = [held.key], [held.owner, held.lease_ms]
    lease_s = held.lease_ms / 1000
    while True:
        sent = time.monotonic()
        try:
            owned = yield from extend.flow(keys, args, client)
        except AtomicOpsError as exc:
            if sent - renewed >= lease_s:
                # It ran out by now whatever the server did: stop trying.
                held.lost = True
                logger.warning("atomicops: %s lapsed; renewal failed: %s", held.log_name,
                               type(exc).__name__)  # fmt: skip
                return
            logger.warning("atomicops: renewing %s failed, will retry: %s", held.log_name,
                           type(exc).__name__)  # fmt: skip
            yield Pause(min(RETRY_S, held.interval))
            continue
        if not owned:
            if not held.stopped:
                held.lost = True
                logger.warning("atomicops: %s was lost while its code ran", held.log_name)
            return
        renewed = sent
        yield Pause(held.interval)


def hold(key: str, owner: str, lease_ms: int, client: Any = None) -> Hold:
    """Renew ``owner``'s claim on ``key`` every third of ``lease_ms`` on the background
    runner until :meth:`Hold.stop`. ``client``: a sync client or None."""
    held = Hold(key, owner, lease_ms, client)
    flow = renewal_flow(held, connection.get_client)
    held._job = background.start(flow, held.renewal_name)
    return held


def ahold(key: str, owner: str, lease_ms: int, client: Any = None) -> Hold:
    """:func:`hold` for async code: an asyncio task on the running loop renews it."""
    held = Hold(key, owner, lease_ms, client)
    flow = renewal_flow(held, connection.get_async_client)
    held._task = asyncio.get_running_loop().create_task(
        engine_run.arun(flow), name=f"atomicops-{held.log_name}"
    )
    return held
