"""``client=`` that is not a client of the right kind: a ConfigurationError, sent nothing.

Nothing here needs a server: the configured URL points at a closed port, and every bad
client must be refused before a command is built, let alone sent. A redis.asyncio
client given to a synchronous call used to be called anyway (a coroutine, never
awaited, then a bare AttributeError), and so did a plain one given to an async call.
"""

from __future__ import annotations

import gc
import warnings

import fakeredis
import pytest
import redis
import redis.asyncio

from atomicops import (
    AtomicOpsError,
    ConfigurationError,
    Lock,
    abounded_incr,
    acompare_and_set,
    afixed_window,
    bounded_incr,
    compare_and_set,
    fixed_window,
    registry,
)
from atomicops.engine import connection
from tests.servers import free_port
from tests.test_cluster import cluster, cluster_server  # noqa: F401  (fixtures)

NOT_CLIENTS = {
    "str": "x",
    "url": "redis://:s3cret@127.0.0.1:6379/0",
    "int": 42,
    "dict": {},
    "object": object(),
    "none-like": False,
}


@pytest.fixture(autouse=True)
def _dead_default(settings):
    # If a bad client slipped through to the configured one, it would fail differently.
    settings.ATOMICOPS = {"URL": f"redis://127.0.0.1:{free_port()}/0", "LOAD_ON_STARTUP": False}


def _sync_calls(client):
    return {
        "bounded_incr": lambda: bounded_incr("k", 10, client=client),
        "compare_and_set": lambda: compare_and_set("k", "a", "b", client=client),
        "fixed_window": lambda: fixed_window("k", 5, 1_000, client=client),
        "Lock.acquire": lambda: Lock("k", ttl=10, client=client).acquire(blocking=False),
        "Script": lambda: registry.get("counter_bounded_incr")(["k"], [1, 10, 0], client=client),
    }


def _async_calls(client):
    return {
        "abounded_incr": lambda: abounded_incr("k", 10, client=client),
        "acompare_and_set": lambda: acompare_and_set("k", "a", "b", client=client),
        "afixed_window": lambda: afixed_window("k", 5, 1_000, client=client),
        "Lock.aacquire": lambda: Lock("k", ttl=10, client=client).aacquire(blocking=False),
        "Script.acall": lambda: registry.get("counter_bounded_incr").acall(
            ["k"], [1, 10, 0], client=client
        ),
    }


