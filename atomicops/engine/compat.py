"""Every redis-py and Django internal atomicops relies on, in one place.

Each is something no public API offers. ``tests/test_compat.py`` checks every one of
them against the installed versions, so an upgrade that changes one fails loudly there
instead of somewhere in a call; ``pyproject.toml`` bounds the versions that matrix
covers. Nothing else in atomicops touches these names.
"""

from __future__ import annotations

import asyncio
import inspect
import select
from typing import Any

from redis._parsers.socket import SocketBuffer
from redis.asyncio.cluster import NodesManager as AsyncNodesManager
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import NodesManager as SyncNodesManager
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    ReadOnlyError,
    RedisClusterException,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# Errors the server *replied* with: the reply was read whole, the stream is in step.
# redis-py raises LOADING and NOAUTH as ConnectionError subclasses.
REPLY_ERRORS = (ResponseError, BusyLoadingError, AuthenticationError)


# -- reading replies ---------------------------------------------------------------


def read_reply(client: Any, conn: Any, command: Any) -> Any:
    """The next reply on ``conn``, converted like ``client.parse_response`` would.

    ``Connection.read_response(disconnect_on_error=False)``: redis-py raises the error
    replies it classes as connection errors (LOADING, NOAUTH) and by default drops the
    connection on them, so a batch's later replies could not be read. The error line
    was read whole; the pure-Python parsers then rewind their ``SocketBuffer`` to its
    start (to resume after a timeout), so it is skipped here to keep the stream in step
    (hiredis consumed it already). ``client.response_callbacks``: what
    ``parse_response`` applies (``SCRIPT LOAD`` -> str, ``INFO`` -> dict).
    """
    try:
        reply = conn.read_response(disconnect_on_error=False)
    except REPLY_ERRORS as exc:
        if not isinstance(exc, ResponseError):  # raised by the parser, after a rewind
            _skip_rewound_line(conn)
        return exc
    except (RedisConnectionError, AttributeError) as exc:  # a parser without a socket: the latter
        return demoted_reply(exc, conn, getattr(conn, "_sock", True) is None)
    callback = client.response_callbacks.get(command)
    return reply if callback is None else callback(reply)


def demoted_reply(exc: Exception, conn: Any, closed: bool) -> Exception:
    """The reply behind a sentinel connection's ``ConnectionError``; re-raises any other.

    redis-py's ``SentinelManagedConnection.read_response`` turns a READONLY reply (the
    primary it talks to was demoted by a failover) into ``ConnectionError("The previous
    master is now a slave")``, after dropping the connection so that the next one asks
    the sentinels again. The reply was read whole and the script did not run: it is
    handed back as the ``ReadOnlyError`` it was (``__context__``). The replies after it
    in the batch cannot be read any more (``closed``: the socket is gone, ``_sock`` /
    ``_reader``, and the parser fails with an ``AttributeError``); they come back as this
    same refusal, never as a lost reply. Only a sentinel connection drops its socket in
    the middle of a batch: anything else is raised as it was.
    """
    if isinstance(exc.__context__, ReadOnlyError):
        return exc.__context__
    if closed:
        return ReadOnlyError(f"not read: the connection was dropped by an earlier READONLY ({exc})")
    raise exc


def _skip_rewound_line(conn: Any) -> None:
    buffer = getattr(getattr(conn, "_parser", None), "_buffer", None)
    if isinstance(buffer, SocketBuffer):
        buffer.readline()
        buffer.purge()


async def aread_reply(client: Any, conn: Any, command: Any) -> Any:
    """The async twin of :func:`read_reply`."""
    try:
        reply = await conn.read_response(disconnect_on_error=False)
    except REPLY_ERRORS as exc:
        return exc
    except (RedisConnectionError, AttributeError) as exc:
        return demoted_reply(exc, conn, getattr(conn, "_reader", True) is None)
    callback = client.response_callbacks.get(command)
    if callback is None:
        return reply
    converted = callback(reply)
    return await converted if inspect.isawaitable(converted) else converted


# -- borrowing a connection --------------------------------------------------------


# Plain functions, not context managers, on the hot path: a generator-based context
# manager costs a few microseconds per call, a tenth of atomicops' whole share of one.


