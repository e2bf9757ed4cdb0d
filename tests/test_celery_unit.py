"""atomicops.celery without workers: rates, argument binding, bad input, the producer's
claim, and eager runs (Celery's in-process apply), on the suite's real servers.

The proofs with real workers are tests/test_celery.py.
"""

from __future__ import annotations

import datetime
import decimal
import logging
import uuid

import pytest
from celery import Celery
from celery.app.task import Task
from celery.signals import before_task_publish

from atomicops import Lock
from atomicops.celery import AtomicTask, call_digest, parse_rate
from atomicops.exceptions import InvalidInput, OutcomeUnknown, RedisUnavailable
from tests.conftest import _configure


@pytest.fixture
def app():
    app = Celery("atomicops_unit", broker="memory://", backend="cache+memory://")
    app.conf.task_always_eager = False
    app.finalize()  # tasks are built at the decorator, as in a running project
    yield app
    app.close()


@pytest.fixture
def published():
    """Task ids that reached the broker."""
    ids: list[str] = []

    def count(sender=None, headers=None, **kwargs):
        ids.append(headers["id"])

    before_task_publish.connect(count, weak=False)
    yield ids
    before_task_publish.disconnect(count)


# -- rates ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rate, expected",
    [
        ("10/s", (10, 1000)),
        ("100/m", (100, 60_000)),
        ("1000/h", (1000, 3_600_000)),
        (" 5 / s ", (5, 1000)),
        ("7", (7, 1000)),  # Celery: a bare number is per second
        (3, (3, 1000)),
        (None, None),
    ],
)
def test_celery_rate_strings_become_exact_windows(rate, expected):
    assert parse_rate(rate) == expected


@pytest.mark.parametrize(
    "rate", ["ten/s", "10/d", "10/", "0.5/s", "1.5", "0/s", "-1/s", "", "/s", True, 2.5, [10]]
)
def test_a_bad_rate_is_refused_with_the_task_named(rate):
    with pytest.raises(InvalidInput, match="task tasks.x: global_rate_limit"):
        parse_rate(rate, task="tasks.x")


def test_a_fraction_per_second_points_to_a_longer_period():
    with pytest.raises(InvalidInput, match="'30/m', not '0.5/s'"):
        parse_rate("0.5/s")


def test_an_unparsable_rate_fails_at_the_task_definition(app):
    with pytest.raises(InvalidInput, match="task tasks.call_api: global_rate_limit 'fast'"):

        @app.task(base=AtomicTask, global_rate_limit="fast", name="tasks.call_api", shared=False)
        def call_api(n):
            return n


@pytest.mark.parametrize(
    "options, message",
    [
        ({"singleton": "yes"}, "singleton must be True or False"),
        ({"singleton": True, "singleton_ttl": 0}, "singleton_ttl must be a number"),
        ({"singleton": True, "singleton_ttl": "60"}, "singleton_ttl must be a number"),
        ({"singleton": True, "singleton_queued_ttl": -1}, "singleton_queued_ttl"),
    ],
)
def test_bad_singleton_options_fail_at_the_task_definition(app, options, message):
    with pytest.raises(InvalidInput, match=message):

        @app.task(base=AtomicTask, name="tasks.rebuild", shared=False, **options)
        def rebuild(account_id):
            return account_id


# -- binding -------------------------------------------------------------------------


def rebuild_body(account_id, full=False, *rest, **extra):
    return account_id


def test_positional_and_keyword_calls_bind_alike_with_defaults_filled():
    same = call_digest("t", rebuild_body, (7,), {})
    assert call_digest("t", rebuild_body, (), {"account_id": 7}) == same
    assert call_digest("t", rebuild_body, [7, False], None) == same
    assert call_digest("t", rebuild_body, (7,), {"full": False}) == same
    # Tuples arrive as lists after JSON: one call either way.
    assert call_digest("t", rebuild_body, ((7, 8),), {}) == call_digest(
        "t", rebuild_body, ([7, 8],), {}
    )


