"""Likes: the model-level bounded counter, and stats read through a read-only script.

``like(post)`` is ``post.likes.incr()``, where ``Post.likes = AtomicCounter(limit=10)``:
the same script as ``bounded_incr((post, "likes"), 10)``. The check and the increment
are one atomic step, so a hundred people clicking at once still stop at the limit. ``stats(post)`` runs ``demo_post_stats`` (``lua/demo_post_stats.lua``), declared
``readonly``, so it goes out as ``EVALSHA_RO``: the server itself refuses any write in it,
and a replica could serve it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

from atomicops import CounterResult
from demo_project.demo.models import Post
from demo_project.demo.scripts import script

STATS_SCRIPT = "demo_post_stats"


@dataclass(frozen=True)
class PostStats:
    """A post's likes as the read-only script saw them."""

    post: int
    title: str
    likes: int
    limit: int
    remaining: int
    percent_full: Decimal

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["percent_full"] = str(self.percent_full)
        return data


def limit() -> int:
    return Post.likes.limit  # type: ignore[return-value]


def like(post: Post) -> CounterResult:
    """One like, atomically capped at the limit; ``.value`` and ``.applied`` say what happened."""
    return post.likes.incr()


def stats(post: Post) -> PostStats:
    """Read the post's counter through the read-only script (one round trip)."""
    likes, remaining, percent = script(STATS_SCRIPT)(keys=[post.likes.key], args=[limit()])
    return PostStats(
        post=post.pk,
        title=post.title,
        likes=int(likes),
        limit=limit(),
        remaining=int(remaining),
        percent_full=Decimal(percent.decode() if isinstance(percent, bytes) else percent),
    )
