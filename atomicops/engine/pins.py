"""Connections pinned to the thread, or the event loop, that uses them.

redis-py lends a connection per command: a lock, a set and a list operation, a
non-blocking ``recv`` to see whether the idle socket still holds data, and its metrics'
bookkeeping, twice per call. That is about a third of a raw ``evalsha``'s client-side
time. atomicops keeps one connection of a pool per thread instead (and one per event
loop for ``redis.asyncio``), taken from that pool once and handed back when the thread
ends, so the pool's ``max_connections`` still counts it.

What the pool's checkout did per call stays, for less: before a write, one ``poll(0)``
on the idle socket tells whether the server closed it (a restart, ``CLIENT KILL``, an
idle timeout) or left something on it; then it is dropped and the write goes on a fresh
connection, so it is never written to a socket that cannot carry it and then reported
as an unknown outcome (:mod:`atomicops.engine.wire` keeps the at-most-once rules).

Bounds and lifetimes:

* at most half of a pool's ``max_connections`` are pinned; past that, calls borrow
  from the pool as before, so threads beyond that number still get connections;
* a forked child (gunicorn's ``--preload``) never uses a connection of its parent: a
  fork starts a new generation of pins, and a parent's pin is dropped, not handed back
  (the child's pool has reset itself; closing the parent's socket is the parent's job);
* only plain pools are pinned (``ConnectionPool``, ``BlockingConnectionPool``, without
  client-side caching); a Sentinel pool, whose primary moves, and a
  ``single_connection_client`` (which already holds one) lend as before.
"""

from __future__ import annotations

import asyncio
import os
import select
import threading
import weakref
from typing import Any

from redis import BlockingConnectionPool, ConnectionPool
from redis.asyncio import BlockingConnectionPool as AsyncBlockingConnectionPool
from redis.asyncio import ConnectionPool as AsyncConnectionPool

from atomicops.engine import compat

__all__ = ["Pin", "apin", "pin", "pinned_count"]

_PLAIN = (ConnectionPool, BlockingConnectionPool)
_APLAIN = (AsyncConnectionPool, AsyncBlockingConnectionPool)

# Bumped in a forked child: every pin made before belongs to the parent.
_generation = 0
_local = threading.local()
# id(pool) -> how many of its connections are pinned (only touched when pinning or
# unpinning, never per call).
_counts: dict[int, int] = {}
_counts_lock = threading.Lock()


def _may_pin(pool: Any) -> bool:
    """Count one more pin of ``pool`` when it is under its bound."""
    limit = pool.max_connections // 2
    with _counts_lock:
        held = _counts.get(id(pool), 0)
        if held >= limit:
            return False
        _counts[id(pool)] = held + 1
        return True


def _unpinned(key: int) -> None:
    with _counts_lock:
        held = _counts.get(key, 0) - 1
        if held > 0:
            _counts[key] = held
        else:
            _counts.pop(key, None)


def pinned_count(pool: Any) -> int:
    """How many of ``pool``'s connections are pinned now (for tests and the dashboard)."""
    return _counts.get(id(pool), 0)


class Pin:
    """A pool's connection kept by one thread (or one event loop) between calls.

    It holds its pool weakly: a client a user drops (one made per request, say) takes
    its pool with it, and the pinned connection is closed then, not kept for the life
    of the thread.
    """

    __slots__ = (
        "__weakref__", "busy", "conn", "fd", "generation", "key", "loop", "pool", "poller",
        "readable", "reader", "sync",
    )  # fmt: skip

    def __init__(self, pool: Any, conn: Any, loop: Any = None) -> None:
        self.key = id(pool)
        me = weakref.ref(self)  # not a bound method: Pin -> ref -> Pin would be a cycle,
        # and a cycle outlives its thread until the garbage collector runs

        def gone(_: Any) -> None:
            pin = me()
            if pin is not None:
                pin._pool_gone()

        self.pool = weakref.ref(pool, gone)
        self.conn = conn
        self.loop = loop
        self.generation = _generation
        self.busy = False  # async: a round trip is on it now (a loop runs many tasks)
        self.fd = -1
        self.poller: Any = None
        # Read here, not in __del__: at interpreter exit the module's globals are gone.
        self.sync = isinstance(pool, _PLAIN)
        # Whether atomicops.engine.resp may read its replies (see there), and its reader.
        self.readable = self.sync and compat.reads_plainly(conn)
        self.reader: Any = None

    def stale(self) -> bool:
        """Whether the idle socket holds EOF or stray bytes (so it must be replaced)."""
        sock = compat.socket_of(self.conn)
        if sock is None:
            return False  # not connected: the write connects it
        try:
            fd = sock.fileno()
            if fd != self.fd:
                self.poller = select.poll()
                self.poller.register(fd, select.POLLIN)
                self.fd = fd
            return bool(self.poller.poll(0))
        except (OSError, ValueError):  # closed under us
            return True

    def release(self) -> None:
        """Hand the connection back to its pool (not in a forked child)."""
        if self.generation != _generation:
            return
        self.generation = -1  # once
        self._forget()
        pool = self.pool()
        if pool is None or self.conn is None:
            return
        try:
            if self.sync:
                pool.release(self.conn)
            # An async pool's release is a coroutine: the connection is left to the
            # pool's own disconnect, as redis.asyncio leaves a connection of a closed loop.
        except Exception:  # a pool reset or closed meanwhile: it owns nothing of ours
            pass

    def _pool_gone(self) -> None:
        if self.generation != _generation:
            return
        self.generation = -1
        self._forget()
        if self.sync and self.conn is not None:
            try:
                self.conn.disconnect()
            except Exception:  # noqa: S110 - closing a socket nobody will use again
                pass

    def _forget(self) -> None:
        # A thread's pins dict is not referred to from here (a cycle would keep a pin
        # past its thread's end, until the garbage collector ran): a sync pin of a
        # dropped pool stays in it, closed, until its id is reused or the thread ends.
        if self.loop is not None and _apins.get(self.key) is self:
            del _apins[self.key]
        _unpinned(self.key)

    def __del__(self) -> None:
        # The thread ended (its thread-local dict goes) or the pin was dropped.
        try:
            self.release()
        except Exception:  # interpreter shutdown
            pass


