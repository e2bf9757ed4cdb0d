"""Demo models. Each one is the database side of one pattern; Redis holds the hot state."""

from __future__ import annotations

from django.db import models

from atomicops import AtomicCounter


class Post(models.Model):
    """Something to like, at most ten times (the seed's counter that stops at 10).

    ``likes`` is not a column: it is a bounded counter in Redis under
    ``<prefix>:{demo.post:<pk>}:likes``, so no migration and no row lock per click.
    """

    LIKE_LIMIT = 10

    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    likes = AtomicCounter(limit=LIKE_LIMIT)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return self.title


class Document(models.Model):
    """A document edited optimistically.

    The live revision is a JSON value in Redis, changed only by compare-and-set. This row
    mirrors the newest saved revision (it only ever moves forward), so the document
    survives a Redis restart: the value is seeded from here when the key is missing.
    """

    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    revision = models.PositiveIntegerField(default=1)
    saved_by = models.CharField(max_length=100, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return self.title


class Event(models.Model):
    """An event with a fixed number of seats, booked under a lock.

    ``fence_token`` is the highest lock fencing token that has written a booking: the
    booking write is refused unless its token is higher, so a holder whose lease ran out
    cannot write after the holder that replaced it.
    """

    name = models.CharField(max_length=200)
    seats = models.PositiveIntegerField()
    booked = models.PositiveIntegerField(default=0)
    fence_token = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return self.name

    @property
    def seats_left(self) -> int:
        return max(0, self.seats - self.booked)


class Booking(models.Model):
    """One booked seat, with the fencing token of the lock that wrote it."""

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="bookings")
    buyer = models.CharField(max_length=100)
    fencing_token = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"{self.buyer} @ {self.event}"
