"""Celery tasks with a global rate limit across workers, and singleton tasks (docs/celery.md).

``@app.task(base=AtomicTask, global_rate_limit="10/s")``: at most 10 task bodies start in
any second across every worker sharing the Redis, decided by atomicops' exact window
(:func:`~atomicops.primitives.ratelimit.exact_window`'s script, on the server's clock). A start over
the limit is not run: the task goes back to its queue with a countdown of the exact wait
(the limiter's ``retry_after_ms``), under its own id, with ``request.retries`` as it was.

``@app.task(base=AtomicTask, singleton=True)``: at most one instance per (task name,
bound arguments) queued or running. The claim is an atomicops :class:`~atomicops.Lock`
whose owner token is the task id: ``apply_async`` takes it (a duplicate gets the id of
the one already there), the worker adopts it (same owner: same grant and fencing token),
renews it while the body runs and releases it before the result is stored.

Needs ``atomicops[celery]`` and a Celery worker that loads Django (atomicops reads its
settings). Celery's own internals this relies on are named in :class:`AtomicRequest`.
"""

from __future__ import annotations

import asyncio
import datetime
import decimal
import functools
import inspect
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any, ClassVar, NoReturn

from celery import Task
from celery.exceptions import Ignore, Retry
from celery.result import AsyncResult
from celery.signals import worker_init
from celery.utils.functional import maybe_list
from celery.worker.control import Panel
from celery.worker.request import Request

from atomicops.conf import get_settings
from atomicops.engine.redaction import for_log
from atomicops.exceptions import (
    AtomicOpsError,
    InvalidInput,
    LockError,
    LockNotOwned,
    OutcomeUnknown,
    RedisUnavailable,
)
from atomicops.leases.locks import Lock
from atomicops.primitives import keys
from atomicops.primitives.calls import send
from atomicops.primitives.ratelimit import exact_log_call
from atomicops.primitives.validate import MAX_EXACT
from atomicops.web.identity import digest

__all__ = [
    "AtomicRequest",
    "AtomicTask",
    "SingletonConflict",
    "call_digest",
    "free_queued_claim",
    "install_revoke_hook",
    "parse_rate",
]

logger = logging.getLogger("atomicops.celery")

# Celery's rate strings: "<tasks>/<s|m|h>", or a bare number meaning per second.
_RATE = re.compile(r"^\s*(\d+)\s*(?:/\s*([smh])\s*)?$")
_PERIOD_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, None: 1_000}

# When Redis cannot be reached and the setting says "closed", the task is sent back to
# its queue for this long, then tries again: it waits in the broker, not in a pool slot.
UNAVAILABLE_RETRY_SECONDS = 1.0

# A producer refused a claim reads the holder's task id; if the holder finished in
# between, it tries to claim again. Each round needs a holder that came and went within
# two round trips: a few rounds are plenty.
_CLAIM_ROUNDS = 5
# What the claim step says when Redis was down and the singleton fails open (never an id).
UNCLAIMED = ""


class SingletonConflict(LockError):
    """A singleton task's claim is held by another instance and its task id could not be
    read (it changed hands repeatedly while the producer looked); nothing was enqueued."""


def parse_rate(rate: Any, *, task: str = "?") -> tuple[int, int] | None:
    """A Celery rate (``"10/s"``, ``"100/m"``, ``"1000/h"``, or a number per second) as
    ``(tasks, window_ms)`` for the exact window; ``None`` for no limit.

    Raises :class:`InvalidInput` naming ``task`` for anything else: a fraction
    (``"0.5/s"``: write ``"30/m"``), zero or a negative count, an unknown period.
    """
    if rate is None:
        return None
    if isinstance(rate, bool) or not isinstance(rate, (str, int)):
        raise InvalidInput(
            f"task {task}: global_rate_limit must be a rate like '10/s', '100/m' or "
            f"'1000/h', got {type(rate).__name__}"
        )
    match = _RATE.match(str(rate))
    if match is None:
        raise InvalidInput(
            f"task {task}: global_rate_limit {rate!r} is not '<tasks>/<s|m|h>' with a whole "
            "number of tasks (Celery's rate strings: '10/s', '100/m', '1000/h'; "
            "for a fraction per second use a longer period: '30/m', not '0.5/s')"
        )
    tasks = int(match.group(1))
    if not 1 <= tasks <= MAX_EXACT:
        raise InvalidInput(
            f"task {task}: global_rate_limit {rate!r} must allow at least 1 task "
            "(and at most 2**53 - 1); leave it None for no limit"
        )
    return tasks, _PERIOD_MS[match.group(2)]


