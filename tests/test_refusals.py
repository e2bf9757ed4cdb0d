"""Error replies that refuse a call are typed refusals, never results (issue #11).

The scenarios on real servers (a restart's LOADING, maxmemory, BUSY) are in
``tests/faults/``; this is the mapping itself, for every reply redis-py can hand back.
"""

from __future__ import annotations

import pytest
from redis import exceptions as redis_errors

from atomicops import (
    ConfigurationError,
    DataError,
    RedisUnavailable,
    ScriptBusyError,
    ScriptError,
    ServerLoading,
    ServerOutOfMemory,
    ServerRefused,
)
from atomicops.scripts.registry import reply_error


def parsed(line: str) -> Exception:
    """The exception object redis-py's parser makes of the error line ``-<line>``."""
    from redis._parsers.base import BaseParser

    return BaseParser.parse_error(line)


@pytest.mark.parametrize(
    ("line", "expected", "code"),
    [
        ("LOADING Redis is loading the dataset in memory", ServerLoading, "LOADING"),
        ("OOM command not allowed when used memory > 'maxmemory'.", ServerOutOfMemory, "OOM"),
        (
            "OOM command not allowed when used memory > 'maxmemory'. script: 1f0, on "
            "@user_script:12.",
            ServerOutOfMemory,
            "OOM",
        ),
        ("READONLY You can't write against a read only replica.", ServerRefused, "READONLY"),
        ("MOVED 3999 127.0.0.1:6381", ServerRefused, "MOVED"),
        ("ASK 3999 127.0.0.1:6381", ServerRefused, "ASK"),
        ("TRYAGAIN Multiple keys request during rehashing of slot", ServerRefused, "TRYAGAIN"),
        ("CLUSTERDOWN The cluster is down", ServerRefused, "CLUSTERDOWN"),
        ("MASTERDOWN Link with MASTER is down", ServerRefused, "MASTERDOWN"),
        ("NOREPLICAS Not enough good replicas to write.", ServerRefused, "NOREPLICAS"),
        ("MISCONF Redis is configured to save RDB snapshots", ServerRefused, "MISCONF"),
    ],
)
def test_refusals_promise_nothing_ran(line, expected, code):
    error = reply_error(parsed(line), script="cas_set", keys=["job:7"])
    assert type(error) is expected and error.code == code
    assert isinstance(error, RedisUnavailable)  # `except RedisUnavailable` catches them
    assert (error.script, error.key) == ("cas_set", "job:7")
    assert "nothing was applied" in error.message and error.server_message.startswith(code)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("NOAUTH Authentication required.", ConfigurationError),
        ("WRONGPASS invalid username-password pair or user is disabled.", ConfigurationError),
        ("NOPERM this user has no permissions to run the 'evalsha' command", ConfigurationError),
        ("BUSY Redis is busy running a script.", ScriptBusyError),
        ("WRONGTYPE Operation against a key holding the wrong kind of value", DataError),
        ("NOTINT counter does not hold an integer", DataError),
        ("ERR user_script:1: Script attempted to access nonexistent global", ScriptError),
    ],
)
def test_other_error_replies_keep_their_meaning(line, expected):
    error = reply_error(parsed(line), script="s", keys=["k"])
    assert type(error) is expected
    assert not isinstance(error, RedisUnavailable)


def test_the_parser_classes_used_for_the_mapping_still_exist():
    """A redis-py upgrade that renames these would silently untype the refusals."""
    for name in ("BusyLoadingError", "OutOfMemoryError", "ReadOnlyError", "MovedError"):
        assert issubclass(getattr(redis_errors, name), redis_errors.RedisError)
    assert isinstance(parsed("LOADING x"), redis_errors.BusyLoadingError)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("LOADING Redis is loading the dataset in memory", "loading"),
        ("READONLY You can't write against a read only replica.", "readonly"),
        ("MASTERDOWN Link with MASTER is down", "masterdown"),
        ("CLUSTERDOWN The cluster is down", "clusterdown"),
        ("TRYAGAIN Multiple keys request during rehashing of slot", "tryagain"),
        ("NOREPLICAS Not enough good replicas to write.", "noreplicas"),
        ("MOVED 3999 127.0.0.1:6381", "redirects"),
        ("ASK 3999 127.0.0.1:6381", "redirects"),
        ("BUSY Redis is busy running a script.", "busy"),
        # Refused before running, but not retried: memory rarely comes back within a
        # deadline, and a failing snapshot waits for an operator.
        ("OOM command not allowed when used memory > 'maxmemory'.", None),
        ("MISCONF Redis is configured to save RDB snapshots", None),
        ("ERR user_script:1: attempt to compare nil with number", None),
        ("NOTINT value is not an integer", None),
    ],
)
def test_which_refusals_are_retried(line, reason):
    from atomicops.engine import retry

    assert retry.reason(reply_error(parsed(line), script="s")) == reason


def test_which_wire_failures_are_retried():
    from redis.asyncio.sentinel import MasterNotFoundError as AsyncMasterNotFound
    from redis.sentinel import MasterNotFoundError

    from atomicops import OutcomeUnknown
    from atomicops.engine import retry
    from atomicops.engine.ops import Context

    def thrown(error, cause):
        try:
            raise error from cause
        except RedisUnavailable as exc:
            return exc

    context = Context("s", "k")
    refused = redis_errors.ConnectionError("Error 111 connecting")
    assert retry.reason(thrown(context.unavailable(refused), refused)) == "connect"
    for missing in (MasterNotFoundError("No master found"), AsyncMasterNotFound("none")):
        assert retry.reason(thrown(context.unavailable(missing), missing)) == "no_primary"
    # A batch's error names the wire's, which names redis-py's.
    wire = thrown(context.unavailable(missing), missing)
    assert retry.reason(thrown(context.unavailable(wire), wire)) == "no_primary"
    lost = redis_errors.TimeoutError("Timeout reading from socket")
    assert retry.reason(thrown(context.unknown(lost), lost)) is None
    assert isinstance(context.unknown(lost), OutcomeUnknown)


def test_pauses_grow_with_jitter_and_never_pass_the_deadline():
    from atomicops.engine import retry

    for attempt in range(12):
        step = min(retry.LONGEST_PAUSE, retry.FIRST_PAUSE * 2**attempt)
        for _ in range(20):
            wait = retry.pause(attempt, 10.0)
            assert wait is not None and step / 2 <= wait <= step
    assert retry.pause(3, 0.004) == 0.004
    assert retry.pause(0, 0.0) is None and retry.pause(5, -1.0) is None
    assert retry.pause(10_000, 10.0) == pytest.approx(retry.LONGEST_PAUSE, rel=0.5)