def _no_unawaited_coroutines():
    """Collect garbage: a coroutine dropped without an await warns when it is collected.

    Recorded rather than raised, so that other tests' leftovers (an unclosed socket's
    ResourceWarning) are not blamed on this one.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    unawaited = [str(w.message) for w in caught if "never awaited" in str(w.message)]
    assert unawaited == []


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("given", NOT_CLIENTS, ids=list(NOT_CLIENTS))
@pytest.mark.parametrize("call", list(_sync_calls(None)))
def test_sync_calls_refuse_what_is_not_a_client(given, call):
    value = NOT_CLIENTS[given]
    with pytest.raises(ConfigurationError) as caught:
        _sync_calls(value)[call]()
    message = caught.value.message
    assert type(caught.value) is ConfigurationError
    assert "client= must be a redis-py client, got" in message
    assert "redis.Redis, redis.cluster.RedisCluster or a pipeline" in message
    assert "s3cret" not in message  # a URL passed by mistake is shown redacted


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("given", NOT_CLIENTS, ids=list(NOT_CLIENTS))
@pytest.mark.parametrize("call", list(_async_calls(None)))
async def test_async_calls_refuse_what_is_not_a_client(given, call):
    value = NOT_CLIENTS[given]
    with pytest.raises(ConfigurationError) as caught:
        await _async_calls(value)[call]()
    assert "client= must be a redis-py client, got" in caught.value.message
    assert "redis.asyncio.Redis" in caught.value.message


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("call", list(_sync_calls(None)))
@pytest.mark.parametrize("kind", ["redis.asyncio", "fakeredis"])
def test_an_asyncio_client_in_a_sync_call_is_refused_and_nothing_is_left_unawaited(kind, call):
    port = free_port()  # nothing listens: a call that went through would fail otherwise
    client = (
        redis.asyncio.Redis(port=port) if kind == "redis.asyncio" else fakeredis.FakeAsyncRedis()
    )
    with pytest.raises(ConfigurationError, match="is a redis.asyncio client") as caught:
        _sync_calls(client)[call]()
    assert "a-prefixed twin" in caught.value.message
    del caught
    _no_unawaited_coroutines()


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("call", list(_async_calls(None)))
@pytest.mark.parametrize("kind", ["redis", "fakeredis"])
async def test_a_sync_client_in_an_async_call_is_refused(kind, call):
    client = redis.Redis(port=free_port()) if kind == "redis" else fakeredis.FakeRedis()
    with pytest.raises(ConfigurationError, match="is a synchronous client") as caught:
        await _async_calls(client)[call]()
    assert "the a-prefixed methods need redis.asyncio.Redis" in caught.value.message
    _no_unawaited_coroutines()


@pytest.mark.filterwarnings("error::RuntimeWarning")
async def test_a_sync_pipeline_in_an_async_script_call_is_refused():
    # The primitives refuse any pipeline (InvalidInput); a script would queue on one.
    pipe = redis.Redis(port=free_port()).pipeline()
    with pytest.raises(ConfigurationError, match="is a synchronous client"):
        await registry.get("counter_bounded_incr").acall(["k"], [1, 10, 0], client=pipe)
    assert len(pipe) == 0


def test_accepted_clients():
    sync_ok = [
        redis.Redis(port=1),
        redis.StrictRedis(port=1),
        redis.Redis(port=1).pipeline(),
        fakeredis.FakeRedis(),
        fakeredis.FakeStrictRedis(),
        fakeredis.FakeRedis().pipeline(),
        redis.asyncio.Redis(port=1).pipeline(),  # queuing on it sends nothing
    ]
    for client in sync_ok:
        assert connection.get_client(client) is client
    async_ok = [
        redis.asyncio.Redis(port=1),
        redis.asyncio.Redis(port=1).pipeline(),
        fakeredis.FakeAsyncRedis(),
    ]
    for client in async_ok:
        assert connection.get_async_client(client) is client


def test_cluster_clients_are_accepted_by_type():
    # Made without connecting (no startup nodes are contacted until first use).
    import redis.asyncio.cluster
    import redis.cluster

    sync_cluster = redis.cluster.RedisCluster.__new__(redis.cluster.RedisCluster)
    async_cluster = redis.asyncio.cluster.RedisCluster.__new__(redis.asyncio.cluster.RedisCluster)
    async_pipe = redis.asyncio.cluster.ClusterPipeline.__new__(
        redis.asyncio.cluster.ClusterPipeline
    )
    assert connection.client_kind(sync_cluster) == connection.SYNC
    assert connection.client_kind(async_cluster) == connection.ASYNC
    assert connection.client_kind(async_pipe) == connection.ASYNC
    assert connection.is_pipeline(async_pipe)
    assert connection.is_pipeline(
        redis.cluster.ClusterPipeline.__new__(redis.cluster.ClusterPipeline)
    )


def test_the_check_is_remembered_per_type(monkeypatch):
    seen = []
    real = issubclass

    def counting(kind, classes):
        seen.append(kind)
        return real(kind, classes)

    class MyClient(redis.Redis):
        pass

    client = MyClient(port=1)
    monkeypatch.setattr("builtins.issubclass", counting)
    for _ in range(5):
        connection.get_client(client)
    monkeypatch.undo()
    assert seen.count(MyClient) <= 1


def test_configuration_error_is_an_atomicops_error():
    with pytest.raises(AtomicOpsError):
        connection.get_client(object())


def test_a_cluster_pipeline_is_a_pipeline(cluster, fresh_registry):  # noqa: F811
    # It used to be taken for a cluster client: the script ran at once, outside the batch.
    script = fresh_registry.register("setx", "return redis.call('SET', KEYS[1], 'x')")
    pipe = cluster.pipeline()
    with pytest.raises(ConfigurationError, match="cannot be queued on a cluster pipeline"):
        script(["{u}:a"], client=pipe)
    with pytest.raises(AtomicOpsError, match="not a pipeline"):
        bounded_incr("{u}:b", 10, client=pipe)
    assert cluster.exists("{u}:a", "{u}:b") == 0