def _seconds(value: Any, what: str, task: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e9:
        raise InvalidInput(f"task {task}: {what} must be a number of seconds > 0, got {value!r}")
    return float(value)


def _stable(value: Any) -> Any:
    """What json cannot write itself, in a form the same value always takes.

    The types Celery's JSON serializer carries across (it sends them tagged and the
    worker gets the same type back), so the producer and the worker agree.
    """
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return {"__atomicops__": type(value).__name__, "v": value.isoformat()}
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return {"__atomicops__": type(value).__name__, "v": str(value)}
    if isinstance(value, (bytes, bytearray)):
        return {"__atomicops__": "bytes", "v": bytes(value).hex()}
    raise TypeError(type(value).__name__)


def call_digest(task_name: str, func: Callable[..., Any], args: Any, kwargs: Any) -> str:
    """The singleton identity of a call: a digest of its bound arguments.

    ``f(7)`` and ``f(account_id=7)`` bind alike, and defaults are filled in, so they
    are one call. Only the digest leaves this function (the arguments never reach a key
    or a log). Raises :class:`InvalidInput` when the arguments do not fit the
    signature or hold a value with no stable form (anything but JSON's types, dates,
    times, decimals, UUIDs and bytes).
    """
    try:
        bound = inspect.signature(func).bind(*(args or ()), **(kwargs or {}))
    except TypeError as exc:
        # TypeError's text names parameters (code's words), never values.
        raise InvalidInput(f"task {task_name}: arguments do not fit its signature: {exc}") from None
    bound.apply_defaults()
    try:
        text = json.dumps(
            [task_name, bound.arguments],
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=True,
            allow_nan=False,
            default=_stable,
        )
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"task {task_name}: a singleton's arguments must have a stable form to be "
            f"compared (JSON types, dates, decimals, UUIDs, bytes); got {exc}"
        ) from None
    return digest(text)


