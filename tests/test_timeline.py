"""The timeline (atomicops.ops.timeline): every process's counts per minute in Redis, summed
on the dashboard and drawn as inline SVG (atomicops.ops.chart)."""

from __future__ import annotations

import math
import multiprocessing
import os
import re
import signal
import time
from pathlib import Path

import pytest
import redis
from django.test import Client
from django.urls import reverse

import atomicops
from atomicops.exceptions import RedisUnavailable
from atomicops.ops import chart, timeline

DASHBOARD = "admin:atomicops_dashboard_changelist"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
NOW = 1_800_000_000.0  # a fixed clock for the flushes and reads that take one


def turn_on(settings, interval: float = 0.2) -> None:
    settings.ATOMICOPS = {**settings.ATOMICOPS, "STATS_FLUSH_INTERVAL": interval}


@pytest.fixture
def fresh_flusher():
    """A Flusher that takes everything counted before the test as flushed."""
    flusher = timeline.Flusher()
    flusher.forget()
    return flusher


@pytest.fixture
def admin_client(db, django_user_model):
    user = django_user_model.objects.create_superuser("root", "root@x.test", None)
    client = Client()
    client.force_login(user)
    return client


def test_a_flush_adds_what_changed_to_the_minute(backend, settings, fresh_flusher):
    kind, client = backend
    turn_on(settings)
    for _ in range(3):
        atomicops.bounded_incr("tl", limit=10, client=client)
    for _ in range(2):
        atomicops.fixed_window("tl-rl", limit=1, window_ms=60_000, client=client)
    assert fresh_flusher.flush(now=NOW) == 4  # calls of two scripts, allowed, refused
    minute = int(NOW // 60)
    key = timeline.bucket_key(minute)
    assert key == f"atomicops:stats:{{timeline}}:{minute}"
    assert client.hgetall(key) == {
        b"calls:counter_bounded_incr": b"3",
        b"calls:ratelimit_fixed_window": b"2",
        b"allowed:fixed_window": b"1",
        b"refused:fixed_window": b"1",
    }
    assert timeline.RETENTION - 10 < client.ttl(key) <= timeline.RETENTION

    assert fresh_flusher.flush(now=NOW + 5) == 0  # nothing new: no round trip
    atomicops.bounded_incr("tl", limit=10, client=client)
    assert fresh_flusher.flush(now=NOW + 60) == 1
    read = timeline.read(now=NOW + 60)
    assert len(read.minutes) == timeline.MINUTES
    assert [m.calls for m in read.minutes[-2:]] == [5, 1]
    assert read.minutes[-1].start == (minute + 1) * 60
    assert read.totals == {"calls": 6, "fallbacks": 0, "errors": 0, "refused": 1, "allowed": 1}
    assert read.scripts["counter_bounded_incr"] == {"calls": 4, "fallbacks": 0, "errors": 0}
    assert read.groups == {"fixed_window": {"allowed": 1, "refused": 1}}
    # An hour later those minutes have left the window.
    assert timeline.read(now=NOW + 3600 + 60).totals["calls"] == 0


def test_a_flush_that_could_not_be_sent_is_carried_by_the_next(backend, settings, fresh_flusher):
    kind, client = backend
    turn_on(settings)
    atomicops.bounded_incr("tl", limit=10, client=client)
    dead = redis.Redis(port=1, socket_connect_timeout=0.5)
    with pytest.raises(RedisUnavailable):
        fresh_flusher.flush(dead, now=NOW)
    atomicops.bounded_incr("tl", limit=10, client=client)
    fresh_flusher.flush(now=NOW)
    assert timeline.read(now=NOW).totals["calls"] == 2


def test_the_flusher_thread_flushes_every_interval(backend, settings, monkeypatch):
    kind, client = backend
    turn_on(settings, 0.05)
    flusher = timeline.Flusher()
    flusher.forget()
    assert flusher.start()
    try:
        atomicops.bounded_incr("tl", limit=10, client=client)
        deadline = time.monotonic() + 5
        while flusher.flushes == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        flusher.stop()
    assert not flusher.running
    assert timeline.read().totals["calls"] == 1
    settings.ATOMICOPS = {**settings.ATOMICOPS, "STATS_FLUSH_INTERVAL": 0}
    assert not timeline.Flusher().start()  # off: no thread


def test_a_paused_flusher_writes_nothing_and_forgets(backend, settings, fresh_flusher):
    """What the pytest plugin's fixtures do for the tests of projects using atomicops."""
    kind, client = backend
    turn_on(settings)
    with fresh_flusher.paused():
        atomicops.bounded_incr("tl", limit=10, client=client)
        assert fresh_flusher.flush() == 0
    assert fresh_flusher.flush() == 0
    assert client.keys("*stats*") == []


def test_an_invalid_interval_is_off_and_logged(settings, caplog):
    settings.ATOMICOPS = {"STATS_FLUSH_INTERVAL": "soon"}
    assert timeline.interval() == 0
    assert "STATS_FLUSH_INTERVAL must be a number" in caplog.text


def test_nice_ceiling_reads_well():
    assert [chart.nice_ceiling(v) for v in (0, 1, 2, 3, 7, 10, 11, 99, 101, 4500)] == [
        1, 1, 2, 5, 10, 10, 20, 100, 200, 5000,
    ]  # fmt: skip


def _seed(client, now: float) -> dict[str, int]:
    """Synthetic counts over the last hour, as several processes would leave them.

    59 minutes, not 60: a page read in the next minute still has them all.
    """
    sums = dict.fromkeys(timeline.SERIES, 0)
    last = int(now // 60)
    for back in range(59):
        key = timeline.bucket_key(last - back)
        calls = int(200 + 150 * math.sin(back / 6))
        fields = {
            "calls:counter_bounded_incr": calls,
            "fallbacks:counter_bounded_incr": 3 if back in (17, 18) else 0,
            "errors:counter_incr": back % 7 == 0 and 2 or 0,
            "allowed:api#burst": calls // 2,
            "refused:api#burst": (back * 3) % 11,
            "refused:<img src=x onerror=alert(1)>": 1 if back == 5 else 0,
        }
        for name, value in fields.items():
            if value:
                client.hincrby(key, name, value)
                kind = name.split(":", 1)[0]
                sums[kind] += value
        client.expire(key, timeline.RETENTION)
    return sums


def test_the_dashboard_sums_and_charts_the_hour(backend, settings, admin_client):
    kind, client = backend
    turn_on(settings)
    timeline.flusher.forget()
    sums = _seed(client, time.time())
    response = admin_client.get(reverse(DASHBOARD))
    html = response.content.decode()
    assert response.context["timeline"].totals == sums
    for series in ("calls", "fallbacks", "errors", "refused"):
        figure = re.search(
            rf'<figure class="atomicops-chart" data-series="{series}" data-total="(\d+)"', html
        )
        assert int(figure.group(1)) == sums[series]
        bars = re.findall(rf'<rect class="bar bar-{series}"[^>]* data-value="(\d+)"', html)
        assert sum(map(int, bars)) == sums[series]
        assert f'<span id="atomicops-total-{series}">{sums[series]}</span>' in html
    # Tooltips and the table say the same numbers.
    assert re.search(r"<title>\d\d:\d\d: [\d,]+ calls</title>", html)
    assert html.count('<tr data-minute="') == 60
    # The script table has the hour's sums next to this process's counts.
    row = re.search(r'data-script="counter_bounded_incr">(.*?)</tr>', html, re.S).group(1)
    assert f'<span class="hour-calls" title="calls">{sums["calls"]}</span>' in row
    # A group name is text, never markup, in the table and anywhere else.
    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_the_dashboard_says_when_the_timeline_is_off(backend, admin_client):
    html = admin_client.get(reverse(DASHBOARD)).content.decode()
    assert "The timeline is off" in html
    assert "<figure" not in html and "atomicops-timeline-table" not in html


def test_an_unreadable_timeline_does_not_break_the_dashboard(backend, settings, admin_client):
    kind, client = backend
    turn_on(settings)
    client.set(timeline.bucket_key(int(time.time() // 60)), "not a hash")
    response = admin_client.get(reverse(DASHBOARD))
    assert response.status_code == 200
    assert "Timeline unavailable:" in response.content.decode()


# -- several processes -------------------------------------------------------------------

_fork = multiprocessing.get_context("fork")
EXTRA = 5  # calls the killed process makes right before its kill -9


def _worker(url: str, calls: int, index: int, go_on, die: bool) -> None:
    timeline.flusher.start()  # forked: the test process runs no flusher thread
    client = redis.Redis.from_url(url)
    for _ in range(calls):
        atomicops.bounded_incr(f"mp:{index}", limit=1000, client=client)
    for _ in range(2):
        atomicops.fixed_window(f"mp-rl:{index}", limit=1, window_ms=60_000, client=client)
    go_on.wait(30)
    if die:
        for _ in range(EXTRA):
            atomicops.bounded_incr(f"mp:{index}", limit=1000, client=client)
        os.kill(os.getpid(), signal.SIGKILL)  # no last flush, no cleanup
    timeline.flusher.stop()  # multiprocessing's children skip atexit: flush here


@pytest.mark.slow
@pytest.mark.parametrize("real_server", ["redis"], indirect=True)
def test_three_processes_add_up_and_a_kill_loses_one_interval(real_client, settings, admin_client):
    turn_on(settings, 0.2)
    timeline.flusher.forget()  # this process's own earlier calls are not part of it
    url = settings.ATOMICOPS["URL"]
    go_on = _fork.Event()
    counts = (10, 20, 30)
    processes = [
        _fork.Process(target=_worker, args=(url, n, i, go_on, i == 2), daemon=True)
        for i, n in enumerate(counts)
    ]
    for process in processes:
        process.start()
    expected_calls = sum(counts) + 2 * len(counts)  # bounded_incr + fixed_window calls
    deadline = time.monotonic() + 20
    while timeline.read().totals["calls"] < expected_calls:
        assert time.monotonic() < deadline, timeline.read().totals
        time.sleep(0.05)
    go_on.set()
    for process in processes:
        process.join(20)
    assert [p.exitcode for p in processes] == [0, 0, -signal.SIGKILL]

    response = admin_client.get(reverse(DASHBOARD))
    totals = response.context["timeline"].totals
    # What each process flushed is there; the killed one lost at most what it did
    # after its last flush (here: the EXTRA calls, unless a flush caught some).
    assert expected_calls <= totals["calls"] <= expected_calls + EXTRA
    assert totals["refused"] == len(counts) and totals["allowed"] == len(counts)
    [row] = [r for r in response.context["scripts"] if r.name == "counter_bounded_incr"]
    assert sum(counts) <= row.hour["calls"] <= sum(counts) + EXTRA
    html = response.content.decode()
    shown = re.search(r'data-series="calls" data-total="(\d+)"', html).group(1)
    assert int(shown) == totals["calls"]


# -- in a browser ------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.parametrize("real_server", ["redis"], indirect=True)
def test_the_chart_in_chromium(
    transactional_db, django_user_model, live_server, real_client, settings, browser
):
    turn_on(settings)
    timeline.flusher.forget()
    sums = _seed(real_client, time.time())
    django_user_model.objects.create_superuser("admin", "admin@example.test", "pw")
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    dashboard = f"{live_server.url}/admin/atomicops/dashboard/"
    page.goto(dashboard)
    page.fill("#id_username", "admin")
    page.fill("#id_password", "pw")
    page.click("input[type=submit]")
    page.wait_for_url(dashboard)

    figures = page.locator("figure.atomicops-chart")
    assert figures.count() == 4
    for series in ("calls", "fallbacks", "errors", "refused"):
        svg = page.locator(f'figure[data-series="{series}"] svg')
        box = svg.bounding_box()
        assert box["width"] > 250 and box["height"] > 40  # drawn, at a readable size
        values = page.eval_on_selector_all(
            f"rect.bar-{series}", "bars => bars.map(b => Number(b.dataset.value))"
        )
        assert sum(values) == sums[series]
    # The tallest calls bar reaches (nearly) the top of its plot, and none leaves it.
    heights = page.eval_on_selector_all(
        "rect.bar-calls", "bars => bars.map(b => b.getBBox().height)"
    )
    assert chart.BOTTOM - chart.TOP >= max(heights) > (chart.BOTTOM - chart.TOP) / 2
    # Escaped: the hostile group name is text in the table, never an element.
    assert page.locator("img[src=x]").count() == 0
    assert page.locator("#atomicops-ratelimit-groups").inner_text().count("<img src=x") == 1
    page.locator("#atomicops-timeline").scroll_into_view_if_needed()
    path = ARTIFACTS / "atomicops-timeline.png"
    page.locator("#atomicops-timeline").screenshot(path=str(path))
    page.screenshot(path=str(ARTIFACTS / "atomicops-dashboard-timeline.png"), full_page=True)
    print(f"timeline screenshot: {path}")

    # Narrow and dark: the charts stack, and the page does not scroll sideways.
    page.emulate_media(color_scheme="dark")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(dashboard)
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 1
    narrow = ARTIFACTS / "atomicops-timeline-narrow-dark.png"
    page.locator("#atomicops-timeline").screenshot(path=str(narrow))
    print(f"narrow dark screenshot: {narrow}")
