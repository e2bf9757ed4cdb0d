from django.db import models

from atomicops import AtomicCounter


class Article(models.Model):
    """A model for key-building and counter tests."""

    title = models.CharField(max_length=200)
    # Counters kept in Redis, no columns (tests/test_descriptors.py).
    views = AtomicCounter(limit=1000)
    likes = AtomicCounter(floor=0)
    shares = AtomicCounter(ttl=60, name="share_count")

    def __str__(self) -> str:
        return self.title


class Tag(models.Model):
    """A model whose primary key is user-supplied text (key escaping tests)."""

    slug = models.CharField(max_length=100, primary_key=True)

    def __str__(self) -> str:
        return self.slug
