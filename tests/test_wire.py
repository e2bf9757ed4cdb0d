"""atomicops' own RESP packing gives exactly the bytes redis-py's packer gives."""

from __future__ import annotations

import pytest
import redis
import redis.asyncio
from redis.connection import PythonRespSerializer

from atomicops.engine import wire

COMMANDS = [
    ("EVALSHA", "a" * 40, 2, "k:é", b"\x00\xff bytes", -5, "", "two words", 2**53),
    ("EVALSHA_RO", "b" * 40, 0),
    ("EVAL", "return 1\r\n", 0),
    ("BLPOP", "k", "0.010"),
    ("SCRIPT LOAD", "return 'é'"),
    ("EVALSHA", "s", 1, "k", 1.5, 0.1, -2.5e-300),
]


def python_packer(conn):
    """redis-py's own pure-Python packer for ``conn``'s encoding (with hiredis installed,
    ``conn.pack_command`` writes text as UTF-8 whatever the client's encoding)."""
    return PythonRespSerializer(conn._buffer_cutoff, conn.encoder.encode).pack


def connections():
    for encoding in ("utf-8", "latin-1"):
        yield redis.Redis(encoding=encoding).connection_pool.make_connection()
        yield redis.asyncio.Redis(encoding=encoding).connection_pool.make_connection()


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_fast_packing_matches_redis_py(command):
    for conn in connections():
        packed = wire.pack_one(command, conn.encoder)
        assert packed is not None
        assert packed == [b"".join(python_packer(conn)(*command))], conn


def test_a_batch_is_packed_like_its_commands_one_by_one():
    for conn in connections():
        expected = b"".join(b"".join(python_packer(conn)(*command)) for command in COMMANDS)
        assert wire.pack(conn, COMMANDS) == [expected], conn


@pytest.mark.parametrize(
    "command",
    [("EVALSHA", "s", 1, "k", memoryview(b"v")), ("EVALSHA", "s", 0, True)],
)
def test_what_it_does_not_know_goes_to_redis_py(command):
    conn = redis.Redis().connection_pool.make_connection()
    assert wire.pack_one(command, conn.encoder) is None
    if command[-1] is not True:  # redis-py refuses bools itself
        assert wire.pack(conn, [command]) == conn.pack_command(*command)


def test_a_connection_without_an_encoder_uses_its_own_packer():
    # Client-side caching (CacheProxyConnection) hands out connections like this.
    inner = redis.Redis().connection_pool.make_connection()

    class Proxy:
        def pack_command(self, *args):
            return inner.pack_command(*args)

    command = COMMANDS[0]
    assert wire.pack(Proxy(), [command]) == inner.pack_command(*command)
