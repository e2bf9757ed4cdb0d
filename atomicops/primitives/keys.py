"""Key building: the configured prefix, model instances, hash tags and escaping.

A key argument anywhere in atomicops is either a string (used exactly as given) or a
pair ``(instance, name)``, which becomes ``<prefix>:{<app>.<model>:<pk>}:<name>``.
A plain string that starts with ``<KEY_PREFIX>:`` names one of atomicops' own keys (a
rate limit's count, a lock's fence): the counter, compare-and-set and rate-limit
functions refuse it (:func:`resolve_key`), unless it came from one of the builders here,
which return a :class:`BuiltKey`. The
braces are a Redis Cluster hash tag, so every key of one object lands in one slot and
a script may touch several of them in one call. Parts that come from users (a pk, a
name, an IP address) are escaped so they cannot close the tag, open another one, or
smuggle control characters into the key.
"""

from __future__ import annotations

from typing import Any

from atomicops.conf import get_settings
from atomicops.exceptions import InvalidInput

KeyLike = str | bytes | tuple[Any, str]


class BuiltKey(str):
    """A key made by one of atomicops' builders (:func:`tagged`, :func:`key_for`,
    :func:`prefixed`): the only strings under ``<KEY_PREFIX>:`` that the counter,
    compare-and-set and rate-limit functions accept.

    A ``str`` in every other way. Text made from it (an f-string, ``+``, slicing) is a
    plain ``str`` again, so a key built from a user's input by concatenation stays
    refused.
    """

    __slots__ = ()


# Only these change meaning inside a key: braces move the cluster hash slot, "%" is
# our escape character, control characters make keys unreadable in logs and tools.
_ESCAPE = {c: f"%{c:02X}" for c in [*range(0x20), 0x7F, ord("%"), ord("{"), ord("}")]}


# For the parts of a name built from an (instance, name) pair: ":" separates the parts,
# so a pk or a name containing ":" must not be able to pass for another pair's parts.
_ESCAPE_PART = {**_ESCAPE, ord(":"): "%3A"}


def escape(part: object) -> str:
    """Return ``part`` as text that cannot leave its place in a key."""
    return str(part).translate(_ESCAPE)


def escape_part(part: object) -> str:
    """:func:`escape`, and ``:`` too: for one ``:``-separated part of a built name."""
    return str(part).translate(_ESCAPE_PART)


def prefix() -> str:
    return str(get_settings()["KEY_PREFIX"])


def tagged(kind: str, name: object, *, escaped: bool = False) -> str:
    """``<prefix>:<kind>:{<name>}``: an atomicops-owned key with ``name`` as hash tag.

    ``escaped=True`` takes ``name`` as already escaped (built from escaped parts).
    """
    text = str(name) if escaped else escape(name)
    if not text:
        raise InvalidInput(f"{kind} name must not be empty")
    return BuiltKey(f"{prefix()}:{kind}:{{{text}}}")


def prefixed(kind: str, name: object) -> BuiltKey:
    """``<prefix>:<kind>:<name>``, ``name`` escaped: a key of your own code's under
    ``KEY_PREFIX`` that the counter, compare-and-set and rate-limit functions accept.

    For keys that code, not a request, chooses (the demo's race counter). ``kind`` is
    taken as written; ``name`` is escaped as by :func:`escape`.
    """
    text = escape(name)
    if not kind or not text:
        raise InvalidInput(f"a prefixed key needs a kind and a name, got {kind!r}, {name!r}")
    return BuiltKey(f"{prefix()}:{kind}:{text}")


def saved_instance(instance: Any, name: Any, *, what: str) -> Any:
    """``instance._meta`` once ``instance`` is a saved model instance and ``name`` a
    non-empty string; :class:`InvalidInput` otherwise. ``what`` names the caller's thing
    in messages ("key", "lock")."""
    meta = getattr(instance, "_meta", None)
    if meta is None or isinstance(instance, type):
        # A model class has _meta too, but its .pk is a property object: its repr (a
        # memory address) would name a different key in every process.
        got = (
            f"the class {instance.__name__}"
            if isinstance(instance, type)
            else type(instance).__name__
        )
        raise InvalidInput(
            f"a {what} for an (instance, name) pair needs a model instance, got {got}"
        )
    if instance.pk is None:
        raise InvalidInput(
            f"cannot build the {what} {name!r} for an unsaved {meta.label} (pk is None); "
            "save it first"
        )
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"{what} name for {meta.label} must be a non-empty string, got {name!r}")
    return meta


def key_for(instance: Any, name: str) -> str:
    """Key for ``name`` on a saved model instance, e.g. ``key_for(article, "views")``."""
    meta = saved_instance(instance, name, what="key")
    return BuiltKey(
        f"{prefix()}:{{{meta.app_label}.{meta.model_name}:{escape(instance.pk)}}}:{escape(name)}"
    )


def reserved(key: str | bytes) -> bool:
    """Whether ``key`` is a plain string (or bytes) under ``<KEY_PREFIX>:``, not built
    by atomicops' builders: a name that could reach atomicops' own keys."""
    if isinstance(key, BuiltKey):
        return False
    head = prefix() + ":"
    if isinstance(key, bytes):
        return key.startswith(head.encode("utf-8", "surrogatepass"))
    return key.startswith(head)


def resolve_key(key: KeyLike) -> str | bytes:
    """Turn a key argument (a string or an ``(instance, name)`` pair) into a key.

    Raises :class:`InvalidInput` (nothing is sent) for an empty key, and for a plain
    string under ``<KEY_PREFIX>:`` (:func:`reserved`): counting, setting or resetting
    one would reach atomicops' own state, such as un-blocking a rate-limited client or
    deleting a held lock's fence. Keys from :func:`key_for`, :func:`tagged` and
    :func:`prefixed`, and ``(instance, name)`` pairs, are accepted.
    """
    if isinstance(key, (str, bytes)):
        if not key:
            raise InvalidInput("key must not be empty")
        if reserved(key):
            shown = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
            raise InvalidInput(
                f"key {shown!r} starts with KEY_PREFIX {prefix()!r}: atomicops' own keys "
                "are not reachable with a plain string (nothing was sent); use an "
                "(instance, name) pair, atomicops.key_for(), or a key outside the prefix",
                key=shown,
            )
        return key
    if isinstance(key, tuple) and len(key) == 2:
        return key_for(*key)
    raise InvalidInput(f"a key is a string or an (instance, name) pair, got {key!r}")
