"""Leases: locks (plain, reentrant, fair, read-write, multi-key) and semaphores.

Every kind holds a fenced lease on the server (:mod:`.lease`: acquire, wait, extend,
release as engine flows), renewed by :mod:`.renewal` while it is held (a flow on the
engine's ``Pause``, run by :mod:`atomicops.engine.background` in sync code and by a task in
async code). :mod:`.claims` is
the one-owner-at-a-time claim ``@idempotent`` and ``get_or_set`` take.
"""
