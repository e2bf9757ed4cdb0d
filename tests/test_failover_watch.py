"""The sentinel watch's bookkeeping (atomicops.engine.failover), fed the messages a
sentinel publishes: which ones hold calls, which end a hold, and that a hold never
outlives HOLD_LIMIT. The watch against real sentinels, under a ``SENTINEL FAILOVER``:
tests/sentinel/test_retry.py."""

from __future__ import annotations

import os

import pytest

from atomicops import ConfigurationError, ServerRefused
from atomicops.engine import failover, retry
from atomicops.engine.connection import check_replication_settings
from atomicops.engine.ops import Context
from tests.servers import free_port

SERVICE = "mymaster"


def heard(watch: failover.Watch, index: int, channel: str, data: str) -> None:
    watch._heard(index, {"type": "message", "channel": channel.encode(), "data": data.encode()})


@pytest.fixture
def watch() -> failover.Watch:
    return failover.Watch([{"host": "127.0.0.1", "port": 1}] * 3, SERVICE)


def test_a_failover_begun_holds_calls_until_it_is_aborted(watch):
    assert not watch.held()
    heard(watch, 0, "+try-failover", "master other 127.0.0.1 6379")
    assert not watch.held(), "another service's failover held this one's calls"
    heard(watch, 0, "+try-failover", f"master {SERVICE} 127.0.0.1 6379")
    heard(watch, 1, "+try-failover", f"master {SERVICE} 127.0.0.1 6379")
    assert watch.held()
    heard(watch, 0, "-failover-abort-not-elected", f"master {SERVICE} 127.0.0.1 6379")
    assert watch.held(), "one sentinel's abort ended another's failover"
    assert watch.generation == 0
    heard(watch, 1, "-failover-abort-no-good-slave", f"master {SERVICE} 127.0.0.1 6379")
    assert not watch.held()
    assert watch.generation == 1, "pools were not told to drop their idle connections"


def test_a_hold_never_outlives_hold_limit(watch, monkeypatch):
    heard(watch, 2, "+try-failover", f"master {SERVICE} 127.0.0.1 6379")
    assert watch.held()
    monkeypatch.setattr(failover, "HOLD_LIMIT", 0.0)
    assert not watch.held()
    assert watch.generation == 1
    assert watch.held_seconds > 0


def test_a_switch_ends_the_hold_once_every_sentinel_names_the_new_primary(watch, monkeypatch):
    answers = iter(
        [
            [("127.0.0.1", "7001"), ("127.0.0.1", "7000"), None],  # one still names the old
            [("127.0.0.1", "7001"), ("127.0.0.1", "7001"), None],  # None: did not answer
        ]
    )
    monkeypatch.setattr(watch, "_named", lambda: next(answers))
    heard(watch, 0, "+try-failover", f"master {SERVICE} 127.0.0.1 7000")
    heard(watch, 1, "+switch-master", f"{SERVICE} 127.0.0.1 7000 127.0.0.1 7001")
    assert not watch.held()
    assert watch.generation == 1
    with pytest.raises(StopIteration):
        next(answers)  # asked again after the first answer disagreed


