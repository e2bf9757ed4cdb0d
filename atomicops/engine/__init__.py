"""The execution core: how one atomicops operation reaches Redis and comes back.

Every operation is a *flow*: a generator that yields :class:`~atomicops.engine.ops.Send`
(one round trip: a target server, the commands, what to name in errors) and is sent the
replies. :func:`~atomicops.engine.run.run` and :func:`~atomicops.engine.run.arun` are
the one sync and the one async runner; only they do I/O, through
:mod:`~atomicops.engine.wire`. Flows compose with ``yield from``: a lock's acquire is a
flow that runs the ``lock_acquire`` script's flow, then a ``BLPOP``, then the script again.

* :mod:`.ops`: the typed operations (``Send``; on a cluster also ``Pause`` and
  ``Refresh`` of the slot map, which the runners perform too; ``Call``) and the error
  context;
* :mod:`.wire`: one round trip, a write sent at most once;
* :mod:`.topology`: which server of a cluster serves a call's keys, and where the call
  goes next when a node redirects it (MOVED, ASK, TRYAGAIN, READONLY);
* :mod:`.compat`: every redis-py and Django internal atomicops relies on;
* :mod:`.run`: the runners;
* :mod:`.background`: a scheduler thread per process that resumes paused flows when due
  (every sync renewal), and a thread per server performing their round trips as
  :mod:`.run` does.

Nothing here reads Django settings: this package sits below everything else.
"""