def borrow(client: Any) -> Any:
    """A connection of ``client`` for one round trip; hand it back with :func:`give_back`.

    A ``single_connection_client`` keeps one connection (``client.connection``) behind
    ``client.single_connection_lock``; other clients lend one from their pool.
    """
    own = getattr(client, "connection", None)
    if own is not None:
        client.single_connection_lock.acquire()
        return own
    return client.connection_pool.get_connection()


def give_back(client: Any, conn: Any) -> None:
    if conn is getattr(client, "connection", None):
        client.single_connection_lock.release()
    else:
        client.connection_pool.release(conn)


async def aborrow(client: Any, *, fresh: bool = True) -> Any:
    """The async twin of :func:`borrow` (``_single_conn_lock``, ``initialize()``).

    ``fresh``: replace a pooled connection whose socket the server already closed (see
    :func:`socket_closed_under`); a write needs that, a read is sent again anyway.
    """
    if getattr(client, "single_connection_client", False) and client.connection is None:
        await client.initialize()  # a single_connection_client connects here
    own = getattr(client, "connection", None)
    if own is not None:
        await client._single_conn_lock.acquire()
        return own
    pool = client.connection_pool
    conn = await pool.get_connection()
    if fresh and socket_closed_under(conn):
        try:
            await conn.disconnect()  # send_packed_command connects it afresh
        except BaseException:
            await pool.release(conn)
            raise
    return conn


async def agive_back(client: Any, conn: Any) -> None:
    if conn is getattr(client, "connection", None):
        client._single_conn_lock.release()
    else:
        await client.connection_pool.release(conn)


async def awrite(conn: Any, packed: list[bytes]) -> None:
    """``conn.send_packed_command(packed)`` of a ``redis.asyncio`` connection, without its
    per-call ``asyncio.wait_for`` when a socket timeout is set: on Python < 3.12 that
    wraps the write in a new task, which cost a lone async call a fifth of its time.

    The write is handed to the transport, which sends what it can at once; only when
    bytes are left in its buffer (a large batch, a slow peer) is ``drain()`` awaited,
    under the socket timeout as redis-py does. Errors are redis-py's: OSError and a
    closing transport as ``ConnectionError``, a timeout as ``TimeoutError``, after
    dropping the connection.
    """
    writer = getattr(conn, "_writer", None)
    if writer is None or conn.health_check_interval:
        await conn.send_packed_command(packed)  # connects it, or checks its health
        return
    if writer.transport.is_closing():
        await conn.disconnect(nowait=True)
        raise RedisConnectionError("Connection closed by the server before write")
    try:
        writer.writelines(packed)
        buffered = getattr(writer.transport, "get_write_buffer_size", None)  # not fakeredis'
        if buffered is None or buffered():
            timeout = conn.socket_timeout
            if timeout:
                await asyncio.wait_for(writer.drain(), timeout)
            else:
                await writer.drain()
    except asyncio.TimeoutError:
        await conn.disconnect(nowait=True)
        raise RedisTimeoutError("Timeout writing to socket") from None
    except (OSError, TypeError, AttributeError) as exc:  # see redis-py's _send_packed_command
        await conn.disconnect(nowait=True)
        raise RedisConnectionError(f"Error while writing to socket: {exc!r}") from exc
    except BaseException:
        await conn.disconnect(nowait=True)
        raise


def reads_plainly(conn: Any) -> bool:
    """Whether a sync connection's replies may be read by atomicops' own reader: redis-py's
    own connection class with its pure-Python parser (not hiredis, which is faster), no
    health checks (their PINGs are read by redis-py's parser), a socket in ``_sock``."""
    return (
        type(conn).__module__ == "redis.connection"  # not fakeredis', nor a custom class
        and type(conn._parser).__name__ in ("_RESP2Parser", "_RESP3Parser")
        and not conn.health_check_interval
        and hasattr(conn, "_sock")
        and hasattr(conn._parser, "parse_error")
    )


