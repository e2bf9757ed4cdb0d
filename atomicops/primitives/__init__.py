"""The primitives: counters, compare-and-set, rate limits and batches of them.

Each primitive validates its arguments while it builds a prepared call
(:mod:`.calls`), so bad input raises before anything is sent, and sync and async share
everything but the I/O. :mod:`.keys` builds the keys, :mod:`.validate` checks numbers,
:mod:`.batch` and :mod:`.autopipeline` send many calls in one round trip per server.
"""
