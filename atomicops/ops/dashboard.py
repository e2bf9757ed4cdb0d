"""The admin dashboard's data and views: scripts, SHAs, server facts, locks, two actions.

Everything shown is read with fixed commands (``INFO``, ``SCRIPT EXISTS``, a ``SCAN``
bounded by work and time through :func:`atomicops.leases.locks.scan_locks`); the two actions only call
:meth:`ScriptRegistry.load_all` and :func:`atomicops.ops.flushcheck.flush_check` on the
scripts this process registered. Nothing a request carries is ever sent as Lua.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from redis.exceptions import RedisError

from atomicops.conf import get_settings
from atomicops.engine import compat, connection, topology, wire
from atomicops.engine.ops import Context, Send
from atomicops.engine.redaction import redact_text
from atomicops.exceptions import AtomicOpsError
from atomicops.leases.locks import LockScan, scan_locks
from atomicops.ops import chart, timeline
from atomicops.ops.flushcheck import FlushCheckRow, flush_check, primaries
from atomicops.ops.timeline import SCRIPT_FIELDS
from atomicops.scripts.header import Header
from atomicops.scripts.registry import Script

logger = logging.getLogger("atomicops")

VIEW_PERMISSION = "atomicops.view_dashboard"
LOAD_PERMISSION = "atomicops.load_scripts"
FLUSH_PERMISSION = "atomicops.flush_scripts"

# The last flush check's result, kept in the user's session for the page the POST
# redirects to: reloading that page shows the result again instead of flushing again.
FLUSH_RESULT_SESSION_KEY = "atomicops_flush_check"
FLUSH_RESULT_MAX_AGE = 600  # seconds; after that the result page sends back to the dashboard

# How many held locks the dashboard lists. scan_locks' default bounds (SCAN calls, keys
# read, one second) keep the page quick however many keys match the lock pattern.
LOCKS_SHOWN = 200


@dataclass
class ServerFacts:
    """One primary as the dashboard sees it; ``error`` set when it could not be read."""

    address: str
    product: str | None = None
    version: str | None = None
    cached_scripts: int | None = None
    used_memory_scripts: str | None = None
    exists: list[bool] | None = None
    error: str | None = None


@dataclass(frozen=True)
class ScriptRow:
    """A snapshot of one script for the template.

    Plain values on purpose: Django templates call callables they meet, and a
    :class:`Script` is callable (it would run its Lua while the page renders).
    """

    name: str
    sha: str
    meta: Header  # description, readonly, keys, args, returns, probe: plain values
    app: str | None
    origin: str | None
    source: str
    loaded: str
    loaded_everywhere: bool | None
    stats: dict[str, int] = field(default_factory=dict)
    # This process's retries of the script by reason ("loading": 3), the ones met only.
    retries: dict[str, int] = field(default_factory=dict)
    # The last hour, every process that flushed to this Redis (None: timeline not read).
    hour: dict[str, int] | None = None

    @classmethod
    def of(
        cls,
        script: Script,
        loaded: str,
        loaded_everywhere: bool | None,
        hour: dict[str, int] | None = None,
    ) -> ScriptRow:
        return cls(
            name=script.name,
            sha=script.sha,
            meta=script.meta,
            app=script.app,
            origin=script.origin,
            source=script.source,
            loaded=loaded,
            loaded_everywhere=loaded_everywhere,
            stats=dict(script.stats),
            retries={reason: n for reason, n in script.stats.reasons.items() if n},
            hour=hour,
        )


def address(client: Any) -> str:
    """``host:port/db`` or the unix socket path of a plain client, for display."""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
    if kwargs.get("path"):
        return f"unix:{kwargs['path']}"
    host = kwargs.get("host", "?")
    port = kwargs.get("port", "?")
    return f"{host}:{port}/{kwargs.get('db', 0)}"


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def read_server(client: Any, scripts: list[Script]) -> ServerFacts:
    """Version, script cache size and SCRIPT EXISTS of one server, in one round trip."""
    facts = ServerFacts(address=address(client))
    batch: list[tuple[Any, ...]] = [("INFO", "server"), ("INFO", "memory")]
    if scripts:
        batch.append(("SCRIPT EXISTS", *(script.sha for script in scripts)))
    try:
        context = Context("reading the server facts", write=False, script=False)
        replies = wire.roundtrip(Send(client, batch, context))
    except AtomicOpsError as exc:
        facts.error = redact_text(exc.message)
        return facts
    server, memory = replies[0], replies[1]
    if isinstance(server, dict):
        if server.get("valkey_version"):
            facts.product, facts.version = "Valkey", str(server["valkey_version"])
        else:
            facts.product, facts.version = "Redis", str(server.get("redis_version", "?"))
    if isinstance(memory, dict):
        if "number_of_cached_scripts" in memory:
            facts.cached_scripts = int(memory["number_of_cached_scripts"])
        if "used_memory_scripts_human" in memory:
            facts.used_memory_scripts = str(_text(memory["used_memory_scripts_human"]))
    if scripts:
        exists = replies[2]
        if isinstance(exists, Exception):
            facts.error = f"SCRIPT EXISTS failed: {exists}"
        else:
            facts.exists = [bool(found) for found in exists]
    return facts


def _loaded(index: int, servers: list[ServerFacts]) -> tuple[str, bool | None]:
    known = [facts.exists[index] for facts in servers if facts.exists is not None]
    if not servers or len(known) < len(servers):
        return "unknown", None
    count = sum(known)
    if len(servers) == 1:
        return ("yes" if count else "no"), bool(count)
    text = f"{count}/{len(servers)} primaries"
    if 0 < count < len(servers):  # name the ones that lack it (each has its own cache)
        missing = [facts.address for facts, found in zip(servers, known, strict=True) if not found]
        text += f" (not on {', '.join(missing)})"
    return text, count == len(servers)


def collect(client: Any = None) -> dict[str, Any]:
    """Everything the dashboard shows, as template context. Never raises for Redis errors."""
    from atomicops.scripts.registry import registry

    scripts = list(registry)
    context: dict[str, Any] = {
        "source": None,
        "connection_error": None,
        "servers": [],
        "locks": None,
        "locks_error": None,
        "lock_scan": None,
        "locks_limit": LOCKS_SHOWN,
        "discovery_errors": [
            *((path, error.message) for path, error in registry.discovery_errors),
            *((clash.ignored, clash.message) for clash in registry.discovery_clashes),
        ],
        "override_errors": [error.message for error in registry.override_errors],
    }
    try:
        context["source"] = "client=" if client is not None else connection.describe_source()
        client = connection.get_client(client)
        targets = primaries(client)
    except (AtomicOpsError, RedisError, OSError) as exc:
        # ConfigurationError, or a cluster client that cannot reach its nodes.
        context["connection_error"] = redact_text(getattr(exc, "message", None) or str(exc))
        targets = []
    servers = [read_server(target, scripts) for target in targets]
    if targets and compat.is_cluster_client(client):
        for facts, (name, _) in zip(servers, topology.primaries(client), strict=True):
            facts.address = name
    context["servers"] = servers
    context.update(_timeline(client if targets else None))
    hour = context["timeline"].scripts if context["timeline"] is not None else None
    rows = []
    for index, script in enumerate(scripts):
        text, everywhere = _loaded(index, servers)
        sums = None if hour is None else hour.get(script.name, dict.fromkeys(SCRIPT_FIELDS, 0))
        rows.append(ScriptRow.of(script, text, everywhere, sums))
    context["scripts"] = rows
    if targets and not any(facts.error for facts in servers):
        context["lock_scan"], context["locks_error"] = _locks(client)
        if context["lock_scan"] is not None:
            context["locks"] = list(context["lock_scan"].locks)
    elif targets:
        context["locks_error"] = "server unreachable"
    return context


def _timeline(client: Any) -> dict[str, Any]:
    """The last hour of every process (:mod:`atomicops.ops.timeline`) and its chart."""
    found: dict[str, Any] = {"timeline": None, "timeline_error": None, "chart": None}
    found["timeline_interval"] = timeline.interval()
    found["timeline_on"] = found["timeline_interval"] > 0
    if client is None or not found["timeline_on"]:
        return found
    try:
        timeline.flusher.flush(client)  # this process's own counts belong on the page too
    except AtomicOpsError as exc:
        logger.debug("atomicops: dashboard could not flush this process's counts: %s", exc)
    try:
        read = timeline.read(client)
    except AtomicOpsError as exc:
        found["timeline_error"] = exc.message
        return found
    found["timeline"] = read
    found["chart"] = chart.render(read)
    found["timeline_rows"] = [(chart.minute_label(m.start), m) for m in reversed(read.minutes)]
    found["rate_limit_groups"] = sorted(read.groups.items())
    return found


def _locks(client: Any) -> tuple[LockScan | None, str | None]:
    try:
        return scan_locks(client=client, limit=LOCKS_SHOWN), None
    except AtomicOpsError as exc:
        return None, exc.message


# -- views (called by DashboardAdmin, inside admin_site.admin_view) ----------------------


def _context(model_admin: Any, request: HttpRequest, title: str) -> dict[str, Any]:
    opts = model_admin.model._meta
    return {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "opts": opts,
        "app_label": opts.app_label,
        "key_prefix": get_settings()["KEY_PREFIX"],
        "can_load": request.user.has_perm(LOAD_PERMISSION),
        "can_flush": request.user.has_perm(FLUSH_PERMISSION),
        "dashboard_url": reverse(f"{model_admin.admin_site.name}:atomicops_dashboard_changelist"),
        "load_url": reverse(f"{model_admin.admin_site.name}:atomicops_dashboard_load"),
        "flush_url": reverse(f"{model_admin.admin_site.name}:atomicops_dashboard_flush_check"),
    }


def dashboard(model_admin: Any, request: HttpRequest) -> HttpResponse:
    """GET: the dashboard. Needs ``atomicops.view_dashboard``."""
    if not request.user.has_perm(VIEW_PERMISSION):
        raise PermissionDenied
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    context = {**_context(model_admin, request, "atomicops dashboard"), **collect()}
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/atomicops/dashboard.html", context)


def load(model_admin: Any, request: HttpRequest) -> HttpResponse:
    """POST: load every registered script. Needs ``atomicops.load_scripts``."""
    from atomicops.scripts.registry import registry

    if not (request.user.has_perm(VIEW_PERMISSION) and request.user.has_perm(LOAD_PERMISSION)):
        raise PermissionDenied
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        loaded = registry.load_all()
    except AtomicOpsError as exc:
        messages.error(request, f"Loading the scripts failed: {exc.message}")
    else:
        logger.info("atomicops: %s loaded %d scripts from the admin", request.user, len(loaded))
        messages.success(request, f"Loaded {len(loaded)} scripts onto the server.")
    return HttpResponseRedirect(
        reverse(f"{model_admin.admin_site.name}:atomicops_dashboard_changelist")
    )


def flush(model_admin: Any, request: HttpRequest) -> HttpResponse:
    """POST: flush the script cache, run the flush check and redirect to its result.
    GET: that result (kept in the session for :data:`FLUSH_RESULT_MAX_AGE` seconds), or
    back to the dashboard. Needs ``atomicops.flush_scripts``.

    Post/redirect/get: a reload of the result page must not run SCRIPT FLUSH again.
    """
    if not (request.user.has_perm(VIEW_PERMISSION) and request.user.has_perm(FLUSH_PERMISSION)):
        raise PermissionDenied
    site = model_admin.admin_site.name
    if request.method == "POST":
        # Logged before it runs: a flush affects every application using this server.
        logger.warning(
            "atomicops: %s runs the flush check (SCRIPT FLUSH) from the admin", request.user
        )
        stored: dict[str, Any] = {"at": time.time(), "rows": None, "error": None}
        try:
            stored["rows"] = [row.as_dict() for row in flush_check()]
        except AtomicOpsError as exc:
            stored["error"] = exc.message
        request.session[FLUSH_RESULT_SESSION_KEY] = stored
        return HttpResponseRedirect(reverse(f"{site}:atomicops_dashboard_flush_check"))
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD", "POST"])
    stored = request.session.get(FLUSH_RESULT_SESSION_KEY) or {}
    if not stored or time.time() - stored["at"] > FLUSH_RESULT_MAX_AGE:
        request.session.pop(FLUSH_RESULT_SESSION_KEY, None)
        messages.info(request, "No recent flush check to show: run it from this page.")
        return HttpResponseRedirect(reverse(f"{site}:atomicops_dashboard_changelist"))
    context = _context(model_admin, request, "Flush check")
    context["ran_at"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stored["at"]))
    if stored["error"] is not None:
        context.update(rows=None, error=stored["error"], ok=False)
    else:
        fields = set(FlushCheckRow.__dataclass_fields__)
        rows = [
            FlushCheckRow(**{k: v for k, v in row.items() if k in fields}) for row in stored["rows"]
        ]
        failed = [row for row in rows if not row.ok]
        context.update(rows=rows, error=None, ok=not failed, failed=failed)
    request.current_app = site
    return TemplateResponse(request, "admin/atomicops/flush_check.html", context)