def test_different_arguments_or_tasks_are_different_calls():
    base = call_digest("t", rebuild_body, (7,), {})
    others = {
        call_digest("t", rebuild_body, (8,), {}),
        call_digest("t", rebuild_body, (7, True), {}),
        call_digest("t", rebuild_body, ("7",), {}),
        call_digest("t", rebuild_body, (7, False, 1), {}),
        call_digest("t", rebuild_body, (7,), {"note": 1}),
        call_digest("u", rebuild_body, (7,), {}),
    }
    assert base not in others and len(others) == 6


def test_the_digest_never_shows_the_arguments():
    secret = "alice@example.com"
    value = call_digest("t", rebuild_body, (secret,), {})
    assert len(value) == 32 and secret not in value and "alice" not in value


def test_dates_decimals_uuids_and_bytes_have_a_stable_form():
    values = (
        datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
        decimal.Decimal("1.10"),
        uuid.UUID(int=5),
        b"\x00\x01",
    )
    assert call_digest("t", rebuild_body, values, {}) == call_digest("t", rebuild_body, values, {})
    assert call_digest("t", rebuild_body, (decimal.Decimal("1.1"),), {}) != call_digest(
        "t", rebuild_body, (decimal.Decimal("1.10"),), {}
    )


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        ((), {}, "missing a required argument: 'account_id'"),
        ((1,), {"account_id": 1}, "multiple values for argument 'account_id'"),
    ],
)
def test_arguments_that_do_not_fit_are_refused(args, kwargs, message):
    def body(account_id):
        return account_id

    with pytest.raises(InvalidInput, match=message):
        call_digest("t", body, args, kwargs)


@pytest.mark.parametrize("value", [object(), {1, 2}, float("nan"), {1: "a", "b": 2}])
def test_values_without_a_stable_form_are_refused(value):
    with pytest.raises(InvalidInput, match="stable form"):
        call_digest("t", rebuild_body, (value,), {})


# -- the producer's claim (memory broker, no worker) ---------------------------------


@pytest.fixture
def tasks(app, real_client):
    @app.task(bind=True, base=AtomicTask, singleton=True, name="unit.rebuild", shared=False)
    def rebuild(self, account_id, full=False):
        return self.request.atomicops_fencing_token

    @app.task(
        bind=True, base=AtomicTask, global_rate_limit="2/s", name="unit.limited", shared=False
    )
    def limited(self, n):
        return getattr(self.request, "atomicops_admitted_ms", None)  # absent on direct calls

    @app.task(base=AtomicTask, name="unit.plain", shared=False)
    def plain(n):
        return n

    return rebuild, limited, plain


def test_a_duplicate_is_not_sent_and_gets_the_queued_id(tasks, published):
    rebuild = tasks[0]
    first = rebuild.delay(7)
    assert rebuild.delay(account_id=7).id == first.id
    assert rebuild.apply_async((7, False)).id == first.id
    other = rebuild.delay(8)
    assert other.id != first.id
    assert published == [first.id, other.id]
    holder = Lock(f"celery:unit.rebuild:{call_digest('unit.rebuild', rebuild.run, (7,), {})}", 1)
    assert holder.holder().owner == first.id


async def test_async_producers_claim_alike(tasks, published):
    rebuild = tasks[0]
    first = await rebuild.adelay(21)
    assert (await rebuild.aapply_async(kwargs={"account_id": 21})).id == first.id
    assert rebuild.delay(21).id == first.id
    assert published == [first.id]


def test_a_failed_publish_frees_the_claim(tasks, published, monkeypatch):
    rebuild = tasks[0]

    def broken(*args, **kwargs):
        raise ConnectionError("broker down")

    with monkeypatch.context() as patch:
        patch.setattr(Task, "apply_async", broken)
        with pytest.raises(ConnectionError):
            rebuild.delay(9)
    sent = rebuild.delay(9)
    assert published == [sent.id]