def areads_plainly(conn: Any) -> bool:
    """:func:`reads_plainly` for a ``redis.asyncio`` connection (its stream in ``_reader``)."""
    return (
        type(conn).__module__ == "redis.asyncio.connection"
        and type(conn._parser).__name__ in ("_AsyncRESP2Parser", "_AsyncRESP3Parser")
        and not conn.health_check_interval
        and hasattr(conn._parser, "parse_error")
    )


def socket_of(conn: Any) -> Any:
    """The socket under a connection (sync: ``_sock``; asyncio: the stream's), or None
    when it is not connected."""
    sock = getattr(conn, "_sock", None)
    if sock is not None:
        return sock
    writer = getattr(conn, "_writer", None)
    return None if writer is None else writer.get_extra_info("socket")


def socket_closed_under(conn: Any) -> bool:
    """Whether an idle asyncio connection's socket already holds EOF (or stray data).

    redis.asyncio's pool asks ``can_read()``, which sees an EOF only once the event
    loop has run the transport's read callback. A server that restarted while the loop
    was busy leaves a connection that looks fine: a write on it then reads EOF and must
    be reported as OutcomeUnknown, although it never reached any server. A zero-timeout
    ``select`` on the socket sees the EOF at once. (``_writer``: redis.asyncio's stream.)
    """
    writer = getattr(conn, "_writer", None)
    sock = None if writer is None else writer.get_extra_info("socket")
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock.fileno()], [], [], 0)
    except (OSError, ValueError):  # closed meanwhile
        return True
    return bool(readable)


# -- pipelines and clusters -------------------------------------------------------------


class PipelineScript:
    """What redis-py's ``Pipeline.load_scripts`` expects in ``pipe.scripts``."""

    __slots__ = ("sha", "script")

    def __init__(self, sha: str, script: str) -> None:
        self.sha = sha
        self.script = script


def queue_script(pipe: Any, handle: PipelineScript, keys: Any, args: Any) -> None:
    """Queue an ``EVALSHA`` on ``pipe``; ``execute()`` loads the script first if missing.

    ``pipe.scripts``: the set ``Pipeline.execute`` runs ``SCRIPT EXISTS`` for.
    """
    pipe.scripts.add(handle)
    pipe.execute_command("EVALSHA", handle.sha, len(keys), *keys, *args)


def is_sentinel_client(client: Any) -> bool:
    """A client whose pool asks sentinels for its server (``SentinelConnectionPool``,
    sync or asyncio: it has a ``sentinel_manager``)."""
    return getattr(getattr(client, "connection_pool", None), "sentinel_manager", None) is not None


def sentinel_forget(client: Any) -> None:
    """Drop the idle connections of a sentinel-managed pool: each one asks the sentinels
    where the primary is when it connects again (``SentinelManagedConnection.connect``)."""
    client.connection_pool.disconnect(inuse_connections=False)


async def asentinel_forget(client: Any) -> None:
    """The asyncio twin of :func:`sentinel_forget`."""
    await client.connection_pool.disconnect(inuse_connections=False)


def is_cluster_client(client: Any) -> bool:
    """A sync or asyncio ``RedisCluster`` (or its pipeline): it has a ``nodes_manager``."""
    return hasattr(client, "nodes_manager")


def is_async_cluster(client: Any) -> bool:
    """A ``redis.asyncio`` cluster client: its nodes are not clients (see :class:`AsyncNode`)."""
    return isinstance(client, AsyncRedisCluster)


def cluster_needs_initialize(client: Any) -> bool:
    """Whether an asyncio ``RedisCluster`` has not read its slot map yet (``_initialize``).

    A sync one reads it when built; an asyncio one on its first command, so until then
    its ``nodes_manager`` knows no node.
    """
    return bool(getattr(client, "_initialize", False))


async def cluster_initialize(client: Any) -> None:
    """Read an asyncio ``RedisCluster``'s slot map the way its first command would."""
    await client.initialize()


def cluster_slot_node(client: Any, slot: int | None) -> Any:
    """The node object serving ``slot`` now, by the client's map (the default node for
    None); ``SlotNotCoveredError`` when no node does. Same call, sync or asyncio."""
    if slot is None:
        return client.get_default_node()
    return client.nodes_manager.get_node_from_slot(slot)


