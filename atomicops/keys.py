"""Key building: the configured prefix, model instances, hash tags and escaping.

A key argument anywhere in atomicops is either a string (used exactly as given) or a
pair ``(instance, name)``, which becomes ``<prefix>:{<app>.<model>:<pk>}:<name>``. The
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
    return f"{prefix()}:{kind}:{{{text}}}"


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
    return f"{prefix()}:{{{meta.app_label}.{meta.model_name}:{escape(instance.pk)}}}:{escape(name)}"


def resolve_key(key: KeyLike) -> str | bytes:
    """Turn a key argument (a string or an ``(instance, name)`` pair) into a key."""
    if isinstance(key, (str, bytes)):
        if not key:
            raise InvalidInput("key must not be empty")
        return key
    if isinstance(key, tuple) and len(key) == 2:
        return key_for(*key)
    raise InvalidInput(f"a key is a string or an (instance, name) pair, got {key!r}")
