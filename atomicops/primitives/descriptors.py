"""``AtomicCounter``: a counter on a model instance that lives in Redis, not in a column.

::

    class Article(models.Model):
        views = AtomicCounter(limit=1000)

    article.views.incr()      # CounterResult(value=1, applied=True)
    article.views.value       # 1
    article.views.reset()     # 1 (the value it had); reads 0 afterwards

The key is ``key_for(article, "views")`` (the attribute name, or ``name=``), so the same
counter is reachable as ``bounded_incr((article, "views"), 1000)``. Nothing is added to
the model's table and no migration is needed. Every method is one script call; the
``a``-prefixed ones are the async twins.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, NoReturn, overload

from atomicops.exceptions import InvalidInput
from atomicops.primitives import counters
from atomicops.primitives.counters import CounterResult
from atomicops.primitives.keys import key_for
from atomicops.primitives.validate import TTL, ttl_ms, whole

__all__ = ["AtomicCounter", "BoundCounter"]


class AtomicCounter:
    """A model attribute giving each saved instance an atomic counter in Redis.

    ``limit``: increments apply only while the value stays ``<= limit``
    (:func:`~atomicops.bounded_incr`); ``floor``: decrements apply only while it stays
    ``>= floor`` (:func:`~atomicops.bounded_decr`). Without them the counter is
    unbounded in that direction. ``ttl`` (seconds or a ``timedelta``) is set when an
    update creates the counter. ``name`` overrides the key name (default: the
    attribute's name). Raises :class:`InvalidInput` at class creation for bad bounds.
    """

    def __init__(
        self,
        *,
        limit: int | None = None,
        floor: int | None = None,
        ttl: TTL = None,
        name: str | None = None,
    ) -> None:
        where = f"AtomicCounter({name or ''})"
        if limit is not None:
            whole(limit, "limit", where=f"counter {where!r}", key=where, minimum=0)
        if floor is not None:
            whole(floor, "floor", where=f"counter {where!r}", key=where, minimum=None)
        if limit is not None and floor is not None and floor > limit:
            raise InvalidInput(f"{where}: floor {floor} is above limit {limit}")
        ttl_ms(ttl, where)  # validate now, not on the first request
        if name is not None and (not isinstance(name, str) or not name):
            raise InvalidInput(f"AtomicCounter name must be a non-empty string, got {name!r}")
        self.limit = limit
        self.floor = floor
        self.ttl = ttl
        self.name = name
        self.attname: str | None = None

    def __set_name__(self, owner: type, attname: str) -> None:
        self.attname = attname
        if self.name is None:
            self.name = attname

    @overload
    def __get__(self, instance: None, owner: type) -> AtomicCounter: ...

    @overload
    def __get__(self, instance: object, owner: type) -> BoundCounter: ...

    def __get__(self, instance: Any, owner: type) -> Any:
        if instance is None:
            return self
        return BoundCounter(self, instance)

    def __set__(self, instance: Any, value: NoReturn) -> None:
        # A data descriptor, so an assignment cannot silently shadow the counter with a
        # plain attribute that never reaches Redis; NoReturn makes a type checker say so
        # before it runs.
        raise AttributeError(
            f"{self.attname} is an AtomicCounter kept in Redis; use "
            f".{self.attname}.incr(), .decr() or .reset() instead of assigning"
        )

    def __repr__(self) -> str:
        return f"<AtomicCounter {self.name} limit={self.limit} floor={self.floor}>"


class BoundCounter:
    """The counter of one instance: ``incr``, ``decr``, ``value``, ``reset`` and async twins.

    The key is built on each call, so a counter read before ``save()`` raises
    :class:`InvalidInput` (pk is None) and works once the instance is saved.
    """

    __slots__ = ("counter", "instance")

    def __init__(self, counter: AtomicCounter, instance: Any) -> None:
        self.counter = counter
        self.instance = instance

    @property
    def key(self) -> str:
        """The Redis key: ``key_for(instance, name)``."""
        return key_for(self.instance, self.counter.name)  # type: ignore[arg-type]

    # -- sync ------------------------------------------------------------------------

    def incr(self, amount: int = 1, *, client: Any = None) -> CounterResult:
        """Add ``amount``; bounded by ``limit`` when the counter has one (one round trip)."""
        c = self.counter
        if c.limit is not None:
            return counters.bounded_incr(self.key, c.limit, amount, ttl=c.ttl, client=client)
        return _applied(counters.incr(self.key, _positive(amount, self), ttl=c.ttl, client=client))

    def decr(self, amount: int = 1, *, client: Any = None) -> CounterResult:
        """Subtract ``amount``; bounded by ``floor`` when the counter has one (one round trip)."""
        c = self.counter
        if c.floor is not None:
            return counters.bounded_decr(self.key, c.floor, amount, ttl=c.ttl, client=client)
        return _applied(counters.incr(self.key, -_positive(amount, self), ttl=c.ttl, client=client))

    @property
    def value(self) -> int:
        """The current value, 0 when the counter does not exist (one read-only round trip)."""
        return counters.get_counter(self.key)

    def get(self, *, client: Any = None) -> int:
        """:attr:`value` with an explicit ``client``."""
        return counters.get_counter(self.key, client=client)

    def reset(self, *, client: Any = None) -> int:
        """Delete the counter (it reads 0) and return the value it had, atomically."""
        return counters.reset_counter(self.key, client=client)

    # -- async -----------------------------------------------------------------------

    async def aincr(self, amount: int = 1, *, client: Any = None) -> CounterResult:
        """The async twin of :meth:`incr`."""
        c = self.counter
        if c.limit is not None:
            return await counters.abounded_incr(self.key, c.limit, amount, ttl=c.ttl, client=client)
        return _applied(
            await counters.aincr(self.key, _positive(amount, self), ttl=c.ttl, client=client)
        )

    async def adecr(self, amount: int = 1, *, client: Any = None) -> CounterResult:
        """The async twin of :meth:`decr`."""
        c = self.counter
        if c.floor is not None:
            return await counters.abounded_decr(self.key, c.floor, amount, ttl=c.ttl, client=client)
        return _applied(
            await counters.aincr(self.key, -_positive(amount, self), ttl=c.ttl, client=client)
        )

    async def aget(self, *, client: Any = None) -> int:
        """The async twin of :attr:`value` (a property cannot be awaited)."""
        return await counters.aget_counter(self.key, client=client)

    async def areset(self, *, client: Any = None) -> int:
        """The async twin of :meth:`reset`."""
        return await counters.areset_counter(self.key, client=client)

    def __repr__(self) -> str:
        return f"<BoundCounter {self.counter.name} of {self.instance!r}>"


def _positive(amount: Any, bound: BoundCounter) -> int:
    # incr()/decr() take the direction from their name; a negative amount would
    # silently turn one into the other.
    return whole(amount, "amount", where=f"counter {bound.key!r}", key=bound.key)


def _applied(value: int | Decimal) -> CounterResult:
    return CounterResult(value=int(value), applied=True)
