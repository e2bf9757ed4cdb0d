"""atomicops: atomic primitives for Django on Redis, one Lua script per operation."""

from atomicops.batch import AsyncBatch, Batch, BatchResult, abatch, batch
from atomicops.cas import (
    acompare_and_delete,
    acompare_and_set,
    compare_and_delete,
    compare_and_set,
)
from atomicops.counters import (
    CounterResult,
    abounded_decr,
    abounded_incr,
    aget_counter,
    aincr,
    aincr_float,
    areset_counter,
    bounded_decr,
    bounded_incr,
    get_counter,
    incr,
    incr_float,
    reset_counter,
)
from atomicops.decorators import rate_limit
from atomicops.descriptors import AtomicCounter, BoundCounter
from atomicops.exceptions import (
    AtomicOpsError,
    BatchNotSent,
    ConfigurationError,
    CrossSlotError,
    DataError,
    InvalidInput,
    LockError,
    LockNotAcquired,
    LockNotOwned,
    NotReplicated,
    OutcomeUnknown,
    RateLimited,
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
from atomicops.fairlock import FairLock
from atomicops.flushcheck import FlushCheckRow, flush_check
from atomicops.getorset import aget_or_set, get_or_set
from atomicops.idempotency import idempotent
from atomicops.keys import key_for
from atomicops.locks import Lock, LockInfo, LockScan, list_locks, locked, scan_locks
from atomicops.metrics import metrics_view
from atomicops.multilock import MultiLock
from atomicops.ratelimit import (
    RateLimitResult,
    aexact_window,
    afixed_window,
    asliding_window,
    atoken_bucket,
    exact_window,
    fixed_window,
    sliding_window,
    token_bucket,
)
from atomicops.registry import Script, ScriptRegistry, registry
from atomicops.rwlock import ReadWriteLock
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
    # counters
    "bounded_incr",
    "abounded_incr",
    "bounded_decr",
    "abounded_decr",
    "incr",
    "aincr",
    "incr_float",
    "aincr_float",
    "get_counter",
    "aget_counter",
    "reset_counter",
    "areset_counter",
    "CounterResult",
    "AtomicCounter",
    "BoundCounter",
    # compare-and-set
    "compare_and_set",
    "acompare_and_set",
    "compare_and_delete",
    "acompare_and_delete",
    # rate limits
    "fixed_window",
    "afixed_window",
    "sliding_window",
    "asliding_window",
    "exact_window",
    "aexact_window",
    "token_bucket",
    "atoken_bucket",
    "RateLimitResult",
    "RateLimited",
    "rate_limit",
    # batches: many calls, one round trip per server
    "batch",
    "abatch",
    "Batch",
    "AsyncBatch",
    "BatchResult",
    "BatchNotSent",
    # idempotency keys and stampede-free caching
    "idempotent",
    "get_or_set",
    "aget_or_set",
    # locks and semaphores
    "Lock",
    "FairLock",
    "MultiLock",
    "ReadWriteLock",
    "locked",
    "Semaphore",
    "LockInfo",
    "list_locks",
    "LockScan",
    "scan_locks",
    "LockError",
    "LockNotAcquired",
    "LockNotOwned",
    # operations (manage.py atomicops_flush_check, the admin's flush action)
    "metrics_view",
    "flush_check",
    "FlushCheckRow",
    # errors
    "AtomicOpsError",
    "ConfigurationError",
    "CrossSlotError",
    "DataError",
    "InvalidInput",
    "NotReplicated",
    "OutcomeUnknown",
    "ReadOnlyViolation",
    "RedisUnavailable",
    "RegistryError",
    "ScriptBusyError",
    "ScriptCompileError",
    "ScriptError",
    "ScriptHeaderError",
    "ServerLoading",
    "ServerOutOfMemory",
    "ServerRefused",
]
