"""The Django surface over the REST transport: checks, the two commands, the dashboard."""

from __future__ import annotations

import io
import json

import pytest
from django.core import checks
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from atomicops import Lock
from atomicops.checks import REST_READONLY_TOKEN, REST_TRANSPORT, UNREACHABLE
from atomicops.ops.flushcheck import flush_check
from atomicops.scripts.registry import registry
from tests.upstash.server import READONLY_TOKEN

pytestmark = [pytest.mark.real]


def _ids(deploy=True):
    return {m.id: m for m in checks.run_checks(include_deployment_checks=deploy)}


def test_deploy_checks_name_the_transport_and_whether_the_token_writes(rest_settings, settings):
    found = _ids()
    assert REST_TRANSPORT in found and UNREACHABLE not in found, found
    assert "Upstash's REST API" in found[REST_TRANSPORT].msg
    assert "can write" in found[REST_TRANSPORT].msg
    assert not any(m.level >= checks.ERROR for m in found.values()), found
    settings.ATOMICOPS = {**rest_settings, "REST_TOKEN": READONLY_TOKEN}
    found = _ids()
    assert REST_READONLY_TOKEN in found and REST_TRANSPORT not in found
    assert REST_TRANSPORT not in _ids(deploy=False)  # no network I/O without --deploy


def test_load_and_flush_check_commands(rest_settings, rest, direct):
    out = io.StringIO()
    call_command("atomicops_load", "--json", stdout=out)
    assert json.loads(out.getvalue()) == {s.name: s.sha for s in registry}
    assert all(direct.script_exists(*(s.sha for s in registry)))
    rows = flush_check()
    assert rows and all(row.ok for row in rows), [r for r in rows if not r.ok]
    out = io.StringIO()
    call_command("atomicops_flush_check", stdout=out)
    assert "failed" not in out.getvalue().lower() or "0 failed" in out.getvalue().lower()


def test_dashboard_over_rest(rest_settings, rest, direct, db, django_user_model):
    lock = Lock("nightly", 30)
    assert lock.acquire(blocking=False)
    admin = django_user_model.objects.create_superuser("root", "root@x.test", None)
    browser = Client()
    browser.force_login(admin)
    response = browser.get(reverse("admin:atomicops_dashboard_changelist"))
    assert response.status_code == 200
    [server] = response.context["servers"]
    assert server.error is None and server.version == "7.0.15"
    assert server.address.startswith("127.0.0.1:")
    [info] = response.context["locks"]
    assert (info.name, info.fencing_token) == ("nightly", lock.fencing_token)
    lock.release()
