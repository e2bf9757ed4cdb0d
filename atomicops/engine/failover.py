"""Sentinel failovers seen as they begin: no call goes to a primary being replaced.

Sentinel promotes a replica without pausing the old primary, and turns the old one into
a replica only on its next ``INFO`` of it, about ten seconds later. A client still
connected to it meanwhile is served and acknowledged, and all of it is discarded when
it resyncs (measured: ~100,000 acknowledged increments per ``SENTINEL FAILOVER`` under 4
threads, docs/replication.md). No retry helps: nothing failed.

The sentinels say what they do on their pub/sub channels. The one that runs a failover
publishes ``+try-failover`` when it starts, at least two of its 100 ms ticks before it
sends the replica ``REPLICAOF NO ONE``, and ``+switch-master`` once the replica is the
primary and the others follow it. A :class:`Watch` listens to every sentinel of a
service (any of them may run the failover), one daemon thread each, and **holds** the
calls meanwhile: :func:`check`, called by the wire before it takes a connection of a
sentinel-managed pool, refuses them with ``ServerRefused(code="FAILOVER")``, nothing sent,
which ``RETRY_DEADLINE_MS`` rides through like any refusal (``reason`` ``failover``).

After ``+switch-master`` the hold lasts until every sentinel that answers names the new
primary (a connection asks them, and the first to answer wins); then each pool drops
its idle connections, so the next call connects to the new primary. A call already on
the old primary when the hold began completes there, well before the promotion.

The hold ends on the sentinel's own ``-failover-abort-*``, and after :data:`HOLD_LIMIT`
seconds without a word of progress from it (each step it announces re-arms the hold: a
sentinel that died mid-failover, a ``+switch-master`` that never came): calls then go
where the sentinels say, as without a watch. Replica pools (``READ_FROM_REPLICAS``) are
not held, since a read loses nothing; they drop their idle connections after a failover
like the primary's. A sentinel that cannot be reached is retried every :data:`RECONNECT_PAUSE`
seconds; while none is reached, nothing is held.

One watch per set of sentinels and service in a process, shared by every pool on them
(sync and asyncio); its threads end within a second of the last such pool being
dropped. A forked child starts its own on its first call. ``ATOMICOPS["SENTINEL_WATCH"] =
False`` does without it (calls then follow a failover only when a connection breaks).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from atomicops.conf import get_settings
from atomicops.engine import compat
from atomicops.engine.ops import Context

logger = logging.getLogger("atomicops")

__all__ = ["HOLD_LIMIT", "Watch", "acheck", "check", "watch_for"]

# Longest hold without a sign of progress: a SENTINEL FAILOVER takes 1-3 s from
# +try-failover to +switch-master here, each of its steps well under a second apart.
HOLD_LIMIT = 10.0
RECONNECT_PAUSE = 1.0
# How often a listener looks up from its socket: to see its pools are still alive.
_TICK = 1.0
# The connection settings a listener copies from the pool's own sentinel clients.
_KWARGS = ("host", "port", "username", "password", "socket_connect_timeout")

_CHANNELS = ("+try-failover", "+switch-master")
# What the sentinel running a failover says while it goes on: each one re-arms its hold,
# so HOLD_LIMIT counts from the last sign of progress, not from the start (several
# replicas to reconfigure one at a time can take longer than HOLD_LIMIT in all).
_PROGRESS = (
    "+elected-leader",
    "+failover-state-select-slave",
    "+selected-slave",
    "+failover-state-send-slaveof-noone",
    "+failover-state-wait-promotion",
    "+promoted-slave",
    "+failover-state-reconf-slaves",
    "+slave-reconf-sent",
    "+slave-reconf-inprog",
    "+slave-reconf-done",
)
_ABORTS = "-failover-abort-*"
_SEEN = "_atomicops_failover_generation"


class Watch:
    """What the sentinels of one service say about failovers, kept by listener threads."""

    def __init__(self, sentinels: Sequence[dict[str, Any]], service: str) -> None:
        self.sentinels = [dict(kwargs) for kwargs in sentinels]
        self.service = service
        # Sentinel index -> monotonic time its failover began (or +switch-master came,
        # while the others catch up): calls are held while any entry is recent.
        self.begun: dict[int, float] = {}
        self.generation = 0  # one more at each hold's end: pools drop idle connections
        self.held_seconds = 0.0  # how long calls were held in all (logs, tests, figures)
        self._since = 0.0
        self.listening = [False] * len(self.sentinels)  # subscribed now (tests wait on it)
        self.pools: weakref.WeakSet[Any] = weakref.WeakSet()
        self.ended = False
        self.epoch = _epoch  # the process it listens for (see _forget_all)
        self._lock = threading.Lock()

    def held(self) -> bool:
        """Whether calls are held now."""
        begun = self.begun
        if not begun:
            return False
        oldest = time.monotonic() - HOLD_LIMIT
        with self._lock:
            for index, since in list(begun.items()):
                if since < oldest:
                    logger.warning(
                        "atomicops: a sentinel of %r began a failover and said nothing "
                        "of it for %.0f s; calls go where the sentinels say again",
                        self.service,
                        HOLD_LIMIT,
                    )
                    del begun[index]
                    if not begun:
                        self._release()
            return bool(begun)

    def _hold(self, index: int) -> None:
        """Hold calls for sentinel ``index`` (-1: until the sentinels agree); under the lock."""
        now = time.monotonic()
        if not self.begun:
            self._since = now
        self.begun[index] = now

    def _release(self, before: float | None = None) -> None:
        """The hold is over (for what began ``before`` a time, when given: a failover
        begun after the switch was heard stays held): pools drop their idle connections.
        Under the lock."""
        if before is None:
            self.begun.clear()
        else:
            for index, since in list(self.begun.items()):
                if since <= before:
                    del self.begun[index]
        if self.begun:
            return
        self.generation += 1
        if self._since:
            self.held_seconds += time.monotonic() - self._since
            self._since = 0.0

    # -- the listener threads -------------------------------------------------------

    def start(self) -> None:
        for index in range(len(self.sentinels)):
            thread = threading.Thread(
                target=self._listen,
                args=(index,),
                name=f"atomicops-sentinel-watch-{index}",
                daemon=True,
            )
            thread.start()

    def _alive(self) -> bool:
        with _registry_lock:
            if not self.ended and not self.pools:
                self.ended = True
                _watches.pop((_addresses(self.sentinels), self.service), None)
            return not self.ended

    def _listen(self, index: int) -> None:
        kwargs = {
            **self.sentinels[index],
            "socket_timeout": 5.0,
            "health_check_interval": 2,
            "retry": Retry(NoBackoff(), 0),  # this loop reconnects itself
        }
        while self._alive():
            client = redis.Redis(**kwargs)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(*_CHANNELS, *_PROGRESS)
                pubsub.psubscribe(_ABORTS)
                self.listening[index] = True
                while self._alive():
                    message = pubsub.get_message(timeout=_TICK)
                    if message is not None:
                        self._heard(index, message)
            except (redis.RedisError, OSError) as exc:
                logger.debug("atomicops: sentinel watch %d: %s", index, exc)
                time.sleep(RECONNECT_PAUSE)
            except Exception:  # a reply of a shape not foreseen: never end the watch
                logger.exception("atomicops: sentinel watch %d failed; listening again", index)
                time.sleep(RECONNECT_PAUSE)
            finally:
                self.listening[index] = False
                try:
                    pubsub.close()
                    client.close()
                except (redis.RedisError, OSError):  # pragma: no cover - already broken
                    pass

    def _heard(self, index: int, message: dict[str, Any]) -> None:
        channel = _text(message.get("channel"))
        words = _text(message.get("data")).split()
        if channel == "+switch-master":
            # <service> <old ip> <old port> <new ip> <new port>
            if len(words) == 5 and words[0] == self.service:
                self._switched((words[3], words[4]))
            return
        # About the primary: "master <service> <ip> <port>"; about a replica:
        # "slave <ip:port> <ip> <port> @ <service> <primary ip> <primary port>".
        if words[:1] == ["master"] and len(words) >= 2:
            service = words[1]
        elif words[:1] == ["slave"] and len(words) >= 6 and words[4] == "@":
            service = words[5]
        else:
            return
        if service != self.service:
            return
        with self._lock:
            if channel == "+try-failover":
                logger.info("atomicops: the sentinels of %r begin a failover", self.service)
                self._hold(index)
            elif channel in _PROGRESS:
                if index in self.begun:  # its failover goes on: the hold with it
                    self._hold(index)
            elif self.begun.pop(index, None) is not None and not self.begun:
                self._release()  # -failover-abort-*

    def _switched(self, primary: tuple[str, str]) -> None:
        """The new primary is ``primary``: hold until every sentinel that answers names it.

        Every sentinel publishes ``+switch-master`` as it takes the new configuration, so
        the later ones usually find all of them agreeing already: no hold then."""
        heard = time.monotonic()
        if all(named in (None, primary) for named in self._named()):
            with self._lock:
                self._release(before=heard)
            return
        with self._lock:
            self._hold(-1)  # held even if the +try-failover was missed
        until = time.monotonic() + HOLD_LIMIT
        while time.monotonic() < until and not all(
            named in (None, primary) for named in self._named()
        ):
            time.sleep(0.05)
        with self._lock:
            self.begun.pop(-1, None)
            self._release(before=heard)
        logger.info("atomicops: the sentinels of %r switched to a new primary", self.service)

    def _named(self) -> list[tuple[str, str] | None]:
        """The primary each sentinel names (None: it did not answer).

        Asked as redis-py asks (``SENTINEL MASTERS``' entry, here ``SENTINEL MASTER``),
        not by ``GET-MASTER-ADDR-BY-NAME``: the sentinel running the failover answers
        that one with the promoted replica a second before its own entry moves there,
        and a connection made meanwhile would still reach the old primary."""
        named: list[tuple[str, str] | None] = []
        for kwargs in self.sentinels:
            try:
                # No retries: a sentinel down (often on the dead primary's host) costs one
                # timeout per round of this poll, not redis-py's retries with back-off.
                with redis.Redis(
                    **kwargs, socket_timeout=0.5, retry=Retry(NoBackoff(), 0)
                ) as client:
                    reply = client.execute_command("SENTINEL", "MASTER", self.service)
            except (redis.RedisError, OSError):
                named.append(None)
                continue
            if isinstance(reply, dict):  # RESP3: a map
                facts = reply
            else:  # RESP2: name, value, name, value...
                items = list(reply or ())
                facts = dict(zip(items[::2], items[1::2], strict=True))
            named.append((_text(facts.get(b"ip")), _text(facts.get(b"port"))))
        return named


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")


def _addresses(sentinels: Sequence[dict[str, Any]]) -> tuple[tuple[str, str], ...]:
    # Sorted: redis-py reorders a manager's sentinels as they answer, and a pool made
    # later (the replicas') must find the same watch.
    return tuple(sorted((str(k.get("host")), str(k.get("port"))) for k in sentinels))


# -- one watch per set of sentinels and service ---------------------------------------

_watches: dict[tuple[Any, str], Watch] = {}
_registry_lock = threading.Lock()


# One more in each forked child: a watch made before the fork has no threads there.
_epoch = 0


def _forget_all() -> None:  # a forked child: its parent's threads are not here
    global _registry_lock, _epoch
    _watches.clear()
    _registry_lock = threading.Lock()
    _epoch += 1


os.register_at_fork(after_in_child=_forget_all)


def _inert(pool: Any) -> Watch:
    """A watch that never holds, for a pool whose sentinels are not listened to."""
    watch = Watch([], str(getattr(pool, "service_name", "")))
    pool.__dict__.setdefault(_SEEN, 0)  # before the watch: check() reads it once it is set
    pool._atomicops_watch = watch
    return watch


def _kwargs_of(manager: Any) -> list[dict[str, Any]] | None:
    """Each sentinel's connection settings, or None when they cannot be copied: a
    manager of the caller's own making, or sentinels over TLS (logged)."""
    try:
        every = [s.connection_pool.connection_kwargs for s in manager.sentinels]
    except (AttributeError, TypeError):
        return None
    if not every:
        return None
    if any(key.startswith("ssl") for kwargs in every for key in kwargs):
        logger.info("atomicops: sentinels over TLS are not watched for failovers")
        return None
    return [{k: v for k, v in kwargs.items() if k in _KWARGS} for kwargs in every]


def watch_for(pool: Any) -> Watch:
    """The watch of a sentinel-managed ``pool``, started with its first call."""
    watch: Watch | None = pool.__dict__.get("_atomicops_watch")
    if watch is not None and watch.epoch == _epoch and not watch.ended:
        return watch
    if get_settings()["SENTINEL_WATCH"] is not True:  # ATOMICOPS["SENTINEL_WATCH"] = False
        return _inert(pool)
    sentinels = _kwargs_of(pool.sentinel_manager)
    if sentinels is None:
        return _inert(pool)
    key = (_addresses(sentinels), str(pool.service_name))
    with _registry_lock:
        watch = _watches.get(key)
        fresh = watch is None
        if watch is None:
            watch = _watches[key] = Watch(sentinels, key[1])
        watch.pools.add(pool)
    if fresh:
        watch.start()
    pool.__dict__.setdefault(_SEEN, watch.generation)
    pool._atomicops_watch = watch
    return watch


def _refused(watch: Watch, context: Context) -> Exception:
    return context.refused(
        "FAILOVER",
        f"the sentinels of {watch.service!r} are replacing the primary, so no call goes to it",
    )


def _primary(pool: Any) -> bool:
    """Whether ``pool`` is the primary's: a replica pool's reads lose nothing in a failover,
    so they are not held (their idle connections are still dropped after one)."""
    return getattr(pool, "is_master", True) is not False


def _stale(client: Any, context: Context) -> tuple[Any, int] | None:
    """Refuse while ``client``'s primary is being replaced (nothing sent); else its pool
    and the watch's generation when its idle connections must go first."""
    if not compat.is_sentinel_client(client):
        return None
    pool = client.connection_pool
    watch = watch_for(pool)
    if _primary(pool) and watch.held():
        raise _refused(watch, context)
    generation = watch.generation
    return None if pool.__dict__.get(_SEEN) == generation else (pool, generation)


def check(client: Any, context: Context) -> None:
    """Before a connection of ``client`` is taken: refuse while a failover is under way
    (nothing sent), and after one, drop the idle connections to the old primary."""
    stale = _stale(client, context)
    if stale is not None:
        # Dropped first, then marked: a thread that still sees the old mark drops them
        # too (harmless); marked first, one could borrow a connection to the old primary.
        pool, generation = stale
        compat.sentinel_forget(client)
        pool.__dict__[_SEEN] = generation


async def acheck(client: Any, context: Context) -> None:
    """The asyncio twin of :func:`check`."""
    stale = _stale(client, context)
    if stale is not None:
        pool, generation = stale
        await compat.asentinel_forget(client)
        pool.__dict__[_SEEN] = generation