def pin(client: Any) -> Pin | None:
    """This thread's pinned connection of ``client``'s pool, or None to borrow per call.

    ``client`` is a plain ``redis.Redis`` (not a pipeline, not a cluster client).
    """
    if getattr(client, "connection", None) is not None:  # single_connection_client
        return None
    pool = client.connection_pool
    try:
        pins: dict[int, Any] = _local.pins
    except AttributeError:  # this thread's first call
        pins = _local.pins = {}
    found = pins.get(id(pool))
    if found is not None and found.generation == _generation and found.pool() is pool:
        return found  # type: ignore[no-any-return]
    return _pin(pool, pins)


def _pin(pool: Any, pins: dict[int, Any]) -> Pin | None:
    stale = pins.pop(id(pool), None)  # a forked parent's pin, or a dead pool's id reused
    if isinstance(stale, Pin):
        stale.release()
    if type(pool) not in _PLAIN or getattr(pool, "cache", None) is not None:
        return None
    if not _may_pin(pool):
        return None  # asked again next call: a thread may have ended meanwhile
    try:
        conn = pool.get_connection()
    except BaseException:
        _unpinned(id(pool))
        raise
    made = pins[id(pool)] = Pin(pool, conn)
    return made


def unpin(client: Any) -> None:
    """Give this thread's pin of ``client``'s pool back, e.g. after its server failed: a
    cluster node that left must not keep a pinned connection alive."""
    found = getattr(_local, "pins", {}).get(id(client.connection_pool))
    if isinstance(found, Pin):
        found.release()


# -- asyncio ------------------------------------------------------------------------------

# id(pool) -> the pin of the loop that used the pool first (an asyncio pool's
# connections belong to one loop; another loop's calls borrow per call).
_apins: dict[int, Pin] = {}


def apin(client: Any) -> Pin | None:
    """The running loop's pinned connection of ``client``'s pool when it is free now, else
    None (borrow per call). The caller sets ``busy`` for the round trip.

    The connection is taken from the pool by :func:`atake`, since an async pool lends a
    connection with ``await``.
    """
    pool = client.connection_pool
    found = _apins.get(id(pool))
    if (
        found is not None
        and found.pool() is pool
        and found.generation == _generation
        and found.loop is asyncio.get_running_loop()
    ):
        return None if found.busy else found
    if found is not None and found.pool() is pool and found.generation == _generation:
        return None  # pinned by another loop
    if (
        getattr(client, "connection", None) is not None
        or type(pool) not in _APLAIN
        or not _may_pin(pool)
    ):
        return None
    _apins[id(pool)] = made = Pin(pool, None, asyncio.get_running_loop())
    return made


async def atake(found: Pin) -> Any:
    """``found``'s connection, taken from its pool on first use."""
    if found.conn is None:
        pool = found.pool()
        if pool is None:
            raise RuntimeError("the pool was dropped while its connection was in use")
        found.conn = await pool.get_connection()
        found.readable = compat.areads_plainly(found.conn)
    return found.conn


def _forked() -> None:
    global _generation
    _generation += 1
    _apins.clear()
    with _counts_lock:
        _counts.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)
