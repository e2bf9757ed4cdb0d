"""Booking the last seats: the fencing token in the row, and real processes racing.

* A holder whose lease runs out mid-payment is refused by the fence and refunded, on
  every backend.
* Several processes, each a separate Django process on the demo's settings (a shared
  SQLite file, a real server the suite started), book one event at once: with the
  lock exactly ``seats`` are booked and nobody pays for a seat that is gone; the naive
  read-then-write (no lock) oversells, which is the race the page demonstrates.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from demo_project.demo import booking
from demo_project.demo.models import Booking, Event
from tests.factories import EventFactory

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_payments(settings):
    settings.DEMO_PAYMENT_DELAY = 0


def test_a_holder_whose_lease_ran_out_is_fenced_off_and_refunded(backend, monkeypatch):
    monkeypatch.setattr(booking, "LOCK_TTL", 0.2)
    event = EventFactory(seats=3)
    seen = {}

    def paused(lock):
        # The first buyer stalls after paying until its lease is gone; a second buyer
        # gets the lock meanwhile and books.
        time.sleep(0.35)
        assert lock.lost  # by this process's clock the lease has run out
        seen["second"] = booking.book_seat(event.pk, "second")

    first = booking.book_seat(event.pk, "first", pause=paused)
    second = seen["second"]
    assert second.status == booking.BOOKED
    assert first.status == booking.REFUNDED and first.charged
    assert "stale token" in first.reason
    assert first.fencing_token < second.fencing_token
    event.refresh_from_db()
    assert (event.booked, event.fence_token) == (1, second.fencing_token)
    assert list(Booking.objects.values_list("buyer", "fencing_token")) == [
        ("second", second.fencing_token)
    ]


def test_the_fence_refuses_an_older_token_even_with_seats_left(backend):
    event = EventFactory(seats=5)
    Event.objects.filter(pk=event.pk).update(fence_token=100)
    result = booking._write(event.pk, "late", 99)
    assert result.status == booking.REFUNDED and "stale token" in result.reason
    assert not Booking.objects.exists()
    assert booking._write(event.pk, "newer", 101).status == booking.BOOKED


def test_a_held_lock_makes_the_buyer_wait_then_gives_up(backend, monkeypatch):
    from atomicops import LockNotAcquired

    monkeypatch.setattr(booking, "LOCK_WAIT", 0.2)
    event = EventFactory(seats=1)
    holder = booking.lock_for(event)
    assert holder.acquire(blocking=False)
    try:
        started = time.monotonic()
        with pytest.raises(LockNotAcquired, match="busy"):
            booking.book_seat(event.pk, "waiter")
        assert time.monotonic() - started >= 0.2
    finally:
        holder.release()
    assert not Booking.objects.exists()


# -- several processes ----------------------------------------------------------------

# Runs in a fresh interpreter on the demo's settings: one Django set-up, then forked
# buyers (tests/multiproc.py), released together by a barrier. Prints JSON.
RACE = """
import json, sys
import django
django.setup()
from django.core.management import call_command
from django.db import connections
from demo_project.demo import booking
from demo_project.demo.models import Booking, Event
from tests.multiproc import run_processes

buyers, seats, naive = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
call_command("migrate", verbosity=0)
event = Event.objects.create(name="race", seats=seats)
connections.close_all()  # each buyer process opens its own SQLite connection

def buy(name):
    result = booking.book_seat(event.pk, name, use_lock=not naive)
    connections.close_all()
    return {"status": result.status, "token": result.fencing_token}

results = run_processes(buy, [(f"b{i}",) for i in range(buyers)], timeout=60)
event.refresh_from_db()
rows = list(Booking.objects.filter(event=event).order_by("pk").values_list("buyer", "fencing_token"))
print(json.dumps({"results": results, "booked": event.booked, "fence": event.fence_token,
                  "rows": rows}))
"""


def _env(data_dir: Path, url: str, delay: float = 0) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="demo_project.settings",
        DEMO_DATA_DIR=str(data_dir),
        REDIS_URL=url,  # set, so the demo starts no embedded server
        DEMO_PAYMENT_DELAY=str(delay),
        PYTHONPATH=str(ROOT),
    )
    env.pop("ATOMICOPS_EMBEDDED", None)
    return env


@pytest.fixture(scope="module")
def migrated(tmp_path_factory) -> Path:
    """A migrated demo database, made once; each race works on a copy."""
    folder = tmp_path_factory.mktemp("demo-db")
    run = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--verbosity", "0"],
        env=_env(folder, "redis://127.0.0.1:1/0"),  # migrate never talks to Redis
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    return folder / "demo.sqlite3"


def _race(
    migrated: Path,
    tmp_path: Path,
    url: str,
    *,
    buyers: int,
    seats: int,
    naive: bool,
    delay: float,
):
    shutil.copy(migrated, tmp_path / "demo.sqlite3")
    env = _env(tmp_path, url, delay)
    run = subprocess.run(
        [sys.executable, "-c", RACE, str(buyers), str(seats), "1" if naive else "0"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout.strip().splitlines()[-1])
    return data["results"], data["booked"], data["fence"], [tuple(r) for r in data["rows"]]


@pytest.mark.slow
def test_processes_booking_at_once_never_oversell_and_never_charge_in_vain(
    real_server, migrated, tmp_path
):
    buyers, seats = 6, 2
    results, booked, fence, rows = _race(
        migrated, tmp_path, real_server.url, buyers=buyers, seats=seats, naive=False, delay=0.05
    )
    statuses = sorted(r["status"] for r in results)
    # With the lock they queue: the seats go, everyone else is told before paying.
    assert statuses == ["booked"] * seats + ["sold_out"] * (buyers - seats)
    assert booked == len(rows) == seats
    tokens = [token for _, token in rows]
    assert tokens == sorted(tokens) and fence == tokens[-1]
    assert len({r["token"] for r in results}) == buyers  # every holder got its own token


@pytest.mark.slow
@pytest.mark.parametrize("real_server", ["valkey"], indirect=True)
def test_without_the_lock_the_same_rush_oversells(real_server, migrated, tmp_path):
    # The page's "without the lock" button: everyone reads seats left, pays, writes.
    buyers, seats = 6, 2
    results, booked, fence, rows = _race(
        migrated, tmp_path, real_server.url, buyers=buyers, seats=seats, naive=True, delay=0.3
    )
    assert booked == len(rows) > seats
    assert fence == 0 and {r["token"] for r in results} == {None}
