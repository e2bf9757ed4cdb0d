"""The script registry: named Lua scripts, run by SHA, recovering when the cache is lost.

How a call goes (one round trip when the server has the script):

* ``EVALSHA`` (``EVALSHA_RO`` for read-only scripts, where the server has it).
* The first call a process makes on a connection pool also carries ``SCRIPT LOAD`` of
  every registered script in the same round trip, so the ``EVALSHA`` behind it hits.
* On ``NOSCRIPT`` (restart, failover, ``SCRIPT FLUSH``) the script did not run, so it is
  safe to send again: one more round trip carrying ``SCRIPT LOAD`` of every registered
  script and then the call as ``EVAL`` with the body. Why both: ``EVAL`` cannot
  ``NOSCRIPT`` even if another client flushes between the two commands, and ``SCRIPT
  LOAD`` makes the scripts *loaded* ones, which Redis 8 never evicts (scripts cached
  only through ``EVAL`` live in a 500-entry LRU there). Reloading all of them at once
  means the other scripts do not each pay their own fallback after a flush.

Sync and async calls run the same generator (:meth:`Script._flow`), which yields batches
of commands and receives their replies; only the I/O around it differs.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import threading
import time
import weakref
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from redis import exceptions as redis_errors

from atomicops.conf import get_settings
from atomicops.engine import compat, connection, planner, replication, retry, topology
from atomicops.engine.ops import Call, Context, Flow, Refresh, Send, text
from atomicops.engine.run import arun, run
from atomicops.engine.tally import Buckets, Tally
from atomicops.exceptions import (
    AtomicOpsError,
    ConfigurationError,
    DataError,
    InvalidInput,
    OutcomeUnknown,
    ReadOnlyViolation,
    RedisUnavailable,
    RegistryError,
    ScriptBusyError,
    ScriptCompileError,
    ScriptError,
    ScriptHeaderError,
    ServerLoading,
    ServerOutOfMemory,
    ServerRefused,
)
from atomicops.scripts.header import RESULT_CONVERSIONS, Header, parse_header

logger = logging.getLogger("atomicops")

BUILTIN_LUA_DIR = Path(__file__).resolve().parent.parent / "lua"  # atomicops/lua
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")

# Scripts signal domain errors with ``return redis.error_reply("CODE message")``;
# the code picks the exception. Modules add their own (locks add NOTOWNER).
ERROR_CODES: dict[str, type[AtomicOpsError]] = {
    "INVALID": InvalidInput,
    "NOTINT": DataError,
    "NOTFLOAT": DataError,
    "OVERFLOW": DataError,
    "WRONGTYPE": DataError,
}

# Replies that refuse a call before it runs: nothing was applied, and the same call may
# be sent again later. redis-py parses most of them into its own classes (and strips the
# code from the message); the others arrive as a plain ResponseError with the code first.
_REFUSED_CLASSES: tuple[tuple[type[Exception], str, type[ServerRefused]], ...] = (
    (redis_errors.BusyLoadingError, "LOADING", ServerLoading),
    (redis_errors.OutOfMemoryError, "OOM", ServerOutOfMemory),
    (redis_errors.ReadOnlyError, "READONLY", ServerRefused),
    (redis_errors.MovedError, "MOVED", ServerRefused),
    (redis_errors.AskError, "ASK", ServerRefused),
    (redis_errors.TryAgainError, "TRYAGAIN", ServerRefused),
    (redis_errors.MasterDownError, "MASTERDOWN", ServerRefused),
    (redis_errors.ClusterDownError, "CLUSTERDOWN", ServerRefused),
)
_REFUSED_CODES: dict[str, type[ServerRefused]] = {
    "LOADING": ServerLoading,
    "OOM": ServerOutOfMemory,
    "READONLY": ServerRefused,
    "MOVED": ServerRefused,
    "ASK": ServerRefused,
    "TRYAGAIN": ServerRefused,
    "MASTERDOWN": ServerRefused,
    "CLUSTERDOWN": ServerRefused,
    "NOREPLICAS": ServerRefused,
    "MISCONF": ServerRefused,
}
# Credentials the server does not accept: a setting to fix, not a state to wait out.
_CONFIG_CLASSES = (redis_errors.AuthenticationError, redis_errors.NoPermissionError)

Batch = list[tuple[Any, ...]]


def reply_error(
    reply: Exception, *, script: str | None, keys: Sequence[Any] = ()
) -> AtomicOpsError:
    """The atomicops error for an error reply of ``script`` (a call, a load, a BLPOP).

    Refusals (``LOADING``, ``OOM``, ``READONLY``, redirects...) become
    :class:`ServerRefused` children, which promise that nothing ran; script errors become
    :class:`ScriptError` children. The server's own words are kept in ``server_message``.
    """
    message = str(reply)
    key = _first(keys)
    where = f"script {script!r}" + (f" on key {key!r}" if key is not None else "")
    for kind, code, refused in _REFUSED_CLASSES:
        if isinstance(reply, kind):
            return _refusal(refused, code, where, message, script, key)
    code = message.split(" ", 1)[0]
    if code in _REFUSED_CODES:
        return _refusal(
            _REFUSED_CODES[code], code, where, message[len(code) :].strip(), script, key
        )
    if "OOM command not allowed" in message:  # wrapped by an older server's script error
        return _refusal(ServerOutOfMemory, "OOM", where, message, script, key)
    if isinstance(reply, _CONFIG_CLASSES):
        return ConfigurationError(
            f"{where}: the server refused the credentials or permissions atomicops uses "
            f"(nothing was applied): {message}",
            script=script,
            key=key,
            server_message=message,
        )
    cls: type[AtomicOpsError]
    if "Write commands are not allowed from read-only scripts" in message or (
        "not allowed from script" in message and "write" in message.lower()
    ):
        cls = ReadOnlyViolation
    elif "Error compiling script" in message or "error loading code" in message:
        # Redis/Valkey say the former; fakeredis (lupa) the latter.
        cls = ScriptCompileError
    elif code == "BUSY":
        cls = ScriptBusyError
    elif code in ERROR_CODES:
        cls = ERROR_CODES[code]
        message = message[len(code) :].strip()
    else:
        cls = ScriptError
        if "non local key in a cluster node script" in message:
            # Checked per command while the slot migrates: the commands before it stay.
            message += (
                " (the script's earlier commands were applied: while a slot migrates, a"
                " script may touch only keys that exist, so it must not write a key it removed)"
            )
    return cls(f"{where}: {message}", script=script, key=key, server_message=str(reply))


def _refusal(
    cls: type[ServerRefused], code: str, where: str, message: str, script: Any, key: Any
) -> ServerRefused:
    return cls(
        f"{where} was refused by the server ({code} {message}); nothing was applied and the "
        "call may be sent again",
        code=code,
        script=script,
        key=key,
        server_message=f"{code} {message}",
    )


def is_transient(error: AtomicOpsError) -> bool:
    """Whether a failed SCRIPT LOAD may succeed later (the server was busy or loading)."""
    return isinstance(error, (RedisUnavailable, ScriptBusyError, ConfigurationError))


def _convert_float(reply: Any) -> float | None:
    return None if reply is None else float(reply)


def _convert_decimal(reply: Any) -> Decimal | None:
    if reply is None:
        return None
    return Decimal(reply.decode() if isinstance(reply, bytes) else str(reply))


def _convert_str(reply: Any) -> Any:
    return reply.decode() if isinstance(reply, bytes) else reply


_INT_WORD = re.compile(rb"-?[0-9]+")


def _convert_fields(reply: Any) -> list[Any] | None:
    """Space-separated words -> a list: an int where a word is ``-?[0-9]+``, else the text.

    For hot scripts that reply with several numbers as one string: redis-py's
    pure-Python parser spends more per array element than such a script spends in Redis.
    """
    if reply is None:
        return None
    if isinstance(reply, str):
        reply = reply.encode()
    if not isinstance(reply, bytes):
        raise ValueError(f"a 'fields' result needs a string reply, got {type(reply).__name__}")
    words = reply.split()
    if reply.replace(b" ", b"").replace(b"-", b"").isdigit():  # bytes: ASCII digits only
        try:
            return list(map(int, words))  # the hot path: numbers only
        except ValueError:
            pass  # a '-' inside a word
    return [
        int(word) if _INT_WORD.fullmatch(word) else word.decode("utf-8", "replace")
        for word in words
    ]


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "raw": lambda reply: reply,
    "int": lambda reply: None if reply is None else int(reply),
    "bool": lambda reply: bool(reply),
    "str": _convert_str,
    "float": _convert_float,
    "decimal": _convert_decimal,
    "fields": _convert_fields,
}


# A script call is a round trip or two on a local network: tenths of a millisecond to a
# few; the default Prometheus buckets (5 ms and up) would put nearly every call in the first.
SCRIPT_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)  # fmt: skip


_clock = time.perf_counter  # what the planner's ``started`` was read from


class RetryReasons(Tally):
    """Per-process counts of one script's retries by reason (the words of
    :data:`atomicops.engine.retry.REASONS`)."""

    fields = retry.REASONS


class ScriptStats(Tally):
    """Per-process counters of one script: ``calls``, ``fallbacks``, ``errors``,
    ``retries`` (read as a mapping; calls sent again after a failure that proved they did
    not run, each also counted under its reason in :attr:`reasons`), counts by a label
    (:meth:`count`: ``("error", class)``, ``("outcome_unknown", "")``) and, while metrics
    are on, the calls' durations (:attr:`durations`, buckets :data:`SCRIPT_BUCKETS`).

    Every update takes a lock, so counts stay exact under threads; the Prometheus
    collector reads :meth:`snapshot` when it is scraped, never on a call's path.
    """

    fields = ("calls", "fallbacks", "errors", "retries")

    def __init__(self) -> None:
        super().__init__()
        self.reasons = RetryReasons()
        self._labelled: dict[tuple[str, str], int] = {}
        self.durations = Buckets(SCRIPT_BUCKETS)

    def retried(self, reason: str) -> None:
        """Count one retry for ``reason`` (a word of :data:`~atomicops.engine.retry.REASONS`)."""
        self.bump("retries")
        self.reasons.bump(reason)

    def count(self, name: str, label: str = "") -> None:
        """One more of ``name`` under ``label`` (a fixed word or a class name, never
        user text): what the collector exports by a label of its own."""
        with self._lock:
            key = (name, label)
            self._labelled[key] = self._labelled.get(key, 0) + 1

    def took(self, started: float) -> None:
        """A call that began at ``started`` (``time.perf_counter()``) ended."""
        seconds = _clock() - started
        index = bisect_left(SCRIPT_BUCKETS, seconds)
        # Buckets.add written out, and acquire/release rather than ``with`` (90 ns less):
        # this runs once per call while metrics are on.
        lock = self._lock
        lock.acquire()
        try:
            durations = self.durations
            durations.counts[index] += 1
            durations.sum += seconds
        finally:
            lock.release()

    def failed(self, error: BaseException, started: float | None) -> None:
        """A call raised ``error``: counted as an error, by class, as an unknown outcome
        when it is one, and timed when ``started`` is given (metrics on)."""
        seconds = 0.0 if started is None else _clock() - started
        name = type(error).__name__
        with self._lock:
            self._values["errors"] += 1
            key = ("error", name)
            self._labelled[key] = self._labelled.get(key, 0) + 1
            if isinstance(error, OutcomeUnknown):
                key = ("outcome_unknown", "")
                self._labelled[key] = self._labelled.get(key, 0) + 1
            if started is not None:
                self.durations.add(seconds)

    def labelled(self) -> dict[tuple[str, str], int]:
        """``(name, label) -> count``, a copy, the retries by reason as ``("retry",
        reason)`` (the ones met only)."""
        with self._lock:
            found = dict(self._labelled)
        found.update((("retry", reason), n) for reason, n in self.reasons.items() if n)
        return found

    def snapshot(self) -> tuple[dict[str, int], dict[tuple[str, str], int], Buckets]:
        """The counts, the labelled counts (:meth:`labelled`) and the durations; each
        read at one instant (the retries by reason a moment later)."""
        with self._lock:
            values, labelled = dict(self._values), dict(self._labelled)
            durations = self.durations.copy()
        labelled.update((("retry", reason), n) for reason, n in self.reasons.items() if n)
        return values, labelled, durations

    def reset(self) -> None:
        with self._lock:
            self._values = dict.fromkeys(self.fields, 0)
            self._labelled = {}
            self.durations = Buckets(SCRIPT_BUCKETS)
        self.reasons.reset()


class _ServerState:
    """What this process knows about one server (one connection pool)."""

    __slots__ = ("loaded_version", "has_ro", "__weakref__")

    def __init__(self) -> None:
        self.loaded_version = -1  # registry.version when we last loaded everything
        self.has_ro: bool | None = None  # EVALSHA_RO available? None = not yet known


class Script:
    """A registered Lua script. Call it: ``script(keys=[...], args=[...], client=None)``."""

    # Django templates call the callables they meet: ``{{ script.name }}`` would first
    # run the script's Lua (and count a call, or fail) while a page renders.
    do_not_call_in_templates = True

    def __init__(
        self,
        registry: ScriptRegistry,
        name: str,
        source: str,
        meta: Header,
        *,
        app: str | None = None,
        origin: str | None = None,
    ) -> None:
        if meta.result not in _CONVERTERS:
            raise RegistryError(
                f"script {name!r}: result must be one of {', '.join(RESULT_CONVERSIONS)}",
                script=name,
            )
        self.registry = registry
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode("utf-8")).hexdigest()
        self.meta = meta  # what the header says (or register()'s arguments): held once
        self.app = app
        self.origin = origin
        self.stats = ScriptStats()
        self.convert: Callable[[Any], Any] = _CONVERTERS[meta.result]
        self._readonly = meta.readonly  # read on every call: an attribute, not a property
        self._pipeline_handle = compat.PipelineScript(self.sha, source)

    # The header's fields, read through from :attr:`meta`.

    @property
    def readonly(self) -> bool:
        return self.meta.readonly

    @property
    def keys(self) -> tuple[str, ...]:
        return self.meta.keys

    @property
    def args(self) -> tuple[str, ...]:
        return self.meta.args

    @property
    def description(self) -> str:
        return self.meta.description

    @property
    def returns(self) -> str:
        return self.meta.returns

    @property
    def result(self) -> str:
        return self.meta.result

    @property
    def probe(self) -> tuple[str, ...] | None:
        return self.meta.probe

    def __repr__(self) -> str:
        return f"<Script {self.name} {self.sha[:12]}{' readonly' if self.readonly else ''}>"

    # -- calling -----------------------------------------------------------------

    def __call__(
        self, keys: Sequence[Any] = (), args: Sequence[Any] = (), client: Any = None
    ) -> Any:
        """Run the script atomically and return its (converted) reply.

        One round trip when the server has the script cached, two after the cache was
        lost. A script that writes is sent at most once: when its reply is lost the
        call raises :class:`~atomicops.exceptions.OutcomeUnknown`. On a pipeline the
        call is queued and the pipeline is returned (its replies are raw: pass them
        through :attr:`convert`).
        """
        keys, args = self._check(keys, args)
        client = connection.get_client(client)
        if connection.is_pipeline(client):
            return self._queue(client, keys, args)
        return run(self.flow(keys, args, client))

    async def acall(
        self, keys: Sequence[Any] = (), args: Sequence[Any] = (), client: Any = None
    ) -> Any:
        """The async twin of calling the script, over ``redis.asyncio``; same rules."""
        keys, args = self._check(keys, args)
        client = connection.get_async_client(client)
        if connection.is_pipeline(client):
            return self._queue(client, keys, args)
        return await arun(self.flow(keys, args, client))

    def flow(
        self, keys: Sequence[Any], args: Sequence[Any], client: Any, limit: float | None = None
    ) -> Flow[Any]:
        """The call as a flow for the engine's runners; ``keys`` and ``args`` already checked.

        atomicops' primitives build their calls from validated arguments and run this
        directly (the generic per-argument check of :meth:`__call__` would cost every
        hit a few microseconds for nothing); composed operations ``yield from`` it.
        ``limit``: a ``time.monotonic()`` past which the call is not sent again after a
        failure that proved it did not run, however long ``RETRY_DEADLINE_MS`` allows (a
        lock's acquire stops at its own timeout).
        """
        return planner.call_flow(self, keys, args, client, self.registry.plan, limit=limit)

    def _check(
        self, keys: Sequence[Any], args: Sequence[Any]
    ) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        for what, given in (("keys", keys), ("args", args)):
            # A string is a sequence too: "abc" would become three keys.
            if not isinstance(given, (list, tuple)):
                raise InvalidInput(
                    f"script {self.name!r}: {what} must be a list or tuple, got {given!r}",
                    script=self.name,
                )
        keys, args = tuple(keys), tuple(args)
        if self.keys and len(keys) != len(self.keys):
            raise InvalidInput(
                f"script {self.name!r} takes {len(self.keys)} keys ({', '.join(self.keys)}), "
                f"got {len(keys)}",
                script=self.name,
            )
        if self.args and len(args) > len(self.args):
            raise InvalidInput(
                f"script {self.name!r} takes at most {len(self.args)} args, got {len(args)}",
                script=self.name,
            )
        for key in keys:
            if not isinstance(key, (str, bytes)) or not key:
                raise InvalidInput(
                    f"script {self.name!r}: keys must be non-empty strings, got {key!r}",
                    script=self.name,
                )
        decimals = False
        for arg in args:
            if isinstance(arg, bool) or not isinstance(arg, _ARG_TYPES):
                raise InvalidInput(
                    f"script {self.name!r}: args must be str, bytes, int or float, got {arg!r}",
                    script=self.name,
                    key=_first(keys),
                )
            decimals = decimals or isinstance(arg, Decimal)
        if decimals:
            args = tuple(str(a) if isinstance(a, Decimal) else a for a in args)
        return keys, args

    def _queue(self, pipe: Any, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        # Pipeline.execute() runs SCRIPT EXISTS for its scripts and loads the missing
        # ones before sending the batch, so a flush between batches is harmless.
        if compat.is_cluster_client(pipe):
            raise ConfigurationError(
                "scripts cannot be queued on a cluster pipeline", script=self.name
            )
        compat.queue_script(pipe, self._pipeline_handle, keys, args)
        return pipe

    def prepare(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Call[Any]:
        """The call as a prepared :class:`~atomicops.engine.ops.Call`, ``keys`` and ``args``
        checked as calling the script checks them (nothing sent); what batches queue."""
        keys, args = self._check(keys, args)
        return Call(self.name, list(keys), list(args))

    def read_reply(self, reply: Any, keys: Sequence[Any] = ()) -> Any:
        """A raw reply of this script as a call returns it: converted, or an error reply
        raised as its atomicops error. Batches read their replies with it."""
        return self._result(reply, keys)

    def _result(self, reply: Any, keys: Sequence[Any]) -> Any:
        """The converted reply; an error reply raised as its atomicops error."""
        # Any error object, not only ResponseError: a -LOADING reply arrives as
        # redis-py's BusyLoadingError, a ConnectionError, and must never reach convert().
        if isinstance(reply, Exception):
            raise self.error_from_reply(reply, keys)
        try:
            return self.convert(reply)
        except (ValueError, TypeError) as exc:
            # The script's reply does not fit its declared result conversion.
            raise DataError(
                f"script {self.name!r}: reply {reply!r} does not convert as "
                f"result={self.result!r}: {exc}",
                script=self.name,
                key=_first(keys),
            ) from exc

    def error_from_reply(self, reply: Exception, keys: Sequence[Any] = ()) -> AtomicOpsError:
        """Map an error reply of this script to the matching atomicops error."""
        return reply_error(reply, script=self.name, keys=keys)


_ARG_TYPES = (str, bytes, int, float, Decimal)


def _first(keys: Sequence[Any]) -> str | None:
    return text(keys[0]) if keys else None


def _unreachable(error: AtomicOpsError) -> bool:
    """Nothing answered (not a refusal, not a lost reply): the node may be gone."""
    return isinstance(error, RedisUnavailable) and not isinstance(
        error, (ServerRefused, OutcomeUnknown)
    )


def _replication_policy() -> replication.Policy | None:
    return replication.active


def retry_deadline() -> float:
    """``RETRY_DEADLINE_MS`` in seconds; :class:`ConfigurationError` when it is not a
    number of milliseconds >= 0 (the check atomicops.E011 reports it)."""
    value = get_settings()["RETRY_DEADLINE_MS"]
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0 <= value < math.inf  # NaN fails too
    ):
        raise ConfigurationError(
            f"ATOMICOPS['RETRY_DEADLINE_MS'] must be a number of milliseconds >= 0 (0 turns "
            f"retries off), got {value!r}"
        )
    return float(value) / 1000


def retry_deadline_on() -> bool:
    """Whether calls that provably did not run are sent again (``RETRY_DEADLINE_MS`` > 0)."""
    return _retry_deadline() > 0


def _retry_deadline() -> float:
    # Read at a call's first failure that could be retried. A bad value (reported by
    # the check E011) means no retries: a call behaves as it did before the setting,
    # rather than failing for a setting while it reports a server's failure.
    try:
        return retry_deadline()
    except ConfigurationError:
        return 0.0


# Every registry made in this process (weakly: a registry dropped takes its counts along).
_registries: weakref.WeakSet[ScriptRegistry] = weakref.WeakSet()


def every_script() -> Iterator[Script]:
    """The scripts of every live registry of this process (the global one, and any made
    apart): what the metrics export."""
    for found in list(_registries):
        yield from found


class ScriptRegistry:
    """Named scripts of this process. ``registry.register(...)``, ``registry.get(name)``."""

    def __init__(self) -> None:
        _registries.add(self)
        self._scripts: dict[str, Script] = {}
        self._lock = threading.RLock()
        self._states: weakref.WeakKeyDictionary[Any, _ServerState] = weakref.WeakKeyDictionary()
        self.version = 0
        # (path, error) pairs from discovery, reported by the system check atomicops.E002.
        self.discovery_errors: list[tuple[str, AtomicOpsError]] = []
        # Files not registered because another app's file has their name (atomicops.E006),
        # and OVERRIDE_SCRIPTS entries that could not apply (atomicops.E007).
        self.discovery_clashes: list[ScriptClash] = []
        self.override_errors: list[RegistryError] = []
        # How every call of this registry's scripts is sent (atomicops.engine.planner).
        self.plan = planner.Plan(
            self,
            _replication_policy,
            connection.replica_client,
            replication.replicated,
            replication.not_replicated,
            _retry_deadline,
        )

    # -- registration -----------------------------------------------------------

    def register(
        self,
        name: str,
        source: str,
        *,
        readonly: bool = False,
        keys: Sequence[str] = (),
        args: Sequence[str] = (),
        description: str = "",
        returns: str = "",
        result: str = "raw",
        probe: Sequence[str] | None = None,
        app: str | None = None,
        origin: str | None = None,
    ) -> Script:
        """Register ``source`` under ``name`` and return its :class:`Script`.

        The SHA is computed locally. The same name with the same source again returns the
        existing script; with another source it raises :class:`RegistryError`.
        """
        meta = Header(
            description=description,
            readonly=readonly,
            keys=tuple(keys),
            args=tuple(args),
            returns=returns,
            result=result,
            probe=tuple(probe) if probe is not None else None,
        )
        return self._add(name, source, meta, app=app, origin=origin)

    def _add(
        self, name: str, source: str, meta: Header, *, app: str | None, origin: str | None
    ) -> Script:
        if not isinstance(name, str) or not _NAME.match(name):
            raise RegistryError(
                f"script name {name!r} must match {_NAME.pattern}", script=str(name)
            )
        if not isinstance(source, str) or not source.strip():
            raise RegistryError(f"script {name!r} has an empty source", script=name)
        with self._lock:
            existing = self._scripts.get(name)
            if existing is not None:
                if existing.source == source:
                    return existing
                raise RegistryError(
                    f"script {name!r} is already registered with another source "
                    f"(sha {existing.sha}, from {existing.origin or existing.app or 'code'})",
                    script=name,
                )
            script = Script(self, name, source, meta, app=app, origin=origin)
            self._scripts[name] = script
            self.version += 1
            return script

    def register_file(self, path: Path, *, app: str | None = None) -> Script:
        """Register a ``.lua`` file under its stem, with metadata from its header.

        Raises :class:`RegistryError` naming the file when it cannot be read as UTF-8 text
        (a directory, a dangling link, another encoding), :class:`ScriptHeaderError` when
        its header cannot be parsed.
        """
        name = path.stem
        try:
            source = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise RegistryError(
                f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})", script=name
            ) from exc
        except OSError as exc:
            raise RegistryError(
                f"{path}: cannot be read: {exc.strerror or exc}", script=name
            ) from exc
        try:
            header: Header = parse_header(source, origin=str(path))
        except ValueError as exc:  # the parser means to raise ScriptHeaderError only
            raise ScriptHeaderError(f"{path}: header cannot be read: {exc}", script=name) from exc
        return self._add(name, source, header, app=app, origin=str(path))

    def discover(self, *, all_apps: bool = True, overrides: Any = None) -> list[Script]:
        """Register atomicops' own scripts and, with ``all_apps``, every app's ``lua/*.lua``.

        A script is named after its file and a name has one owner: atomicops for its own
        scripts, otherwise the first app in ``INSTALLED_APPS`` that ships the file. Another
        app's file of that name is not registered; when its bytes differ it is listed in
        :attr:`discovery_clashes`. ``overrides`` (``ATOMICOPS['OVERRIDE_SCRIPTS']``,
        ``{script name: app label}``) is the explicit opt-in that hands a name to another
        app; entries that cannot apply change nothing and are listed in
        :attr:`override_errors`. Unreadable files are collected in :attr:`discovery_errors`.

        Nothing here raises for a file or an override: ``manage.py check`` reports them
        (atomicops.E002, E006, E007), so one bad file cannot stop a process from starting.
        """
        from django.apps import apps

        configs = list(apps.get_app_configs())
        folders: list[tuple[str, Path]] = [("atomicops", BUILTIN_LUA_DIR)]
        if all_apps:
            for config in configs:
                folder = Path(config.path) / "lua"
                if folder.is_dir() and folder.resolve() != BUILTIN_LUA_DIR:
                    folders.append((config.label, folder))
        candidates: dict[str, list[tuple[str, Path]]] = {}  # name -> files, owner first
        for label, folder in folders:
            for path in sorted(folder.glob("*.lua")):
                candidates.setdefault(path.stem, []).append((label, path))
        chosen, override_errors = _applicable_overrides(
            overrides, candidates, {config.label for config in configs}, all_apps
        )
        found = []
        errors = []
        clashes = []
        for name, files in candidates.items():
            if name in chosen:
                files = sorted(files, key=lambda file: file[0] != chosen[name])
            (label, path), others = files[0], files[1:]
            try:
                found.append(self.register_file(path, app=label))
            except AtomicOpsError as exc:
                errors.append((str(path), exc))
                logger.error("atomicops: %s", exc.message)
            if name in chosen:
                continue  # the user named the owner: the other files are meant to stay out
            for other_label, other in others:
                if not _same_bytes(path, other):
                    clashes.append(ScriptClash(name, label, str(path), other_label, str(other)))
                    logger.error("atomicops: %s", clashes[-1].message)
        for error in override_errors:
            logger.error("atomicops: %s", error.message)
        self.discovery_errors = errors
        self.discovery_clashes = clashes
        self.override_errors = override_errors
        return found

    # -- lookup -----------------------------------------------------------------

    def get(self, name: str) -> Script:
        """The script called ``name``; atomicops' own scripts are found even before discovery."""
        script = self._scripts.get(name)
        if script is not None:
            return script
        builtin = BUILTIN_LUA_DIR / f"{name}.lua"
        if _NAME.match(name) and builtin.is_file():
            try:
                return self.register_file(builtin, app="atomicops")
            except ScriptHeaderError as exc:  # pragma: no cover - shipped files are tested
                raise RegistryError(exc.message, script=name) from exc
        raise RegistryError(f"no script named {name!r} is registered", script=name)

    def __contains__(self, name: object) -> bool:
        return name in self._scripts

    def __iter__(self) -> Iterator[Script]:
        return iter(list(self._scripts.values()))

    def __len__(self) -> int:
        return len(self._scripts)

    def unregister(self, name: str) -> None:
        """Remove a script (tests and tools); calls by name fail afterwards."""
        with self._lock:
            if self._scripts.pop(name, None) is not None:
                self.version += 1

    # -- loading -----------------------------------------------------------------

    def server_state(self, client: Any) -> _ServerState:
        """What this process knows about the server behind ``client`` (one per pool)."""
        pool = client.connection_pool
        state = self._states.get(pool)
        if state is None:
            state = self._states.setdefault(pool, _ServerState())
        return state

    def load_commands(self) -> Batch:
        """``SCRIPT LOAD`` of every registered script, in registration order."""
        return [("SCRIPT LOAD", script.source) for script in self._scripts.values()]

    def note_loads(
        self, replies: Sequence[Any], state: _ServerState, version: int
    ) -> list[AtomicOpsError]:
        """Check SCRIPT LOAD replies; remember the server has everything of ``version``.

        A script that does not compile is logged and counted as loaded (sending it again
        cannot help). A server that refused the loads for the moment (busy, loading, out
        of memory) has nothing new: the next call loads again, and the call's own reply
        says what happened, so nothing is logged per script.
        """
        failures: list[AtomicOpsError] = []
        for script, reply in zip(list(self._scripts.values()), replies, strict=False):
            if isinstance(reply, Exception):
                failures.append(script.error_from_reply(reply))
        transient = [error for error in failures if is_transient(error)]
        for error in failures:
            if not is_transient(error):
                logger.error("atomicops: %s", error.message)
        if transient:
            logger.debug("atomicops: SCRIPT LOAD refused for now: %s", transient[0].message)
        elif version == self.version:  # nothing registered meanwhile
            state.loaded_version = version
        return failures

    def load_all(self, client: Any = None) -> dict[str, str]:
        """Load every registered script (one round trip per server) and return name -> SHA.

        On a cluster every primary gets them, each tried even when another fails; a
        primary that cannot be reached makes the slot map be read again, and the
        primaries that replaced it are loaded. Raises the first failure, naming the node
        (:class:`RedisUnavailable`), or :class:`ScriptCompileError` naming the first
        script that does not compile (after loading all the others).
        """
        client = connection.get_client(client)
        if connection.is_pipeline(client):
            raise ConfigurationError("load_all() needs a client, not a pipeline")
        run(self._load_everywhere(client))
        return {script.name: script.sha for script in self._scripts.values()}

    async def aload_all(self, client: Any = None) -> dict[str, str]:
        """The async twin of :meth:`load_all`, for redis.asyncio clients and clusters."""
        client = connection.get_async_client(client)
        await topology.aprimaries(client)  # an asyncio cluster client reads its map here
        await arun(self._load_everywhere(client))
        return {script.name: script.sha for script in self._scripts.values()}

    def _load_everywhere(self, client: Any) -> Flow[None]:
        done: set[str] = set()
        failures: dict[str, AtomicOpsError] = {}
        for attempt in range(2 if compat.is_cluster_client(client) else 1):
            if attempt:
                unreachable = [name for name, e in failures.items() if _unreachable(e)]
                if not unreachable:
                    break
                # The node may have been replaced (a failover): ask the cluster again.
                yield Refresh(client, failed=unreachable[0])
                failures = {}
            for name, target in topology.primaries(client):
                if name in done:
                    continue
                try:
                    yield from self._load_flow(name, target)
                except AtomicOpsError as exc:
                    failures[name] = exc
                else:
                    done.add(name)
            if not failures:
                break
        self._raise_first(list(failures.values()))

    def _load_flow(self, name: str, target: Any) -> Flow[None]:
        version = self.version
        context = Context(f"loading the scripts onto {name}", write=False, script=False)
        replies = yield Send(target, self.load_commands(), context)
        self._raise_first(self.note_loads(replies, self.server_state(target), version))

    @staticmethod
    def _raise_first(failures: list[AtomicOpsError]) -> None:
        if failures:
            raise failures[0]


# -- discovery helpers (ScriptRegistry.discover) ------------------------------------------

OVERRIDE_SETTING = "ATOMICOPS['OVERRIDE_SCRIPTS']"


@dataclass(frozen=True)
class ScriptClash:
    """Two apps ship ``lua/<name>.lua`` with different bytes; only ``kept`` is registered."""

    name: str
    kept_app: str
    kept: str
    ignored_app: str
    ignored: str

    @property
    def message(self) -> str:
        return (
            f"script {self.name!r}: {self.ignored} (app {self.ignored_app!r}) is not "
            f"registered, because {self.kept} (app {self.kept_app!r}) is registered under "
            "that name"
        )


def _same_bytes(a: Path, b: Path) -> bool:
    try:
        return a.read_bytes() == b.read_bytes()
    except OSError:
        return False  # one is unreadable: the two cannot be taken for the same script


def _applicable_overrides(
    overrides: Any,
    candidates: Mapping[str, Sequence[tuple[str, Path]]],
    labels: set[str],
    all_apps: bool,
) -> tuple[dict[str, str], list[RegistryError]]:
    """The ``{name: label}`` entries that apply, and an error for each one that cannot."""
    if not overrides:
        return {}, []
    if not isinstance(overrides, Mapping):
        return {}, [
            RegistryError(
                f"{OVERRIDE_SETTING} must be a dict {{script name: app label}}, got {overrides!r}"
            )
        ]
    if not all_apps:
        return {}, [
            RegistryError(
                f"{OVERRIDE_SETTING} has no effect: DISCOVER_SCRIPTS is False, so only "
                "atomicops' own scripts are registered"
            )
        ]
    chosen: dict[str, str] = {}
    errors = []
    for name, label in overrides.items():
        where = f"{OVERRIDE_SETTING} maps {name!r} to {label!r}"
        if not isinstance(name, str):
            problem = "script names are strings"
        elif not isinstance(label, str):
            problem = "app labels are strings"
        elif label not in labels:
            problem = f"no installed app has the label {label!r}"
        elif all(owner != label for owner, _ in candidates.get(name, ())):
            problem = f"app {label!r} has no lua/{name}.lua"
        else:
            chosen[name] = label
            continue
        errors.append(RegistryError(f"{where}: {problem}", script=str(name)))
    return chosen, errors


registry = ScriptRegistry()