def cluster_node_at(client: Any, host: str, port: int) -> Any:
    """The node object at ``host:port`` if the client knows it, else None."""
    return client.nodes_manager.get_node(host=host, port=port)


def cluster_node_client(client: Any, node: Any) -> Any:
    """The plain ``redis.Redis`` of a sync cluster's node (created on first use)."""
    return client.get_redis_connection(node)


def cluster_primary_nodes(client: Any) -> list[Any]:
    """Every primary node object the client's map knows (sync or asyncio)."""
    return list(client.get_primaries())


def node_name(node: Any) -> str:
    """``host:port`` of a node object (sync or asyncio)."""
    return str(node.name)


# What ``NodesManager.initialize`` takes, sync and asyncio. redis-py 8.0 added
# ``last_failed_node_name`` to both and ``additional_startup_nodes_info`` to the asyncio
# one (the sync one has it since 7.2). Without them a refresh reads the startup nodes
# only: the slot a MOVED named is still patched (``move_slot``, 7.2+), so the call goes
# where it was sent, but a refresh after a node failed may first wait for that node's
# connect timeout. Nothing is lost but that time.
_SYNC_INITIALIZE = frozenset(inspect.signature(SyncNodesManager.initialize).parameters)
_ASYNC_INITIALIZE = frozenset(inspect.signature(AsyncNodesManager.initialize).parameters)


def _initialize_options(
    takes: frozenset[str], moved: Any, failed: str | None, **more: Any
) -> dict[str, Any]:
    wanted = {
        "additional_startup_nodes_info": [(moved.host, moved.port)] if moved is not None else None,
        "last_failed_node_name": failed,
        **more,
    }
    return {name: value for name, value in wanted.items() if name in takes}


def cluster_refresh(client: Any, moved: Any = None, failed: str | None = None) -> None:
    """Re-read a sync cluster's slot map: ``CLUSTER SLOTS`` through ``NodesManager.initialize``.

    ``moved`` (a ``MovedError``): its node is asked too, and when the node that answered
    has not heard of the move yet, that one slot is patched as MOVED said
    (``move_slot``), so the call goes where the server that refused it pointed.
    ``failed``: a node name asked last. The pools of the node asked are kept
    (``disconnect_startup_nodes_pools=False``): redis-py drops them to clear a replica's
    READONLY mode, which atomicops never sets, and reconnecting costs every next call.
    Concurrent refreshes of one client collapse into one (redis-py's epoch check).
    """
    manager = client.nodes_manager
    manager.initialize(
        **_initialize_options(_SYNC_INITIALIZE, moved, failed, disconnect_startup_nodes_pools=False)
    )
    if moved is not None and not _points_at(manager, moved):
        manager.move_slot(moved)


async def acluster_refresh(client: Any, moved: Any = None, failed: str | None = None) -> None:
    """The asyncio twin of :func:`cluster_refresh` (its ``initialize`` keeps pools anyway).

    Since redis-py 8.2 the asyncio ``initialize`` asks a startup node through that node's
    own pooled connections and does not retry: one the server closed while idle (a
    ``timeout`` setting, a CLIENT KILL, a restart) fails the whole refresh with
    ``RedisClusterUnreachableError`` although the node is up. redis-py drops the
    connection that failed, so one more reading gets a fresh one. ``CLUSTER SLOTS`` is a
    read: asking twice is safe.
    """
    manager = client.nodes_manager
    options = _initialize_options(_ASYNC_INITIALIZE, moved, failed)
    try:
        await manager.initialize(**options)
    except (RedisConnectionError, RedisClusterException):  # a deterministic one fails again
        await manager.initialize(**options)
    if moved is not None and not _points_at(manager, moved):
        patched = manager.move_slot(moved)  # a coroutine since redis-py 8.2
        if inspect.isawaitable(patched):
            await patched


def _points_at(manager: Any, moved: Any) -> bool:
    nodes = manager.slots_cache.get(moved.slot_id)
    return bool(nodes) and nodes[0].name == f"{moved.host}:{moved.port}"


