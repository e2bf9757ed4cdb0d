"""The demo's REST switch: DEMO_REST=1 settings, and the tour replaying the seed over REST."""

from __future__ import annotations

import importlib
from io import StringIO

import pytest
from django.core.management import call_command

import demo_project.settings

pytestmark = [pytest.mark.real]


def test_demo_rest_switch(monkeypatch):
    monkeypatch.setenv("DEMO_REST", "1")
    try:
        importlib.reload(demo_project.settings)
        assert demo_project.settings.ATOMICOPS == {"REST": True, "KEY_PREFIX": "demo"}
    finally:
        monkeypatch.delenv("DEMO_REST")
        importlib.reload(demo_project.settings)
    assert "URL" in demo_project.settings.ATOMICOPS


def test_tour_over_rest(rest_settings, rest, direct):
    out = StringIO()
    call_command("demo_tour", "--flush", stdout=out)
    lines = out.getvalue().splitlines()
    assert "1 2 3 4 5 6 7 8 9 10 10 10" in lines
    assert [line for line in lines if line.startswith("call ")] == [
        'call 1 -> "cached script"  (EVALSHA; fallbacks so far: 0)',
        'call 2 -> "cached script"  (NOSCRIPT, recovered in the same call; fallbacks so far: 1)',
        'call 3 -> "cached script"  (EVALSHA again: the fallback reloaded it; fallbacks so far: 1)',
    ]
    assert "request 11: counter=11 reject" in lines
    assert any(line.startswith("ReadOnlyViolation: script 'tour_ro_write'") for line in lines)
    assert direct.keys("atomicops:tour:*") == []
    assert rest.requests  # it went over HTTP
