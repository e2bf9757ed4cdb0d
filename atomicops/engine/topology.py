"""Which server a call goes to, and where it goes next when the cluster says otherwise.

The one module that knows a cluster has nodes. Every other module asks here: a call's
target (:func:`target_for`, or a :class:`Route` that follows redirects), the servers to
load scripts onto or scan (:func:`primaries`).

**Redirects.** A cluster node answers a call whose slot it does not serve with a refusal,
*before* it runs anything, and most refusals say where to go instead:

* ``MOVED slot host:port``: the slot lives there now. The slot map is read again
  (:class:`~atomicops.engine.ops.Refresh`: ``CLUSTER SLOTS`` through redis-py's
  ``NodesManager``), so the next calls go straight there, and the call is sent there.
* ``ASK slot host:port``: the slot is being migrated and the call's keys are not on this
  node (any more): the call is sent to that node preceded by ``ASKING``, in the same
  batch. The map is not changed (the slot still belongs here until the move ends).
* ``TRYAGAIN``: mid-migration, the call's keys are split between the two nodes. It is
  sent again after a short pause (5 ms, doubling), routed from the start.
* ``READONLY``: the node was a primary and is a replica now (a failover). The map is read
  again and the call sent to the slot's primary.

Each of these replies proves that the script did not run, so sending the call again
cannot apply it twice. So does a connection that could not be made or a batch that could
not be written (:class:`~atomicops.exceptions.RedisUnavailable`; never
:class:`~atomicops.exceptions.OutcomeUnknown`, which is raised as it is): the map is read
again, and when the slot has another owner now (a replica promoted after its primary
died), the call goes there. Everything else keeps its meaning: ``CLUSTERDOWN`` and a node
nobody replaced are :class:`~atomicops.exceptions.RedisUnavailable`, "nothing applied".
The redirects of one call are bounded (:data:`MAX_HOPS` hops, :data:`TRYAGAIN_BUDGET`),
so two nodes that disagree cannot bounce a call forever; the last refusal is then a
:class:`~atomicops.exceptions.ServerRefused`, which the planner sends again after a
pause, with the map read again (:meth:`Route.renew`), until the call's retry deadline
(:mod:`atomicops.engine.retry`) has passed, and then raises.

:data:`redirects` counts, per process, what was met (the tests print it, the docs quote it).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from typing import Any

from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    MovedError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    TryAgainError,
)

from atomicops.engine import compat
from atomicops.engine.ops import Command, Flow, Pause, Refresh, text
from atomicops.engine.tally import Tally
from atomicops.exceptions import (
    ConfigurationError,
    CrossSlotError,
    OutcomeUnknown,
    RedisUnavailable,
    ServerRefused,
)

logger = logging.getLogger("atomicops")

# Redirects (MOVED, ASK, READONLY, a re-route after a refused connection) one call may
# follow. Two are enough for a move or a failover; more means the nodes disagree.
MAX_HOPS = 5
# Pauses after TRYAGAIN: the keys of a half-moved slot are together again once the
# migration tool's next MIGRATE batch lands, milliseconds usually, longer on a loaded
# host. Doubling from the first, at most the longest, until a call has paused the budget.
TRYAGAIN_FIRST_WAIT = 0.005
TRYAGAIN_LONGEST_WAIT = 0.25
TRYAGAIN_BUDGET = 3.0

_ASKING: tuple[Command, ...] = (("ASKING",),)
_NO_PREFIX: tuple[Command, ...] = ()
_MAP_ERRORS = (RedisClusterException, RedisError, OSError, KeyError, IndexError, TypeError)


class RedirectStats(Tally):
    """Per-process counts of what clusters answered: ``moved``, ``ask``, ``tryagain``,
    ``readonly``, ``rerouted`` (sent elsewhere after a refused connection), ``refreshes``
    (slot maps read) and ``exhausted`` (calls that ran out of hops)."""

    fields = ("moved", "ask", "tryagain", "readonly", "rerouted", "refreshes", "exhausted")


redirects = RedirectStats()


def slot_of(keys: Sequence[Any], what: str) -> int | None:
    """The one cluster slot of ``keys`` (None for no keys); :class:`CrossSlotError` else."""
    slots = {key_slot(k.encode() if isinstance(k, str) else k) for k in keys}
    if len(slots) > 1:
        raise CrossSlotError(
            f"script {what!r}: keys {list(keys)!r} hash to different cluster slots; "
            "give them a common hash tag, e.g. '{user:42}:a' and '{user:42}:b'",
            keys=[text(k) or "" for k in keys],
            script=what,
        )
    return slots.pop() if slots else None


# -- targets: the plain client (or asyncio node) a Send goes to -----------------------------

_async_nodes: weakref.WeakKeyDictionary[Any, dict[str, compat.AsyncNode]] = (
    weakref.WeakKeyDictionary()
)


def client_of(cluster: Any, node: Any) -> Any:
    """What a :class:`~atomicops.engine.ops.Send` to ``node`` targets: the node's plain
    ``redis.Redis`` (sync), or a :class:`~atomicops.engine.compat.AsyncNode` (asyncio),
    one per node and client, so per-server state is kept across calls."""
    if not compat.is_async_cluster(cluster):
        return compat.cluster_node_client(cluster, node)
    known = _async_nodes.get(cluster)
    if known is None:
        known = _async_nodes.setdefault(cluster, {})
    name = compat.node_name(node)
    found = known.get(name)
    if found is None or found.node is not node:  # new, or re-created by a refresh
        found = known[name] = compat.AsyncNode(node)
    return found


def target_for(client: Any, keys: Sequence[Any], what: str) -> Any:
    """The plain client that serves ``keys``: ``client`` itself, or the node owning the slot.

    On a cluster, keys of one call must share a slot (checked before anything is sent).
    No redirect is followed here: flows that may meet one use a :class:`Route`.
    """
    if not compat.is_cluster_client(client):
        return client
    slot = slot_of(keys, what)
    if compat.cluster_needs_initialize(client):
        raise ConfigurationError(
            f"{what}: this asyncio RedisCluster has not read its slot map yet; run an "
            "async atomicops call (or await client.initialize()) first",
            script=what,
        )
    return client_of(client, compat.cluster_slot_node(client, slot))


def owner_name(client: Any, keys: Sequence[Any]) -> str | None:
    """``host:port`` of the cluster node serving ``keys`` by the client's map (None when
    ``client`` is no cluster client or no node serves them)."""
    if not compat.is_cluster_client(client):
        return None
    try:
        return compat.node_name(compat.cluster_slot_node(client, slot_of(keys, "keys")))
    except _MAP_ERRORS:
        return None


def primaries(client: Any) -> list[tuple[str, Any]]:
    """``(name, plain client)`` of every server holding data: each primary of a cluster
    (``host:port``), or the one server of any other client (named by its address)."""
    if compat.is_cluster_client(client):
        if compat.cluster_needs_initialize(client):
            raise ConfigurationError(
                "this asyncio RedisCluster has not read its slot map yet: use aprimaries()"
            )
        return [
            (compat.node_name(node), client_of(client, node))
            for node in compat.cluster_primary_nodes(client)
        ]
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {}) or {}
    name = kwargs.get("path") or f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
    return [(str(name), client)]


async def aprimaries(client: Any) -> list[tuple[str, Any]]:
    """:func:`primaries` for asyncio clients: a cluster client reads its map first."""
    if compat.is_cluster_client(client) and compat.cluster_needs_initialize(client):
        try:
            await compat.cluster_initialize(client)
        except _MAP_ERRORS as exc:
            raise RedisUnavailable(f"cannot read the cluster's slot map: {exc}") from exc
    return primaries(client)


# -- refreshing the slot map (the runners call these for a Refresh op) ----------------------


def refresh(op: Refresh) -> bool:
    """Read the cluster's slot map again; False when no node answered (the call's own
    error then says what happened). For a sentinel-managed client: drop its idle
    connections, so the next ones ask the sentinels where the primary is now."""
    if compat.is_sentinel_client(op.client):
        compat.sentinel_forget(op.client)
        return True
    redirects.bump("refreshes")
    try:
        compat.cluster_refresh(op.client, op.moved, op.failed)
    except _MAP_ERRORS as exc:
        logger.debug("atomicops: refreshing the cluster slot map failed: %s", exc)
        return False
    return True


async def arefresh(op: Refresh) -> bool:
    """The asyncio twin of :func:`refresh`; also a client's first reading of its map."""
    if compat.is_sentinel_client(op.client):
        await compat.asentinel_forget(op.client)
        return True
    try:
        if compat.cluster_needs_initialize(op.client):
            await compat.cluster_initialize(op.client)
        else:
            redirects.bump("refreshes")
            await compat.acluster_refresh(op.client, op.moved, op.failed)
    except _MAP_ERRORS as exc:
        logger.debug("atomicops: refreshing the cluster slot map failed: %s", exc)
        return False
    return True