def test_progress_of_the_failover_rearms_its_hold(watch, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(failover.time, "monotonic", lambda: clock[0])
    heard(watch, 0, "+try-failover", f"master {SERVICE} 127.0.0.1 7000")
    clock[0] += 8
    replica = f"slave 127.0.0.1:7001 127.0.0.1 7001 @ {SERVICE} 127.0.0.1 7000"
    heard(watch, 0, "+slave-reconf-sent", replica)
    heard(watch, 1, "+promoted-slave", replica)  # not its failover: nothing to re-arm
    assert 1 not in watch.begun
    clock[0] += 8  # 16 s after the start, 8 after the last progress
    assert watch.held()
    clock[0] += 3
    assert not watch.held()


def test_a_failover_begun_after_a_switch_was_heard_stays_held(watch, monkeypatch):
    monkeypatch.setattr(watch, "_named", lambda: [("127.0.0.1", "7001")] * 3)
    heard(watch, 0, "+try-failover", f"master {SERVICE} 127.0.0.1 7000")
    original = watch._named

    def named_then_a_new_failover():
        heard(watch, 2, "+try-failover", f"master {SERVICE} 127.0.0.1 7001")
        return original()

    monkeypatch.setattr(watch, "_named", named_then_a_new_failover)
    heard(watch, 1, "+switch-master", f"{SERVICE} 127.0.0.1 7000 127.0.0.1 7001")
    assert watch.held(), "a failover begun meanwhile was released with the last one"
    assert list(watch.begun) == [2]


def test_replica_reads_are_not_held_but_follow_the_failover(watch, monkeypatch):
    class ReplicaPool:
        is_master = False
        sentinel_manager = object()
        disconnected = 0

        def disconnect(self, inuse_connections=True):
            self.disconnected += 1

    pool = ReplicaPool()
    pool._atomicops_watch = watch
    pool.__dict__[failover._SEEN] = 0
    client = type("C", (), {"connection_pool": pool})()
    heard(watch, 0, "+try-failover", f"master {SERVICE} 127.0.0.1 7000")
    failover.check(client, Context("counter_get", "k", write=False))  # not refused
    heard(watch, 0, "-failover-abort-no-good-slave", f"master {SERVICE} 127.0.0.1 7000")
    failover.check(client, Context("counter_get", "k", write=False))
    assert pool.disconnected == 1 and pool.__dict__[failover._SEEN] == watch.generation


def test_a_held_call_is_refused_unsent_and_retried_as_a_failover(watch):
    error = failover._refused(watch, Context("counter_bounded_incr", "k"))
    assert isinstance(error, ServerRefused)
    assert error.code == "FAILOVER"
    assert retry.reason(error) == "failover"
    assert "was not applied" in str(error) and "counter_bounded_incr" in str(error)


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_sentinel_watch_must_be_a_bool(settings, value):
    from atomicops.conf import get_settings

    settings.ATOMICOPS = {"URL": "redis://127.0.0.1:1/0", "SENTINEL_WATCH": value}
    with pytest.raises(ConfigurationError, match="SENTINEL_WATCH"):
        check_replication_settings(get_settings())


class _Sentinel:
    def __init__(self, port: int) -> None:
        self.connection_pool = type(
            "P", (), {"connection_kwargs": {"host": "127.0.0.1", "port": port}}
        )()


class _Pool:
    """A sentinel-managed pool as the watch sees it (its sentinels are never reached here)."""

    service_name = SERVICE

    def __init__(self, manager: object) -> None:
        self.sentinel_manager = manager


def test_a_forked_child_starts_a_watch_of_its_own(settings):
    settings.ATOMICOPS = {"URL": "redis://127.0.0.1:1/0"}
    pool = _Pool(type("M", (), {"sentinels": [_Sentinel(free_port())]})())
    parent = failover.watch_for(pool)
    assert failover.watch_for(pool) is parent
    pid = os.fork()
    if pid == 0:  # the child: the parent's watch has no threads here
        child = failover.watch_for(pool)
        os._exit(0 if child is not parent and child.epoch != parent.epoch else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_manager_of_the_callers_own_making_is_not_watched(settings):
    settings.ATOMICOPS = {"URL": "redis://127.0.0.1:1/0"}
    pool = _Pool(object())  # no .sentinels: a test double, or a manager of one's own
    watch = failover.watch_for(pool)
    assert watch.sentinels == [] and not watch.held()


def test_sentinel_watch_false_means_no_listener(settings):
    settings.ATOMICOPS = {"URL": "redis://127.0.0.1:1/0", "SENTINEL_WATCH": False}
    pool = _Pool(type("M", (), {"sentinels": [_Sentinel(free_port())]})())
    assert failover.watch_for(pool).sentinels == []
