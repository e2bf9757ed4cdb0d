"""atomicops: atomic primitives for Django on Redis, one Lua script per operation."""

from atomicops.exceptions import (
    AtomicOpsError,
    ConfigurationError,
    CrossSlotError,
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
)
from atomicops.keys import key_for
from atomicops.registry import Script, ScriptRegistry, registry

__version__ = "0.1.0"

__all__ = [
    "__version__",
    # registry
    "registry",
    "Script",
    "ScriptRegistry",
    # keys
    "key_for",
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