class AtomicTask(Task):
    """A Celery task base with ``global_rate_limit`` and ``singleton`` (docs/celery.md).

    Options (task decorator keywords, or class attributes of a subclass):

    * ``global_rate_limit``: ``"N/s"``, ``"N/m"``, ``"N/h"`` (or N per second); at most N
      bodies start in any such span across all workers. ``None``: no limit.
    * ``singleton``: at most one instance per task name and bound arguments queued or
      running. ``singleton_ttl`` (seconds, default 60): the running instance's lease,
      renewed every third of it; what a worker killed -9 holds it for at most.
      ``singleton_queued_ttl`` (default 3600): how long a claim waits for a worker to
      start its task (a lost message frees it after this; a task still queued after it
      may meet a duplicate, and then runs after that one).

    The running instance's fencing token is ``self.request.atomicops_fencing_token``
    (bind=True), also :attr:`fencing_token`. Bad options raise :class:`InvalidInput` when
    Celery builds the task class.
    """

    global_rate_limit: ClassVar[str | int | None] = None
    singleton: ClassVar[bool] = False
    singleton_ttl: ClassVar[float] = 60.0
    singleton_queued_ttl: ClassVar[float] = 3600.0
    # Celery builds each worker-side request from this class (see AtomicRequest).
    Request = "atomicops.celery:AtomicRequest"

    _atomicops_rate: ClassVar[tuple[int, int] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Celery's decorator makes a subclass with the options as attributes: this is
        # the task's definition, where a bad option should fail.
        name = str(cls.__dict__.get("name") or cls.__qualname__)
        cls._atomicops_rate = parse_rate(cls.global_rate_limit, task=name)
        if not isinstance(cls.singleton, bool):
            raise InvalidInput(f"task {name}: singleton must be True or False")
        _seconds(cls.singleton_ttl, "singleton_ttl", name)
        _seconds(cls.singleton_queued_ttl, "singleton_queued_ttl", name)

    # -- keys and leases ------------------------------------------------------------

    def _rate_key(self) -> str:
        return keys.tagged("celery-rate", self.name)

    def _claim_name(self, args: Any, kwargs: Any) -> str:
        return f"celery:{self.name}:{call_digest(self.name, self.run, args, kwargs)}"

    def _claim(self, args: Any, kwargs: Any, task_id: str, ttl: float, **options: Any) -> Lock:
        return Lock(self._claim_name(args, kwargs), ttl, owner=task_id, **options)

    @property
    def fencing_token(self) -> int | None:
        """The running singleton's fencing token (None outside one, or when it runs
        unclaimed because Redis was down and the singleton fails open)."""
        return getattr(self.request, "atomicops_fencing_token", None)

    # -- producer side --------------------------------------------------------------

    def apply_async(
        self, args: Any = None, kwargs: Any = None, task_id: str | None = None, **options: Any
    ) -> AsyncResult:
        """Celery's ``apply_async``; a singleton first claims its arguments.

        A duplicate of a queued or running instance is not sent: its ``AsyncResult``
        (same id) comes back. Raises :class:`InvalidInput` (arguments), and when Redis
        is down :class:`RedisUnavailable` unless ``CELERY_SINGLETON_FAIL_OPEN``.
        """
        if not self.singleton:
            return super().apply_async(args, kwargs, task_id=task_id, **options)
        task_id = task_id or str(uuid.uuid4())
        claim = self._claim(args, kwargs, task_id, self.singleton_queued_ttl)
        existing = self._take(claim)
        if existing:
            return self.AsyncResult(existing)
        if existing is None:
            _hold(_index(task_id, claim.name, self.singleton_queued_ttl))
        return self._send(claim, args, kwargs, task_id, options)

    async def aapply_async(
        self, args: Any = None, kwargs: Any = None, task_id: str | None = None, **options: Any
    ) -> AsyncResult:
        """The async twin of :meth:`apply_async`: the claim over ``redis.asyncio``, the
        publish (kombu is synchronous) in a thread."""
        if self.singleton:
            task_id = task_id or str(uuid.uuid4())
            claim = self._claim(args, kwargs, task_id, self.singleton_queued_ttl)
            existing = await self._atake(claim)
            if existing:
                return self.AsyncResult(existing)
            if existing is None:
                await _ahold(_index(task_id, claim.name, self.singleton_queued_ttl))
            return await asyncio.to_thread(self._send, claim, args, kwargs, task_id, options)
        return await asyncio.to_thread(
            super().apply_async, args, kwargs, task_id=task_id, **options
        )

    async def adelay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        """The async twin of :meth:`delay`."""
        return await self.aapply_async(args, kwargs)

    def _send(
        self, claim: Lock, args: Any, kwargs: Any, task_id: str, options: dict[str, Any]
    ) -> AsyncResult:
        try:
            return super().apply_async(args, kwargs, task_id=task_id, **options)
        except BaseException:
            # Not enqueued: a claim left behind would refuse every call until it expired.
            _free(claim)
            _free(_index(task_id, claim.name, 1))
            raise

    def _take(self, claim: Lock) -> str | None:
        """Claim for this call: None when taken (send it), :data:`UNCLAIMED` when Redis
        is down and the singleton fails open (send it), else the holder's task id."""
        unknown = False
        for _ in range(_CLAIM_ROUNDS):
            try:
                if claim.acquire(blocking=False):
                    return None
                holder = claim.holder()
            except OutcomeUnknown:
                # The claim may have been taken: asking again with the same owner token
                # gets that grant back instead of leaving it behind, unsent.
                if unknown:
                    raise
                unknown = True
                claim = Lock(claim.name, claim.ttl, owner=claim.owner)  # a clean object
                continue
            except RedisUnavailable as exc:
                if self._unavailable(exc, "singleton", claim.key):
                    return UNCLAIMED
                raise
            if holder is not None and holder.owner:
                return holder.owner
        raise SingletonConflict(
            f"task {self.name}: its claim changed hands {_CLAIM_ROUNDS} times while this "
            "call looked; nothing was enqueued",
            key=claim.key,
        )

    async def _atake(self, claim: Lock) -> str | None:
        """The async twin of :meth:`_take`."""
        unknown = False
        for _ in range(_CLAIM_ROUNDS):
            try:
                if await claim.aacquire(blocking=False):
                    return None
                holder = await claim.aholder()
            except OutcomeUnknown:
                # The claim may have been taken: asking again with the same owner token
                # gets that grant back instead of leaving it behind, unsent.
                if unknown:
                    raise
                unknown = True
                claim = Lock(claim.name, claim.ttl, owner=claim.owner)  # a clean object
                continue
            except RedisUnavailable as exc:
                if self._unavailable(exc, "singleton", claim.key):
                    return UNCLAIMED
                raise
            if holder is not None and holder.owner:
                return holder.owner
        raise SingletonConflict(
            f"task {self.name}: its claim changed hands {_CLAIM_ROUNDS} times while this "
            "call looked; nothing was enqueued",
            key=claim.key,
        )

    def _unavailable(self, exc: RedisUnavailable, what: str, key: str) -> bool:
        """Redis could not decide: True to go on without it (fail open; logged), False
        to hold the task back (fail closed), as the setting for ``what`` says."""
        setting = "CELERY_RATE_LIMIT_FAIL_OPEN" if what == "rate" else "CELERY_SINGLETON_FAIL_OPEN"
        if not get_settings()[setting]:
            return False
        # The key holds a digest, never the task's arguments.
        logger.warning(
            "atomicops: %s of task %s not enforced, Redis unavailable (%s=True): %s",
            what, self.name, setting, for_log(exc), extra={"key": key},
        )  # fmt: skip
        return True

    # -- worker side ----------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        if request.called_directly or not (self._atomicops_rate or self.singleton):
            return super().__call__(*args, **kwargs)
        # Always set, so a body can read them: None when not limited / not claimed.
        request.atomicops_admitted_ms = None
        request.atomicops_fencing_token = None
        if self._atomicops_rate is not None:
            self._admit(request, args, kwargs)
        lease = self._adopt(request, args, kwargs) if self.singleton else None
        request.atomicops_fencing_token = None if lease is None else lease.fencing_token
        try:
            return super().__call__(*args, **kwargs)
        except Retry:
            # self.retry() sent this very task again: it is queued, and keeps its claim.
            if lease is not None:
                name, lease.on_lost = lease.name, None
                # Dropping the object stops its renewer (it holds only a weak reference),
                # so no renewal brings the running TTL back over the queued one.
                lease = None
                self._requeued(name, request.id)
            raise
        finally:
            # Here, not in after_return: the tracer stores the result after this
            # returns, so whoever sees the result can claim again at once.
            if lease is not None:
                _free(lease)

    def _requeued(self, name: str, task_id: str) -> None:
        """The running lease becomes a queued claim again (same owner, queued TTL)."""
        _hold(Lock(name, self.singleton_queued_ttl, owner=task_id))
        _hold(_index(task_id, name, self.singleton_queued_ttl))

    def _admit(self, request: Any, args: Any, kwargs: Any) -> None:
        """Take a start from the global limit, or send the task back (raises Ignore)."""
        assert self._atomicops_rate is not None
        limit, window_ms = self._atomicops_rate
        key = self._rate_key()
        while True:
            try:
                hit = send(exact_log_call(key, limit, window_ms, 1), None)
            except RedisUnavailable as exc:
                if self._unavailable(exc, "rate", key):
                    return
                self._hold_back(request, args, kwargs, exc)
            if hit.result.allowed:
                # The server time the limiter counted this start at (what "N in any
                # span" is about; the body starts a moment later).
                request.atomicops_admitted_ms = hit.now_ms
                return
            wait = max(hit.result.retry_after_ms, 1) / 1000
            if request.is_eager:
                time.sleep(wait)  # apply() runs here and now: no queue to go back to
                continue
            self._defer(request, args, kwargs, wait)

    def _adopt(self, request: Any, args: Any, kwargs: Any) -> Lock | None:
        """Turn this task's queued claim into the running lease (renewed), or send the
        task back while another instance holds it (raises Ignore)."""
        lease = self._claim(args, kwargs, request.id, self.singleton_ttl, auto_renew=True)
        lease.on_lost = _lost
        try:
            if lease.acquire(blocking=False):
                # Running now: a revoke no longer frees the claim (Celery leaves a
                # running task alone unless it terminates it).
                _free(_index(request.id, lease.name, 1), quiet=True)
                return lease
            holder = lease.holder()
        except RedisUnavailable as exc:
            if self._unavailable(exc, "singleton", lease.key):
                return None
            self._hold_back(request, args, kwargs, exc)
        if request.is_eager:
            raise SingletonConflict(
                f"task {self.name}: another instance holds its claim", key=lease.key
            )
        # Another instance holds it: this one was sent without a claim (send_task) or
        # its claim ran out in the queue (singleton_queued_ttl). It runs after that one,
        # looking again at least every singleton_ttl.
        if holder is None or holder.ttl_ms is None:
            wait = 0.05  # freed in between: try again at once
        else:
            wait = min(max(holder.ttl_ms, 10) / 1000, self.singleton_ttl)
        self._defer(request, args, kwargs, wait)

    def _hold_back(self, request: Any, args: Any, kwargs: Any, exc: RedisUnavailable) -> NoReturn:
        """Fail closed: eager calls get the error, queued tasks go back to the queue."""
        if request.is_eager:
            raise exc
        self._defer(request, args, kwargs, UNAVAILABLE_RETRY_SECONDS)

    def _defer(self, request: Any, args: Any, kwargs: Any, countdown: float) -> NoReturn:
        """Send this very task back to its queue for ``countdown`` seconds; raise Ignore.

        Not ``self.retry()``: that counts a retry (``request.retries + 1``, checked
        against ``max_retries``) and records RETRY. The message is the one
        ``retry()`` would send (``signature_from_request``: same id, queue, links,
        expiry, headers) with ``retries`` as it was; Ignore tells the worker this
        execution stores no state, so the caller's AsyncResult waits for the real one.
        """
        if self.singleton:
            # Still queued: keep the claim (and its index) as long as a queued task may wait.
            claim = self._claim(args, kwargs, request.id, self.singleton_queued_ttl)
            _hold(claim)
            _hold(_index(request.id, claim.name, self.singleton_queued_ttl))
        signature = self.signature_from_request(request, args, kwargs)
        options = dict(signature.options)
        options["countdown"] = countdown
        # Our own apply_async would claim again: the claim is this task's already.
        super().apply_async(signature.args, signature.kwargs, **options)
        raise Ignore()

    def free_claim(self, task_id: str, args: Any, kwargs: Any) -> None:
        """Free the claim of the singleton instance ``task_id`` if that instance still
        holds it (revoked or expired before it ran). Best effort, logged."""
        try:
            name = self._claim_name(args, kwargs)
        except InvalidInput:
            return  # never claimed: apply_async refuses such arguments
        _free(Lock(name, 1, owner=task_id), quiet=True)
        _free(_index(task_id, name, 1), quiet=True)


def free_queued_claim(task_id: str) -> None:
    """Free the claim of ``task_id`` while it waits in a queue (from its index), so a
    revoke frees it before Celery stores REVOKED. Best effort, logged."""
    try:
        holder = Lock(_index_name(task_id), 1).holder()
    except AtomicOpsError as exc:
        logger.warning("atomicops: could not read a revoked task's claim: %s", for_log(exc))
        return
    if holder is None or not holder.owner:
        return  # not a queued singleton (never one, running, or done)
    _free(Lock(holder.owner, 1, owner=task_id), quiet=True)
    _free(_index(task_id, holder.owner, 1), quiet=True)


def _index_name(task_id: str) -> str:
    return f"celery-task:{task_id}"


def _index(task_id: str, claim_name: str, ttl: float) -> Lock:
    """The queued task's index: a lease named after its id whose owner token is its
    claim's name, so a revoke, which knows only the id, finds the claim."""
    return Lock(_index_name(task_id), ttl, owner=claim_name)


def _hold(lease: Lock) -> None:
    """Take or keep ``lease`` (same owner: its TTL reset). Best effort, logged."""
    try:
        lease.acquire(blocking=False)
    except AtomicOpsError as exc:
        logger.warning(
            "atomicops: could not hold %s: %s",
            lease.log_name,
            for_log(exc),
            extra={"key": lease.key},
        )


async def _ahold(lease: Lock) -> None:
    """The async twin of :func:`_hold`."""
    try:
        await lease.aacquire(blocking=False)
    except AtomicOpsError as exc:
        logger.warning(
            "atomicops: could not hold %s: %s",
            lease.log_name,
            for_log(exc),
            extra={"key": lease.key},
        )


_revoke_hook_installed = False


def install_revoke_hook(**_: Any) -> None:
    """Wrap the worker's ``revoke`` control command so that it first frees the claims of
    the queued singletons it revokes (connected to ``worker_init``; idempotent).

    Celery's handler stores REVOKED at once for a task no worker runs; a claim freed
    only when a worker later discards the message would still refuse a call made right
    after ``get()`` raised TaskRevokedError. Relies on ``celery.worker.control.Panel``'s
    handler table (where control commands are registered); tests/test_celery.py fails
    if a Celery release changes it.
    """
    global _revoke_hook_installed
    if _revoke_hook_installed:
        return
    original = Panel.data["revoke"]

    @functools.wraps(original)
    def revoke(state: Any, task_id: Any, *args: Any, **kwargs: Any) -> Any:
        for one in maybe_list(task_id) or []:
            free_queued_claim(str(one))
        return original(state, task_id, *args, **kwargs)

    Panel.data["revoke"] = revoke
    _revoke_hook_installed = True


worker_init.connect(install_revoke_hook, weak=False, dispatch_uid="atomicops.celery.revoke")


def _free(lease: Lock, *, quiet: bool = False) -> None:
    """Give ``lease`` back (its owner's, whoever took it). Best effort, logged."""
    try:
        lease.release()
    except LockNotOwned as exc:
        # Ran out (the fencing token guards what it did) or already freed: the task's
        # own outcome stands either way.
        if not quiet:
            logger.warning(
                "atomicops: singleton claim was lost: %s", for_log(exc), extra={"key": lease.key}
            )
    except AtomicOpsError as exc:
        # Redis is down: the lease runs out by its TTL.
        logger.warning(
            "atomicops: releasing %s failed: %s",
            lease.log_name,
            for_log(exc),
            extra={"key": lease.key},
        )


def _lost(lease: Any) -> None:
    logger.warning(
        "atomicops: a running singleton lost its lease (renewals failed past its ttl); "
        "its fencing token %s is stale",
        lease.fencing_token,
        extra={"key": lease.key},
    )


class AtomicRequest(Request):
    """The worker's request for an :class:`AtomicTask`: frees a singleton's claim when the
    task is revoked or expires without running, before Celery stores REVOKED.

    Overrides Celery's ``Request._announce_revoked(reason, terminated, signum, expired)``,
    the one place a revoked or expired request is reported (stored, then the signal);
    tests/test_celery.py fails if a Celery release renames it.
    """

    def _announce_revoked(self, reason: Any, terminated: Any, signum: Any, expired: Any) -> Any:
        task = self.task
        if isinstance(task, AtomicTask) and task.singleton:
            task.free_claim(self.id, self.args, self.kwargs)
        return super()._announce_revoked(reason, terminated, signum, expired)
