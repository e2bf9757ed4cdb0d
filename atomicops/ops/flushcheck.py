"""Prove that registered scripts survive losing the server's script cache.

:func:`flush_check` is what ``manage.py atomicops_flush_check`` and the admin's flush
action run. For every registered script it:

1. loads all scripts (``SCRIPT LOAD``) and records ``SCRIPT EXISTS`` (*before*);
2. runs ``SCRIPT FLUSH`` on the server that will serve the probe (skipped with
   ``flush=False``); flushing before *each* probe is what makes every probe take the
   NOSCRIPT fallback itself, instead of only the first one (the fallback reloads all
   scripts at once);
3. calls the script with the ARGV of its header's ``-- probe:`` line, on scratch keys
   ``<KEY_PREFIX>:__probe__:{<uuid>}:<key name>`` (one hash tag, so one cluster slot),
   deleted right afterwards; user data is never read or written;
4. records whether the call went through the fallback and ``SCRIPT EXISTS`` (*after*).

A flush empties the whole script cache of that server, including scripts other
applications loaded there; they pay one NOSCRIPT fallback each afterwards (clients that
only use ``EVALSHA`` without a fallback break). Use ``flush=False`` on a shared server
you do not own.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from atomicops.engine import compat, connection, topology, wire
from atomicops.engine.ops import Context, Send
from atomicops.exceptions import AtomicOpsError, ConfigurationError, RedisUnavailable
from atomicops.primitives import keys
from atomicops.scripts.registry import Script, ScriptRegistry

PROBE_KIND = "__probe__"

# Row results: the probe ran after a flush and came back through the fallback / the
# script was found cached (no flush, or another client reloaded it first) / the script
# declares no probe / something went wrong (see ``error``).
RECOVERED = "recovered"
CACHED = "cached"
NO_PROBE = "no probe"
FAILED = "failed"


@dataclass(frozen=True)
class FlushCheckRow:
    """What the flush check found for one script."""

    name: str
    sha: str
    app: str | None
    before: bool
    after: bool | None
    fallbacks: int
    result: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.result != FAILED

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def primaries(client: Any) -> list[Any]:
    """The plain clients whose script caches matter: each primary of a cluster, or ``client``."""
    return [target for _, target in topology.primaries(client)]


def script_exists(target: Any, shas: Sequence[str], where: str | None = None) -> list[bool]:
    """``SCRIPT EXISTS`` on one server (named ``where`` in errors), in one round trip."""
    if not shas:
        return []
    what = "SCRIPT EXISTS" + (f" on {where}" if where else "")
    context = Context(what, write=False, script=False)
    [reply] = wire.roundtrip(Send(target, [("SCRIPT EXISTS", *shas)], context))
    if isinstance(reply, Exception):
        raise RedisUnavailable(f"{what} failed: {reply}") from reply
    return [bool(found) for found in reply]


def probe_keys(script: Script, client: Any = None, on: str | None = None) -> list[str]:
    """Scratch keys for one probe of ``script``: reserved prefix, one fresh hash tag.

    ``on``: the cluster primary (``host:port``) whose slot the tag should land in, so
    the probes of a flush check go round every primary.
    """
    for _ in range(200):  # a third of the tags land on each of three primaries
        tag = uuid.uuid4().hex
        scratch = [
            f"{keys.prefix()}:{PROBE_KIND}:{{{tag}}}:{keys.escape(name)}" for name in script.keys
        ]
        if on is None or not scratch or topology.owner_name(client, scratch) == on:
            break
    return scratch


def flush_check(
    *, client: Any = None, flush: bool = True, registry: ScriptRegistry | None = None
) -> list[FlushCheckRow]:
    """Flush the script cache and prove every registered script recovers; one row each.

    Not atomic, and it changes the server: ``SCRIPT FLUSH`` once per probed script
    (unless ``flush=False``) and a few scratch keys that are deleted again. Round trips:
    two for loading, then about four per script. Only registered scripts run, each with
    its header's probe. A script that fails is reported in its row (``result ==
    "failed"``), not raised. Raises :class:`RedisUnavailable` when the server cannot be
    reached and :class:`ConfigurationError` without a usable client.
    """
    if registry is None:
        from atomicops.scripts.registry import registry as default_registry

        registry = default_registry
    client = connection.get_client(client)
    if connection.is_pipeline(client) or connection.is_async(client):
        raise ConfigurationError("flush_check() needs a synchronous client, not a pipeline")
    scripts = list(registry)
    load_errors: dict[str, str] = {}
    try:
        registry.load_all(client)
    except RedisUnavailable:
        raise
    except AtomicOpsError:
        # load_all names only the first script that failed; ask each missing one below.
        pass
    servers = topology.primaries(client)
    before = [all(found) for found in zip(*_exists_on(servers, scripts), strict=True)]
    for script, loaded in zip(scripts, before, strict=True):
        if not loaded:
            load_errors[script.name] = _load_error(servers, script)

    rows = []
    # On a cluster the probes take the primaries in turn: each one's cache is flushed
    # and proved to recover.
    names = (
        [name for name, _ in topology.primaries(client)] if compat.is_cluster_client(client) else []
    )
    probed = 0
    for script, loaded in zip(scripts, before, strict=True):
        if not loaded:
            rows.append(_row(script, False, None, 0, FAILED, load_errors[script.name]))
        elif script.probe is None:
            rows.append(_row(script, True, None, 0, NO_PROBE))
        else:
            on = names[probed % len(names)] if names else None
            rows.append(_probe(script, client, flush, on))
            probed += 1
    if flush:
        # Leave every script loaded (scripts without a probe too) and, on a cluster,
        # every primary in step; only failures that already show in rows can occur.
        try:
            registry.load_all(client)
        except RedisUnavailable:
            raise
        except AtomicOpsError:
            pass
    return rows


def _row(
    script: Script,
    before: bool,
    after: bool | None,
    fallbacks: int,
    result: str,
    error: str | None = None,
) -> FlushCheckRow:
    return FlushCheckRow(
        name=script.name,
        sha=script.sha,
        app=script.app,
        before=before,
        after=after,
        fallbacks=fallbacks,
        result=result,
        error=error,
    )


def _exists_on(servers: list[tuple[str, Any]], scripts: list[Script]) -> list[list[bool]]:
    shas = [script.sha for script in scripts]
    found = [script_exists(server, shas, name) for name, server in servers]
    return found or [[False] * len(scripts)]


def _load_error(servers: list[tuple[str, Any]], script: Script) -> str:
    context = Context(script.name, write=False)
    for name, server in servers:
        [reply] = wire.roundtrip(Send(server, [("SCRIPT LOAD", script.source)], context))
        if isinstance(reply, Exception):
            message = script.error_from_reply(reply).message
            return f"{message} (on {name})" if len(servers) > 1 else message
    # Loaded now, but was missing right after load_all: another client flushed meanwhile.
    return "not cached right after SCRIPT LOAD (flushed meanwhile?)"


def _probe(script: Script, client: Any, flush: bool, on: str | None = None) -> FlushCheckRow:
    probe_args = script.probe or ()
    scratch = probe_keys(script, client, on)
    target = topology.target_for(client, scratch, script.name)
    where = f" on {on}" if on else ""
    context = Context(script.name, scratch[0] if scratch else None, write=False)
    if flush:
        [reply] = wire.roundtrip(Send(target, [("SCRIPT FLUSH",)], context))
        if isinstance(reply, Exception):
            return _row(script, True, None, 0, FAILED, f"SCRIPT FLUSH{where} failed: {reply}")
    fallbacks = script.stats["fallbacks"]
    error = None
    try:
        script(scratch, probe_args, client=client)
    except RedisUnavailable:
        raise
    except AtomicOpsError as exc:
        error = exc.message
    finally:
        if scratch:
            # DEL is idempotent, so the read-only context (one retry) is fine here.
            wire.roundtrip(Send(target, [("DEL", *scratch)], context))
    went_through = script.stats["fallbacks"] - fallbacks
    [after] = script_exists(target, [script.sha], on)
    if error is not None:
        return _row(script, True, after, went_through, FAILED, f"probe{where} failed: {error}")
    if not after:
        return _row(
            script, True, after, went_through, FAILED, f"not cached again{where} after the probe"
        )
    return _row(script, True, after, went_through, RECOVERED if went_through else CACHED)
