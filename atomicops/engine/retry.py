"""Which failures prove that a call did not run, and how long to wait before sending it again.

A call is sent again only when its failure *proves* nothing ran (see
:func:`reason`), and only until its retry deadline (``RETRY_DEADLINE_MS``, counted from
the call's start) has passed; then its last error is raised as it would have been
without retries. A call whose write may have reached the server
(:class:`~atomicops.exceptions.OutcomeUnknown`) is never sent again, whatever the deadline.

Retried, each named by the fixed word the metrics count it under:

* ``connect``: no connection could be made, or the batch could not be written
  (:class:`~atomicops.exceptions.RedisUnavailable` from the wire: no complete command
  reached the server);
* ``no_primary``: the sentinels name no primary yet (mid-failover);
* ``loading``, ``readonly``, ``masterdown``, ``clusterdown``, ``tryagain``,
  ``noreplicas``: the server refused the call before running it (``-LOADING`` after a
  restart, ``-READONLY`` from a demoted primary, ``-MASTERDOWN`` from a replica that lost
  its primary, ``-CLUSTERDOWN`` while a failover is decided, ``-TRYAGAIN`` mid-migration
  past the route's own pauses, ``-NOREPLICAS`` under ``min-replicas-to-write``);
* ``redirects``: ``MOVED`` / ``ASK`` past the bounded redirects of one route (the map
  is read again and the hops start over);
* ``failover``: the sentinels began replacing the primary, so atomicops held the call
  back, unsent (:mod:`atomicops.engine.failover`), until the new one is named;
* ``busy``: ``-BUSY``, another script is running past ``busy-reply-threshold``. The
  server refused this call without running it, and the other script ends (or is killed
  with ``SCRIPT KILL``) within seconds, which is the scale of a deadline.

Not retried: ``-OOM``. The server refused the write before running it, so sending it
again would be safe, but memory comes back only by eviction, expiry or deletes, which
rarely happens within a deadline, while every retry holds a web worker and adds load to
a server that is already full. It is raised at once as
:class:`~atomicops.exceptions.ServerOutOfMemory`. ``-MISCONF`` (snapshots failing)
waits for an operator, not for time: raised at once too.

The pauses grow exponentially with jitter (half the step plus a random half), so the
callers that lost one server at the same moment do not come back to it in step.
"""

from __future__ import annotations

import random

from atomicops.exceptions import (
    OutcomeUnknown,
    RedisUnavailable,
    ScriptBusyError,
    ServerRefused,
)

# The words the retry counts go by (ScriptStats, the dashboard, the metrics' ``reason``).
REASONS = (
    "connect",
    "no_primary",
    "loading",
    "readonly",
    "masterdown",
    "clusterdown",
    "tryagain",
    "noreplicas",
    "redirects",
    "busy",
    "failover",
)

_REFUSALS = {
    "LOADING": "loading",
    "READONLY": "readonly",
    "MASTERDOWN": "masterdown",
    "CLUSTERDOWN": "clusterdown",
    "TRYAGAIN": "tryagain",
    "NOREPLICAS": "noreplicas",
    "MOVED": "redirects",
    "ASK": "redirects",
    "FAILOVER": "failover",
}

# First pause, doubling up to the longest: a restarted server answers within tens of
# milliseconds of its port opening, a failover within a second or two; polling a dead
# server faster than a few times a second only adds connection attempts.
FIRST_PAUSE = 0.02
LONGEST_PAUSE = 0.5

_NO_PRIMARY = "MasterNotFoundError"  # redis.sentinel's and redis.asyncio.sentinel's own


def reason(error: BaseException) -> str | None:
    """The word for a failure that proves the call did not run; None for any other."""
    if isinstance(error, OutcomeUnknown):
        return None  # the write may have been applied: never sent again
    if isinstance(error, ServerRefused):
        return _REFUSALS.get(error.code)
    if isinstance(error, RedisUnavailable):
        cause: BaseException | None = error.__cause__
        for _ in range(4):  # the wire's error, from redis-py's, from the sentinel's
            if cause is None:
                break
            if type(cause).__name__ == _NO_PRIMARY:
                return "no_primary"
            cause = cause.__cause__ or cause.__context__
        return "connect"
    if isinstance(error, ScriptBusyError):
        return "busy"
    return None


def pause(attempt: int, left: float) -> float | None:
    """Seconds to wait before sending a call again for the ``attempt``-th time (0 first);
    None when ``left`` (seconds until the deadline) is used up."""
    if left <= 0:
        return None
    step = min(LONGEST_PAUSE, FIRST_PAUSE * 2.0 ** min(attempt, 16))
    return min(left, step * (0.5 + random.random() / 2))  # noqa: S311 (jitter, not a secret)
