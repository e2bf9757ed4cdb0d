"""FairLock, ReadWriteLock and MultiLock under real concurrency: several processes
against a real server (redis and valkey). The scenarios are in tests/lock_kinds.py,
shared with the 3+3 cluster tests (tests/cluster/test_primitives.py)."""

from __future__ import annotations

import pytest

from tests import lock_kinds

pytestmark = [pytest.mark.real, pytest.mark.slow]


def test_fair_lock_serves_6_staggered_waiters_in_order_after_a_release(real_client):
    lock_kinds.fifo("fifo-release", lapse=False)


def test_fair_lock_serves_6_staggered_waiters_in_order_after_a_lapsed_lease(real_client):
    lock_kinds.fifo("fifo-lapse", lapse=True)


def test_a_dead_waiter_is_skipped_within_the_stated_bound(real_client):
    lock_kinds.dead_waiter_skipped("fair-dead")


def test_readers_overlap_and_writers_overlap_nobody(real_client):
    lock_kinds.readers_share_writers_exclude("rw-overlap")


def test_a_writer_is_served_within_1_5_s_under_a_stream_of_readers(real_client):
    lock_kinds.writer_not_starved("rw-stream")


def test_multilock_transfers_never_deadlock_and_conserve_the_total(real_client):
    lock_kinds.transfers_conserve_the_total("bank")
