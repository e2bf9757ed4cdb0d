"""One way for a script call to reach Redis, whether it goes alone, in a batch, or in an
auto-pipelined round.

A call is planned once (:class:`Planned`: which script, keys and args, how its reply is
read, where it goes) and then sent by :func:`calls_flow`, which takes any number of them:
each round writes one ``Send`` per server carrying every call due there, and reads each
reply for its own call:

* ``NOSCRIPT`` (the server lost its script cache): that call did not run; it goes again
  as ``EVAL`` (``EVAL_RO``) with its body, behind ``SCRIPT LOAD`` of the registry;
* ``MOVED``, ``ASK``, ``TRYAGAIN``, ``READONLY`` on a cluster: refusals given before the
  script ran; the call's :class:`~atomicops.engine.topology.Route` says where it goes
  now, within its bounds;
* a server without ``EVALSHA_RO``: said once, the call goes again as ``EVALSHA``;
* a failure that proves the call did not run (the server unreachable, ``LOADING``,
  ``READONLY``, ``CLUSTERDOWN``... see :mod:`atomicops.engine.retry`): the call goes again
  after a jittered pause, with the topology read again (a cluster's slot map, the
  sentinels' primary), until its retry deadline (``Plan.retry_deadline`` seconds from
  the call's start) has passed. The calls of a round that go again pause once together;
* anything else settles the call: its value, or its error, never raised for the others.

``WAIT_REPLICAS`` adds one ``WAIT`` to a round that carries a write; ``READ_FROM_REPLICAS``
sends read-only calls to a replica. A round whose replies are lost makes each write in it
:class:`~atomicops.exceptions.OutcomeUnknown` and never sends it again. The metrics and
traces see every call the same way, through :data:`sink`.

:func:`call_flow` is the one-call case with its common round (no cluster, no replication
settings, the scripts loaded) written out, since every hit of every primitive takes it;
anything else it meets goes on in the general flow.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from redis.exceptions import NoScriptError, ResponseError

from atomicops.engine import compat, retry
from atomicops.engine.ops import Command, Context, Flow, Pause, Refresh, Send, as_is
from atomicops.engine.topology import Route
from atomicops.exceptions import (
    AtomicOpsError,
    NotReplicated,
    OutcomeUnknown,
    RedisUnavailable,
    ServerRefused,
)

logger = logging.getLogger("atomicops")

__all__ = ["CallSink", "Planned", "call_flow", "calls_flow", "sink"]


class CallSink(Protocol):
    """What observes calls (Prometheus, OpenTelemetry; atomicops.ops.observe attaches them)."""

    def start(self, script: Any) -> Any: ...

    def fallback(self, state: Any) -> None: ...

    def end(self, state: Any, seconds: float, error: BaseException | None) -> None: ...


# Set by atomicops.ops.observe when a call sink is attached (OpenTelemetry with a tracer
# provider configured, or a user's own); None costs a call one check.
sink: CallSink | None = None
# Set by atomicops.ops.observe while Prometheus metrics are on: each call's duration goes
# to its script's stats (two perf_counter() and one locked bucket add; the counts are kept
# whatever it says). Read once per call.
timed = False
_clock = time.perf_counter  # ScriptStats reads the same clock at the call's end


_tuple = tuple.__new__


class Planned:
    """One script call, planned: what is sent, where, and how its reply is read.

    ``script`` is a registered :class:`~atomicops.scripts.registry.Script`; ``interpret`` turns its
    converted reply into what the caller gets. After :func:`calls_flow`, ``error`` is the
    call's error or ``value`` its result. ``limit``: a monotonic time after which the
    call is not sent again, whatever its retry deadline (a lock's own timeout).
    """

    __slots__ = (
        "script", "keys", "args", "interpret", "target", "route", "body", "ro", "error",
        "value", "watched", "started", "began", "limit", "until", "retries", "wait", "why",
    )  # fmt: skip

    def __init__(
        self,
        script: Any,
        keys: Sequence[Any],
        args: Sequence[Any],
        interpret: Callable[[Any], Any] = as_is,
    ) -> None:
        self.script = script
        self.keys = keys
        self.args = args
        self.interpret = interpret
        self.target: Any = None
        self.route: Route | None = None
        self.body = False  # sent with its body (EVAL) after a NOSCRIPT
        self.ro = False  # sent as EVALSHA_RO / EVAL_RO this round
        self.error: AtomicOpsError | None = None
        self.value: Any = None
        self.watched: Any = None  # the sink's state for this call
        self.started: float | None = None  # perf_counter() at its start, when timed
        # Retries (see _retry): when the call began (monotonic; 0: at its first failure),
        # the caller's limit, the deadline worked out at the first failure, how many
        # times it went again, the pause due before its next round and why.
        self.began = 0.0
        self.limit: float | None = None
        self.until: float | None = None
        self.retries = 0
        self.wait = 0.0
        self.why = ""

    def context(self) -> Context:
        keys = self.keys
        return Context(self.script.name, keys[0] if keys else None, not self.script.readonly)

    def command(self) -> Command:
        script, keys = self.script, self.keys
        if self.body:
            name = "EVAL_RO" if self.ro else "EVAL"
            return (name, script.source, len(keys), *keys, *self.args)
        return ("EVALSHA_RO" if self.ro else "EVALSHA", script.sha, len(keys), *keys, *self.args)

    def outcome(self) -> Any:
        """The value, or the error raised."""
        if self.error is not None:
            raise self.error
        return self.value


class Policy(Protocol):
    """The replication settings a flow applies (atomicops.engine.replication.Policy)."""

    @property
    def wait(self) -> tuple[str, int, int] | None: ...

    @property
    def replica_reads(self) -> bool: ...

    @property
    def error(self) -> Any: ...


class Scripts(Protocol):
    """What the flow needs of the registry: which server has which scripts loaded."""

    version: int

    def server_state(self, client: Any) -> Any: ...

    def load_commands(self) -> Sequence[Command]: ...

    def note_loads(self, replies: Sequence[Any], state: Any, version: int) -> Any: ...


class Plan:
    """What every call shares: the registry, the replication policy in force (read once
    per flow), how to reach a replica and to build a :class:`NotReplicated`, and how long
    a call that provably did not run may be sent again (``retry_deadline()``, seconds;
    read at a call's first such failure, never on the way of a call that succeeds)."""

    __slots__ = (
        "scripts",
        "policy",
        "replica_of",
        "not_replicated",
        "replicated",
        "retry_deadline",
    )

    def __init__(
        self,
        scripts: Scripts,
        policy: Callable[[], Policy | None],
        replica_of: Callable[[Any], Any],
        replicated: Callable[[Any, Sequence[Any]], bool],
        not_replicated: Callable[..., NotReplicated],
        retry_deadline: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self.scripts = scripts
        self.policy = policy
        self.replica_of = replica_of
        self.replicated = replicated
        self.not_replicated = not_replicated
        self.retry_deadline = retry_deadline


# -- the general flow ---------------------------------------------------------------------


def calls_flow(calls: Sequence[Planned], client: Any, plan: Plan) -> Flow[None]:
    """Send ``calls`` through ``client`` and settle each one (``error`` or ``value``).

    Never raises for a call's own failure. Raises only what comes before any call could
    be sent: replication settings that cannot work.
    """
    policy = plan.policy()
    if policy is not None and policy.error is not None:
        raise policy.error  # never send a write without the WAIT it was meant to have
    cluster = compat.is_cluster_client(client)
    replica_reads = policy is not None and policy.replica_reads and not cluster
    watching = sink
    began = time.monotonic()
    timing = timed or watching is not None
    for call in calls:
        call.script.stats.bump("calls")
        call.began = began
        if watching is not None and call.watched is None:
            call.watched = watching.start(call.script)
        if timing and call.started is None:
            call.started = time.perf_counter()
        if cluster:
            if not (yield from _start(call, client, plan)):
                continue
        elif replica_reads and call.script.readonly:
            # EVALSHA_RO there: a replica refuses a write, so a stray one cannot diverge it.
            call.target = plan.replica_of(client)
        else:
            call.target = client
    yield from _drive([call for call in calls if call.error is None], plan, policy)


def _start(call: Planned, client: Any, plan: Plan) -> Flow[bool]:
    """Route ``call`` on the cluster ``client``; False when it failed (settled) instead."""
    try:
        call.route = route = Route(client, call.keys, call.script.name)
    except AtomicOpsError as exc:  # keys in two slots: never sent
        _fail(call, exc)
        return False
    while True:
        try:
            yield from route.start()
        except AtomicOpsError as exc:  # no node serves its slot (yet): not sent
            if not _retry(call, exc, plan):
                _fail(call, exc)
                return False
            yield from _backoff([call])
            continue
        call.target = route.target
        return True


def _drive(pending: list[Planned], plan: Plan, policy: Policy | None) -> Flow[None]:
    """Send ``pending`` round after round, one ``Send`` per target, until each is settled."""
    while pending:
        groups: dict[int, tuple[Any, list[Planned]]] = {}
        for call in pending:
            groups.setdefault(id(call.target), (call.target, []))[1].append(call)
        pending = []
        for target, group in groups.values():
            pending += yield from _round(target, group, plan, policy)
        if pending:
            yield from _backoff(pending)


def _round(
    target: Any, group: list[Planned], plan: Plan, policy: Policy | None
) -> Flow[list[Planned]]:
    """One ``Send`` of ``group`` to ``target``; the calls that must go again."""
    scripts = plan.scripts
    state = scripts.server_state(target)
    version = scripts.version
    loads = scripts.load_commands() if state.loaded_version != version else []
    writes = sum(not call.script.readonly for call in group)
    wait = policy.wait if policy is not None and writes else None
    commands: list[Command] = list(loads)
    for call in group:
        call.ro = call.script.readonly and state.has_ro is not False
        if call.route is not None:
            commands += call.route.prefix
        commands.append(call.command())
    if wait is not None:
        commands.append(wait)
    if len(group) == 1:
        context = group[0].context()
    else:
        context = Context(f"a batch of {len(group)} calls", write=bool(writes), script=False)
    try:
        replies = yield Send(target, commands, context)
    except RedisUnavailable as exc:
        return (yield from _unsent(group, exc, writes > 1, plan))
    if loads:
        scripts.note_loads(replies[: len(loads)], state, version)
    acked = replies[-1] if wait is not None else None
    at = len(loads)
    again: list[Planned] = []
    for call in group:
        if call.route is not None:
            at += len(call.route.prefix)
        reply = replies[at]
        at += 1
        if (yield from _goes_again(call, reply, state)) or _refused_again(call, reply, plan):
            again.append(call)
        else:
            _settle(call, reply, wait, acked, plan)
    if (
        wait is not None
        and any(isinstance(call.error, NotReplicated) for call in group)
        and compat.is_sentinel_client(target)
    ):
        # Sentinel leaves a demoted primary accepting writes until it reconfigures it (up
        # to ~10 s), and a connection stays where it is: let the next ones ask the
        # sentinels where the primary is now.
        yield Refresh(target)
    return again


def _goes_again(call: Planned, reply: Any, state: Any) -> Flow[bool]:
    """Whether ``reply`` proves the call did not run and says where it goes now."""
    if not isinstance(reply, Exception):
        if call.ro:
            state.has_ro = True
        return False
    if call.ro and isinstance(reply, ResponseError) and "unknown command" in str(reply).lower():
        # fakeredis and Redis < 7: explicit downgrade, said once in the log.
        if state.has_ro is not False:
            state.has_ro = False
            logger.warning(
                "atomicops: server has no EVALSHA_RO; read-only scripts run with EVALSHA, "
                "so a stray write in one is not rejected by the server"
            )
        return True
    if isinstance(reply, NoScriptError) and not call.body:
        # The cache was lost (flush, restart, failover): the call did not run, so sending
        # it again with its body (EVAL cannot NOSCRIPT) is safe.
        call.body = True
        state.loaded_version = -1  # so its round loads every script again, once for all
        call.script.stats.bump("fallbacks")
        if call.watched is not None and sink is not None:
            sink.fallback(call.watched)
        return True
    route = call.route
    if route is not None and (yield from route.redirected(reply)):
        call.target = route.target
        return True
    return False


def _unsent(
    group: list[Planned], exc: RedisUnavailable, several_writes: bool, plan: Plan
) -> Flow[list[Planned]]:
    """After the wire threw ``exc`` at a round: the calls that go again (to a node that took
    over), each other call failed with what its caller must know."""
    cause = exc.__cause__ or exc
    # The wire says "nothing was applied" when the round could not be written, which holds
    # for one call (its only write is last). With several writes a write that broke off
    # midway may have delivered the first ones: only a connection that was never made
    # proves nothing ran.
    unknown = isinstance(exc, OutcomeUnknown) or (
        several_writes
        and not isinstance(exc, ServerRefused)
        and "connecting" not in str(cause).lower()
    )
    again: list[Planned] = []
    for call in group:
        context = call.context()
        if not (unknown and context.write):
            route = call.route
            if route is not None and (yield from route.unreachable(exc)):
                call.target = route.target
                again.append(call)
                continue
        if len(group) == 1:
            error: AtomicOpsError = exc  # the wire named this very call
        else:
            error = (
                context.unknown(cause) if unknown and context.write else context.unavailable(cause)
            )
            error.__cause__ = exc
        if _retry(call, error, plan):  # never an OutcomeUnknown (see retry.reason)
            again.append(call)
            continue
        _fail(call, error)
    return again


# -- retries: a call that provably did not run goes again, until its deadline ---------------


def _refused_again(call: Planned, reply: Any, plan: Plan) -> bool:
    """Whether the error reply ``reply`` refused the call before it ran and it goes again."""
    return isinstance(reply, Exception) and _retry(
        call, call.script.error_from_reply(reply, call.keys), plan
    )


def _retry(call: Planned, error: AtomicOpsError, plan: Plan) -> bool:
    """Whether ``call``, failed with ``error``, goes again: ``error`` proves it did not run
    and its deadline leaves time. Sets the pause due before its next round and counts
    the retry; the caller puts the call back in the rounds."""
    why = retry.reason(error)
    if why is None:
        return False
    now = time.monotonic()
    until = call.until
    if until is None:  # its first such failure: the deadline runs from the call's start
        until = (call.began or now) + plan.retry_deadline()
        if call.limit is not None:
            until = min(until, call.limit)
        call.until = until
    wait = retry.pause(call.retries, until - now)
    if wait is None:
        return False
    call.retries += 1
    call.wait, call.why = wait, why
    call.script.stats.retried(why)
    return True


def _backoff(calls: list[Planned]) -> Flow[None]:
    """The pause due before the next round of ``calls`` (one for all: the shortest any of
    them asked for, so none waits past its deadline), then the topology read again."""
    waiting = [call for call in calls if call.wait]
    if not waiting:
        return
    yield Pause(min(call.wait for call in waiting))
    renewed: set[int] = set()
    for call in waiting:
        call.wait = 0.0
        route = call.route
        if route is not None and route.cluster:
            # One reading of the map serves every call of the round on that cluster.
            first = id(route.client) not in renewed
            renewed.add(id(route.client))
            yield from route.renew(call.why == "connect", refresh=first)
            call.target = route.target
        elif id(call.target) not in renewed and compat.is_sentinel_client(call.target):
            # Idle connections stay with the server they reached: let the next ones ask
            # the sentinels where the primary is now.
            renewed.add(id(call.target))
            yield Refresh(call.target)


def _settle(call: Planned, reply: Any, wait: Any, acked: Any, plan: Plan) -> None:
    try:
        value = call.interpret(call.script.read_reply(reply, call.keys))
    except AtomicOpsError as exc:
        _fail(call, exc)
        return
    if wait is not None and not call.script.readonly and not plan.replicated(acked, wait):
        keys = call.keys
        _fail(
            call,
            plan.not_replicated(call.script.name, keys[0] if keys else None, acked, wait, value),
        )
        return
    call.value = value
    started = call.started
    if started is not None:
        if timed:
            call.script.stats.took(started)
        if call.watched is not None and sink is not None:
            sink.end(call.watched, time.perf_counter() - started, None)


def _fail(call: Planned, error: AtomicOpsError) -> None:
    started = call.started
    call.script.stats.failed(error, started if timed else None)
    call.error = error
    if started is not None and call.watched is not None and sink is not None:
        sink.end(call.watched, time.perf_counter() - started, error)


# -- one call -----------------------------------------------------------------------------


def call_flow(
    script: Any,
    keys: Sequence[Any],
    args: Sequence[Any],
    client: Any,
    plan: Plan,
    interpret: Callable[[Any], Any] = as_is,
    limit: float | None = None,
) -> Flow[Any]:
    """One call of ``script``: its result read by ``interpret``, or its error raised.

    ``limit``: a monotonic time past which the call is not sent again, whatever the
    retry deadline (see :class:`Planned`).

    The common round is written out, without a :class:`Planned` (every hit of every
    primitive takes it): a plain client, no replication settings, no sink, the scripts
    loaded on that server. Any reply but a plain value goes on by :func:`calls_flow`'s
    rules from there.
    """
    if sink is None and plan.policy() is None and not compat.is_cluster_client(client):
        scripts = plan.scripts
        state = scripts.server_state(client)
        if state.loaded_version == scripts.version:
            stats = script.stats
            stats.bump("calls")
            started = _clock() if timed else None
            readonly = script.readonly
            ro = readonly and state.has_ro is not False
            command = ("EVALSHA_RO" if ro else "EVALSHA", script.sha, len(keys), *keys, *args)
            # tuple.__new__: a NamedTuple's own constructor costs a call 0.2 us each.
            context = _tuple(Context, (script.name, keys[0] if keys else None, not readonly, True))
            try:
                reply = (yield _tuple(Send, (client, (command,), context)))[0]
            except RedisUnavailable as exc:
                call = Planned(script, keys, args, interpret)
                call.target, call.limit, call.started = client, limit, started
                return (yield from _unsent_one(call, plan, exc))
            except AtomicOpsError as exc:
                stats.failed(exc, started)
                raise
            if not isinstance(reply, Exception):
                if ro:
                    state.has_ro = True
                try:
                    value = interpret(script.read_reply(reply, keys))
                except AtomicOpsError as exc:  # a reply that does not convert (DataError)
                    stats.failed(exc, started)
                    raise
                if started is not None:
                    stats.took(started)
                return value
            call = Planned(script, keys, args, interpret)
            call.ro, call.target, call.limit, call.started = ro, client, limit, started
            if not (yield from _goes_again(call, reply, state)) and not _refused_again(
                call, reply, plan
            ):
                _settle(call, reply, None, None, plan)
                return call.outcome()
            yield from _drive([call], plan, None)
            return call.outcome()
    call = Planned(script, keys, args, interpret)
    call.limit = limit
    yield from calls_flow((call,), client, plan)
    return call.outcome()


def _unsent_one(call: Planned, plan: Plan, exc: RedisUnavailable) -> Flow[Any]:
    """:func:`call_flow`'s common round when the wire threw ``exc``: the call goes on
    as a planned one (its retry deadline counted from here: the fast path reads no
    clock before its round trip, so its first attempt is not counted)."""
    yield from _drive((yield from _unsent([call], exc, False, plan)), plan, None)
    return call.outcome()
