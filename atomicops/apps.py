from __future__ import annotations

import logging
import threading

from django.apps import AppConfig
from django.core.signals import request_started

logger = logging.getLogger("atomicops")


class AtomicOpsConfig(AppConfig):
    name = "atomicops"
    verbose_name = "atomicops"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        # Filling the registry reads files only: no network I/O at startup.
        from atomicops import checks  # noqa: F401  (registers the system checks)
        from atomicops.conf import get_settings
        from atomicops.scripts.registry import registry

        conf = get_settings()
        registry.discover(all_apps=conf["DISCOVER_SCRIPTS"], overrides=conf["OVERRIDE_SCRIPTS"])
        if conf["LOAD_ON_STARTUP"]:
            request_started.connect(_load_on_first_request, dispatch_uid=_UID)
        # Sinks for Prometheus / OpenTelemetry when installed; the timeline's flusher
        # thread, which only writes once this process has counted something.
        from atomicops.engine import replication
        from atomicops.ops import observe, timeline

        observe.configure()
        replication.refresh()  # READ_FROM_REPLICAS / WAIT_REPLICAS, read once, not per call
        from atomicops.primitives import autopipeline

        autopipeline.refresh()  # AUTO_PIPELINE, read once, not per call
        timeline.flusher.start()


_UID = "atomicops.load_on_first_request"


def _load_on_first_request(sender: object, **kwargs: object) -> None:
    """Load every script once per process, off the request thread.

    A web worker calls this on its first request. Loading in a thread means a dead
    server costs that request nothing; the script calls themselves carry the loads
    too (see registry), so a failure here only costs a warning.
    """
    request_started.disconnect(dispatch_uid=_UID)
    threading.Thread(target=load_quietly, name="atomicops-load", daemon=True).start()


def load_quietly() -> bool:
    from atomicops.exceptions import AtomicOpsError
    from atomicops.scripts.registry import registry

    try:
        registry.load_all()
    except AtomicOpsError as exc:
        logger.warning("atomicops: scripts not loaded at startup (%s); calls will load them", exc)
        return False
    return True
