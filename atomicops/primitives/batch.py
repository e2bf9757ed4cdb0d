"""Batches: many primitive calls, one round trip per server.

::

    with batch() as b:
        likes = b.bounded_incr((post, "likes"), 10)
        fresh = b.compare_and_set("k", None, "v")
        hit = b.fixed_window("rl:u", 10, 60_000)
    likes.result()  # the CounterResult, as bounded_incr() would have returned it

Every counter, compare-and-set and rate-limit function is a method of the batch under
its own name and arguments (without ``client=``, which the batch takes once), and
:meth:`Batch.script` queues any registry script. Each call is checked when it is added
(the same builders the functions use), so bad input raises there and nothing is sent.
The block's end sends everything: one ``Send`` per server (per node on a cluster)
carrying every ``EVALSHA``, plus the ``SCRIPT LOAD`` a first call on a pool carries and
the ``WAIT`` of ``WAIT_REPLICAS``. Calls that answer ``NOSCRIPT`` (a flushed or
restarted server) are sent once more in one more round trip, as ``EVAL`` behind
``SCRIPT LOAD``, exactly as a single call recovers.

Each call is still its own script, so each is atomic on its own; the batch is not a
transaction (another client's call can land between two of them). A call's error is
raised by its ``.result()`` only. When the replies are lost, every write of that round
trip raises :class:`OutcomeUnknown` and nothing is sent again. Sync and async share the
queue and the flow; only ``with`` / ``async with`` differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from types import TracebackType
from typing import Any, Generic

from atomicops.engine import compat, connection, topology
from atomicops.engine import run as engine_run
from atomicops.engine.ops import Call, Flow, R
from atomicops.engine.planner import Planned, calls_flow
from atomicops.exceptions import (
    AtomicOpsError,
    BatchNotSent,
    InvalidInput,
)
from atomicops.ops.observe import rate_limit_hit
from atomicops.primitives import cas, counters, ratelimit
from atomicops.primitives.keys import KeyLike
from atomicops.primitives.validate import TTL
from atomicops.scripts.registry import registry

__all__ = ["AsyncBatch", "Batch", "BatchResult", "abatch", "batch", "batch_flow"]

_UNSET: Any = object()


class BatchResult(Generic[R]):
    """One call's outcome, known once its batch was sent: :meth:`result` returns it."""

    __slots__ = ("_error", "_value", "_why")

    def __init__(self) -> None:
        self._value: Any = _UNSET
        self._error: AtomicOpsError | None = None
        self._why = "its batch is sent when the with block ends"

    def result(self) -> R:
        """What the function would have returned; its error raised instead, if it failed.

        Raises :class:`BatchNotSent` before the batch was sent (inside the block, or the
        block raised), and whatever the single call would raise: :class:`DataError`,
        :class:`OutcomeUnknown` when the replies were lost, and so on.
        """
        if self._error is not None:
            raise self._error
        if self._value is _UNSET:
            raise BatchNotSent(f"no result yet: {self._why}")
        return self._value  # type: ignore[no-any-return]

    def done(self) -> bool:
        """Whether :meth:`result` returns or raises the call's own outcome now."""
        return self._error is not None or self._value is not _UNSET


class Queued(Planned):
    """A call waiting in a batch: the planned call and where its result goes."""

    __slots__ = ("result",)

    def __init__(self, call: Call[Any], result: BatchResult[Any], hit: str | None) -> None:
        interpret = call.interpret
        if hit is not None:  # a rate limit's name for the hit counters (observe.py)
            interpret = _counted(hit, interpret)
        super().__init__(registry.get(call.script), call.keys, call.args, interpret)
        self.result = result

    def abandon(self, error: AtomicOpsError) -> None:
        """Fail the call with ``error`` unless it has its own outcome already (an error
        raised before its round trip: settings, a cluster's map)."""
        if not self.result.done():
            self.result._error = error

    def publish(self) -> None:
        """Hand the call's outcome to its :class:`BatchResult`."""
        if self.error is not None:
            self.result._error = self.error
        else:
            self.result._value = self.value


