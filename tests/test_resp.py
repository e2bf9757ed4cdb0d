"""atomicops' own reply reader (engine/resp.py) returns what redis-py's parser returns.

Generated replies (RESP2 and RESP3, nested, with error replies) are written to two
socket pairs, split into random chunks on the wire, and read by redis-py's parser on one
and by ``resp.Reader`` on the other: the results must be equal, type for type, for both
protocols and with and without ``decode_responses``. Then on real servers: every
primitive through a pinned connection, read by the reader, gives what it gives
through redis-py's parser.
"""

from __future__ import annotations

import socket
import threading

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError

import atomicops
from atomicops.engine import pins, resp

_text = st.binary(max_size=40)
_error = st.sampled_from([
    b"-NOSCRIPT No matching script. Please use EVAL.", b"-ERR wrong number of arguments",
    b"-READONLY You can't write against a read only replica.", b"-BUSY Redis is busy",
    b"-OOM command not allowed", b"-MOVED 3999 127.0.0.1:6381", b"-INVALID limit",
])  # fmt: skip


def _resp(protocol: int) -> st.SearchStrategy[bytes]:
    scalars = [
        st.integers(-(2**63), 2**63 - 1).map(lambda n: b":%d\r\n" % n),
        _text.map(lambda b: b"$%d\r\n%b\r\n" % (len(b), b)),
        st.text("abcXYZ 019", max_size=12).map(lambda t: b"+" + t.encode() + b"\r\n"),
        _error.map(lambda e: e + b"\r\n"),
    ]
    if protocol == 2:
        scalars += [st.just(b"$-1\r\n"), st.just(b"*-1\r\n")]
    else:
        scalars += [
            st.just(b"_\r\n"),
            st.booleans().map(lambda v: b"#t\r\n" if v else b"#f\r\n"),
            st.floats(allow_nan=False).map(lambda f: b",%r\r\n" % f),
            st.integers(-(10**30), 10**30).map(lambda n: b"(%d\r\n" % n),
            _text.map(lambda b: b"=%d\r\ntxt:%b\r\n" % (len(b) + 4, b)),
        ]

    def arrays(children: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
        kinds = [b"*"] if protocol == 2 else [b"*", b"~"]
        return st.tuples(st.sampled_from(kinds), st.lists(children, max_size=5)).map(
            lambda kind_items: (
                b"%b%d\r\n" % (kind_items[0], len(kind_items[1])) + b"".join(kind_items[1])
            )
        )

    return st.recursive(st.one_of(scalars), arrays, max_leaves=20)


def _pair(protocol: int, decode: bool) -> tuple[Connection, socket.socket]:
    ours, theirs = socket.socketpair()
    conn = Connection(protocol=protocol, decode_responses=decode)
    conn._sock = ours
    conn._parser.on_connect(conn)
    return conn, theirs


def _send_in_chunks(sock: socket.socket, data: bytes, cuts: list[int]) -> threading.Thread:
    def write() -> None:
        at = 0
        for cut in sorted({c % (len(data) + 1) for c in cuts}):
            sock.sendall(data[at:cut])
            at = cut
        sock.sendall(data[at:])

    writer = threading.Thread(target=write)
    writer.start()
    return writer


def _same(a, b) -> bool:
    if isinstance(a, Exception) or isinstance(b, Exception):
        return type(a) is type(b) and str(a) == str(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("decode", [False, True])
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_the_reader_returns_what_redis_pys_parser_returns(protocol, decode, data):
    replies = data.draw(st.lists(_resp(protocol), min_size=1, max_size=4))
    cuts = data.draw(st.lists(st.integers(0, 10_000), max_size=4))
    wire = b"".join(replies)
    conn_theirs, w_theirs = _pair(protocol, decode)
    conn_ours, w_ours = _pair(protocol, decode)
    writers = [_send_in_chunks(w_theirs, wire, cuts), _send_in_chunks(w_ours, wire, cuts)]
    try:
        reader = resp.Reader(conn_ours)
        for _ in replies:
            try:
                expected = conn_theirs._parser.read_response()
            except Exception as exc:  # LOADING-kind replies, undecodable text: raised
                expected = exc
            try:
                got = reader.read()
            except Exception as exc:
                got = exc
            if isinstance(expected, UnicodeDecodeError):
                # Both stop at bytes the encoding cannot read; the rest is out of step.
                assert isinstance(got, UnicodeDecodeError)
                break
            assert _same(got, expected), (wire, got, expected)
        else:
            assert reader.idle
    finally:
        for writer in writers:
            writer.join(10)
        for sock in (conn_theirs._sock, conn_ours._sock, w_theirs, w_ours):
            sock.close()


def test_a_reply_cut_short_raises_connection_error():
    conn, peer = _pair(3, False)
    peer.sendall(b"*2\r\n:1\r\n")
    peer.close()
    with pytest.raises(RedisConnectionError):
        resp.Reader(conn).read()
    conn._sock.close()


@pytest.mark.real
def test_primitives_read_the_same_through_the_reader(real_server, real_client):
    """The default client's pinned connection reads with resp.Reader (no hiredis in the
    lock); a single_connection_client's replies go through redis-py's parser. The same
    calls on twin keys give equal results."""
    pinned = atomicops.engine.connection.get_client()
    plain = redis.Redis.from_url(real_server.url, single_connection_client=True)
    calls = [
        lambda c, k: atomicops.bounded_incr(k, 10, client=c),
        lambda c, k: atomicops.incr_float(k, 0.1, client=c),
        lambda c, k: atomicops.compare_and_set(k, None, "v", client=c),
        lambda c, k: atomicops.fixed_window(k, 5, 60_000, client=c).remaining,
        lambda c, k: atomicops.sliding_window(k, 5, 60_000, client=c).allowed,
        lambda c, k: atomicops.token_bucket(k, 5, 1, client=c).allowed,
        lambda c, k: atomicops.bounded_incr(k, 0, client=c),  # refused: {value, 0}
    ]
    for index, call in enumerate(calls):
        for _ in range(2):
            assert call(pinned, f"resp:{index}:a") == call(plain, f"resp:{index}:b")
    held = pins.pin(pinned)
    assert held is not None and held.readable and held.reader is not None
    plain.close()


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("decode", [False, True])
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_the_async_reader_returns_what_the_sync_one_does(protocol, decode, data):
    """AsyncReader parses a redis.asyncio connection's stream, fed here in random chunks
    (a reply split anywhere makes it fetch more and parse again)."""
    import asyncio

    from redis.asyncio.connection import Connection as AsyncConnection

    replies = data.draw(st.lists(_resp(protocol), min_size=1, max_size=4))
    cuts = sorted(
        {
            c % (len(b"".join(replies)) + 1)
            for c in data.draw(st.lists(st.integers(0, 10_000), max_size=4))
        }
    )
    wire = b"".join(replies)
    conn_sync, peer = _pair(protocol, decode)
    writer = _send_in_chunks(peer, wire, [])
    expected = []
    sync_reader = resp.Reader(conn_sync)
    for _ in replies:
        try:
            expected.append(sync_reader.read())
        except Exception as exc:
            expected.append(exc)
            break
    writer.join(10)
    conn_sync._sock.close()
    peer.close()

    async def read_all() -> list:
        stream = asyncio.StreamReader()
        conn = AsyncConnection(protocol=protocol, decode_responses=decode, socket_timeout=5)
        conn._reader = stream
        reader = resp.AsyncReader(conn)

        async def feed() -> None:
            at = 0
            for cut in [*cuts, len(wire)]:
                stream.feed_data(wire[at:cut])
                at = cut
                await asyncio.sleep(0)

        feeding = asyncio.ensure_future(feed())
        got = []
        for _ in range(len(expected)):
            try:
                got.append(await reader.aread())
            except Exception as exc:
                got.append(exc)
                break
        await feeding
        return got

    got = asyncio.run(read_all())
    assert len(got) == len(expected)
    for ours, theirs in zip(got, expected, strict=True):
        if isinstance(theirs, UnicodeDecodeError):
            assert isinstance(ours, UnicodeDecodeError)
        else:
            assert _same(ours, theirs), (wire, ours, theirs)