def test_a_lost_claim_reply_is_settled_by_asking_again(tasks, published, monkeypatch):
    rebuild, original, lost = tasks[0], Lock.acquire, []

    def reply_lost_once(self, *args, **kwargs):
        granted = original(self, *args, **kwargs)  # applied on the server...
        if not lost:
            lost.append(self.key)
            raise OutcomeUnknown("reply lost", key=self.key)  # ...but the reply never came
        return granted

    monkeypatch.setattr(Lock, "acquire", reply_lost_once)
    sent = rebuild.delay(31)
    assert lost and published == [sent.id]
    name = f"celery:unit.rebuild:{call_digest('unit.rebuild', rebuild.run, (31,), {})}"
    assert Lock(name, 1).holder().owner == sent.id  # the claim is the sent task's
    assert rebuild.delay(31).id == sent.id


def test_bad_arguments_raise_before_anything_is_sent(tasks, published):
    with pytest.raises(InvalidInput, match="unit.rebuild: arguments do not fit"):
        tasks[0].delay()
    with pytest.raises(InvalidInput, match="stable form"):
        tasks[0].delay(object())
    assert published == []


def test_tasks_without_options_are_plain_celery_tasks(tasks, published):
    assert tasks[2].delay(1).id == published[0]
    assert tasks[2].delay(1).id == published[1]


@pytest.fixture
def redis_down(settings):
    # A port nothing listens on: every call fails to connect.
    from tests.servers import free_port

    def configure(**extra):
        _configure(
            settings, f"redis://127.0.0.1:{free_port()}/0", SOCKET_CONNECT_TIMEOUT=0.2, **extra
        )

    return configure


def test_singleton_fails_closed_when_redis_is_down(tasks, published, redis_down):
    redis_down()
    with pytest.raises(RedisUnavailable):
        tasks[0].delay(7)
    assert published == []


def test_singleton_fails_open_when_the_setting_says_so(tasks, published, redis_down, caplog):
    redis_down(CELERY_SINGLETON_FAIL_OPEN=True)
    with caplog.at_level(logging.WARNING, logger="atomicops.celery"):
        sent = tasks[0].delay("acct-4242")
    assert published == [sent.id]
    assert "singleton of task unit.rebuild not enforced" in caplog.text
    assert "acct-4242" not in caplog.text  # arguments never reach a log


# -- eager runs (apply): the worker's path in this process ---------------------------


def test_eager_singleton_runs_with_a_fencing_token_and_frees_its_claim(tasks, app):
    app.conf.task_always_eager = True
    rebuild = tasks[0]
    first = rebuild.delay(7).get()
    second = rebuild.delay(7).get()
    assert isinstance(first, int) and second > first


def test_eager_rate_limit_waits_in_process(tasks, app):
    app.conf.task_always_eager = True
    limited = tasks[1]
    admitted = [limited.delay(n).get() for n in range(3)]
    # 2/s: the third start is admitted a second after the first (server time).
    assert admitted[2] - admitted[0] >= 1000


def test_rate_limit_fails_open_by_default_and_logs(tasks, app, redis_down, caplog):
    app.conf.task_always_eager = True
    redis_down()
    with caplog.at_level(logging.WARNING, logger="atomicops.celery"):
        assert tasks[1].delay(1).get() is None  # ran, not admitted by the limiter
    assert "rate of task unit.limited not enforced" in caplog.text


def test_rate_limit_fails_closed_when_the_setting_says_so(tasks, app, redis_down):
    app.conf.task_always_eager = True
    redis_down(CELERY_RATE_LIMIT_FAIL_OPEN=False)
    with pytest.raises(RedisUnavailable):
        tasks[1].apply((1,)).get()


def test_a_direct_call_is_not_limited_or_claimed(tasks, redis_down):
    redis_down()
    assert tasks[2](5) == 5
    assert tasks[1](5) is None
