"""Contract tests for every redis-py and Django internal in ``atomicops.engine.compat``.

Each test pins one behaviour atomicops relies on and no public API promises. When an
upgrade of redis-py or Django changes one of them, the failure is here, named, instead
of a wrong answer somewhere in a call.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import threading
from contextlib import asynccontextmanager, contextmanager

import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster

from atomicops.engine import compat
from tests.servers import ScriptedServer
from tests.test_cluster import cluster_server  # noqa: F401  (a fixture: one-node clusters)

REDIS_PY = tuple(int(part) for part in redis.__version__.split(".")[:2])


@contextmanager
def connection_of(client):
    """compat.borrow and compat.give_back around a block."""
    conn = compat.borrow(client)
    try:
        yield conn
    finally:
        compat.give_back(client, conn)


@asynccontextmanager
async def aconnection_of(client):
    conn = await compat.aborrow(client)
    try:
        yield conn
    finally:
        await compat.agive_back(client, conn)


@pytest.fixture
def scripted():
    server = ScriptedServer(
        {
            b"FIRST": b"-LOADING Redis is loading the dataset in memory\r\n",
            b"SECOND": b":7\r\n",
            b"HELLO": b"%1\r\n$5\r\nproto\r\n:3\r\n",  # RESP3's handshake
        }
    )
    yield server
    server.close()


def test_read_response_takes_disconnect_on_error():
    for connection_class in (redis.Connection, redis.asyncio.Connection):
        parameters = inspect.signature(connection_class.read_response).parameters
        assert "disconnect_on_error" in parameters, connection_class


@pytest.mark.parametrize("protocol", [2, 3])
def test_a_loading_reply_leaves_the_sync_stream_in_step(scripted, protocol):
    """read_reply() returns LOADING as an object, and the next reply is the next one.

    redis-py's Python parsers rewind their buffer to the start of a reply they raise
    for (to resume after a timeout): read naively, the LOADING line comes back for every
    later reply of the batch, and the real replies stay unread for the next caller.
    """
    client = redis.Redis(port=scripted.port, protocol=protocol)
    try:
        with connection_of(client) as conn:
            conn.send_packed_command(conn.pack_commands([("FIRST",), ("SECOND",), ("FIRST",)]))
            replies = [compat.read_reply(client, conn, name) for name in ("F", "S", "F")]
            conn.send_packed_command(conn.pack_command("SECOND"))
            after = compat.read_reply(client, conn, "SECOND")  # the stream is in step
    finally:
        client.close()
    assert [type(reply) for reply in replies] == [
        redis.BusyLoadingError,
        int,
        redis.BusyLoadingError,
    ]
    assert replies[1] == 7 and after == 7


def test_a_loading_reply_leaves_the_async_stream_in_step(scripted):
    async def main():
        client = redis.asyncio.Redis(port=scripted.port, protocol=2)
        try:
            async with aconnection_of(client) as conn:
                batch = [("FIRST",), ("SECOND",), ("FIRST",), ("SECOND",)]
                await conn.send_packed_command(conn.pack_commands(batch))
                return [await compat.aread_reply(client, conn, cmd[0]) for cmd in batch]
        finally:
            await client.aclose()

    replies = asyncio.run(main())
    assert [type(reply) for reply in replies] == [redis.BusyLoadingError, int] * 2
    assert replies[1] == replies[3] == 7


def test_response_callbacks_convert_like_parse_response(real_client):
    """SCRIPT LOAD's reply goes through the client's callback (bytes -> str)."""
    with connection_of(real_client) as conn:
        conn.send_packed_command(conn.pack_command("SCRIPT", "LOAD", "return 1"))
        sha = compat.read_reply(real_client, conn, "SCRIPT LOAD")
    assert isinstance(sha, str) and len(sha) == 40


def test_single_connection_clients_keep_their_connection_behind_a_lock(real_server):
    sync = redis.Redis(port=real_server.port, single_connection_client=True)
    try:
        with connection_of(sync) as conn:
            assert conn is sync.connection
            other: list[bool] = []  # another thread cannot take the connection meanwhile
            thread = threading.Thread(
                target=lambda: other.append(sync.single_connection_lock.acquire(blocking=False))
            )
            thread.start()
            thread.join()
            assert other == [False]
    finally:
        sync.close()

    async def main():
        client = redis.asyncio.Redis(port=real_server.port, single_connection_client=True)
        try:
            async with aconnection_of(client) as conn:
                assert conn is client.connection and client._single_conn_lock.locked()
        finally:
            await client.aclose()

    asyncio.run(main())


def test_pipelines_load_queued_scripts_through_pipe_scripts(real_client):
    real_client.script_flush()
    source = "return ARGV[1]"
    import hashlib

    handle = compat.PipelineScript(hashlib.sha1(source.encode()).hexdigest(), source)
    pipe = real_client.pipeline()
    assert isinstance(pipe.scripts, set)
    compat.queue_script(pipe, handle, [], ["x"])
    assert pipe.execute() == [b"x"]  # SCRIPT EXISTS, then SCRIPT LOAD, then EVALSHA


def test_cluster_clients_expose_what_topology_reads(cluster_server):  # noqa: F811
    client = redis.cluster.RedisCluster(host="127.0.0.1", port=cluster_server.port)
    try:
        assert compat.is_cluster_client(client) and not compat.is_async_cluster(client)
        assert not compat.cluster_needs_initialize(client)  # a sync one reads it when built
        [primary] = compat.cluster_primary_nodes(client)
        assert compat.node_name(primary) == f"127.0.0.1:{cluster_server.port}"
        assert compat.cluster_slot_node(client, 1234) is primary
        assert compat.cluster_slot_node(client, None) is primary
        assert compat.cluster_node_at(client, "127.0.0.1", cluster_server.port) is primary
        assert compat.cluster_node_at(client, "127.0.0.1", 1) is None
        assert compat.cluster_node_client(client, primary).ping()
    finally:
        client.close()
    assert not compat.is_cluster_client(redis.Redis())


def test_a_sync_refresh_rereads_the_map_and_patches_a_slot_as_moved_says(cluster_server):  # noqa: F811
    """NodesManager.initialize(additional_startup_nodes_info=, disconnect_startup_nodes_pools=,
    last_failed_node_name=) and move_slot(MovedError): what compat.cluster_refresh calls."""
    params = inspect.signature(redis.cluster.NodesManager.initialize).parameters
    for name in ("additional_startup_nodes_info", "disconnect_startup_nodes_pools"):
        assert name in params  # since 7.2, the floor
    # compat passes last_failed_node_name where initialize takes it (8.0+), and 8.0 is
    # where it says it appeared: a refresh on an older redis-py loses only that ordering.
    assert ("last_failed_node_name" in params) == (REDIS_PY >= (8, 0))
    client = redis.cluster.RedisCluster(host="127.0.0.1", port=cluster_server.port)
    try:
        node = compat.cluster_slot_node(client, 7)
        pool = compat.cluster_node_client(client, node).connection_pool
        client.nodes_manager.slots_cache[7] = []  # a stale map: nobody serves slot 7
        compat.cluster_refresh(client)
        assert compat.cluster_slot_node(client, 7).name == node.name
        # The node answering CLUSTER SLOTS has not heard of the move yet: the slot is
        # patched as MOVED said, so the call goes where the refusing node pointed.
        elsewhere = redis.exceptions.MovedError("7 127.0.0.1:1")
        compat.cluster_refresh(client, moved=elsewhere, failed="127.0.0.1:1")
        assert compat.node_name(compat.cluster_slot_node(client, 7)) == "127.0.0.1:1"
        assert compat.cluster_slot_node(client, 8).name == node.name
        assert compat.cluster_node_client(client, node).connection_pool is pool  # kept
    finally:
        client.close()


def test_async_cluster_nodes_lend_connections_through_asyncnode(cluster_server):  # noqa: F811
    """redis.asyncio's ClusterNode: acquire_connection, release, response_callbacks,
    connection_kwargs, and Connection.should_reconnect; RedisCluster._initialize and
    initialize(); NodesManager.initialize(last_failed_node_name=) and move_slot."""
    from atomicops.engine import wire
    from atomicops.engine.ops import Context, Send

    params = inspect.signature(redis.asyncio.cluster.NodesManager.initialize).parameters
    taken = {"additional_startup_nodes_info", "last_failed_node_name"} & set(params)
    assert len(taken) == (2 if REDIS_PY >= (8, 0) else 0)

    async def main():
        client = redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=cluster_server.port)
        try:
            assert compat.is_cluster_client(client) and compat.is_async_cluster(client)
            assert compat.cluster_needs_initialize(client)
            await compat.cluster_initialize(client)
            assert not compat.cluster_needs_initialize(client)
            node = compat.cluster_slot_node(client, 99)
            assert compat.cluster_primary_nodes(client) == [node]
            target = compat.AsyncNode(node)
            assert target.connection_pool.connection_kwargs["port"] == cluster_server.port
            context = Context("test", write=False, script=False)
            send = Send(target, [("PING",), ("SCRIPT LOAD", "return 1")], context)
            assert await wire.aroundtrip(send) == [True, hashlib.sha1(b"return 1").hexdigest()]
            # A pooled connection the server closed is replaced before anything is written,
            # and one a refresh marked is dropped when lent.
            [conn] = node._connections
            with redis.Redis(port=cluster_server.port) as other:
                other.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
            await asyncio.sleep(0.05)
            # (a write context: a lost reply would be OutcomeUnknown, not a second try)
            ping = Send(target, [("PING",)], Context("test", script=False))
            assert await wire.aroundtrip(ping) == [True]
            assert conn in node._free
            conn.mark_for_reconnect()
            assert await wire.aroundtrip(ping) == [True]
            assert conn in node._free and not conn.should_reconnect()
            await compat.acluster_refresh(client)
            patched = redis.exceptions.MovedError("99 127.0.0.1:1")
            await compat.acluster_refresh(client, moved=patched)
            assert compat.node_name(compat.cluster_slot_node(client, 99)) == "127.0.0.1:1"
        finally:
            await client.aclose()

    asyncio.run(main())


def test_django_redis_cache_hands_out_its_client(real_server, settings):
    from django.core.cache import caches

    settings.CACHES = {
        "rc": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": real_server.url,
        }
    }
    client = compat.django_redis_cache_client("rc")
    assert isinstance(client, redis.Redis)
    assert client.ping()
    caches["rc"].close()


def test_a_connection_closed_by_the_server_is_seen_before_the_loop_runs(real_server):
    """redis.asyncio's can_read() misses an EOF the loop has not read yet; a select sees it."""
    import time

    async def main():
        client = redis.asyncio.Redis(port=real_server.port)
        try:
            await client.ping()
            conn = await client.connection_pool.get_connection()
            assert not compat.socket_closed_under(conn)
            killer = redis.Redis(port=real_server.port)
            killer.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
            killer.close()
            time.sleep(0.1)  # the loop does not run: the EOF waits in the socket
            # what the pool asks (can_read_destructive before redis-py 8): why atomicops looks
            parser = conn._parser
            asks = getattr(parser, "can_read", None) or parser.can_read_destructive
            assert not await asks()
            assert compat.socket_closed_under(conn)
            await client.connection_pool.release(conn)
        finally:
            await client.aclose()

    asyncio.run(main())


async def test_awrite_writes_without_a_task_and_maps_a_closed_transport(real_server):
    """compat.awrite reaches into a redis.asyncio connection's writer and transport."""
    import redis.asyncio
    from redis.exceptions import ConnectionError as RedisConnectionError

    client = redis.asyncio.Redis.from_url(real_server.url, socket_timeout=5)
    conn = await client.connection_pool.get_connection()
    try:
        await conn.connect()
        assert conn.health_check_interval == 0 and conn.socket_timeout == 5
        await compat.awrite(conn, [b"*1\r\n$4\r\nPING\r\n"])
        assert await conn.read_response() in (b"PONG", "PONG", True)
        conn._writer.transport.close()
        with pytest.raises(RedisConnectionError):
            await compat.awrite(conn, [b"*1\r\n$4\r\nPING\r\n"])
        assert not conn.is_connected  # dropped, as redis-py drops it
    finally:
        await client.connection_pool.release(conn)
        await client.aclose()
