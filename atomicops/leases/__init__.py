"""Leases: locks (plain, reentrant, fair, read-write, multi-key) and semaphores.

Every kind holds a fenced lease on the server (:mod:`.lease`: acquire, wait, extend,
release as engine flows), renewed by :mod:`.renewal` while it is held. :mod:`.claims` is
the one-owner-at-a-time claim ``@idempotent`` and ``get_or_set`` take.
"""
