"""Every redis-py and Django internal atomicops relies on, in one place.

Each is something no public API offers. ``tests/test_compat.py`` checks every one of
them against the installed versions, so an upgrade that changes one fails loudly there
instead of somewhere in a call; ``pyproject.toml`` bounds the versions that matrix
covers. Nothing else in atomicops touches these names.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from redis._parsers.socket import SocketBuffer
from redis.exceptions import AuthenticationError, BusyLoadingError, ResponseError

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
    callback = client.response_callbacks.get(command)
    return reply if callback is None else callback(reply)


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
    callback = client.response_callbacks.get(command)
    if callback is None:
        return reply
    converted = callback(reply)
    return await converted if inspect.isawaitable(converted) else converted


# -- borrowing a connection --------------------------------------------------------


@contextmanager
def connection_of(client: Any) -> Iterator[Any]:
    """A connection of ``client`` for one round trip, given back afterwards.

    A ``single_connection_client`` keeps one connection (``client.connection``) behind
    ``client.single_connection_lock``; other clients lend one from their pool.
    """
    own = getattr(client, "connection", None)
    if own is not None:
        with client.single_connection_lock:
            yield own
        return
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        yield conn
    finally:
        pool.release(conn)


@asynccontextmanager
async def aconnection_of(client: Any) -> AsyncIterator[Any]:
    """The async twin of :func:`connection_of` (``_single_conn_lock``, ``initialize()``)."""
    if hasattr(client, "initialize"):
        await client.initialize()  # a single_connection_client connects here
    own = getattr(client, "connection", None)
    if own is not None:
        async with client._single_conn_lock:
            yield own
        return
    pool = client.connection_pool
    conn = await pool.get_connection()
    try:
        yield conn
    finally:
        await pool.release(conn)


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


def is_cluster_client(client: Any) -> bool:
    """A sync or asyncio ``RedisCluster`` (or its pipeline): it has a ``nodes_manager``."""
    return hasattr(client, "nodes_manager")


def cluster_node_client(client: Any, slot: int | None) -> Any:
    """The plain client of the node serving ``slot`` (the default node for None)."""
    if slot is None:
        node = client.get_default_node()
    else:
        node = client.nodes_manager.get_node_from_slot(slot)
    return node.redis_connection


def cluster_primaries(client: Any) -> list[tuple[str, Any]]:
    """``(name, plain client)`` of every primary of a sync cluster client."""
    return [(node.name, node.redis_connection) for node in client.get_primaries()]


# -- Django ----------------------------------------------------------------------------


def django_redis_cache_client(alias: str) -> Any:
    """The redis-py client behind Django's own ``RedisCache`` (``cache._cache``)."""
    from django.core.cache import caches

    return caches[alias]._cache.get_client(write=True)  # type: ignore[attr-defined]
