"""What the replication settings ask of every script call (docs/replication.md).

``READ_FROM_REPLICAS`` sends read-only scripts to a replica; ``WAIT_REPLICAS`` and
``WAIT_TIMEOUT_MS`` put ``WAIT n t`` right after every write script, in the same round
trip. :data:`active` is what :mod:`atomicops.scripts.registry` reads on each call: ``None`` when
both are off, so a call without them pays one ``None`` check. It is worked out from the
settings when Django starts (``AppConfig.ready``) and again on ``setting_changed``, never
per call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from django.core.signals import setting_changed

from atomicops.conf import get_settings
from atomicops.engine.ops import text
from atomicops.exceptions import ConfigurationError, NotReplicated


class Policy(NamedTuple):
    """The replication settings, as the registry uses them."""

    wait: tuple[str, int, int] | None  # ("WAIT", n, timeout_ms) after every write, or None
    replica_reads: bool  # read-only scripts go to a replica
    error: ConfigurationError | None = None  # settings that cannot work: raised per call


active: Policy | None = None


def refresh() -> None:
    """Work :data:`active` out from the settings again.

    Unusable settings do not raise here (``ready()`` must not fail a process; ``manage.py
    check`` reports them): every script call raises their :class:`ConfigurationError`
    instead, so a write is never sent without the WAIT it was configured to have.
    """
    global active
    from atomicops.engine.connection import check_replication_settings

    conf = get_settings()
    try:
        check_replication_settings(conf)
    except ConfigurationError as exc:
        active = Policy(None, False, exc)
        return
    wanted = conf["WAIT_REPLICAS"]
    reads = conf["READ_FROM_REPLICAS"]
    if not wanted and not reads:
        active = None
        return
    active = Policy(("WAIT", wanted, conf["WAIT_TIMEOUT_MS"]) if wanted else None, reads)


def replicated(acked: Any, wait: Sequence[Any]) -> bool:
    """Whether ``WAIT``'s reply ``acked`` says enough replicas have the write."""
    return isinstance(acked, int) and acked >= int(wait[1])


def not_replicated(
    script: str, key: Any, acked: Any, wait: Sequence[Any], result: Any
) -> NotReplicated:
    """The error of a write that was applied but not acknowledged by ``WAIT`` as asked
    (``acked``: WAIT's reply, or the error the server refused it with)."""
    required = int(wait[1])
    if isinstance(acked, Exception):
        why, acked = f"the server refused WAIT ({acked})", 0
    else:
        why = f"{acked} of {required} replicas acknowledged it within {wait[2]} ms"
    key = text(key)
    return NotReplicated(
        f"script {script!r}"
        + (f" on key {key!r}" if key is not None else "")
        + f" WAS applied on the primary, but {why}: a failover before it reaches a replica "
        "may lose it. Do not send it again blindly (it was applied).",
        acked=int(acked),
        required=required,
        result=result,
        script=script,
        key=key,
    )


def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting == "ATOMICOPS":
        refresh()


setting_changed.connect(_reset, dispatch_uid="atomicops.engine.replication.reset")
