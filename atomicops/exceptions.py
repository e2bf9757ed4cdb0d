"""Every error atomicops raises derives from :class:`AtomicOpsError`.

Each carries the context a caller needs to act on it: the key, the script name and,
where one came back, the server's message. redis-py's errors are chained with
``raise ... from`` so nothing is lost, but none of them reaches a caller bare.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from atomicops.engine.redaction import redact_text


class AtomicOpsError(Exception):
    """Root of all atomicops errors."""

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        script: str | None = None,
        server_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.key = key
        self.script = script
        self.server_message = server_message


class ConfigurationError(AtomicOpsError):
    """The ATOMICOPS setting or the cache it points at cannot give a Redis client.

    Its message passes through :func:`atomicops.engine.redaction.redact_text`: a setting's
    URL quoted in it, or a library's words about one, never shows a password or token.
    """

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(redact_text(message), **context)


class InvalidInput(AtomicOpsError, ValueError):
    """An argument is out of range or of the wrong type; nothing was sent."""


class RegistryError(AtomicOpsError):
    """A script name is unknown, or registered twice with different sources."""


class ScriptHeaderError(RegistryError):
    """A ``.lua`` file's header comment cannot be read."""


class ScriptError(AtomicOpsError):
    """Redis rejected a script call; ``server_message`` quotes Redis."""


class ScriptCompileError(ScriptError):
    """The script's Lua does not compile."""


class ReadOnlyViolation(ScriptError):
    """A script registered as read-only tried to write."""


class ScriptBusyError(ScriptError):
    """Another script has been running past the busy threshold (BUSY)."""


class DataError(ScriptError):
    """The value stored at a key is not what the operation needs (type, integer, range)."""


class LockError(AtomicOpsError):
    """A lock or semaphore operation failed."""


class LockNotOwned(LockError):
    """The caller no longer holds the lock (expired, released or taken over); nothing changed."""


class LockNotAcquired(LockError):
    """The lock could not be acquired (non-blocking, or the timeout passed)."""


class RateLimited(AtomicOpsError):
    """A rate limit rejected the hit; ``result`` says when to retry.

    Raised by ``RateLimitResult.raise_for_limit()`` for service code outside views;
    ``atomicops.middleware.RateLimitMiddleware`` turns it into a 429 response.
    """

    def __init__(self, message: str, *, result: Any, key: str | None = None) -> None:
        super().__init__(message, key=key)
        self.result = result

    @property
    def retry_after_ms(self) -> int:
        """Milliseconds until the same hit could be allowed (if nothing else uses the limit)."""
        return int(self.result.retry_after_ms)


class BatchNotSent(AtomicOpsError):
    """A batched call's ``.result()`` was asked for before its batch was sent: still
    inside the ``with batch()`` block, or the block raised and nothing was sent."""


class CrossSlotError(AtomicOpsError):
    """Keys of one call hash to different cluster slots; nothing was sent."""

    def __init__(self, message: str, *, keys: Sequence[str], script: str | None = None):
        super().__init__(message, key=keys[0] if keys else None, script=script)
        self.keys = list(keys)


class RedisUnavailable(AtomicOpsError):
    """The server could not serve the call: unreachable, or it refused before running it.

    Nothing was applied, except for the child :class:`OutcomeUnknown`, which says the
    outcome is not known. ``except RedisUnavailable`` catches both on purpose: neither
    call gave an answer; only ``OutcomeUnknown`` needs the data checked before a retry.
    """


class ServerRefused(RedisUnavailable):
    """The server answered with a refusal before running the call; nothing was applied.

    ``code`` is the server's error code: ``LOADING``, ``OOM``, ``READONLY``, ``MOVED``,
    ``ASK``, ``TRYAGAIN``, ``CLUSTERDOWN``, ``MASTERDOWN``, ``NOREPLICAS``... Sending the
    same call again later is safe.
    """

    def __init__(self, message: str, *, code: str, **context: Any) -> None:
        super().__init__(message, **context)
        self.code = code


class ServerLoading(ServerRefused):
    """The server is loading its data after a restart (``LOADING``); nothing was applied."""


class ServerOutOfMemory(ServerRefused):
    """The server is at ``maxmemory`` and refused the write (``OOM``); nothing was applied."""


class OutcomeUnknown(RedisUnavailable):
    """A write script was sent but its reply never came: it may or may not have run.

    atomicops never re-sends a write after this, because a late reply can mean the
    script already ran. Check the data (or make the operation idempotent) before
    trying again.
    """


class NotReplicated(AtomicOpsError):
    """A write ran on the primary, but fewer replicas than ``WAIT_REPLICAS`` confirmed it
    within ``WAIT_TIMEOUT_MS``.

    The write WAS applied (do not send it again blindly): it is on the primary, and a
    failover before it reaches a replica may lose it. ``acked`` replicas confirmed it,
    ``required`` were asked for; ``result`` is what the call would have returned.
    """

    def __init__(
        self, message: str, *, acked: int, required: int, result: Any = None, **context: Any
    ) -> None:
        super().__init__(message, **context)
        self.acked = acked
        self.required = required
        self.result = result