# -- routes: one call's way through a cluster ------------------------------------------------


class Route:
    """Where one call goes on a cluster, and where it goes next when a node says otherwise.

    A flow starts it (``yield from route.start()``), sends ``[*route.prefix, call]`` to
    ``route.target``, and on an error reply asks ``yield from route.redirected(reply)``
    (or, for a :class:`RedisUnavailable` thrown at its yield, ``route.unreachable``):
    True means the call provably did not run and ``route.target`` is where to send it
    now; False means raise what you have.

    On a client that is not a cluster client the route is that client, and nothing is
    ever followed.
    """

    __slots__ = (
        "client", "cluster", "slot", "what", "key", "node", "target", "asking", "hops", "tries",
        "waited",
    )  # fmt: skip

    def __init__(self, client: Any, keys: Sequence[Any], what: str) -> None:
        self.client = client
        self.cluster = compat.is_cluster_client(client)
        self.slot = slot_of(keys, what) if self.cluster else None
        self.what = what
        self.key = keys[0] if keys else None
        self.node: Any = None
        self.target: Any = None if self.cluster else client
        self.asking = False
        self.hops = 0  # redirects followed
        self.tries = 0  # TRYAGAIN pauses taken
        self.waited = 0.0  # and their seconds

    def start(self) -> Flow[Any]:
        """The first target; an asyncio cluster client that has not read its map yet
        reads it first."""
        if self.cluster:
            if compat.cluster_needs_initialize(self.client):
                yield Refresh(self.client)
            self._to_owner()
        return self.target

    @property
    def prefix(self) -> tuple[Command, ...]:
        """Commands that go just before the call in its batch: ``ASKING`` after an ASK."""
        return _ASKING if self.asking else _NO_PREFIX

    def redirected(self, reply: Exception) -> Flow[bool]:
        """After the error reply ``reply``: whether to send the call again to ``target``."""
        self.asking = False
        if not self.cluster:
            return False
        if isinstance(reply, MovedError):  # first: a MovedError is an AskError too
            if not self._hop("moved"):
                return False
            yield Refresh(self.client, moved=reply)
            self._to_owner()
            return True
        if isinstance(reply, AskError):
            if not self._hop("ask"):
                return False
            node = compat.cluster_node_at(self.client, reply.host, reply.port)
            if node is None:  # a node this client has never seen: learn the cluster again
                yield Refresh(self.client)
                node = compat.cluster_node_at(self.client, reply.host, reply.port)
                if node is None:
                    return False
            self.node, self.target, self.asking = node, client_of(self.client, node), True
            return True
        if isinstance(reply, TryAgainError):
            wait = min(TRYAGAIN_LONGEST_WAIT, TRYAGAIN_FIRST_WAIT * 2**self.tries)
            if self.waited + wait > TRYAGAIN_BUDGET:
                redirects.bump("exhausted")
                return False
            redirects.bump("tryagain")
            yield Pause(wait)
            self.tries += 1
            self.waited += wait
            # Mid-migration a call whose keys are all missing on the source is sent on
            # (ASK) and refused there until they are together (TRYAGAIN), round after
            # round: that is the migration, not two nodes disagreeing, so the hops start
            # again; the pauses bound it.
            self.hops = 0
            self._to_owner()
            return True
        if isinstance(reply, ReadOnlyError):
            if not self._hop("readonly"):
                return False
            yield Refresh(self.client, failed=self._node_name())
            self._to_owner()
            return True
        return False

    def unreachable(self, error: Exception) -> Flow[bool]:
        """After ``error`` was thrown at the flow's yield: whether to send the call again.

        Only a :class:`RedisUnavailable` from the wire (nothing was written) to a node that
        has been replaced in the map meanwhile. :class:`OutcomeUnknown` never.
        """
        self.asking = False
        if (
            not self.cluster
            or not isinstance(error, RedisUnavailable)
            or isinstance(error, (OutcomeUnknown, ServerRefused))
            or self.hops >= MAX_HOPS
        ):
            return False
        self.hops += 1
        failed = self._node_name()
        yield Refresh(self.client, failed=failed)
        self._to_owner()
        if self._node_name() == failed:
            return False  # nobody took its slots over (yet)
        redirects.bump("rerouted")
        return True

    def renew(self, unreachable: bool, refresh: bool = True) -> Flow[None]:
        """Before the call is sent again after a retry's pause (:mod:`~atomicops.engine.retry`):
        read the map again (``unreachable``: the node that could not be reached is asked
        last; ``refresh`` False: another call of the round just read it) and route from
        the slot's owner, with its redirects counted afresh.

        Raises nothing: when no node serves the slot yet (a failover not decided), the
        call goes where it went, and its next failure is retried or raised.
        The ``TRYAGAIN`` pauses are not given back: the retry deadline bounds them now.
        """
        self.asking = False
        self.hops = 0
        if not self.cluster:
            return
        if refresh:
            yield Refresh(self.client, failed=self._node_name() if unreachable else None)
        try:
            self._to_owner()
        except RedisUnavailable:
            pass

    # -- helpers ----------------------------------------------------------------

    def _hop(self, field: str) -> bool:
        if self.hops >= MAX_HOPS:
            redirects.bump("exhausted")
            return False
        self.hops += 1
        redirects.bump(field)
        return True

    def _node_name(self) -> str | None:
        return None if self.node is None else compat.node_name(self.node)

    def _to_owner(self) -> None:
        try:
            node = compat.cluster_slot_node(self.client, self.slot)
            if node is None:
                raise KeyError(self.slot)
        except _MAP_ERRORS as exc:
            raise RedisUnavailable(
                f"no known cluster node serves slot {self.slot} of script {self.what!r}; "
                f"it was not applied ({exc or type(exc).__name__})",
                script=self.what,
                key=text(self.key),
            ) from exc
        self.node = node
        self.target = client_of(self.client, node)
