"""AtomicCounter on a model: incr/decr/value/reset with no database column, sync and async.

tests/testapp/models.py declares on Article:
    views = AtomicCounter(limit=1000); likes = AtomicCounter(floor=0);
    shares = AtomicCounter(ttl=60, name="share_count")
"""

from __future__ import annotations

import pytest

from atomicops import (
    AtomicCounter,
    BoundCounter,
    CounterResult,
    InvalidInput,
    bounded_incr,
    key_for,
)
from tests.factories import ArticleFactory
from tests.testapp.models import Article

pytestmark = pytest.mark.django_db


def test_no_database_column():
    columns = {f.column for f in Article._meta.get_fields() if hasattr(f, "column")}
    assert columns == {"id", "title"}
    assert isinstance(Article.views, AtomicCounter)  # class access gives the descriptor


def test_incr_value_reset(backend):
    _, client = backend
    article = ArticleFactory()
    assert isinstance(article.views, BoundCounter)
    assert article.views.value == 0
    assert article.views.incr() == CounterResult(1, True)
    assert article.views.incr(4) == CounterResult(5, True)
    assert article.views.value == 5
    assert client.get(key_for(article, "views")) == b"5"
    assert article.views.reset() == 5
    assert article.views.value == 0 and client.exists(key_for(article, "views")) == 0


def test_the_pinned_form_and_the_descriptor_share_the_key(backend):
    _, client = backend
    article = ArticleFactory()
    bounded_incr((article, "views"), 1000)
    assert article.views.incr().value == 2
    assert article.views.key == key_for(article, "views")
    assert Article.objects.get(pk=article.pk).views.value == 2  # another instance, same row


def test_limit_holds(backend):
    _, client = backend
    article = ArticleFactory()
    client.set(key_for(article, "views"), 999)
    assert article.views.incr() == CounterResult(1000, True)
    assert article.views.incr() == CounterResult(1000, False)
    assert article.views.incr(5) == CounterResult(1000, False)


def test_floor_holds_and_unbounded_directions(backend):
    _, client = backend
    article = ArticleFactory()
    assert article.likes.decr() == CounterResult(0, False)
    assert article.likes.incr(2) == CounterResult(2, True)  # no limit: plain incr
    assert [article.likes.decr().value for _ in range(3)] == [1, 0, 0]
    assert article.views.decr(3) == CounterResult(-3, True)  # views has no floor


def test_ttl_and_name(backend):
    _, client = backend
    article = ArticleFactory()
    assert article.shares.key == key_for(article, "share_count")
    article.shares.incr()
    assert 59_000 <= client.pttl(key_for(article, "share_count")) <= 60_000


def test_counters_of_different_instances_are_separate(backend):
    first, second = ArticleFactory(), ArticleFactory()
    first.views.incr(3)
    second.views.incr()
    assert (first.views.value, second.views.value) == (3, 1)


async def test_async_methods(backend):
    _, client = backend
    article = await Article.objects.acreate(title="async")
    assert await article.views.aincr(2) == CounterResult(2, True)
    assert await article.views.adecr() == CounterResult(1, True)
    assert await article.likes.adecr() == CounterResult(0, False)
    assert await article.likes.aincr() == CounterResult(1, True)
    assert await article.views.aget() == 1
    assert await article.views.areset() == 1
    assert client.exists(key_for(article, "views")) == 0


def test_unsaved_instance_raises_until_saved(backend):
    _, client = backend
    article = Article(title="draft")
    with pytest.raises(InvalidInput, match="unsaved testapp.Article"):
        article.views.incr()
    with pytest.raises(InvalidInput, match="unsaved"):
        _ = article.views.value
    article.save()
    assert article.views.incr().value == 1


def test_assignment_is_refused(backend):
    article = ArticleFactory()
    with pytest.raises(AttributeError, match="views is an AtomicCounter"):
        article.views = 5
    assert article.views.value == 0


@pytest.mark.parametrize("amount", [0, -1, 1.5, True])
def test_amount_must_be_positive_integer(backend, amount):
    article = ArticleFactory()
    for call in (article.views.incr, article.views.decr, article.likes.incr, article.likes.decr):
        with pytest.raises(InvalidInput, match="amount"):
            call(amount)
    assert (article.views.value, article.likes.value) == (0, 0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"limit": -1}, "limit must be >= 0"),
        ({"limit": 1.5}, "limit must be an integer"),
        ({"floor": 2**53}, "beyond 2\\*\\*53"),
        ({"limit": 5, "floor": 6}, "floor 6 is above limit 5"),
        ({"ttl": 0}, "ttl must be"),
        ({"name": ""}, "non-empty string"),
    ],
)
def test_bad_declarations_fail_at_class_creation(kwargs, message):
    with pytest.raises(InvalidInput, match=message):
        AtomicCounter(**kwargs)


def test_explicit_client(backend):
    kind, client = backend
    article = ArticleFactory()
    assert article.views.incr(client=client).value == 1
    assert article.views.get(client=client) == 1
    assert article.views.reset(client=client) == 1
