"""Claims held while user code runs: what ``@idempotent`` and ``get_or_set`` share.

A claim is a hash in Redis whose ``owner`` field names the caller that runs the code
(a view, a ``compute()``), with the lease as its TTL. This module holds what both uses
need around their scripts:

* :func:`new_owner`: a fresh owner token;
* :func:`hold` / :func:`ahold`: renewal in the background (``claim_extend``) while the
  code runs, so a claim outlives its lease only while its process is alive. Sync code is
  renewed by one daemon thread per process (a heap of due times), not a thread per
  claim: a request pays a heap push instead of a thread start. Async code gets one task
  per claim, which costs microseconds;
* :data:`Flow`: what both write their decision logic as, once for sync and async: a
  flow that ``yield from``-s its scripts' flows and the locks' wake-up wait
  (:func:`atomicops.leases.lease.wake_wait`), and yields its own operations (run the
  code, read or write the cache) for the runner to hand to a ``perform`` callback
  (``engine.run.run(flow, perform)``).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import os
import secrets
import threading
import time
from collections.abc import Generator
from typing import Any, TypeVar

from atomicops.exceptions import AtomicOpsError
from atomicops.scripts.registry import registry

logger = logging.getLogger("atomicops")

T = TypeVar("T")
Op = tuple[Any, ...]
Flow = Generator[Op, Any, T]

# Renew at a third of the lease: two renewals may fail (a Redis blip) before it runs out.
RENEW_FRACTION = 1 / 3
# After a failed renewal, try again this soon (or at the next third, if sooner).
RETRY_S = 0.5
# Every this many new claims, the renewer's heap is rid of finished ones.
COMPACT_EVERY = 1024


def new_owner() -> str:
    """A fresh owner token: 128 random bits in hex, unique per claim attempt."""
    return secrets.token_hex(16)


# -- renewal ---------------------------------------------------------------------------


class Hold:
    """One claim being renewed in the background; :meth:`stop` ends the renewal."""

    __slots__ = ("key", "owner", "lease_ms", "client", "interval", "lost", "_stopped", "_task")

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
        self._task: asyncio.Task[None] | None = None

    @property
    def stopped(self) -> bool:
        return self._stopped

    def stop(self) -> None:
        """Stop renewing (the code finished). A renewal already in flight may still
        arrive; ``claim_extend`` then finds no owner (or another one) and does nothing."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()

    def _args(self) -> tuple[list[str], list[Any]]:
        return [self.key], [self.owner, self.lease_ms]


class _Renewer:
    """One daemon thread per process that renews every sync :class:`Hold` when due."""

    def __init__(self) -> None:
        self._pid: int | None = None
        self._guard = threading.Lock()
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Hold, float]] = []
        self._seq = itertools.count()
        self._adds = 0

    def add(self, held: Hold) -> None:
        with self._guard:
            if self._pid != os.getpid():
                # A forked child inherits the parent's heap but not its thread (and maybe
                # a condition some parent thread held at the fork): start afresh.
                self._cond = threading.Condition()
                self._heap = []
                self._pid = os.getpid()
                threading.Thread(target=self._loop, name="atomicops-claims", daemon=True).start()
            cond = self._cond
        now = time.monotonic()
        self._push(held, now + held.interval, now, cond)
        self._adds += 1
        if self._adds % COMPACT_EVERY == 0:
            self._compact(cond)

    def _compact(self, cond: threading.Condition) -> None:
        """Drop the entries of stopped holds: most claims end long before their first
        renewal, and the thread only pops entries as they come due (a third of a lease
        later), so at many requests a second they would pile up in between."""
        with cond:
            self._heap = [entry for entry in self._heap if not entry[2].stopped]
            heapq.heapify(self._heap)

    def _next_due(self) -> tuple[Hold, float]:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2].stopped:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                due, _, held, renewed = self._heap[0]
                delay = due - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                heapq.heappop(self._heap)
                return held, renewed

    def _loop(self) -> None:
        while True:
            held, renewed = self._next_due()
            sent = time.monotonic()
            keys, args = held._args()
            try:
                owned = registry.get("claim_extend")(keys=keys, args=args, client=held.client)
            except AtomicOpsError as exc:
                if sent - renewed >= held.lease_ms / 1000:
                    # It ran out by now whatever the server did: stop trying.
                    logger.warning("atomicops: claim %s lapsed; renewal failed: %s", held.key, exc)
                    held.lost = True
                    continue
                logger.warning("atomicops: renewing claim %s failed, will retry: %s", held.key, exc)
                self._push(held, sent + min(RETRY_S, held.interval), renewed)
                continue
            except Exception:  # never let the one renewer thread die
                logger.exception("atomicops: renewing claim %s failed", held.key)
                self._push(held, sent + min(RETRY_S, held.interval), renewed)
                continue
            if not owned:
                if not held.stopped:
                    held.lost = True
                    logger.warning("atomicops: claim %s was lost while its code ran", held.key)
                continue
            self._push(held, sent + held.interval, sent)

    def _push(
        self, held: Hold, due: float, renewed: float, cond: threading.Condition | None = None
    ) -> None:
        if held.stopped:
            return
        cond = cond or self._cond
        with cond:
            entry = (due, next(self._seq), held, renewed)
            heapq.heappush(self._heap, entry)
            # Wake the thread only when it sleeps past this one: most claims end long
            # before their first renewal, and a wake-up per request would cost a switch.
            if self._heap[0] is entry:
                cond.notify()


_renewer = _Renewer()


def hold(key: str, owner: str, lease_ms: int, client: Any = None) -> Hold:
    """Renew ``owner``'s claim on ``key`` every third of ``lease_ms`` from the shared
    renewer thread until :meth:`Hold.stop`. ``client``: a sync client or None."""
    held = Hold(key, owner, lease_ms, client)
    _renewer.add(held)
    return held


def ahold(key: str, owner: str, lease_ms: int, client: Any = None) -> Hold:
    """:func:`hold` for async code: an asyncio task on the running loop renews it."""
    held = Hold(key, owner, lease_ms, client)
    held._task = asyncio.get_running_loop().create_task(
        _arenew(held), name=f"atomicops-claim:{key}"
    )
    return held


async def _arenew(held: Hold) -> None:
    renewed = time.monotonic()
    delay = held.interval
    while not held.stopped:
        await asyncio.sleep(delay)
        sent = time.monotonic()
        keys, args = held._args()
        try:
            owned = await registry.get("claim_extend").acall(
                keys=keys, args=args, client=held.client
            )
        except AtomicOpsError as exc:
            if sent - renewed >= held.lease_ms / 1000:
                logger.warning("atomicops: claim %s lapsed; renewal failed: %s", held.key, exc)
                held.lost = True
                return
            logger.warning("atomicops: renewing claim %s failed, will retry: %s", held.key, exc)
            delay = min(RETRY_S, held.interval)
            continue
        if not owned:
            if not held.stopped:
                held.lost = True
                logger.warning("atomicops: claim %s was lost while its code ran", held.key)
            return
        renewed, delay = sent, held.interval
