"""Which server a call goes to: the client itself, or the cluster node owning its slot.

The one module that knows a cluster has nodes. Every other module asks here: a call's
target (:func:`target_for`), the servers to load scripts onto or scan
(:func:`primaries`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.crc import key_slot

from atomicops.engine import compat
from atomicops.engine.ops import text
from atomicops.exceptions import ConfigurationError, CrossSlotError


def is_cluster(client: Any) -> bool:
    """Whether ``client`` is a (sync or asyncio) Redis Cluster client."""
    return compat.is_cluster_client(client)


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


def target_for(client: Any, keys: Sequence[Any], what: str) -> Any:
    """The plain client that serves ``keys``: ``client`` itself, or the node owning the slot.

    On a cluster, keys of one call must share a slot (checked before anything is sent).
    """
    if not compat.is_cluster_client(client):
        return client
    slot = slot_of(keys, what)
    if _is_async_cluster(client):
        raise ConfigurationError(
            "async Redis Cluster clients are not supported yet; use a sync RedisCluster",
            script=what,
        )
    return compat.cluster_node_client(client, slot)


def primaries(client: Any) -> list[tuple[str, Any]]:
    """``(name, plain client)`` of every server holding data: each primary of a cluster,
    or the one server of any other client (named by its address)."""
    if compat.is_cluster_client(client):
        return compat.cluster_primaries(client)
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {}) or {}
    name = kwargs.get("path") or f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
    return [(str(name), client)]


def _is_async_cluster(client: Any) -> bool:
    import redis.asyncio.cluster

    return isinstance(client, redis.asyncio.cluster.RedisCluster)
