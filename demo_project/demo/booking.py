"""Booking the last seats of an event: a lock around the slow part, a fence on the write.

A booking reads how many seats are left, charges the buyer (slow: a payment provider)
and then writes. Two buyers doing that at once both see the last seat, both pay, and
one of them gets nothing (or, with a naive write, both get it: oversold). So the whole
booking runs under ``Lock((event, "booking"))``: one buyer at a time per event.

A lock's lease can run out while its holder is paused (GC, a slow payment, a stopped
VM); another buyer then gets the lock while the first still believes it holds it. The
fencing token settles that in the database: the booking write is one conditional
``UPDATE`` that needs a token higher than the last one that wrote (``Event.fence_token``)
and a free seat. The paused holder's write is refused and it refunds the buyer.

``book_seat(..., use_lock=False)`` is the naive read-then-write without the lock, kept
so the demo can show the oversell it causes; nothing else uses it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import F

from atomicops import Lock, LockNotAcquired, LockNotOwned
from demo_project.demo.models import Booking, Event

logger = logging.getLogger("demo")

# The lease: longer than the slowest booking (payment included), short enough that a
# crashed holder blocks the event only briefly.
LOCK_TTL = 5.0
# How long a buyer waits in line for the lock before being told to try again.
LOCK_WAIT = 15.0

BOOKED = "booked"
SOLD_OUT = "sold_out"  # nothing left when this buyer's turn came; not charged
REFUNDED = "refunded"  # charged, then the write was refused: the buyer got their money back


@dataclass(frozen=True)
class BookingResult:
    """What happened to one buyer. ``reason`` says why a charged buyer was refunded."""

    status: str
    buyer: str
    fencing_token: int | None = None
    booking_id: int | None = None
    reason: str = ""

    @property
    def charged(self) -> bool:
        return self.status in (BOOKED, REFUNDED)


def lock_for(event: Event) -> Lock:
    """The event's booking lock (``<prefix>:lock:{demo.event:<pk>:booking}``)."""
    return Lock((event, "booking"), ttl=LOCK_TTL, timeout=LOCK_WAIT)


def payment_delay() -> float:
    """Seconds the simulated payment provider takes (``DEMO_PAYMENT_DELAY``)."""
    return float(getattr(settings, "DEMO_PAYMENT_DELAY", 0.3))


def _charge(delay: float) -> None:
    # Stands in for a call to a payment provider: slow, and not something to undo lightly.
    time.sleep(delay)


def book_seat(
    event_id: int,
    buyer: str,
    *,
    use_lock: bool = True,
    delay: float | None = None,
    pause: Callable[[Lock], None] | None = None,
) -> BookingResult:
    """Book one seat of event ``event_id`` for ``buyer``.

    Under the event's lock: read the seats left, charge (``delay`` seconds), then write
    in one transaction, fenced by the lock's token. ``pause`` is called with the lock
    between charging and writing (tests use it to let the lease run out there).
    Raises :class:`atomicops.LockNotAcquired` when the lock is not free within
    ``LOCK_WAIT`` seconds, :class:`Event.DoesNotExist` for an unknown event.
    """
    delay = payment_delay() if delay is None else delay
    if not use_lock:
        return _book_naively(event_id, buyer, delay)
    event = Event.objects.get(pk=event_id)
    lock = lock_for(event)
    if not lock.acquire():
        raise LockNotAcquired(
            f"event {event.pk} is busy: waited {LOCK_WAIT:g}s for its booking lock", key=lock.key
        )
    token = lock.fencing_token
    assert token is not None
    try:
        event.refresh_from_db()
        if event.seats_left == 0:
            return BookingResult(SOLD_OUT, buyer, token)
        _charge(delay)
        if pause is not None:
            pause(lock)
        return _write(event.pk, buyer, token)
    finally:
        try:
            lock.release()
        except LockNotOwned:
            # The lease ran out while we were paused; the fence already decided the write.
            logger.warning("demo: booking lock for event %s had expired before release", event_id)


def _write(event_id: int, buyer: str, token: int) -> BookingResult:
    with transaction.atomic():
        # The fence: only a token newer than the last writer's may write. A row lock
        # (or SQLite's write lock) holds from here to the commit.
        fenced = Event.objects.filter(pk=event_id, fence_token__lt=token).update(fence_token=token)
        if not fenced:
            return BookingResult(
                REFUNDED, buyer, token, reason="a newer lock holder already wrote (stale token)"
            )
        took = Event.objects.filter(pk=event_id, booked__lt=F("seats")).update(
            booked=F("booked") + 1
        )
        if not took:
            return BookingResult(REFUNDED, buyer, token, reason="the last seat went meanwhile")
        booking = Booking.objects.create(event_id=event_id, buyer=buyer, fencing_token=token)
    return BookingResult(BOOKED, buyer, token, booking.pk)


def _book_naively(event_id: int, buyer: str, delay: float) -> BookingResult:
    """The race, for the demo: read, pay, write, with nothing keeping others out."""
    event = Event.objects.get(pk=event_id)
    if event.seats_left == 0:
        return BookingResult(SOLD_OUT, buyer)
    _charge(delay)
    with transaction.atomic():
        Event.objects.filter(pk=event_id).update(booked=F("booked") + 1)
        booking = Booking.objects.create(event_id=event_id, buyer=buyer, fencing_token=0)
    return BookingResult(BOOKED, buyer, None, booking.pk)


def reset_event(event: Event) -> None:
    """Delete the event's bookings and free its seats (the demo's reset button).

    Runs under the booking lock like a booking, and writes its own fencing token, so a
    booking whose lease ran out before the reset cannot write into the fresh event.
    Raises :class:`atomicops.LockNotAcquired` when the lock is not free in time.
    """
    with lock_for(event) as lock:
        with transaction.atomic():
            Booking.objects.filter(event=event).delete()
            Event.objects.filter(pk=event.pk).update(booked=0, fence_token=lock.fencing_token)