def _counted(hit: str, interpret: Any) -> Any:
    def counted(reply: Any) -> Any:
        return rate_limit_hit(hit, interpret(reply))

    return counted


def batch_flow(queued: Sequence[Queued], client: Any) -> Flow[None]:
    """Send ``queued`` (one round trip per server, as :mod:`atomicops.engine.planner` sends every
    call) and settle every call's result. Never raises for a call's own failure: each
    lands in its :class:`BatchResult`."""
    yield from calls_flow(queued, client, registry.plan)
    for entry in queued:
        entry.publish()


# -- the queue: one method per primitive, under its own name --------------------------------


class Batch:
    """Calls queued to be sent together when the ``with`` block ends (see :func:`batch`)."""

    def __init__(self, client: Any = None) -> None:
        self._given = client
        self._client: Any = None
        self._cluster = False
        self._queued: list[Queued] = []
        self._sent = False

    def __len__(self) -> int:
        return len(self._queued)

    def add(self, call: Call[R], *, hit: str | None = None) -> BatchResult[R]:
        """Queue a prepared :class:`~atomicops.engine.ops.Call`; its result once sent."""
        if self._client is None or self._sent:
            raise InvalidInput(
                "calls are added to a batch inside its with block; this one is "
                + ("already sent: start a new one" if self._sent else "not entered")
            )
        if self._cluster:
            topology.slot_of(call.keys, call.script)  # CrossSlotError now, not when sent
        result: BatchResult[R] = BatchResult()
        self._queued.append(Queued(call, result, hit))
        return result

    # counters

    def bounded_incr(
        self, key: KeyLike, limit: int, amount: int = 1, *, ttl: TTL = None
    ) -> BatchResult[counters.CounterResult]:
        """:func:`~atomicops.bounded_incr` in the batch."""
        return self.add(counters.bounded_incr_call(key, limit, amount, ttl))

    def bounded_decr(
        self, key: KeyLike, floor: int, amount: int = 1, *, ttl: TTL = None
    ) -> BatchResult[counters.CounterResult]:
        """:func:`~atomicops.bounded_decr` in the batch."""
        return self.add(counters.bounded_decr_call(key, floor, amount, ttl))

    def incr(self, key: KeyLike, amount: int = 1, *, ttl: TTL = None) -> BatchResult[int]:
        """:func:`~atomicops.incr` in the batch."""
        return self.add(counters.incr_call(key, amount, ttl))

    def incr_float(
        self, key: KeyLike, amount: int | float | Decimal, *, ttl: TTL = None
    ) -> BatchResult[Decimal]:
        """:func:`~atomicops.incr_float` in the batch."""
        return self.add(counters.incr_float_call(key, amount, ttl))

    def get_counter(self, key: KeyLike) -> BatchResult[int]:
        """:func:`~atomicops.get_counter` in the batch."""
        return self.add(counters.get_counter_call(key))

    def reset_counter(self, key: KeyLike) -> BatchResult[int]:
        """:func:`~atomicops.reset_counter` in the batch."""
        return self.add(counters.reset_counter_call(key))

    # compare-and-set

    def compare_and_set(
        self, key: KeyLike, expected: cas.Value | None, new: cas.Value, *, ttl: TTL = None
    ) -> BatchResult[bool]:
        """:func:`~atomicops.compare_and_set` in the batch."""
        return self.add(cas.compare_and_set_call(key, expected, new, ttl))

    def compare_and_delete(self, key: KeyLike, expected: cas.Value) -> BatchResult[bool]:
        """:func:`~atomicops.compare_and_delete` in the batch."""
        return self.add(cas.compare_and_delete_call(key, expected))

    # rate limits

    def fixed_window(
        self, key: KeyLike, limit: int, window_ms: int, amount: int = 1
    ) -> BatchResult[ratelimit.RateLimitResult]:
        """:func:`~atomicops.fixed_window` in the batch."""
        call = ratelimit.fixed_window_call(key, limit, window_ms, amount)
        return self.add(call, hit="fixed_window")

    def sliding_window(
        self, key: KeyLike, limit: int, window_ms: int, amount: int = 1
    ) -> BatchResult[ratelimit.RateLimitResult]:
        """:func:`~atomicops.sliding_window` in the batch."""
        call = ratelimit.sliding_window_call(key, limit, window_ms, amount)
        return self.add(call, hit="sliding_window")

    def exact_window(
        self, key: KeyLike, limit: int, window_ms: int, amount: int = 1
    ) -> BatchResult[ratelimit.RateLimitResult]:
        """:func:`~atomicops.exact_window` in the batch."""
        call = ratelimit.exact_window_call(key, limit, window_ms, amount)
        return self.add(call, hit="exact_window")

    def token_bucket(
        self, key: KeyLike, capacity: int, refill_rate: float, cost: int = 1
    ) -> BatchResult[ratelimit.RateLimitResult]:
        """:func:`~atomicops.token_bucket` in the batch."""
        call = ratelimit.token_bucket_call(key, capacity, refill_rate, cost)
        return self.add(call, hit="token_bucket")

    # any registered script

    def script(
        self, name: str, keys: Sequence[Any] = (), args: Sequence[Any] = ()
    ) -> BatchResult[Any]:
        """``registry.get(name)(keys=..., args=...)`` in the batch: the converted reply."""
        return self.add(registry.get(name).prepare(keys, args))

    # sending

    def _start(self, client: Any) -> None:
        if connection.is_pipeline(client):
            raise InvalidInput("batch() takes a client, not a pipeline")
        self._client = client
        self._cluster = compat.is_cluster_client(client)

    def _finish(self, kind: type[BaseException] | None) -> bool:
        """Whether there is anything to send (the block ended without raising)."""
        self._sent = True
        if kind is None:
            return bool(self._queued)
        for entry in self._queued:
            entry.result._why = "its with block raised, so the batch was not sent"
        return False

    def _settle_rest(self, exc: AtomicOpsError) -> None:
        # Raised before the calls' own round trip (settings, a cluster's map): each
        # call unsettled so far fails with it, as a lost reply would.
        for entry in self._queued:
            entry.abandon(exc)

    def __enter__(self) -> Batch:
        self._start(connection.get_client(self._given))
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._finish(kind):
            try:
                engine_run.run(batch_flow(self._queued, self._client))
            except AtomicOpsError as error:
                self._settle_rest(error)


class AsyncBatch(Batch):
    """The async twin of :class:`Batch` (``async with abatch() as b``); same queue, same flow."""

    def __enter__(self) -> Batch:
        raise TypeError("abatch() is used with 'async with'; batch() with 'with'")

    async def __aenter__(self) -> AsyncBatch:
        self._start(connection.get_async_client(self._given))
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._finish(kind):
            try:
                await engine_run.arun(batch_flow(self._queued, self._client))
            except AtomicOpsError as error:
                self._settle_rest(error)


def batch(client: Any = None) -> Batch:
    """Queue calls in a ``with`` block; they are sent when it ends, one round trip per server.

    ``b.<primitive>(...)`` takes the primitive's arguments (not ``client=``: the batch's
    ``client``, default the configured one) and returns a :class:`BatchResult`, whose
    ``.result()`` after the block is what the function returns, or raises its error.
    Bad input raises :class:`InvalidInput` when the call is added. Calls are atomic
    one by one, not together. See docs/batch.md.
    """
    return Batch(client)


def abatch(client: Any = None) -> AsyncBatch:
    """The async twin of :func:`batch`: ``async with abatch() as b: ...`` over ``redis.asyncio``."""
    return AsyncBatch(client)
