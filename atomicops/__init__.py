"""atomicops: atomic primitives for Django on Redis, one Lua script per operation."""

from atomicops.decorators import rate_limit
from atomicops.exceptions import (
    AtomicOpsError,
    ConfigurationError,
    CrossSlotError,
    DataError,
    InvalidInput,
    LockError,
    LockNotAcquired,
    LockNotOwned,
    OutcomeUnknown,
    RateLimited,
    ReadOnlyViolation,
    RedisUnavailable,
    RegistryError,
    ScriptBusyError,
    ScriptCompileError,
    ScriptError,
    ScriptHeaderError,
)
from atomicops.keys import key_for
from atomicops.locks import Lock, LockInfo, list_locks, locked
from atomicops.ratelimit import (
    RateLimitResult,
    afixed_window,
    asliding_window,
    atoken_bucket,
    fixed_window,
    sliding_window,
    token_bucket,
)
from atomicops.registry import Script, ScriptRegistry, registry
from atomicops.semaphores import Semaphore

__version__ = "0.1.0"

__all__ = [
    "__version__",
    # registry
    "registry",
    "Script",
    "ScriptRegistry",
    # keys
    "key_for",
    # rate limits
    "fixed_window",
    "afixed_window",
    "sliding_window",
    "asliding_window",
    "token_bucket",
    "atoken_bucket",
    "RateLimitResult",
    "RateLimited",
    "rate_limit",
    # locks and semaphores
    "Lock",
    "locked",
    "Semaphore",
    "LockInfo",
    "list_locks",
    "LockError",
    "LockNotAcquired",
    "LockNotOwned",
    # errors
    "AtomicOpsError",
    "ConfigurationError",
    "CrossSlotError",
    "DataError",
    "InvalidInput",
    "OutcomeUnknown",
    "ReadOnlyViolation",
    "RedisUnavailable",
    "RegistryError",
    "ScriptBusyError",
    "ScriptCompileError",
    "ScriptError",
    "ScriptHeaderError",
]