class AsyncNode:
    """One node of a ``redis.asyncio`` cluster, with the face of a plain client for wire.

    redis.asyncio's ``ClusterNode`` is not a client: it keeps its own connections
    (``acquire_connection`` / ``release``; a topology refresh marks them for a lazy
    reconnect, ``should_reconnect``) and ``response_callbacks``. ``connection_pool``
    lends one of them and takes it back, and it is what ``registry.server_state``
    remembers the node by (the ``ClusterNode`` itself has ``__slots__`` and no weak
    references).
    """

    __slots__ = ("node", "connection_pool", "response_callbacks", "__weakref__")

    def __init__(self, node: Any) -> None:
        self.node = node
        self.connection_pool = _AsyncNodePool(node)
        self.response_callbacks = node.response_callbacks

    def __repr__(self) -> str:
        return f"<AsyncNode {self.node.name}>"


class _AsyncNodePool:
    """``get_connection`` / ``release`` over an asyncio ``ClusterNode``'s own connections."""

    __slots__ = ("node", "connection_kwargs", "__weakref__")

    def __init__(self, node: Any) -> None:
        self.node = node
        self.connection_kwargs = node.connection_kwargs

    async def get_connection(self) -> Any:
        conn = self.node.acquire_connection()
        # Marked by a topology refresh (redis.asyncio's lazy reconnect): drop it now;
        # writing the batch connects it again. A socket the server closed meanwhile is
        # caught by aborrow (socket_closed_under), as for every pool.
        if conn.should_reconnect():
            try:
                await conn.disconnect()
            except BaseException:
                self.node.release(conn)
                raise
        return conn

    async def release(self, conn: Any) -> None:
        self.node.release(conn)  # disconnects first if marked meanwhile


# -- Django ----------------------------------------------------------------------------


def django_redis_cache_client(alias: str) -> Any:
    """The redis-py client behind Django's own ``RedisCache`` (``cache._cache``)."""
    from django.core.cache import caches

    return caches[alias]._cache.get_client(write=True)  # type: ignore[attr-defined, unused-ignore]


# -- replies read over HTTP (engine/rest.py) --------------------------------------------

_RESP2_CALLBACKS: dict[str, Any] | None = None


def resp2_response_callbacks() -> dict[str, Any]:
    """What a RESP2 ``redis.Redis``'s ``response_callbacks`` holds (``SCRIPT LOAD`` -> str,
    ``INFO`` -> dict), so a reply read over HTTP converts as :func:`read_reply`'s does.

    Taken from a client that is never connected: redis-py assembles the table in
    ``Redis.__init__`` from private modules.
    """
    global _RESP2_CALLBACKS
    if _RESP2_CALLBACKS is None:
        import redis

        client = redis.Redis()
        _RESP2_CALLBACKS = dict(client.response_callbacks)
        client.close()
    return _RESP2_CALLBACKS


def parse_error(message: str) -> Exception:
    """An error reply's text as redis-py's exception object (``NOSCRIPT`` -> NoScriptError),
    with redis-py's rules: ``BaseParser.parse_error``."""
    from redis._parsers.base import BaseParser

    return BaseParser.parse_error(message)  # type: ignore[no-untyped-call, no-any-return, unused-ignore]


# -- the official Upstash SDK (upstash-redis) ------------------------------------------


def upstash_sdk_type(kind: type) -> str | None:
    """``"sync"`` for ``upstash_redis.Redis``, ``"async"`` for ``upstash_redis.asyncio.Redis``
    (or subclasses), None otherwise; without importing upstash_redis for other types."""
    if not any(klass.__module__.startswith("upstash_redis") for klass in kind.__mro__):
        return None
    import upstash_redis
    import upstash_redis.asyncio

    if issubclass(kind, upstash_redis.Redis):
        return "sync"
    if issubclass(kind, upstash_redis.asyncio.Redis):
        return "async"
    return None


def is_upstash_async(sdk: Any) -> bool:
    return upstash_sdk_type(type(sdk)) == "async"


def upstash_sdk_parts(sdk: Any) -> tuple[str, str]:
    """URL and token of an upstash-redis client: ``_url``, and the bearer token in
    ``_headers["Authorization"]`` (the SDK keeps neither publicly)."""
    auth = sdk._headers["Authorization"]
    token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else auth
    return sdk._url, token
