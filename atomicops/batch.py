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

from redis.exceptions import NoScriptError

from atomicops import cas, connection, counters, ratelimit, replication
from atomicops.engine import run as engine_run
from atomicops.engine import topology
from atomicops.engine.ops import Call, Command, Context, Flow, R, Send
from atomicops.exceptions import (
    AtomicOpsError,
    BatchNotSent,
    InvalidInput,
    OutcomeUnknown,
    RedisUnavailable,
    ServerRefused,
)
from atomicops.keys import KeyLike
from atomicops.observe import rate_limit_hit
from atomicops.registry import Script, registry
from atomicops.validate import TTL

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


class Queued:
    """A call waiting in a batch: the prepared call, its script, where its result goes."""

    __slots__ = ("call", "hit", "result", "script")

    def __init__(
        self, call: Call[Any], script: Script, result: BatchResult[Any], hit: str | None
    ) -> None:
        self.call = call
        self.script = script
        self.result = result
        self.hit = hit  # a rate limit's name for the hit counters (observe.py), or None

    def context(self) -> Context:
        keys = self.call.keys
        return Context(self.script.name, keys[0] if keys else None, not self.script.readonly)

    def fail(self, error: AtomicOpsError) -> None:
        self.script.stats.bump("errors")
        self.result._error = error


# -- the flow: what is sent, shared by batch() and abatch() ---------------------------------


def batch_flow(queued: Sequence[Queued], client: Any) -> Flow[None]:
    """Send ``queued`` (one round trip per server) and settle every call's result.

    Never raises for a call's own failure: each lands in its :class:`BatchResult`.
    """
    policy = replication.active
    if policy is not None and policy.error is not None:
        raise policy.error  # never send writes without the WAIT they were meant to have
    wait = None if policy is None else policy.wait
    if not topology.is_cluster(client):
        yield from _node_flow(client, list(queued), wait)
        return
    groups: dict[int, tuple[Any, list[Queued]]] = {}
    for entry in queued:
        target = topology.target_for(client, entry.call.keys, entry.script.name)
        groups.setdefault(id(target), (target, []))[1].append(entry)
    for target, group in groups.values():
        yield from _node_flow(target, group, wait)


def _node_flow(target: Any, group: list[Queued], wait: Command | None) -> Flow[None]:
    state = registry.server_state(target)
    version = registry.version
    loads = registry.load_commands() if state.loaded_version != version else []
    for entry in group:
        entry.script.stats.bump("calls")
    calls = [("EVALSHA", e.script.sha, len(e.call.keys), *e.call.keys, *e.call.args) for e in group]
    sent = yield from _send(target, group, loads, calls, wait)
    if sent is None:
        return
    load_replies, replies, acked = sent
    if loads:
        registry.note_loads(load_replies, state, version)
    missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if missing:
        # The cache was lost (flush, restart, failover): those calls did not run, so
        # sending them again is safe. One more round trip for all of them: every script
        # loaded, then each call with its body (EVAL cannot NOSCRIPT).
        skip = set(missing)
        retry = [group[i] for i in missing]
        group = [entry for i, entry in enumerate(group) if i not in skip]
        replies = [reply for i, reply in enumerate(replies) if i not in skip]
        _settle(group, replies, acked, wait)
        for entry in retry:
            entry.script.stats.bump("fallbacks")
        version = registry.version
        loads = registry.load_commands()
        evals = [
            ("EVAL", e.script.source, len(e.call.keys), *e.call.keys, *e.call.args) for e in retry
        ]
        again = yield from _send(target, retry, loads, evals, wait)
        if again is not None:
            registry.note_loads(again[0], state, version)
            _settle(retry, again[1], again[2], wait)
        return
    _settle(group, replies, acked, wait)


def _send(
    target: Any,
    group: list[Queued],
    loads: Sequence[Command],
    calls: Sequence[Command],
    wait: Command | None,
) -> Flow[tuple[list[Any], list[Any], Any] | None]:
    """One round trip; ``(load replies, call replies, WAIT's reply)``, or None when it
    failed (every call of ``group`` then holds its error)."""
    writes = sum(not entry.script.readonly for entry in group)
    tail = [wait] if wait is not None and writes else []
    context = Context(f"a batch of {len(group)} calls", write=bool(writes), script=False)
    try:
        replies = yield Send(target, [*loads, *calls, *tail], context)
    except RedisUnavailable as exc:
        _fail_all(group, exc, several_writes=writes > 1)
        return None
    n = len(loads)
    return replies[:n], replies[n : n + len(calls)], (replies[-1] if tail else None)


def _fail_all(group: list[Queued], exc: RedisUnavailable, *, several_writes: bool) -> None:
    cause = exc.__cause__ or exc
    # The wire says "nothing was applied" when the batch could not be written, which
    # holds for a single call (its only write is last). With several writes a write
    # that broke off midway may have delivered the first ones: only a connection that
    # was never made proves nothing ran.
    unknown = isinstance(exc, OutcomeUnknown) or (
        several_writes
        and not isinstance(exc, ServerRefused)
        and "connecting" not in str(cause).lower()
    )
    for entry in group:
        context = entry.context()
        error = context.unknown(cause) if unknown and context.write else context.unavailable(cause)
        error.__cause__ = exc
        entry.fail(error)


def _settle(group: list[Queued], replies: list[Any], acked: Any, wait: Command | None) -> None:
    for entry, reply in zip(group, replies, strict=True):
        try:
            value = entry.call.interpret(entry.script.read_reply(reply, entry.call.keys))
        except AtomicOpsError as exc:
            entry.fail(exc)
            continue
        if entry.hit is not None:
            value = rate_limit_hit(entry.hit, value)
        if (
            wait is not None
            and not entry.script.readonly
            and not replication.replicated(acked, wait)
        ):
            keys = entry.call.keys
            error = replication.not_replicated(
                entry.script.name, keys[0] if keys else None, acked, wait, value
            )
            entry.fail(error)
            continue
        entry.result._value = value


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
        script = registry.get(call.script)
        if self._cluster:
            topology.slot_of(call.keys, script.name)  # CrossSlotError now, not when sent
        result: BatchResult[R] = BatchResult()
        self._queued.append(Queued(call, script, result, hit))
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
        self._cluster = topology.is_cluster(client)

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
            if not entry.result.done():
                entry.fail(exc)

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
                if topology.is_cluster(self._client):
                    await topology.aprimaries(self._client)  # an asyncio cluster reads its map
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
