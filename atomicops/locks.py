"""Locks with owner tokens and fencing tokens, on one Lua script per operation.

Keys of the lock called ``name`` (one hash tag, so one cluster slot):

* ``<prefix>:lock:{name}``: a hash ``{owner, token}`` with the lease as its TTL. It
  exists exactly while someone holds the lock, so a bounded ``SCAN`` for
  ``<prefix>:lock:{*}`` finds every held lock (see :func:`list_locks`);
* ``<prefix>:lock:{name}:fence``: the fencing counter, ``INCR``-ed by the script that
  grants the lock. It never expires, so tokens keep increasing across acquisitions;
* ``<prefix>:lock:{name}:wake``: a list the release script pushes to, so blocked
  waiters (``BLPOP``) wake on release instead of polling.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from atomicops import connection, keys
from atomicops.exceptions import ConfigurationError, InvalidInput, RedisUnavailable

# Keys returned per SCAN call by list_locks: large enough that a few calls cover a
# typical keyspace, small enough that one call never blocks the server noticeably.
_SCAN_COUNT = 1000
_UNESCAPE = re.compile(r"%([0-9A-F]{2})")
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


@dataclass(frozen=True)
class LockInfo:
    """One held lock, as :func:`list_locks` read it (a snapshot, not a handle)."""

    name: str
    key: str
    owner: str | None
    fencing_token: int | None
    ttl_ms: int | None


def lock_key(name: str) -> str:
    """The key of the lock called ``name`` (already resolved, see :class:`Lock`)."""
    return keys.tagged("lock", name)


def _unescape(text: str) -> str:
    return _UNESCAPE.sub(lambda m: chr(int(m[1], 16)), text)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _lock_pattern() -> str:
    # The prefix is user configuration: glob characters in it must match literally.
    # Braces are literal in Redis globs; lock names are escaped, so a held lock's key
    # is the only atomicops key under ":lock:" that ends with "}".
    escaped = _GLOB_SPECIAL.sub(r"\\\1", keys.prefix())
    return escaped + ":lock:{*}"


def list_locks(*, client: Any = None, limit: int = 200) -> list[LockInfo]:
    """Held locks (at most ``limit``), sorted by name: for dashboards and tools.

    Not atomic: a bounded ``SCAN`` (``MATCH <prefix>:lock:{*}``, ``COUNT`` 1000, stopping
    once ``limit`` locks are found; never ``KEYS``) and then one pipelined round trip of
    ``HMGET``/``PTTL`` for the keys found. A lock released in between is left out.
    Read-only. Raises :class:`InvalidInput` for a bad ``limit`` and
    :class:`RedisUnavailable` when the server cannot be read.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidInput(f"list_locks(): limit must be an int >= 1, got {limit!r}")
    client = connection.get_client(client)
    if connection.is_pipeline(client) or connection.is_async(client):
        raise ConfigurationError("list_locks() needs a synchronous client, not a pipeline")
    pattern = _lock_pattern()
    found: dict[str, None] = {}  # SCAN may return a key twice
    try:
        for raw in client.scan_iter(match=pattern, count=_SCAN_COUNT):
            found[_text(raw) or ""] = None
            if len(found) >= limit:
                break
        if not found:
            return []
        pipe = client.pipeline(transaction=False)
        for key in found:
            pipe.hmget(key, "owner", "token")
            pipe.pttl(key)
        replies = pipe.execute(raise_on_error=False)
    except RedisError as exc:
        raise RedisUnavailable(f"list_locks(): cannot read locks: {exc}") from exc
    result = []
    head = len(f"{keys.prefix()}:lock:")
    for index, key in enumerate(found):
        fields, pttl = replies[2 * index], replies[2 * index + 1]
        if isinstance(fields, Exception) or isinstance(pttl, Exception):
            continue  # not a lock hash (another program's key matched the pattern)
        if pttl == -2:
            continue  # released between SCAN and HMGET
        owner, token = fields
        result.append(
            LockInfo(
                name=_unescape(key[head + 1 : -1]),
                key=key,
                owner=_text(owner),
                fencing_token=None if token is None else int(token),
                ttl_ms=None if pttl < 0 else int(pttl),
            )
        )
    result.sort(key=lambda info: info.name)
    return result
